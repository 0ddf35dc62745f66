"""How plausible a set of pairs is as close interactions: contact and interpenetration statistics.

Used to judge samples of the prior (they should touch and not interpenetrate much) and, for comparison, its
training data. Per pair, one body's `num_query` farthest-point-sampled vertices are compared with ALL
vertices of the other body, in both directions, so the minimum distance is overestimated by at most the
sampling radius (about 1–2 cm for 2000 samples on an adult; the same for every set compared).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from apu_jax.body.model import BodyModel, forward
from apu_jax.fit.interpenetration import build_proxy, inside_flags, sample_query_ids
from apu_jax.prior.representation import PairParams


def _min_distance(points: jax.Array, others: jax.Array, chunk: int = 256) -> jax.Array:
    """min over (Q, 3) points and (V, 3) others of the distance, in chunks of queries (bounded memory)."""
    pad = (-points.shape[0]) % chunk
    padded = jnp.concatenate([points, jnp.broadcast_to(points[:1], (pad, 3))]).reshape(-1, chunk, 3)

    def block_min(block: jax.Array) -> jax.Array:
        sq = jnp.sum(block * block, -1)[:, None] - 2.0 * block @ others.T + jnp.sum(others * others, -1)[None]
        return jnp.min(sq)

    return jnp.sqrt(jnp.maximum(jnp.min(jax.lax.map(block_min, padded)), 0.0))


@jax.jit
def _pair_stats(model: BodyModel, proxy_faces: jax.Array, query_ids: jax.Array, pair: PairParams):
    out = forward(
        model,
        global_orient=pair.global_orient,
        body_pose=pair.body_pose,
        betas=pair.betas,
        transl=pair.transl,
    )
    v0, v1 = out["vertices"][0], out["vertices"][1]
    q0, q1 = v0[query_ids], v1[query_ids]
    distance = jnp.minimum(_min_distance(q0, v1), _min_distance(q1, v0))
    inside = 0.5 * (jnp.mean(inside_flags(q0, v1, proxy_faces)) + jnp.mean(inside_flags(q1, v0, proxy_faces)))
    return distance, inside


def pair_statistics(
    model: BodyModel, pairs: PairParams, num_query: int = 2000, contact_threshold: float = 0.02
) -> dict:
    """Contact and interpenetration statistics of a set of pairs.

    Args:
        model: body model the parameters belong to.
        pairs: (N, 2, ...) parameters.
        num_query: sampled vertices per body.
        contact_threshold: metres; a pair "touches" when its min distance is below this (2 cm).
    Returns:
        dict: n, contact_fraction (min distance < threshold), min_distance_median_m and _p90_m,
        penetrating_vertex_fraction_mean (share of sampled vertices inside the other body, generalised
        winding numbers against the low-resolution closed proxy) and the per-pair arrays.
    """
    proxy = build_proxy(model)
    query_ids = sample_query_ids(model, min(num_query, model.num_vertices))
    distances, insides = [], []
    for i in range(int(pairs.betas.shape[0])):
        pair = jax.tree.map(lambda a, i=i: jnp.asarray(a[i]), pairs)
        d, f = _pair_stats(model, proxy.faces, query_ids, pair)
        distances.append(float(d))
        insides.append(float(f))
    distances_np, insides_np = np.asarray(distances), np.asarray(insides)
    return {
        "n": len(distances),
        "contact_threshold_m": contact_threshold,
        "contact_fraction": float(np.mean(distances_np < contact_threshold)),
        "min_distance_median_m": float(np.median(distances_np)),
        "min_distance_p90_m": float(np.percentile(distances_np, 90)),
        "penetrating_vertex_fraction_mean": float(np.mean(insides_np)),
        "penetrating_pairs_fraction": float(np.mean(insides_np > 0.01)),
        "min_distance_m": distances_np.tolist(),
        "penetrating_vertex_fraction": insides_np.tolist(),
    }
