"""A small CPU triangle rasteriser in NumPy: z-buffered, flat Lambert shading, per-vertex colours.

Headless, no OpenGL, no display. Conventions (docs/FORMATS.md): camera frame is OpenCV (x right, y down,
z forward), metres; pixel ``(row i, col j)`` has its centre at image coordinate ``(x=j, y=i)``, the same
convention as ``cv2.projectPoints`` and ``cv2.circle``. Images are RGB ``uint8`` arrays ``(H, W, 3)``;
colours are RGB floats in ``[0, 1]``.

How it stays fast without a per-triangle Python loop: triangles are grouped by the size ``s`` (a power of
two) of their screen bounding box, and every group tests all ``s x s`` candidate pixels of all its
triangles at once. A pixel keeps the candidate with the largest ``1/z`` (``np.maximum.at``), i.e. the
nearest surface. ``1/z`` is affine in screen space, so interpolating it is exact, and the barycentrics are
perspective-corrected before colours are interpolated.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Candidate pixels evaluated per vectorised chunk; bounds peak memory to a few hundred MB.
_CHUNK_CANDIDATES = 2_000_000
# Points closer to the camera than this (metres) are not drawn: their projection is unstable.
_NEAR = 1e-3


@dataclass(frozen=True)
class Mesh:
    """One triangle mesh to draw, in the camera frame."""

    vertices: np.ndarray  # (V, 3) float, metres, camera frame
    faces: np.ndarray  # (F, 3) int, vertex indices
    colour: np.ndarray  # (3,) or (V, 3) float RGB in [0, 1]; per-vertex colours are interpolated


@dataclass(frozen=True)
class Fragments:
    """What the z-buffer kept at every pixel."""

    face: np.ndarray  # (H, W) int64, index into the concatenated faces, -1 = background
    bary: (
        np.ndarray
    )  # (H, W, 3) float32, perspective-correct barycentrics of the pixel centre (0 on background)
    depth: np.ndarray  # (H, W) float32, camera-frame z in metres, +inf on background


def project_points(points: np.ndarray, focal: Sequence[float], principal: Sequence[float]) -> np.ndarray:
    """Pinhole projection.

    Args:
      points: (..., 3) camera-frame points, metres, z > 0.
      focal: (2,) ``[fx, fy]`` pixels.
      principal: (2,) ``[cx, cy]`` pixels.
    Returns:
      (..., 2) pixel coordinates ``[x, y]``.
    """
    points = np.asarray(points, dtype=np.float64)
    z = points[..., 2:3]
    return points[..., :2] / z * np.asarray(focal, dtype=np.float64) + np.asarray(principal, dtype=np.float64)


def rasterize(
    vertices: np.ndarray,
    faces: np.ndarray,
    focal: Sequence[float],
    principal: Sequence[float],
    size: tuple[int, int],
) -> Fragments:
    """Z-buffer rasterisation of one triangle soup.

    Args:
      vertices: (V, 3) camera-frame vertices, metres.
      faces: (F, 3) vertex indices.
      focal, principal: (2,) pixels.
      size: ``(W, H)`` pixels.
    Returns:
      The nearest face at every pixel centre it covers, with barycentrics and depth.
    """
    width, height = int(size[0]), int(size[1])
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    face_buf = np.full(height * width, -1, dtype=np.int64)
    inv_z_buf = np.zeros(height * width, dtype=np.float32)
    bary_buf = np.zeros((height * width, 3), dtype=np.float32)

    tri = vertices[faces]  # (F, 3, 3)
    visible = np.all(tri[:, :, 2] > _NEAR, axis=1)
    face_ids = np.nonzero(visible)[0]
    tri = tri[visible]
    xy = project_points(tri, focal, principal)  # (F, 3, 2)
    inv_z = 1.0 / tri[:, :, 2]  # (F, 3)

    # Integer pixel-centre bounding box, clipped to the image.
    lo = np.ceil(xy.min(axis=1)).astype(np.int64)
    hi = np.floor(xy.max(axis=1)).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    extent = hi - lo + 1  # (F, 2)
    # Twice the signed area; degenerate (zero-area) triangles cover nothing.
    e1 = xy[:, 1] - xy[:, 0]
    e2 = xy[:, 2] - xy[:, 0]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    keep = np.all(extent > 0, axis=1) & (np.abs(area2) > 1e-12)

    # Rectangular power-of-two blocks (bw x bh) so thin triangles do not test a whole square.
    level = np.zeros_like(extent)
    level[keep] = np.ceil(np.log2(np.maximum(extent[keep], 1))).astype(np.int64)
    bucket_key = level[:, 0] * 64 + level[:, 1]
    xy32 = xy.astype(np.float32)
    e1_32, e2_32 = e1.astype(np.float32), e2.astype(np.float32)
    inv_area = np.zeros_like(area2)
    inv_area[keep] = 1.0 / area2[keep]
    inv_area32 = inv_area.astype(np.float32)
    inv_z32 = inv_z.astype(np.float32)

    pix_parts, inv_z_parts, face_parts, bary_parts = [], [], [], []
    for key in np.unique(bucket_key[keep]):
        bw, bh = 1 << int(key // 64), 1 << int(key % 64)
        members = np.nonzero(keep & (bucket_key == key))[0]
        oy, ox = np.divmod(np.arange(bw * bh, dtype=np.int64), bw)
        per_chunk = max(1, _CHUNK_CANDIDATES // (bw * bh))
        for start in range(0, len(members), per_chunk):
            m = members[start : start + per_chunk]
            px = lo[m, 0:1] + ox[None, :]  # (Fm, bw*bh)
            py = lo[m, 1:2] + oy[None, :]
            # Screen-space barycentrics via edge functions, in float32 (sub-pixel accuracy is plenty).
            dx = px.astype(np.float32) - xy32[m, 0, 0:1]
            dy = py.astype(np.float32) - xy32[m, 0, 1:2]
            ia = inv_area32[m, None]
            l1 = (dx * e2_32[m, 1:2] - dy * e2_32[m, 0:1]) * ia
            l2 = (e1_32[m, 0:1] * dy - e1_32[m, 1:2] * dx) * ia
            l0 = 1.0 - l1 - l2
            eps = np.float32(-1e-6)  # centres on a shared edge belong to both triangles; the z-test decides
            inside = (l0 >= eps) & (l1 >= eps) & (l2 >= eps) & (px <= hi[m, 0:1]) & (py <= hi[m, 1:2])
            rows, cols = np.nonzero(inside)
            lam = np.stack([l0[rows, cols], l1[rows, cols], l2[rows, cols]], axis=1)
            corner_iz = inv_z32[m][rows]
            iz = np.einsum("nk,nk->n", lam, corner_iz)
            pix_parts.append(py[rows, cols] * width + px[rows, cols])
            inv_z_parts.append(iz)
            face_parts.append(m[rows])
            bary_parts.append(lam * corner_iz / iz[:, None])  # perspective-correct
    if pix_parts:
        pix = np.concatenate(pix_parts)
        iz = np.concatenate(inv_z_parts)
        fidx = np.concatenate(face_parts)
        bary = np.concatenate(bary_parts)
        np.maximum.at(inv_z_buf, pix, iz)
        win = iz >= inv_z_buf[pix]  # the nearest candidate(s) of each pixel; exact ties are arbitrary
        face_buf[pix[win]] = face_ids[fidx[win]]
        bary_buf[pix[win]] = bary[win]

    covered = face_buf >= 0
    depth = np.full(height * width, np.inf)
    depth[covered] = 1.0 / inv_z_buf[covered]
    return Fragments(
        face=face_buf.reshape(height, width),
        bary=bary_buf.reshape(height, width, 3).astype(np.float32),
        depth=depth.reshape(height, width).astype(np.float32),
    )


def _unit(n: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit face normals (F, 3) from right-handed winding; zero for degenerate faces."""
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    return _unit(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))


@functools.lru_cache(maxsize=16)
def _closed(digest: bytes, faces_bytes: bytes) -> bool:
    faces = np.frombuffer(faces_bytes, dtype=np.int64).reshape(-1, 3)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges[:, 0] * (int(faces.max()) + 1) + edges[:, 1], return_counts=True)
    return bool(np.all(counts == 2))


def is_closed(faces: np.ndarray) -> bool:
    """Whether a triangle mesh is closed: every edge is shared by exactly two faces (cached per topology)."""
    f = np.ascontiguousarray(faces, dtype=np.int64)
    if len(f) == 0:
        return False
    data = f.tobytes()
    return _closed(hashlib.sha1(data).digest(), data)


def _sign_from_volume(first: np.ndarray, cross: np.ndarray, extent: np.ndarray) -> float:
    """Sign of the signed volume sum(v0 . ((v1 - v0) x (v2 - v0))) / 6 = sum(det(v0, v1, v2)) / 6, or 0 when
    it is negligible next to the bounding box volume."""
    volume = np.einsum("fi,fi->", first, cross) / 6.0
    return 0.0 if abs(volume) <= 1e-6 * float(np.prod(extent)) else float(np.sign(volume))


def outward_sign(vertices: np.ndarray, faces: np.ndarray) -> float:
    """+1 if the winding's right-hand normals point out of the mesh, -1 if in, 0 if the mesh is not closed
    (inside and outside are then undefined) or encloses no volume.

    The signed volume of a closed mesh, sum over faces of det(v0, v1, v2) / 6, is positive exactly when its
    right-hand normals point outwards (the camera frame is right-handed, so this holds there too).
    """
    v = np.asarray(vertices, dtype=np.float64)
    if len(v) == 0 or not is_closed(faces):
        return 0.0
    v = v - v.mean(axis=0)  # translation-invariant for closed meshes; better conditioned
    tri = v[np.asarray(faces)]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return _sign_from_volume(tri[:, 0], cross, np.ptp(v, axis=0))


def _concat(meshes: Sequence[Mesh]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One soup from several meshes: vertices (V, 3), faces (F, 3), per-vertex colours (V, 3) and the
    mesh index of every face (F,)."""
    verts, faces, colours, owner = [], [], [], []
    offset = 0
    for k, mesh in enumerate(meshes):
        v = np.asarray(mesh.vertices, dtype=np.float64)
        f = np.asarray(mesh.faces, dtype=np.int64)
        c = np.asarray(mesh.colour, dtype=np.float64)
        verts.append(v)
        faces.append(f + offset)
        colours.append(np.broadcast_to(c, v.shape) if c.ndim == 1 else c)
        owner.append(np.full(len(f), k))
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(colours), np.concatenate(owner)


def render_meshes(
    image: np.ndarray,
    meshes: Sequence[Mesh],
    focal: Sequence[float],
    principal: Sequence[float],
    alpha: float = 1.0,
    ambient: float = 0.35,
    cull_back: bool = True,
) -> np.ndarray:
    """Draw meshes over an image with a pinhole camera, flat Lambert shading and a headlight.

    Args:
      image: (H, W, 3) uint8 RGB background (not modified).
      meshes: meshes in the camera frame; they occlude each other correctly.
      focal, principal: (2,) pixels.
      alpha: opacity of the meshes over the image, in [0, 1].
      ambient: shade of a surface seen edge-on, in [0, 1]; a face seen head-on gets 1.
      cull_back: skip faces turned away from the camera on closed meshes (about half the work; the z-buffer
        would hide them anyway). Open meshes (an edge not shared by exactly two faces) are never culled.
    Returns:
      (H, W, 3) uint8 RGB image.
    """
    height, width = image.shape[:2]
    out = np.array(image, dtype=np.uint8, copy=True)
    if not meshes:
        return out
    vertices, faces, colours, owner = _concat(meshes)
    tri = vertices[faces]  # (F, 3, 3)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3) right-hand normal x 2 area
    normals = _unit(cross)
    centroid = tri.mean(axis=1)
    to_camera = _unit(-centroid)
    facing = np.einsum("fc,fc->f", normals, to_camera)  # cosine between right-hand normal and view ray
    # Headlight Lambert: light comes from the camera centre; two-sided because winding conventions differ.
    face_shade = ambient + (1.0 - ambient) * np.abs(facing)
    if cull_back:
        signs = np.zeros(len(faces))
        for k, mesh in enumerate(meshes):
            mine = owner == k
            v = np.asarray(mesh.vertices, dtype=np.float64)
            if mine.any() and is_closed(mesh.faces):
                centre = v.mean(axis=0)
                signs[mine] = _sign_from_volume(tri[mine, 0] - centre, cross[mine], np.ptp(v, axis=0))
        drawn = ~(signs * facing < 0)
    else:
        drawn = np.ones(len(faces), dtype=bool)
    sub = np.nonzero(drawn)[0]
    frags = rasterize(vertices, faces[sub], focal, principal, (width, height))
    covered = frags.face >= 0
    if not covered.any():
        return out
    f = sub[frags.face[covered]]
    b = frags.bary[covered].astype(np.float64)
    rgb = np.einsum("nk,nkc->nc", b, colours[faces[f]])
    lit = np.clip(rgb * face_shade[f, None], 0.0, 1.0) * 255.0
    blended = (1.0 - alpha) * out[covered].astype(np.float64) + alpha * lit
    out[covered] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def rotation_y(angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about the camera y axis (which points down in OpenCV)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotate_about_centroid(
    vertex_sets: Sequence[np.ndarray], angle: float, centre: np.ndarray | None = None
) -> list[np.ndarray]:
    """Rotate several point sets together about the y axis through their common centroid.

    Args:
      vertex_sets: list of (V_i, 3) camera-frame arrays, metres.
      angle: radians; +pi/2 turns the pair so the camera sees it from its right-hand side.
      centre: (3,) pivot; defaults to the mean of all points.
    Returns:
      The rotated arrays, same shapes.
    """
    sets = [np.asarray(v, dtype=np.float64) for v in vertex_sets]
    pivot = np.concatenate([s.reshape(-1, 3) for s in sets]).mean(axis=0) if centre is None else centre
    rot = rotation_y(angle)
    return [(s - pivot) @ rot.T + pivot for s in sets]
