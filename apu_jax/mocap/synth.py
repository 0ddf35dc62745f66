"""A two-person evaluation benchmark from motion capture: `apu synth` (docs/BENCHMARK.md).

Two BVH files of one trial (both subjects in one world frame) become a pair set (docs/FORMATS.md):

1. **Align** the two files by content: a file that starts with an added T-pose frame loses it (its first
   frame-to-frame change of the root-relative joints is an outlier), then both are cut to a common length.
2. **Fit** SMPL-X-layout bodies to every frame of each subject (`apu_jax.mocap.retarget`, betas shared over
   the clip); this gives the ground truth (GT) meshes.
3. **Close the gap** (optional, on by default): the CMU skeletons of some trials never quite touch where the
   subjects did (the 18/19 handshake keeps a ~35 cm wrist gap). Subject B is shifted rigidly, once for the
   whole clip, so that the closest approach over the clip becomes a touch; the shift is reported.
4. **Pick frames** where the GT meshes touch (min vertex distance < `contact_dist`) or nearly touch
   (< `near_dist`), closest first, skipping near-duplicates (joint change < `min_change_mm`).
5. **Cameras**: K virtual pinhole cameras per frame around the pair, looking at its centroid; both GT bodies
   are rigidly moved into each camera's OpenCV frame (x right, y down, z forward).
6. **Keypoints** (BODY-25): projected GT joints + detector-like noise (Gaussian pixel noise scaled by person
   size and per-keypoint difficulty, dropout, outliers, confidences that fall with the error).
7. **Initial estimates**: GT + monocular-regressor-like errors (pose, global orientation, shape, depth along
   the camera ray with a matching size change, lateral offset).
8. **Contact maps**: the GT region contacts, named as an LVLM would (vocabulary parts with sides), with
   missed contacts, laterality flips and hallucinated contacts, soft weights, expanded back to region pairs.

Everything random comes from one `numpy.random.Generator` seeded by `seed`; the same inputs and seed give the
same file. This module is data preparation (numpy, scipy); only the body model and the retargeting fit run in
JAX, batched over frames.

The data used in this project was obtained from mocap.cs.cmu.edu. The database was created with funding from
NSF EIA-0196217.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import struct
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from apu_jax.body import BodyModel, forward, load_model
from apu_jax.fit.camera import default_focal
from apu_jax.mocap.bvh import read_bvh
from apu_jax.mocap.retarget import RetargetConfig, RetargetResult, default_config, retarget
from apu_jax.mocap.skeletons import NUM_BODY_JOINTS, MocapTargets, mocap_targets
from apu_jax.regions import (
    APU_PARTS,
    CENTRAL_PARTS,
    RegionSet,
    load_regions,
    model_to_keypoint_indices,
    vocabulary_to_regions,
)

CMU_ACKNOWLEDGEMENT = (
    "The data used in this project was obtained from mocap.cs.cmu.edu. "
    "The database was created with funding from NSF EIA-0196217."
)
GT_CONTACT_THRESHOLD_M = 0.02  # region pairs closer than this on the GT meshes are GT contacts (as apu eval)

# Per-keypoint difficulty of BODY-25 keypoints: COCO's OKS sigmas (Ronchi & Perona 2017; cocoapi), i.e. how
# much human annotators (and, proportionally, detectors) spread on each keypoint, relative to their mean.
# Neck and mid-hip (not in COCO) take the shoulders' and hips' values; the foot points take the ankles'.
_OKS = {"nose": 0.026, "eye": 0.025, "ear": 0.035, "shoulder": 0.079, "elbow": 0.072, "wrist": 0.062,
        "hip": 0.107, "knee": 0.087, "ankle": 0.089}  # fmt: skip
_BODY25_OKS = np.array(
    [_OKS[k] for k in ("nose", "shoulder", "shoulder", "elbow", "wrist", "shoulder", "elbow", "wrist", "hip",
                       "hip", "knee", "ankle", "hip", "knee", "ankle", "eye", "eye", "ear", "ear", "ankle",
                       "ankle", "ankle", "ankle", "ankle", "ankle")]
)  # fmt: skip
KEYPOINT_DIFFICULTY = _BODY25_OKS / _BODY25_OKS.mean()  # (25,) multiplier of the keypoint pixel noise

# How often an LVLM-like annotator hallucinates each part (relative weights): interactions mostly involve
# hands, arms, shoulders and the back; legs and feet rarely.
_HALLUCINATION_PRIOR = {
    "hand": 3.0, "arm": 1.0, "forearm": 1.0, "upper arm": 1.0, "shoulder": 2.0, "back": 2.0, "chest": 1.0,
    "stomach": 0.5, "waist": 1.0, "head": 0.5, "face": 0.5, "neck": 0.5, "elbow": 0.5, "knee": 0.3,
    "leg": 0.3, "thigh": 0.3, "foot": 0.3,
}  # fmt: skip


# ------------------------------------------------------------------------------------------ settings


@struct.dataclass
class SynthNoise:
    """Noise levels of the synthetic observations (all 0 = perfect observations, init = GT)."""

    kp_sigma: float = 0.008  # keypoint pixel noise σ as a fraction of the person's size (max side of its box)
    kp_dropout: float = 0.05  # probability that a keypoint is missing (confidence 0)
    kp_outlier: float = 0.02  # probability of a gross keypoint error (displaced by ~15 % of the person size)
    kp_conf_jitter: float = 0.05  # σ of the confidence's random part (confidence also falls with the error)
    init_pose: float = 0.14  # rad, σ per axis of the per-joint body-pose rotation error
    init_orient: float = 0.12  # rad, σ per axis of the global-orientation error
    init_betas: float = 0.4  # σ of the error added to each shape coefficient
    init_depth: float = 0.05  # σ of the log depth factor: the pelvis moves along its ray by exp(N(0,σ))
    init_depth_size: float = 0.5  # fraction of the depth factor matched by a body-size change (0..1)
    init_xy: float = 0.03  # m, σ of the lateral (camera x/y) position error of the pelvis
    contact_miss: float = 0.2  # probability that a true part contact is left out of the answer
    contact_flip: float = 0.2  # probability that a true part contact gets a wrong laterality
    contact_halluc: float = 0.3  # expected number of hallucinated part contacts per answer (Poisson)
    contact_weight_noise: float = 0.15  # σ of 1 − weight for true contacts (2σ for hallucinated ones)

    @classmethod
    def zero(cls) -> SynthNoise:
        """No noise at all: keypoints = projected GT joints, init = GT, contact map = named GT contacts."""
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class SynthOptions:
    """Frame selection, camera placement and contact settings (not noise)."""

    contact_dist: float = 0.05  # m, GT min mesh distance below which a frame is a contact frame
    near_dist: float = 0.15  # m, … below which a frame is a near-contact frame
    near_fraction: float = 0.25  # share of the picked frames reserved for near-contact frames
    min_change_mm: float = 25.0  # mm, a pick's mean joint change (both bodies) from every other pick
    perceived_dist: float = 0.05  # m, region pairs closer than this are contacts an annotator would name
    gt_contact_dist: float = GT_CONTACT_THRESHOLD_M  # m, region pairs closer than this are `gt_contact_pairs`
    close_gap: bool = True  # shift subject B once so that the clip's closest approach becomes a touch
    max_shift: float = 0.4  # m, the gap is not closed when the closest approach is farther than this
    touch_gap: float = 0.005  # m, the closest approach after the shift
    image_size: tuple[int, int] = (1280, 720)  # (W, H) pixels
    cam_distance: tuple[float, float] = (2.5, 5.0)  # m, horizontal camera distance from the pair centroid
    cam_height: tuple[float, float] = (1.0, 1.8)  # m, camera height above the floor
    margin: float = 0.04  # fraction of the image side kept free around the keypoints (camera backs off)
    denoise: bool = False  # pass the answers through `apu ask`'s keypoint laterality denoiser


# ----------------------------------------------------------------------------------- BVH and alignment


def has_added_tpose(targets: MocapTargets, factor: float = 10.0, floor_m: float = 0.03) -> bool:
    """True when frame 0 of a clip is an added T-pose: its change to frame 1 is an outlier.

    The change of a frame is the mean distance its root-relative body joints move to the next frame. A real
    120 Hz motion moves a few millimetres per frame; an added T-pose jumps by ~0.1 m into the first frame.

    Args:
        targets: the clip's mocap targets (F, 22, 3) metres.
        factor: frame 0 is an outlier when its change exceeds `factor` × the median change of the others.
        floor_m: … and exceeds this many metres.
    """
    joints = targets.joints - targets.joints[:, :1]
    if len(joints) < 3:
        return False
    step = np.linalg.norm(np.diff(joints, axis=0), axis=-1).mean(-1)
    return bool(step[0] > max(floor_m, factor * np.median(step[1:])))


def align_frames(
    targets_a: MocapTargets, targets_b: MocapTargets, offset: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Corresponding frame indices of two clips of one trial.

    Args:
        targets_a, targets_b: both subjects' mocap targets (all frames).
        offset: when given, frame k of A corresponds to frame k + offset of B (negative: A is later); when
            None, added T-pose frames are detected (`has_added_tpose`) and dropped.
    Returns:
        frames_a, frames_b (F,) int64 indices into each file, and a JSON-ready description.
    """
    na, nb = len(targets_a.joints), len(targets_b.joints)
    if offset is None:
        start_a, start_b = int(has_added_tpose(targets_a)), int(has_added_tpose(targets_b))
        how = "content"
    else:
        start_a, start_b = max(0, -offset), max(0, offset)
        how = "offset"
    count = min(na - start_a, nb - start_b)
    if count <= 0:
        raise ValueError(f"no overlapping frames (A has {na}, B has {nb}, starts {start_a}/{start_b})")
    info = {
        "how": how,
        "start_a": start_a,
        "start_b": start_b,
        "frames": count,
        "frames_a": na,
        "frames_b": nb,
    }
    return np.arange(start_a, start_a + count), np.arange(start_b, start_b + count), info


def trial_label(bvh_path: str | Path) -> str:
    """The interaction label of a trial from the README next to its files (`# … — "walk, shake hands"`)."""
    readme = Path(bvh_path).parent / "README.md"
    if not readme.exists():
        return ""
    first = readme.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
    match = re.search(r'"([^"]+)"', first[0]) if first else None
    return match.group(1) if match else ""


# ----------------------------------------------------------------------------------------- body model

_CHUNK = 64  # bodies per forward call: constant shapes, one compile


@jax.jit
def _forward_chunk(model: BodyModel, params: dict[str, jax.Array]) -> dict[str, jax.Array]:
    out = forward(model, **params)
    return {"vertices": out["vertices"], "joints": out["joints"]}


def body_outputs(model: BodyModel, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, V, 3) and output joints (N, 127, 3), metres, for N bodies' parameters (N, ·)."""
    num = len(params["transl"])
    verts, joints = [], []
    for start in range(0, num, _CHUNK):
        chunk = {k: np.asarray(v[start : start + _CHUNK], np.float32) for k, v in params.items()}
        pad = _CHUNK - len(chunk["transl"])
        chunk = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in chunk.items()}
        out = _forward_chunk(model, chunk)
        verts.append(np.asarray(out["vertices"])[: _CHUNK - pad])
        joints.append(np.asarray(out["joints"])[: _CHUNK - pad])
    return np.concatenate(verts), np.concatenate(joints)


def shape_joint_basis(model: BodyModel) -> tuple[np.ndarray, np.ndarray]:
    """Rest body joints as a linear function of betas: J(β) = base + basis @ β.

    Returns:
        base (22, 3) and basis (22, 3, B), metres (the joint regressor applied to template and shapedirs).
    """
    reg = np.asarray(model.j_regressor, np.float64)[:NUM_BODY_JOINTS]
    base = reg @ np.asarray(model.v_template, np.float64)
    basis = np.einsum("jv,vcb->jcb", reg, np.asarray(model.shapedirs, np.float64))
    return base, basis


def scale_betas(base: np.ndarray, basis: np.ndarray, betas: np.ndarray, factor: float, ridge: float = 1e-4):
    """Betas of a body `factor` times the size of `betas` (least squares on the rest body joints).

    Monocular regressors trade depth for size: a person twice as far and twice as large projects the same.
    This finds δ minimising Σ‖(J(β+δ) − J₀(β+δ)) − factor·(J(β) − J₀(β))‖² + ridge‖δ‖² over the 22 body
    joints relative to the pelvis; the body model's shape space decides how well a size change is expressed.

    Args:
        base, basis: from `shape_joint_basis`.
        betas: (B,) shape.
        factor: size ratio (1 = unchanged).
    Returns:
        (B,) new betas.
    """
    rel_basis = (basis - basis[:1]).reshape(-1, basis.shape[-1])  # (66, B)
    joints = base + basis @ betas
    target = (factor - 1.0) * (joints - joints[:1]).reshape(-1)
    lhs = rel_basis.T @ rel_basis + ridge * np.eye(rel_basis.shape[1])
    return betas + np.linalg.solve(lhs, rel_basis.T @ target)


def rest_pelvis(shape_basis: tuple[np.ndarray, np.ndarray], betas: np.ndarray) -> np.ndarray:
    """(3,) rest pelvis joint J₀ of shape `betas` (B,): the point global_orient rotates about (metres)."""
    base, basis = shape_basis
    return base[0] + basis[0] @ np.asarray(betas, np.float64)


# ---------------------------------------------------------------------------------- ground truth clip


@dataclasses.dataclass
class GroundTruthClip:
    """Both subjects' fitted bodies over the aligned frames, world frame of the files (Y up), metres."""

    params: list[dict[str, np.ndarray]]  # per subject: global_orient (F,3), body_pose (F,63), transl (F,3)
    betas: list[np.ndarray]  # per subject (B,)
    vertices: np.ndarray  # (F, 2, V, 3)
    joints: np.ndarray  # (F, 2, 127, 3) output joints
    frames: np.ndarray  # (F, 2) frame indices into file A and file B
    fit_error_mm: list[np.ndarray]  # per subject (F, 22) retargeting joint error, mm


def min_body_distance(
    va: np.ndarray, vb: np.ndarray, cap: float = np.inf, first: float = 0.05
) -> tuple[float, np.ndarray, np.ndarray]:
    """Closest vertex pair of two meshes (V, 3): distance (m) and the two points.

    Bounded nearest-neighbour queries are much faster than unbounded ones, so the search first looks within
    `first` metres (touching bodies end there), then within `cap`, and only then without bound. Only B's
    vertices inside A's bounding box grown by the bound are queried.

    Returns:
        (inf, nan, nan) when the bodies are farther apart than `cap`.
    """
    tree = cKDTree(va)
    lo, hi = va.min(0), va.max(0)
    for bound in sorted({min(first, cap), cap, np.inf}):
        cand = np.flatnonzero(np.all((vb >= lo - bound) & (vb <= hi + bound), axis=1))
        if len(cand):
            dist, idx = tree.query(vb[cand], k=1, distance_upper_bound=bound)
            j = int(np.argmin(dist))
            if np.isfinite(dist[j]):
                return float(dist[j]), va[idx[j]], vb[cand[j]]
        if bound >= cap:
            break
    return np.inf, np.full(3, np.nan), np.full(3, np.nan)


def clip_min_distances(vertices: np.ndarray, cap: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Per frame min distance (F,) between the two bodies of (F, 2, V, 3) and the vector A−B (F, 3).

    Frames whose bodies are farther apart than `cap` get inf (and a NaN vector).
    """
    dists, vecs = np.empty(len(vertices)), np.empty((len(vertices), 3))
    for f, (va, vb) in enumerate(vertices):
        dists[f], pa, pb = min_body_distance(va, vb, cap)
        vecs[f] = pa - pb
    return dists, vecs


def gap_shift(
    dists: np.ndarray, vecs: np.ndarray, max_shift: float, touch_gap: float, window: float = 0.02
) -> np.ndarray:
    """Rigid shift (3,) of subject B that makes the clip's closest approach a touch (zeros if none needed).

    Over the window of frames whose min distance is within `window` of the clip's minimum, the shift is the
    mean of the closest-point vectors A − B shortened by `touch_gap`: a constant calibration-like offset.
    """
    best = float(dists.min())
    if best <= touch_gap or best > max_shift:
        return np.zeros(3)
    sel = dists <= best + window
    v = vecs[sel]
    lengths = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.mean(v * (1.0 - touch_gap / np.maximum(lengths, 1e-9)), axis=0)


def clip_from_params(
    model: BodyModel,
    params: Sequence[dict[str, np.ndarray]],
    betas: Sequence[np.ndarray],
    frames: np.ndarray,
    fit_error_mm: Sequence[np.ndarray] | None = None,
) -> GroundTruthClip:
    """Pose both subjects' GT meshes from per-frame parameters.

    Args:
        params: per subject global_orient (F, 3), body_pose (F, 63), transl (F, 3), world frame, Y up.
        betas: per subject (B,).
        frames: (F, 2) frame indices into file A and file B.
        fit_error_mm: per subject (F, 22) retargeting errors (zeros when None).
    """
    num = len(frames)
    params = [
        {k: np.asarray(p[k], np.float32) for k in ("global_orient", "body_pose", "transl")} for p in params
    ]
    verts, joints = [], []
    for p, b in zip(params, betas, strict=True):
        v, j = body_outputs(model, {**p, "betas": np.broadcast_to(np.asarray(b, np.float32), (num, len(b)))})
        verts.append(v)
        joints.append(j)
    return GroundTruthClip(
        params=params,
        betas=[np.asarray(b, np.float32) for b in betas],
        vertices=np.stack(verts, axis=1),
        joints=np.stack(joints, axis=1),
        frames=np.asarray(frames, np.int64),
        fit_error_mm=list(fit_error_mm) if fit_error_mm is not None else [np.zeros((num, 22))] * 2,
    )


def pair_targets(
    bvh_a: str | Path, bvh_b: str | Path, offset: int | None = None
) -> tuple[list[MocapTargets], dict[str, Any]]:
    """Read a trial's two BVH files and evaluate their mocap targets on the aligned frames.

    Returns:
        both subjects' targets (F frames each) and the alignment description (`align_frames`, plus the
        skeleton conventions).
    """
    bvhs = [read_bvh(bvh_a), read_bvh(bvh_b)]
    all_targets = [mocap_targets(b) for b in bvhs]
    frames_a, frames_b, alignment = align_frames(*all_targets, offset=offset)
    targets = [
        mocap_targets(bvh, idx, t.skeleton.convention)
        for bvh, idx, t in zip(bvhs, (frames_a, frames_b), all_targets, strict=True)
    ]
    alignment["conventions"] = [t.skeleton.convention for t in targets]
    return targets, alignment


def fit_clip(model: BodyModel, targets: Sequence[MocapTargets], config: RetargetConfig | None = None):
    """Retarget both subjects' aligned targets into a `GroundTruthClip` (no gap closing)."""
    fits: list[RetargetResult] = [retarget(model, t, config or default_config()) for t in targets]
    return clip_from_params(
        model,
        [{k: getattr(r, k) for k in ("global_orient", "body_pose", "transl")} for r in fits],
        [r.betas for r in fits],
        np.stack([t.frames for t in targets], axis=1),
        [r.joint_error_mm for r in fits],
    )


def shift_subject_b(clip: GroundTruthClip, shift: np.ndarray) -> GroundTruthClip:
    """The clip with subject B translated by `shift` (3,) metres in every frame."""
    params = [
        clip.params[0],
        {**clip.params[1], "transl": (clip.params[1]["transl"] + shift).astype(np.float32)},
    ]
    verts = clip.vertices.copy()
    joints = clip.joints.copy()
    verts[:, 1] += shift
    joints[:, 1] += shift
    return dataclasses.replace(clip, params=params, vertices=verts, joints=joints)


# -------------------------------------------------------------------------------------- frame picking


def select_frames(
    min_dist: np.ndarray,
    joints: np.ndarray,
    options: SynthOptions,
    max_frames: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Contact and near-contact frames, closest first, without near-duplicates.

    Args:
        min_dist: (F,) GT min mesh distance per frame, metres.
        joints: (F, 2, J, 3) GT joints (both bodies), metres; the change between two frames is the mean joint
            distance over both bodies.
        options: thresholds (`contact_dist`, `near_dist`, `near_fraction`, `min_change_mm`).
        max_frames: at most this many frames (None: all that qualify).
    Returns:
        frames (N,) sorted indices into the clip, and is_contact (N,) bool (False = near-contact frame).
    """
    order = np.argsort(min_dist, kind="stable")
    contact = [int(f) for f in order if min_dist[f] < options.contact_dist]
    near = [int(f) for f in order if options.contact_dist <= min_dist[f] < options.near_dist]
    flat = joints.reshape(len(joints), -1, 3)
    limit = max_frames if max_frames is not None else len(min_dist)
    picked: list[int] = []

    def greedy(candidates: list[int], cap: int) -> list[int]:
        out = []
        for f in candidates:
            if len(out) >= cap:
                break
            others = picked + out
            if others:
                change = np.linalg.norm(flat[others] - flat[f], axis=-1).mean(-1).min()
                if 1000.0 * change < options.min_change_mm:
                    continue
            out.append(f)
        return out

    # Reserve the near-contact quota first (only as many as exist), so contact frames cannot crowd it out.
    near_quota = math.ceil(options.near_fraction * limit) if near else 0
    near_avail = len(greedy(near, near_quota))
    contact_picks = greedy(contact, limit - near_avail)
    picked.extend(contact_picks)
    near_picks = greedy(near, limit - len(picked))
    picked.extend(near_picks)
    frames = np.asarray(sorted(picked), np.int64)
    return frames, np.isin(frames, contact_picks)


# ------------------------------------------------------------------------------------------- cameras


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])):
    """World → OpenCV camera transform of a camera at `eye` looking at `target` (world Y up).

    Returns:
        R (3, 3) and t (3,) with p_cam = R p_world + t; camera x right, y down, z forward.
    """
    forward_dir = target - eye
    forward_dir = forward_dir / np.linalg.norm(forward_dir)
    right = np.cross(forward_dir, up)
    right = right / np.linalg.norm(right)
    down = np.cross(forward_dir, right)
    rot = np.stack([right, down, forward_dir])
    return rot, -rot @ eye


def project_points(points: np.ndarray, focal: float, principal: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points → (..., 2) pixels (numpy twin of `apu_jax.fit.camera.project`)."""
    return focal * points[..., :2] / points[..., 2:3] + principal


def place_cameras(
    rng: np.random.Generator,
    world_points: np.ndarray,
    floor_y: float,
    count: int,
    options: SynthOptions,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` cameras around a pair, each backing off until all `world_points` are inside the image.

    Azimuths are evenly spread with a random start and jitter; distance and height are uniform in the
    options' ranges; every camera looks at the points' centroid.

    Args:
        world_points: (N, 3) points that must be visible (both bodies' keypoint joints), world frame, Y up.
        floor_y: floor height (m) the camera height is measured from.
    Returns:
        one (R, t) world→camera transform per camera.
    """
    width, height = options.image_size
    focal = default_focal(width, height)
    principal = np.array([width / 2.0, height / 2.0])
    centroid = world_points.mean(0)
    start = rng.uniform(0.0, 2.0 * np.pi)
    cams = []
    for k in range(count):
        azimuth = start + 2.0 * np.pi * (k + rng.uniform(-0.3, 0.3)) / count
        dist = rng.uniform(*options.cam_distance)
        eye_y = floor_y + rng.uniform(*options.cam_height)
        for _ in range(40):
            eye = np.array(
                [centroid[0] + dist * np.sin(azimuth), eye_y, centroid[2] + dist * np.cos(azimuth)]
            )
            rot, t = look_at(eye, centroid)
            cam_pts = world_points @ rot.T + t
            px = project_points(cam_pts, focal, principal)
            lo = options.margin * np.array([width, height])
            if (
                (cam_pts[:, 2] > 0.1).all()
                and (px >= lo).all()
                and (px <= np.array([width, height]) - lo).all()
            ):
                break
            dist *= 1.1
        cams.append((rot, t))
    return cams


def to_camera(
    rot: np.ndarray, t: np.ndarray, global_orient: np.ndarray, transl: np.ndarray, pelvis_rest: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A body's global orientation and translation after the rigid transform p ↦ R p + t.

    global_orient rotates about the rest pelvis joint J₀ (not the origin), so the body's pelvis sits at
    J₀ + transl and the new translation is R (J₀ + transl) + t − J₀.

    Args:
        rot, t: (3, 3), (3,) the transform.
        global_orient: (3,) axis-angle; transl: (3,) metres; pelvis_rest: (3,) J₀ of the body's shape.
    Returns:
        new global_orient (3,), new transl (3,).
    """
    orient = Rotation.from_matrix(rot @ Rotation.from_rotvec(global_orient).as_matrix()).as_rotvec()
    return orient, rot @ (pelvis_rest + transl) + t - pelvis_rest


# ----------------------------------------------------------------------------------------- keypoints


def person_size(points_2d: np.ndarray) -> float:
    """Max side (px) of the box around a person's (K, 2) keypoints."""
    return float((points_2d.max(0) - points_2d.min(0)).max())


def noisy_keypoints(
    rng: np.random.Generator, clean: np.ndarray, noise: SynthNoise, image_size: tuple[int, int]
) -> np.ndarray:
    """Detector-like BODY-25 keypoints of one person from its projected GT keypoints.

    - Gaussian pixel noise, σ = kp_sigma × person size × the keypoint's difficulty (COCO OKS sigmas);
    - confidence = clip(1 − 0.15·z − |N(0, kp_conf_jitter)|, 0.3, 1) with z = error / (σ√2): a keypoint far
      off gets a lower score, as with real heatmap detectors;
    - with probability kp_outlier a keypoint is displaced by ~15 % of the person size in a random direction
      (confidence U(0.3, 0.6));
    - with probability kp_dropout it is missing; keypoints outside the image are missing too.

    Args:
        clean: (25, 2) projected GT keypoints, pixels.
    Returns:
        (25, 3) x, y, confidence; missing keypoints are (0, 0, 0).
    """
    k = len(clean)
    size = person_size(clean)
    sigma = noise.kp_sigma * size * KEYPOINT_DIFFICULTY[:k]
    err = rng.standard_normal((k, 2)) * sigma[:, None]
    z = np.where(sigma > 0, np.linalg.norm(err, axis=-1) / np.maximum(sigma * np.sqrt(2.0), 1e-9), 0.0)
    conf = np.clip(1.0 - 0.15 * z - np.abs(rng.standard_normal(k) * noise.kp_conf_jitter), 0.3, 1.0)
    outlier = rng.random(k) < noise.kp_outlier
    angle = rng.uniform(0.0, 2.0 * np.pi, k)
    radius = size * rng.uniform(0.1, 0.2, k)
    jump = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    err = np.where(outlier[:, None], jump, err)
    conf = np.where(outlier, rng.uniform(0.3, 0.6, k), conf)
    xy = clean + err
    width, height = image_size
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    present = (rng.random(k) >= noise.kp_dropout) & inside
    out = np.concatenate([xy, conf[:, None]], axis=-1)
    out[~present] = 0.0
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------- initial estimate


def perturb_rotvecs(rng: np.random.Generator, rotvecs: np.ndarray, sigma: float, left: bool = False):
    """(N, 3) rotations composed with random rotations exp(N(0, σ² I)) (right: local frame; left: parent)."""
    noise = Rotation.from_rotvec(rng.standard_normal(rotvecs.shape) * sigma)
    base = Rotation.from_rotvec(rotvecs)
    return (noise * base if left else base * noise).as_rotvec()


def initial_estimate(
    rng: np.random.Generator,
    gt: dict[str, np.ndarray],
    pelvis_cam: np.ndarray,
    shape_basis: tuple[np.ndarray, np.ndarray],
    noise: SynthNoise,
) -> dict[str, np.ndarray]:
    """A monocular-regressor-like initial estimate of one body in camera coordinates.

    Errors: per-joint pose rotations (σ init_pose), a global-orientation rotation in the camera frame
    (σ init_orient), shape (σ init_betas), depth — the pelvis moves along its camera ray by a factor
    s = exp(N(0, init_depth)), with the body's size scaled by s^init_depth_size so that the 2D projection
    changes less, as a regressor's depth/size ambiguity does — and a lateral pelvis offset (σ init_xy, m).

    Args:
        gt: the body's GT global_orient (3,), body_pose (63,), betas (B,) in the camera frame.
        pelvis_cam: (3,) the GT pelvis joint position, camera frame.
        shape_basis: `shape_joint_basis(model)`.
    Returns:
        global_orient (3,), body_pose (63,), betas (B,), transl (3,) float32.
    """
    pose = perturb_rotvecs(rng, gt["body_pose"].reshape(21, 3), noise.init_pose).reshape(63)
    orient = perturb_rotvecs(rng, gt["global_orient"][None], noise.init_orient, left=True)[0]
    betas = gt["betas"] + rng.standard_normal(gt["betas"].shape) * noise.init_betas
    depth = math.exp(rng.standard_normal() * noise.init_depth)
    if noise.init_depth_size > 0 and depth != 1.0:
        betas = scale_betas(*shape_basis, betas, depth**noise.init_depth_size)
    lateral = np.array([*rng.standard_normal(2) * noise.init_xy, 0.0])
    pelvis = pelvis_cam * depth + lateral
    transl = pelvis - rest_pelvis(shape_basis, betas)
    return {
        "global_orient": orient.astype(np.float32),
        "body_pose": pose.astype(np.float32),
        "betas": betas.astype(np.float32),
        "transl": transl.astype(np.float32),
    }


# ------------------------------------------------------------------------------------------ contacts


def region_vocabulary(regions: RegionSet) -> list[tuple[str, str] | None]:
    """For each region, the most specific vocabulary (part, side) that contains it, or None.

    An annotator names the smallest part that covers a touch ("elbow" rather than "arm"); ties go to the
    vocabulary's order. Sided parts get "left"/"right", midline parts "n/a".
    """
    options: list[list[tuple[int, int, str, str]]] = [[] for _ in range(regions.num_regions)]
    for order, part in enumerate(APU_PARTS):
        for side in ("n/a",) if part in CENTRAL_PARTS else ("left", "right"):
            ids = vocabulary_to_regions(part, side, regions)
            for r in ids:
                options[r].append((len(ids), order, part, side))
    return [min(o)[2:] if o else None for o in options]


def region_contacts(
    va: np.ndarray, vb: np.ndarray, regions: RegionSet, threshold: float
) -> list[tuple[int, int, float]]:
    """Region pairs (r on A, s on B) whose closest vertices are nearer than `threshold`, with the distance.

    Uses every vertex of each region row (pass a full-width region set for exactness).
    """
    ids, mask = np.asarray(regions.vertex_ids), np.asarray(regions.mask, bool)
    tree_b = cKDTree(vb)
    near_b = tree_b.query_ball_point(va, threshold)  # per vertex of A: vertices of B within threshold
    owner: dict[int, list[int]] = {}
    for r, (row, m) in enumerate(zip(ids, mask, strict=True)):
        for v in set(row[m].tolist()):
            owner.setdefault(v, []).append(r)
    best: dict[tuple[int, int], float] = {}
    for v, hits in enumerate(near_b):
        if not hits or v not in owner:
            continue
        for w in hits:
            if w not in owner:
                continue
            d = float(np.linalg.norm(va[v] - vb[w]))
            if d >= threshold:
                continue
            for ra in owner[v]:
                for rb in owner[w]:
                    if d < best.get((ra, rb), np.inf):
                        best[(ra, rb)] = d
    return sorted(((a, b, d) for (a, b), d in best.items()), key=lambda x: (x[2], x[0], x[1]))


@dataclasses.dataclass(frozen=True)
class PartContact:
    """One contact as an annotator names it; sides are the subjects' own (left / right / n/a)."""

    part_a: str
    side_a: str
    part_b: str
    side_b: str
    weight: float  # soft weight in [0, 1]
    kind: str  # "true", "flipped", "hallucinated" or (after `denoise_answer`) "corrected"


def name_contacts(
    contacts: Sequence[tuple[int, int, float]], vocab: Sequence[tuple[str, str] | None]
) -> list[tuple[str, str, str, str]]:
    """Distinct vocabulary part pairs of region contacts (closest first); unnameable regions are skipped."""
    out: list[tuple[str, str, str, str]] = []
    for ra, rb, _ in contacts:
        if vocab[ra] is None or vocab[rb] is None:
            continue
        key = (*vocab[ra], *vocab[rb])
        if key not in out:
            out.append(key)
    return out


def _flip(side: str) -> str:
    return {"left": "right", "right": "left"}.get(side, side)


def lvlm_answer(
    rng: np.random.Generator, named: Sequence[tuple[str, str, str, str]], noise: SynthNoise
) -> list[PartContact]:
    """An LVLM-like answer from the named GT contacts: misses, laterality flips, hallucinations, weights.

    - each true contact is left out with probability contact_miss;
    - each kept one with a sided part gets a wrong laterality with probability contact_flip: person A's side,
      B's side or both flipped (0.4 / 0.4 / 0.2 when both parts are sided);
    - Poisson(contact_halluc) contacts are added, parts drawn from an interaction-biased prior, random sides;
    - weights: 1 − |N(0, σ)| for true (and flipped) contacts, 1 − |N(0, 2σ)| for hallucinated ones, with
      σ = contact_weight_noise, clipped to [0.05, 1].
    """
    out: list[PartContact] = []
    sigma = noise.contact_weight_noise
    for pa, sa, pb, sb in named:
        if rng.random() < noise.contact_miss:
            continue
        kind = "true"
        sided = (sa != "n/a", sb != "n/a")
        if any(sided) and rng.random() < noise.contact_flip:
            # Which person's side goes wrong: A, B or both (0.4 / 0.4 / 0.2) when both parts are sided.
            which = rng.choice(3, p=[0.4, 0.4, 0.2]) if all(sided) else (0 if sided[0] else 1)
            sa = _flip(sa) if which in (0, 2) else sa
            sb = _flip(sb) if which in (1, 2) else sb
            kind = "flipped"
        weight = float(np.clip(1.0 - abs(rng.standard_normal() * sigma), 0.05, 1.0))
        out.append(PartContact(pa, sa, pb, sb, weight, kind))
    parts = list(_HALLUCINATION_PRIOR)
    prior = np.array([_HALLUCINATION_PRIOR[p] for p in parts])
    for _ in range(rng.poisson(noise.contact_halluc) if noise.contact_halluc > 0 else 0):
        pa, pb = (parts[i] for i in rng.choice(len(parts), 2, p=prior / prior.sum()))
        sa = "n/a" if pa in CENTRAL_PARTS else str(rng.choice(["left", "right"]))
        sb = "n/a" if pb in CENTRAL_PARTS else str(rng.choice(["left", "right"]))
        weight = float(np.clip(1.0 - abs(rng.standard_normal() * 2.0 * sigma), 0.05, 1.0))
        out.append(PartContact(pa, sa, pb, sb, weight, "hallucinated"))
    return out


def denoise_answer(answer: Sequence[PartContact], kp_a: np.ndarray, kp_b: np.ndarray) -> list[PartContact]:
    """The answer after `apu ask`'s laterality denoising against the (noisy) BODY-25 keypoints (25, 3).

    Sides may be corrected (or become "both"); the weight becomes keypoint evidence × the answer's weight.
    A contact whose sides changed is marked "corrected" unless it was hallucinated.
    """
    from apu_jax.ask import Contact, resolve_laterality

    out = []
    for c in answer:
        asked = Contact(
            part_a=c.part_a,
            side_a="unknown" if c.side_a == "n/a" else c.side_a,
            part_b=c.part_b,
            side_b="unknown" if c.side_b == "n/a" else c.side_b,
            confidence=c.weight,
        )
        r = resolve_laterality(asked, kp_a, kp_b)
        kind = "corrected" if r.corrected and c.kind != "hallucinated" else c.kind
        out.append(PartContact(r.part_a, r.side_a, r.part_b, r.side_b, float(r.weight), kind))
    return out


def contact_map(
    answer: Sequence[PartContact], regions: RegionSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Region-level soft contact map of an answer: every region of part A × every region of part B.

    The same expansion as `apu ask` (`apu_jax.ask.denoise.soft_contact_map`): a region pair reached by several
    contacts keeps the largest weight; each part-level contact is one group.

    Returns:
        pairs (C, 2) int32 sorted, weights (C,) float32, groups (C,) int32.
    """
    from apu_jax.ask.denoise import soft_contact_map

    return soft_contact_map(
        answer, lambda part, side: vocabulary_to_regions(part, side, regions), return_groups=True
    )


def _padded(rows: Sequence[np.ndarray], width: int, fill: float | int, dtype) -> np.ndarray:
    """Stack variable-length (n_i, ...) arrays into (P, width, ...) padded with `fill`."""
    tail = rows[0].shape[1:] if rows else ()
    out = np.full((len(rows), width, *tail), fill, dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


# ---------------------------------------------------------------------------------------------- main


def _stats(values: np.ndarray) -> dict[str, float | None]:
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"mean": None, "median": None, "p10": None, "p90": None}
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p10": float(np.percentile(values, 10)),
        "p90": float(np.percentile(values, 90)),
    }


def init_joint_pa_mpjpe_mm(
    model: BodyModel, init: dict[str, np.ndarray], gt_joints: np.ndarray
) -> np.ndarray:
    """(P,) two-person joint PA-MPJPE (mm) of initial estimates (P, 2, ·) against GT joints (P, 2, ≥22, 3),
    on the 22 SMPL-X body joints as `apu eval` does."""
    from apu_jax.eval.metrics import joint_pa_mpjpe

    flat = {k: v.reshape(-1, v.shape[-1]) for k, v in init.items()}
    _, joints = body_outputs(model, flat)
    pred = joints[:, :NUM_BODY_JOINTS].reshape(*gt_joints.shape[:2], NUM_BODY_JOINTS, 3)
    err, _ = joint_pa_mpjpe(pred, gt_joints[:, :, :NUM_BODY_JOINTS])
    return 1000.0 * err


def synthesize_pairs(
    bvh_a: str | Path,
    bvh_b: str | Path,
    out: str | Path | None,
    seed: int = 0,
    cameras: int = 4,
    max_frames: int | None = 20,
    noise: SynthNoise | None = None,
    options: SynthOptions | None = None,
    model: BodyModel | str = "default",
    retarget_config: RetargetConfig | None = None,
    label: str | None = None,
    offset: int | None = None,
) -> dict[str, Any]:
    """Build an evaluation pair set from two BVH files of one two-person trial.

    Args:
        bvh_a, bvh_b: the two subjects' files (person 0 = A, person 1 = B).
        out: pair-set path (.npz) to write, or None to only compute (the arrays are then in the report's
            "arrays" entry).
        seed: seed of every random choice (cameras, keypoints, init, contacts).
        cameras: virtual cameras per picked frame; pairs = frames × cameras.
        max_frames: at most this many frames (None: every qualifying frame).
        noise: observation noise levels (`SynthNoise()` defaults).
        options: selection/camera/contact settings (`SynthOptions()` defaults).
        model: body model or a name/path for `apu_jax.load_model`.
        retarget_config: fit settings (`retarget.default_config()` when None).
        label: interaction label (default: from the trial README, see `trial_label`).
        offset: frame k of A ↔ frame k + offset of B (default: aligned by content).
    Returns:
        A JSON-ready report: frames and pairs, alignment, gap shift, retarget errors, measured initial
        two-person PA-MPJPE, keypoint and contact statistics, timings.
    Raises:
        BvhError / ValueError on unreadable files, unknown skeletons, no overlapping or no contact frames.
    """
    start = time.perf_counter()
    targets, alignment = pair_targets(bvh_a, bvh_b, offset)  # first: a bad file fails before any model work
    model_name = model if isinstance(model, str) else "custom"
    body = load_model(model) if isinstance(model, str) else model
    clip = fit_clip(body, targets, retarget_config)
    fit_seconds = time.perf_counter() - start
    report = synthesize_from_clip(
        clip,
        body,
        out,
        seed=seed,
        cameras=cameras,
        max_frames=max_frames,
        noise=noise,
        options=options,
        label=trial_label(bvh_a) if label is None else label,
        trial=f"{Path(bvh_a).stem}+{Path(bvh_b).stem}",
        source={"bvh": [str(bvh_a), str(bvh_b)], "alignment": alignment, "model": model_name},
    )
    report["alignment"] = alignment
    report["seconds"] = {"read_and_retarget": fit_seconds, **report["seconds"]}
    report["seconds"]["total"] = time.perf_counter() - start
    return report


def synthesize_from_clip(
    clip: GroundTruthClip,
    body: BodyModel,
    out: str | Path | None,
    seed: int = 0,
    cameras: int = 4,
    max_frames: int | None = 20,
    noise: SynthNoise | None = None,
    options: SynthOptions | None = None,
    label: str = "",
    trial: str = "trial",
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pair set of a GT clip: gap closing, frame picking, cameras, keypoints, init, contact maps.

    Args: as `synthesize_pairs`; `clip` from `fit_clip` (or `clip_from_params`), `body` its model,
    `trial` the pair-id prefix, `source` extra provenance for the pair set's meta.
    """
    noise = noise or SynthNoise()
    options = options or SynthOptions()
    rng = np.random.default_rng(seed)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    # Distances beyond what selection and gap closing look at are not needed exactly (inf): much faster.
    cap = max(options.near_dist, options.max_shift if options.close_gap else 0.0) + 0.05
    dists, vecs = clip_min_distances(clip.vertices, cap)
    raw_min = float(dists.min())
    shift = np.zeros(3)
    if options.close_gap and np.isfinite(raw_min):
        shift = gap_shift(dists, vecs, options.max_shift, options.touch_gap)
    if np.any(shift):
        clip = shift_subject_b(clip, shift)
        dists, vecs = clip_min_distances(clip.vertices, cap)
    frames, is_contact = select_frames(dists, clip.joints[:, :, :NUM_BODY_JOINTS], options, max_frames)
    timing["select"] = time.perf_counter() - t0

    t3 = time.perf_counter()
    regions = load_regions(body, max_vertices=None)  # every region vertex: exact GT contacts
    vocab = region_vocabulary(regions)
    kp_index = model_to_keypoint_indices("body25")
    shape_basis = shape_joint_basis(body)
    pelvis_rest = [rest_pelvis(shape_basis, b) for b in clip.betas]
    width, height = options.image_size
    focal = default_focal(width, height)
    principal = np.array([width / 2.0, height / 2.0])

    rows: dict[str, list] = {k: [] for k in ("pair_id", "frame", "is_contact", "R", "t", "gt", "gt_contacts",
                                             "answer", "keypoints", "init", "named")}  # fmt: skip
    for f, contact_frame in zip(frames, is_contact, strict=True):
        verts = clip.vertices[f]
        perceived = region_contacts(
            verts[0], verts[1], regions, max(options.perceived_dist, options.gt_contact_dist)
        )
        gt_contacts = np.asarray([(a, b) for a, b, d in perceived if d < options.gt_contact_dist], np.int32)
        named = name_contacts([c for c in perceived if c[2] < options.perceived_dist], vocab)
        floor_y = float(verts[..., 1].min())
        visible = clip.joints[f][:, kp_index].reshape(-1, 3)
        for k, (rot, t) in enumerate(place_cameras(rng, visible, floor_y, cameras, options)):
            gt, init, kps = [], [], []
            for person in range(2):
                p = clip.params[person]
                orient, transl = to_camera(rot, t, p["global_orient"][f], p["transl"][f], pelvis_rest[person])
                gt_p = {
                    "global_orient": orient.astype(np.float32),
                    "body_pose": p["body_pose"][f].astype(np.float32),
                    "betas": clip.betas[person],
                    "transl": transl.astype(np.float32),
                }
                gt.append(gt_p)
                cam_joints = clip.joints[f, person] @ rot.T + t
                kps.append(noisy_keypoints(rng, project_points(cam_joints[kp_index], focal, principal), noise,
                                           options.image_size))  # fmt: skip
                init.append(initial_estimate(rng, gt_p, cam_joints[0], shape_basis, noise))
            rows["pair_id"].append(f"{trial}_f{int(clip.frames[f, 0]):05d}_c{k}")
            rows["frame"].append(clip.frames[f])
            rows["is_contact"].append(bool(contact_frame))
            rows["R"].append(rot)
            rows["t"].append(t)
            rows["gt"].append(gt)
            rows["init"].append(init)
            rows["keypoints"].append(np.stack(kps))
            rows["gt_contacts"].append(gt_contacts.reshape(-1, 2))
            answer = lvlm_answer(rng, named, noise)
            rows["answer"].append(denoise_answer(answer, kps[0], kps[1]) if options.denoise else answer)
            rows["named"].append(len(named))
    timing["observations"] = time.perf_counter() - t3
    num = len(rows["pair_id"])
    if num == 0:
        raise ValueError(
            f"no frame has the two bodies within {options.near_dist} m (closest approach "
            + (f"{dists.min():.3f} m" if np.isfinite(dists.min()) else f"more than {cap:.2f} m")
            + "); nothing to write"
        )

    t4 = time.perf_counter()

    def stack(key: str, which: str) -> np.ndarray:
        return np.asarray([[person[key] for person in pair] for pair in rows[which]], np.float32)

    gt_params = {k: stack(k, "gt") for k in ("global_orient", "body_pose", "betas", "transl")}
    init_params = {k: stack(k, "init") for k in ("global_orient", "body_pose", "betas", "transl")}
    _, gt_joints = body_outputs(body, {k: v.reshape(-1, v.shape[-1]) for k, v in gt_params.items()})
    gt_joints = gt_joints.reshape(num, 2, -1, 3)
    maps = [contact_map(a, regions) for a in rows["answer"]]
    c_max = max(1, max(len(p) for p, _, _ in maps))
    g_max = max(1, max(len(g) for g in rows["gt_contacts"]))
    arrays = {
        "pair_id": np.asarray(rows["pair_id"]),
        "image": np.asarray([""] * num),
        "image_size": np.tile(np.asarray(options.image_size, np.int32), (num, 1)),
        "focal": np.tile(np.asarray([focal, focal], np.float32), (num, 1)),
        "principal": np.tile(principal.astype(np.float32), (num, 1)),
        "keypoints": np.stack(rows["keypoints"]).astype(np.float32),
        **{f"init_{k}": v for k, v in init_params.items()},
        "contact_pairs": _padded([p for p, _, _ in maps], c_max, -1, np.int32),
        "contact_weights": _padded([w for _, w, _ in maps], c_max, 0.0, np.float32),
        "contact_groups": _padded([g for _, _, g in maps], c_max, -1, np.int32),
        "label": np.asarray([label] * num),
        "gt_joints": gt_joints.astype(np.float32),
        **{f"gt_{k}": v for k, v in gt_params.items()},
        "gt_contact_pairs": _padded(rows["gt_contacts"], g_max, -1, np.int32),
        "frame": np.asarray(rows["frame"], np.int32),
        "camera_rotation": np.asarray(rows["R"], np.float32),
        "camera_translation": np.asarray(rows["t"], np.float32),
    }
    init_err = init_joint_pa_mpjpe_mm(body, init_params, gt_joints)
    timing["evaluate"] = time.perf_counter() - t4

    kinds = [c.kind for a in rows["answer"] for c in a]
    kp_conf = arrays["keypoints"][..., 2]
    clean = np.stack(
        [project_points(arrays["gt_joints"][:, p][:, kp_index], focal, principal) for p in (0, 1)], 1
    )
    kp_err = np.linalg.norm(arrays["keypoints"][..., :2] - clean, axis=-1)[kp_conf > 0]
    meta = {
        "source": "apu synth",
        "model": "default",
        **(source or {}),
        "trial": trial,
        "seed": seed,
        "cameras": cameras,
        "region_set": "default",
        "noise": noise.as_dict(),
        "options": dataclasses.asdict(options),
        "shift_b_m": shift.tolist(),
        "acknowledgement": CMU_ACKNOWLEDGEMENT,
    }
    report: dict[str, Any] = {
        "out": str(out) if out is not None else None,
        "pairs": num,
        "frames": int(len(frames)),
        "contact_frames": int(is_contact.sum()),
        "near_contact_frames": int((~is_contact).sum()),
        "frame_indices_a": [int(clip.frames[f, 0]) for f in frames],
        "raw_min_distance_m": raw_min if np.isfinite(raw_min) else None,
        "shift_b_m": shift.tolist(),
        "shift_norm_m": float(np.linalg.norm(shift)),
        "min_distance_m": float(dists.min()) if np.isfinite(dists.min()) else None,
        "retarget_joint_error_mm": [float(e.mean()) for e in clip.fit_error_mm],
        "init_joint_pa_mpjpe_mm": _stats(init_err),
        "keypoints": {
            "missing_fraction": float((kp_conf == 0).mean()),
            "median_error_px": float(np.median(kp_err)) if kp_err.size else None,
            "mean_confidence": float(kp_conf[kp_conf > 0].mean()) if (kp_conf > 0).any() else None,
        },
        "contacts": {
            "gt_pairs_per_pair": float(np.mean([len(g) for g in rows["gt_contacts"]])),
            "pairs_with_gt_contact": int(sum(len(g) > 0 for g in rows["gt_contacts"])),
            "named_gt_contacts": int(sum(rows["named"])),
            "answer_true": kinds.count("true"),
            "answer_flipped": kinds.count("flipped"),
            "answer_hallucinated": kinds.count("hallucinated"),
            "answer_corrected": kinds.count("corrected"),
            "map_pairs_per_pair": float(np.mean([len(p) for p, _, _ in maps])),
            "map_recall_of_gt": _map_recall(arrays["contact_pairs"], arrays["gt_contact_pairs"]),
        },
        "label": label,
        "seconds": {**timing, "total": time.perf_counter() - t0},
    }
    if out is not None:
        from apu_jax.data.pairset import save_pairset

        save_pairset(out, meta=meta, **arrays)
    else:
        report["arrays"] = arrays
        report["meta"] = meta
    return report


def _map_recall(contact_pairs: np.ndarray, gt_pairs: np.ndarray) -> float | None:
    """Share of GT contact region pairs that the (noisy) contact maps contain."""
    hit = total = 0
    for cp, gp in zip(contact_pairs, gt_pairs, strict=True):
        have = {tuple(x) for x in cp.tolist() if x[0] >= 0}
        gts = {tuple(x) for x in gp.tolist() if x[0] >= 0}
        hit += len(gts & have)
        total += len(gts)
    return hit / total if total else None
