"""Synthetic pair sets with known ground truth, for tests and throughput benchmarks (not for evaluation:
the CMU benchmark of `apu synth` is the real one)."""

from __future__ import annotations

import numpy as np

from apu_jax.body.model import BodyModel, forward
from apu_jax.fit.camera import default_camera, project
from apu_jax.regions import model_to_keypoint_indices


def synthetic_pairs(
    model: BodyModel,
    num_pairs: int,
    seed: int = 0,
    image_size: tuple[int, int] = (1280, 720),
    pose_sigma: float = 0.2,
    init_sigma: float = 0.1,
    pixel_sigma: float = 2.0,
    contacts: tuple[tuple[int, int], ...] = ((3, 5),),
    contact_padding: int = 4,
) -> dict[str, np.ndarray]:
    """Arrays of a pair set (docs/FORMATS.md): two people side by side ~4 m in front of the camera.

    Ground truth: random body poses (σ = pose_sigma rad), betas N(0, 0.5²); keypoints = projected GT BODY-25
    joints + Gaussian pixel noise; initial estimate = GT + N(0, init_sigma²) on every parameter.

    Returns:
        Keyword arrays for `save_pairset`, including `gt_*` fields.
    """
    rng = np.random.default_rng(seed)
    shape = (num_pairs, 2)
    upright = np.array([np.pi, 0.0, 0.0])  # Y-up body → OpenCV camera (y down, z forward)
    gt = {
        "global_orient": upright + rng.normal(0, 0.1, shape + (3,)),
        "body_pose": rng.normal(0, pose_sigma, shape + (63,)),
        "betas": rng.normal(0, 0.5, shape + (model.num_betas,)),
        "transl": np.stack([[-0.45, 0.0, 4.0], [0.45, 0.0, 4.0]])[None] + rng.normal(0, 0.1, shape + (3,)),
    }
    gt = {k: v.astype(np.float32) for k, v in gt.items()}
    out = forward(model, **gt)
    width, height = image_size
    joints2d = np.asarray(project(default_camera(width, height), out["joints"]))
    body25 = joints2d[:, :, model_to_keypoint_indices("body25")]
    keypoints = np.concatenate(
        [body25 + rng.normal(0, pixel_sigma, body25.shape), np.ones(body25.shape[:-1] + (1,))], -1
    )
    contact_pairs = np.full((num_pairs, contact_padding, 2), -1, np.int32)
    contact_weights = np.zeros((num_pairs, contact_padding), np.float32)
    contact_pairs[:, : len(contacts)] = np.asarray(contacts, np.int32)
    contact_weights[:, : len(contacts)] = 1.0
    return {
        "pair_id": np.array([f"synthetic-{seed}-{i:06d}" for i in range(num_pairs)]),
        "image": np.array([""] * num_pairs),
        "image_size": np.tile(np.array(image_size, np.int32), (num_pairs, 1)),
        "keypoints": keypoints.astype(np.float32),
        **{f"init_{k}": (v + rng.normal(0, init_sigma, v.shape)).astype(np.float32) for k, v in gt.items()},
        "contact_pairs": contact_pairs,
        "contact_weights": contact_weights,
        **{f"gt_{k}": v for k, v in gt.items()},
        "gt_joints": np.asarray(out["joints"], np.float32),
    }
