"""Opening fits / pair sets for viewing, and the `apu render / filter / analyze / view` commands."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from apu_jax.body import load_model
from apu_jax.data.pairset import atomic_savez, atomic_write_text, save_pairset
from apu_jax.fit.camera import default_focal
from apu_jax.regions import load_regions, model_to_keypoint_indices
from apu_jax.viz import marks
from apu_jax.viz.load import SourceError, open_source
from apu_jax.viz.load import _forward as forward  # the jitted forward: compiled once for all tests
from apu_jax.viz.raster import project_points
from cli import analyze as analyze_cli
from cli import filter as filter_cli
from cli import render as render_cli
from cli import view as view_cli

W, H = 320, 240
TERMS = ["keypoints", "contact", "gmm", "shape", "init_pose", "interpenetration"]


def make_app() -> typer.Typer:
    app = typer.Typer()
    for module in (render_cli, view_cli, filter_cli, analyze_cli):
        module.register(app)
    return app


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, small_smplx_file):
    """A pair set (3 pairs, one with an image) and a hand-written FITS directory for the small model."""
    root = tmp_path_factory.mktemp("viz_cli")
    model = load_model(small_smplx_file)
    nb = model.num_betas
    rng = np.random.default_rng(1)
    p = 3
    transl = np.zeros((p, 2, 3), np.float32)
    transl[:, 0] = [-0.35, 0.0, 4.0]
    transl[:, 1] = [0.35, 0.0, 4.2]
    params = {
        "global_orient": np.zeros((p, 2, 3), np.float32),
        "body_pose": (0.1 * rng.standard_normal((p, 2, 63))).astype(np.float32),
        "betas": np.zeros((p, 2, nb), np.float32),
        "transl": transl,
    }
    f = default_focal(W, H)
    kp_ids = model_to_keypoint_indices("body25")
    per_pair = [{k: v[i] for k, v in params.items()} for i in range(p)]
    joints = np.stack([np.asarray(forward(model, **q)["joints"]) for q in per_pair])[:, :, kp_ids]
    ones = np.ones(joints.shape[:-1] + (1,))
    kp = np.concatenate([project_points(joints, (f, f), (W / 2, H / 2)), ones], -1)
    kp[1, 0, 3, 2] = 0.0  # one missing keypoint
    cv2.imwrite(str(root / "img0.png"), np.full((H, W, 3), (30, 60, 90), np.uint8))  # BGR
    contact_pairs = np.full((p, 4, 2), -1, np.int32)
    contact_weights = np.zeros((p, 4), np.float32)
    contact_pairs[:, 0] = [2, 5]
    contact_weights[:, 0] = 0.8
    meta = {
        "format": "apu-pairset",
        "version": 1,
        "keypoint_format": "body25",
        "model": str(small_smplx_file),
    }
    pairs_path = save_pairset(
        root / "pairs.npz", meta=meta,
        pair_id=np.array(["a/0", "b", "c"]), image=np.array(["img0.png", "", "missing.png"]),
        image_size=np.tile(np.array([W, H], np.int32), (p, 1)), keypoints=kp.astype(np.float32),
        init_global_orient=params["global_orient"], init_body_pose=np.zeros((p, 2, 63), np.float32),
        init_betas=params["betas"], init_transl=params["transl"] + np.float32(0.1),
        contact_pairs=contact_pairs, contact_weights=contact_weights,
        label=np.array(["hug", "Hug", "handshake"]),
    )  # fmt: skip
    fits = root / "fits"
    fits.mkdir()
    fits_meta = {"format": "apu-fits", "version": 1, "pairs": str(pairs_path), "model": str(small_smplx_file),
                 "terms": TERMS, "weights": {"filter_threshold": 20.0}}  # fmt: skip
    atomic_write_text(fits / "meta.json", json.dumps(fits_meta))
    atomic_savez(
        fits / "shard-00000.npz",
        pair_id=np.array(["a/0", "b", "c"]), **params,
        loss_history_stage1=np.ones((p, 4), np.float32),
        loss_history_stage2=np.array([[5, 4], [3, 2], [9, 8]], np.float32),
        terms_stage1=np.zeros((p, len(TERMS)), np.float32),
        terms_stage2=np.arange(p * len(TERMS), dtype=np.float32).reshape(p, len(TERMS)),
        reproj_error=np.array([[1.0, 2.0], [30.0, 3.0], [5.0, 6.0]], np.float32),
        keep=np.array([True, False, True]), error=np.array(["", "", ""]),
    )  # fmt: skip
    return {"root": root, "pairs": pairs_path, "fits": fits, "model": model, "params": params, "kp": kp}


def test_open_fits_joins_pairset_and_runs_the_model(fitted):
    src = open_source(fitted["fits"])
    assert src.pair_ids == ["a/0", "b", "c"]
    np.testing.assert_allclose(src.losses["contact"], [1.0, 7.0, 13.0])  # column 1 of terms_stage2
    np.testing.assert_allclose(src.losses["total"], [4.0, 2.0, 8.0])  # last stage-2 iteration
    np.testing.assert_allclose(src.losses["reproj_error"], [1.5, 16.5, 5.5])
    assert src.marks_path == fitted["fits"] / "marks.json"
    scene = src.load_scene(0)
    expect = np.asarray(
        forward(fitted["model"], **{k: v[0] for k, v in fitted["params"].items()})["vertices"]
    )
    np.testing.assert_allclose(scene.vertices, expect, atol=1e-5)
    # The keypoints were made by projecting the fitted joints, so the reprojections land on them.
    np.testing.assert_allclose(scene.reprojected, fitted["kp"][0, :, :, :2], atol=1e-3)
    assert scene.image is not None and tuple(scene.image[0, 0]) == (90, 60, 30)  # RGB
    assert scene.label == "hug" and scene.keep is True
    # Contact (region 2 on person 0, region 5 on person 1) at weight 0.8 colours exactly those vertices.
    regions = load_regions(fitted["model"])
    ids0 = np.unique(np.asarray(regions.vertex_ids)[2][np.asarray(regions.mask)[2]])
    assert set(np.flatnonzero(scene.contact_weight[0] > 0)) == set(ids0.tolist())
    assert scene.contact_weight[0, ids0].max() == pytest.approx(0.8)
    assert scene.contact_matrix[2, 5] == pytest.approx(0.8) and scene.contact_matrix.sum() == pytest.approx(
        0.8
    )
    assert src.load_scene(1).image is None and src.load_scene(2).image is None  # none / missing → blank


def test_open_pairset_draws_initial_parameters(fitted):
    src = open_source(fitted["pairs"])
    scene = src.load_scene(1)
    init = {k: np.zeros_like(v[1]) for k, v in fitted["params"].items()}
    init["transl"] = fitted["params"]["transl"][1] + np.float32(0.1)
    expect = np.asarray(forward(fitted["model"], **init)["vertices"])
    np.testing.assert_allclose(scene.vertices, expect, atol=1e-5)
    assert src.marks_path == fitted["root"] / "pairs.marks.json"


def test_open_errors_name_the_problem(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(SourceError, match="bad.npz"):
        open_source(tmp_path / "bad.npz")


def test_render_command_writes_pictures(fitted, tmp_path):
    out = tmp_path / "pics"
    res = CliRunner().invoke(
        make_app(),
        ["render", str(fitted["fits"]), "--out", str(out), "--contact-map", "--sort", "total", "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["pairs"] == 3
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_0-contacts.png", "a_0.png", "b-contacts.png", "b.png", "c-contacts.png", "c.png"]
    img = cv2.imread(str(out / "a_0.png"))[..., ::-1]
    # Overlay + side view side by side under a caption, each view at the image size.
    assert img.shape[1] == 2 * W + 4 and img.shape[0] > H
    view = img[-H:, :W].reshape(-1, 3).astype(int)
    assert ((view == (90, 60, 30)).all(axis=1)).mean() > 0.3  # the image shows around the bodies
    warm = (view[:, 0] > view[:, 2] + 60).sum()  # person 0 is drawn in a warm colour
    cool = (view[:, 2] > view[:, 0] + 60) & (view[:, 2] > 150)
    assert warm > 50 and cool.sum() > 50


def test_render_selects_and_reports_bad_input(fitted, tmp_path):
    app = make_app()
    out = tmp_path / "one"
    res = CliRunner().invoke(
        app, ["render", str(fitted["fits"]), "--out", str(out), "--pair", "c", "--no-side"]
    )
    assert res.exit_code == 0, res.output
    assert [p.name for p in out.iterdir()] == ["c.png"]
    assert cv2.imread(str(out / "c.png")).shape[1] == W
    res = CliRunner().invoke(app, ["render", str(fitted["fits"]), "--out", str(out), "--pair", "zzz"])
    assert res.exit_code == 2 and "unknown pair id 'zzz'" in res.output
    res = CliRunner().invoke(app, ["render", str(tmp_path / "missing"), "--out", str(out)])
    assert res.exit_code == 2 and "no such file" in res.output
    res = CliRunner().invoke(app, ["render", str(fitted["fits"]), "--out", str(out), "--sort", "nope"])
    assert res.exit_code == 2 and "unknown loss 'nope'" in res.output


def test_filter_honours_marks_and_thresholds(fitted, tmp_path):
    app = make_app()
    mp = marks.marks_path_for(fitted["fits"])
    try:
        res = CliRunner().invoke(app, ["filter", str(fitted["fits"]), "--json"])
        assert json.loads(res.output)["kept"] == ["a/0", "c"]
        marks.set_mark(mp, "c", "rejected")
        marks.set_mark(mp, "b", "accepted")
        out = tmp_path / "verdict.json"
        res = CliRunner().invoke(app, ["filter", str(fitted["fits"]), "--out", str(out)])
        assert res.exit_code == 0, res.output
        verdict = json.loads(out.read_text())
        assert verdict["kept"] == ["a/0", "b"] and verdict["dropped"] == {"c": "marked rejected"}
        # A stricter threshold drops a (max error 2 px) but the manual accept of b still wins.
        res = CliRunner().invoke(app, ["filter", str(fitted["fits"]), "--threshold", "1.5", "--json"])
        assert json.loads(res.output)["kept"] == ["b"]
        res = CliRunner().invoke(app, ["filter", str(fitted["fits"]), "--ignore-marks", "--json"])
        assert json.loads(res.output)["kept"] == ["a/0", "c"]
    finally:
        mp.unlink(missing_ok=True)


def test_render_only_kept_follows_marks(fitted, tmp_path):
    mp = marks.marks_path_for(fitted["fits"])
    try:
        marks.set_mark(mp, "a/0", "rejected")
        out = tmp_path / "kept"
        res = CliRunner().invoke(
            make_app(), ["render", str(fitted["fits"]), "--out", str(out), "--only", "kept"]
        )
        assert res.exit_code == 0, res.output
        assert [p.name for p in out.iterdir()] == ["c.png"]
    finally:
        mp.unlink(missing_ok=True)


def test_analyze_interactions_command(fitted, tmp_path):
    txt = tmp_path / "chi3d.txt"
    txt.write_text("hug\t20\nhandshake\t20\nkick\t5\n")
    plot = tmp_path / "plot.png"
    res = CliRunner().invoke(
        make_app(),
        ["analyze", "interactions", str(fitted["pairs"]), str(txt), "--out", str(plot),
         "--embedder", "trigram", "--name", "ours", "--name", "CHI3D", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["embedder"] == "char-trigram"
    ours, chi = report["datasets"]
    assert ours["name"] == "ours" and ours["diversity"]["types"] == 2 and ours["diversity"]["examples"] == 3
    assert chi["diversity"]["examples"] == 45
    assert cv2.imread(str(plot)).shape == (700, 940, 3)
    res = CliRunner().invoke(make_app(), ["analyze", "interactions", str(tmp_path / "none.npz")])
    assert res.exit_code == 2 and "none.npz" in res.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_view_command_serves_the_api(fitted):
    port = free_port()
    code = (
        "import sys, typer; from cli import view; app = typer.Typer(); view.register(app); "
        "app.command('noop')(lambda: None); app(sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "view", str(fitted["fits"]), "--port", str(port), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        info = json.loads(proc.stdout.readline())
        assert info["url"] == f"http://127.0.0.1:{port}/" and info["pairs"] == 3
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(info["url"] + "api/pairs", timeout=30) as r:
                    listing = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert [p["pair_id"] for p in listing["pairs"]] == ["a/0", "b", "c"]
        assert listing["pairs"][1]["keep"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_demo_pictures_pick_the_best_kept_pairs(fitted, tmp_path):
    from apu_jax.viz.pictures import demo_pictures

    written = demo_pictures(fitted["fits"], tmp_path / "demo", count=2)
    # Kept pairs are a/0 (total 4) and c (total 8); b was rejected by the automatic filter.
    assert [p.split("/")[-1] for p in written] == ["a_0.png", "a_0-contacts.png", "c.png", "c-contacts.png"]
    assert all(cv2.imread(p) is not None for p in written)


@pytest.fixture()
def dataset_dir(fitted, tmp_path):
    """A dataset folder as `apu run` exports it (apu_jax/data/dataset.py's layout), written by hand."""
    pairs = dict(np.load(fitted["pairs"]))
    meta = {"format": "apu-dataset", "version": 1, "model": json.loads(str(pairs["meta"]))["model"],
            "keypoint_format": "body25", "data_root": str(fitted["root"]), "terms": TERMS}  # fmt: skip
    arrays = {k: pairs[k] for k in ("pair_id", "image", "image_size", "label", "keypoints", "contact_pairs")}
    arrays["contact_weights"] = pairs["contact_weights"]
    arrays.update({k: v for k, v in fitted["params"].items()})
    arrays["reproj_error"] = np.array([[1.0, 2.0], [30.0, 3.0], [5.0, 6.0]], np.float32)
    arrays["terms_stage2"] = np.ones((3, len(TERMS)), np.float32)
    arrays["loss_final"] = np.array([3.0, 1.0, 2.0], np.float32)
    folder = tmp_path / "DATASET"
    atomic_savez(folder / "dataset.npz", meta=np.asarray(json.dumps(meta)), **arrays)
    return folder


def test_dataset_folder_opens_renders_and_filters_with_marks(dataset_dir, tmp_path):
    src = open_source(dataset_dir)
    assert src.pair_ids == ["a/0", "b", "c"]
    np.testing.assert_allclose(src.losses["total"], [3.0, 1.0, 2.0])
    assert src.marks_path == dataset_dir / "dataset.marks.json"
    assert marks.marks_path_for(dataset_dir / "dataset.npz") == src.marks_path  # folder or file: same marks
    scene = src.load_scene(0)
    assert scene.image is not None  # found through meta.data_root
    app = make_app()
    marks.set_mark(src.marks_path, "b", "rejected")
    out = tmp_path / "filtered.npz"
    res = CliRunner().invoke(app, ["filter", str(dataset_dir), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["kept"] == ["a/0", "c"]
    with np.load(out) as z:
        assert z["pair_id"].tolist() == ["a/0", "c"]
        np.testing.assert_allclose(z["loss_final"], [3.0, 2.0])
        assert json.loads(str(z["meta"]))["filtered"]["kept"] == 2
    res = CliRunner().invoke(app, ["filter", str(dataset_dir), "--threshold", "5.5", "--json"])
    assert json.loads(res.output)["kept"] == ["a/0"]  # c's max error 6 >= 5.5; b rejected twice over
