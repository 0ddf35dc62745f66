"""The two-stage APU fit of one pair, and `fit_batch`: the same function `jit(vmap(...))`-ed over pairs.

Stage 1 optimises both people's body pose, betas and translation (global orientation optional) under
keypoints + soft contact + GMM + shape prior + L2 to the initial pose. Stage 2 fixes the betas, resets the
initial-pose target to the stage-1 result (as BUDDI's Flickr-Fits) and adds interpenetration. Each stage is
a fixed number of Adam steps under `lax.scan` (under `vmap` an early stop would save nothing).

What recompiles: the iteration counts, which terms exist (`FitStructure`), the batch size, the keypoint
count, the contact padding C and the model's array shapes. Loss weights, learning rates, the GMoF scale and
the filter threshold (`FitWeights`) are traced: changing them reuses the compiled program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from apu_jax.body.model import BodyModel, forward_single
from apu_jax.fit.camera import Camera, project
from apu_jax.fit.gmm import Gmm, gmm_nll
from apu_jax.fit.interpenetration import (
    PenetrationTargets,
    Proxy,
    interpenetration_loss,
    interpenetration_loss_at,
    interpenetration_targets,
)
from apu_jax.fit.losses import (
    contact_loss,
    keypoint_loss,
    keypoint_reprojection_error,
    pose_init_prior,
    shape_prior,
)
from apu_jax.prior.guidance import GuidanceWeights, PriorModel, denoise_target, diffusion_guidance_loss
from apu_jax.prior.representation import PairParams

TERMS = ("keypoints", "contact", "gmm", "shape", "init_pose", "interpenetration", "prior")
# The contact term is measured in cm² so that the paper's λ_C = 1 is comparable to the keypoint term.
CONTACT_UNITS_PER_M2 = 1e4


@struct.dataclass
class FitWeights:
    """Traced numbers of the fit; every field is (2,) = [stage 1, stage 2] unless noted."""

    keypoints: jax.Array  # (2,) λ_J on the 512-box keypoint loss (px²)
    contact: jax.Array  # (2,) λ_C on the soft contact loss (cm²)
    gmm: jax.Array  # (2,) λ_GMM on the max-mixture pose prior (nats)
    shape: jax.Array  # (2,) λ_β on Σβ²
    init_pose: jax.Array  # (2,) λ_q on Σ(θ − θ_init)² (rad²)
    interpenetration: jax.Array  # (2,) λ_P on the interpenetration penalty
    prior: (
        jax.Array
    )  # (2,) multiplier of the diffusion-prior guidance loss (used when FitStructure.use_prior)
    prior_step: jax.Array  # () diffusion step t the estimate is noised to each iteration (BUDDI: 10)
    learning_rate: jax.Array  # (2,) Adam step size per stage
    gmof_rho: jax.Array  # () GMoF scale in 512-box px (used when FitStructure.robust)
    contact_rho: jax.Array  # () GMoF scale of each contact's distance, cm (a huge value = plain d²)
    filter_threshold: jax.Array  # () keep a pair when both reprojection errors are below this (512-box px)

    @classmethod
    def defaults(cls, **overrides: Any) -> FitWeights:
        """The documented defaults (README "Fit defaults"); keyword overrides take a scalar or a pair."""
        values = {
            "keypoints": (0.02, 0.02),
            # Chosen on the CMU dev pair set (benchmarks/tune_fit.py, README "Fit defaults"): λ_C = 3 on cm²
            # with a 5 cm GMoF scale and λ_GMM = 1 for the bundled CMU GMM (BUDDI's 4 was for gmm_08).
            "contact": (3.0, 3.0),
            "gmm": (1.0, 1.0),
            "shape": (40.0, 0.0),
            "init_pose": (200.0, 200.0),
            "interpenetration": (0.0, 1000.0),
            "prior": (1.0, 1.0),
            "prior_step": 10.0,
            "learning_rate": (0.01, 0.001),
            "gmof_rho": 100.0,
            "contact_rho": 5.0,
            "filter_threshold": 20.0,
        }
        for key, value in overrides.items():
            if key not in values:
                raise TypeError(f"unknown fit weight '{key}' (expected one of {sorted(values)})")
            if isinstance(values[key], tuple) and np.ndim(value) == 0:
                value = (value, value)
            values[key] = value
        return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class FitStructure:
    """Static layout of the fit (hashable, a jit static argument): changing any field recompiles."""

    iters: tuple[int, int] = (100, 50)  # Adam steps of stage 1 and stage 2
    use_contact: bool = True  # include the soft contact term
    use_gmm: bool = True  # include the GMM pose prior
    use_interpenetration: bool = True  # include the interpenetration term in stage 2
    optimise_global_orient: bool = False  # BUDDI keeps the global orientation fixed
    robust: bool = False  # GMoF on keypoint residuals
    use_prior: bool = False  # diffusion-prior guidance (FitStatics.prior must be set)
    # Stage 2 recomputes the interpenetration inside test and nearest vertices every this many steps (1 =
    # every step, as BUDDI). They carry no gradient and barely move at stage 2's step size; the search is
    # most of a stage-2 step, so 10 makes stage 2 several times cheaper (docs/BENCHMARKS.md).
    interpenetration_refresh: int = 10


@struct.dataclass
class FitStatics:
    """Per-model arrays the fit needs besides the body model (built once, passed as arguments)."""

    region_vertex_ids: jax.Array  # (R, M) int32 padded region vertex ids
    region_mask: jax.Array  # (R, M) bool real entries of region_vertex_ids
    keypoint_joint_ids: jax.Array  # (K,) int32 model output joint per keypoint
    gmm: Gmm  # pose prior
    proxy: Proxy  # low-resolution closed surface for the inside test
    query_ids: jax.Array  # (Q,) int32 vertices tested for interpenetration
    prior: PriorModel | None = None  # trained pair prior for prior-guided fitting, or None


@struct.dataclass
class PairInputs:
    """One pair's observations and initial estimate (leading pair axis when batched)."""

    keypoints: jax.Array  # (2, K, 3) x, y, confidence (pixels; confidence 0 = missing)
    camera: Camera  # intrinsics of the image
    global_orient: jax.Array  # (2, 3) initial global orientation, axis-angle
    body_pose: jax.Array  # (2, 63) initial body pose, axis-angle
    betas: jax.Array  # (2, B) initial shape coefficients
    transl: jax.Array  # (2, 3) initial translation, metres (camera frame)
    contact_pairs: jax.Array  # (C, 2) int32 region ids, -1 = padding
    contact_weights: jax.Array  # (C,) soft contact weights in [0, 1]
    contact_groups: jax.Array  # (C,) int32 part-level contact each entry belongs to (min within a group)


def _bodies(model: BodyModel, params: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Both people through the body model: vertices (2, V, 3) and joints (2, 127, 3)."""
    zeros = {
        "left_hand_pose": jnp.zeros((model.num_hand_components,)),
        "right_hand_pose": jnp.zeros((model.num_hand_components,)),
        "jaw_pose": jnp.zeros((3,)),
        "leye_pose": jnp.zeros((3,)),
        "reye_pose": jnp.zeros((3,)),
        "expression": jnp.zeros((model.num_expression,)),
    }
    per_person = jax.vmap(lambda p: forward_single(model, {**zeros, **p}))
    return per_person(dict(params))


def loss_terms(
    params: Mapping[str, jax.Array],
    init_pose: jax.Array,
    model: BodyModel,
    statics: FitStatics,
    pair: PairInputs,
    weights: FitWeights,
    structure: FitStructure,
    stage: int,
    prior_target: PairParams | None = None,
    penetration: PenetrationTargets | None = None,
) -> dict[str, jax.Array]:
    """Unweighted loss terms of one pair at the current parameters (stage static: 0 or 1).

    Args:
        params: `global_orient` (2, 3), `body_pose` (2, 63), `betas` (2, B), `transl` (2, 3).
        init_pose: (2, 63) the initial-pose target.
        prior_target: the denoised estimate (no gradient) when `structure.use_prior`.
        penetration: interpenetration inside flags / nearest ids to use instead of searching them here.
    Returns:
        term name → () value (terms the structure leaves out are 0).
    """
    out = _bodies(model, params)
    projected = project(pair.camera, out["joints"][:, statics.keypoint_joint_ids])
    rho = weights.gmof_rho if structure.robust else None
    zero = jnp.zeros(())
    terms = {
        "keypoints": sum(keypoint_loss(projected[p], pair.keypoints[p], rho) for p in range(2)),
        "shape": shape_prior(params["betas"][0]) + shape_prior(params["betas"][1]),
        "init_pose": pose_init_prior(params["body_pose"].reshape(-1), init_pose.reshape(-1)),
        "contact": zero,
        "gmm": zero,
        "interpenetration": zero,
        "prior": zero,
    }
    if structure.use_contact:
        terms["contact"] = CONTACT_UNITS_PER_M2 * contact_loss(
            out["vertices"][0],
            out["vertices"][1],
            statics.region_vertex_ids,
            statics.region_mask,
            pair.contact_pairs,
            pair.contact_weights,
            weights.contact_rho / 100.0,
            pair.contact_groups,
        )
    if structure.use_gmm:
        terms["gmm"] = gmm_nll(statics.gmm, params["body_pose"][0]) + gmm_nll(
            statics.gmm, params["body_pose"][1]
        )
    if structure.use_interpenetration and stage == 1:
        if penetration is None:
            terms["interpenetration"] = interpenetration_loss(
                out["vertices"][0], out["vertices"][1], statics.proxy, statics.query_ids
            )
        else:
            terms["interpenetration"] = interpenetration_loss_at(
                out["vertices"][0], out["vertices"][1], penetration, statics.query_ids
            )
    if structure.use_prior and prior_target is not None:
        current = PairParams(**{k: params[k] for k in ("global_orient", "body_pose", "betas", "transl")})
        terms["prior"] = diffusion_guidance_loss(current, prior_target, GuidanceWeights())
    return terms


def _prior_target(
    params: Mapping[str, jax.Array],
    model: BodyModel,
    statics: FitStatics,
    weights: FitWeights,
    key: jax.Array,
) -> PairParams:
    """Diffuse the current estimate to step t, denoise once; a constant for the gradient (BUDDI's SDS-like
    guidance)."""
    current = PairParams(**{k: params[k] for k in ("global_orient", "body_pose", "betas", "transl")})
    step = weights.prior_step.astype(jnp.int32)
    return jax.lax.stop_gradient(denoise_target(statics.prior, model, current, key, step))


def _weighted_total(terms: Mapping[str, jax.Array], weights: FitWeights, stage: int) -> jax.Array:
    return sum(weights_for(weights, name, stage) * terms[name] for name in TERMS)


def _run_stage(
    free: dict[str, jax.Array],
    fixed: dict[str, jax.Array],
    init_pose: jax.Array,
    model: BodyModel,
    statics: FitStatics,
    pair: PairInputs,
    weights: FitWeights,
    structure: FitStructure,
    stage: int,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Adam on the `free` parameters for `structure.iters[stage]` steps; returns them and the loss history."""

    def total(
        free_params: dict[str, jax.Array], target: PairParams | None, penetration: PenetrationTargets | None
    ) -> jax.Array:
        params = {**fixed, **free_params}
        terms = loss_terms(
            params, init_pose, model, statics, pair, weights, structure, stage, target, penetration
        )
        return _weighted_total(terms, weights, stage)

    optimiser = optax.inject_hyperparams(optax.adam)(learning_rate=weights.learning_rate[stage])
    value_and_grad = jax.value_and_grad(total)
    base_key = jax.random.fold_in(jax.random.PRNGKey(0), stage)

    def step(carry, index, penetration=None):
        current, opt_state = carry
        target = None
        if structure.use_prior:
            key = jax.random.fold_in(base_key, index)
            target = _prior_target({**fixed, **current}, model, statics, weights, key)
        value, grads = value_and_grad(current, target, penetration)
        updates, opt_state = optimiser.update(grads, opt_state, current)
        return (optax.apply_updates(current, updates), opt_state), value

    iters = structure.iters[stage]
    refresh = structure.interpenetration_refresh
    carry = (free, optimiser.init(free))
    if not (structure.use_interpenetration and stage == 1 and refresh > 1):
        (free, _), history = jax.lax.scan(step, carry, jnp.arange(iters))
        return free, history

    def block(carry, indices):
        # Search the inside flags / nearest vertices once per block of `refresh` steps.
        vertices = _bodies(model, {**fixed, **carry[0]})["vertices"]
        penetration = interpenetration_targets(vertices[0], vertices[1], statics.proxy, statics.query_ids)
        return jax.lax.scan(lambda c, i: step(c, i, penetration), carry, indices)

    histories = []
    num_blocks, rest = divmod(iters, refresh)
    if num_blocks:
        carry, values = jax.lax.scan(
            block, carry, jnp.arange(num_blocks * refresh).reshape(num_blocks, refresh)
        )
        histories.append(values.reshape(-1))
    if rest:
        carry, values = block(carry, jnp.arange(num_blocks * refresh, iters))
        histories.append(values)
    return carry[0], jnp.concatenate(histories)


def fit_pair(
    model: BodyModel, statics: FitStatics, pair: PairInputs, weights: FitWeights, structure: FitStructure
) -> dict[str, jax.Array]:
    """Fit one pair with the two-stage optimisation.

    Returns:
        `global_orient` (2, 3), `body_pose` (2, 63), `betas` (2, B), `transl` (2, 3); `loss_history_stage1`
        (T1,), `loss_history_stage2` (T2,); `terms_stage1`, `terms_stage2` (len(TERMS),) final weighted terms;
        `reproj_error` (2,) in 512-box px; `keep` () bool.
    """
    stage1_keys = ["body_pose", "betas", "transl"] + (
        ["global_orient"] if structure.optimise_global_orient else []
    )
    start = {
        "global_orient": pair.global_orient,
        "body_pose": pair.body_pose,
        "betas": pair.betas,
        "transl": pair.transl,
    }
    free = {k: start[k] for k in stage1_keys}
    fixed = {k: v for k, v in start.items() if k not in free}
    free, history1 = _run_stage(free, fixed, pair.body_pose, model, statics, pair, weights, structure, 0)
    after1 = {**fixed, **free}
    final_key = jax.random.PRNGKey(1)
    target1 = _prior_target(after1, model, statics, weights, final_key) if structure.use_prior else None
    terms1 = loss_terms(after1, pair.body_pose, model, statics, pair, weights, structure, 0, target1)

    free2 = {k: after1[k] for k in stage1_keys if k != "betas"}
    fixed2 = {k: v for k, v in after1.items() if k not in free2}
    init2 = after1["body_pose"]
    free2, history2 = _run_stage(free2, fixed2, init2, model, statics, pair, weights, structure, 1)
    final = {**fixed2, **free2}
    target2 = _prior_target(final, model, statics, weights, final_key) if structure.use_prior else None
    terms2 = loss_terms(final, init2, model, statics, pair, weights, structure, 1, target2)

    joints = _bodies(model, final)["joints"][:, statics.keypoint_joint_ids]
    errors = jnp.stack(
        [keypoint_reprojection_error(project(pair.camera, joints[p]), pair.keypoints[p]) for p in range(2)]
    )
    return {
        **final,
        "loss_history_stage1": history1,
        "loss_history_stage2": history2,
        "terms_stage1": jnp.stack([weights_for(weights, n, 0) * terms1[n] for n in TERMS]),
        "terms_stage2": jnp.stack([weights_for(weights, n, 1) * terms2[n] for n in TERMS]),
        "reproj_error": errors,
        "keep": jnp.all(errors < weights.filter_threshold),
    }


def weights_for(weights: FitWeights, name: str, stage: int) -> jax.Array:
    """The weight of term `name` in `stage`."""
    return getattr(weights, name)[stage]


def _fit_batch(
    model: BodyModel, statics: FitStatics, pairs: PairInputs, weights: FitWeights, structure: FitStructure
) -> dict[str, jax.Array]:
    return jax.vmap(fit_pair, in_axes=(None, None, 0, None, None))(model, statics, pairs, weights, structure)


# The one jitted entry point: a batch of pairs (leading axis) fitted in parallel.
fit_batch = jax.jit(_fit_batch, static_argnames=("structure",))
