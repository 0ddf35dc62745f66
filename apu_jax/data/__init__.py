"""apu-jax."""
