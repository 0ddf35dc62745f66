"""Mocap skeleton conventions and their correspondence to the 22 SMPL-X body joints.

Three joint-naming conventions occur in the CMU data we use:

- ``"cc"``: Character Creator rigs (``CC_Base_L_Thigh``, …), centimetres; the `single/` conversion.
- ``"asf"``: the original CMU/ASF bone names (``lfemur``, ``rhand``, …); cgspeed units (1 unit = 0.05644 m).
- ``"mobu"``: MotionBuilder-style names of the same cgspeed skeleton (``LeftUpLeg``, ``RightHand``, …).

All are Y up. A `SkeletonMap` says, for each SMPL-X body joint 0–21, which mocap point stands for it: a joint
pivot, or a fixed blend of two pivots where the skeletons place a joint differently (spine, collars). It also
lists extra correspondences that fix rotations the 22 joint positions leave free (head, wrists, feet):

- `directions`: a model direction (between two output joints of `apu_jax.forward`, e.g. wrist → middle1)
  that should point like a mocap direction (e.g. CC_Base_L_Hand → CC_Base_L_Mid1);
- `orientations`: a model joint whose world rotation should equal a mocap segment's rotation relative to the
  skeleton's all-zero-channel rest pose. Only used for the cgspeed skeletons, whose zero pose is a T-pose
  (arms horizontal, palms down, head up, feet forward) like the SMPL-X rest pose; the CC rig's zero pose
  is not, so CC relies on point directions (eyes, finger bases, toes) instead.

The correspondence is approximate by nature (different joint placements). The blend fractions below were
chosen by comparing joint heights, normalised by the hip-to-shoulder height, between the bundled model's rest
joints (adult betas) and the mocap skeletons (a CC frame of 007_01, the cgspeed zero-channel rest), choosing
anatomical counterparts (neck base, skull base) where the two disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from apu_jax.mocap.bvh import Bvh, forward_kinematics

SMPLX_BODY_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip
NUM_BODY_JOINTS = len(SMPLX_BODY_JOINTS)  # 22 = pelvis + 21 body joints
SMPLX_BODY_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
)  # fmt: skip

# Output-joint indices of apu_jax.forward used by direction targets (SMPL-X order).
_OUT = {
    "left_ankle": 7, "right_ankle": 8, "left_foot": 10, "right_foot": 11, "head": 15,
    "left_wrist": 20, "right_wrist": 21, "left_eye": 23, "right_eye": 24,
    "left_index1": 25, "left_middle1": 28, "left_pinky1": 31, "left_ring1": 34, "left_thumb1": 37,
    "right_index1": 40, "right_middle1": 43, "right_pinky1": 46, "right_ring1": 49, "right_thumb1": 52,
    "left_big_toe": 60, "left_small_toe": 61, "right_big_toe": 63, "right_small_toe": 64,
}  # fmt: skip

CGSPEED_UNIT_M = 0.05644  # metres per BVH unit in the cgspeed conversion (1/0.45 inch)
UNIT_SCALE: dict[str, float] = {"cc": 0.01, "asf": CGSPEED_UNIT_M, "mobu": CGSPEED_UNIT_M}

Blend = tuple[tuple[str, float], ...]  # mocap point = Σ weight · pivot(name); weights sum to 1


@dataclasses.dataclass(frozen=True)
class SkeletonMap:
    """How one mocap naming convention maps onto the SMPL-X body joints (static metadata)."""

    convention: str  # "cc" | "asf" | "mobu"
    unit_scale: float  # metres per file unit
    joints: tuple[Blend, ...]  # (22,) mocap point for each SMPL-X body joint 0–21
    directions: tuple[
        tuple[int, int, str, str], ...
    ]  # (model_from, model_to, mocap_from, mocap_to) output-joint ids
    orientations: tuple[tuple[int, str], ...]  # (model joint 0–21, mocap node) rest-relative rotation targets

    def node_names(self) -> set[str]:
        """Every mocap node the map refers to."""
        names = {n for blend in self.joints for n, _ in blend}
        names |= {n for d in self.directions for n in d[2:]}
        names |= {n for _, n in self.orientations}
        return names


def _mirror(name: str, pairs: Sequence[tuple[str, str]]) -> str:
    """The right-side counterpart of a left-side name (identity for central names)."""
    for left, right in pairs:
        if left in name:
            return name.replace(left, right)
    return name


def _build(
    convention: str,
    left_joints: dict[str, Blend],
    left_directions: Sequence[tuple[str, str, str, str]],
    left_orientations: Sequence[tuple[str, str]],
    side_pairs: Sequence[tuple[str, str]],
) -> SkeletonMap:
    """Complete a convention's map from its central and left-side entries by mirroring names."""
    joints: dict[str, Blend] = {}
    for name, blend in left_joints.items():
        joints[name] = blend
        if name.startswith("left_"):
            joints["right_" + name[5:]] = tuple((_mirror(n, side_pairs), w) for n, w in blend)
    missing = [j for j in SMPLX_BODY_JOINTS if j not in joints]
    if missing:
        raise AssertionError(f"{convention}: no mocap point for {missing}")

    def both(entries: Sequence[tuple[str, ...]], n_model: int) -> list[tuple[str, ...]]:
        out = []
        for e in entries:
            out.append(e)
            if any(m.startswith("left_") for m in e[:n_model]):
                model = tuple("right_" + m[5:] if m.startswith("left_") else m for m in e[:n_model])
                out.append(model + tuple(_mirror(n, side_pairs) for n in e[n_model:]))
        return out

    directions = tuple((_OUT[a], _OUT[b], c, d) for a, b, c, d in both(left_directions, 2))
    orientations = tuple((SMPLX_BODY_JOINTS.index(j), n) for j, n in both(left_orientations, 1))
    return SkeletonMap(
        convention=convention,
        unit_scale=UNIT_SCALE[convention],
        joints=tuple(joints[j] for j in SMPLX_BODY_JOINTS),
        directions=directions,
        orientations=orientations,
    )


def _one(name: str) -> Blend:
    return ((name, 1.0),)


def _lerp(a: str, b: str, t: float) -> Blend:
    """The point a fraction `t` of the way from pivot `a` to pivot `b`."""
    return ((a, 1.0 - t), (b, t))


_CC = _build(
    "cc",
    {
        "pelvis": _one("CC_Base_Pelvis"),
        "left_hip": _one("CC_Base_L_Thigh"),
        "left_knee": _one("CC_Base_L_Calf"),
        "left_ankle": _one("CC_Base_L_Foot"),
        "left_foot": _one("CC_Base_L_ToeBase"),
        "spine1": _one("CC_Base_Waist"),
        "spine2": _one("CC_Base_Spine02"),
        "spine3": _lerp("CC_Base_Spine02", "CC_Base_NeckTwist01", 0.6),
        "neck": _one("CC_Base_NeckTwist01"),
        "head": _one("CC_Base_Head"),
        "left_collar": _one("CC_Base_L_Clavicle"),
        "left_shoulder": _one("CC_Base_L_Upperarm"),
        "left_elbow": _one("CC_Base_L_Forearm"),
        "left_wrist": _one("CC_Base_L_Hand"),
    },
    [
        ("left_wrist", "left_middle1", "CC_Base_L_Hand", "CC_Base_L_Mid1"),
        ("left_wrist", "left_index1", "CC_Base_L_Hand", "CC_Base_L_Index1"),
        ("left_wrist", "left_pinky1", "CC_Base_L_Hand", "CC_Base_L_Pinky1"),
        ("left_ankle", "left_big_toe", "CC_Base_L_Foot", "CC_Base_L_BigToe1"),
        ("left_ankle", "left_small_toe", "CC_Base_L_Foot", "CC_Base_L_PinkyToe1"),
        ("head", "left_eye", "CC_Base_Head", "CC_Base_L_Eye"),
    ],
    [],
    [("_L_", "_R_")],
)

_ASF_LEFT_JOINTS: dict[str, Blend] = {
    # The cgspeed root sits ~11 cm above the hip joints, the bundled model's pelvis ~1 cm: blend towards them.
    "pelvis": (("hip", 0.085), ("lfemur", 0.4575), ("rfemur", 0.4575)),
    "left_hip": _one("lfemur"),
    "left_knee": _one("ltibia"),
    "left_ankle": _one("lfoot"),
    "left_foot": _one("ltoes"),
    "spine1": (("hip", 0.75), ("lfemur", 0.125), ("rfemur", 0.125)),
    "spine2": _one("upperback"),
    "spine3": _lerp("thorax", "upperneck", 0.22),
    "neck": _lerp("upperneck", "head", 0.3),
    "head": _lerp("head", "head/End", 0.3),
    "left_collar": _lerp("upperneck", "lhumerus", 0.15),
    "left_shoulder": _one("lhumerus"),
    "left_elbow": _one("lradius"),
    "left_wrist": _one("lwrist"),
}
_ASF_LEFT_DIRECTIONS = [("left_wrist", "left_middle1", "lwrist", "lfingers")]
_ASF_LEFT_ORIENTATIONS = [
    ("head", "head"),
    ("left_wrist", "lhand"),
    ("left_ankle", "lfoot"),
    ("left_foot", "ltoes"),
]

# MotionBuilder names of the same cgspeed skeleton (una-dinosauria/cmu-mocap), left side and centre.
_ASF_TO_MOBU: dict[str, str] = {
    "hip": "Hips", "lfemur": "LeftUpLeg", "ltibia": "LeftLeg", "lfoot": "LeftFoot", "ltoes": "LeftToeBase",
    "lowerback": "LowerBack", "upperback": "Spine", "thorax": "Spine1", "lowerneck": "Neck",
    "upperneck": "Neck1", "head": "Head", "lclavicle": "LeftShoulder", "lhumerus": "LeftArm",
    "lradius": "LeftForeArm", "lwrist": "LeftHand", "lhand": "LeftFingerBase", "lfingers": "LeftHandIndex1",
    "lthumb": "LThumb", "rfemur": "RightUpLeg", "head/End": "Head/End",
}  # fmt: skip


def _rename(blend: Blend, table: dict[str, str]) -> Blend:
    return tuple((table[n], w) for n, w in blend)


_ASF = _build(
    "asf",
    _ASF_LEFT_JOINTS,
    _ASF_LEFT_DIRECTIONS,
    _ASF_LEFT_ORIENTATIONS,
    [("lhip", "rhip"), ("lfemur", "rfemur"), ("ltibia", "rtibia"), ("lfoot", "rfoot"), ("ltoes", "rtoes"),
     ("lclavicle", "rclavicle"), ("lhumerus", "rhumerus"), ("lradius", "rradius"), ("lwrist", "rwrist"),
     ("lhand", "rhand"), ("lfingers", "rfingers"), ("lthumb", "rthumb")],
)  # fmt: skip
_MOBU = _build(
    "mobu",
    {k: _rename(v, _ASF_TO_MOBU) for k, v in _ASF_LEFT_JOINTS.items()},
    [(a, b, _ASF_TO_MOBU[c], _ASF_TO_MOBU[d]) for a, b, c, d in _ASF_LEFT_DIRECTIONS],
    [(a, _ASF_TO_MOBU[n]) for a, n in _ASF_LEFT_ORIENTATIONS],
    [("Left", "Right"), ("LThumb", "RThumb")],
)

SKELETON_MAPS: dict[str, SkeletonMap] = {"cc": _CC, "asf": _ASF, "mobu": _MOBU}


def detect_convention(names: Sequence[str]) -> str:
    """Which naming convention a skeleton uses: "cc", "asf" or "mobu".

    Raises:
      ValueError: if no convention's joints are all present (the message names the missing ones).
    """
    present = set(names)
    best, best_missing = "", None
    for conv, smap in SKELETON_MAPS.items():
        missing = sorted(smap.node_names() - present)
        if not missing:
            return conv
        if best_missing is None or len(missing) < len(best_missing):
            best, best_missing = conv, missing
    raise ValueError(
        f"unknown mocap skeleton: closest convention {best!r} lacks joints {best_missing[:6]}"
        + (" …" if len(best_missing) > 6 else "")
    )


@dataclasses.dataclass(frozen=True)
class MocapTargets:
    """Retargeting targets for F frames of one mocap clip, in metres, world frame of the file (Y up)."""

    joints: np.ndarray  # (F, 22, 3) mocap point standing for each SMPL-X body joint, metres
    directions: np.ndarray  # (F, D, 3) unit vectors, one per `skeleton.directions` entry
    orientations: np.ndarray  # (F, O, 3, 3) segment rotation relative to the zero-channel rest pose
    skeleton: SkeletonMap  # the map used
    frames: np.ndarray  # (F,) int64 frame indices into the file


def mocap_targets(
    bvh: Bvh,
    frames: np.ndarray | None = None,
    convention: str | None = None,
    unit_scale: float | None = None,
) -> MocapTargets:
    """Evaluate a clip's correspondence targets.

    Args:
      bvh: parsed file.
      frames: (F,) frame indices (default: all).
      convention: "cc" | "asf" | "mobu"; detected from the joint names when None.
      unit_scale: metres per file unit; the convention's default when None.
    Returns:
      `MocapTargets` with joints (F, 22, 3) metres, directions (F, D, 3), orientations (F, O, 3, 3).
    """
    convention = convention or detect_convention(bvh.names)
    smap = SKELETON_MAPS[convention]
    scale = smap.unit_scale if unit_scale is None else float(unit_scale)
    frames = np.arange(bvh.num_frames) if frames is None else np.asarray(frames, dtype=np.int64)
    pos, rot = forward_kinematics(bvh, scale, frames=frames)
    joints = np.stack([sum(w * pos[:, bvh.index(n)] for n, w in blend) for blend in smap.joints], axis=1)
    dirs = np.zeros((len(frames), len(smap.directions), 3))
    for d, (_, _, a, b) in enumerate(smap.directions):
        vec = pos[:, bvh.index(b)] - pos[:, bvh.index(a)]
        dirs[:, d] = vec / np.maximum(np.linalg.norm(vec, axis=-1, keepdims=True), 1e-9)
    orients = np.zeros((len(frames), len(smap.orientations), 3, 3))
    if smap.orientations:
        _, rest_rot = forward_kinematics(bvh, scale, rest=True)
        for o, (_, node) in enumerate(smap.orientations):
            i = bvh.index(node)
            orients[:, o] = rot[:, i] @ rest_rot[0, i].T
    return MocapTargets(joints=joints, directions=dirs, orientations=orients, skeleton=smap, frames=frames)
