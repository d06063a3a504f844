"""Record what happens in a namespace from watch events, as a pandas table (``kubectl get -w`` for a lesson).

Introduced in notebook 01_deployment_rollouts. ``labkit.display.figures`` draws these tables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from kubernetes import watch

from ..i18n import _
from .client import Lab, api_errors

# How long the last pass after stop() waits for an event already on its way.
_DRAIN_SECONDS = 0.5

COLUMNS = ["t", "kind", "event", "name", "revision", "phase", "ready", "restarts", "reason", "message", "object"]


def _pod_row(obj: dict[str, Any]) -> dict[str, Any]:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    labels = meta.get("labels") or {}
    waiting = next((s["state"]["waiting"].get("reason") for s in statuses if (s.get("state") or {}).get("waiting")),
                   None)
    return {"name": meta.get("name"),
            # Deployments label pods with their ReplicaSet's hash, StatefulSets with their revision's name.
            "revision": labels.get("pod-template-hash") or labels.get("controller-revision-hash"),
            "phase": "Terminating" if meta.get("deletionTimestamp") else status.get("phase"),
            "ready": bool(statuses) and all(s.get("ready") for s in statuses),
            "restarts": sum(s.get("restartCount", 0) for s in statuses),
            "reason": waiting, "message": None, "object": None}


def _replicaset_row(obj: dict[str, Any]) -> dict[str, Any]:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    return {"name": meta.get("name"),
            "revision": (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision"),
            "phase": None, "ready": status.get("readyReplicas", 0), "restarts": None,
            "reason": None, "message": (meta.get("labels") or {}).get("pod-template-hash"), "object": None}


def _event_row(obj: dict[str, Any]) -> dict[str, Any]:
    involved = obj.get("involvedObject") or {}
    return {"name": obj.get("metadata", {}).get("name"), "revision": None, "phase": obj.get("type"),
            "ready": None, "restarts": obj.get("count"), "reason": obj.get("reason"),
            "message": obj.get("message"), "object": f"{involved.get('kind', '').lower()}/{involved.get('name')}"}


_KINDS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "Pod": ("list_namespaced_pod", _pod_row),
    "ReplicaSet": ("list_namespaced_replica_set", _replicaset_row),
    "Event": ("list_namespaced_event", _event_row),
}


class Recorder:
    """Watches pods, ReplicaSets and events in one namespace in background threads, until stopped.

    Introduced in notebook 01_deployment_rollouts. What ``kubectl get pods,rs,events -w`` prints, kept as rows.
    Use as ``with lk.events.Recorder(lab, ns) as rec: ...``; ``rec.table()`` is then a DataFrame.
    """

    def __init__(self, lab: Lab, namespace: str, *, kinds: tuple[str, ...] = ("Pod", "ReplicaSet", "Event"),
                 max_seconds: float = 300.0):
        self.lab, self.namespace, self.kinds = lab, namespace, kinds
        # A recorder someone forgot to stop must not watch forever.
        self.max_seconds = max_seconds
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self.errors: list[str] = []

    def start(self) -> Recorder:
        self.started = time.monotonic()
        self._stop.clear()
        for kind in self.kinds:
            t = threading.Thread(target=self._watch, args=(kind,), daemon=True, name=f"labkit-recorder-{kind}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> Recorder:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []
        return self

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch(self, kind: str) -> None:
        method_name, to_row = _KINDS[kind]
        api = self.lab.apps if kind == "ReplicaSet" else self.lab.core
        method = getattr(api, method_name)
        rv: str | None = None
        while True:
            # After stop(), one last pass takes what the server sent before it: an event in flight when the
            # lesson's own wait saw the change must still be in the table (a scale-down's second deletion).
            last = self._stop.is_set() or time.monotonic() - self.started >= self.max_seconds
            w = watch.Watch()
            try:
                with api_errors(_("watching {kind}s in {namespace}").format(kind=kind.lower(),
                                                                            namespace=self.namespace),
                                server=self.lab.server):
                    if rv is None:
                        rv = self._list(kind, method, to_row)
                    # Short server-side timeouts so that stop() takes effect within about a second; the last pass
                    # ends at the first half second without news (a read timeout).
                    for ev in w.stream(method, self.namespace, resource_version=rv, timeout_seconds=1,
                                       _request_timeout=(5, _DRAIN_SECONDS) if last else 5):
                        obj = ev["raw_object"]
                        if ev["type"] == "ERROR":
                            rv = None  # 410 Gone: list again, then watch from there
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        self._add(kind, ev["type"], to_row(obj))
            except Exception as exc:  # noqa: BLE001 - a recorder reports, it does not crash the notebook
                if not last:
                    self.errors.append(f"{kind}: {exc}")
                    time.sleep(0.5)
            finally:
                w.stop()
            if last:
                return

    def _list(self, kind: str, method: Callable[..., Any], to_row: Callable[[dict[str, Any]], dict[str, Any]]) -> str:
        """What exists when recording starts, as LISTED rows at one instant; returns the list's resourceVersion."""
        data = self.lab.api_client.sanitize_for_serialization(method(self.namespace, _request_timeout=10))
        t = round(time.monotonic() - self.started, 2)
        for obj in data.get("items") or []:
            self._add(kind, "LISTED", to_row(obj), t=t)
        return data["metadata"]["resourceVersion"]

    def _add(self, kind: str, event: str, fields: dict[str, Any], *, t: float | None = None) -> None:
        t = round(time.monotonic() - self.started, 2) if t is None else t
        with self._lock:
            self._rows.append({"t": t, "kind": kind, "event": event, **fields})

    def table(self) -> pd.DataFrame:
        """Every event seen so far, in time order (seconds since start in column ``t``)."""
        with self._lock:
            rows = list(self._rows)
        return pd.DataFrame(rows, columns=COLUMNS).sort_values("t", kind="stable").reset_index(drop=True)


def revision_numbers(table: pd.DataFrame) -> dict[str, str]:
    """pod-template-hash -> Deployment revision number, from the ReplicaSet rows of a recording."""
    rs = table[(table.kind == "ReplicaSet") & table.revision.notna()]
    return {str(r.message): str(r.revision) for r in rs.itertuples()}


def ready_by_revision(table: pd.DataFrame) -> pd.DataFrame:
    """Ready pods per revision over time, replayed from the pod rows of a recording.

    Introduced in notebook 01_deployment_rollouts. Columns: t, revision, ready (count), total (pods).
    """
    names = revision_numbers(table)
    pods: dict[str, tuple[str, bool]] = {}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    # One sample per instant, after every row of that instant: the first list is one instant, not a ramp.
    for t, rows in table[table.kind == "Pod"].groupby("t", sort=True):
        for r in rows.itertuples():
            if r.event == "DELETED":
                pods.pop(r.name, None)
            else:
                revision = names.get(str(r.revision), str(r.revision))
                pods[r.name] = (revision, bool(r.ready) and r.phase != "Terminating")
        seen |= {rev for rev, _ in pods.values()}
        for rev in sorted(seen):
            out.append({"t": t, "revision": rev, "ready": sum(1 for v, ok in pods.values() if v == rev and ok),
                        "total": sum(1 for v, _ in pods.values() if v == rev)})
    return pd.DataFrame(out, columns=["t", "revision", "ready", "total"])


def min_ready_during(table: pd.DataFrame) -> int:
    """The fewest ready pods (all revisions together) at any moment of a recording."""
    per = ready_by_revision(table)
    return int(per.groupby("t")["ready"].sum().min()) if not per.empty else 0


def record_until(lab: Lab, namespace: str, done: Callable[[], bool], *, timeout: float = 60.0,
                 poll: float = 0.5) -> pd.DataFrame:
    """Record the namespace until ``done()`` is true or ``timeout`` seconds pass; return the table.

    Introduced in notebook 03_health_probes. The deadline always holds: a recording never hangs a notebook.
    """
    with Recorder(lab, namespace) as rec:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done():
            time.sleep(poll)
    return rec.table()
