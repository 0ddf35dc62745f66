"""apu-jax: Ask, Pose, Unite in JAX — pseudo-ground-truth meshes of people in close contact."""

from apu_jax.body import BodyModel, ModelFileError, forward, load_model

__version__ = "0.1.0"

__all__ = ["BodyModel", "ModelFileError", "__version__", "forward", "load_model"]
