"""Body-surface contact regions for any SMPL-X-layout model, and the APU part vocabulary → regions map.

The contact loss and the evaluation work on *regions*: named vertex sets of about 75 patches of the body
surface (APU follows FlickrCI3D's 75 regions). This module provides

- `generate_regions(model, target=75)`: a deterministic region set built from the model's skinning weights and
  rest geometry, so it exists for every model, including the bundled free one;
- `load_contact_regions_json(path, faces)`: FlickrCI3D / CHI3D's own 75 regions (`contact_regions.json`,
  key `rid_to_smplx_fids`) for users who have SMPL-X;
- `vocabulary_to_regions(part, side, regions)`: the APU body-part vocabulary (hand, arm, … with a side) →
  region ids of a region set.

How regions are generated (all in the model's rest pose; SMPL-X axes: +Y up, the body faces +Z, the subject's
left is +X):

1. Each vertex gets its dominant skinning joint (argmax of its weights). Joints group into 20 coarse parts:
   per side hand (wrist + fingers), forearm (elbow), upper arm (shoulder), shoulder (collar), thigh (hip),
   lower leg (knee), foot (ankle + foot); on the midline the trunk, neck and head (head + jaw). The trunk
   (vertices dominated by pelvis or spine1/2/3) is cut into four bands, hips / lower / mid / upper torso, by
   the nearest of those four joints in height along the pelvis → neck axis, because models share the trunk
   between spine joints differently. Vertices dominated by the eye joints are the eyeballs, inside the head,
   and belong to no region.
2. Regions are split greedily: the region (or left/right mirror pair of regions, split together so that the
   set stays symmetric) with the largest surface area is cut along its part's next cut, until `target`
   regions exist or no cut leaves both halves with at least `min_vertices` vertices. Each part has a fixed
   list of cuts, giving the names: front/back (z against the area-weighted centroid; "face"/"back" for the
   head), left/right (x; midline parts), upper/lower (y), proximal/distal (along the bone, at the
   area-weighted median; "palm"/"fingers" for the hand, "heel"/"forefoot" for the foot), inner/outer (legs,
   x towards the midline), palmar/dorsal (hand: along its flattest principal axis, palm facing −Y),
   thumb side/little-finger side (hand, z) and top/sole (foot, y).
3. Each region keeps at most `max_vertices` vertices chosen by farthest-point sampling in the rest pose,
   started from the vertex nearest the region's centroid: no random seed, evenly spread points, and the
   first k of them are themselves a good k-point subset. Regions are padded to a common width by repeating
   their first vertex, so a plain min over a padded row equals the masked min; `mask` marks real entries
   for means.

Generated regions are a pure function of the model arrays: same model, same regions.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from apu_jax.regions.vocabulary import (
    APU_PARTS,
    CENTRAL_PARTS,
    PART_SIDES,
    normalise_part,
    normalise_side,
    sides_of,
)

DEFAULT_TARGET = 75
DEFAULT_MAX_VERTICES = 64
DEFAULT_MIN_VERTICES = 20


@struct.dataclass
class RegionSet:
    """Named body-surface regions as padded vertex-index rows, ready for batched distances."""

    vertex_ids: jax.Array  # (R, M) int32 vertex indices; padding repeats the row's first (valid) vertex
    mask: jax.Array  # (R, M) bool, True for real entries
    sizes: jax.Array  # (R,) int32 vertices in each region before subsampling (≥ mask.sum(1))
    names: tuple[str, ...] = struct.field(pytree_node=False)  # (R,) region names
    parts: tuple[str, ...] = struct.field(pytree_node=False)  # (R,) coarse part ("hand", "upper_torso", …)
    sides: tuple[str, ...] = struct.field(pytree_node=False)  # (R,) "left" / "right" / "center"
    labels: tuple[tuple[str, ...], ...] = struct.field(pytree_node=False)  # (R,) cut labels ("front", …)
    source: str = struct.field(pytree_node=False, default="")  # how the set was made

    @property
    def num_regions(self) -> int:
        return len(self.names)

    @property
    def width(self) -> int:
        """M, the padded row length."""
        return int(self.vertex_ids.shape[1])

    def index(self, name: str) -> int:
        """Region id of a region name."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no region named '{name}' in {self.source or 'this region set'}") from None

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: region count, sizes and names."""
        sizes = np.asarray(self.sizes)
        kept = np.asarray(self.mask).sum(axis=1)
        return {
            "source": self.source,
            "num_regions": self.num_regions,
            "width": self.width,
            "region_vertices": {
                "min": int(sizes.min()),
                "median": float(np.median(sizes)),
                "max": int(sizes.max()),
            },
            "kept_vertices": {"min": int(kept.min()), "max": int(kept.max())},
            "regions": [
                {"id": i, "name": n, "part": p, "side": s, "vertices": int(v), "kept": int(k)}
                for i, (n, p, s, v, k) in enumerate(
                    zip(self.names, self.parts, self.sides, sizes, kept, strict=True)
                )
            ],
        }


# ---------------------------------------------------------------------------------------- part layout

# A cut: (kind, (label of the first half, label of the second half)). Kinds are described in the module doc.
_Cut = tuple[str, tuple[str, str]]
_FB: _Cut = ("z", ("front", "back"))
_LR: _Cut = ("x", ("left", "right"))
_UD: _Cut = ("y", ("upper", "lower"))
_PD: _Cut = ("bone", ("proximal", "distal"))
_ML: _Cut = ("medial", ("inner", "outer"))

_TORSO_CUTS = (_FB, _LR, _UD)


@dataclass(frozen=True)
class _Part:
    name: str
    side: str  # "left", "right" or "center"
    joints: tuple[int, ...]  # dominant joints whose vertices form the part
    cuts: tuple[_Cut, ...]
    bone: tuple[int, int] | None = None  # (proximal joint, distal joint) for "bone" cuts


def _sided_parts(side: str) -> list[_Part]:
    left = side == "left"
    j = lambda a, b: a if left else b  # noqa: E731 - left/right joint pairs of the SMPL-X skeleton
    fingers = tuple(range(25, 40)) if left else tuple(range(40, 55))
    middle1 = j(28, 43)
    return [
        _Part("shoulder", side, (j(13, 14),), (_FB, _UD)),
        _Part("upper_arm", side, (j(16, 17),), (_FB, _PD, _UD), (j(16, 17), j(18, 19))),
        _Part("forearm", side, (j(18, 19),), (_FB, _PD, _UD), (j(18, 19), j(20, 21))),
        _Part(
            "hand",
            side,
            (j(20, 21), *fingers),
            (
                ("bone", ("palm", "fingers")),
                ("palm_normal", ("palmar", "dorsal")),
                ("z", ("thumb_side", "little_side")),
            ),
            (j(20, 21), middle1),
        ),
        _Part("thigh", side, (j(1, 2),), (_FB, _PD, _ML), (j(1, 2), j(4, 5))),
        _Part("lower_leg", side, (j(4, 5),), (_FB, _PD, _ML), (j(4, 5), j(7, 8))),
        _Part(
            "foot",
            side,
            (j(7, 8), j(10, 11)),
            (("bone", ("heel", "forefoot")), ("y", ("top", "sole")), _ML),
            (j(7, 8), j(10, 11)),
        ),
    ]


PARTS: tuple[_Part, ...] = (
    _Part("hips", "center", (0,), _TORSO_CUTS),
    _Part("lower_torso", "center", (3,), _TORSO_CUTS),
    _Part("mid_torso", "center", (6,), _TORSO_CUTS),
    _Part("upper_torso", "center", (9,), _TORSO_CUTS),
    _Part("neck", "center", (12,), (_FB, _LR)),
    _Part("head", "center", (15, 22), (("z", ("face", "back")), _LR, _UD)),
    *_sided_parts("left"),
    *_sided_parts("right"),
)
_EXCLUDED_JOINTS = (23, 24)  # eyeballs: inside the head, never touched


# ------------------------------------------------------------------------------------- model arrays


def _model_arrays(model: Any) -> dict[str, np.ndarray]:
    """Rest vertices (V,3), skinning weights (V,55), rest joints (55,3) and faces (F,3) of a model.

    Accepts a `BodyModel`, a mapping with official SMPL-X keys (`v_template`, `weights`, `J_regressor`, `f`),
    or a model name / path understood by `apu_jax.load_model`.
    """
    if isinstance(model, str | os.PathLike):
        from apu_jax.body import load_model

        model = load_model(model)
    if hasattr(model, "v_template") and hasattr(model, "j_regressor"):
        verts = np.asarray(model.v_template, dtype=np.float64)
        weights = np.asarray(model.weights, dtype=np.float64)
        regressor = np.asarray(model.j_regressor, dtype=np.float64)
        faces = np.asarray(model.faces, dtype=np.int64)
    else:
        verts = np.asarray(model["v_template"], dtype=np.float64)
        weights = np.asarray(model["weights"], dtype=np.float64)
        regressor = model["J_regressor"]
        regressor = np.asarray(
            regressor.toarray() if hasattr(regressor, "toarray") else regressor, np.float64
        )
        faces = np.asarray(model["f"], dtype=np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3 or weights.shape != (verts.shape[0], 55):
        raise ValueError(f"not an SMPL-X-layout model: v_template {verts.shape}, weights {weights.shape}")
    return {"vertices": verts, "weights": weights, "joints": regressor @ verts, "faces": faces}


def _vertex_areas(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,) one third of the area of each vertex's triangles, plus a small floor so no weight is zero."""
    area = np.zeros(len(verts))
    if len(faces):
        tri = verts[faces]
        face_area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        np.add.at(area, faces.ravel(), np.repeat(face_area / 3.0, 3))
    floor = 1e-3 * (area.mean() if area.mean() > 0 else 1.0)
    return area + floor


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


# ----------------------------------------------------------------------------------------- partition


@dataclass
class _Node:
    part: _Part
    ids: np.ndarray  # (n,) vertex ids, sorted
    labels: tuple[str, ...]
    cuts_left: tuple[_Cut, ...]
    side: str

    def mirror_key(self) -> tuple:
        swap = {"left": "right", "right": "left"}
        part_key = self.part.name
        return (
            part_key,
            tuple(sorted([self.side, swap.get(self.side, self.side)])),
            tuple(sorted(["|".join(self.labels), "|".join(swap.get(x, x) for x in self.labels)])),
        )


def _cut(node: _Node, cut: _Cut, geo: dict[str, np.ndarray], areas: np.ndarray) -> np.ndarray:
    """Boolean (n,) mask of the vertices that go to the first label of `cut`."""
    kind = cut[0]
    pts, w = geo["vertices"][node.ids], areas[node.ids]
    centre = (pts * w[:, None]).sum(0) / w.sum()
    if kind in ("x", "y", "z"):
        axis = "xyz".index(kind)
        return pts[:, axis] > centre[axis]
    if kind == "medial":
        # Inner = on the midline's side of the region's centroid; the body side decides which way that is.
        sign = 1.0 if node.side == "left" else -1.0
        return sign * (pts[:, 0] - centre[0]) < 0
    if kind == "bone":
        a, b = (geo["joints"][j] for j in node.part.bone)
        axis = (b - a) / max(np.linalg.norm(b - a), 1e-9)
        t = (pts - a) @ axis
        return t < _weighted_median(t, w)
    if kind == "palm_normal":
        # The hand is flat: its least-spread principal axis is the palm normal; the palm faces −Y at rest.
        d = (pts - centre) * np.sqrt(w)[:, None]
        _, _, vt = np.linalg.svd(d, full_matrices=False)
        normal = vt[-1] if vt[-1][1] <= 0 else -vt[-1]
        return (pts - centre) @ normal > 0
    raise ValueError(f"unknown cut kind '{kind}'")


def _split(node: _Node, k: int, geo, areas, min_vertices: int) -> tuple[_Node, _Node] | None:
    """Cut `node` along its k-th remaining cut, or None if a half would have < min_vertices vertices."""
    cut = node.cuts_left[k]
    first = _cut(node, cut, geo, areas)
    n1 = int(first.sum())
    if min(n1, len(first) - n1) < min_vertices:
        return None
    rest = node.cuts_left[k + 1 :]
    halves = []
    for sel, label in ((first, cut[1][0]), (~first, cut[1][1])):
        side = label if cut == _LR else node.side
        halves.append(_Node(node.part, node.ids[sel], (*node.labels, label), rest, side))
    return halves[0], halves[1]


def _split_group(nodes: list[_Node], geo, areas, min_vertices: int) -> list[tuple[_Node, _Node]] | None:
    """Split mirror twins along the same cut: the first remaining cut that works for all of them."""
    for k in range(len(nodes[0].cuts_left)):
        splits = [_split(n, k, geo, areas, min_vertices) for n in nodes]
        if all(s is not None for s in splits):
            return splits  # type: ignore[return-value]
    return None


_SPINE = (0, 3, 6, 9)  # pelvis, spine1, spine2, spine3: the joints whose vertices form the trunk
_NECK = 12


def _part_joint(geo: dict[str, np.ndarray]) -> np.ndarray:
    """(V,) joint deciding each vertex's coarse part: its dominant skinning joint, except on the trunk.

    Models share the trunk between the spine joints very differently (one model's spine2 covers the chest,
    another's spine3), so trunk vertices go to the spine joint nearest in height along the pelvis → neck
    axis: the bands then sit at the same anatomical heights on every model.
    """
    dominant = np.argmax(geo["weights"], axis=1)
    trunk = np.isin(dominant, _SPINE)
    joints = geo["joints"]
    axis = joints[_NECK] - joints[0]
    axis = axis / max(np.linalg.norm(axis), 1e-9)
    height = (geo["vertices"][trunk] - joints[0]) @ axis  # (n,)
    spine_heights = (joints[list(_SPINE)] - joints[0]) @ axis  # (4,)
    nearest = np.argmin(np.abs(height[:, None] - spine_heights[None, :]), axis=1)
    dominant[trunk] = np.asarray(_SPINE)[nearest]
    return dominant


def _partition(geo: dict[str, np.ndarray], target: int, min_vertices: int) -> list[_Node]:
    """Greedy, mirror-symmetric area-driven splitting of the coarse parts (see the module doc)."""
    dominant = _part_joint(geo)
    areas = _vertex_areas(geo["vertices"], geo["faces"])
    nodes: list[_Node] = []
    for part in PARTS:
        ids = np.flatnonzero(np.isin(dominant, part.joints))
        if ids.size == 0:
            continue
        nodes.append(_Node(part, ids, (), part.cuts, part.side))
    if len(nodes) > target:
        raise ValueError(f"target={target} is below the {len(nodes)} coarse parts")
    while len(nodes) < target:
        groups: dict[tuple, list[int]] = {}
        for i, n in enumerate(nodes):
            groups.setdefault(n.mirror_key(), []).append(i)
        # Largest area first; the mirror key breaks ties so the order never depends on float noise alone.
        ranked = sorted(
            groups.items(), key=lambda kv: (-max(areas[nodes[i].ids].sum() for i in kv[1]), kv[0])
        )
        done = False
        for _, members in ranked:
            if len(nodes) + len(members) > target:
                continue
            splits = _split_group([nodes[i] for i in members], geo, areas, min_vertices)
            if splits is None:
                continue
            for i, s in sorted(zip(members, splits, strict=True), reverse=True, key=lambda t: t[0]):
                nodes[i : i + 1] = list(s)
            done = True
            break
        if not done:
            break
    return nodes


def _region_name(node: _Node) -> str:
    prefix = "" if node.part.side == "center" else f"{node.part.side}_"
    return prefix + "_".join((node.part.name, *node.labels))


def farthest_point_order(
    points: np.ndarray, weights: np.ndarray | None = None, k: int | None = None
) -> np.ndarray:
    """Order points by farthest-point sampling, starting at the point nearest the (weighted) centroid.

    Args:
        points: (n, 3) positions.
        weights: optional (n,) weights of the centroid (vertex areas).
        k: stop after k points (default n).
    Returns:
        (k,) indices into `points`; each prefix is an evenly spread subset. Deterministic (ties: lowest
        index).
    """
    count = len(points) if k is None else min(k, len(points))
    w = np.ones(len(points)) if weights is None else weights
    centre = (points * w[:, None]).sum(0) / w.sum()
    order = np.empty(count, dtype=np.int64)
    order[0] = int(np.argmin(((points - centre) ** 2).sum(1)))
    dist = ((points - points[order[0]]) ** 2).sum(1)
    for i in range(1, count):
        order[i] = int(np.argmax(dist))
        dist = np.minimum(dist, ((points - points[order[i]]) ** 2).sum(1))
    return order


def _pack(
    id_lists: Sequence[np.ndarray],
    verts: np.ndarray | None,
    areas: np.ndarray | None,
    max_vertices: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subsample each region to ≤ max_vertices and pad: (R, M) ids, (R, M) mask, (R,) sizes."""
    chosen = []
    for ids in id_lists:
        ids = np.asarray(ids, dtype=np.int64)
        if max_vertices is not None and len(ids) > max_vertices:
            if verts is not None:
                ids = ids[
                    farthest_point_order(verts[ids], None if areas is None else areas[ids], max_vertices)
                ]
            else:
                # No geometry: a fixed-seed uniform subset (documented seed 0).
                ids = np.sort(np.random.default_rng(0).choice(ids, max_vertices, replace=False))
        chosen.append(ids)
    width = max(len(c) for c in chosen)
    vertex_ids = np.zeros((len(chosen), width), dtype=np.int32)
    mask = np.zeros((len(chosen), width), dtype=bool)
    for r, ids in enumerate(chosen):
        vertex_ids[r, : len(ids)] = ids
        vertex_ids[r, len(ids) :] = ids[0]
        mask[r, : len(ids)] = True
    sizes = np.asarray([len(ids) for ids in id_lists], dtype=np.int32)
    return vertex_ids, mask, sizes


def _generate_with_partition(
    model: Any, target: int, max_vertices: int | None, min_vertices: int
) -> tuple[RegionSet, np.ndarray]:
    geo = _model_arrays(model)
    nodes = _partition(geo, target, min_vertices)
    areas = _vertex_areas(geo["vertices"], geo["faces"])
    vertex_ids, mask, sizes = _pack([n.ids for n in nodes], geo["vertices"], areas, max_vertices)
    owner = np.full(len(geo["vertices"]), -1, dtype=np.int32)
    for r, n in enumerate(nodes):
        owner[n.ids] = r
    name = getattr(model, "name", model if isinstance(model, str | os.PathLike) else "arrays")
    regions = RegionSet(
        vertex_ids=jnp.asarray(vertex_ids),
        mask=jnp.asarray(mask),
        sizes=jnp.asarray(sizes),
        names=tuple(_region_name(n) for n in nodes),
        parts=tuple(n.part.name for n in nodes),
        sides=tuple(n.side for n in nodes),
        labels=tuple(n.labels for n in nodes),
        source=f"generated(target={target}, max_vertices={max_vertices}) from {name}",
    )
    return regions, owner


def generate_regions(
    model: Any,
    target: int = DEFAULT_TARGET,
    max_vertices: int | None = DEFAULT_MAX_VERTICES,
    min_vertices: int = DEFAULT_MIN_VERTICES,
) -> RegionSet:
    """Build a region set from a model's skinning weights and rest geometry (see the module doc).

    Args:
        model: a `BodyModel`, a model name/path for `apu_jax.load_model`, or a mapping with official SMPL-X
            keys (`v_template`, `weights`, `J_regressor`, `f`).
        target: number of regions to reach (fewer if the mesh is too coarse to cut further).
        max_vertices: M, vertices kept per region (farthest-point sampled); None keeps them all, which is
            what exact evaluation wants.
        min_vertices: no cut may leave a region with fewer vertices than this.
    Returns:
        A `RegionSet`; `summary()` reports its region counts.
    """
    return _generate_with_partition(model, target, max_vertices, min_vertices)[0]


def vertex_region_owner(model: Any, target: int = DEFAULT_TARGET, min_vertices: int = DEFAULT_MIN_VERTICES):
    """(V,) int32 generated region id of every vertex (−1: eyeballs), matching `generate_regions`."""
    return _generate_with_partition(model, target, 1, min_vertices)[1]


# --------------------------------------------------------------------------------- FlickrCI3D regions


def load_contact_regions_json(
    path: str | os.PathLike,
    faces: Any = None,
    model: Any = None,
    max_vertices: int | None = DEFAULT_MAX_VERTICES,
) -> RegionSet:
    """FlickrCI3D / CHI3D's 75 regions from `contact_regions.json` (imar_vision_datasets_tools `info/`).

    The file maps region id → SMPL-X face ids (`rid_to_smplx_fids`); a region's vertices are the corners of
    its faces. Regions keep their file ids (0–74).

    Args:
        path: the JSON file.
        faces: (F, 3) faces of the SMPL-X topology the face ids refer to; defaults to `model.faces`.
        model: optional body model of that topology. With it, regions are subsampled by farthest-point
            sampling and get the part / side / labels of the generated region they overlap most, which is
            what `vocabulary_to_regions` needs. Without it, the subsample is a fixed-seed (0) uniform draw
            and the vocabulary is unavailable.
        max_vertices: M (None keeps all vertices).
    Returns:
        A `RegionSet` with names `ci3d_00` … `ci3d_74`.
    Raises:
        ValueError: unreadable file, missing key, or face ids outside `faces`.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(data, dict) or "rid_to_smplx_fids" not in data:
        raise ValueError(f"{path}: missing key 'rid_to_smplx_fids'")
    if faces is None:
        if model is None:
            raise ValueError("load_contact_regions_json needs `faces` or `model`")
        faces = model.faces
    faces = np.asarray(faces, dtype=np.int64)
    table = {int(k): np.asarray(v, dtype=np.int64) for k, v in data["rid_to_smplx_fids"].items()}
    rids = sorted(table)
    id_lists = []
    for rid in rids:
        fids = table[rid]
        if fids.size == 0 or fids.min() < 0 or fids.max() >= len(faces):
            raise ValueError(f"{path}: region {rid} has face ids outside [0, {len(faces)}) or none at all")
        id_lists.append(np.unique(faces[fids].ravel()))
    verts = areas = None
    parts: tuple[str, ...] = ("unknown",) * len(rids)
    sides: tuple[str, ...] = ("unknown",) * len(rids)
    labels: tuple[tuple[str, ...], ...] = ((),) * len(rids)
    if model is not None:
        geo = _model_arrays(model)
        if faces.max() >= len(geo["vertices"]):
            raise ValueError(f"{path}: faces index vertices beyond the model's {len(geo['vertices'])}")
        verts, areas = geo["vertices"], _vertex_areas(geo["vertices"], geo["faces"])
        generated, owner = _generate_with_partition(model, DEFAULT_TARGET, 1, DEFAULT_MIN_VERTICES)
        matched = []
        for ids in id_lists:
            counts = np.bincount(owner[ids][owner[ids] >= 0], minlength=generated.num_regions)
            matched.append(int(np.argmax(counts)))
        parts = tuple(generated.parts[m] for m in matched)
        sides = tuple(generated.sides[m] for m in matched)
        labels = tuple(generated.labels[m] for m in matched)
    vertex_ids, mask, sizes = _pack(id_lists, verts, areas, max_vertices)
    return RegionSet(
        vertex_ids=jnp.asarray(vertex_ids),
        mask=jnp.asarray(mask),
        sizes=jnp.asarray(sizes),
        names=tuple(f"ci3d_{rid:02d}" for rid in rids),
        parts=parts,
        sides=sides,
        labels=labels,
        source=f"contact_regions.json ({path.name}, max_vertices={max_vertices})",
    )


# ---------------------------------------------------------------------------------------- vocabulary

# Vocabulary part → rules (generated part, required label or None, fall back to the whole part when that
# part carries neither label of the cut). Elbows and knees are the two halves that meet at the joint.
_VOCABULARY: dict[str, tuple[tuple[str, str | None, bool], ...]] = {
    "hand": (("hand", None, True),),
    "forearm": (("forearm", None, True),),
    "upper arm": (("upper_arm", None, True),),
    "arm": (("upper_arm", None, True), ("forearm", None, True)),
    "elbow": (("upper_arm", "distal", True), ("forearm", "proximal", True)),
    "shoulder": (("shoulder", None, True), ("upper_arm", "proximal", True)),
    "thigh": (("thigh", None, True),),
    "knee": (("thigh", "distal", True), ("lower_leg", "proximal", True)),
    "leg": (("thigh", None, True), ("lower_leg", None, True)),
    "foot": (("foot", None, True),),
    "chest": (("upper_torso", "front", True),),
    "stomach": (("lower_torso", "front", True), ("mid_torso", "front", True)),
    "back": (("lower_torso", "back", True), ("mid_torso", "back", True), ("upper_torso", "back", True)),
    "waist": (("lower_torso", None, True), ("hips", "upper", False)),
    "neck": (("neck", None, True),),
    "face": (("head", "face", True),),
    "head": (("head", None, True),),
}
_CUT_PAIRS = {lab: pair for _, pair in (_FB, _LR, _UD, _PD, _ML) for lab in pair} | {
    "face": ("face", "back"),
}


def vocabulary_to_regions(part: str, side: str = "n/a", regions: RegionSet | None = None) -> list[int]:
    """Region ids of an APU vocabulary part on one side of the body.

    Args:
        part: hand, arm, leg, thigh, chest, stomach, back, neck, face, head, foot, shoulder, elbow, knee,
            forearm, upper arm or waist.
        side: "left", "right", "both" or "n/a" (the subject's side). Limbs: "both"/"n/a" = both sides.
            Midline parts (chest, stomach, back, neck, face, head, waist) ignore the side.
        regions: the region set (default: `load_regions("default")`). Sets loaded from
            `contact_regions.json` need to have been loaded with a model.
    Returns:
        Sorted region ids (non-empty for every part/side on a generated set of ≥ the coarse parts).
    """
    p, s = normalise_part(part), normalise_side(side)
    if regions is None:
        regions = load_regions("default")
    if all(pt == "unknown" for pt in regions.parts):
        raise ValueError(f"{regions.source}: no part annotation; load it with a model to use the vocabulary")
    wanted_sides = ("left", "right", "center") if p in CENTRAL_PARTS else sides_of(s)
    out: set[int] = set()
    for gen_part, label, fallback in _VOCABULARY[p]:
        members = [
            r
            for r in range(regions.num_regions)
            if regions.parts[r] == gen_part and (p in CENTRAL_PARTS or regions.sides[r] in wanted_sides)
        ]
        if label is None:
            out.update(members)
            continue
        with_label = [r for r in members if label in regions.labels[r]]
        cut_done = any(lab in regions.labels[r] for r in members for lab in _CUT_PAIRS[label])
        if with_label:
            out.update(with_label)
        elif fallback and not cut_done:
            out.update(members)
    return sorted(out)


def vocabulary_table(regions: RegionSet | None = None) -> dict[str, dict[str, list[int]]]:
    """`{part: {side: region ids}}` for all 17 vocabulary parts × 4 sides."""
    if regions is None:
        regions = load_regions("default")
    return {p: {s: vocabulary_to_regions(p, s, regions) for s in PART_SIDES} for p in APU_PARTS}


# ------------------------------------------------------------------------------------------- caching

_CACHE: dict[tuple, RegionSet] = {}
_FINGERPRINTS: dict[int, tuple[weakref.ref, str]] = {}  # id(model) → (model, content hash)


def _fingerprint(model: Any) -> str:
    """Content hash of the arrays regions depend on; remembered per live model object (hashing is ~10 ms)."""
    known = _FINGERPRINTS.get(id(model))
    if known is not None and known[0]() is model:
        return known[1]
    geo = _model_arrays(model)
    h = hashlib.sha1()
    for key in ("vertices", "weights", "faces"):
        h.update(np.ascontiguousarray(geo[key]).tobytes())
    digest = h.hexdigest()
    try:
        _FINGERPRINTS[id(model)] = (weakref.ref(model), digest)
    except TypeError:  # plain dicts cannot be weakly referenced: hash them every time
        pass
    return digest


def load_regions(
    model: Any = "default",
    target: int = DEFAULT_TARGET,
    max_vertices: int | None = DEFAULT_MAX_VERTICES,
) -> RegionSet:
    """`generate_regions` cached per model content (name, path or `BodyModel`) and settings."""
    if isinstance(model, str | os.PathLike):
        from apu_jax.body import load_model

        model = load_model(model)
    key = (_fingerprint(model), target, max_vertices)
    if key not in _CACHE:
        _CACHE[key] = generate_regions(model, target, max_vertices)
    return _CACHE[key]


# ------------------------------------------------------------------------------------------ distances


def region_points(vertices: jax.Array, regions: RegionSet) -> jax.Array:
    """(R, M, 3) region vertices of one body (padding repeats a real vertex)."""
    return vertices[regions.vertex_ids]


def region_pair_min_distance(
    vertices_a: jax.Array, vertices_b: jax.Array, regions: RegionSet, pairs: jax.Array
) -> jax.Array:
    """Minimum vertex distance between region pairs of two bodies.

    Args:
        vertices_a, vertices_b: (V, 3) the two bodies' vertices, metres.
        regions: region set of the model.
        pairs: (C, 2) int region ids `[region on a, region on b]`; negative ids (padding) give +inf.
    Returns:
        (C,) metres. Padding entries of a region repeat a real vertex, so no mask is needed for a min.
    """
    pairs = jnp.asarray(pairs)
    valid = (pairs[:, 0] >= 0) & (pairs[:, 1] >= 0)
    safe = jnp.where(valid[:, None], pairs, 0)
    pa = vertices_a[regions.vertex_ids[safe[:, 0]]]  # (C, M, 3)
    pb = vertices_b[regions.vertex_ids[safe[:, 1]]]
    d2 = jnp.sum((pa[:, :, None, :] - pb[:, None, :, :]) ** 2, axis=-1)
    return jnp.where(valid, jnp.sqrt(jnp.min(d2, axis=(1, 2))), jnp.inf)
