"""Fit losses: values and gradients on hand-computable cases, padding, float32 safety, jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apu_jax.fit.losses import (
    contact_loss,
    contact_loss_bytes,
    contact_loss_per_ordering,
    gmof,
    keypoint_loss,
    keypoint_reprojection_error,
    keypoint_scale,
    pose_init_prior,
    region_min_sq_dist,
    shape_prior,
)

# --- keypoints

# Visible box: x in [0, 100], y in [0, 50] -> s = 100, scale 512/100 = 5.12. The 4th keypoint is missing
# (confidence 0) and far away: it must not widen the box or contribute.
KEYPOINTS = jnp.array([[0.0, 0.0, 1.0], [100.0, 0.0, 0.5], [0.0, 50.0, 2.0], [900.0, 900.0, 0.0]])
SCALE = 5.12


def test_keypoint_scale_uses_visible_box_only():
    assert float(keypoint_scale(KEYPOINTS)) == pytest.approx(SCALE)
    tall = KEYPOINTS.at[2, 1].set(200.0)  # box 100 x 200 -> s = 200
    assert float(keypoint_scale(tall)) == pytest.approx(512.0 / 200.0)


@pytest.mark.parametrize("visible", [0, 1])
def test_keypoint_scale_guard_with_fewer_than_two_visible(visible):
    kp = KEYPOINTS.at[:, 2].set(0.0).at[:visible, 2].set(1.0)
    assert float(keypoint_scale(kp)) == 1.0  # undefined box: raw pixels, finite


def test_keypoint_loss_value_and_gradient():
    offsets = jnp.array([[3.0, 4.0], [0.0, -2.0], [1.0, 0.0], [50.0, 50.0]])
    projected = KEYPOINTS[:, :2] + offsets
    # Σ c_k |offset_k|² s²: 1·25 + 0.5·4 + 2·1 = 29 (missing keypoint ignored), times 5.12².
    expected = 29.0 * SCALE**2
    assert float(keypoint_loss(projected, KEYPOINTS)) == pytest.approx(expected, rel=1e-5)
    grad = np.asarray(jax.grad(keypoint_loss)(projected, KEYPOINTS))
    conf = np.array([1.0, 0.5, 2.0, 0.0])
    np.testing.assert_allclose(grad, 2.0 * conf[:, None] * SCALE**2 * np.asarray(offsets), rtol=1e-5)


def test_keypoint_loss_is_resolution_invariant():
    offsets = jnp.array([[3.0, 4.0], [0.0, -2.0], [1.0, 0.0], [0.0, 0.0]])
    loss = keypoint_loss(KEYPOINTS[:, :2] + offsets, KEYPOINTS)
    big = KEYPOINTS.at[:, :2].multiply(3.0)
    assert float(keypoint_loss(big[:, :2] + 3.0 * offsets, big)) == pytest.approx(float(loss), rel=1e-5)


def test_gmof_value_and_keypoint_loss_with_traced_rho():
    assert float(gmof(jnp.float32(100.0), 10.0)) == pytest.approx(50.0)  # 100·100/(100+100)
    assert float(gmof(jnp.float32(1e-4), 10.0)) == pytest.approx(1e-4, rel=1e-5)  # quadratic near 0
    offsets = jnp.array([[3.0, 4.0], [0.0, -2.0], [1.0, 0.0], [0.0, 0.0]])
    projected = KEYPOINTS[:, :2] + offsets
    sq = np.array([25.0, 4.0, 1.0]) * SCALE**2
    conf = np.array([1.0, 0.5, 2.0])

    @jax.jit
    def robust(rho):
        return keypoint_loss(projected, KEYPOINTS, robust_sigma=rho)

    for rho in (10.0, 30.0):
        expected = np.sum(conf * rho**2 * sq / (rho**2 + sq))
        assert float(robust(jnp.float32(rho))) == pytest.approx(expected, rel=1e-5)
    assert robust._cache_size() == 1  # rho is traced: changing it does not recompile


def test_keypoint_loss_ignores_nan_coordinates_of_missing_keypoints():
    kp = KEYPOINTS.at[3, :2].set(jnp.nan)
    projected = KEYPOINTS[:, :2] + 1.0
    loss, grad = jax.value_and_grad(keypoint_loss)(projected, kp)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_array_equal(np.asarray(grad[3]), [0.0, 0.0])


def test_reprojection_error_definition_and_zero_residual_gradient():
    offsets = jnp.array([[3.0, 4.0], [0.0, -2.0], [1.0, 0.0], [50.0, 50.0]])
    err = keypoint_reprojection_error(KEYPOINTS[:, :2] + offsets, KEYPOINTS)
    # Confidence-weighted mean of |offset| in 512-box px: (1·5 + 0.5·2 + 2·1) / 3.5 · 5.12.
    assert float(err) == pytest.approx((5.0 + 1.0 + 2.0) / 3.5 * SCALE, rel=1e-5)
    grad = jax.grad(keypoint_reprojection_error)(KEYPOINTS[:, :2], KEYPOINTS)
    assert np.all(np.isfinite(np.asarray(grad)))
    assert float(keypoint_reprojection_error(KEYPOINTS[:, :2], KEYPOINTS.at[:, 2].set(0.0))) == np.inf


# --- contact


def _single_vertex_regions(num_regions: int = 3, width: int = 4):
    """Region r = {vertex r} padded to `width` with masked entries pointing at vertex 0."""
    ids = jnp.zeros((num_regions, width), dtype=jnp.int32).at[:, 0].set(jnp.arange(num_regions))
    mask = jnp.zeros((num_regions, width), dtype=bool).at[:, 0].set(True)
    return ids, mask


def test_region_min_sq_dist_single_vertices_value_and_gradient():
    va = jnp.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    vb = jnp.array([[1.0, 2.0, 2.0], [9.0, 9.0, 9.0]])
    ids, mask = jnp.array([1]), jnp.array([True])
    ids_b = jnp.array([0])
    d2, (ga, gb) = jax.value_and_grad(region_min_sq_dist, argnums=(0, 1))(va, vb, ids, mask, ids_b, mask)
    assert float(d2) == pytest.approx(1.0)  # (1,2,3) vs (1,2,2)
    np.testing.assert_allclose(np.asarray(ga), [[0, 0, 0], [0, 0, 2.0]])  # 2(v - u)
    np.testing.assert_allclose(np.asarray(gb), [[0, 0, -2.0], [0, 0, 0]])


def test_region_min_sq_dist_matches_brute_force_and_respects_mask():
    rng = np.random.default_rng(0)
    va, vb = rng.normal(size=(50, 3)).astype(np.float32), rng.normal(size=(40, 3)).astype(np.float32)
    ids_a, ids_b = rng.integers(0, 50, 12), rng.integers(0, 40, 9)
    mask_a, mask_b = rng.random(12) < 0.7, rng.random(9) < 0.7
    mask_a[0] = mask_b[0] = True
    d = np.sum((va[ids_a][:, None] - vb[ids_b][None]) ** 2, -1)
    expected = d[mask_a][:, mask_b].min()
    assert expected > d.min()  # the mask matters in this draw
    got = region_min_sq_dist(*map(jnp.asarray, (va, vb, ids_a, mask_a, ids_b, mask_b)))
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    empty = region_min_sq_dist(*map(jnp.asarray, (va, vb, ids_a, np.zeros(12, bool), ids_b, mask_b)))
    assert float(empty) == np.inf


def test_region_min_sq_dist_zero_distance_has_finite_gradient():
    v = jnp.ones((3, 3), dtype=jnp.float32)
    ids, mask = jnp.array([0, 1]), jnp.array([True, True])
    d2, (ga, gb) = jax.value_and_grad(region_min_sq_dist, argnums=(0, 1))(v, v, ids, mask, ids, mask)
    assert float(d2) == 0.0
    assert np.all(np.asarray(ga) == 0.0) and np.all(np.asarray(gb) == 0.0)


def test_contact_loss_single_vertex_regions_value_and_gradient():
    ids, mask = _single_vertex_regions()
    verts0 = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    verts1 = jnp.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.0], [-5.0, -5.0, -5.0]])
    weights = jnp.array([0.7])
    # Contact (1, 0). As given: person 0 vertex 1 (1,0,0) vs person 1 vertex 0 (0,0,0.5): d² = 1.25.
    # Swapped: person 1 vertex 1 (0,0,0) vs person 0 vertex 0 (0,0,0): d² = 0.
    per = jax.jit(contact_loss_per_ordering)(
        verts0, verts1, ids, mask, jnp.array([[1, 0]], jnp.int32), weights
    )
    np.testing.assert_allclose(np.asarray(per), [0.7 * 1.25, 0.0], atol=1e-7)
    # Contact (0, 0): both orderings compare (0,0,0) with (0,0,0.5): loss = w·d² = 0.7·0.25, and the
    # gradient is 2w(v − u) on person 0's vertex 0 and the opposite on person 1's vertex 0, zero elsewhere.
    loss, (g0, g1) = jax.jit(jax.value_and_grad(contact_loss, argnums=(0, 1)))(
        verts0, verts1, ids, mask, jnp.array([[0, 0]], jnp.int32), weights
    )
    assert float(loss) == pytest.approx(0.7 * 0.25)
    expected0 = np.zeros((3, 3))
    expected0[0] = 2 * 0.7 * np.array([0.0, 0.0, -0.5])
    np.testing.assert_allclose(np.asarray(g0), expected0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(g1), -expected0, rtol=1e-6, atol=1e-7)


def test_contact_loss_takes_the_cheaper_person_ordering():
    ids, mask = _single_vertex_regions()
    verts0 = jnp.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    verts1 = jnp.array([[3.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    pairs, weights = jnp.array([[0, 1]], jnp.int32), jnp.array([2.0])
    # As given: region 0 of person 0 (0,0,0) vs region 1 of person 1 (0,0,0): 0.
    # Swapped: region 0 of person 1 (3,0,1) vs region 1 of person 0 (3,0,0): 1 -> weighted 2.
    np.testing.assert_allclose(
        np.asarray(contact_loss_per_ordering(verts0, verts1, ids, mask, pairs, weights)), [0, 2]
    )
    assert float(contact_loss(verts0, verts1, ids, mask, pairs, weights)) == 0.0
    # Swapping the people's roles swaps the orderings; the loss is unchanged.
    np.testing.assert_allclose(
        np.asarray(contact_loss_per_ordering(verts1, verts0, ids, mask, pairs, weights)), [2, 0]
    )
    # Move person 0 so the given ordering becomes the expensive one: the min and its gradient switch.
    verts0b = verts0.at[0].set(jnp.array([0.0, 0.0, 4.0]))  # given: 16·2 = 32 > swapped: 2
    loss, g1 = jax.value_and_grad(contact_loss, argnums=1)(verts0b, verts1, ids, mask, pairs, weights)
    assert float(loss) == pytest.approx(2.0)
    # Gradient of the swapped term w.r.t. person 1's region-0 vertex (3,0,1): 2w(v − u) = 2·2·(0,0,1).
    np.testing.assert_allclose(np.asarray(g1[0]), [0.0, 0.0, 4.0], rtol=1e-6)


def test_contact_groups_take_the_closest_region_pair_and_the_robust_scale_saturates():
    ids, mask = _single_vertex_regions()
    verts0 = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    verts1 = jnp.array([[0.0, 0.0, 0.3], [1.0, 0.0, 0.1], [9.0, 9.0, 9.0]])
    # Three region pairs: (0,0) d² = 0.09, (1,1) d² = 0.01, (2,2) far; weights 0.5, 0.8, 0.4.
    pairs = jnp.array([[0, 0], [1, 1], [2, 2]], jnp.int32)
    weights = jnp.array([0.5, 0.8, 0.4])
    far = 81.0 + 49.0 + 81.0
    # Given ordering only (the swapped one pairs the same vertices here, so both orderings agree).
    every = contact_loss(verts0, verts1, ids, mask, pairs, weights)
    assert float(every) == pytest.approx(0.5 * 0.09 + 0.8 * 0.01 + 0.4 * far, rel=1e-5)
    # Entries 0 and 1 are one part-level contact: it costs max weight 0.8 × the closer pair's 0.01.
    groups = jnp.array([0, 0, 2], jnp.int32)
    grouped, grad0 = jax.value_and_grad(contact_loss)(verts0, verts1, ids, mask, pairs, weights, None, groups)
    assert float(grouped) == pytest.approx(0.8 * 0.01 + 0.4 * far, rel=1e-5)
    # Only the chosen pair (vertex 1) and the far one get a gradient: 2w(v − u).
    np.testing.assert_allclose(np.asarray(grad0[0]), [0.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad0[1]), 2 * 0.8 * np.array([0.0, 0.0, -0.1]), rtol=1e-5)
    # Identity groups reproduce the ungrouped sum.
    same = contact_loss(verts0, verts1, ids, mask, pairs, weights, None, jnp.arange(3, dtype=jnp.int32))
    assert float(same) == pytest.approx(float(every), rel=1e-6)
    # GMoF with rho = 1 m: the far pair saturates near rho² = 1 (d²/(1 + d²) = 211/212), near pairs barely
    # change (0.01 → 0.01/1.01).
    robust = contact_loss(verts0, verts1, ids, mask, pairs, weights, 1.0, groups)
    assert float(robust) == pytest.approx(0.8 * 0.01 / 1.01 + 0.4 * far / (1.0 + far), rel=1e-5)


def test_contact_loss_padding_and_empty_regions_contribute_nothing():
    value_and_grad = jax.jit(jax.value_and_grad(contact_loss, argnums=(0, 1)))
    ids, mask = _single_vertex_regions()
    verts0 = jax.random.normal(jax.random.key(0), (3, 3))
    verts1 = jax.random.normal(jax.random.key(1), (3, 3))
    pairs, weights = jnp.array([[0, 2], [1, 1]], jnp.int32), jnp.array([0.3, 0.9])
    base = value_and_grad(verts0, verts1, ids, mask, pairs, weights)
    padded_pairs = jnp.array([[0, 2], [-1, -1], [1, 1], [-1, 2], [2, -1]], jnp.int32)
    padded_weights = jnp.array([0.3, 100.0, 0.9, 100.0, 100.0])  # padding weight must be ignored
    padded = value_and_grad(verts0, verts1, ids, mask, padded_pairs, padded_weights)
    for a, b in zip(jax.tree_util.tree_leaves(base), jax.tree_util.tree_leaves(padded), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    # A contact whose region is empty (all masked) also contributes exactly 0, with finite gradient.
    empty_mask = mask.at[2].set(False)
    loss, grads = value_and_grad(verts0, verts1, ids, empty_mask, pairs, weights)
    alone = jax.jit(contact_loss)(verts0, verts1, ids, mask, pairs[1:], weights[1:])
    assert float(loss) == pytest.approx(float(alone), rel=1e-6)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    # No contacts at all -> 0.
    none = jax.jit(contact_loss)(verts0, verts1, ids, mask, jnp.full((4, 2), -1, jnp.int32), jnp.ones(4))
    assert float(none) == 0.0


def _random_contact_problem(seed: int, num_regions: int = 6, width: int = 7, num_contacts: int = 4):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 30, (num_regions, width)).astype(np.int32)
    mask = rng.random((num_regions, width)) < 0.8
    mask[:, 0] = True
    pairs = rng.integers(0, num_regions, (num_contacts, 2)).astype(np.int32)
    pairs[-1] = -1
    weights = rng.random(num_contacts).astype(np.float32)
    verts = rng.normal(size=(2, 30, 3)).astype(np.float32)
    return [jnp.asarray(x) for x in (verts[0], verts[1], ids, mask, pairs, weights)]


def _brute_contact(v0, v1, ids, mask, pairs, weights):
    totals = []
    for a, b in ((v0, v1), (v1, v0)):
        total = 0.0
        for (ra, rb), w in zip(np.asarray(pairs), np.asarray(weights), strict=True):
            if ra < 0 or rb < 0:
                continue
            pa = np.asarray(a)[np.asarray(ids)[ra][np.asarray(mask)[ra]]]
            pb = np.asarray(b)[np.asarray(ids)[rb][np.asarray(mask)[rb]]]
            total += w * np.min(np.sum((pa[:, None] - pb[None]) ** 2, -1))
        totals.append(total)
    return min(totals)


def test_contact_loss_matches_brute_force_jit_and_vmap():
    problems = [_random_contact_problem(s) for s in range(4)]
    jitted = jax.jit(contact_loss)
    for prob in problems:
        assert float(jitted(*prob)) == pytest.approx(_brute_contact(*prob), rel=1e-5)
    assert float(contact_loss(*problems[0])) == pytest.approx(float(jitted(*problems[0])), rel=1e-6)
    stacked = [jnp.stack(xs) for xs in zip(*problems, strict=True)]
    batched_grad = jax.jit(jax.vmap(jax.grad(contact_loss, argnums=(0, 1))))(*stacked)
    single_grad = jax.jit(jax.grad(contact_loss, argnums=(0, 1)))
    for i, prob in enumerate(problems):
        loop_grad = single_grad(*prob)
        for b, g in zip(batched_grad, loop_grad, strict=True):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(g), rtol=1e-5, atol=1e-6)


def test_contact_loss_bytes():
    assert contact_loss_bytes(8, 400) == 2 * 8 * 400 * 400 * 4


# --- priors and jit/vmap of the keypoint terms


def test_priors_value_and_gradient():
    betas = jnp.array([1.0, -2.0, 0.5])
    assert float(shape_prior(betas)) == pytest.approx(5.25)
    np.testing.assert_allclose(np.asarray(jax.grad(shape_prior)(betas)), [2.0, -4.0, 1.0])
    pose, init = jnp.array([0.1, 0.2, 0.3]), jnp.array([0.1, 0.0, 0.5])
    assert float(pose_init_prior(pose, init)) == pytest.approx(0.08)
    np.testing.assert_allclose(np.asarray(jax.grad(pose_init_prior)(pose, init)), [0.0, 0.4, -0.4], rtol=1e-6)


def test_keypoint_terms_jit_and_vmap_match_loop():
    key = jax.random.key(3)
    kps = jax.random.uniform(key, (5, 25, 3)) * jnp.array([300.0, 200.0, 1.0])
    kps = kps.at[:, :3, 2].set(0.0)
    projected = kps[..., :2] + jax.random.normal(jax.random.key(4), (5, 25, 2)) * 7.0
    for fn in (keypoint_loss, keypoint_reprojection_error):
        batched = jax.jit(jax.vmap(fn))(projected, kps)
        single = jax.jit(fn)
        for i in range(5):
            assert float(batched[i]) == pytest.approx(float(single(projected[i], kps[i])), rel=1e-5)
        assert float(fn(projected[0], kps[0])) == pytest.approx(float(batched[0]), rel=1e-5)  # no jit
