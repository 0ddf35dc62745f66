"""The browser viewer's local HTTP server: a static page plus a small JSON API, on 127.0.0.1 only.

API (all JSON unless noted):

- ``GET /`` and ``GET /static/<file>`` — the page (``apu_jax/viz/static``).
- ``GET /api/pairs`` — ``{"source", "count", "losses": [names], "pairs": [{"index", "pair_id", "label",
  "keep", "mark", "losses": {name: value}}]}``.
- ``GET /api/pair/<index>`` — one pair's geometry: ``{"pair_id", "num_vertices", "vertices"`` (base64
  little-endian float32, (2, V, 3) metres, camera frame), ``"contact"`` (base64 float32 (2, V) or null),
  ``"joints3d"`` (nested list (2, K, 3) or null), ``"camera": {"focal", "principal", "image_size"}}``.
- ``GET /api/faces`` — ``{"faces"}``: base64 little-endian int32 (F, 3), shared by all pairs.
- ``GET /api/pair/<index>/overlay.png`` — the fit drawn over the image by the CPU rasteriser (PNG).
- ``POST /api/mark`` with ``{"pair_id", "mark": "accepted" | "rejected" | null}`` — saved atomically to the
  marks file; answers ``{"pair_id", "mark"}``.

Geometry is computed lazily per pair by the source and cached (a few pairs), so opening a large set is quick.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import mimetypes
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np

from apu_jax.viz import draw, marks
from apu_jax.viz.scene import PairScene, render_overlay

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class PairSource:
    """What the viewer browses: per-pair summaries up front, full scenes on demand."""

    name: str  # shown in the page title (a path, usually)
    pair_ids: list[str]  # (P,) unique ids
    faces: np.ndarray  # (F, 3) int triangle indices shared by all pairs
    load_scene: Callable[[int], PairScene]  # index → the pair's scene (may be slow: runs the body model)
    marks_path: Path  # where accept / reject marks are saved
    labels: list[str] = field(default_factory=list)  # (P,) interaction labels, may be empty strings
    losses: dict[str, np.ndarray] = field(default_factory=dict)  # name → (P,) float, for sorting
    keep: np.ndarray | None = None  # (P,) bool automatic filter verdict, if known


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


class ViewerState:
    """The source plus a small cache of scenes; shared by the server's threads."""

    def __init__(self, source: PairSource, cache_size: int = 16) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._scene = functools.lru_cache(maxsize=cache_size)(self._load)

    def _load(self, index: int) -> PairScene:
        return self.source.load_scene(index)

    def scene(self, index: int) -> PairScene:
        # lru_cache is thread-safe for lookups but may compute twice; the lock keeps the body model single.
        with self._lock:
            return self._scene(index)

    def pairs_json(self) -> dict:
        s = self.source
        current = marks.load_marks(s.marks_path)
        rows = []
        for i, pid in enumerate(s.pair_ids):
            rows.append(
                {
                    "index": i,
                    "pair_id": pid,
                    "label": s.labels[i] if i < len(s.labels) else "",
                    "keep": None if s.keep is None else bool(s.keep[i]),
                    "mark": current.get(pid),
                    "losses": {k: _finite_or_none(v[i]) for k, v in s.losses.items()},
                }
            )
        return {"source": s.name, "count": len(rows), "losses": list(s.losses), "pairs": rows}

    def pair_json(self, index: int) -> dict:
        sc = self.scene(index)
        return {
            "pair_id": sc.pair_id,
            "label": sc.label,
            "num_vertices": int(sc.vertices.shape[1]),
            "vertices": _b64(sc.vertices, "<f4"),
            "contact": None if sc.contact_weight is None else _b64(sc.contact_weight, "<f4"),
            "joints3d": None if sc.joints3d is None else np.round(sc.joints3d, 5).tolist(),
            "camera": {
                "focal": [float(v) for v in sc.focal],
                "principal": [float(v) for v in sc.principal],
                "image_size": [int(v) for v in sc.image_size],
            },
        }

    def overlay_png(self, index: int, max_side: int = 900) -> bytes:
        img = draw.fit_within(render_overlay(self.scene(index)), max_side)
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
        if not ok:
            raise RuntimeError("PNG encoding failed")
        return buf.tobytes()


class _Handler(BaseHTTPRequestHandler):
    state: ViewerState  # set on the subclass made by make_server
    quiet: bool = True

    def log_message(self, fmt: str, *args: object) -> None:  # noqa: D102 — stdlib hook
        if not self.quiet:
            super().log_message(fmt, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: object, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _index(self, parts: Sequence[str]) -> int | None:
        try:
            i = int(parts[2])
        except (IndexError, ValueError):
            return None
        return i if 0 <= i < len(self.state.source.pair_ids) else None

    def do_GET(self) -> None:  # noqa: N802 — stdlib name
        path = unquote(urlparse(self.path).path)
        try:
            if path in ("/", "/index.html"):
                return self._static("index.html")
            if path.startswith("/static/"):
                return self._static(path[len("/static/") :])
            parts = path.strip("/").split("/")
            if parts == ["api", "pairs"]:
                return self._json(self.state.pairs_json())
            if parts == ["api", "faces"]:
                return self._json({"faces": _b64(self.state.source.faces, "<i4")})
            if len(parts) >= 3 and parts[:2] == ["api", "pair"]:
                i = self._index(parts)
                if i is None:
                    return self._error(HTTPStatus.NOT_FOUND, f"no pair {parts[2]!r}")
                if len(parts) == 3:
                    return self._json(self.state.pair_json(i))
                if parts[3:] == ["overlay.png"]:
                    return self._send(200, self.state.overlay_png(i), "image/png")
            return self._error(HTTPStatus.NOT_FOUND, f"no such resource {path!r}")
        except Exception as err:  # the page shows the message; the server keeps running
            traceback.print_exc()
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(err).__name__}: {err}")

    def do_POST(self) -> None:  # noqa: N802 — stdlib name
        path = urlparse(self.path).path
        if path != "/api/mark":
            return self._error(HTTPStatus.NOT_FOUND, f"no such resource {path!r}")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            pair_id, mark = body["pair_id"], body.get("mark")
        except (ValueError, KeyError, TypeError):
            return self._error(HTTPStatus.BAD_REQUEST, 'expected JSON {"pair_id": ..., "mark": ...}')
        if pair_id not in set(self.state.source.pair_ids):
            return self._error(HTTPStatus.NOT_FOUND, f"unknown pair id {pair_id!r}")
        try:
            marks.set_mark(self.state.source.marks_path, pair_id, mark)
        except marks.MarksError as err:
            return self._error(HTTPStatus.BAD_REQUEST, str(err))
        return self._json({"pair_id": pair_id, "mark": mark})

    def _static(self, name: str) -> None:
        target = (STATIC_DIR / name).resolve()
        if STATIC_DIR not in target.parents or not target.is_file():
            return self._error(HTTPStatus.NOT_FOUND, f"no static file {name!r}")
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return self._send(200, target.read_bytes(), ctype)


def make_server(source: PairSource, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
    """An HTTP server for ``source`` (not yet serving; call ``serve_forever``). Port 0 picks a free port.

    Returns:
      ``ThreadingHTTPServer``; its ``server_address`` holds the bound host and port.
    """
    handler = type("ViewerHandler", (_Handler,), {"state": ViewerState(source), "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
