"""Pair prior: schedule, x0 representation, denoiser, guidance (training: see test_prior_train)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import apu_jax
from apu_jax.body.rotations import axis_angle_to_matrix
from apu_jax.prior.denoiser import DenoiserConfig, apply_denoiser, init_denoiser_params
from apu_jax.prior.guidance import (
    GuidanceWeights,
    PriorModel,
    _rest_pelvis,
    denoise_target,
    diffusion_guidance_loss,
    reanchor,
    sample,
)
from apu_jax.prior.representation import (
    PairParams,
    PairX0,
    matrix_to_axis_angle,
    params_to_x0,
    swap_people,
    x0_to_params,
)
from apu_jax.prior.schedule import cosine_schedule, ddim_step, q_sample, sampling_timesteps

TINY = DenoiserConfig(num_betas=4, width=32, depth=2, heads=2, mlp_dim=48, dropout=0.1, conditional=True)
# Everything runs jitted: eager op-by-op dispatch of a transformer is far slower than one compile.
denoise = jax.jit(apply_denoiser, static_argnums=0)
to_x0 = jax.jit(params_to_x0)


def random_pair(rng: np.random.Generator, num_betas: int = 4) -> PairParams:
    """A plausible pair in an OpenCV camera: upright (half turn about x), 3 m away, person 1 to the side."""
    return PairParams(
        global_orient=jnp.asarray(np.array([math.pi, 0, 0]) + rng.normal(0, 0.3, (2, 3)), jnp.float32),
        body_pose=jnp.asarray(rng.normal(0, 0.3, (2, 63)), jnp.float32),
        betas=jnp.asarray(rng.normal(0, 1, (2, num_betas)), jnp.float32),
        transl=jnp.asarray(
            np.array([[0.0, 0.2, 3.0], [0.6, 0.1, 3.3]]) + rng.normal(0, 0.05, (2, 3)), jnp.float32
        ),
    )


# ----------------------------------------------------------------------------------------------- schedule


def test_cosine_schedule_values():
    s = cosine_schedule(1000)
    a = np.asarray(s.alphas_cumprod, np.float64)
    betas = np.asarray(s.betas, np.float64)
    assert a.shape == (1000,)
    assert np.all(np.diff(a) < 0)  # strictly more noise at every step
    assert a[0] > 0.9999 and a[-1] < 1e-6
    assert betas.max() <= 0.999 + 1e-7 and betas[-1] == pytest.approx(0.999)  # the clip is active at the end

    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    assert betas[0] == pytest.approx(1 - f(1 / 1000) / f(0), rel=1e-4)
    assert a[499] == pytest.approx(f(500 / 1000) / f(0), rel=1e-4)  # ᾱ_t = ā((t+1)/T) before the clip
    assert math.sqrt(1 - a[10]) == pytest.approx(0.0269, abs=5e-4)  # BUDDI's guidance noise level, t = 10


def test_q_sample_statistics():
    s = cosine_schedule(1000)
    x0 = jnp.full((200_000,), 2.0)
    noise = jax.random.normal(jax.random.PRNGKey(0), x0.shape)
    t = 400
    xt = np.asarray(q_sample(s, x0, jnp.asarray(t), noise))
    alpha = float(s.alphas_cumprod[t])
    assert xt.mean() == pytest.approx(2.0 * math.sqrt(alpha), abs=0.01)
    assert xt.std() == pytest.approx(math.sqrt(1 - alpha), rel=0.01)


def test_ddim_step_is_consistent_with_q_sample():
    # With a perfect x0 prediction and eta = 0, one DDIM step lands exactly on q(x_{t'} | x0) with the same ε.
    s = cosine_schedule(1000)
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.normal(size=(7,)), jnp.float32)
    eps = jnp.asarray(rng.normal(size=(7,)), jnp.float32)
    xt = q_sample(s, x0, jnp.asarray(700), eps)
    x_prev = ddim_step(s, xt, x0, jnp.asarray(700), jnp.asarray(300), 0.0, jnp.zeros(7))
    np.testing.assert_allclose(x_prev, q_sample(s, x0, jnp.asarray(300), eps), atol=1e-5)
    # The last step (t_prev = −1) returns the x0 prediction itself, whatever eta.
    x_end = ddim_step(s, xt, x0, jnp.asarray(700), jnp.asarray(-1), 1.0, jnp.ones(7))
    np.testing.assert_allclose(x_end, x0, atol=1e-6)


def test_sampling_timesteps():
    np.testing.assert_array_equal(
        sampling_timesteps(1000, 10), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    )


# ------------------------------------------------------------------------------------------ representation


def test_matrix_to_axis_angle_round_trip_including_half_turns():
    rng = np.random.default_rng(1)
    aa = rng.normal(0, 1.2, (500, 3))
    aa[0] = [math.pi, 0, 0]  # people in an OpenCV camera are close to this
    aa[1] = [0, -math.pi + 1e-4, 0]
    aa[2] = [0, 0, 0]
    aa[3] = [1e-7, 0, 0]
    aa[4] = np.array([1, 1, 1]) / math.sqrt(3) * (math.pi - 1e-3)
    mats = axis_angle_to_matrix(jnp.asarray(aa, jnp.float32))
    back = jax.jit(matrix_to_axis_angle)(mats)
    np.testing.assert_allclose(axis_angle_to_matrix(back), mats, atol=2e-5)
    assert np.all(np.linalg.norm(np.asarray(back), axis=-1) <= math.pi + 1e-5)


def test_params_x0_round_trip_and_relative_translation(rng):
    pair = random_pair(rng)
    x0 = to_x0(pair)
    assert x0.orient.shape == (2, 6) and x0.pose.shape == (2, 126) and x0.transl.shape == (2, 3)
    np.testing.assert_allclose(x0.transl[0], 0.0)
    np.testing.assert_allclose(x0.transl[1], pair.transl[1] - pair.transl[0], atol=1e-6)
    back = jax.jit(x0_to_params)(x0, pair.transl[0])
    for name in ("global_orient", "body_pose"):
        want = axis_angle_to_matrix(getattr(pair, name).reshape(2, -1, 3))
        got = axis_angle_to_matrix(getattr(back, name).reshape(2, -1, 3))
        np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(back.transl, pair.transl, atol=1e-6)
    np.testing.assert_allclose(back.betas, pair.betas)


def test_swap_people(rng):
    pair = random_pair(rng)
    x0 = to_x0(pair)
    swapped = swap_people(x0)
    np.testing.assert_allclose(swapped.transl[1], -x0.transl[1], atol=1e-6)
    np.testing.assert_allclose(swapped.pose[0], x0.pose[1])
    # Swapping parameters then relativising equals relativising then swapping.
    via_params = to_x0(swap_people(pair))
    for a, b in zip(jax.tree.leaves(via_params), jax.tree.leaves(swapped), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


# ----------------------------------------------------------------------------------------------- denoiser


def _x0_batch(rng, n, num_betas=4):
    return jax.vmap(params_to_x0)(
        jax.tree.map(lambda *xs: jnp.stack(xs), *[random_pair(rng, num_betas) for _ in range(n)])
    )


def test_denoiser_shapes_conditional_and_not(rng):
    x = _x0_batch(rng, 3)
    for config in (
        TINY,
        DenoiserConfig(num_betas=4, width=32, depth=1, heads=4, mlp_dim=32, conditional=False),
    ):
        params = init_denoiser_params(config, jax.random.PRNGKey(0))
        run = jax.jit(jax.vmap(apply_denoiser, in_axes=(None, None, 0, None, 0)), static_argnums=0)
        out = run(config, params, x, jnp.asarray(5), x)
        assert jax.tree.map(jnp.shape, out) == jax.tree.map(jnp.shape, x)
        assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(out))
    # Depth does not change the parameter tree's structure (blocks are scanned), only the stacked axis.
    deep = init_denoiser_params(
        DenoiserConfig(num_betas=4, width=32, depth=3, heads=2, mlp_dim=48), jax.random.PRNGKey(0)
    )
    assert jax.tree.leaves(deep["blocks"])[0].shape[0] == 3


def test_guidance_dropout_hides_the_condition(rng):
    params = init_denoiser_params(TINY, jax.random.PRNGKey(1))
    x = to_x0(random_pair(rng))
    c1 = to_x0(random_pair(rng))
    c2 = to_x0(random_pair(rng))
    t = jnp.asarray(50)
    hidden = jnp.zeros((2, 4), bool)
    same = denoise(TINY, params, x, t, c1, hidden), denoise(TINY, params, x, t, c2, hidden)
    for a, b in zip(jax.tree.leaves(same[0]), jax.tree.leaves(same[1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)  # a hidden condition cannot matter
    shown = denoise(TINY, params, x, t, c1), denoise(TINY, params, x, t, c2)
    diff = max(
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(shown[0]), jax.tree.leaves(shown[1]), strict=True)
    )
    assert diff > 1e-4  # a visible one does
    # Hiding one token only removes that token's information.
    one = hidden.at[1, 2].set(True)  # person 1's betas visible
    c3 = c1.replace(betas=c2.betas)
    a = denoise(TINY, params, x, t, c1, one)
    b = denoise(TINY, params, x, t, c3.replace(betas=c1.betas, pose=c2.pose), one)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, atol=1e-6)


def test_dropout_only_with_a_key(rng):
    params = init_denoiser_params(TINY, jax.random.PRNGKey(2))
    x = to_x0(random_pair(rng))
    t = jnp.asarray(3)
    det = [denoise(TINY, params, x, t, x) for _ in range(2)]
    np.testing.assert_array_equal(det[0].pose, det[1].pose)
    noisy = denoise(TINY, params, x, t, x, dropout_key=jax.random.PRNGKey(0))
    assert float(jnp.abs(noisy.pose - det[0].pose).max()) > 1e-5


# ----------------------------------------------------------------------------------------------- guidance


@pytest.fixture(scope="module")
def small_body(small_smplx_file):
    return apu_jax.load_model(small_smplx_file, num_betas=4)


def test_guidance_loss_value_and_gradient(rng):
    current = random_pair(rng)
    target = current.replace(
        body_pose=current.body_pose.at[0, :2].add(jnp.array([0.3, 0.4])),  # ‖Δθ₀‖ = 0.5
        betas=current.betas.at[1, 0].add(2.0),  # ‖Δβ₁‖ = 2
        transl=current.transl.at[1]
        .add(jnp.array([0.0, 0.0, 0.01]))
        .at[0]
        .add(5.0),  # Δrel = 1 cm − 5 m·(1,1,1)
    )
    w = GuidanceWeights(orient=0.0, pose=100.0, betas=10.0, transl=1e4)
    rel_err = np.linalg.norm(np.array([0.0, 0.0, 0.01]) - 5.0)
    expected = 100 * 0.5 + 10 * 2.0 + 1e4 * rel_err
    assert float(jax.jit(diffusion_guidance_loss)(current, target, w)) == pytest.approx(expected, rel=1e-4)
    # Non-squared norm: the gradient has the weight as its size, whatever the distance.
    grad = jax.jit(jax.grad(diffusion_guidance_loss, argnums=(0, 1)))
    g, g_target = grad(current, target, w)
    assert float(jnp.linalg.norm(g.body_pose[0])) == pytest.approx(100.0, rel=1e-4)
    assert float(jnp.abs(g.body_pose[1]).max()) < 1e-3  # person 1's pose is on target
    # Finite (zero) gradient at the target itself, and no gradient into the target.
    g0, _ = grad(current, current, w)
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(g0))
    assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(g0)) < 1e-3
    assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(g_target)) == 0.0


def test_reanchor_is_rigid(small_body, rng):
    pair = random_pair(rng)
    new_orient0 = jnp.array([math.pi - 0.4, 0.3, 0.1])
    new_transl0 = jnp.array([1.0, -0.5, 4.0])
    moved = jax.jit(reanchor)(small_body, pair, new_orient0, new_transl0)
    np.testing.assert_allclose(moved.global_orient[0], new_orient0, atol=1e-6)
    np.testing.assert_allclose(moved.transl[0], new_transl0, atol=1e-6)
    np.testing.assert_allclose(moved.body_pose, pair.body_pose)
    # The posed meshes of the moved pair are one rigid motion of the original ones: distances are preserved.
    forward = jax.jit(
        lambda body, p: apu_jax.forward(
            body, global_orient=p.global_orient, body_pose=p.body_pose, betas=p.betas, transl=p.transl
        )
    )
    before, after = forward(small_body, pair), forward(small_body, moved)
    vb, va = np.asarray(before["vertices"]), np.asarray(after["vertices"])
    idx = np.arange(0, vb.shape[1], 37)
    d_before = np.linalg.norm(vb[0, idx][:, None] - vb[1, idx][None], axis=-1)
    d_after = np.linalg.norm(va[0, idx][:, None] - va[1, idx][None], axis=-1)
    np.testing.assert_allclose(d_after, d_before, atol=2e-5)
    # Person 0 now sits where asked: its rest pelvis + transl is its posed root joint.
    root = np.asarray(after["joints"][0, 0])
    np.testing.assert_allclose(
        root, np.asarray(_rest_pelvis(small_body, pair.betas[0]) + new_transl0), atol=1e-5
    )


def test_denoise_target_keeps_person0_and_is_traceable(small_body, rng):
    prior = PriorModel(
        params=init_denoiser_params(TINY, jax.random.PRNGKey(0)), schedule=cosine_schedule(), config=TINY
    )
    pairs = jax.tree.map(lambda *xs: jnp.stack(xs), *[random_pair(rng) for _ in range(3)])
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    # vmapped over pairs with a traced t, as the fit engine calls it
    run = jax.jit(jax.vmap(denoise_target, in_axes=(None, None, 0, 0, None, 0)))
    out = run(prior, small_body, pairs, keys, jnp.asarray(10), pairs)
    assert jax.tree.map(jnp.shape, out) == jax.tree.map(jnp.shape, pairs)
    np.testing.assert_allclose(out.transl[:, 0], pairs.transl[:, 0], atol=1e-6)
    np.testing.assert_allclose(out.global_orient[:, 0], pairs.global_orient[:, 0], atol=1e-6)
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(out))


def test_sample_shapes_and_origin(rng):
    prior = PriorModel(
        params=init_denoiser_params(TINY, jax.random.PRNGKey(0)), schedule=cosine_schedule(), config=TINY
    )
    out = sample(prior, jax.random.PRNGKey(1), 5, num_steps=4)
    assert out.body_pose.shape == (5, 2, 63) and out.betas.shape == (5, 2, 4)
    np.testing.assert_allclose(out.transl[:, 0], 0.0)
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(out))
    # Different keys give different samples.
    other = sample(prior, jax.random.PRNGKey(2), 5, num_steps=4)
    assert float(jnp.abs(other.betas - out.betas).max()) > 1e-3


def test_pairx0_is_a_pytree():
    x = PairX0(
        orient=jnp.zeros((2, 6)), pose=jnp.zeros((2, 126)), betas=jnp.zeros((2, 4)), transl=jnp.zeros((2, 3))
    )
    assert len(jax.tree.leaves(x)) == 4
