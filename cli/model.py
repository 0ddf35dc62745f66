"""`apu model`: inspect body model files and rebuild the bundled free model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import JsonOut, emit, fail

app = typer.Typer(help="Body models: inspect files, rebuild the bundled default.", no_args_is_help=True)


@app.command("info")
def info(
    model: Annotated[
        str, typer.Argument(help="'default' (bundled free model) or a path to SMPLX_*.npz/.pkl.")
    ] = ("default"),
    kid_template: Annotated[
        Path | None, typer.Option(help="smplx_kid_template.npy: load as SMPL-XA (one more beta).")
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """Sizes, regions, keypoint formats and licence of a body model."""
    import apu_jax
    from apu_jax.regions import load_regions
    from apu_jax.regions.keypoints import KEYPOINT_FORMATS

    try:
        body = apu_jax.load_model(model, kid_template=kid_template)
    except (apu_jax.ModelFileError, ValueError) as err:
        fail(str(err))
    regions = load_regions(body)
    result = body.info
    result["regions"] = {
        "num_regions": regions.num_regions,
        "width": regions.width,
        "names": list(regions.names),
    }
    result["keypoint_formats"] = {name: len(ids) for name, ids in KEYPOINT_FORMATS.items()}
    meta = result.get("meta", {})
    result["licence"] = meta.get("licence", "see the model file's own licence (SMPL-X: MPI non-commercial)")

    def render(r: dict) -> str:
        lines = [f"model: {r['name']}", f"licence: {r['licence']}"]
        for key in (
            "num_vertices",
            "num_faces",
            "num_joints",
            "num_output_joints",
            "num_betas",
            "num_expression",
        ):
            lines.append(f"{key}: {r[key]}")
        lines.append(f"pose correctives: {r['pose_correctives']}")
        lines.append(f"regions: {r['regions']['num_regions']} (up to {r['regions']['width']} vertices each)")
        lines.append("keypoint formats: " + ", ".join(f"{k} ({v})" for k, v in r["keypoint_formats"].items()))
        return "\n".join(lines)

    emit(result, json_out, render)


@app.command("build-default")
def build_default(
    out: Annotated[Path, typer.Option(help="Where to write the model file.")] = Path("default_model.npz"),
    num_betas: Annotated[int, typer.Option(help="Shape coefficients (≥ 11).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the phenotype sampler.")] = 0,
    json_out: JsonOut = False,
) -> None:
    """Rebuild the free default body model from `anny` (needs `pip install apu-jax[build]`)."""
    try:
        import anny  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        fail(
            "building the default model needs the optional extra: pip install 'apu-jax[build]' (anny, torch)"
        )
    from apu_jax.body.build_default import build_default_model

    if num_betas < 11:
        fail("--num-betas must be at least 11")
    report = build_default_model(out, num_betas=num_betas, seed=seed, progress=not json_out)
    emit(report, json_out)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="model")
