"""Reading the cluster (part of :mod:`labkit.insight`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from .. import addons
from ..i18n import _
from ..kube.client import Lab, api_errors


@dataclass
class Snapshot:
    """What the engine reads, as plain dicts (``kubectl get ... -o json``), so it can be recorded and replayed."""

    namespace: str | None
    pods: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    replicasets: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    endpointslices: list[dict[str, Any]] = field(default_factory=list)
    hpas: list[dict[str, Any]] = field(default_factory=list)
    pvcs: list[dict[str, Any]] = field(default_factory=list)
    storageclasses: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    all_pods: list[dict[str, Any]] = field(default_factory=list)  # every namespace: what occupies the nodes
    node_events: list[dict[str, Any]] = field(default_factory=list)
    gpu_metrics: list[dict[str, Any]] = field(default_factory=list)  # {node, gpu, xid, line}
    gpu_source: str = ""
    jobs: list[dict[str, Any]] = field(default_factory=list)
    # Names and keys only (_names_and_keys): a snapshot is printed and recorded; a Secret's values never belong in it.
    configmaps: list[dict[str, Any]] = field(default_factory=list)
    secrets: list[dict[str, Any]] = field(default_factory=list)
    serviceaccounts: list[dict[str, Any]] = field(default_factory=list)
    taken_at: str = ""  # when it was read (ISO 8601): how long a state has lasted

    def to_json(self) -> str:
        return json.dumps(self.__dict__, default=str)

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return cls(**json.loads(text))


def _items(lab: Lab, api_version: str, kind: str, namespace: str | None, **kw: Any) -> list[dict[str, Any]]:
    res = lab.dynamic.resources.get(api_version=api_version, kind=kind)
    with api_errors(_("listing {kind}").format(kind=kind), server=lab.server):
        listing = res.get(namespace=namespace if res.namespaced else None, **kw)
    return lab.api_client.sanitize_for_serialization(listing.to_dict()).get("items") or []


XID_METRIC = "DCGM_FI_DEV_XID_ERRORS"


def gpu_metrics() -> tuple[list[dict[str, Any]], str]:
    """XID counters from the GPU exporter's /metrics where that add-on runs (dcgm-exporter's own names)."""
    url = addons.url("gpu-exporter")
    if not url:
        return [], ""
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 -- loopback
        text = resp.read().decode()
    rows, seen = [], set()
    for line in text.splitlines():
        if not line.startswith(XID_METRIC + "{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        value = float(line.rsplit(" ", 1)[1])
        key = (labels.get("Hostname"), labels.get("gpu"))
        if value > 0 and key not in seen:
            seen.add(key)
            rows.append({"node": labels.get("Hostname"), "gpu": labels.get("gpu"), "xid": int(value), "line": line})
    return rows, url


def _names_and_keys(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ConfigMaps, Secrets, ServiceAccounts as the rules need them: name, namespace, the keys of ``data`` with their
    values left out (what ``kubectl describe secret`` shows)."""
    return [{"metadata": {k: meta(o).get(k) for k in ("name", "namespace")},
             "data": dict.fromkeys([*(o.get("data") or {}), *(o.get("binaryData") or {})], "")} for o in items]


def snapshot(lab: Lab, namespace: str | None = None) -> Snapshot:
    """Read what :func:`analyze` needs from the live lab (``namespace=None``: every namespace)."""
    snap = Snapshot(namespace=namespace)
    snap.pods = _items(lab, "v1", "Pod", namespace)
    snap.events = _items(lab, "v1", "Event", namespace)
    snap.deployments = _items(lab, "apps/v1", "Deployment", namespace)
    snap.replicasets = _items(lab, "apps/v1", "ReplicaSet", namespace)
    snap.jobs = _items(lab, "batch/v1", "Job", namespace)
    snap.services = _items(lab, "v1", "Service", namespace)
    snap.endpointslices = _items(lab, "discovery.k8s.io/v1", "EndpointSlice", namespace)
    snap.hpas = _items(lab, "autoscaling/v2", "HorizontalPodAutoscaler", namespace)
    snap.pvcs = _items(lab, "v1", "PersistentVolumeClaim", namespace)
    snap.configmaps = _names_and_keys(_items(lab, "v1", "ConfigMap", namespace))
    snap.secrets = _names_and_keys(_items(lab, "v1", "Secret", namespace))
    snap.serviceaccounts = _names_and_keys(_items(lab, "v1", "ServiceAccount", namespace))
    snap.storageclasses = _items(lab, "storage.k8s.io/v1", "StorageClass", None)
    snap.nodes = _items(lab, "v1", "Node", None)
    snap.all_pods = snap.pods if namespace is None else _items(lab, "v1", "Pod", None)
    snap.node_events = _items(lab, "v1", "Event", None, field_selector="involvedObject.kind=Node")
    snap.taken_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with contextlib.suppress(OSError, ValueError):
        snap.gpu_metrics, snap.gpu_source = gpu_metrics()
    return snap


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}

