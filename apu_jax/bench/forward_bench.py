"""`apu bench forward`: the JAX body model's forward pass against smplx (PyTorch), same file, same options.

Both load one synthetic official-size SMPL-X file (V = 10475, 400 shape directions, pose correctives) with
smplx's default options (10 betas, 10 expression coefficients, 6 PCA hand components, hand mean added) and
get the same random parameters. JAX: `jit(forward)` compiled ahead (compile time reported separately), one
warm-up call, `block_until_ready`, median of repeats. smplx: `torch.no_grad()`, one warm-up call, median of
repeats. The largest vertex difference between the two is reported as a correctness check.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from apu_jax.bench.machine import MATMUL_PRECISION, machine_info
from apu_jax.body.model import forward, load_model
from apu_jax.body.synthetic import write_synthetic_smplx

NUM_BETAS = 10
NUM_EXPRESSION = 10
NUM_PCA_COMPS = 6


def random_params(batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 smplx-style parameters for `batch_size` bodies (radians, metres)."""
    rng = np.random.default_rng(seed)
    sizes = {
        "global_orient": 3,
        "body_pose": 63,
        "betas": NUM_BETAS,
        "transl": 3,
        "left_hand_pose": NUM_PCA_COMPS,
        "right_hand_pose": NUM_PCA_COMPS,
        "jaw_pose": 3,
        "leye_pose": 3,
        "reye_pose": 3,
        "expression": NUM_EXPRESSION,
    }
    return {k: rng.normal(0.0, 0.3, (batch_size, n)).astype(np.float32) for k, n in sizes.items()}


def _median_time(call: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    call()  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def bench_forward(
    batch_sizes: Sequence[int] = (1, 64, 256),
    repeats: int = 7,
    work_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time JAX `forward` and smplx on the same model and parameters at each batch size.

    Returns:
        JSON-ready dict: `rows` (batch_size, jax_s, smplx_s, ratio = smplx_s / jax_s, compile_s,
        max_abs_vertex_diff), `ratio_at_largest`, `machine`, `settings`.
    """
    import smplx
    import torch

    say = log or (lambda message: None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, jax.default_matmul_precision(MATMUL_PRECISION):
        folder = Path(work_dir) if work_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = write_synthetic_smplx(folder / "SMPLX_NEUTRAL.npz")
        model = load_model(
            path, num_betas=NUM_BETAS, num_expression_coeffs=NUM_EXPRESSION, num_pca_comps=NUM_PCA_COMPS
        )
        reference = smplx.SMPLX(
            str(path),
            num_betas=NUM_BETAS,
            num_expression_coeffs=NUM_EXPRESSION,
            use_pca=True,
            num_pca_comps=NUM_PCA_COMPS,
            flat_hand_mean=False,
            batch_size=1,
            dtype=torch.float32,
        )
        run = jax.jit(lambda m, p: forward(m, **p))
        for size in sorted({int(b) for b in batch_sizes}):
            say(f"forward, batch {size}")
            params = random_params(size)
            params_jax = {k: jax.numpy.asarray(v) for k, v in params.items()}
            t0 = time.perf_counter()
            compiled = run.lower(model, params_jax).compile()
            compile_s = time.perf_counter() - t0
            jax_s, jax_all = _median_time(
                lambda c=compiled, p=params_jax: jax.block_until_ready(c(model, p)), repeats
            )
            params_torch = {k: torch.as_tensor(v) for k, v in params.items()}

            def call_torch(p=params_torch):
                with torch.no_grad():
                    return reference(**p)

            torch_s, torch_all = _median_time(call_torch, repeats)
            ours = np.asarray(compiled(model, params_jax)["vertices"])
            theirs = call_torch().vertices.numpy()
            rows.append(
                {
                    "batch_size": size,
                    "jax_s": jax_s,
                    "smplx_s": torch_s,
                    "ratio": torch_s / jax_s,
                    "compile_s": compile_s,
                    "jax_s_all": jax_all,
                    "smplx_s_all": torch_all,
                    "max_abs_vertex_diff": float(np.max(np.abs(ours - theirs))),
                }
            )
            say(f"  jax {1e3 * jax_s:.2f} ms, smplx {1e3 * torch_s:.2f} ms, ratio {torch_s / jax_s:.2f}")
    return {
        "rows": rows,
        "ratio_at_largest": rows[-1]["ratio"],
        "settings": {
            "model": "synthetic official-layout SMPL-X",
            "num_vertices": model.num_vertices,
            "pose_correctives": model.posedirs is not None,
            "num_betas": NUM_BETAS,
            "num_expression": NUM_EXPRESSION,
            "num_hand_pca": NUM_PCA_COMPS,
            "repeats": repeats,
            "torch_threads": torch.get_num_threads(),
        },
        "machine": machine_info(),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Human-readable lines of a `bench_forward` result."""
    m, s = result["machine"], result["settings"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, load {m['load_average_1_5_15min']}; jax {m['jax']}, "
        f"torch {m['torch']} ({s['torch_threads']} threads), smplx {m['smplx']}; "
        f"matmul precision {m['matmul_precision']}",
        f"model: V={s['num_vertices']} posedirs={s['pose_correctives']} betas={s['num_betas']} "
        f"expression={s['num_expression']} hand PCA={s['num_hand_pca']}; median of {s['repeats']}",
        f"{'batch':>6} {'jax ms':>10} {'smplx ms':>10} {'smplx/jax':>10} {'compile s':>10} {'max |dv|':>10}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['batch_size']:>6} {1e3 * r['jax_s']:>10.2f} {1e3 * r['smplx_s']:>10.2f} {r['ratio']:>10.2f} "
            f"{r['compile_s']:>10.2f} {r['max_abs_vertex_diff']:>10.1e}"
        )
    return lines
