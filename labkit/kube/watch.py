"""List, then watch, for ever: the informer loop every long-running simulator needs, written once.

``for change in list_and_watch(core.list_pod_for_all_namespaces, plain=..., stopping=...)`` yields a ``LISTED`` change
with every object (a fresh list, which is also a resync), then each ``ADDED``/``MODIFIED``/``DELETED`` object; after
any error (the API server restarting, 410 Gone) a ``FAILED`` change, a short pause and a new list. It ends when
``stopping`` is set. Waits with a deadline (a lesson's ``wait_for``) live in :mod:`labkit.kube.wait`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("labkit.kube.watch")

Obj = dict[str, Any]
# One watch request runs this long before the loop lists again; a pause after an error, short so that a restarted API
# server is picked up at once.
WATCH_SECONDS = 30
RETRY_PAUSE_S = 1.0


@dataclass(frozen=True)
class Change:
    type: str                                   # LISTED, ADDED, MODIFIED, DELETED or FAILED
    obj: Obj | None = None                      # the object (ADDED, MODIFIED, DELETED)
    objects: list[Obj] = field(default_factory=list)  # every object (LISTED)
    error: Exception | None = None              # what went wrong (FAILED)


def list_and_watch(list_call: Callable[..., Any], *, plain: Callable[[Any], Obj], stopping: threading.Event,
                   what: str = "objects", watch_seconds: int = WATCH_SECONDS,
                   pause_s: float = RETRY_PAUSE_S) -> Iterator[Change]:
    """``kubectl get -A --watch`` for a process that runs for ever: see the module's docstring."""
    from kubernetes import watch

    failing = False
    while not stopping.is_set():
        try:
            listed = list_call()
            yield Change("LISTED", objects=[plain(i) for i in listed.items])
            if failing:
                log.info("%s watch: the API server answers again", what)
                failing = False
            stream = watch.Watch()
            for event in stream.stream(list_call, resource_version=listed.metadata.resource_version,
                                       timeout_seconds=watch_seconds, _request_timeout=watch_seconds + 10):
                if event["type"] == "ERROR":
                    break  # 410 Gone and friends: list again
                yield Change(event["type"], obj=event.get("raw_object") or plain(event["object"]))
                if stopping.is_set():
                    stream.stop()
        except Exception as exc:  # noqa: BLE001 -- API restarts, timeouts: pause briefly, then list again
            # Once per outage, not once a second while the API server is away.
            log.log(logging.DEBUG if failing else logging.WARNING, "%s watch interrupted (%s: %s); listing again "
                    "every %.0fs until the API server answers", what, type(exc).__name__, exc, pause_s)
            failing = True
            yield Change("FAILED", error=exc)
            stopping.wait(pause_s)
