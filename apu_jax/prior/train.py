"""Training the pair prior: loss, jitted train step, mixed-source sampling, npz checkpoints with resume.

Loss per pair (BUDDI's, `LossWeights` defaults): on the x₀ prediction of a noised ground-truth pair,
  w_rot · Σ_p (‖R̂(φ_p) − R(φ_p)‖²_F + Σ_j ‖R̂(θ_pj) − R(θ_pj)‖²_F)      rotation matrices, orient + 21 joints
+ w_β · Σ_p ‖β̂_p − β_p‖² + w_t · Σ_p ‖t̂_p − t_p‖²                       (relative translations)
+ w_v2v · Σ_p mean_v ‖v̂_pv − v_pv‖²                                     vertices through the body model.
The v2v term uses a fixed random subset of vertices (`VertexSubset`) so that training stays cheap; rest joints
still come from the full mesh (precomputed linear maps of betas), so the subset's vertices are exact.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct, traverse_util

from apu_jax.body.model import BodyModel, ShapedBody, default_params, full_pose_matrices, pose_body
from apu_jax.data.dataset import load_dataset
from apu_jax.data.pairset import PARAM_KEYS, PairSetError, load_fits, load_pairset
from apu_jax.prior.denoiser import DenoiserConfig, apply_denoiser, init_denoiser_params
from apu_jax.prior.guidance import PriorModel, normal_like
from apu_jax.prior.representation import GROUPS, PairParams, PairX0, params_to_x0, swap_people, x0_rotations
from apu_jax.prior.schedule import Schedule, cosine_schedule, q_sample

CHECKPOINT_FORMAT = "apu-prior"
CHECKPOINT_VERSION = 1


class PriorDataError(ValueError):
    """Training data or a checkpoint is missing, malformed or inconsistent (the message says which)."""


# ----------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything about a training run except the architecture (saved in the checkpoint)."""

    steps: int = 2000  # total optimiser steps (a resumed run continues up to this number)
    batch_size: int = 64  # pairs per step
    learning_rate: float = 1e-4  # Adam (BUDDI: 1e-4)
    grad_clip: float = 1.0  # global-norm gradient clipping (BUDDI: 1.0)
    seed: int = 0  # PRNG seed of the run (init, batches, noise)
    steps_per_call: int = 50  # optimiser steps fused into one jitted `lax.scan` call (progress granularity)
    checkpoint_every: int = 500  # save whenever the step count crosses a multiple of this
    swap_augment: bool = True  # randomly exchange person 0 and 1 (the order of a pair is arbitrary)
    num_v2v_vertices: int = 500  # size of the fixed vertex subset of the v2v term
    diffusion_steps: int = 1000  # T of the cosine schedule
    w_rotation: float = 10.0  # weight of the rotation-matrix term
    w_betas: float = 0.1  # weight of the betas term
    w_transl: float = 1.0  # weight of the relative-translation term
    w_v2v: float = 100.0  # weight of the vertex term (BUDDI: 100 unconditional, 1000 conditional)
    p_drop_all: float = 0.2  # guidance dropout: probability that the whole condition is hidden
    p_drop_none: float = 0.7  # probability that the whole condition is visible
    p_drop_token: float = 0.5  # otherwise, each condition token is hidden with this probability

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@struct.dataclass
class LossWeights:
    """Traced loss weights (changing them does not recompile)."""

    rotation: jax.Array  # () weight of Σ‖R̂ − R‖²_F
    betas: jax.Array  # () weight of Σ‖β̂ − β‖²
    transl: jax.Array  # () weight of Σ‖t̂ − t‖² (relative translations, metres)
    v2v: jax.Array  # () weight of Σ_p mean_v ‖v̂ − v‖² (metres²)

    @classmethod
    def from_config(cls, config: TrainConfig) -> LossWeights:
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return cls(f(config.w_rotation), f(config.w_betas), f(config.w_transl), f(config.w_v2v))


@struct.dataclass
class DropoutProbs:
    """Guidance-dropout probabilities (traced)."""

    drop_all: jax.Array  # () hide every condition token
    drop_none: jax.Array  # () show every condition token
    drop_token: jax.Array  # () otherwise, hide each token independently with this probability

    @classmethod
    def from_config(cls, config: TrainConfig) -> DropoutProbs:
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return cls(f(config.p_drop_all), f(config.p_drop_none), f(config.p_drop_token))


# ----------------------------------------------------------------------------------------------- data


@struct.dataclass
class TrainData:
    """All training pairs of a run, concatenated over sources."""

    target: PairParams  # (N, 2, ...) the pairs to learn (fits or ground truth)
    cond: PairParams  # (N, 2, ...) initial estimates (a copy of target where has_cond is False)
    has_cond: jax.Array  # (N,) bool, whether an initial estimate exists
    probs: jax.Array  # (N,) float32 sampling probability (source weight / source size), sums to 1

    @property
    def size(self) -> int:
        return int(self.has_cond.shape[0])


def _params_from(arrays, prefix: str) -> PairParams:
    return PairParams(**{k: np.asarray(arrays[f"{prefix}{k}"], np.float32) for k in PARAM_KEYS})


def _read_npz(path: Path) -> dict:
    """All arrays of an .npz, with `meta` decoded from JSON (checkpoints)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise PriorDataError(f"{path}: not a readable .npz file ({err})") from err
    if "meta" in arrays:
        try:
            arrays["meta"] = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError as err:
            raise PriorDataError(f"{path}: 'meta' is not JSON ({err})") from err
    return arrays


def _npz_format(path: Path) -> str:
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["meta"])).get("format", "") if "meta" in data.files else ""
    except (OSError, ValueError, json.JSONDecodeError) as err:
        raise PriorDataError(f"{path}: not a readable .npz file with a JSON meta ({err})") from err


def _missing(arrays, keys: list[str], where: Path) -> None:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise PriorDataError(f"{where}: missing key(s) {', '.join(missing)}")


def _from_pairset(path: Path) -> tuple[PairParams, PairParams | None, np.ndarray]:
    """Ground-truth pairs of a pair set (gt_* fields); its init_* fields are the condition."""
    pairs = load_pairset(path)
    _missing(pairs, [f"gt_{k}" for k in PARAM_KEYS], path)
    return _params_from(pairs, "gt_"), _params_from(pairs, "init_"), pairs["pair_id"].astype(str)


def _from_dataset(path: Path) -> tuple[PairParams, PairParams | None, np.ndarray]:
    """An exported dataset (`apu run` / `export_dataset`): fitted parameters, with init_* as condition."""
    arrays, _ = load_dataset(path)
    _missing(arrays, ["pair_id", *PARAM_KEYS], path)
    cond = _params_from(arrays, "init_") if all(f"init_{k}" in arrays for k in PARAM_KEYS) else None
    return _params_from(arrays, ""), cond, arrays["pair_id"].astype(str)


def _from_fits(folder: Path) -> tuple[PairParams, PairParams | None, np.ndarray]:
    """Kept, error-free fits of a FITS directory; initial estimates from the pair set named in meta.json."""
    fits = load_fits(folder)
    _missing(fits, ["pair_id", *PARAM_KEYS], folder)
    ok = np.ones(len(fits), bool)
    if "keep" in fits:
        ok &= fits["keep"].astype(bool)
    if "error" in fits:
        ok &= fits["error"].astype(str) == ""
    fits = fits.select(ok)
    pair_ids = fits["pair_id"].astype(str)
    cond = None
    pairs_path = fits.meta.get("pairs")
    found = (
        next((p for p in (Path(pairs_path), folder / pairs_path) if p.exists()), None) if pairs_path else None
    )
    if found is not None:
        pairs = load_pairset(found)
        row = {pid: i for i, pid in enumerate(pairs["pair_id"].astype(str).tolist())}
        rows = np.array([row.get(pid, -1) for pid in pair_ids], np.int64)
        if np.all(rows >= 0):
            cond = _params_from(pairs.select(rows), "init_")
    return _params_from(fits, ""), cond, pair_ids


def load_source(path: str | os.PathLike) -> tuple[PairParams, PairParams | None, np.ndarray]:
    """Read one training source.

    Accepted: a FITS directory (kept pairs; condition from its pair set), an exported dataset (`.npz` with
    meta.format "apu-dataset", or a directory holding `dataset.npz`), or a pair set with gt_* parameters.

    Returns:
        target (N, 2, ...), condition (N, 2, ...) or None, pair ids (N,) str.
    """
    path = Path(path)
    try:
        if path.is_dir():
            if (path / "meta.json").exists():
                return _from_fits(path)
            if (path / "dataset.npz").exists():
                return _from_dataset(path / "dataset.npz")
        elif path.suffix == ".npz" and path.is_file():
            fmt = _npz_format(path)
            if fmt == "apu-pairset":
                return _from_pairset(path)
            if fmt == "apu-dataset":
                return _from_dataset(path)
            raise PriorDataError(f"{path}: meta.format is {fmt!r}, expected 'apu-pairset' or 'apu-dataset'")
    except PairSetError as err:
        raise PriorDataError(str(err)) from err
    raise PriorDataError(
        f"{path}: expected a FITS directory, an exported dataset or a pair set with gt_* fields"
    )


def load_training_data(
    paths: list[str | os.PathLike], weights: list[float] | None = None
) -> tuple[TrainData, list]:
    """Concatenate training sources and give each source its share of every batch.

    Args:
        paths: FITS directories and/or pair sets with ground truth.
        weights: per-source mix weight (default: equal per source); a batch draws source s with probability
            w_s / Σw, then a uniform pair within it.
    Returns:
        `TrainData` (numpy arrays) and a per-source summary list of dicts (path, pairs, weight, conditioned).
    """
    if not paths:
        raise PriorDataError("no training sources given")
    weights = [1.0] * len(paths) if weights is None else list(weights)
    if len(weights) != len(paths):
        raise PriorDataError(f"{len(weights)} mix weights for {len(paths)} sources")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise PriorDataError("mix weights must be non-negative with a positive sum")
    targets, conds, has, probs, summary = [], [], [], [], []
    num_betas = None
    for path, weight in zip(paths, weights, strict=True):
        target, cond, pair_ids = load_source(path)
        n = len(pair_ids)
        if n == 0:
            raise PriorDataError(f"{path}: no usable pairs")
        b = target.betas.shape[-1]
        if num_betas is not None and b != num_betas:
            raise PriorDataError(f"{path}: {b} betas, but earlier sources have {num_betas}")
        num_betas = b
        for name, arr in zip(PARAM_KEYS, jax.tree.leaves(target), strict=True):
            if not np.all(np.isfinite(arr)):
                raise PriorDataError(f"{path}: {name} contains NaN or inf")
        targets.append(target)
        conds.append(target if cond is None else cond)
        has.append(np.full(n, cond is not None))
        probs.append(np.full(n, weight / sum(weights) / n))
        summary.append({"path": str(path), "pairs": n, "weight": weight, "conditioned": cond is not None})
    cat = lambda *xs: np.concatenate(xs)  # noqa: E731
    data = TrainData(
        target=jax.tree.map(cat, *targets),
        cond=jax.tree.map(cat, *conds),
        has_cond=np.concatenate(has),
        probs=np.concatenate(probs).astype(np.float32),
    )
    return data, summary


# ----------------------------------------------------------------------------------------------- v2v


@struct.dataclass
class VertexSubset:
    """A body model cut to a fixed vertex subset, with exact rest joints (for the v2v loss)."""

    model: BodyModel  # vertex arrays cut to the subset (v_template, shapedirs, posedirs, weights)
    joint_template: jax.Array  # (55, 3) rest joints of the mean shape, from the FULL mesh, metres
    joint_shapedirs: jax.Array  # (55, 3, B) rest-joint change per beta, from the full mesh
    rest_rotations: jax.Array  # (33, 3, 3) jaw, eyes and hands at the model's zero pose (not learned)


def make_vertex_subset(model: BodyModel, count: int = 500, seed: int = 0) -> VertexSubset:
    """Choose `count` vertices at random (fixed seed) and precompute the joint regression. Outside jit."""
    num_v = model.num_vertices
    ids = np.sort(np.random.default_rng(seed).choice(num_v, size=min(count, num_v), replace=False))
    posedirs = model.posedirs
    if posedirs is not None:
        posedirs = posedirs.reshape(posedirs.shape[0], num_v, 3)[:, ids].reshape(posedirs.shape[0], -1)
    sub = model.replace(
        v_template=model.v_template[ids],
        shapedirs=model.shapedirs[ids],
        exprdirs=model.exprdirs[ids],
        posedirs=posedirs,
        weights=model.weights[ids],
        j_regressor=model.j_regressor[:, ids],  # unused (joints come from the full mesh), kept consistent
    )
    zero = default_params(model)
    return VertexSubset(
        model=sub,
        joint_template=model.j_regressor @ model.v_template,
        joint_shapedirs=jnp.einsum("jv,vcb->jcb", model.j_regressor, model.shapedirs),
        rest_rotations=full_pose_matrices(model, zero)[22:],
    )


def subset_vertices(
    subset: VertexSubset, orient: jax.Array, pose: jax.Array, betas: jax.Array, transl: jax.Array
) -> jax.Array:
    """Posed subset vertices of one body from rotation matrices (no axis-angle round trip).

    Args:
        subset: `VertexSubset`.
        orient: (3, 3) global rotation.
        pose: (21, 3, 3) body joint rotations.
        betas: (B,) shape coefficients.
        transl: (3,) metres.
    Returns:
        (V_sub, 3) vertices, metres.
    """
    model = subset.model
    shaped = ShapedBody(
        vertices=model.v_template + jnp.einsum("vcb,b->vc", model.shapedirs, betas),
        joints=subset.joint_template + jnp.einsum("jcb,b->jc", subset.joint_shapedirs, betas),
    )
    rotations = jnp.concatenate([orient[None], pose, subset.rest_rotations], axis=0)
    vertices, _ = pose_body(model, shaped, rotations)
    return vertices + transl


# ----------------------------------------------------------------------------------------------- loss


def predict_x0(
    config: DenoiserConfig,
    net_params: dict,
    schedule: Schedule,
    target: PairX0,
    cond: PairX0,
    cond_keep: jax.Array,
    t: jax.Array,
    noise: PairX0,
    dropout_key: jax.Array,
) -> PairX0:
    """Noise one clean pair to step t and let the network predict it back (one training sample).

    Args:
        config: denoiser architecture (static).
        net_params: denoiser weights.
        schedule: the diffusion `Schedule`.
        target: clean `PairX0`.
        cond: condition `PairX0` (ignored by an unconditional denoiser).
        cond_keep: (2, 4) bool visibility of the condition tokens (guidance dropout).
        t: () step index.
        noise: `PairX0` standard normal.
        dropout_key: key for network dropout.
    Returns:
        The x₀ prediction.
    """
    x_t = jax.tree.map(lambda a, e: q_sample(schedule, a, t, e), target, noise)
    return apply_denoiser(config, net_params, x_t, t, cond, cond_keep, dropout_key)


def parameter_terms(pred: PairX0, target: PairX0) -> dict[str, jax.Array]:
    """Unweighted parameter terms of one pair: Σ‖R̂ − R‖²_F (orient + pose), Σ‖β̂ − β‖², Σ‖t̂ − t‖²."""
    orient_hat, pose_hat = x0_rotations(pred)
    orient, pose = x0_rotations(target)
    return {
        "rotation": jnp.sum((orient_hat - orient) ** 2) + jnp.sum((pose_hat - pose) ** 2),
        "betas": jnp.sum((pred.betas - target.betas) ** 2),
        "transl": jnp.sum((pred.transl - target.transl) ** 2),
    }


def vertex_term(subset: VertexSubset, pred: PairX0, target: PairX0) -> jax.Array:
    """Σ_p mean_v ‖v̂_pv − v_pv‖² for a BATCH of pairs (leading axis n), metres².

    Batched rather than vmapped per pair: all 4n bodies go through one `vmap` of the skinning, which keeps
    the compiled program small (and XLA's HLO verifier rejects vmap(vmap(grad(pose_body))) in jax 0.10).

    Returns:
        (n,) per-pair vertex term.
    """
    orient_hat, pose_hat = x0_rotations(pred)
    orient, pose = x0_rotations(target)
    n = pred.betas.shape[0]
    flat = lambda a, b: jnp.concatenate([a, b]).reshape((4 * n,) + a.shape[2:])  # noqa: E731
    vertices = jax.vmap(subset_vertices, in_axes=(None, 0, 0, 0, 0))(
        subset,
        flat(orient_hat, orient),
        flat(pose_hat, pose),
        flat(pred.betas, target.betas),
        flat(pred.transl, target.transl),
    ).reshape(2, n, 2, -1, 3)
    return jnp.sum(jnp.mean(jnp.sum((vertices[0] - vertices[1]) ** 2, axis=-1), axis=-1), axis=-1)


def condition_mask(key: jax.Array, probs: DropoutProbs, has_cond: jax.Array) -> jax.Array:
    """Guidance dropout for one pair: (2, 4) bool, which condition tokens the network sees.

    With probability drop_all none, with drop_none all, otherwise each token independently with
    probability 1 − drop_token. A pair without an initial estimate never shows its condition.
    """
    mode_key, token_key = jax.random.split(key)
    u = jax.random.uniform(mode_key)
    per_token = jax.random.uniform(token_key, (2, len(GROUPS))) >= probs.drop_token
    keep = jnp.where(
        u < probs.drop_all, False, jnp.where(u < probs.drop_all + probs.drop_none, True, per_token)
    )
    return keep & has_cond


# ----------------------------------------------------------------------------------------------- state


@struct.dataclass
class TrainState:
    """Everything needed to continue training exactly."""

    params: dict  # denoiser weights
    opt_state: optax.OptState  # Adam moments and counters (after gradient clipping)
    step: jax.Array  # () int32, optimiser steps done
    key: jax.Array  # () typed PRNG key of the run, "rbg" implementation (see `run_key`)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam with global-norm gradient clipping (BUDDI: lr 1e-4, clip 1.0).

    `optax.flatten` runs the update on one raveled vector instead of per parameter leaf: the same maths,
    but a few large ops instead of ~10 small ones per leaf, which cuts CPU compile time.
    """
    return optax.flatten(
        optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(config.learning_rate))
    )


# The "rbg" generator (XLA's RngBitGenerator) compiles several times faster on CPU than the default threefry,
# which matters because a training step draws from ~10 distributions. Deterministic on a given backend.
PRNG_IMPL = "rbg"


def run_key(seed: int) -> jax.Array:
    """The typed PRNG key of a training run."""
    return jax.random.key(seed, impl=PRNG_IMPL)


def init_train_state(net_config: DenoiserConfig, config: TrainConfig) -> TrainState:
    """Fresh weights and optimiser state from the run's seed."""
    init_key, key = jax.random.split(run_key(config.seed))
    params = init_denoiser_params(net_config, init_key)
    return TrainState(
        params=params,
        opt_state=make_optimizer(config).init(params),
        step=jnp.zeros((), jnp.int32),
        key=key,
    )


def _batch_loss(
    net_params: dict,
    net_config: DenoiserConfig,
    config: TrainConfig,
    data: TrainData,
    subset: VertexSubset,
    weights: LossWeights,
    probs: DropoutProbs,
    schedule,
    key: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over one random batch (sampled by the mix probabilities)."""
    n = config.batch_size
    k_idx, k_swap, k_t, k_noise, k_mask, k_drop = jax.random.split(key, 6)
    idx = jax.random.choice(k_idx, data.size, (n,), p=data.probs)
    target = jax.tree.map(lambda a: a[idx], data.target)
    cond = jax.tree.map(lambda a: a[idx], data.cond)
    if config.swap_augment:
        swap = jax.random.bernoulli(k_swap, 0.5, (n,))
        pick = lambda a, b: jnp.where(swap.reshape((n,) + (1,) * (a.ndim - 1)), b, a)  # noqa: E731
        target = jax.tree.map(pick, target, swap_people(target))
        cond = jax.tree.map(pick, cond, swap_people(cond))
    target_x0 = params_to_x0(target)
    noise = normal_like(k_noise, target_x0)
    t = jax.random.randint(k_t, (n,), 0, schedule.num_steps)
    # An unconditional denoiser ignores cond/keep; passing them anyway keeps one code path.
    keep = jax.vmap(condition_mask, in_axes=(0, None, 0))(
        jax.random.split(k_mask, n), probs, data.has_cond[idx]
    )
    pred = jax.vmap(predict_x0, in_axes=(None,) * 3 + (0,) * 6)(
        net_config,
        net_params,
        schedule,
        target_x0,
        params_to_x0(cond),
        keep,
        t,
        noise,
        jax.random.split(k_drop, n),
    )
    terms = jax.vmap(parameter_terms)(pred, target_x0)
    terms["v2v"] = vertex_term(subset, pred, target_x0)
    losses = (
        weights.rotation * terms["rotation"]
        + weights.betas * terms["betas"]
        + weights.transl * terms["transl"]
        + weights.v2v * terms["v2v"]
    )
    return jnp.mean(losses), jax.tree.map(jnp.mean, terms)


@functools.lru_cache(maxsize=8)
def make_train_chunk(net_config: DenoiserConfig, config: TrainConfig) -> Callable:
    """A jitted function running `length` optimiser steps with `lax.scan`.

    Signature: chunk(state, data, subset, weights, probs, length) -> (state, losses (length,), terms
    {name: (length,)}). Everything numeric is an argument (traced); the architecture, the run config and
    `length` are static (a new `length` compiles once more, e.g. for a last partial chunk). Cached per
    (architecture, run config), so a resumed run in the same process does not compile again.
    """
    optimizer = make_optimizer(config)
    schedule = cosine_schedule(config.diffusion_steps)

    def one_step(state: TrainState, data, subset, weights, probs):
        key, step_key = jax.random.split(state.key)
        (loss, terms), grads = jax.value_and_grad(_batch_loss, has_aux=True)(
            state.params, net_config, config, data, subset, weights, probs, schedule, step_key
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params=params, opt_state=opt_state, step=state.step + 1, key=key), (loss, terms)

    @functools.partial(jax.jit, static_argnames="length")
    def chunk(state: TrainState, data: TrainData, subset, weights, probs, length: int):
        body = lambda s, _: one_step(s, data, subset, weights, probs)  # noqa: E731
        state, (losses, terms) = jax.lax.scan(body, state, None, length=length)
        return state, losses, terms

    return chunk


# ----------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str | os.PathLike,
    state: TrainState,
    net_config: DenoiserConfig,
    config: TrainConfig,
    extra: dict | None = None,
) -> None:
    """Write a checkpoint atomically (temp file + rename): one .npz, numpy-readable, no pickles.

    Keys: `meta` (JSON: format, version, denoiser config, train config, step, extra), `params/<module>/<name>`
    (denoiser weights), `opt/<i>` (optimiser state leaves in tree order), `step`, `rng`.
    """
    path = Path(path)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "denoiser": net_config.to_json(),
        "train": config.to_json(),
        "step": int(state.step),
        **(extra or {}),
    }
    arrays = {"meta": np.asarray(json.dumps(meta))}
    for name, value in traverse_util.flatten_dict(state.params, sep="/").items():
        arrays[f"params/{name}"] = np.asarray(value)
    for i, leaf in enumerate(jax.tree.leaves(state.opt_state)):
        arrays[f"opt/{i:04d}"] = np.asarray(leaf)
    arrays["step"] = np.asarray(state.step, np.int64)
    arrays["rng"] = np.asarray(jax.random.key_data(state.key))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """Load a checkpoint file: (meta dict, arrays dict). Raises `PriorDataError` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise PriorDataError(f"checkpoint not found: {path}")
    arrays = _read_npz(path)
    meta = arrays.pop("meta", None)
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise PriorDataError(f"{path}: not an apu prior checkpoint (meta.format != '{CHECKPOINT_FORMAT}')")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise PriorDataError(
            f"{path}: checkpoint version {meta.get('version')}, expected {CHECKPOINT_VERSION}"
        )
    for key in ("denoiser", "train"):
        if key not in meta:
            raise PriorDataError(f"{path}: meta has no '{key}' entry")
    return meta, arrays


def _params_from_arrays(arrays: dict) -> dict:
    flat = {k[len("params/") :]: jnp.asarray(v) for k, v in arrays.items() if k.startswith("params/")}
    return traverse_util.unflatten_dict(flat, sep="/")


def load_prior(path: str | os.PathLike) -> PriorModel:
    """A trained prior for guidance and sampling (weights + schedule + architecture)."""
    meta, arrays = read_checkpoint(path)
    net_config = DenoiserConfig.from_json(meta["denoiser"])
    config = TrainConfig.from_json(meta["train"])
    params = _params_from_arrays(arrays)
    expected = jax.tree.map(jnp.shape, init_denoiser_params(net_config, jax.random.PRNGKey(0)))
    if jax.tree.map(jnp.shape, params) != expected:
        raise PriorDataError(f"{path}: parameter shapes do not match the stored denoiser config")
    return PriorModel(params=params, schedule=cosine_schedule(config.diffusion_steps), config=net_config)


def load_train_state(path: str | os.PathLike, net_config: DenoiserConfig, config: TrainConfig) -> TrainState:
    """Restore a `TrainState` (weights, Adam moments, step, RNG) to continue a run."""
    _, arrays = read_checkpoint(path)
    template = init_train_state(net_config, config)
    params = _params_from_arrays(arrays)
    if jax.tree.map(jnp.shape, params) != jax.tree.map(jnp.shape, template.params):
        raise PriorDataError(f"{path}: parameter shapes do not match this architecture")
    leaves, treedef = jax.tree.flatten(template.opt_state)
    opt_keys = sorted(k for k in arrays if k.startswith("opt/"))
    if len(opt_keys) != len(leaves):
        raise PriorDataError(f"{path}: optimiser state has {len(opt_keys)} leaves, expected {len(leaves)}")
    opt_state = jax.tree.unflatten(treedef, [jnp.asarray(arrays[k]) for k in opt_keys])
    return TrainState(
        params=params,
        opt_state=opt_state,
        step=jnp.asarray(arrays["step"], jnp.int32),
        key=jax.random.wrap_key_data(jnp.asarray(arrays["rng"], jnp.uint32), impl=PRNG_IMPL),
    )


# ----------------------------------------------------------------------------------------------- loop


def train_prior(
    data: TrainData,
    body: BodyModel,
    out: str | os.PathLike,
    net_config: DenoiserConfig,
    config: TrainConfig,
    resume: bool = True,
    on_progress: Callable[[int, float, dict[str, float]], None] | None = None,
    extra_meta: dict | None = None,
) -> dict:
    """Train (or continue training) a pair prior and keep a checkpoint at `out`.

    Args:
        data: `TrainData` from `load_training_data`.
        body: body model of the data (its num_betas must match the data).
        out: checkpoint path (.npz); if it exists and `resume`, training continues from it.
        net_config: architecture (must match the checkpoint when resuming).
        config: run config; `config.steps` is the TOTAL number of steps.
        resume: continue from `out` when present (else start fresh and overwrite).
        on_progress: called after every chunk with (step, mean loss of the chunk, mean terms).
        extra_meta: JSON-able facts stored in the checkpoint meta (e.g. the sources).
    Returns:
        Summary dict: start_step, step, first/last chunk losses, seconds, loss_history (per chunk).
    """
    num_betas = int(data.target.betas.shape[-1])
    if num_betas != body.num_betas:
        raise PriorDataError(f"data has {num_betas} betas but the body model has {body.num_betas}")
    if net_config.num_betas != num_betas:
        raise PriorDataError(f"denoiser expects {net_config.num_betas} betas, data has {num_betas}")
    out = Path(out)
    if resume and out.exists():
        meta, _ = read_checkpoint(out)
        if DenoiserConfig.from_json(meta["denoiser"]) != net_config:
            raise PriorDataError(
                f"{out}: stored architecture differs from the requested one (use a new --out)"
            )
        state = load_train_state(out, net_config, config)
    else:
        state = init_train_state(net_config, config)
    start = int(state.step)
    # Fields the step does not read are zeroed so that runs differing only in length share one compile.
    step_config = dataclasses.replace(config, steps=0, seed=0, checkpoint_every=0, steps_per_call=0)
    chunk = make_train_chunk(net_config, step_config)
    subset = make_vertex_subset(body, config.num_v2v_vertices)
    device_data = jax.tree.map(jnp.asarray, data)
    weights, probs = LossWeights.from_config(config), DropoutProbs.from_config(config)
    history: list[float] = []
    began = time.perf_counter()
    every = max(config.checkpoint_every, 1)
    meta_extra = dict(extra_meta or {})
    while int(state.step) < config.steps:
        length = min(config.steps_per_call, config.steps - int(state.step))
        state, losses, terms = chunk(state, device_data, subset, weights, probs, length)
        mean_loss = float(jnp.mean(losses))
        if not np.isfinite(mean_loss):
            raise FloatingPointError(f"training loss became {mean_loss} at step {int(state.step)}")
        history.append(mean_loss)
        step = int(state.step)
        if on_progress is not None:
            on_progress(step, mean_loss, {k: float(jnp.mean(v)) for k, v in terms.items()})
        if step // every > (step - length) // every or step >= config.steps:
            save_checkpoint(out, state, net_config, config, meta_extra)
    if int(state.step) == start:  # nothing to do (already trained to `steps`), still make sure `out` exists
        if not out.exists():
            save_checkpoint(out, state, net_config, config, meta_extra)
    return {
        "start_step": start,
        "step": int(state.step),
        "first_loss": history[0] if history else None,
        "last_loss": history[-1] if history else None,
        "seconds": time.perf_counter() - began,
        "loss_history": history,
    }
