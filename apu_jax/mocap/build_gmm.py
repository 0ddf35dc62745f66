"""Build the free GMM pose prior from CMU motion capture.

Recipe (what `build_gmm` does; the shipped `apu_jax/data/gmm_cmu_08.npz` records its own settings in `meta`):

1. Read every `*.bvh` under `data_dir` (the `single/` CMU trials, Character Creator skeleton, 60 Hz).
2. Split by whole trials: every `heldout_every`-th trial in sorted order (starting at `heldout_offset`) is
   held out, so each subject and most activities appear on both sides.
3. Per trial: drop frame 0 (an added T-pose in some conversions), keep every `stride`-th frame, and retarget
   to the body model (`apu_jax.mocap.retarget`: betas shared per trial, GMM off, small L2 pose regulariser).
4. Discard frames whose mean joint fit error exceeds `max_error_mm` (failed or implausible fits).
5. Optionally add left–right mirrored copies of the training poses (a prior should not prefer one side).
6. Fit a K-component full-covariance Gaussian mixture (scikit-learn EM, build-time only) to the 63-D poses;
   the covariance regulariser is chosen by 2-fold trial-wise cross-validation within the training trials.
7. Report the exact mixture log-likelihood (nats per frame) on training and held-out frames.

The data used in this project was obtained from mocap.cs.cmu.edu. The database was created with funding
from NSF EIA-0196217.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apu_jax.fit.gmm import fit_gmm, mixture_log_likelihood, save_gmm_npz
from apu_jax.mocap.bvh import read_bvh
from apu_jax.mocap.retarget import RetargetConfig, default_config, retarget
from apu_jax.mocap.skeletons import SMPLX_BODY_JOINTS, mocap_targets

CMU_ACKNOWLEDGEMENT = (
    "The data used in this project was obtained from mocap.cs.cmu.edu. "
    "The database was created with funding from NSF EIA-0196217."
)

# SMPL-X body joints 1–21 swapped by a left–right mirror (indices into the 21 body-pose joints, 0-based).
_MIRROR_PERM = np.arange(21)
for _left, _right in ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21)):
    _MIRROR_PERM[_left - 1], _MIRROR_PERM[_right - 1] = _right - 1, _left - 1


def mirror_body_pose(body_pose: np.ndarray) -> np.ndarray:
    """Left–right mirror of SMPL-X body poses (reflection x ↦ −x).

    Reflecting a rotation R by M = diag(−1, 1, 1) gives M R M, whose axis-angle is (a_x, −a_y, −a_z);
    left and right joints swap places.

    Args:
      body_pose: (..., 63) axis-angle.
    Returns:
      (..., 63) mirrored poses.
    """
    pose = np.asarray(body_pose).reshape(*np.shape(body_pose)[:-1], 21, 3)[..., _MIRROR_PERM, :]
    return (pose * np.array([1.0, -1.0, -1.0])).reshape(np.shape(body_pose))


def _trial_id(path: Path) -> str:
    """ "005_02" from ".../005/005_02.bvh"."""
    return path.stem


def _subject(trial: str) -> str:
    match = re.match(r"0*(\d+)_", trial)
    return match.group(1) if match else trial


def retarget_trials(
    paths: Sequence[Path],
    body: Any,
    config: RetargetConfig,
    stride: int,
    cache_path: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Retarget every `stride`-th frame (frame 0 dropped) of each trial; optionally cached in an npz.

    Returns:
      {trial id: {"frames" (F,), "body_pose" (F, 63), "global_orient" (F, 3), "betas" (B,),
      "joint_error_mm" (F, 22), "seconds" ()}}. A cache is reused only if it holds exactly these trials and
      the same stride.
    """
    log = progress or (lambda _line: None)
    keys = ("frames", "body_pose", "global_orient", "betas", "joint_error_mm", "seconds")
    ids = [_trial_id(p) for p in paths]
    if cache_path is not None and Path(cache_path).is_file():
        with np.load(cache_path, allow_pickle=False) as npz:
            cached = {k: np.asarray(npz[k]) for k in npz.files}
        if list(cached["trials"]) == ids and int(cached["stride"]) == stride:
            log(f"retargeted poses from cache {cache_path}")
            return {t: {k: cached[f"{t}/{k}"] for k in keys} for t in ids}
    out: dict[str, dict[str, np.ndarray]] = {}
    for path in paths:
        bvh = read_bvh(path)
        frames = np.arange(1, bvh.num_frames, stride)
        if len(frames) == 0:
            continue
        result = retarget(body, mocap_targets(bvh, frames=frames), config)
        out[_trial_id(path)] = {
            "frames": frames,
            "body_pose": result.body_pose,
            "global_orient": result.global_orient,
            "betas": result.betas,
            "joint_error_mm": result.joint_error_mm.astype(np.float32),
            "seconds": np.asarray(result.seconds),
        }
        log(
            f"{_trial_id(path)}: {len(frames)} frames, mean joint error "
            f"{result.joint_error_mm.mean():.1f} mm, {result.seconds:.1f} s"
        )
    if cache_path is not None:
        flat = {f"{t}/{k}": v for t, d in out.items() for k, v in d.items()}
        np.savez_compressed(cache_path, trials=np.asarray(list(out)), stride=np.asarray(stride), **flat)
    return out


def _fit_mixture(
    train: np.ndarray, mirror: bool, num_components: int, seed: int, reg_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fit_poses = np.concatenate([train, mirror_body_pose(train)]) if mirror else train
    return fit_gmm(fit_poses, num_components, seed=seed, reg_covar=reg_covar)


def select_reg_covar(
    poses_by_trial: Sequence[np.ndarray],
    candidates: Sequence[float],
    num_components: int,
    mirror: bool,
    seed: int,
    folds: int = 2,
) -> tuple[float, dict[str, float]]:
    """Choose the covariance regulariser by trial-wise cross-validation on the training trials only.

    Trial i goes to fold i % folds; each candidate is fitted on the other folds and scored by the mean
    exact mixture log-likelihood of the held-in fold's frames (the reported held-out trials are never used).

    Returns:
      the best candidate and {str(candidate): mean validation log-likelihood}.
    """
    if len(poses_by_trial) < folds:
        raise ValueError(f"cross-validating reg_covar needs at least {folds} training trials")
    scores: dict[str, float] = {}
    for reg in candidates:
        values = []
        for fold in range(folds):
            fit_part = np.concatenate([p for i, p in enumerate(poses_by_trial) if i % folds != fold])
            val_part = np.concatenate([p for i, p in enumerate(poses_by_trial) if i % folds == fold])
            means, covars, weights = _fit_mixture(fit_part, mirror, num_components, seed, reg)
            values.append(mixture_log_likelihood(means, covars, weights, val_part))
        scores[f"{reg:g}"] = float(np.concatenate(values).mean())
    best = max(candidates, key=lambda r: scores[f"{r:g}"])
    return float(best), scores


def build_gmm(
    out_path: str | Path,
    data_dir: str | Path,
    model: str = "default",
    num_components: int = 8,
    stride: int = 4,
    heldout_every: int = 5,
    heldout_offset: int = 2,
    max_error_mm: float = 80.0,
    mirror: bool = True,
    seed: int = 0,
    reg_covar: float | Sequence[float] = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    config: RetargetConfig | None = None,
    max_trials: int | None = None,
    cache_path: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Retarget CMU trials to the body model and fit the GMM pose prior; write our npz.

    Args:
      out_path: where to write the `.npz` (format "apu-gmm", see `apu_jax.fit.gmm`).
      data_dir: folder searched recursively for `*.bvh` (e.g. `../shared/data/cmu/single`).
      model: body model name or path for `apu_jax.load_model` (the GMM lives in its pose space).
      num_components: K.
      stride: keep every `stride`-th frame (the single/ files are 60 Hz; 4 → 15 Hz).
      heldout_every, heldout_offset: trial `i` (sorted) is held out when
        `i % heldout_every == heldout_offset`.
      max_error_mm: frames whose mean joint error is above this are dropped.
      mirror: add mirrored training poses.
      seed: EM initialisation seed.
      reg_covar: covariance diagonal regulariser (rad²), or candidates chosen by `select_reg_covar`
        (2-fold cross-validation over the training trials).
      config: retargeting settings (`default_config()` when None).
      max_trials: use only the first N trials (quick runs and tests).
      cache_path: optional npz caching the retargeted poses (refits skip the slow retargeting).
      progress: called with one line per trial.
    Returns:
      report dict (JSON-ready): frame counts, trials, log-likelihoods, fit errors, timings, output path.
    Raises:
      FileNotFoundError: no BVH files under `data_dir`.
    """
    import apu_jax  # late import: keeps `apu_jax.mocap` importable without loading the package root first

    start = time.perf_counter()
    data_dir = Path(data_dir)
    paths = sorted(data_dir.rglob("*.bvh"), key=lambda p: _trial_id(p))
    if max_trials is not None:
        paths = paths[:max_trials]
    if not paths:
        raise FileNotFoundError(f"no .bvh files under {data_dir}")
    body = apu_jax.load_model(model)
    config = config or default_config()
    fits = retarget_trials(paths, body, config, stride, cache_path, progress)

    poses: dict[str, list[np.ndarray]] = {"train": [], "heldout": []}
    trials: dict[str, list[str]] = {"train": [], "heldout": []}
    errors: list[np.ndarray] = []
    kept_errors: list[np.ndarray] = []
    dropped = 0
    for i, trial in enumerate(fits):
        split = "heldout" if i % heldout_every == heldout_offset else "train"
        error = fits[trial]["joint_error_mm"]
        keep = error.mean(axis=1) <= max_error_mm
        dropped += int((~keep).sum())
        errors.append(error)
        kept_errors.append(error[keep])
        poses[split].append(fits[trial]["body_pose"][keep])
        trials[split].append(trial)
    retarget_seconds = float(sum(float(f["seconds"]) for f in fits.values()))

    train = np.concatenate(poses["train"]) if poses["train"] else np.zeros((0, 63))
    heldout = np.concatenate(poses["heldout"]) if poses["heldout"] else np.zeros((0, 63))
    if len(train) < 10 * num_components:
        raise ValueError(f"only {len(train)} training frames: too few for {num_components} components")
    fit_start = time.perf_counter()
    cv_scores: dict[str, float] | None = None
    if isinstance(reg_covar, (int, float)):
        chosen_reg = float(reg_covar)
    else:
        chosen_reg, cv_scores = select_reg_covar(poses["train"], reg_covar, num_components, mirror, seed)
    means, covars, weights = _fit_mixture(train, mirror, num_components, seed, chosen_reg)
    fit_seconds = time.perf_counter() - fit_start
    fit_poses_count = 2 * len(train) if mirror else len(train)

    train_ll = float(mixture_log_likelihood(means, covars, weights, train).mean())
    heldout_ll = baseline_ll = None
    if len(heldout):
        heldout_ll = float(mixture_log_likelihood(means, covars, weights, heldout).mean())
        # Context for the figure: one Gaussian fitted the same way (same data, mirroring, regulariser).
        base_mean, base_cov, base_w = _fit_mixture(train, mirror, 1, seed, chosen_reg)
        baseline_ll = float(mixture_log_likelihood(base_mean, base_cov, base_w, heldout).mean())
    all_err = np.concatenate(errors)
    kept_err = np.concatenate(kept_errors)
    joint_means = np.round(kept_err.mean(0, dtype=np.float64), 1).tolist()
    per_joint = dict(zip(SMPLX_BODY_JOINTS, joint_means, strict=True))
    report: dict[str, Any] = {
        "out_path": str(out_path),
        "data_dir": str(data_dir),
        "model": model,
        "model_info": {k: body.info["meta"].get(k) for k in ("name", "version", "source", "licence")},
        "num_components": num_components,
        "stride": stride,
        "frame_rate_hz": "60 (files' Frame Time 0.016667)",
        "mirror": mirror,
        "seed": seed,
        "reg_covar": chosen_reg,
        "reg_covar_cv_mean_log_likelihood": cv_scores,
        "max_error_mm": max_error_mm,
        "train_trials": trials["train"],
        "heldout_trials": trials["heldout"],
        "subjects": sorted({_subject(t) for t in trials["train"] + trials["heldout"]}, key=int),
        "num_train_frames": int(len(train)),
        "num_fit_poses": int(fit_poses_count),
        "num_heldout_frames": int(len(heldout)),
        "num_dropped_frames": dropped,
        "train_mean_log_likelihood": train_ll,
        "heldout_mean_log_likelihood": heldout_ll,
        "heldout_mean_log_likelihood_single_gaussian": baseline_ll,
        "log_likelihood_unit": "nats per frame, exact mixture density of the 63-D body pose (radians)",
        "retarget_mean_joint_error_mm": float(all_err.mean()),
        "retarget_kept_mean_joint_error_mm": float(kept_err.mean()),
        "retarget_kept_per_joint_error_mm": per_joint,
        "retarget_config": {
            "num_steps": config.num_steps,
            "chunk": config.chunk,
            "learning_rate": float(config.learning_rate),
            "w_bone": float(config.w_bone),
            "w_dir": float(config.w_dir),
            "w_orient": float(config.w_orient),
            "w_pose": float(config.w_pose),
            "w_betas": float(config.w_betas),
            "joint_weights": np.round(np.asarray(config.joint_weights, np.float64), 4).tolist(),
            "bone_weights": np.round(np.asarray(config.bone_weights, np.float64), 4).tolist(),
        },
        "retarget_seconds": retarget_seconds,
        "gmm_fit_seconds": fit_seconds,
        "total_seconds": time.perf_counter() - start,
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "how": (
            "CMU single-person trials (Character Creator BVH conversion) retargeted to the body model by "
            "apu_jax.mocap.retarget (joint positions + bone directions + finger/eye/toe directions, "
            "L2 pose regulariser, betas per trial), every stride-th frame, frame 0 dropped; "
            "sklearn GaussianMixture (full covariances, k-means init, reg_covar chosen by 2-fold trial-wise "
            "cross-validation within the training trials) on the training trials"
            + (" plus their left-right mirror images" if mirror else "")
            + "; held-out trials never seen by the fit."
        ),
        "acknowledgement": CMU_ACKNOWLEDGEMENT,
    }
    save_gmm_npz(out_path, means, covars, weights, report)
    return report
