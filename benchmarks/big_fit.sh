#!/usr/bin/env bash
# A 10,000-pair `apu fit` on the CPU: peak memory must not grow with the pair count (README "Scale").
# The pair set repeats a smaller one (default: the CMU dev pair set made by benchmarks/cmu_dev.sh) under new
# pair ids. Iterations are few because memory does not depend on them (fixed-length lax.scan); pass more
# with ITERS=100,50 for a full-length run. Peak memory is the fit process's maximum resident set size.
# Usage: bash benchmarks/big_fit.sh [SOURCE_PAIRS] [OUT_DIR]
set -euo pipefail
src=${1:-runs/cmu_dev/pairs.npz}
out=${2:-runs/big_fit}
n=${N_PAIRS:-10000}
iters=${ITERS:-2,2}
mkdir -p "$out"
python - "$src" "$out/pairs.npz" "$n" <<'PY'
import sys
import numpy as np
from apu_jax.data.pairset import load_pairset, save_pairset

src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
pairs = load_pairset(src)
index = np.arange(n) % len(pairs)
arrays = {k: v[index] for k, v in pairs.arrays.items()}
arrays["pair_id"] = np.asarray([f"big-{i:06d}" for i in range(n)])
save_pairset(dst, meta=pairs.meta, **arrays)
print(f"{dst}: {n} pairs from {src}")
PY
rm -rf "$out/fits"
python - "$out" "$iters" <<'PY'
import json, resource, subprocess, sys, time

out, iters = sys.argv[1], sys.argv[2]
start = time.perf_counter()
with open(f"{out}/fit.json", "w") as stdout:
    subprocess.run(
        ["apu", "fit", f"{out}/pairs.npz", "--out", f"{out}/fits", "--iters", iters, "--json"],
        stdout=stdout, check=True,
    )
wall = time.perf_counter() - start
peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
summary = json.load(open(f"{out}/fit.json"))
keys = ("n_pairs", "n_fitted", "n_errors", "n_kept", "batch_size", "compile_s", "fit_s", "pairs_per_s")
result = {**{k: summary.get(k) for k in keys}, "iters": iters, "wall_s": round(wall, 1),
          "peak_rss_mib": round(peak_mib, 1)}
json.dump(result, open(f"{out}/big_fit.json", "w"), indent=2)
print(json.dumps(result, indent=2))
PY
