"""Gaussian diffusion noise schedule (cosine), forward noising and DDIM-style reverse steps.

Conventions follow "improved DDPM" (Nichol & Dhariwal 2021), which BUDDI uses: a step index
t ∈ {0, …, T−1}; ``alphas_cumprod[t]`` = ᾱ_t is the signal fraction *after* step t, so ᾱ_0 = 1 − β_0 ≈ 1
(almost no noise) and ᾱ_{T−1} ≈ 0 (pure noise). The cosine schedule defines the continuous curve
ā(u) = cos²(((u + s) / (1 + s)) · π/2), u ∈ [0, 1], and β_t = min(1 − ā((t+1)/T) / ā(t/T), β_max).

The denoiser predicts x₀ directly; sampling uses the DDIM update written in terms of that x₀ prediction.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Schedule:
    """A discrete diffusion schedule; every field is an array so the schedule can be traced."""

    betas: jax.Array  # (T,) per-step noise variance β_t, clipped at β_max
    alphas_cumprod: jax.Array  # (T,) ᾱ_t = ∏_{i ≤ t} (1 − β_i), decreasing from ≈1 to ≈0

    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps (static: it is a shape)."""
        return int(self.betas.shape[0])


def cosine_schedule(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """The cosine schedule of improved DDPM.

    Args:
        num_steps: T, the number of diffusion steps.
        s: small offset that keeps β_0 away from 0 (0.008 in improved DDPM and BUDDI).
        max_beta: clip for β_t; without it β_{T−1} = 1 and the last step would be singular.
    Returns:
        A float32 `Schedule` with T steps. Computed in float64 on the host, then cast.
    """

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2

    betas = [
        min(1.0 - alpha_bar((t + 1) / num_steps) / alpha_bar(t / num_steps), max_beta)
        for t in range(num_steps)
    ]
    alphas_cumprod = []
    running = 1.0
    for beta in betas:
        running *= 1.0 - beta
        alphas_cumprod.append(running)
    return Schedule(
        betas=jnp.asarray(betas, dtype=jnp.float32),
        alphas_cumprod=jnp.asarray(alphas_cumprod, dtype=jnp.float32),
    )


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Forward noising x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε.

    Args:
        schedule: the diffusion schedule.
        x0: (...) clean sample (any shape; use `jax.tree.map` for pytrees).
        t: () int step index in [0, T).
        noise: same shape as x0, standard normal ε.
    Returns:
        x_t, same shape as x0.
    """
    alpha_bar = schedule.alphas_cumprod[t]
    return jnp.sqrt(alpha_bar) * x0 + jnp.sqrt(1.0 - alpha_bar) * noise


def ddim_step(
    schedule: Schedule,
    x_t: jax.Array,
    x0_pred: jax.Array,
    t: jax.Array,
    t_prev: jax.Array,
    eta: jax.Array | float,
    noise: jax.Array,
) -> jax.Array:
    """One DDIM update from step t to an earlier step t_prev, given the model's x₀ prediction.

    ε̂ = (x_t − √ᾱ_t x̂₀)/√(1 − ᾱ_t);  σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev);
    x_prev = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev − σ²) ε̂ + σ z.  t_prev < 0 means "the clean end" (ᾱ_prev = 1), which
    returns x̂₀ exactly. η = 0 is deterministic DDIM, η = 1 matches the DDPM posterior variance.

    Args:
        schedule: the diffusion schedule.
        x_t: (...) current noisy sample at step t.
        x0_pred: (...) the denoiser's x₀ prediction for x_t.
        t: () int current step.
        t_prev: () int target step (< t), or −1 for the end.
        eta: stochasticity η ∈ [0, 1].
        noise: (...) standard normal z.
    Returns:
        (...) x at step t_prev.
    """
    alpha_bar = schedule.alphas_cumprod[t]
    alpha_bar_prev = jnp.where(t_prev >= 0, schedule.alphas_cumprod[jnp.maximum(t_prev, 0)], 1.0)
    eps_pred = (x_t - jnp.sqrt(alpha_bar) * x0_pred) / jnp.sqrt(1.0 - alpha_bar)
    sigma = eta * jnp.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev))
    direction = jnp.sqrt(jnp.maximum(1.0 - alpha_bar_prev - sigma**2, 0.0))
    return jnp.sqrt(alpha_bar_prev) * x0_pred + direction * eps_pred + sigma * noise


def sampling_timesteps(num_steps: int, num_sampling_steps: int) -> jax.Array:
    """Evenly spaced decreasing step indices for a short reverse chain, from T − 1 (noise) down to 0.

    For T = 1000 and 10 sampling steps: [999, 888, 777, 666, 555, 444, 333, 222, 111, 0].

    Returns:
        (num_sampling_steps,) int32, strictly decreasing (num_sampling_steps ≤ T), first T − 1, last 0.
    """
    steps = [
        round((num_steps - 1) * (1.0 - i / max(num_sampling_steps - 1, 1))) for i in range(num_sampling_steps)
    ]
    return jnp.asarray(steps, dtype=jnp.int32)
