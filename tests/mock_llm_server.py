"""A local mock of the Anthropic Messages / Message Batches APIs and OpenAI Chat Completions, for tests.

Runs on 127.0.0.1 in a background thread (`MockLLMServer().start()`), or standalone for demos:
`python tests/mock_llm_server.py --port 8765` (then `--base-url http://127.0.0.1:8765`).

Routes: `POST /v1/messages`, `POST /v1/messages/batches`, `GET /v1/messages/batches/{id}`,
`GET /v1/messages/batches/{id}/results` (JSONL, deliberately in reverse order), `POST /v1/chat/completions`
(also under `/v1/v1/...` is NOT served: give the OpenAI client `base_url=.../v1`).

Behaviour is scripted: `script` is a queue consumed by successive generation requests (messages and chat
completions); each entry is an HTTP status to fail with (429, 529, 500, 400, 401, ...) or one of the
answer modes "ok", "malformed", "unknown_part", "refusal", "reject_output_config"; when the queue is
empty `default` applies.
Error responses carry `retry-after-ms: 1` so the SDKs' retries are immediate. Every request is recorded
(path, the `x-apu-request-key` and `x-stainless-retry-count` headers, whether an Authorization header came
and, for generation requests, its status) so tests can count them.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_ANSWER = {
    "description": "A rests a hand on B's shoulder.",
    "contacts": [
        {"part_a": "hand", "side_a": "right", "part_b": "shoulder", "side_b": "left", "confidence": 0.9}
    ],
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Seen:
    """One request the mock received."""

    method: str
    path: str
    key: str | None  # x-apu-request-key
    retry_count: str | None  # x-stainless-retry-count
    authorized: bool  # an Authorization / x-api-key header was present
    status: int = 200  # status the mock answered with
    body_keys: tuple[str, ...] = ()  # top-level keys of the JSON body (e.g. output_config vs tools)
    completed: bool = False  # the full response was written


@dataclass
class MockState:
    """Shared, lock-protected state of the mock."""

    script: collections.deque = field(default_factory=collections.deque)
    default: Any = "ok"
    answer: dict = field(default_factory=lambda: dict(DEFAULT_ANSWER))
    delay: float = 0.0  # seconds before each generation response
    thinking_first: bool = True  # put a thinking block before the answer (clients must pick by type)
    batch_polls: int = 1  # retrieve calls that still report "in_progress"
    batch_errored: int = 0  # how many batch results come back "errored"
    seen: list[Seen] = field(default_factory=list)
    batches: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class MockLLMServer:
    """The mock server. Use as a context manager or call start()/stop()."""

    def __init__(self, script: list | None = None, default: Any = "ok", **state: Any):
        self.state = MockState(script=collections.deque(script or []), default=default, **state)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL for the Anthropic client (the OpenAI client wants url + "/v1")."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> MockLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> MockLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def generation_requests(self) -> list[Seen]:
        """Requests to /v1/messages and /v1/chat/completions."""
        with self.state.lock:
            return [s for s in self.state.seen if s.path in ("/v1/messages", "/v1/chat/completions")]

    def all_requests(self) -> list[Seen]:
        with self.state.lock:
            return list(self.state.seen)


def _message(
    model: str, payload: dict | str, tools: bool, thinking_first: bool, stop: str = "end_turn"
) -> dict:
    content: list[dict] = []
    if thinking_first:
        content.append({"type": "thinking", "thinking": "Looking at the boxes...", "signature": "sig"})
    if tools and isinstance(payload, dict):
        content.append({"type": "tool_use", "id": "toolu_mock", "name": "report_contacts", "input": payload})
        stop = "tool_use" if stop == "end_turn" else stop
    else:
        content.append({"type": "text", "text": payload if isinstance(payload, str) else json.dumps(payload)})
    return {
        "id": f"msg_mock_{time.monotonic_ns()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 1600,
            "output_tokens": 60,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _payload_for(mode: str, answer: dict) -> tuple[dict | str, str]:
    """(answer payload, stop reason) for an answer mode."""
    if mode == "malformed":
        return '{"description": "two people", "contacts": [ {"part_a": "hand", ', "end_turn"
    if mode == "unknown_part":
        bad = {"description": "?", "contacts": [dict(answer["contacts"][0], part_b="butt")]}
        return bad, "end_turn"
    if mode == "refusal":
        return "", "refusal"
    return answer, "end_turn"


class _Handler(BaseHTTPRequestHandler):
    state: MockState
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # ------------------------------------------------------------------------------------------- helpers

    def _record(self) -> Seen:
        seen = Seen(
            self.command,
            self.path.split("?")[0],
            self.headers.get("x-apu-request-key"),
            self.headers.get("x-stainless-retry-count"),
            bool(self.headers.get("authorization") or self.headers.get("x-api-key")),
        )
        with self.state.lock:
            self.state.seen.append(seen)
        return seen

    def _body(self) -> dict:
        n = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def _send(
        self, status: int, body: dict | str, seen: Seen, content_type: str = "application/json"
    ) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        seen.status = status
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_mock")
        if status >= 400:
            self.send_header("retry-after-ms", "1")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        seen.completed = True

    def _next_mode(self) -> Any:
        with self.state.lock:
            return self.state.script.popleft() if self.state.script else self.state.default

    # -------------------------------------------------------------------------------------------- routes

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        seen = self._record()
        body = self._body()
        seen.body_keys = tuple(sorted(body))
        if seen.path == "/v1/messages/batches":
            return self._create_batch(body, seen)
        if seen.path not in ("/v1/messages", "/v1/chat/completions"):
            return self._send(
                404, {"type": "error", "error": {"type": "not_found_error", "message": "no route"}}, seen
            )
        mode = self._next_mode()
        if self.state.delay:
            time.sleep(self.state.delay)
        openai = seen.path == "/v1/chat/completions"
        if mode == "reject_output_config":  # what an older model says about structured outputs
            err = {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "output_config: unknown"},
            }
            return self._send(400, err, seen)
        if isinstance(mode, int):
            if openai:
                err = {"error": {"message": f"mock error {mode}", "type": "mock_error", "code": str(mode)}}
            else:
                kind = _ANTHROPIC_ERRORS.get(mode, "api_error")
                err = {"type": "error", "error": {"type": kind, "message": f"mock {kind}"}}
            return self._send(mode, err, seen)
        payload, stop = _payload_for(mode, self.state.answer)
        model = body.get("model", "mock")
        if openai:
            return self._send(200, _chat_completion(model, payload, stop), seen)
        return self._send(
            200, _message(model, payload, "tools" in body, self.state.thinking_first, stop), seen
        )

    def do_GET(self) -> None:  # noqa: N802
        seen = self._record()
        parts = seen.path.strip("/").split("/")  # v1 messages batches {id} [results]
        if len(parts) >= 4 and parts[:3] == ["v1", "messages", "batches"]:
            with self.state.lock:
                batch = self.state.batches.get(parts[3])
            if batch is None:
                return self._send(
                    404, {"type": "error", "error": {"type": "not_found_error", "message": "?"}}, seen
                )
            if len(parts) == 5 and parts[4] == "results":
                return self._send(200, _batch_results(batch), seen, "application/binary")
            with self.state.lock:
                batch["polls"] += 1
                ended = batch["polls"] > self.state.batch_polls
            return self._send(200, _batch_object(batch, ended, self.server_url()), seen)
        return self._send(
            404, {"type": "error", "error": {"type": "not_found_error", "message": "no route"}}, seen
        )

    def server_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _create_batch(self, body: dict, seen: Seen) -> None:
        reqs = body.get("requests", [])
        with self.state.lock:
            bid = f"msgbatch_mock_{len(self.state.batches) + 1}"
            results = []
            for i, r in enumerate(reqs):
                tools = "tools" in r["params"]
                if i < self.state.batch_errored:
                    res = {
                        "type": "errored",
                        "error": {"type": "error", "error": {"type": "api_error", "message": "x"}},
                    }
                else:
                    msg = _message(r["params"]["model"], self.state.answer, tools, self.state.thinking_first)
                    res = {"type": "succeeded", "message": msg}
                results.append({"custom_id": r["custom_id"], "result": res})
            batch = {"id": bid, "results": results, "polls": 0}
            self.state.batches[bid] = batch
        self._send(200, _batch_object(batch, False, self.server_url()), seen)


def _batch_object(batch: dict, ended: bool, url: str) -> dict:
    n = len(batch["results"])
    ok = sum(r["result"]["type"] == "succeeded" for r in batch["results"])
    return {
        "id": batch["id"],
        "type": "message_batch",
        "processing_status": "ended" if ended else "in_progress",
        "request_counts": {
            "processing": 0 if ended else n,
            "succeeded": ok if ended else 0,
            "errored": (n - ok) if ended else 0,
            "canceled": 0,
            "expired": 0,
        },
        "created_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-02T00:00:00Z",
        "ended_at": "2026-01-01T00:10:00Z" if ended else None,
        "cancel_initiated_at": None,
        "archived_at": None,
        "results_url": f"{url}/v1/messages/batches/{batch['id']}/results" if ended else None,
    }


def _batch_results(batch: dict) -> str:
    # Reverse order on purpose: clients must match results on custom_id.
    return "".join(json.dumps(r) + "\n" for r in reversed(batch["results"]))


def _chat_completion(model: str, payload: dict | str, stop: str) -> dict:
    refusal = "I can't help with that." if stop == "refusal" else None
    content = None if refusal else (payload if isinstance(payload, str) else json.dumps(payload))
    return {
        "id": f"chatcmpl-mock-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 50, "total_tokens": 1250},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    server = MockLLMServer(delay=args.delay)
    server.httpd.server_close()
    server.httpd = ThreadingHTTPServer(
        ("127.0.0.1", args.port), type("H", (_Handler,), {"state": server.state})
    )
    print(f"mock LLM server on {server.url}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
