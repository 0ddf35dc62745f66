"""Contact regions: generation from skinning weights, vocabulary, FlickrCI3D JSON, distances."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree

from apu_jax.body import SMPLX_PARENTS
from apu_jax.body.synthetic import write_synthetic_smplx
from apu_jax.regions import (
    APU_PARTS,
    PART_SIDES,
    farthest_point_order,
    generate_regions,
    load_contact_regions_json,
    load_regions,
    region_pair_min_distance,
    vertex_region_owner,
    vocabulary_table,
    vocabulary_to_regions,
)

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "apu_jax" / "data" / "default_model.npz"

# ------------------------------------------------------------------------------------------ fixtures

# A T-pose skeleton in SMPL-X axes (+Y up, facing +Z, subject's left = +X), metres.
# Midline and left joints; the right side mirrors the left.
_CENTRE_JOINTS = {
    0: (0, 0, 0),
    3: (0, 0.11, -0.01),
    6: (0, 0.25, 0),
    9: (0, 0.31, 0.02),
    12: (0, 0.52, -0.02),
}
_CENTRE_JOINTS |= {15: (0, 0.61, 0.01), 22: (0, 0.58, 0.04)}
_LEFT_JOINTS = {1: (0.06, -0.09, 0), 4: (0.11, -0.48, 0), 7: (0.09, -0.88, -0.04), 10: (0.12, -0.94, 0.08)}
_LEFT_JOINTS |= {
    13: (0.08, 0.42, 0),
    16: (0.18, 0.45, -0.01),
    18: (0.43, 0.44, -0.03),
    20: (0.68, 0.44, -0.02),
}
_LEFT_JOINTS |= {23: (0.03, 0.66, 0.08)}
_MIRROR = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 23: 24}
_RADIUS = {0: 0.13, 3: 0.13, 6: 0.14, 9: 0.15, 12: 0.055, 15: 0.1, 22: 0.05, 13: 0.06, 16: 0.05, 18: 0.04}
_RADIUS |= {20: 0.035, 1: 0.08, 4: 0.055, 7: 0.045, 10: 0.04, 23: 0.012}


def _stick_joints() -> np.ndarray:
    j = np.zeros((55, 3))
    for k, v in _CENTRE_JOINTS.items():
        j[k] = v
    for k, v in _LEFT_JOINTS.items():
        j[k] = v
        j[_MIRROR[k]] = (-v[0], v[1], v[2])
    for wrist, base, s in ((20, 25, 1.0), (21, 40, -1.0)):
        for f, z in enumerate((0.03, 0.005, -0.045, -0.02)):  # index, middle, pinky, ring
            for k in range(3):
                j[base + 3 * f + k] = j[wrist] + (s * (0.09 + 0.03 * k), 0.0, z)
        for k in range(3):  # thumb, towards the front (+Z)
            j[base + 12 + k] = j[wrist] + (s * (0.03 + 0.025 * k), -0.01, 0.04 + 0.02 * k)
    return j


def stick_figure(num_vertices: int = 6000, seed: int = 0) -> dict[str, np.ndarray]:
    """SMPL-X-layout arrays of a stick figure: points on capsules around each bone, owned by its joint."""
    rng = np.random.default_rng(seed)
    joints, parents = _stick_joints(), np.asarray(SMPLX_PARENTS)
    segments = []
    for a in range(55):
        radius = _RADIUS.get(a, _RADIUS.get(next((k for k, m in _MIRROR.items() if m == a), -1), 0.01))
        children = [c for c in range(55) if parents[c] == a and c not in (22, 23, 24)]
        if a == 0:
            start, end = np.array([0, -0.07, 0.0]), np.array([0, 0.04, 0.0])
        elif a == 15:
            start, end = joints[a], joints[a] + (0, 0.08, 0)
        elif a in (22, 23, 24):
            start, end = joints[a], joints[a]
        elif a in (10, 11):
            start, end = joints[a], joints[a] + (0, 0, 0.08)
        elif a in (20, 21):
            start, end = joints[a], joints[28 if a == 20 else 43]
        elif a == 9:
            start, end = joints[9], joints[12]
        elif not children:  # finger tips
            start, end = joints[a], 2 * joints[a] - joints[parents[a]]
        else:
            start, end = joints[a], joints[children[0]]
        segments.append((a, start, end, radius))
    area = np.array([2 * np.pi * r * np.linalg.norm(e - s) + 4 * np.pi * r * r for _, s, e, r in segments])
    counts = np.maximum(4, np.round(num_vertices * area / area.sum()).astype(int))
    verts, owner = [], []
    for (joint, start, end, radius), n in zip(segments, counts, strict=True):
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        verts.append(start + rng.uniform(0, 1, (n, 1)) * (end - start) + radius * d)
        owner += [joint] * n
    # Four vertices hugging each joint make the regressor reproduce the joints exactly.
    hug = (joints[:, None, :] + 1e-3 * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])).reshape(
        -1, 3
    )
    v = np.concatenate([*verts, hug])
    owner = np.concatenate([owner, np.repeat(np.arange(55), 4)])
    weights = np.zeros((len(v), 55))
    weights[np.arange(len(v)), owner] = 0.8
    weights[np.arange(len(v)), np.maximum(parents[owner], 0)] += 0.2
    regressor = np.zeros((55, len(v)))
    for k in range(55):
        regressor[k, len(v) - 220 + 4 * k : len(v) - 220 + 4 * k + 4] = 0.25
    # Triangles between nearest neighbours keep vertex areas local.
    nearest = cKDTree(v).query(v, k=3)[1]
    return {
        "v_template": v.astype(np.float32),
        "weights": weights.astype(np.float32),
        "J_regressor": regressor.astype(np.float32),
        "f": nearest.astype(np.uint32),
    }


@pytest.fixture(scope="module")
def stick() -> dict[str, np.ndarray]:
    return stick_figure()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict[str, np.ndarray]:
    path = write_synthetic_smplx(
        tmp_path_factory.mktemp("model") / "syn.npz", num_vertices=5000, num_shape_dirs=20
    )
    return dict(np.load(path))


def _centroids(regions, verts: np.ndarray) -> np.ndarray:
    ids, mask = np.asarray(regions.vertex_ids), np.asarray(regions.mask)
    return np.stack([verts[ids[r][mask[r]]].mean(0) for r in range(regions.num_regions)])


# ---------------------------------------------------------------------------------- structural checks


def _check_structure(regions, arrays: dict[str, np.ndarray], max_vertices: int = 64) -> None:
    ids, mask, sizes = np.asarray(regions.vertex_ids), np.asarray(regions.mask), np.asarray(regions.sizes)
    r = regions.num_regions
    assert ids.dtype == np.int32 and ids.shape == mask.shape and ids.shape[0] == r
    assert len(regions.names) == len(set(regions.names)) == r
    assert sizes.min() >= 20
    np.testing.assert_array_equal(mask.sum(1), np.minimum(sizes, max_vertices))
    assert regions.width <= max_vertices
    for row, m in zip(ids, mask, strict=True):
        assert m[: m.sum()].all() and not m[m.sum() :].any()  # real entries first
        assert (row[~m] == row[0]).all()  # padding repeats a valid index
        assert len(np.unique(row[m])) == m.sum()
    # Kept vertices belong to their region of the full partition, whose regions are disjoint.
    owner = vertex_region_owner(arrays)
    for k in range(r):
        assert (owner[ids[k][mask[k]]] == k).all()
    np.testing.assert_array_equal(np.bincount(owner[owner >= 0], minlength=r), sizes)
    # Only eyeball vertices (dominated by the eye joints) are left out.
    dominant = np.argmax(arrays["weights"], axis=1)
    np.testing.assert_array_equal(owner < 0, np.isin(dominant, (23, 24)))
    # Every vocabulary entry maps somewhere; left/right names come in mirror pairs.
    for part, by_side in vocabulary_table(regions).items():
        for side, region_ids in by_side.items():
            assert region_ids, (part, side)
    for name in regions.names:
        if "left" in name.split("_"):
            assert name.replace("left", "right") in regions.names, name


def test_synthetic_official_file_regions(synthetic):
    regions = generate_regions(synthetic)
    assert regions.num_regions == 75
    _check_structure(regions, synthetic)


def test_generation_is_deterministic(synthetic):
    a, b = generate_regions(synthetic), generate_regions(dict(synthetic))
    assert a.names == b.names and a.labels == b.labels
    np.testing.assert_array_equal(np.asarray(a.vertex_ids), np.asarray(b.vertex_ids))


def test_target_and_full_width(synthetic):
    small = generate_regions(synthetic, target=30)
    assert small.num_regions == 30
    full = generate_regions(synthetic, max_vertices=None)
    np.testing.assert_array_equal(np.asarray(full.mask).sum(1), np.asarray(full.sizes))
    assert full.width == int(np.asarray(full.sizes).max())
    with pytest.raises(ValueError, match="coarse parts"):
        generate_regions(synthetic, target=10)


# ---------------------------------------------------------------------------------- geometric checks


def _check_geometry(regions, verts: np.ndarray, joints: np.ndarray) -> None:
    cents = _centroids(regions, verts)
    left_hand = vocabulary_to_regions("hand", "left", regions)
    right_hand = vocabulary_to_regions("hand", "right", regions)
    assert set(left_hand).isdisjoint(right_hand)
    for r in left_hand:
        assert regions.sides[r] == "left"
        assert cents[r, 0] > 0  # subject's left is +X
        assert np.linalg.norm(cents[r] - joints[20]) < 0.2  # within a hand length of the left wrist
    for r in right_hand:
        assert cents[r, 0] < 0 and np.linalg.norm(cents[r] - joints[21]) < 0.2
    for r in vocabulary_to_regions("knee", "left", regions):
        assert cents[r, 0] > 0 and np.linalg.norm(cents[r] - joints[4]) < 0.3
    chest = cents[vocabulary_to_regions("chest", "n/a", regions), 2]
    back = cents[vocabulary_to_regions("back", "n/a", regions), 2]
    assert chest.min() > back.max()
    stomach = cents[vocabulary_to_regions("stomach", "n/a", regions), 1]
    assert cents[vocabulary_to_regions("chest", "n/a", regions), 1].min() > stomach.max()
    face = cents[vocabulary_to_regions("face", "n/a", regions), 2]
    head_back = [r for r in vocabulary_to_regions("head", "n/a", regions) if "back" in regions.labels[r]]
    assert face.min() > cents[head_back, 2].max()
    # Every front/back cut: the front half lies in front of its back twin.
    for r, labels in enumerate(regions.labels):
        if "front" in labels:
            twin = regions.names[r].replace("front", "back")
            if twin in regions.names:
                assert cents[r, 2] > cents[regions.index(twin), 2], regions.names[r]
    thigh = vocabulary_to_regions("thigh", "left", regions)
    proximal = [r for r in thigh if "proximal" in regions.labels[r]]
    distal = [r for r in thigh if "distal" in regions.labels[r]]
    assert proximal and distal and cents[proximal, 1].min() > cents[distal, 1].max()


def test_stick_figure_regions(stick):
    regions = generate_regions(stick)
    assert 70 <= regions.num_regions <= 75
    _check_structure(regions, stick)
    _check_geometry(regions, stick["v_template"], stick["J_regressor"] @ stick["v_template"])


def test_trunk_bands_do_not_depend_on_how_spine_joints_share_the_skin(stick):
    # Give every trunk vertex to spine2: the four trunk bands must still exist, stacked by height.
    arrays = dict(stick)
    weights = arrays["weights"].copy()
    trunk = np.isin(np.argmax(weights, axis=1), (0, 3, 6, 9))
    weights[trunk] = 0.0
    weights[trunk, 6] = 1.0
    arrays["weights"] = weights
    regions = generate_regions(arrays)
    cents = _centroids(regions, arrays["v_template"])
    heights = []
    for part in ("hips", "lower_torso", "mid_torso", "upper_torso"):
        members = [r for r in range(regions.num_regions) if regions.parts[r] == part]
        assert members, part
        heights.append(cents[members, 1].mean())
    assert heights == sorted(heights)


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="bundled default model not built yet")
def test_default_model_regions():
    from apu_jax.body import load_model

    model = load_model("default")
    regions = load_regions(model)
    assert load_regions(model) is regions  # cached
    assert 70 <= regions.num_regions <= 75
    arrays = {
        "v_template": np.asarray(model.v_template),
        "weights": np.asarray(model.weights),
        "J_regressor": np.asarray(model.j_regressor),
        "f": np.asarray(model.faces),
    }
    _check_structure(regions, arrays)
    _check_geometry(regions, arrays["v_template"], arrays["J_regressor"] @ arrays["v_template"])


# --------------------------------------------------------------------------------------- vocabulary


def test_vocabulary_sides(stick):
    regions = generate_regions(stick)
    for part in APU_PARTS:
        both = set(vocabulary_to_regions(part, "both", regions))
        assert set(vocabulary_to_regions(part, "n/a", regions)) == both
        left, right = (set(vocabulary_to_regions(part, s, regions)) for s in ("left", "right"))
        if part in ("chest", "stomach", "back", "neck", "face", "head", "waist"):
            assert left == right == both  # a side means nothing on the midline
        else:
            assert left | right == both and not left & right
            assert all(regions.sides[r] == "left" for r in left)
    arm = set(vocabulary_to_regions("arm", "left", regions))
    assert set(vocabulary_to_regions("forearm", "left", regions)) <= arm
    assert set(vocabulary_to_regions("upper arm", "left", regions)) <= arm
    assert arm.isdisjoint(vocabulary_to_regions("hand", "left", regions))
    assert set(vocabulary_to_regions("face", "n/a", regions)) < set(
        vocabulary_to_regions("head", "n/a", regions)
    )
    assert vocabulary_to_regions("Upper_Arm", "L", regions) == vocabulary_to_regions(
        "upper arm", "left", regions
    )
    with pytest.raises(ValueError, match="unknown body part"):
        vocabulary_to_regions("tail", "left", regions)
    assert set(vocabulary_table(regions)) == set(APU_PARTS)
    assert all(set(v) == set(PART_SIDES) for v in vocabulary_table(regions).values())


# ------------------------------------------------------------------------------------ FlickrCI3D JSON


def test_load_contact_regions_json(tmp_path, stick):
    faces = stick["f"].astype(np.int64)
    dominant = np.argmax(stick["weights"], axis=1)
    # Region 0: faces whose corners are all left-hand vertices; region 1: a few faces on the head.
    hand_faces = np.flatnonzero(np.isin(dominant[faces], [20, *range(25, 40)]).all(1))
    head_faces = np.flatnonzero((dominant[faces] == 15).all(1))[:30]
    path = tmp_path / "contact_regions.json"
    path.write_text(json.dumps({"rid_to_smplx_fids": {"1": head_faces.tolist(), "0": hand_faces.tolist()}}))

    plain = load_contact_regions_json(path, faces, max_vertices=None)
    assert plain.names == ("ci3d_00", "ci3d_01")
    for r, fids in enumerate((hand_faces, head_faces)):
        got = np.asarray(plain.vertex_ids)[r][np.asarray(plain.mask)[r]]
        np.testing.assert_array_equal(np.sort(got), np.unique(faces[fids]))
    with pytest.raises(ValueError, match="no part annotation"):
        vocabulary_to_regions("hand", "left", plain)

    annotated = load_contact_regions_json(path, model=_as_model(stick), max_vertices=16)
    assert annotated.parts == ("hand", "head") and annotated.sides[0] == "left"
    assert vocabulary_to_regions("hand", "left", annotated) == [0]
    assert vocabulary_to_regions("hand", "right", annotated) == []
    assert np.asarray(annotated.mask).sum(1).max() == 16

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rid_to_ghum_fids": {}}))
    with pytest.raises(ValueError, match="rid_to_smplx_fids"):
        load_contact_regions_json(bad, faces)
    bad.write_text(json.dumps({"rid_to_smplx_fids": {"0": [len(faces)]}}))
    with pytest.raises(ValueError, match="face ids outside"):
        load_contact_regions_json(bad, faces)


class _as_model:  # noqa: N801 - a minimal BodyModel look-alike over plain arrays
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.v_template, self.weights = arrays["v_template"], arrays["weights"]
        self.j_regressor, self.faces, self.name = arrays["J_regressor"], arrays["f"].astype(np.int32), "stick"


# ------------------------------------------------------------------------------- sampling, distances


def test_farthest_point_order_on_a_line():
    points = np.stack([np.arange(11.0), np.zeros(11), np.zeros(11)], axis=1)
    order = farthest_point_order(points)
    assert order[0] == 5  # nearest the centroid
    assert set(order[1:3]) == {0, 10} and order[1] == 0  # tie → lowest index
    assert sorted(order) == list(range(11))
    assert list(farthest_point_order(points, k=3)) == list(order[:3])


def test_region_pair_min_distance_matches_brute_force(synthetic):
    regions = generate_regions(synthetic)
    rng = np.random.default_rng(1)
    va = synthetic["v_template"]
    vb = va + np.array([0.3, 0.0, 0.0], np.float32) + rng.normal(0, 0.01, va.shape).astype(np.float32)
    pairs = np.array([[0, 0], [3, 40], [74, 12], [-1, 5]], np.int32)
    got = jax.jit(region_pair_min_distance)(jnp.asarray(va), jnp.asarray(vb), regions, jnp.asarray(pairs))
    ids, mask = np.asarray(regions.vertex_ids), np.asarray(regions.mask)
    for c, (a, b) in enumerate(pairs[:3]):
        pa, pb = va[ids[a][mask[a]]], vb[ids[b][mask[b]]]
        want = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1)).min()
        np.testing.assert_allclose(float(got[c]), want, rtol=1e-5)
    assert np.isinf(float(got[3]))


def test_load_regions_cache(synthetic):
    a = load_regions(synthetic_model := _as_model(synthetic | {"J_regressor": synthetic["J_regressor"]}))
    assert load_regions(_as_model(synthetic)) is a
    assert load_regions(synthetic_model, max_vertices=32) is not a
    assert load_regions(synthetic_model, max_vertices=32).width == 32
