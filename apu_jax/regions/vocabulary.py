"""The APU body-part vocabulary: the parts and sides an LVLM may name."""

from __future__ import annotations

APU_PARTS: tuple[str, ...] = (
    "hand", "arm", "leg", "thigh", "chest", "stomach", "back", "neck", "face", "head", "foot", "shoulder",
    "elbow", "knee", "forearm", "upper arm", "waist",
)  # fmt: skip
# Parts on the body's midline: a side means nothing for them, every side maps to the whole part.
CENTRAL_PARTS: frozenset[str] = frozenset({"chest", "stomach", "back", "neck", "face", "head", "waist"})
PART_SIDES: tuple[str, ...] = ("left", "right", "both", "n/a")

_PART_ALIASES = {"upperarm": "upper arm", "lower arm": "forearm", "belly": "stomach", "abdomen": "stomach"}


def normalise_part(part: str) -> str:
    """Canonical vocabulary spelling ("Upper_Arm" → "upper arm"); raises ValueError for unknown parts."""
    p = " ".join(part.strip().lower().replace("_", " ").replace("-", " ").split())
    p = _PART_ALIASES.get(p, p)
    if p not in APU_PARTS:
        raise ValueError(f"unknown body part '{part}' (expected one of {', '.join(APU_PARTS)})")
    return p


def normalise_side(side: str | None) -> str:
    """Canonical side ("L" → "left", None/"" → "n/a"); raises ValueError for unknown sides."""
    s = (side or "n/a").strip().lower()
    s = {"l": "left", "r": "right", "na": "n/a", "none": "n/a", "": "n/a", "center": "n/a"}.get(s, s)
    if s not in PART_SIDES:
        raise ValueError(f"unknown side '{side}' (expected one of {', '.join(PART_SIDES)})")
    return s


def sides_of(side: str) -> tuple[str, ...]:
    """The concrete sides a (normalised) side names: "both"/"n/a" → both."""
    return ("left", "right") if side in ("both", "n/a") else (side,)
