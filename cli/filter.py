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
    source: Annotated[Path, typer.Argument(help="FITS directory, or a dataset (.npz or its folder).")],
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Keep pairs whose reprojection errors are all below this (512-box px); default: the "
            "fit's stored verdict (every pair of a dataset).",
        ),
    ] = None,
    marks: Annotated[
        bool, typer.Option("--marks/--ignore-marks", help="Let accept / reject marks override the filter.")
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the verdict as JSON (kept ids, reasons), or, for a dataset and a .npz path, the "
            "filtered dataset.",
        ),
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """Decide which pairs to keep: the fit's reprojection filter (optionally re-thresholded, no refit)
    overridden by the marks saved by `apu view` (marks.json / <dataset>.marks.json)."""
    from apu_jax.data.pairset import atomic_write_text
    from apu_jax.viz.marks import filter_verdict, write_filtered_dataset

    try:
        result = filter_verdict(source, threshold=threshold, use_marks=marks)
        kept = [p for p, k in zip(result["pair_ids"], result["keep"], strict=True) if k]
        record = {
            "format": "apu-filter",
            "version": 1,
            **{k: result[k] for k in ("source", "kind", "threshold", "used_marks", "marks", "counts")},
            "kept": kept,
            "dropped": result["reasons"],
        }
        if out is not None and result["kind"] == "dataset" and out.suffix == ".npz":
            write_filtered_dataset(source, out, result)
        elif out is not None:
            atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    except user_errors() as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write {out}: {err.strerror or err}")
    if json_out:
        typer.echo(json.dumps(record, indent=2))
    else:
        c = result["counts"]
        typer.echo(
            f"kept {c['kept']} of {c['pairs']} pairs (automatic filter: {c['kept_automatic']}; marks: "
            f"{c['marked_accepted']} accepted, {c['marked_rejected']} rejected)"
            + (f"; written to {out}" if out else "")
        )


def register(app: typer.Typer) -> None:
    """Add `apu filter` to the root app."""
    app.command("filter")(filter_command)


if __name__ == "__main__":
    typer.run(filter_command)
