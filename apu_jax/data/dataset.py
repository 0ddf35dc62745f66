"""The exported dataset of `apu run`: one `.npz` of kept pairs, loadable with numpy alone.

`DATASET/dataset.npz` (`meta.format == "apu-dataset"`, version 1). Leading dimension P = kept pairs; axis 1
of size 2 = person A / person B (the LVLM's A and B, i.e. the pair set's person 0 / person 1). Units:
metres, radians (axis-angle), pixels; camera frame OpenCV (x right, y down, z forward), intrinsics in
`focal` / `principal`. Strings are numpy unicode arrays, so `np.load(path)` (no pickle) reads everything.

Keys (P = kept pairs, C = region pairs, B = betas, T = loss terms):

- `meta` () str — JSON: format, version, model, region_set, keypoint_format, data_root, provider,
  provider_model, prompt_version, terms, pairs, fits;
- `pair_id` (P,) str — `<image id>:<a>-<b>` (person indices in the image's keypoint file);
- `image` (P,) str — image path relative to `meta.data_root`; `image_size` (P, 2) int32 `[W, H]`;
- `focal`, `principal` (P, 2) float32 — camera intrinsics used by the fit, pixels;
- `label` (P,) str — the manifest's interaction label ("" if none);
- `description` (P,) str — the LVLM's short description of the interaction;
- `contacts_json` (P,) str — JSON list of the part-level contacts after denoising and voting (`part_a`,
  `side_a`, `part_b`, `side_b`, `confidence`, `evidence`, `weight`, `votes`, `corrected`, `distance`);
- `contact_pairs` (P, C, 2) int32 — region ids `[on A, on B]` of the soft contact map, -1 = padding;
  `contact_weights` (P, C) float32 — their weights (0 on padding); `contact_groups` (P, C) int32 — the
  part-level contact of each entry (when the pair set has it, docs/FORMATS.md);
- `keypoints` (P, 2, 25, 3) float32 — BODY-25 `x, y, confidence` used by the fit;
- `global_orient` (P, 2, 3), `body_pose` (P, 2, 63), `betas` (P, 2, B), `transl` (P, 2, 3) float32 — the
  fitted parameters of `meta.model`; `init_*` the same for the initial (BEV) estimate;
- `reproj_error` (P, 2) float32 — per-person keypoint reprojection error (px, person box scaled to 512);
- `terms_stage1`, `terms_stage2` (P, T) float32 — final weighted loss terms (names in `meta.terms`);
- `loss_final` (P,) float32 — total loss at the last iteration of the last stage.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from apu_jax.data.pairset import PairSet, PairSetError, atomic_savez, load_fits, load_pairset

DATASET_FORMAT = "apu-dataset"
DATASET_VERSION = 1
_PARAMS = ("global_orient", "body_pose", "betas", "transl")
_PAIR_KEYS = ("pair_id", "image", "image_size", "label", "description", "contacts_json", "contact_pairs")
_PAIR_KEYS += ("contact_weights", "contact_groups", "keypoints")


def _camera(pairs: PairSet, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = pairs["image_size"][index].astype(np.float32)
    f = size.max(axis=1) / 2.0 / math.tan(math.radians(30.0))
    focal = pairs["focal"][index] if "focal" in pairs else np.stack([f, f], axis=1)
    principal = pairs["principal"][index] if "principal" in pairs else size / 2.0
    return focal.astype(np.float32), principal.astype(np.float32)


def export_dataset(
    pairs_path: str | os.PathLike, fits_dir: str | os.PathLike, out_path: str | os.PathLike
) -> dict[str, Any]:
    """Join a pair set with its fits and write the kept pairs as the dataset (atomically).

    Args:
        pairs_path: the pair set written by the ask stage.
        fits_dir: the fits directory written by `apu_jax.fit.fit_pairset` (with `keep`); its `marks.json`
            (from `apu view`), when present, overrides `keep` per pair.
        out_path: the dataset `.npz`.
    Returns:
        `{"pairs": P in the pair set, "fitted": pairs with a fit, "kept": P exported, "path": ...}`.
    """
    pairs = load_pairset(pairs_path)
    fits = load_fits(fits_dir)
    row_of = {pid: i for i, pid in enumerate(pairs["pair_id"].tolist())}
    missing = [pid for pid in fits["pair_id"].tolist() if pid not in row_of]
    if missing:
        raise PairSetError(f"{fits_dir}: fits for pairs not in {pairs_path} (e.g. '{missing[0]}')")
    # The last shard wins if a pair was fitted twice (should not happen: reruns skip finished ids).
    fit_row = {pid: i for i, pid in enumerate(fits["pair_id"].tolist())}
    # Manual accept/reject marks from `apu view` override the automatic filter.
    from apu_jax.viz.marks import apply_marks, load_marks, marks_path_for

    ids = fits["pair_id"].astype(str).tolist()
    keep = apply_marks(ids, fits["keep"], load_marks(marks_path_for(fits_dir)))
    kept_ids = [pid for pid, i in fit_row.items() if bool(keep[i])]
    p_idx = np.asarray([row_of[pid] for pid in kept_ids], dtype=np.int64)
    f_idx = np.asarray([fit_row[pid] for pid in kept_ids], dtype=np.int64)

    arrays: dict[str, np.ndarray] = {}
    for key in _PAIR_KEYS:
        if key in pairs:
            arrays[key] = pairs[key][p_idx]
    for key in _PARAMS:
        arrays[key] = fits[key][f_idx].astype(np.float32)
        arrays[f"init_{key}"] = pairs[f"init_{key}"][p_idx].astype(np.float32)
    arrays["focal"], arrays["principal"] = _camera(pairs, p_idx)
    for key in ("reproj_error", "terms_stage1", "terms_stage2"):
        if key in fits:
            arrays[key] = fits[key][f_idx].astype(np.float32)
    last = "loss_history_stage2" if "loss_history_stage2" in fits else "loss_history_stage1"
    if last in fits:
        hist = fits[last][f_idx]
        arrays["loss_final"] = (
            hist[:, -1] if hist.ndim == 2 and hist.shape[1] else np.zeros(len(f_idx))
        ).astype(np.float32)
    source = pairs.meta.get("source", {})
    meta = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "model": pairs.meta.get("model", "default"),
        "region_set": pairs.meta.get("region_set", "default"),
        "keypoint_format": pairs.keypoint_format,
        "data_root": source.get("data_root", ""),
        "provider": source.get("provider", ""),
        "provider_model": source.get("provider_model", ""),
        "prompt_version": source.get("prompt_version", ""),
        "terms": fits.meta.get("terms", []),
        "pairs": str(Path(pairs_path).resolve()),
        "fits": str(Path(fits_dir).resolve()),
    }
    atomic_savez(out_path, meta=np.asarray(json.dumps(meta)), **arrays)
    return {"pairs": len(pairs), "fitted": len(fit_row), "kept": len(kept_ids), "path": str(out_path)}


def load_dataset(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a dataset: `(arrays, meta)`. Plain `np.load(path)` works too; this also checks the format."""
    path = Path(path)
    if not path.is_file():
        raise PairSetError(f"dataset not found: {path}")
    with np.load(path, allow_pickle=False) as npz:
        if "meta" not in npz.files:
            raise PairSetError(f"{path}: missing key 'meta'")
        meta = json.loads(str(npz["meta"]))
        if meta.get("format") != DATASET_FORMAT or meta.get("version") != DATASET_VERSION:
            raise PairSetError(f"{path}: not an {DATASET_FORMAT} v{DATASET_VERSION} file")
        arrays = {k: npz[k] for k in npz.files if k != "meta"}
    return arrays, meta
