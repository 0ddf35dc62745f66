"""GMM pose prior: hand-computable values and gradients, SMPLify-pickle parity, file round trips."""

from __future__ import annotations

import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from apu_jax.fit.gmm import (
    Gmm,
    GmmFileError,
    gmm_from_covariances,
    gmm_nll,
    gmm_nll_batch,
    load_gmm,
    mixture_log_likelihood,
    read_gmm_npz,
    save_gmm_npz,
)

D = 63
LOG_2PI = np.log(2 * np.pi)


def _identity_gmm(means: np.ndarray, weights: np.ndarray, variances: np.ndarray) -> Gmm:
    covars = np.stack([v * np.eye(D) for v in variances])
    return gmm_from_covariances(means, covars, weights)


def test_single_identity_component_value_and_gradient():
    gmm = _identity_gmm(np.zeros((1, D)), np.array([1.0]), np.array([1.0]))
    pose = jnp.linspace(-0.5, 0.5, D)
    # ½|θ|² + (63/2) log 2π: log w = 0, log det = 0.
    expected = 0.5 * float(jnp.sum(pose**2)) + 0.5 * D * LOG_2PI
    np.testing.assert_allclose(float(gmm_nll(gmm, pose)), expected, rtol=1e-6)
    grad = jax.grad(gmm_nll, argnums=1)(gmm, pose)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(pose), atol=1e-6)


def test_two_components_min_switches_with_weights_and_determinants():
    a = 2.0
    means = np.zeros((2, D))
    means[0, 0], means[1, 0] = a, -a
    weights = np.array([0.7, 0.3])
    variances = np.array([1.0, 0.9])  # component 1 is narrower: log det = 63 log 0.9
    gmm = _identity_gmm(means, weights, variances)
    logdet = D * np.log(variances)
    const = -np.log(weights) + 0.5 * D * LOG_2PI + 0.5 * (logdet - logdet.min())

    def expected(x: np.ndarray) -> tuple[float, np.ndarray]:
        terms = [0.5 * np.sum((x - means[k]) ** 2) / variances[k] + const[k] for k in range(2)]
        k = int(np.argmin(terms))
        return terms[k], (x - means[k]) / variances[k]

    for x0 in (2.0, 1.0, -0.5, -1.8):  # spans both sides of the switch
        x = np.zeros(D)
        x[0], x[5] = x0, 0.1
        value, grad = expected(x)
        np.testing.assert_allclose(float(gmm_nll(gmm, jnp.asarray(x, jnp.float32))), value, rtol=1e-5)
        g = jax.grad(gmm_nll, argnums=1)(gmm, jnp.asarray(x, jnp.float32))
        np.testing.assert_allclose(np.asarray(g), grad, atol=1e-5)
    # The switch really happens inside the tested range.
    picks = [
        int(np.argmin([0.5 * (x0 - means[k, 0]) ** 2 / variances[k] + const[k] for k in range(2)]))
        for x0 in (2.0, -1.8)
    ]
    assert picks == [0, 1]


def _random_spd(rng: np.random.Generator, k: int, dim: int) -> np.ndarray:
    out = []
    for _ in range(k):
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        eig = rng.uniform(0.05, 0.6, size=dim)
        out.append((q * eig) @ q.T)
    return np.stack(out)


def _write_smplify_pickle(path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    data = {
        "means": rng.normal(scale=0.2, size=(8, 69)),
        "covars": _random_spd(rng, 8, 69),
        "weights": rng.dirichlet(np.ones(8)),
    }
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    return data


def _smplify_reference(data: dict[str, np.ndarray], pose63: np.ndarray) -> float:
    """BUDDI/SMPLify merged prior on a 63-D pose, written directly from the published recipe."""
    sqrdets = np.array([np.sqrt(np.linalg.det(c)) for c in data["covars"]])
    nll_weights = data["weights"] / ((2 * np.pi) ** (69 / 2.0) * (sqrdets / sqrdets.min()))
    precisions = np.linalg.inv(data["covars"][:, :63, :63])
    diff = pose63[None] - data["means"][:, :63]
    quad = np.einsum("kd,kde,ke->k", diff, precisions, diff)
    return float(np.min(0.5 * quad - np.log(nll_weights)))


def test_smplify_pickle_parity(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "fake_gmm_08.pkl"
    data = _write_smplify_pickle(path, rng)
    gmm = load_gmm(path)
    assert gmm.means.shape == (8, 63) and gmm.precisions.shape == (8, 63, 63)
    assert gmm.log_weights.shape == (8,)
    for scale in (0.0, 0.2, 0.5):
        pose = rng.normal(scale=scale, size=63) + data["means"][int(rng.integers(8)), :63] * (scale > 0)
        ref = _smplify_reference(data, pose)
        got = float(gmm_nll(gmm, jnp.asarray(pose, jnp.float32)))
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-3)


def test_jit_vmap_and_finite_gradients(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "g.pkl"
    _write_smplify_pickle(path, rng)
    gmm = load_gmm(path)
    poses = jnp.asarray(rng.normal(scale=0.3, size=(5, 63)), jnp.float32)
    loop = np.array([float(gmm_nll(gmm, p)) for p in poses])
    np.testing.assert_allclose(np.asarray(jax.jit(gmm_nll)(gmm, poses[0])), loop[0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.vmap(gmm_nll, in_axes=(None, 0))(gmm, poses)), loop, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gmm_nll_batch(gmm, poses.reshape(5, 1, 63))[:, 0]), loop, rtol=1e-6)
    for pose in (jnp.zeros(63), gmm.means[0], poses[1]):
        g = jax.grad(gmm_nll, argnums=1)(gmm, pose)
        assert bool(jnp.all(jnp.isfinite(g)))
    # At a component's mean its quadratic term has zero gradient; the min picks it when it dominates.
    single = Gmm(means=gmm.means[:1], precisions=gmm.precisions[:1], log_weights=gmm.log_weights[:1])
    grad = jax.grad(gmm_nll, argnums=1)(single, single.means[0])
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-6)


def test_npz_round_trip_uses_63d_constants(tmp_path):
    rng = np.random.default_rng(1)
    means = rng.normal(scale=0.1, size=(3, 63))
    covars = _random_spd(rng, 3, 63)
    weights = np.array([0.5, 0.3, 0.2])
    path = tmp_path / "ours.npz"
    save_gmm_npz(path, means, covars, weights, {"note": "test"})
    arrays, meta = read_gmm_npz(path)
    assert meta["format"] == "apu-gmm" and meta["note"] == "test"
    gmm = load_gmm(path)
    covars32 = arrays["covars"].astype(np.float64)
    _, logdet = np.linalg.slogdet(covars32)
    expected = np.log(weights) - 31.5 * LOG_2PI - 0.5 * (logdet - logdet.min())
    np.testing.assert_allclose(np.asarray(gmm.log_weights), expected, rtol=1e-5)
    inv = np.linalg.inv(covars32[1])
    np.testing.assert_allclose(np.asarray(gmm.precisions[1]), inv, rtol=2e-3, atol=1e-3)


def test_mixture_log_likelihood_matches_scipy():
    rng = np.random.default_rng(2)
    means = rng.normal(size=(3, 5))
    covars = _random_spd(rng, 3, 5)
    weights = np.array([0.2, 0.5, 0.3])
    x = rng.normal(size=(7, 5))
    parts = zip(means, covars, weights, strict=True)
    comp = np.stack([np.log(w) + multivariate_normal(m, c).logpdf(x) for m, c, w in parts])
    np.testing.assert_allclose(mixture_log_likelihood(means, covars, weights, x), logsumexp(comp, axis=0))


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(GmmFileError, match="not found"):
        load_gmm(tmp_path / "missing.pkl")
    bad = tmp_path / "list.pkl"
    bad.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(GmmFileError, match="pickled dict"):
        load_gmm(bad)
    nokey = tmp_path / "nokey.pkl"
    nokey.write_bytes(pickle.dumps({"means": np.zeros((1, 69))}))
    with pytest.raises(GmmFileError, match="covars"):
        load_gmm(nokey)
    npz = tmp_path / "x.npz"
    np.savez(npz, means=np.zeros((1, 63)), meta=np.asarray(json.dumps({"format": "apu-gmm"})))
    with pytest.raises(GmmFileError, match="covars"):
        load_gmm(npz)


def test_bundled_default_gmm():
    from apu_jax.fit.gmm import _bundled_path

    arrays, meta = read_gmm_npz(_bundled_path("default"))
    assert arrays["means"].shape == (8, 63) and arrays["covars"].shape == (8, 63, 63)
    np.testing.assert_allclose(arrays["weights"].sum(), 1.0, rtol=1e-5)
    assert np.all(np.linalg.eigvalsh(arrays["covars"].astype(np.float64)) > 0)
    assert "mocap.cs.cmu.edu" in meta["acknowledgement"] and "NSF EIA-0196217" in meta["acknowledgement"]
    assert meta["num_train_frames"] > 1000 and meta["heldout_trials"]
    assert not set(meta["heldout_trials"]) & set(meta["train_trials"])
    gmm = load_gmm("default")
    # A neutral pose is far more likely under the prior than a wildly bent one.
    assert float(gmm_nll(gmm, jnp.zeros(63))) < float(gmm_nll(gmm, jnp.full((63,), 1.5)))
