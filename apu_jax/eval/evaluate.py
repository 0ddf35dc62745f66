"""Evaluate a directory of fits against the ground truth of its pair set (`apu eval`).

Evaluation joints are the 22 SMPL-X body joints (output joints 0–21: pelvis … wrists), for fits, initial
estimates and ground truth alike; ground truth comes from `gt_joints` when the pair set has it, otherwise from
the body model applied to `gt_*` parameters. Fits whose `error` is set carry the initial parameters and
count as they are (they are part of what the pipeline produced). See `apu_jax.eval.metrics` for the
definitions of every number.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from apu_jax.eval import metrics as M

EVAL_JOINTS = np.arange(22)  # SMPL-X body joints: pelvis, hips, spine, knees, ankles, feet, neck, …, wrists
_PARAMS = ("global_orient", "body_pose", "betas", "transl")
_CHUNK = 32  # pairs per body-model call: bounded memory and one compile per evaluation


class EvalInputError(ValueError):
    """A pair set or fits directory is missing, malformed, or does not match (the message says why)."""


# ------------------------------------------------------------------------------------------ body model


def _resolve_model(model: Any, pairset_meta: dict[str, Any], fits_meta: dict[str, Any]):
    from apu_jax.body import BodyModel, load_model

    if isinstance(model, BodyModel):
        return model
    name = model or pairset_meta.get("model") or fits_meta.get("model") or "default"
    return load_model(name)


_forward_jit = None


def _body_outputs(model, params: dict[str, np.ndarray], need_vertices: bool) -> dict[str, np.ndarray]:
    """Joints (P, 2, 22, 3) and optionally vertices (P, 2, V, 3) of parameter arrays shaped (P, 2, ...)."""
    global _forward_jit
    if _forward_jit is None:
        from apu_jax.body import forward

        _forward_jit = jax.jit(lambda m, p: forward(m, **p))
    num = len(params["transl"])
    joints, verts = [], []
    for start in range(0, num, _CHUNK):
        chunk = {k: np.asarray(v[start : start + _CHUNK], np.float32) for k, v in params.items()}
        pad = _CHUNK - len(chunk["transl"])
        if pad:  # constant chunk shape: one compile whatever the number of pairs
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in chunk.items()}
        out = _forward_jit(model, chunk)
        joints.append(np.asarray(out["joints"])[: _CHUNK - pad, :, EVAL_JOINTS])
        if need_vertices:
            verts.append(np.asarray(out["vertices"])[: _CHUNK - pad])
    result = {"joints": np.concatenate(joints)}
    if need_vertices:
        result["vertices"] = np.concatenate(verts)
    return result


def _params(arrays: Any, prefix: str, model, where: str) -> dict[str, np.ndarray]:
    params = {k: np.asarray(arrays[prefix + k], np.float32) for k in _PARAMS}
    nb = params["betas"].shape[-1]
    if nb != model.num_betas:
        raise EvalInputError(
            f"{where}: {prefix}betas has {nb} coefficients but the model has {model.num_betas}"
        )
    return params


def _region_set(pairset_meta: dict[str, Any], model, pairs_path: Path):
    from apu_jax.regions import load_contact_regions_json, load_regions

    name = pairset_meta.get("region_set", "default")
    if name == "default":
        return load_regions(model, max_vertices=None)
    path = Path(name)
    if not path.is_absolute():
        path = pairs_path.parent / path
    if path.suffix == ".json" and path.exists():
        return load_contact_regions_json(path, model=model, max_vertices=None)
    raise EvalInputError(f"{pairs_path}: region_set {name!r} is neither 'default' nor an existing .json file")


# -------------------------------------------------------------------------------------------- evaluate


def _mm(x: np.ndarray | float | None) -> float | None:
    return None if x is None else float(np.mean(x)) * 1000.0


def _contact_summary(counts: list[dict[str, int]], prefix: str) -> dict[str, Any]:
    gt = sum(c["gt"] for c in counts)
    recalled = sum(c["recalled"] for c in counts)
    predicted = sum(c["predicted"] for c in counts)
    return {
        f"{prefix}contact_recall": recalled / gt if gt else None,
        f"{prefix}contact_precision": recalled / predicted if predicted else (None if not gt else 0.0),
    }


def evaluate(
    fits_dir: str | os.PathLike,
    pairs_path: str | os.PathLike,
    model: Any = None,
    good_threshold_mm: float = M.GOOD_THRESHOLD_MM,
    contact_threshold_m: float = M.CONTACT_THRESHOLD_M,
    per_pair: bool = False,
) -> dict[str, Any]:
    """Evaluate fits against the pair set's ground truth.

    Args:
        fits_dir: a fits directory (docs/FORMATS.md).
        pairs_path: the pair set the fits were made from (with `gt_joints` or `gt_*` parameters and/or
            `gt_contact_pairs`).
        model: a `BodyModel`, a model name/path, or None for the pair set's `meta.model`.
        good_threshold_mm: joint PA-MPJPE below which a pair counts as good (filter precision/recall).
        contact_threshold_m: region pairs closer than this are in contact.
        per_pair: also return per-pair numbers under `per_pair`.
    Returns:
        JSON-ready dict. Always: `n_pairs` (pairs evaluated = pair-set pairs that have a fit),
        `joint_pa_mpjpe_mm`, `init_joint_pa_mpjpe_mm`, `contact_recall`, `filter_precision` (None when the
        pair set lacks the ground truth they need, or for the filter when no pair was kept), and more
        (see the module doc of `apu_jax.eval.metrics`).
    Raises:
        PairSetError: missing or malformed pair set / fits directory (from `apu_jax.data.pairset`).
        EvalInputError: no overlap between fits and pairs, wrong beta count, unknown region set.
    """
    from apu_jax.data.pairset import load_fits, load_pairset

    pairs_path, fits_dir = Path(pairs_path), Path(fits_dir)
    pairs = load_pairset(pairs_path)
    fits = load_fits(fits_dir)
    missing = [k for k in ("pair_id", *_PARAMS) if k not in fits]
    if missing:
        raise EvalInputError(f"{fits_dir}: shards lack key(s) {', '.join(repr(k) for k in missing)}")
    body = _resolve_model(model, pairs.meta, fits.meta)

    # Match fits to pairs by id; a rerun may have written a pair twice, the last shard wins.
    fit_index = {str(pid): i for i, pid in enumerate(fits["pair_id"])}
    pair_ids = [str(p) for p in pairs["pair_id"]]
    rows = [i for i, pid in enumerate(pair_ids) if pid in fit_index]
    if not rows:
        raise EvalInputError(f"{fits_dir}: none of its pair ids occur in {pairs_path}")
    frow = np.asarray([fit_index[pair_ids[i]] for i in rows])
    rows = np.asarray(rows)
    take = lambda a, idx: np.asarray(a)[idx]  # noqa: E731

    fit_params = {k: take(v, frow) for k, v in _params(fits, "", body, str(fits_dir)).items()}
    init_params = {k: take(v, rows) for k, v in _params(pairs, "init_", body, str(pairs_path)).items()}
    has_gt_contacts = "gt_contact_pairs" in pairs
    has_input_contacts = "contact_pairs" in pairs
    need_vertices = has_gt_contacts or has_input_contacts
    fit_out = _body_outputs(body, fit_params, need_vertices)
    init_out = _body_outputs(body, init_params, need_vertices)

    gt_joints = None
    if "gt_joints" in pairs:
        gt_joints = take(pairs["gt_joints"], rows)[:, :, EVAL_JOINTS].astype(np.float64)
    elif all(f"gt_{k}" in pairs for k in _PARAMS):
        gt_params = {k: take(v, rows) for k, v in _params(pairs, "gt_", body, str(pairs_path)).items()}
        gt_joints = _body_outputs(body, gt_params, False)["joints"].astype(np.float64)

    keep = take(fits["keep"], frow).astype(bool) if "keep" in fits else np.zeros(len(rows), bool)
    errors = take(fits["error"], frow).astype(str) if "error" in fits else np.full(len(rows), "")
    result: dict[str, Any] = {
        "fits": str(fits_dir),
        "pairs": str(pairs_path),
        "model": body.name,
        "n_pairs": len(rows),
        "n_pairs_in_set": len(pair_ids),
        "n_missing_fits": len(pair_ids) - len(rows),
        "n_fit_errors": int((errors != "").sum()),
        "eval_joints": "SMPL-X body joints 0-21",
        "good_threshold_mm": float(good_threshold_mm),
        "contact_threshold_m": float(contact_threshold_m),
    }
    pair_rows: dict[str, list] = {"pair_id": [pair_ids[i] for i in rows], "keep": keep.tolist()}

    if gt_joints is not None:
        joint_errors = {}
        for prefix, out in (("", fit_out), ("init_", init_out)):
            pred = out["joints"].astype(np.float64)
            joint_err, swapped = M.joint_pa_mpjpe(pred, gt_joints)
            gt_ordered = np.where(swapped[:, None, None, None], gt_joints[:, ::-1], gt_joints)
            per_mpjpe = M.mpjpe(pred, gt_ordered)  # (P, 2)
            per_pa = M.pa_mpjpe(pred, gt_ordered)
            result[f"{prefix}joint_pa_mpjpe_mm"] = _mm(joint_err)
            result[f"{prefix}mpjpe_mm"] = _mm(per_mpjpe)
            result[f"{prefix}pa_mpjpe_mm"] = _mm(per_pa)
            pair_rows[f"{prefix}joint_pa_mpjpe_mm"] = (joint_err * 1000).tolist()
            pair_rows[f"{prefix}mpjpe_mm"] = (per_mpjpe * 1000).tolist()
            joint_errors[prefix] = joint_err
        result.update(M.filter_scores(joint_errors[""] * 1000, keep, good_threshold_mm))
        result["kept_joint_pa_mpjpe_mm"] = _mm(joint_errors[""][keep]) if keep.any() else None
    else:
        for prefix in ("", "init_"):
            for key in ("joint_pa_mpjpe_mm", "mpjpe_mm", "pa_mpjpe_mm"):
                result[prefix + key] = None
        result.update(filter_precision=None, filter_recall=None, n_kept=int(keep.sum()), n_good=None)
        result["kept_joint_pa_mpjpe_mm"] = None

    if need_vertices:
        regions = _region_set(pairs.meta, body, pairs_path)
        membership = M.region_membership(regions.vertex_ids, regions.mask, body.num_vertices)
        result["region_set"] = regions.source
        for prefix, out in (("", fit_out), ("init_", init_out)):
            gt_counts, input_counts = [], []
            for k, i in enumerate(rows):
                contacts = M.contact_matrix(
                    out["vertices"][k, 0], out["vertices"][k, 1], membership, contact_threshold_m
                )
                if has_gt_contacts:
                    gt_counts.append(M.contact_counts(contacts, pairs["gt_contact_pairs"][i]))
                if has_input_contacts:
                    wanted = np.asarray(pairs["contact_pairs"][i])
                    if "contact_weights" in pairs:
                        wanted = wanted[np.asarray(pairs["contact_weights"][i]) > 0]
                    input_counts.append(M.contact_counts(contacts, wanted))
            if has_gt_contacts:
                result.update(_contact_summary(gt_counts, prefix))
                result[f"{prefix}n_gt_contacts"] = sum(c["gt"] for c in gt_counts)
                pair_rows[f"{prefix}contact_recalled"] = [c["recalled"] for c in gt_counts]
            if has_input_contacts:
                n_in = sum(c["gt"] for c in input_counts)
                result[f"{prefix}input_contact_satisfied"] = (
                    sum(c["recalled"] for c in input_counts) / n_in if n_in else None
                )
    for prefix in ("", "init_"):
        result.setdefault(f"{prefix}contact_recall", None)
        result.setdefault(f"{prefix}contact_precision", None)
    if per_pair:
        result["per_pair"] = pair_rows
    return result
