"""`apu synth`: an evaluation pair set from a two-person motion-capture trial (docs/BENCHMARK.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail as _fail

# Defaults repeat `SynthNoise` / `SynthOptions` so that --help does not import JAX; tests/test_synth.py checks
# that they agree.


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        _fail(f"--image-size must look like 1280x720, got {text!r}")
    if w <= 0 or h <= 0:
        _fail(f"--image-size must be positive, got {text!r}")
    return w, h


def synth(
    bvh_a: Annotated[Path, typer.Argument(help="BVH file of subject A (person 0).")],
    bvh_b: Annotated[Path, typer.Argument(help="BVH file of subject B (person 1), same trial and world.")],
    out: Annotated[Path, typer.Option("--out", help="Pair set to write (.npz, docs/FORMATS.md).")],
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    cameras: Annotated[int, typer.Option(min=1, help="Virtual cameras per picked frame.")] = 4,
    max_frames: Annotated[
        int, typer.Option(min=1, help="At most this many frames (pairs = frames × cameras).")
    ] = 20,
    label: Annotated[
        str | None, typer.Option(help="Interaction label (default: from the trial's README).")
    ] = None,
    offset: Annotated[
        int | None, typer.Option(help="Frame k of A is frame k+OFFSET of B (default: aligned by content).")
    ] = None,
    model: Annotated[str, typer.Option(help="Body model: 'default' or an SMPL-X-layout file.")] = "default",
    fit_steps: Annotated[int, typer.Option(min=1, help="Adam steps of the per-frame mocap fit.")] = 300,
    # frame selection, cameras, contacts
    contact_dist: Annotated[
        float, typer.Option(help="Contact frame: GT meshes closer than this (m).")
    ] = 0.05,
    near_dist: Annotated[
        float, typer.Option(help="Near-contact frame: GT meshes closer than this (m).")
    ] = 0.15,
    near_fraction: Annotated[
        float, typer.Option(help="Share of frames kept for near-contact frames.")
    ] = 0.25,
    min_change_mm: Annotated[
        float, typer.Option(help="Min mean joint change between picked frames (mm).")
    ] = 25.0,
    perceived_dist: Annotated[
        float, typer.Option(help="Region pairs closer than this (m) are contacts an annotator would name.")
    ] = 0.05,
    close_gap: Annotated[
        bool, typer.Option(help="Shift subject B once so that the clip's closest approach touches.")
    ] = True,
    max_shift: Annotated[float, typer.Option(help="Largest gap (m) that --close-gap closes.")] = 0.4,
    denoise: Annotated[
        bool, typer.Option(help="Pass the simulated answers through apu ask's laterality denoiser.")
    ] = False,
    image_size: Annotated[str, typer.Option(help="Image size WxH in pixels.")] = "1280x720",
    cam_distance: Annotated[tuple[float, float], typer.Option(help="Camera distance range (m).")] = (
        2.5,
        5.0,
    ),
    cam_height: Annotated[tuple[float, float], typer.Option(help="Camera height range above floor (m).")] = (
        1.0,
        1.8,
    ),
    # noise
    no_noise: Annotated[
        bool, typer.Option("--no-noise", help="Set every noise level to 0 (init = GT).")
    ] = False,
    kp_sigma: Annotated[float, typer.Option(help="Keypoint pixel noise σ, fraction of person size.")] = 0.008,
    kp_dropout: Annotated[float, typer.Option(help="Probability a keypoint is missing.")] = 0.05,
    kp_outlier: Annotated[float, typer.Option(help="Probability of a gross keypoint error.")] = 0.02,
    kp_conf_jitter: Annotated[
        float, typer.Option(help="σ of the random part of keypoint confidence.")
    ] = 0.05,
    init_pose: Annotated[float, typer.Option(help="Per-joint pose error σ per axis (rad).")] = 0.14,
    init_orient: Annotated[float, typer.Option(help="Global orientation error σ per axis (rad).")] = 0.12,
    init_betas: Annotated[float, typer.Option(help="Shape coefficient error σ.")] = 0.4,
    init_depth: Annotated[float, typer.Option(help="σ of the log depth factor along the camera ray.")] = 0.05,
    init_depth_size: Annotated[
        float, typer.Option(help="Fraction of the depth factor matched by a body-size change.")
    ] = 0.5,
    init_xy: Annotated[float, typer.Option(help="Lateral pelvis position error σ (m).")] = 0.03,
    contact_miss: Annotated[float, typer.Option(help="Probability a true part contact is missed.")] = 0.2,
    contact_flip: Annotated[
        float, typer.Option(help="Probability a true part contact has wrong laterality.")
    ] = 0.2,
    contact_halluc: Annotated[
        float, typer.Option(help="Expected hallucinated part contacts per pair.")
    ] = 0.3,
    contact_weight_noise: Annotated[float, typer.Option(help="σ of 1 − weight of true contacts.")] = 0.15,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Turn a two-person BVH trial into an evaluation pair set: GT bodies fitted to the mocap, contact and
    near-contact frames, virtual cameras, noisy BODY-25 keypoints, regressor-like initial estimates and
    LVLM-like contact maps (every noise level a flag, all from --seed)."""
    for path in (bvh_a, bvh_b):
        if not path.is_file():
            _fail(f"BVH file not found: {path}")
    size = _size(image_size)
    for name, value in (("--near-fraction", near_fraction),):
        if not 0.0 <= value <= 1.0:
            _fail(f"{name} must be in [0, 1], got {value}")
    probs = {"--kp-dropout": kp_dropout, "--kp-outlier": kp_outlier, "--contact-miss": contact_miss,
             "--contact-flip": contact_flip, "--init-depth-size": init_depth_size}  # fmt: skip
    for name, value in probs.items():
        if not 0.0 <= value <= 1.0:
            _fail(f"{name} must be in [0, 1], got {value}")
    levels = {"--kp-sigma": kp_sigma, "--kp-conf-jitter": kp_conf_jitter, "--init-pose": init_pose,
              "--init-orient": init_orient, "--init-betas": init_betas, "--init-depth": init_depth,
              "--init-xy": init_xy, "--contact-halluc": contact_halluc,
              "--contact-weight-noise": contact_weight_noise}  # fmt: skip
    for name, value in levels.items():
        if value < 0:
            _fail(f"{name} must be ≥ 0, got {value}")

    from apu_jax.body import ModelFileError
    from apu_jax.mocap.bvh import BvhError
    from apu_jax.mocap.retarget import default_config
    from apu_jax.mocap.synth import SynthNoise, SynthOptions, synthesize_pairs

    noise = SynthNoise(
        kp_sigma=kp_sigma,
        kp_dropout=kp_dropout,
        kp_outlier=kp_outlier,
        kp_conf_jitter=kp_conf_jitter,
        init_pose=init_pose,
        init_orient=init_orient,
        init_betas=init_betas,
        init_depth=init_depth,
        init_depth_size=init_depth_size,
        init_xy=init_xy,
        contact_miss=contact_miss,
        contact_flip=contact_flip,
        contact_halluc=contact_halluc,
        contact_weight_noise=contact_weight_noise,
    )
    if no_noise:
        noise = SynthNoise.zero()
    options = SynthOptions(
        contact_dist=contact_dist,
        near_dist=near_dist,
        near_fraction=near_fraction,
        min_change_mm=min_change_mm,
        perceived_dist=perceived_dist,
        close_gap=close_gap,
        max_shift=max_shift,
        denoise=denoise,
        image_size=size,
        cam_distance=tuple(cam_distance),
        cam_height=tuple(cam_height),
    )
    try:
        report = synthesize_pairs(
            bvh_a,
            bvh_b,
            out,
            seed=seed,
            cameras=cameras,
            max_frames=max_frames,
            noise=noise,
            options=options,
            model=model,
            retarget_config=default_config(num_steps=fit_steps),
            label=label,
            offset=offset,
        )
    except (BvhError, ModelFileError, ValueError, KeyError) as err:
        _fail(str(err).strip("'\""))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    init = report["init_joint_pa_mpjpe_mm"]
    typer.echo(
        f"wrote {report['pairs']} pairs ({report['frames']} frames × {cameras} cameras; "
        f"{report['contact_frames']} contact, {report['near_contact_frames']} near) to {out}\n"
        f"initial two-person PA-MPJPE: mean {init['mean']:.1f} mm, median {init['median']:.1f} mm\n"
        f"subject B shifted by {report['shift_norm_m'] * 100:.1f} cm to close the contact gap; "
        f"{report['seconds']['total']:.1f} s"
    )
