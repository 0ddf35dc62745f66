"""Loss terms of the two-person fit, each a small pure single-instance function.

Every function here takes ONE person (keypoints, priors) or ONE pair (contact) and returns a scalar; the
engine weights the terms and `vmap`s over pairs. Weights are not applied here. All terms are safe in
float32: no sqrt or division at zero, padding contributes exactly nothing (value and gradient).

Memory/FLOP per call (float32), for the engine's budget:
- `keypoint_loss`: O(K) — negligible.
- `contact_loss`: 2 orderings x C contacts x Ma x Mb squared distances, ~9 FLOP each: about 18·C·M² FLOP
  per pair (1.2 MFLOP for C=16 and the RegionSet's default M=64). The (C, M, M) distance tensor feeds an
  argmin reduction only; the value and gradient are then re-evaluated on the selected vertex pair, so nothing
  of size M² is kept for the backward pass (residuals are O(C·M)). Upper bound if XLA materialises the
  distances instead of fusing them into the reduction: `contact_loss_bytes(C, M)` = 2·C·M²·4 bytes (1 MB at
  C=16, M=64; XLA on CPU assigned 0.19–0.30 MB of temporaries per pair for value and gradient).
- priors: O(size of the parameter vector).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# BUDDI rescales each person's keypoints so that the larger side of their keypoint bounding box is 512 px.
BOX_SIZE = 512.0
# A keypoint box smaller than this (pixels) is treated as undefined (fewer than 2 distinct visible keypoints).
MIN_BOX_PX = 1.0


# --- keypoints


def keypoint_scale(keypoints: jax.Array) -> jax.Array:
    """Factor that maps this person's pixels to "512-box" pixels: `512 / max(w, h)` of the visible
    keypoints' box.

    Args:
        keypoints: (K, 3) `x, y, confidence` in pixels; confidence <= 0 marks a missing keypoint.

    Returns:
        () scale factor. 1.0 (raw pixels) when the box is undefined: fewer than 2 visible keypoints, or a box
        smaller than `MIN_BOX_PX`. Treated as data (no gradient), as in BUDDI where it comes from detections.
    """
    keypoints = jax.lax.stop_gradient(keypoints)
    visible = keypoints[:, 2] > 0
    # Finite sentinels (not inf) so that no inf - inf appears even when nothing is visible.
    big = jnp.float32(1e30)
    xy_lo = jnp.where(visible[:, None], keypoints[:, :2], big).min(axis=0)
    xy_hi = jnp.where(visible[:, None], keypoints[:, :2], -big).max(axis=0)
    size = jnp.max(xy_hi - xy_lo)
    defined = (jnp.sum(visible) >= 2) & (size >= MIN_BOX_PX)
    return BOX_SIZE / jnp.where(defined, size, BOX_SIZE)


def _normalised_sq_residuals(projected: jax.Array, keypoints: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Squared 2D residuals in 512-box pixels² (K,) and confidence weights (K,) (0 for missing keypoints)."""
    visible = keypoints[:, 2] > 0
    # Missing keypoints may carry garbage (even NaN) coordinates: replace them *before* differencing so that
    # neither the value nor the gradient can see them.
    target = jnp.where(visible[:, None], keypoints[:, :2], projected)
    weight = jnp.where(visible, keypoints[:, 2], 0.0)
    residual = (projected - target) * keypoint_scale(keypoints)
    return jnp.sum(residual**2, axis=-1), weight


def gmof(sq_residual: jax.Array, rho: jax.Array | float) -> jax.Array:
    """Geman–McClure robustifier on squared residuals: `rho² x² / (rho² + x²)` (SMPLify/BUDDI's GMoF).

    Quadratic (≈ x²) for |x| << rho, saturating at rho² for |x| >> rho. `rho` is in the residual's units
    (512-box pixels for the keypoint loss; BUDDI constructs it with rho = 100) and may be traced.
    """
    rho_sq = jnp.square(rho)
    return rho_sq * sq_residual / (rho_sq + sq_residual)


def keypoint_loss(
    projected: jax.Array, keypoints: jax.Array, robust_sigma: jax.Array | float | None = None
) -> jax.Array:
    """Confidence-weighted 2D reprojection loss of one person, in 512-box pixels² (BUDDI's L_J).

    `L = Σ_k c_k ρ(‖(x̂_k − x_k) · 512/s‖²)` with s = max(w, h) of the bounding box of the visible keypoints
    (see `keypoint_scale`), c_k the raw detector confidence, ρ the identity (BUDDI's default: plain squared
    L2, summed over keypoints) or GMoF with `rho = robust_sigma`. The robustifier acts on each keypoint's
    squared Euclidean residual (isotropic), not per coordinate as SMPLify's GMoF does.

    Args:
        projected: (K, 2) projected model keypoints, pixels.
        keypoints: (K, 3) detected `x, y, confidence`, pixels; confidence <= 0 = missing (contributes 0).
        robust_sigma: None (static: no robustifier) or GMoF rho in 512-box pixels (may be traced).

    Returns:
        () loss.
    """
    sq, weight = _normalised_sq_residuals(projected, keypoints)
    if robust_sigma is not None:
        sq = gmof(sq, robust_sigma)
    return jnp.sum(weight * sq)


def keypoint_reprojection_error(projected: jax.Array, keypoints: jax.Array) -> jax.Array:
    """Filter metric: confidence-weighted mean Euclidean keypoint error in 512-box pixels.

    `E = Σ_k c_k ‖(x̂_k − x_k) · 512/s‖ / Σ_k c_k` over visible keypoints (c_k > 0), with the same 512-box
    normalisation as `keypoint_loss` (so E is comparable across image resolutions and person sizes). The paper
    keeps a pair when E < 20 for both people.

    Args:
        projected: (K, 2) projected model keypoints, pixels.
        keypoints: (K, 3) detected `x, y, confidence`, pixels; confidence <= 0 = missing.

    Returns:
        () error in 512-box pixels; +inf when no keypoint is visible (nothing to verify, so a filter
        rejects it).
    """
    sq, weight = _normalised_sq_residuals(projected, keypoints)
    # Double-where: sqrt has an infinite derivative at 0, so feed it a safe value where the residual vanishes.
    positive = sq > 0
    dist = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    total = jnp.sum(weight)
    return jnp.where(total > 0, jnp.sum(weight * dist) / jnp.where(total > 0, total, 1.0), jnp.inf)


# --- contact


def _argmin_pair(points_a: jax.Array, points_b: jax.Array, mask_a: jax.Array, mask_b: jax.Array):
    """Indices (i, j) of the closest valid pair between two point sets (no gradient).

    Squared distances are written per coordinate (no inner reduction), so XLA can fuse the whole (Ma, Mb)
    computation into the argmin reduction instead of materialising it.
    """
    diff_sq = [jnp.square(points_a[:, None, k] - points_b[None, :, k]) for k in range(3)]
    sq_dist = diff_sq[0] + diff_sq[1] + diff_sq[2]
    sq_dist = jnp.where(mask_a[:, None] & mask_b[None, :], sq_dist, jnp.inf)
    flat = jnp.argmin(sq_dist.reshape(-1))
    num_b = points_b.shape[0]
    return flat // num_b, flat % num_b


def region_min_sq_dist(
    verts_a: jax.Array,
    verts_b: jax.Array,
    region_ids_a: jax.Array,
    mask_a: jax.Array,
    region_ids_b: jax.Array,
    mask_b: jax.Array,
) -> jax.Array:
    """Exact `min_{v∈r_a, u∈r_b} ‖v − u‖²` between a region of body a and a region of body b (metres²).

    The minimum is taken over all Ma x Mb vertex pairs. Its gradient is the min's subgradient: it flows only
    through the selected closest pair (2(v − u) to v, −2(v − u) to u), which is finite even at distance 0
    because no square root is taken. The argmin is computed without gradient and the distance re-evaluated on
    the chosen pair, so no (Ma, Mb) residual is stored for the backward pass.

    Args:
        verts_a: (V, 3) vertices of body a, metres.
        verts_b: (V', 3) vertices of body b, metres.
        region_ids_a: (Ma,) int vertex ids of the region on body a (padded).
        mask_a: (Ma,) bool, True for real entries of `region_ids_a`.
        region_ids_b: (Mb,) int vertex ids of the region on body b (padded).
        mask_b: (Mb,) bool, True for real entries of `region_ids_b`.

    Returns:
        () squared distance; +inf if either region is empty.
    """
    points_a = verts_a[region_ids_a]
    points_b = verts_b[region_ids_b]
    i, j = _argmin_pair(jax.lax.stop_gradient(points_a), jax.lax.stop_gradient(points_b), mask_a, mask_b)
    sq_dist = jnp.sum(jnp.square(points_a[i] - points_b[j]))
    return jnp.where(jnp.any(mask_a) & jnp.any(mask_b), sq_dist, jnp.inf)


def contact_loss_per_ordering(
    verts0: jax.Array,
    verts1: jax.Array,
    region_vertex_ids: jax.Array,
    region_mask: jax.Array,
    contact_pairs: jax.Array,
    contact_weights: jax.Array,
    rho: jax.Array | float | None = None,
    groups: jax.Array | None = None,
) -> jax.Array:
    """Soft contact loss for both assignments of the LVLM's persons to the detected people.

    Entry 0: `Σ_c w_c · d²_min(region c0 on person 0, region c1 on person 1)` (as given);
    entry 1: the same with the persons swapped (region c0 on person 1, region c1 on person 0).
    Only the C listed contacts are evaluated (gathered per contact, never all R x R region pairs).

    Args:
        verts0: (V, 3) vertices of person 0, metres.
        verts1: (V, 3) vertices of person 1, metres.
        region_vertex_ids: (R, M) int vertex ids of each region, padded (a RegionSet's `vertex_ids`).
        region_mask: (R, M) bool, True for real entries (a RegionSet's `mask`).
        contact_pairs: (C, 2) int32 `[region on person 0, region on person 1]`, -1 = padding.
        contact_weights: (C,) soft weights W_ij C_ij (ignored on padding).
        rho: optional robust scale (metres): each contact's d² becomes GMoF `ρ²d²/(ρ² + d²)`, which is d²
            for d ≪ ρ and saturates at ρ² for d ≫ ρ, so a hallucinated contact between parts that are far
            apart pulls with a vanishing force (`ρ⁴·2d/(ρ² + d²)²`) while near contacts still close.
        groups: optional (C,) int32 group id in [0, C) per contact. The contacts of one group are the region
            pairs of ONE part-level contact ("A's hand touches B's back"): the group adds
            `max_c w_c · min_c d²_c` over its members, so the closest region pair closes the contact (not
            all regions of both parts being pulled together). None: every contact is its own group (the
            paper's `Σ_ij W_ij C_ij d²_ij`).

    Returns:
        (2,) loss in metres² for the given and the swapped person ordering. Padding and contacts with an
        empty region contribute exactly 0.
    """
    valid = (contact_pairs[:, 0] >= 0) & (contact_pairs[:, 1] >= 0)
    # Padding ids (-1) would wrap around in a gather: point them at region 0 and mask them out.
    region_a = jnp.where(valid, contact_pairs[:, 0], 0)
    region_b = jnp.where(valid, contact_pairs[:, 1], 0)
    ids_a, mask_a = region_vertex_ids[region_a], region_mask[region_a] & valid[:, None]
    ids_b, mask_b = region_vertex_ids[region_b], region_mask[region_b] & valid[:, None]
    per_contact = jax.vmap(region_min_sq_dist, in_axes=(None, None, 0, 0, 0, 0))
    weights = jnp.where(valid, contact_weights, 0.0)

    num = contact_pairs.shape[0]

    def weighted_sum(sq_dist: jax.Array) -> jax.Array:
        finite = jnp.isfinite(sq_dist)
        safe = jnp.where(finite, sq_dist, 0.0)
        if rho is not None:
            safe = gmof(safe, rho)
        if groups is None:
            return jnp.sum(jnp.where(finite, weights * safe, 0.0))
        # Per group: the closest member's distance, the largest member weight; empty groups give inf / 0.
        ids = jnp.where(finite, groups, num)  # out-of-range ids are dropped by the segment reductions
        closest = jax.ops.segment_min(jnp.where(finite, safe, jnp.inf), ids, num_segments=num)
        weight = jax.ops.segment_max(jnp.where(finite, weights, 0.0), ids, num_segments=num)
        present = jnp.isfinite(closest)
        return jnp.sum(jnp.where(present, jnp.maximum(weight, 0.0) * jnp.where(present, closest, 0.0), 0.0))

    as_given = weighted_sum(per_contact(verts0, verts1, ids_a, mask_a, ids_b, mask_b))
    swapped = weighted_sum(per_contact(verts1, verts0, ids_a, mask_a, ids_b, mask_b))
    return jnp.stack([as_given, swapped])


def contact_loss(
    verts0: jax.Array,
    verts1: jax.Array,
    region_vertex_ids: jax.Array,
    region_mask: jax.Array,
    contact_pairs: jax.Array,
    contact_weights: jax.Array,
    rho: jax.Array | float | None = None,
    groups: jax.Array | None = None,
) -> jax.Array:
    """APU's soft contact loss `L_C = Σ_ij W_ij C_ij min_{v∈r_i, u∈r_j} ‖v − u‖²`, min over person orderings.

    The LVLM's "person A/B" need not match the detector's person 0/1, so (as in the paper) the loss is the
    smaller of the two orderings (`contact_loss_per_ordering`); the gradient follows the smaller one.
    Arguments as in `contact_loss_per_ordering`. Returns () metres².
    """
    return jnp.min(
        contact_loss_per_ordering(
            verts0, verts1, region_vertex_ids, region_mask, contact_pairs, contact_weights, rho, groups
        )
    )


def contact_loss_bytes(num_contacts: int, region_size: int, itemsize: int = 4) -> int:
    """Upper bound (bytes per pair) of the contact loss's transient distance tensors if XLA materialises them.

    Both orderings' (C, M, M) squared distances; with fusion into the argmin reduction the real figure is
    lower. Residuals kept for the backward pass are O(C·M) and not counted.
    """
    return 2 * num_contacts * region_size * region_size * itemsize


# --- priors


def shape_prior(betas: jax.Array) -> jax.Array:
    """L2 shape prior `Σ β²` (penalises deviation from the mean shape). betas: (B,) -> ().

    BUDDI excludes the SMPL-XA kid-scale coefficient: pass only the coefficients to regularise.
    """
    return jnp.sum(jnp.square(betas))


def pose_init_prior(pose: jax.Array, init_pose: jax.Array) -> jax.Array:
    """L2 to the initial pose `Σ (θ − θ_init)²` over axis-angle entries (radians²). (D,), (D,) -> ()."""
    return jnp.sum(jnp.square(pose - init_pose))
