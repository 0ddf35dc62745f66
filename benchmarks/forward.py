"""Body-model forward pass: JAX `forward` vs smplx (PyTorch) at batch 1, 64, 256 on the same synthetic
official-size SMPL-X file (V = 10475, 400 shape directions, pose correctives; 10 betas, 10 expression, 6 PCA
hand components). jit + block_until_ready + warm-up + median of repeats; compile time separate; matmul
precision pinned to "highest"; machine and versions printed.

Run: `python benchmarks/forward.py [--batch-sizes 1,64,256] [--repeats 7] [--json]` (or `apu bench forward`).
"""

from __future__ import annotations

import argparse
import json
import sys

from apu_jax.bench.forward_bench import bench_forward, summary_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,64,256", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per batch size (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    result = bench_forward(sizes, args.repeats, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2) if args.json else "\n".join(summary_lines(result)))


if __name__ == "__main__":
    main()
