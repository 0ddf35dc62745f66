"""Manual accept / reject marks on fitted pairs, kept in a small JSON file next to the fits or dataset.

File (``marks.json`` inside a FITS directory, ``<name>.marks.json`` beside a dataset or pair set file, so
``DATASET/dataset.marks.json`` for the folder ``apu run`` writes)::

    {"format": "apu-marks", "version": 1, "marks": {"<pair_id>": "accepted" | "rejected", ...}}

Pairs without an entry are unmarked. Every write goes to a temporary file in the same directory followed by
``os.replace``, so a reader (or a crash) never sees a half-written file. A manual mark overrides the
automatic filter: ``apply_marks`` turns "accepted" into keep=True and "rejected" into keep=False.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

MARKS_FORMAT = "apu-marks"
MARKS_VERSION = 1
MARK_VALUES = ("accepted", "rejected")
_LOCK = threading.Lock()  # the viewer's server threads share one read-modify-write at a time


class MarksError(ValueError):
    """A marks file that cannot be used (malformed JSON, wrong format, unknown mark)."""


def marks_path_for(source: str | Path) -> Path:
    """Where the marks of a FITS directory / dataset live: ``DIR/marks.json`` or ``<stem>.marks.json``."""
    source = Path(source)
    if source.is_dir():
        if not (source / "meta.json").exists() and (source / "dataset.npz").exists():
            return source / "dataset.marks.json"  # the same file whether the folder or its npz is opened
        return source / "marks.json"
    return source.with_name(source.stem + ".marks.json")


def load_marks(path: str | Path) -> dict[str, str]:
    """Read a marks file; a missing file means no marks.

    Returns:
      pair id → "accepted" | "rejected".
    Raises:
      MarksError: unreadable JSON, another format, or an unknown mark value.
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MarksError(f"{path}: not a readable JSON marks file ({err})") from err
    if not isinstance(data, dict) or data.get("format") != MARKS_FORMAT:
        raise MarksError(f"{path}: not an apu marks file (format must be '{MARKS_FORMAT}')")
    if data.get("version") != MARKS_VERSION:
        raise MarksError(f"{path}: unsupported marks version {data.get('version')!r}")
    marks = data.get("marks")
    if not isinstance(marks, dict):
        raise MarksError(f"{path}: missing key 'marks'")
    bad = {k: v for k, v in marks.items() if v not in MARK_VALUES}
    if bad:
        raise MarksError(f"{path}: unknown mark(s) {bad} (expected one of {', '.join(MARK_VALUES)})")
    return {str(k): str(v) for k, v in marks.items()}


def save_marks(path: str | Path, marks: Mapping[str, str]) -> Path:
    """Write all marks atomically (temporary file in the same directory, fsync, ``os.replace``)."""
    path = Path(path)
    for k, v in marks.items():
        if v not in MARK_VALUES:
            raise MarksError(f"unknown mark {v!r} for pair {k!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": MARKS_FORMAT, "version": MARKS_VERSION, "marks": dict(sorted(marks.items()))}
    fd, tmp = tempfile.mkstemp(prefix=".marks-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def set_mark(path: str | Path, pair_id: str, mark: str | None) -> dict[str, str]:
    """Set (or with ``mark=None`` clear) one pair's mark and save; thread-safe within this process.

    Returns:
      All marks after the change.
    """
    if mark is not None and mark not in MARK_VALUES:
        raise MarksError(f"unknown mark {mark!r} (expected one of {', '.join(MARK_VALUES)} or none)")
    with _LOCK:
        marks = load_marks(path)
        if mark is None:
            marks.pop(pair_id, None)
        else:
            marks[pair_id] = mark
        save_marks(path, marks)
    return marks


def apply_marks(pair_ids: Sequence[str], keep: np.ndarray, marks: Mapping[str, str]) -> np.ndarray:
    """The automatic filter's verdict overridden by manual marks.

    Args:
      pair_ids: (P,) pair ids.
      keep: (P,) bool, the automatic verdict.
      marks: pair id → "accepted" | "rejected".
    Returns:
      (P,) bool: True for accepted, False for rejected, ``keep`` for unmarked pairs.
    """
    out = np.asarray(keep, dtype=bool).copy()
    for i, pid in enumerate(pair_ids):
        m = marks.get(str(pid))
        if m == "accepted":
            out[i] = True
        elif m == "rejected":
            out[i] = False
    return out


def _dataset_file(path: Path) -> Path | None:
    """The dataset ``.npz`` a path names (the file, or ``dataset.npz`` in an `apu run` folder), or None."""
    if path.is_dir():
        has_npz = (path / "dataset.npz").exists()
        return path / "dataset.npz" if has_npz and not (path / "meta.json").exists() else None
    return path if path.suffix == ".npz" else None


def filter_verdict(source: str | Path, threshold: float | None = None, use_marks: bool = True) -> dict:
    """The keep / reject verdict of every pair of a FITS directory or dataset: automatic filter, then marks.

    The automatic filter is the fit engine's: both people's reprojection error below ``threshold`` (px of
    the 512-px person box) and no fitting error. With ``threshold=None`` a FITS directory's stored verdict
    is used as is, and every pair of a dataset (already filtered at export) counts as kept. Marks from
    `marks_path_for(source)` then override the verdict.

    Returns:
      JSON-ready dict: ``pair_ids`` (P,), ``keep`` (P,) bools, ``reasons`` (pair id → why it is dropped),
      ``counts``, the settings used, and ``kind`` ("fits" or "dataset").
    Raises:
      MarksError: a malformed marks file, or a threshold on data without reprojection errors.
      ValueError (PairSetError): unreadable fits / dataset.
    """
    from apu_jax.data.pairset import PairSetError, load_fits  # the data layer; imported here to stay light

    source = Path(source)
    dataset = _dataset_file(source)
    if dataset is None:
        fits = load_fits(source)
        table = fits.arrays
        kind = "fits"
    else:
        try:
            with np.load(dataset, allow_pickle=False) as z:
                table = {k: z[k] for k in z.files if k != "meta"}
        except (OSError, ValueError) as err:
            raise PairSetError(f"{dataset}: not a readable .npz file ({err})") from err
        if "pair_id" not in table:
            raise PairSetError(f"{dataset}: missing key 'pair_id'")
        kind = "dataset"
    ids = [str(s) for s in table["pair_id"]]
    errors = [str(s) for s in table["error"]] if "error" in table else [""] * len(ids)
    reproj = np.asarray(table["reproj_error"], np.float64) if "reproj_error" in table else None
    if threshold is None:
        auto = np.asarray(table["keep"], bool) if "keep" in table else np.ones(len(ids), bool)
    else:
        if reproj is None:
            raise MarksError(f"{source}: no 'reproj_error', cannot apply a threshold")
        auto = np.all(reproj < threshold, axis=1) & (np.array(errors) == "")
    current = load_marks(marks_path_for(source)) if use_marks else {}
    keep = apply_marks(ids, auto, current)
    reasons: dict[str, str] = {}
    for i, pid in enumerate(ids):
        if keep[i]:
            continue
        if current.get(pid) == "rejected":
            reasons[pid] = "marked rejected"
        elif errors[i]:
            reasons[pid] = f"fit error: {errors[i]}"
        elif reproj is not None:
            reasons[pid] = f"reprojection error {reproj[i].max():.1f} px" + (
                f" >= {threshold:g}" if threshold is not None else " (automatic filter)"
            )
        else:
            reasons[pid] = "automatic filter"
    return {
        "source": str(source),
        "kind": kind,
        "threshold": threshold,
        "used_marks": use_marks,
        "marks": str(marks_path_for(source)),
        "pair_ids": ids,
        "keep": keep.tolist(),
        "reasons": reasons,
        "counts": {
            "pairs": len(ids),
            "kept": int(keep.sum()),
            "kept_automatic": int(auto.sum()),
            "marked_accepted": sum(1 for p in ids if current.get(p) == "accepted"),
            "marked_rejected": sum(1 for p in ids if current.get(p) == "rejected"),
        },
    }


def write_filtered_dataset(source: str | Path, out: str | Path, verdict: dict) -> Path:
    """Write the kept rows of a dataset as a new dataset ``.npz`` (atomically); its meta records where it
    came from and the verdict's settings."""
    from apu_jax.data.pairset import PairSetError, atomic_savez

    dataset = _dataset_file(Path(source))
    if dataset is None:
        raise PairSetError(f"{source}: not a dataset (.npz or a folder with dataset.npz)")
    keep = np.asarray(verdict["keep"], bool)
    with np.load(dataset, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        arrays = {k: z[k][keep] for k in z.files if k != "meta"}
    meta["filtered"] = {
        "from": str(dataset),
        "threshold": verdict["threshold"],
        "marks": verdict["marks"] if verdict["used_marks"] else None,
        "kept": int(keep.sum()),
        "of": len(keep),
    }
    return atomic_savez(out, meta=np.asarray(json.dumps(meta)), **arrays)
