"""Fitting a whole pair set: validation, padding to fixed batch shapes, sharding, atomic shards, resume."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from apu_jax.body.model import BodyModel, load_model
from apu_jax.data.pairset import (
    FITS_FORMAT,
    VERSION,
    PairSet,
    PairSetError,
    atomic_savez,
    atomic_write_text,
    finished_pair_ids,
    fits_meta_path,
    load_pairset,
    shard_paths,
    validate_pairs,
)
from apu_jax.fit.camera import Camera, default_focal
from apu_jax.fit.engine import TERMS, FitStatics, FitStructure, FitWeights, PairInputs, fit_batch
from apu_jax.fit.gmm import load_gmm
from apu_jax.fit.interpenetration import build_proxy, sample_query_ids
from apu_jax.prior.guidance import PriorModel
from apu_jax.regions import load_regions, model_to_keypoint_indices

DEFAULT_QUERY_VERTICES = 512
DEFAULT_PROXY_VERTICES = 600


def build_statics(
    model: BodyModel,
    keypoint_format: str = "body25",
    gmm: str | os.PathLike = "default",
    num_query_vertices: int = DEFAULT_QUERY_VERTICES,
    num_proxy_vertices: int = DEFAULT_PROXY_VERTICES,
    prior: PriorModel | None = None,
) -> FitStatics:
    """Per-model arrays the fit needs (regions, keypoint map, GMM, interpenetration proxy); once per run."""
    regions = load_regions(model)
    return FitStatics(
        region_vertex_ids=regions.vertex_ids,
        region_mask=regions.mask,
        keypoint_joint_ids=jnp.asarray(model_to_keypoint_indices(keypoint_format)),
        gmm=load_gmm(gmm),
        proxy=build_proxy(model, num_proxy_vertices),
        query_ids=sample_query_ids(model, num_query_vertices),
        prior=prior,
    )


def pair_inputs(pairs: PairSet, index: np.ndarray, num_betas: int) -> PairInputs:
    """Stack the selected pairs into a batched `PairInputs` (numpy → float32 device arrays).

    Betas shorter than the model's are zero-padded (a pair set made for 10 betas fits an 11-beta SMPL-XA).
    """
    size = pairs["image_size"][index].astype(np.float32)
    default_f = np.array([default_focal(w, h) for w, h in size], np.float32)
    focal = pairs["focal"][index] if "focal" in pairs else np.stack([default_f, default_f], axis=1)
    principal = pairs["principal"][index] if "principal" in pairs else size / 2.0
    betas = pairs["init_betas"][index].astype(np.float32)
    if betas.shape[-1] < num_betas:
        betas = np.concatenate(
            [betas, np.zeros(betas.shape[:-1] + (num_betas - betas.shape[-1],), np.float32)], -1
        )
    as_f32 = lambda key: jnp.asarray(pairs[key][index], jnp.float32)  # noqa: E731
    return PairInputs(
        keypoints=as_f32("keypoints"),
        camera=Camera(focal=jnp.asarray(focal, jnp.float32), principal=jnp.asarray(principal, jnp.float32)),
        global_orient=as_f32("init_global_orient"),
        body_pose=as_f32("init_body_pose"),
        betas=jnp.asarray(betas),
        transl=as_f32("init_transl"),
        contact_pairs=jnp.asarray(pairs["contact_pairs"][index], jnp.int32),
        contact_weights=as_f32("contact_weights"),
        contact_groups=jnp.asarray(contact_groups(pairs, index), jnp.int32),
    )


def contact_groups(pairs: PairSet, index: np.ndarray) -> np.ndarray:
    """(N, C) group id of each contact entry: the pair set's `contact_groups`, else each entry its own group.

    Padding and negative ids map to their own entry index (they carry no loss: their region ids are -1).
    """
    count = pairs["contact_pairs"].shape[1]
    own = np.broadcast_to(np.arange(count, dtype=np.int32), (len(index), count))
    if "contact_groups" not in pairs:
        return np.array(own)
    groups = pairs["contact_groups"][index].astype(np.int32)
    return np.where((groups >= 0) & (groups < count), groups, own)


def batch_sharding(batch_size: int) -> NamedSharding | None:
    """Shard the pair axis over all local devices (None with one device). batch_size must divide evenly."""
    devices = jax.local_devices()
    if len(devices) == 1:
        return None
    if batch_size % len(devices):
        raise ValueError(f"batch size {batch_size} is not a multiple of the {len(devices)} local devices")
    mesh = Mesh(np.asarray(devices), ("pairs",))
    return NamedSharding(mesh, PartitionSpec("pairs"))


def padded_batch_size(batch_size: int) -> int:
    """Round up to a multiple of the local device count so the batch shards evenly."""
    count = len(jax.local_devices())
    return int(math.ceil(batch_size / count) * count)


def _shard_arrays(
    pairs: PairSet, index: np.ndarray, result: dict[str, np.ndarray] | None, errors: np.ndarray
):
    """Arrays of one output shard; pairs with an error keep their initial parameters and keep=False."""
    n = len(index)
    out: dict[str, np.ndarray] = {"pair_id": pairs["pair_id"][index].astype(str), "error": errors.astype(str)}
    for key in ("global_orient", "body_pose", "betas", "transl"):
        out[key] = pairs[f"init_{key}"][index].astype(np.float32)
    if result is None:
        out.update(
            loss_history_stage1=np.zeros((n, 0), np.float32),
            loss_history_stage2=np.zeros((n, 0), np.float32),
            terms_stage1=np.full((n, len(TERMS)), np.nan, np.float32),
            terms_stage2=np.full((n, len(TERMS)), np.nan, np.float32),
            reproj_error=np.full((n, 2), np.inf, np.float32),
            keep=np.zeros(n, bool),
        )
        return out
    for key, value in result.items():
        out[key] = np.array(value[:n])  # a writable host copy
    bad = errors != ""
    for key in ("global_orient", "body_pose", "transl"):
        out[key][bad] = pairs[f"init_{key}"][index][bad]
    out["keep"] = out["keep"] & ~bad
    return out


def fit_pairset(
    pairs_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str | os.PathLike | BodyModel = "default",
    structure: FitStructure | None = None,
    weights: FitWeights | None = None,
    batch_size: int = 64,
    gmm: str | os.PathLike = "default",
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
    prior: str | os.PathLike | PriorModel | None = None,
) -> dict[str, Any]:
    """Fit every pair of a pair set; write the fits directory (docs/FORMATS.md). Resumable.

    Each batch is written as one shard, atomically, as soon as it is done; a rerun skips pair ids already in
    a shard. Invalid pairs (NaN inputs, unknown region ids, …) get an `error` string and keep = False; they
    never stop the run. Batches are padded to `batch_size` (so a run compiles once) and sharded over all
    local devices.

    Args:
        pairs_path: the pair set (.npz).
        out_dir: the fits directory (created).
        model: "default", a model path, or a loaded `BodyModel`.
        structure: static fit layout (iterations, terms).
        weights: traced weights, learning rates and thresholds.
        batch_size: pairs per compiled batch.
        gmm: the pose prior ("default" or a path).
        progress: called as progress(done, total) after each shard.
        limit: fit only the first `limit` pairs (for quick looks).
        prior: a trained pair prior (checkpoint path or `PriorModel`) for prior-guided fitting: turns on
            `structure.use_prior` and, as in the paper, replaces the contact and GMM terms.
    Returns:
        Summary: counts, timings, throughput.
    """
    structure = structure or FitStructure()
    weights = weights or FitWeights.defaults()
    if prior is not None:
        if not isinstance(prior, PriorModel):
            from apu_jax.prior.train import load_prior

            prior = load_prior(prior)
        structure = dataclasses.replace(structure, use_prior=True, use_contact=False, use_gmm=False)
    pairs = load_pairset(pairs_path)
    if limit is not None:
        pairs = pairs.select(np.arange(min(limit, len(pairs))))
    body = model if isinstance(model, BodyModel) else load_model(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FITS_FORMAT,
        "version": VERSION,
        "pairs": str(Path(pairs_path).resolve()),
        "model": body.name,
        "keypoint_format": pairs.keypoint_format,
        "terms": list(TERMS),
        "structure": {
            "iters": list(structure.iters),
            "use_contact": structure.use_contact,
            "use_gmm": structure.use_gmm,
            "use_interpenetration": structure.use_interpenetration,
            "optimise_global_orient": structure.optimise_global_orient,
            "robust": structure.robust,
            "use_prior": structure.use_prior,
            "interpenetration_refresh": structure.interpenetration_refresh,
        },
        "weights": {k: np.asarray(getattr(weights, k)).tolist() for k in weights.__dataclass_fields__},
    }
    if fits_meta_path(out_dir).exists():
        previous = json.loads(fits_meta_path(out_dir).read_text())
        if previous.get("structure") != meta["structure"] or previous.get("weights") != meta["weights"]:
            raise PairSetError(
                f"{out_dir} holds fits made with other settings; use a new --out directory to refit"
            )
    atomic_write_text(fits_meta_path(out_dir), json.dumps(meta, indent=2))

    start = time.perf_counter()
    statics = build_statics(body, pairs.keypoint_format, gmm, prior=prior)
    errors = validate_pairs(pairs, int(statics.region_vertex_ids.shape[0]), body.num_betas)
    done = finished_pair_ids(out_dir)
    todo = np.array([i for i, pid in enumerate(pairs["pair_id"].tolist()) if pid not in done], dtype=np.int64)
    setup_s = time.perf_counter() - start

    batch_size = padded_batch_size(max(1, min(batch_size, max(len(todo), 1))))
    sharding = batch_sharding(batch_size)
    next_shard = len(shard_paths(out_dir))
    compile_s, fit_s, fitted = 0.0, 0.0, 0
    for first in range(0, len(todo), batch_size):
        index = todo[first : first + batch_size]
        valid = errors[index] == ""
        result = None
        if valid.any():
            # Invalid pairs are replaced by a valid one in the batch, so the compiled shape never changes.
            filler = index[valid][0]
            batch_index = np.where(valid, index, filler)
            batch_index = np.concatenate([batch_index, np.full(batch_size - len(index), filler)])
            inputs = pair_inputs(pairs, batch_index, body.num_betas)
            if sharding is not None:
                inputs = jax.device_put(inputs, sharding)
            t0 = time.perf_counter()
            if compile_s == 0.0:
                compiled = fit_batch.lower(body, statics, inputs, weights, structure).compile()
                compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
            result = jax.block_until_ready(compiled(body, statics, inputs, weights))
            fit_s += time.perf_counter() - t0
            fitted += int(valid.sum())
        arrays = _shard_arrays(pairs, index, result, errors[index])
        atomic_savez(out_dir / f"shard-{next_shard:05d}.npz", **arrays)
        next_shard += 1
        if progress is not None:
            progress(min(first + batch_size, len(todo)), len(todo))

    fits = _summary_counts(out_dir)
    return {
        "n_pairs": len(pairs),
        "n_skipped_done": len(pairs) - len(todo),
        "n_fitted": fitted,
        "n_errors": int((errors[todo] != "").sum()) if len(todo) else 0,
        "n_kept": fits["kept"],
        "batch_size": batch_size,
        "devices": [str(d) for d in jax.local_devices()],
        "setup_s": round(setup_s, 3),
        "compile_s": round(compile_s, 3),
        "fit_s": round(fit_s, 3),
        "pairs_per_s": round(fitted / fit_s, 3) if fit_s > 0 else None,
        "out": str(out_dir),
    }


def _summary_counts(out_dir: Path) -> dict[str, int]:
    kept = 0
    for shard in shard_paths(out_dir):
        with np.load(shard, allow_pickle=False) as npz:
            kept += int(npz["keep"].sum())
    return {"kept": kept}
