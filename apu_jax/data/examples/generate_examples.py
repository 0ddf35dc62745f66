"""Regenerate the bundled example manifest: SYNTHETIC images of posed bodies of the default model.

We have no real photographs we may ship, so the examples are honest renderings: people posed by hand
(arms placed with a few steps of gradient-based inverse kinematics so that the touching hands really touch),
rendered as flat-shaded silhouettes with the project's NumPy rasteriser on a plain background. From each
ground-truth scene we derive what the real detectors would give:

- 2D keypoints: the model's BODY-25 joints projected with the default camera, plus 1.5 px Gaussian noise,
  confidences 0.80–0.95; written as OpenPose JSON (`body25`) or as ViTPose COCO-WholeBody JSON (133
  keypoints, hands and face left at confidence 0) to exercise both importers;
- "BEV" output: a flat npz with BEV's keys (`smpl_thetas`, `smpl_betas`, `cam_trans`, `joints`,
  `pj2d_org`) holding a perturbed version of the truth (pose noise, the contact arm pulled back,
  translation jitter; `joints` / `cam_trans` of the true shape, `smpl_betas` zero because BEV's SMPL-A
  shape space is not ours): an estimate, not the answer; people listed in a different order than in the
  keypoint file, as real detectors do;
- `answers.jsonl`: hand-written LVLM-style answers for `--provider replay` (written by us from the scene
  construction, NOT recorded from a real model), including one left/right mistake that the laterality
  denoiser corrects and two samples that disagree.

Run: `python -m apu_jax.data.examples.generate_examples` (deterministic; needs the default model).
"""

from __future__ import annotations

import argparse
import json
import math
from functools import partial
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax

from apu_jax.body import forward, load_model
from apu_jax.regions.keypoints import MODEL_TO_BODY25, MODEL_TO_COCO23
from apu_jax.viz.raster import Mesh, render_meshes

HERE = Path(__file__).resolve().parent
SIZE = (480, 360)  # W, H
FOCAL = (max(SIZE) / 2.0) / math.tan(math.radians(30.0))
PRINCIPAL = (SIZE[0] / 2.0, SIZE[1] / 2.0)
# Joint indices (SMPL-X order): shoulders, elbows, wrists, middle-finger knuckles.
L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI, L_MID, R_MID = 16, 17, 18, 19, 20, 21, 28, 43
COLOURS = [(0.80, 0.70, 0.62), (0.62, 0.70, 0.80), (0.70, 0.78, 0.62)]


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _aa(matrix: np.ndarray) -> np.ndarray:
    vec, _ = cv2.Rodrigues(matrix)
    return vec.reshape(3)


def standing_pose(yaw: float, arms_down: float = 1.2) -> dict[str, np.ndarray]:
    """Upright in the OpenCV camera frame (x right, y down), turned by `yaw` about the vertical (rad)."""
    body = np.zeros(63)
    body[(L_SHO - 1) * 3 + 2] = -arms_down  # lower the T-pose arms about the body's forward axis
    body[(R_SHO - 1) * 3 + 2] = arms_down
    return {"global_orient": _aa(_rot("y", yaw) @ _rot("x", math.pi)), "body_pose": body}


def _palm(joints: jnp.ndarray, side: str) -> jnp.ndarray:
    wri, mid = (L_WRI, L_MID) if side == "left" else (R_WRI, R_MID)
    return 0.5 * (joints[wri] + joints[mid])


@partial(jax.jit, static_argnames=("side", "steps"))
def _solve_arm(model, base: dict, cols: jnp.ndarray, target: jnp.ndarray, side: str, steps: int) -> tuple:
    def loss(delta):
        body = base["body_pose"].at[cols].add(delta)
        joints = forward(model, **{**base, "body_pose": body})["joints"]
        return jnp.sum((_palm(joints, side) - target) ** 2) + 1e-4 * jnp.sum(delta**2)

    opt = optax.adam(0.03)

    def step(carry, _):
        delta, state = carry
        value, g = jax.value_and_grad(loss)(delta)
        updates, state = opt.update(g, state)
        return (optax.apply_updates(delta, updates), state), value

    delta0 = jnp.zeros(cols.shape[0])
    (delta, _), values = jax.lax.scan(step, (delta0, opt.init(delta0)), None, length=steps)
    return delta, values[-1]


def reach(model, person: dict, side: str, target: np.ndarray, steps: int = 300) -> dict:
    """Inverse kinematics: bend one arm (collar, shoulder, elbow, wrist) until its palm reaches `target`."""
    joints_idx = [13, L_SHO, L_ELB, L_WRI] if side == "left" else [14, R_SHO, R_ELB, R_WRI]
    cols = jnp.asarray(np.concatenate([np.arange((j - 1) * 3, j * 3) for j in joints_idx]))
    base = {k: jnp.asarray(v, jnp.float32) for k, v in person.items()}
    delta, value = _solve_arm(model, base, cols, jnp.asarray(target, jnp.float32), side, steps)
    out = dict(person)
    out["body_pose"] = np.asarray(base["body_pose"].at[cols].add(delta))
    print(f"  reach {side}: residual {math.sqrt(float(value)) * 100:.1f} cm")
    return out


def joints_of(model, person: dict) -> np.ndarray:
    return np.asarray(forward(model, **{k: jnp.asarray(v, jnp.float32) for k, v in person.items()})["joints"])


def project(points: np.ndarray) -> np.ndarray:
    return points[..., :2] / points[..., 2:3] * FOCAL + np.asarray(PRINCIPAL)


def render(model, people: list[dict], path: Path) -> None:
    h, w = SIZE[1], SIZE[0]
    rows = np.linspace(0, 1, h)[:, None, None]
    background = (
        np.array([214, 218, 224]) * (1 - 0.25 * rows) + np.array([40, 36, 30]) * 0.25 * rows
    ) * np.ones((h, w, 3))
    floor = np.arange(h) > 0.72 * h
    background[floor] = background[floor] * 0.82
    meshes = []
    for i, person in enumerate(people):
        out = forward(model, **{k: jnp.asarray(v, jnp.float32) for k, v in person.items()})
        meshes.append(Mesh(np.asarray(out["vertices"]), np.asarray(model.faces), np.asarray(COLOURS[i % 3])))
    rgb = render_meshes(background.astype(np.uint8), meshes, (FOCAL, FOCAL), PRINCIPAL)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])


def detections(model, people: list[dict], rng: np.random.Generator) -> np.ndarray:
    """(N, 127, 3) model joints → noisy pixel keypoints with confidences, all 127 (subset later)."""
    out = []
    for person in people:
        j = joints_of(model, person)
        xy = project(j) + rng.normal(0.0, 1.5, size=(len(j), 2))
        conf = rng.uniform(0.80, 0.95, size=(len(j), 1))
        out.append(np.concatenate([xy, conf], axis=1))
    return np.asarray(out)


def bev_estimate(model, people: list[dict], contact_arms: list[str | None], rng: np.random.Generator) -> dict:
    """A BEV-like estimate of the people: noisy pose, contact arm pulled back, jittered position."""
    thetas, cams, joints3d, pj2d = [], [], [], []
    for person, arm in zip(people, contact_arms, strict=True):
        body = person["body_pose"] + rng.normal(0.0, 0.05, size=63)
        if arm is not None:  # BEV rarely gets the touching arm right: lower it by ~0.35 rad
            j = L_SHO if arm == "left" else R_SHO
            body[(j - 1) * 3 + 2] += -0.35 if arm == "left" else 0.35
        # BEV sees the real person: its 3D joints and root come from the true shape (its SMPL-A betas are
        # not ours, so the file's smpl_betas stay 0 and the importer approximates the shape).
        transl = person["transl"] + rng.normal(0.0, 0.03, size=3)
        est = {
            "global_orient": person["global_orient"],
            "body_pose": body,
            "betas": person["betas"],
            "transl": transl,
        }
        j = joints_of(model, est)
        thetas.append(np.concatenate([est["global_orient"], body, np.zeros(6)]))
        cams.append(j[0])  # BEV's cam_trans is the root position in the camera frame
        smpl24 = np.concatenate([j[:22], j[[25, 40]]])  # 22 body joints + index knuckles for SMPL's hands
        joints3d.append(smpl24)
        pj2d.append(project(smpl24))
    n = len(people)
    return {
        "smpl_thetas": np.asarray(thetas, np.float32),
        "smpl_betas": np.zeros((n, 11), np.float32),
        "cam_trans": np.asarray(cams, np.float32),
        "joints": np.asarray(joints3d, np.float32),
        "pj2d_org": np.asarray(pj2d, np.float32),
    }


def openpose_json(kp127: np.ndarray) -> dict:
    people = []
    for person in kp127:
        body25 = person[np.asarray(MODEL_TO_BODY25)]
        people.append({"person_id": [-1], "pose_keypoints_2d": np.round(body25, 2).ravel().tolist()})
    return {"version": 1.3, "people": people}


def vitpose_json(kp127: np.ndarray) -> list[dict]:
    out = []
    for person in kp127:
        whole = np.zeros((133, 3))
        whole[:23] = person[np.asarray(MODEL_TO_COCO23)]  # body + feet; face/hands left empty (conf 0)
        lo, hi = whole[:23, :2].min(0), whole[:23, :2].max(0)
        out.append({"bbox": np.round([*lo, *hi, 0.99], 2).tolist(), "keypoints": np.round(whole, 2).tolist()})
    return out


def scenes(model) -> list[dict]:
    """The three example scenes (truth), built deterministically."""
    betas = np.zeros(int(model.num_betas))
    shape_a, shape_b, shape_c = betas.copy(), betas.copy(), betas.copy()
    if len(betas) >= 2:
        shape_a[:2], shape_b[:2], shape_c[:2] = (0.8, 0.3), (-0.6, -0.2), (0.2, 0.6)

    def person(x: float, z: float, yaw: float, shape: np.ndarray) -> dict:
        p = standing_pose(yaw)
        p["betas"] = shape
        p["transl"] = np.zeros(3)
        pelvis = joints_of(model, p)[0]
        p["transl"] = np.array([x, 0.05, z]) - pelvis  # pelvis at (x, 5 cm below the optical axis, z)
        return p

    out = []
    # 1. A puts their LEFT hand on B's RIGHT shoulder (both face the camera).
    a, b = person(-0.42, 3.6, 0.0, shape_a), person(0.32, 3.7, 0.0, shape_b)
    target = joints_of(model, b)[R_SHO] + np.array([0.02, -0.07, 0.0])  # on top of the shoulder
    a = reach(model, a, "left", target)
    out.append(
        {"id": "ex_hand_on_shoulder", "label": "hand on shoulder", "people": [a, b], "arms": ["left", None]}
    )
    # 2. Handshake: A and B turned towards each other, right hands meeting between them.
    a, b = person(-0.38, 3.6, -0.9, shape_b), person(0.38, 3.6, 0.9, shape_c)
    meet = 0.5 * (joints_of(model, a)[0] + joints_of(model, b)[0]) + np.array([0.0, -0.05, -0.12])
    a = reach(model, a, "right", meet + np.array([-0.03, 0.0, 0.0]))
    b = reach(model, b, "right", meet + np.array([0.03, 0.0, 0.0]))
    out.append({"id": "ex_handshake", "label": "handshake", "people": [a, b], "arms": ["right", "right"]})
    # 3. Three people: a high five between the two on the right; the one on the left stands apart.
    c = person(-1.05, 3.9, 0.3, shape_c)
    a, b = person(0.02, 3.7, -0.5, shape_a), person(0.62, 3.7, 0.5, shape_b)
    top = 0.5 * (joints_of(model, a)[15] + joints_of(model, b)[15]) + np.array([0.0, -0.1, 0.0])
    a = reach(model, a, "left", top + np.array([-0.02, 0.0, 0.0]))
    b = reach(model, b, "right", top + np.array([0.02, 0.0, 0.0]))
    out.append({"id": "ex_three_people", "label": None, "people": [c, a, b], "arms": [None, "left", "right"]})
    return out


# Hand-written answers (see the module docstring): pair ids use the keypoint-file person indices.
REPLAY = [
    ("ex_hand_on_shoulder:0-1", 0, "A rests a hand on B's shoulder while they stand side by side.",
     # a deliberate left/right mix-up (image frame instead of body frame): the denoiser fixes it
     [("hand", "right", "shoulder", "left", 0.9)]),
    ("ex_handshake:0-1", 0, "Two people shake hands.", [("hand", "right", "hand", "right", 0.95)]),
    ("ex_handshake:0-1", 1, "Two people greet each other with a handshake.",
     [("hand", "right", "hand", "right", 0.9), ("forearm", "right", "forearm", "right", 0.3)]),
    ("ex_three_people:1-2", 0, "Two people give each other a high five.",
     [("hand", "left", "hand", "right", 0.85)]),
]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Regenerate the synthetic example manifest.")
    ap.add_argument("--model", default="default", help="body model (the examples ship with 'default')")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    args = ap.parse_args(argv)
    write_examples(load_model(args.model), args.out)


def write_examples(model, here: Path) -> None:
    """Write images, keypoints, BEV files, the manifest and the replay answers into `here`."""
    rng = np.random.default_rng(7)
    (here / "images").mkdir(exist_ok=True)
    (here / "keypoints").mkdir(exist_ok=True)
    (here / "bev").mkdir(exist_ok=True)
    lines = []
    for k, scene in enumerate(scenes(model)):
        sid, people = scene["id"], scene["people"]
        print(sid)
        render(model, people, here / "images" / f"{sid}.jpg")
        kp = detections(model, people, rng)
        if k == 1:
            kp_file = f"keypoints/{sid}.vitpose.json"
            (here / kp_file).write_text(json.dumps(vitpose_json(kp)))
        else:
            kp_file = f"keypoints/{sid}.openpose.json"
            (here / kp_file).write_text(json.dumps(openpose_json(kp)))
        order = list(reversed(range(len(people))))  # BEV lists people in another order than the detector
        bev = bev_estimate(model, [people[i] for i in order], [scene["arms"][i] for i in order], rng)
        np.savez(here / "bev" / f"{sid}.npz", **bev)
        rec = {"id": sid, "image": f"images/{sid}.jpg", "keypoints": kp_file, "bev": f"bev/{sid}.npz"}
        if scene["label"]:
            rec["label"] = scene["label"]
        lines.append(json.dumps(rec))
    (here / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    replay = []
    for pair_id, sample, desc, contacts in REPLAY:
        answer = {
            "description": desc,
            "contacts": [
                {"part_a": pa, "side_a": sa, "part_b": pb, "side_b": sb, "confidence": c}
                for pa, sa, pb, sb, c in contacts
            ],
        }
        replay.append(
            json.dumps({"pair_id": pair_id, "sample": sample, "answer": answer, "source": "hand-written"})
        )
    (here / "answers.jsonl").write_text("\n".join(replay) + "\n")


if __name__ == "__main__":
    main()
