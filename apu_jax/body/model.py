"""SMPL-X-layout body models in JAX, written from the linear-blend-skinning maths.

The flow is staged: `BodyModel` (arrays from a file) → `shape_body` (betas and expression applied, rest joints
regressed; once per shape) → `pose_body` (pose correctives, kinematic chain, skinning). `forward` chains both
and broadcasts any leading batch shape; it is the single-body maths vmapped once.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from apu_jax.body.rotations import axis_angle_to_matrix

NUM_BODY_JOINTS = 21  # SMPL-X body joints without the root
NUM_JOINTS = 55  # root + 21 body + jaw + 2 eyes + 2 × 15 hand joints
NUM_HAND_JOINTS = 15
NUM_EXTRA_JOINTS = 21  # vertex joints: nose, eyes, ears, 6 foot points, 10 finger tips
NUM_FACE_LANDMARKS = 51
NUM_OUTPUT_JOINTS = NUM_JOINTS + NUM_EXTRA_JOINTS + NUM_FACE_LANDMARKS  # 127, as smplx without contour

SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)  # fmt: skip

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw",
    "left_eye_smplhf", "right_eye_smplhf",
    *[f"left_{f}{i}" for f in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)],
    *[f"right_{f}{i}" for f in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)],
    "nose", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    "left_thumb", "left_index", "left_middle", "left_ring", "left_pinky",
    "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
    *[f"face_landmark_{i}" for i in range(NUM_FACE_LANDMARKS)],
)  # fmt: skip

# smplx's VertexJointSelector ids for the official SMPL-X topology (nose, reye, leye, rear, lear, feet, tips).
SMPLX_EXTRA_VERTEX_IDS: tuple[int, ...] = (
    9120, 9929, 9448, 616, 6, 5770, 5780, 8846, 8463, 8474, 8635,
    5361, 4933, 5058, 5169, 5286, 8079, 7669, 7794, 7905, 8022,
)  # fmt: skip

POSE_PARAM_SIZES: dict[str, int] = {
    "global_orient": 3,
    "body_pose": 3 * NUM_BODY_JOINTS,
    "jaw_pose": 3,
    "leye_pose": 3,
    "reye_pose": 3,
}

_BUNDLED = {"default": "default_model.npz"}


class ModelFileError(ValueError):
    """A body model file is missing, malformed or inconsistent (the message names the key)."""


@struct.dataclass
class BodyModel:
    """An SMPL-X-layout body model: every array a pytree leaf, structure static."""

    v_template: jax.Array  # (V, 3) rest vertices, metres
    shapedirs: jax.Array  # (V, 3, B) shape blend shapes (last one = kid offset for SMPL-XA)
    exprdirs: jax.Array  # (V, 3, E) expression blend shapes, E may be 0
    posedirs: jax.Array | None  # (54 * 9, V * 3) pose correctives on (R − I), or None (no correctives)
    j_regressor: jax.Array  # (55, V) rest-joint regressor, rows sum to 1
    weights: jax.Array  # (V, 55) skinning weights, rows sum to 1
    hand_components_left: jax.Array  # (C, 45) hand PCA basis rows (C = num_pca_comps, or 45 identity)
    hand_components_right: jax.Array  # (C, 45)
    hand_mean_left: jax.Array  # (45,) added to the left hand pose (zeros for a flat hand mean)
    hand_mean_right: jax.Array  # (45,)
    landmark_vertex_ids: jax.Array  # (51, 3) int32 vertices of each face landmark's triangle
    landmark_bary: jax.Array  # (51, 3) barycentric weights of the face landmarks
    extra_vertex_ids: jax.Array  # (21,) int32 vertices used as extra joints (nose, eyes, ears, feet, tips)
    faces: jax.Array  # (F, 3) int32 triangles
    parents: tuple[int, ...] = struct.field(pytree_node=False)  # (55,) kinematic tree, root = -1
    name: str = struct.field(pytree_node=False, default="smplx")  # where the model came from
    meta: str = struct.field(pytree_node=False, default="{}")  # JSON: licence, provenance, build figures

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[-1])

    @property
    def num_expression(self) -> int:
        return int(self.exprdirs.shape[-1])

    @property
    def num_hand_components(self) -> int:
        return int(self.hand_components_left.shape[0])

    @property
    def num_joints(self) -> int:
        return NUM_JOINTS

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def info(self) -> dict[str, Any]:
        """JSON-ready summary (sizes, provenance)."""
        return {
            "name": self.name,
            "num_vertices": self.num_vertices,
            "num_faces": self.num_faces,
            "num_joints": NUM_JOINTS,
            "num_output_joints": NUM_OUTPUT_JOINTS,
            "num_betas": self.num_betas,
            "num_expression": self.num_expression,
            "num_hand_components": self.num_hand_components,
            "pose_correctives": self.posedirs is not None,
            "dtype": str(self.v_template.dtype),
            "meta": json.loads(self.meta),
        }


@struct.dataclass
class ShapedBody:
    """A body with shape applied: what pose-independent work produces, reused across poses."""

    vertices: jax.Array  # (V, 3) shaped rest vertices (incl. expression), metres
    joints: jax.Array  # (55, 3) rest joints regressed from the shaped vertices, metres


# ----------------------------------------------------------------------------------------------- loading


def _bundled_path(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "data" / _BUNDLED[name]


def _read_arrays(path: Path) -> Mapping[str, Any]:
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.suffix == ".npz":
        try:
            # Lazy per-key loading: object arrays we never touch (the official files have some) are fine.
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ModelFileError(f"{path}: not a readable .npz file ({err})") from err
    if path.suffix == ".pkl":
        try:
            with open(path, "rb") as f:
                data = pickle.load(f, encoding="latin1")
        except ModuleNotFoundError as err:
            raise ModelFileError(
                f"{path}: this .pkl needs the '{err.name}' package (legacy chumpy pickles); use the .npz file"
            ) from err
        except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad user file
            raise ModelFileError(f"{path}: not a readable model .pkl ({err})") from err
        if not isinstance(data, dict):
            raise ModelFileError(f"{path}: expected a dict of arrays, got {type(data).__name__}")
        return data
    raise ModelFileError(f"{path}: unsupported model file type '{path.suffix}' (expected .npz or .pkl)")


def _get(arrays: Mapping[str, Any], key: str, path: Path, shape: tuple[int | None, ...] | None = None):
    try:
        value = arrays[key]
    except KeyError:
        raise ModelFileError(f"{path}: missing key '{key}'") from None
    except ValueError as err:  # an object array in an npz opened without pickle
        raise ModelFileError(f"{path}: key '{key}' is not a plain array ({err})") from err
    if hasattr(value, "toarray"):  # scipy sparse (official J_regressor in .pkl files)
        value = value.toarray()
    value = np.asarray(value)
    if shape is not None:
        ok = value.ndim == len(shape) and all(
            s is None or s == d for s, d in zip(shape, value.shape, strict=False)
        )
        if not ok:
            want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
            raise ModelFileError(f"{path}: key '{key}' has shape {value.shape}, expected {want}")
    if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
        raise ModelFileError(f"{path}: key '{key}' contains NaN or inf")
    return value


def load_model(
    path_or_name: str | os.PathLike = "default",
    kid_template: str | os.PathLike | None = None,
    num_betas: int | None = None,
    num_expression_coeffs: int = 10,
    use_pca: bool | None = None,
    num_pca_comps: int = 6,
    flat_hand_mean: bool = False,
    dtype: Any = jnp.float32,
) -> BodyModel:
    """Load a body model: `"default"` (the bundled free model) or an SMPL-X file in the official layout.

    Args:
        path_or_name: "default", or a path to `SMPLX_{NEUTRAL,MALE,FEMALE}.npz` / `.pkl`, or to a model
            built by `apu model build-default`.
        kid_template: optional `smplx_kid_template.npy` (V, 3): turns SMPL-X into SMPL-XA by appending the
            centred kid template minus the adult template as one more shape direction (smplx's `age='kid'`).
        num_betas: shape coefficients to keep (official files: default 10, at most 300; our own files: all).
        num_expression_coeffs: expression coefficients (official files only; ≤ 100).
        use_pca: hand poses are PCA coefficients (else 45-D axis-angle per hand). None: True for official
            SMPL-X files (smplx's default), False for our own files, whose hand "PCA" is the identity (the
            free default model has no hand pose space, so 6 "components" would only move two finger joints).
        num_pca_comps: PCA coefficients per hand when `use_pca`.
        flat_hand_mean: if False, the file's mean hand pose is added to the hand poses (smplx's default).
        dtype: float32, or float64 (needs `jax.config.update("jax_enable_x64", True)`).
    Returns:
        A `BodyModel` pytree.
    Raises:
        ModelFileError: missing file, missing key (named), wrong shapes or NaN values.
    """
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("float64 needs jax_enable_x64: jax.config.update('jax_enable_x64', True)")
    if str(path_or_name) in _BUNDLED:
        name = str(path_or_name)
        path = _bundled_path(name)
        if not path.exists():
            raise ModelFileError(f"the bundled '{name}' model file is missing from the install ({path})")
    else:
        path = Path(path_or_name).expanduser()
        name = str(path)
    arrays = _read_arrays(path)

    v_template = _get(arrays, "v_template", path, (None, 3)).astype(np.float64)
    num_verts = v_template.shape[0]
    faces = _get(arrays, "f", path, (None, 3)).astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= num_verts):
        raise ModelFileError(f"{path}: key 'f' indexes vertices outside [0, {num_verts})")
    shapedirs_all = _get(arrays, "shapedirs", path, (num_verts, 3, None)).astype(np.float64)
    j_regressor = _get(arrays, "J_regressor", path, (NUM_JOINTS, num_verts)).astype(np.float64)
    weights = _get(arrays, "weights", path, (num_verts, NUM_JOINTS)).astype(np.float64)
    kintree = _get(arrays, "kintree_table", path, (2, NUM_JOINTS))
    parents = tuple([-1] + [int(p) for p in kintree[0, 1:]])
    if any(not (0 <= p < j) for j, p in enumerate(parents) if j > 0):
        raise ModelFileError(f"{path}: key 'kintree_table' is not a tree in index order")

    is_own_format = "extra_vertex_ids" in getattr(arrays, "files", arrays)
    if use_pca is None:
        use_pca = not is_own_format
    total_dirs = shapedirs_all.shape[-1]
    if is_own_format:
        # Our own files store betas only; expression is not modelled.
        max_betas, expr_dirs = total_dirs, shapedirs_all[:, :, :0]
        n_betas = max_betas if num_betas is None else num_betas
    else:
        # smplx's rule: ≥ 400 directions = 300 shape + 100 expression; older files: 10 + 10.
        if total_dirs >= 400:
            max_betas, expr_dirs = 300, shapedirs_all[:, :, 300 : 300 + num_expression_coeffs]
        else:
            max_betas, expr_dirs = 10, shapedirs_all[:, :, 10 : 10 + num_expression_coeffs]
        n_betas = 10 if num_betas is None else num_betas
    if not 0 <= n_betas <= max_betas:
        raise ValueError(f"num_betas={n_betas} out of range for {path} (at most {max_betas})")
    shapedirs = shapedirs_all[:, :, :n_betas]
    if kid_template is not None:
        kid_path = Path(kid_template).expanduser()
        if not kid_path.exists():
            raise ModelFileError(f"kid template not found: {kid_path}")
        kid = np.load(kid_path, allow_pickle=False).astype(np.float64)
        if kid.shape != (num_verts, 3):
            raise ModelFileError(f"{kid_path}: kid template has shape {kid.shape}, expected ({num_verts}, 3)")
        kid_offset = (kid - kid.mean(axis=0)) - v_template
        shapedirs = np.concatenate([shapedirs, kid_offset[:, :, None]], axis=-1)

    if "posedirs" in getattr(arrays, "files", arrays):
        posedirs = _get(arrays, "posedirs", path, (num_verts, 3, (NUM_JOINTS - 1) * 9))
        posedirs = posedirs.reshape(num_verts * 3, -1).T.astype(np.float64)
    else:
        posedirs = None

    hands = {}
    for side in ("l", "r"):
        comps = _get(arrays, f"hands_components{side}", path, (None, 45)).astype(np.float64)
        mean = _get(arrays, f"hands_mean{side}", path, (45,)).astype(np.float64)
        if use_pca:
            if not 1 <= num_pca_comps <= comps.shape[0]:
                raise ValueError(f"num_pca_comps={num_pca_comps} out of range (file has {comps.shape[0]})")
            comps = comps[:num_pca_comps]
        else:
            comps = np.eye(45)
        hands[side] = (comps, np.zeros(45) if flat_hand_mean else mean)

    lmk_faces = _get(arrays, "lmk_faces_idx", path, (NUM_FACE_LANDMARKS,)).astype(np.int64)
    lmk_bary = _get(arrays, "lmk_bary_coords", path, (NUM_FACE_LANDMARKS, 3)).astype(np.float64)
    if lmk_faces.min() < 0 or lmk_faces.max() >= faces.shape[0]:
        raise ModelFileError(f"{path}: key 'lmk_faces_idx' indexes faces outside [0, {faces.shape[0]})")
    if is_own_format:
        extra_ids = _get(arrays, "extra_vertex_ids", path, (NUM_EXTRA_JOINTS,)).astype(np.int64)
    else:
        extra_ids = np.asarray(SMPLX_EXTRA_VERTEX_IDS)
    if extra_ids.max() >= num_verts:
        raise ModelFileError(
            f"{path}: extra joint vertex ids reach {extra_ids.max()} but the mesh has {num_verts} vertices"
        )
    meta = "{}"
    if "meta" in getattr(arrays, "files", arrays):
        meta = str(np.asarray(arrays["meta"]))
        try:
            json.loads(meta)
        except json.JSONDecodeError:
            meta = json.dumps({"meta": meta})

    as_float = lambda a: jnp.asarray(a, dtype=dtype)  # noqa: E731
    return BodyModel(
        v_template=as_float(v_template),
        shapedirs=as_float(shapedirs),
        exprdirs=as_float(expr_dirs),
        posedirs=None if posedirs is None else as_float(posedirs),
        j_regressor=as_float(j_regressor),
        weights=as_float(weights),
        hand_components_left=as_float(hands["l"][0]),
        hand_components_right=as_float(hands["r"][0]),
        hand_mean_left=as_float(hands["l"][1]),
        hand_mean_right=as_float(hands["r"][1]),
        landmark_vertex_ids=jnp.asarray(faces[lmk_faces], dtype=jnp.int32),
        landmark_bary=as_float(lmk_bary),
        extra_vertex_ids=jnp.asarray(extra_ids, dtype=jnp.int32),
        faces=jnp.asarray(faces, dtype=jnp.int32),
        parents=parents,
        name=name,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------- maths


def _tree_levels(parents: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group joints by depth so the kinematic chain runs in ~11 batched steps instead of 55."""
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    levels = []
    for d in range(1, max(depth) + 1):
        joints = np.array([j for j in range(len(parents)) if depth[j] == d])
        levels.append((joints, np.array([parents[j] for j in joints])))
    return levels


def _matmul3(a: jax.Array, b: jax.Array) -> jax.Array:
    """(..., 3, 3) @ (..., 3, 3) as broadcast multiply-adds.

    Tiny batched dot_generals are slow under vmap and, nested in vmap(vmap(...)), have tripped XLA's CPU
    layout verifier; elementwise products fuse into one kernel.
    """
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def _matvec3(a: jax.Array, v: jax.Array) -> jax.Array:
    """(..., 3, 3) @ (..., 3) as broadcast multiply-adds (see `_matmul3`)."""
    return jnp.sum(a * v[..., None, :], axis=-1)


def shape_body(model: BodyModel, betas: jax.Array, expression: jax.Array) -> ShapedBody:
    """Apply shape and expression blend shapes and regress the rest joints (one body).

    Args:
        model: the body model.
        betas: (B,) shape coefficients (B = model.num_betas).
        expression: (E,) expression coefficients.
    Returns:
        The shaped rest body.
    """
    vertices = model.v_template + jnp.einsum("vcb,b->vc", model.shapedirs, betas)
    if model.num_expression:
        vertices = vertices + jnp.einsum("vce,e->vc", model.exprdirs, expression)
    return ShapedBody(vertices=vertices, joints=model.j_regressor @ vertices)


def full_pose_matrices(model: BodyModel, pose: Mapping[str, jax.Array]) -> jax.Array:
    """Local rotation matrices of all 55 joints (one body).

    Args:
        model: the body model (hand PCA basis and mean).
        pose: axis-angle `global_orient` (3,), `body_pose` (63,), `jaw_pose`, `leye_pose`, `reye_pose` (3,),
            and hand poses (C,) PCA coefficients or (45,) axis-angle, as the model was loaded.
    Returns:
        (55, 3, 3) rotations, each relative to its parent.
    """
    left_hand = pose["left_hand_pose"] @ model.hand_components_left + model.hand_mean_left
    right_hand = pose["right_hand_pose"] @ model.hand_components_right + model.hand_mean_right
    full = jnp.concatenate(
        [
            pose["global_orient"],
            pose["body_pose"],
            pose["jaw_pose"],
            pose["leye_pose"],
            pose["reye_pose"],
            left_hand,
            right_hand,
        ]
    )
    return axis_angle_to_matrix(full.reshape(NUM_JOINTS, 3))


def pose_body(model: BodyModel, shaped: ShapedBody, rotations: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pose correctives, kinematic chain and linear blend skinning (one body, no translation).

    Args:
        model: the body model.
        shaped: the shaped rest body.
        rotations: (55, 3, 3) local joint rotations.
    Returns:
        vertices (V, 3) and the posed skeleton joints (55, 3), metres.
    """
    rest_vertices = shaped.vertices
    if model.posedirs is not None:
        eye = jnp.eye(3, dtype=rotations.dtype)
        pose_feature = (rotations[1:] - eye).reshape(-1)
        rest_vertices = rest_vertices + (pose_feature @ model.posedirs).reshape(-1, 3)

    rest_joints = shaped.joints
    parents = np.asarray(model.parents)
    # Bone offsets in the rest pose; the root keeps its absolute position.
    offsets = rest_joints - jnp.concatenate([jnp.zeros_like(rest_joints[:1]), rest_joints[parents[1:]]])
    # Only the root rows are final here; every other row is written once, level by level.
    world_rot, world_pos = rotations, offsets
    for joints, parent_ids in _tree_levels(model.parents):
        parent_rot = world_rot[parent_ids]
        world_rot = world_rot.at[joints].set(_matmul3(parent_rot, rotations[joints]))
        world_pos = world_pos.at[joints].set(world_pos[parent_ids] + _matvec3(parent_rot, offsets[joints]))
    # Skinning transforms map rest-pose points: x ↦ R_j (x − J_j) + G_j.
    skin_trans = world_pos - _matvec3(world_rot, rest_joints)
    skin = jnp.concatenate([world_rot.reshape(-1, 9), skin_trans], axis=-1)  # (55, 12)
    per_vertex = model.weights @ skin  # (V, 12): one GEMM, the bulk of the FLOPs
    vert_rot = per_vertex[:, :9].reshape(-1, 3, 3)
    vertices = _matvec3(vert_rot, rest_vertices) + per_vertex[:, 9:]
    return vertices, world_pos


def output_joints(model: BodyModel, vertices: jax.Array, skeleton: jax.Array) -> jax.Array:
    """The 127 output joints in smplx's order: skeleton (55), extra vertex joints (21), face landmarks (51).

    Args:
        model: the body model.
        vertices: (V, 3) posed vertices.
        skeleton: (55, 3) posed skeleton joints.
    Returns:
        (127, 3) joints.
    """
    extra = vertices[model.extra_vertex_ids]
    landmarks = jnp.einsum("lk,lkc->lc", model.landmark_bary, vertices[model.landmark_vertex_ids])
    return jnp.concatenate([skeleton, extra, landmarks], axis=0)


def default_params(model: BodyModel, dtype: Any = None) -> dict[str, jax.Array]:
    """Zero parameters for one body (the rest pose, mean shape, origin)."""
    dtype = dtype or model.v_template.dtype
    sizes = dict(POSE_PARAM_SIZES)
    sizes.update(
        left_hand_pose=model.num_hand_components,
        right_hand_pose=model.num_hand_components,
        betas=model.num_betas,
        expression=model.num_expression,
        transl=3,
    )
    return {k: jnp.zeros((n,), dtype) for k, n in sizes.items()}


def forward_single(model: BodyModel, params: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """One body: all parameters present and unbatched (see `forward` for shapes)."""
    shaped = shape_body(model, params["betas"], params["expression"])
    vertices, skeleton = pose_body(model, shaped, full_pose_matrices(model, params))
    joints = output_joints(model, vertices, skeleton)
    transl = params["transl"]
    return {"vertices": vertices + transl, "joints": joints + transl}


def forward(model: BodyModel, **params: jax.Array) -> dict[str, jax.Array]:
    """Run the body model. Parameter names follow smplx; any missing parameter is zero.

    Args:
        model: a `BodyModel` (pass it as an argument to jitted functions, never close over it).
        **params: `global_orient` (..., 3), `body_pose` (..., 63), `betas` (..., B), `transl` (..., 3),
            `left_hand_pose`/`right_hand_pose` (..., C) PCA or (..., 45) axis-angle, `jaw_pose`,
            `leye_pose`, `reye_pose` (..., 3), `expression` (..., E). Axis-angle in radians, metres.
            Leading batch shapes broadcast against each other.
    Returns:
        `vertices` (..., V, 3) and `joints` (..., 127, 3) in metres.
    """
    base = default_params(model)
    unknown = set(params) - set(base)
    if unknown:
        raise TypeError(f"unknown body parameters: {sorted(unknown)}; expected some of {sorted(base)}")
    full = {}
    batch_shape: tuple[int, ...] = ()
    for key, zero in base.items():
        value = params.get(key)
        value = zero if value is None else jnp.asarray(value, dtype=zero.dtype)
        if value.shape[-1:] != zero.shape:
            raise ValueError(f"{key} has last dimension {value.shape[-1:]}, expected {zero.shape}")
        full[key] = value
        batch_shape = jnp.broadcast_shapes(batch_shape, value.shape[:-1])
    count = int(np.prod(batch_shape))  # explicit: a zero-width parameter (no expression) can't use -1
    flat = {
        k: jnp.broadcast_to(v, batch_shape + v.shape[-1:]).reshape(count, v.shape[-1])
        for k, v in full.items()
    }
    out = jax.vmap(forward_single, in_axes=(None, 0))(model, flat)
    return {k: v.reshape(batch_shape + v.shape[1:]) for k, v in out.items()}
