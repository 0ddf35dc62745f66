"""Helpers of benchmarks/prior_dev.sh: reference contact statistics and the markdown result table.

python benchmarks/prior_report.py quality SOURCE... --out quality.json
    contact / interpenetration statistics (apu_jax.prior.quality) of training sources: FITS directories
    (kept pairs) or pair sets with gt_* parameters; the yardstick for `apu prior sample`'s figures.
python benchmarks/prior_report.py table --test eval_test.json [--train eval_train.json]
    [--sample sample.json] [--sample-gt sample.json] [--quality quality.json] [--label LABEL]
    the markdown table: one row per split, joint PA-MPJPE (mm) of init / no contacts / noisy contacts /
    prior-guided [/ prior-guided with a prior trained on GT] (the eval JSON's runs in that order), then
        the sampling figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _quality(args: argparse.Namespace) -> int:
    from apu_jax import load_model
    from apu_jax.prior.quality import pair_statistics
    from apu_jax.prior.train import load_source

    model = load_model(args.model)
    report = {}
    for source in args.sources:
        target, _, _ = load_source(source)
        stats = pair_statistics(model, target)
        report[str(source)] = {k: v for k, v in stats.items() if not isinstance(v, list)}
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


def _runs(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    return data["runs"] if "runs" in data else [data]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _sample_line(name: str, path: Path) -> str:
    q = json.loads(path.read_text())["quality"]
    return (
        f"{name} ({q['n']}): {q['contact_fraction']:.2f} in contact "
        f"(min body distance < {100 * q['contact_threshold_m']:.0f} cm), median min distance "
        f"{100 * q['min_distance_median_m']:.1f} cm (p90 {100 * q['min_distance_p90_m']:.1f} cm), "
        f"{100 * q['penetrating_vertex_fraction_mean']:.1f} % of sampled vertices inside the other "
        f"body on average, {q['penetrating_pairs_fraction']:.2f} of the pairs with > 1 % inside."
    )


def _table(args: argparse.Namespace) -> int:
    rows = [("test", args.test)] + ([("train (in-sample for the prior)", args.train)] if args.train else [])
    runs_of = {name: _runs(path) for name, path in rows}
    for (_, path), runs in zip(rows, runs_of.values(), strict=True):
        if len(runs) not in (3, 4):
            message = f"expected 3 or 4 eval runs (no contact, contact, prior[, GT prior]), got {len(runs)}"
            print(f"error: {path}: {message}", file=sys.stderr)
            return 2
    columns = ["init", "GMM, no contacts", "noisy contact maps", "prior-guided"]
    if any(len(r) == 4 for r in runs_of.values()):
        columns.append("prior-guided, prior trained on GT")
    lines = [
        "| split | pairs | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for name, runs in runs_of.items():
        pad = [None] * (len(columns) - 1 - len(runs))
        values = [runs[0]["init_joint_pa_mpjpe_mm"]] + [r["joint_pa_mpjpe_mm"] for r in runs] + pad
        label = f"{args.label} — {name}" if args.label else name
        lines.append(f"| {label} | {runs[0]['n_pairs']} | " + " | ".join(_fmt(v) for v in values) + " |")
        kept = [r.get("kept_joint_pa_mpjpe_mm") for r in runs] + pad
        nkept = "/".join(str(r.get("n_kept")) for r in runs)
        kept_cells = " | ".join(_fmt(v) for v in kept)
        lines.append(f"| {label}, kept by the filter | {nkept} | | {kept_cells} |")
    print("Joint two-person PA-MPJPE (mm), body joints 0-21:\n")
    print("\n".join(lines))
    print()
    if args.sample:
        print(_sample_line("Unconditional samples of the prior", args.sample))
    if args.sample_gt:
        print(_sample_line("Unconditional samples of the GT-trained prior", args.sample_gt))
    if args.quality:
        for source, q in json.loads(args.quality.read_text()).items():
            print(
                f"Reference {source} ({q['n']}): {q['contact_fraction']:.2f} in contact, median min distance "
                f"{100 * q['min_distance_median_m']:.1f} cm (p90 {100 * q['min_distance_p90_m']:.1f} cm), "
                f"{100 * q['penetrating_vertex_fraction_mean']:.1f} % vertices inside, "
                f"{q['penetrating_pairs_fraction']:.2f} of the pairs with > 1 % inside."
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    quality = sub.add_parser("quality", help="contact statistics of training sources")
    quality.add_argument("sources", nargs="+", type=Path)
    quality.add_argument("--out", type=Path, required=True)
    quality.add_argument("--model", default="default")
    table = sub.add_parser("table", help="the markdown result table")
    table.add_argument("--test", type=Path, required=True, help="apu eval --json of the test part")
    table.add_argument("--train", type=Path, help="apu eval --json of the train part")
    table.add_argument("--sample", type=Path, help="apu prior sample --json")
    table.add_argument("--sample-gt", type=Path, help="apu prior sample --json of the GT-trained prior")
    table.add_argument("--quality", type=Path, help="output of the quality command")
    table.add_argument("--label", default="", help="interaction label for the row names")
    args = parser.parse_args(argv)
    return _quality(args) if args.command == "quality" else _table(args)


if __name__ == "__main__":
    raise SystemExit(main())
