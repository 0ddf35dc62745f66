"""The diffusion variable x₀ of one interacting pair, and its conversion to and from body parameters.

x₀ holds, per person, four parameter groups (one transformer token each):
- ``orient``: global orientation, 6D rotation (first two rows of the matrix, Zhou et al. 2019);
- ``pose``: 21 body joints, 6D each (126 numbers);
- ``betas``: all B shape coefficients, including the SMPL-XA kid coefficient when the model has one;
- ``transl``: translation *relative to person 0*: person 0's is always 0, person 1's is t₁ − t₀ (metres).
Orientations stay in the camera frame (BUDDI's ``relative_orient: false``): the prior also learns how pairs
are usually seen, and the guidance target needs no frame change.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from apu_jax.body.rotations import axis_angle_to_matrix, matrix_to_rotation_6d, rotation_6d_to_matrix

NUM_BODY_JOINTS = 21
GROUPS: tuple[str, ...] = ("orient", "pose", "betas", "transl")  # token order within a person


@struct.dataclass
class PairParams:
    """Body parameters of one pair (leading batch axes allowed before the person axis)."""

    global_orient: jax.Array  # (2, 3) axis-angle, radians
    body_pose: jax.Array  # (2, 63) 21 body joints, axis-angle, radians
    betas: jax.Array  # (2, B) shape coefficients (B includes the kid coefficient for SMPL-XA)
    transl: jax.Array  # (2, 3) metres, camera frame


@struct.dataclass
class PairX0:
    """The diffusion variable of one pair: one entry per (person, parameter group) token."""

    orient: jax.Array  # (2, 6) 6D global orientation
    pose: jax.Array  # (2, 126) 6D rotations of the 21 body joints
    betas: jax.Array  # (2, B) shape coefficients
    transl: jax.Array  # (2, 3) metres; row 0 is 0, row 1 is t₁ − t₀


def group_sizes(num_betas: int) -> dict[str, int]:
    """Feature size of each token group for a model with `num_betas` shape coefficients."""
    return {"orient": 6, "pose": 6 * NUM_BODY_JOINTS, "betas": num_betas, "transl": 3}


def matrix_to_axis_angle(matrix: jax.Array) -> jax.Array:
    """Rotation matrix → axis-angle, valid on the whole rotation group including angles near π.

    Goes through a unit quaternion picked by Shepperd's rule (the largest of w, x, y, z is computed from the
    diagonal, so no division by a small number), then θ = 2·atan2(‖v‖, w) with w ≥ 0. People seen by an
    OpenCV camera have global orientations close to a half turn about x, where the trace-based formula fails.

    Args:
        matrix: (..., 3, 3) rotation matrices.
    Returns:
        (..., 3) rotation vectors with angle in [0, π], radians.
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4·q_i² for i = w, x, y, z; the largest one is well away from zero (≥ 1).
    four_sq = jnp.stack(
        [1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22], axis=-1
    )
    # Each row is 4·q_k·(w, x, y, z) for the branch k; dividing by 2·sqrt(4 q_k²) = 4|q_k| gives q.
    candidates = jnp.stack(
        [
            jnp.stack([four_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], axis=-1),
            jnp.stack([m21 - m12, four_sq[..., 1], m10 + m01, m02 + m20], axis=-1),
            jnp.stack([m02 - m20, m10 + m01, four_sq[..., 2], m21 + m12], axis=-1),
            jnp.stack([m10 - m01, m20 + m02, m21 + m12, four_sq[..., 3]], axis=-1),
        ],
        axis=-2,
    )
    best = jnp.argmax(four_sq, axis=-1)
    chosen = jnp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    denom = 2.0 * jnp.sqrt(jnp.maximum(jnp.take_along_axis(four_sq, best[..., None], axis=-1), 1e-12))
    quat = chosen / denom
    quat = jnp.where(quat[..., :1] < 0, -quat, quat)  # w ≥ 0 → angle ≤ π
    w, v = quat[..., 0], quat[..., 1:]
    sin_half_sq = jnp.sum(v * v, axis=-1)
    small = sin_half_sq < 1e-12
    safe_sin_half = jnp.sqrt(jnp.where(small, 1.0, sin_half_sq))
    angle = 2.0 * jnp.arctan2(safe_sin_half, w)
    # Small angles: θ ≈ 2‖v‖/w, so the vector is 2v/w (w ≈ 1 there).
    scale = jnp.where(small, 2.0 / jnp.maximum(w, 1e-6), angle / safe_sin_half)
    return v * scale[..., None]


def params_to_x0(params: PairParams) -> PairX0:
    """Body parameters of one pair → diffusion variable (any leading batch axes).

    Args:
        params: `PairParams` with person axis at -2.
    Returns:
        `PairX0` with relative translation.
    """
    pose_aa = params.body_pose.reshape(*params.body_pose.shape[:-1], NUM_BODY_JOINTS, 3)
    pose6d = matrix_to_rotation_6d(axis_angle_to_matrix(pose_aa))
    transl = params.transl
    relative = jnp.stack([jnp.zeros_like(transl[..., 0, :]), transl[..., 1, :] - transl[..., 0, :]], axis=-2)
    return PairX0(
        orient=matrix_to_rotation_6d(axis_angle_to_matrix(params.global_orient)),
        pose=pose6d.reshape(*pose6d.shape[:-2], 6 * NUM_BODY_JOINTS),
        betas=params.betas,
        transl=relative,
    )


def x0_rotations(x0: PairX0) -> tuple[jax.Array, jax.Array]:
    """Rotation matrices of a diffusion variable (Gram–Schmidt on the 6D vectors).

    Returns:
        orient (..., 2, 3, 3) and pose (..., 2, 21, 3, 3).
    """
    pose6d = x0.pose.reshape(*x0.pose.shape[:-1], NUM_BODY_JOINTS, 6)
    return rotation_6d_to_matrix(x0.orient), rotation_6d_to_matrix(pose6d)


def x0_to_params(x0: PairX0, anchor_transl: jax.Array) -> PairParams:
    """Diffusion variable → body parameters, placing person 0 at `anchor_transl`.

    Args:
        x0: `PairX0` (any leading batch axes).
        anchor_transl: (..., 3) metres, person 0's camera-frame translation (e.g. the current estimate's).
    Returns:
        `PairParams` with axis-angle rotations; transl[0] = anchor, transl[1] = anchor + relative.
    """
    orient_mat, pose_mat = x0_rotations(x0)
    pose_aa = matrix_to_axis_angle(pose_mat)
    transl = anchor_transl[..., None, :] + x0.transl.at[..., 0, :].set(0.0)
    return PairParams(
        global_orient=matrix_to_axis_angle(orient_mat),
        body_pose=pose_aa.reshape(*pose_aa.shape[:-2], 3 * NUM_BODY_JOINTS),
        betas=x0.betas,
        transl=transl,
    )


def swap_people(tree: PairX0 | PairParams) -> PairX0 | PairParams:
    """Exchange person 0 and person 1 (axis −2 of every field); re-relativise translations for `PairX0`."""
    swapped = jax.tree.map(lambda a: jnp.flip(a, axis=-2), tree)
    if isinstance(tree, PairX0):
        # Old person 1 (now row 0) becomes the anchor: new relative translation is t₀ − t₁ = −old relative.
        rel = tree.transl[..., 1, :]
        swapped = swapped.replace(transl=jnp.stack([jnp.zeros_like(rel), -rel], axis=-2))
    return swapped
