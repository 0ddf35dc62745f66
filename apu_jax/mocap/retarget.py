"""Retarget mocap joint positions to SMPL-X-layout body parameters by fitting the body model.

Per frame we fit `global_orient` (3,), `body_pose` (63,) and `transl` (3,); `betas` (B,) are shared over a
sequence. The per-frame loss (GMM off) is

    Σ_j w_j ‖J_j − M_j‖²                       joint positions (22 body joints vs their mocap points)
  + w_bone Σ_(j,p) ‖û(J_j − J_p) − û(M_j − M_p)‖²   bone directions: unaffected by bone-length mismatch
  + w_dir Σ_d ‖û(P_b − P_a) − d_d‖²             extra directions (wrist → finger base, head → eye, …)
  + w_orient Σ_o ‖G_o − T_o‖²_F                  segment orientations (cgspeed skeletons only)
  + w_pose ‖θ‖²                                   small L2 pose regulariser (twists nothing else fixes)

with û the unit vector. Positions alone would bend the pose to absorb different joint placements between the
two skeletons; bone directions make the pose follow the limbs' directions regardless of length, while
positions keep the body in place and let the shared betas match the subject's size.

Every compiled shape is fixed: a clip of at most `chunk` frames is fitted in one padded batch, betas and poses
together; a longer clip first gets its betas from `chunk` evenly spaced frames, then all frames are fitted in
chunks of `chunk` with betas frozen, each frame an independent vmapped optimisation.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from apu_jax.body import BodyModel, ShapedBody, axis_angle_to_matrix, shape_body
from apu_jax.body.model import default_params, full_pose_matrices, pose_body
from apu_jax.mocap.skeletons import NUM_BODY_JOINTS, SMPLX_BODY_JOINTS, SMPLX_BODY_PARENTS, MocapTargets

NUM_SKELETON_JOINTS = 55
NUM_POINTS = 76  # skeleton joints (55) + extra vertex joints (21): output joints 0–75 of apu_jax.forward


@struct.dataclass
class RetargetConfig:
    """Loss weights and optimiser settings (numbers traced, iteration counts static)."""

    joint_weights: jax.Array  # (22,) weight of each SMPL-X body joint's position term, m⁻²
    bone_weights: jax.Array  # (S,) weight of each direction term between two body joints (`BONE_PAIRS`)
    pose_weights: jax.Array  # (21,) per-joint factor on the L2 pose regulariser (times w_pose)
    w_bone: float = 1.0  # bone-direction term weight (unit vectors, dimensionless)
    w_dir: float = 0.3  # extra-direction term weight
    w_orient: float = 0.3  # segment-orientation term weight (Frobenius²)
    w_pose: float = 1e-3  # L2 pose regulariser, rad⁻²
    w_betas: float = 1e-3  # L2 shape regulariser
    learning_rate: float = 0.15  # initial Adam step size (rad, m, shape units), cosine-decayed to a tenth
    num_steps: int = struct.field(pytree_node=False, default=300)  # Adam iterations per pass
    chunk: int = struct.field(pytree_node=False, default=64)  # frames per compiled batch


# Direction terms between body joints: the 21 bones of the tree (parent → child), then two long trunk
# segments. Short spine bones, the pelvis → hip bones, the collar bones and neck → head point differently
# in different rigs at the same pose (e.g. the CC lower spine leans forward where the model's leans back), so
# they get no weight by default; the long pelvis → spine3 and spine3 → head directions agree across rigs.
BONE_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (SMPLX_BODY_PARENTS[c], c) for c in range(1, NUM_BODY_JOINTS)
) + ((0, 9), (9, 15))


def default_config(**overrides) -> RetargetConfig:
    """Our defaults. Limb joints carry the position term at full weight; spine, neck, head and collar joints,
    whose placement differs most between rigs, at 0.3. See `BONE_PAIRS` for the direction weights."""
    weights = np.ones(NUM_BODY_JOINTS, np.float32)
    for name in ("spine1", "spine2", "spine3", "neck", "head", "left_collar", "right_collar"):
        weights[SMPLX_BODY_JOINTS.index(name)] = 0.3
    bones = np.ones(len(BONE_PAIRS), np.float32)
    unreliable = ("left_hip", "right_hip", "spine1", "spine2", "spine3", "head")
    unreliable += ("left_collar", "right_collar")
    for name in unreliable:
        bones[SMPLX_BODY_JOINTS.index(name) - 1] = 0.0
    bones[SMPLX_BODY_JOINTS.index("neck") - 1] = 0.5
    # The collar's twist about its own bone is invisible in joint positions and trades off against the
    # shoulder's rotation; a stronger pull to zero keeps the arm's rotation at the shoulder, as in SMPL fits.
    pose = np.ones(NUM_BODY_JOINTS - 1, np.float32)
    for name in ("left_collar", "right_collar"):
        pose[SMPLX_BODY_JOINTS.index(name) - 1] = 30.0
    fields = {
        "joint_weights": jnp.asarray(weights),
        "bone_weights": jnp.asarray(bones),
        "pose_weights": jnp.asarray(pose),
    }
    fields.update(overrides)
    return RetargetConfig(**fields)


@struct.dataclass
class FitTargets:
    """One frame's (or, batched, a chunk's) targets as arrays."""

    joints: jax.Array  # (22, 3) mocap points, metres
    directions: jax.Array  # (D, 3) unit vectors
    orientations: jax.Array  # (O, 3, 3) world rotations


@struct.dataclass
class TargetLayout:
    """Which model points / joints the targets refer to (static structure)."""

    dir_from: tuple[int, ...] = struct.field(pytree_node=False)  # (D,) output-joint index of each start
    dir_to: tuple[int, ...] = struct.field(pytree_node=False)  # (D,) output-joint index of each end
    orient_joint: tuple[int, ...] = struct.field(pytree_node=False)  # (O,) SMPL-X body joint index


def _unit(v: jax.Array) -> jax.Array:
    """Unit vectors along the last axis; the epsilon keeps value and gradient finite at zero length."""
    return v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True) + 1e-12)


def _world_rotations(local: jax.Array) -> jax.Array:
    """(22, 3, 3) world rotations of the body joints from their local rotations (root first)."""
    world = [local[0]]
    for j in range(1, NUM_BODY_JOINTS):
        world.append(world[SMPLX_BODY_PARENTS[j]] @ local[j])
    return jnp.stack(world)


def _points_model(model: BodyModel) -> BodyModel:
    """A copy of the model reduced to its 21 extra-joint vertices: skinning them is all the fit needs."""
    ids = model.extra_vertex_ids
    posedirs = None
    if model.posedirs is not None:
        cols = (ids[:, None] * 3 + jnp.arange(3)[None, :]).reshape(-1)
        posedirs = model.posedirs[:, cols]
    return model.replace(
        v_template=model.v_template[ids],
        shapedirs=model.shapedirs[ids],
        exprdirs=model.exprdirs[ids],
        posedirs=posedirs,
        weights=model.weights[ids],
    )


def _shaped_points(model: BodyModel, betas: jax.Array) -> ShapedBody:
    """Shaped rest joints (from the full mesh) and the shaped extra-joint vertices."""
    shaped = shape_body(model, betas, jnp.zeros((model.num_expression,), betas.dtype))
    return ShapedBody(vertices=shaped.vertices[model.extra_vertex_ids], joints=shaped.joints)


def _frame_points(
    points_model: BodyModel, shaped: ShapedBody, params: dict[str, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """Model points (76, 3) in metres and the 22 body joints' world rotations (22, 3, 3) for one frame."""
    full = default_params(points_model, params["body_pose"].dtype)
    full.update(global_orient=params["global_orient"], body_pose=params["body_pose"])
    local = full_pose_matrices(points_model, full)
    vertices, skeleton = pose_body(points_model, shaped, local)
    points = jnp.concatenate([skeleton, vertices], axis=0) + params["transl"]
    return points, _world_rotations(local[:NUM_BODY_JOINTS])


def frame_loss(
    points_model: BodyModel,
    shaped: ShapedBody,
    params: dict[str, jax.Array],
    targets: FitTargets,
    layout: TargetLayout,
    config: RetargetConfig,
) -> jax.Array:
    """Retargeting loss of one frame (scalar); see the module docstring for the terms."""
    points, world_rot = _frame_points(points_model, shaped, params)
    joints = points[:NUM_BODY_JOINTS]
    pos = jnp.sum(config.joint_weights * jnp.sum((joints - targets.joints) ** 2, axis=-1))
    parent, child = np.asarray(BONE_PAIRS).T
    bone_err = _unit(joints[child] - joints[parent]) - _unit(targets.joints[child] - targets.joints[parent])
    bone = jnp.sum(config.bone_weights * jnp.sum(bone_err**2, axis=-1))
    total = (
        pos
        + config.w_bone * bone
        + config.w_pose
        * jnp.sum(config.pose_weights * jnp.sum(params["body_pose"].reshape(-1, 3) ** 2, axis=-1))
    )
    if layout.dir_from:
        model_dirs = _unit(points[np.asarray(layout.dir_to)] - points[np.asarray(layout.dir_from)])
        total = total + config.w_dir * jnp.sum((model_dirs - targets.directions) ** 2)
    if layout.orient_joint:
        rot = world_rot[np.asarray(layout.orient_joint)]
        total = total + config.w_orient * jnp.sum((rot - targets.orientations) ** 2)
    return total


@partial(jax.jit, static_argnames=("layout",))
def _fit_chunk(
    model: BodyModel,
    params: dict[str, jax.Array],
    targets: FitTargets,
    mask: jax.Array,
    layout: TargetLayout,
    config: RetargetConfig,
    fit_betas: jax.Array,
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """Adam on one chunk of C frames. params: betas (B,), global_orient/body_pose/transl (C, ·).

    `fit_betas` is a traced 0/1 factor on the betas update, so both passes share one compiled program.
    Returns the final parameters, the loss history (num_steps,) and the final per-frame losses (C,).
    """
    points_model = _points_model(model)
    per_frame = jax.vmap(frame_loss, in_axes=(None, None, 0, 0, None, None))
    frame_keys = ("global_orient", "body_pose", "transl")

    def chunk_losses(p):
        shaped = _shaped_points(model, p["betas"])
        losses = per_frame(points_model, shaped, {k: p[k] for k in frame_keys}, targets, layout, config)
        return losses * mask

    def objective(p):
        losses = chunk_losses(p)
        # Sum over frames: each frame's optimisation is independent of the others' count; betas see all.
        return jnp.sum(losses) + config.w_betas * jnp.sum(p["betas"] ** 2), losses

    # Cosine decay to a tenth: large early steps to find the pose, small late ones to settle it.
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.num_steps, alpha=0.1)
    optimiser = optax.adam(schedule)

    def step(carry, _):
        p, state = carry
        (value, _), grads = jax.value_and_grad(objective, has_aux=True)(p)
        updates, state = optimiser.update(grads, state, p)
        updates["betas"] = updates["betas"] * fit_betas
        return (optax.apply_updates(p, updates), state), value

    (params, _), history = jax.lax.scan(step, (params, optimiser.init(params)), None, length=config.num_steps)
    return params, history, chunk_losses(params)


@jax.jit
def body_joints(model: BodyModel, betas: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """(F, 22, 3) posed body joints in metres for per-frame `global_orient`, `body_pose`, `transl` (F, ·)."""
    points_model = _points_model(model)
    shaped = _shaped_points(model, betas)
    return jax.vmap(lambda p: _frame_points(points_model, shaped, p)[0][:NUM_BODY_JOINTS])(params)


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotation R (3, 3) minimising Σ‖R s_i − t_i‖² for centred point sets (N, 3)."""
    u, _, vt = np.linalg.svd(target.T @ source)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _rotation_to_axis_angle(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) → (..., 3) axis-angle (numpy, for initialisation only; angles below π)."""
    cos = np.clip((np.trace(rot, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.stack(
        [rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0], rot[..., 1, 0] - rot[..., 0, 1]],
        -1,
    )
    sin = np.sin(angle)
    scale = np.where(sin > 1e-6, angle / np.maximum(2.0 * sin, 1e-12), 0.5)
    return axis * scale[..., None]


_TORSO = [SMPLX_BODY_JOINTS.index(n) for n in ("pelvis", "left_hip", "right_hip", "spine3", "neck")]
_TORSO += [SMPLX_BODY_JOINTS.index(n) for n in ("left_shoulder", "right_shoulder")]


def initial_frame_params(rest_joints: np.ndarray, mocap_joints: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame global orientation by Kabsch on torso joints and translation that puts the pelvis in place.

    Args:
      rest_joints: (22, 3) the model's rest body joints (betas applied), metres.
      mocap_joints: (F, 22, 3) targets.
    Returns:
      global_orient (F, 3), body_pose (F, 63) zeros, transl (F, 3), float32.
    """
    src = rest_joints[_TORSO] - rest_joints[_TORSO].mean(0)
    rots = []
    for frame in mocap_joints:
        tgt = frame[_TORSO] - frame[_TORSO].mean(0)
        rots.append(_kabsch(src, tgt))
    rots = np.stack(rots)
    transl = mocap_joints[:, 0] - rest_joints[0]  # root rotation acts about the pelvis joint
    return {
        "global_orient": _rotation_to_axis_angle(rots).astype(np.float32),
        "body_pose": np.zeros((len(mocap_joints), 63), np.float32),
        "transl": transl.astype(np.float32),
    }


@dataclasses.dataclass
class RetargetResult:
    """Fitted SMPL-X-layout parameters for F frames of one clip, plus fit diagnostics."""

    global_orient: np.ndarray  # (F, 3) axis-angle, radians, world frame of the file (Y up)
    body_pose: np.ndarray  # (F, 63) axis-angle of body joints 1–21, radians
    transl: np.ndarray  # (F, 3) metres
    betas: np.ndarray  # (B,) shared shape coefficients
    joint_error_mm: np.ndarray  # (F, 22) distance between model joints and their mocap points, mm
    frames: np.ndarray  # (F,) frame indices into the file
    seconds: float  # wall time of the fit


def _layout(targets: MocapTargets) -> TargetLayout:
    smap = targets.skeleton
    return TargetLayout(
        dir_from=tuple(d[0] for d in smap.directions),
        dir_to=tuple(d[1] for d in smap.directions),
        orient_joint=tuple(o[0] for o in smap.orientations),
    )


def _chunk_targets(targets: MocapTargets, idx: np.ndarray) -> FitTargets:
    return FitTargets(
        joints=jnp.asarray(targets.joints[idx], jnp.float32),
        directions=jnp.asarray(targets.directions[idx], jnp.float32),
        orientations=jnp.asarray(targets.orientations[idx], jnp.float32),
    )


def _padded(idx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad an index list to `size` by repeating its last entry; the mask marks real entries."""
    mask = np.zeros(size, np.float32)
    mask[: len(idx)] = 1.0
    return np.concatenate([idx, np.full(size - len(idx), idx[-1])]), mask


def retarget(
    model: BodyModel,
    targets: MocapTargets,
    config: RetargetConfig | None = None,
    betas: np.ndarray | None = None,
) -> RetargetResult:
    """Fit SMPL-X-layout parameters to every frame of `targets`.

    Args:
      model: the body model (e.g. `apu_jax.load_model("default")`).
      targets: from `apu_jax.mocap.skeletons.mocap_targets`.
      config: weights and optimiser settings (`default_config()` when None).
      betas: (B,) fixed shape; when None, betas are fitted with the poses of a clip of at most
        `config.chunk` frames, or on `config.chunk` evenly spaced frames of a longer clip first.
    Returns:
      `RetargetResult` with per-frame parameters and per-joint errors in millimetres.
    """
    config = config or default_config()
    start = time.perf_counter()
    num_frames = targets.joints.shape[0]
    layout = _layout(targets)
    chunk = config.chunk
    zero_betas = jnp.zeros((model.num_betas,), jnp.float32)

    def init(idx: np.ndarray, shape_betas: jax.Array) -> dict[str, jax.Array]:
        rest = np.asarray(shape_body(model, shape_betas, jnp.zeros((model.num_expression,))).joints)
        p = initial_frame_params(rest[:NUM_BODY_JOINTS], targets.joints[idx])
        return {"betas": shape_betas, **{k: jnp.asarray(v) for k, v in p.items()}}

    def fit(idx: np.ndarray, mask: np.ndarray, shape_betas: jax.Array, fit_betas: float) -> dict:
        p = init(idx, shape_betas)
        fitted, _, _ = _fit_chunk(
            model, p, _chunk_targets(targets, idx), jnp.asarray(mask), layout, config, fit_betas
        )
        return fitted

    # Betas: fitted together with the poses when the clip fits in one chunk, else on evenly spaced frames.
    first = None
    if betas is None:
        if num_frames <= chunk:
            first = fit(*_padded(np.arange(num_frames), chunk), zero_betas, 1.0)
            shape_betas = first["betas"]
        else:
            sample = np.unique(np.linspace(0, num_frames - 1, chunk).round().astype(np.int64))
            shape_betas = fit(*_padded(sample, chunk), zero_betas, 1.0)["betas"]
    else:
        shape_betas = jnp.asarray(betas, jnp.float32)

    out = {k: [] for k in ("global_orient", "body_pose", "transl")}
    errors = []
    for begin in range(0, num_frames, chunk):
        real = np.arange(begin, min(begin + chunk, num_frames))
        fitted = first if first is not None else fit(*_padded(real, chunk), shape_betas, 0.0)
        frame_params = {k: fitted[k] for k in out}
        joints = np.asarray(body_joints(model, shape_betas, frame_params))[: len(real)]
        errors.append(1000.0 * np.linalg.norm(joints - targets.joints[real], axis=-1))
        for k in out:
            out[k].append(np.asarray(fitted[k])[: len(real)])
    return RetargetResult(
        **{k: np.concatenate(v) for k, v in out.items()},
        betas=np.asarray(shape_betas),
        joint_error_mm=np.concatenate(errors),
        frames=np.asarray(targets.frames),
        seconds=time.perf_counter() - start,
    )


def world_rotations(global_orient: np.ndarray, body_pose: np.ndarray) -> np.ndarray:
    """(F, 22, 3, 3) world rotations of the body joints for fitted parameters (diagnostics)."""
    aa = jnp.concatenate([jnp.asarray(global_orient)[:, None], jnp.asarray(body_pose).reshape(-1, 21, 3)], 1)
    return np.asarray(jax.vmap(_world_rotations)(axis_angle_to_matrix(aa)))


def retarget_bvh(
    model: BodyModel,
    path: str,
    frames: np.ndarray | None = None,
    config: RetargetConfig | None = None,
    convention: str | None = None,
    unit_scale: float | None = None,
    betas: np.ndarray | None = None,
) -> RetargetResult:
    """Read a BVH file (any of the three conventions) and retarget the selected frames (default: all).

    See `retarget`; `convention` and `unit_scale` override the detection from joint names.
    """
    from apu_jax.mocap.bvh import read_bvh
    from apu_jax.mocap.skeletons import mocap_targets

    targets = mocap_targets(read_bvh(path), frames=frames, convention=convention, unit_scale=unit_scale)
    return retarget(model, targets, config, betas=betas)
