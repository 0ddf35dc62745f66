"""Helpers shared by the `apu` commands: one-line user errors, JSON output, progress bars."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

JsonOut = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON object on stdout.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """A user mistake: one line on stderr and exit code 2, never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit(
    result: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str] | None = None
) -> None:
    """Print `result` as JSON, or through `render` (default: key: value lines)."""
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    elif render is not None:
        typer.echo(render(result))
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, driven as update(done, total); a no-op when disabled (--json)."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
