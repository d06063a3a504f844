"""Container logs of the simulated pods: where they live, their format, and the request lines of the workload model.

No container engine runs on the embedded cluster. Each container start's log lives where a kubelet keeps it (under
``<state>/pod-logs``, standing for a node's ``/var/log``):

- ``pods/<namespace>_<pod>_<uid>/<container>/<restartCount>.log``: one file per container start, in the CRI log
  format (``2026-11-29T10:00:00.123456789Z stdout F <line>``), as containerd writes it;
- ``containers/<pod>_<namespace>_<container>-<id>.log``: a symlink to it, named as the kubelet names them (where
  node-level agents such as vlagent look).

Two writers share these files, each for its own lines:

- labkit's kubelet process (:mod:`labkit.sim.runtime`) writes what the container itself prints: a busybox script's
  real output, an image's start-up lines (nginx's entrypoint), and KWOK's ``Logs`` object of each pod (``logsFile``
  the current start's file, ``previousLogsFile`` the one before the last restart), which serves them to
  ``kubectl logs`` (``-c``, ``-f``, ``--previous``, ``--since``, ``--tail``, ``--timestamps``, ``-l``);
- the workload model (:mod:`labkit.sim.workload`, a lesson add-on) calls :class:`PodLogs` every tick: a serving
  container (the first one of a pod the model sends requests to) gets one JSON line per request it served
  (``level``, ``msg``, ``request_id``, ``method``, ``path``, ``status``, ``duration_ms``, ``service``): as many
  lines as ``http_requests_total`` counts (its integer part), so logs and metrics agree. The pod annotation
  ``workload.labkit.io/error-rate`` (a fraction, e.g. ``"0.2"``) makes that share of its requests fail:
  ``level: error``, ``status: 500`` and the message of ``workload.labkit.io/error-message``; they are counted in
  ``http_request_errors_total``. A request the container forwards to another Service (a container env value
  ``http://SERVICE`` as an app is told where its backend is, or its ``workload.labkit.io/calls`` annotation:
  :mod:`labkit.sim.calls`) carries the same ``request_id`` there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..paths import state_dir
from .calls import calls_of

log = logging.getLogger("labkit.sim.pod_logs")

ERROR_RATE_ANNOTATION = "workload.labkit.io/error-rate"
ERROR_MESSAGE_ANNOTATION = "workload.labkit.io/error-message"
DEFAULT_ERROR_MESSAGE = "upstream request failed"
LOGS_MANAGED_BY = "labkit-workload-model"
# A client loop whose Service has no pod retries after its sleep; wget's error, about once a second here.
CLIENT_RETRY_S = 1.0
# At most this many answers a tick in a client's log (the HPA walkthrough's loop sleeps 0.01 s).
CLIENT_MAX_PER_TICK = 500


def log_root() -> Path:
    """Where the simulated pods' logs live (``<state>/pod-logs``, a node's ``/var/log`` for every node)."""
    return state_dir() / "pod-logs"


def containers_dir() -> Path:
    """The kubelet's ``/var/log/containers``: one symlink per container, named for the agents that read them."""
    return log_root() / "containers"


def container_log(namespace: str, pod: str, uid: str, container: str, restart: int) -> Path:
    """``/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restartCount>.log``."""
    return log_root() / "pods" / f"{namespace}_{pod}_{uid}" / container / f"{restart}.log"


def current_log(namespace: str, pod: str, uid: str, container: str, *, previous: bool = False) -> Path:
    """``current.log`` (or ``previous.log``): a symlink to the running (or the last ended) container start's file;
    KWOK's Logs object names these, so it never changes while the files behind them do."""
    return container_log(namespace, pod, uid, container, 0).with_name("previous.log" if previous else "current.log")


def point_link(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target`` in one step (readers never see it missing)."""
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def link_container_log(root: Path, namespace: str, pod: str, uid: str, container: str, restart: int,
                       cid: str) -> Path:
    """The container start's file and its ``/var/log/containers`` symlink (idempotent); the file's path."""
    path = container_log(namespace, pod, uid, container, restart)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    link = root / "containers" / f"{pod}_{namespace}_{container}-{cid}.log"
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(path, link)
    except FileExistsError:
        pass
    return path


def point_current(namespace: str, pod: str, uid: str, container: str, restart: int) -> None:
    """``current.log`` -> this start's file, ``previous.log`` -> the one before (as soon as it runs)."""
    point_link(current_log(namespace, pod, uid, container), container_log(namespace, pod, uid, container, restart))
    if restart > 0:
        point_link(current_log(namespace, pod, uid, container, previous=True),
                   container_log(namespace, pod, uid, container, restart - 1))


def predicted_container_id(uid: str, container: str, restart: int) -> str:
    """The ID KWOK will give a container start (labkit's Stages: sha256 of ``UID/NAME/RESTARTCOUNT``)."""
    return hashlib.sha256(f"{uid}/{container}/{restart}".encode()).hexdigest()


def cri_line(at: float, stream: str, message: str) -> str:
    """One line in the CRI log format: RFC 3339 time with nanoseconds, stream, ``F`` (a full line), the message."""
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    return f"{stamp} {stream} F {message}\n"


def parse_cri(line: str) -> tuple[str, str, str]:
    """``(time, stream, message)`` of one CRI log line."""
    stamp, stream, _tag, message = line.rstrip("\n").split(" ", 3)
    return stamp, stream, message


def is_error(k: int, rate: float) -> bool:
    """Whether the ``k``-th request (1-based) of a pod failing at ``rate`` fails: spread evenly, exactly
    ``floor(n x rate)`` of the first ``n``."""
    return rate > 0 and math.floor(k * rate) > math.floor((k - 1) * rate)


@dataclass
class Run:
    """One start of one container and its file."""

    namespace: str
    pod: str
    uid: str
    container: str
    restart: int
    container_id: str
    started: float

    @property
    def path(self) -> Path:
        return container_log(self.namespace, self.pod, self.uid, self.container, self.restart)

    def write(self, lines: Iterable[tuple[float, str, str]]) -> None:
        text = "".join(cri_line(at, stream, msg) for at, stream, msg in lines)
        if text:
            with self.path.open("a") as f:
                f.write(text)


@dataclass(frozen=True)
class ClientAnswer:
    """A client loop (``while sleep T; do wget -q -O- http://svc; done``): its requests per second, and the body each
    answer prints (None: no pod answers, and wget says so)."""

    namespace: str
    pod: str
    container: str
    rps: float
    body: str | None
    service_ip: str  # where wget connects (the Service's cluster IP; its name when there is no such Service)


def status_time(value: str | None) -> float | None:
    """A status timestamp (RFC 3339, ``...Z``) as seconds since the epoch; None for none."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def container_id(cs: Mapping[str, Any]) -> str:
    """A container status's ID without its runtime prefix (``kwok://``, ``containerd://``)."""
    return str(cs.get("containerID") or "").split("://", 1)[-1]


def logs_object(pod: Mapping[str, Any], runs: Mapping[str, Run]) -> dict[str, Any]:
    """KWOK's ``Logs`` for one pod: each container's current file and, after a restart, the previous one."""
    meta = pod["metadata"]
    logs = []
    for name, run in sorted(runs.items()):
        logs.append({"containers": [name], "logsFile": str(current_log(run.namespace, run.pod, run.uid, name)),
                     "previousLogsFile": str(current_log(run.namespace, run.pod, run.uid, name, previous=True)),
                     "follow": True})
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "labels": {"app.kubernetes.io/managed-by": LOGS_MANAGED_BY},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                              "uid": meta["uid"]}]},
            "spec": {"logs": logs}}


class PodLogs:
    """Writes every simulated container's log, tick by tick, from what the workload model decided."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or log_root()
        self.runs: dict[tuple[str, str, str], Run] = {}
        self.logged: dict[tuple[str, str], int] = {}  # (namespace, pod) -> requests logged (this model run)
        self.errors: dict[tuple[str, str], int] = {}  # (namespace, pod) -> failed requests logged
        self.service: dict[tuple[str, str], str] = {}
        # request ids a caller passed on, waiting for the Service that answers them: (namespace, service) -> ids
        self.forwarded: dict[tuple[str, str], deque[str]] = {}
        self.client_due: dict[tuple[str, str], float] = {}  # client loop -> the fraction of a request not written yet

    # --- containers: starts, script output, crashes ---------------------------------------------------------

    def _link(self, namespace: str, pod: str, uid: str, container: str, restart: int, cid: str) -> Path:
        return link_container_log(self.root, namespace, pod, uid, container, restart, cid)

    def prepare(self, pod: Mapping[str, Any]) -> None:
        """Create the files of the container starts KWOK is about to report, before it reports them: a runtime
        creates a container's log file before the kubelet says it runs, and node agents (vlagent) that look for the
        file when the pod's status names the container skip one that is not there yet."""
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or not meta.get("uid"):
            return
        statuses = {cs["name"]: cs for cs in (pod.get("status") or {}).get("containerStatuses") or []}
        for c in (pod.get("spec") or {}).get("containers") or []:
            cs = statuses.get(c["name"]) or {}
            restart = int(cs.get("restartCount") or 0) + (1 if cs and not (cs.get("state") or {}).get("running")
                                                         and cs.get("containerID") else 0)
            self._link(meta["namespace"], meta["name"], meta["uid"], c["name"], restart,
                       predicted_container_id(meta["uid"], c["name"], restart))
            if (cs.get("state") or {}).get("running") and cs.get("containerID"):
                self._point_current(meta["namespace"], meta["name"], meta["uid"], c["name"],
                                    int(cs.get("restartCount") or 0))

    def _point_current(self, namespace: str, pod: str, uid: str, container: str, restart: int) -> None:
        point_current(namespace, pod, uid, container, restart)

    def watch(self, core: Any) -> threading.Thread:
        """Call :meth:`prepare` on every pod event, as they come (the model's tick is a second apart)."""
        def loop() -> None:
            from kubernetes import watch

            while True:
                try:
                    for event in watch.Watch().stream(core.list_pod_for_all_namespaces, timeout_seconds=300):
                        self.prepare(core.api_client.sanitize_for_serialization(event["object"]))
                except Exception as exc:  # the API server restarting, a 410: list and watch again
                    log.warning("pod watch for container logs: %s", exc)
                    threading.Event().wait(1.0)

        thread = threading.Thread(target=loop, name="pod-logs-watch", daemon=True)
        thread.start()
        return thread

    def observe(self, pods: Iterable[Mapping[str, Any]], now: float) -> None:
        """Follow container starts and restarts: the file each container's request lines go to."""
        seen = set()
        for pod in pods:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                key = (meta["namespace"], meta["name"], cs["name"])
                seen.add(key)
                run = self.runs.get(key)
                cid, running = container_id(cs), (cs.get("state") or {}).get("running")
                if not cid or not running or (run is not None and run.container_id == cid):
                    continue
                run = Run(meta["namespace"], meta["name"], meta["uid"], cs["name"], int(cs.get("restartCount") or 0),
                          cid, status_time(running.get("startedAt")) or now)
                self._link(run.namespace, run.pod, run.uid, run.container, run.restart, cid)
                self._point_current(run.namespace, run.pod, run.uid, run.container, run.restart)
                self.runs[key] = run
        for key in [k for k in self.runs if k not in seen]:
            del self.runs[key]

    # --- requests: one line per request the metrics count -----------------------------------------------------

    def requests(self, served: Mapping[tuple[str, str], tuple[str, float, float]],
                 pods: Mapping[tuple[str, str], Mapping[str, Any]], now: float, dt: float) -> None:
        """Write the access lines of every request served since the last tick.

        ``served``: (namespace, pod) -> (service, requests so far as ``http_requests_total`` says, mean latency s).
        """
        calls: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for key, (service, total, latency) in sorted(served.items()):
            pod = pods.get(key)
            first = ((pod or {}).get("spec", {}).get("containers") or [{}])[0].get("name")
            run = self.runs.get((*key, first)) if first else None
            if pod is None or run is None:
                continue  # not started yet as far as its log goes: its lines come next tick
            annotations = pod["metadata"].get("annotations") or {}
            rate = min(1.0, max(0.0, float(annotations.get(ERROR_RATE_ANNOTATION) or 0)))
            message = annotations.get(ERROR_MESSAGE_ANNOTATION) or DEFAULT_ERROR_MESSAGE
            calls[key] = calls_of(pod)
            self.service[key] = service
            done = self.logged.get(key, 0)
            target = math.floor(total + 1e-9)
            queue = self.forwarded.get((key[0], service))
            lines = []
            for i, k in enumerate(range(done + 1, target + 1)):
                at = now - dt + dt * (i + 1) / max(1, target - done)
                rid = queue.popleft() if queue else secrets.token_hex(8)
                failed = is_error(k, rate)
                record = {"level": "error" if failed else "info",
                          "msg": message if failed else "request served",
                          "request_id": rid, "method": "GET", "path": "/", "status": 500 if failed else 200,
                          "duration_ms": round(latency * 1000, 1), "service": service}
                for target_svc in calls[key]:
                    self.forwarded.setdefault(target_svc, deque(maxlen=10_000)).append(rid)
                    record.setdefault("upstream", f"http://{target_svc[1]}.{target_svc[0]}")
                lines.append((at, "stderr" if failed else "stdout", json.dumps(record)))
                self.errors[key] = self.errors.get(key, 0) + int(failed)
            run.write(lines)
            self.logged[key] = max(done, target)
        for key in [k for k in self.logged if k not in served]:
            self.logged.pop(key, None)
            self.errors.pop(key, None)
            self.service.pop(key, None)

    def client_output(self, answers: Iterable[ClientAnswer], now: float, dt: float) -> None:
        """Write what each client loop's ``wget -q -O-`` printed since the last tick: the bodies it got, or wget's
        error when no pod answers. A body without a final newline runs on (``OK!OK!OK!``) until the tick's line."""
        for a in answers:
            run = self.runs.get((a.namespace, a.pod, a.container))
            if run is None:
                continue
            key = (a.namespace, a.pod)
            owed = self.client_due.get(key, 0.0) + (a.rps if a.body is not None else 1.0 / CLIENT_RETRY_S) * dt
            n = min(int(owed), CLIENT_MAX_PER_TICK)
            self.client_due[key] = owed - int(owed)
            if n <= 0:
                continue
            if a.body is None:
                line = (f"wget: can't connect to remote host ({a.service_ip}): Connection refused"
                        if a.service_ip.replace(".", "").isdigit() else f"wget: bad address '{a.service_ip}'")
                run.write([(now, "stderr", line)] * n)
            elif a.body.endswith("\n"):
                run.write([(now, "stdout", line) for _ in range(n) for line in a.body.splitlines()])
            else:
                run.write([(now, "stdout", a.body * n)])

    def render_error_metrics(self) -> str:
        """``http_request_errors_total``: the failed requests the logs record, per pod (Prometheus text format)."""
        lines = ["# HELP http_request_errors_total Requests the pod answered with an error (logged at level error).",
                 "# TYPE http_request_errors_total counter"]
        for (ns, pod), n in sorted(self.errors.items()):
            lines.append(f'http_request_errors_total{{namespace="{ns}",pod="{pod}",'
                         f'service="{self.service.get((ns, pod), "")}"}} {n}')
        return "\n".join(lines) + "\n"
