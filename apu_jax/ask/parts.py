"""Where each vocabulary body part lies in the image: 2D anchor points from BODY-25 keypoints.

The laterality denoiser and the heuristic provider both need to ask "how close is person A's left hand to
person B's back in the image?". A part is represented by a few *anchor points*, each an affine combination
of BODY-25 keypoints (weights sum to 1), so a part covers its whole extent and not only its end joints:
the forearm gets the elbow, the wrist and their midpoint; the hand is extrapolated a third of a forearm
beyond the wrist (BODY-25 has no hand keypoint); chest and stomach are points on the neck–mid-hip line.
An anchor exists only when every keypoint it uses is present (confidence above a threshold).

"Left"/"right" are the subject's own sides. 2D keypoints cannot tell front from back, so "back" shares the
trunk anchors of chest and stomach; the LVLM, which sees the image, is the judge of that.
"""

from __future__ import annotations

import numpy as np

# BODY-25 indices of the sided joints (OpenPose order: see apu_jax.regions.keypoints).
_SIDE_JOINTS: dict[str, dict[str, int]] = {
    "left": {
        "sho": 5,
        "elb": 6,
        "wri": 7,
        "hip": 12,
        "knee": 13,
        "ank": 14,
        "btoe": 19,
        "stoe": 20,
        "heel": 21,
    },
    "right": {
        "sho": 2,
        "elb": 3,
        "wri": 4,
        "hip": 9,
        "knee": 10,
        "ank": 11,
        "btoe": 22,
        "stoe": 23,
        "heel": 24,
    },
}
NOSE, NECK, MID_HIP, R_EYE, L_EYE, R_EAR, L_EAR = 0, 1, 8, 15, 16, 17, 18
L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 5, 2, 12, 9

# Sided parts: anchors as {joint name: weight} over that side's joints.
_SIDED: dict[str, tuple[dict[str, float], ...]] = {
    "shoulder": ({"sho": 1.0},),
    "elbow": ({"elb": 1.0},),
    "knee": ({"knee": 1.0},),
    "hand": ({"wri": 1.0}, {"wri": 1.35, "elb": -0.35}),  # the palm sits ~1/3 forearm beyond the wrist
    "forearm": ({"elb": 1.0}, {"elb": 0.5, "wri": 0.5}, {"wri": 1.0}),
    "upper arm": ({"sho": 1.0}, {"sho": 0.5, "elb": 0.5}, {"elb": 1.0}),
    "thigh": ({"hip": 1.0}, {"hip": 0.5, "knee": 0.5}, {"knee": 1.0}),
    "foot": ({"ank": 1.0}, {"btoe": 1.0}, {"stoe": 1.0}, {"heel": 1.0}),
}
_SIDED["arm"] = _SIDED["upper arm"] + _SIDED["forearm"][1:] + _SIDED["hand"][1:]
_SIDED["leg"] = _SIDED["thigh"] + ({"knee": 0.5, "ank": 0.5}, {"ank": 1.0})

# Central parts: anchors as {BODY-25 index: weight}. Neck / MidHip are derived when missing (see below).
_TRUNK_CHEST = ({NECK: 0.8, MID_HIP: 0.2}, {NECK: 0.6, MID_HIP: 0.4})
_TRUNK_STOMACH = ({NECK: 0.4, MID_HIP: 0.6}, {NECK: 0.25, MID_HIP: 0.75})
_CENTRAL: dict[str, tuple[dict[int, float], ...]] = {
    "head": ({NOSE: 1.0}, {R_EYE: 1.0}, {L_EYE: 1.0}, {R_EAR: 1.0}, {L_EAR: 1.0}),
    "face": ({NOSE: 1.0}, {R_EYE: 1.0}, {L_EYE: 1.0}),
    "neck": ({NECK: 1.0}, {NECK: 0.7, NOSE: 0.3}),
    "chest": _TRUNK_CHEST,
    "stomach": _TRUNK_STOMACH,
    "back": _TRUNK_CHEST + _TRUNK_STOMACH,
    "waist": ({MID_HIP: 1.0}, {L_HIP: 1.0}, {R_HIP: 1.0}),
}

LATERAL_PARTS: frozenset[str] = frozenset(_SIDED)


def complete_body25(keypoints: np.ndarray, min_conf: float) -> np.ndarray:
    """Fill a missing Neck / MidHip with the midpoint of the shoulders / hips (for anchors only).

    ViTPose-converted keypoints never have Neck (1) or MidHip (8); the trunk anchors need them.

    Args:
        keypoints: (25, 3) BODY-25 `x, y, confidence`, pixels.
        min_conf: a keypoint counts as present when its confidence exceeds this.
    Returns:
        (25, 3) copy with Neck/MidHip derived where they were missing and both sources are present.
    """
    kp = np.array(keypoints, dtype=np.float64)
    for target, (a, b) in ((NECK, (L_SHOULDER, R_SHOULDER)), (MID_HIP, (L_HIP, R_HIP))):
        if kp[target, 2] <= min_conf and kp[a, 2] > min_conf and kp[b, 2] > min_conf:
            kp[target, :2] = 0.5 * (kp[a, :2] + kp[b, :2])
            kp[target, 2] = min(kp[a, 2], kp[b, 2])
    return kp


def _anchor_weights(part: str, side: str) -> list[dict[int, float]]:
    if part in _CENTRAL:
        return [dict(w) for w in _CENTRAL[part]]
    if part not in _SIDED:
        raise ValueError(f"unknown body part '{part}'")
    sides = ("left", "right") if side in ("both", "n/a", "unknown") else (side,)
    out = []
    for s in sides:
        joints = _SIDE_JOINTS[s]
        out.extend({joints[name]: w for name, w in anchor.items()} for anchor in _SIDED[part])
    return out


def anchor_count(part: str) -> int:
    """Anchors per side of a part: a measure of its extent (1 = a point part like "shoulder")."""
    return len(_SIDED[part]) if part in _SIDED else len(_CENTRAL[part])


def part_anchors(keypoints: np.ndarray, part: str, side: str, min_conf: float = 0.3) -> np.ndarray:
    """2D anchor points of one body part of one person.

    Args:
        keypoints: (25, 3) BODY-25 keypoints, pixels (Neck/MidHip derived internally when missing).
        part: a vocabulary part ("hand", "upper arm", ...).
        side: "left" / "right"; "both", "unknown" or "n/a" give both sides. Ignored for central parts.
        min_conf: keypoints at or below this confidence are treated as missing.
    Returns:
        (n, 2) float64 anchor points in pixels; n = 0 when the needed keypoints are missing.
    """
    kp = complete_body25(keypoints, min_conf)
    points = []
    for anchor in _anchor_weights(part, side):
        idx = list(anchor)
        if np.all(kp[idx, 2] > min_conf):
            points.append(sum(w * kp[j, :2] for j, w in anchor.items()))
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def person_scale(keypoints: np.ndarray, min_conf: float = 0.3) -> float:
    """Size of a person in pixels: max(width, height) of the present keypoints' box (BUDDI's normaliser).

    Returns 0.0 when fewer than two keypoints are present.
    """
    kp = np.asarray(keypoints)
    present = kp[kp[:, 2] > min_conf, :2]
    if len(present) < 2:
        return 0.0
    return float(np.max(present.max(axis=0) - present.min(axis=0)))


def pair_scale(kp_a: np.ndarray, kp_b: np.ndarray, min_conf: float = 0.3) -> float:
    """The normaliser of distances between two people: the mean of their two sizes (pixels)."""
    sizes = [s for s in (person_scale(kp_a, min_conf), person_scale(kp_b, min_conf)) if s > 0]
    return float(np.mean(sizes)) if sizes else 0.0


def part_distance(
    kp_a: np.ndarray,
    part_a: str,
    side_a: str,
    kp_b: np.ndarray,
    part_b: str,
    side_b: str,
    scale: float,
    min_conf: float = 0.3,
) -> float:
    """Normalised 2D distance between a part of person A and a part of person B.

    Distance = min over anchor pairs of the Euclidean pixel distance, divided by `scale` (a pair scale).

    Args:
        kp_a, kp_b: (25, 3) BODY-25 keypoints of the two people, pixels.
        part_a, side_a, part_b, side_b: vocabulary parts and sides (see `part_anchors`).
        scale: pixels per unit of normalised distance (> 0).
        min_conf: keypoint presence threshold.
    Returns:
        The normalised distance, or `inf` when either part has no anchor (keypoints missing).
    """
    pa = part_anchors(kp_a, part_a, side_a, min_conf)
    pb = part_anchors(kp_b, part_b, side_b, min_conf)
    if len(pa) == 0 or len(pb) == 0 or scale <= 0:
        return float("inf")
    d = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=-1)
    return float(d.min() / scale)
