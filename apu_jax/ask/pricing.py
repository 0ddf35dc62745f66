"""Prices and token estimates, for `--dry-run` and for the cost of each answer.

Prices are USD per million tokens (input, output) as listed in the providers' public pages when these notes
were gathered (docs/ASK.md gives the sources); they change, so `--price-in/--price-out` override them and
an unknown model (a local vLLM/Ollama server) is priced at 0 with `price_known = False`. Message Batches
cost 50 %; Anthropic prompt-cache writes cost 1.25× input and reads 0.1×.

Token estimates (before anything is sent):
- Claude image: W·H/750 (Anthropic's vision docs; ~1,530 tokens at our 1.15 MP budget);
- OpenAI image ("high" detail): fit in 2048², shortest side to 768, then 85 + 170 per 512-px tile;
  gpt-4.1-mini/nano bill ⌈W/32⌉·⌈H/32⌉ patches (≤ 1536) × 1.62 / 2.46;
- text: characters / 4;
- output: `TYPICAL_OUTPUT_TOKENS` for the estimate and `max_tokens` for the upper bound (thinking models
  may spend more than the typical figure, never more than `max_tokens`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TYPICAL_OUTPUT_TOKENS = 250  # a description and a few contacts as JSON

# (input, output) USD per 1M tokens. Matched by longest prefix, so dated ids ("...-20250929") resolve.
PRICES: dict[str, tuple[float, float]] = {
    "claude-fable-5-2": (8.0, 40.0),
    "claude-fable-5-1": (10.0, 50.0),
    "claude-opus-5-5": (4.0, 20.0),
    "claude-opus-5": (5.0, 25.0),
    "claude-sonnet-5-5": (2.0, 10.0),
    "claude-sonnet-5": (2.0, 10.0),
    "claude-haiku-5-5": (0.10, 0.50),
    "claude-opus-4": (5.0, 25.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "gpt-5.5": (5.0, 30.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.0),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}
BATCH_DISCOUNT = 0.5
CACHE_WRITE_MULT = 1.25
CACHE_READ_MULT = 0.1


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens."""

    input: float
    output: float
    known: bool  # False: the model is not in the table (priced 0 unless overridden)


def lookup_price(model: str, price_in: float | None = None, price_out: float | None = None) -> Price:
    """Price of a model: explicit overrides, else the longest matching prefix in `PRICES`, else 0."""
    match = max((k for k in PRICES if model.startswith(k)), key=len, default=None)
    base = PRICES.get(match, (0.0, 0.0)) if match else (0.0, 0.0)
    known = match is not None or (price_in is not None and price_out is not None)
    return Price(
        price_in if price_in is not None else base[0], price_out if price_out is not None else base[1], known
    )


def cost_usd(
    price: Price,
    input_tokens: int,
    output_tokens: int,
    cache_write_tokens: int = 0,
    cache_read_tokens: int = 0,
    batch: bool = False,
) -> float:
    """Cost of one request from its usage (Anthropic reports cache tokens apart from `input_tokens`)."""
    usd = (
        input_tokens * price.input
        + cache_write_tokens * price.input * CACHE_WRITE_MULT
        + cache_read_tokens * price.input * CACHE_READ_MULT
        + output_tokens * price.output
    ) / 1e6
    return usd * (BATCH_DISCOUNT if batch else 1.0)


def text_tokens(text: str) -> int:
    """Rough token count of English text (~4 characters per token)."""
    return math.ceil(len(text) / 4)


def claude_image_tokens(width: int, height: int) -> int:
    """Anthropic's documented estimate for an image already within its size limits."""
    return math.ceil(width * height / 750)


def openai_image_tokens(width: int, height: int, model: str = "gpt-4o") -> int:
    """OpenAI's documented image token counts for `detail: high`."""
    for prefix, mult in (("gpt-4.1-mini", 1.62), ("gpt-4.1-nano", 2.46)):
        if model.startswith(prefix):
            patches = min(1536, math.ceil(width / 32) * math.ceil(height / 32))
            return math.ceil(patches * mult)
    s = min(1.0, 2048 / max(width, height))
    w, h = width * s, height * s
    s = min(1.0, 768 / min(w, h))
    w, h = w * s, h * s
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
