"""SQLite answer cache: a rerun, or a run killed halfway, never pays for an answer twice.

One row per answered request, keyed by `request_key(...)` = sha256 of (image hash, pair and its boxes,
interaction label, prompt version, provider, model, sample index). A row is committed as soon as its answer
arrives (WAL mode, one transaction per row), so a SIGKILL loses at most the requests in flight.

What is stored: the validated answer (or, for a malformed one, the raw text and the reason: it was paid
for, so it is not asked again unless `retry_invalid`), token usage and cost. What is never stored: API
keys, request headers, the image bytes.

Pending Message Batches are recorded too (`batches` table), so a killed `--batch` run resumes polling the
batch it already paid to submit instead of submitting it again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    pair_id TEXT NOT NULL,
    image_sha TEXT NOT NULL,
    pair TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    sample INTEGER NOT NULL,
    status TEXT NOT NULL,            -- 'ok' (valid answer) or 'invalid' (answered, but unusable)
    answer TEXT,                     -- validated answer JSON when ok
    raw TEXT,                        -- the model's raw text (or tool input JSON)
    error TEXT,                      -- why it is invalid
    input_tokens INTEGER, output_tokens INTEGER, cost_usd REAL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    keys TEXT NOT NULL,              -- JSON list of request keys in the batch
    status TEXT NOT NULL,            -- 'pending' until its results are stored, then 'done'
    created REAL NOT NULL
);
"""


def request_key(
    image_sha: str, pair: str, label: str | None, prompt_version: str, provider: str, model: str, sample: int
) -> str:
    """The cache key: 64 hex chars (also the Message Batches `custom_id`, which allows at most 64)."""
    blob = json.dumps([image_sha, pair, label or "", prompt_version, provider, model, int(sample)])
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    """One row of the cache."""

    key: str
    pair_id: str
    sample: int
    status: str  # "ok" or "invalid"
    answer: str | None  # answer JSON when ok
    raw: str | None
    error: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float


class AnswerCache:
    """The SQLite cache (one connection, used from the event loop's thread)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across process kills
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str) -> CachedAnswer | None:
        """The cached answer for a request key, or None."""
        row = self._db.execute(
            "SELECT key, pair_id, sample, status, answer, raw, error, input_tokens, output_tokens, cost_usd "
            "FROM answers WHERE key = ?",
            (key,),
        ).fetchone()
        return None if row is None else CachedAnswer(*row[:7], row[7] or 0, row[8] or 0, row[9] or 0.0)

    def put(
        self,
        key: str,
        *,
        pair_id: str,
        image_sha: str,
        pair: str,
        prompt_version: str,
        provider: str,
        model: str,
        sample: int,
        status: str,
        answer: str | None,
        raw: str | None,
        error: str | None,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
    ) -> None:
        """Store (or replace) one answer and commit immediately."""
        self._db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key, pair_id, image_sha, pair, prompt_version, provider, model, int(sample), status, answer,
                raw, error, int(input_tokens), int(output_tokens), float(cost_usd), time.time(),
            ),
        )  # fmt: skip
        self._db.commit()

    def count(self) -> int:
        """Number of cached answers."""
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def add_batch(self, batch_id: str, provider: str, keys: list[str]) -> None:
        """Record a submitted batch before polling it."""
        self._db.execute(
            "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, 'pending', ?)",
            (batch_id, provider, json.dumps(keys), time.time()),
        )
        self._db.commit()

    def pending_batches(self, provider: str) -> list[tuple[str, list[str]]]:
        """Batches submitted by an earlier (possibly killed) run whose results are not stored yet."""
        rows = self._db.execute(
            "SELECT batch_id, keys FROM batches WHERE status = 'pending' AND provider = ? ORDER BY created",
            (provider,),
        ).fetchall()
        return [(bid, json.loads(keys)) for bid, keys in rows]

    def finish_batch(self, batch_id: str) -> None:
        """Mark a batch's results as stored."""
        self._db.execute("UPDATE batches SET status = 'done' WHERE batch_id = ?", (batch_id,))
        self._db.commit()
