"""Open fits, pair sets or datasets for looking at: a `PairSource` whose scenes run the body model lazily.

What can be opened (``open_source``):

- a FITS directory (docs/FORMATS.md): fitted parameters, losses and the filter verdict, joined by pair id
  with the pair set that ``meta.json`` names (image, camera, keypoints, contacts, label);
- a pair set ``.npz``: the initial parameters, drawn the same way (useful before fitting);
- a dataset exported by ``apu run`` (``DATASET/dataset.npz``, ``meta.format == "apu-dataset"``, see
  ``apu_jax/data/dataset.py``), or its folder; any other ``.npz`` carrying the pair-set keys and fitted
  parameters under their plain names (``global_orient``, ``body_pose``, ``betas``, ``transl``) works too.

Images are found as: absolute paths; else relative to ``image_root`` (argument), the data root recorded in
the pair set / dataset meta, or the pair set's / dataset's folder — the first that exists. A pair without
a readable image is drawn over a blank canvas of its image size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from apu_jax.body import BodyModel, forward, load_model
from apu_jax.data.pairset import PairSet, PairSetError, load_fits, load_pairset
from apu_jax.fit.camera import default_focal
from apu_jax.regions import load_regions, model_to_keypoint_indices
from apu_jax.viz import draw
from apu_jax.viz.marks import marks_path_for
from apu_jax.viz.raster import project_points
from apu_jax.viz.scene import PairScene, contact_matrix, contact_vertex_weights
from apu_jax.viz.server import PairSource

PARAM_KEYS = ("global_orient", "body_pose", "betas", "transl")
_forward = jax.jit(forward)  # model is an argument: one compile per model shape, not per pair


class SourceError(ValueError):
    """The path is not something that can be viewed (message names the path and the reason)."""


@dataclass
class _Table:
    """Rows to draw: parameters plus the pair-set data of the same pairs, aligned."""

    pair_ids: list[str]
    params: dict[str, np.ndarray]  # key → (P, 2, ...) fitted (or initial) parameters
    pairs: PairSet  # pair-set rows aligned with pair_ids
    losses: dict[str, np.ndarray]  # name → (P,)
    keep: np.ndarray | None  # (P,) bool
    model: str  # model name or path recorded with the data
    image_roots: list[Path]  # where relative image paths may live


def _pairset_roots(pairs_path: Path, pairs: PairSet) -> list[Path]:
    roots = []
    source = pairs.meta.get("source")
    if isinstance(source, dict) and source.get("data_root"):
        roots.append(Path(source["data_root"]))
    if pairs.meta.get("data_root"):  # datasets record it at the top level
        roots.append(Path(pairs.meta["data_root"]))
    roots.append(pairs_path.resolve().parent)
    return roots


def _fits_table(path: Path) -> _Table:
    fits = load_fits(path)
    meta = fits.meta
    pairs_ref = meta.get("pairs")
    if not pairs_ref:
        raise SourceError(f"{path / 'meta.json'}: missing key 'pairs' (the pair set that was fitted)")
    pairs_path = Path(pairs_ref)
    if not pairs_path.is_absolute() and not pairs_path.exists():
        pairs_path = path / pairs_path
    pairs = load_pairset(pairs_path)
    row = {pid: i for i, pid in enumerate(pairs["pair_id"].tolist())}
    ids = fits["pair_id"].astype(str).tolist()
    missing = [p for p in ids if p not in row]
    if missing:
        raise SourceError(f"{path}: pair id {missing[0]!r} is not in the pair set {pairs_path}")
    aligned = pairs.select(np.array([row[p] for p in ids], dtype=np.int64))
    losses: dict[str, np.ndarray] = {}
    terms = list(meta.get("terms", []))
    if "terms_stage2" in fits and fits["terms_stage2"].shape[1] == len(terms):
        for j, name in enumerate(terms):
            losses[name] = fits["terms_stage2"][:, j].astype(np.float64)
    for stage in ("stage2", "stage1"):
        hist = fits.arrays.get(f"loss_history_{stage}")
        if hist is not None and hist.shape[1] > 0:
            losses["total"] = hist[:, -1].astype(np.float64)
            break
    if "reproj_error" in fits:
        losses["reproj_error"] = fits["reproj_error"].mean(axis=1).astype(np.float64)
        losses["reproj_error_max"] = fits["reproj_error"].max(axis=1).astype(np.float64)
    return _Table(
        pair_ids=ids,
        params={k: np.asarray(fits[k], np.float32) for k in PARAM_KEYS},
        pairs=aligned,
        losses=losses,
        keep=np.asarray(fits["keep"], bool) if "keep" in fits else None,
        model=str(meta.get("model") or pairs.meta.get("model") or "default"),
        image_roots=_pairset_roots(pairs_path, pairs),
    )


def _npz_table(path: Path) -> _Table:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except (OSError, ValueError) as err:
        raise SourceError(f"{path}: not a readable .npz file ({err})") from err
    fmt = meta.get("format")
    if fmt == "apu-pairset":
        pairs = load_pairset(path)
        params = {k: np.asarray(pairs[f"init_{k}"], np.float32) for k in PARAM_KEYS}
        keep = None
    else:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "meta"}
        need = ["pair_id", "image_size", *PARAM_KEYS]
        absent = [k for k in need if k not in arrays]
        if absent:
            raise SourceError(f"{path}: format {fmt!r} has no key '{absent[0]}' (cannot draw its pairs)")
        pairs = PairSet(arrays, meta)
        params = {k: np.asarray(arrays[k], np.float32) for k in PARAM_KEYS}
        keep = np.asarray(arrays["keep"], bool) if "keep" in arrays else None
    losses: dict[str, np.ndarray] = {}
    terms = list(meta.get("terms", []))
    if "terms_stage2" in pairs and pairs["terms_stage2"].shape[1:] == (len(terms),):
        for j, term in enumerate(terms):
            losses[term] = pairs["terms_stage2"][:, j].astype(np.float64)
    if "loss_final" in pairs:
        losses["total"] = np.asarray(pairs["loss_final"], np.float64)
    if "reproj_error" in pairs:
        err = np.asarray(pairs["reproj_error"], np.float64).reshape(len(pairs), -1)
        losses["reproj_error"] = err.mean(axis=1)
        losses["reproj_error_max"] = err.max(axis=1)
    return _Table(
        pair_ids=pairs["pair_id"].astype(str).tolist(),
        params=params,
        pairs=pairs,
        losses=losses,
        keep=keep,
        model=str(meta.get("model") or "default"),
        image_roots=_pairset_roots(path, pairs),
    )


def _resolve_image(rel: str, roots: list[Path]) -> Path | None:
    if not rel:
        return None
    p = Path(rel)
    candidates = [p] if p.is_absolute() else [r / p for r in roots] + [p]
    return next((c for c in candidates if c.is_file()), None)


def open_source(
    path: str | os.PathLike,
    model: str | os.PathLike | BodyModel | None = None,
    image_root: str | os.PathLike | None = None,
    kid_template: str | os.PathLike | None = None,
) -> PairSource:
    """Open a FITS directory, pair set or dataset for rendering / viewing.

    Args:
      path: what to open (see the module docstring).
      model: body model to use instead of the one recorded with the data ("default", a path or a model).
      image_root: folder to resolve relative image paths against first.
      kid_template: SMPL-XA kid template, if the fit used one.
    Returns:
      A `PairSource`; its `load_scene(i)` runs the body model for pair i.
    Raises:
      SourceError / PairSetError: unreadable or malformed input (the message names the file and key).
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if path.is_dir() and not (path / "meta.json").exists() and (path / "dataset.npz").exists():
        path = path / "dataset.npz"  # a dataset folder written by `apu run`
    table = _fits_table(path) if path.is_dir() else _npz_table(path)
    if image_root is not None:
        table.image_roots.insert(0, Path(image_root))
    if isinstance(model, BodyModel):
        body = model
    else:
        name = str(model) if model is not None else table.model
        try:
            body = load_model(name, kid_template=kid_template)
        except Exception as err:
            raise SourceError(f"cannot load the body model {name!r}: {err}") from err
    faces = np.asarray(body.faces)
    regions = load_regions(body)
    vertex_ids, mask = np.asarray(regions.vertex_ids), np.asarray(regions.mask)
    kp_ids = model_to_keypoint_indices(table.pairs.keypoint_format)
    pairs = table.pairs
    nb = body.num_betas

    def load_scene(i: int) -> PairScene:
        params: dict[str, Any] = {k: table.params[k][i] for k in PARAM_KEYS}
        betas = params["betas"]
        if betas.shape[-1] != nb:  # a pair set made for fewer betas than the model (or more) still draws
            fixed = np.zeros((2, nb), np.float32)
            fixed[:, : min(nb, betas.shape[-1])] = betas[:, :nb]
            params["betas"] = fixed
        out = _forward(body, **params)
        verts = np.asarray(out["vertices"], np.float64)
        joints = np.asarray(out["joints"], np.float64)[:, kp_ids]
        w, h = (int(v) for v in pairs["image_size"][i])
        focal = pairs["focal"][i] if "focal" in pairs else np.full(2, default_focal(w, h))
        principal = pairs["principal"][i] if "principal" in pairs else np.array([w / 2.0, h / 2.0])
        image = None
        if "image" in pairs:
            found = _resolve_image(str(pairs["image"][i]), table.image_roots)
            image = draw.read_image_rgb(found) if found is not None else None
        cw = cm = None
        if "contact_pairs" in pairs:
            cp, cwt = pairs["contact_pairs"][i], pairs["contact_weights"][i]
            cw = contact_vertex_weights(cp, cwt, vertex_ids, mask, verts.shape[1])
            cm = contact_matrix(cp, cwt, len(regions.names))
        return PairScene(
            pair_id=table.pair_ids[i], vertices=verts, faces=faces,
            focal=np.asarray(focal, np.float64), principal=np.asarray(principal, np.float64),
            image_size=(w, h), image=image,
            keypoints=np.asarray(pairs["keypoints"][i], np.float64) if "keypoints" in pairs else None,
            reprojected=project_points(joints, focal, principal), joints3d=joints,
            contact_weight=cw, contact_matrix=cm, region_names=tuple(regions.names),
            label=str(pairs["label"][i]) if "label" in pairs else "",
            losses={k: float(v[i]) for k, v in table.losses.items()},
            keep=None if table.keep is None else bool(table.keep[i]),
        )  # fmt: skip

    labels = [str(s) for s in pairs["label"]] if "label" in pairs else [""] * len(table.pair_ids)
    return PairSource(
        name=str(path), pair_ids=table.pair_ids, faces=faces, load_scene=load_scene,
        marks_path=marks_path_for(path), labels=labels, losses=table.losses, keep=table.keep,
    )  # fmt: skip


__all__ = ["PairSetError", "SourceError", "open_source"]
