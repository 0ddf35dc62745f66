"""Proxy inside test vs exact full-resolution winding numbers on posed interpenetrating pairs, plus memory.

For each random posed pair of the chosen body model (default: the bundled model), every full-resolution vertex
of each person is classified inside/outside the other person twice:
- exact: generalised winding number against the other body's full-resolution mesh (holes capped, closed);
- proxy: the loss's test, against the other body's low-resolution proxy (`build_proxy`).
It reports precision / recall / accuracy of the proxy flags (exact = truth), over all vertices and over the
loss's query subsample, also by distance to the other surface; the loss value with proxy+queries (uniform V/Q
and vertex-count weights) vs exact+all vertices; and memory per pair from XLA's own buffer assignment
(`compiled.memory_analysis()`) for: the loss as used (proxy, queries, chunked), the exact full-resolution test
chunked, and a dense unchunked test like BUDDI's.

Run: `python benchmarks/interpenetration_agreement.py [--model default] [--pairs 8] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import apu_jax
from apu_jax.fit import interpenetration as ip


def random_pairs(model, num_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, V, 3) x 2 vertices of posed people standing 0.1–0.35 m apart (root to root), facing random ways."""
    rng = np.random.default_rng(seed)
    joints = np.asarray(jax.jit(lambda m: apu_jax.forward(m)["joints"])(model))
    up = int(np.argmax(np.abs(joints[15] - joints[0])))  # pelvis -> head is vertical (T-pose span is not)
    horizontal = [k for k in range(3) if k != up]

    def params(yaw: np.ndarray, offset: np.ndarray) -> dict[str, jnp.ndarray]:
        orient = np.zeros((num_pairs, 3))
        orient[:, up] = yaw
        transl = np.zeros((num_pairs, 3))
        transl[:, horizontal] = offset
        return {
            "global_orient": jnp.asarray(orient, jnp.float32),
            "body_pose": jnp.asarray(rng.normal(0.0, 0.25, (num_pairs, 63)), jnp.float32),
            "transl": jnp.asarray(transl, jnp.float32),
        }

    angle = rng.uniform(0, 2 * np.pi, num_pairs)
    dist = rng.uniform(0.1, 0.35, num_pairs)
    offset = np.stack([np.cos(angle), np.sin(angle)], axis=1) * dist[:, None]
    forward = jax.jit(lambda m, p: apu_jax.forward(m, **p)["vertices"])
    v0 = forward(model, params(rng.uniform(-np.pi, np.pi, num_pairs), np.zeros((num_pairs, 2))))
    v1 = forward(model, params(rng.uniform(-np.pi, np.pi, num_pairs), offset))
    return np.asarray(v0), np.asarray(v1)


def flag_stats(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    return {
        "inside_exact": int(truth.sum()),
        "inside_proxy": int(pred.sum()),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "accuracy": float(np.mean(pred == truth)),
        "count": int(pred.size),
    }


def surface_distance(points: np.ndarray, verts: np.ndarray, faces: np.ndarray, seed: int = 0) -> np.ndarray:
    """Approximate distance (m) of points to a mesh surface: nearest of 8 random samples per triangle."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    tri = verts[faces]
    r1, r2 = rng.random((2, len(faces), 8))
    s = np.sqrt(r1)[..., None]
    samples = (
        (1 - s) * tri[:, None, 0]
        + s * (1 - r2[..., None]) * tri[:, None, 1]
        + s * r2[..., None] * tri[:, None, 2]
    )
    return cKDTree(np.concatenate([samples.reshape(-1, 3), verts])).query(points)[0]


DEPTH_BINS_MM = (0.0, 5.0, 10.0, 20.0, np.inf)


def temp_bytes_per_pair(fn, *args, num_pairs: int) -> int:
    """XLA temp buffer bytes of jit(vmap(fn)) over `num_pairs`, divided by the number of pairs (not run)."""
    compiled = jax.jit(jax.vmap(fn)).lower(*args).compile()
    analysis = compiled.memory_analysis()
    return -1 if analysis is None else int(analysis.temp_size_in_bytes) // num_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--proxy-vertices", type=int, default=ip.DEFAULT_PROXY_VERTICES)
    parser.add_argument("--queries", type=int, default=ip.DEFAULT_QUERY_VERTICES)
    parser.add_argument("--chunk", type=int, default=ip.DEFAULT_CHUNK)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}".strip())
    print(f"jax {jax.__version__}, devices {jax.devices()}, float32, matmul precision default")
    model = apu_jax.load_model(args.model)
    t0 = time.perf_counter()
    proxy = ip.build_proxy(model, num_proxy_vertices=args.proxy_vertices)
    queries = ip.sample_query_ids(model, count=args.queries)
    query_weights = ip.query_vertex_weights(model, queries)
    build_s = time.perf_counter() - t0
    rest = np.asarray(jax.jit(lambda m: apu_jax.forward(m)["vertices"])(model), dtype=np.float64)
    exact_faces = jnp.asarray(ip.closed_surface(rest, np.asarray(model.faces)))
    num_vertices = model.num_vertices
    print(
        f"model {args.model}: V={num_vertices}, F={model.num_faces}, closed F={exact_faces.shape[0]}; "
        f"proxy Vp={proxy.vertex_ids.shape[0]}, Fp={proxy.faces.shape[0]}; queries Q={queries.shape[0]}; "
        f"built in {build_s:.1f} s"
    )

    v0s, v1s = random_pairs(model, args.pairs, args.seed)
    inside = jax.jit(ip.inside_flags, static_argnames="chunk")
    exact_all, proxy_all, exact_q, proxy_q, depth_all = [], [], [], [], []
    loss_proxy, loss_weighted, loss_exact = [], [], []
    all_ids = jnp.arange(num_vertices, dtype=jnp.int32)
    exact_proxy = ip.Proxy(faces=exact_faces, vertex_ids=all_ids)
    loss_fn = jax.jit(ip.interpenetration_loss, static_argnames="chunk")
    t0 = time.perf_counter()
    for v0, v1 in zip(v0s, v1s, strict=True):
        for a, b in ((v0, v1), (v1, v0)):
            ex = np.asarray(inside(jnp.asarray(a), jnp.asarray(b), exact_faces, chunk=32))
            px = np.asarray(inside(jnp.asarray(a), jnp.asarray(b), proxy.faces, chunk=args.chunk))
            exact_all.append(ex)
            depth_all.append(surface_distance(a, b, np.asarray(exact_faces)))
            proxy_all.append(px)
            exact_q.append(ex[np.asarray(queries)])
            proxy_q.append(px[np.asarray(queries)])
        pair = (jnp.asarray(v0), jnp.asarray(v1))
        loss_proxy.append(float(loss_fn(*pair, proxy, queries, chunk=args.chunk)))
        loss_weighted.append(
            float(loss_fn(*pair, proxy, queries, chunk=args.chunk, query_weights=query_weights))
        )
        loss_exact.append(float(loss_fn(*pair, exact_proxy, all_ids, chunk=32)))
    print(f"classified {args.pairs} pairs in {time.perf_counter() - t0:.1f} s")

    depth = np.concatenate(depth_all) * 1e3
    truth, pred = np.concatenate(exact_all), np.concatenate(proxy_all)
    by_depth = {}
    for lo, hi in zip(DEPTH_BINS_MM[:-1], DEPTH_BINS_MM[1:], strict=True):
        sel = (depth >= lo) & (depth < hi)
        by_depth[f"{lo:g}-{hi:g}"] = {
            "count": int(sel.sum()),
            "inside_exact": int(truth[sel].sum()),
            "accuracy": float(np.mean(truth[sel] == pred[sel])) if sel.any() else None,
        }
    wrong = truth != pred
    by_depth["max_mm_of_a_disagreement"] = float(depth[wrong].max()) if wrong.any() else 0.0

    results = {
        "model": args.model,
        "pairs": args.pairs,
        "num_vertices": num_vertices,
        "full_closed_faces": int(exact_faces.shape[0]),
        "proxy_vertices": int(proxy.vertex_ids.shape[0]),
        "proxy_faces": int(proxy.faces.shape[0]),
        "queries": int(queries.shape[0]),
        "chunk": args.chunk,
        "all_vertices": flag_stats(np.concatenate(proxy_all), np.concatenate(exact_all)),
        "query_vertices": flag_stats(np.concatenate(proxy_q), np.concatenate(exact_q)),
        "accuracy_by_distance_to_other_surface_mm": by_depth,
        "pairs_with_penetration": int(sum(e.any() for e in exact_all[::2])),
        "loss_proxy_queries": loss_proxy,
        "loss_proxy_queries_vertex_weighted": loss_weighted,
        "loss_exact_all_vertices": loss_exact,
    }

    # Memory per pair from XLA's buffer assignment, value and gradient as the optimiser uses them.
    batch = 8
    stacked0 = jnp.asarray(v0s[:1].repeat(batch, 0))
    stacked1 = jnp.asarray(v1s[:1].repeat(batch, 0))

    def grad_of(faces, ids, chunk):
        prox = ip.Proxy(faces=faces, vertex_ids=ids)
        return jax.value_and_grad(lambda a, b: ip.interpenetration_loss(a, b, prox, ids, chunk=chunk), (0, 1))

    mem = {
        "loss_proxy_queries_chunked": temp_bytes_per_pair(
            grad_of(proxy.faces, queries, args.chunk), stacked0, stacked1, num_pairs=batch
        ),
        "exact_full_res_chunk32": temp_bytes_per_pair(
            grad_of(exact_faces, all_ids, 32), stacked0, stacked1, num_pairs=batch
        ),
        "proxy_all_vertices_dense_like_buddi": temp_bytes_per_pair(
            grad_of(proxy.faces, all_ids, num_vertices), stacked0, stacked1, num_pairs=batch
        ),
    }
    results["temp_bytes_per_pair"] = mem
    results["estimate_bytes_per_pair"] = ip.interpenetration_bytes(
        int(queries.shape[0]), int(proxy.faces.shape[0]), num_vertices, args.chunk
    )

    # Time of value+grad of the loss as used, vmapped over pairs (compile reported separately).
    fn = jax.jit(jax.vmap(grad_of(proxy.faces, queries, args.chunk)))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(stacked0, stacked1))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(stacked0, stacked1))
        times.append(time.perf_counter() - t0)
    results["value_and_grad_ms_per_pair"] = 1e3 * statistics.median(times) / batch
    results["compile_s"] = compile_s

    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
