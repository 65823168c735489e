"""A small simulated OpenAI-compatible server on 127.0.0.1, for tests and benchmarks.

A ``responder`` maps each chat request to a reply text or a ``Fault`` (an HTTP error,
garbage, or a delay), so tests can script model behaviour and inject failures.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from longdoc.pipeline.tokens import count_tokens

Messages = list[dict[str, str]]


@dataclass
class Fault:
    """What to do instead of answering: an HTTP status, a garbage body, or a delay first."""

    status: int = 200
    body: str | None = None
    delay_s: float = 0.0
    then: str | None = None  # reply to send after the delay


Responder = Callable[[Messages], "str | Fault"]


@dataclass
class SimServer:
    """Serve ``responder`` at ``base_url`` until ``stop``; every request is recorded."""

    responder: Responder
    model: str = "sim-model"
    context_window: int = 8192
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    models = [{"id": server.model, "object": "model",
                               "max_model_len": server.context_window}]
                    self._send(200, json.dumps({"object": "list", "data": models}))
                else:
                    self._send(404, json.dumps({"error": {"message": "not found"}}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(request)
                outcome = server.responder(request.get("messages", []))
                if isinstance(outcome, Fault):
                    time.sleep(outcome.delay_s)
                    if outcome.status != 200 or outcome.body is not None:
                        body = outcome.body if outcome.body is not None else json.dumps(
                            {"error": {"message": f"simulated {outcome.status}"}})
                        self._send(outcome.status, body)
                        return
                    outcome = outcome.then or ""
                self._send(200, json.dumps(server.completion(request, outcome)))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def completion(self, request: dict[str, Any], text: str) -> dict[str, Any]:
        prompt = sum(count_tokens(m.get("content", "")) for m in request.get("messages", []))
        return {
            "id": f"sim-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": count_tokens(text),
                      "total_tokens": prompt + count_tokens(text)},
        }

    def start(self) -> SimServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
