"""The dataset export honours `apu view` marks over the automatic filter."""

from __future__ import annotations

import json

import numpy as np

from apu_jax.data.dataset import export_dataset
from apu_jax.data.pairset import FITS_FORMAT, atomic_savez, save_pairset
from apu_jax.fit.engine import TERMS


def test_export_honours_marks(tmp_path):
    n = 3
    ids = np.array(["a", "b", "c"])
    save_pairset(
        tmp_path / "pairs.npz",
        pair_id=ids,
        image=np.array([""] * n),
        image_size=np.tile([640, 480], (n, 1)).astype(np.int32),
        keypoints=np.ones((n, 2, 25, 3), np.float32),
        init_global_orient=np.zeros((n, 2, 3), np.float32),
        init_body_pose=np.zeros((n, 2, 63), np.float32),
        init_betas=np.zeros((n, 2, 20), np.float32),
        init_transl=np.tile([0.0, 0.0, 3.0], (n, 2, 1)).astype(np.float32),
        contact_pairs=np.full((n, 1, 2), -1, np.int32),
        contact_weights=np.zeros((n, 1), np.float32),
    )
    fits = tmp_path / "fits"
    fits.mkdir()
    (fits / "meta.json").write_text(json.dumps({"format": FITS_FORMAT, "version": 1, "terms": list(TERMS)}))
    atomic_savez(
        fits / "shard-00000.npz",
        pair_id=ids,
        error=np.array([""] * n),
        global_orient=np.zeros((n, 2, 3), np.float32),
        body_pose=np.zeros((n, 2, 63), np.float32),
        betas=np.zeros((n, 2, 20), np.float32),
        transl=np.zeros((n, 2, 3), np.float32),
        loss_history_stage1=np.zeros((n, 2), np.float32),
        loss_history_stage2=np.zeros((n, 2), np.float32),
        terms_stage1=np.zeros((n, len(TERMS)), np.float32),
        terms_stage2=np.zeros((n, len(TERMS)), np.float32),
        reproj_error=np.zeros((n, 2), np.float32),
        keep=np.array([True, True, False]),
    )
    assert export_dataset(tmp_path / "pairs.npz", fits, tmp_path / "d0.npz")["kept"] == 2
    marks = {"format": "apu-marks", "version": 1, "marks": {"a": "rejected", "c": "accepted"}}
    (fits / "marks.json").write_text(json.dumps(marks))
    out = export_dataset(tmp_path / "pairs.npz", fits, tmp_path / "d1.npz")
    assert out["kept"] == 2
    assert sorted(np.load(tmp_path / "d1.npz")["pair_id"].tolist()) == ["b", "c"]
