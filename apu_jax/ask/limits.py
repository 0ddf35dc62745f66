"""Client-side rate limits: requests per minute and tokens per minute, as token buckets.

The SDKs retry 429s on their own, but every retry is a wasted round trip and a burst of thousands of
requests would hit the limit at once; pacing below the account's limits avoids that. A bucket holds up to
one minute of budget, refills continuously, and `acquire(n)` waits until `n` units are available. Tokens
are charged up front with the *estimated* input + output tokens (Anthropic also estimates output tokens
from `max_tokens` when it admits a request). A request larger than a whole minute's budget is let through
once the bucket is full, rather than blocking forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """A token bucket refilled at `per_minute / 60` units per second, capacity `per_minute`."""

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # units per second
        self._clock, self._sleep = clock, sleep
        self._level = self.capacity  # start full: the first minute's budget is available at once
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, amount: float = 1.0) -> float:
        """Wait until `amount` units are available and take them; returns the seconds waited."""
        amount = min(float(amount), self.capacity)
        start = self._clock()
        async with self._lock:  # FIFO: one waiter at a time keeps large requests from starving
            self._refill()
            while self._level < amount:
                await self._sleep((amount - self._level) / self.rate)
                self._refill()
            self._level -= amount
        return self._clock() - start


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits together (either may be None = unlimited)."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, **bucket_kwargs):
        self.requests = TokenBucket(rpm, **bucket_kwargs) if rpm else None
        self.tokens = TokenBucket(tpm, **bucket_kwargs) if tpm else None

    async def acquire(self, tokens: int) -> None:
        """Admit one request of about `tokens` tokens."""
        if self.requests is not None:
            await self.requests.acquire(1)
        if self.tokens is not None:
            await self.tokens.acquire(tokens)
