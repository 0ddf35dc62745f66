"""Rotation helpers written as explicit 3×3 algebra (cheap under vmap, finite gradients at zero)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Below this squared angle the Taylor series is exact to float32/float64 rounding.
_SMALL_ANGLE_SQ = 1e-8


def skew(v: jax.Array) -> jax.Array:
    """Cross-product matrix [v]×.

    Args:
        v: (..., 3) vectors.
    Returns:
        (..., 3, 3) matrices with skew(v) @ u == cross(v, u).
    """
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = jnp.zeros_like(x)
    return jnp.stack(
        [
            jnp.stack([zero, -z, y], axis=-1),
            jnp.stack([z, zero, -x], axis=-1),
            jnp.stack([-y, x, zero], axis=-1),
        ],
        axis=-2,
    )


def axis_angle_to_matrix(axis_angle: jax.Array) -> jax.Array:
    """Rodrigues' formula R = I + (sin θ/θ)[r]× + ((1 − cos θ)/θ²)[r]×².

    Uses the "double where" so both the value and the gradient are finite at θ = 0 (a single `where`
    still propagates NaN from the unused branch into the gradient).

    Args:
        axis_angle: (..., 3) rotation vectors, radians.
    Returns:
        (..., 3, 3) rotation matrices.
    """
    theta_sq = jnp.sum(axis_angle * axis_angle, axis=-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_theta_sq = jnp.where(small, jnp.ones_like(theta_sq), theta_sq)
    safe_theta = jnp.sqrt(safe_theta_sq)
    sin_over_theta = jnp.where(small, 1.0 - theta_sq / 6.0, jnp.sin(safe_theta) / safe_theta)
    one_minus_cos_over_theta_sq = jnp.where(
        small, 0.5 - theta_sq / 24.0, (1.0 - jnp.cos(safe_theta)) / safe_theta_sq
    )
    k = skew(axis_angle)
    eye = jnp.eye(3, dtype=axis_angle.dtype)
    return eye + sin_over_theta[..., None, None] * k + one_minus_cos_over_theta_sq[..., None, None] * (k @ k)


def matrix_to_axis_angle(matrix: jax.Array) -> jax.Array:
    """Inverse of `axis_angle_to_matrix` for angles in [0, π).

    Args:
        matrix: (..., 3, 3) rotation matrices.
    Returns:
        (..., 3) rotation vectors, radians.
    """
    trace = matrix[..., 0, 0] + matrix[..., 1, 1] + matrix[..., 2, 2]
    cos_theta = jnp.clip((trace - 1.0) / 2.0, -1.0, 1.0)
    vee = jnp.stack(
        [
            matrix[..., 2, 1] - matrix[..., 1, 2],
            matrix[..., 0, 2] - matrix[..., 2, 0],
            matrix[..., 1, 0] - matrix[..., 0, 1],
        ],
        axis=-1,
    )
    sin_theta = 0.5 * jnp.linalg.norm(vee, axis=-1)
    theta = jnp.arctan2(sin_theta, cos_theta)
    small = sin_theta < 1e-6
    safe_sin = jnp.where(small, jnp.ones_like(sin_theta), sin_theta)
    scale = jnp.where(small, 0.5 + theta**2 / 12.0, 0.5 * theta / safe_sin)
    return vee * scale[..., None]


def rotation_6d_to_matrix(rot6d: jax.Array) -> jax.Array:
    """Gram–Schmidt map from the 6D representation (first two columns) to a rotation matrix.

    Args:
        rot6d: (..., 6) = two stacked 3-vectors (a1, a2), as in Zhou et al. 2019 (row layout as PyTorch3D).
    Returns:
        (..., 3, 3) rotation matrices whose first two rows are the normalised a1 and orthogonalised a2.
    """
    a1, a2 = rot6d[..., :3], rot6d[..., 3:]
    b1 = a1 / jnp.linalg.norm(a1, axis=-1, keepdims=True)
    a2_perp = a2 - jnp.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = a2_perp / jnp.linalg.norm(a2_perp, axis=-1, keepdims=True)
    b3 = jnp.cross(b1, b2)
    return jnp.stack([b1, b2, b3], axis=-2)


def matrix_to_rotation_6d(matrix: jax.Array) -> jax.Array:
    """(..., 3, 3) → (..., 6): the first two rows, the inverse of `rotation_6d_to_matrix`."""
    return jnp.concatenate([matrix[..., 0, :], matrix[..., 1, :]], axis=-1)
