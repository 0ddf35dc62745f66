"""Ask stage against local mock servers: the real anthropic / openai SDK clients talk to 127.0.0.1.

Covers success, scripted 429/529/500 then success, persistent failure, malformed JSON, unknown parts,
refusals, the structured-output fallback, fatal auth errors, Message Batches (out-of-order results, resume
after a kill), the dry-run estimate, a SIGKILLed run resumed without repeating answered requests, and that
the API key appears in no file a run wrote.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from mock_llm_server import DEFAULT_ANSWER, MockLLMServer
from test_ask_support import fake_part_regions, far_pair, touching_pair, write_dataset

from apu_jax.ask.cache import AnswerCache, request_key
from apu_jax.ask.pricing import claude_image_tokens, cost_usd, lookup_price, text_tokens
from apu_jax.ask.prompt import PROMPT_VERSION, SYSTEM_PROMPT, user_text
from apu_jax.ask.providers import AnthropicProvider, AskRequest, OpenAIProvider, ProviderFatal
from apu_jax.ask.runner import AskRunner
from apu_jax.ask.stage import AskOptions, run_ask

SECRET = "sk-ant-TEST-7f3a9c-never-write-me"
REPO = Path(__file__).resolve().parents[1]
_JPEG = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes()


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def make_requests(n: int, provider: str = "anthropic", model: str = "claude-sonnet-5-5") -> list[AskRequest]:
    kp = touching_pair()
    return [
        AskRequest(
            key=request_key("sha", str(i), None, PROMPT_VERSION, provider, model, 0),
            pair_id=f"img:{i}",
            sample=0,
            image_sha="sha",
            pair_desc=str(i),
            image=lambda: _JPEG,
            image_size=(32, 32),
            label=None,
            keypoints=kp,
        )
        for i in range(n)
    ]


def run(runner: AskRunner, reqs: list[AskRequest], batch: bool = False):
    async def go():
        try:
            if batch:
                return await runner.run_batch(reqs, poll_interval=0.01)
            return await runner.run(reqs)
        finally:
            await runner.provider.aclose()

    return asyncio.run(go())


def anthropic(srv: MockLLMServer, **kw) -> AnthropicProvider:
    return AnthropicProvider(base_url=srv.url, max_retries=kw.pop("max_retries", 3), timeout=10, **kw)


def openai_provider(srv: MockLLMServer, **kw) -> OpenAIProvider:
    return OpenAIProvider(
        model="gpt-4.1", base_url=srv.url + "/v1", max_retries=kw.pop("max_retries", 3), timeout=10
    )


# -------------------------------------------------------------------------------------------- anthropic


def test_anthropic_success_picks_the_text_block_after_thinking(tmp_path):
    with MockLLMServer(thinking_first=True) as srv, AnswerCache(tmp_path / "c.sqlite") as cache:
        reqs = make_requests(1)
        runner = AskRunner(anthropic(srv), cache)
        out = run(runner, reqs)
        seen = srv.generation_requests()
    o = out[reqs[0].key]
    assert o.status == "ok" and o.answer.model_dump() == DEFAULT_ANSWER
    assert len(seen) == 1 and seen[0].key == reqs[0].key and seen[0].authorized
    assert "output_config" in seen[0].body_keys and "tools" not in seen[0].body_keys
    st = runner.stats
    assert (st.requests, st.answered, st.failed, st.cached) == (1, 1, 0, 0)
    assert st.cost_usd == pytest.approx((1600 * 2.0 + 60 * 10.0) / 1e6)  # mock usage × Sonnet 5.5 prices
    assert cache.path.exists()


def test_anthropic_retries_429_529_500_then_succeeds(tmp_path):
    with MockLLMServer(script=[429, 529, 500]) as srv, AnswerCache(tmp_path / "c.sqlite") as cache:
        reqs = make_requests(1)
        runner = AskRunner(anthropic(srv, max_retries=3), cache, concurrency=1)
        out = run(runner, reqs)
        seen = srv.generation_requests()
    assert [s.status for s in seen] == [429, 529, 500, 200]
    assert [s.retry_count for s in seen] == ["0", "1", "2", "3"]
    assert out[reqs[0].key].status == "ok"
    assert (runner.stats.requests, runner.stats.answered, runner.stats.failed) == (4, 1, 0)


def test_persistent_failure_is_reported_and_not_cached(tmp_path):
    reqs = make_requests(1)
    with MockLLMServer(default=500) as srv, AnswerCache(tmp_path / "c.sqlite") as cache:
        runner = AskRunner(anthropic(srv, max_retries=2), cache)
        out = run(runner, reqs)
        assert len(srv.generation_requests()) == 3  # first try + 2 retries
        assert out[reqs[0].key].status == "error" and "500" in out[reqs[0].key].error
        assert (runner.stats.failed, runner.stats.errors, cache.count()) == (1, 1, 0)
    with MockLLMServer() as srv, AnswerCache(tmp_path / "c.sqlite") as cache:  # the next run asks again
        runner = AskRunner(anthropic(srv), cache)
        assert run(runner, reqs)[reqs[0].key].status == "ok"
        assert runner.stats.requests == 1 and cache.count() == 1


def test_malformed_unknown_part_and_refusal_are_failed_answers(tmp_path):
    reqs = make_requests(3)
    with MockLLMServer(script=["malformed", "unknown_part", "refusal"]) as srv:
        with AnswerCache(tmp_path / "c.sqlite") as cache:
            runner = AskRunner(anthropic(srv), cache, concurrency=1)
            out = run(runner, reqs)
        errors = sorted(o.error for o in out.values())
        assert all(o.status == "invalid" for o in out.values())
        assert any("malformed JSON" in e for e in errors)
        assert any("part_b" in e for e in errors)  # "butt" is not in the vocabulary
        assert any("refused" in e for e in errors)
        assert (runner.stats.invalid, runner.stats.failed, runner.stats.answered) == (3, 3, 0)
        with AnswerCache(tmp_path / "c.sqlite") as cache:  # paid answers: not asked again ...
            runner = AskRunner(anthropic(srv), cache)
            run(runner, reqs)
            assert (runner.stats.requests, runner.stats.cached, runner.stats.failed) == (0, 3, 3)
        with AnswerCache(tmp_path / "c.sqlite") as cache:  # ... unless asked to
            runner = AskRunner(anthropic(srv), cache, retry_invalid=True)
            out = run(runner, reqs)
            assert runner.stats.requests == 3 and all(o.status == "ok" for o in out.values())


def test_structured_output_falls_back_to_forced_tool_use(tmp_path):
    with MockLLMServer(script=["reject_output_config"]) as srv:
        provider = anthropic(srv)
        out = run(AskRunner(provider, None, concurrency=1), make_requests(2))
        seen = srv.generation_requests()
    assert provider.mode == "tool"
    assert [s.status for s in seen] == [400, 200, 200]
    assert "tools" in seen[1].body_keys and "tool_choice" in seen[1].body_keys
    assert "output_config" not in seen[1].body_keys
    assert all(o.status == "ok" for o in out.values())
    assert AnthropicProvider(model="claude-3-5-sonnet-20241022").mode == "tool"  # older models by name
    assert AnthropicProvider().mode == "json"


def test_authentication_error_stops_the_run(tmp_path, monkeypatch):
    with MockLLMServer(default=401) as srv:
        with pytest.raises(ProviderFatal, match="401"):
            run(AskRunner(anthropic(srv), None), make_requests(3))
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ProviderFatal, match="ANTHROPIC_API_KEY"):
        run(AskRunner(AnthropicProvider(), None), make_requests(1))


# ----------------------------------------------------------------------------------------------- openai


def test_openai_compatible_server(tmp_path):
    reqs = make_requests(4, "openai", "gpt-4.1")
    with MockLLMServer(script=[429, "ok", "malformed", "refusal"]) as srv:
        with AnswerCache(tmp_path / "c.sqlite") as cache:
            runner = AskRunner(openai_provider(srv), cache, concurrency=1)
            out = run(runner, reqs)
        seen = srv.generation_requests()
    assert [s.status for s in seen] == [429, 200, 200, 200, 200]
    assert "response_format" in seen[0].body_keys and "max_tokens" in seen[0].body_keys  # local-server style
    statuses = sorted(o.status for o in out.values())
    assert statuses == ["invalid", "invalid", "ok", "ok"]
    assert (runner.stats.requests, runner.stats.answered, runner.stats.failed) == (5, 2, 2)


# ---------------------------------------------------------------------------------------------- batches


def test_message_batches_match_results_out_of_order(tmp_path):
    reqs = make_requests(3)
    with MockLLMServer(batch_polls=2, batch_errored=1) as srv, AnswerCache(tmp_path / "c.sqlite") as cache:
        runner = AskRunner(anthropic(srv), cache)
        out = run(runner, reqs, batch=True)
        paths = [(s.method, s.path.rsplit("/", 1)[-1]) for s in srv.all_requests()]
        assert cache.pending_batches("anthropic") == []
        assert cache.count() == 2
    # create, 3 polls (2 in progress, then ended), then results(): retrieve + the JSONL download
    assert paths[0] == ("POST", "batches") and len(paths) == 6 and paths[-1] == ("GET", "results")
    assert runner.stats.requests == 6
    # the mock marks the FIRST request errored and returns results reversed: matching must use custom_id
    assert out[reqs[0].key].status == "error" and "errored" in out[reqs[0].key].error
    assert out[reqs[1].key].status == "ok" and out[reqs[2].key].status == "ok"
    price = lookup_price("claude-sonnet-5-5")
    assert runner.stats.cost_usd == pytest.approx(2 * cost_usd(price, 1600, 60, batch=True))
    assert runner.stats.cost_usd == pytest.approx(cost_usd(price, 1600, 60))  # half price each


def test_a_killed_batch_run_resumes_polling_instead_of_resubmitting(tmp_path):
    reqs = make_requests(3)
    with MockLLMServer(batch_polls=0) as srv:
        provider = anthropic(srv)

        async def submit_and_die():  # what a run killed right after submitting leaves behind
            try:
                params = [{"custom_id": r.key, "params": provider.params(r)} for r in reqs]
                return (await provider.client.messages.batches.create(requests=params)).id
            finally:
                await provider.aclose()

        batch_id = asyncio.run(submit_and_die())
        with AnswerCache(tmp_path / "c.sqlite") as cache:
            cache.add_batch(batch_id, "anthropic", [r.key for r in reqs])
        before = len(srv.all_requests())
        with AnswerCache(tmp_path / "c.sqlite") as cache:
            runner = AskRunner(anthropic(srv), cache)
            out = run(runner, reqs, batch=True)
            assert cache.pending_batches("anthropic") == [] and cache.count() == 3
        new = srv.all_requests()[before:]
    assert not any(s.method == "POST" for s in new)  # nothing submitted (or paid) again
    assert all(o.status == "ok" for o in out.values())


# ------------------------------------------------------------------------------- the stage, end to end


def test_dry_run_estimate_then_run_then_cached_rerun(tmp_path):
    manifest = write_dataset(
        tmp_path / "data", [touching_pair(), far_pair(), touching_pair()], ["hug", None, None]
    )
    out = tmp_path / "out"
    with MockLLMServer() as srv:
        opts = AskOptions(provider="anthropic", base_url=srv.url, samples=2, dry_run=True, max_retries=1)
        dry = run_ask(manifest, out, opts, part_regions=fake_part_regions)
        assert srv.all_requests() == []  # nothing sent
        # 2 accepted pairs × 2 samples; 400×400 images; prompt text per request (label only on image 0)
        per_image = claude_image_tokens(400, 400) + 10
        expected = 2 * (per_image + text_tokens(SYSTEM_PROMPT + user_text("hug")))
        expected += 2 * (per_image + text_tokens(SYSTEM_PROMPT + user_text(None)))
        assert (dry["requests"], dry["planned_requests"], dry["pairs_proposed"]) == (0, 4, 2)
        assert dry["estimated_input_tokens"] == expected
        price = lookup_price("claude-sonnet-5-5")
        assert dry["estimated_cost_usd"] == pytest.approx(cost_usd(price, expected, 4 * 250), abs=1e-6)
        assert dry["max_cost_usd"] == pytest.approx(cost_usd(price, expected, 4 * 1024), abs=1e-6)

        opts.dry_run = False
        first = run_ask(manifest, out, opts, part_regions=fake_part_regions)
        assert (first["requests"], first["answered"], first["cached"], first["failed"]) == (4, 4, 0, 0)
        assert first["pairs_with_contacts"] == 2 and first["laterality_corrected"] == 2
        second = run_ask(manifest, out, opts, part_regions=fake_part_regions)
        assert (second["requests"], second["answered"], second["cached"]) == (0, 0, 4)
        opts.dry_run = True
        again = run_ask(manifest, out, opts, part_regions=fake_part_regions)
        assert again["planned_requests"] == 0 and again["estimated_cost_usd"] == 0.0
        assert len(srv.generation_requests()) == 4

    pairs = np.load(out / "pairs.npz", allow_pickle=False)
    meta = json.loads(str(pairs["meta"]))
    assert meta["format"] == "apu-pairset" and meta["source"]["prompt_version"] == PROMPT_VERSION
    assert pairs["pair_id"].tolist() == ["img0:0-1", "img2:0-1"]
    # the mock says (right hand, left shoulder); the denoiser flips it to A-left hand / B-right shoulder:
    # fake regions: hand-left = 0, shoulder-right = 2·11 + 1 = 23
    assert pairs["contact_pairs"].shape == (2, 16, 2)  # contact slots bucketed to 16, -1 padding
    assert pairs["contact_pairs"][0].tolist() == [[0, 23]] + [[-1, -1]] * 15
    assert pairs["contact_weights"][0, 0] == pytest.approx(
        0.9 * math.exp(-0.5 * (5 / 275 / 0.2) ** 2), abs=1e-5
    )
    assert pairs["keypoints"].shape == (2, 2, 25, 3) and pairs["init_betas"].shape == (2, 2, 10)
    assert pairs["label"].tolist() == ["hug", ""]
    replay = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert len(replay) == 4 and {r["sample"] for r in replay} == {0, 1}


def test_the_api_key_is_written_nowhere(tmp_path):
    manifest = write_dataset(tmp_path / "data", [touching_pair()])
    out = tmp_path / "out"
    with MockLLMServer(script=[429, "malformed"]) as srv:
        run_ask(
            manifest,
            out,
            AskOptions("anthropic", base_url=srv.url, samples=3),
            part_regions=fake_part_regions,
        )
        assert all(s.authorized for s in srv.all_requests())  # the key was sent ...
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"cache.sqlite", "answers.jsonl", "pairs.npz", "summary.json"}
    for path in written:  # ... and stored nowhere (cache, WAL, answers, pair set, summary)
        assert SECRET.encode() not in path.read_bytes(), path


def _cached_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    try:
        with sqlite3.connect(path) as db:
            return {k for (k,) in db.execute("SELECT key FROM answers")}
    except sqlite3.OperationalError:  # created but its tables not yet
        return set()


def test_a_sigkilled_run_resumes_without_repeating_answered_requests(tmp_path):
    manifest = write_dataset(tmp_path / "data", [touching_pair(), touching_pair() + [5.0, 0.0, 0.0]])
    out = tmp_path / "out"
    env = {**os.environ, "ANTHROPIC_API_KEY": SECRET, "PYTHONPATH": str(REPO)}
    with MockLLMServer(delay=0.4) as srv:
        cmd = [
            sys.executable, "-m", "cli.ask", str(manifest), "--provider", "anthropic", "--base-url", srv.url,
            "--samples", "3", "--concurrency", "1", "--out", str(out), "--json",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while len(_cached_keys(out / "cache.sqlite")) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # mid-run: 2 answers stored, one request in flight
        proc.wait()
        cached_before = _cached_keys(out / "cache.sqlite")
        n_first = len(srv.generation_requests())
        assert 2 <= len(cached_before) < 6 and proc.returncode == -signal.SIGKILL
        # Resume in-process (same options as the command line; a stand-in region map, no body model).
        opts = AskOptions("anthropic", base_url=srv.url, samples=3, concurrency=1)
        summary = run_ask(manifest, out, opts, part_regions=fake_part_regions)
        second = srv.generation_requests()[n_first:]
    assert not {s.key for s in second} & cached_before  # zero repeated requests for answers we had
    assert len(second) == summary["requests"] == 6 - len(cached_before)
    assert (summary["cached"], summary["answered"], summary["failed"]) == (len(cached_before), len(second), 0)
    assert _cached_keys(out / "cache.sqlite") == {r.key for r in srv.generation_requests()}
    assert len(_cached_keys(out / "cache.sqlite")) == 6 and summary["pairs_with_contacts"] == 2
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
