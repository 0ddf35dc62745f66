"""Evaluation metrics for two-person fits (NumPy; run once per evaluation, not inside the optimiser).

Definitions (all distances in metres unless a name ends in `_mm`):

- **Similarity Procrustes**: scale s, rotation R (det +1, reflections excluded) and translation t minimising
  Σ‖y − (s R x + t)‖² (Umeyama 1991).
- **Joint two-person PA-MPJPE** (BUDDI's `est_pa_mpjpe_h0h1`): both people's joints are concatenated and ONE
  similarity transform aligns the prediction to the ground truth, so relative placement, relative scale and
  relative orientation errors count. It is computed for both assignments of predicted to ground-truth people
  and the lower error is kept; that assignment is reused by the per-person metrics.
- **MPJPE** (per person): mean joint error after subtracting each body's root joint (pelvis) from itself.
- **PA-MPJPE** (per person): mean joint error after a per-person similarity Procrustes.
- **Contact**: a region pair (r on person 0, s on person 1) is *in contact* when some vertex of r and some
  vertex of s are closer than the threshold (2 cm). Over the ground-truth contact pairs G and the set C of
  region pairs in contact on the fitted meshes:
  recall = |G ∩ C| / |G|, precision = |G ∩ C| / |C|. Precision is strict: touching meshes put neighbouring
  region pairs in contact too, so it is low even for good fits; compare it between runs, not to 1.
- **Filter** precision / recall: a pair is *good* when its joint PA-MPJPE is below a threshold;
  precision = good ∩ kept / kept, recall = good ∩ kept / good.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

CONTACT_THRESHOLD_M = 0.02
GOOD_THRESHOLD_MM = 80.0


def similarity_procrustes(
    source: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Similarity transform taking `source` onto `target` in the least-squares sense.

    Args:
        source: (..., N, 3) points.
        target: (..., N, 3) corresponding points.
    Returns:
        scale (...,), rotation (..., 3, 3) with det +1, translation (..., 3) such that
        `target ≈ scale * source @ rotation.T + translation`.
    """
    x = np.asarray(source, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    mu_x, mu_y = x.mean(-2, keepdims=True), y.mean(-2, keepdims=True)
    x0, y0 = x - mu_x, y - mu_y
    cov = np.einsum("...ni,...nj->...ij", x0, y0)  # Σ x yᵀ = U S Vᵀ
    u, s, vt = np.linalg.svd(cov)
    v = np.swapaxes(vt, -1, -2)
    # Flip the last singular direction if U Vᵀ would be a reflection.
    d = np.sign(np.linalg.det(v @ np.swapaxes(u, -1, -2)))
    d = np.where(d == 0, 1.0, d)
    z = np.ones(s.shape)
    z[..., -1] = d
    rotation = (v * z[..., None, :]) @ np.swapaxes(u, -1, -2)
    var_x = np.sum(x0**2, axis=(-2, -1))
    scale = np.sum(s * z, axis=-1) / np.maximum(var_x, 1e-300)
    translation = mu_y[..., 0, :] - scale[..., None] * np.einsum(
        "...ij,...j->...i", rotation, mu_x[..., 0, :]
    )
    return scale, rotation, translation


def procrustes_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(..., N, 3) `source` after the similarity transform that best maps it onto `target`."""
    scale, rotation, translation = similarity_procrustes(source, target)
    src = np.asarray(source, dtype=np.float64)
    return scale[..., None, None] * src @ np.swapaxes(rotation, -1, -2) + translation[..., None, :]


def _mean_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1).mean(-1)


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(...,) mean joint error after similarity Procrustes; pred, gt (..., J, 3)."""
    return _mean_error(procrustes_align(pred, gt), np.asarray(gt, np.float64))


def mpjpe(pred: np.ndarray, gt: np.ndarray, root: int = 0) -> np.ndarray:
    """(...,) mean joint error after subtracting each body's root joint; pred, gt (..., J, 3)."""
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    return _mean_error(p - p[..., root : root + 1, :], g - g[..., root : root + 1, :])


def joint_pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-person PA-MPJPE: one Procrustes over both people, minimum over the two person assignments.

    Args:
        pred: (..., 2, J, 3) predicted joints of person 0 and person 1.
        gt: (..., 2, J, 3) ground-truth joints.
    Returns:
        error (...,) metres, and swapped (...,) bool: True when pred person 0 ↔ gt person 1 was better.
    """
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    flat = lambda a: a.reshape(*a.shape[:-3], -1, 3)  # noqa: E731
    same = pa_mpjpe(flat(p), flat(g))
    swap = pa_mpjpe(flat(p), flat(g[..., ::-1, :, :]))
    return np.minimum(same, swap), swap < same


def region_membership(vertex_ids: np.ndarray, mask: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """(V, R) sparse 0/1 matrix: vertex v belongs to region r (regions may overlap)."""
    vertex_ids, mask = np.asarray(vertex_ids), np.asarray(mask, bool)
    rows = vertex_ids[mask]
    cols = np.nonzero(mask)[0]
    m = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(num_vertices, vertex_ids.shape[0]))
    m.data[:] = 1.0  # duplicates (a vertex listed twice) count once
    return m


def contact_matrix(
    vertices_a: np.ndarray,
    vertices_b: np.ndarray,
    membership: sp.csr_matrix,
    threshold: float = CONTACT_THRESHOLD_M,
) -> np.ndarray:
    """(R, R) bool: region r of body a and region s of body b have vertices closer than `threshold`.

    Args:
        vertices_a, vertices_b: (V, 3) metres.
        membership: (V, R) from `region_membership` (use all region vertices, not a subsample, for exactness).
        threshold: metres (strictly closer counts).
    """
    used = np.flatnonzero(np.asarray(membership.sum(axis=1)).ravel() > 0)
    va, vb = np.asarray(vertices_a, np.float64)[used], np.asarray(vertices_b, np.float64)[used]
    close = cKDTree(va).sparse_distance_matrix(cKDTree(vb), threshold, output_type="ndarray")
    close = close[close["v"] < threshold]  # the tree's bound is inclusive; contact is strictly closer
    n = len(used)
    pairs = sp.csr_matrix((np.ones(len(close)), (close["i"], close["j"])), shape=(n, n))
    sub = membership[used]
    return np.asarray((sub.T @ pairs @ sub).todense()) > 0


def contact_counts(contacts: np.ndarray, gt_pairs: np.ndarray) -> dict[str, int]:
    """Counts for contact precision/recall of one pair.

    Args:
        contacts: (R, R) bool from `contact_matrix`.
        gt_pairs: (G, 2) int ground-truth region pairs; rows with a negative id are padding.
    Returns:
        `gt` = |G| (distinct valid pairs), `recalled` = |G ∩ C|, `predicted` = |C|.
    """
    gt = np.asarray(gt_pairs).reshape(-1, 2)
    gt = np.unique(gt[(gt >= 0).all(1)], axis=0)
    recalled = int(contacts[gt[:, 0], gt[:, 1]].sum()) if len(gt) else 0
    return {"gt": len(gt), "recalled": recalled, "predicted": int(contacts.sum())}


def filter_scores(errors_mm: np.ndarray, keep: np.ndarray, threshold_mm: float = GOOD_THRESHOLD_MM):
    """Precision and recall of an automatic filter against "good" = joint PA-MPJPE < threshold.

    Returns:
        dict with `filter_precision` (None when nothing was kept), `filter_recall` (None when no pair is
        good), `n_kept`, `n_good`.
    """
    good = np.asarray(errors_mm) < threshold_mm
    keep = np.asarray(keep, bool)
    both = int((good & keep).sum())
    return {
        "filter_precision": both / int(keep.sum()) if keep.any() else None,
        "filter_recall": both / int(good.sum()) if good.any() else None,
        "n_kept": int(keep.sum()),
        "n_good": int(good.sum()),
    }
