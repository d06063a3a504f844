"""Rules: scheduling and claims (part of :mod:`labkit.insight`)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from ..i18n import _
from ..kube.quantity import format_quantity
from .findings import Evidence, Finding
from .objects import (
    condition_of,
    event_evidence,
    events_for,
    jsonpatch,
    requests,
    subject_of,
    template_spec,
    unrequested,
)
from .snapshot import Snapshot, meta


def unschedulable(snap: Snapshot, pod: dict[str, Any], kind: str, name: str) -> Finding | None:
    cond = condition_of(pod, "PodScheduled")
    if cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
        return None
    ns, pname = meta(pod)["namespace"], meta(pod)["name"]
    message = cond.get("message") or ""
    head = message.split("preemption:")[0]
    reasons = [r.strip().rstrip(".") for r in re.split(r", |\. ", head.split("available:", 1)[-1]) if r.strip()]
    evidence = [Evidence("pod condition", f"PodScheduled=False Unschedulable: {message[:240]}",
                         f"kubectl -n {ns} get pod {pname} -o "
                         f"jsonpath='{{.status.conditions[?(@.type==\"PodScheduled\")].message}}'")]
    evidence += [event_evidence(e, ns) for e in events_for(snap, "Pod", pname, ns)[-1:]
                 if e.get("reason") == "FailedScheduling"]
    spec = template_spec(snap, kind, ns, name, pod)
    cname = ((spec.get("containers") or [{}])[0]).get("name", "")
    subject = subject_of(kind, name)
    target = f"{kind.lower()}/{name}"

    def has(word: str) -> list[str]:
        return [r for r in reasons if word in r]

    if has("PersistentVolumeClaim") or has("persistentvolumeclaim"):
        return _unbound_pvc(snap, pod, kind, name, evidence)
    gpu = [r for r in has("Insufficient") if "nvidia.com/" in r]
    if gpu:
        resource = re.search(r"Insufficient (\S+)", gpu[0]).group(1)  # type: ignore[union-attr]
        free = unrequested(snap, resource)
        best = max(free.values(), default=0)
        want = requests(pod, resource)
        evidence.append(Evidence("node allocatable", _("the pod asks for {want:g} {resource}; the most any node has "
                                                       "free is {best:g} ({nodes})").format(
            want=want, resource=resource, best=best,
            nodes=", ".join(f"{n}: {v:g}" for n, v in sorted(free.items()) if v)),
                                 "kubectl describe nodes | grep -A8 'Allocated resources'"))
        fix = (f"kubectl -n {ns} set resources {target} -c {cname} --limits={resource}={int(best)}" if best >= 1 else
               "kubectl get pods -A -o wide --field-selector spec.nodeName=NODE   # "
               + _("free GPUs first, or add a node"))
        return Finding("InsufficientGPU", subject, ns, _("{want:g} {resource} requested; no node has that many free "
                                                         "(at most {best:g}): ask for what a node has, or add GPU "
                                                         "nodes").format(want=want, resource=resource, best=best),
                       evidence, fix)
    for resource, code in (("cpu", "InsufficientCPU"), ("memory", "InsufficientMemory")):
        if has(f"Insufficient {resource}"):
            free = unrequested(snap, resource)
            best = max(free.values(), default=0)
            want = requests(pod, resource)
            step = 0.1 if resource == "cpu" else 2**26
            fits = max(int(best / 2 / step) * step, step)  # half what the roomiest node has free: room to spare
            evidence.append(Evidence("node allocatable", _("the pod requests {want} {resource}; the most any node "
                                                           "has unrequested is {best}").format(
                want=format_quantity(resource, want), resource=resource, best=format_quantity(resource, best)),
                                     "kubectl describe nodes | grep -A8 'Allocated resources'"))
            return Finding(code, subject, ns, _("requests {want} {resource}, more than any node has free ({best}): "
                                                "request less (kubectl top shows what it uses) or add nodes").format(
                want=format_quantity(resource, want), resource=resource, best=format_quantity(resource, best)),
                           evidence,
                           f"kubectl -n {ns} set resources {target} -c {cname} "
                           f"--requests={resource}={format_quantity(resource, fits)}")
    if has("untolerated taint"):
        # The scheduler counts a node under its first failing filter (taints before affinity), and 1.36 does not
        # name the taint: the taint is the cause only on nodes the pod's selector/affinity would otherwise accept.
        pod_spec = pod.get("spec") or {}
        fixes = []
        for node in snap.nodes:
            if not _node_matches(pod_spec, node):
                continue
            for t in (node.get("spec") or {}).get("taints") or []:
                if t.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(pod_spec, t):
                    value = f"={t['value']}" if t.get("value") else ""
                    nname = meta(node)["name"]
                    evidence.append(Evidence("node taint", _(
                        "{node} matches the pod's node selector/affinity and has taint {taint}, which the pod does "
                        "not tolerate").format(node=nname, taint=f"{t['key']}{value}:{t['effect']}"),
                                             f"kubectl get node {nname} -o jsonpath='{{.spec.taints}}'"))
                    fixes.append(f"kubectl taint nodes {nname} {t['key']}{value}:{t['effect']}-")
        if fixes:
            return Finding("UntoleratedTaint", subject, ns, _("the nodes the pod may run on carry a taint it does not "
                                                              "tolerate: remove the taint if its reason is over (or "
                                                              "give the pod a toleration)"),
                           evidence, "\n".join(fixes))
    if has("didn't match Pod's node affinity/selector"):
        ops, shown = [], []
        if spec.get("nodeSelector"):
            ops.append({"op": "remove", "path": "/spec/template/spec/nodeSelector"})
            shown.append(",".join(f"{k}={v}" for k, v in spec["nodeSelector"].items()))
        required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution"))
        if required:
            ops.append({"op": "remove", "path": "/spec/template/spec/affinity/nodeAffinity"})
            for term in required.get("nodeSelectorTerms") or []:
                for expr in term.get("matchExpressions") or []:
                    if expr.get("operator") == "In":
                        shown.append(f"{expr['key']} in ({','.join(expr.get('values') or [])})")
        for sel in shown:
            evidence.append(Evidence("nodes", _("no node has labels matching {selector}").format(selector=sel),
                                     f"kubectl get nodes -l '{sel}' --show-labels"))
        fix = jsonpatch(ns, kind, name, ops) if kind == "Deployment" and ops else \
            "kubectl get nodes --show-labels   # " + _("then fix the pod's nodeSelector/affinity, or label a node")
        return Finding("NodeAffinityMismatch", subject, ns, _("its node selector/affinity ({rules}) matches no node: "
                                                              "drop or correct the rule, or label the nodes meant for "
                                                              "it").format(rules="; ".join(shown)), evidence, fix)
    return Finding("Unschedulable", subject, ns, _("the scheduler says: {message}").format(message=head.strip()[:160]),
                   evidence, f"kubectl -n {ns} describe pod {pname}")


def _expression_matches(labels: dict[str, str], expr: dict[str, Any]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and values:
        with contextlib.suppress(ValueError):
            return int(labels[key]) > int(values[0]) if op == "Gt" else int(labels[key]) < int(values[0])
    return False


def _node_matches(pod_spec: dict[str, Any], node: dict[str, Any]) -> bool:
    """Whether the pod's nodeSelector and required node affinity accept ``node`` (as the NodeAffinity filter)."""
    labels = meta(node).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution")) or {}
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(all(_expression_matches(labels, e) for e in t.get("matchExpressions") or [])
                            for t in terms)


def _tolerates(pod_spec: dict[str, Any], taint: dict[str, Any]) -> bool:
    for tol in pod_spec.get("tolerations") or []:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and (not tol.get("key") or tol["key"] == taint.get("key")):
            return True
        if tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _unbound_pvc(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, evidence: list[Evidence]) -> Finding:
    ns = meta(pod)["namespace"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
              if v.get("persistentVolumeClaim")]
    fix = f"kubectl -n {ns} describe pvc"
    summary = _("a PersistentVolumeClaim of the pod is not bound")
    for claim in claims:
        pvc = next((p for p in snap.pvcs if meta(p).get("name") == claim and meta(p).get("namespace") == ns), None)
        if pvc is None:
            evidence.append(Evidence("pvc", _("persistentvolumeclaim {claim} does not exist").format(claim=claim),
                                     f"kubectl -n {ns} get pvc {claim}"))
            summary = _("the pod mounts claim {claim}, which does not exist").format(claim=claim)
            continue
        phase = (pvc.get("status") or {}).get("phase")
        if phase == "Bound":
            continue
        sc = (pvc.get("spec") or {}).get("storageClassName")
        evidence.append(Evidence("pvc", _("persistentvolumeclaim {claim} is {phase}, storageClassName {storageclass}")
                                 .format(claim=claim, phase=phase, storageclass=sc),
                                 f"kubectl -n {ns} get pvc {claim}"))
        evidence += [event_evidence(e, ns) for e in events_for(snap, "PersistentVolumeClaim", claim, ns)[-1:]]
        classes = {meta(s)["name"]: s for s in snap.storageclasses}
        if sc and sc not in classes:
            default = next((s for s in snap.storageclasses if (meta(s).get("annotations") or {}).get(
                "storageclass.kubernetes.io/is-default-class") == "true"), None)
            evidence.append(Evidence("storageclass", _("no StorageClass {storageclass}; the cluster has: {names}")
                                     .format(storageclass=sc, names=", ".join(sorted(classes)) or _("none")),
                                     "kubectl get storageclass"))
            summary = (_("claim {claim} asks for StorageClass {storageclass!r}, which does not exist: create that "
                         "class (below), or recreate the claim with an existing one ({default})").format(
                             claim=claim, storageclass=sc, default=meta(default)["name"]) if default else
                       _("claim {claim} asks for StorageClass {storageclass!r}, which does not exist: create that "
                         "class (below), or recreate the claim with an existing one").format(claim=claim,
                                                                                             storageclass=sc))
            if default:
                fix = (f"kubectl apply -f - <<'EOF'\napiVersion: storage.k8s.io/v1\nkind: StorageClass\n"
                       f"metadata: {{name: {sc}}}\nprovisioner: {default['provisioner']}\n"
                       f"volumeBindingMode: {default.get('volumeBindingMode', 'Immediate')}\n"
                       f"reclaimPolicy: {default.get('reclaimPolicy', 'Delete')}\nEOF")
        else:
            summary = _("claim {claim} is {phase}: no PersistentVolume matches it and its class provisions "
                        "none").format(claim=claim, phase=phase)
            fix = f"kubectl -n {ns} describe pvc {claim}   # " + _("then provide a matching PV or a provisioning class")
    return Finding("UnboundPVC", subject_of(kind, name), ns, summary, evidence, fix)


