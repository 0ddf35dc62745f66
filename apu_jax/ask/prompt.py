"""The contact-annotation prompt (versioned).

`PROMPT_VERSION` is part of every cache key: any change to the text below, to the answer schema or to how
the image is annotated (box colours, labels, downscaling) must bump it, or old cached answers would be
reused for a different question. `tests/test_ask_prompt.py` pins the hash of the prompt text per version so
an edit without a bump fails the tests.

Design (lvlm-notes §8): a closed vocabulary (the APU paper's 17 parts), an explicit person A / person B
given by coloured boxes drawn on the image (ProsePose let the model pick who is "Person 1"), laterality
optional with an "unknown" side, JSON through a schema instead of a Markdown table, textual in-context
examples, and the interaction label as a soft hint when the data has one.
"""

from __future__ import annotations

import hashlib
import json

from apu_jax.ask.schema import ANSWER_SIDES
from apu_jax.regions.vocabulary import APU_PARTS

PROMPT_VERSION = "apu-contact-v1"

# How the image is prepared (all part of the prompt version): box colours (BGR for opencv) and their names
# in the prompt, the pixel budget (~1.15 MP, within Claude's ~1,600-token sweet spot and above what OpenAI's
# high detail keeps), the longest side, and the JPEG quality.
PERSON_STYLE = {"A": ((40, 40, 230), "red"), "B": ((230, 120, 30), "blue")}
IMAGE_MAX_PIXELS = 1_150_000
IMAGE_MAX_SIDE = 1568
JPEG_QUALITY = 90

_EXAMPLES = [
    (
        "Two adults shake hands; A's right hand grips B's right hand.",
        {
            "description": "Two adults shaking hands while standing face to face.",
            "contacts": [
                {"part_a": "hand", "side_a": "right", "part_b": "hand", "side_b": "right", "confidence": 0.95}
            ],
        },
    ),
    (
        "A hugs B from the front: both of A's arms wrap around B's back and their chests press together.",
        {
            "description": "A hugs B from the front.",
            "contacts": [
                {"part_a": "arm", "side_a": "both", "part_b": "back", "side_b": "unknown", "confidence": 0.9},
                {
                    "part_a": "chest",
                    "side_a": "unknown",
                    "part_b": "chest",
                    "side_b": "unknown",
                    "confidence": 0.8,
                },
            ],
        },
    ),
    (
        "A child (B) sits on A's lap; A's left hand rests on B's stomach. Which of A's hands it is, is hard "
        "to see.",
        {
            "description": "An adult holds a child sitting on their lap.",
            "contacts": [
                {
                    "part_a": "thigh",
                    "side_a": "both",
                    "part_b": "thigh",
                    "side_b": "both",
                    "confidence": 0.85,
                },
                {
                    "part_a": "hand",
                    "side_a": "unknown",
                    "part_b": "stomach",
                    "side_b": "unknown",
                    "confidence": 0.6,
                },
            ],
        },
    ),
    (
        "A and B stand side by side, a few centimetres apart, without touching.",
        {"description": "Two people standing next to each other without touching.", "contacts": []},
    ),
]


def _render_examples() -> str:
    lines = []
    for i, (scene, answer) in enumerate(_EXAMPLES, 1):
        lines.append(f"Example {i}. Scene: {scene}\nAnswer: {json.dumps(answer, separators=(', ', ': '))}")
    return "\n\n".join(lines)


SYSTEM_PROMPT = f"""You annotate physical contact between two people in a photograph.

Two people are marked in the image: person A inside a {PERSON_STYLE["A"][1]} box labelled "A", person B \
inside a {PERSON_STYLE["B"][1]} box labelled "B". Other people in the image do not matter. Report every \
pair of body parts where a body part of person A touches a body part of person B (skin or clothing in \
contact; not merely close, not only overlapping in the picture).

Body parts (use exactly these words): {", ".join(APU_PARTS)}.
Use the most specific part you can see ("forearm" rather than "arm" when you can tell); "arm" and "leg" are \
for when you cannot.

Sides: {", ".join(ANSWER_SIDES)}. "left" and "right" are the person's OWN left and right (anatomical), not \
the left or right of the image: a person facing the camera has their right hand on the image's left. Use \
"both" when both sides touch (e.g. both hands), and "unknown" when you cannot tell which side it is or the \
part has no side (chest, stomach, back, neck, face, head, waist).

For each contact give a confidence between 0 and 1. List only contacts you can see or clearly infer; if \
the two people do not touch, return an empty list. First write a one- or two-sentence description of the \
interaction, then the contacts. Answer with a single JSON object and nothing else, in this form:
{{"description": "...", "contacts": [{{"part_a": "...", "side_a": "...", "part_b": "...", "side_b": "...", \
"confidence": 0.0}}]}}

{_render_examples()}"""


def user_text(label: str | None) -> str:
    """The per-request text that follows the image.

    Args:
        label: the data set's interaction label for the image ("hug", "handshake", ...), or None. It is a
            low-cost soft label: a hint about the kind of interaction, never a reason to invent contacts.
    """
    text = "Which body parts of person A (red box) touch which body parts of person B (blue box)?"
    if label:
        text += (
            f' The data set labels this image as "{label.strip()}". Use it as a hint about the kind of '
            "interaction, but report only contacts you can see."
        )
    return text


def prompt_hash() -> str:
    """sha256 of everything fixed that the model reads: system prompt, user text template, image style."""
    image_style = json.dumps([PERSON_STYLE, IMAGE_MAX_PIXELS, IMAGE_MAX_SIDE, JPEG_QUALITY])
    blob = "\x00".join([SYSTEM_PROMPT, user_text(None), user_text("{label}"), image_style])
    return hashlib.sha256(blob.encode()).hexdigest()
