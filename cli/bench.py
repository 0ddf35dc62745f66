"""`apu bench`: benchmarks of the body model (`forward`) and of the fit engine (`fit`)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import JsonOut, emit, fail

app = typer.Typer(help="Benchmarks: body-model forward pass and fit throughput (vs PyTorch references).")


def _sizes(text: str, option: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{option} takes comma-separated integers (got {text!r})")
    if not sizes or min(sizes) < 1:
        fail(f"{option} values must be ≥ 1")
    return sizes


def _log(enabled: bool):
    return (lambda message: typer.echo(message, err=True)) if enabled else None


def _needs_oracle() -> None:
    try:
        import smplx  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        fail("the PyTorch reference needs torch and smplx: pip install 'apu-jax[oracle]'")


@app.command("fit")
def fit(
    n_pairs: Annotated[int, typer.Option(help="Distinct synthetic pairs (batches cycle through them).")] = 16,
    iters: Annotated[str, typer.Option(help="Adam steps of stage 1 and stage 2, as N1,N2 (both sides).")] = (
        "20,10"
    ),
    batch_size: Annotated[
        str, typer.Option(help="Batch size(s) of the JAX sweep, comma-separated (one compile each).")
    ] = "1,4,16",
    baseline_pairs: Annotated[
        int, typer.Option(help="Pairs fitted one by one by the PyTorch reference (0: skip it).")
    ] = 1,
    repeats: Annotated[int, typer.Option(help="Timed calls per batch size after a warm-up (median).")] = 1,
    terms: Annotated[bool, typer.Option("--terms", help="Also time each loss term's share.")] = False,
    default_model: Annotated[
        bool, typer.Option("--default-model", help="Also time the bundled default model (if installed).")
    ] = False,
    no_interpenetration: Annotated[
        bool,
        typer.Option("--no-interpenetration", help="No stage-2 interpenetration (both sides)."),
    ] = False,
    json_out: JsonOut = False,
) -> None:
    """Pairs/s of the two-stage fit vs batch size, against a per-pair PyTorch fit (smplx, Adam, batch 1)."""
    from cli.fit import parse_iters

    first, second = parse_iters(iters)
    sizes = _sizes(batch_size, "--batch-size")
    if n_pairs < 1 or baseline_pairs < 0 or repeats < 1:
        fail("--n-pairs and --repeats must be ≥ 1, --baseline-pairs ≥ 0")
    if baseline_pairs:
        _needs_oracle()
    from apu_jax.bench.fit_bench import bench_fit, summary_lines

    result = bench_fit(
        n_pairs=n_pairs,
        iters=(first, second),
        batch_sizes=sizes,
        baseline_pairs=baseline_pairs,
        repeats=repeats,
        terms=terms,
        default_model=default_model,
        use_interpenetration=not no_interpenetration,
        log=_log(not json_out),
    )
    emit(result, json_out, lambda r: "\n".join(summary_lines(r)))


@app.command("forward")
def forward(
    batch_size: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,64,256",
    repeats: Annotated[int, typer.Option(help="Timed calls per batch size after a warm-up (median).")] = 7,
    json_out: JsonOut = False,
) -> None:
    """JAX `forward` vs smplx on the same official-size synthetic SMPL-X file; ratio smplx/JAX."""
    sizes = _sizes(batch_size, "--batch-size")
    if repeats < 1:
        fail("--repeats must be ≥ 1")
    _needs_oracle()
    from apu_jax.bench.forward_bench import bench_forward, summary_lines

    result = bench_forward(sizes, repeats, log=_log(not json_out))
    emit(result, json_out, lambda r: "\n".join(summary_lines(r)))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="bench")
