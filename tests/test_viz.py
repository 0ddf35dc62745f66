"""The CPU rasteriser and 2D drawing: coverage, depth order, projection, shading, side view, contact maps."""

from __future__ import annotations

import numpy as np
import pytest

from apu_jax.viz import draw, scene
from apu_jax.viz.raster import (
    Mesh,
    is_closed,
    outward_sign,
    project_points,
    rasterize,
    render_meshes,
    rotate_about_centroid,
)

F = 100.0  # focal length (px) of the hand-made cameras below: a point (x, y, 1) lands on pixel (100x, 100y)


def pixel_triangle(corners_px: list[tuple[float, float]], z: float = 1.0) -> np.ndarray:
    """(3, 3) camera-frame vertices at depth z that project (f=F, c=0) onto the given pixel coordinates."""
    return np.array([[x * z / F, y * z / F, z] for x, y in corners_px])


def test_project_known_point():
    p = project_points(np.array([[0.1, -0.2, 2.0]]), focal=(500.0, 600.0), principal=(320.0, 240.0))
    np.testing.assert_allclose(p, [[345.0, 180.0]])


def test_projected_point_marks_expected_pixel():
    """A tiny triangle around a projected point covers the pixel (row=y, col=x) of that point only."""
    focal, principal = (500.0, 500.0), (40.0, 30.0)
    centre = np.array([0.02, -0.01, 1.0])  # → x = 50, y = 25
    px = project_points(centre[None], focal, principal)[0]
    assert tuple(px) == pytest.approx((50.0, 25.0))
    d = 0.3 / 500.0  # ±0.3 px around the point: only the pixel centre at (50, 25) is inside
    verts = centre + np.array([[-d, -d, 0.0], [2 * d, -d, 0.0], [-d, 2 * d, 0.0]])
    frags = rasterize(verts, np.array([[0, 1, 2]]), focal, principal, (80, 60))
    assert np.argwhere(frags.face >= 0).tolist() == [[25, 50]]


def test_triangle_covers_exactly_the_expected_pixels():
    # Right triangle with legs of 20 px from (10, 10): pixel centres (x, y) with x, y >= 10 and x + y <= 40.
    verts = pixel_triangle([(10, 10), (30, 10), (10, 30)])
    frags = rasterize(verts, np.array([[0, 1, 2]]), (F, F), (0.0, 0.0), (48, 40))
    y, x = np.mgrid[0:40, 0:48]
    expected = (x >= 10) & (y >= 10) & (x + y <= 40)
    np.testing.assert_array_equal(frags.face >= 0, expected)
    assert expected.sum() == 231  # 21 + 20 + ... + 1
    # Winding does not matter.
    frags_flipped = rasterize(verts, np.array([[0, 2, 1]]), (F, F), (0.0, 0.0), (48, 40))
    np.testing.assert_array_equal(frags_flipped.face >= 0, expected)


def test_triangle_partly_outside_the_image_is_clipped():
    verts = pixel_triangle([(-50, -50), (70, -50), (-50, 70)])  # hypotenuse x + y = 20
    frags = rasterize(verts, np.array([[0, 1, 2]]), (F, F), (0.0, 0.0), (20, 20))
    y, x = np.mgrid[0:20, 0:20]
    np.testing.assert_array_equal(frags.face >= 0, x + y <= 20)


def test_depth_order_independent_of_draw_order():
    near = Mesh(
        pixel_triangle([(0, 0), (40, 0), (0, 40)], z=2.0), np.array([[0, 1, 2]]), np.array([1.0, 0, 0])
    )
    far = Mesh(
        pixel_triangle([(5, 5), (45, 5), (5, 45)], z=3.0), np.array([[0, 1, 2]]), np.array([0, 0, 1.0])
    )
    bg = np.zeros((50, 50, 3), np.uint8)
    a = render_meshes(bg, [near, far], (F, F), (0.0, 0.0), ambient=1.0)
    b = render_meshes(bg, [far, near], (F, F), (0.0, 0.0), ambient=1.0)
    np.testing.assert_array_equal(a, b)
    assert tuple(a[10, 10]) == (255, 0, 0)  # both cover it: the near one wins
    assert tuple(a[40, 8]) == (0, 0, 255)  # only the far one
    assert tuple(a[48, 48]) == (0, 0, 0)  # background kept


def test_interpenetrating_triangles_resolved_per_pixel():
    """Two triangles crossing each other: each wins where it is nearer (a painter's sort cannot do this)."""
    size = (60, 20)

    # Triangle A: depth 2 at x=0 rising to 4 at x=60; triangle B: depth 4 at x=0 falling to 2 at x=60.
    def slanted(z_left, z_right, y0, y1):
        corners = [(0.0, y0, z_left), (60.0, y0, z_right), (60.0, y1, z_right), (0.0, y1, z_left)]
        v = np.array([[x * z / F, y * z / F, z] for x, y, z in corners])
        return v, np.array([[0, 1, 2], [0, 2, 3]])

    va, fa = slanted(2.0, 4.0, -5, 25)
    vb, fb = slanted(4.0, 2.0, -5, 25)
    img = render_meshes(
        np.zeros((size[1], size[0], 3), np.uint8),
        [Mesh(va, fa, np.array([1.0, 0, 0])), Mesh(vb, fb, np.array([0, 1.0, 0]))],
        (F, F), (0.0, 0.0), ambient=1.0, cull_back=False,
    )  # fmt: skip
    assert tuple(img[10, 5]) == (255, 0, 0)
    assert tuple(img[10, 55]) == (0, 255, 0)


def test_depth_is_perspective_correct():
    # A plane z = 2 + x (metres) seen through f=F; the depth at pixel u is where the ray (u/F, 0, 1) hits it.
    verts = np.array([[-0.5, -0.5, 1.5], [0.5, -0.5, 2.5], [0.5, 0.5, 2.5], [-0.5, 0.5, 1.5]])
    frags = rasterize(verts, np.array([[0, 1, 2], [0, 2, 3]]), (F, F), (50.0, 50.0), (100, 100))
    for u in (-15, 0, 12):
        t = 2.0 / (1.0 - u / F)  # z = 2 + x with x = z * u / F
        assert frags.depth[50, 50 + u] == pytest.approx(t, rel=1e-4)


def test_vertex_colours_interpolated_and_lambert_shading():
    verts = pixel_triangle([(0, 0), (60, 0), (0, 60)])
    colours = np.eye(3)
    img = render_meshes(np.zeros((64, 64, 3), np.uint8), [Mesh(verts, np.array([[0, 1, 2]]), colours)],
                        (F, F), (0.0, 0.0), ambient=1.0)  # fmt: skip
    # Pixel (x=20, y=20): screen barycentrics (1/3, 1/3, 1/3), and the plane is fronto-parallel so they
    # are also the perspective-correct ones.
    np.testing.assert_allclose(img[20, 20], [85, 85, 85], atol=1)
    np.testing.assert_allclose(img[0, 0], [255, 0, 0], atol=1)
    # Lambert: a face whose normal makes 60° with the view ray is lit at ambient + (1 - ambient) / 2.
    c, s = np.cos(np.pi / 3), np.sin(np.pi / 3)
    tilt = np.array([[0.0, -0.05, 0.0], [0.05 * c, -0.05, 0.05 * s], [0.0, 0.05, 0.0]]) + [0, 0, 5.0]
    white = Mesh(tilt, np.array([[0, 1, 2]]), np.ones(3))
    shaded = render_meshes(np.zeros((21, 21, 3), np.uint8), [white], (F, F), (2.0, 10.0), ambient=0.0)
    # The view ray to the face centroid is not exactly the z axis; compute the exact cosine.
    n = np.cross(tilt[1] - tilt[0], tilt[2] - tilt[0])
    view = -tilt.mean(axis=0)
    cos = abs(n @ view) / np.linalg.norm(n) / np.linalg.norm(view)
    assert cos == pytest.approx(0.5, abs=0.01)
    assert shaded[10, 2, 0] == pytest.approx(255 * cos, abs=1)


def test_alpha_blends_over_the_image():
    verts = pixel_triangle([(0, 0), (30, 0), (0, 30)])
    bg = np.full((20, 20, 3), 100, np.uint8)
    img = render_meshes(bg, [Mesh(verts, np.array([[0, 1, 2]]), np.ones(3))], (F, F), (0.0, 0.0),
                        alpha=0.25, ambient=1.0)  # fmt: skip
    assert tuple(img[2, 2]) == (139, 139, 139)  # 0.75 * 100 + 0.25 * 255 = 138.75
    assert tuple(img[19, 19]) == (100, 100, 100)
    assert bg[2, 2, 0] == 100  # input untouched


def tetrahedron(centre, r=0.3):
    v = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) * r + centre
    f = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])  # outward right-hand normals
    return v, f


def test_outward_sign_and_back_face_culling_do_not_change_the_picture():
    v, f = tetrahedron(np.array([0.0, 0.0, 3.0]))
    assert outward_sign(v, f) == 1.0
    assert outward_sign(v, f[:, ::-1]) == -1.0
    assert outward_sign(v, f[:1]) == 0.0  # a single triangle encloses nothing: never culled
    assert is_closed(f) and not is_closed(f[:3])  # a tetrahedron without one face is open
    assert outward_sign(v, f[:3]) == 0.0
    for faces in (f, f[:, ::-1]):
        mesh = Mesh(v, faces, np.array([0.8, 0.3, 0.2]))
        bg = np.zeros((80, 80, 3), np.uint8)
        culled = render_meshes(bg, [mesh], (150.0, 150.0), (40.0, 40.0), cull_back=True)
        full = render_meshes(bg, [mesh], (150.0, 150.0), (40.0, 40.0), cull_back=False)
        drawn = full.sum(axis=2) > 0
        assert drawn.sum() > 500
        np.testing.assert_array_equal(culled.sum(axis=2) > 0, drawn)
        # Pixel centres exactly on the silhouette touch a front and a back face at equal depth; the uncull
        # render picks either, so allow those few (well under 1 %) to differ.
        differs = np.any(culled != full, axis=2)
        assert differs.sum() < 0.01 * drawn.sum()


def test_rotate_about_centroid_turns_the_pair_side_on():
    a, b = np.array([[1.0, 0.0, 3.0]]), np.array([[-1.0, 0.0, 3.0]])
    ra, rb = rotate_about_centroid([a, b], np.pi / 2)
    np.testing.assert_allclose(ra, [[0.0, 0.0, 2.0]], atol=1e-12)  # +x turns towards the camera
    np.testing.assert_allclose(rb, [[0.0, 0.0, 4.0]], atol=1e-12)
    np.testing.assert_allclose(rotate_about_centroid([a], 0.3, centre=a[0])[0], a)


def two_blobs() -> scene.PairScene:
    """Two tetrahedra side by side in front of the camera, as a pair scene."""
    v0, f = tetrahedron(np.array([-0.5, 0.0, 4.0]))
    v1, _ = tetrahedron(np.array([0.5, 0.0, 4.0]))
    return scene.PairScene(
        pair_id="p0", vertices=np.stack([v0, v1]), faces=f, focal=np.array([200.0, 200.0]),
        principal=np.array([80.0, 60.0]), image_size=(160, 120),
    )  # fmt: skip


def test_side_view_puts_person_zero_in_front():
    s = two_blobs()
    front = scene.render_overlay(s)
    side = scene.render_side(s)
    c0 = np.array(draw.cv_colour(draw.PERSON_COLOURS[0]), float)
    c1 = np.array(draw.cv_colour(draw.PERSON_COLOURS[1]), float)

    def hue_share(img, c):
        """Pixels whose colour is a shade of c (same direction in RGB)."""
        px = img.reshape(-1, 3).astype(float)
        drawn = np.abs(px - draw.BLANK_BACKGROUND).sum(axis=1) > 0
        cosine = px @ c / (np.linalg.norm(px, axis=1) * np.linalg.norm(c) + 1e-9)
        return int((drawn & (cosine > 0.995)).sum())

    # Seen from the front both people are visible side by side ...
    assert hue_share(front, c0) > 300 and hue_share(front, c1) > 300
    # ... turned by 90°, person 0 (on the left, -x) moves behind person 1 — rotation_y(+90°) maps -x to +z —
    # and the two are superposed: person 1 hides most of person 0.
    assert hue_share(side, c1) > 3 * hue_share(side, c0)
    assert side.shape == front.shape


def test_contact_vertex_weights_and_matrix():
    vertex_ids = np.array([[0, 1, 2], [3, 4, 0], [5, 0, 0]])
    mask = np.array([[True, True, True], [True, True, False], [True, False, False]])
    pairs = np.array([[0, 2], [1, 2], [-1, -1]])
    weights = np.array([0.5, 0.9, 0.0])
    w = scene.contact_vertex_weights(pairs, weights, vertex_ids, mask, num_vertices=7)
    np.testing.assert_allclose(w[0], [0.5, 0.5, 0.5, 0.9, 0.9, 0.0, 0.0])
    np.testing.assert_allclose(w[1], [0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0])
    m = scene.contact_matrix(pairs, weights, 3)
    assert m[0, 2] == pytest.approx(0.5) and m[1, 2] == pytest.approx(0.9) and m.sum() == pytest.approx(1.4)


def test_contact_colour_highlights_the_region():
    s = two_blobs()
    s.contact_weight = np.zeros((2, 4), np.float32)
    s.contact_weight[1] = 1.0  # all of person 1 in contact → drawn in the contact colour
    img = scene.render_overlay(s)
    r, g, b = img[60, 105].astype(int)  # centre of person 1, whose own colour is mostly blue
    assert g > b + 40 and g > r + 40
    r, g, b = img[60, 55].astype(int)  # person 0 has no contact: keeps its warm colour
    assert r > g > b


def test_heatmap_cells_show_weights():
    m = np.zeros((5, 5))
    m[1, 3] = 1.0
    m[2, 3] = 0.5
    img = draw.contact_heatmap(m, [f"r{i}" for i in range(5)], cell=20)
    # Only regions with contacts are shown: rows r1, r2 and column r3 → a 2 x 1 grid.
    white = (img == 255).all(axis=2)
    full = draw.heat_colour(np.array(1.0)) * 255
    half = draw.heat_colour(np.array(0.5)) * 255
    assert np.abs(img.reshape(-1, 3) - full).sum(axis=1).min() < 3
    assert np.abs(img.reshape(-1, 3) - half).sum(axis=1).min() < 3
    assert white.mean() > 0.3
    np.testing.assert_allclose(draw.heat_colour(np.array([0.0, 1.0])), [[1, 1, 1], [0.70, 0.08, 0.10]])


def test_keypoints_drawn_only_when_present():
    img = np.zeros((50, 50, 3), np.uint8)
    kp = np.array([[10.0, 10.0, 0.9], [40.0, 40.0, 0.0]])
    out = draw.draw_keypoints(img, kp, (1.0, 0.0, 0.0), radius=3)
    assert out[10, 10, 0] == 255 and out[10, 10, 1] == 0
    assert out[37:44, 37:44].sum() == 0  # confidence 0 = missing
    rp = np.array([[10.0, 30.0], [40.0, 40.0]])
    out = draw.draw_keypoints(img, kp, (1.0, 0.0, 0.0), reprojected=rp, radius=3)
    assert out[20, 10].min() > 200  # white line from detection to reprojection
    assert out[30, 10].sum() > 0 and out[40, 40].sum() > 0  # reprojection crosses drawn even when missing


def test_side_view_camera_frames_the_points():
    pts = np.array([[-1.0, -2.0, 0.5], [1.0, 2.0, 0.7], [0.0, 0.0, 0.6]])  # too close to fit at f=500
    focal = np.array([500.0, 500.0])
    moved, principal = scene.side_view_camera(pts, focal, (400, 300), margin=0.9)
    proj = project_points(moved, focal, principal)
    assert proj.min() >= 0 and proj[:, 0].max() <= 400 and proj[:, 1].max() <= 300
    np.testing.assert_allclose(0.5 * (proj.min(axis=0) + proj.max(axis=0)), [200.0, 150.0], atol=1e-6)
    np.testing.assert_allclose(moved[:, :2], pts[:, :2])  # only moved along z
    far = pts + [0.0, 0.0, 100.0]  # tiny at 100 m: left alone, unless asked to fill the canvas
    kept, _ = scene.side_view_camera(far, focal, (400, 300))
    np.testing.assert_allclose(kept, far)
    filled, principal = scene.side_view_camera(far, focal, (400, 300), fill=True)
    proj = project_points(filled, focal, principal)
    assert np.ptp(proj[:, 1]) > 0.8 * 300 * 0.9


def test_empty_contact_map_is_a_small_note_not_a_grid():
    s = two_blobs()
    s.contact_matrix = np.zeros((75, 75), np.float32)
    s.region_names = tuple(f"r{i}" for i in range(75))
    empty = scene.render_contact_map(s)
    s.contact_matrix[3, 4] = 1.0
    full = scene.render_contact_map(s)
    assert empty.shape[0] < 500 and full.shape[0] < 500  # neither draws the whole 75 x 75 grid
    red = draw.heat_colour(np.array(1.0)) * 255
    assert np.abs(full.reshape(-1, 3) - red).sum(axis=1).min() < 3
    assert np.abs(empty.reshape(-1, 3) - red).sum(axis=1).min() > 30


def test_caption_wraps_long_lines():
    img = np.zeros((10, 200, 3), np.uint8)
    one = draw.caption(img, ["short"], height=20)
    long = draw.caption(img, ["word " * 40], height=20)
    assert one.shape[0] == 10 + 20 + 6
    assert long.shape[0] > one.shape[0] + 40  # several lines, none cut off at the right edge
    band = long[: long.shape[0] - 10]
    assert (band[:, -5:] == 255).all()
