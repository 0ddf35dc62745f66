"""2D drawing on RGB uint8 images: keypoints and their reprojections, captions, contact-map heat maps.

Everything is OpenCV on NumPy arrays (no display). Images are RGB ``uint8`` ``(H, W, 3)``; colours are RGB
floats in ``[0, 1]``; pixel coordinates follow ``apu_jax.viz.raster`` (pixel centre at integer coordinates).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

# Person colours (RGB in [0, 1]): person 0 warm, person 1 cool; contacts in green, which neither contains.
PERSON_COLOURS: tuple[tuple[float, float, float], ...] = ((0.93, 0.55, 0.32), (0.35, 0.58, 0.93))
CONTACT_COLOUR: tuple[float, float, float] = (0.15, 0.85, 0.25)
BLANK_BACKGROUND = 235  # grey level of the canvas drawn when a pair has no image


def cv_colour(colour: Sequence[float]) -> tuple[int, int, int]:
    """RGB float colour in [0, 1] → an OpenCV drawing colour (0–255) for our RGB images."""
    return tuple(int(round(255 * float(c))) for c in colour)  # type: ignore[return-value]


def darker(colour: Sequence[float], factor: float = 0.6) -> tuple[float, float, float]:
    """The same hue, darker (``factor`` in [0, 1] scales every channel)."""
    return tuple(float(c) * factor for c in colour)  # type: ignore[return-value]


def draw_keypoints(
    image: np.ndarray,
    keypoints: np.ndarray,
    colour: Sequence[float],
    reprojected: np.ndarray | None = None,
    min_confidence: float = 0.0,
    radius: int | None = None,
) -> np.ndarray:
    """Mark detected keypoints (filled discs) and, if given, the model's reprojections (crosses) joined by
    a line to their detection, so a misfit shows as a long line.

    Args:
      image: (H, W, 3) uint8 RGB; not modified.
      keypoints: (K, 3) ``x, y, confidence`` pixels; confidence <= ``min_confidence`` counts as missing.
      colour: RGB in [0, 1] for this person.
      reprojected: (K, 2) pixels, the fitted model's keypoints projected with the fit's camera.
      min_confidence: threshold below which a keypoint counts as missing.
      radius: disc radius in pixels; default scales with the image size.
    Returns:
      (H, W, 3) uint8 RGB.
    """
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    r = radius if radius is not None else max(2, round(max(h, w) / 250))
    thick = max(1, r // 2)
    kp = np.asarray(keypoints, dtype=np.float64)
    fill = cv_colour(colour)
    edge = cv_colour(darker(colour, 0.45))
    present = kp[:, 2] > min_confidence
    if reprojected is not None:
        rp = np.asarray(reprojected, dtype=np.float64)
        for k in np.flatnonzero(present & np.all(np.isfinite(rp), axis=1)):
            p, q = _pt(kp[k, :2]), _pt(rp[k])
            cv2.line(out, p, q, (255, 255, 255), thick, cv2.LINE_AA)
    for k in np.flatnonzero(present):
        p = _pt(kp[k, :2])
        cv2.circle(out, p, r, fill, -1, cv2.LINE_AA)
        cv2.circle(out, p, r, edge, max(1, r // 3), cv2.LINE_AA)
    if reprojected is not None:
        for k in np.flatnonzero(np.all(np.isfinite(rp), axis=1)):
            cv2.drawMarker(out, _pt(rp[k]), edge, cv2.MARKER_CROSS, 2 * r + 2, thick, cv2.LINE_AA)
    return out


def _pt(xy: np.ndarray) -> tuple[int, int]:
    """Nearest integer pixel, clipped to a range OpenCV accepts for far-away points."""
    x, y = np.clip(np.rint(xy), -(2**20), 2**20)
    return int(x), int(y)


def caption(image: np.ndarray, lines: Sequence[str], height: int | None = None) -> np.ndarray:
    """Stack a white band with text lines on top of ``image``; lines too long for the width are wrapped at
    spaces.

    Args:
      image: (H, W, 3) uint8 RGB.
      lines: text lines (ASCII; OpenCV's Hershey fonts draw no other characters).
      height: band height per line in pixels; default scales with the width.
    Returns:
      (H + band, W, 3) uint8 RGB.
    """
    w = image.shape[1]
    line_h = height if height is not None else int(np.clip(w / 40, 16, 32))
    scale = line_h / 32.0
    thick = max(1, round(scale * 1.5))
    font = cv2.FONT_HERSHEY_SIMPLEX
    wrapped: list[str] = []
    for text in lines:
        current = ""
        for word in text.encode("ascii", "replace").decode().split(" "):
            trial = f"{current} {word}" if current else word
            if current and cv2.getTextSize(trial, font, scale, thick)[0][0] > w - line_h:
                wrapped.append(current)
                current = word
            else:
                current = trial
        wrapped.append(current)
    band = np.full((line_h * len(wrapped) + line_h // 3, w, 3), 255, dtype=np.uint8)
    for i, text in enumerate(wrapped):
        cv2.putText(
            band, text, (line_h // 3, (i + 1) * line_h - line_h // 4), font, scale, (20, 20, 20), thick,
            cv2.LINE_AA,
        )  # fmt: skip
    return np.concatenate([band, image], axis=0)


def hstack(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Place images side by side (top-aligned, white padding), separated by ``gap`` white columns."""
    h = max(im.shape[0] for im in images)
    cols = []
    for i, im in enumerate(images):
        pad = np.full((h - im.shape[0], im.shape[1], 3), 255, dtype=np.uint8)
        cols.append(np.concatenate([im, pad], axis=0))
        if i + 1 < len(images):
            cols.append(np.full((h, gap, 3), 255, dtype=np.uint8))
    return np.concatenate(cols, axis=1)


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (INTER_AREA) so the longer side is at most ``max_side`` pixels; never upscales."""
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    if s >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (max compression), creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"could not write {path}")
    return path


def read_image_rgb(path: str | Path) -> np.ndarray | None:
    """Read an image file as RGB uint8, or None if it is missing or unreadable."""
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if im is None else np.ascontiguousarray(im[..., ::-1])


def heat_colour(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB in [0, 1]: white (0) → yellow → orange → dark red (1).

    Args:
      values: (...,) floats; clipped to [0, 1].
    Returns:
      (..., 3) RGB floats.
    """
    stops = np.array([[1.0, 1.0, 1.0], [1.0, 0.92, 0.45], [0.97, 0.55, 0.16], [0.70, 0.08, 0.10]])
    t = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * (len(stops) - 1)
    i = np.minimum(np.floor(t).astype(int), len(stops) - 2)
    f = (t - i)[..., None]
    return stops[i] * (1 - f) + stops[i + 1] * f


def contact_heatmap(
    matrix: np.ndarray,
    names: Sequence[str],
    rows: Sequence[int] | None = None,
    cols: Sequence[int] | None = None,
    cell: int = 22,
    title: str = "",
) -> np.ndarray:
    """Picture of a soft contact map: rows are person 0's regions, columns person 1's, cell colour = weight.

    Args:
      matrix: (R, R) weights in [0, 1]; ``matrix[i, j]`` = contact of region i on person 0 with region j on
        person 1.
      names: (R,) region names (shown as row / column labels, sides included in the names).
      rows, cols: which regions to show (default: those with any non-zero weight; all if the map is empty).
      cell: cell size in pixels.
      title: caption above the grid.
    Returns:
      (H, W, 3) uint8 RGB.
    """
    m = np.asarray(matrix, dtype=np.float64)
    nz_rows = np.flatnonzero(m.max(axis=1) > 0)
    nz_cols = np.flatnonzero(m.max(axis=0) > 0)
    rows = list(rows) if rows is not None else (list(nz_rows) or list(range(m.shape[0])))
    cols = list(cols) if cols is not None else (list(nz_cols) or list(range(m.shape[1])))
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, cell / 48.0
    thick = 1
    label_w = max(cv2.getTextSize(str(names[i]), font, scale, thick)[0][0] for i in rows) + 10
    label_h = max(cv2.getTextSize(str(names[j]), font, scale, thick)[0][0] for j in cols) + 10
    legend_w = 70
    bar_h = max(cell * min(len(rows), 8), 60)
    h = label_h + max(cell * len(rows), bar_h) + 10
    w = label_w + cell * len(cols) + legend_w
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    sub = m[np.ix_(rows, cols)]
    colours = (heat_colour(sub) * 255).round().astype(np.uint8)
    grid = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    img[label_h : label_h + grid.shape[0], label_w : label_w + grid.shape[1]] = grid
    # Thin grid lines so white (zero) cells are still visible as cells.
    for k in range(len(rows) + 1):
        y = label_h + k * cell
        cv2.line(img, (label_w, y), (label_w + cell * len(cols), y), (200, 200, 200), 1)
    for k in range(len(cols) + 1):
        x = label_w + k * cell
        cv2.line(img, (x, label_h), (x, label_h + cell * len(rows)), (200, 200, 200), 1)
    for k, i in enumerate(rows):
        cv2.putText(
            img, str(names[i]), (4, label_h + k * cell + int(cell * 0.7)), font, scale,
            cv_colour(darker(PERSON_COLOURS[0], 0.7)), thick, cv2.LINE_AA,
        )  # fmt: skip
    # Column labels are written horizontally on a strip, then rotated so they read bottom-to-top.
    strip = np.full((cell * len(cols), label_h, 3), 255, dtype=np.uint8)
    for k, j in enumerate(cols):
        cv2.putText(
            strip, str(names[j]), (4, k * cell + int(cell * 0.7)), font, scale,
            cv_colour(darker(PERSON_COLOURS[1], 0.7)), thick, cv2.LINE_AA,
        )  # fmt: skip
    img[0:label_h, label_w : label_w + cell * len(cols)] = np.rot90(strip)
    # Legend: a vertical colour bar 1 (top) → 0 (bottom).
    x0 = label_w + cell * len(cols) + 12
    ramp = (heat_colour(np.linspace(1, 0, bar_h)) * 255).round().astype(np.uint8)
    img[label_h : label_h + bar_h, x0 : x0 + 14] = ramp[:, None, :]
    cv2.rectangle(img, (x0, label_h), (x0 + 14, label_h + bar_h - 1), (120, 120, 120), 1)
    cv2.putText(img, "1", (x0 + 18, label_h + 10), font, 0.4, (40, 40, 40), 1, cv2.LINE_AA)
    cv2.putText(img, "0", (x0 + 18, label_h + bar_h - 2), font, 0.4, (40, 40, 40), 1, cv2.LINE_AA)
    if title:
        img = caption(img, [title], height=22)
    return img
