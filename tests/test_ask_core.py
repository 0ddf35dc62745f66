"""Ask stage, offline parts: schema, prompt versioning, part anchors, laterality denoiser, voting, soft map,
candidate rule, heuristic provider, rate limiter, pricing, cache, image preparation."""

from __future__ import annotations

import asyncio
import math

import cv2
import numpy as np
import pytest
from test_ask_support import fake_part_regions, far_pair, standing, touching_pair

from apu_jax.ask.cache import AnswerCache, request_key
from apu_jax.ask.denoise import DenoiseConfig, ResolvedContact, resolve_laterality, soft_contact_map, vote
from apu_jax.ask.image import budget_scale, prepare_pair_image
from apu_jax.ask.limits import TokenBucket
from apu_jax.ask.parts import LATERAL_PARTS, pair_scale, part_anchors, part_distance
from apu_jax.ask.pricing import claude_image_tokens, cost_usd, lookup_price, openai_image_tokens
from apu_jax.ask.prompt import PROMPT_VERSION, prompt_hash
from apu_jax.ask.proposal import ProposalConfig, count_close_keypoints, misalignment, propose_pairs
from apu_jax.ask.providers import HeuristicProvider
from apu_jax.ask.schema import AnswerError, Contact, answer_json_schema, parse_answer
from apu_jax.regions.vocabulary import APU_PARTS, CENTRAL_PARTS

# The sha256 of the prompt per version. Editing the prompt, the schema-facing text or the image style changes
# the hash: bump PROMPT_VERSION (old cached answers were asked a different question) and add a line here.
PROMPT_HASHES = {"apu-contact-v1": "3905c1988f96cb1a4a7cec643b175a6183383a51f1115e3162319b8adcc96ae8"}


def contact(pa, sa, pb, sb, conf=0.9) -> Contact:
    return Contact(part_a=pa, side_a=sa, part_b=pb, side_b=sb, confidence=conf)


# ------------------------------------------------------------------------------------------------ schema


def test_parse_valid_answer_and_spelling_tolerance():
    ans = parse_answer(
        '```json\n{"description": " hug ", "contacts": [{"part_a": "Upper_Arm", "side_a": "LEFT", '
        '"part_b": "back", "side_b": "unknown", "confidence": 0.5}]}\n```'
    )
    assert ans.description == "hug"
    assert ans.contacts[0].part_a == "upper arm" and ans.contacts[0].side_a == "left"
    assert parse_answer({"description": "", "contacts": []}).contacts == []


@pytest.mark.parametrize(
    "payload, reason",
    [
        ('{"description": "x", "contacts": [', "malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        (None, "empty answer"),
        ({"description": "x"}, "contacts"),
        ({"description": "x", "contacts": [{"part_a": "butt", "side_a": "left", "part_b": "hand",
                                            "side_b": "left", "confidence": 0.5}]}, "part_a"),
        ({"description": "x", "contacts": [{"part_a": "hand", "side_a": "up", "part_b": "hand",
                                            "side_b": "left", "confidence": 0.5}]}, "side_a"),
        ({"description": "x", "contacts": [{"part_a": "hand", "side_a": "left", "part_b": "hand",
                                            "side_b": "left", "confidence": 1.5}]}, "confidence"),
        ({"description": "x", "contacts": [], "extra": 1}, "extra"),
    ],
)  # fmt: skip
def test_bad_answers_are_answer_errors(payload, reason):
    with pytest.raises(AnswerError, match=reason):
        parse_answer(payload)


def test_wire_schema_is_strict_mode_compatible():
    schema = answer_json_schema()

    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                yield node
            for v in node.values():
                yield from objects(v)

    for obj in objects(schema):
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
    item = schema["properties"]["contacts"]["items"]["properties"]
    assert item["part_a"]["enum"] == list(APU_PARTS) and len(APU_PARTS) == 17
    assert item["side_b"]["enum"] == ["left", "right", "both", "unknown"]
    assert list(schema["properties"]) == ["description", "contacts"]  # describe first, then list


def test_prompt_version_pins_the_prompt_text():
    assert PROMPT_HASHES.get(PROMPT_VERSION) == prompt_hash(), "prompt changed: bump PROMPT_VERSION"


# ------------------------------------------------------------------------------------------------- parts


def test_anchor_tables_cover_the_vocabulary():
    assert LATERAL_PARTS | CENTRAL_PARTS == set(APU_PARTS)
    kp = standing(100)
    for part in APU_PARTS:
        assert len(part_anchors(kp, part, "left")) > 0, part


def test_hand_anchor_extrapolates_beyond_the_wrist_and_neck_is_derived():
    kp = standing(100)
    hand = part_anchors(kp, "hand", "left")
    # left wrist (145, 205), left elbow (140, 160): palm = wrist + 0.35 (wrist - elbow)
    np.testing.assert_allclose(hand, [[145, 205], [146.75, 220.75]])
    kp[1, 2] = 0.0  # no Neck (as from ViTPose): derived from the shoulders (70, 110) and (130, 110)
    np.testing.assert_allclose(part_anchors(kp, "neck", "n/a")[0], [100, 110])
    kp[[4, 7], 2] = 0.0
    assert part_anchors(kp, "hand", "both").shape == (0, 2)


def test_pair_scale_and_part_distance_by_hand():
    a, b = touching_pair()
    assert pair_scale(a, b) == pytest.approx(275.0)  # both people span y 75..350
    # A's left wrist (226, 113) is 5 px from B's right shoulder (230, 110)
    assert part_distance(a, "hand", "left", b, "shoulder", "right", 275.0) == pytest.approx(5 / 275)


# --------------------------------------------------------------------------------------------- denoising


def test_opposite_side_answer_is_flipped_to_the_closest_consistent_sides():
    a, b = touching_pair()  # truth: A's LEFT hand on B's RIGHT shoulder
    r = resolve_laterality(contact("hand", "right", "shoulder", "left"), a, b)
    assert (r.side_a, r.side_b) == ("left", "right") and r.corrected
    assert r.distance == pytest.approx(5 / 275)
    assert r.evidence == pytest.approx(math.exp(-0.5 * (5 / 275 / 0.2) ** 2))
    assert r.weight == pytest.approx(0.9 * r.evidence)
    same = resolve_laterality(contact("hand", "left", "shoulder", "right"), a, b)
    assert (same.side_a, same.side_b) == ("left", "right") and not same.corrected


def test_same_side_answer_stays_same_side_even_when_an_opposite_pair_is_closer():
    a = standing(150, {4: (180, 230)})  # A's right wrist moved towards B
    b = standing(260)
    # wrists: A-left/B-right 20 px (closest, but opposite), A-right/B-right ~43 px, A-left/B-left 110 px
    assert part_distance(a, "hand", "left", b, "hand", "right", 275) < part_distance(
        a, "hand", "right", b, "hand", "right", 275
    )
    r = resolve_laterality(contact("hand", "left", "hand", "left"), a, b)
    assert (r.side_a, r.side_b) == ("right", "right") and r.corrected
    assert r.distance == pytest.approx(
        part_distance(a, "hand", "right", b, "hand", "right", pair_scale(a, b))
    )


def test_both_unknown_and_central_sides():
    a, b = touching_pair()
    r = resolve_laterality(contact("arm", "both", "back", "right"), a, b)
    assert (r.side_a, r.side_b) == ("both", "n/a") and not r.corrected
    r = resolve_laterality(contact("hand", "unknown", "shoulder", "unknown"), a, b)
    assert (r.side_a, r.side_b) == ("left", "right")
    # A sided part touching a central part: no relation to keep, the closest side wins.
    a2 = standing(150, {6: (200, 140), 7: (255, 140)})  # A's left hand on B's chest
    r = resolve_laterality(contact("hand", "right", "chest", "unknown"), a2, b)
    assert (r.side_a, r.side_b) == ("left", "n/a") and r.corrected
    # chest anchors (260, 130), (260, 150); nearest hand anchor: the wrist (255, 140), 11.18 px away
    assert r.distance == pytest.approx(math.hypot(5, 10) / 275)


def test_missing_keypoints_keep_the_stated_sides_with_neutral_evidence():
    a, b = touching_pair()
    a[[4, 7], 2] = 0.0  # no wrists: no hand anchors
    cfg = DenoiseConfig(missing_evidence=0.5)
    r = resolve_laterality(contact("hand", "right", "shoulder", "left", 0.8), a, b, cfg)
    assert (r.side_a, r.side_b) == ("right", "left") and not r.corrected
    assert math.isinf(r.distance) and r.evidence == 0.5 and r.weight == pytest.approx(0.4)


def test_vote_averages_over_answered_samples():
    x = ResolvedContact("hand", "left", "shoulder", "right", 0.8, 0.02, 1.0)
    y = ResolvedContact("head", "n/a", "head", "n/a", 0.6, 0.1, 0.5)
    voted = vote([[x, x], [x, y]], DenoiseConfig(min_weight=0.0))  # the repeated x counts once
    by_key = {c.key(): c for c in voted}
    assert by_key[x.key()].confidence == pytest.approx(0.8) and by_key[x.key()].votes == 2
    assert by_key[y.key()].confidence == pytest.approx(0.3) and by_key[y.key()].votes == 1
    assert voted[0].key() == x.key()  # heaviest first
    assert [c.key() for c in vote([[x], [x, y]], DenoiseConfig(min_weight=0.2))] == [x.key()]  # y: 0.3·0.5
    assert vote([]) == []


def test_soft_contact_map_expands_parts_to_region_pairs():
    c1 = ResolvedContact("hand", "left", "shoulder", "right", 0.9, 0.0, 1.0)
    c2 = ResolvedContact("arm", "both", "back", "n/a", 0.5, 0.0, 0.8)
    c3 = ResolvedContact("hand", "left", "shoulder", "right", 0.3, 0.0, 1.0)  # same region pair, lighter
    pairs, weights = soft_contact_map([c1, c2, c3], fake_part_regions)
    # hand = part 0 (left: region 0), shoulder = part 11 (right: 23), arm = part 1 (2, 3), back = part 6 (12)
    assert pairs.tolist() == [[0, 23], [2, 12], [3, 12]]
    np.testing.assert_allclose(weights, [0.9, 0.4, 0.4])
    # Groups: the two arm × back region pairs are one part-level contact; c3 lost its only pair to c1.
    _, _, groups = soft_contact_map([c1, c2, c3], fake_part_regions, return_groups=True)
    assert groups.tolist() == [0, 1, 1]
    empty_pairs, empty_weights = soft_contact_map([], fake_part_regions)
    assert empty_pairs.shape == (0, 2) and empty_weights.shape == (0,)


# ---------------------------------------------------------------------------------------------- proposal


def test_count_close_keypoints_by_hand():
    a = np.array([[0, 0, 1], [0, 100, 1], [0, 200, 1]], float)
    b = np.array([[15, 0, 1], [300, 100, 1], [300, 200, 1]], float)
    a25, b25 = np.zeros((25, 3)), np.zeros((25, 3))
    a25[:3], b25[:3] = a, b
    # pair scale = (200 + 285) / 2 = 242.5; only A0–B0 (15 px = 0.062) are close: one keypoint each
    assert count_close_keypoints(a25, b25, 0.15) == 2
    assert count_close_keypoints(a25, b25, 0.05) == 0


def test_misalignment_and_the_candidate_rule():
    a, b = touching_pair()
    assert misalignment(a, a + np.array([3.0, 4.0, 0.0])) == pytest.approx(5 / 275)
    assert math.isinf(misalignment(a, None))
    c = far_pair()[1] + np.array([200.0, 0, 0])  # a third person far away
    kp = np.stack([a, b, c])
    shifted = b + np.array([60.0, 0.0, 0.0])  # B's mesh 60 px off: 0.28 of its size
    cands = propose_pairs(kp, [a, b, None])
    assert [(x.a, x.b, x.accepted) for x in cands] == [(0, 1, True), (0, 2, False), (1, 2, False)]
    assert "close keypoints" in cands[1].reason and "no initial mesh" in cands[1].reason
    cands = propose_pairs(kp, [a, shifted, c], ProposalConfig(max_misalignment=0.15))
    assert not cands[0].accepted and "person 1 mesh misaligned" in cands[0].reason
    assert propose_pairs(kp, [a, shifted, c], ProposalConfig(max_misalignment=0.3))[0].accepted


# --------------------------------------------------------------------------------------------- heuristic


def test_heuristic_provider_finds_the_touching_parts():
    h = HeuristicProvider()
    got = h.contacts(*touching_pair())
    assert got[0]["part_a"] == "hand" and got[0]["side_a"] == "left"
    assert got[0]["part_b"] == "shoulder" and got[0]["side_b"] == "right"
    assert got[0]["confidence"] == pytest.approx(1 - (5 / 275) / 0.08, abs=1e-4)
    assert h.contacts(*far_pair()) == []
    assert parse_answer({"description": "h", "contacts": got}).contacts  # valid against the schema


# ------------------------------------------------------------------------------------------ rate limits


def test_token_bucket_waits_exactly_for_the_deficit():
    now = [0.0]
    slept = []

    async def fake_sleep(s):
        slept.append(s)
        now[0] += s

    async def go():
        bucket = TokenBucket(60, clock=lambda: now[0], sleep=fake_sleep)  # 1 per second, burst 60
        for _ in range(60):
            await bucket.acquire(1)
        assert slept == []
        waited = await bucket.acquire(1)
        assert waited == pytest.approx(1.0)
        now[0] += 10.0  # ten seconds idle refill ten units
        for _ in range(10):
            await bucket.acquire(1)
        assert len(slept) == 1
        await bucket.acquire(500)  # larger than a minute: waits for a full bucket (60 s)
        assert slept[-1] == pytest.approx(60.0)

    asyncio.run(go())


# ------------------------------------------------------------------------------------------------ pricing


def test_prices_and_token_estimates():
    assert lookup_price("claude-sonnet-4-5-20250929").input == 3.0  # dated id, prefix match
    assert lookup_price("gpt-4o-mini").output == 0.60  # longest prefix, not gpt-4o
    unknown = lookup_price("llava-local")
    assert (unknown.input, unknown.known) == (0.0, False)
    assert lookup_price("llava-local", 1.0, 2.0).known
    p = lookup_price("claude-sonnet-5-5")  # $2 / $10
    assert cost_usd(p, 1_000_000, 100_000) == pytest.approx(3.0)
    assert cost_usd(p, 1_000_000, 100_000, batch=True) == pytest.approx(1.5)
    assert cost_usd(p, 0, 0, cache_write_tokens=1_000_000, cache_read_tokens=1_000_000) == pytest.approx(2.7)
    assert openai_image_tokens(1024, 1024) == 765  # OpenAI's documented example
    assert claude_image_tokens(1092, 1092) == 1590  # Anthropic's documented example


# ------------------------------------------------------------------------------------------------- cache


def test_cache_round_trip_and_key_components(tmp_path):
    base = ("sha", "0-1@..", "hug", "v1", "anthropic", "m", 0)
    key = request_key(*base)
    assert len(key) == 64
    for i in range(len(base)):
        changed = list(base)
        changed[i] = 1 if i == 6 else "other"
        assert request_key(*changed) != key
    with AnswerCache(tmp_path / "c.sqlite") as cache:
        assert cache.get(key) is None
        cache.put(
            key, pair_id="p", image_sha="sha", pair="0-1", prompt_version="v1", provider="anthropic",
            model="m", sample=0, status="ok", answer='{"description": "", "contacts": []}', raw="{}",
            error=None, input_tokens=10, output_tokens=5, cost_usd=0.25,
        )  # fmt: skip
        cache.add_batch("b1", "anthropic", [key])
    with AnswerCache(tmp_path / "c.sqlite") as cache:  # persisted
        row = cache.get(key)
        assert (row.status, row.input_tokens, row.cost_usd) == ("ok", 10, 0.25)
        assert cache.pending_batches("anthropic") == [("b1", [key])]
        cache.finish_batch("b1")
        assert cache.pending_batches("anthropic") == []


# ------------------------------------------------------------------------------------------------- image


def test_budget_scale():
    s = budget_scale(4000, 3000)
    assert 4000 * s * 3000 * s == pytest.approx(1_150_000)
    assert budget_scale(3000, 200) == pytest.approx(1568 / 3000)  # long-side limit binds
    assert budget_scale(640, 480) == 1.0


def test_prepared_image_is_downscaled_and_boxed():
    kp = touching_pair() * np.array([5.0, 5.0, 1.0])  # a 2000 × 2000 image
    img = np.full((2000, 2000, 3), 255, np.uint8)
    prep = prepare_pair_image(img, kp[0], kp[1])
    w, h = prep.size
    assert w == h and w * h <= 1_150_000 and w > 1000
    dec = cv2.imdecode(np.frombuffer(prep.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert dec.shape[:2] == (h, w)
    s = w / 2000
    x0, y0, x1, y1 = prep.boxes[0]
    edge = dec[round(y0 * s) + 40 : round(y1 * s) - 40, round(x0 * s) + 1]  # A's left box edge: red (BGR)
    assert edge[:, 2].mean() > 180 and edge[:, 0].mean() < 110
    x0b = round(prep.boxes[1][0] * s) + 1
    edge_b = dec[round(prep.boxes[1][1] * s) + 40 : round(prep.boxes[1][3] * s) - 40, x0b]  # B: blue
    assert edge_b[:, 0].mean() > 180 and edge_b[:, 2].mean() < 110
