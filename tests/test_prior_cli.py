"""`apu prior train` / `apu prior sample` from the command line (tiny configuration)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from apu_jax.body.synthetic import write_synthetic_smplx
from cli.prior import app

runner = CliRunner()
TINY_FLAGS = ["--width", "32", "--depth", "1", "--heads", "2", "--mlp-dim", "48", "--dropout", "0"]
TINY_FLAGS += ["--batch-size", "4", "--steps-per-call", "3"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A 600-vertex synthetic model with 4 shape directions (so 4 betas)."""
    folder = tmp_path_factory.mktemp("prior_cli_model")
    return write_synthetic_smplx(folder / "tiny.npz", num_vertices=600, seed=5, num_shape_dirs=4)


@pytest.fixture(scope="module")
def pairset(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 5
    path = tmp_path_factory.mktemp("prior_cli_data") / "gt.npz"
    params = {
        "global_orient": np.array([np.pi, 0, 0]) + rng.normal(0, 0.2, (n, 2, 3)),
        "body_pose": rng.normal(0, 0.2, (n, 2, 63)),
        "betas": rng.normal(0, 1, (n, 2, 4)),
        "transl": np.array([[0, 0, 3.0], [0.5, 0, 3.2]]) + rng.normal(0, 0.05, (n, 2, 3)),
    }
    arrays = {
        "meta": np.asarray(json.dumps({"format": "apu-pairset", "version": 1, "keypoint_format": "body25"})),
        "pair_id": np.asarray([f"p{i}" for i in range(n)]),
        "image_size": np.tile(np.array([640, 480], np.int32), (n, 1)),
        "keypoints": np.zeros((n, 2, 25, 3), np.float32),
        "contact_pairs": -np.ones((n, 1, 2), np.int32),
        "contact_weights": np.zeros((n, 1), np.float32),
    }
    for key, value in params.items():
        arrays[f"gt_{key}"] = value.astype(np.float32)
        arrays[f"init_{key}"] = (value + rng.normal(0, 0.05, value.shape)).astype(np.float32)
    np.savez(path, **arrays)
    return path


def test_train_then_sample(tmp_path, model_file, pairset):
    ckpt = tmp_path / "prior.npz"
    args = ["train", str(pairset), "--out", str(ckpt), "--steps", "6", "--model", str(model_file), "--json"]
    result = runner.invoke(app, args + TINY_FLAGS)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["step"] == 6 and report["start_step"] == 0
    assert report["sources"][0]["pairs"] == 5 and report["sources"][0]["conditioned"]
    assert ckpt.exists()
    # Rerunning with more steps resumes from the checkpoint.
    args[args.index("6")] = "9"
    again = json.loads(runner.invoke(app, args + TINY_FLAGS).stdout)
    assert again["start_step"] == 6 and again["step"] == 9

    samples = tmp_path / "samples.npz"
    out = runner.invoke(
        app, ["sample", str(ckpt), "--n", "3", "--steps", "2", "--no-stats", "--out", str(samples), "--json"]
    )
    assert out.exit_code == 0, out.output
    with np.load(samples) as f:
        assert f["body_pose"].shape == (3, 2, 63) and f["betas"].shape == (3, 2, 4)
        np.testing.assert_allclose(f["transl"][:, 0], 0.0)
        assert json.loads(str(f["meta"]))["format"] == "apu-prior-samples"


def test_user_errors_are_one_line(tmp_path, model_file, pairset):
    missing = runner.invoke(app, ["train", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "c.npz")])
    assert missing.exit_code == 2 and "error:" in missing.output and "Traceback" not in missing.output
    bad_heads = runner.invoke(app, ["train", str(pairset), "--out", str(tmp_path / "c.npz"), "--width", "30"])
    assert bad_heads.exit_code == 2 and "--heads" in bad_heads.output
    wrong_betas = runner.invoke(
        app, ["train", str(pairset), "--out", str(tmp_path / "c.npz"), "--steps", "1"]
    )
    assert wrong_betas.exit_code == 2 and "betas" in wrong_betas.output  # default model has 20 betas, data 4
    no_ckpt = runner.invoke(app, ["sample", str(tmp_path / "none.npz"), "--no-stats"])
    assert no_ckpt.exit_code == 2 and "not found" in no_ckpt.output
