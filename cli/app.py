"""The `apu` command: a thin Typer front end; every command parses arguments and calls the library."""

from __future__ import annotations

import typer

from cli import analyze, ask, bench, demo, filter, fit, model, prior, render, run, synth, view
from cli import eval as eval_cli

app = typer.Typer(
    name="apu",
    help="apu-jax: Ask, Pose, Unite — pseudo-ground-truth 3D meshes of people in close contact.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command_group in (demo, model, ask, run, fit, eval_cli, filter, render, view, analyze, bench, prior):
    command_group.register(app)
app.command("synth")(synth.synth)


def main() -> None:
    """Entry point of the `apu` console script."""
    app()


if __name__ == "__main__":
    main()
