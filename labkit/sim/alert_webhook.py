"""A webhook receiver for Alertmanager: where the lab's alerts arrive (a stand-in for chat or a pager).

Alertmanager's ``webhook_configs`` POST each notification as JSON (``version: "4"``, ``status``, ``groupLabels``,
``alerts``, ...) to a URL. This receiver keeps the last notifications in memory and lists them, oldest first, at
``GET /notifications`` (``curl http://127.0.0.1:PORT/notifications``), each with the time it arrived, so lesson 07
shows an alert arriving. Run as ``python -m labkit.sim.alert_webhook --port P --state DIR`` (the ``alert-webhook``
add-on); binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("labkit.sim.alert_webhook")
KEEP = 500


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # name fixed by http.server
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_error(HTTPStatus.BAD_REQUEST, "not JSON")
            return
        with self.server.lock:
            self.server.seq += 1
            self.server.received.append({"seq": self.server.seq, "received_at": time.time(), "path": self.path,
                                         "notification": body})
        log.info("notification %s %s: %d alert(s)", body.get("status"), body.get("groupLabels"),
                 len(body.get("alerts") or []))
        self._answer("ok\n", "text/plain")

    def do_GET(self) -> None:  # name fixed by http.server
        if self.path == "/healthz":
            self._answer("ok\n", "text/plain")
        elif self.path == "/notifications":
            with self.server.lock:
                self._answer(json.dumps(list(self.server.received), indent=1), "application/json")
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _answer(self, body: str, kind: str) -> None:
        data = body.encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # signature fixed by http.server
        pass


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.seq = 0
        self.received: deque[dict[str, Any]] = deque(maxlen=KEEP)
        super().__init__(("127.0.0.1", port), _Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    # The add-on's folder: unused, but it names the process as this lab's (labkit down finds it).
    parser.add_argument("--state", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    receiver = Receiver(args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=receiver.shutdown).start())
    log.info("alert webhook receiver on http://127.0.0.1:%d (POST anything, GET /notifications)", args.port)
    receiver.serve_forever()


if __name__ == "__main__":
    main()
