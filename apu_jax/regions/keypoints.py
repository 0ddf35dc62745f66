"""2D keypoint formats: maps from the 127 model output joints, and COCO → BODY-25 conversion.

Model output joints (127, SMPL-X order, see `apu_jax.body.JOINT_NAMES`): 0–54 skeleton joints, 55–75 vertex
joints (nose, right/left eye, right/left ear, left big toe/small toe/heel, right big toe/small toe/heel,
finger tips), 76–126 face landmarks.

Keypoint formats used by the pair sets (`docs/FORMATS.md`, `keypoint_format`):

- **BODY-25** (OpenPose): 0 Nose, 1 Neck, 2 RShoulder, 3 RElbow, 4 RWrist, 5 LShoulder, 6 LElbow, 7 LWrist,
  8 MidHip, 9 RHip, 10 RKnee, 11 RAnkle, 12 LHip, 13 LKnee, 14 LAnkle, 15 REye, 16 LEye, 17 REar, 18 LEar,
  19 LBigToe, 20 LSmallToe, 21 LHeel, 22 RBigToe, 23 RSmallToe, 24 RHeel.
- **COCO-17**: 0 nose, 1 left_eye, 2 right_eye, 3 left_ear, 4 right_ear, 5 left_shoulder, 6 right_shoulder,
  7 left_elbow, 8 right_elbow, 9 left_wrist, 10 right_wrist, 11 left_hip, 12 right_hip, 13 left_knee,
  14 right_knee, 15 left_ankle, 16 right_ankle; **COCO-23** adds the COCO-WholeBody feet: 17 left_big_toe,
  18 left_small_toe, 19 left_heel, 20 right_big_toe, 21 right_small_toe, 22 right_heel.

"Left" and "right" are always the subject's own sides.

Confidence conventions (all keypoint arrays are `(..., K, 3)` = `x, y, confidence`, pixels):

- confidence is the detector score in [0, 1], used *raw* as the per-keypoint weight of the squared
  reprojection error (as BUDDI's Flickr fits do); there is no threshold inside the loss;
- confidence 0 means missing: x and y are then meaningless (we write 0) and must never influence anything,
  including the person's bounding box (BUDDI's 512-px box normalisation uses keypoints with confidence > 0);
- BODY-25 Neck (1) and MidHip (8) have no COCO counterpart. As in BUDDI's ViTPose conversion they get
  confidence 0 unless `derive_neck_midhip=True`, which places them at the midpoint of the shoulders / hips
  with confidence = min of the two, and only when both have confidence > 0. The model's MidHip is the pelvis
  joint and its hips sit more medially and higher than COCO's, so derived MidHip/hips carry a systematic
  offset of a few centimetres; that is why deriving is off by default.
"""

from __future__ import annotations

import numpy as np

from apu_jax.regions.vocabulary import CENTRAL_PARTS, normalise_part, normalise_side, sides_of

BODY25_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip

COCO23_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle", "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip
COCO17_NAMES: tuple[str, ...] = COCO23_NAMES[:17]

# Model output joint (of 127) for each BODY-25 keypoint; MidHip is the pelvis joint (smplify-x's map).
MODEL_TO_BODY25: tuple[int, ...] = (
    55, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
)  # fmt: skip
# Model output joint for each COCO-23 keypoint (COCO-17 = the first 17).
MODEL_TO_COCO23: tuple[int, ...] = (
    55, 57, 56, 59, 58, 16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8, 60, 61, 62, 63, 64, 65,
)  # fmt: skip
MODEL_TO_COCO17: tuple[int, ...] = MODEL_TO_COCO23[:17]
# BODY-25 index of each COCO-23 keypoint (BUDDI's ViTPose → OpenPose order, feet to 19–24).
COCO23_TO_BODY25: tuple[int, ...] = (
    0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11, 19, 20, 21, 22, 23, 24,
)  # fmt: skip

BODY25_NECK = 1
BODY25_MID_HIP = 8
_BODY25_SHOULDERS = (2, 5)
_BODY25_HIPS = (9, 12)

KEYPOINT_FORMATS: dict[str, tuple[int, ...]] = {
    "body25": MODEL_TO_BODY25,
    "coco17": MODEL_TO_COCO17,
    "coco23": MODEL_TO_COCO23,
}


def model_to_keypoint_indices(keypoint_format: str) -> np.ndarray:
    """Indices into the 127 model output joints for a keypoint format.

    Args:
        keypoint_format: "body25", "coco17" or "coco23".
    Returns:
        (K,) int32 array: `joints[..., idx, :]` gives the keypoints in that format's order.
    """
    try:
        return np.asarray(KEYPOINT_FORMATS[keypoint_format], dtype=np.int32)
    except KeyError:
        raise ValueError(
            f"unknown keypoint format '{keypoint_format}' (expected one of {sorted(KEYPOINT_FORMATS)})"
        ) from None


def _derive_midpoint(out: np.ndarray, target: int, pair: tuple[int, int]) -> None:
    a, b = out[..., pair[0], :], out[..., pair[1], :]
    both = (a[..., 2] > 0) & (b[..., 2] > 0)
    mid = 0.5 * (a[..., :2] + b[..., :2])
    out[..., target, :2] = np.where(both[..., None], mid, 0.0)
    out[..., target, 2] = np.where(both, np.minimum(a[..., 2], b[..., 2]), 0.0)


def coco_to_body25(keypoints: np.ndarray, derive_neck_midhip: bool = False) -> np.ndarray:
    """Convert COCO-17 or COCO-23 keypoints to BODY-25 (BUDDI's ViTPose → OpenPose conversion).

    Args:
        keypoints: (..., 17, 3) or (..., 23, 3) `x, y, confidence` in COCO(-WholeBody) order, pixels.
        derive_neck_midhip: place Neck / MidHip at the shoulders' / hips' midpoint (confidence = the smaller
            of the two, only when both are present); otherwise they get confidence 0 (BUDDI).
    Returns:
        (..., 25, 3) float32 BODY-25 keypoints. Keypoints with no source (feet for COCO-17, Neck/MidHip
        unless derived) are all-zero, i.e. missing.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim < 2 or kp.shape[-2] not in (17, 23) or kp.shape[-1] != 3:
        raise ValueError(f"expected COCO keypoints of shape (..., 17|23, 3), got {kp.shape}")
    out = np.zeros((*kp.shape[:-2], 25, 3), dtype=np.float32)
    out[..., np.asarray(COCO23_TO_BODY25[: kp.shape[-2]]), :] = kp
    # A missing source keypoint stays missing whatever coordinates the detector wrote.
    out[..., :2] = np.where(out[..., 2:3] > 0, out[..., :2], 0.0)
    if derive_neck_midhip:
        _derive_midpoint(out, BODY25_NECK, _BODY25_SHOULDERS)
        _derive_midpoint(out, BODY25_MID_HIP, _BODY25_HIPS)
    return out


def convert_keypoints(
    keypoints: np.ndarray, keypoint_format: str, derive_neck_midhip: bool = False
) -> np.ndarray:
    """Bring keypoints of any supported format to BODY-25 (identity for "body25")."""
    if keypoint_format == "body25":
        kp = np.asarray(keypoints, dtype=np.float32)
        if kp.shape[-2:] != (25, 3):
            raise ValueError(f"expected BODY-25 keypoints of shape (..., 25, 3), got {kp.shape}")
        return kp
    if keypoint_format in ("coco17", "coco23"):
        return coco_to_body25(keypoints, derive_neck_midhip)
    raise ValueError(f"unknown keypoint format '{keypoint_format}' (expected body25, coco17 or coco23)")


# ------------------------------------------------------------------ body parts → BODY-25 keypoints

_L = {"shoulder": 5, "elbow": 6, "wrist": 7, "hip": 12, "knee": 13, "ankle": 14, "eye": 16, "ear": 18}
_R = {"shoulder": 2, "elbow": 3, "wrist": 4, "hip": 9, "knee": 10, "ankle": 11, "eye": 15, "ear": 17}
_SIDED_PART_KEYPOINTS: dict[str, tuple[str, ...]] = {
    "hand": ("wrist",),
    "forearm": ("elbow", "wrist"),
    "upper arm": ("shoulder", "elbow"),
    "arm": ("shoulder", "elbow", "wrist"),
    "elbow": ("elbow",),
    "shoulder": ("shoulder",),
    "thigh": ("hip", "knee"),
    "knee": ("knee",),
    "leg": ("hip", "knee", "ankle"),
    "foot": ("ankle", "big_toe", "small_toe", "heel"),
}
_FOOT = {
    "left": {"big_toe": 19, "small_toe": 20, "heel": 21},
    "right": {"big_toe": 22, "small_toe": 23, "heel": 24},
}
# Central parts: sides mean nothing; keypoints that bracket the part.
_CENTRAL_PART_KEYPOINTS: dict[str, tuple[int, ...]] = {
    "chest": (1, 2, 5),  # neck + shoulders
    "stomach": (1, 8, 9, 12),  # between the neck and the hips
    "waist": (8, 9, 12),  # mid-hip + hips
    "back": (1, 2, 5, 8, 9, 12),  # the whole trunk
    "neck": (1,),
    "face": (0, 15, 16),  # nose + eyes
    "head": (0, 15, 16, 17, 18),  # nose, eyes, ears
}


def part_keypoints(part: str, side: str = "n/a") -> list[int]:
    """BODY-25 keypoints that locate a body part of the APU vocabulary (for laterality reasoning).

    Args:
        part: one of hand, arm, leg, thigh, chest, stomach, back, neck, face, head, foot, shoulder, elbow,
            knee, forearm, upper arm, waist.
        side: "left", "right", "both" or "n/a" (the subject's side). For limbs "both"/"n/a" give both sides;
            central parts ignore the side.
    Returns:
        Sorted BODY-25 indices, e.g. ("hand", "left") → [7] (LWrist), ("chest", *) → [1, 2, 5].
    """
    p, s = normalise_part(part), normalise_side(side)
    if p in CENTRAL_PARTS:
        return sorted(_CENTRAL_PART_KEYPOINTS[p])
    out: set[int] = set()
    for sd in sides_of(s):
        table = {**(_L if sd == "left" else _R), **_FOOT[sd]}
        out.update(table[name] for name in _SIDED_PART_KEYPOINTS[p])
    return sorted(out)
