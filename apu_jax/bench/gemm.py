"""The machine's float32 GEMM rate: `jnp.dot` on large square matrices, median of repeats.

This is the yardstick for `gemm_fraction` in `apu bench fit`: the FLOP rate the fit reaches divided by what
the same JAX backend gets on the friendliest possible workload, measured in the same run (so both see the
same load on a shared machine).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp


def gemm_rate(size: int = 2048, repeats: int = 5, dtype: Any = jnp.float32) -> dict[str, float]:
    """float32 FLOP/s of `jnp.dot` on (size, size) @ (size, size), at the pinned matmul precision.

    Args:
        size: matrix side; 2048 (17 GFLOP per product) is large enough to be compute bound on a CPU.
        repeats: timed products after one warm-up; the median is reported.
        dtype: element type.
    Returns:
        `flops_per_s` (median), `best_flops_per_s`, `size`, `repeats`, `median_s` (seconds per product).
    """
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (size, size), dtype)
    b = jax.random.normal(key_b, (size, size), dtype)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))  # compile + warm-up
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        jax.block_until_ready(dot(a, b))
        times.append(time.perf_counter() - t0)
    flops = 2.0 * size**3
    median = statistics.median(times)
    return {
        "flops_per_s": flops / median,
        "best_flops_per_s": flops / min(times),
        "size": size,
        "repeats": len(times),
        "median_s": median,
    }
