"""The small HTTP server every labkit process serves its own state on: 127.0.0.1 only, no access log.

A process gives it one function per method: ``get(path)`` and, where it accepts them, ``post(path, body)``. Each
returns an :class:`Answer` (body, content type, status) or ``None`` for 404. Equivalent to what the workload model,
the alert webhook, the config-reloader and the NPD supervisor each answer at ``curl http://127.0.0.1:PORT/...``.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Mapping
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


def serve_synced(port: int, synced: threading.Event, pages: Mapping[str, Callable[[], Answer]]) -> LoopbackServer:
    """``/healthz`` (503 until ``synced`` is set: the process has listed what it watches) and each of ``pages``."""

    def answer(path: str) -> Answer | None:
        path = path.split("?", 1)[0].rstrip("/")
        if path == "/healthz":
            if synced.is_set():
                return OK
            return Answer("not synced with the API server yet\n", status=HTTPStatus.SERVICE_UNAVAILABLE)
        page = pages.get(path)
        return page() if page else None

    return LoopbackServer(port, answer).start()


def run_daemon(port: int, synced: threading.Event, stopping: threading.Event, work: Callable[[], Any],
               pages: Mapping[str, Callable[[], Answer]]) -> int:
    """A simulator's life: serve its pages, run ``work`` on a daemon thread, stop on SIGTERM/SIGINT (exit 0), or
    exit 3 when the port is taken."""
    try:
        server = serve_synced(port, synced, pages)
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 3
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    threading.Thread(target=work, name="work", daemon=True).start()
    while not stopping.is_set():
        stopping.wait(0.5)
    # Nothing to flush: every step is idempotent and the next start lists again, so exit at once (the threads are
    # daemons; server.shutdown() would wait for its poll interval first).
    server.server_close()
    return 0
