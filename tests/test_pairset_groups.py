"""Pair-set `contact_groups`: shape check on load, per-pair validation, and the engine's default grouping."""

from __future__ import annotations

import numpy as np
import pytest

from apu_jax.data.pairset import PairSetError, load_pairset, save_pairset, validate_pairs
from apu_jax.fit.run import contact_groups


def _arrays(n: int = 3, c: int = 4) -> dict[str, np.ndarray]:
    pairs = np.full((n, c, 2), -1, np.int32)
    pairs[:, :3] = [[0, 1], [0, 2], [5, 5]]
    return {
        "pair_id": np.asarray([f"p{i}" for i in range(n)]),
        "image_size": np.tile(np.array([640, 480], np.int32), (n, 1)),
        "keypoints": np.ones((n, 2, 25, 3), np.float32),
        "init_global_orient": np.zeros((n, 2, 3), np.float32),
        "init_body_pose": np.zeros((n, 2, 63), np.float32),
        "init_betas": np.zeros((n, 2, 10), np.float32),
        "init_transl": np.tile(np.array([0.0, 0.0, 3.0], np.float32), (n, 2, 1)),
        "contact_pairs": pairs,
        "contact_weights": np.where(pairs[..., 0] >= 0, 0.5, 0.0).astype(np.float32),
    }


def test_groups_are_loaded_validated_and_default_to_one_group_per_entry(tmp_path):
    arrays = _arrays()
    plain = load_pairset(save_pairset(tmp_path / "plain.npz", **arrays))
    # Without the key every entry is its own group (the paper's sum), padding included.
    np.testing.assert_array_equal(contact_groups(plain, np.arange(3)), np.tile(np.arange(4), (3, 1)))

    groups = np.tile(np.array([0, 0, 1, -1], np.int32), (3, 1))
    groups[2, 1] = 7  # out of range for C = 4 on a real entry
    grouped = load_pairset(save_pairset(tmp_path / "grouped.npz", contact_groups=groups, **arrays))
    errors = validate_pairs(grouped, num_regions=75, num_betas=10)
    assert errors[0] == "" and errors[1] == ""
    assert "contact group id" in errors[2]
    # Padding (-1) and out-of-range ids fall back to the entry's own index.
    np.testing.assert_array_equal(contact_groups(grouped, np.array([0, 2])), [[0, 0, 1, 3], [0, 1, 1, 3]])

    with pytest.raises(PairSetError, match="contact_groups"):
        load_pairset(save_pairset(tmp_path / "bad.npz", contact_groups=groups[:, :2], **arrays))
