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
from typing import Any

from .loopback_http import JSON, OK, Answer, LoopbackServer

log = logging.getLogger("labkit.sim.alert_webhook")
KEEP = 500


class Receiver(LoopbackServer):
    """Keeps the last ``KEEP`` notifications; ``GET /notifications`` lists them, ``GET /healthz`` answers ok."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.seq = 0
        self.received: deque[dict[str, Any]] = deque(maxlen=KEEP)
        super().__init__(port, self.answer, self.receive)

    def receive(self, path: str, body: bytes) -> Answer:
        try:
            notification = json.loads(body or b"{}")
        except ValueError:
            return Answer("not JSON\n", status=HTTPStatus.BAD_REQUEST)
        with self.lock:
            self.seq += 1
            self.received.append({"seq": self.seq, "received_at": time.time(), "path": path,
                                  "notification": notification})
        log.info("notification %s %s: %d alert(s)", notification.get("status"), notification.get("groupLabels"),
                 len(notification.get("alerts") or []))
        return OK

    def answer(self, path: str) -> Answer | None:
        if path == "/healthz":
            return OK
        if path == "/notifications":
            with self.lock:
                return Answer(json.dumps(list(self.received), indent=1), JSON)
        return None


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
