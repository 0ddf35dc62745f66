"""FLOPs per pair-iteration of the fit: XLA's cost analysis of one loss+gradient evaluation, and a hand count.

One Adam iteration of one pair is one `value_and_grad` of the weighted loss (the Adam update itself is
~10 FLOP per free parameter, ~1.5 k in all, and is left out). XLA's `HloCostAnalysis` counts the body of a
`while` loop ONCE, whatever its trip count; the interpenetration term's `lax.map` over query chunks is such a
loop, so its count is corrected by the difference between the term analysed with one chunk (no loop) and
with the engine's chunking. The hand count (`hand_count`) lists where the FLOPs go and cross-checks XLA.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from apu_jax.body.model import NUM_JOINTS, BodyModel
from apu_jax.fit.engine import (
    TERMS,
    FitStatics,
    FitStructure,
    FitWeights,
    PairInputs,
    loss_terms,
    weights_for,
)
from apu_jax.fit.gmm import POSE_DIM
from apu_jax.fit.interpenetration import DEFAULT_CHUNK, interpenetration_loss

# Per (query, proxy triangle) of the winding number: 9 corner differences, triple product 14, three norms
# 15, three dot products 15, the denominator 8, accumulation 1 (atan2 and 3 sqrt counted as transcendentals).
WINDING_FLOPS = 62
# Per (query, vertex) of the nearest-vertex search and per vertex pair of the contact argmin: 3 differences,
# 3 squares, 2 additions, plus the argmin's (value, index) reducer, which XLA counts as 9 ops per element
# (compares and selects: not arithmetic, but part of its `flops`, so counted here to compare like for like).
DISTANCE_FLOPS = 8
ARGMIN_REDUCER_OPS = 9


def free_keys(structure: FitStructure, stage: int) -> list[str]:
    """Parameters Adam updates in `stage` (as `apu_jax.fit.engine.fit_pair`)."""
    keys = ["body_pose", "transl"] + (["betas"] if stage == 0 else [])
    return keys + (["global_orient"] if structure.optimise_global_orient else [])


def _cost(compiled: Any) -> dict[str, float]:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per device program
        cost = cost[0]
    return {
        "flops": float(cost.get("flops", 0.0)),
        "transcendentals": float(cost.get("transcendentals", 0.0)),
        "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
    }


def _interpenetration_loop_correction(model: BodyModel, statics: FitStatics) -> dict[str, float]:
    """FLOPs XLA misses in the chunked interpenetration term: (analysed without loop) − (with the loop)."""
    vertices = jnp.zeros((model.num_vertices, 3), model.v_template.dtype)
    num_queries = int(statics.query_ids.shape[0])

    def analysed(chunk: int) -> dict[str, float]:
        def term(v0, v1, proxy, query_ids):
            return interpenetration_loss(v0, v1, proxy, query_ids, chunk=chunk)

        grad = jax.value_and_grad(term, argnums=(0, 1))
        return _cost(jax.jit(grad).lower(vertices, vertices, statics.proxy, statics.query_ids).compile())

    single, chunked = analysed(num_queries), analysed(DEFAULT_CHUNK)
    return {k: single[k] - chunked[k] for k in single}


def stage_objective(structure: FitStructure, stage: int, pair: PairInputs):
    """The weighted loss of one pair in `stage` as Adam sees it, split into free and fixed parameters.

    Returns:
        (free, fixed, total) with `total(free, fixed, model, statics, pair, weights) -> ()`; the initial-pose
        target is the pair's initial pose (its value does not change the cost).
    """
    start = {
        "global_orient": pair.global_orient,
        "body_pose": pair.body_pose,
        "betas": pair.betas,
        "transl": pair.transl,
    }
    keys = free_keys(structure, stage)
    free = {k: start[k] for k in keys}
    fixed = {k: v for k, v in start.items() if k not in keys}

    def total(free_params, fixed_params, body, fit_statics, one_pair, fit_weights):
        terms = loss_terms(
            {**fixed_params, **free_params},
            one_pair.body_pose,
            body,
            fit_statics,
            one_pair,
            fit_weights,
            structure,
            stage,
        )
        return sum(weights_for(fit_weights, name, stage) * terms[name] for name in TERMS)

    return free, fixed, total


def xla_count(
    model: BodyModel,
    statics: FitStatics,
    pair: PairInputs,
    weights: FitWeights,
    structure: FitStructure,
    stage: int,
) -> dict[str, float]:
    """XLA cost analysis of one `value_and_grad` of one pair's weighted loss in `stage` (0 or 1).

    Args:
        pair: ONE pair (no leading batch axis).
    Returns:
        `flops`, `transcendentals`, `bytes_accessed` (with the loop correction for interpenetration),
        and `loop_correction_flops`.
    """
    free, fixed, total = stage_objective(structure, stage, pair)
    lowered = jax.jit(jax.value_and_grad(total)).lower(free, fixed, model, statics, pair, weights)
    cost = _cost(lowered.compile())
    correction = {k: 0.0 for k in cost}
    if structure.use_interpenetration and stage == 1:
        correction = _interpenetration_loop_correction(model, statics)
    out = {k: cost[k] + correction[k] for k in cost}
    out["loop_correction_flops"] = correction["flops"]
    return out


def _body_forward(model: BodyModel) -> dict[str, int]:
    """Forward FLOPs of ONE person through the body model, by component."""
    v = model.num_vertices
    pose_features = 0 if model.posedirs is None else (NUM_JOINTS - 1) * 9
    return {
        "blend_shapes": 2 * 3 * v * (model.num_betas + model.num_expression),
        "joint_regressor": 2 * NUM_JOINTS * v * 3,
        "pose_correctives": 2 * pose_features * 3 * v,
        "skinning": 2 * v * NUM_JOINTS * 12,
        "vertex_transform": 18 * v,
    }


def hand_count(
    model: BodyModel, statics: FitStatics, structure: FitStructure, stage: int, num_contacts: int
) -> dict[str, float]:
    """Hand count of the FLOPs of one pair-iteration (loss + gradient) by component, and their `total`.

    Forward per person: blend shapes 2·3V·(B+E), joint regressor 2·55·V·3, pose correctives 2·486·3V,
    skinning GEMM 2·V·55·12, per-vertex transform 18V. Backward per person: pose correctives and skinning
    once more (gradients w.r.t. the pose feature and the joint transforms; the model arrays are constants),
    36V for the per-vertex transform, and in stage 1 the blend shapes and regressor w.r.t. betas. Contact:
    2 orderings x C x M² distances. GMM: forward + backward quadratic forms of K components. Interpenetration
    (stage 2): 2 directions x Q x (Fp winding-number terms + V distances); no gradient through the test.
    """
    v = model.num_vertices
    betas = model.num_betas
    forward = _body_forward(model)
    backward = {
        "pose_correctives": forward["pose_correctives"],
        "skinning": forward["skinning"],
        "vertex_transform": 2 * forward["vertex_transform"],
        "blend_shapes": 2 * 3 * v * betas if stage == 0 else 0,
        "joint_regressor": forward["joint_regressor"] if stage == 0 else 0,
    }
    out: dict[str, float] = {
        f"body_{name}": 2.0 * (forward[name] + backward[name]) for name in forward
    }  # two people
    region_width = int(statics.region_vertex_ids.shape[1])
    out["contact"] = (
        float(2 * num_contacts * region_width**2 * (DISTANCE_FLOPS + ARGMIN_REDUCER_OPS))
        if structure.use_contact
        else 0.0
    )
    gmm_components = statics.gmm.num_components
    out["gmm"] = float(2 * gmm_components * (4 * POSE_DIM**2 + 5 * POSE_DIM)) if structure.use_gmm else 0.0
    queries, proxy_faces = int(statics.query_ids.shape[0]), int(statics.proxy.faces.shape[0])
    penetration = structure.use_interpenetration and stage == 1
    # Split: the inside test (winding numbers on the proxy) and the nearest-vertex search over all V.
    out["interpenetration_winding"] = float(2 * queries * proxy_faces * WINDING_FLOPS) if penetration else 0.0
    out["interpenetration_nearest"] = (
        float(2 * queries * v * (DISTANCE_FLOPS + ARGMIN_REDUCER_OPS)) if penetration else 0.0
    )
    out["total"] = float(sum(out.values()))
    return out


def per_pair(
    model: BodyModel,
    statics: FitStatics,
    pair: PairInputs,
    weights: FitWeights,
    structure: FitStructure,
) -> dict[str, Any]:
    """FLOPs of one pair-iteration in each stage (XLA and hand count) and of one pair's whole fit.

    The per-iteration counts include the interpenetration search (inside test + nearest vertex); the fit runs
    that search once per `structure.interpenetration_refresh` stage-2 steps (plus one forward of both bodies
    to pose them), so the whole-fit figures count it `ceil(iters / refresh)` times, not `iters` times.

    Returns:
        `stage1`/`stage2`: {"xla": xla_count(...), "hand": hand_count(...)}; `fit_flops_per_pair`: Σ over
        stages of the FLOPs the fit executes; `flops_per_pair_iteration`: that divided by the total
        iterations; `hand_over_xla`: the ratio of the two counts over the whole fit (≈ 1 when they agree);
        `searches_stage2`: how many interpenetration searches stage 2 runs.
    """
    num_contacts = int(pair.contact_pairs.shape[0])
    stages: dict[str, Mapping[str, Any]] = {}
    fit_xla = fit_hand = 0.0
    for stage in (0, 1):
        xla = xla_count(model, statics, pair, weights, structure, stage)
        hand = hand_count(model, statics, structure, stage, num_contacts)
        stages[f"stage{stage + 1}"] = {"xla": xla, "hand": hand}
        iters = structure.iters[stage]
        search = hand["interpenetration_winding"] + hand["interpenetration_nearest"]
        refresh = structure.interpenetration_refresh
        searches = iters
        if search and refresh > 1:
            searches = -(-iters // refresh)
            # Each block poses both bodies once more (no gradient) before its search.
            search_cost = search + 2.0 * sum(_body_forward(model).values())
            fit_xla += iters * (xla["flops"] - search) + searches * search_cost
            fit_hand += iters * (hand["total"] - search) + searches * search_cost
        else:
            fit_xla += iters * xla["flops"]
            fit_hand += iters * hand["total"]
        searches_stage2 = searches
    iterations = max(1, sum(structure.iters))
    return {
        **stages,
        "fit_flops_per_pair": fit_xla,
        "flops_per_pair_iteration": fit_xla / iterations,
        "hand_over_xla": fit_hand / fit_xla if fit_xla else math.nan,
        "searches_stage2": searches_stage2,
    }
