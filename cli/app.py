"""The `apu` command: a thin Typer front end; every command parses arguments and calls the library."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="apu",
    help="apu-jax: Ask, Pose, Unite — pseudo-ground-truth 3D meshes of people in close contact.",
    no_args_is_help=True,
    add_completion=False,
)

# Command groups register here, one module each (cli/<group>.py exposing `app` or `register(app)`).


def main() -> None:
    """Entry point of the `apu` console script."""
    app()


if __name__ == "__main__":
    main()
