"""Evaluation of two-person fits: joint PA-MPJPE, MPJPE, contact precision/recall, filter precision."""

from apu_jax.eval.evaluate import EVAL_JOINTS, EvalInputError, evaluate
from apu_jax.eval.metrics import (
    CONTACT_THRESHOLD_M,
    GOOD_THRESHOLD_MM,
    contact_counts,
    contact_matrix,
    filter_scores,
    joint_pa_mpjpe,
    mpjpe,
    pa_mpjpe,
    procrustes_align,
    region_membership,
    similarity_procrustes,
)

__all__ = [
    "CONTACT_THRESHOLD_M",
    "EVAL_JOINTS",
    "GOOD_THRESHOLD_MM",
    "EvalInputError",
    "contact_counts",
    "contact_matrix",
    "evaluate",
    "filter_scores",
    "joint_pa_mpjpe",
    "mpjpe",
    "pa_mpjpe",
    "procrustes_align",
    "region_membership",
    "similarity_procrustes",
]
