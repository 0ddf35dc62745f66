"""Asking many questions at once: cache first, then concurrent, rate-limited requests (or a batch).

Flow per request: a cached answer (SQLite, keyed by the request key) is used as is; otherwise the request
waits for a concurrency slot (`asyncio.Semaphore`), then for the rate limits (requests and estimated
tokens per minute), then is sent; the SDK retries 408/409/429/5xx itself. The answer is validated
(`schema.parse_answer`) and written to the cache at once, valid or not — it was paid for. A request that
gets no answer at all (persistent errors) is reported as failed and is asked again by the next run.

With `batch=True` (Anthropic only) the uncached requests go out as Message Batches instead: half price, no
rate-limit pacing needed, results within 24 h. Batch ids are recorded in the cache before polling, so a
killed run resumes polling the same batches instead of paying again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from apu_jax.ask.cache import AnswerCache
from apu_jax.ask.pricing import TYPICAL_OUTPUT_TOKENS, cost_usd
from apu_jax.ask.prompt import PROMPT_VERSION
from apu_jax.ask.providers import AskRequest, Provider, ProviderError, RawAnswer
from apu_jax.ask.schema import AnswerError, ContactAnswer, parse_answer

# Message Batches limits are 100,000 requests / 256 MB; stay well inside both.
BATCH_MAX_REQUESTS = 10_000
BATCH_MAX_BYTES = 150 * 1024 * 1024


@dataclass
class Outcome:
    """The result of one request, whatever its source."""

    key: str
    pair_id: str
    sample: int
    status: str  # "ok", "invalid" (answered but unusable) or "error" (no answer)
    answer: ContactAnswer | None
    raw: str | None  # the raw answer text / tool input JSON
    error: str | None
    source: str  # "cache", "new" (paid this run) or "free" (replay / heuristic)


@dataclass
class RunStats:
    """Counters of one ask run (summed over requests)."""

    total: int = 0  # requests needed (pairs × samples)
    requests: int = 0  # HTTP requests sent this run (retries and batch calls included)
    cached: int = 0  # answers taken from the cache
    answered: int = 0  # valid answers obtained this run (paid or free)
    failed: int = 0  # invalid answers + requests that got no answer, this run and cached
    invalid: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # spent this run, from reported usage
    error_messages: dict[str, int] = field(default_factory=dict)  # distinct error → count

    def note_error(self, msg: str) -> None:
        """Count one error message (messages are truncated to keep the summary short)."""
        msg = msg[:200]
        self.error_messages[msg] = self.error_messages.get(msg, 0) + 1


def _validate(raw: RawAnswer) -> tuple[str, ContactAnswer | None, str | None, str | None]:
    text = json.dumps(raw.payload) if isinstance(raw.payload, dict) else raw.payload
    if raw.problem is not None:
        return "invalid", None, text, raw.problem
    try:
        return "ok", parse_answer(raw.payload), text, None
    except AnswerError as err:
        return "invalid", None, text, str(err)


def _from_cache(req: AskRequest, row) -> Outcome:
    answer = ContactAnswer.model_validate_json(row.answer) if row.status == "ok" else None
    return Outcome(req.key, req.pair_id, req.sample, row.status, answer, row.raw, row.error, "cache")


class AskRunner:
    """Runs a list of requests against one provider with one cache."""

    def __init__(
        self,
        provider: Provider,
        cache: AnswerCache | None,
        concurrency: int = 8,
        rpm: float | None = None,
        tpm: float | None = None,
        retry_invalid: bool = False,
        progress: Callable[[int], None] | None = None,
    ):
        from apu_jax.ask.limits import RateLimiter

        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.provider, self.cache = provider, cache
        self.concurrency = concurrency
        self.limiter = RateLimiter(rpm, tpm)
        self.retry_invalid = retry_invalid
        self.progress = progress or (lambda n: None)
        self.stats = RunStats()

    # ---------------------------------------------------------------------------------------------- cache

    def cached(self, req: AskRequest) -> Outcome | None:
        """The cached outcome of a request, if it may be reused."""
        if self.cache is None or not self.provider.paid:
            return None
        row = self.cache.get(req.key)
        if row is None or (row.status == "invalid" and self.retry_invalid):
            return None
        return _from_cache(req, row)

    def _store(self, req: AskRequest, raw: RawAnswer, batch: bool) -> Outcome:
        status, answer, text, error = _validate(raw)
        usd = cost_usd(
            self.provider.price,
            raw.input_tokens,
            raw.output_tokens,
            raw.cache_write_tokens,
            raw.cache_read_tokens,
            batch,
        )
        st = self.stats
        st.input_tokens += raw.input_tokens + raw.cache_write_tokens + raw.cache_read_tokens
        st.output_tokens += raw.output_tokens
        st.cost_usd += usd
        if self.cache is not None and self.provider.paid:
            self.cache.put(
                req.key,
                pair_id=req.pair_id,
                image_sha=req.image_sha,
                pair=req.pair_desc,
                prompt_version=PROMPT_VERSION,
                provider=self.provider.name,
                model=self.provider.model,
                sample=req.sample,
                status=status,
                answer=answer.model_dump_json() if answer else None,
                raw=text,
                error=error,
                input_tokens=raw.input_tokens + raw.cache_write_tokens + raw.cache_read_tokens,
                output_tokens=raw.output_tokens,
                cost_usd=usd,
            )
        source = "new" if self.provider.paid else "free"
        return Outcome(req.key, req.pair_id, req.sample, status, answer, text, error, source)

    def _tally(self, out: Outcome) -> Outcome:
        st = self.stats
        if out.source == "cache":
            st.cached += 1
        elif out.status == "ok":
            st.answered += 1
        if out.status == "invalid":
            st.invalid += 1
        elif out.status == "error":
            st.errors += 1
        if out.status != "ok":
            st.failed += 1
            st.note_error(out.error or out.status)
        self.progress(1)
        return out

    # ---------------------------------------------------------------------------------------------- sync

    async def _one(self, req: AskRequest, slots: asyncio.Semaphore) -> Outcome:
        async with slots:
            await self.limiter.acquire(self.provider.estimate_tokens(req) + TYPICAL_OUTPUT_TOKENS)
            try:
                raw = await self.provider.answer(req)
            except ProviderError as err:
                return Outcome(req.key, req.pair_id, req.sample, "error", None, None, str(err), "new")
        return self._store(req, raw, batch=False)

    async def run(self, requests: Sequence[AskRequest]) -> dict[str, Outcome]:
        """Answer every request (cache, then the provider). Returns outcomes by request key.

        Requests with equal keys (the same image, boxes, label and sample) are asked once.
        """
        requests = list({r.key: r for r in requests}.values())
        self.stats.total = len(requests)
        outcomes: dict[str, Outcome] = {}
        todo = []
        for req in requests:
            hit = self.cached(req)
            if hit is not None:
                outcomes[req.key] = self._tally(hit)
            else:
                todo.append(req)
        slots = asyncio.Semaphore(self.concurrency)
        tasks = [asyncio.ensure_future(self._one(req, slots)) for req in todo]
        try:
            for fut in asyncio.as_completed(tasks):
                out = await fut
                outcomes[out.key] = self._tally(out)
        finally:
            for t in tasks:  # a fatal error (bad key) stops the run: do not leave requests in flight
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.stats.requests = self.provider.http_requests
        return outcomes

    # --------------------------------------------------------------------------------------------- batch

    async def run_batch(
        self, requests: Sequence[AskRequest], poll_interval: float = 30.0
    ) -> dict[str, Outcome]:
        """Answer every request through Message Batches (pending batches of a killed run are resumed)."""
        provider = self.provider
        if not provider.supports_batch or self.cache is None:
            raise ValueError(f"--batch is supported by the anthropic provider only (not '{provider.name}')")
        by_key = {r.key: r for r in requests}
        requests = list(by_key.values())
        self.stats.total = len(requests)
        outcomes: dict[str, Outcome] = {}

        async def consume(stream, batch_id: str | None) -> None:
            async for custom_id, raw, error in stream:
                req = by_key.get(custom_id)
                if raw is not None and req is not None:
                    outcomes[custom_id] = self._tally(self._store(req, raw, batch=True))
                elif raw is not None:  # a result for a request not asked this run: keep it, it is paid
                    self._store_orphan(custom_id, raw)
                elif req is not None:
                    outcomes[custom_id] = self._tally(
                        Outcome(req.key, req.pair_id, req.sample, "error", None, None, error, "new")
                    )
            if batch_id is not None:
                self.cache.finish_batch(batch_id)

        try:
            for batch_id, _keys in self.cache.pending_batches(provider.name):
                await consume(provider.collect_batch(batch_id, poll_interval), batch_id)
            todo = []
            for req in requests:
                if req.key in outcomes:
                    continue
                hit = self.cached(req)
                if hit is not None:
                    outcomes[req.key] = self._tally(hit)
                else:
                    todo.append(req)
            for chunk in _chunks(todo):
                submitted: list[str] = []

                def on_submit(batch_id: str, keys: list[str], _s=submitted) -> None:
                    self.cache.add_batch(batch_id, provider.name, keys)
                    _s.append(batch_id)

                stream = provider.run_batch(chunk, poll_interval, on_submit)
                try:
                    await consume(stream, None)
                except ProviderError as err:
                    for req in chunk:
                        if req.key not in outcomes:
                            outcomes[req.key] = self._tally(
                                Outcome(
                                    req.key, req.pair_id, req.sample, "error", None, None, str(err), "new"
                                )
                            )
                for bid in submitted:
                    self.cache.finish_batch(bid)
        finally:
            self.stats.requests = provider.http_requests
        return outcomes

    def _store_orphan(self, custom_id: str, raw: RawAnswer) -> None:
        # No request object (asked by an earlier run with other inputs): too little context to cache it under
        # its key with full metadata, and nothing this run will look it up by; count its cost only.
        self.stats.cost_usd += cost_usd(
            self.provider.price,
            raw.input_tokens,
            raw.output_tokens,
            raw.cache_write_tokens,
            raw.cache_read_tokens,
            True,
        )


def _chunks(reqs: list[AskRequest]) -> list[list[AskRequest]]:
    out: list[list[AskRequest]] = []
    cur: list[AskRequest] = []
    size = 0
    for r in reqs:
        n = len(r.image_jpeg) * 4 // 3 + 8192  # base64 image + prompt and JSON overhead
        if cur and (len(cur) >= BATCH_MAX_REQUESTS or size + n > BATCH_MAX_BYTES):
            out.append(cur)
            cur, size = [], 0
        cur.append(r)
        size += n
    if cur:
        out.append(cur)
    return out
