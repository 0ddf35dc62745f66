"""`apu eval`: score fits against the ground truth of their pair set.

Register with `from cli import eval as eval_cli; eval_cli.register(app)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import fail as _fail

JsonOut = Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]


_COLUMNS = (
    ("pairs", "n_pairs", "{:d}"),
    ("joint PA-MPJPE mm", "joint_pa_mpjpe_mm", "{:.1f}"),
    ("MPJPE mm", "mpjpe_mm", "{:.1f}"),
    ("PA-MPJPE mm", "pa_mpjpe_mm", "{:.1f}"),
    ("contact recall", "contact_recall", "{:.3f}"),
    ("contact precision", "contact_precision", "{:.3f}"),
    ("input contacts met", "input_contact_satisfied", "{:.3f}"),
)


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _table(results: list[dict[str, Any]]) -> str:
    """Rows: the initial estimate, then each run, then each run restricted to the pairs its filter kept."""
    first = results[0]
    rows = [
        ["init"]
        + [_cell(first.get("init_" + k, first[k] if k == "n_pairs" else None), f) for _, k, f in _COLUMNS]
    ]
    for res in results:
        name = Path(res["fits"]).name
        rows.append([name] + [_cell(res.get(k), f) for _, k, f in _COLUMNS])
        kept = ["-"] * len(_COLUMNS)
        kept[0], kept[1] = str(res["n_kept"]), _cell(res.get("kept_joint_pa_mpjpe_mm"), "{:.1f}")
        rows.append([f"{name} (kept)"] + kept)
    header = ["run"] + [c for c, _, _ in _COLUMNS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded)

    out = [line(header), line(["-" * w for w in widths]), *map(line, rows)]
    for res in results:
        fp, fr = res.get("filter_precision"), res.get("filter_recall")
        out.append(
            f"{Path(res['fits']).name}: filter precision {_cell(fp, '{:.3f}')}, recall {_cell(fr, '{:.3f}')} "
            f"(good = joint PA-MPJPE < {res['good_threshold_mm']:g} mm; {res['n_kept']} kept, "
            f"{_cell(res.get('n_good'), '{:d}')} good); fit errors: {res['n_fit_errors']}; "
            f"missing fits: {res['n_missing_fits']}"
        )
    return "\n".join(out)


def eval_command(
    fits: Annotated[list[Path], typer.Argument(help="One or more FITS directories (one row each).")],
    pairs: Annotated[Path, typer.Option("--pairs", help="The pair set the fits were made from (.npz).")],
    model: Annotated[
        str | None, typer.Option("--model", help="Body model ('default' or a path); default: the pair set's.")
    ] = None,
    good_threshold_mm: Annotated[
        float, typer.Option(min=0.0, help="A pair is good when its joint PA-MPJPE is below this (mm).")
    ] = 80.0,
    contact_threshold_m: Annotated[
        float, typer.Option(min=0.0, help="Region pairs closer than this are in contact (metres).")
    ] = 0.02,
    per_pair: Annotated[
        bool, typer.Option("--per-pair", help="Include per-pair numbers in the JSON.")
    ] = False,
    json_out: JsonOut = False,
) -> None:
    """Joint two-person PA-MPJPE, per-person MPJPE / PA-MPJPE, contact recall / precision and filter
    precision of fits (and of the pair set's initial estimate) against the pair set's ground truth."""
    from apu_jax.eval import evaluate

    results = []
    for fits_dir in fits:
        try:
            results.append(
                evaluate(
                    fits_dir,
                    pairs,
                    model=model,
                    good_threshold_mm=good_threshold_mm,
                    contact_threshold_m=contact_threshold_m,
                    per_pair=per_pair,
                )
            )
        except (OSError, ValueError) as err:  # missing/malformed files: PairSetError etc. are ValueErrors
            _fail(str(err))
    if json_out:
        typer.echo(json.dumps(results[0] if len(results) == 1 else {"runs": results}, indent=2))
    else:
        typer.echo(_table(results))


def register(app: typer.Typer) -> None:
    """Add `apu eval` to the root app."""
    app.command("eval")(eval_command)


if __name__ == "__main__":
    typer.run(eval_command)
