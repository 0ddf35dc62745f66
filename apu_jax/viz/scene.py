"""One fitted pair as something to look at, and its pictures: the fit over the image and a side view.

A `PairScene` holds plain NumPy arrays (everything the pictures and the browser viewer need, no model);
`apu_jax.viz.load` builds scenes from a FITS directory or a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from apu_jax.viz import draw
from apu_jax.viz.raster import Mesh, project_points, render_meshes, rotate_about_centroid


@dataclass
class PairScene:
    """A fitted pair with what is needed to draw it."""

    pair_id: str  # unique id from the pair set
    vertices: np.ndarray  # (2, V, 3) fitted meshes, metres, camera frame
    faces: np.ndarray  # (F, 3) int triangle indices shared by both people
    focal: np.ndarray  # (2,) [fx, fy] pixels, the camera used in the fit
    principal: np.ndarray  # (2,) [cx, cy] pixels
    image_size: tuple[int, int]  # (W, H) pixels
    image: np.ndarray | None = None  # (H, W, 3) uint8 RGB, or None when the pair has no (readable) image
    keypoints: np.ndarray | None = None  # (2, K, 3) detected x, y, confidence (0 = missing), pixels
    reprojected: np.ndarray | None = None  # (2, K, 2) fitted model keypoints projected with the fit camera
    joints3d: np.ndarray | None = None  # (2, K, 3) fitted model keypoints, metres, camera frame
    contact_weight: np.ndarray | None = None  # (2, V) per-vertex contact weight in [0, 1] (max over contacts)
    contact_matrix: np.ndarray | None = None  # (R, R) soft contact map, person-0 region x person-1 region
    region_names: tuple[str, ...] = ()  # (R,) region names for contact_matrix
    label: str = ""  # interaction label, if any
    losses: dict[str, float] = field(default_factory=dict)  # name -> value (final loss terms, errors)
    keep: bool | None = None  # automatic filter verdict, if known


def contact_vertex_weights(
    contact_pairs: np.ndarray,
    contact_weights: np.ndarray,
    vertex_ids: np.ndarray,
    mask: np.ndarray,
    num_vertices: int,
) -> np.ndarray:
    """Per-vertex contact weight of each person: the largest weight of any contact its region is part of.

    Args:
      contact_pairs: (C, 2) int region ids ``[on person 0, on person 1]``; -1 = padding.
      contact_weights: (C,) weights in [0, 1].
      vertex_ids: (R, M) int vertex ids of each region (padded).
      mask: (R, M) bool, True where ``vertex_ids`` is a real entry.
      num_vertices: V.
    Returns:
      (2, V) float32 weights in [0, 1].
    """
    out = np.zeros((2, num_vertices), dtype=np.float32)
    cp = np.asarray(contact_pairs, dtype=np.int64).reshape(-1, 2)
    cw = np.asarray(contact_weights, dtype=np.float32).reshape(-1)
    vid = np.asarray(vertex_ids, dtype=np.int64)
    msk = np.asarray(mask, dtype=bool)
    for person in range(2):
        for region, weight in zip(cp[:, person], cw, strict=True):
            if region < 0 or weight <= 0:
                continue
            ids = vid[region][msk[region]]
            np.maximum.at(out[person], ids, weight)
    return out


def contact_matrix(contact_pairs: np.ndarray, contact_weights: np.ndarray, num_regions: int) -> np.ndarray:
    """Dense (R, R) soft contact map from the padded list form of the pair set (max over duplicates)."""
    m = np.zeros((num_regions, num_regions), dtype=np.float32)
    cp = np.asarray(contact_pairs, dtype=np.int64).reshape(-1, 2)
    cw = np.asarray(contact_weights, dtype=np.float32).reshape(-1)
    ok = np.all(cp >= 0, axis=1) & np.all(cp < num_regions, axis=1)
    np.maximum.at(m, (cp[ok, 0], cp[ok, 1]), cw[ok])
    return m


def person_meshes(scene: PairScene, vertices: np.ndarray | None = None, contacts: bool = True) -> list[Mesh]:
    """The two people as coloured meshes; contact regions blend towards the contact colour by weight."""
    verts = scene.vertices if vertices is None else vertices
    meshes = []
    for p in range(2):
        base = np.asarray(draw.PERSON_COLOURS[p], dtype=np.float64)
        if contacts and scene.contact_weight is not None:
            w = np.asarray(scene.contact_weight[p], dtype=np.float64)[:, None]
            colour = base[None, :] * (1 - w) + np.asarray(draw.CONTACT_COLOUR)[None, :] * w
        else:
            colour = base
        meshes.append(Mesh(verts[p], scene.faces, colour))
    return meshes


def background(scene: PairScene) -> np.ndarray:
    """The pair's image, or a blank canvas of the image size when there is none."""
    w, h = scene.image_size
    if scene.image is not None and scene.image.shape[:2] == (h, w):
        return scene.image
    return np.full((h, w, 3), draw.BLANK_BACKGROUND, dtype=np.uint8)


def render_overlay(scene: PairScene, alpha: float = 0.85, keypoints: bool = True) -> np.ndarray:
    """Both fitted meshes over the image with the fit's camera, plus keypoints and their reprojections.

    Returns:
      (H, W, 3) uint8 RGB at the image's own size.
    """
    out = render_meshes(background(scene), person_meshes(scene), scene.focal, scene.principal, alpha=alpha)
    if keypoints and scene.keypoints is not None:
        for p in range(2):
            rp = None if scene.reprojected is None else scene.reprojected[p]
            out = draw.draw_keypoints(out, scene.keypoints[p], draw.PERSON_COLOURS[p], reprojected=rp)
    return out


def side_view_camera(
    vertices: np.ndarray, focal: np.ndarray, size: tuple[int, int], margin: float = 0.9, fill: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Frame points in a canvas: keep the focal length, move the points back along z if they would not
    fit (and, with ``fill``, closer until they fill it), and centre them with the principal point.

    Args:
      vertices: (N, 3) camera-frame points, metres.
      focal: (2,) pixels.
      size: (W, H) canvas, pixels.
      margin: fraction of the canvas the points may fill.
      fill: also move small-looking points closer, so they fill ``margin`` of the canvas.
    Returns:
      (N, 3) possibly z-shifted points and the (2,) principal point that centres them.
    """
    w, h = size
    pts = np.asarray(vertices, dtype=np.float64).copy()
    focal = np.asarray(focal, dtype=np.float64)
    centre = pts.mean(axis=0)
    # Extent seen from the pivot depth; points in front of it are larger, so use the nearest depth.
    half = np.abs(pts[:, :2] - centre[:2]).max(axis=0)
    near = pts[:, 2].min()
    need = (half * focal / (0.5 * margin * np.array([w, h]))).max()  # depth at which the extent fits
    shift = need - near if fill else max(0.0, need - near)
    pts[:, 2] += shift
    proj = project_points(pts, focal, (0.0, 0.0))
    mid = 0.5 * (proj.min(axis=0) + proj.max(axis=0))
    principal = np.array([w / 2.0, h / 2.0]) - mid
    return pts, principal


def render_side(scene: PairScene, angle: float = np.pi / 2) -> np.ndarray:
    """The pair turned about the vertical axis through its centroid (default 90°) and re-projected with
    the fit's focal length on a blank canvas of the image size; shows depth errors the overlay hides.

    Returns:
      (H, W, 3) uint8 RGB.
    """
    w, h = scene.image_size
    rotated = rotate_about_centroid([scene.vertices[0], scene.vertices[1]], angle)
    n0 = len(rotated[0])
    pts, principal = side_view_camera(np.concatenate(rotated), scene.focal, (w, h))
    verts = np.stack([pts[:n0], pts[n0:]])
    canvas = np.full((h, w, 3), draw.BLANK_BACKGROUND, dtype=np.uint8)
    return render_meshes(canvas, person_meshes(scene, verts), scene.focal, principal)


def render_pair(scene: PairScene, side: bool = True, max_side: int = 800) -> np.ndarray:
    """The picture of one pair: overlay (and side view) side by side, under a caption with id, label,
    filter verdict and losses.

    Args:
      scene: the pair.
      side: include the 90° side view.
      max_side: each view is downscaled so its longer side is at most this many pixels.
    Returns:
      (H, W, 3) uint8 RGB.
    """
    views = [draw.fit_within(render_overlay(scene), max_side)]
    if side:
        views.append(draw.fit_within(render_side(scene), max_side))
    panel = draw.hstack(views)
    head = scene.pair_id + (f"  [{scene.label}]" if scene.label else "")
    if scene.keep is not None:
        head += "  kept" if scene.keep else "  rejected by filter"
    lines = [head]
    if scene.losses:
        # The summary numbers first, then the individual terms.
        first = [k for k in ("total", "reproj_error") if k in scene.losses]
        keys = first + [k for k in scene.losses if k not in first and k != "reproj_error_max"]
        lines.append("  ".join(f"{k}={scene.losses[k]:.3g}" for k in keys[:8]))
    return draw.caption(panel, lines)


def render_person_contacts(scene: PairScene, person: int, size: int = 320) -> np.ndarray:
    """One person alone, coloured by contact weight (white → dark red), seen from the fit camera's side and
    turned by 180° (so contacts on the far side show too).

    Returns:
      (size + caption, 2 * size + gap, 3) uint8 RGB.
    """
    verts = np.asarray(scene.vertices[person], dtype=np.float64)
    weight = np.zeros(len(verts)) if scene.contact_weight is None else scene.contact_weight[person]
    colour = draw.heat_colour(weight) * 0.85 + 0.15 * np.asarray(draw.PERSON_COLOURS[person])
    views = []
    for angle in (0.0, np.pi):
        turned = rotate_about_centroid([verts], angle)[0]
        pts, principal = side_view_camera(turned, scene.focal, (size, size), fill=True)
        canvas = np.full((size, size, 3), 255, dtype=np.uint8)
        views.append(render_meshes(canvas, [Mesh(pts, scene.faces, colour)], scene.focal, principal))
    return draw.caption(draw.hstack(views), [f"person {person}: camera side, turned 180 deg"], height=22)


def render_contact_map(scene: PairScene) -> np.ndarray:
    """The pair's soft contact map as a picture: region x region heat map (person 0 rows, person 1 columns)
    next to both bodies coloured by contact weight.

    Returns:
      (H, W, 3) uint8 RGB.
    """
    panels = []
    if scene.contact_matrix is not None and len(scene.region_names) and np.any(scene.contact_matrix > 0):
        panels.append(draw.contact_heatmap(scene.contact_matrix, scene.region_names, title="contact map"))
    else:  # an empty map: say so rather than drawing an all-white R x R grid
        panels.append(draw.caption(np.full((60, 240, 3), 255, np.uint8), ["contact map: empty"], height=22))
    panels += [render_person_contacts(scene, 0), render_person_contacts(scene, 1)]
    head = scene.pair_id + (f"  [{scene.label}]" if scene.label else "")
    return draw.caption(draw.hstack(panels, gap=12), [head])
