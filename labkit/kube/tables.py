"""Cluster state as pandas tables: the data layer under every plot and widget."""

from __future__ import annotations

import pandas as pd

from ..i18n import _
from ..settings import GPU_RESOURCE, MIG_RESOURCE_PREFIX, SHARED_GPU_RESOURCE
from .client import Lab, api_errors
from .quantity import quantity


def _ready(conditions: list | None) -> str:
    for cond in conditions or []:
        if cond.type == "Ready":
            return str(cond.status)
    return "Unknown"


def nodes_table(lab: Lab) -> pd.DataFrame:
    """One row per node: readiness, capacity, whole GPUs, GPU slices (MIG, time-sliced), zone.

    Same data as ``kubectl get nodes -o wide``.
    """
    with api_errors(_("listing nodes"), server=lab.server):
        nodes = lab.core.list_node().items
    rows = []
    for n in nodes:
        cap = n.status.capacity or {}
        labels = n.metadata.labels or {}
        # Whole GPUs apart from the slices the device plugin advertises for MIG or time-slicing.
        slices = sum(int(v) for k, v in cap.items() if k.startswith(MIG_RESOURCE_PREFIX) or k == SHARED_GPU_RESOURCE)
        rows.append({
            "node": n.metadata.name,
            "ready": _ready(n.status.conditions),
            "cpu": cap.get("cpu"),
            "memory": cap.get("memory"),
            "gpus": int(cap.get(GPU_RESOURCE, 0)),
            "gpu_slices": slices,
            "gpu_product": labels.get("nvidia.com/gpu.product", ""),
            "zone": labels.get("topology.kubernetes.io/zone", ""),
            "kubelet": n.status.node_info.kubelet_version if n.status.node_info else "",
        })
    return pd.DataFrame(rows).sort_values("node").reset_index(drop=True)


def pods_table(lab: Lab, namespace: str, *, label_selector: str | None = None) -> pd.DataFrame:
    """One row per pod: phase, readiness, node, restarts. Same data as ``kubectl get pods -o wide``."""
    with api_errors(_("listing pods in {namespace}").format(namespace=namespace), server=lab.server):
        pods = lab.core.list_namespaced_pod(namespace, label_selector=label_selector).items
    rows = []
    for p in pods:
        statuses = p.status.container_statuses or []
        rows.append({
            "pod": p.metadata.name,
            "phase": p.status.phase,
            "ready": f"{sum(1 for s in statuses if s.ready)}/{len(p.spec.containers)}",
            "restarts": sum(s.restart_count for s in statuses),
            "node": p.spec.node_name or "<none>",
            "image": ",".join(c.image for c in p.spec.containers),
        })
    cols = ["pod", "phase", "ready", "restarts", "node", "image"]
    return pd.DataFrame(rows, columns=cols).sort_values("pod").reset_index(drop=True)


def pod_usage_table(lab: Lab, namespace: str) -> pd.DataFrame:
    """CPU (millicores) and memory (MiB) per pod from metrics-server, as ``kubectl top pods`` shows."""
    from kubernetes import client as k8s

    with api_errors(_("reading pod metrics in {namespace}").format(namespace=namespace), server=lab.server):
        data = k8s.CustomObjectsApi(lab.api_client).list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", namespace, "pods")
    rows = []
    for item in data.get("items", []):
        cpu = sum(_millicores(c["usage"]["cpu"]) for c in item["containers"])
        mem = sum(_mib(c["usage"]["memory"]) for c in item["containers"])
        rows.append({"pod": item["metadata"]["name"], "cpu_m": cpu, "memory_mib": mem})
    return pd.DataFrame(rows, columns=["pod", "cpu_m", "memory_mib"]).sort_values("pod").reset_index(drop=True)


def _millicores(q: str) -> float:
    return quantity(q) * 1000


def _mib(q: str) -> float:
    return quantity(q) / 2**20
