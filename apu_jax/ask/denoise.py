"""Laterality denoising, sample voting and the soft contact map (paper §3.1, "Contact map denoising").

LVLMs confuse the image's left/right with the body's. For each predicted contact (B_i,side, B_j,side') we
compare only the side assignments consistent with the answer and keep the one whose 2D keypoints are
closest (normalised distance, `parts.part_distance`):

- both parts sided, both sides given as left/right: the *relation* is kept — same-side stays same-side
  ((L,L) or (R,R)), opposite stays opposite ((L,R) or (R,L)); the paper's rule;
- a side given as "both" stays "both" (both hands on a back is not a laterality claim);
- a side given as "unknown", or a sided part touching a central part (no relation to keep): every side is
  a candidate, the closest wins — the same principle where the answer constrains nothing;
- central parts (chest, stomach, back, neck, face, head, waist) have no side ("n/a").

Ties keep the answer's own sides. When keypoints are missing for every candidate, the answer's sides are
kept ("unknown" → "both") and the keypoint evidence is `missing_evidence`.

Weights: W = keypoint evidence × model confidence, where the evidence of a contact at normalised distance
d is exp(−½ (d/σ)²) (σ = `evidence_sigma`, default 0.2: a contact whose parts are 0.2 body sizes apart in
the image keeps 61 % of its weight, 0.4 apart 14 %). The paper scales the LVLM confidence by "the
normalized keypoint distance"; a decreasing function of the distance is the form that makes that a weight.

Voting: each sample's contacts are resolved first (so (L,R) in one sample and (R,L) in another agree after
denoising), then the confidence of a contact is its summed confidence over the answered samples divided by
their number (a sample that does not mention it votes 0).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from apu_jax.ask.parts import pair_scale, part_distance
from apu_jax.ask.schema import Contact
from apu_jax.regions.vocabulary import CENTRAL_PARTS


@dataclass(frozen=True)
class DenoiseConfig:
    """Parameters of denoising and voting."""

    evidence_sigma: float = 0.2  # normalised distance at which the evidence falls to exp(-1/2)
    missing_evidence: float = 0.5  # evidence when no keypoints locate the parts
    min_weight: float = 0.05  # voted contacts below this weight are dropped
    min_conf: float = 0.3  # keypoint presence threshold


@dataclass(frozen=True)
class ResolvedContact:
    """A contact after laterality denoising. Sides are left / right / both / n/a (central parts)."""

    part_a: str
    side_a: str
    part_b: str
    side_b: str
    confidence: float  # the model's confidence (one sample) or the vote (after `vote`)
    distance: float  # normalised 2D keypoint distance of the chosen sides; inf = keypoints missing
    evidence: float  # keypoint evidence in [0, 1]
    corrected: bool = False  # the sides differ from the answer's (left/right swapped or chosen)
    votes: int = 1  # samples that reported it

    @property
    def weight(self) -> float:
        """W_ij = keypoint evidence × confidence, in [0, 1]."""
        return self.evidence * self.confidence

    def key(self) -> tuple[str, str, str, str]:
        """Identity of the contact for voting."""
        return self.part_a, self.side_a, self.part_b, self.side_b


def _side_options(part: str, side: str) -> list[str]:
    if part in CENTRAL_PARTS:
        return ["n/a"]
    if side == "both":
        return ["both"]
    if side in ("left", "right"):  # the answer's side first, so that ties keep it
        return [side, "right" if side == "left" else "left"]
    return ["left", "right"]


def resolve_laterality(
    contact: Contact, kp_a: np.ndarray, kp_b: np.ndarray, config: DenoiseConfig = DenoiseConfig()
) -> ResolvedContact:
    """Choose the sides of one answered contact from the 2D keypoints.

    Args:
        contact: the model's contact (person A = first of the pair, person B = second).
        kp_a, kp_b: (25, 3) BODY-25 keypoints of A and B, pixels.
        config: evidence parameters.
    Returns:
        The `ResolvedContact` with the closest consistent sides and its evidence.
    """
    opts_a = _side_options(contact.part_a, contact.side_a)
    opts_b = _side_options(contact.part_b, contact.side_b)
    combos = list(itertools.product(opts_a, opts_b))
    if contact.side_a in ("left", "right") and contact.side_b in ("left", "right") and len(combos) == 4:
        same = contact.side_a == contact.side_b
        combos = [(sa, sb) for sa, sb in combos if (sa == sb) == same]
    scale = pair_scale(kp_a, kp_b, config.min_conf)
    dists = [
        part_distance(kp_a, contact.part_a, sa, kp_b, contact.part_b, sb, scale, config.min_conf)
        for sa, sb in combos
    ]
    best = int(np.argmin(dists))
    d = dists[best]
    if math.isinf(d):
        sa, sb = (_stated_side(contact.part_a, contact.side_a), _stated_side(contact.part_b, contact.side_b))
        evidence = config.missing_evidence
    else:
        sa, sb = combos[best]
        evidence = math.exp(-0.5 * (d / config.evidence_sigma) ** 2)
    corrected = (sa, sb) != (
        _stated_side(contact.part_a, contact.side_a),
        _stated_side(contact.part_b, contact.side_b),
    )
    return ResolvedContact(
        contact.part_a, sa, contact.part_b, sb, float(contact.confidence), d, evidence, corrected=corrected
    )


def _stated_side(part: str, side: str) -> str:
    if part in CENTRAL_PARTS:
        return "n/a"
    return "both" if side == "unknown" else side


def vote(
    samples: Sequence[Iterable[ResolvedContact]], config: DenoiseConfig = DenoiseConfig()
) -> list[ResolvedContact]:
    """Merge the resolved contacts of several answered samples of one pair.

    Args:
        samples: one iterable of resolved contacts per *answered* sample (failed samples excluded).
        config: `min_weight` drops weak contacts.
    Returns:
        Voted contacts, heaviest first: confidence = summed confidence / number of samples; evidence, distance
        as resolved; `votes` = samples that reported the contact.
    """
    if not samples:
        return []
    total: dict[tuple[str, str, str, str], float] = {}
    count: dict[tuple[str, str, str, str], int] = {}
    first: dict[tuple[str, str, str, str], ResolvedContact] = {}
    for sample in samples:
        best: dict[tuple[str, str, str, str], ResolvedContact] = {}
        for c in sample:  # a sample that repeats a contact counts once, at its highest confidence
            if c.key() not in best or c.confidence > best[c.key()].confidence:
                best[c.key()] = c
        for k, c in best.items():
            total[k] = total.get(k, 0.0) + c.confidence
            count[k] = count.get(k, 0) + 1
            first.setdefault(k, c)
    out = []
    for k, c in first.items():
        voted = ResolvedContact(
            *k,
            confidence=total[k] / len(samples),
            distance=c.distance,
            evidence=c.evidence,
            corrected=c.corrected,
            votes=count[k],
        )
        if voted.weight >= config.min_weight:
            out.append(voted)
    out.sort(key=lambda c: (-c.weight, c.key()))
    return out


def soft_contact_map(
    contacts: Iterable[ResolvedContact],
    part_regions: Callable[[str, str], Sequence[int]],
    return_groups: bool = False,
) -> tuple[np.ndarray, ...]:
    """Expand part-level contacts to the sparse region-level soft contact map the fit consumes.

    Every region of part i (person A) is paired with every region of part j (person B), as the paper's
    C ∈ {0,1}^{R×R} does, each with the contact's weight W_ij; a region pair reached by several contacts
    keeps the largest weight (and belongs to that contact's group).

    Args:
        contacts: voted contacts (sides left / right / both / n/a).
        part_regions: `(part, side) -> region ids`, e.g. `apu_jax.regions.vocabulary_to_regions` bound to a
            region set.
        return_groups: also return the part-level contact (group) of every region pair (docs/FORMATS.md
            `contact_groups`): the fit closes each part-level contact at its closest region pair.
    Returns:
        `pairs` (C, 2) int32 `[region on A, region on B]` sorted, `weights` (C,) float32 in [0, 1], and with
        `return_groups` `groups` (C,) int32 in [0, C), numbered densely in order of first appearance.
    """
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for index, c in enumerate(contacts):
        for ra in part_regions(c.part_a, c.side_a):
            for rb in part_regions(c.part_b, c.side_b):
                key = (int(ra), int(rb))
                if key not in best or c.weight > best[key][0]:
                    best[key] = (c.weight, index)
    keys = sorted(best)
    pairs = np.asarray(keys, dtype=np.int32).reshape(-1, 2)
    weights = np.asarray([best[k][0] for k in keys], dtype=np.float32)
    if not return_groups:
        return pairs, weights
    dense: dict[int, int] = {}
    groups = np.asarray([dense.setdefault(best[k][1], len(dense)) for k in keys], dtype=np.int32)
    return pairs, weights, groups
