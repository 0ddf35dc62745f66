"""The browser viewer: marks file, JSON API, and the page in a real headless Chromium (skipped without)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from apu_jax.viz import marks
from apu_jax.viz.scene import PairScene
from apu_jax.viz.server import PairSource, make_server


def ellipsoid(centre, radii, nu=48, nv=24):
    """A closed UV ellipsoid: vertices (V, 3) and outward-wound faces (F, 3)."""
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, nu, endpoint=False), np.linspace(0, np.pi, nv + 1)[1:-1])
    ring = np.stack([np.sin(v) * np.cos(u), np.cos(v), np.sin(v) * np.sin(u)], -1).reshape(-1, 3)
    pts = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]]) * radii + centre
    faces = []
    for j in range(nu):
        faces.append([0, 1 + (j + 1) % nu, 1 + j])
    for i in range(nv - 2):
        for j in range(nu):
            a, b = 1 + i * nu + j, 1 + i * nu + (j + 1) % nu
            faces += [[a, b, b + nu], [a, b + nu, a + nu]]
    last = len(pts) - 1
    for j in range(nu):
        a = 1 + (nv - 2) * nu
        faces.append([last, a + j, a + (j + 1) % nu])
    return pts, np.array(faces)


def make_source(tmp_path: Path, num_pairs: int = 3) -> PairSource:
    v0, faces = ellipsoid(np.array([-0.3, 0.0, 3.0]), np.array([0.25, 0.8, 0.2]))
    v1, _ = ellipsoid(np.array([0.3, 0.0, 3.2]), np.array([0.25, 0.8, 0.2]))
    contact = np.zeros((2, len(v0)), np.float32)
    contact[0, v0[:, 0] > -0.1] = 1.0  # the sides facing each other
    contact[1, v1[:, 0] < 0.1] = 1.0
    ids = [f"pair-{i}" for i in range(num_pairs)]

    def load(i: int) -> PairScene:
        shift = np.array([0.05 * i, 0.0, 0.0])
        return PairScene(
            pair_id=ids[i], vertices=np.stack([v0 + shift, v1 + shift]), faces=faces,
            focal=np.array([550.0, 550.0]), principal=np.array([320.0, 240.0]), image_size=(640, 480),
            contact_weight=contact, joints3d=np.stack([v0[:5], v1[:5]]) + shift, label="hug",
        )  # fmt: skip

    return PairSource(
        name="synthetic", pair_ids=ids, faces=faces, load_scene=load, marks_path=tmp_path / "marks.json",
        labels=["hug"] * num_pairs, losses={"reproj": np.array([3.0, 1.0, 2.0])[:num_pairs]},
        keep=np.array([True, False, True])[:num_pairs],
    )  # fmt: skip


@pytest.fixture()
def server(tmp_path):
    source = make_source(tmp_path)
    srv = make_server(source)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    host, port = srv.server_address[:2]
    yield f"http://{host}:{port}", source
    srv.shutdown()
    srv.server_close()


def get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
        return json.loads(body) if r.headers["Content-Type"] == "application/json" else body


def post(url: str, obj) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(obj).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# ---------------------------------------------------------------- marks file


def test_marks_roundtrip_and_override(tmp_path):
    path = tmp_path / "marks.json"
    assert marks.load_marks(path) == {}
    marks.set_mark(path, "b", "rejected")
    marks.set_mark(path, "a", "accepted")
    marks.set_mark(path, "c", "rejected")
    marks.set_mark(path, "c", None)
    data = json.loads(path.read_text())
    assert data == {"format": "apu-marks", "version": 1, "marks": {"a": "accepted", "b": "rejected"}}
    auto = np.array([False, True, True, False])
    keep = marks.apply_marks(["a", "b", "c", "d"], auto, marks.load_marks(path))
    np.testing.assert_array_equal(keep, [True, False, True, False])
    with pytest.raises(marks.MarksError):
        marks.set_mark(path, "a", "maybe")
    assert marks.marks_path_for(tmp_path) == tmp_path / "marks.json"
    assert marks.marks_path_for(tmp_path / "set.npz") == tmp_path / "set.marks.json"


def test_marks_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "marks.json"
    marks.save_marks(path, {"a": "accepted"})
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        marks.set_mark(path, "b", "rejected")
    assert path.read_bytes() == before  # the old file is intact ...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marks.json"]  # ... and no temporary file is left


def test_malformed_marks_file_is_a_clear_error(tmp_path):
    path = tmp_path / "marks.json"
    path.write_text("{not json")
    with pytest.raises(marks.MarksError, match="marks.json"):
        marks.load_marks(path)
    path.write_text(json.dumps({"format": "apu-marks", "version": 1, "marks": {"a": "yes"}}))
    with pytest.raises(marks.MarksError, match="unknown mark"):
        marks.load_marks(path)


# ---------------------------------------------------------------- JSON API


def test_api_lists_pairs_and_serves_geometry(server):
    url, source = server
    listing = get(url + "/api/pairs")
    assert listing["count"] == 3 and listing["losses"] == ["reproj"]
    assert [p["pair_id"] for p in listing["pairs"]] == source.pair_ids
    assert [p["losses"]["reproj"] for p in listing["pairs"]] == [3.0, 1.0, 2.0]
    assert [p["keep"] for p in listing["pairs"]] == [True, False, True]
    pair = get(url + "/api/pair/1")
    verts = np.frombuffer(base64.b64decode(pair["vertices"]), "<f4").reshape(2, -1, 3)
    np.testing.assert_allclose(verts, source.load_scene(1).vertices, atol=1e-6)
    faces = np.frombuffer(base64.b64decode(get(url + "/api/faces")["faces"]), "<i4").reshape(-1, 3)
    np.testing.assert_array_equal(faces, source.faces)
    png = get(url + "/api/pair/0/overlay.png")
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (480, 640, 3) and img.std() > 10
    assert b"<canvas" in get(url + "/")
    with pytest.raises(urllib.error.HTTPError):
        get(url + "/api/pair/7")
    with pytest.raises(urllib.error.HTTPError):
        get(url + "/static/../server.py")


def test_api_mark_persists(server):
    url, source = server
    assert post(url + "/api/mark", {"pair_id": "pair-2", "mark": "rejected"}) == (
        200,
        {"pair_id": "pair-2", "mark": "rejected"},
    )
    assert marks.load_marks(source.marks_path) == {"pair-2": "rejected"}
    assert get(url + "/api/pairs")["pairs"][2]["mark"] == "rejected"
    assert post(url + "/api/mark", {"pair_id": "nope", "mark": "rejected"})[0] == 404
    assert post(url + "/api/mark", {"pair_id": "pair-2", "mark": "maybe"})[0] == 400
    assert post(url + "/api/mark", {"mark": "rejected"})[0] == 400
    assert marks.load_marks(source.marks_path) == {"pair-2": "rejected"}


# ---------------------------------------------------------------- real browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def chrome():
    """A headless Debian Chromium driven by selenium, or skip with the reason."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (extra 'test')")
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian chromium/chromium-driver missing (apt-get install -y chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # Flags for this sandboxed, offline machine (docs/VIEWING.md): no GPU, no network chatter, software WebGL.
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--window-size=1280,800",
    ):  # fmt: skip
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_page_draws_meshes_and_persists_a_reject(server):
    url, source = server
    driver = chrome()
    try:
        from selenium.webdriver.common.by import By

        driver.get(url + "/")
        body = driver.find_element(By.TAG_NAME, "body")
        wait_for(lambda: body.get_attribute("data-state") in ("drawn", "error"), what="the first pair drawn")
        assert body.get_attribute("data-state") == "drawn", driver.find_element(By.ID, "status").text
        png = driver.find_element(By.ID, "gl").screenshot_as_png
        shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].astype(float)
        assert shot.std() > 10, "the 3D view is blank"
        # Both people drawn in their colours (orange-ish: red > blue; blue-ish: blue > red), and the contact
        # regions in green.
        px = shot.reshape(-1, 3)
        assert ((px[:, 0] > px[:, 2] + 40) & (px[:, 0] > px[:, 1])).sum() > 500
        assert ((px[:, 2] > px[:, 0] + 40) & (px[:, 2] > px[:, 1])).sum() > 500
        assert ((px[:, 1] > px[:, 0] + 40) & (px[:, 1] > px[:, 2] + 40)).sum() > 200
        # Turning contacts off removes the green.
        driver.find_element(By.ID, "show-contact").click()
        px = cv2.imdecode(np.frombuffer(driver.find_element(By.ID, "gl").screenshot_as_png, np.uint8), 1)
        px = px[..., ::-1].reshape(-1, 3).astype(float)
        assert ((px[:, 1] > px[:, 0] + 40) & (px[:, 1] > px[:, 2] + 40)).sum() < 20
        # The first pair shown is the first in index order; reject it with the button.
        assert driver.find_element(By.ID, "title").text.startswith("pair-0")
        driver.find_element(By.ID, "reject").click()
        wait_for(lambda: marks.load_marks(source.marks_path).get("pair-0") == "rejected", what="marks.json")
        assert marks.load_marks(source.marks_path) == {"pair-0": "rejected"}
        # The next pair, then accept with the keyboard shortcut.
        driver.find_element(By.ID, "next").click()
        wait_for(lambda: driver.find_element(By.ID, "title").text.startswith("pair-1"), what="next pair")
        body.send_keys("a")
        wait_for(lambda: marks.load_marks(source.marks_path).get("pair-1") == "accepted", what="accept key")
    finally:
        driver.quit()
