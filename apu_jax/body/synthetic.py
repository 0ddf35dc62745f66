"""Synthetic SMPL-X files in the official layout, for parity tests and benchmarks (no licensed data).

Random but sane arrays with the official shapes: a skeleton with random bone offsets along the SMPL-X tree,
vertices scattered around their owning joint, convex skinning weights (owner 0.8, parent 0.2), a convex joint
regressor, small shape/pose blend shapes, orthonormal hand PCA and random face landmarks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from apu_jax.body.model import NUM_FACE_LANDMARKS, NUM_JOINTS, SMPLX_EXTRA_VERTEX_IDS, SMPLX_PARENTS

OFFICIAL_NUM_VERTICES = 10475
OFFICIAL_NUM_FACES = 20908


def synthetic_smplx_arrays(
    num_vertices: int = OFFICIAL_NUM_VERTICES,
    num_faces: int = OFFICIAL_NUM_FACES,
    num_shape_dirs: int = 400,
    seed: int = 0,
    dtype: type = np.float32,
) -> dict[str, np.ndarray]:
    """Arrays of an official-layout SMPL-X file.

    Args:
        num_vertices: V (smplx itself needs V ≥ 9930 for its hard-coded extra-joint vertex ids).
        num_faces: F.
        num_shape_dirs: K of shapedirs (V, 3, K); 400 = 300 shape + 100 expression as in v1.1 files.
        seed: random seed.
        dtype: float dtype of the stored arrays (float32 keeps smplx's float64 path exact).
    Returns:
        Dict of arrays keyed as in `SMPLX_NEUTRAL.npz`.
    """
    if num_vertices < NUM_JOINTS * 4:
        raise ValueError(f"num_vertices must be at least {NUM_JOINTS * 4}")
    rng = np.random.default_rng(seed)
    parents = np.asarray(SMPLX_PARENTS)
    joints = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        joints[j] = joints[parents[j]] + rng.normal(0.0, 0.08, 3)
    # Every joint owns at least a few vertices; the rest are spread at random.
    owner = np.concatenate(
        [np.repeat(np.arange(NUM_JOINTS), 4), rng.integers(0, NUM_JOINTS, num_vertices - NUM_JOINTS * 4)]
    )
    rng.shuffle(owner)
    v_template = joints[owner] + rng.normal(0.0, 0.03, (num_vertices, 3))
    weights = np.zeros((num_vertices, NUM_JOINTS))
    weights[np.arange(num_vertices), owner] = 0.8
    weights[np.arange(num_vertices), np.maximum(parents[owner], 0)] += 0.2
    j_regressor = np.zeros((NUM_JOINTS, num_vertices))
    for j in range(NUM_JOINTS):
        ids = np.flatnonzero(owner == j)
        w = rng.uniform(0.5, 1.0, ids.size)
        j_regressor[j, ids] = w / w.sum()
    hands = {}
    for side in ("l", "r"):
        q, _ = np.linalg.qr(rng.normal(size=(45, 45)))
        hands[f"hands_components{side}"] = q.astype(dtype)
        hands[f"hands_mean{side}"] = rng.normal(0.0, 0.1, 45).astype(dtype)
    kintree = np.stack([np.where(parents < 0, 4294967295, parents), np.arange(NUM_JOINTS)]).astype(np.int64)
    return {
        "v_template": v_template.astype(dtype),
        "f": rng.integers(0, num_vertices, (num_faces, 3)).astype(np.uint32),
        "shapedirs": rng.normal(0.0, 1e-3 * 3, (num_vertices, 3, num_shape_dirs)).astype(dtype),
        "posedirs": rng.normal(0.0, 1e-3 * 3, (num_vertices, 3, (NUM_JOINTS - 1) * 9)).astype(dtype),
        "J_regressor": j_regressor.astype(dtype),
        "weights": weights.astype(dtype),
        "kintree_table": kintree,
        "lmk_faces_idx": rng.integers(0, num_faces, NUM_FACE_LANDMARKS).astype(np.int64),
        "lmk_bary_coords": rng.dirichlet(np.ones(3), NUM_FACE_LANDMARKS).astype(dtype),
        "dynamic_lmk_faces_idx": rng.integers(0, num_faces, (79, 17)).astype(np.int64),
        "dynamic_lmk_bary_coords": rng.dirichlet(np.ones(3), (79, 17)).astype(dtype),
        **hands,
    }


def write_synthetic_smplx(
    path: str | os.PathLike,
    num_vertices: int = OFFICIAL_NUM_VERTICES,
    seed: int = 0,
    kid_template_path: str | os.PathLike | None = None,
    num_faces: int | None = None,
    num_shape_dirs: int = 400,
) -> Path:
    """Write a synthetic official-layout `SMPLX_*.npz` (and optionally a kid template `.npy`).

    Returns:
        The model file path.
    """
    faces = (
        num_faces
        if num_faces is not None
        else (OFFICIAL_NUM_FACES if num_vertices == OFFICIAL_NUM_VERTICES else 2 * num_vertices)
    )
    arrays = synthetic_smplx_arrays(num_vertices, faces, num_shape_dirs, seed)
    if num_vertices <= max(SMPLX_EXTRA_VERTEX_IDS):
        # smplx cannot load such a small file anyway; our loader takes the extra joints from this key and,
        # as for our own model files, then treats every shape direction as a beta.
        arrays["extra_vertex_ids"] = (
            np.random.default_rng(seed + 2).choice(num_vertices, 21, replace=False).astype(np.int32)
        )
    path = Path(path)
    np.savez(path, **arrays)
    if kid_template_path is not None:
        rng = np.random.default_rng(seed + 1)
        kid = 0.7 * arrays["v_template"] + rng.normal(0.0, 0.005, arrays["v_template"].shape)
        np.save(kid_template_path, kid.astype(np.float32))
    return path
