"""`apu demo`: the whole job on the bundled example — propose, ask (offline heuristic), fit, filter, export,
and pictures of the results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import JsonOut, emit, fail

EXAMPLE_MANIFEST = Path(__file__).resolve().parent.parent / "apu_jax" / "data" / "examples" / "manifest.jsonl"


def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("apu-demo"),
    iters: Annotated[
        str, typer.Option(help="Adam steps of stage 1 and 2 (small: the demo runs on a CPU).")
    ] = ("60,20"),
    pictures: Annotated[int, typer.Option(help="How many pairs to draw.")] = 3,
    json_out: JsonOut = False,
) -> None:
    """Run Ask → Pose → Unite on the bundled example images with the free default model; draw the results."""
    from apu_jax.ask.pipeline import run_pipeline
    from apu_jax.ask.stage import AskOptions
    from apu_jax.fit.engine import FitStructure
    from apu_jax.viz.pictures import demo_pictures
    from cli.fit import parse_iters

    if not EXAMPLE_MANIFEST.exists():
        fail(f"the bundled example manifest is missing from this install ({EXAMPLE_MANIFEST})")
    first, second = parse_iters(iters)
    options = AskOptions(provider="heuristic", data_root=EXAMPLE_MANIFEST.parent)
    summary = run_pipeline(
        EXAMPLE_MANIFEST,
        out,
        options,
        fit_kwargs={"structure": FitStructure(iters=(first, second)), "batch_size": 8},
    )
    source = out / "dataset.npz" if (out / "dataset.npz").exists() else out / "fits"
    if source.exists() and pictures > 0:
        summary["pictures"] = demo_pictures(source, out / "pictures", count=pictures)
    emit(summary, json_out)
    if not json_out and summary.get("pictures"):
        typer.echo(f"pictures written to {out / 'pictures'}")


def register(root: typer.Typer) -> None:
    root.command("demo")(demo)
