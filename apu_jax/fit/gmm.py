"""Gaussian-mixture pose prior in SMPLify's max-mixture form.

For a body pose θ (63-D: 21 SMPL-X body joints × axis-angle, no global orientation) the prior is

    gmm_nll(θ) = min_k [ ½ (θ − μ_k)ᵀ P_k (θ − μ_k) − log w̃_k ],
    −log w̃_k  = −log w_k + (D_c/2) log 2π + ½ log det Σ_k − ½ min_j log det Σ_j,

i.e. the negative log-density of the best single component, up to the constant ½ min_j log det Σ_j that
SMPLify's `MaxMixturePrior` (merged form) subtracts. Two sources:

- an SMPLify `gmm_08.pkl` (69-D SMPL body pose; non-commercial, never bundled): truncated to the 63
  SMPL-X body dims as BUDDI does. SMPL-X body joints 1–21 are SMPL joints 1–21 in the same order, so slicing
  drops SMPL's two hand joints. P_k is the inverse of the *sliced* 63×63 covariance (the marginal), but the
  constants keep the full 69-D determinants and D_c = 69, exactly as BUDDI, so values match it.
- our npz (`apu_jax/data/gmm_cmu_08.npz`, fitted on CMU mocap; see `apu_jax/mocap/build_gmm.py`): 63-D
  natively, constants with its own determinants and D_c = 63.

The GMM is a pytree argument of the loss (never closed over), so swapping priors does not recompile.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

POSE_DIM = 63  # SMPL-X body pose: 21 joints × axis-angle
SMPL_POSE_DIM = 69  # SMPL body pose in gmm_08.pkl: 23 joints × axis-angle
NPZ_FORMAT = "apu-gmm"
_BUNDLED = {"default": "gmm_cmu_08.npz"}


class GmmFileError(ValueError):
    """A GMM file is missing or malformed (the message names the file and key)."""


@struct.dataclass
class Gmm:
    """Max-mixture pose prior; all fields are traced arrays."""

    means: jax.Array  # (K, 63) component means, axis-angle radians
    precisions: jax.Array  # (K, 63, 63) inverse covariances, rad⁻²
    log_weights: (
        jax.Array
    )  # (K,) log w̃_k: log mixture weight minus the normalising constants (see module doc)

    @property
    def num_components(self) -> int:
        """K."""
        return int(self.means.shape[0])


def gmm_nll(gmm: Gmm, body_pose: jax.Array) -> jax.Array:
    """Max-mixture negative log-likelihood of one body pose.

    Args:
      gmm: the prior.
      body_pose: (63,) axis-angle of SMPL-X body joints 1–21, radians.
    Returns:
      () min_k [½ d_kᵀ P_k d_k − log w̃_k] with d_k = body_pose − μ_k. Its gradient is that of the minimising
      component (a sub-gradient where two components tie).
    """
    diff = body_pose[None, :] - gmm.means  # (K, 63)
    quad = jnp.einsum("kd,kde,ke->k", diff, gmm.precisions, diff)
    return jnp.min(0.5 * quad - gmm.log_weights)


def gmm_from_covariances(
    means: np.ndarray,
    covars: np.ndarray,
    weights: np.ndarray,
    dim: int = POSE_DIM,
    dtype: Any = np.float32,
) -> Gmm:
    """Build the prior from mixture parameters, truncating to the first `dim` dimensions.

    Args:
      means: (K, D) component means, D ≥ dim.
      covars: (K, D, D) full covariances.
      weights: (K,) mixture weights (need not be normalised; SMPLify does not renormalise).
      dim: pose dimensions kept (63). When D > dim, precisions invert the sliced dim×dim blocks while the
        constants keep the full D-dimensional determinants and (D/2) log 2π, matching BUDDI.
      dtype: dtype of the returned arrays.
    Returns:
      `Gmm` with means (K, dim), precisions (K, dim, dim), log_weights (K,).
    """
    means = np.asarray(means, dtype=np.float64)
    covars = np.asarray(covars, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    k, full_dim = means.shape
    if covars.shape != (k, full_dim, full_dim) or weights.shape != (k,) or full_dim < dim:
        raise GmmFileError(
            f"inconsistent GMM shapes: means {means.shape}, covars {covars.shape}, weights {weights.shape}"
            f" (need D ≥ {dim})"
        )
    sign, logdet = np.linalg.slogdet(covars)
    if np.any(sign <= 0) or np.any(weights <= 0):
        raise GmmFileError("GMM covariances must be positive definite and weights positive")
    log_w = np.log(weights) - 0.5 * full_dim * np.log(2.0 * np.pi) - 0.5 * (logdet - logdet.min())
    sliced = covars[:, :dim, :dim]
    precisions = np.linalg.inv(sliced)
    precisions = 0.5 * (precisions + np.swapaxes(precisions, 1, 2))  # exact symmetry for the quadratic form
    return Gmm(
        means=jnp.asarray(means[:, :dim], dtype=dtype),
        precisions=jnp.asarray(precisions, dtype=dtype),
        log_weights=jnp.asarray(log_w, dtype=dtype),
    )


def _bundled_path(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "data" / _BUNDLED[name]


def _read_smplify_pickle(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ModuleNotFoundError, AttributeError) as exc:
        raise GmmFileError(
            f"{path}: cannot read as an SMPLify GMM pickle ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(data, dict):
        # Old sklearn GMM objects are not supported: they need a 2014-era sklearn to unpickle.
        raise GmmFileError(
            f"{path}: expected a pickled dict with means/covars/weights, got {type(data).__name__}"
        )
    out = {}
    for key in ("means", "covars", "weights"):
        if key not in data:
            raise GmmFileError(f"{path}: missing key {key!r}")
        out[key] = np.asarray(data[key])
    return out


def read_gmm_npz(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays (means, covars, weights) and the parsed meta JSON of one of our GMM npz files."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError) as exc:
        raise GmmFileError(f"{path}: cannot read GMM npz ({exc})") from None
    for key in ("means", "covars", "weights", "meta"):
        if key not in arrays:
            raise GmmFileError(f"{path}: missing key {key!r}")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError:
        raise GmmFileError(f"{path}: meta is not JSON") from None
    if meta.get("format") != NPZ_FORMAT:
        raise GmmFileError(f"{path}: meta.format is {meta.get('format')!r}, expected {NPZ_FORMAT!r}")
    return arrays, meta


def load_gmm(path_or_name: str | Path = "default", dtype: Any = np.float32) -> Gmm:
    """Load a pose prior.

    Args:
      path_or_name: "default" (the bundled CMU-fitted GMM), a path to our `.npz`, or a path to an SMPLify
        `gmm_08.pkl` (69-D, truncated to 63 dims with BUDDI's constants).
      dtype: dtype of the arrays.
    Raises:
      GmmFileError: missing file or malformed content.
    """
    name = str(path_or_name)
    path = _bundled_path(name) if name in _BUNDLED else Path(name)
    if not path.is_file():
        raise GmmFileError(f"GMM file not found: {path}")
    if path.suffix == ".npz":
        arrays, _ = read_gmm_npz(path)
    else:
        arrays = _read_smplify_pickle(path)
    return gmm_from_covariances(arrays["means"], arrays["covars"], arrays["weights"], dtype=dtype)


def save_gmm_npz(
    path: str | Path, means: np.ndarray, covars: np.ndarray, weights: np.ndarray, meta: dict[str, Any]
) -> None:
    """Write our GMM file: means (K, 63), covars (K, 63, 63), weights (K,) float32 and a meta JSON string."""
    meta = {"format": NPZ_FORMAT, "version": 1, **meta}
    np.savez_compressed(
        path,
        means=np.asarray(means, np.float32),
        covars=np.asarray(covars, np.float32),
        weights=np.asarray(weights, np.float32),
        meta=np.asarray(json.dumps(meta)),
    )


def mixture_log_likelihood(
    means: np.ndarray, covars: np.ndarray, weights: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """Exact mixture log-density log Σ_k w_k N(x; μ_k, Σ_k) in numpy (float64), for reporting.

    Args:
      means (K, D), covars (K, D, D), weights (K,) summing to 1; x (N, D).
    Returns:
      (N,) log-likelihood in nats.
    """
    means, covars = np.asarray(means, np.float64), np.asarray(covars, np.float64)
    x = np.asarray(x, np.float64)
    chol = np.linalg.cholesky(covars)  # (K, D, D)
    diff = x[None] - means[:, None]  # (K, N, D)
    sol = np.linalg.solve(chol, np.swapaxes(diff, 1, 2))  # (K, D, N): L⁻¹ d
    maha = np.sum(sol**2, axis=1)  # (K, N)
    logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    dim = means.shape[1]
    comp = np.log(np.asarray(weights, np.float64))[:, None] - 0.5 * (
        maha + logdet[:, None] + dim * np.log(2 * np.pi)
    )
    top = comp.max(axis=0)
    return top + np.log(np.exp(comp - top).sum(axis=0))


def fit_gmm(
    poses: np.ndarray, num_components: int = 8, seed: int = 0, reg_covar: float = 1e-4, max_iter: int = 500
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a full-covariance Gaussian mixture by EM (scikit-learn, a build-time dependency only).

    Args:
      poses: (N, 63) training poses, radians.
      num_components: K.
      seed: k-means initialisation seed.
      reg_covar: added to covariance diagonals (rad²), keeps rarely-exercised dims well conditioned.
      max_iter: EM iteration cap.
    Returns:
      means (K, 63), covars (K, 63, 63), weights (K,), components sorted by decreasing weight.
    """
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError as exc:  # pragma: no cover - exercised only without the build extra
        raise ImportError("fit_gmm needs scikit-learn (pip install 'apu-jax[build]')") from exc
    model = GaussianMixture(
        n_components=num_components,
        covariance_type="full",
        reg_covar=reg_covar,
        max_iter=max_iter,
        n_init=1,
        random_state=seed,
    )
    model.fit(np.asarray(poses, np.float64))
    order = np.argsort(-model.weights_)
    return model.means_[order], model.covariances_[order], model.weights_[order]


def gmm_nll_batch(gmm: Gmm, body_pose: jax.Array) -> jax.Array:
    """`gmm_nll` over a leading batch: (..., 63) → (...). The outer-API convenience (jit-compiled)."""
    flat = body_pose.reshape(-1, body_pose.shape[-1])
    return _gmm_nll_vmapped(gmm, flat).reshape(body_pose.shape[:-1])


_gmm_nll_vmapped = jax.jit(jax.vmap(gmm_nll, in_axes=(None, 0)))
