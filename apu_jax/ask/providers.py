"""Providers: who answers the contact question. Chosen with `--provider`.

- `anthropic`: the official SDK's `AsyncAnthropic`. Structured output through `output_config.format`
  (JSON schema, constrained decoding); forced tool use for older models (by name, and automatically after
  a 400 that rejects `output_config`). Content blocks are picked by type (thinking blocks may come first).
  `--batch` goes through the Message Batches API (half price, results out of order, matched on custom_id).
- `openai`: the official SDK's `AsyncOpenAI`, with `--base-url` for vLLM / Ollama / any OpenAI-compatible
  server; `response_format` JSON schema (strict).
- `replay`: recorded answers from a JSONL file (`answers.jsonl` written by every `apu ask` run).
- `heuristic`: no model; contacts guessed from 2D keypoint proximity (the offline baseline).

Remote providers count every HTTP request they send (retries included) with an httpx event hook; the SDKs'
own retry logic handles 408/409/429/5xx (`max_retries`). API keys are read from the environment
(`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`) by the SDK clients and never stored, logged or written.

Every answer is validated client-side by `schema.parse_answer` in the runner, whatever the provider.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apu_jax.ask.parts import LATERAL_PARTS, anchor_count, pair_scale, part_distance
from apu_jax.ask.pricing import (
    Price,
    claude_image_tokens,
    lookup_price,
    openai_image_tokens,
    text_tokens,
)
from apu_jax.ask.prompt import SYSTEM_PROMPT, user_text
from apu_jax.ask.schema import answer_json_schema

DEFAULT_MODELS = {
    "anthropic": "claude-sonnet-5-5",
    "openai": "gpt-4.1",
    "replay": "recorded",
    "heuristic": "keypoint-proximity-v1",
}
PROVIDERS = tuple(DEFAULT_MODELS)
TOOL_NAME = "report_contacts"
# Models that predate `output_config.format` structured outputs: use forced tool use.
_TOOL_USE_PREFIXES = (
    "claude-3",
    "claude-2",
    "claude-instant",
    "claude-opus-4-0",
    "claude-sonnet-4-0",
    "claude-opus-4-1",
)


class ProviderError(RuntimeError):
    """A request got no answer (after the SDK's retries): network, rate limit, server or request error."""


class ProviderFatal(RuntimeError):
    """A failure no other request can escape (bad credentials, missing key): the run stops."""


@dataclass(frozen=True)
class AskRequest:
    """One question: one pair, one sample."""

    key: str  # cache key (sha256 hex, also the batch custom_id)
    pair_id: str  # "<image id>:<a>-<b>"
    sample: int  # 0-based sample index
    image_sha: str  # sha256 of the original image file
    pair_desc: str  # "a-b@boxA;boxB" (what the annotation depends on)
    image: Callable[[], bytes]  # returns the annotated, downscaled JPEG (encoded lazily, cached per pair)
    image_size: tuple[int, int]  # (W, H) of the sent image, pixels
    label: str | None  # interaction label hint
    keypoints: np.ndarray  # (2, 25, 3) BODY-25 keypoints of A and B (original pixels), for the heuristic

    @property
    def image_jpeg(self) -> bytes:
        """The JPEG bytes to send."""
        return self.image()


@dataclass
class RawAnswer:
    """What a provider returned for one request, before validation."""

    payload: str | dict[str, Any] | None  # answer text, or the tool-use input dict
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    problem: str | None = None  # answered but unusable (refusal, truncation, no matching block)


class Provider:
    """Base class. Subclasses set `name`, `model`, `paid` and implement `answer`."""

    name = "base"
    paid = False  # paid answers are cached; free ones (replay, heuristic) are recomputed
    supports_batch = False
    default_samples = 1  # samples per pair when --samples is not given

    def __init__(self, model: str, price: Price | None = None):
        self.model = model
        self.price = price or lookup_price(model)
        self.http_requests = 0  # HTTP requests sent (retries and batch polls included)

    def estimate_tokens(self, req: AskRequest) -> int:
        """Estimated input tokens of one request (image + prompt)."""
        return 0

    def samples_for(self, pair_id: str, requested: int | None) -> int:
        """How many samples to ask for a pair (`requested` = the --samples flag, None = default)."""
        return requested if requested is not None else self.default_samples

    async def answer(self, req: AskRequest) -> RawAnswer:
        """Answer one request; raise ProviderError when no answer could be obtained."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release network resources."""

    def _count_request(self, request: Any) -> None:
        self.http_requests += 1


# ------------------------------------------------------------------------------------------- anthropic


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class AnthropicProvider(Provider):
    """Claude through the official `anthropic` SDK."""

    name = "anthropic"
    paid = True
    supports_batch = True
    default_samples = 3  # votes against hallucinated contacts (ProsePose drew 20)

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        max_retries: int = 5,
        timeout: float = 120.0,
        max_tokens: int = 1024,
        structured: str = "auto",
        price: Price | None = None,
    ):
        super().__init__(model or DEFAULT_MODELS["anthropic"], price)
        self.base_url, self.max_retries, self.timeout, self.max_tokens = (
            base_url,
            max_retries,
            timeout,
            max_tokens,
        )
        if structured not in ("auto", "json", "tool"):
            raise ValueError("structured must be auto, json or tool")
        if structured == "auto":
            structured = "tool" if self.model.startswith(_TOOL_USE_PREFIXES) else "json"
        self.mode = structured
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The `AsyncAnthropic` client, created on first use (a dry run never needs a key)."""
        if self._client is None:
            import anthropic

            if not os.environ.get("ANTHROPIC_API_KEY") and not os.environ.get("ANTHROPIC_AUTH_TOKEN"):
                raise ProviderFatal("ANTHROPIC_API_KEY is not set in the environment")
            http = anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [self._hook]})
            self._client = anthropic.AsyncAnthropic(
                base_url=self.base_url, max_retries=self.max_retries, timeout=self.timeout, http_client=http
            )
        return self._client

    async def _hook(self, request: Any) -> None:
        self._count_request(request)

    def estimate_tokens(self, req: AskRequest) -> int:
        return claude_image_tokens(*req.image_size) + text_tokens(SYSTEM_PROMPT + user_text(req.label)) + 10

    def params(self, req: AskRequest) -> dict[str, Any]:
        """Messages API parameters for one request (shared by the sync and batch paths)."""
        content = [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/jpeg", "data": _b64(req.image_jpeg)},
            },
            {"type": "text", "text": user_text(req.label)},
        ]
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            # One explicit cache breakpoint on the fixed system prompt (never the per-image content).
            "system": [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": content}],
        }
        if self.mode == "json":
            params["output_config"] = {"format": {"type": "json_schema", "schema": answer_json_schema()}}
        else:
            params["tools"] = [
                {
                    "name": TOOL_NAME,
                    "description": "Report the body-part contacts between person A and person B.",
                    "input_schema": answer_json_schema(),
                }
            ]
            params["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return params

    def parse_message(self, msg: Any) -> RawAnswer:
        """Turn a Messages API response into a RawAnswer (blocks picked by type)."""
        usage = msg.usage
        raw = RawAnswer(
            None,
            int(usage.input_tokens or 0),
            int(usage.output_tokens or 0),
            int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
            int(getattr(usage, "cache_read_input_tokens", 0) or 0),
        )
        blocks = list(msg.content or [])
        if self.mode == "tool":
            tool = [b for b in blocks if getattr(b, "type", None) == "tool_use" and b.name == TOOL_NAME]
            raw.payload = tool[0].input if tool else None
        else:
            texts = [b.text for b in blocks if getattr(b, "type", None) == "text"]
            raw.payload = "".join(texts) if texts else None
        if msg.stop_reason == "refusal":
            raw.problem = "the model refused to answer"
        elif msg.stop_reason == "max_tokens":
            raw.problem = f"answer truncated at max_tokens={self.max_tokens}"
        elif raw.payload is None:
            raw.problem = f"no {'tool_use' if self.mode == 'tool' else 'text'} block in the response"
        return raw

    async def answer(self, req: AskRequest) -> RawAnswer:
        import anthropic

        try:
            msg = await self.client.messages.create(
                **self.params(req), extra_headers={"x-apu-request-key": req.key}
            )
        except anthropic.BadRequestError as err:
            if self.mode == "json" and any(
                w in str(err) for w in ("output_config", "output_format", "json_schema")
            ):
                self.mode = "tool"  # an older model: fall back to forced tool use for the rest of the run
                return await self.answer(req)
            raise ProviderError(_describe(err)) from None
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as err:
            raise ProviderFatal(_describe(err)) from None
        except anthropic.APIError as err:
            raise ProviderError(_describe(err)) from None
        return self.parse_message(msg)

    async def run_batch(
        self, reqs: list[AskRequest], poll_interval: float, on_submit: Any
    ) -> AsyncIterator[tuple[str, RawAnswer | None, str | None]]:
        """Submit requests as one Message Batch, poll it, and yield `(custom_id, answer, error)` per result.

        `on_submit(batch_id, keys)` is called right after creation so a killed run can resume polling.
        """
        import anthropic

        try:
            batch = await self.client.messages.batches.create(
                requests=[{"custom_id": r.key, "params": self.params(r)} for r in reqs]
            )
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as err:
            raise ProviderFatal(_describe(err)) from None
        except anthropic.APIError as err:
            raise ProviderError(_describe(err)) from None
        on_submit(batch.id, [r.key for r in reqs])
        async for item in self.collect_batch(batch.id, poll_interval):
            yield item

    async def collect_batch(
        self, batch_id: str, poll_interval: float
    ) -> AsyncIterator[tuple[str, RawAnswer | None, str | None]]:
        """Poll a submitted batch until it ends, then yield its results (any order)."""
        import anthropic

        try:
            while True:
                batch = await self.client.messages.batches.retrieve(batch_id)
                if batch.processing_status == "ended":
                    break
                await asyncio.sleep(poll_interval)
            results = await self.client.messages.batches.results(batch_id)
            async for entry in results:
                res = entry.result
                if res.type == "succeeded":
                    yield entry.custom_id, self.parse_message(res.message), None
                elif res.type == "errored":
                    yield entry.custom_id, None, f"batch request errored: {_describe_batch_error(res)}"
                else:
                    yield entry.custom_id, None, f"batch request {res.type}"
        except anthropic.APIError as err:
            raise ProviderError(_describe(err)) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


def _describe(err: Exception) -> str:
    """One line for an SDK error: status code and the server's message (never request headers)."""
    status = getattr(err, "status_code", None)
    msg = getattr(err, "message", None) or str(err)
    return f"{type(err).__name__}{f' {status}' if status else ''}: {msg}"[:500]


def _describe_batch_error(res: Any) -> str:
    err = getattr(res, "error", None)
    inner = getattr(err, "error", err)
    return f"{getattr(inner, 'type', 'error')}: {getattr(inner, 'message', '')}"[:300]


# ---------------------------------------------------------------------------------------------- openai


class OpenAIProvider(Provider):
    """OpenAI or any OpenAI-compatible server (vLLM, Ollama) through the official `openai` SDK."""

    name = "openai"
    paid = True
    default_samples = 3

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        max_retries: int = 5,
        timeout: float = 120.0,
        max_tokens: int = 1024,
        price: Price | None = None,
    ):
        super().__init__(model or DEFAULT_MODELS["openai"], price)
        self.base_url, self.max_retries, self.timeout, self.max_tokens = (
            base_url,
            max_retries,
            timeout,
            max_tokens,
        )
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The `AsyncOpenAI` client, created on first use."""
        if self._client is None:
            import openai

            key = os.environ.get("OPENAI_API_KEY")
            if not key and self.base_url is None:
                raise ProviderFatal("OPENAI_API_KEY is not set in the environment")
            http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._hook]})
            self._client = openai.AsyncOpenAI(
                api_key=key or "not-needed",  # local servers (vLLM, Ollama) accept any key
                base_url=self.base_url,
                max_retries=self.max_retries,
                timeout=self.timeout,
                http_client=http,
            )
        return self._client

    async def _hook(self, request: Any) -> None:
        self._count_request(request)

    def estimate_tokens(self, req: AskRequest) -> int:
        img = openai_image_tokens(*req.image_size, model=self.model)
        return img + text_tokens(SYSTEM_PROMPT + user_text(req.label)) + 10

    def params(self, req: AskRequest) -> dict[str, Any]:
        """Chat Completions parameters for one request."""
        url = "data:image/jpeg;base64," + _b64(req.image_jpeg)
        # api.openai.com wants max_completion_tokens; vLLM/Ollama understand max_tokens.
        limit_key = "max_completion_tokens" if self.base_url is None else "max_tokens"
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                        {"type": "text", "text": user_text(req.label)},
                    ],
                },
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "contact_answer", "schema": answer_json_schema(), "strict": True},
            },
            limit_key: self.max_tokens,
        }

    async def answer(self, req: AskRequest) -> RawAnswer:
        import openai

        try:
            resp = await self.client.chat.completions.create(
                **self.params(req), extra_headers={"x-apu-request-key": req.key}
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
            raise ProviderFatal(_describe(err)) from None
        except openai.APIError as err:
            raise ProviderError(_describe(err)) from None
        usage = resp.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        cached = int(getattr(details, "cached_tokens", 0) or 0) if details else 0
        raw = RawAnswer(
            None,
            int(usage.prompt_tokens or 0) - cached if usage else 0,
            int(usage.completion_tokens or 0) if usage else 0,
            0,
            cached,
        )
        if not resp.choices:
            raw.problem = "no choices in the response"
            return raw
        choice = resp.choices[0]
        raw.payload = choice.message.content
        if getattr(choice.message, "refusal", None):
            raw.problem = f"the model refused: {choice.message.refusal}"[:300]
        elif choice.finish_reason == "length":
            raw.problem = f"answer truncated at {self.max_tokens} tokens"
        return raw

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


# ---------------------------------------------------------------------------------------------- replay


class ReplayProvider(Provider):
    """Answers recorded in a JSONL file: one line per (pair_id, sample) with `raw` text or `answer` object.

    The format is what `apu ask` writes to `answers.jsonl`, so any run can be replayed exactly.
    """

    name = "replay"

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise ProviderFatal(f"replay file not found: {path}")
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = (str(rec["pair_id"]), int(rec.get("sample", 0)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise ProviderFatal(f"{path}:{lineno}: not a replay record (needs pair_id, sample)") from None
            self.records[key] = rec
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        super().__init__(f"replay:{path.name}:{digest}", Price(0.0, 0.0, True))

    def samples_for(self, pair_id: str, requested: int | None) -> int:
        if requested is not None:
            return requested
        recorded = [s for (p, s) in self.records if p == pair_id]
        return max(recorded) + 1 if recorded else 1

    async def answer(self, req: AskRequest) -> RawAnswer:
        rec = self.records.get((req.pair_id, req.sample))
        if rec is None:
            return RawAnswer(None, problem=f"no recorded answer for {req.pair_id} sample {req.sample}")
        payload = rec.get("raw") if rec.get("raw") is not None else rec.get("answer")
        return RawAnswer(payload, problem=None if payload is not None else "recorded answer is empty")


# ------------------------------------------------------------------------------------------- heuristic

# Parts the heuristic considers: the specific ones (no "arm"/"leg" supersets; "back"/"face" cannot be told
# from "chest"/"head" in 2D).
_HEURISTIC_PARTS = (
    "hand",
    "forearm",
    "upper arm",
    "shoulder",
    "foot",
    "knee",
    "thigh",
    "head",
    "neck",
    "chest",
    "stomach",
    "waist",
)


class HeuristicProvider(Provider):
    """No model: the closest part pairs in the image, by 2D keypoint distance, are the contacts.

    Every (part, side) of A is compared with every (part, side) of B; pairs closer than `max_dist`
    (normalised by the pair scale) are candidates; greedily, closest first, a contact is kept when neither
    of its two parts is already used, up to `max_contacts`. Confidence = 1 − d / max_dist. This is the
    offline baseline: 2D proximity cannot tell contact from occlusion.
    """

    name = "heuristic"

    def __init__(self, max_dist: float = 0.08, max_contacts: int = 4, min_conf: float = 0.3):
        super().__init__(DEFAULT_MODELS["heuristic"], Price(0.0, 0.0, True))
        self.max_dist, self.max_contacts, self.min_conf = max_dist, max_contacts, min_conf

    def samples_for(self, pair_id: str, requested: int | None) -> int:
        return 1  # deterministic: more samples would only repeat the same answer

    def contacts(self, kp_a: np.ndarray, kp_b: np.ndarray) -> list[dict[str, Any]]:
        """The heuristic contacts of one pair (schema dicts)."""
        scale = pair_scale(kp_a, kp_b, self.min_conf)
        sided = [
            (p, s)
            for p in _HEURISTIC_PARTS
            for s in (("left", "right") if p in LATERAL_PARTS else ("unknown",))
        ]
        found = []
        for (pa, sa), (pb, sb) in itertools.product(sided, sided):
            d = part_distance(kp_a, pa, sa, kp_b, pb, sb, scale, self.min_conf)
            if d < self.max_dist:
                found.append((d, pa, sa, pb, sb))
        # Closest first; on equal distance (parts sharing the nearest anchor: hand and forearm share the
        # wrist, shoulder and upper arm the shoulder) prefer the smaller, more specific parts.
        found.sort(key=lambda f: (round(f[0], 4), anchor_count(f[1]) + anchor_count(f[3]), f[1:]))
        used_a: set[tuple[str, str]] = set()
        used_b: set[tuple[str, str]] = set()
        out = []
        for d, pa, sa, pb, sb in found:
            if (pa, sa) in used_a or (pb, sb) in used_b:
                continue
            used_a.add((pa, sa))
            used_b.add((pb, sb))
            conf = round(1.0 - d / self.max_dist, 4)
            out.append({"part_a": pa, "side_a": sa, "part_b": pb, "side_b": sb, "confidence": conf})
            if len(out) == self.max_contacts:
                break
        return out

    async def answer(self, req: AskRequest) -> RawAnswer:
        contacts = self.contacts(req.keypoints[0], req.keypoints[1])
        desc = f"heuristic: {len(contacts)} part pair(s) closer than {self.max_dist} in the image"
        return RawAnswer({"description": desc, "contacts": contacts})


def make_provider(
    name: str,
    model: str | None = None,
    base_url: str | None = None,
    replay_path: str | Path | None = None,
    max_retries: int = 5,
    timeout: float = 120.0,
    max_tokens: int = 1024,
    price_in: float | None = None,
    price_out: float | None = None,
) -> Provider:
    """Build a provider by name (`--provider`)."""
    price = None
    if name in ("anthropic", "openai"):
        price = lookup_price(model or DEFAULT_MODELS[name], price_in, price_out)
    if name == "anthropic":
        return AnthropicProvider(model, base_url, max_retries, timeout, max_tokens, price=price)
    if name == "openai":
        return OpenAIProvider(model, base_url, max_retries, timeout, max_tokens, price=price)
    if name == "replay":
        if replay_path is None:
            raise ProviderFatal("--provider replay needs a replay file (--replay PATH)")
        return ReplayProvider(replay_path)
    if name == "heuristic":
        return HeuristicProvider()
    raise ProviderFatal(f"unknown provider '{name}' (expected one of {', '.join(PROVIDERS)})")


__all__ = [
    "DEFAULT_MODELS",
    "PROVIDERS",
    "AnthropicProvider",
    "AskRequest",
    "HeuristicProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "ProviderFatal",
    "RawAnswer",
    "ReplayProvider",
    "make_provider",
]
