"""`apu synth`: alignment, camera transform, keypoint/init/contact noise, frame picking, determinism, CLI.

The retargeting fit (apu_jax.mocap.retarget, tested in test_mocap.py) is not rerun here: ground-truth clips
are posed from known parameters with `clip_from_params` on a small synthetic model.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from apu_jax.body import load_model
from apu_jax.body.synthetic import write_synthetic_smplx
from apu_jax.mocap import synth
from apu_jax.mocap.bvh import read_bvh
from apu_jax.mocap.skeletons import mocap_targets
from apu_jax.regions import load_regions, model_to_keypoint_indices, vocabulary_to_regions

DATA = Path(__file__).parent / "data"
ASF = DATA / "cmu_asf_18_01_excerpt.bvh"  # 18_01 frames 0–29, no T-pose
MOBU = DATA / "cmu_mobu_19_01_excerpt.bvh"  # 19_01 frames 0–29, frame 0 an added T-pose


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = write_synthetic_smplx(
        tmp_path_factory.mktemp("synth") / "syn.npz", num_vertices=3000, num_shape_dirs=10, seed=1
    )
    return load_model(path)


def _rand_params(rng, count: int, scale: float = 0.3) -> dict[str, np.ndarray]:
    return {
        "global_orient": rng.normal(0, 1.0, (count, 3)).astype(np.float32),
        "body_pose": rng.normal(0, scale, (count, 63)).astype(np.float32),
        "transl": rng.normal(0, 0.5, (count, 3)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def clip(model):
    """Six frames of two bodies facing each other, B placed so that the meshes come within ~1–30 mm."""
    rng = np.random.default_rng(4)
    frames = 6
    a = {
        "global_orient": np.zeros((frames, 3), np.float32),
        "body_pose": rng.normal(0, 0.1, (frames, 63)).astype(np.float32),
        "transl": np.zeros((frames, 3), np.float32),
    }
    b = {
        "global_orient": np.tile(np.array([0.0, np.pi, 0.0], np.float32), (frames, 1)),  # facing A
        "body_pose": rng.normal(0, 0.1, (frames, 63)).astype(np.float32),
        "transl": np.zeros((frames, 3), np.float32),
    }
    betas = [np.zeros(model.num_betas, np.float32), rng.normal(0, 0.5, model.num_betas).astype(np.float32)]
    first = synth.clip_from_params(model, [a, b], betas, np.stack([np.arange(frames)] * 2, 1))
    # Move B along z so that frame f's closest approach is gaps[f]: sphere tracing from far away (the min
    # distance is 1-Lipschitz in the offset, so stepping by d − gap never passes the first touch).
    gaps = np.array([0.001, 0.010, 0.030, 0.080, 0.120, 0.300])
    for f in range(frames):
        va, vb = first.vertices[f]
        z = 3.0
        for _ in range(500):
            d = synth.min_body_distance(va, vb + np.array([0.0, 0.0, z]))[0]
            if d - gaps[f] < 1e-5:
                break
            z -= d - gaps[f]
        b["transl"][f, 2] = z
    return synth.clip_from_params(model, [a, b], betas, np.stack([np.arange(frames)] * 2, 1))


NO_GAP = synth.SynthOptions(close_gap=False, min_change_mm=0.0)


# ------------------------------------------------------------------------------------------ alignment


def test_added_tpose_is_detected_and_frames_aligned():
    asf, mobu = (mocap_targets(read_bvh(p)) for p in (ASF, MOBU))
    assert not synth.has_added_tpose(asf)
    assert synth.has_added_tpose(mobu)
    fa, fb, info = synth.align_frames(asf, mobu)
    assert info["start_a"] == 0 and info["start_b"] == 1 and len(fa) == len(fb) == 29
    np.testing.assert_array_equal(fb, fa + 1)  # frame k of 18_01 is frame k+1 of 19_01 (the pair README)
    # An explicit offset gives the same, and a negative one shifts A instead.
    fa2, fb2, _ = synth.align_frames(asf, mobu, offset=1)
    np.testing.assert_array_equal(fb2, fb)
    fa3, fb3, _ = synth.align_frames(asf, mobu, offset=-2)
    assert fa3[0] == 2 and fb3[0] == 0
    # After alignment the subjects' motion is continuous: no frame jumps like the T-pose did.
    rel = mobu.joints[fb] - mobu.joints[fb][:, :1]
    assert np.linalg.norm(np.diff(rel, axis=0), axis=-1).mean(-1).max() < 0.02


def test_trial_label_from_readme(tmp_path):
    (tmp_path / "README.md").write_text('# 18_01 + 19_01 — "walk, shake hands"\n\nmore\n')
    assert synth.trial_label(tmp_path / "18_01.bvh") == "walk, shake hands"
    assert synth.trial_label(tmp_path / "sub" / "x.bvh") == ""


# -------------------------------------------------------------------------------------------- cameras


def test_look_at_projects_target_to_centre_and_keeps_up():
    eye, target = np.array([3.0, 1.5, -2.0]), np.array([0.2, 1.0, 0.5])
    rot, t = synth.look_at(eye, target)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    cam_target = rot @ target + t
    np.testing.assert_allclose(cam_target[:2], 0.0, atol=1e-12)
    assert cam_target[2] == pytest.approx(np.linalg.norm(target - eye))
    # A point above the target (world +Y) is higher in the image: smaller pixel y (OpenCV y down).
    above = rot @ (target + [0.0, 0.5, 0.0]) + t
    assert above[1] < 0


def test_to_camera_moves_the_mesh_rigidly(model):
    rng = np.random.default_rng(0)
    params = {k: v[0] for k, v in _rand_params(rng, 1).items()}
    betas = rng.normal(0, 1, model.num_betas).astype(np.float32)
    rot, t = synth.look_at(np.array([2.0, 1.4, 3.0]), np.array([0.0, 0.9, 0.0]))
    pelvis = synth.rest_pelvis(synth.shape_joint_basis(model), betas)
    orient, transl = synth.to_camera(rot, t, params["global_orient"], params["transl"], pelvis)
    both = {  # body 0 in the world, body 1 the same body moved into the camera frame
        "global_orient": np.stack([params["global_orient"], orient]),
        "body_pose": np.stack([params["body_pose"]] * 2),
        "betas": np.stack([betas] * 2),
        "transl": np.stack([params["transl"], transl]),
    }
    verts, joints = synth.body_outputs(model, both)
    np.testing.assert_allclose(verts[1], verts[0].astype(np.float64) @ rot.T + t, atol=2e-4)
    np.testing.assert_allclose(joints[1], joints[0].astype(np.float64) @ rot.T + t, atol=2e-4)
    cam = {"vertices": verts[1]}
    assert (np.asarray(cam["vertices"])[:, 2] > 0).all()  # in front of the camera


def test_rest_pelvis_matches_the_model(model):
    from apu_jax.body import shape_body

    betas = np.random.default_rng(1).normal(0, 1, model.num_betas).astype(np.float32)
    shaped = shape_body(model, jnp.asarray(betas), jnp.zeros(model.num_expression))
    np.testing.assert_allclose(
        synth.rest_pelvis(synth.shape_joint_basis(model), betas), np.asarray(shaped.joints[0]), atol=1e-5
    )


def test_cameras_see_everyone(clip):
    rng = np.random.default_rng(2)
    options = synth.SynthOptions()
    pts = clip.joints[0][:, model_to_keypoint_indices("body25")].reshape(-1, 3)
    cams = synth.place_cameras(rng, pts, float(clip.vertices[0][..., 1].min()), 5, options)
    w, h = options.image_size
    focal = synth.default_focal(w, h)
    for rot, t in cams:
        cam = pts @ rot.T + t
        px = synth.project_points(cam, focal, np.array([w / 2, h / 2]))
        assert (cam[:, 2] > 0).all()
        assert (px >= 0).all() and (px[:, 0] <= w).all() and (px[:, 1] <= h).all()
        eye = -rot.T @ t
        centroid = pts.mean(0)
        assert np.hypot(*(eye - centroid)[[0, 2]]) >= options.cam_distance[0] - 1e-9


# ------------------------------------------------------------------------------------------ keypoints


def test_keypoint_noise_statistics():
    rng = np.random.default_rng(3)
    clean = np.stack([np.linspace(300, 700, 25), np.linspace(100, 500, 25)], -1)  # size 400 px
    noise = synth.SynthNoise.zero().replace(kp_sigma=0.01, kp_dropout=0.2, kp_conf_jitter=0.05)
    kps = np.stack([synth.noisy_keypoints(rng, clean, noise, (1280, 720)) for _ in range(2000)])
    present = kps[..., 2] > 0
    assert abs(1.0 - present.mean() - 0.2) < 0.01
    err = np.where(present[..., None], kps[..., :2] - clean, np.nan)
    std = np.sqrt(np.nanmean(err**2, axis=(0, 2)))  # per keypoint, per axis
    np.testing.assert_allclose(std, 0.01 * 400 * synth.KEYPOINT_DIFFICULTY, rtol=0.08)
    conf = kps[..., 2][present]
    dist = np.linalg.norm(kps[..., :2] - clean, axis=-1)[present]
    assert conf.min() >= 0.3 and conf.max() <= 1.0
    assert np.corrcoef(conf, dist / np.repeat(synth.KEYPOINT_DIFFICULTY[None], 2000, 0)[present])[0, 1] < -0.5


def test_keypoint_outliers_and_image_bounds():
    rng = np.random.default_rng(5)
    clean = np.stack([np.linspace(300, 700, 25), np.linspace(100, 500, 25)], -1)
    kps = synth.noisy_keypoints(rng, clean, synth.SynthNoise.zero().replace(kp_outlier=1.0), (1280, 720))
    jump = np.linalg.norm(kps[:, :2] - clean, axis=-1)
    assert (jump >= 0.1 * 400 - 1e-3).all() and (jump <= 0.2 * 400 + 1e-3).all()
    assert (kps[:, 2] >= 0.3).all() and (kps[:, 2] <= 0.6).all()
    clean[3] = [-5.0, 10.0]  # off the image: missing
    kps = synth.noisy_keypoints(rng, clean, synth.SynthNoise.zero(), (1280, 720))
    np.testing.assert_array_equal(kps[3], 0.0)
    np.testing.assert_allclose(kps[np.arange(25) != 3, :2], clean[np.arange(25) != 3], atol=1e-4)


# ----------------------------------------------------------------------------------- initial estimate


def test_scale_betas_scales_the_skeleton(model):
    # A model whose first shape direction is exactly "grow about the pelvis": J(β) − J₀ = (1 + β₀)(J − J₀).
    v = np.asarray(model.v_template, np.float64)
    pelvis = np.asarray(model.j_regressor, np.float64)[0] @ v
    dirs = np.asarray(model.shapedirs).copy()
    dirs[:, :, 0] = v - pelvis
    base, basis = synth.shape_joint_basis(model.replace(shapedirs=jnp.asarray(dirs)))
    betas = synth.scale_betas(base, basis, np.zeros(model.num_betas), 1.1, ridge=1e-9)
    assert betas[0] == pytest.approx(0.1, abs=1e-4)
    np.testing.assert_allclose(betas[1:], 0.0, atol=1e-4)


def test_initial_estimate_depth_moves_along_the_ray(model):
    rng = np.random.default_rng(6)
    basis = synth.shape_joint_basis(model)
    gt = {
        "global_orient": np.array([0.1, 2.0, -0.2]),
        "body_pose": rng.normal(0, 0.2, 63),
        "betas": np.zeros(model.num_betas),
    }
    pelvis_cam = np.array([0.4, -0.2, 4.0])
    noise = synth.SynthNoise.zero().replace(init_depth=0.3)
    est = synth.initial_estimate(rng, gt, pelvis_cam, basis, noise)
    new_pelvis = est["transl"] + synth.rest_pelvis(basis, est["betas"])
    np.testing.assert_allclose(np.cross(new_pelvis, pelvis_cam), 0.0, atol=1e-5)  # same ray
    assert abs(np.linalg.norm(new_pelvis) / np.linalg.norm(pelvis_cam) - 1.0) > 1e-3
    np.testing.assert_allclose(est["body_pose"], gt["body_pose"], atol=1e-5)
    np.testing.assert_allclose(est["global_orient"], gt["global_orient"], atol=1e-5)
    # Pose noise: the angle between GT and estimated joint rotations has the chi(3)·σ mean.
    from scipy.spatial.transform import Rotation

    noise = synth.SynthNoise.zero().replace(init_pose=0.2)
    angles = []
    for _ in range(200):
        est = synth.initial_estimate(rng, gt, pelvis_cam, basis, noise)
        rel = Rotation.from_rotvec(gt["body_pose"].reshape(21, 3)).inv() * Rotation.from_rotvec(
            est["body_pose"].reshape(21, 3)
        )
        angles.append(rel.magnitude())
    assert np.mean(angles) == pytest.approx(0.2 * 2 * np.sqrt(2 / np.pi), rel=0.05)


# ------------------------------------------------------------------------------------------- contacts


def test_region_vocabulary_names_the_regions(model):
    regions = load_regions(model, max_vertices=None)
    vocab = synth.region_vocabulary(regions)
    named = [r for r, v in enumerate(vocab) if v is not None]
    assert len(named) > 0.8 * regions.num_regions
    for r in named:
        part, side = vocab[r]
        assert r in vocabulary_to_regions(part, side, regions)
        assert (side == "n/a") == (part in synth.CENTRAL_PARTS)


def test_lvlm_answer_noise_kinds():
    rng = np.random.default_rng(7)
    named = [("hand", "right", "hand", "right"), ("forearm", "left", "back", "n/a")]
    zero = synth.lvlm_answer(rng, named, synth.SynthNoise.zero())
    assert [(c.part_a, c.side_a, c.part_b, c.side_b) for c in zero] == named
    assert all(c.weight == 1.0 and c.kind == "true" for c in zero)
    assert synth.lvlm_answer(rng, named, synth.SynthNoise.zero().replace(contact_miss=1.0)) == []
    flipped = synth.lvlm_answer(rng, named * 50, synth.SynthNoise.zero().replace(contact_flip=1.0))
    assert all(c.kind == "flipped" for c in flipped)
    assert all(c.side_b == "n/a" and c.side_a == "right" for c in flipped if c.part_b == "back")
    halluc = [
        synth.lvlm_answer(rng, [], synth.SynthNoise.zero().replace(contact_halluc=0.5)) for _ in range(2000)
    ]
    assert np.mean([len(h) for h in halluc]) == pytest.approx(0.5, abs=0.05)
    assert all(c.kind == "hallucinated" for h in halluc for c in h)
    weights = [c.weight for c in synth.lvlm_answer(rng, named * 500, synth.SynthNoise.zero().replace(
        contact_weight_noise=0.2))]  # fmt: skip
    assert np.mean(1.0 - np.asarray(weights)) == pytest.approx(0.2 * np.sqrt(2 / np.pi), rel=0.1)


def test_denoise_answer_fixes_laterality_from_keypoints():
    # Two people facing each other; their right wrists (BODY-25 4) meet, left wrists (7) are far apart.
    kp_a = np.zeros((25, 3))
    kp_b = np.zeros((25, 3))
    kp_a[:, :2] = np.random.default_rng(0).uniform(100, 300, (25, 2))
    kp_b[:, :2] = kp_a[:, :2] + [400.0, 0.0]
    kp_a[:, 2] = kp_b[:, 2] = 1.0
    kp_a[4, :2], kp_b[4, :2] = [500.0, 200.0], [505.0, 200.0]
    kp_a[3, :2], kp_b[3, :2] = [450.0, 210.0], [555.0, 210.0]
    wrong = [synth.PartContact("hand", "left", "hand", "left", 0.9, "flipped")]
    fixed = synth.denoise_answer(wrong, kp_a, kp_b)
    assert (fixed[0].side_a, fixed[0].side_b, fixed[0].kind) == ("right", "right", "corrected")
    assert 0.0 < fixed[0].weight <= 0.9


def test_region_contacts_match_brute_force(model, clip):
    regions = load_regions(model, max_vertices=None)
    va, vb = clip.vertices[1]
    got = synth.region_contacts(va, vb, regions, 0.05)
    ids, mask = np.asarray(regions.vertex_ids), np.asarray(regions.mask)
    expect = {}
    for ra in range(regions.num_regions):
        pa = va[ids[ra][mask[ra]]]
        for rb in range(regions.num_regions):
            d = np.linalg.norm(pa[:, None] - vb[ids[rb][mask[rb]]][None], axis=-1).min()
            if d < 0.05:
                expect[(ra, rb)] = d
    assert {(a, b) for a, b, _ in got} == set(expect)
    for a, b, d in got:
        assert d == pytest.approx(expect[(a, b)], abs=1e-9)


# ------------------------------------------------------------------------------------ frame selection


def test_select_frames_closest_first_with_quota_and_dedup():
    dist = np.array([0.30, 0.01, 0.02, 0.03, 0.10, 0.12, 0.04, 0.08])
    joints = np.zeros((8, 2, 22, 3))
    joints[:, :, :, 0] = np.arange(8)[:, None, None]  # frames 1 m apart: all distinct
    joints[3] = joints[2] + 0.01  # frame 3 is a near-duplicate of frame 2 (10 mm change)
    opts = synth.SynthOptions(contact_dist=0.05, near_dist=0.15, near_fraction=0.25, min_change_mm=40.0)
    frames, contact = synth.select_frames(dist, joints, opts, max_frames=4)
    np.testing.assert_array_equal(frames, [1, 2, 6, 7])  # 3 contact (3 skipped as duplicate), 1 near
    np.testing.assert_array_equal(contact, [True, True, True, False])
    frames, contact = synth.select_frames(dist, joints, opts, max_frames=None)
    np.testing.assert_array_equal(frames, [1, 2, 4, 5, 6, 7])
    assert contact.sum() == 3


def test_gap_shift_closes_the_closest_approach():
    dists = np.array([0.5, 0.3, 0.2, 0.21, 0.4])
    vecs = np.array([[0, 0, 0.5], [0, 0, 0.3], [0, 0, 0.2], [0, 0, 0.21], [0, 0, 0.4]])
    shift = synth.gap_shift(dists, vecs, max_shift=0.4, touch_gap=0.005)
    np.testing.assert_allclose(shift, [0, 0, np.mean([0.2, 0.21]) - 0.005])
    np.testing.assert_array_equal(synth.gap_shift(dists, vecs, max_shift=0.1, touch_gap=0.005), 0.0)


# ----------------------------------------------------------------------------------------- end to end


def test_zero_noise_gives_gt(model, clip):
    rep = synth.synthesize_from_clip(
        clip, model, None, cameras=2, noise=synth.SynthNoise.zero(), options=NO_GAP
    )
    arr = rep["arrays"]
    assert rep["pairs"] == 2 * 5  # frames 0–4 are within near_dist, frame 5 (0.3 m) is not
    assert rep["contact_frames"] == 3 and rep["near_contact_frames"] == 2
    for k in ("global_orient", "body_pose", "betas", "transl"):
        np.testing.assert_allclose(arr[f"init_{k}"], arr[f"gt_{k}"], atol=1e-5)
    assert rep["init_joint_pa_mpjpe_mm"]["mean"] < 0.1
    kp_index = model_to_keypoint_indices("body25")
    proj = synth.project_points(arr["gt_joints"][:, :, kp_index], arr["focal"][0, 0], arr["principal"][0])
    np.testing.assert_allclose(arr["keypoints"][..., :2], proj, atol=1e-3)
    np.testing.assert_array_equal(arr["keypoints"][..., 2], 1.0)
    # The gt_* parameters pose the world GT bodies moved rigidly into each camera (shape kept, in front).
    keys = ("global_orient", "body_pose", "betas", "transl")
    verts, joints = synth.body_outputs(
        model, {k: arr[f"gt_{k}"].reshape(-1, arr[f"gt_{k}"].shape[-1]) for k in keys}
    )
    rot, t = arr["camera_rotation"].astype(np.float64), arr["camera_translation"].astype(np.float64)
    f = arr["frame"][:, 0]  # the clip's frame indices are 0..5
    move = lambda x: np.einsum("pij,pbvj->pbvi", rot, x) + t[:, None, None]  # noqa: E731
    np.testing.assert_allclose(verts.reshape(len(f), 2, -1, 3), move(clip.vertices[f]), atol=3e-4)
    np.testing.assert_allclose(arr["gt_joints"], move(clip.joints[f]), atol=3e-4)
    np.testing.assert_allclose(joints.reshape(arr["gt_joints"].shape), arr["gt_joints"], atol=1e-5)
    assert (verts[..., 2] > 0).all()
    # Contacts: valid region ids; with no noise the map contains every GT contact, all with weight 1.
    regions = load_regions(model, max_vertices=None)
    for key in ("contact_pairs", "gt_contact_pairs"):
        ids = arr[key]
        assert ((ids == -1) | ((ids >= 0) & (ids < regions.num_regions))).all()
        assert ((ids[..., 0] == -1) == (ids[..., 1] == -1)).all()
    assert (arr["gt_contact_pairs"][:2] >= 0).any()  # frame 0 touches
    # Regions no vocabulary part covers (e.g. the buttocks) cannot be named, so cannot be in the map.
    vocab = synth.region_vocabulary(regions)
    named = 0
    for cp, w, gp in zip(arr["contact_pairs"], arr["contact_weights"], arr["gt_contact_pairs"], strict=True):
        have = {tuple(x) for x in cp.tolist() if x[0] >= 0}
        nameable = {tuple(x) for x in gp.tolist() if x[0] >= 0 and vocab[x[0]] and vocab[x[1]]}
        assert nameable <= have
        named += len(nameable)
        np.testing.assert_array_equal(w[cp[:, 0] >= 0], 1.0)
        np.testing.assert_array_equal(w[cp[:, 0] < 0], 0.0)
    assert named > 0
    assert rep["contacts"]["map_recall_of_gt"] == pytest.approx(
        named / (arr["gt_contact_pairs"][..., 0] >= 0).sum()
    )


def test_gt_contacts_follow_the_threshold(model, clip):
    rep = synth.synthesize_from_clip(
        clip, model, None, cameras=1, noise=synth.SynthNoise.zero(), options=NO_GAP
    )
    arr = rep["arrays"]
    regions = load_regions(model, max_vertices=None)
    ids, mask = np.asarray(regions.vertex_ids), np.asarray(regions.mask)
    for i, f in enumerate(arr["frame"][:, 0]):
        gp = arr["gt_contact_pairs"][i]
        va, vb = clip.vertices[f]
        for ra, rb in gp[gp[:, 0] >= 0]:
            pa, pb = va[ids[ra][mask[ra]]], vb[ids[rb][mask[rb]]]
            assert np.linalg.norm(pa[:, None] - pb[None], axis=-1).min() < 0.02
        if f >= 3:  # 80 mm and more apart: no GT contact
            assert (gp == -1).all()


def test_seed_determinism_and_default_noise(model, clip, tmp_path):
    kwargs = {"cameras": 2, "options": NO_GAP}
    one = synth.synthesize_from_clip(clip, model, None, seed=3, **kwargs)["arrays"]
    two = synth.synthesize_from_clip(clip, model, None, seed=3, **kwargs)["arrays"]
    other = synth.synthesize_from_clip(clip, model, None, seed=4, **kwargs)["arrays"]
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)
    assert not np.array_equal(one["keypoints"], other["keypoints"])
    assert not np.allclose(one["init_body_pose"], one["gt_body_pose"])
    # Written pair sets load back with the format's reader.
    from apu_jax.data.pairset import load_pairset

    rep = synth.synthesize_from_clip(clip, model, tmp_path / "p.npz", seed=3, label="hug", **kwargs)
    pairs = load_pairset(tmp_path / "p.npz")
    assert len(pairs) == rep["pairs"] and pairs.meta["noise"]["kp_sigma"] == synth.SynthNoise().kp_sigma
    np.testing.assert_array_equal(pairs["keypoints"], one["keypoints"])
    assert set(pairs["label"]) == {"hug"}


def test_gap_closing_shifts_subject_b(model, clip):
    far = synth.shift_subject_b(clip, np.array([0.0, 0.05, 0.3]))
    dists, vecs = synth.clip_min_distances(far.vertices)
    assert dists.min() > 0.05
    opts = synth.SynthOptions(min_change_mm=0.0)
    rep = synth.synthesize_from_clip(far, model, None, cameras=1, options=opts)
    assert rep["raw_min_distance_m"] == pytest.approx(dists.min())
    np.testing.assert_allclose(rep["shift_b_m"], synth.gap_shift(dists, vecs, opts.max_shift, opts.touch_gap))
    assert rep["min_distance_m"] < 0.02 and rep["contact_frames"] >= 1
    # Beyond max_shift nothing moves.
    rep = synth.synthesize_from_clip(
        far,
        model,
        None,
        cameras=1,
        options=synth.SynthOptions(min_change_mm=0.0, max_shift=0.03, near_dist=1.0),
    )
    assert rep["shift_norm_m"] == 0.0 and rep["min_distance_m"] == pytest.approx(dists.min())


# ---------------------------------------------------------------------------------------------- CLI


def _cli():
    import typer

    from cli.synth import synth as command

    app = typer.Typer()
    app.command("synth")(command)
    app.command("noop")(lambda: None)  # two commands: `synth` stays a subcommand, as under `apu`
    return app


def test_cli_defaults_match_the_library():
    import inspect

    from cli.synth import synth as command

    params = inspect.signature(command).parameters
    for name, value in synth.SynthNoise().as_dict().items():
        assert params[name].default == pytest.approx(value), name
    opts = synth.SynthOptions()
    for name in (
        "contact_dist",
        "near_dist",
        "near_fraction",
        "min_change_mm",
        "perceived_dist",
        "max_shift",
    ):
        assert params[name].default == pytest.approx(getattr(opts, name)), name
    assert params["close_gap"].default is opts.close_gap
    assert params["denoise"].default is opts.denoise
    assert tuple(params["cam_distance"].default) == opts.cam_distance
    assert tuple(params["cam_height"].default) == opts.cam_height
    assert params["image_size"].default == "x".join(map(str, opts.image_size))


def test_cli_user_errors(tmp_path):
    runner = CliRunner()
    app = _cli()
    res = runner.invoke(app, ["synth", str(tmp_path / "no.bvh"), str(MOBU), "--out", str(tmp_path / "p.npz")])
    assert res.exit_code == 2 and "not found" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["synth", str(ASF), str(MOBU), "--out", "p.npz", "--image-size", "12x"])
    assert res.exit_code == 2 and "--image-size" in res.output
    res = runner.invoke(app, ["synth", str(ASF), str(MOBU), "--out", "p.npz", "--kp-dropout", "1.5"])
    assert res.exit_code == 2 and "--kp-dropout" in res.output
    bad = tmp_path / "bad.bvh"
    bad.write_text("HIERARCHY\nROOT x\n{\n")
    res = runner.invoke(app, ["synth", str(bad), str(MOBU), "--out", str(tmp_path / "p.npz")])
    assert (
        res.exit_code == 2 and res.output.startswith("error:") and len(res.output.strip().splitlines()) == 1
    )
    assert runner.invoke(app, ["synth", "--help"]).exit_code == 0
