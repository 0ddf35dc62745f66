"""Split a pair set by mocap frame (a temporal split), for training the pair prior on one part of a trial.

`python -m apu_jax.prior.split PAIRS --frame F --train TRAIN.npz --test TEST.npz [--json]`: pairs whose
person-0 mocap frame (`frame[:, 0]`, written by `apu synth`) is < F go to TRAIN, the others to TEST. Every
array of the pair set is kept; `meta` gains a `split` record (source, frame, part) so a result table can say
what it was made from. All cameras of a mocap frame land in the same part, so no test frame's body poses
are seen in training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from apu_jax.data.pairset import PairSet, PairSetError, load_pairset, save_pairset


def split_by_frame(pairs: PairSet, split_frame: int) -> tuple[PairSet, PairSet]:
    """Split a pair set at a mocap frame.

    Args:
        pairs: a pair set with the optional `frame` key ((P, 2) int, mocap frame per person).
        split_frame: first frame (of person 0) of the second part.

    Returns:
        (earlier, later): pairs with frame[:, 0] < split_frame, and the rest; `meta["split"]` says which.

    Raises:
        PairSetError: the pair set has no `frame` key.
    """
    if "frame" not in pairs:
        raise PairSetError("the pair set has no 'frame' key (mocap frame per person, from apu synth)")
    earlier = np.asarray(pairs["frame"])[:, 0] < split_frame
    parts = []
    for name, mask in (("train", earlier), ("test", ~earlier)):
        part = pairs.select(mask)
        part.meta["split"] = {"by": "frame", "split_frame": int(split_frame), "part": name}
        parts.append(part)
    return parts[0], parts[1]


def _describe(part: PairSet) -> dict:
    frames = np.unique(np.asarray(part["frame"])[:, 0]).tolist() if len(part) else []
    labels = sorted(set(np.asarray(part["label"]).tolist())) if "label" in part else []
    return {"pairs": len(part), "frames": frames, "labels": labels}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; user mistakes print one line and return 2."""
    parser = argparse.ArgumentParser(prog="python -m apu_jax.prior.split", description=__doc__.split("\n")[0])
    parser.add_argument("pairs", type=Path, help="pair set (.npz) with a 'frame' key (apu synth)")
    parser.add_argument("--frame", type=int, required=True, help="first mocap frame of the test part")
    parser.add_argument("--train", type=Path, required=True, help="pair set to write: earlier frames")
    parser.add_argument("--test", type=Path, required=True, help="pair set to write: frames >= --frame")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        pairs = load_pairset(args.pairs)
        train, test = split_by_frame(pairs, args.frame)
    except PairSetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if len(train) == 0 or len(test) == 0:
        counts = f"{len(train)} / {len(test)} pairs"
        print(f"error: --frame {args.frame} leaves an empty part ({counts})", file=sys.stderr)
        return 2
    source = str(args.pairs)
    for part, path in ((train, args.train), (test, args.test)):
        part.meta["split"]["source"] = source
        save_pairset(path, part.meta, **part.arrays)
    report = {"source": source, "split_frame": args.frame, "train": _describe(train), "test": _describe(test)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in ("train", "test"):
            r = report[name]
            print(f"{name}: {r['pairs']} pairs, frames {r['frames']}, labels {r['labels']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
