"""The lab's storage provisioner: a default StorageClass ``standard`` and volumes as directories, as kind has them.

kind ships rancher's local-path-provisioner as its default class (``kubectl get storageclass`` there reads
``standard (default)  rancher.io/local-path  Delete  WaitForFirstConsumer``). That provisioner cannot run here: it
makes and removes each volume's directory with a helper pod, and the embedded cluster's pods run no containers.
This process stands in for it, under the same provisioner name and with the same protocol every external
provisioner follows (sig-storage-lib-external-provisioner), so the rest is the real cluster's work:

- the DefaultStorageClass admission plugin gives a claim without ``storageClassName`` the class ``standard``;
- the scheduler's VolumeBinding plugin picks a node for a WaitForFirstConsumer claim and writes it into the claim's
  ``volume.kubernetes.io/selected-node`` annotation;
- the PV controller (kube-controller-manager) marks a claim for provisioning with
  ``volume.kubernetes.io/storage-provisioner: rancher.io/local-path`` (and emits ``WaitForFirstConsumer`` and
  ``ExternalProvisioning`` events), binds the PersistentVolume made here to the claim, and turns it ``Released``
  when the claim goes;
- here: make the directory ``<root>/<node>/pvc-<uid>_<namespace>_<name>`` and the PV ``pvc-<uid>`` (hostPath, node
  affinity, ``pv.kubernetes.io/provisioned-by``), emit ``Provisioning`` / ``ProvisioningSucceeded`` /
  ``ProvisioningFailed`` on the claim; for a Released PV of ours with policy Delete remove the directory, then the PV.

Run as ``python -m labkit.sim.storage --kubeconfig K --root DIR --port P`` (the add-on ``local-path-provisioner``
starts it with the embedded cluster); ``/healthz`` and ``/metrics`` on 127.0.0.1:P. The Kubernetes client loads
inside :func:`main`, so importing this module costs nothing heavy; the functions above the daemon are pure (the unit
tests use them without a cluster).
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import logging
import queue
import shutil
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..kube.watch import list_and_watch
from .loopback_http import PROMETHEUS_TEXT, Answer, run_daemon

log = logging.getLogger("labkit.sim.storage")

Obj = dict[str, Any]

PROVISIONER = "rancher.io/local-path"
DEFAULT_CLASS = "standard"
# What the PV controller and the scheduler write on claims; what external provisioners write on their PVs.
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
# local-path-provisioner's own record of the node a volume lives on (kind's PVs carry it too).
ANN_LOCAL_PATH_NODE = "local.path.provisioner/selected-node"
NODE_AFFINITY_KEY = "kubernetes.io/hostname"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
# local-path volumes are one directory on one node: no sharing across nodes.
SUPPORTED_ACCESS_MODES = frozenset({"ReadWriteOnce", "ReadWriteOncePod"})

# How long one watch runs before the daemon lists again (each list is also a resync that retries what failed).
WATCH_SECONDS = 30
# Pause after an API error before listing again: short, so a restarted API server is picked up at once.
RETRY_PAUSE_S = 1.0
# Failed provisioning/deletion is retried with exponential back-off, as the upstream library does (its default
# threshold is 15 failures; local-path-provisioner keeps that).
BACKOFF_FIRST_S, BACKOFF_MAX_S, MAX_FAILURES = 1.0, 30.0, 15
# Every call the worker makes has a deadline: one hung request must not stall every other claim.
API_TIMEOUT_S = 10


class ProvisioningError(Exception):
    """Provisioning cannot go on for this claim now; the message becomes the ``ProvisioningFailed`` event."""


# --- pure logic: objects in, objects (or decisions) out -----------------------------------------------------------


def default_storage_class() -> Obj:
    """The class kind installs: ``kubectl get storageclass`` shows ``standard (default)``."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS, "annotations": {ANN_DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": WAIT_FOR_FIRST_CONSUMER,
        "allowVolumeExpansion": False,
    }


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _annotations(obj: Obj) -> dict[str, str]:
    return _meta(obj).get("annotations") or {}


def claim_key(claim: Obj) -> str:
    return f"{_meta(claim).get('namespace')}/{_meta(claim).get('name')}"


def volume_name(claim: Obj) -> str:
    """The PV's name for a claim: ``pvc-<claim uid>``, deterministic, so a restarted provisioner never makes two."""
    return f"pvc-{_meta(claim)['uid']}"


def volume_dir(root: Path, node: str, claim: Obj) -> Path:
    """Where the claim's data lives: ``<root>/<node>/pvc-<uid>_<namespace>_<name>`` (local-path's folder name)."""
    meta = _meta(claim)
    return Path(root) / node / f"{volume_name(claim)}_{meta['namespace']}_{meta['name']}"


def claim_provisioner(claim: Obj) -> str | None:
    """The provisioner the PV controller asked for on this claim (None until it asks)."""
    ann = _annotations(claim)
    return ann.get(ANN_STORAGE_PROVISIONER) or ann.get(ANN_BETA_STORAGE_PROVISIONER)


def wants_volume(claim: Obj, provisioner: str = PROVISIONER) -> bool:
    """The claim is unbound, alive, and the PV controller handed it to ``provisioner``: the class is still to check."""
    return (not (claim.get("spec") or {}).get("volumeName") and not _meta(claim).get("deletionTimestamp")
            and claim_provisioner(claim) == provisioner)


def waits_for_consumer(storage_class: Obj) -> bool:
    return storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER


def should_provision(claim: Obj, storage_class: Obj | None, provisioner: str = PROVISIONER) -> bool:
    """The upstream library's ``shouldProvision``: ours, unbound, and (WaitForFirstConsumer) a node is selected."""
    if storage_class is None or storage_class.get("provisioner") != provisioner or not wants_volume(claim, provisioner):
        return False
    return bool(_annotations(claim).get(ANN_SELECTED_NODE)) or not waits_for_consumer(storage_class)


def check_claim(claim: Obj, provisioner: str = PROVISIONER) -> None:
    """Raise :class:`ProvisioningError` with upstream's message for a claim local-path cannot serve."""
    spec = claim.get("spec") or {}
    if spec.get("volumeMode") == "Block":
        raise ProvisioningError(f"{provisioner} does not support block volume provisioning")
    if spec.get("selector"):
        raise ProvisioningError("claim.Spec.Selector is not supported")
    if any(mode not in SUPPORTED_ACCESS_MODES for mode in spec.get("accessModes") or []):
        raise ProvisioningError("NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes")
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        raise ProvisioningError("claim.Spec.Resources.Requests has no storage")


def node_ready(node: Obj) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _matches_topologies(node: Obj, storage_class: Obj) -> bool:
    """The class's allowedTopologies (any term; every expression of a term) admit the node."""
    terms = storage_class.get("allowedTopologies") or []
    labels = _meta(node).get("labels") or {}
    return not terms or any(
        all(labels.get(e.get("key")) in (e.get("values") or []) for e in term.get("matchLabelExpressions") or [])
        for term in terms)


def pick_node(nodes: Iterable[Obj], storage_class: Obj, volumes_per_node: dict[str, int] | None = None) -> str | None:
    """A node for an Immediate claim (no pod chose one): Ready, schedulable, untainted, allowed by the class.

    The one holding the fewest of our volumes wins, then the first by name, so volumes spread and tests can predict.
    """
    counts = volumes_per_node or {}
    candidates = [
        _meta(n)["name"] for n in nodes
        if node_ready(n) and not (n.get("spec") or {}).get("unschedulable")
        and not any(t.get("effect") in ("NoSchedule", "NoExecute") for t in (n.get("spec") or {}).get("taints") or [])
        and _matches_topologies(n, storage_class)
    ]
    return min(candidates, key=lambda name: (counts.get(name, 0), name)) if candidates else None


def build_volume(claim: Obj, storage_class: Obj, node: Obj, root: Path, provisioner: str = PROVISIONER) -> Obj:
    """The PersistentVolume for ``claim`` on ``node``, as local-path-provisioner and the library make it.

    ``claimRef`` names the claim with its uid, so the PV controller binds exactly this claim; the volume's
    directory is a hostPath (DirectoryOrCreate) that only ``node`` can reach, hence the node affinity.
    """
    meta, spec = _meta(claim), claim.get("spec") or {}
    node_name = _meta(node)["name"]
    affinity_value = (_meta(node).get("labels") or {}).get(NODE_AFFINITY_KEY, node_name)
    pv_spec: Obj = {
        "capacity": {"storage": spec["resources"]["requests"]["storage"]},
        "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
        "volumeMode": spec.get("volumeMode") or "Filesystem",
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
        "storageClassName": _meta(storage_class)["name"],
        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                     "name": meta["name"], "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion")},
        "hostPath": {"path": str(volume_dir(root, node_name, claim)), "type": "DirectoryOrCreate"},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": NODE_AFFINITY_KEY, "operator": "In", "values": [affinity_value]}]}]}},
    }
    if storage_class.get("mountOptions"):
        pv_spec["mountOptions"] = list(storage_class["mountOptions"])
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume_name(claim),
                     "annotations": {ANN_PROVISIONED_BY: provisioner, ANN_LOCAL_PATH_NODE: node_name}},
        "spec": pv_spec,
    }


def is_ours(volume: Obj, provisioner: str = PROVISIONER) -> bool:
    return _annotations(volume).get(ANN_PROVISIONED_BY) == provisioner


def reclaim_action(volume: Obj, provisioner: str = PROVISIONER) -> str | None:
    """What a PV of ours needs: ``"delete"`` (Released, policy Delete), ``"retain"`` (Released, Retain), else None.

    The library's ``shouldDelete``: a PV being deleted already is left alone, and so is anyone else's.
    """
    if not is_ours(volume, provisioner) or _meta(volume).get("deletionTimestamp"):
        return None
    if (volume.get("status") or {}).get("phase") != "Released":
        return None
    policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy")
    return "delete" if policy == "Delete" else "retain" if policy == "Retain" else None


def volume_path(volume: Obj, root: Path) -> Path | None:
    """The directory of a PV of ours, only when it lies inside ``root`` (nothing outside is ever removed)."""
    path = ((volume.get("spec") or {}).get("hostPath") or {}).get("path")
    if not path:
        return None
    resolved, base = Path(path).resolve(), Path(root).resolve()
    return resolved if resolved != base and resolved.is_relative_to(base) else None


def volume_node(volume: Obj) -> str | None:
    """The node a PV of ours lives on (our annotation, else its node affinity)."""
    if node := _annotations(volume).get(ANN_LOCAL_PATH_NODE):
        return node
    terms = ((((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
             .get("nodeSelectorTerms") or [])
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr.get("operator") == "In" and len(expr.get("values") or []) == 1:
                return expr["values"][0]
    return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def claim_event(claim: Obj, event_type: str, reason: str, message: str, component: str) -> Obj:
    """A core/v1 Event on the claim, shaped as client-go's event recorder writes it (``kubectl describe pvc``)."""
    meta = _meta(claim)
    now = _now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                           "name": meta["name"], "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "type": event_type,
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": "",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def provisioning_message(claim: Obj) -> str:
    return f'External provisioner is provisioning volume for claim "{claim_key(claim)}"'


def component_name(provisioner: str = PROVISIONER) -> str:
    """The events' source, as the library names it: ``<provisioner>_<host>_<uuid>``."""
    return f"{provisioner}_{socket.gethostname()}_{uuid.uuid4()}"


class Metrics:
    """The upstream library's counters (``controller_persistentvolume*_total``), by class; thread-safe."""

    NAMES = {
        "provisioned": ("controller_persistentvolumeclaim_provision_total",
                        "Total number of persistent volumes provisioned succesfully."),
        "provision_failed": ("controller_persistentvolumeclaim_provision_failed_total",
                             "Total number of persistent volume provision failed attempts."),
        "deleted": ("controller_persistentvolume_delete_total",
                    "Total number of persistent volumes deleted succesfully."),
        "delete_failed": ("controller_persistentvolume_delete_failed_total",
                          "Total number of persistent volume delete failed attempts."),
    }

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def inc(self, what: str, storage_class: str) -> None:
        with self._lock:
            self._counts[(what, storage_class)] += 1

    def get(self, what: str, storage_class: str = DEFAULT_CLASS) -> int:
        with self._lock:
            return self._counts[(what, storage_class)]

    def render(self) -> str:
        """Prometheus text format (0.0.4)."""
        with self._lock:
            counts = dict(self._counts)
        lines = []
        for what, (name, help_text) in self.NAMES.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            classes = sorted({c for (w, c) in counts if w == what}) or [DEFAULT_CLASS]
            lines += [f'{name}{{class="{c}"}} {counts.get((what, c), 0)}' for c in classes]
        return "\n".join(lines) + "\n"


# --- the daemon ---------------------------------------------------------------------------------------------------


class Provisioner:
    """List+watch claims and volumes; one worker provisions and reclaims, retrying failures with back-off.

    One worker, as the upstream library runs per object, so two events for one claim never race; state is the
    informer-like caches below, refreshed by every list (a list is also the resync).
    """

    def __init__(self, *, kubeconfig: str, root: Path, provisioner: str = PROVISIONER) -> None:
        from kubernetes import client

        from ..kube.client import api_client  # here: importing this module stays light

        # No silent urllib3 retries: a refused connection ends the watch at once, and the loop lists again.
        self.api_client = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.storage = client.StorageV1Api(self.api_client)
        self.root, self.provisioner = Path(root), provisioner
        self.component = component_name(provisioner)
        self.metrics = Metrics()
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self.claims: dict[str, Obj] = {}
        self.volumes: dict[str, Obj] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._delayed: list[tuple[float, tuple[str, str]]] = []
        self._failures: Counter[tuple[str, str]] = Counter()
        self._not_before: dict[tuple[str, str], float] = {}
        self._synced_kinds: set[str] = set()

    # -- API helpers
    def _plain(self, obj: Any) -> Obj:
        return self.api_client.sanitize_for_serialization(obj)

    def ensure_storage_class(self) -> None:
        """Create ``standard`` if absent (``kubectl apply`` of kind's class); an existing one is left as it is."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.storage.read_storage_class(DEFAULT_CLASS, _request_timeout=API_TIMEOUT_S)
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                self.storage.create_storage_class(default_storage_class(), _request_timeout=API_TIMEOUT_S)
                log.info("created StorageClass %s (default, %s)", DEFAULT_CLASS, self.provisioner)
            except ApiException as exc2:
                if exc2.status != 409:  # made meanwhile by another copy of us: fine
                    raise

    def _storage_class(self, name: str | None) -> Obj | None:
        from kubernetes.client.exceptions import ApiException

        if not name:
            return None
        try:
            return self._plain(self.storage.read_storage_class(name, _request_timeout=API_TIMEOUT_S))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _event(self, claim: Obj, event_type: str, reason: str, message: str) -> None:
        """Best effort, as client-go's recorder: a lost event must never stop provisioning."""
        try:
            self.core.create_namespaced_event(_meta(claim)["namespace"],
                                              claim_event(claim, event_type, reason, message, self.component),
                                              _request_timeout=API_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not record event %s on %s: %s", reason, claim_key(claim), exc)

    # -- work queue
    def enqueue(self, kind: str, key: str) -> None:
        self._queue.put((kind, key))

    def _retry_later(self, item: tuple[str, str]) -> None:
        with self._lock:
            self._failures[item] += 1
            failures = self._failures[item]
            if failures >= MAX_FAILURES:
                log.warning("giving up on %s %s after %d failures (a change to it starts over)", *item, failures)
                self._not_before[item] = float("inf")
                return
            due = time.monotonic() + min(BACKOFF_FIRST_S * 2 ** (failures - 1), BACKOFF_MAX_S)
            self._not_before[item] = due
            heapq.heappush(self._delayed, (due, item))

    def _forget(self, item: tuple[str, str]) -> None:
        """Success, or the object changed: no back-off any more."""
        with self._lock:
            self._failures.pop(item, None)
            self._not_before.pop(item, None)

    def _backing_off(self, item: tuple[str, str]) -> bool:
        with self._lock:
            return self._not_before.get(item, 0) > time.monotonic()

    def _next_item(self) -> tuple[tuple[str, str], bool] | None:
        """The next item and whether it is a due retry; None after a second without work."""
        with self._lock:
            if self._delayed and self._delayed[0][0] <= time.monotonic():
                return heapq.heappop(self._delayed)[1], True
            wait = min(1.0, self._delayed[0][0] - time.monotonic()) if self._delayed else 1.0
        try:
            return self._queue.get(timeout=max(wait, 0.01)), False
        except queue.Empty:
            return None

    def work(self) -> None:
        while not self.stopping.is_set():
            got = self._next_item()
            if got is None:
                continue
            item, retry = got
            # A resync must not cut a back-off short (a change to the object does: see _list_watch); the due retry
            # itself comes from the heap.
            if not retry and self._backing_off(item):
                continue
            try:
                done = self.sync_claim(item[1]) if item[0] == "claim" else self.sync_volume(item[1])
            except Exception as exc:  # noqa: BLE001 -- an API error on one object must not stop the others
                log.warning("%s %s: %s: %s", item[0], item[1], type(exc).__name__, exc)
                done = False
            if done:
                self._forget(item)
            else:
                self._retry_later(item)

    # -- provisioning
    def sync_claim(self, key: str) -> bool:
        """Provision a volume for the claim when it needs one; True when nothing is left to do."""
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            claim = self.claims.get(key)
        if claim is None or not wants_volume(claim, self.provisioner):
            return True
        class_name = (claim.get("spec") or {}).get("storageClassName")
        storage_class = self._storage_class(class_name)
        if not should_provision(claim, storage_class, self.provisioner):
            return True
        assert storage_class is not None
        name = volume_name(claim)
        try:
            existing = self._plain(self.core.read_persistent_volume(name, _request_timeout=API_TIMEOUT_S))
        except ApiException as exc:
            if exc.status != 404:
                raise
            existing = None
        if existing is not None:  # made before a restart, or by the previous pass: never twice
            if (path := volume_path(existing, self.root)) is not None:
                path.mkdir(parents=True, exist_ok=True)
            return True
        self._event(claim, "Normal", "Provisioning", provisioning_message(claim))
        try:
            check_claim(claim, self.provisioner)
            node = self._node_for(claim, storage_class)
            volume = build_volume(claim, storage_class, node, self.root, self.provisioner)
            Path(volume["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
        except (ProvisioningError, OSError) as exc:
            self.metrics.inc("provision_failed", _meta(storage_class)["name"])
            self._event(claim, "Warning", "ProvisioningFailed", str(exc))
            log.info("provisioning %s failed: %s", key, exc)
            return False
        try:
            self.core.create_persistent_volume(volume, _request_timeout=API_TIMEOUT_S)
        except ApiException as exc:
            if exc.status != 409:
                self.metrics.inc("provision_failed", _meta(storage_class)["name"])
                self._event(claim, "Warning", "ProvisioningFailed",
                            f"Error creating provisioned PV object for claim {key}: {exc.reason}")
                raise
        self.metrics.inc("provisioned", _meta(storage_class)["name"])
        self._event(claim, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}")
        log.info("provisioned %s for claim %s at %s:%s", name, key, _meta(node)["name"],
                 volume["spec"]["hostPath"]["path"])
        return True

    def _node_for(self, claim: Obj, storage_class: Obj) -> Obj:
        """The selected node (WaitForFirstConsumer), or one picked here for an Immediate class."""
        from kubernetes.client.exceptions import ApiException

        selected = _annotations(claim).get(ANN_SELECTED_NODE)
        if selected:
            try:
                return self._plain(self.core.read_node(selected, _request_timeout=API_TIMEOUT_S))
            except ApiException as exc:
                raise ProvisioningError(f"failed to get target node: nodes \"{selected}\" "
                                        f"{'not found' if exc.status == 404 else exc.reason}") from exc
        nodes = [self._plain(n) for n in self.core.list_node(_request_timeout=API_TIMEOUT_S).items]
        with self._lock:
            counts = Counter(volume_node(v) for v in self.volumes.values() if is_ours(v, self.provisioner))
        name = pick_node(nodes, storage_class, dict(counts))
        if name is None:
            raise ProvisioningError("configuration error, no node was specified and no Ready schedulable node "
                                    "matches the class")
        return next(n for n in nodes if _meta(n)["name"] == name)

    # -- reclaiming
    def sync_volume(self, name: str) -> bool:
        """Reclaim a Released PV of ours: policy Delete removes the directory, then the PV; Retain keeps both."""
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            volume = self.volumes.get(name)
        if volume is None or reclaim_action(volume, self.provisioner) != "delete":
            return True
        storage_class = (volume.get("spec") or {}).get("storageClassName") or ""
        path = volume_path(volume, self.root)
        try:
            if path is None:
                log.warning("PV %s: its hostPath is not under %s; deleting the PV, leaving the files", name, self.root)
            elif path.exists():
                shutil.rmtree(path)
            self.core.delete_persistent_volume(name, _request_timeout=API_TIMEOUT_S)
        except ApiException as exc:
            if exc.status == 404:
                return True
            self.metrics.inc("delete_failed", storage_class)
            raise
        except OSError as exc:
            self.metrics.inc("delete_failed", storage_class)
            log.warning("PV %s: removing %s failed: %s", name, path, exc)
            return False
        self.metrics.inc("deleted", storage_class)
        log.info("deleted %s and its directory %s", name, path)
        return True

    # -- list + watch
    def _list_watch(self, kind: str, list_call: Callable[..., Any], store: dict[str, Obj],
                    key_of: Callable[[Obj], str]) -> None:
        """Keep ``store`` in step with the API (:func:`labkit.kube.watch.list_and_watch`), queueing what changes."""
        for change in list_and_watch(list_call, plain=self._plain, stopping=self.stopping, what=kind,
                                     watch_seconds=WATCH_SECONDS, pause_s=RETRY_PAUSE_S):
            if change.type == "FAILED":
                with self._lock:
                    self.synced.clear()
                    self._synced_kinds.discard(kind)
            elif change.type == "LISTED":
                fresh = {key_of(o): o for o in change.objects}
                with self._lock:
                    store.clear()
                    store.update(fresh)
                    self._synced_kinds.add(kind)
                    if self._synced_kinds >= {"claim", "volume"}:
                        self.synced.set()
                for key in fresh:
                    self.enqueue(kind, key)
            else:
                assert change.obj is not None
                key = key_of(change.obj)
                with self._lock:
                    if change.type == "DELETED":
                        store.pop(key, None)
                    else:
                        store[key] = change.obj
                self._forget((kind, key))  # the object changed: what failed before may work now
                self.enqueue(kind, key)

    def run(self) -> list[threading.Thread]:
        """Start the worker and both watches (daemon threads); the class first, retried until the API answers."""
        while not self.stopping.is_set():
            try:
                self.ensure_storage_class()
                break
            except Exception as exc:  # noqa: BLE001 -- the API server may still be starting
                log.warning("cannot ensure StorageClass %s yet (%s); retrying", DEFAULT_CLASS, exc)
                self.stopping.wait(RETRY_PAUSE_S)
        threads = [
            threading.Thread(target=self.work, name="worker", daemon=True),
            threading.Thread(target=self._list_watch, name="claims", daemon=True,
                             args=("claim", self.core.list_persistent_volume_claim_for_all_namespaces, self.claims,
                                   claim_key)),
            threading.Thread(target=self._list_watch, name="volumes", daemon=True,
                             args=("volume", self.core.list_persistent_volume, self.volumes,
                                   lambda o: _meta(o)["name"])),
        ]
        for t in threads:
            t.start()
        return threads

    def stop(self, *_args: object) -> None:
        self.stopping.set()


def pages(provisioner: Provisioner) -> dict[str, Callable[[], Answer]]:
    """What it serves besides ``/healthz``: ``/metrics``."""
    return {"/metrics": lambda: Answer(provisioner.metrics.render(), PROMETHEUS_TEXT)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.sim.storage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", type=Path, required=True, help="folder holding <node>/<volume> directories")
    parser.add_argument("--port", type=int, required=True, help="/healthz and /metrics on 127.0.0.1")
    parser.add_argument("--provisioner", default=PROVISIONER, help="the name classes refer to (kind's by default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.root.mkdir(parents=True, exist_ok=True)
    provisioner = Provisioner(kubeconfig=args.kubeconfig, root=args.root.resolve(), provisioner=args.provisioner)
    log.info("provisioner %s: volumes under %s; /healthz and /metrics on 127.0.0.1:%d", args.provisioner,
             args.root, args.port)
    return run_daemon(args.port, provisioner.synced, provisioner.stopping, provisioner.run, pages(provisioner))

if __name__ == "__main__":
    raise SystemExit(main())
