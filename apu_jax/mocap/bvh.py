"""BVH motion-capture files: parse HIERARCHY/MOTION and run forward kinematics to world positions.

A BVH file declares a tree of joints, each with an OFFSET (translation from its parent's pivot, expressed in
the parent's frame, in file units) and a list of CHANNELS read per frame from the MOTION block. Rotation
channels are Euler angles in degrees applied in the order declared: `CHANNELS 3 Zrotation Yrotation Xrotation`
means `R_local = Rz(z) @ Ry(y) @ Rx(x)`, so a child's offset is rotated by X first, then Y, then Z. Position
channels (usually only on the root) are added to the joint's OFFSET. A joint's world frame is
`G_j = G_parent(j) @ [R_local_j | offset_j + position_channels_j]`; its pivot is the translation of `G_j`.
"End Site" blocks are kept as extra nodes named `"<parent>/End"` (no channels, identity rotation).

This module is plain numpy: it is a reader, not part of any traced computation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

_ROTATION_AXES = {"Xrotation": 0, "Yrotation": 1, "Zrotation": 2}
_POSITION_AXES = {"Xposition": 0, "Yposition": 1, "Zposition": 2}


class BvhError(ValueError):
    """A BVH file is malformed (the message says where)."""


@dataclasses.dataclass(frozen=True)
class Bvh:
    """One parsed BVH file. Nodes are joints and end sites in file order (a parent precedes its children)."""

    names: tuple[str, ...]  # (N,) node names; end sites are "<parent>/End"
    parents: np.ndarray  # (N,) int64 parent index, -1 for the root
    offsets: np.ndarray  # (N, 3) float64 translation from the parent's pivot, parent frame, file units
    channels: tuple[tuple[str, ...], ...]  # (N,) channel names per node, in file order ("Zrotation", ...)
    channel_start: np.ndarray  # (N,) int64 column of each node's first channel in `motion`
    motion: np.ndarray  # (F, C) float64 channel values per frame: positions in file units, angles in degrees
    frame_time: float  # seconds per frame as declared by the file (may be wrong for some conversions)

    @property
    def num_frames(self) -> int:
        """F, the number of frames in the MOTION block."""
        return int(self.motion.shape[0])

    def index(self, name: str) -> int:
        """Node index of `name` (raises KeyError with the name)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"BVH has no joint named {name!r}") from None


def parse_bvh(text: str) -> Bvh:
    """Parse the text of a BVH file.

    Args:
      text: the whole file. Whitespace layout is free; keywords are case-sensitive as in the format.
    Returns:
      a `Bvh` with motion of shape (F, C).
    Raises:
      BvhError: on a malformed hierarchy or a motion block whose size does not match the channels.
    """
    tokens = text.split()
    if not tokens or tokens[0] != "HIERARCHY":
        raise BvhError("BVH must start with HIERARCHY")
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    stack: list[int] = []  # nodes whose "{" is open; the last one is the parent of the next declared node
    declared = -1  # the node declared last, waiting for its "{"
    pos = 1
    num_channels = 0

    def take(count: int) -> list[str]:
        nonlocal pos
        if pos + count > len(tokens):
            raise BvhError("unexpected end of file in HIERARCHY")
        out = tokens[pos : pos + count]
        pos += count
        return out

    def declare(name: str) -> None:
        nonlocal declared
        names.append(name)
        parents.append(stack[-1] if stack else -1)
        offsets.append([0.0, 0.0, 0.0])
        channels.append(())
        declared = len(names) - 1

    while True:
        (tok,) = take(1)
        if tok == "ROOT":
            if names:
                raise BvhError("only one ROOT per file is supported")
            declare(take(1)[0])
        elif tok == "JOINT":
            if not stack:
                raise BvhError("JOINT outside ROOT")
            declare(take(1)[0])
        elif tok == "End":
            take(1)  # "Site"
            if not stack:
                raise BvhError("End Site outside a joint")
            declare(f"{names[stack[-1]]}/End")
        elif tok == "{":
            if declared < 0:
                raise BvhError("'{' without a joint")
            stack.append(declared)
            declared = -1
        elif tok == "}":
            if not stack:
                raise BvhError("unbalanced '}'")
            stack.pop()
            if not stack:
                break
        elif tok in ("OFFSET", "CHANNELS") and not stack:
            raise BvhError(f"{tok} outside a joint")
        elif tok == "OFFSET":
            try:
                offsets[stack[-1]] = [float(v) for v in take(3)]
            except ValueError:
                raise BvhError(f"bad OFFSET on joint {names[stack[-1]]!r}") from None
        elif tok == "CHANNELS":
            try:
                count = int(take(1)[0])
            except ValueError:
                raise BvhError(f"bad CHANNELS count on joint {names[stack[-1]]!r}") from None
            names_ch = tuple(take(count))
            for ch in names_ch:
                if ch not in _ROTATION_AXES and ch not in _POSITION_AXES:
                    raise BvhError(f"unknown channel {ch!r} on joint {names[stack[-1]]!r}")
            channels[stack[-1]] = names_ch
            num_channels += len(names_ch)
        else:
            raise BvhError(f"unexpected token {tok!r} in HIERARCHY")

    if take(1) != ["MOTION"]:
        raise BvhError("expected MOTION after HIERARCHY")
    header = take(5)  # Frames: F Frame Time: dt
    if header[0] != "Frames:" or header[2:4] != ["Frame", "Time:"]:
        raise BvhError("expected 'Frames: F' and 'Frame Time: dt' after MOTION")
    num_frames = int(header[1])
    frame_time = float(header[4])
    values = np.asarray(tokens[pos:], dtype=np.float64)
    if values.size != num_frames * num_channels:
        raise BvhError(
            f"MOTION has {values.size} values, expected {num_frames} frames × {num_channels} channels"
        )
    starts = np.cumsum([0] + [len(c) for c in channels[:-1]]).astype(np.int64)
    return Bvh(
        names=tuple(names),
        parents=np.asarray(parents, dtype=np.int64),
        offsets=np.asarray(offsets, dtype=np.float64),
        channels=tuple(channels),
        channel_start=starts,
        motion=values.reshape(num_frames, num_channels),
        frame_time=frame_time,
    )


def read_bvh(path: str | Path) -> Bvh:
    """Read and parse a BVH file from disk (see `parse_bvh`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BvhError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_bvh(text)
    except BvhError as exc:
        raise BvhError(f"{path}: {exc}") from None


def euler_to_matrix(angles_deg: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Rotation matrices for intrinsic Euler angles applied in the listed order.

    Args:
      angles_deg: (..., A) angles in degrees, one per entry of `axes`.
      axes: (A,) axis per angle, 0 = X, 1 = Y, 2 = Z; `R = R_axes[0] @ R_axes[1] @ ...`.
    Returns:
      (..., 3, 3) rotation matrices.
    """
    angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    out = np.broadcast_to(np.eye(3), (*angles.shape[:-1], 3, 3)).copy()
    for i, axis in enumerate(axes):
        c, s = np.cos(angles[..., i]), np.sin(angles[..., i])
        rot = np.zeros((*angles.shape[:-1], 3, 3))
        a, b = [(1, 2), (2, 0), (0, 1)][axis]  # the plane the rotation acts in, right-handed
        rot[..., axis, axis] = 1.0
        rot[..., a, a] = c
        rot[..., b, b] = c
        rot[..., a, b] = -s
        rot[..., b, a] = s
        out = out @ rot
    return out


def local_transforms(bvh: Bvh, frames: np.ndarray | slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-node local rotation and translation for the selected frames (file units).

    Args:
      bvh: the parsed file.
      frames: frame indices or slice (default: all); `np.zeros((0,))`-style empty motion is not allowed.
    Returns:
      rotations (F, N, 3, 3) and translations (F, N, 3): offset plus any position channels.
    """
    motion = bvh.motion if frames is None else bvh.motion[frames]
    motion = np.atleast_2d(motion)
    num_frames, num_nodes = motion.shape[0], len(bvh.names)
    rotations = np.broadcast_to(np.eye(3), (num_frames, num_nodes, 3, 3)).copy()
    translations = np.broadcast_to(bvh.offsets, (num_frames, num_nodes, 3)).copy()
    for node, chans in enumerate(bvh.channels):
        if not chans:
            continue
        start = int(bvh.channel_start[node])
        rot_cols = [start + i for i, c in enumerate(chans) if c in _ROTATION_AXES]
        rot_axes = tuple(_ROTATION_AXES[c] for c in chans if c in _ROTATION_AXES)
        if rot_cols:
            rotations[:, node] = euler_to_matrix(motion[:, rot_cols], rot_axes)
        for i, c in enumerate(chans):
            if c in _POSITION_AXES:
                translations[:, node, _POSITION_AXES[c]] += motion[:, start + i]
    return rotations, translations


def forward_kinematics(
    bvh: Bvh, scale: float = 1.0, frames: np.ndarray | slice | None = None, rest: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """World pivots and orientations of every node.

    Args:
      bvh: the parsed file.
      scale: metres per file unit (e.g. 0.01 for centimetres); applied to all translations.
      frames: frame indices or slice (default: all frames).
      rest: if True, ignore the motion and pose the skeleton with all channels zero (one frame).
    Returns:
      positions (F, N, 3) in metres (given the right `scale`), world frame of the file (Y up for our data),
      and rotations (F, N, 3, 3): the frame in which each node's children's offsets are expressed.
    """
    if rest:
        zero = dataclasses.replace(bvh, motion=np.zeros((1, bvh.motion.shape[1])))
        rotations, translations = local_transforms(zero)
    else:
        rotations, translations = local_transforms(bvh, frames)
    translations = translations * scale
    world_rot = np.empty_like(rotations)
    world_pos = np.empty_like(translations)
    for node, parent in enumerate(bvh.parents):
        if parent < 0:
            world_rot[:, node] = rotations[:, node]
            world_pos[:, node] = translations[:, node]
        else:
            world_rot[:, node] = world_rot[:, parent] @ rotations[:, node]
            world_pos[:, node] = world_pos[:, parent] + np.einsum(
                "fij,fj->fi", world_rot[:, parent], translations[:, node]
            )
    return world_pos, world_rot
