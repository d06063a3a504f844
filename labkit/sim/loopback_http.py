"""The small HTTP server every labkit process serves its own state on: 127.0.0.1 only, no access log.

A process gives it one function per method: ``get(path)`` and, where it accepts them, ``post(path, body)``. Each
returns an :class:`Answer` (body, content type, status) or ``None`` for 404. Equivalent to what the workload model,
the alert webhook, the config-reloader and the NPD supervisor each answer at ``curl http://127.0.0.1:PORT/...``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT = "text/plain"
JSON = "application/json"
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


@dataclass(frozen=True)
class Answer:
    body: str
    kind: str = TEXT
    status: HTTPStatus = HTTPStatus.OK


OK = Answer("ok\n")
Get = Callable[[str], Answer | None]
Post = Callable[[str, bytes], Answer | None]


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer

    def do_GET(self) -> None:  # name fixed by http.server
        self._send(self.server.get(self.path))

    def do_POST(self) -> None:  # name fixed by http.server
        if self.server.post is None:
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(self.server.post(self.path, body))

    def _send(self, answer: Answer | None) -> None:
        if answer is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        data = answer.body.encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # signature fixed by http.server
        pass  # polled every few seconds by health checks and Prometheus: an access log would be noise


class LoopbackServer(ThreadingHTTPServer):
    """Serves ``get``/``post`` on ``127.0.0.1:port``; :meth:`start` runs it on a daemon thread."""

    daemon_threads = True

    def __init__(self, port: int, get: Get, post: Post | None = None) -> None:
        self.get, self.post = get, post
        super().__init__(("127.0.0.1", port), _Handler)

    def start(self) -> LoopbackServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self
