"""The pair prior: a BUDDI-style diffusion model of two interacting bodies, its training, its use in fits.

- `schedule`: cosine noise schedule, forward noising, DDIM steps;
- `representation`: body parameters ↔ the diffusion variable x₀ (6D rotations, relative translation);
- `denoiser`: the flax transformer predicting x₀;
- `train`: loss, data mixing, jitted training, npz checkpoints (`load_prior`);
- `guidance`: what the fit engine calls (`denoise_target`, `diffusion_guidance_loss`), and sampling;
- `quality`: contact / interpenetration statistics of sets of pairs.
"""

from apu_jax.prior.denoiser import DenoiserConfig
from apu_jax.prior.guidance import (
    GuidanceWeights,
    PriorModel,
    denoise_target,
    diffusion_guidance_loss,
    init_from_prior,
    reanchor,
    sample,
)
from apu_jax.prior.representation import PairParams, PairX0, params_to_x0, x0_to_params
from apu_jax.prior.schedule import Schedule, cosine_schedule
from apu_jax.prior.train import PriorDataError, TrainConfig, load_prior, load_training_data, train_prior

__all__ = [
    "DenoiserConfig",
    "GuidanceWeights",
    "PairParams",
    "PairX0",
    "PriorDataError",
    "PriorModel",
    "Schedule",
    "TrainConfig",
    "cosine_schedule",
    "denoise_target",
    "diffusion_guidance_loss",
    "init_from_prior",
    "load_prior",
    "load_training_data",
    "params_to_x0",
    "reanchor",
    "sample",
    "train_prior",
    "x0_to_params",
]
