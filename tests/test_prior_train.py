"""Pair prior training: v2v subset, guidance dropout, data loading and mixing, loss decrease, checkpoints."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import apu_jax
from apu_jax.data.dataset import export_dataset
from apu_jax.prior.denoiser import DenoiserConfig
from apu_jax.prior.guidance import PriorModel
from apu_jax.prior.representation import PairParams
from apu_jax.prior.train import (
    DropoutProbs,
    PriorDataError,
    TrainConfig,
    TrainData,
    condition_mask,
    load_prior,
    load_train_state,
    load_training_data,
    make_vertex_subset,
    read_checkpoint,
    subset_vertices,
    train_prior,
)

NUM_BETAS = 4
NET = DenoiserConfig(
    num_betas=NUM_BETAS, width=32, depth=1, heads=2, mlp_dim=48, dropout=0.0, conditional=True
)
RUN = TrainConfig(
    steps=40, batch_size=8, learning_rate=3e-3, steps_per_call=20, checkpoint_every=20, num_v2v_vertices=64
)


@pytest.fixture(scope="module")
def body(small_smplx_file):
    return apu_jax.load_model(small_smplx_file, num_betas=NUM_BETAS)


def random_pairs(rng: np.random.Generator, n: int) -> PairParams:
    return PairParams(
        global_orient=(np.array([math.pi, 0, 0]) + rng.normal(0, 0.3, (n, 2, 3))).astype(np.float32),
        body_pose=rng.normal(0, 0.3, (n, 2, 63)).astype(np.float32),
        betas=rng.normal(0, 1, (n, 2, NUM_BETAS)).astype(np.float32),
        transl=(np.array([[0.0, 0.2, 3.0], [0.6, 0.1, 3.3]]) + rng.normal(0, 0.1, (n, 2, 3))).astype(
            np.float32
        ),
    )


def write_pairset(path, pairs: PairParams, init: PairParams | None, ids: list[str]) -> None:
    n = len(ids)
    arrays = {
        "meta": np.asarray(json.dumps({"format": "apu-pairset", "version": 1, "keypoint_format": "body25"})),
        "pair_id": np.asarray(ids),
        "image": np.asarray([""] * n),
        "image_size": np.tile(np.array([640, 480], np.int32), (n, 1)),
        "keypoints": np.zeros((n, 2, 25, 3), np.float32),
        "contact_pairs": -np.ones((n, 1, 2), np.int32),
        "contact_weights": np.zeros((n, 1), np.float32),
    }
    for name in ("global_orient", "body_pose", "betas", "transl"):
        arrays[f"gt_{name}"] = getattr(pairs, name)
        arrays[f"init_{name}"] = getattr(init if init is not None else pairs, name)
    np.savez(path, **arrays)


def write_fits(folder, pairs: PairParams, ids: list[str], keep: np.ndarray, pairs_path: str) -> None:
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"format": "apu-fits", "version": 1, "pairs": pairs_path}))
    half = len(ids) // 2
    for shard, rows in enumerate([slice(0, half), slice(half, None)]):
        np.savez(
            folder / f"shard-{shard:05d}.npz",
            pair_id=np.asarray(ids[rows]),
            keep=keep[rows],
            error=np.asarray([""] * len(ids[rows])),
            **{k: getattr(pairs, k)[rows] for k in ("global_orient", "body_pose", "betas", "transl")},
        )


def test_subset_vertices_match_the_full_forward(body, rng):
    subset = make_vertex_subset(body, count=50, seed=1)
    ids = np.sort(np.random.default_rng(1).choice(body.num_vertices, 50, replace=False))
    pair = random_pairs(rng, 1)
    orient = apu_jax.body.axis_angle_to_matrix(jnp.asarray(pair.global_orient[0, 1]))
    pose = apu_jax.body.axis_angle_to_matrix(jnp.asarray(pair.body_pose[0, 1]).reshape(21, 3))
    got = jax.jit(subset_vertices)(subset, orient, pose, pair.betas[0, 1], pair.transl[0, 1])
    full = jax.jit(apu_jax.forward)(
        body,
        global_orient=pair.global_orient[0, 1],
        body_pose=pair.body_pose[0, 1],
        betas=pair.betas[0, 1],
        transl=pair.transl[0, 1],
    )["vertices"]
    np.testing.assert_allclose(got, np.asarray(full)[ids], atol=2e-5)


def test_condition_mask_statistics():
    probs = DropoutProbs(jnp.asarray(0.2), jnp.asarray(0.7), jnp.asarray(0.5))
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    masks = np.asarray(
        jax.jit(jax.vmap(condition_mask, in_axes=(0, None, None)))(keys, probs, jnp.asarray(True))
    )
    none_shown = np.mean(~masks.any(axis=(1, 2)))
    all_shown = np.mean(masks.all(axis=(1, 2)))
    # all hidden: 0.2 + 0.1 · 2⁻⁸; all shown: 0.7 + 0.1 · 2⁻⁸; a single token: 0.7 + 0.1 · 0.5
    assert none_shown == pytest.approx(0.2 + 0.1 / 256, abs=0.01)
    assert all_shown == pytest.approx(0.7 + 0.1 / 256, abs=0.01)
    assert masks[:, 1, 2].mean() == pytest.approx(0.75, abs=0.01)
    never = np.asarray(jax.jit(jax.vmap(condition_mask, in_axes=(0, None, None)))(keys[:100], probs, False))
    assert not never.any()  # a pair without an initial estimate never shows one


def test_load_training_data_mixes_sources(tmp_path, rng):
    gt = random_pairs(rng, 6)
    init = random_pairs(rng, 6)
    ids = [f"p{i}" for i in range(6)]
    write_pairset(tmp_path / "gt.npz", gt, init, ids)
    fitted = random_pairs(rng, 4)
    keep = np.array([True, False, True, True])
    write_fits(tmp_path / "fits", fitted, ids[:4], keep, str(tmp_path / "gt.npz"))
    data, summary = load_training_data([tmp_path / "gt.npz", tmp_path / "fits"], [1.0, 3.0])
    assert data.size == 6 + 3  # the unkept fit is dropped
    assert [s["pairs"] for s in summary] == [6, 3] and all(s["conditioned"] for s in summary)
    probs = np.asarray(data.probs)
    assert probs.sum() == pytest.approx(1.0)
    assert probs[:6].sum() == pytest.approx(0.25) and probs[6:].sum() == pytest.approx(0.75)
    # Fits are paired with their own initial estimate, found by pair id in the pair set of meta.json.
    np.testing.assert_allclose(data.target.body_pose[6:], fitted.body_pose[keep])
    np.testing.assert_allclose(data.cond.body_pose[6:], init.body_pose[:4][keep])
    np.testing.assert_allclose(data.cond.transl[:6], init.transl)
    # An exported dataset (apu run's output) is a source too: its fitted parameters, init_* as condition.
    export_dataset(tmp_path / "gt.npz", tmp_path / "fits", tmp_path / "dataset.npz")
    exported, summary = load_training_data([tmp_path / "dataset.npz"])
    assert exported.size == 3 and summary[0]["conditioned"]
    np.testing.assert_allclose(exported.target.betas, fitted.betas[keep])
    np.testing.assert_allclose(exported.cond.betas, init.betas[:4][keep])


def test_load_training_data_errors(tmp_path, rng):
    with pytest.raises(PriorDataError, match="expected a FITS directory"):
        load_training_data([tmp_path / "missing.npz"])
    pairs = random_pairs(rng, 2)
    write_pairset(tmp_path / "a.npz", pairs, None, ["a", "b"])
    with np.load(tmp_path / "a.npz") as f:
        arrays = {k: f[k] for k in f.files if k != "gt_transl"}
    np.savez(tmp_path / "no_gt.npz", **arrays)
    with pytest.raises(PriorDataError, match="gt_transl"):
        load_training_data([tmp_path / "no_gt.npz"])
    with pytest.raises(PriorDataError, match="weights"):
        load_training_data([tmp_path / "a.npz"], [1.0, 2.0])


def _tiny_data(rng) -> TrainData:
    n = 6
    target = random_pairs(rng, n)
    cond = jax.tree.map(lambda a: (a + rng.normal(0, 0.05, a.shape)).astype(np.float32), target)
    return TrainData(target=target, cond=cond, has_cond=np.ones(n, bool), probs=np.full(n, 1 / n, np.float32))


def test_training_loss_decreases_and_resume_is_exact(body, tmp_path, rng):
    data = _tiny_data(rng)
    # One run of 40 steps ...
    full = train_prior(data, body, tmp_path / "full.npz", NET, RUN, resume=False)
    assert full["step"] == 40 and len(full["loss_history"]) == 2
    # ... and the same run in two halves (20 steps, then resumed to 40) end at the same weights.
    half = train_prior(data, body, tmp_path / "half.npz", NET, TrainConfig(**{**RUN.to_json(), "steps": 20}))
    assert half["step"] == 20
    meta, _ = read_checkpoint(tmp_path / "half.npz")
    assert meta["step"] == 20
    resumed = train_prior(data, body, tmp_path / "half.npz", NET, RUN, resume=True)
    assert resumed["start_step"] == 20 and resumed["step"] == 40
    a = load_train_state(tmp_path / "full.npz", NET, RUN)
    b = load_train_state(tmp_path / "half.npz", NET, RUN)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert int(a.step) == int(b.step) == 40
    # A longer run on the same tiny set drives the loss well down (it can memorise 6 pairs).
    longer = train_prior(
        data, body, tmp_path / "full.npz", NET, TrainConfig(**{**RUN.to_json(), "steps": 200})
    )
    history = [full["loss_history"][0], *longer["loss_history"]]
    assert history[-1] < 0.5 * history[0]
    # The checkpoint loads as a prior with the same weights as the train state.
    prior = load_prior(tmp_path / "full.npz")
    assert isinstance(prior, PriorModel) and prior.config == NET
    state = load_train_state(tmp_path / "full.npz", NET, RUN)
    for x, y in zip(jax.tree.leaves(prior.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(x, y)


def test_checkpoint_errors(tmp_path, body, rng):
    with pytest.raises(PriorDataError, match="not found"):
        load_prior(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", meta=np.asarray(json.dumps({"format": "apu-fits"})))
    with pytest.raises(PriorDataError, match="not an apu prior checkpoint"):
        load_prior(tmp_path / "other.npz")
    with pytest.raises(PriorDataError, match="betas"):
        bad = DenoiserConfig(num_betas=NUM_BETAS + 1, width=32, depth=1, heads=2, mlp_dim=48)
        train_prior(_tiny_data(rng), body, tmp_path / "x.npz", bad, RUN)
