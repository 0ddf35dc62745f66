"""Importers: 2D keypoints (OpenPose, ViTPose), initial bodies (BEV) and the image manifest.

Everything is converted to what the pair sets hold (docs/FORMATS.md): BODY-25 keypoints `(K=25, 3)` in
pixels, and initial parameters of the chosen body model (`global_orient` (3,), `body_pose` (63,),
`betas` (B,), `transl` (3,) metres, OpenCV camera frame).

**Keypoints.** OpenPose JSON (`{"people": [{"pose_keypoints_2d": [x, y, c] * 25}]}`, BODY-25) is used as
is. ViTPose output — whole-body (133 keypoints, COCO-WholeBody order), COCO-17, or COCO-23 (body + feet) —
as a list of `{"keypoints": ..., "bbox": ...}` (mmpose style) or OpenPose-style `{"people": [...]}`, is
mapped to BODY-25 the way BUDDI does (COCO → OpenPose indices, feet to 19–24, hands and face dropped);
Neck and MidHip stay missing unless `derive_neck_midhip`.

**BEV.** BEV writes `{image}_0.08.npz` with a pickled dict `results` holding `smpl_thetas` (N, 72),
`smpl_betas` (N, 11; the last is BEV's age/kid offset), `cam_trans` (N, 3), `joints` (N, 71, 3),
`pj2d_org` (N, 71, 2), … A flat npz with the same keys (no pickle) is read too. BEV files are trusted
input: the `results` layout can only be read with pickle enabled. Conversion, as in BUDDI:

- pose: SMPL body pose `[3:66]` (21 joints) is used as the SMPL-X body pose (the first 21 joints of the
  two skeletons coincide); global orient copied; camera frame already OpenCV-like (BUDDI rolls its
  PyTorch3D camera by 180°, which is the same thing);
- translation: `transl = cam_trans − J_pelvis(betas)`, so the model's pelvis lands where BEV put the root;
- shape: BEV's betas live in SMPL-A space and BUDDI converts them with SMPL→SMPL-X transfer matrices that
  are not freely licensed. We offer two documented approximations: `"mean"` (zero betas, the model's mean
  body; default) and `"limbs"` (betas fitted so the model's rest-pose bone lengths match the 21 bone
  lengths of BEV's own 3D joints — LBS preserves bone lengths, so BEV's posed joints give them exactly;
  a few Gauss–Newton steps with a small ridge).
- `pj2d_org[:, :22]` are BEV's projected SMPL joints in original-image pixels; mapped to BODY-25 they give
  the mesh–keypoint alignment used by the candidate rule and the BEV ↔ keypoint person matching.

**Manifest.** One JSON object per line (see `ManifestRecord`). Paths are relative to the data root
(default: the manifest's folder); a path that resolves outside it (absolute, `..`, symlink) is refused
unless `allow_outside_root`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from apu_jax.body import forward
from apu_jax.regions.keypoints import MODEL_TO_BODY25, convert_keypoints

# SMPL skeleton joint (first 22, shared with SMPL-X) → BODY-25 index, for BEV's projected joints.
SMPL_TO_BODY25: dict[int, int] = {
    0: 8, 1: 12, 2: 9, 4: 13, 5: 10, 7: 14, 8: 11, 12: 1, 16: 5, 17: 2, 18: 6, 19: 3, 20: 7, 21: 4,
}  # fmt: skip
# Parents of the first 22 SMPL / SMPL-X skeleton joints (the same tree), for bone lengths.
_BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)


class InputFileError(ValueError):
    """A malformed or unsupported input file (the message names the file)."""


# --------------------------------------------------------------------------------------------- keypoints


def _as_people_array(rows: list[Any], path: Path) -> list[np.ndarray]:
    out = []
    for i, row in enumerate(rows):
        arr = np.asarray(row, dtype=np.float64)
        if arr.ndim == 1:
            if arr.size % 3:
                raise InputFileError(
                    f"{path}: person {i}: {arr.size} numbers is not a multiple of 3 (x, y, c)"
                )
            arr = arr.reshape(-1, 3)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise InputFileError(f"{path}: person {i}: keypoints of shape {arr.shape}, expected (K, 3)")
        if not np.all(np.isfinite(arr)):
            raise InputFileError(f"{path}: person {i}: keypoints contain NaN or inf")
        out.append(arr)
    return out


def _person_rows(data: Any, path: Path) -> tuple[list[Any], str]:
    """Raw per-person keypoint rows and the container style ("openpose" or "coco")."""
    if isinstance(data, dict) and "people" in data:
        people = data["people"]
        if not isinstance(people, list):
            raise InputFileError(f"{path}: 'people' must be a list")
        if all(isinstance(p, dict) and "pose_keypoints_2d" in p for p in people):
            return [p["pose_keypoints_2d"] for p in people], "openpose"
        data = people
    if isinstance(data, list):
        rows = []
        for i, p in enumerate(data):
            if isinstance(p, dict):
                if "keypoints" not in p:
                    raise InputFileError(f"{path}: person {i} has no 'keypoints'")
                kp = p["keypoints"]
                if "keypoint_scores" in p:  # mmpose: (K, 2) coordinates + (K,) scores
                    kp = np.concatenate(
                        [np.asarray(kp, float), np.asarray(p["keypoint_scores"], float)[:, None]], 1
                    )
                rows.append(kp)
            else:
                rows.append(p)
        return rows, "coco"
    raise InputFileError(f"{path}: expected OpenPose JSON ({{'people': [...]}}) or a list of ViTPose people")


def keypoints_to_body25(
    people: list[np.ndarray], fmt: str = "auto", derive_neck_midhip: bool = False, where: str = ""
) -> np.ndarray:
    """Convert per-person keypoint arrays to BODY-25.

    Args:
        people: N arrays (K, 3) `x, y, confidence`, pixels.
        fmt: "auto" (by K: 25 = BODY-25, 17 = COCO-17, 23 = COCO-23, 133 = COCO-WholeBody), or one of
            "body25"/"openpose", "coco17", "coco23", "coco_wholebody"/"vitpose".
        derive_neck_midhip: derive Neck / MidHip for COCO inputs (BUDDI leaves them missing).
        where: prefix for error messages (file name).
    Returns:
        (N, 25, 3) float32.
    """
    by_k = {25: "body25", 17: "coco17", 23: "coco23", 133: "coco_wholebody"}
    out = np.zeros((len(people), 25, 3), dtype=np.float32)
    for i, kp in enumerate(people):
        k = kp.shape[0]
        f = (
            by_k.get(k)
            if fmt == "auto"
            else {"openpose": "body25", "vitpose": "coco_wholebody"}.get(fmt, fmt)
        )
        want = {"body25": (25,), "coco17": (17,), "coco23": (23,), "coco_wholebody": (133, 23, 17)}.get(
            f or ""
        )
        if f is None or want is None or k not in want:
            raise InputFileError(f"{where}person {i}: {k} keypoints do not match format '{fmt}'")
        if f == "coco_wholebody":  # body (17) + feet (6) come first in COCO-WholeBody; hands/face dropped
            kp, f = kp[: min(k, 23)], "coco23" if k >= 23 else "coco17"
        out[i] = convert_keypoints(kp, f, derive_neck_midhip)
    return out


def load_keypoints(path: str | Path, fmt: str = "auto", derive_neck_midhip: bool = False) -> np.ndarray:
    """Read an OpenPose or ViTPose JSON file and return (N, 25, 3) BODY-25 keypoints (pixels)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(f"keypoint file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(f"{path}: not valid JSON ({err})") from None
    rows, style = _person_rows(data, path)
    people = _as_people_array(rows, path)
    if style == "openpose" and fmt == "auto":
        fmt = "body25"
    return keypoints_to_body25(people, fmt, derive_neck_midhip, where=f"{path}: ")


# ---------------------------------------------------------------------------------------------------- BEV


@dataclass(frozen=True)
class BevOutput:
    """The parts of BEV's output we use (N people)."""

    thetas: np.ndarray  # (N, 72) SMPL global orient (3) + 23 joint rotations, axis-angle radians
    betas: np.ndarray  # (N, 11) SMPL-A shape: 10 betas + age/kid offset
    cam_trans: np.ndarray  # (N, 3) root position in the camera frame, metres
    joints: np.ndarray | None  # (N, J, 3) 3D joints (first 24 = SMPL skeleton), metres
    pj2d: np.ndarray | None  # (N, J, 2) projected joints in original-image pixels

    @property
    def num_people(self) -> int:
        return int(self.thetas.shape[0])


def load_bev(path: str | Path) -> BevOutput:
    """Read BEV's npz output (the pickled `results` dict, or a flat npz with the same keys)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"BEV file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if "results" in keys:
                raise _NeedsPickle
            data = {k: f[k] for k in keys}
    except _NeedsPickle:
        # BEV's own layout is a pickled dict; BEV files are trusted input (documented).
        with np.load(path, allow_pickle=True) as f:
            data = f["results"].item()
        if not isinstance(data, dict):
            raise InputFileError(f"{path}: 'results' is not a dict") from None
    except (OSError, ValueError) as err:
        raise InputFileError(f"{path}: not a readable npz ({err})") from None
    missing = [k for k in ("smpl_thetas", "smpl_betas", "cam_trans") if k not in data]
    if missing:
        raise InputFileError(f"{path}: missing BEV key(s) {missing}")
    thetas = np.asarray(data["smpl_thetas"], dtype=np.float64).reshape(-1, 72)
    n = thetas.shape[0]
    betas = np.asarray(data["smpl_betas"], dtype=np.float64).reshape(n, -1)
    cam = np.asarray(data["cam_trans"], dtype=np.float64).reshape(n, 3)
    joints = np.asarray(data["joints"], dtype=np.float64).reshape(n, -1, 3) if "joints" in data else None
    pj2d = np.asarray(data["pj2d_org"], dtype=np.float64).reshape(n, -1, 2) if "pj2d_org" in data else None
    for name, arr in (("smpl_thetas", thetas), ("smpl_betas", betas), ("cam_trans", cam)):
        if not np.all(np.isfinite(arr)):
            raise InputFileError(f"{path}: '{name}' contains NaN or inf")
    return BevOutput(thetas, betas, cam, joints, pj2d)


class _NeedsPickle(Exception):
    pass


def bev_joints2d_body25(pj2d: np.ndarray) -> np.ndarray:
    """BEV's projected SMPL joints → BODY-25 `(N, 25, 3)` (confidence 1 where mapped, 0 elsewhere)."""
    out = np.zeros((pj2d.shape[0], 25, 3), dtype=np.float32)
    for smpl, b25 in SMPL_TO_BODY25.items():
        out[:, b25, :2] = pj2d[:, smpl]
        out[:, b25, 2] = 1.0
    return out


def _bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(..., 22, 3) → (..., 21) lengths of the bones to joints 1..21."""
    child = np.arange(1, 22)
    parent = np.asarray(_BODY_PARENTS[1:])
    return np.linalg.norm(joints[..., child, :] - joints[..., parent, :], axis=-1)


def fit_betas_to_bone_lengths(
    j0: np.ndarray, dj: np.ndarray, lengths: np.ndarray, ridge: float = 1e-3, steps: int = 10
) -> np.ndarray:
    """Betas whose rest-pose bone lengths match target lengths (Gauss–Newton on the linear joint model).

    Rest joints are linear in betas: J(β) = j0 + Σ_b β_b dj_b (`rest_joint_basis`).

    Args:
        j0: (22, 3) rest joints of the mean body, metres.
        dj: (B, 22, 3) change of the rest joints per unit of each beta.
        lengths: (21,) target lengths of the bones to joints 1..21, metres.
        ridge: Tikhonov weight on betas, relative to the mean diagonal of JᵀJ (keeps unobservable directions
            at 0).
        steps: Gauss–Newton iterations.
    Returns:
        (B,) betas.
    """
    parent = np.asarray(_BODY_PARENTS[1:])
    dbone = dj[:, 1:] - dj[:, parent]  # (B, 21, 3)
    beta = np.zeros(dj.shape[0])
    for _ in range(steps):
        joints = j0 + np.einsum("b,bjc->jc", beta, dj)
        bone = joints[1:] - joints[parent]  # (21, 3)
        length = np.linalg.norm(bone, axis=-1)
        jac = np.einsum("jc,bjc->jb", bone / np.maximum(length, 1e-9)[:, None], dbone)  # (21, B)
        jtj = jac.T @ jac
        damp = ridge * max(float(np.trace(jtj)) / len(beta), 1e-12)  # relative: independent of units
        beta = beta - np.linalg.solve(
            jtj + damp * np.eye(len(beta)), jac.T @ (length - lengths) + damp * beta
        )
    return beta


def _padded(n: int) -> int:
    # Batches are padded to a power of two (≥ 4) so importing many images compiles only a few shapes.
    return max(4, 1 << (max(n, 1) - 1).bit_length())


@jax.jit
def _model_joints(model: Any, params: dict[str, jax.Array]) -> jax.Array:
    return forward(model, **params)["joints"]


def model_joints(model: Any, params: dict[str, np.ndarray]) -> np.ndarray:
    """Output joints (N, 127, 3) of N bodies, metres (jitted, batch padded; numpy in and out)."""
    n = len(next(iter(params.values())))
    m = _padded(n)
    padded = {
        k: jnp.asarray(np.concatenate([v, np.repeat(v[:1], m - n, axis=0)]), jnp.float32)
        for k, v in params.items()
    }
    return np.asarray(_model_joints(model, padded), dtype=np.float64)[:n]


def rest_joint_basis(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rest joints of the mean body and their change per unit beta: `(j0 (127, 3), dj (B, 127, 3))`."""
    nb = int(model.num_betas)
    joints = model_joints(model, {"betas": np.concatenate([np.zeros((1, nb)), np.eye(nb)])})
    return joints[0], joints[1:] - joints[0]


def bev_to_init(
    bev: BevOutput, model: Any, betas: Literal["mean", "limbs"] = "mean"
) -> dict[str, np.ndarray]:
    """Initial parameters of `model` from BEV's output.

    Args:
        bev: BEV output for N people.
        model: an `apu_jax.BodyModel`.
        betas: "mean" (zeros) or "limbs" (bone-length fit; needs BEV's `joints`). See the module docstring.
    Returns:
        `global_orient` (N, 3), `body_pose` (N, 63), `betas` (N, B), `transl` (N, 3), float32, metres/radians.
    """
    n, nb = bev.num_people, int(model.num_betas)
    j0, dj = rest_joint_basis(model)
    if betas == "mean":
        beta = np.zeros((n, nb))
    elif betas == "limbs":
        if bev.joints is None or bev.joints.shape[1] < 22:
            raise InputFileError("betas='limbs' needs BEV's 3D 'joints' (N, >=22, 3)")
        beta = np.stack(
            [fit_betas_to_bone_lengths(j0[:22], dj[:, :22], _bone_lengths(j[:22])) for j in bev.joints]
        )
    else:
        raise ValueError(f"unknown betas mode '{betas}' (expected 'mean' or 'limbs')")
    pelvis = j0[0] + beta @ dj[:, 0]  # the root does not move under its own rotation
    return {
        "global_orient": bev.thetas[:, :3].astype(np.float32),
        "body_pose": bev.thetas[:, 3:66].astype(np.float32),
        "betas": beta.astype(np.float32),
        "transl": (bev.cam_trans - pelvis).astype(np.float32),
    }


def project_init_body25(model: Any, init: dict[str, np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    """Project initial bodies with the default camera (docs/FORMATS.md) to BODY-25 `(N, 25, 3)` pixels.

    Confidence is 1 for joints in front of the camera, 0 otherwise.
    """
    joints = model_joints(model, init)[:, np.asarray(MODEL_TO_BODY25)]
    w, h = image_size
    f = (max(w, h) / 2.0) / math.tan(math.radians(30.0))
    z = joints[..., 2]
    front = z > 1e-3
    xy = f * joints[..., :2] / np.where(front, z, 1.0)[..., None] + np.array([w / 2.0, h / 2.0])
    return np.concatenate([np.where(front[..., None], xy, 0.0), front[..., None]], axis=-1).astype(np.float32)


def match_people(keypoints: np.ndarray, projected: np.ndarray, min_conf: float = 0.3) -> list[int | None]:
    """Match detected people to initial meshes (unique assignment, Hungarian on normalised joint error).

    Args:
        keypoints: (N, 25, 3) detected keypoints.
        projected: (M, 25, 3) projected initial joints.
        min_conf: keypoint presence threshold.
    Returns:
        For each detected person, the index of its mesh, or None (no mesh left, or nothing comparable).
    """
    from scipy.optimize import linear_sum_assignment

    from apu_jax.ask.proposal import misalignment

    n, m = len(keypoints), len(projected)
    if n == 0 or m == 0:
        return [None] * n
    cost = np.array(
        [[misalignment(keypoints[i], projected[j], min_conf) for j in range(m)] for i in range(n)]
    )
    finite = np.isfinite(cost)
    rows, cols = linear_sum_assignment(np.where(finite, cost, 1e9))
    out: list[int | None] = [None] * n
    for r, c in zip(rows, cols, strict=True):
        if finite[r, c]:
            out[r] = int(c)
    return out


# ----------------------------------------------------------------------------------------------- manifest


class ManifestError(ValueError):
    """A malformed manifest line or a path it may not use (the message names file and line)."""


class ManifestPerson(BaseModel):
    """One person given inline in a manifest line (all optional)."""

    model_config = ConfigDict(extra="forbid")

    keypoints: list[list[float]] | None = None  # (K, 3) x, y, confidence, pixels
    global_orient: list[float] | None = None  # (3,) axis-angle
    body_pose: list[float] | None = None  # (63,) axis-angle, SMPL-X body joints
    betas: list[float] | None = None  # (B,) of the body model in use
    transl: list[float] | None = None  # (3,) metres, camera frame
    joints2d: list[list[float]] | None = None  # (25, 3) projected initial joints, BODY-25 (skips projecting)


class ManifestRecord(BaseModel):
    """One manifest line: an image and what we know about its people.

    Keypoints come from `keypoints` (an OpenPose/ViTPose JSON file) or `people[i].keypoints`; initial bodies
    from `bev` (BEV's npz, matched to the keypoint people by projected-joint error) or `people[i]` parameters
    (same order as the keypoints).
    """

    model_config = ConfigDict(extra="forbid")

    image: str  # path relative to the data root
    id: str | None = None  # unique image id (default: the image path without extension)
    label: str | None = None  # interaction label, e.g. "hug" (a soft hint for the LVLM)
    keypoints: str | None = None  # path to an OpenPose / ViTPose JSON file
    keypoint_format: str = "auto"  # auto | body25 | openpose | coco17 | coco23 | coco_wholebody | vitpose
    derive_neck_midhip: bool = False  # derive Neck/MidHip for COCO inputs
    bev: str | None = None  # path to BEV's npz output
    people: list[ManifestPerson] | None = None  # inline people


@dataclass
class PersonInput:
    """One person of an image after import."""

    keypoints: np.ndarray  # (25, 3) BODY-25, pixels
    init: dict[str, np.ndarray] | None = None  # global_orient (3,), body_pose (63,), betas (B,), transl (3,)
    joints2d: np.ndarray | None = None  # (25, 3) projected initial joints, pixels (conf 0 = unavailable)


@dataclass
class ImageInput:
    """One manifest line after import."""

    id: str
    image_path: Path  # absolute, checked to be under the data root
    image_rel: str  # as written in the manifest (relative to the data root)
    label: str | None
    image_size: tuple[int, int]  # (W, H) pixels
    people: list[PersonInput] = field(default_factory=list)


def resolve_under_root(root: Path, rel: str, allow_outside_root: bool = False) -> Path:
    """Resolve a manifest path against the data root, refusing paths that escape it.

    Raises:
        ManifestError: the path resolves outside `root` (absolute, `..`, or a symlink) and
            `allow_outside_root` is False.
    """
    root = root.resolve()
    path = (root / rel).resolve()
    if not allow_outside_root and not path.is_relative_to(root):
        raise ManifestError(f"path '{rel}' resolves outside the data root {root} (use --allow-outside-root)")
    return path


def _image_size(path: Path) -> tuple[int, int]:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ManifestError(f"image not found or unreadable: {path}")
    return int(img.shape[1]), int(img.shape[0])


def read_manifest(path: str | Path) -> list[tuple[int, ManifestRecord]]:
    """Parse and validate a JSONL manifest; returns (line number, record) pairs. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    out = []
    ids: set[str] = set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = ManifestRecord.model_validate_json(line)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            raise ManifestError(f"{path}:{lineno}: {where}: {first['msg']}") from None
        rec.id = rec.id or str(Path(rec.image).with_suffix(""))
        if rec.id in ids:
            raise ManifestError(f"{path}:{lineno}: duplicate id '{rec.id}'")
        ids.add(rec.id)
        out.append((lineno, rec))
    return out


def _inline_init(p: ManifestPerson, where: str) -> dict[str, np.ndarray] | None:
    fields = {"global_orient": 3, "body_pose": 63, "betas": None, "transl": 3}
    given = {k: getattr(p, k) for k in fields if getattr(p, k) is not None}
    if not given:
        return None
    if len(given) < 4 and set(given) != set(fields) - {"betas"}:
        raise ManifestError(
            f"{where}: inline init needs global_orient, body_pose, transl (and optional betas)"
        )
    out = {}
    for k, n in fields.items():
        if k in given:
            arr = np.asarray(given[k], dtype=np.float32)
            if n is not None and arr.shape != (n,):
                raise ManifestError(f"{where}: '{k}' has {arr.size} values, expected {n}")
            out[k] = arr
    return out


def load_manifest(
    path: str | Path,
    data_root: str | Path | None = None,
    allow_outside_root: bool = False,
    model: Any = None,
    betas: Literal["mean", "limbs"] = "mean",
) -> list[ImageInput]:
    """Read a manifest and import every line's keypoints and initial bodies.

    Args:
        path: the JSONL manifest.
        data_root: root for relative paths (default: the manifest's folder).
        allow_outside_root: accept paths that resolve outside the data root.
        model: a `BodyModel` or a zero-argument callable returning one; needed only for BEV inputs (pelvis
            offset, projection) and for inline inits without betas. Loaded lazily.
        betas: BEV shape approximation, "mean" or "limbs".
    Returns:
        One `ImageInput` per line, in file order.
    Raises:
        ManifestError / InputFileError: with file and line for any problem.
    """
    path = Path(path)
    root = Path(data_root) if data_root is not None else path.resolve().parent
    if not root.is_dir():
        raise ManifestError(f"data root is not a folder: {root}")
    cached_model: list[Any] = []

    def get_model() -> Any:
        if not cached_model:
            if model is None:
                raise ManifestError("a body model is needed to import initial bodies")
            cached_model.append(model() if callable(model) else model)
        return cached_model[0]

    out = []
    for lineno, rec in read_manifest(path):
        where = f"{path}:{lineno}"
        try:
            img = resolve_under_root(root, rec.image, allow_outside_root)
            size = _image_size(img)
            if rec.keypoints is not None:
                kp = load_keypoints(
                    resolve_under_root(root, rec.keypoints, allow_outside_root),
                    rec.keypoint_format,
                    rec.derive_neck_midhip,
                )
            elif rec.people and all(p.keypoints is not None for p in rec.people):
                people_kp = [np.asarray(p.keypoints, dtype=np.float64) for p in rec.people]
                if any(k.ndim != 2 or k.shape[1] != 3 for k in people_kp):
                    raise ManifestError("inline keypoints must be (K, 3) lists")
                kp = keypoints_to_body25(people_kp, rec.keypoint_format, rec.derive_neck_midhip)
            else:
                raise ManifestError("no keypoints: give 'keypoints' (a file) or 'people[].keypoints'")
            people = [PersonInput(keypoints=k) for k in kp]
            if rec.bev is not None:
                bev = load_bev(resolve_under_root(root, rec.bev, allow_outside_root))
                inits = bev_to_init(bev, get_model(), betas)
                proj = (
                    bev_joints2d_body25(bev.pj2d)
                    if bev.pj2d is not None and bev.pj2d.shape[1] >= 22
                    else project_init_body25(get_model(), inits, size)
                )
                for i, j in enumerate(match_people(kp, proj)):
                    if j is not None:
                        people[i].init = {k: v[j] for k, v in inits.items()}
                        people[i].joints2d = proj[j]
            elif rec.people is not None:
                if len(rec.people) != len(people):
                    raise ManifestError(f"{len(rec.people)} inline people but {len(people)} keypoint people")
                for i, p in enumerate(rec.people):
                    init = _inline_init(p, f"people[{i}]")
                    if init is not None:
                        if "betas" not in init:
                            init["betas"] = np.zeros(int(get_model().num_betas), np.float32)
                        people[i].init = init
                    if p.joints2d is not None:
                        j2d = np.asarray(p.joints2d, dtype=np.float32)
                        if j2d.shape != (25, 3):
                            raise ManifestError(f"people[{i}].joints2d must be (25, 3), got {j2d.shape}")
                        people[i].joints2d = j2d
                with_init = [i for i, p in enumerate(people) if p.init is not None and p.joints2d is None]
                if with_init:
                    stacked = {
                        k: np.stack([people[i].init[k] for i in with_init]) for k in people[with_init[0]].init
                    }
                    proj = project_init_body25(get_model(), stacked, size)
                    for row, i in enumerate(with_init):
                        people[i].joints2d = proj[row]
        except (ManifestError, InputFileError) as err:
            raise ManifestError(f"{where}: {err}") from None
        out.append(ImageInput(rec.id, img, rec.image, rec.label, size, people))
    return out


__all__ = [
    "BevOutput",
    "ImageInput",
    "InputFileError",
    "ManifestError",
    "ManifestRecord",
    "PersonInput",
    "bev_joints2d_body25",
    "bev_to_init",
    "fit_betas_to_bone_lengths",
    "keypoints_to_body25",
    "load_bev",
    "load_keypoints",
    "load_manifest",
    "match_people",
    "model_joints",
    "rest_joint_basis",
    "project_init_body25",
    "read_manifest",
    "resolve_under_root",
]
