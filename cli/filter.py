"""`apu filter`: the keep / reject verdict of fitted pairs — automatic filter, then manual marks.

Register with `from cli import filter as filter_cli; filter_cli.register(app)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.render import JsonOut, fail, user_errors


def filter_command(
    fits: Annotated[Path, typer.Argument(help="FITS directory.")],
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Keep pairs whose reprojection errors are all below this (512-box px); default: "
            "the verdict stored by the fit.",
        ),
    ] = None,
    marks: Annotated[
        bool, typer.Option("--marks/--ignore-marks", help="Let accept / reject marks override the filter.")
    ] = True,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the verdict (kept ids, reasons) as JSON here.")
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """Decide which fitted pairs to keep: the fit's reprojection filter (optionally re-thresholded, no
    refit needed) overridden by the marks saved by `apu view` (FITS/marks.json)."""
    from apu_jax.data.pairset import atomic_write_text
    from apu_jax.viz.marks import filter_fits

    try:
        result = filter_fits(fits, threshold=threshold, use_marks=marks)
    except user_errors() as err:
        fail(str(err))
    kept = [p for p, k in zip(result["pair_ids"], result["keep"], strict=True) if k]
    record = {
        "format": "apu-filter",
        "version": 1,
        "source": result["source"],
        "threshold": result["threshold"],
        "used_marks": result["used_marks"],
        "counts": result["counts"],
        "kept": kept,
        "dropped": result["reasons"],
    }
    if out is not None:
        try:
            atomic_write_text(out, json.dumps(record, indent=1) + "\n")
        except OSError as err:
            fail(f"cannot write {out}: {err.strerror or err}")
    if json_out:
        typer.echo(json.dumps(record, indent=2))
    else:
        c = result["counts"]
        typer.echo(
            f"kept {c['kept']} of {c['pairs']} pairs (automatic filter: {c['kept_automatic']}; marks: "
            f"{c['marked_accepted']} accepted, {c['marked_rejected']} rejected)"
            + (f"; verdict written to {out}" if out else "")
        )


def register(app: typer.Typer) -> None:
    """Add `apu filter` to the root app."""
    app.command("filter")(filter_command)


if __name__ == "__main__":
    typer.run(filter_command)
