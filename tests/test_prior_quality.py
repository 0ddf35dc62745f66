"""Contact / interpenetration statistics used to judge prior samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import apu_jax
from apu_jax.fit.interpenetration import sample_query_ids
from apu_jax.prior.quality import pair_statistics
from apu_jax.prior.representation import PairParams


def test_pair_statistics_distances_and_overlap(small_smplx_file):
    body = apu_jax.load_model(small_smplx_file, num_betas=4)
    rng = np.random.default_rng(0)
    pose = jnp.asarray(rng.normal(0, 0.2, (3, 2, 63)), jnp.float32)
    transl = jnp.array([[[0, 0, 0], [3.0, 0, 0]], [[0, 0, 0], [0.0, 0, 0]], [[0, 0, 0], [0.35, 0.1, 0]]])
    same_pose = pose.at[1, 1].set(pose[1, 0])  # pair 1: two copies of one body
    pairs = PairParams(jnp.zeros((3, 2, 3)), same_pose, jnp.zeros((3, 2, 4)), transl)
    stats = pair_statistics(body, pairs, num_query=100)
    # Brute force: sampled vertices of each body against all vertices of the other, both directions.
    ids = np.asarray(sample_query_ids(body, 100))
    verts = np.asarray(
        jax.jit(apu_jax.forward)(
            body,
            global_orient=pairs.global_orient,
            body_pose=pairs.body_pose,
            betas=pairs.betas,
            transl=transl,
        )["vertices"]
    )
    for i in range(3):
        a, b = verts[i, 0], verts[i, 1]
        d = min(
            np.linalg.norm(a[ids][:, None] - b[None], axis=-1).min(),
            np.linalg.norm(b[ids][:, None] - a[None], axis=-1).min(),
        )
        assert stats["min_distance_m"][i] == pytest.approx(d, abs=1e-4)
    assert stats["min_distance_m"][0] > 1.0  # 3 m apart
    assert stats["min_distance_m"][1] == pytest.approx(0.0, abs=1e-4)  # two copies of one body
    assert stats["contact_fraction"] == pytest.approx(np.mean(np.asarray(stats["min_distance_m"]) < 0.02))
    assert stats["penetrating_vertex_fraction"][0] == 0.0  # far apart: nothing inside
    assert stats["penetrating_vertex_fraction"][1] > 0.05  # the same body twice overlaps
