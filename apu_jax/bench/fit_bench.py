"""`apu bench fit`: throughput of the two-stage fit vs batch size, against a per-pair PyTorch fit.

Everything is measured in ONE run so that the ratios hold on a shared, noisy machine:

1. the machine's float32 GEMM rate (`gemm.gemm_rate`), before the fit timings and again after the baseline;
2. for each batch size: compile time (`fit_batch.lower(...).compile()`), one warm-up call, then the median of
   `repeats` timed calls → pairs/s; XLA's buffer assignment (`memory_analysis`) → bytes;
3. the reference PyTorch fit (`torch_baseline`: smplx forward, torch Adam, one pair at a time) on the first
   pairs of the same inputs with the same iteration counts → baseline pairs/s;
4. FLOPs per pair-iteration (`flops.per_pair`) → the FLOP rate the fit reaches, as a fraction of the GEMM
   rate.

Model: a synthetic SMPL-X file in the official layout and size (V = 10475, 400 shape directions, pose
correctives), loaded with smplx's defaults (10 betas, 10 expression coefficients, 6 PCA hand components) on
both sides. Its faces are random triangles, which make a meaningless, oversized interpenetration proxy
(~39 k faces); the benchmark therefore uses a closed proxy with the face count of a real 600-vertex proxy
(`closed_proxy`: 2·600 − 4 = 1196 triangles on 600 farthest-point-sampled vertices) on both sides. The cost
of every term depends only on these sizes.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from apu_jax.bench import flops as flops_mod
from apu_jax.bench.gemm import gemm_rate
from apu_jax.bench.machine import MATMUL_PRECISION, machine_info
from apu_jax.body.model import BodyModel, forward, load_model
from apu_jax.body.synthetic import OFFICIAL_NUM_VERTICES, write_synthetic_smplx
from apu_jax.data.pairset import PairSet
from apu_jax.fit.engine import FitStatics, FitStructure, FitWeights, PairInputs, fit_batch
from apu_jax.fit.gmm import save_gmm_npz
from apu_jax.fit.interpenetration import Proxy, farthest_point_sampling
from apu_jax.fit.run import DEFAULT_PROXY_VERTICES, build_statics, pair_inputs
from apu_jax.fit.synthetic import synthetic_pairs

GPU_BYTES = 80e9  # the memory plan's budget: one 80 GB accelerator
PLAN_PAIRS = 4096  # pairs that must fit in GPU_BYTES at once
NUM_BETAS = 10
NUM_EXPRESSION = 10
NUM_PCA_COMPS = 6

Log = Callable[[str], None]


@dataclasses.dataclass
class BenchInputs:
    """A model, its fit statics and a synthetic pair set: what both implementations are fed."""

    model_path: Path | None  # the SMPL-X file (None for the bundled default model)
    model: BodyModel  # loaded with smplx's default options
    statics: FitStatics  # regions, keypoint map, GMM, proxy, query vertices
    pairs: PairSet  # synthetic pairs with ground truth
    gmm: str  # which GMM file was used
    proxy: str  # how the interpenetration proxy was built


def closed_proxy(model: BodyModel, num_vertices: int = DEFAULT_PROXY_VERTICES) -> Proxy:
    """A closed, outward-oriented proxy with the size of a real one: 2n − 4 triangles on n model vertices.

    The n vertices are farthest-point samples of the rest mesh; the triangles are the convex hull of n
    Fibonacci points on a sphere (a closed genus-0 triangulation, as a real body proxy), relabelled to those
    vertices. For a synthetic model with random faces this gives the realistic COST of the inside test.
    """
    from scipy.spatial import ConvexHull

    k = np.arange(num_vertices) + 0.5
    polar = np.arccos(1.0 - 2.0 * k / num_vertices)
    azimuth = np.pi * (1.0 + 5.0**0.5) * k
    sphere = np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1
    )
    faces = ConvexHull(sphere).simplices.copy()
    corners = sphere[faces]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    inward = np.sum(normal * corners.mean(axis=1), axis=1) < 0
    faces[inward] = faces[inward][:, ::-1]
    rest = np.asarray(jax.jit(lambda m: forward(m)["vertices"])(model))
    seeds = farthest_point_sampling(rest, num_vertices)
    return Proxy(
        faces=jnp.asarray(seeds[faces], jnp.int32), vertex_ids=jnp.asarray(np.sort(seeds), jnp.int32)
    )


def _gmm_path(work_dir: Path) -> str:
    """The bundled CMU GMM if it exists, else a synthetic 8-component one (same cost) in `work_dir`."""
    bundled = Path(__file__).resolve().parent.parent / "data" / "gmm_cmu_08.npz"
    if bundled.exists():
        return "default"
    rng = np.random.default_rng(0)
    factors = rng.normal(0.0, 0.3, (8, 63, 63))
    covars = factors @ factors.transpose(0, 2, 1) / 63 + 0.05 * np.eye(63)
    path = work_dir / "gmm_synthetic_08.npz"
    save_gmm_npz(path, rng.normal(0.0, 0.1, (8, 63)), covars, np.full(8, 1 / 8), {"source": "synthetic"})
    return str(path)


def prepare_synthetic(
    work_dir: Path, num_pairs: int, seed: int = 0, num_vertices: int = OFFICIAL_NUM_VERTICES
) -> BenchInputs:
    """Synthetic SMPL-X file (official size by default), statics with a realistic-size proxy, and pairs.

    A smaller `num_vertices` (tests) writes 20 shape directions instead of 400; smplx cannot load it.
    """
    path = write_synthetic_smplx(
        work_dir / "SMPLX_NEUTRAL.npz",
        num_vertices=num_vertices,
        seed=seed,
        num_shape_dirs=400 if num_vertices == OFFICIAL_NUM_VERTICES else 20,
    )
    model = load_model(
        path, num_betas=NUM_BETAS, num_expression_coeffs=NUM_EXPRESSION, num_pca_comps=NUM_PCA_COMPS
    )
    gmm = _gmm_path(work_dir)
    statics = build_statics(model, "body25", gmm=gmm, num_proxy_vertices=8)  # cheap; replaced below
    statics = statics.replace(proxy=closed_proxy(model, min(DEFAULT_PROXY_VERTICES, num_vertices // 4)))
    pairs = PairSet(arrays=synthetic_pairs(model, num_pairs, seed=seed), meta={"keypoint_format": "body25"})
    return BenchInputs(path, model, statics, pairs, gmm, "closed_proxy (2n−4 faces on 600 vertices)")


def prepare_default(work_dir: Path, num_pairs: int, seed: int = 0) -> BenchInputs | None:
    """The bundled default model with its own proxy, or None when its file is not installed."""
    if not (Path(__file__).resolve().parent.parent / "data" / "default_model.npz").exists():
        return None
    model = load_model("default")
    gmm = _gmm_path(work_dir)
    statics = build_statics(model, "body25", gmm=gmm)
    pairs = PairSet(arrays=synthetic_pairs(model, num_pairs, seed=seed), meta={"keypoint_format": "body25"})
    return BenchInputs(None, model, statics, pairs, gmm, "build_proxy (the model's own)")


def batch(inputs: BenchInputs, batch_size: int) -> PairInputs:
    """The first `batch_size` pairs (cycling through the set when it is smaller)."""
    index = np.arange(batch_size) % len(inputs.pairs)
    return pair_inputs(inputs.pairs, index, inputs.model.num_betas)


def _memory(compiled: Any) -> dict[str, int] | None:
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    out = {
        "temp_bytes": int(analysis.temp_size_in_bytes),
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
        "alias_bytes": int(analysis.alias_size_in_bytes),
    }
    out["total_bytes"] = out["temp_bytes"] + out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"]
    return out


def time_fit_batch(
    inputs: BenchInputs,
    batch_size: int,
    weights: FitWeights,
    structure: FitStructure,
    repeats: int = 1,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Compile time, median fit time and pairs/s of one batch of `batch_size` pairs; and the fit result."""
    pairs = batch(inputs, batch_size)
    t0 = time.perf_counter()
    compiled = fit_batch.lower(inputs.model, inputs.statics, pairs, weights, structure).compile()
    compile_s = time.perf_counter() - t0
    result = jax.block_until_ready(compiled(inputs.model, inputs.statics, pairs, weights))  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        result = jax.block_until_ready(compiled(inputs.model, inputs.statics, pairs, weights))
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    row = {
        "batch_size": batch_size,
        "compile_s": compile_s,
        "fit_s": seconds,
        "fit_s_all": times,
        "pairs_per_s": batch_size / seconds,
        "memory": _memory(compiled),
    }
    return row, jax.device_get(result)


def memory_plan(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Bytes per pair = slope of XLA's (temp + argument + output) between the two largest batch sizes.

    Returns the slope, the fixed part (model, statics, program temporaries), how many pairs fit in
    `GPU_BYTES`, and whether `PLAN_PAIRS` do. None with fewer than two batch sizes.
    """
    sized = sorted((r for r in rows if r["memory"] is not None), key=lambda r: r["batch_size"])
    if len(sized) < 2:
        return None
    small, large = sized[-2], sized[-1]
    slope = (large["memory"]["total_bytes"] - small["memory"]["total_bytes"]) / (
        large["batch_size"] - small["batch_size"]
    )
    fixed = large["memory"]["total_bytes"] - slope * large["batch_size"]
    capacity = int((GPU_BYTES - fixed) // slope) if slope > 0 else None
    return {
        "from_batch_sizes": [small["batch_size"], large["batch_size"]],
        "bytes_per_pair": slope,
        "temp_bytes_per_pair": (large["memory"]["temp_bytes"] - small["memory"]["temp_bytes"])
        / (large["batch_size"] - small["batch_size"]),
        "fixed_bytes": fixed,
        "budget_bytes": GPU_BYTES,
        "pairs_in_budget": capacity,
        f"bytes_for_{PLAN_PAIRS}_pairs": fixed + slope * PLAN_PAIRS,
        f"fits_{PLAN_PAIRS}_pairs": bool(fixed + slope * PLAN_PAIRS <= GPU_BYTES),
        "note": "XLA CPU buffer assignment; a GPU compile fuses differently, so re-measure there",
    }


def term_costs(
    inputs: BenchInputs, weights: FitWeights, batch_size: int = 8, repeats: int = 5
) -> dict[str, Any]:
    """Time of one loss+gradient evaluation per pair with one term switched on at a time.

    `jit(vmap(value_and_grad(weighted loss)))` over `batch_size` pairs; the base (body model, keypoints,
    shape and init-pose priors, which cannot be switched off) is timed per stage, and each optional term's
    cost is its variant minus the base of its stage. Milliseconds per pair-iteration (median of `repeats`
    round-robin rounds).
    """
    pairs = batch(inputs, batch_size)
    base = FitStructure(use_contact=False, use_gmm=False, use_interpenetration=False)
    variants = {
        "base_stage1": (base, 0),
        "contact": (dataclasses.replace(base, use_contact=True), 0),
        "gmm": (dataclasses.replace(base, use_gmm=True), 0),
        "base_stage2": (base, 1),
        "interpenetration": (dataclasses.replace(base, use_interpenetration=True), 1),
        "full_stage1": (FitStructure(), 0),
        "full_stage2": (FitStructure(), 1),
    }
    compile_s: dict[str, float] = {}
    programs = {}
    one = jax.tree_util.tree_map(lambda a: a[0], pairs)
    for name, (structure, stage) in variants.items():
        free, fixed, total = flops_mod.stage_objective(structure, stage, one)
        step = jax.jit(jax.vmap(jax.value_and_grad(total), in_axes=(0, 0, None, None, 0, None)))
        free_b = {k: v for k, v in _stacked(pairs).items() if k in free}
        fixed_b = {k: v for k, v in _stacked(pairs).items() if k in fixed}
        args = (free_b, fixed_b, inputs.model, inputs.statics, pairs, weights)
        t0 = time.perf_counter()
        compiled = step.lower(*args).compile()
        compile_s[name] = time.perf_counter() - t0
        jax.block_until_ready(compiled(*args))  # warm-up
        programs[name] = (compiled, args)
    # Round robin: every variant is timed once per round, so a load change on a shared machine hits all
    # variants alike instead of biasing whichever ran during it.
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(1, repeats)):
        for name, (compiled, args) in programs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times[name].append(time.perf_counter() - t0)
    ms = {name: 1e3 * statistics.median(t) / batch_size for name, t in times.items()}
    increments = {
        "contact": ms["contact"] - ms["base_stage1"],
        "gmm": ms["gmm"] - ms["base_stage1"],
        "interpenetration": ms["interpenetration"] - ms["base_stage2"],
    }
    return {
        "batch_size": batch_size,
        "ms_per_pair_iteration": ms,
        "term_ms_per_pair_iteration": increments,
        "interpenetration_share_of_stage2": increments["interpenetration"] / ms["full_stage2"],
        "contact_share_of_stage1": increments["contact"] / ms["full_stage1"],
        "compile_s": compile_s,
    }


def _stacked(pairs: PairInputs) -> dict[str, jax.Array]:
    return {
        "global_orient": pairs.global_orient,
        "body_pose": pairs.body_pose,
        "betas": pairs.betas,
        "transl": pairs.transl,
    }


def _baseline(
    inputs: BenchInputs, num_pairs: int, weights: FitWeights, structure: FitStructure
) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    from apu_jax.bench import torch_baseline

    setup = torch_baseline.make_setup(
        inputs.model_path, inputs.statics, NUM_BETAS, NUM_EXPRESSION, NUM_PCA_COMPS
    )
    timing = torch_baseline.time_fit(setup, batch(inputs, num_pairs), num_pairs, weights, structure)
    results = timing.pop("results")
    return timing, results


def _agreement(jax_result: dict[str, np.ndarray], torch_results: list[dict[str, np.ndarray]]) -> dict:
    """Max |JAX − torch| of the fitted parameters on the baseline pairs (same objective → same fit)."""
    out = {}
    for key in ("body_pose", "betas", "transl"):
        out[key] = max(
            float(np.max(np.abs(jax_result[key][i] - r[key]))) for i, r in enumerate(torch_results)
        )
    return out


def bench_fit(
    n_pairs: int = 16,
    iters: tuple[int, int] = (20, 10),
    batch_sizes: Sequence[int] = (1, 4, 16),
    baseline_pairs: int = 1,
    repeats: int = 1,
    terms: bool = False,
    default_model: bool = False,
    use_interpenetration: bool = True,
    work_dir: str | Path | None = None,
    log: Log | None = None,
    num_vertices: int = OFFICIAL_NUM_VERTICES,
    gemm_size: int = 2048,
) -> dict[str, Any]:
    """Benchmark the fit engine against the per-pair PyTorch fit on identical inputs and iteration counts.

    Args:
        n_pairs: distinct synthetic pairs (batches cycle through them).
        iters: Adam steps of stage 1 and stage 2, on both sides.
        batch_sizes: batch sizes of the JAX sweep (one compile each).
        baseline_pairs: pairs fitted by the PyTorch loop (one after another).
        repeats: timed calls per batch size after the warm-up (median).
        terms: also time each loss term's share of an iteration (`term_costs`).
        default_model: also time the bundled default model at the largest batch size (if installed).
        use_interpenetration: include the stage-2 interpenetration term (on both sides).
        work_dir: where the synthetic model and GMM are written (default: a temporary directory).
        log: progress messages (e.g. to stderr).
        num_vertices: V of the synthetic model (smaller only for tests; smplx needs the official size).
        gemm_size: side of the square matrices of the GEMM-rate measurement.
    Returns:
        JSON-ready dict: `pairs_per_s` (best of the sweep), `baseline_pairs_per_s`, `speedup`,
        `gemm_fraction`, `bytes_per_pair`, and the details (`sweep`, `baseline`, `gemm`, `flops`,
        `memory_plan`, `machine`, `settings`, optional `term_costs`, `default_model`).
    """
    say = log or (lambda message: None)
    batch_sizes = sorted({int(b) for b in batch_sizes})
    if not batch_sizes or batch_sizes[0] < 1 or n_pairs < 1 or baseline_pairs < 0 or min(iters) < 0:
        raise ValueError("batch sizes and n_pairs must be ≥ 1, baseline_pairs and iters ≥ 0")
    if baseline_pairs and num_vertices != OFFICIAL_NUM_VERTICES:
        raise ValueError("the PyTorch baseline needs the official-size model (smplx's fixed vertex ids)")
    structure = FitStructure(iters=(int(iters[0]), int(iters[1])), use_interpenetration=use_interpenetration)
    weights = FitWeights.defaults()
    load_at_start = machine_info()["load_average_1_5_15min"]
    with tempfile.TemporaryDirectory() as tmp, jax.default_matmul_precision(MATMUL_PRECISION):
        folder = Path(work_dir) if work_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        say("preparing the synthetic official-size SMPL-X model, statics and pairs")
        inputs = prepare_synthetic(folder, n_pairs, num_vertices=num_vertices)
        say("measuring the GEMM rate")
        gemm_before = gemm_rate(gemm_size)
        sweep, result_largest = [], None
        for size in batch_sizes:
            say(f"fit, batch {size}: compiling and timing")
            row, result = time_fit_batch(inputs, size, weights, structure, repeats)
            say(f"  {row['pairs_per_s']:.3f} pairs/s, compile {row['compile_s']:.1f} s")
            sweep.append(row)
            result_largest = result
        baseline, agreement = None, None
        if baseline_pairs:
            say(f"PyTorch per-pair baseline on {baseline_pairs} pair(s)")
            baseline, torch_results = _baseline(inputs, baseline_pairs, weights, structure)
            say(f"  {baseline['pairs_per_s']:.4f} pairs/s")
            if batch_sizes[-1] >= baseline_pairs:
                agreement = _agreement(result_largest, torch_results)
        gemm_after = gemm_rate(gemm_size)
        say("counting FLOPs (XLA cost analysis)")
        one_pair = jax.tree_util.tree_map(lambda a: a[0], batch(inputs, 1))
        flops = flops_mod.per_pair(inputs.model, inputs.statics, one_pair, weights, structure)
        term_table = None
        if terms:
            say("timing each loss term's share")
            term_table = term_costs(inputs, weights, batch_size=min(8, batch_sizes[-1]))
        default = None
        if default_model:
            bundled = prepare_default(folder, n_pairs)
            if bundled is None:
                default = {"available": False}
            else:
                say("bundled default model, largest batch")
                row, _ = time_fit_batch(bundled, batch_sizes[-1], weights, structure, repeats)
                default = {
                    "available": True,
                    "num_vertices": bundled.model.num_vertices,
                    "pose_correctives": bundled.model.posedirs is not None,
                    "proxy_faces": int(bundled.statics.proxy.faces.shape[0]),
                    **row,
                }

    best = max(sweep, key=lambda r: r["pairs_per_s"])
    gemm_flops = max(gemm_before["flops_per_s"], gemm_after["flops_per_s"])
    achieved = best["pairs_per_s"] * flops["fit_flops_per_pair"]
    plan = memory_plan(sweep)
    baseline_rate = baseline["pairs_per_s"] if baseline else None
    return {
        "pairs_per_s": best["pairs_per_s"],
        "best_batch_size": best["batch_size"],
        "baseline_pairs_per_s": baseline_rate,
        "speedup": best["pairs_per_s"] / baseline_rate if baseline_rate else None,
        "gemm_fraction": achieved / gemm_flops,
        "achieved_flops_per_s": achieved,
        "gemm_flops_per_s": gemm_flops,
        "bytes_per_pair": plan["bytes_per_pair"] if plan else None,
        "flops_per_pair_iteration": flops["flops_per_pair_iteration"],
        "sweep": sweep,
        "baseline": baseline,
        "fit_agreement_max_abs": agreement,
        "gemm": {"before": gemm_before, "after": gemm_after},
        "flops": flops,
        "memory_plan": plan,
        "term_costs": term_table,
        "default_model": default,
        "settings": {
            "n_pairs": n_pairs,
            "iters": list(structure.iters),
            "batch_sizes": batch_sizes,
            "repeats": repeats,
            "baseline_pairs": baseline_pairs,
            "model": "synthetic official-layout SMPL-X",
            "num_vertices": inputs.model.num_vertices,
            "pose_correctives": inputs.model.posedirs is not None,
            "num_betas": inputs.model.num_betas,
            "num_expression": inputs.model.num_expression,
            "num_hand_pca": inputs.model.num_hand_components,
            "proxy": inputs.proxy,
            "proxy_faces": int(inputs.statics.proxy.faces.shape[0]),
            "query_vertices": int(inputs.statics.query_ids.shape[0]),
            "region_width": int(inputs.statics.region_vertex_ids.shape[1]),
            "contact_slots": int(inputs.pairs["contact_pairs"].shape[1]),
            "gmm_components": inputs.statics.gmm.num_components,
            "gmm": inputs.gmm,
            "structure": dataclasses.asdict(structure),
            "load_average_at_start": load_at_start,
        },
        "machine": machine_info(),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Human-readable lines of a `bench_fit` result (the CLI's non-JSON output)."""
    m, s = result["machine"], result["settings"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, load {m['load_average_1_5_15min']}; jax {m['jax']}, "
        f"torch {m['torch']}, smplx {m['smplx']}; matmul precision {m['matmul_precision']}",
        f"model: V={s['num_vertices']} posedirs={s['pose_correctives']} betas={s['num_betas']} "
        f"proxy faces={s['proxy_faces']} queries={s['query_vertices']}; iters={s['iters']}",
        f"{'batch':>6} {'pairs/s':>10} {'compile s':>10} {'fit s':>9} {'MB total':>10}",
    ]
    for row in result["sweep"]:
        mem = row["memory"]["total_bytes"] / 1e6 if row["memory"] else math.nan
        lines.append(
            f"{row['batch_size']:>6} {row['pairs_per_s']:>10.3f} {row['compile_s']:>10.1f} "
            f"{row['fit_s']:>9.2f} {mem:>10.1f}"
        )
    if result["baseline_pairs_per_s"]:
        lines.append(
            f"PyTorch per-pair baseline: {result['baseline_pairs_per_s']:.4f} pairs/s → speedup "
            f"{result['speedup']:.1f}x"
        )
    lines.append(
        f"FLOPs/pair-iteration {result['flops_per_pair_iteration'] / 1e6:.0f} M; fit reaches "
        f"{result['achieved_flops_per_s'] / 1e9:.2f} GFLOP/s of {result['gemm_flops_per_s'] / 1e9:.2f} "
        f"(GEMM) = {100 * result['gemm_fraction']:.1f} %"
    )
    if result["bytes_per_pair"] is not None:
        plan = result["memory_plan"]
        lines.append(
            f"memory: {result['bytes_per_pair'] / 1e6:.2f} MB/pair; {PLAN_PAIRS} pairs need "
            f"{plan[f'bytes_for_{PLAN_PAIRS}_pairs'] / 1e9:.1f} GB of {GPU_BYTES / 1e9:.0f} GB"
        )
    return lines
