"""Writing pictures of many pairs: which pairs, in which order, and the PNG files (``apu render``)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from apu_jax.viz import draw
from apu_jax.viz.marks import load_marks
from apu_jax.viz.scene import render_contact_map, render_pair
from apu_jax.viz.server import PairSource


def safe_name(pair_id: str) -> str:
    """A file-name-safe version of a pair id (anything but letters, digits, ``._-`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", pair_id) or "pair"


def select_pairs(
    source: PairSource,
    pair_ids: Sequence[str] | None = None,
    sort_by: str | None = None,
    descending: bool = False,
    limit: int | None = None,
    only: str = "all",
) -> list[int]:
    """Indices of the pairs to draw.

    Args:
      source: the pairs.
      pair_ids: draw exactly these (in this order); unknown ids raise ValueError naming the first one.
      sort_by: a loss name of ``source.losses`` (NaN / inf last).
      descending: worst first when sorting by a loss.
      limit: at most this many.
      only: "all", "kept" (automatic filter, then marks), "rejected", "accepted", "unmarked" (marks).
    Returns:
      Indices into ``source.pair_ids``.
    """
    if pair_ids:
        where = {p: i for i, p in enumerate(source.pair_ids)}
        unknown = [p for p in pair_ids if p not in where]
        if unknown:
            raise ValueError(f"unknown pair id {unknown[0]!r} in {source.name}")
        order = [where[p] for p in pair_ids]
    else:
        order = list(range(len(source.pair_ids)))
        if sort_by is not None:
            if sort_by not in source.losses:
                known = ", ".join(source.losses) or "none"
                raise ValueError(f"unknown loss {sort_by!r} to sort by (this source has: {known})")
            v = np.asarray(source.losses[sort_by], np.float64)
            finite = np.isfinite(v)
            key = np.where(finite, -v if descending else v, np.inf)
            order = [int(i) for i in np.lexsort((key, ~finite))]
    if only != "all":
        marks = load_marks(source.marks_path)
        keep = np.ones(len(source.pair_ids), bool) if source.keep is None else np.asarray(source.keep)
        pid = source.pair_ids

        def wanted(i: int) -> bool:
            m = marks.get(pid[i])
            if only == "kept":
                return m == "accepted" or (m is None and bool(keep[i]))
            if only == "rejected":
                return m == "rejected" or (m is None and not bool(keep[i]))
            if only == "accepted":
                return m == "accepted"
            if only == "unmarked":
                return m is None
            raise ValueError(f"unknown selection {only!r} (all, kept, rejected, accepted, unmarked)")

        order = [i for i in order if wanted(i)]
    return order[:limit] if limit is not None else order


def write_pictures(
    source: PairSource,
    out_dir: str | Path,
    indices: Sequence[int],
    side: bool = True,
    contact_map: bool = False,
    max_side: int = 800,
) -> dict:
    """Render and write one PNG per pair (``<pair id>.png``) and, with ``contact_map``, its contact
    picture (``<pair id>-contacts.png``).

    Returns:
      Summary: ``out``, ``written`` (paths), ``pairs``, ``seconds`` (wall time, body model included).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    start = time.perf_counter()
    for i in indices:
        scene = source.load_scene(i)
        name = safe_name(scene.pair_id)
        written.append(
            str(draw.write_png(out / f"{name}.png", render_pair(scene, side=side, max_side=max_side)))
        )
        if contact_map:
            written.append(str(draw.write_png(out / f"{name}-contacts.png", render_contact_map(scene))))
    return {
        "out": str(out),
        "pairs": len(indices),
        "written": written,
        "seconds": round(time.perf_counter() - start, 3),
    }


def demo_pictures(
    source_path: str | Path, out_dir: str | Path, count: int = 3, model: str | None = None
) -> list[str]:
    """A few pictures for `apu demo`: the best-fitting kept pairs (by total loss when known), each with its
    contact picture. Returns the written paths."""
    from apu_jax.viz.load import open_source  # runs the body model; imported lazily like the CLI does

    source = open_source(source_path, model=model)
    sort_by = "total" if "total" in source.losses else None
    indices = select_pairs(source, sort_by=sort_by, limit=count, only="kept") or select_pairs(
        source, sort_by=sort_by, limit=count
    )
    return write_pictures(source, out_dir, indices, contact_map=True)["written"]
