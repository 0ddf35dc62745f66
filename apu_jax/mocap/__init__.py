"""Motion capture: BVH reading and forward kinematics, skeleton maps to SMPL-X body joints, retargeting to the
body model, and the recipe that builds the free GMM pose prior from CMU mocap."""

from apu_jax.mocap.bvh import Bvh, BvhError, forward_kinematics, parse_bvh, read_bvh
from apu_jax.mocap.retarget import RetargetConfig, RetargetResult, default_config, retarget, retarget_bvh
from apu_jax.mocap.skeletons import (
    SKELETON_MAPS,
    SMPLX_BODY_JOINTS,
    MocapTargets,
    SkeletonMap,
    detect_convention,
    mocap_targets,
)

__all__ = [
    "SKELETON_MAPS",
    "SMPLX_BODY_JOINTS",
    "Bvh",
    "BvhError",
    "MocapTargets",
    "RetargetConfig",
    "RetargetResult",
    "SkeletonMap",
    "default_config",
    "detect_convention",
    "forward_kinematics",
    "mocap_targets",
    "parse_bvh",
    "read_bvh",
    "retarget",
    "retarget_bvh",
]
