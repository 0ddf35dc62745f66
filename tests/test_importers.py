"""Importers: OpenPose / ViTPose keypoints, BEV output, person matching, the manifest and its data root."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_ask_support import draw_image, person_entry, touching_pair

from apu_jax.body import load_model
from apu_jax.data.importers import (
    InputFileError,
    ManifestError,
    _bone_lengths,
    bev_joints2d_body25,
    bev_to_init,
    fit_betas_to_bone_lengths,
    load_bev,
    load_keypoints,
    load_manifest,
    match_people,
    model_joints,
    resolve_under_root,
    rest_joint_basis,
)


def test_openpose_json_is_body25(tmp_path):
    kp = np.arange(2 * 75, dtype=float).reshape(2, 25, 3) / 7.0
    path = tmp_path / "op.json"
    path.write_text(
        json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": p.ravel().tolist()} for p in kp]})
    )
    np.testing.assert_allclose(load_keypoints(path), kp.astype(np.float32), rtol=1e-6)


def _coco_people(n: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    kp = np.concatenate([rng.uniform(0, 500, (n, k, 2)), rng.uniform(0.5, 1.0, (n, k, 1))], axis=2)
    return kp


def test_vitpose_wholebody_maps_to_body25_like_buddi(tmp_path):
    whole = _coco_people(2, 133)
    path = tmp_path / "vit.json"
    path.write_text(json.dumps([{"bbox": [0, 0, 1, 1, 0.9], "keypoints": p.tolist()} for p in whole]))
    out = load_keypoints(path)
    assert out.shape == (2, 25, 3)
    # COCO index → BODY-25 index: nose 0→0, left_eye 1→16, left_shoulder 5→5, right_shoulder 6→2,
    # right_hip 12→9, left_ankle 15→14, left_big_toe 17→19, right_heel 22→24
    for coco, b25 in [(0, 0), (1, 16), (5, 5), (6, 2), (12, 9), (15, 14), (17, 19), (22, 24)]:
        np.testing.assert_allclose(out[:, b25], whole[:, coco], rtol=1e-6)
    assert np.all(out[:, [1, 8]] == 0)  # Neck and MidHip missing (BUDDI)


def test_coco17_mmpose_style_and_derived_neck(tmp_path):
    kp = _coco_people(1, 17)[0]
    path = tmp_path / "mm.json"
    path.write_text(json.dumps([{"keypoints": kp[:, :2].tolist(), "keypoint_scores": kp[:, 2].tolist()}]))
    out = load_keypoints(path, derive_neck_midhip=True)[0]
    np.testing.assert_allclose(out[1, :2], 0.5 * (kp[5, :2] + kp[6, :2]), rtol=1e-5)  # neck = mid-shoulders
    assert out[1, 2] == pytest.approx(min(kp[5, 2], kp[6, 2]))
    np.testing.assert_allclose(out[8, :2], 0.5 * (kp[11, :2] + kp[12, :2]), rtol=1e-5)
    assert np.all(out[19:] == 0)  # COCO-17 has no feet


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 20}]}), "multiple of 3"),
        (json.dumps([{"keypoints": [[1, 2, 3]] * 30}]), "30 keypoints"),
        (json.dumps({"people": 3}), "must be a list"),
    ],
)
def test_malformed_keypoint_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputFileError, match=message) as info:
        load_keypoints(path)
    assert "bad.json" in str(info.value)


# ---------------------------------------------------------------------------------------------------- BEV


def _bev_dict(n: int, rng) -> dict:
    return {
        "smpl_thetas": rng.normal(0, 0.2, (n, 72)).astype(np.float32),
        "smpl_betas": rng.normal(0, 0.5, (n, 11)).astype(np.float32),
        "cam_trans": np.array([[0.1 * i, 0.2, 3.0 + i] for i in range(n)], np.float32),
        "joints": rng.normal(0, 0.3, (n, 71, 3)).astype(np.float32),
        "pj2d_org": rng.uniform(0, 400, (n, 71, 2)).astype(np.float32),
    }


def test_bev_pickled_results_and_flat_npz(tmp_path, rng):
    data = _bev_dict(2, rng)
    np.savez(tmp_path / "bev.npz", results=np.array(data, dtype=object))  # BEV's own layout
    np.savez(tmp_path / "flat.npz", **data)
    for name in ("bev.npz", "flat.npz"):
        bev = load_bev(tmp_path / name)
        assert bev.num_people == 2
        np.testing.assert_allclose(bev.thetas, data["smpl_thetas"], rtol=1e-6)
        np.testing.assert_allclose(bev.pj2d, data["pj2d_org"], rtol=1e-6)
    np.savez(tmp_path / "nokeys.npz", smpl_thetas=data["smpl_thetas"])
    with pytest.raises(InputFileError, match="cam_trans"):
        load_bev(tmp_path / "nokeys.npz")


def test_bev_to_init_places_the_pelvis_at_cam_trans(small_smplx_file, rng):
    model = load_model(small_smplx_file)
    bev = load_bev_from(_bev_dict(2, rng))
    init = bev_to_init(bev, model, "mean")
    np.testing.assert_allclose(init["global_orient"], bev.thetas[:, :3], rtol=1e-6)
    np.testing.assert_allclose(init["body_pose"], bev.thetas[:, 3:66], rtol=1e-6)
    assert init["betas"].shape == (2, model.num_betas) and np.all(init["betas"] == 0)
    pelvis = model_joints(model, init)[:, 0]
    np.testing.assert_allclose(pelvis, bev.cam_trans, atol=1e-5)


def load_bev_from(data: dict):
    from apu_jax.data.importers import BevOutput

    return BevOutput(
        data["smpl_thetas"].astype(float), data["smpl_betas"].astype(float), data["cam_trans"].astype(float),
        data["joints"].astype(float), data["pj2d_org"].astype(float),
    )  # fmt: skip


def test_limb_length_betas_recover_the_model_own_bone_lengths(small_smplx_file):
    model = load_model(small_smplx_file)
    j0, dj = rest_joint_basis(model)
    truth = np.zeros(int(model.num_betas))
    truth[:3] = (3.0, -2.5, 2.0)
    target = _bone_lengths(j0[:22] + np.einsum("b,bjc->jc", truth, dj[:, :22]))
    fitted = fit_betas_to_bone_lengths(j0[:22], dj[:, :22], target, ridge=1e-6)
    got = _bone_lengths(j0[:22] + np.einsum("b,bjc->jc", fitted, dj[:, :22]))
    np.testing.assert_allclose(got, target, atol=2e-4)
    assert np.abs(_bone_lengths(j0[:22]) - target).max() > 5e-3  # the mean body was off
    # the basis is the model's: rest joints of `truth` through the forward pass agree
    direct = model_joints(model, {"betas": truth[None]})[0]
    np.testing.assert_allclose(j0 + np.einsum("b,bjc->jc", truth, dj), direct, atol=1e-4)


def test_bev_projected_joints_and_matching():
    kp = touching_pair().astype(np.float32)
    pj = np.zeros((2, 71, 2))
    # SMPL joint → BODY-25: pelvis 0→8, left_hip 1→12, ..., right_wrist 21→4
    from apu_jax.data.importers import SMPL_TO_BODY25

    for p in range(2):
        for smpl, b25 in SMPL_TO_BODY25.items():
            pj[p, smpl] = kp[p, b25, :2] + 2.0
    b25 = bev_joints2d_body25(pj)
    assert b25[0, 8, 2] == 1.0 and b25[0, 0, 2] == 0.0  # pelvis mapped, nose not
    np.testing.assert_allclose(b25[1, 4, :2], kp[1, 4, :2] + 2.0)
    assert match_people(kp, b25[::-1]) == [1, 0]  # BEV listed them the other way round
    assert match_people(kp, b25[:1]) == [0, None]  # one mesh for two people


# ------------------------------------------------------------------------------------------------ manifest


def _write_manifest(root, lines):
    path = root / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    return path


def test_manifest_with_inline_people(tmp_path):
    people = touching_pair()
    (tmp_path / "images").mkdir()
    draw_image(tmp_path / "images" / "a.png", people)
    path = _write_manifest(
        tmp_path, [{"image": "images/a.png", "label": "hug", "people": [person_entry(p) for p in people]}, ""]
    )
    (img,) = load_manifest(path)
    assert img.id == "images/a" and img.label == "hug" and img.image_size == (400, 400)
    assert len(img.people) == 2 and img.people[0].init["body_pose"].shape == (63,)
    np.testing.assert_allclose(img.people[1].joints2d, people[1].astype(np.float32))


def test_manifest_with_keypoint_and_bev_files(tmp_path, small_smplx_file, rng):
    people = touching_pair()
    draw_image(tmp_path / "a.png", people)
    (tmp_path / "kp.json").write_text(
        json.dumps({"people": [{"pose_keypoints_2d": p.ravel().tolist()} for p in people]})
    )
    data = _bev_dict(2, rng)
    from apu_jax.data.importers import SMPL_TO_BODY25

    data["pj2d_org"][:] = 0
    for p in range(2):  # BEV lists person 1 first
        for smpl, b25 in SMPL_TO_BODY25.items():
            data["pj2d_org"][1 - p, smpl] = people[p, b25, :2]
    np.savez(tmp_path / "bev.npz", results=np.array(data, dtype=object))
    path = _write_manifest(tmp_path, [{"image": "a.png", "keypoints": "kp.json", "bev": "bev.npz"}])
    (img,) = load_manifest(path, model=lambda: load_model(small_smplx_file))
    np.testing.assert_allclose(img.people[0].init["global_orient"], data["smpl_thetas"][1, :3], rtol=1e-6)
    np.testing.assert_allclose(img.people[1].init["global_orient"], data["smpl_thetas"][0, :3], rtol=1e-6)
    assert img.people[0].joints2d[8, 2] == 1.0


def test_paths_may_not_escape_the_data_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    draw_image(tmp_path / "outside.png", touching_pair())
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    for rel in ("../outside.png", str(tmp_path / "outside.png"), "link.png"):
        with pytest.raises(ManifestError, match="outside the data root"):
            resolve_under_root(root, rel)
        assert resolve_under_root(root, rel, allow_outside_root=True) == (tmp_path / "outside.png").resolve()
    people = [person_entry(p) for p in touching_pair()]
    path = _write_manifest(root, [{"image": "../outside.png", "people": people}])
    with pytest.raises(ManifestError, match=r"manifest.jsonl:1: .*outside the data root"):
        load_manifest(path)
    assert len(load_manifest(path, allow_outside_root=True)) == 1


@pytest.mark.parametrize(
    "lines, message",
    [
        (["{bad json"], r":1: "),
        ([{"image": "a.png", "bogus": 1}], "bogus"),
        ([{"image": "a.png"}], "no keypoints"),
        ([{"image": "missing.png", "people": []}], "not found"),
        (
            [{"id": "x", "image": "a.png", "people": []}, {"id": "x", "image": "a.png", "people": []}],
            ":2: duplicate",
        ),
    ],
)
def test_manifest_errors_name_file_and_line(tmp_path, lines, message):
    draw_image(tmp_path / "a.png", touching_pair())
    with pytest.raises(ManifestError, match=message):
        load_manifest(_write_manifest(tmp_path, lines))


def test_manifest_must_exist(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.jsonl")
    assert not os.path.exists(tmp_path / "nope.jsonl")
