"""Rules: nodes (part of :mod:`labkit.insight`)."""

from __future__ import annotations

from typing import Any

from ..i18n import _
from .findings import NPD_STANDARD, Evidence, Finding
from .objects import event_evidence, live
from .snapshot import XID_METRIC, Snapshot, meta


def _scope_pods_on(snap: Snapshot, node: str) -> list[dict[str, Any]]:
    return [p for p in snap.pods if (p.get("spec") or {}).get("nodeName") == node and live(p)]


def _workload_pods_on(snap: Snapshot, node: str) -> list[dict[str, Any]]:
    return [p for p in snap.all_pods if (p.get("spec") or {}).get("nodeName") == node and live(p)
            and not any(r.get("kind") == "DaemonSet" for r in meta(p).get("ownerReferences") or [])]


def _node_in_scope(snap: Snapshot, node: dict[str, Any]) -> bool:
    """A sick node matters while it runs the scope's pods (or, for the whole cluster, while it takes or holds work)."""
    name = meta(node)["name"]
    if snap.namespace:
        return bool(_scope_pods_on(snap, name))
    return not (node.get("spec") or {}).get("unschedulable") or bool(_workload_pods_on(snap, name))


def _drain(snap: Snapshot, node: str) -> str:
    """``kubectl drain``; with ``--force`` only when pods without a controller run there: drain refuses them
    otherwise, and on a node that has to go they are lost either way (nothing recreates them)."""
    bare = [p for p in _workload_pods_on(snap, node)
            if not any(r.get("controller") for r in meta(p).get("ownerReferences") or [])]
    return f"kubectl drain {node} --ignore-daemonsets --delete-emptydir-data" + (" --force" if bare else "")


def _pods_line(snap: Snapshot, node: str) -> Evidence:
    pods = _scope_pods_on(snap, node) if snap.namespace else _workload_pods_on(snap, node)
    names = ", ".join(f"{meta(p)['namespace']}/{meta(p)['name']}" for p in pods[:6]) or _("none")
    return Evidence("pods", _("pods on {node}: {pods}").format(node=node, pods=names),
                    f"kubectl get pods -A -o wide --field-selector spec.nodeName={node}")


def node_findings(snap: Snapshot) -> list[Finding]:
    found = []
    for node in snap.nodes:
        if not _node_in_scope(snap, node):
            continue
        name = meta(node)["name"]
        for c in (node.get("status") or {}).get("conditions") or []:
            ctype, status = c.get("type"), c.get("status")
            if ctype == "Ready" and status != "True":
                code = "NodeNotReady"
            elif ctype in NPD_STANDARD - {"Ready"} and status == "True":
                code = "NodePressure"
            elif ctype not in NPD_STANDARD and status == "True":
                code = "NodeProblem"
            else:
                continue
            ev = [Evidence("node condition",
                           f"{name}: {ctype}={status} {c.get('reason')}: {c.get('message', '')[:200]}",
                           f"kubectl describe node {name}   # Conditions")]
            ev += [event_evidence(e, None) for e in snap.node_events
                   if (e.get("involvedObject") or {}).get("name") == name and e.get("reason") == c.get("reason")][-1:]
            ev.append(_pods_line(snap, name))
            found.append(Finding(code, f"node/{name}", snap.namespace or "", _(
                "node {node} reports {condition} ({reason}); its pods are at risk: drain it (it is cordoned first), "
                "repair or reboot it, then `kubectl uncordon {node}`").format(node=name, condition=ctype,
                                                                             reason=c.get("reason")),
                                 ev, _drain(snap, name),
                                 queries=[(_("NPD's gauge"), f'problem_gauge{{type="{ctype}"}} > 0')]
                                 if code == "NodeProblem" else []))
    nodes = {meta(n)["name"]: n for n in snap.nodes}
    by_node: dict[str, list[dict[str, Any]]] = {}
    for row in snap.gpu_metrics:
        by_node.setdefault(row["node"], []).append(row)
    for node_name, rows in sorted(by_node.items()):
        node = nodes.get(node_name)
        if node is None or not _node_in_scope(snap, node):
            continue
        ev = [Evidence("dcgm-exporter", row["line"], f"curl -s {snap.gpu_source} | grep {XID_METRIC}") for row in rows]
        ev.append(_pods_line(snap, node_name))
        what = ", ".join(f"GPU {r['gpu']} XID {r['xid']}" for r in rows)
        summary = (_("{node} reports {errors} (79: fallen off the bus, its jobs are lost); drain the node, reset the "
                     "GPU (nvidia-smi -r) or replace it, then `kubectl uncordon {node}`")
                   if any(r["xid"] == 79 for r in rows) else
                   _("{node} reports {errors}; drain the node, reset the GPU (nvidia-smi -r) or replace it, then "
                     "`kubectl uncordon {node}`")).format(node=node_name, errors=what)
        found.append(Finding("GPUXidError", f"node/{node_name}", snap.namespace or "", summary, ev,
                             _drain(snap, node_name),
                             queries=[(_("XID per GPU"), f'{XID_METRIC}{{Hostname="{node_name}"}} > 0')]))
    return found


