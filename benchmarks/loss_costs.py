"""Per-pair memory (XLA buffer assignment) and time of each fit loss term (value and gradient, vmapped).

Terms: keypoints (2 people, K=25), contact (C contacts, regions of M vertices), interpenetration (proxy, Q
queries, chunked). Vertices are the model's rest mesh with small random offsets; the region ids are random
vertex sets of the RegionSet's shape (the cost depends only on the shapes). Numbers are per pair: XLA temp
bytes of `jit(vmap(value_and_grad(term)))` divided by the batch, and the median wall time per pair.

Run: `python benchmarks/loss_costs.py [--model default] [--batch 16] [--contacts 16] [--region-width 64]`.
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
from apu_jax.fit.camera import default_camera, project
from apu_jax.fit.losses import contact_loss, keypoint_loss


def measure(fn, args, batch: int, repeats: int = 5) -> dict[str, float]:
    """Temp bytes per pair, compile seconds and median milliseconds per pair of jit(fn)(*args)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    analysis = compiled.memory_analysis()
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {
        "temp_bytes_per_pair": -1 if analysis is None else int(analysis.temp_size_in_bytes) // batch,
        "ms_per_pair": 1e3 * statistics.median(times) / batch,
        "compile_s": compile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--contacts", type=int, default=16)
    parser.add_argument("--regions", type=int, default=75)
    parser.add_argument("--region-width", type=int, default=64)
    parser.add_argument("--queries", type=int, default=ip.DEFAULT_QUERY_VERTICES)
    parser.add_argument("--proxy-vertices", type=int, default=ip.DEFAULT_PROXY_VERTICES)
    parser.add_argument("--chunk", type=int, default=ip.DEFAULT_CHUNK)
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}; jax {jax.__version__} {jax.devices()}; float32")

    model = apu_jax.load_model(args.model)
    rest = np.asarray(jax.jit(lambda m: apu_jax.forward(m)["vertices"])(model))
    proxy = ip.build_proxy(model, num_proxy_vertices=args.proxy_vertices)
    queries = ip.sample_query_ids(model, count=args.queries)
    rng = np.random.default_rng(0)
    b = args.batch
    verts0 = jnp.asarray(rest + rng.normal(0, 0.01, (b,) + rest.shape), jnp.float32)
    verts1 = jnp.asarray(rest + rng.normal(0, 0.01, (b,) + rest.shape) + [0.2, 0.0, 0.0], jnp.float32)
    results = {"model": args.model, "V": int(rest.shape[0]), "batch": b}

    cam = default_camera(640, 480)
    joints = jnp.asarray(rng.normal(0, 0.3, (b, 2, 25, 3)) + [0, 0, 3], jnp.float32)
    kps = jnp.concatenate([project(cam, joints) + 5.0, jnp.ones((b, 2, 25, 1))], axis=-1)

    def keypoint_term(j, k):
        return jnp.sum(jax.vmap(lambda jj, kk: keypoint_loss(project(cam, jj), kk))(j, k))

    results["keypoints_2people_K25"] = measure(jax.vmap(jax.value_and_grad(keypoint_term)), (joints, kps), b)

    ids = jnp.asarray(rng.integers(0, rest.shape[0], (args.regions, args.region_width)), jnp.int32)
    mask = jnp.ones(ids.shape, bool)
    pairs = jnp.asarray(rng.integers(0, args.regions, (b, args.contacts, 2)), jnp.int32)
    weights = jnp.ones((b, args.contacts), jnp.float32)
    contact = jax.vmap(jax.value_and_grad(contact_loss, (0, 1)), in_axes=(0, 0, None, None, 0, 0))
    results[f"contact_C{args.contacts}_M{args.region_width}"] = measure(
        contact, (verts0, verts1, ids, mask, pairs, weights), b
    )

    def penetration(a, c):
        return ip.interpenetration_loss(a, c, proxy, queries, chunk=args.chunk)

    results[f"interpenetration_Q{queries.shape[0]}_Fp{proxy.faces.shape[0]}_chunk{args.chunk}"] = measure(
        jax.vmap(jax.value_and_grad(penetration, (0, 1))), (verts0, verts1), b
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
