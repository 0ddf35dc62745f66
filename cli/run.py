"""`apu run`: propose → ask → denoise → fit → filter → export, resumable at every stage.

Register with `from cli import run as run_cli; run_cli.register(app)`; also runnable alone as
`python -m cli.run MANIFEST --provider heuristic --out DATASET`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.ask import (
    AllowOutside,
    BaseUrl,
    Batch,
    BatchPoll,
    Betas,
    BodyModel,
    Cache,
    Concurrency,
    DataRoot,
    DryRun,
    JsonOut,
    Manifest,
    MaxDist,
    MaxMis,
    MaxRetries,
    MaxTokens,
    MinClose,
    MinConf,
    MinWeight,
    Model,
    PriceIn,
    PriceOut,
    Provider,
    Replay,
    RetryInvalid,
    Rpm,
    Samples,
    Sigma,
    Timeout,
    Tpm,
    fail,
    make_options,
    print_summary,
    progress_bars,
    user_errors,
)


def run(
    manifest: Manifest,
    provider: Provider,
    out: Annotated[
        Path, typer.Option("--out", help="Dataset folder (ask/, fits/, dataset.npz, summary.json).")
    ],
    model: Model = None,
    base_url: BaseUrl = None,
    replay: Replay = None,
    samples: Samples = None,
    concurrency: Concurrency = 8,
    rpm: Rpm = None,
    tpm: Tpm = None,
    cache: Cache = None,
    dry_run: DryRun = False,
    batch: Batch = False,
    batch_poll: BatchPoll = 30.0,
    max_retries: MaxRetries = 5,
    timeout: Timeout = 120.0,
    max_tokens: MaxTokens = 1024,
    price_in: PriceIn = None,
    price_out: PriceOut = None,
    retry_invalid: RetryInvalid = False,
    data_root: DataRoot = None,
    allow_outside_root: AllowOutside = False,
    body_model: BodyModel = "default",
    betas: Betas = "mean",
    min_close: MinClose = 2,
    max_dist: MaxDist = 0.15,
    max_misalignment: MaxMis = 0.15,
    min_keypoint_conf: MinConf = 0.3,
    evidence_sigma: Sigma = 0.2,
    min_weight: MinWeight = 0.05,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Pairs per compiled fit batch.")
    ] = 64,
    iters: Annotated[str, typer.Option(help="Fit: Adam steps of stage 1 and stage 2, as N1,N2.")] = "100,50",
    gmm: Annotated[str, typer.Option(help="Fit pose prior: 'default' (CMU-fitted) or gmm_08.pkl / .npz.")] = (
        "default"
    ),
    json_out: JsonOut = False,
) -> None:
    """Build a dataset from a manifest: propose pairs, ask, denoise, fit, filter, export.

    Every stage resumes: answers come from the ask cache, fitted pairs are skipped, the export is redone.
    """
    options = make_options(
        **{
            k: v
            for k, v in locals().items()
            if k not in ("manifest", "out", "json_out", "batch_size", "iters", "gmm")
        }
    )
    from apu_jax.ask.pipeline import run_pipeline
    from apu_jax.ask.providers import ProviderError
    from apu_jax.fit.engine import FitStructure
    from cli.fit import parse_iters

    fit_kwargs = {"batch_size": batch_size, "structure": FitStructure(iters=parse_iters(iters)), "gmm": gmm}

    try:
        with progress_bars(not json_out) as progress:
            summary = run_pipeline(manifest, out, options, progress, fit_kwargs=fit_kwargs)
    except user_errors() as err:
        fail(str(err), 2)
    except ProviderError as err:
        fail(str(err), 1)
    except ValueError as err:
        fail(str(err), 2)
    print_summary(summary, json_out, "apu run (dry run)" if dry_run else "apu run")


def register(app: typer.Typer) -> None:
    """Add `apu run` to the root app."""
    app.command("run")(run)


if __name__ == "__main__":
    typer.run(run)
