"""Camera: BUDDI's default intrinsics, OpenCV projection, finiteness at z≈0, jit/vmap consistency."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apu_jax.fit.camera import MIN_DEPTH, Camera, default_camera, default_focal, project


def test_default_camera_matches_buddi_formula():
    cam = default_camera(640, 480)
    f = 320.0 / math.tan(math.radians(30.0))  # 554.256 px: 60° across the larger side
    np.testing.assert_allclose(np.asarray(cam.focal), [f, f], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cam.principal), [320.0, 240.0])
    # Portrait: the larger side is the height.
    assert default_focal(480, 1000) == pytest.approx(500.0 / math.tan(math.radians(30.0)))
    np.testing.assert_allclose(np.asarray(default_camera(480, 1000).principal), [240.0, 500.0])


def test_project_known_points_opencv_convention():
    cam = Camera(focal=jnp.array([500.0, 400.0]), principal=jnp.array([320.0, 240.0]))
    points = jnp.array([[0.0, 0.0, 3.0], [0.2, -0.1, 2.0], [-1.0, 1.0, 4.0]])
    expected = np.array([[320.0, 240.0], [320.0 + 50.0, 240.0 - 20.0], [320.0 - 125.0, 240.0 + 100.0]])
    np.testing.assert_allclose(np.asarray(project(cam, points)), expected, rtol=1e-6)
    # x right / y down: a point to the right and below the axis lands right of and below the centre.
    u, v = np.asarray(project(cam, jnp.array([0.1, 0.1, 1.0])))
    assert u > 320.0 and v > 240.0


def test_project_any_leading_shape():
    cam = default_camera(100, 100)
    points = jax.random.normal(jax.random.key(0), (2, 5, 7, 3)) + jnp.array([0.0, 0.0, 5.0])
    out = project(cam, points)
    assert out.shape == (2, 5, 7, 2)
    np.testing.assert_allclose(np.asarray(out[1, 2, 3]), np.asarray(project(cam, points[1, 2, 3])), rtol=1e-6)


def test_project_gradient_matches_hand_formula():
    cam = Camera(focal=jnp.array([500.0, 400.0]), principal=jnp.array([10.0, 20.0]))
    p = jnp.array([0.3, -0.2, 2.0])
    jac = np.asarray(jax.jacobian(lambda x: project(cam, x))(p))
    x, y, z = 0.3, -0.2, 2.0
    expected = np.array([[500.0 / z, 0.0, -500.0 * x / z**2], [0.0, 400.0 / z, -400.0 * y / z**2]])
    np.testing.assert_allclose(jac, expected, rtol=1e-5)


@pytest.mark.parametrize("z", [0.0, -1.0, 1e-9])
def test_project_finite_at_and_behind_camera_plane(z):
    cam = default_camera(640, 480)
    p = jnp.array([0.5, -0.5, z], dtype=jnp.float32)
    out = project(cam, p)
    grad = jax.grad(lambda x: jnp.sum(project(cam, x) ** 2))(p)
    assert np.all(np.isfinite(np.asarray(out))) and np.all(np.isfinite(np.asarray(grad)))
    # Clamped to MIN_DEPTH: exactly the projection of the same xy at that depth.
    expected = np.asarray(cam.focal) * np.array([0.5, -0.5]) / MIN_DEPTH + np.asarray(cam.principal)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5)


def test_camera_jit_and_vmap_match_loop():
    cams = Camera(
        focal=jnp.array([[500.0, 500.0], [800.0, 700.0]]), principal=jnp.array([[1.0, 2.0], [3.0, 4.0]])
    )
    points = jax.random.normal(jax.random.key(1), (2, 6, 3)) + jnp.array([0.0, 0.0, 4.0])
    batched = jax.jit(jax.vmap(project))(cams, points)
    for i in range(2):
        cam_i = jax.tree_util.tree_map(lambda a, i=i: a[i], cams)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(project(cam_i, points[i])), rtol=1e-6)
