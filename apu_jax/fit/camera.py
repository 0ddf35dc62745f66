"""Pinhole camera in OpenCV coordinates (x right, y down, z forward), as used by the fit engine.

People live in camera coordinates (placed by their `transl`); a point `(x, y, z)` lands on pixel
`(fx * x / z + cx, fy * y / z + cy)`. The default intrinsics follow BUDDI: a 60° field of view across the
larger image side, i.e. `f = (max(W, H) / 2) / tan(30°)`, principal point at the image centre.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

# Depth (metres) below which a point is projected as if it were at this depth. Keeps the projection and its
# gradient finite for points at or behind the camera plane; such points land far outside any image, so the
# keypoint loss pushes them away rather than producing NaN/inf.
MIN_DEPTH = 1e-3


@struct.dataclass
class Camera:
    """Pinhole intrinsics of one image (no distortion, no rotation: people are in camera coordinates)."""

    focal: jax.Array  # (2,) [fx, fy] focal lengths, pixels
    principal: jax.Array  # (2,) [cx, cy] principal point, pixels


def default_focal(width: float, height: float) -> float:
    """BUDDI's focal length in pixels for a `width` x `height` image: `(max(W, H) / 2) / tan(30°)`."""
    return (max(width, height) / 2.0) / math.tan(math.radians(30.0))


def default_camera(width: float, height: float) -> Camera:
    """BUDDI's default camera for a `width` x `height` pixel image (square pixels, centred principal
    point)."""
    f = default_focal(width, height)
    return Camera(
        focal=jnp.array([f, f], dtype=jnp.float32),
        principal=jnp.array([width / 2.0, height / 2.0], dtype=jnp.float32),
    )


def project(camera: Camera, points: jax.Array, min_depth: float = MIN_DEPTH) -> jax.Array:
    """Project camera-frame points to pixels.

    Args:
        camera: intrinsics (a single camera; vmap over cameras outside).
        points: (..., 3) metres, camera frame (z forward).
        min_depth: depths below this (metres) are clamped to it, so the result and its gradient stay finite.

    Returns:
        (..., 2) pixel coordinates `f * xy / z + c`.
    """
    z = points[..., 2:3]
    # Clamping rather than dividing by |z|+eps: the clamp is exact for every point in front of the camera.
    # Its gradient w.r.t. z is zero below min_depth, which is fine: xy still receives a (large) finite
    # gradient.
    z_safe = jnp.maximum(z, min_depth)
    return camera.focal * points[..., :2] / z_safe + camera.principal
