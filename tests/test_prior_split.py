"""The temporal split of a pair set (apu_jax.prior.split) used by benchmarks/prior_dev.sh."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apu_jax.data.pairset import PairSet, PairSetError, load_pairset, save_pairset
from apu_jax.prior.split import main, split_by_frame


def _pairset(frames: list[int], with_frame: bool = True) -> dict:
    p = len(frames)
    arrays = {
        "pair_id": np.asarray([f"f{f:05d}_c{i}" for i, f in enumerate(frames)]),
        "image_size": np.tile(np.asarray([640, 480], np.int32), (p, 1)),
        "keypoints": np.zeros((p, 2, 25, 3), np.float32),
        "init_global_orient": np.zeros((p, 2, 3), np.float32),
        "init_body_pose": np.zeros((p, 2, 63), np.float32),
        "init_betas": np.arange(p * 2 * 4, dtype=np.float32).reshape(p, 2, 4),
        "init_transl": np.zeros((p, 2, 3), np.float32),
        "contact_pairs": -np.ones((p, 16, 2), np.int32),
        "contact_weights": np.zeros((p, 16), np.float32),
        "label": np.asarray(["walk, shake hands"] * p),
    }
    if with_frame:
        arrays["frame"] = np.stack([np.asarray(frames), np.asarray(frames) + 1], axis=1).astype(np.int32)
    return arrays


def test_split_by_frame_keeps_every_array_and_row():
    frames = [57, 57, 124, 130, 131, 200]
    train, test = split_by_frame(PairSet(_pairset(frames), {"model": "default"}), 130)
    assert train["frame"][:, 0].tolist() == [57, 57, 124]
    assert test["frame"][:, 0].tolist() == [130, 131, 200]  # the split frame itself goes to the test part
    # rows move together: betas of pair i stay with pair i's id
    np.testing.assert_array_equal(test["init_betas"], _pairset(frames)["init_betas"][3:])
    assert set(train.arrays) == set(test.arrays) == set(_pairset(frames))
    assert train.meta["split"] == {"by": "frame", "split_frame": 130, "part": "train"}
    assert test.meta["split"]["part"] == "test"


def test_split_needs_frames():
    with pytest.raises(PairSetError, match="frame"):
        split_by_frame(PairSet(_pairset([1, 2], with_frame=False)), 2)


def test_cli_writes_loadable_parts(tmp_path, capsys):
    save_pairset(tmp_path / "pairs.npz", {"source": "test"}, **_pairset([10, 20, 30, 40]))
    rc = main(
        [str(tmp_path / "pairs.npz"), "--frame", "25", "--train", str(tmp_path / "a.npz"), "--test",
         str(tmp_path / "b.npz"), "--json"]
    )  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"]["frames"] == [10, 20] and report["test"]["frames"] == [30, 40]
    a, b = load_pairset(tmp_path / "a.npz"), load_pairset(tmp_path / "b.npz")
    assert len(a) == 2 and len(b) == 2
    assert b.meta["split"]["source"].endswith("pairs.npz") and b.meta["source"] == "test"
    # an empty part and a missing file are one-line user errors (exit code 2)
    assert main([str(tmp_path / "pairs.npz"), "--frame", "5", "--train", "x.npz", "--test", "y.npz"]) == 2
    assert main([str(tmp_path / "nope.npz"), "--frame", "5", "--train", "x.npz", "--test", "y.npz"]) == 2
    assert "error:" in capsys.readouterr().err
