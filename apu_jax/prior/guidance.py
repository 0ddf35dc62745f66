"""Using a trained pair prior inside a fit: the diffuse-denoise target, the guidance loss, and sampling.

All functions work on ONE pair and take the prior and the body model as arguments (never closed over), so
the fit engine can `vmap` them over pairs and `jit` once. The prior's network weights are traced; its
architecture (`PriorModel.config`) is static.

Prior-guided fitting (BUDDI's L_diffusion, used by "Ask, Pose, Unite" §4.1 at inference): at every
iteration, noise the current estimate to a small step t (≈ 10, noise std ≈ 0.027), denoise it once, and
pull the estimate toward the result with non-squared norms. The caller wraps the target in
`jax.lax.stop_gradient`: no gradient flows through the network.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from apu_jax.body.model import BodyModel
from apu_jax.body.rotations import axis_angle_to_matrix
from apu_jax.prior.denoiser import DenoiserConfig, apply_denoiser
from apu_jax.prior.representation import (
    GROUPS,
    PairParams,
    PairX0,
    group_sizes,
    matrix_to_axis_angle,
    params_to_x0,
    x0_to_params,
)
from apu_jax.prior.schedule import Schedule, ddim_step, q_sample, sampling_timesteps


@struct.dataclass
class PriorModel:
    """A trained pair prior: network weights and schedule are arrays; the architecture is static."""

    params: dict  # flax parameter tree of the denoiser (float32 arrays)
    schedule: Schedule  # (T,) noise schedule the network was trained with
    config: DenoiserConfig = struct.field(pytree_node=False)  # architecture (static: decides shapes)


@struct.dataclass
class GuidanceWeights:
    """Weights of the guidance loss (traced: changing them does not recompile). Defaults: BUDDI's fit."""

    orient: jax.Array | float = 0.0  # per person, on ‖φ − φ̂‖ (axis-angle); BUDDI keeps orientation fixed
    pose: jax.Array | float = 100.0  # per person, on ‖θ − θ̂‖ over the 63 body-pose numbers
    betas: jax.Array | float = 10.0  # per person, on ‖β − β̂‖ over all B betas (0 once shape is fixed)
    transl: jax.Array | float = 1e4  # on ‖(t₁ − t₀) − (t̂₁ − t̂₀)‖, metres


def _rest_pelvis(body: BodyModel, betas: jax.Array) -> jax.Array:
    """Rest-pose root joint of a shaped body, (3,) metres; regresses only the pelvis row (cheap)."""
    weights = body.j_regressor[0]
    return weights @ body.v_template + jnp.einsum("v,vcb,b->c", weights, body.shapedirs, betas)


def reanchor(body: BodyModel, pair: PairParams, orient0: jax.Array, transl0: jax.Array) -> PairParams:
    """Move a pair rigidly so person 0 gets orientation `orient0` and translation `transl0`.

    The rigid motion rotates about person 0's pelvis by C = R(orient0) · R(φ₀)ᵀ, so person 1 keeps its pose,
    orientation and position *relative to person 0* (BUDDI's `undo_orient_and_transl`). SMPL-X rotates a body
    about its rest pelvis J₀(β), so a pelvis at J₀ + t moves to C(J₀ + t − p₀) + p₀', hence the J₀ terms.

    Args:
        body: body model (for the rest pelvis of each shape).
        pair: one pair, any translation.
        orient0: (3,) axis-angle, person 0's new orientation.
        transl0: (3,) metres, person 0's new translation.
    Returns:
        The moved pair.
    """
    rot = axis_angle_to_matrix(pair.global_orient)  # (2, 3, 3)
    correction = axis_angle_to_matrix(orient0) @ rot[0].T
    pelvis_rest = jax.vmap(_rest_pelvis, in_axes=(None, 0))(body, pair.betas)  # (2, 3)
    pelvis = pelvis_rest + pair.transl
    new_pelvis0 = pelvis_rest[0] + transl0
    new_pelvis = new_pelvis0 + (pelvis - pelvis[0]) @ correction.T
    new_orient = matrix_to_axis_angle(correction @ rot)
    new_orient = new_orient.at[0].set(orient0)  # exact, not a round trip through the log map
    return pair.replace(global_orient=new_orient, transl=new_pelvis - pelvis_rest)


def normal_like(key: jax.Array, tree: PairX0) -> PairX0:
    """Standard normal noise with the structure and shapes of `tree`.

    One draw for the whole tree, then split: every random call is a separately compiled generator kernel,
    and on CPU those dominate compile time.
    """
    leaves, treedef = jax.tree.flatten(tree)
    sizes = [a.size for a in leaves]
    flat = jax.random.normal(key, (sum(sizes),), leaves[0].dtype)
    parts = jnp.split(flat, np.cumsum(sizes)[:-1].tolist())
    return jax.tree.unflatten(treedef, [p.reshape(a.shape) for p, a in zip(parts, leaves, strict=True)])


def _condition(prior: PriorModel, cond: PairParams | None) -> tuple[PairX0 | None, jax.Array | None]:
    """Condition tokens and their visibility mask for this prior (None, None for an unconditional one)."""
    if not prior.config.conditional:
        return None, None
    if cond is None:
        # A conditional prior used unconditionally: every condition token is the learned null token.
        zeros = {g: jnp.zeros((2, n)) for g, n in group_sizes(prior.config.num_betas).items()}
        return PairX0(**zeros), jnp.zeros((2, len(GROUPS)), bool)
    return params_to_x0(cond), jnp.ones((2, len(GROUPS)), bool)


def denoise_target(
    prior: PriorModel,
    body: BodyModel,
    current: PairParams,
    key: jax.Array,
    t: jax.Array | int = 10,
    cond: PairParams | None = None,
) -> PairParams:
    """Diffuse the current estimate of one pair to step t, denoise it once, and map it back to the camera.

    Args:
        prior: the trained prior.
        body: body model (rest pelvis for re-anchoring).
        current: the fit's current estimate of one pair (axis-angle, camera-frame translations).
        key: PRNG key for the diffusion noise.
        t: () step index (BUDDI uses 10; traced, so changing it does not recompile).
        cond: the initial estimate, for a conditional prior (ignored by an unconditional one; a conditional
            prior with cond=None runs unconditioned).
    Returns:
        Target `PairParams`: person 0 keeps its current orientation and translation; person 1's orientation
        and translation, and both people's pose and betas, are the prior's. No gradient should flow through
        it: wrap the result (or its use) in `jax.lax.stop_gradient`.
    """
    x0 = params_to_x0(current)
    noise = normal_like(key, x0)
    t = jnp.asarray(t, jnp.int32)
    x_t = jax.tree.map(lambda a, e: q_sample(prior.schedule, a, t, e), x0, noise)
    cond_x0, keep = _condition(prior, cond)
    x0_hat = apply_denoiser(prior.config, prior.params, x_t, t, cond_x0, keep)
    denoised = x0_to_params(x0_hat, current.transl[0])
    return reanchor(body, denoised, current.global_orient[0], current.transl[0])


def _safe_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """‖x‖₂ with a finite (zero) gradient at x = 0: √(Σx² + ε²) − ε."""
    return jnp.sqrt(jnp.sum(x * x) + eps * eps) - eps


def diffusion_guidance_loss(current: PairParams, target: PairParams, weights: GuidanceWeights) -> jax.Array:
    """BUDDI's L_diffusion for one pair: weighted sum of NON-squared L2 norms.

    L = Σ_p [w_φ‖φ_p − φ̂_p‖ + w_θ‖θ_p − θ̂_p‖ + w_β‖β_p − β̂_p‖] + w_t‖(t₁ − t₀) − (t̂₁ − t̂₀)‖.

    The norms are not squared (as in BUDDI's `torch.norm`), so the pull is constant in size far from the
    target and does not fade as the estimate approaches it. Only the relative translation is compared: the
    prior has no opinion on where the pair stands in the camera.

    Args:
        current: the optimised parameters of one pair (gradient flows into these).
        target: `denoise_target`'s output (treated as a constant; it is stop-gradient'ed here too).
        weights: `GuidanceWeights`.
    Returns:
        () scalar loss.
    """
    target = jax.lax.stop_gradient(target)
    loss = 0.0
    for p in range(2):
        loss = loss + weights.orient * _safe_norm(current.global_orient[p] - target.global_orient[p])
        loss = loss + weights.pose * _safe_norm(current.body_pose[p] - target.body_pose[p])
        loss = loss + weights.betas * _safe_norm(current.betas[p] - target.betas[p])
    relative = current.transl[1] - current.transl[0]
    relative_target = target.transl[1] - target.transl[0]
    return loss + weights.transl * _safe_norm(relative - relative_target)


def sample_x0(
    prior: PriorModel,
    key: jax.Array,
    cond: PairParams | None = None,
    num_steps: int = 10,
    eta: jax.Array | float = 1.0,
) -> PairX0:
    """Draw one pair from the prior with a short DDIM chain (x₀-prediction), starting from pure noise.

    Args:
        prior: the trained prior.
        key: PRNG key.
        cond: initial estimate for a conditional prior (None: unconditional).
        num_steps: reverse steps (static), spaced evenly from T − 1 to 0 (BUDDI uses 10).
        eta: DDIM stochasticity (1 = DDPM-like, BUDDI's default; 0 = deterministic).
    Returns:
        `PairX0` sample (relative translation).
    """
    sizes = group_sizes(prior.config.num_betas)
    init_key, chain_key = jax.random.split(key)
    x_start = normal_like(init_key, PairX0(**{g: jnp.zeros((2, sizes[g])) for g in GROUPS}))
    cond_x0, keep = _condition(prior, cond)
    steps = sampling_timesteps(prior.schedule.num_steps, num_steps)
    next_steps = jnp.concatenate([steps[1:], jnp.array([-1], jnp.int32)])  # −1: the clean end

    def reverse_step(x: PairX0, inputs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[PairX0, None]:
        t, t_prev, step_key = inputs
        x0_hat = apply_denoiser(prior.config, prior.params, x, t, cond_x0, keep)
        noise = normal_like(step_key, x)
        step = lambda a, a0, z: ddim_step(prior.schedule, a, a0, t, t_prev, eta, z)  # noqa: E731
        return jax.tree.map(step, x, x0_hat, noise), None

    x0, _ = jax.lax.scan(reverse_step, x_start, (steps, next_steps, jax.random.split(chain_key, num_steps)))
    return x0


def sample(
    prior: PriorModel,
    key: jax.Array,
    n: int,
    cond: PairParams | None = None,
    num_steps: int = 10,
    eta: float = 1.0,
) -> PairParams:
    """Draw n pairs from the prior (batched API: jit + vmap over `sample_x0`).

    Args:
        prior: the trained prior.
        key: PRNG key.
        n: number of samples (static).
        cond: (n, 2, ...) initial estimates for a conditional prior, or None.
        num_steps: reverse DDIM steps (static).
        eta: DDIM stochasticity.
    Returns:
        `PairParams` with leading axis n; person 0 at the origin (the prior knows relative placement only).
    """
    return _sample_batch(prior, jax.random.split(key, n), cond, num_steps, eta)


@functools.partial(jax.jit, static_argnames="num_steps")
def _sample_batch(
    prior: PriorModel, keys: jax.Array, cond: PairParams | None, num_steps: int, eta: jax.Array | float
) -> PairParams:
    # in_axes 0 on a None condition is fine: None is an empty pytree.
    x0 = jax.vmap(sample_x0, in_axes=(None, 0, 0, None, None))(prior, keys, cond, num_steps, eta)
    return x0_to_params(x0, jnp.zeros((keys.shape[0], 3), x0.transl.dtype))


def init_from_prior(
    prior: PriorModel,
    body: BodyModel,
    init: PairParams,
    key: jax.Array,
    num_steps: int = 10,
) -> PairParams:
    """BUDDI's optional initialisation of one pair: sample the (conditional) prior from noise, then move the
    sample rigidly so person 0 has the initial estimate's orientation and translation.

    Args:
        prior: the trained prior (conditional for best results; an unconditional one ignores `init` here).
        body: body model (rest pelvis for the rigid move).
        init: the initial estimate of one pair.
        key: PRNG key.
        num_steps: reverse DDIM steps (static).
    Returns:
        The new starting point of the fit for this pair.
    """
    x0 = sample_x0(prior, key, init, num_steps)
    sampled = x0_to_params(x0, jnp.zeros((3,), x0.transl.dtype))
    return reanchor(body, sampled, init.global_orient[0], init.transl[0])
