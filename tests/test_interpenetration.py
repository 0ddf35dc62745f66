"""Interpenetration: winding numbers on closed meshes, hole capping, proxy building, loss value/gradient."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import apu_jax
from apu_jax.fit import interpenetration as ip

# --- test meshes


def cube_mesh() -> tuple[np.ndarray, np.ndarray]:
    """Unit cube [0, 1]³, 12 outward-oriented triangles."""
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return v, np.array(f, dtype=np.int32)


def tetra_mesh() -> tuple[np.ndarray, np.ndarray]:
    """Corner tetrahedron {x, y, z >= 0, x + y + z <= 1}, outward-oriented."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    return v, np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int32)


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere, outward-oriented."""
    t = (1 + 5**0.5) / 2
    verts = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t]]
    verts += [[t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    v = [np.array(p, float) / np.linalg.norm(p) for p in verts]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2]]
    faces += [[10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5]]
    faces += [[2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def midpoint(a: int, b: int, cache: dict[tuple[int, int], int] = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                cache[key] = len(v) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = new
    return np.array(v), np.array(faces, dtype=np.int32)


def _winding(points, verts, faces, chunk=64):
    return np.asarray(
        ip.winding_numbers(jnp.asarray(points, jnp.float32), jnp.asarray(verts, jnp.float32), faces, chunk)
    )


def _is_closed(faces) -> bool:
    return len(ip._boundary_edges(np.asarray(faces))) == 0


# --- winding numbers


@pytest.mark.parametrize("mesh", [cube_mesh, tetra_mesh])
def test_winding_number_is_one_inside_zero_outside(mesh):
    verts, faces = mesh()
    pts = np.random.default_rng(0).uniform(-0.5, 1.5, (3000, 3))
    if mesh is cube_mesh:
        inside = np.all((pts > 0) & (pts < 1), axis=1)
        margin = np.min(np.abs(np.concatenate([pts, pts - 1], axis=1)), axis=1)
    else:
        inside = np.all(pts > 0, axis=1) & (pts.sum(1) < 1)
        margin = np.min(np.abs(np.concatenate([pts, (pts.sum(1, keepdims=True) - 1) / 3**0.5], 1)), axis=1)
    ok = margin > 1e-3  # skip points practically on the surface
    w = _winding(pts, verts, faces)
    np.testing.assert_allclose(w[ok], inside[ok].astype(float), atol=1e-4)
    # Reversed orientation flips the sign.
    np.testing.assert_allclose(_winding(pts, verts, faces[:, ::-1])[ok], -inside[ok].astype(float), atol=1e-4)


def test_winding_numbers_do_not_depend_on_chunk():
    verts, faces = icosphere(2)
    pts = np.random.default_rng(1).uniform(-1.5, 1.5, (101, 3))
    ref = _winding(pts, verts, faces, chunk=101)
    for chunk in (1, 7, 64, 500):
        np.testing.assert_allclose(_winding(pts, verts, faces, chunk=chunk), ref, atol=1e-5)


# --- closing holes and the proxy


def test_close_holes_caps_a_cube_with_a_missing_face():
    verts, faces = cube_mesh()
    open_faces = faces[2:]  # drop the two triangles of the x = 0 face
    assert not _is_closed(open_faces)
    caps = ip.close_holes(open_faces)
    assert caps.shape == (2, 3)  # a 4-edge hole is fanned with 2 triangles
    closed = np.concatenate([open_faces, caps])
    assert _is_closed(closed) and ip.close_holes(closed).shape == (0, 3)
    pts = np.array([[0.5, 0.5, 0.5], [0.1, 0.9, 0.2], [-0.1, 0.5, 0.5], [1.2, 0.5, 0.5]])
    np.testing.assert_allclose(_winding(pts, verts, closed), [1, 1, 0, 0], atol=1e-5)


def test_proxy_is_a_closed_vertex_subset_and_matches_exact_on_a_sphere():
    verts, faces = icosphere(3)  # 642 vertices, 1280 faces
    proxy = ip.build_proxy_from_mesh(verts, faces, num_proxy_vertices=150)
    pf = np.asarray(proxy.faces)
    assert pf.min() >= 0 and pf.max() < len(verts)
    assert set(np.unique(pf)) <= set(np.asarray(proxy.vertex_ids)) and len(proxy.vertex_ids) <= 150
    assert _is_closed(pf)
    assert 150 < len(pf) < 1280
    pts = np.random.default_rng(2).uniform(-1.3, 1.3, (4000, 3))
    exact = _winding(pts, verts, faces) >= 0.5
    approx = _winding(pts, verts, pf) >= 0.5
    r = np.linalg.norm(pts, axis=1)
    far = np.abs(r - 1) > 0.15  # the proxy's chords sit at most ~0.1 inside the sphere at this resolution
    np.testing.assert_array_equal(approx[far], exact[far])
    assert np.mean(approx == exact) > 0.97
    assert not np.any(approx & ~exact)  # an inscribed proxy never calls an outside point inside


def test_proxy_closes_holes_orients_outward_and_drops_inner_components():
    verts, faces = icosphere(3)
    centroids = verts[faces].mean(axis=1)
    holed = faces[centroids[:, 2] < 0.93][:, ::-1]  # a hole at the top, and inward orientation
    inner_v, inner_f = icosphere(1)
    all_verts = np.concatenate([verts, 0.3 * inner_v])  # an "eyeball" inside, a separate component
    all_faces = np.concatenate([holed, inner_f + len(verts)])
    proxy = ip.build_proxy_from_mesh(all_verts, all_faces, num_proxy_vertices=200)
    pf = np.asarray(proxy.faces)
    assert _is_closed(pf) and pf.max() < len(verts)  # inner sphere gone
    w = _winding(np.array([[0, 0, 0], [0, 0, 0.5], [0, 0, 1.5], [0.5, 0.2, -0.3]]), all_verts, pf)
    np.testing.assert_allclose(w, [1, 1, 0, 1], atol=1e-4)


# --- the loss


def _tetra_pair():
    """Body 0 = corner tetrahedron; body 1 = same shifted so that only body 0's vertex 1 is inside body 1."""
    verts, faces = tetra_mesh()
    v0 = jnp.asarray(verts, jnp.float32)
    v1 = v0 + jnp.array([0.8, -0.05, -0.05])
    proxy = ip.Proxy(faces=jnp.asarray(faces), vertex_ids=jnp.arange(4, dtype=jnp.int32))
    return v0, v1, proxy


def test_interpenetration_loss_hand_computed_value_and_gradient():
    v0, v1, proxy = _tetra_pair()
    # Vertex (1,0,0) lies inside body 1 (relative position (0.2, 0.05, 0.05)); no vertex of body 1 is inside
    # body 0. Its nearest vertex of body 1 is (0.8, -0.05, -0.05), d² = 0.045; loss = (100 · 0.045)² = 20.25.
    queries = jnp.arange(4, dtype=jnp.int32)
    fn = jax.jit(jax.value_and_grad(ip.interpenetration_loss, argnums=(0, 1)))
    loss, (g0, g1) = fn(v0, v1, proxy, queries)
    assert float(loss) == pytest.approx(20.25, rel=1e-5)
    # d/dv (100 d²)² = 2 (100 d²) · 100 · 2 (v − u) = 1800 · (0.2, 0.05, 0.05); the opposite on u.
    expected0 = np.zeros((4, 3))
    expected0[1] = 1800.0 * np.array([0.2, 0.05, 0.05])
    np.testing.assert_allclose(np.asarray(g0), expected0, rtol=1e-4, atol=1e-3)
    expected1 = np.zeros((4, 3))
    expected1[0] = -expected0[1]
    np.testing.assert_allclose(np.asarray(g1), expected1, rtol=1e-4, atol=1e-3)
    # Subsampled queries: the sum is rescaled by V/Q.
    loss_fn = jax.jit(ip.interpenetration_loss)
    assert float(loss_fn(v0, v1, proxy, jnp.array([1]))) == pytest.approx(4 * 20.25, rel=1e-5)
    assert float(loss_fn(v0, v1, proxy, jnp.array([0, 2]))) == 0.0
    # Symmetric in the people.
    assert float(loss_fn(v1, v0, proxy, queries)) == pytest.approx(20.25, rel=1e-5)


def test_loss_at_fixed_targets_matches_the_searching_loss_and_keeps_them_fixed():
    v0, v1, proxy = _tetra_pair()
    queries = jnp.arange(4, dtype=jnp.int32)
    targets = ip.interpenetration_targets(v0, v1, proxy, queries)
    # Only vertex 1 of body 0 is inside body 1; its nearest vertex of body 1 is vertex 0.
    np.testing.assert_array_equal(np.asarray(targets.inside), [[False, True, False, False], [False] * 4])
    assert int(targets.nearest[0, 1]) == 0
    searched = jax.value_and_grad(ip.interpenetration_loss, argnums=(0, 1))(v0, v1, proxy, queries)
    fixed = jax.value_and_grad(ip.interpenetration_loss_at, argnums=(0, 1))(v0, v1, targets, queries)
    assert float(fixed[0]) == pytest.approx(float(searched[0]), rel=1e-6)
    for a, b in zip(fixed[1], searched[1], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    # Move body 1 away: the searching loss drops to 0, the fixed-target one still pulls vertex 1 to the old
    # nearest vertex, now at x = 1.8: d² = 0.8² + 0.05² + 0.05².
    moved = v1 + jnp.array([1.0, 0.0, 0.0])
    assert float(ip.interpenetration_loss(v0, moved, proxy, queries)) == 0.0
    stale = float(ip.interpenetration_loss_at(v0, moved, targets, queries))
    assert stale == pytest.approx((100.0 * (0.8**2 + 0.05**2 + 0.05**2)) ** 2, rel=1e-5)


def test_query_weights_scale_each_query_and_sum_to_the_vertex_count():
    v0, v1, proxy = _tetra_pair()
    loss_fn = jax.jit(ip.interpenetration_loss)
    # Only query 1 is inside: the loss is its weight times (100 · 0.045)².
    weighted = loss_fn(v0, v1, proxy, jnp.array([1, 2]), query_weights=jnp.array([2.5, 7.0]))
    assert float(weighted) == pytest.approx(2.5 * 20.25, rel=1e-5)
    verts, faces = icosphere(2)
    queries = ip.sample_query_ids_from_mesh(verts, faces, count=40)
    weights = np.asarray(ip.query_vertex_weights_from_mesh(verts, queries))
    assert weights.sum() == len(verts) and weights.min() >= 1  # each query is nearest to itself
    every = np.asarray(ip.query_vertex_weights_from_mesh(verts, np.arange(len(verts))))
    np.testing.assert_array_equal(every, np.ones(len(verts)))


def _numpy_loss(v0, v1, faces, queries, factor=100.0):
    """Independent float64 assembly of the loss (winding numbers by the same formula, brute-force nearest)."""

    def winding(points, verts):
        tri = verts[faces][None] - points[:, None, None, :]
        a, b, c = tri[:, :, 0], tri[:, :, 1], tri[:, :, 2]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        det = np.einsum("qfi,qfi->qf", a, np.cross(b, c))
        dots = np.einsum("qfi,qfi->qf", a, b) * lc + np.einsum("qfi,qfi->qf", a, c) * lb
        denom = la * lb * lc + dots + np.einsum("qfi,qfi->qf", b, c) * la
        return np.arctan2(det, denom).sum(1) / (2 * np.pi)

    total = 0.0
    for a, b in ((v0, v1), (v1, v0)):
        q = a[queries]
        inside = winding(q, b) >= 0.5
        d2 = np.min(np.sum((q[:, None] - b[None]) ** 2, -1), axis=1)
        total += np.sum(np.where(inside, (factor * d2) ** 2, 0.0)) * len(a) / len(queries)
    return total


def test_interpenetration_loss_matches_numpy_on_overlapping_spheres_jit_and_vmap():
    verts, faces = icosphere(2)  # 162 vertices
    proxy = ip.build_proxy_from_mesh(verts, faces, num_proxy_vertices=60)
    queries = jnp.asarray(ip.sample_query_ids_from_mesh(verts, faces, count=50))
    rng = np.random.default_rng(3)
    shifts = [np.array([1.7, 0.1, 0.0]), np.array([0.2, 1.5, -0.3]), np.array([3.0, 0.0, 0.0])]
    v0s = [verts * rng.uniform(0.9, 1.1) for _ in shifts]
    v1s = [verts + s for s in shifts]
    loss_fn = jax.jit(lambda a, b: ip.interpenetration_loss(a, b, proxy, queries, chunk=16))
    values = []
    for a, b in zip(v0s, v1s, strict=True):
        expected = _numpy_loss(a, b, np.asarray(proxy.faces), np.asarray(queries))
        a32, b32 = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
        got = float(loss_fn(a32, b32))
        assert got == pytest.approx(expected, rel=1e-4)
        values.append(got)
    first = (jnp.asarray(v0s[0], jnp.float32), jnp.asarray(v1s[0], jnp.float32))
    eager = ip.interpenetration_loss(*first, proxy, queries, chunk=16)  # jit == no-jit
    assert float(eager) == pytest.approx(values[0], rel=1e-5)
    assert values[0] > 0 and values[1] > 0 and values[2] == 0.0  # overlapping, overlapping, apart
    stacked0 = jnp.asarray(np.stack(v0s), jnp.float32)
    stacked1 = jnp.asarray(np.stack(v1s), jnp.float32)
    grad_fn = jax.grad(lambda a, b: ip.interpenetration_loss(a, b, proxy, queries, chunk=16), argnums=(0, 1))
    batched = jax.jit(jax.vmap(grad_fn))(stacked0, stacked1)
    for i in range(3):
        single = jax.jit(grad_fn)(stacked0[i], stacked1[i])
        for b, s in zip(batched, single, strict=True):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(s), rtol=1e-5, atol=1e-5)


def test_interpenetration_loss_finite_for_coincident_bodies():
    verts, faces = icosphere(1)
    proxy = ip.build_proxy_from_mesh(verts, faces, num_proxy_vertices=20)
    v = jnp.asarray(verts, jnp.float32)
    loss, grads = jax.value_and_grad(ip.interpenetration_loss, argnums=(0, 1))(v, v, proxy, jnp.arange(42))
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def test_interpenetration_memory_is_bounded_by_chunk_not_queries():
    verts, faces = icosphere(4)  # 2562 vertices
    proxy = ip.build_proxy_from_mesh(verts, faces, num_proxy_vertices=300)
    v0 = jnp.asarray(verts, jnp.float32)
    v1 = v0 + jnp.array([1.0, 0.0, 0.0])

    def temp_bytes(num_queries: int) -> int:
        queries = jnp.arange(num_queries, dtype=jnp.int32)
        fn = jax.grad(lambda a, b: ip.interpenetration_loss(a, b, proxy, queries, chunk=32), argnums=(0, 1))
        analysis = jax.jit(fn).lower(v0, v1).compile().memory_analysis()
        if analysis is None:
            pytest.skip("this backend reports no memory analysis")
        return analysis.temp_size_in_bytes

    small, large = temp_bytes(64), temp_bytes(2048)
    # 32x more queries: only the O(Q) vectors grow (~20 scalars per query), not the chunk working set.
    assert large < small + 2048 * 256
    dense = 2048 * int(proxy.faces.shape[0]) * 9 * 4  # what an unchunked corner tensor would take
    assert large < dense / 10


def test_interpenetration_bytes_formula():
    est = ip.interpenetration_bytes(num_queries=2000, num_proxy_faces=2000, num_vertices=10475, chunk=128)
    assert est["buddi_dense"] == 10475 * 2000 * 9 * 4
    assert est["persistent"] == 2 * (2000 * 9 + 2000 * 8) * 4
    assert est["chunk_unfused"] == 2 * 128 * (24 * 2000 + 4 * 10475) * 4
    assert est["typical"] == est["persistent"] + 128 * 2000 * 4
    assert est["typical"] < est["chunk_unfused"] < est["buddi_dense"]


# --- the body models


def test_proxy_of_the_synthetic_smplx_file_builds(tmp_path):
    """The synthetic file has random triangles (no surface): the proxy must still be a closed chain."""
    from apu_jax.body.synthetic import write_synthetic_smplx

    path = tmp_path / "SMPLX_NEUTRAL.npz"
    write_synthetic_smplx(path, num_vertices=2000, seed=0, num_faces=3000, num_shape_dirs=20)
    model = apu_jax.load_model(path)
    proxy = ip.build_proxy(model, num_proxy_vertices=200)
    assert _is_closed(np.asarray(proxy.faces))
    assert np.asarray(proxy.faces).max() < model.num_vertices
    queries = ip.sample_query_ids(model, count=100)
    assert queries.shape == (100,) and len(np.unique(np.asarray(queries))) == 100


DEFAULT_MODEL = Path(apu_jax.__file__).parent / "data" / "default_model.npz"


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="bundled default model not built yet")
def test_proxy_of_the_default_model_agrees_with_exact_winding_numbers():
    model = apu_jax.load_model("default")
    verts = np.asarray(apu_jax.forward(model)["vertices"], dtype=np.float64)
    proxy = ip.build_proxy(model)
    assert _is_closed(np.asarray(proxy.faces))
    exact_faces = ip.closed_surface(verts, np.asarray(model.faces))
    # Points around the body: shifted copies of its own vertices, a few cm off the surface either way.
    rng = np.random.default_rng(0)
    ids = rng.choice(len(verts), 1500, replace=False)
    pts = verts[ids] + rng.normal(0.0, 0.03, (1500, 3))
    exact = _winding(pts, verts, exact_faces, chunk=32) >= 0.5
    approx = _winding(pts, verts, np.asarray(proxy.faces), chunk=32) >= 0.5
    assert np.mean(exact == approx) > 0.9
