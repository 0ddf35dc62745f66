"""BVH reader, forward kinematics, skeleton name maps and retargeting to the body model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apu_jax.mocap.bvh import BvhError, euler_to_matrix, forward_kinematics, parse_bvh, read_bvh
from apu_jax.mocap.skeletons import (
    CGSPEED_UNIT_M,
    SKELETON_MAPS,
    SMPLX_BODY_JOINTS,
    detect_convention,
    mocap_targets,
)

DATA = Path(__file__).parent / "data"
EXCERPTS = {
    "cc": DATA / "cmu_cc_007_01_excerpt.bvh",
    "asf": DATA / "cmu_asf_18_01_excerpt.bvh",
    "mobu": DATA / "cmu_mobu_19_01_excerpt.bvh",
}

# A root with an unusual channel order and a child whose two rotations do not commute.
TINY = """HIERARCHY
ROOT root
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT arm
  {
    OFFSET 0 10 0
    CHANNELS 2 Xrotation Zrotation
    End Site
    {
      OFFSET 5 0 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
1 2 3 90 0 0 90 90
0 0 0 0 0 0 0 0
"""


def test_tiny_bvh_forward_kinematics_by_hand():
    bvh = parse_bvh(TINY)
    assert bvh.names == ("root", "arm", "arm/End")
    assert list(bvh.parents) == [-1, 0, 1]
    assert bvh.num_frames == 2 and bvh.frame_time == 0.5
    pos, rot = forward_kinematics(bvh, scale=0.01)
    # Frame 0: root at (1,2,3), Rz(90°) maps +Y to −X, so the arm pivot is (1,2,3) + (−10,0,0).
    np.testing.assert_allclose(pos[0, 1], [-0.09, 0.02, 0.03], atol=1e-12)
    # Arm: R = Rz(90) · Rx(90) · Rz(90) (channels applied in file order).
    # (5,0,0) → Rz → (0,5,0) → Rx → (0,0,5) → root Rz leaves (0,0,5).
    # The reversed order would give (−5,0,0) instead.
    np.testing.assert_allclose(pos[0, 2], [-0.09, 0.02, 0.08], atol=1e-12)
    np.testing.assert_allclose(rot[0, 2] @ [1.0, 0, 0], [0, 0, 1.0], atol=1e-12)
    # Frame 1 is the rest pose: offsets simply add up.
    np.testing.assert_allclose(pos[1], [[0, 0, 0], [0, 0.1, 0], [0.05, 0.1, 0]], atol=1e-12)
    rest, _ = forward_kinematics(bvh, scale=0.01, rest=True)
    np.testing.assert_allclose(rest[0], pos[1], atol=1e-12)


def test_euler_to_matrix_matches_elementary_rotations():
    rz = euler_to_matrix(np.array([90.0]), (2,))
    np.testing.assert_allclose(rz @ [1.0, 0, 0], [0, 1, 0], atol=1e-12)
    rx = euler_to_matrix(np.array([90.0]), (0,))
    np.testing.assert_allclose(rx @ [0, 1.0, 0], [0, 0, 1], atol=1e-12)
    ry = euler_to_matrix(np.array([90.0]), (1,))
    np.testing.assert_allclose(ry @ [0, 0, 1.0], [1, 0, 0], atol=1e-12)
    zyx = euler_to_matrix(np.array([30.0, 40.0, 50.0]), (2, 1, 0))
    np.testing.assert_allclose(zyx, rz_(30) @ ry_(40) @ rx_(50), atol=1e-12)


def rz_(deg):
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def ry_(deg):
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rx_(deg):
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


_ONE_JOINT = "HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 1 %s\n}\nMOTION\nFrames: %d\nFrame Time: 1\n%s"


@pytest.mark.parametrize(
    "text, message",
    [
        ("MOTION", "HIERARCHY"),
        (_ONE_JOINT % ("Wrotation", 0, ""), "channel"),
        (_ONE_JOINT % ("Xrotation", 2, "3"), "values"),
        ("HIERARCHY\nROOT a\n{\nOFFSET 0 0\n", "OFFSET"),
    ],
)
def test_malformed_bvh_raises(text, message):
    with pytest.raises(BvhError, match=message):
        parse_bvh(text)


def test_read_bvh_missing_file(tmp_path):
    with pytest.raises(BvhError, match="cannot read"):
        read_bvh(tmp_path / "nope.bvh")


@pytest.mark.parametrize("convention", ["cc", "asf", "mobu"])
def test_excerpts_parse_detect_and_are_in_metres(convention):
    bvh = read_bvh(EXCERPTS[convention])
    assert detect_convention(bvh.names) == convention
    assert bvh.num_frames == (12 if convention == "cc" else 30)
    targets = mocap_targets(bvh)
    joints = targets.joints
    assert joints.shape == (bvh.num_frames, 22, 3)
    j = {name: joints[:, i] for i, name in enumerate(SMPLX_BODY_JOINTS)}
    # Adult proportions in metres, Y up: thigh and shin 0.35–0.55 m, pelvis 0.7–1.2 m above the ankles.
    thigh = np.linalg.norm(j["left_knee"] - j["left_hip"], axis=-1)
    shin = np.linalg.norm(j["left_ankle"] - j["left_knee"], axis=-1)
    assert np.all((thigh > 0.35) & (thigh < 0.55)), thigh
    assert np.all((shin > 0.35) & (shin < 0.55)), shin
    height = j["pelvis"][:, 1] - 0.5 * (j["left_ankle"][:, 1] + j["right_ankle"][:, 1])
    assert np.all((height > 0.7) & (height < 1.2)), height
    assert np.all(j["head"][:, 1] > j["neck"][:, 1]) and np.all(j["neck"][:, 1] > j["pelvis"][:, 1])
    # Left and right are not swapped: the hip and shoulder left-right axes agree, and the subject's left
    # is to the left of their facing direction (toes ahead of the ankles).
    hips = j["left_hip"] - j["right_hip"]
    shoulders = j["left_shoulder"] - j["right_shoulder"]
    assert np.all(np.sum(hips * shoulders, -1) > 0)
    forward = 0.5 * (j["left_foot"] - j["left_ankle"] + j["right_foot"] - j["right_ankle"])
    up = np.array([0.0, 1.0, 0.0])
    assert np.all(np.sum(np.cross(up, forward) * hips, -1) > 0)  # up × forward points to the left
    np.testing.assert_allclose(np.linalg.norm(targets.directions, axis=-1), 1.0, atol=1e-9)


def test_cgspeed_unit_and_rest_orientations():
    bvh = read_bvh(EXCERPTS["asf"])
    assert SKELETON_MAPS["asf"].unit_scale == CGSPEED_UNIT_M == SKELETON_MAPS["mobu"].unit_scale
    raw, _ = forward_kinematics(bvh, 1.0, frames=[0])
    metres, _ = forward_kinematics(bvh, CGSPEED_UNIT_M, frames=[0])
    np.testing.assert_allclose(metres, raw * CGSPEED_UNIT_M)
    # Orientation targets are relative to the zero-channel rest pose: identity when evaluated on it.
    zero = parse_bvh(EXCERPTS["asf"].read_text())
    zero.motion[:] = 0.0
    rest_targets = mocap_targets(zero, frames=[0])
    identity = np.broadcast_to(np.eye(3), (7, 3, 3))
    np.testing.assert_allclose(rest_targets.orientations[0], identity, atol=1e-12)


@pytest.mark.parametrize("convention", ["cc", "asf", "mobu"])
def test_name_maps_cover_all_22_body_joints(convention):
    smap = SKELETON_MAPS[convention]
    assert len(smap.joints) == 22 == len(SMPLX_BODY_JOINTS)
    names = set(read_bvh(EXCERPTS[convention]).names)
    for blend in smap.joints:
        assert blend and abs(sum(w for _, w in blend) - 1.0) < 1e-9
        assert all(n in names for n, _ in blend)
    assert smap.node_names() <= names
    # Left/right symmetric: every left joint's mocap names have their mirrored counterpart on the right.
    for i, name in enumerate(SMPLX_BODY_JOINTS):
        if name.startswith("left_"):
            right = smap.joints[SMPLX_BODY_JOINTS.index("right_" + name[5:])]
            assert len(right) == len(smap.joints[i]) and right != smap.joints[i]


def test_unknown_skeleton_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown mocap skeleton"):
        detect_convention(["Hips", "Spine", "Foo"])


# --- retargeting (round trip through the body model)

ALL_BONES = np.ones(23, np.float32)  # len(retarget.BONE_PAIRS)


@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory):
    import apu_jax
    from apu_jax.body.synthetic import write_synthetic_smplx

    path = tmp_path_factory.mktemp("model") / "synthetic_smplx.npz"
    write_synthetic_smplx(path, seed=1)
    return apu_jax.load_model(path)


def test_initial_global_orient_recovers_a_known_rotation():
    from scipy.spatial.transform import Rotation

    from apu_jax.mocap.retarget import initial_frame_params

    rng = np.random.default_rng(0)
    rest = rng.normal(scale=0.3, size=(22, 3))
    aa = np.array([[0.3, -1.2, 0.5], [0.0, 2.5, 0.0]])
    rots = Rotation.from_rotvec(aa).as_matrix()
    shift = np.array([1.0, 0.9, -2.0])
    mocap = np.einsum("fij,nj->fni", rots, rest - rest[0]) + rest[0] + shift
    init = initial_frame_params(rest, mocap)
    np.testing.assert_allclose(init["global_orient"], aa, atol=1e-5)
    np.testing.assert_allclose(init["transl"], np.broadcast_to(shift, (2, 3)), atol=1e-6)


@pytest.mark.slow
def test_retarget_round_trip_recovers_joints(synthetic_model):
    """Targets rendered from known parameters of the model itself are fitted to sub-millimetre error."""
    import jax.numpy as jnp

    import apu_jax
    from apu_jax.mocap.retarget import BONE_PAIRS, default_config, retarget
    from apu_jax.mocap.skeletons import MocapTargets

    model = synthetic_model
    rng = np.random.default_rng(0)
    num = 6
    pose = rng.normal(scale=0.25, size=(num, 63)).astype(np.float32)
    orient = rng.normal(scale=0.5, size=(num, 3)).astype(np.float32)
    transl = rng.normal(scale=1.0, size=(num, 3)).astype(np.float32)
    betas = (0.5 * rng.normal(size=model.num_betas)).astype(np.float32)
    params = {"global_orient": orient, "body_pose": pose, "transl": transl, "betas": jnp.asarray(betas)}
    out = apu_jax.forward(model, **params)
    points = np.asarray(out["joints"], np.float64)
    smap = SKELETON_MAPS["cc"]  # any layout: its model-side indices are what the fit uses
    dirs = np.stack([points[:, b] - points[:, a] for a, b, _, _ in smap.directions], axis=1)
    targets = MocapTargets(
        joints=points[:, :22],
        directions=dirs / np.linalg.norm(dirs, axis=-1, keepdims=True),
        orientations=np.zeros((num, 0, 3, 3)),
        skeleton=smap,
        frames=np.arange(num),
    )
    # Every direction term on: the default zero weights guard against rig differences, which a model
    # fitted to itself does not have, and they slow convergence of the spine joints.
    config = default_config(num_steps=400, chunk=8, w_pose=1e-6, w_betas=1e-6, bone_weights=ALL_BONES)
    result = retarget(model, targets, config)
    assert result.body_pose.shape == (num, 63) and result.joint_error_mm.shape == (num, 22)
    assert len(ALL_BONES) == len(BONE_PAIRS)
    assert result.joint_error_mm.mean() < 2.0, result.joint_error_mm.mean(0)
    # With the true betas given, the fit reaches the same joints without fitting shape.
    fixed = retarget(model, targets, config, betas=betas)
    assert fixed.joint_error_mm.max() < 3.0, fixed.joint_error_mm.mean(1)
    np.testing.assert_allclose(fixed.betas, betas)


# --- GMM build


def test_mirror_body_pose_reflects_rotations_and_swaps_sides():
    from scipy.spatial.transform import Rotation

    from apu_jax.mocap.build_gmm import mirror_body_pose

    rng = np.random.default_rng(0)
    pose = rng.normal(scale=0.6, size=(4, 63))
    mirrored = mirror_body_pose(pose)
    np.testing.assert_allclose(mirror_body_pose(mirrored), pose)  # an involution
    reflect = np.diag([-1.0, 1.0, 1.0])
    # Body-pose joint k is SMPL-X joint k+1; left elbow 18 ↔ right elbow 19, spine1 3 stays.
    for src, dst in ((18, 19), (19, 18), (3, 3), (1, 2), (15, 15)):
        r_src = Rotation.from_rotvec(pose[:, 3 * (src - 1) : 3 * src]).as_matrix()
        r_dst = Rotation.from_rotvec(mirrored[:, 3 * (dst - 1) : 3 * dst]).as_matrix()
        np.testing.assert_allclose(r_dst, reflect @ r_src @ reflect, atol=1e-12)


@pytest.mark.slow
def test_build_gmm_small(tmp_path, synthetic_model, monkeypatch):
    """The recipe end to end on two tiny trials: split, frame counts, mirroring, file and meta."""
    import apu_jax
    from apu_jax.fit.gmm import load_gmm, read_gmm_npz
    from apu_jax.mocap.build_gmm import CMU_ACKNOWLEDGEMENT, build_gmm
    from apu_jax.mocap.retarget import default_config

    data = tmp_path / "single"
    for trial in ("901_01", "901_02"):
        (data / "901").mkdir(parents=True, exist_ok=True)
        (data / "901" / f"{trial}.bvh").write_text(EXCERPTS["cc"].read_text())
    monkeypatch.setattr(apu_jax, "load_model", lambda name: synthetic_model)
    out = tmp_path / "gmm.npz"
    common = dict(
        model="synthetic",
        num_components=1,
        stride=1,
        heldout_every=2,
        heldout_offset=1,
        max_error_mm=1e9,
        cache_path=tmp_path / "poses.npz",
    )
    config = default_config(num_steps=400, chunk=8, w_pose=1e-6, w_betas=1e-6, bone_weights=ALL_BONES)
    report = build_gmm(out, data, reg_covar=1e-3, config=config, **common)
    assert report["train_trials"] == ["901_01"] and report["heldout_trials"] == ["901_02"]
    assert report["num_train_frames"] == 11 and report["num_heldout_frames"] == 11  # frame 0 dropped
    assert report["num_fit_poses"] == 22  # mirrored copies added
    assert report["subjects"] == ["901"]
    # Same clip on both sides of the split: held-out and training likelihoods agree.
    np.testing.assert_allclose(report["heldout_mean_log_likelihood"], report["train_mean_log_likelihood"])
    arrays, meta = read_gmm_npz(out)
    assert arrays["means"].shape == (1, 63) and meta["acknowledgement"] == CMU_ACKNOWLEDGEMENT
    assert load_gmm(out).means.shape == (1, 63)
    # A rebuild with a different regulariser reuses the cached retargeting and changes only the mixture.
    again = build_gmm(out, data, reg_covar=1e-2, **common)
    assert again["retarget_seconds"] == report["retarget_seconds"] and again["reg_covar"] == 1e-2
    assert again["train_mean_log_likelihood"] < report["train_mean_log_likelihood"]
