"""Manual accept / reject marks on fitted pairs, kept in a small JSON file next to the fits or dataset.

File (``marks.json`` inside a FITS / dataset directory, ``<name>.marks.json`` beside a dataset file)::

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


def filter_fits(fits_dir: str | Path, threshold: float | None = None, use_marks: bool = True) -> dict:
    """The keep / reject verdict of every fitted pair: automatic filter, then manual marks.

    The automatic filter is the fit engine's (both people's reprojection error below ``threshold``, in
    px of the 512-px person box, and no fitting error); with ``threshold=None`` the verdict stored in the
    shards is used as is. Marks from `marks_path_for(fits_dir)` then override it.

    Returns:
      JSON-ready dict: ``pair_ids`` (P,), ``keep`` (P,) bools, ``reasons`` (pair id → why it is dropped),
      ``counts`` and the settings used.
    """
    from apu_jax.data.pairset import load_fits  # the data layer; imported here to keep this module light

    fits = load_fits(fits_dir)
    ids = [str(s) for s in fits["pair_id"]]
    errors = [str(s) for s in fits["error"]] if "error" in fits else [""] * len(ids)
    reproj = np.asarray(fits["reproj_error"], np.float64) if "reproj_error" in fits else None
    if threshold is None:
        auto = np.asarray(fits["keep"], bool)
    else:
        if reproj is None:
            raise MarksError(f"{fits_dir}: no 'reproj_error' in the shards, cannot apply a threshold")
        auto = np.all(reproj < threshold, axis=1) & (np.array(errors) == "")
    current = load_marks(marks_path_for(fits_dir)) if use_marks else {}
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
        "source": str(fits_dir),
        "threshold": threshold,
        "used_marks": use_marks,
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
