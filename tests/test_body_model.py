"""Body model: parity with smplx (test oracle) on a synthetic official-layout file, and properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import apu_jax
from apu_jax.body import axis_angle_to_matrix, matrix_to_axis_angle, rotation_6d_to_matrix
from apu_jax.body.rotations import matrix_to_rotation_6d

torch = pytest.importorskip("torch")
smplx = pytest.importorskip("smplx")


def _random_params(rng, batch, num_betas, num_hand, dtype=np.float32):
    p = {
        "global_orient": rng.normal(0, 0.5, (batch, 3)),
        "body_pose": rng.normal(0, 0.5, (batch, 63)),
        "betas": rng.normal(0, 1.0, (batch, num_betas)),
        "transl": rng.normal(0, 1.0, (batch, 3)),
        "left_hand_pose": rng.normal(0, 0.5, (batch, num_hand)),
        "right_hand_pose": rng.normal(0, 0.5, (batch, num_hand)),
        "jaw_pose": rng.normal(0, 0.3, (batch, 3)),
        "leye_pose": rng.normal(0, 0.3, (batch, 3)),
        "reye_pose": rng.normal(0, 0.3, (batch, 3)),
        "expression": rng.normal(0, 1.0, (batch, 10)),
    }
    return {k: v.astype(dtype) for k, v in p.items()}


def _smplx_reference(path, params, batch, dtype=torch.float32, **kwargs):
    model = smplx.SMPLX(str(path), batch_size=batch, num_expression_coeffs=10, dtype=dtype, **kwargs)
    out = model(**{k: torch.tensor(v, dtype=dtype) for k, v in params.items()})
    return out.vertices.detach().numpy(), out.joints.detach().numpy()


@pytest.mark.parametrize(
    "options",
    [
        dict(use_pca=True, num_pca_comps=6, flat_hand_mean=False, kid=False),
        dict(use_pca=True, num_pca_comps=12, flat_hand_mean=False, kid=True),
        dict(use_pca=False, flat_hand_mean=True, kid=False),
        dict(use_pca=False, flat_hand_mean=False, kid=True),
    ],
    ids=["smplx-pca6-mean", "smplxa-pca12-mean", "smplx-aa-flat", "smplxa-aa-mean"],
)
def test_parity_with_smplx_float32(smplx_file, options, rng):
    path, kid = smplx_file
    options = dict(options)
    is_kid = options.pop("kid")
    num_hand = options.get("num_pca_comps", 6) if options["use_pca"] else 45
    kid_kwargs = dict(age="kid", kid_template_path=str(kid)) if is_kid else {}
    params = _random_params(rng, 3, 11 if is_kid else 10, num_hand)
    ref_v, ref_j = _smplx_reference(path, params, 3, num_betas=10, **options, **kid_kwargs)
    model = apu_jax.load_model(path, kid_template=kid if is_kid else None, num_betas=10, **options)
    out = apu_jax.forward(model, **params)
    assert out["joints"].shape == (3, 127, 3)
    assert np.abs(np.asarray(out["vertices"]) - ref_v).max() <= 1e-5
    assert np.abs(np.asarray(out["joints"]) - ref_j).max() <= 1e-5


@pytest.mark.parametrize("is_kid", [False, True], ids=["smplx", "smplxa"])
def test_parity_with_smplx_float64(smplx_file, is_kid, rng):
    path, kid = smplx_file
    params = _random_params(rng, 2, 11 if is_kid else 10, 6, np.float64)
    kid_kwargs = dict(age="kid", kid_template_path=str(kid)) if is_kid else {}
    ref_v, ref_j = _smplx_reference(path, params, 2, dtype=torch.float64, num_betas=10, **kid_kwargs)
    # smplx adds 1e-8 to every axis-angle component before Rodrigues (~1e-8 m at 1 m lever arms), and
    # rounds its shape directions to float32 even in float64 mode: the stored arrays are float32, so only
    # the kid offset, computed in float64 here, differs by that rounding.
    tol = 1e-6 if is_kid else 5e-8
    with jax.enable_x64(True):
        model = apu_jax.load_model(
            path, kid_template=kid if is_kid else None, num_betas=10, dtype=jnp.float64
        )
        out = apu_jax.forward(model, **params)
        assert out["vertices"].dtype == jnp.float64
        assert np.abs(np.asarray(out["vertices"]) - ref_v).max() <= tol
        assert np.abs(np.asarray(out["joints"]) - ref_j).max() <= tol


def test_kid_beta_interpolates_adult_to_kid(smplx_file):
    path, kid = smplx_file
    model = apu_jax.load_model(path, kid_template=kid, num_betas=10, use_pca=False, flat_hand_mean=True)
    assert model.num_betas == 11
    betas = np.zeros(11, np.float32)
    betas[-1] = 1.0
    kid_verts = np.load(kid)
    out = apu_jax.forward(model, betas=betas)["vertices"]
    np.testing.assert_allclose(np.asarray(out), kid_verts - kid_verts.mean(0), atol=1e-5)


def test_gradients_finite_at_zero_rotation(small_smplx_file):
    model = apu_jax.load_model(small_smplx_file)

    def loss(body_pose, global_orient):
        out = apu_jax.forward(model, body_pose=body_pose, global_orient=global_orient)
        return jnp.sum(out["vertices"] ** 2) + jnp.sum(out["joints"] ** 2)

    grads = jax.grad(loss, argnums=(0, 1))(jnp.zeros(63), jnp.zeros(3))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    assert np.abs(np.asarray(grads[0])).max() > 0  # the pose moves the mesh: a real gradient


def test_gradient_matches_finite_differences(small_smplx_file, rng):
    with jax.enable_x64(True):
        model = apu_jax.load_model(small_smplx_file, dtype=jnp.float64)
        pose = jnp.asarray(rng.normal(0, 0.3, 63))

        def loss(p):
            return jnp.sum(apu_jax.forward(model, body_pose=p)["vertices"][::7] ** 3)

        g = jax.grad(loss)(pose)
        for i in (0, 17, 62):
            e = jnp.zeros(63).at[i].set(1e-6)
            fd = (loss(pose + e) - loss(pose - e)) / 2e-6
            assert abs(float(fd) - float(g[i])) <= 1e-6 * max(1.0, abs(float(fd)))


def test_jit_vmap_and_batch_shapes_agree(small_smplx_file, rng):
    model = apu_jax.load_model(small_smplx_file)
    pose = rng.normal(0, 0.4, (2, 3, 63)).astype(np.float32)
    betas = rng.normal(0, 1, (3, model.num_betas)).astype(np.float32)  # broadcasts against (2, 3)
    eager = apu_jax.forward(model, body_pose=pose, betas=betas)["vertices"]
    jitted = jax.jit(lambda m, p, b: apu_jax.forward(m, body_pose=p, betas=b)["vertices"])(model, pose, betas)
    assert eager.shape == (2, 3, model.num_vertices, 3)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-5)
    single = apu_jax.forward(model, body_pose=pose[1, 2], betas=betas[2])["vertices"]
    np.testing.assert_allclose(np.asarray(eager[1, 2]), np.asarray(single), atol=1e-5)


def test_rest_pose_reproduces_template(small_smplx_file):
    model = apu_jax.load_model(small_smplx_file, flat_hand_mean=True)
    out = apu_jax.forward(model)
    np.testing.assert_allclose(np.asarray(out["vertices"]), np.asarray(model.v_template), atol=1e-6)


def test_rotations_round_trip_and_known_values(rng):
    aa = jnp.asarray(rng.normal(0, 1, (50, 3)))
    aa = aa * jnp.minimum(1.0, 3.0 / jnp.linalg.norm(aa, axis=-1, keepdims=True))
    r = axis_angle_to_matrix(aa)
    np.testing.assert_allclose(
        np.asarray(r @ jnp.swapaxes(r, -1, -2)), np.broadcast_to(np.eye(3), r.shape), atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(matrix_to_axis_angle(r)), np.asarray(aa), atol=1e-4)
    quarter = np.asarray(axis_angle_to_matrix(jnp.array([0.0, 0.0, np.pi / 2])))
    np.testing.assert_allclose(quarter @ np.array([1.0, 0, 0]), [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(rotation_6d_to_matrix(matrix_to_rotation_6d(r))), np.asarray(r), atol=1e-5
    )


def test_bad_model_files_name_the_problem(tmp_path, small_smplx_file):
    with pytest.raises(apu_jax.ModelFileError, match="not found"):
        apu_jax.load_model(tmp_path / "nope.npz")
    arrays = dict(np.load(small_smplx_file))
    del arrays["weights"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(apu_jax.ModelFileError, match="missing key 'weights'"):
        apu_jax.load_model(tmp_path / "missing.npz")
    arrays = dict(np.load(small_smplx_file))
    arrays["J_regressor"] = arrays["J_regressor"][:10]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(apu_jax.ModelFileError, match="'J_regressor' has shape"):
        apu_jax.load_model(tmp_path / "shape.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(apu_jax.ModelFileError, match="not a readable"):
        apu_jax.load_model(tmp_path / "junk.npz")


def test_unknown_parameter_is_a_clear_error(small_smplx_file):
    model = apu_jax.load_model(small_smplx_file)
    with pytest.raises(TypeError, match="unknown body parameters"):
        apu_jax.forward(model, bodypose=jnp.zeros(63))
