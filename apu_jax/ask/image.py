"""Prepare the image a model sees: person boxes drawn on it, downscaled to the budget, encoded once.

The model must know who is who: person A gets a red box labelled "A", person B a blue box labelled "B"
(`prompt.PERSON_STYLE`). Boxes come from the 2D keypoints (padded, since keypoints sit inside the body).
The annotated image is downscaled to at most `IMAGE_MAX_PIXELS` / `IMAGE_MAX_SIDE` (cost scales with
pixels, and providers downscale larger images anyway) and JPEG-encoded once per pair; all samples of a pair
send the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from apu_jax.ask.prompt import IMAGE_MAX_PIXELS, IMAGE_MAX_SIDE, JPEG_QUALITY, PERSON_STYLE


class ImageError(ValueError):
    """An image file is missing or unreadable."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR; raises ImageError with the path on failure."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"not a readable image: {path}")
    return img


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (the image part of the cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def person_box(
    keypoints: np.ndarray, image_size: tuple[int, int], min_conf: float = 0.3, pad: float = 0.15
) -> tuple[int, int, int, int]:
    """Box around a person's present keypoints, padded by `pad` × its size on each side, clipped.

    Args:
        keypoints: (25, 3) `x, y, confidence`, pixels.
        image_size: (W, H) pixels.
        min_conf: keypoints at or below this confidence are ignored.
        pad: fraction of max(box width, box height) added on every side (keypoints lie inside the body).
    Returns:
        (x0, y0, x1, y1) integer pixels; the whole image when no keypoint is present.
    """
    w, h = image_size
    kp = np.asarray(keypoints)
    present = kp[kp[:, 2] > min_conf, :2]
    if len(present) == 0:
        return 0, 0, w - 1, h - 1
    lo, hi = present.min(axis=0), present.max(axis=0)
    margin = pad * float(max(hi - lo)) + 4.0
    x0, y0 = np.floor(lo - margin).astype(int)
    x1, y1 = np.ceil(hi + margin).astype(int)
    return max(0, x0), max(0, y0), min(w - 1, x1), min(h - 1, y1)


def budget_scale(
    width: int, height: int, max_pixels: int = IMAGE_MAX_PIXELS, max_side: int = IMAGE_MAX_SIDE
) -> float:
    """Downscale factor (≤ 1) that brings an image within the pixel and side budgets."""
    s = min(1.0, (max_pixels / float(width * height)) ** 0.5, max_side / float(max(width, height)))
    return s


@dataclass(frozen=True)
class PreparedImage:
    """One annotated, downscaled, encoded image for one pair."""

    jpeg: bytes  # the encoded JPEG sent to the model
    size: tuple[int, int]  # (W, H) of the sent image, pixels
    boxes: tuple[tuple[int, int, int, int], tuple[int, int, int, int]]  # A and B boxes, original pixels


def prepare_pair_image(
    image: np.ndarray, kp_a: np.ndarray, kp_b: np.ndarray, min_conf: float = 0.3
) -> PreparedImage:
    """Draw the A/B boxes, downscale to the budget and JPEG-encode.

    Args:
        image: (H, W, 3) uint8 BGR, original resolution.
        kp_a, kp_b: (25, 3) BODY-25 keypoints of person A and person B, original pixels.
        min_conf: keypoint presence threshold for the boxes.
    Returns:
        A `PreparedImage`.
    """
    h, w = image.shape[:2]
    s = budget_scale(w, h)
    out = image if s == 1.0 else cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    out = np.ascontiguousarray(out).copy()
    oh, ow = out.shape[:2]
    thick = max(2, round(max(ow, oh) / 300))
    font_scale = max(0.6, max(ow, oh) / 900)
    boxes = []
    for name, kp in (("A", kp_a), ("B", kp_b)):
        colour = PERSON_STYLE[name][0]
        box = person_box(kp, (w, h), min_conf)
        boxes.append(box)
        x0, y0, x1, y1 = (round(v * s) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        (tw, th), base = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        # The label sits in a filled tab on top of the box's top-left corner (so it hides nothing inside the
        # box), or just inside the corner when the box touches the image top.
        tab_h = th + base + 2 * thick
        ty0 = y0 - tab_h if y0 - tab_h >= 0 else y0
        tx1 = min(ow - 1, x0 + tw + 2 * thick)
        cv2.rectangle(out, (x0, ty0), (tx1, ty0 + tab_h), colour, -1)
        white = (255, 255, 255)
        cv2.putText(
            out, name, (x0 + thick, ty0 + th + thick), cv2.FONT_HERSHEY_SIMPLEX, font_scale, white, thick
        )
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ImageError("JPEG encoding failed")
    return PreparedImage(jpeg=buf.tobytes(), size=(ow, oh), boxes=(boxes[0], boxes[1]))
