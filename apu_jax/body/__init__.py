"""Body models: SMPL-X / SMPL-XA files and the bundled free default, all in one SMPL-X layout."""

from apu_jax.body.model import (
    JOINT_NAMES,
    NUM_OUTPUT_JOINTS,
    SMPLX_PARENTS,
    BodyModel,
    ModelFileError,
    ShapedBody,
    default_params,
    forward,
    forward_single,
    load_model,
    output_joints,
    pose_body,
    shape_body,
)
from apu_jax.body.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
)

__all__ = [
    "JOINT_NAMES",
    "NUM_OUTPUT_JOINTS",
    "SMPLX_PARENTS",
    "BodyModel",
    "ModelFileError",
    "ShapedBody",
    "axis_angle_to_matrix",
    "default_params",
    "forward",
    "forward_single",
    "load_model",
    "matrix_to_axis_angle",
    "matrix_to_rotation_6d",
    "output_joints",
    "pose_body",
    "rotation_6d_to_matrix",
    "shape_body",
]
