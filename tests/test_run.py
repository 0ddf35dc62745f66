"""`apu run` end to end on the bundled example: heuristic and replay out of the box, anthropic and openai
against the local mock server; resume; the exported dataset read back with numpy alone."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from mock_llm_server import MockLLMServer
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "apu_jax" / "data" / "examples"
MANIFEST = EXAMPLES / "manifest.jsonl"
DEFAULT_MODEL = REPO / "apu_jax" / "data" / "default_model.npz"
DEFAULT_GMM = REPO / "apu_jax" / "data" / "gmm_cmu_08.npz"
SECRET = "sk-test-run-5d1e-never-write-me"
FAST = ["--iters", "15,5", "--batch-size", "4"]

pytestmark = [
    pytest.mark.skipif(
        not (DEFAULT_MODEL.exists() and DEFAULT_GMM.exists()),
        reason="needs the bundled default model and GMM (apu_jax/data/default_model.npz, gmm_cmu_08.npz)",
    ),
    pytest.mark.slow,  # one fit compile (minutes on a loaded 2-core machine), then cache hits
]


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    # Every run fits pair sets of the same shapes: a persistent compilation cache turns the later fits'
    # compiles into cache hits (this file would otherwise compile the same fit four times).
    old = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])


def apu(*args: str, env: dict | None = None) -> tuple[int, dict | str]:
    from cli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    if result.exit_code != 0:
        return result.exit_code, result.output
    return 0, json.loads(result.stdout)


def check_dataset(out: Path, summary: dict) -> dict:
    """The dataset reads back with plain numpy and agrees with the fits' keep flags."""
    data = np.load(out / "dataset.npz", allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    assert meta["format"] == "apu-dataset" and meta["version"] == 1
    kept = sum(int(np.load(s)["keep"].sum()) for s in sorted((out / "fits").glob("shard-*.npz")))
    p = len(data["pair_id"])
    assert p == kept == summary["pairs_kept"]
    for key, shape in {
        "keypoints": (p, 2, 25, 3),
        "body_pose": (p, 2, 63),
        "transl": (p, 2, 3),
        "reproj_error": (p, 2),
        "loss_final": (p,),
    }.items():
        assert data[key].shape == shape, key
    assert np.all(data["reproj_error"] < 20.0)  # the filter's threshold
    for rel in data["image"]:
        assert (Path(meta["data_root"]) / rel).is_file()
    for contacts in data["contacts_json"]:
        assert json.loads(contacts)  # every kept pair has contacts
    return {"meta": meta, **{k: data[k] for k in data.files}}


def test_heuristic_run_out_of_the_box(tmp_path):
    code, summary = apu("run", MANIFEST, "--provider", "heuristic", "--out", tmp_path / "d", "--json", *FAST)
    assert code == 0, summary
    assert summary["pairs_considered"] == 5  # 1 + 1 + 3 pairs of people
    assert summary["pairs_proposed"] == 3  # the isolated third person is not a candidate
    assert summary["requests"] == 0 and summary["cost_usd"] == 0.0
    assert summary["pairs_fitted"] == summary["pairs_with_contacts"] >= 2
    check_dataset(tmp_path / "d", summary)
    rejected = [json.loads(x) for x in (tmp_path / "d" / "ask" / "candidates.jsonl").read_text().splitlines()]
    assert {(r["image_id"], r["a"], r["b"]) for r in rejected if not r["accepted"]} == {
        ("ex_three_people", 0, 1),
        ("ex_three_people", 0, 2),
    }


def test_replay_run_corrects_laterality_and_resumes(tmp_path):
    from apu_jax.body import load_model
    from apu_jax.regions import load_regions, vocabulary_to_regions

    out = tmp_path / "d"
    code, summary = apu("run", MANIFEST, "--provider", "replay", "--out", out, "--json", *FAST)
    assert code == 0, summary
    assert (summary["answered"], summary["failed"], summary["pairs_with_contacts"]) == (4, 0, 3)
    contacts = {
        x["pair_id"]: x for x in map(json.loads, (out / "ask" / "contacts.jsonl").read_text().splitlines())
    }
    # the recorded answer says A's RIGHT hand on B's LEFT shoulder (image frame); the denoiser flips both
    (c,) = contacts["ex_hand_on_shoulder:0-1"]["contacts"]
    assert (c["part_a"], c["side_a"], c["part_b"], c["side_b"], c["corrected"]) == (
        "hand", "left", "shoulder", "right", True,
    )  # fmt: skip
    # two handshake samples: the hand contact in both (0.95, 0.9) → 0.925; the forearm in one (0.3) → 0.15
    votes = {(x["part_a"], x["votes"]): x["confidence"] for x in contacts["ex_handshake:0-1"]["contacts"]}
    assert votes == {("hand", 2): pytest.approx(0.925), ("forearm", 1): pytest.approx(0.15)}
    pairs = np.load(out / "ask" / "pairs.npz")
    row = pairs["pair_id"].tolist().index("ex_hand_on_shoulder:0-1")
    regions = load_regions(load_model("default"))
    expect = {
        (a, b)
        for a in vocabulary_to_regions("hand", "left", regions)
        for b in vocabulary_to_regions("shoulder", "right", regions)
    }
    got = {tuple(p) for p in pairs["contact_pairs"][row].tolist() if p[0] >= 0}
    assert got == expect
    check_dataset(out, summary)
    # resume: nothing asked or fitted again, same dataset
    code, again = apu("run", MANIFEST, "--provider", "replay", "--out", out, "--json", *FAST)
    assert code == 0 and again["pairs_kept"] == summary["pairs_kept"]
    assert again["fit_skipped_done"] == summary["pairs_with_contacts"]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_run_against_the_mock_server(tmp_path, provider):
    out = tmp_path / "d"
    env = {"ANTHROPIC_API_KEY": SECRET, "OPENAI_API_KEY": SECRET}
    # A hand-to-hand answer keeps the contact map within the heuristic run's 16 slots: same fit shapes,
    # so the fit compile is a cache hit.
    answer = {
        "description": "hands touch",
        "contacts": [
            {"part_a": "hand", "side_a": "right", "part_b": "hand", "side_b": "left", "confidence": 0.8}
        ],
    }
    with MockLLMServer(script=[429], answer=answer) as srv:
        url = srv.url + ("/v1" if provider == "openai" else "")
        args = ["run", MANIFEST, "--provider", provider, "--base-url", url, "--samples", "2", "--out", out]
        code, summary = apu(*args, "--json", *FAST, env=env)
        assert code == 0, summary
        assert summary["requests"] == 3 * 2 + 1  # 3 pairs × 2 samples, one 429 retried
        assert (summary["answered"], summary["failed"]) == (6, 0)
        assert len(srv.generation_requests()) == 7
        code, again = apu(*args, "--json", *FAST, env=env)
        assert code == 0 and (again["requests"], again["cached"]) == (0, 6)
        assert len(srv.generation_requests()) == 7
    check_dataset(out, summary)
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_user_mistakes_exit_2_with_one_line(tmp_path):
    code, output = apu("run", tmp_path / "missing.jsonl", "--provider", "heuristic", "--out", tmp_path / "d")
    assert code == 2 and output.strip().startswith("error:") and "not found" in output
    bad = tmp_path / "m.jsonl"
    bad.write_text(json.dumps({"image": "../escape.jpg", "people": []}) + "\n")
    code, output = apu("ask", bad, "--provider", "heuristic", "--out", tmp_path / "d")
    assert code == 2 and "outside the data root" in output
    code, output = apu("ask", MANIFEST, "--provider", "heuristic", "--batch", "--out", tmp_path / "d")
    assert code == 2 and "--batch" in output
    code, output = apu("ask", MANIFEST, "--provider", "nope", "--out", tmp_path / "d")
    assert code == 2 and "unknown provider" in output
