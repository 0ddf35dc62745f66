"""Sweep the fit's traced weights on a pair set with ground truth (how the README's fit defaults were chosen).

Every setting is one `fit_pairset` run into a temporary folder, evaluated with `apu_jax.eval.evaluate`. Loss
weights are traced, so the whole sweep compiles once per `FitStructure` (contact on/off). An "oracle" row
fits with the ground-truth contact map (weight 1) in place of the noisy one: the ceiling the contact term
can reach on these pairs.

Run: `python benchmarks/tune_fit.py PAIRS --no-contact --oracle --grid contact=0.1,1 contact_rho=10,1e4`
Prints one JSON line per setting and a table at the end. Settings not in the grid keep their defaults.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from apu_jax.data.pairset import load_pairset, save_pairset
from apu_jax.eval.evaluate import evaluate
from apu_jax.fit.engine import FitStructure, FitWeights
from apu_jax.fit.run import fit_pairset

KEYS = ("joint_pa_mpjpe_mm", "mpjpe_mm", "contact_recall", "filter_precision", "filter_recall", "n_kept")


def oracle_pairset(pairs_path: Path, out_path: Path) -> Path:
    """The pair set with its contact map replaced by the ground-truth region pairs (weight 1)."""
    pairs = load_pairset(pairs_path)
    arrays = dict(pairs.arrays)
    gt = arrays["gt_contact_pairs"]
    arrays["contact_pairs"] = gt.astype(np.int32)
    arrays["contact_weights"] = (gt[..., 0] >= 0).astype(np.float32)
    save_pairset(out_path, meta=pairs.meta, **arrays)
    return out_path


def parse_grid(items: list[str]) -> list[dict[str, float]]:
    axes = []
    for item in items:
        name, values = item.split("=", 1)
        axes.append([(name, float(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path)
    parser.add_argument("--iters", default="100,50")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--grid", nargs="*", default=[], help="weight=v1,v2 … (FitWeights fields)")
    parser.add_argument(
        "--no-contact", action="store_true", help="also fit each setting without the contact term"
    )
    parser.add_argument("--oracle", action="store_true", help="also fit with the ground-truth contact map")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    iters = tuple(int(x) for x in args.iters.split(","))
    print(f"machine: {platform.node()} {platform.machine()}; jax {jax.__version__} {jax.devices()}")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, Path, bool, dict[str, float]]] = []
        for setting in parse_grid(args.grid):
            if args.no_contact:
                runs.append(("no contact", args.pairs, False, setting))
            runs.append(("noisy contacts", args.pairs, True, setting))
            if args.oracle:
                oracle = Path(tmp) / "oracle.npz"
                if not oracle.exists():
                    oracle_pairset(args.pairs, oracle)
                runs.append(("GT contacts", oracle, True, setting))
        for index, (name, pairs_path, use_contact, setting) in enumerate(runs):
            structure = FitStructure(iters=iters, use_contact=use_contact)
            out = Path(tmp) / f"fits{index}"
            start = time.perf_counter()
            summary = fit_pairset(
                pairs_path,
                out,
                structure=structure,
                weights=FitWeights.defaults(**setting),
                batch_size=args.batch_size,
                limit=args.limit,
            )
            result = evaluate(out, pairs_path)
            row = {"run": name, **setting, **{k: result.get(k) for k in KEYS}}
            row["init_joint_pa_mpjpe_mm"] = result.get("init_joint_pa_mpjpe_mm")
            row["fit_s"] = summary.get("fit_s")
            row["wall_s"] = round(time.perf_counter() - start, 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    print("| run | setting | joint PA-MPJPE mm | contact recall | filter precision | kept |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        setting = ", ".join(
            f"{k}={row[k]:g}"
            for k in row
            if k not in KEYS and k not in ("run", "init_joint_pa_mpjpe_mm", "fit_s", "wall_s")
        )
        fp = row["filter_precision"]
        print(
            f"| {row['run']} | {setting or 'defaults'} | {row['joint_pa_mpjpe_mm']:.1f} | "
            f"{row['contact_recall']:.2f} | {fp if fp is None else round(fp, 3)} | {row['n_kept']} |"
        )


if __name__ == "__main__":
    main()
