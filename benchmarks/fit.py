"""Fit engine throughput vs batch size against the per-pair PyTorch fit (smplx, Adam, batch 1), measured in
the same run, with FLOPs per pair-iteration, the fraction of the machine's GEMM rate reached and the memory
plan (bytes per pair). A thin wrapper of `apu_jax.bench.fit_bench.bench_fit` (same as `apu bench fit`).

Run: `python benchmarks/fit.py [--n-pairs 16] [--iters 20,10] [--batch-sizes 1,4,16] [--baseline-pairs 1]
[--terms] [--default-model] [--no-interpenetration] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import sys

from apu_jax.bench.fit_bench import bench_fit, summary_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pairs", type=int, default=16)
    parser.add_argument("--iters", default="20,10", help="Adam steps of stage 1 and stage 2, N1,N2")
    parser.add_argument("--batch-sizes", default="1,4,16", help="comma-separated batch sizes")
    parser.add_argument("--baseline-pairs", type=int, default=1, help="pairs fitted by the PyTorch loop")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per batch size (median)")
    parser.add_argument("--terms", action="store_true", help="time each loss term's share")
    parser.add_argument("--default-model", action="store_true", help="also time the bundled default model")
    parser.add_argument(
        "--no-interpenetration", action="store_true", help="leave out stage-2 interpenetration"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    first, second = (int(x) for x in args.iters.split(","))
    result = bench_fit(
        n_pairs=args.n_pairs,
        iters=(first, second),
        batch_sizes=[int(x) for x in args.batch_sizes.split(",")],
        baseline_pairs=args.baseline_pairs,
        repeats=args.repeats,
        terms=args.terms,
        default_model=args.default_model,
        use_interpenetration=not args.no_interpenetration,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(json.dumps(result, indent=2, default=str) if args.json else "\n".join(summary_lines(result)))


if __name__ == "__main__":
    main()
