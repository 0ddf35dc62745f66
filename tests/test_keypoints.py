"""Keypoint maps (model joints → BODY-25 / COCO) and COCO → BODY-25 conversion."""

from __future__ import annotations

import numpy as np
import pytest

from apu_jax.body import JOINT_NAMES
from apu_jax.regions.keypoints import (
    BODY25_NAMES,
    COCO17_NAMES,
    COCO23_NAMES,
    COCO23_TO_BODY25,
    MODEL_TO_BODY25,
    MODEL_TO_COCO17,
    MODEL_TO_COCO23,
    coco_to_body25,
    convert_keypoints,
    model_to_keypoint_indices,
    part_keypoints,
)
from apu_jax.regions.vocabulary import APU_PARTS, PART_SIDES


def _model_name(i: int) -> str:
    name = JOINT_NAMES[i]
    return "mid_hip" if name == "pelvis" else name


def test_body25_map_selects_joints_by_name():
    assert len(MODEL_TO_BODY25) == 25
    assert MODEL_TO_BODY25[4] == 21 and JOINT_NAMES[21] == "right_wrist"  # BODY-25 RWrist
    assert MODEL_TO_BODY25[7] == 20 and MODEL_TO_BODY25[1] == 12 and MODEL_TO_BODY25[8] == 0
    for k, name in enumerate(BODY25_NAMES):
        assert _model_name(MODEL_TO_BODY25[k]) == name, (k, name)


def test_coco_maps_select_joints_by_name():
    assert len(MODEL_TO_COCO17) == 17 and len(MODEL_TO_COCO23) == 23
    assert COCO17_NAMES == COCO23_NAMES[:17]
    for k, name in enumerate(COCO23_NAMES):
        assert JOINT_NAMES[MODEL_TO_COCO23[k]] == name, (k, name)
    np.testing.assert_array_equal(model_to_keypoint_indices("coco17"), MODEL_TO_COCO17)
    with pytest.raises(ValueError, match="unknown keypoint format"):
        model_to_keypoint_indices("mpii")


def test_coco_to_body25_index_map_is_consistent_with_names():
    for c, b in enumerate(COCO23_TO_BODY25):
        assert COCO23_NAMES[c] == BODY25_NAMES[b]
    # Projecting model joints through either path must agree.
    joints = np.random.default_rng(0).normal(size=(127, 3))
    body25 = joints[list(MODEL_TO_BODY25)]
    coco = joints[list(MODEL_TO_COCO23)]
    np.testing.assert_array_equal(body25[list(COCO23_TO_BODY25)], coco)


def _hand_made_coco17() -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    kp[0] = (100, 50, 0.9)  # nose
    kp[5] = (120, 100, 0.8)  # left shoulder
    kp[6] = (80, 100, 0.6)  # right shoulder
    kp[9] = (140, 180, 0.7)  # left wrist
    kp[11] = (110, 200, 0.5)  # left hip
    kp[12] = (90, 200, 0.0)  # right hip missing, with junk coordinates
    kp[12, :2] = (999, 999)
    return kp


def test_coco_to_body25_hand_made_example():
    out = coco_to_body25(_hand_made_coco17())
    assert out.shape == (25, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], (100, 50, 0.9))  # Nose
    np.testing.assert_allclose(out[5], (120, 100, 0.8))  # LShoulder
    np.testing.assert_allclose(out[2], (80, 100, 0.6))  # RShoulder
    np.testing.assert_allclose(out[7], (140, 180, 0.7))  # LWrist
    np.testing.assert_allclose(out[12], (110, 200, 0.5))  # LHip
    np.testing.assert_allclose(out[9], 0.0)  # RHip missing: coordinates zeroed too
    np.testing.assert_allclose(out[1], 0.0)  # Neck: BUDDI leaves it at confidence 0
    np.testing.assert_allclose(out[8], 0.0)  # MidHip
    np.testing.assert_allclose(out[19:], 0.0)  # no feet in COCO-17
    assert np.count_nonzero(out[:, 2]) == 5


def test_coco_to_body25_derives_neck_only_from_both_shoulders():
    out = coco_to_body25(_hand_made_coco17(), derive_neck_midhip=True)
    np.testing.assert_allclose(out[1], (100, 100, 0.6))  # midpoint, min confidence
    np.testing.assert_allclose(out[8], 0.0)  # right hip missing → MidHip stays missing


def test_coco23_feet_and_batching():
    kp = np.zeros((3, 2, 23, 3), np.float32)
    kp[..., 17, :] = (10, 20, 0.5)  # left big toe
    kp[..., 22, :] = (30, 40, 0.25)  # right heel
    out = convert_keypoints(kp, "coco23")
    assert out.shape == (3, 2, 25, 3)
    np.testing.assert_allclose(out[..., 19, :], np.broadcast_to((10, 20, 0.5), (3, 2, 3)))
    np.testing.assert_allclose(out[..., 24, :], np.broadcast_to((30, 40, 0.25), (3, 2, 3)))
    with pytest.raises(ValueError):
        coco_to_body25(np.zeros((18, 3)))


def test_part_keypoints():
    assert part_keypoints("hand", "left") == [7]
    assert part_keypoints("hand", "right") == [4]
    assert part_keypoints("hand", "both") == [4, 7]
    assert part_keypoints("knee", "right") == [10]
    assert part_keypoints("Upper_Arm", "left") == [5, 6]
    assert part_keypoints("foot", "left") == [14, 19, 20, 21]
    assert part_keypoints("chest", "left") == part_keypoints("chest", "n/a") == [1, 2, 5]
    for part in APU_PARTS:
        for side in PART_SIDES:
            kps = part_keypoints(part, side)
            assert kps and all(0 <= k < 25 for k in kps)
            if side == "left" and part not in ("chest", "stomach", "back", "neck", "face", "head", "waist"):
                # Left parts use only left (or no-side) BODY-25 keypoints.
                assert all(not BODY25_NAMES[k].startswith("right") for k in kps), (part, kps)
    with pytest.raises(ValueError):
        part_keypoints("tail", "left")
    with pytest.raises(ValueError):
        part_keypoints("hand", "up")
