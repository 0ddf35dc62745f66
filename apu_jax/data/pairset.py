"""Pair sets and fit outputs (docs/FORMATS.md): numpy-only readers and writers with per-pair validation."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PAIRSET_FORMAT = "apu-pairset"
FITS_FORMAT = "apu-fits"
VERSION = 1
KEYPOINT_COUNTS = {"body25": 25, "coco17": 17}

REQUIRED_PAIR_KEYS = (
    "pair_id",
    "image_size",
    "keypoints",
    "init_global_orient",
    "init_body_pose",
    "init_betas",
    "init_transl",
    "contact_pairs",
    "contact_weights",
)
PARAM_KEYS = ("global_orient", "body_pose", "betas", "transl")


class PairSetError(ValueError):
    """A pair set or fits directory is malformed (the message names the file and key)."""


@dataclass
class PairSet:
    """A pair set held as numpy arrays (all keys of FORMATS.md that the file has)."""

    arrays: dict[str, np.ndarray]  # key -> (P, ...) array
    meta: dict[str, Any] = field(default_factory=dict)  # the JSON record

    def __len__(self) -> int:
        return int(self.arrays["pair_id"].shape[0])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    @property
    def keypoint_format(self) -> str:
        return self.meta.get("keypoint_format", "body25")

    def select(self, index: np.ndarray) -> PairSet:
        """A subset of the pairs (index: (N,) int or (P,) bool)."""
        return PairSet({k: v[index] for k, v in self.arrays.items()}, dict(self.meta))


def _publish(tmp: str, path: Path) -> None:
    """Give a temporary file normal permissions (mkstemp makes it owner-only) and rename it into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_savez(path: str | os.PathLike, **arrays: Any) -> Path:
    """Write an uncompressed .npz through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    _publish(tmp, path)
    return path


def save_pairset(path: str | os.PathLike, meta: Mapping[str, Any] | None = None, **arrays: Any) -> Path:
    """Write a pair set (see FORMATS.md); `meta` is merged over the format/version record."""
    record = {"format": PAIRSET_FORMAT, "version": VERSION, "keypoint_format": "body25", "model": "default"}
    record.update(meta or {})
    missing = [k for k in REQUIRED_PAIR_KEYS if k not in arrays]
    if missing:
        raise PairSetError(f"save_pairset: missing arrays {missing}")
    return atomic_savez(
        path, meta=np.asarray(json.dumps(record)), **{k: np.asarray(v) for k, v in arrays.items()}
    )


def _read_meta(npz: Any, path: Path, expected_format: str) -> dict[str, Any]:
    if "meta" not in npz.files:
        raise PairSetError(f"{path}: missing key 'meta' (a JSON record with format and version)")
    try:
        meta = json.loads(str(npz["meta"]))
    except (json.JSONDecodeError, ValueError) as err:
        raise PairSetError(f"{path}: key 'meta' is not a JSON string ({err})") from err
    if meta.get("format") != expected_format:
        raise PairSetError(f"{path}: meta.format is {meta.get('format')!r}, expected {expected_format!r}")
    if meta.get("version") != VERSION:
        raise PairSetError(f"{path}: unsupported {expected_format} version {meta.get('version')!r}")
    return meta


def load_pairset(path: str | os.PathLike) -> PairSet:
    """Read a pair set and check its structure (pair count, keypoint count, person axis).

    Per-pair content problems (NaN, unknown regions) are not errors here: `validate_pairs` reports them per
    pair so one bad pair never stops a run.
    """
    path = Path(path)
    if not path.exists():
        raise PairSetError(f"pair set not found: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise PairSetError(f"{path}: not a readable .npz file ({err})") from err
    with npz:
        meta = _read_meta(npz, path, PAIRSET_FORMAT)
        missing = [k for k in REQUIRED_PAIR_KEYS if k not in npz.files]
        if missing:
            raise PairSetError(
                f"{path}: missing key '{missing[0]}'" + (f" (and {missing[1:]})" if missing[1:] else "")
            )
        try:
            arrays = {k: npz[k] for k in npz.files if k != "meta"}
        except ValueError as err:
            raise PairSetError(f"{path}: an entry is not a plain array ({err})") from err
    count = arrays["pair_id"].shape[0]
    fmt = meta.get("keypoint_format", "body25")
    if fmt not in KEYPOINT_COUNTS:
        raise PairSetError(
            f"{path}: unknown keypoint_format {fmt!r} (expected one of {sorted(KEYPOINT_COUNTS)})"
        )
    expect = {
        "image_size": (count, 2),
        "keypoints": (count, 2, KEYPOINT_COUNTS[fmt], 3),
        "init_global_orient": (count, 2, 3),
        "init_body_pose": (count, 2, 63),
        "init_transl": (count, 2, 3),
        "contact_weights": (count, None),
        "contact_pairs": (count, None, 2),
        "init_betas": (count, 2, None),
    }
    for key, shape in expect.items():
        got = arrays[key].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got, strict=False)):
            want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
            raise PairSetError(f"{path}: key '{key}' has shape {got}, expected {want}")
    if arrays["contact_pairs"].shape[1] != arrays["contact_weights"].shape[1]:
        raise PairSetError(
            f"{path}: 'contact_pairs' and 'contact_weights' disagree on the number of contacts"
        )
    if "contact_groups" in arrays and arrays["contact_groups"].shape != arrays["contact_weights"].shape:
        raise PairSetError(
            f"{path}: key 'contact_groups' has shape {arrays['contact_groups'].shape}, expected "
            f"{arrays['contact_weights'].shape} (one group id per contact)"
        )
    if len(set(arrays["pair_id"].tolist())) != count:
        raise PairSetError(f"{path}: 'pair_id' values are not unique")
    return PairSet(arrays, meta)


def validate_pairs(pairs: PairSet, num_regions: int, num_betas: int) -> np.ndarray:
    """Per-pair problems, as strings ("" = fine): NaN/inf inputs, region ids out of range, bad weights.

    Returns:
        (P,) array of str.
    """
    errors = np.full(len(pairs), "", dtype=object)

    def flag(mask: np.ndarray, message: str) -> None:
        for i in np.flatnonzero(mask & (errors == "")):
            errors[i] = message

    for key in (
        "keypoints",
        "init_global_orient",
        "init_body_pose",
        "init_betas",
        "init_transl",
        "contact_weights",
    ):
        values = pairs[key].reshape(len(pairs), -1)
        flag(~np.all(np.isfinite(values), axis=1), f"{key} contains NaN or inf")
    if pairs["init_betas"].shape[-1] > num_betas:
        flag(
            np.ones(len(pairs), bool),
            f"init_betas has {pairs['init_betas'].shape[-1]} values, model has {num_betas}",
        )
    ids = pairs["contact_pairs"]
    used = ids >= 0
    flag(
        np.any(used & (ids >= num_regions), axis=(1, 2)), f"contact region id out of range [0, {num_regions})"
    )
    flag(np.any(ids < -1, axis=(1, 2)), "contact region id below -1 (only -1 marks padding)")
    weights = pairs["contact_weights"]
    flag(np.any((weights < 0) | (weights > 1), axis=1), "contact weight outside [0, 1]")
    if "contact_groups" in pairs:
        groups = pairs["contact_groups"]
        bad = used.all(axis=-1) & ((groups < 0) | (groups >= groups.shape[1]))
        flag(np.any(bad, axis=1), f"contact group id outside [0, {groups.shape[1]})")
    depth = pairs["init_transl"][..., 2]
    flag(np.any(depth <= 0, axis=1), "init_transl puts a person behind the camera (z <= 0)")
    return errors.astype(str)


# ----------------------------------------------------------------------------------------------- fits


def fits_meta_path(fits_dir: str | os.PathLike) -> Path:
    return Path(fits_dir) / "meta.json"


def shard_paths(fits_dir: str | os.PathLike) -> list[Path]:
    return sorted(Path(fits_dir).glob("shard-*.npz"))


def finished_pair_ids(fits_dir: str | os.PathLike) -> set[str]:
    """Pair ids already in complete shards (a rerun skips them)."""
    done: set[str] = set()
    for shard in shard_paths(fits_dir):
        with np.load(shard, allow_pickle=False) as npz:
            done.update(npz["pair_id"].tolist())
    return done


def load_fits(fits_dir: str | os.PathLike) -> PairSet:
    """Read a fits directory: all shards concatenated, in shard order; `meta` is meta.json."""
    fits_dir = Path(fits_dir)
    if not fits_dir.is_dir():
        raise PairSetError(f"fits directory not found: {fits_dir}")
    meta_path = fits_meta_path(fits_dir)
    if not meta_path.exists():
        raise PairSetError(f"{fits_dir}: missing meta.json (not a fits directory)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FITS_FORMAT:
        raise PairSetError(f"{meta_path}: format is {meta.get('format')!r}, expected {FITS_FORMAT!r}")
    shards = shard_paths(fits_dir)
    if not shards:
        raise PairSetError(f"{fits_dir}: no shard-*.npz files")
    parts: dict[str, list[np.ndarray]] = {}
    for shard in shards:
        with np.load(shard, allow_pickle=False) as npz:
            for k in npz.files:
                parts.setdefault(k, []).append(npz[k])
    return PairSet({k: np.concatenate(v) for k, v in parts.items()}, meta)
