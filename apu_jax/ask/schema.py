"""The structured answer an LVLM must give, its JSON schema, and client-side validation.

Every provider's answer goes through `parse_answer`, whatever the server promised about constrained
decoding (vLLM < 0.12 silently ignores schemas; Ollama Cloud does not enforce them): an answer is either a
valid `ContactAnswer` or an `AnswerError` that the caller records as a failed answer. Nothing here raises
anything else on bad model output.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from apu_jax.regions.vocabulary import APU_PARTS

# Sides as the model may give them: the subject's own left/right, both, or unknown (it could not tell).
ANSWER_SIDES: tuple[str, ...] = ("left", "right", "both", "unknown")
MAX_CONTACTS = 32  # an answer listing more is nonsense (17 parts × 17 parts with sides is the ceiling)
MAX_DESCRIPTION_CHARS = 500

Part = Literal[APU_PARTS]  # type: ignore[valid-type]
Side = Literal[ANSWER_SIDES]  # type: ignore[valid-type]


class AnswerError(ValueError):
    """The model's answer is unusable (malformed JSON, schema violation, unknown part, refusal, ...)."""


def _canonical_part(value: Any) -> Any:
    # Tolerate spelling only ("Upper_Arm" → "upper arm"); a part outside the vocabulary still fails.
    if isinstance(value, str):
        return " ".join(value.strip().lower().replace("_", " ").replace("-", " ").split())
    return value


class Contact(BaseModel):
    """One touching pair of body parts: a part of person A touches a part of person B."""

    model_config = ConfigDict(extra="forbid")

    part_a: Part  # type: ignore[valid-type]
    side_a: Side  # type: ignore[valid-type]
    part_b: Part  # type: ignore[valid-type]
    side_b: Side  # type: ignore[valid-type]
    confidence: float = Field(ge=0.0, le=1.0)

    @field_validator("part_a", "part_b", "side_a", "side_b", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> Any:
        return _canonical_part(value)


class ContactAnswer(BaseModel):
    """The whole answer: a short description of the interaction, then the contacts (possibly none)."""

    model_config = ConfigDict(extra="forbid")

    description: str
    contacts: list[Contact] = Field(max_length=MAX_CONTACTS)

    @field_validator("description", mode="after")
    @classmethod
    def _short(cls, value: str) -> str:
        return value.strip()[:MAX_DESCRIPTION_CHARS]


def _contact_schema() -> dict[str, Any]:
    enum_part = {"type": "string", "enum": list(APU_PARTS)}
    enum_side = {"type": "string", "enum": list(ANSWER_SIDES)}
    return {
        "type": "object",
        "properties": {
            "part_a": enum_part,
            "side_a": enum_side,
            "part_b": enum_part,
            "side_b": enum_side,
            "confidence": {"type": "number", "description": "0 to 1: how sure you are this contact is real"},
        },
        "required": ["part_a", "side_a", "part_b", "side_b", "confidence"],
        "additionalProperties": False,
    }


def answer_json_schema() -> dict[str, Any]:
    """The wire schema sent to providers (strict-mode compatible: every property required, no extras).

    Hand-written and flat (no `$ref`) because the providers' strict modes each support a different subset of
    JSON Schema; numeric bounds are left to client-side validation for the same reason. `description` comes
    first so that the model describes the scene before it lists contacts (decoding follows property order).
    """
    return {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": "one or two sentences on the interaction"},
            "contacts": {"type": "array", "items": _contact_schema()},
        },
        "required": ["description", "contacts"],
        "additionalProperties": False,
    }


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_answer(payload: str | dict[str, Any] | None) -> ContactAnswer:
    """Validate a model's answer.

    Args:
        payload: the JSON text of the answer (a Markdown code fence around it is tolerated), or an already
            decoded dict (forced tool use returns one).
    Returns:
        The validated `ContactAnswer`.
    Raises:
        AnswerError: with a one-line reason, for any malformed, incomplete or out-of-vocabulary answer.
    """
    if payload is None:
        raise AnswerError("empty answer")
    if isinstance(payload, str):
        text = payload.strip()
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as err:
            raise AnswerError(f"malformed JSON: {err.msg} at char {err.pos}") from None
    if not isinstance(payload, dict):
        raise AnswerError(f"expected a JSON object, got {type(payload).__name__}")
    try:
        return ContactAnswer.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AnswerError(
            f"schema violation at '{where}': {first['msg']} ({err.error_count()} error(s))"
        ) from None
