"""A real HTTP peer speaking the OpenAI chat-completions API on loopback, with scripted faults.

Each deployment under test gets its own path prefix (`/d/<name>/v1`), so the peer can count and
fault requests per deployment. Replies echo the last user message, so what the provider saw can
be checked in what comes back. Used by the gateway tests and by benchmarks/gateway_overhead.py.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the chaos test opens many connections at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that timed out close their connection mid-reply; that is the scripted fault working.
        pass


@dataclass
class PeerBehaviour:
    """How one deployment answers: scripted outcomes first, then random faults at the given rates."""

    script: list[str] = field(default_factory=list)  # "ok", "tool", "429", "500", "timeout", "context"
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    hang_seconds: float = 1.0
    retry_after: str = "1"
    usage: dict[str, Any] | None = None  # overrides the usage block of successful replies


class OpenAIPeer:
    def __init__(self, seed: int = 7):
        self.behaviours: dict[str, PeerBehaviour] = defaultdict(PeerBehaviour)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.client_addresses: list[tuple[str, int]] = []  # one per request: a reused connection repeats
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once, no delayed-ACK stall

            def log_message(self, *_args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with peer._lock:
                    peer.client_addresses.append(self.client_address)
                parts = self.path.strip("/").split("/")
                name = parts[1] if len(parts) > 1 and parts[0] == "d" else "default"
                outcome = peer._next_outcome(name, body)
                peer._reply(self, name, outcome, body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def api_base(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/d/{name}/v1"

    def start(self) -> OpenAIPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, name: str) -> int:
        with self._lock:
            return sum(1 for n, _ in self.requests if n == name)

    def bodies(self) -> list[str]:
        with self._lock:
            return [json.dumps(body) for _, body in self.requests]

    def _next_outcome(self, name: str, body: dict[str, Any]) -> str:
        with self._lock:
            self.requests.append((name, body))
            behaviour = self.behaviours[name]
            if behaviour.script:
                outcome = behaviour.script.pop(0)
            else:
                draw = self._rng.random()
                if draw < behaviour.rate_429:
                    outcome = "429"
                elif draw < behaviour.rate_429 + behaviour.rate_500:
                    outcome = "500"
                elif draw < behaviour.rate_429 + behaviour.rate_500 + behaviour.rate_timeout:
                    outcome = "timeout"
                else:
                    outcome = "tool" if body.get("tools") else "ok"
            self.outcomes[(name, outcome)] += 1
            return outcome

    def _reply(self, handler: BaseHTTPRequestHandler, name: str, outcome: str, body: dict[str, Any]) -> None:
        behaviour = self.behaviours[name]
        if outcome == "timeout":
            time.sleep(behaviour.hang_seconds)
            outcome = "ok"  # too late: the client has given up
        if outcome == "429":
            _send(
                handler,
                429,
                {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                {"retry-after": behaviour.retry_after},
            )
            return
        if outcome == "500":
            _send(handler, 500, {"error": {"message": "upstream exploded", "type": "server_error"}})
            return
        if outcome == "context":
            _send(
                handler,
                400,
                {
                    "error": {
                        "message": "This model's maximum context length is 8192 tokens. "
                        "However, your messages resulted in 9000 tokens.",
                        "type": "invalid_request_error",
                        "code": "context_length_exceeded",
                    }
                },
            )
            return
        last_user = next((m for m in reversed(body.get("messages", [])) if m.get("role") == "user"), {})
        content = last_user.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        if outcome == "tool":
            tool = body["tools"][0]["function"]["name"]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": tool, "arguments": json.dumps({"q": text})},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": f"echo: {text}"}, "stop"
        prompt_tokens = max(1, len(json.dumps(body.get("messages", []))) // 4)
        usage = behaviour.usage or {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": 12,
            "total_tokens": prompt_tokens + 12,
        }
        _send(
            handler,
            200,
            {
                "id": f"chatcmpl-{name}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", name),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            },
        )


def _send(
    handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(payload).encode()
    try:
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client timed out and went away
