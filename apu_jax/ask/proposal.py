"""Candidate proposal: which pairs of people in an image are worth asking about (paper §3.1).

"We propose as candidates all pairs of people with k valid keypoints within a distance d of each other and
with mesh predictions aligned with the keypoints." The paper gives no values; ours, with their reasons:

- distances are normalised by the pair scale (mean of the two people's keypoint-box sizes, so ~1 = one
  body height for standing people);
- a keypoint "is close" when it lies within `max_dist` of any present keypoint of the other person;
  `min_close` counts such keypoints over both people. A handshake brings the two wrists within ~0.1 (the
  hands are between them): 2 close keypoints, so `min_close=2`, `max_dist=0.15` by default;
- a person's initial mesh is aligned when the mean distance between its projected joints and the detected
  keypoints (normalised by that person's size) is at most `max_misalignment` (default 0.15, i.e. 15 % of
  the body size; BEV on a clean image is typically well under 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apu_jax.ask.parts import pair_scale, person_scale


@dataclass(frozen=True)
class ProposalConfig:
    """Thresholds of the candidate rule (see the module docstring for the defaults' reasons)."""

    min_close: int = 2  # keypoints (over both people) within max_dist of the other person
    max_dist: float = 0.15  # normalised by the pair scale
    max_misalignment: float = 0.15  # mean joint error of the initial mesh, normalised by person size
    min_conf: float = 0.3  # keypoint presence threshold


@dataclass(frozen=True)
class Candidate:
    """The decision for one pair of people (person indices within the image)."""

    a: int
    b: int
    close_keypoints: int  # keypoints within max_dist of the other person, over both people
    misalignment: tuple[float, float]  # per person; inf = no initial mesh / too few joints to compare
    accepted: bool
    reason: str  # "" when accepted, else why not


def count_close_keypoints(kp_a: np.ndarray, kp_b: np.ndarray, max_dist: float, min_conf: float = 0.3) -> int:
    """Keypoints of either person within `max_dist` (normalised) of some keypoint of the other.

    Args:
        kp_a, kp_b: (25, 3) keypoints `x, y, confidence`, pixels.
        max_dist: threshold in units of the pair scale.
        min_conf: presence threshold.
    Returns:
        The count over both people (0 when either has fewer than two present keypoints).
    """
    scale = pair_scale(kp_a, kp_b, min_conf)
    pa = kp_a[kp_a[:, 2] > min_conf, :2]
    pb = kp_b[kp_b[:, 2] > min_conf, :2]
    if scale <= 0 or len(pa) == 0 or len(pb) == 0:
        return 0
    d = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=-1) / scale
    close = d <= max_dist
    return int(close.any(axis=1).sum() + close.any(axis=0).sum())


def misalignment(keypoints: np.ndarray, projected: np.ndarray | None, min_conf: float = 0.3) -> float:
    """Mean distance between detected keypoints and an initial mesh's projected joints, per person size.

    Args:
        keypoints: (25, 3) detected keypoints, pixels.
        projected: (25, 3) projected initial joints (confidence 0 where the mesh has no such joint), or None.
        min_conf: presence threshold for the detected keypoints.
    Returns:
        The normalised mean error; inf without a mesh or with fewer than 3 joints present in both.
    """
    if projected is None:
        return float("inf")
    both = (keypoints[:, 2] > min_conf) & (projected[:, 2] > 0)
    scale = person_scale(keypoints, min_conf)
    if both.sum() < 3 or scale <= 0:
        return float("inf")
    err = np.linalg.norm(keypoints[both, :2] - projected[both, :2], axis=-1)
    return float(err.mean() / scale)


def propose_pairs(
    keypoints: np.ndarray, projected: list[np.ndarray | None], config: ProposalConfig = ProposalConfig()
) -> list[Candidate]:
    """Apply the candidate rule to every pair of people in one image.

    Args:
        keypoints: (N, 25, 3) detected BODY-25 keypoints of the N people, pixels.
        projected: N entries, each (25, 3) projected joints of that person's initial mesh, or None.
        config: thresholds.
    Returns:
        One `Candidate` per unordered pair (a < b), accepted or not, in (a, b) order.
    """
    mis = [misalignment(keypoints[i], projected[i], config.min_conf) for i in range(len(keypoints))]
    out = []
    for a in range(len(keypoints)):
        for b in range(a + 1, len(keypoints)):
            n = count_close_keypoints(keypoints[a], keypoints[b], config.max_dist, config.min_conf)
            reasons = []
            if n < config.min_close:
                reasons.append(f"{n} close keypoints < {config.min_close}")
            for who, m in ((a, mis[a]), (b, mis[b])):
                if not np.isfinite(m):
                    reasons.append(f"person {who} has no initial mesh to compare")
                elif m > config.max_misalignment:
                    reasons.append(f"person {who} mesh misaligned ({m:.3f} > {config.max_misalignment})")
            out.append(Candidate(a, b, n, (mis[a], mis[b]), not reasons, "; ".join(reasons)))
    return out
