"""`apu render`: pictures of fitted pairs (fit over the image, side view, contact maps) as PNG files.

Register with `from cli import render as render_cli; render_cli.register(app)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail

Source = Annotated[Path, typer.Argument(help="FITS directory, pair set .npz or dataset to draw.")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Body model ('default' or a path); default: the one recorded.")
]
ImageRoot = Annotated[
    Path | None, typer.Option("--image-root", help="Folder to resolve relative image paths against first.")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's mistake (bad paths, malformed files): one-line error, exit code 2."""
    from apu_jax.body import ModelFileError
    from apu_jax.data.pairset import PairSetError
    from apu_jax.viz.load import SourceError
    from apu_jax.viz.marks import MarksError

    return (SourceError, PairSetError, ModelFileError, MarksError, FileNotFoundError, ValueError)


def render(
    source: Source,
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG files (created).")],
    pair: Annotated[
        list[str] | None, typer.Option("--pair", help="Draw this pair id (repeatable); default: all.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Draw at most this many pairs.")] = None,
    sort: Annotated[
        str | None, typer.Option(help="Order by this loss (e.g. reproj_error, contact, total).")
    ] = None,
    worst_first: Annotated[bool, typer.Option("--worst-first", help="Largest loss first.")] = False,
    only: Annotated[
        str, typer.Option(help="all | kept | rejected | accepted | unmarked (filter verdict and marks).")
    ] = "all",
    contact_map: Annotated[
        bool, typer.Option("--contact-map", help="Also write <pair>-contacts.png: the soft contact map.")
    ] = False,
    side: Annotated[bool, typer.Option("--side/--no-side", help="Add the 90° side view.")] = True,
    max_side: Annotated[
        int, typer.Option("--max-side", min=64, help="Longest side of each view (px).")
    ] = 800,
    model: ModelOpt = None,
    image_root: ImageRoot = None,
    json_out: JsonOut = False,
) -> None:
    """Draw each pair's two fitted meshes over its image (or a blank canvas) with the fit's camera,
    keypoints (discs) and their reprojections (crosses), contact regions in green, and a side view."""
    from apu_jax.viz.load import open_source
    from apu_jax.viz.pictures import select_pairs, write_pictures

    try:
        src = open_source(source, model=model, image_root=image_root)
        indices = select_pairs(
            src, pair_ids=pair, sort_by=sort, descending=worst_first, limit=limit, only=only
        )
        summary = write_pictures(src, out, indices, side=side, contact_map=contact_map, max_side=max_side)
    except user_errors() as err:
        fail(str(err))
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(
            f"wrote {len(summary['written'])} picture(s) of {summary['pairs']} pair(s) to {summary['out']}"
        )


def register(app: typer.Typer) -> None:
    """Add `apu render` to the root app."""
    app.command("render")(render)


if __name__ == "__main__":
    typer.run(render)
