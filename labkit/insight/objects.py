"""Reading the objects the engine works on: conditions, owners, events, requests and the commands that name them
(part of :mod:`labkit.insight`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import re
import shlex
from typing import Any

from ..i18n import _
from ..kube.quantity import quantity
from .findings import Evidence
from .snapshot import Snapshot, meta


def condition_of(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def _ns_flag(ns: str | None) -> str:
    return f"-n {ns} " if ns else ""


def events_for(snap: Snapshot, kind: str, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
    found = [e for e in snap.events if (e.get("involvedObject") or {}).get("kind") == kind
             and (e.get("involvedObject") or {}).get("name") == name
             and (namespace is None or meta(e).get("namespace") == namespace)]
    return sorted(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def event_evidence(event: dict[str, Any], ns: str | None) -> Evidence:
    inv = event.get("involvedObject") or {}
    count = event.get("count") or 1
    times = f" (x{count})" if count > 1 else ""
    return Evidence("event", f"{event.get('type')} {event.get('reason')}{times} {inv.get('kind')}/{inv.get('name')}: "
                             f"{(event.get('message') or '').strip()[:240]}",
                    f"kubectl {_ns_flag(ns)}events --for {inv.get('kind', '').lower()}/{inv.get('name')}")


def pod_ready(pod: dict[str, Any]) -> bool:
    return condition_of(pod, "Ready").get("status") == "True"


def live(pod: dict[str, Any]) -> bool:
    return not meta(pod).get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded", "Failed")


def failed_alone(pod: dict[str, Any]) -> bool:
    """A pod that failed for good and that nothing re-creates or reports on (a bare pod, ``restartPolicy: Never``):
    its failure is the symptom. A Job's pods are its own rule's; evicted pods (status.reason) are leftovers."""
    return ((pod.get("status") or {}).get("phase") == "Failed" and not (pod.get("status") or {}).get("reason")
            and not meta(pod).get("deletionTimestamp")
            and not any(r.get("controller") for r in meta(pod).get("ownerReferences") or []))


def owner(snap: Snapshot, obj: dict[str, Any]) -> tuple[str, str]:
    """(kind, name) of the workload a pod belongs to: its Deployment through the ReplicaSet, or itself."""
    refs = meta(obj).get("ownerReferences") or []
    ctrl = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ctrl is None:
        return ("Pod", meta(obj).get("name", ""))
    if ctrl.get("kind") == "ReplicaSet":
        rs = next((r for r in snap.replicasets if meta(r).get("name") == ctrl.get("name")
                   and meta(r).get("namespace") == meta(obj).get("namespace")), None)
        if rs is not None:
            up = owner(snap, rs)
            if up[0] == "Deployment":
                return up
        return ("ReplicaSet", ctrl.get("name", ""))
    return (ctrl.get("kind", "Pod"), ctrl.get("name", ""))


def subject_of(kind: str, name: str) -> str:
    return f"{kind.lower()}/{name}"


def deployment(snap: Snapshot, ns: str, name: str) -> dict[str, Any] | None:
    return next((d for d in snap.deployments if meta(d).get("name") == name and meta(d).get("namespace") == ns),
                None)


def revisions(snap: Snapshot, dep: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployment's ReplicaSets, oldest revision first."""
    uid = meta(dep).get("uid")
    owned = [rs for rs in snap.replicasets if any(r.get("uid") == uid for r in meta(rs).get("ownerReferences") or [])]
    return sorted(owned, key=lambda rs: int((meta(rs).get("annotations") or {}).get(
        "deployment.kubernetes.io/revision", 0)))


def can_undo(snap: Snapshot, kind: str, ns: str, name: str) -> bool:
    dep = deployment(snap, ns, name) if kind == "Deployment" else None
    return dep is not None and len(revisions(snap, dep)) >= 2


def undo_command(ns: str, name: str) -> str:
    return f"kubectl -n {ns} rollout undo deployment/{name}"


def template_spec(snap: Snapshot, kind: str, ns: str, name: str, pod: dict[str, Any]) -> dict[str, Any]:
    dep = deployment(snap, ns, name) if kind == "Deployment" else None
    return ((dep or {}).get("spec") or {}).get("template", {}).get("spec") or pod.get("spec") or {}


def requests(pod: dict[str, Any], resource: str) -> float:
    total = 0.0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        total += quantity((res.get("requests") or {}).get(resource, (res.get("limits") or {}).get(resource)))
    return total


def unrequested(snap: Snapshot, resource: str) -> dict[str, float]:
    """Per schedulable node, how much of ``resource`` no running pod has requested (what the scheduler counts)."""
    free = {}
    for node in snap.nodes:
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        name = meta(node)["name"]
        alloc = quantity(((node.get("status") or {}).get("allocatable") or {}).get(resource, 0))
        used = sum(requests(p, resource) for p in snap.all_pods
                   if (p.get("spec") or {}).get("nodeName") == name and live(p))
        free[name] = alloc - used
    return free


def jsonpatch(ns: str, kind: str, name: str, ops: list[dict[str, Any]]) -> str:
    return f"kubectl -n {ns} patch {kind.lower()}/{name} --type=json -p {shlex.quote(json.dumps(ops))}"


# Workloads whose pod template can be patched in place (a Job's cannot; a bare pod's command and env cannot).
PATCHABLE = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


def template_command(ns: str, kind: str, name: str, pname: str, path: str) -> str:
    """``kubectl get`` showing a field of the pod template (the workload's, or the bare pod's own spec)."""
    if kind in PATCHABLE or kind == "Job":
        return f"kubectl -n {ns} get {kind.lower()} {name} -o jsonpath='{{.spec.template.spec.{path}}}'"
    return f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.spec.{path}}}'"


def seconds_since(snap: Snapshot, stamp: str | None) -> float | None:
    if not (snap.taken_at and stamp):
        return None
    with contextlib.suppress(ValueError):
        return (dt.datetime.fromisoformat(snap.taken_at) - dt.datetime.fromisoformat(stamp)).total_seconds()
    return None


def tail(text: str, n: int = 240) -> str:
    """The end of a long runtime message (its cause is at the end, after the layers that passed it on)."""
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-(n - 3):]


_WORDS = {"configmap": "ConfigMap", "secret": "Secret"}


def env_refs(spec: dict[str, Any], obj_kind: str, obj: str, key: str | None) -> list[dict[str, Any]]:
    """Where the pod template's containers take env from ConfigMap/Secret ``obj`` (key ``key``, or any): one dict per
    reference, with the JSON-patch paths of its name, key and ``optional`` fields."""
    key_ref, all_ref = ("configMapKeyRef", "configMapRef") if obj_kind == "configmap" else ("secretKeyRef", "secretRef")
    refs = []
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            base, cname = f"/spec/template/spec/{group}/{i}", c.get("name")
            shown = f'{group}[?(@.name=="{cname}")]'  # JSONPath of the container, for the evidence's command
            for j, env in enumerate(c.get("env") or []):
                ref = (env.get("valueFrom") or {}).get(key_ref) or {}
                if ref.get("name") == obj and key in (None, ref.get("key")):
                    path = f"{base}/env/{j}/valueFrom/{key_ref}"
                    refs.append({"container": cname, "field": f"{shown}.env", "key": ref.get("key"),
                                 "name_path": f"{path}/name", "key_path": f"{path}/key",
                                 "optional_path": f"{path}/optional",
                                 "text": _("env {variable} from {ref} {object}/{key}").format(
                                     variable=env.get("name"), ref=key_ref, object=obj, key=ref.get("key"))})
            for j, src in enumerate(c.get("envFrom") or []):
                if (src.get(all_ref) or {}).get("name") == obj and key is None:
                    path = f"{base}/envFrom/{j}/{all_ref}"
                    refs.append({"container": cname, "field": f"{shown}.envFrom", "key": None,
                                 "name_path": f"{path}/name", "key_path": None, "optional_path": f"{path}/optional",
                                 "text": _("envFrom {ref} {object} (every key as a variable)").format(
                                     ref=all_ref, object=obj)})
    return refs


def config_fix(snap: Snapshot, ns: str, kind: str, name: str, obj_kind: str, obj: str, key: str | None,
                refs: list[dict[str, Any]], evidence: list[Evidence]) -> tuple[str, str]:
    """(what the reference does, fix) for a ConfigMap/Secret ``obj`` (or its ``key``) that does not exist: point the
    reference at the existing one it most likely meant, or create what it names; ``optional: true`` as the other way.
    Adds what the namespace has to ``evidence``."""
    word = _WORDS[obj_kind]
    have = {meta(o)["name"]: o for o in (snap.configmaps if obj_kind == "configmap" else snap.secrets)
            if meta(o).get("namespace") == ns}
    patchable = kind in PATCHABLE and bool(refs)
    alternative = ("\n# " + _("or, if the app can run without it: {command}").format(command=jsonpatch(
        ns, kind, name, [{"op": "add", "path": r["optional_path"], "value": True} for r in refs]))) if patchable else ""
    if key is None:
        evidence.append(Evidence(obj_kind, _("no {kind} {name} in {namespace}; it has: {names}").format(
            kind=word, name=obj, namespace=ns, names=", ".join(sorted(have)) or _("none")),
                                 f"kubectl -n {ns} get {obj_kind}s"))
        close = difflib.get_close_matches(obj, sorted(have), n=1, cutoff=0.6)
        if close and patchable:
            return (_("names {kind} {name!r}, which does not exist; {close!r} does: point it there").format(
                kind=word, name=obj, close=close[0]),
                    jsonpatch(ns, kind, name, [{"op": "replace", "path": r["name_path"], "value": close[0]}
                                                for r in refs]))
        keys = list(dict.fromkeys(r["key"] for r in refs if r.get("key")))
        if obj_kind == "secret" and keys and set(keys) <= {"tls.crt", "tls.key"}:
            create = (f"kubectl -n {ns} create secret tls {obj} --cert=tls.crt --key=tls.key   # "
                      + _("your certificate files"))
        else:
            create = f"kubectl -n {ns} create {'configmap' if obj_kind == 'configmap' else 'secret generic'} {obj}"
            create += "".join(f" --from-literal={k}=VALUE" for k in keys) + (
                "   # " + _("VALUE: what the app expects") if keys else
                " --from-file=PATH   # " + _("the file(s) the app reads") if any(r.get("volume") for r in refs) else
                " --from-literal=KEY=VALUE   # " + _("the variables the app expects"))
        why = _("names {kind} {name!r}, which does not exist in {namespace}: create it").format(
            kind=word, name=obj, namespace=ns)
        return why, create + alternative
    keys = sorted((have.get(obj) or {}).get("data") or {})
    if obj in have:
        evidence.append(Evidence(obj_kind, _("{kind} {name} has the key(s) {keys}, not {key}").format(
            kind=word, name=obj, keys=", ".join(keys) or _("none"), key=key),
                                 f"kubectl -n {ns} describe {obj_kind} {obj}"))
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if close and patchable and all(r.get("key_path") for r in refs):
        return (_("asks {kind} {name} for key {key!r}, which it does not have; it has {close!r}: ask for that").format(
            kind=word, name=obj, key=key, close=close[0]),
                jsonpatch(ns, kind, name, [{"op": "replace", "path": r["key_path"], "value": close[0]} for r in refs]))
    field_name = "data" if obj_kind == "configmap" else "stringData"
    return (_("asks {kind} {name} for key {key!r}, which it does not have: add the key").format(
        kind=word, name=obj, key=key),
            f"kubectl -n {ns} patch {obj_kind} {obj} --type=merge -p "
            f"{shlex.quote(json.dumps({field_name: {key: 'VALUE'}}))}   # " + _("VALUE: what the app expects")
            + alternative)


# A command that waits for a name to resolve: `until nslookup myservice; do sleep 2; done` (the documentation's init
# container), `nslookup mydb.NS.svc.cluster.local`, `getent hosts db`, `nc -z db 5432`.
_LOOKUP = re.compile(r"\b(?:nslookup|getent hosts|dig|nc -zv?|nc -vz)\s+(?P<host>[A-Za-z0-9][-A-Za-z0-9.]*)")


def awaited_service(snap: Snapshot, ns: str, command: list[str]) -> tuple[str, list[str]] | None:
    """(name, Services the namespace has) when ``command`` looks up a Service of ``ns`` the snapshot does not hold."""
    m = _LOOKUP.search(" ".join(command))
    if not m:
        return None
    labels = m["host"].split(".")
    where = labels[1] if len(labels) > 1 and labels[1] and labels[1] != "svc" else ns
    if where != ns:  # another namespace, or a name outside the cluster: not in the snapshot, so not judged
        return None
    names = sorted(meta(s)["name"] for s in snap.services if meta(s).get("namespace") == ns)
    return None if labels[0] in names else (labels[0], names)


