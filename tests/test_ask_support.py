"""Shared builders for the ask tests (no tests here): synthetic two-person scenes and a fake region map."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from apu_jax.regions.vocabulary import APU_PARTS

# A person facing the camera, ~300 px tall, centred at x = 0 (their right side is on the image's left).
_STANDING = {
    0: (0, 80), 1: (0, 110), 2: (-30, 110), 3: (-40, 160), 4: (-45, 205), 5: (30, 110), 6: (40, 160),
    7: (45, 205), 8: (0, 210), 9: (-18, 210), 10: (-20, 275), 11: (-20, 340), 12: (18, 210), 13: (20, 275),
    14: (20, 340), 15: (-7, 75), 16: (7, 75), 17: (-14, 80), 18: (14, 80), 19: (28, 350), 20: (33, 348),
    21: (18, 345), 22: (-28, 350), 23: (-33, 348), 24: (-18, 345),
}  # fmt: skip


def standing(cx: float, overrides: dict[int, tuple[float, float]] | None = None) -> np.ndarray:
    """(25, 3) BODY-25 keypoints of a standing person facing the camera at x = cx (confidence 0.9)."""
    kp = np.zeros((25, 3))
    for j, (x, y) in _STANDING.items():
        kp[j] = (cx + x, y, 0.9)
    for j, (x, y) in (overrides or {}).items():
        kp[j, :2] = (x, y)
    return kp


def touching_pair() -> np.ndarray:
    """(2, 25, 3): A at x=150 reaches with their LEFT hand to B's RIGHT shoulder (B at x=260)."""
    a = standing(150, {6: (195, 125), 7: (226, 113)})
    b = standing(260)
    return np.stack([a, b])


def far_pair() -> np.ndarray:
    """(2, 25, 3): two people standing 250 px apart, not touching."""
    return np.stack([standing(120), standing(370)])


def draw_image(path: Path, people: np.ndarray, size: tuple[int, int] = (400, 400)) -> None:
    """A tiny synthetic image: each person as thick grey limbs (enough for the annotation code)."""
    img = np.full((size[1], size[0], 3), 235, np.uint8)
    limbs = [
        (1, 8),
        (2, 3),
        (3, 4),
        (5, 6),
        (6, 7),
        (9, 10),
        (10, 11),
        (12, 13),
        (13, 14),
        (2, 5),
        (9, 12),
        (0, 1),
    ]
    for kp in people:
        for i, j in limbs:
            p, q = tuple(int(v) for v in kp[i, :2]), tuple(int(v) for v in kp[j, :2])
            cv2.line(img, p, q, (90, 90, 90), 9)
    cv2.imwrite(str(path), img)


def person_entry(kp: np.ndarray, num_betas: int = 10) -> dict:
    """An inline manifest person with a perfectly aligned initial mesh (joints2d = keypoints)."""
    return {
        "keypoints": kp.tolist(),
        "global_orient": [np.pi, 0.0, 0.0],
        "body_pose": [0.0] * 63,
        "betas": [0.0] * num_betas,
        "transl": [0.0, 0.0, 3.0],
        "joints2d": kp.tolist(),
    }


def write_dataset(root: Path, scenes: list[np.ndarray], labels: list[str | None] | None = None) -> Path:
    """Images + a manifest with inline people (no body model needed). Returns the manifest path."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, people in enumerate(scenes):
        draw_image(root / "images" / f"img{i}.png", people)
        rec = {"image": f"images/img{i}.png", "id": f"img{i}", "people": [person_entry(kp) for kp in people]}
        if labels and labels[i]:
            rec["label"] = labels[i]
        lines.append(json.dumps(rec))
    path = root / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_part_regions(part: str, side: str) -> list[int]:
    """A stand-in region map: part k has regions 2k (left) and 2k+1 (right); central parts only 2k."""
    from apu_jax.regions.vocabulary import CENTRAL_PARTS

    k = APU_PARTS.index(part)
    if part in CENTRAL_PARTS:
        return [2 * k]
    return {"left": [2 * k], "right": [2 * k + 1]}.get(side, [2 * k, 2 * k + 1])
