"""Evaluation: Procrustes, two-person PA-MPJPE, contact precision/recall, filter scores, evaluate()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from apu_jax.body import load_model
from apu_jax.body.synthetic import write_synthetic_smplx
from apu_jax.eval import metrics as M
from apu_jax.eval.evaluate import EvalInputError, _body_outputs, evaluate
from apu_jax.regions import load_regions
from cli import eval as eval_cli


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# --------------------------------------------------------------------------------------------- metrics


def test_procrustes_recovers_a_known_similarity_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    rot, scale, shift = _rotation(rng), 1.7, np.array([0.3, -2.0, 5.0])
    y = scale * x @ rot.T + shift
    s, r, t = M.similarity_procrustes(x, y)
    np.testing.assert_allclose(s, scale, rtol=1e-12)
    np.testing.assert_allclose(r, rot, atol=1e-12)
    np.testing.assert_allclose(t, shift, atol=1e-12)
    np.testing.assert_allclose(M.procrustes_align(x, y), y, atol=1e-12)
    assert M.pa_mpjpe(x, y) < 1e-12
    # Batched input gives the per-item answers.
    xs = np.stack([x, x[::-1]])
    ys = np.stack([y, 2.0 * x[::-1]])
    np.testing.assert_allclose(M.similarity_procrustes(xs, ys)[0], [scale, 2.0], rtol=1e-12)


def test_procrustes_never_reflects():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    mirrored = x * np.array([-1.0, 1.0, 1.0])
    _, r, _ = M.similarity_procrustes(x, mirrored)
    assert np.linalg.det(r) == pytest.approx(1.0)
    assert M.pa_mpjpe(x, mirrored) > 0.1  # a reflection cannot be explained away


def test_joint_pa_mpjpe_takes_the_better_ordering():
    rng = np.random.default_rng(2)
    gt = rng.normal(size=(2, 22, 3))
    gt[1] += (1.0, 0, 0)
    rot = _rotation(rng)
    pred = 0.8 * gt[::-1] @ rot.T + 3.0  # the same scene, persons listed the other way round
    err, swapped = M.joint_pa_mpjpe(pred, gt)
    assert err < 1e-10 and swapped
    err, swapped = M.joint_pa_mpjpe(0.8 * gt @ rot.T, gt)
    assert err < 1e-10 and not swapped
    # One Procrustes for both people: moving one person relative to the other is an error that stays.
    moved = gt.copy()
    moved[1] += (0.0, 0.1, 0.0)
    err, _ = M.joint_pa_mpjpe(moved, gt)
    assert 0.02 < err < 0.1
    # ...whereas per-person PA-MPJPE does not see it.
    assert M.pa_mpjpe(moved, gt).max() < 1e-10


def test_mpjpe_is_root_aligned():
    gt = np.zeros((3, 3))
    gt[1, 0], gt[2, 1] = 1.0, 1.0
    assert M.mpjpe(gt + 5.0, gt) == pytest.approx(0.0)
    pred = gt.copy()
    pred[2] += (0.0, 0.0, 0.3)  # one joint off by 30 cm → mean 0.1 m
    assert M.mpjpe(pred + 1.0, gt) == pytest.approx(0.1)


def test_contact_matrix_and_counts_on_constructed_vertices():
    # Body a: two regions; body b: the same layout. Vertex 0 of a is 1.5 cm from vertex 2 of b (region 1).
    va = np.array([[0, 0, 0], [0, 1, 0], [5, 0, 0], [5, 1, 0]], float)
    vb = np.array([[9, 9, 9], [9, 8, 9], [0.015, 0, 0], [0.0, 1.025, 0]], float)
    ids = np.array([[0, 1], [2, 3]])
    mask = np.ones((2, 2), bool)
    member = M.region_membership(ids, mask, 4)
    contacts = M.contact_matrix(va, vb, member, 0.02)
    np.testing.assert_array_equal(contacts, [[False, True], [False, False]])  # 2.5 cm pair is not contact
    counts = M.contact_counts(contacts, np.array([[0, 1], [1, 0], [0, 1], [-1, -1]]))
    assert counts == {"gt": 2, "recalled": 1, "predicted": 1}
    # Coincident vertices are in contact; the threshold is strict.
    assert M.contact_matrix(va, va, member, 0.02)[0, 0]
    assert not M.contact_matrix(va, vb, member, 0.015)[0, 1]


def test_filter_scores():
    errors = np.array([50, 90, 30, 200, 70])
    keep = np.array([True, True, False, False, True])
    scores = M.filter_scores(errors, keep, 80)
    assert scores["n_kept"] == 3 and scores["n_good"] == 3
    assert scores["filter_precision"] == pytest.approx(2 / 3)
    assert scores["filter_recall"] == pytest.approx(2 / 3)
    assert M.filter_scores(errors, np.zeros(5, bool), 80)["filter_precision"] is None


# -------------------------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A synthetic model small enough for a fast test: 3000 vertices, no pose correctives."""
    folder = tmp_path_factory.mktemp("model")
    write_synthetic_smplx(folder / "syn.npz", num_vertices=3000, num_shape_dirs=10)
    arrays = dict(np.load(folder / "syn.npz"))
    del arrays["posedirs"]
    arrays["extra_vertex_ids"] = np.arange(21, dtype=np.int64) * 7  # own-format file: any valid vertex ids
    path = folder / "small.npz"
    np.savez(path, **arrays)
    return load_model(path)


def _write_pairs(path: Path, ids: list[str], init: dict[str, np.ndarray], **extra: np.ndarray) -> Path:
    """A pair set with every key FORMATS.md requires (keypoints are not used by the evaluation)."""
    num = len(ids)
    meta = {"format": "apu-pairset", "version": 1, "keypoint_format": "body25", "region_set": "default"}
    arrays = {
        "image_size": np.tile([640, 480], (num, 1)).astype(np.int32),
        "keypoints": np.zeros((num, 2, 25, 3), np.float32),
        "contact_pairs": np.full((num, 1, 2), -1, np.int32),
        "contact_weights": np.zeros((num, 1), np.float32),
        **{f"init_{k}": v for k, v in init.items()},
        **extra,
    }
    np.savez(path, meta=np.asarray(json.dumps(meta)), pair_id=np.asarray(ids), **arrays)
    return path


def _write_fits(folder: Path, params: dict[str, np.ndarray], ids: list[str], keep, shards: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(
        json.dumps({"format": "apu-fits", "version": 1, "pairs": "", "model": ""})
    )
    for k, part in enumerate(np.array_split(np.arange(len(ids)), shards)):
        np.savez(
            folder / f"shard-{k:05d}.npz",
            pair_id=np.asarray(ids)[part],
            keep=np.asarray(keep)[part],
            error=np.full(len(part), ""),
            **{key: v[part] for key, v in params.items()},
        )
    return folder


def test_evaluate_on_a_tiny_synthetic_pair_set(tmp_path, small_model):
    rng = np.random.default_rng(3)
    num, nb = 5, small_model.num_betas
    gt = {
        "global_orient": rng.normal(0, 0.2, (num, 2, 3)),
        "body_pose": rng.normal(0, 0.2, (num, 2, 63)),
        "betas": rng.normal(0, 1.0, (num, 2, nb)),
        "transl": np.stack([np.zeros((num, 3)), np.tile([0.4, 0.0, 0.0], (num, 1))], axis=1),
    }
    gt = {k: v.astype(np.float32) for k, v in gt.items()}
    init = {k: v + rng.normal(0, 0.15, v.shape).astype(np.float32) for k, v in gt.items()}
    # Ground-truth contacts: every region pair in contact on the ground-truth meshes.
    regions = load_regions(small_model, max_vertices=None)
    member = M.region_membership(regions.vertex_ids, regions.mask, small_model.num_vertices)
    # Same body-model call as evaluate() (one compile for the whole test).
    verts = _body_outputs(small_model, gt, need_vertices=True)["vertices"]
    gt_pairs = np.full((num, 4000, 2), -1, np.int32)
    for p in range(num):
        found = np.argwhere(M.contact_matrix(verts[p, 0], verts[p, 1], member))
        assert 0 < len(found) <= 4000
        gt_pairs[p, : len(found)] = found
    ids = [f"pair{p}" for p in range(num)]
    # Input contact maps: the first ground-truth pair (weight 1) and a made-up one with weight 0 (ignored).
    contact_pairs = np.stack([gt_pairs[:, 0], np.array([[0, 1]] * num)], axis=1).astype(np.int32)
    contact_weights = np.tile(np.array([1.0, 0.0], np.float32), (num, 1))
    pairs_path = _write_pairs(
        tmp_path / "pairs.npz",
        ids,
        init,
        gt_contact_pairs=gt_pairs,
        contact_pairs=contact_pairs,
        contact_weights=contact_weights,
        **{f"gt_{k}": v for k, v in gt.items()},
    )
    # Fits: pairs 0–2 exact (pair 1 with the two people listed the other way round), pairs 3–4 = init.
    fit = {k: v.copy() for k, v in init.items()}
    for p in (0, 2):
        for k in gt:
            fit[k][p] = gt[k][p]
    for k in gt:
        fit[k][1] = gt[k][1][::-1]
    keep = [True, True, False, True, False]
    fits_dir = _write_fits(tmp_path / "fits", fit, ids, keep)

    res = evaluate(fits_dir, pairs_path, model=small_model, good_threshold_mm=1.0, per_pair=True)
    assert res["n_pairs"] == 5 and res["n_missing_fits"] == 0
    per = res["per_pair"]
    np.testing.assert_allclose(per["joint_pa_mpjpe_mm"][:3], 0.0, atol=1e-2)
    assert min(per["joint_pa_mpjpe_mm"][3:]) > 5.0
    np.testing.assert_allclose(per["joint_pa_mpjpe_mm"][3:], per["init_joint_pa_mpjpe_mm"][3:], rtol=1e-6)
    assert res["init_joint_pa_mpjpe_mm"] > res["joint_pa_mpjpe_mm"]
    assert res["joint_pa_mpjpe_mm"] == pytest.approx(np.mean(per["joint_pa_mpjpe_mm"]))
    # Good (< 1 mm): pairs 0, 1, 2; kept: 0, 1, 3 → precision 2/3, recall 2/3.
    assert res["n_good"] == 3 and res["n_kept"] == 3
    assert res["filter_precision"] == pytest.approx(2 / 3) and res["filter_recall"] == pytest.approx(2 / 3)
    # Exact fits recall every ground-truth contact; pair 1 is swapped so its contacts are not the same.
    recalled = per["contact_recalled"]
    n_gt = [(gt_pairs[p, :, 0] >= 0).sum() for p in range(num)]
    assert recalled[0] == n_gt[0] and recalled[2] == n_gt[2]
    assert 0.0 < res["contact_recall"] < 1.0 and res["init_contact_recall"] < res["contact_recall"]
    assert res["n_gt_contacts"] == sum(n_gt)

    # Only the exact, unswapped fits: recall and precision are exactly 1.
    sub = _write_fits(
        tmp_path / "fits_exact", {k: v[[0, 2]] for k, v in fit.items()}, [ids[0], ids[2]], [1, 1], 1
    )
    exact = evaluate(sub, pairs_path, model=small_model)
    assert exact["n_pairs"] == 2 and exact["n_missing_fits"] == 3
    assert exact["contact_recall"] == 1.0 and exact["contact_precision"] == 1.0
    assert exact["input_contact_satisfied"] == 1.0
    assert exact["filter_precision"] == 1.0
    assert exact["joint_pa_mpjpe_mm"] < 1e-2
    for key in (
        "joint_pa_mpjpe_mm",
        "init_joint_pa_mpjpe_mm",
        "contact_recall",
        "filter_precision",
        "n_pairs",
    ):
        assert key in exact
    json.dumps(exact)  # JSON-ready

    # The command line: same numbers, a table, and one-line errors with exit code 2.
    app = typer.Typer()
    eval_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `eval` a named subcommand
    runner = CliRunner()
    args = ["eval", str(sub), "--pairs", str(pairs_path), "--model", small_model.name]
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["joint_pa_mpjpe_mm"] == pytest.approx(exact["joint_pa_mpjpe_mm"])
    out = runner.invoke(app, [*args, str(fits_dir), "--json"])
    assert [r["n_pairs"] for r in json.loads(out.output)["runs"]] == [2, 5]
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "init" in out.output and "fits_exact (kept)" in out.output
    out = runner.invoke(app, ["eval", str(sub), "--pairs", str(tmp_path / "nope.npz")])
    assert out.exit_code == 2 and "error: pair set not found" in out.output


def test_evaluate_input_errors(tmp_path, small_model):
    with pytest.raises(ValueError, match="pair set not found"):
        evaluate(tmp_path, tmp_path / "nope.npz", model=small_model)
    bad = tmp_path / "bad.npz"
    np.savez(
        bad, meta=np.asarray(json.dumps({"format": "apu-pairset", "version": 1})), pair_id=np.asarray(["a"])
    )
    with pytest.raises(ValueError, match="missing key 'image_size'"):
        evaluate(tmp_path, bad, model=small_model)
    init = {
        "global_orient": np.zeros((1, 2, 3), np.float32),
        "body_pose": np.zeros((1, 2, 63), np.float32),
        "betas": np.zeros((1, 2, 3), np.float32),
        "transl": np.zeros((1, 2, 3), np.float32),
    }
    good = _write_pairs(tmp_path / "good.npz", ["a"], init)
    with pytest.raises(ValueError, match="fits directory not found"):
        evaluate(tmp_path / "missing", good, model=small_model)
    fits_dir = _write_fits(tmp_path / "fits", init, ["a"], [True], shards=1)
    with pytest.raises(EvalInputError, match="betas has 3 coefficients"):
        evaluate(fits_dir, good, model=small_model)
    other = _write_fits(tmp_path / "other", init, ["b"], [True], shards=1)
    with pytest.raises(EvalInputError, match="none of its pair ids"):
        evaluate(other, good, model=small_model)
