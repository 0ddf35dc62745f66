"""Reference PyTorch fit: one pair at a time with smplx's forward and torch Adam, as BUDDI fits.

This is the baseline of `apu bench fit`. It optimises the SAME objective as `apu_jax.fit.engine` (same terms,
same weights, same parameter groups, same stage switch, fixed iteration counts, fresh Adam per stage) so that
the throughput ratio compares implementations, not objectives. The terms are written here in torch from the
maths documented in `apu_jax/fit/losses.py`, `gmm.py` and `interpenetration.py`:

- keypoints: confidence-weighted squared 2D residuals in 512-box pixels (optional GMoF);
- contact: 10⁴ · min over the two person orderings of Σ_c w_c min_{v∈r_a, u∈r_b} ‖v − u‖², computed the
  way a straightforward PyTorch port does it (the dense (C, M, M) distance tensor under autograd);
- GMM: max-mixture negative log-likelihood; shape: Σβ²; init pose: Σ(θ − θ_init)²;
- interpenetration (stage 2): the same proxy winding-number inside test on the same query vertices, the
  inside mask and nearest vertices without gradient, then (100 · ‖v − u‖²)² rescaled by V/Q.

`tests/test_bench.py` checks that every term equals the JAX `loss_terms` on the same inputs.

Both people go through ONE smplx call (a batch of 2 bodies): at least as fast as BUDDI's one call per person,
so the reported speed-up is, if anything, an underestimate. torch's default intra-op threads (all cores) are
used; no torch.compile (BUDDI does not use it).

Torch is imported here at module level: import this module only from benchmarks and tests.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from apu_jax.fit.engine import CONTACT_UNITS_PER_M2, TERMS, FitStatics, FitStructure, FitWeights, PairInputs
from apu_jax.fit.interpenetration import DISTANCE_FACTOR, INSIDE_THRESHOLD
from apu_jax.fit.losses import BOX_SIZE, MIN_BOX_PX


@dataclass
class TorchFitSetup:
    """The smplx body (batch of 2 people) and the fit's per-model arrays as torch tensors."""

    body: Any  # smplx.SMPLX with batch_size=2
    zeros: dict[str, torch.Tensor]  # hand/jaw/eye poses and expression held at zero, (2, ·) each
    keypoint_joint_ids: torch.Tensor  # (K,) int64 output joint per keypoint
    region_vertex_ids: torch.Tensor  # (R, M) int64 padded region vertex ids
    region_mask: torch.Tensor  # (R, M) bool real entries
    gmm_means: torch.Tensor  # (G, 63) radians
    gmm_precisions: torch.Tensor  # (G, 63, 63) rad⁻²
    gmm_log_weights: torch.Tensor  # (G,) log w̃_k
    proxy_faces: torch.Tensor  # (Fp, 3) int64 full-resolution vertex ids of the proxy triangles
    query_ids: torch.Tensor  # (Q,) int64 vertices tested for interpenetration
    num_vertices: int  # V


def make_setup(
    model_path: str | os.PathLike,
    statics: FitStatics,
    num_betas: int = 10,
    num_expression: int = 10,
    num_pca_comps: int = 6,
    flat_hand_mean: bool = False,
) -> TorchFitSetup:
    """smplx model from an official-layout SMPL-X file plus torch copies of the fit statics.

    Use the same file and options as the JAX model (`load_model(path, num_betas=..., num_pca_comps=...)`).
    """
    import smplx

    body = smplx.SMPLX(
        str(model_path),
        num_betas=num_betas,
        num_expression_coeffs=num_expression,
        use_pca=True,
        num_pca_comps=num_pca_comps,
        flat_hand_mean=flat_hand_mean,
        batch_size=2,
        dtype=torch.float32,
    )
    for parameter in body.parameters():
        parameter.requires_grad_(False)
    zeros = {
        "left_hand_pose": torch.zeros(2, num_pca_comps),
        "right_hand_pose": torch.zeros(2, num_pca_comps),
        "jaw_pose": torch.zeros(2, 3),
        "leye_pose": torch.zeros(2, 3),
        "reye_pose": torch.zeros(2, 3),
        "expression": torch.zeros(2, num_expression),
    }
    as_long = lambda a: torch.as_tensor(np.array(a), dtype=torch.int64)  # noqa: E731
    as_float = lambda a: torch.as_tensor(np.array(a), dtype=torch.float32)  # noqa: E731
    return TorchFitSetup(
        body=body,
        zeros=zeros,
        keypoint_joint_ids=as_long(statics.keypoint_joint_ids),
        region_vertex_ids=as_long(statics.region_vertex_ids),
        region_mask=torch.as_tensor(np.array(statics.region_mask), dtype=torch.bool),
        gmm_means=as_float(statics.gmm.means),
        gmm_precisions=as_float(statics.gmm.precisions),
        gmm_log_weights=as_float(statics.gmm.log_weights),
        proxy_faces=as_long(statics.proxy.faces),
        query_ids=as_long(statics.query_ids),
        num_vertices=int(body.v_template.shape[0]),
    )


def pair_tensors(inputs: PairInputs, index: int) -> dict[str, torch.Tensor]:
    """Pair `index` of a batched `PairInputs` as torch tensors (same arrays the JAX fit sees)."""
    fields = {
        "keypoints": inputs.keypoints,
        "focal": inputs.camera.focal,
        "principal": inputs.camera.principal,
        "global_orient": inputs.global_orient,
        "body_pose": inputs.body_pose,
        "betas": inputs.betas,
        "transl": inputs.transl,
        "contact_pairs": inputs.contact_pairs,
        "contact_weights": inputs.contact_weights,
        "contact_groups": inputs.contact_groups,
    }
    out = {}
    for key, value in fields.items():
        array = np.array(value[index])  # a writable copy (torch refuses read-only buffers)
        dtype = torch.int64 if array.dtype.kind in "iu" else torch.float32
        out[key] = torch.as_tensor(array, dtype=dtype)
    return out


# ----------------------------------------------------------------------------------------------- terms


def _project(focal: torch.Tensor, principal: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(..., 3) camera-frame metres → (..., 2) pixels, depth clamped at 1 mm as `apu_jax.fit.camera`."""
    return focal * points[..., :2] / points[..., 2:3].clamp_min(1e-3) + principal


def _keypoint_loss(projected: torch.Tensor, keypoints: torch.Tensor, rho: float | None) -> torch.Tensor:
    """Σ_k c_k ρ(‖(x̂_k − x_k)·512/s‖²) of one person; s = larger side of the visible keypoints' box."""
    visible = keypoints[:, 2] > 0
    xy = keypoints[:, :2]
    big = torch.tensor(1e30)
    lo = torch.where(visible[:, None], xy, big).min(dim=0).values
    hi = torch.where(visible[:, None], xy, -big).max(dim=0).values
    size = (hi - lo).max()
    defined = (visible.sum() >= 2) & (size >= MIN_BOX_PX)
    scale = BOX_SIZE / torch.where(defined, size, torch.tensor(BOX_SIZE))
    target = torch.where(visible[:, None], xy, projected.detach())
    sq = (((projected - target) * scale) ** 2).sum(dim=-1)
    if rho is not None:
        sq = rho**2 * sq / (rho**2 + sq)
    return (torch.where(visible, keypoints[:, 2], torch.zeros(())) * sq).sum()


def _contact_loss(
    vertices: torch.Tensor, setup: TorchFitSetup, pair: dict[str, torch.Tensor], rho: float
) -> torch.Tensor:
    """min over person orderings of Σ_groups max_c w_c · min_c ρ(min ‖v − u‖²) (metres²), dense (C, M, M)
    distances; ρ is GMoF with scale `rho` metres; groups as `engine.PairInputs.contact_groups`."""
    pairs = pair["contact_pairs"]
    valid = (pairs[:, 0] >= 0) & (pairs[:, 1] >= 0)
    region_a = torch.where(valid, pairs[:, 0], 0)
    region_b = torch.where(valid, pairs[:, 1], 0)
    ids_a, ids_b = setup.region_vertex_ids[region_a], setup.region_vertex_ids[region_b]
    both = (setup.region_mask[region_a] & valid[:, None])[:, :, None] & (
        setup.region_mask[region_b] & valid[:, None]
    )[:, None, :]
    weights = torch.where(valid, pair["contact_weights"], torch.zeros(()))

    def ordering(verts_a: torch.Tensor, verts_b: torch.Tensor) -> torch.Tensor:
        points_a, points_b = verts_a[ids_a], verts_b[ids_b]  # (C, M, 3)
        sq = ((points_a[:, :, None, :] - points_b[:, None, :, :]) ** 2).sum(dim=-1)
        sq = sq.masked_fill(~both, math.inf)
        closest = sq.flatten(1).min(dim=1).values  # (C,); inf for padding and empty regions
        finite = torch.isfinite(closest)
        robust = torch.where(finite, closest, torch.zeros(()))
        robust = torch.where(finite, rho**2 * robust / (rho**2 + robust), math.inf)
        groups = pair["contact_groups"]
        count = len(groups)
        per_group = torch.full((count,), math.inf).scatter_reduce(0, groups, robust, "amin")
        group_weight = torch.zeros(count).scatter_reduce(
            0, groups, torch.where(finite, weights, torch.zeros(())), "amax"
        )
        present = torch.isfinite(per_group)
        return torch.where(present, group_weight * torch.where(present, per_group, 0.0), 0.0).sum()

    return torch.minimum(ordering(vertices[0], vertices[1]), ordering(vertices[1], vertices[0]))


def _gmm_nll(setup: TorchFitSetup, body_pose: torch.Tensor) -> torch.Tensor:
    """min_k ½ (θ − μ_k)ᵀ P_k (θ − μ_k) − log w̃_k of one (63,) pose."""
    diff = body_pose[None, :] - setup.gmm_means
    quad = torch.einsum("kd,kde,ke->k", diff, setup.gmm_precisions, diff)
    return (0.5 * quad - setup.gmm_log_weights).min()


def _penetration_one_way(
    verts: torch.Tensor,
    other: torch.Tensor,
    setup: TorchFitSetup,
    cached: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """(V/Q) Σ_{q inside other} (100 · min_u ‖v_q − u‖²)²: inside test on the other body's posed proxy.

    Returns the value and the (inside, nearest) search result; `cached` reuses an earlier search (the
    engine's `interpenetration_refresh`).
    """
    queries = verts[setup.query_ids]
    if cached is None:
        with torch.no_grad():
            points = queries[:, None, :]  # (Q, 1, 3)
            triangles = other[setup.proxy_faces]  # (Fp, 3, 3)
            a, b, c = (triangles[None, :, k, :] - points for k in range(3))  # (Q, Fp, 3) each
            det = (a * torch.linalg.cross(b, c, dim=-1)).sum(dim=-1)
            la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
            denom = la * lb * lc + (a * b).sum(-1) * lc + (a * c).sum(-1) * lb + (b * c).sum(-1) * la
            winding = torch.atan2(det, denom).sum(dim=1) / (2.0 * math.pi)
            cached = (winding >= INSIDE_THRESHOLD, torch.cdist(queries, other).argmin(dim=1))
    inside, nearest = cached
    sq = ((queries - other[nearest]) ** 2).sum(dim=-1)
    penalty = (DISTANCE_FACTOR * sq) ** 2
    scale = setup.num_vertices / len(setup.query_ids)
    return torch.where(inside, penalty, torch.zeros(())).sum() * scale, cached


def loss_terms(
    setup: TorchFitSetup,
    params: dict[str, torch.Tensor],
    init_pose: torch.Tensor,
    pair: dict[str, torch.Tensor],
    structure: FitStructure,
    stage: int,
    rho: float | None = None,
    penetration_cache: dict[str, Any] | None = None,
    contact_rho: float = 1e4,
) -> dict[str, torch.Tensor]:
    """Unweighted loss terms of one pair, as `apu_jax.fit.engine.loss_terms` (rho: GMoF scale if robust).

    `contact_rho`: the contact GMoF scale in cm (`FitWeights.contact_rho`).
    `penetration_cache`: a dict holding the last interpenetration search under "targets"; an entry is reused
    when present and replaced when missing (the caller clears it every `interpenetration_refresh` steps).

    Args:
        params: `global_orient` (2, 3), `body_pose` (2, 63), `betas` (2, B), `transl` (2, 3).
        init_pose: (2, 63) the initial-pose target.
    Raises:
        ValueError: `structure.use_prior` (the reference has no diffusion prior; BUDDI's Flickr-Fits neither).
    """
    if structure.use_prior:
        raise ValueError("the PyTorch reference fit has no diffusion prior: compare with use_prior=False")
    out = setup.body(
        global_orient=params["global_orient"],
        body_pose=params["body_pose"],
        betas=params["betas"],
        transl=params["transl"],
        **setup.zeros,
    )
    vertices, joints = out.vertices, out.joints
    projected = _project(pair["focal"], pair["principal"], joints[:, setup.keypoint_joint_ids])
    robust = rho if structure.robust else None
    zero = torch.zeros(())
    terms = {
        "keypoints": sum(_keypoint_loss(projected[p], pair["keypoints"][p], robust) for p in range(2)),
        "shape": (params["betas"] ** 2).sum(),
        "init_pose": ((params["body_pose"] - init_pose) ** 2).sum(),
        "contact": zero,
        "gmm": zero,
        "interpenetration": zero,
        "prior": zero,  # diffusion-prior guidance: not part of the compared fit (use_prior is refused below)
    }
    if structure.use_contact:
        terms["contact"] = CONTACT_UNITS_PER_M2 * _contact_loss(vertices, setup, pair, contact_rho / 100.0)
    if structure.use_gmm:
        terms["gmm"] = _gmm_nll(setup, params["body_pose"][0]) + _gmm_nll(setup, params["body_pose"][1])
    if structure.use_interpenetration and stage == 1:
        cached = (penetration_cache or {}).get("targets", (None, None))
        forward, targets0 = _penetration_one_way(vertices[0], vertices[1], setup, cached[0])
        backward, targets1 = _penetration_one_way(vertices[1], vertices[0], setup, cached[1])
        if penetration_cache is not None:
            penetration_cache["targets"] = (targets0, targets1)
        terms["interpenetration"] = forward + backward
    return terms


# ----------------------------------------------------------------------------------------------- fit


def _stage(
    setup: TorchFitSetup,
    free: dict[str, torch.Tensor],
    fixed: dict[str, torch.Tensor],
    init_pose: torch.Tensor,
    pair: dict[str, torch.Tensor],
    weights: dict[str, np.ndarray],
    structure: FitStructure,
    stage: int,
) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """A fresh torch Adam on `free` for `structure.iters[stage]` steps; returns the result and history."""
    free = {k: v.detach().clone().requires_grad_(True) for k, v in free.items()}
    optimiser = torch.optim.Adam(list(free.values()), lr=float(weights["learning_rate"][stage]))
    history = []
    cache: dict[str, Any] = {}
    refresh = max(1, structure.interpenetration_refresh)
    for index in range(structure.iters[stage]):
        if index % refresh == 0:
            cache.clear()
        optimiser.zero_grad(set_to_none=True)
        terms = loss_terms(
            setup,
            {**fixed, **free},
            init_pose,
            pair,
            structure,
            stage,
            float(weights["gmof_rho"]),
            cache,
            float(weights["contact_rho"]),
        )
        total = sum(float(weights[name][stage]) * terms[name] for name in TERMS)
        total.backward()
        optimiser.step()
        history.append(total.detach())
    stacked = torch.stack(history).numpy() if history else np.zeros(0, np.float32)
    return {k: v.detach() for k, v in free.items()}, stacked


def fit_pair(
    setup: TorchFitSetup, pair: dict[str, torch.Tensor], weights: FitWeights, structure: FitStructure
) -> dict[str, np.ndarray]:
    """Two-stage fit of one pair, the same schedule as `apu_jax.fit.engine.fit_pair`.

    Stage 1: body pose, betas, translation (and global orientation if `optimise_global_orient`); stage 2:
    betas fixed, init-pose target reset to the stage-1 pose, interpenetration added.

    Returns:
        Final `global_orient`, `body_pose`, `betas`, `transl` and the two loss histories (numpy).
    """
    w = {k: np.asarray(getattr(weights, k)) for k in weights.__dataclass_fields__}
    keys1 = ["body_pose", "betas", "transl"] + (["global_orient"] if structure.optimise_global_orient else [])
    start = {k: pair[k] for k in ("global_orient", "body_pose", "betas", "transl")}
    free = {k: start[k] for k in keys1}
    fixed = {k: v for k, v in start.items() if k not in free}
    free, history1 = _stage(setup, free, fixed, pair["body_pose"], pair, w, structure, 0)
    after1 = {**fixed, **free}
    free2 = {k: after1[k] for k in keys1 if k != "betas"}
    fixed2 = {k: v for k, v in after1.items() if k not in free2}
    free2, history2 = _stage(setup, free2, fixed2, after1["body_pose"], pair, w, structure, 1)
    final = {**fixed2, **free2}
    return {
        **{k: v.numpy() for k, v in final.items()},
        "loss_history_stage1": history1,
        "loss_history_stage2": history2,
    }


def time_fit(
    setup: TorchFitSetup,
    inputs: PairInputs,
    num_pairs: int,
    weights: FitWeights,
    structure: FitStructure,
) -> dict[str, Any]:
    """Fit the first `num_pairs` pairs of `inputs` one after another; wall time and pairs/s.

    One warm-up pair (first-call allocations) is fitted before the clock starts. Per-pair times are returned
    so that a noisy machine shows up as spread.
    """
    warm = dataclasses.replace(structure, iters=(min(2, structure.iters[0]), min(2, structure.iters[1])))
    fit_pair(setup, pair_tensors(inputs, 0), weights, warm)
    per_pair = []
    results = []
    for index in range(num_pairs):
        pair = pair_tensors(inputs, index)
        t0 = time.perf_counter()
        results.append(fit_pair(setup, pair, weights, structure))
        per_pair.append(time.perf_counter() - t0)
    total = float(np.sum(per_pair))
    return {
        "num_pairs": num_pairs,
        "seconds": total,
        "pairs_per_s": num_pairs / total,
        "seconds_per_pair": per_pair,
        "torch_threads": torch.get_num_threads(),
        "results": results,
    }
