"""`apu fit`: the two-stage APU fit of every pair in a pair set (vmapped, batched, resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import JsonOut, emit, fail, progress_bar


def parse_iters(text: str) -> tuple[int, int]:
    """'N1,N2' → (N1, N2), both ≥ 0."""
    try:
        first, second = (int(x) for x in text.split(","))
    except ValueError:
        fail(f"--iters takes two counts as N1,N2 (got {text!r})")
    if first < 0 or second < 0:
        fail("--iters counts must be ≥ 0")
    return first, second


def fit(
    pairs: Annotated[Path, typer.Argument(help="Pair set (.npz, docs/FORMATS.md).")],
    out: Annotated[Path, typer.Option("--out", help="Fits directory (created; a rerun resumes).")],
    model: Annotated[
        str, typer.Option(help="'default' or a path to an SMPL-X-layout model file.")
    ] = "default",
    kid_template: Annotated[
        Path | None, typer.Option(help="SMPL-XA kid template (with an SMPL-X model).")
    ] = None,
    no_contact: Annotated[bool, typer.Option("--no-contact", help="Fit without the contact term.")] = False,
    no_interpenetration: Annotated[
        bool, typer.Option("--no-interpenetration", help="Leave out the stage-2 interpenetration term.")
    ] = False,
    iters: Annotated[str, typer.Option(help="Adam steps of stage 1 and stage 2, as N1,N2.")] = "100,50",
    batch_size: Annotated[
        int, typer.Option(help="Pairs per compiled batch (padded; sharded over devices).")
    ] = 64,
    gmm: Annotated[
        str, typer.Option(help="Pose prior: 'default' (CMU-fitted) or gmm_08.pkl / .npz.")
    ] = "default",
    contact_weight: Annotated[float | None, typer.Option(help="λ_C (both stages).")] = None,
    keypoint_weight: Annotated[float | None, typer.Option(help="λ_J (both stages).")] = None,
    gmm_weight: Annotated[float | None, typer.Option(help="λ_GMM (both stages).")] = None,
    prior_weight: Annotated[
        float | None, typer.Option(help="Multiplier of the --prior guidance loss (both stages).")
    ] = None,
    contact_rho: Annotated[
        float | None,
        typer.Option(help="Robust (GMoF) scale of each contact distance, cm; a huge value = plain d²."),
    ] = None,
    filter_threshold: Annotated[
        float | None, typer.Option(help="Keep a pair when both errors < this.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Fit only the first N pairs.")] = None,
    prior: Annotated[
        Path | None,
        typer.Option(
            help="Trained pair prior (apu prior train): prior-guided fit instead of contacts + GMM."
        ),
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """Fit both people of every pair to keypoints, contact map and priors; filter by reprojection error."""
    import apu_jax
    from apu_jax.data.pairset import PairSetError
    from apu_jax.fit.engine import FitStructure, FitWeights
    from apu_jax.fit.gmm import GmmFileError
    from apu_jax.fit.run import fit_pairset

    if not pairs.exists():
        fail(f"pair set not found: {pairs}")
    if prior is not None and not prior.exists():
        fail(f"prior checkpoint not found: {prior}")
    first, second = parse_iters(iters)
    if batch_size < 1:
        fail("--batch-size must be ≥ 1")
    overrides = {
        k: v
        for k, v in (
            ("contact", contact_weight),
            ("keypoints", keypoint_weight),
            ("gmm", gmm_weight),
            ("prior", prior_weight),
            ("contact_rho", contact_rho),
            ("filter_threshold", filter_threshold),
        )
        if v is not None
    }
    structure = FitStructure(
        iters=(first, second), use_contact=not no_contact, use_interpenetration=not no_interpenetration
    )
    try:
        body = apu_jax.load_model(model, kid_template=kid_template)
        with progress_bar("fitting", enabled=not json_out) as update:
            summary = fit_pairset(
                pairs,
                out,
                model=body,
                structure=structure,
                weights=FitWeights.defaults(**overrides),
                batch_size=batch_size,
                gmm=gmm,
                progress=update,
                limit=limit,
                prior=prior,
            )
    except (apu_jax.ModelFileError, PairSetError, GmmFileError, ValueError) as err:
        fail(str(err))
    emit(summary, json_out)


def register(root: typer.Typer) -> None:
    root.command("fit")(fit)
