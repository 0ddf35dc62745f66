"""`apu prior`: train the pair prior (a BUDDI-style diffusion model) and sample from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import JsonOut, emit, fail, progress_bar

app = typer.Typer(
    help="The pair prior: a diffusion model of two interacting bodies (train it, sample it).",
    no_args_is_help=True,
)


def _render_train(result: dict) -> str:
    lines = [f"checkpoint: {result['out']}  (step {result['step']}, {result['seconds']:.0f} s)"]
    for source in result["sources"]:
        cond = "with initial estimates" if source["conditioned"] else "no initial estimates"
        lines.append(f"  {source['path']}: {source['pairs']} pairs, weight {source['weight']:g}, {cond}")
    if result["first_loss"] is not None:
        lines.append(f"loss: {result['first_loss']:.3f} → {result['last_loss']:.3f}")
    return "\n".join(lines)


@app.command("train")
def train(
    sources: Annotated[
        list[Path],
        typer.Argument(help="FITS directories, exported datasets and/or pair sets with gt_* parameters."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint (.npz) to write; an existing one resumes.")],
    steps: Annotated[
        int, typer.Option(help="Total optimiser steps (a resumed run continues to this).")
    ] = 2000,
    weight: Annotated[
        list[float] | None,
        typer.Option(help="Mix weight of each source, in order (repeat the flag); default equal."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Pairs per step.")] = 64,
    learning_rate: Annotated[float, typer.Option(help="Adam step size (BUDDI: 1e-4).")] = 1e-4,
    width: Annotated[int, typer.Option(help="Token width (BUDDI: 152).")] = 128,
    depth: Annotated[int, typer.Option(help="Transformer blocks (BUDDI: 6).")] = 4,
    heads: Annotated[int, typer.Option(help="Attention heads (must divide --width).")] = 8,
    mlp_dim: Annotated[int, typer.Option(help="Feed-forward size per block (BUDDI: 500).")] = 256,
    dropout: Annotated[float, typer.Option(help="Dropout inside the blocks.")] = 0.1,
    conditional: Annotated[
        bool,
        typer.Option(
            "--conditional/--unconditional",
            help="Condition on the initial estimates (with guidance dropout, so it also runs without them).",
        ),
    ] = True,
    v2v_weight: Annotated[
        float | None, typer.Option(help="Vertex-loss weight (default: BUDDI's 1000 conditional, 100 not).")
    ] = None,
    model: Annotated[
        str, typer.Option(help="'default' or an SMPL-X-layout model file (the data's).")
    ] = "default",
    kid_template: Annotated[
        Path | None, typer.Option(help="SMPL-XA kid template (with an SMPL-X model).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, batches and noise.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Save every N steps.")] = 500,
    steps_per_call: Annotated[int, typer.Option(help="Steps fused into one compiled call.")] = 50,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over even if --out exists.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Train the pair prior on fitted or ground-truth pairs; resumable, with a progress bar."""
    import apu_jax
    from apu_jax.prior.denoiser import DenoiserConfig
    from apu_jax.prior.train import PriorDataError, TrainConfig, load_training_data, train_prior

    if steps < 1 or batch_size < 1 or steps_per_call < 1 or checkpoint_every < 1:
        fail("--steps, --batch-size, --steps-per-call and --checkpoint-every must be ≥ 1")
    if width < 1 or depth < 1 or heads < 1 or width % heads:
        fail("--width must be a positive multiple of --heads (and --depth ≥ 1)")
    if width % 2:
        fail("--width must be even (sinusoidal time embedding)")
    if not 0.0 <= dropout < 1.0:
        fail("--dropout must be in [0, 1)")
    try:
        data, summary = load_training_data(sources, weight)
        body = apu_jax.load_model(model, kid_template=kid_template)
        net = DenoiserConfig(
            num_betas=int(data.target.betas.shape[-1]),
            width=width,
            depth=depth,
            heads=heads,
            mlp_dim=mlp_dim,
            dropout=dropout,
            conditional=conditional,
        )
        run = TrainConfig(
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            steps_per_call=steps_per_call,
            checkpoint_every=checkpoint_every,
            w_v2v=v2v_weight if v2v_weight is not None else (1000.0 if conditional else 100.0),
        )
        with progress_bar("training prior", enabled=not json_out) as update:
            result = train_prior(
                data,
                body,
                out,
                net,
                run,
                resume=not fresh,
                on_progress=lambda step, loss, terms: update(step, steps),
                extra_meta={"sources": summary, "model": model},
            )
    except (apu_jax.ModelFileError, PriorDataError, ValueError) as err:
        fail(str(err))
    except FloatingPointError as err:
        fail(f"{err}; try a smaller --learning-rate", code=1)
    result = {"out": str(out), "sources": summary, "denoiser": net.to_json(), **result}
    emit(result, json_out, _render_train)


@app.command("sample")
def sample_command(
    checkpoint: Annotated[Path, typer.Argument(help="Prior checkpoint (apu prior train).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the samples here (.npz).")] = None,
    n: Annotated[int, typer.Option("--n", help="Number of pairs to draw.")] = 64,
    num_steps: Annotated[int, typer.Option("--steps", help="Reverse DDIM steps (BUDDI: 10).")] = 10,
    eta: Annotated[float, typer.Option(help="DDIM stochasticity (1 = DDPM-like, 0 = deterministic).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    model: Annotated[str, typer.Option(help="Body model of the prior's training data.")] = "default",
    kid_template: Annotated[Path | None, typer.Option(help="SMPL-XA kid template.")] = None,
    stats: Annotated[
        bool, typer.Option("--stats/--no-stats", help="Report contact and interpenetration of the samples.")
    ] = True,
    json_out: JsonOut = False,
) -> None:
    """Draw unconditional pairs from the prior; report how many touch (< 2 cm) and interpenetrate."""
    import jax
    import numpy as np

    import apu_jax
    from apu_jax.data.pairset import atomic_savez
    from apu_jax.prior.guidance import sample
    from apu_jax.prior.quality import pair_statistics
    from apu_jax.prior.train import PriorDataError, load_prior

    if n < 1 or num_steps < 1:
        fail("--n and --steps must be ≥ 1")
    try:
        prior = load_prior(checkpoint)
        if num_steps > prior.schedule.num_steps:
            fail(f"--steps must be ≤ {prior.schedule.num_steps}")
        body = apu_jax.load_model(model, kid_template=kid_template) if stats else None
        if body is not None and body.num_betas != prior.config.num_betas:
            fail(f"the prior has {prior.config.num_betas} betas but model '{model}' has {body.num_betas}")
    except (apu_jax.ModelFileError, PriorDataError) as err:
        fail(str(err))
    pairs = sample(prior, jax.random.PRNGKey(seed), n, num_steps=num_steps, eta=eta)
    arrays = {
        k: np.asarray(getattr(pairs, k), np.float32)
        for k in ("global_orient", "body_pose", "betas", "transl")
    }
    result: dict = {"checkpoint": str(checkpoint), "n": n, "steps": num_steps, "eta": eta, "seed": seed}
    if body is not None:
        quality = pair_statistics(body, pairs)
        result["quality"] = {k: v for k, v in quality.items() if not isinstance(v, list)}
        arrays["min_distance_m"] = np.asarray(quality["min_distance_m"], np.float32)
        arrays["penetrating_vertex_fraction"] = np.asarray(quality["penetrating_vertex_fraction"], np.float32)
    if out is not None:
        meta = {"format": "apu-prior-samples", "version": 1, "checkpoint": str(checkpoint), "model": model}
        atomic_savez(out, meta=np.asarray(json.dumps(meta)), **arrays)
        result["out"] = str(out)
    emit(result, json_out)


def register(root: typer.Typer) -> None:
    """Add the `apu prior` group to the root app."""
    root.add_typer(app, name="prior")
