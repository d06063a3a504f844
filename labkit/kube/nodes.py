"""Nodes for notebooks, through the lab's client: readiness, cordon, taints, drain (``labkit up`` uses the lighter
``cluster.health``)."""

from __future__ import annotations

import time

from ..errors import WaitTimeout
from ..i18n import _
from .client import Lab, api_errors
from .objects import get, patch


def _is_ready(node: object) -> bool:
    conds = getattr(node.status, "conditions", None) or []  # type: ignore[attr-defined]
    return any(c.type == "Ready" and c.status == "True" for c in conds)


def wait_nodes_ready(lab: Lab, *, timeout: float = 60.0) -> int:
    """Block until every node reports Ready; return how many there are.

    Same as ``kubectl wait nodes --all --for=condition=Ready``.
    """
    deadline = time.monotonic() + timeout
    while True:
        with api_errors(_("listing nodes"), server=lab.server):
            nodes = lab.core.list_node().items
        not_ready = [n.metadata.name for n in nodes if not _is_ready(n)]
        if nodes and not not_ready:
            return len(nodes)
        if time.monotonic() >= deadline:
            raise WaitTimeout(_("nodes not Ready after {timeout:.0f}s: {nodes}").format(
                                  timeout=timeout, nodes=", ".join(not_ready) or _("no nodes registered")),
                              last_seen=not_ready, fix="kubectl describe nodes; labkit status")
        # Node status flips within a second on KWOK; polling keeps this simple and bounded.
        time.sleep(0.25)


def cordon(lab: Lab, node: str, *, unschedulable: bool = True) -> None:
    """``kubectl cordon NODE`` (``unschedulable=False``: ``kubectl uncordon NODE``)."""
    patch(lab, "Node", node, {"spec": {"unschedulable": unschedulable or None}})


def taint(lab: Lab, node: str, key: str, effect: str, value: str | None = None) -> None:
    """``kubectl taint nodes NODE KEY=VALUE:EFFECT`` (an existing taint with that key is replaced)."""
    taints = [t for t in _taints(lab, node) if t.get("key") != key]
    patch(lab, "Node", node, {"spec": {"taints": [*taints, {"key": key, "value": value, "effect": effect}]}},
          patch_type="merge")


def untaint(lab: Lab, node: str, key: str) -> None:
    """``kubectl taint nodes NODE KEY-`` (no error when the node or the taint is gone)."""
    taints = _taints(lab, node)
    if any(t.get("key") == key for t in taints):
        patch(lab, "Node", node, {"spec": {"taints": [t for t in taints if t.get("key") != key] or None}},
              patch_type="merge")


def _taints(lab: Lab, node: str) -> list[dict]:
    obj = get(lab, "Node", node, api_version="v1") or {}
    return (obj.get("spec") or {}).get("taints") or []


def drain(lab: Lab, node: str) -> list[str]:
    """Evict every pod on ``node`` that a controller recreates elsewhere; return their names.

    Same as ``kubectl drain NODE --ignore-daemonsets --delete-emptydir-data`` (after :func:`cordon`): an Eviction
    per pod, so PodDisruptionBudgets are honoured; DaemonSet pods stay, as with ``--ignore-daemonsets``.
    """
    with api_errors(_("listing pods on {node}").format(node=node), server=lab.server):
        pods = lab.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        # A namespace being deleted refuses Evictions (no new content) and takes its pods away by itself.
        going = {ns.metadata.name for ns in lab.core.list_namespace().items
                 if ns.status and ns.status.phase == "Terminating"}
    evicted = []
    for pod in pods:
        if any(o.kind == "DaemonSet" for o in pod.metadata.owner_references or []):
            continue
        if pod.metadata.deletion_timestamp or pod.metadata.namespace in going:  # already going
            continue
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod.metadata.name, "namespace": pod.metadata.namespace}}
        with api_errors(_("evicting {namespace}/{pod}").format(namespace=pod.metadata.namespace, pod=pod.metadata.name),
                        server=lab.server):
            lab.core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
        evicted.append(pod.metadata.name)
    return evicted
