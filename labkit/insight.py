"""An insight engine for the lab, in the spirit of Huawei Cloud's CIE (容器洞察引擎): read the live cluster, correlate
what it says, and return ranked findings: the root cause, the evidence (each line naming its source and the
kubectl/PromQL command that shows it), and the command that fixes it. Introduced in notebook 11_troubleshooting.

``lk.diagnose(lab, namespace=ns)`` (this module is ``lk.insight``); in a shell ``labkit diagnose -n NS``. It
reads pods, events, Deployments and ReplicaSets, Jobs, Services and EndpointSlices, HPAs, PVCs and StorageClasses,
the names and keys of ConfigMaps and Secrets (never their values), ServiceAccounts, nodes and their conditions
through the Kubernetes API, the GPU exporter's XID counters where that add-on runs, and Prometheus where it runs.

Split in two so the ranking can be tested on recorded objects: :func:`snapshot` reads the cluster into plain dicts,
:func:`analyze` turns a :class:`Snapshot` into findings without touching the network. Log and trace evidence
(lessons 09 and 10) plug in through :func:`register_evidence_source`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import re
import shlex
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import addons, promql
from .errors import LabkitError
from .kube.client import Lab, api_errors
from .kube.quantity import format_quantity, quantity

# Every cause the engine can name, with the kubectl-level symptom that goes with it.
CAUSES: dict[str, str] = {
    "ProgressDeadlineExceeded": "a rollout that stopped making progress (its new revision's pods never became ready)",
    "GPUXidError": "a GPU reported an XID error (79: fallen off the bus) on the node the pods run on",
    "NodeProblem": "node-problem-detector reports a permanent problem (a NodeCondition) on the pods' node",
    "NodeNotReady": "the pods' node is NotReady",
    "NodePressure": "the pods' node is under memory, disk or PID pressure",
    "QuotaExceeded": "a ResourceQuota refuses the pods (the ReplicaSet cannot create them)",
    "LimitRangeViolation": "a LimitRange refuses the pods (a request or limit outside its min/max)",
    "ServiceAccountNotFound": "the pods run as a ServiceAccount that does not exist (the ReplicaSet cannot create "
                              "them)",
    "PodSecurityViolation": "the namespace's Pod Security level refuses the pods (the ReplicaSet cannot create them)",
    "UnboundPVC": "the pod waits for a PersistentVolumeClaim that does not bind",
    "UntoleratedTaint": "the only nodes the pod may use carry a taint it does not tolerate",
    "InsufficientGPU": "no node has enough free GPUs for the pod's request",
    "InsufficientCPU": "no node has enough unrequested CPU for the pod's request",
    "InsufficientMemory": "no node has enough unrequested memory for the pod's request",
    "NodeAffinityMismatch": "the pod's node selector or affinity matches no node",
    "Unschedulable": "the scheduler cannot place the pod",
    "FailedMount": "a volume of the pod names a ConfigMap or Secret (or a key) that does not exist: ContainerCreating",
    "CreateContainerConfigError": "a container's env or envFrom names a ConfigMap or Secret (or a key) that does not "
                                  "exist",
    "ImagePullBackOff": "the container's image cannot be pulled (the name or tag does not exist, or access is denied)",
    "StartError": "the container's command cannot be started (not in the image's $PATH, or not executable): exit 128",
    "InitContainerFailing": "an init container exits with an error, so the app's containers never start (Init:Error, "
                            "Init:CrashLoopBackOff)",
    "InitContainerBlocked": "an init container keeps running (it waits for something, e.g. a Service that does not "
                            "exist), so the pod stays Init:0/N",
    "OOMKilled": "the container used more memory than its limit and the kernel killed it",
    "LivenessProbeFailing": "the liveness probe fails, so the kubelet keeps killing the container",
    "JobFailed": "a Job gave up: its pods failed backoffLimit times (BackoffLimitExceeded) or it ran past its deadline",
    "CrashLoopBackOff": "the container's process exits with an error and the kubelet restarts it with back-off",
    "ServiceSelectorMismatch": "the Service's selector matches no pod, so it has no endpoints",
    "ServicePortMismatch": "the Service's targetPort is not a port its pods declare, so connections are refused",
    "ReadinessProbeFailing": "the readiness probe fails, so the pods stay out of their Services' endpoints",
    "HPATargetNotFound": "the HorizontalPodAutoscaler's scaleTargetRef names a workload that does not exist",
    "HPAWithoutMetrics": "the HorizontalPodAutoscaler cannot read its metric, so it does not scale",
}
# Rank: a cause that explains others comes first (a stuck rollout explains its pods; a sick node its pods).
SCORES: dict[str, int] = {code: 100 - i for i, code in enumerate(CAUSES)}

NPD_STANDARD = {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"}
EXIT_CODES = {1: "a general application error", 2: "misuse of a shell builtin", 126: "the command is not executable",
              127: "the command was not found", 128: "the runtime could not start the command (StartError)",
              137: "killed by SIGKILL (the OOM killer, or the kubelet)",
              139: "a segmentation fault (SIGSEGV)", 143: "terminated by SIGTERM"}


@dataclass(frozen=True)
class Evidence:
    """One fact behind a finding: where it comes from, what it says, and the command that shows it."""

    source: str
    line: str
    command: str

    def __str__(self) -> str:
        return f"[{self.source}] {self.line}\n      $ {self.command}"


@dataclass
class Finding:
    """A root cause the engine found: what, where, why (evidence), and the command that fixes it."""

    cause: str
    subject: str
    namespace: str
    summary: str
    evidence: list[Evidence]
    fix: str
    score: int = 0
    # PromQL whose answer supports the finding: (what it shows, expression); added as evidence where Prometheus runs.
    queries: list[tuple[str, str]] = field(default_factory=list)
    # Lower-ranked findings this one explains (folded in as evidence).
    explains: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.score:
            self.score = SCORES.get(self.cause, 10)

    def __str__(self) -> str:
        lines = [f"{self.cause} ({self.subject}, namespace {self.namespace or '-'}): {self.summary}"]
        lines += [f"  evidence {e}" for e in self.evidence]
        lines.append("  fix: " + self.fix.replace("\n", "\n       "))
        return "\n".join(lines)


@dataclass
class Diagnosis:
    """Ranked findings, most likely root cause first."""

    namespace: str | None
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def top(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def causes(self) -> list[str]:
        return [f.cause for f in self.findings]

    def table(self) -> pd.DataFrame:
        """One row per finding: rank, cause, subject, summary, evidence count, fix."""
        rows = [{"rank": i + 1, "cause": f.cause, "subject": f.subject, "namespace": f.namespace,
                 "summary": f.summary, "evidence": len(f.evidence), "fix": f.fix.splitlines()[0]}
                for i, f in enumerate(self.findings)]
        return pd.DataFrame(rows, columns=["rank", "cause", "subject", "namespace", "summary", "evidence", "fix"])

    def __str__(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "the whole cluster"
        if not self.findings:
            return f"diagnose {where}: no problem found" + "".join(f"\n  note: {n}" for n in self.notes)
        parts = [f"diagnose {where}: {len(self.findings)} finding(s), most likely root cause first"]
        parts += [f"{i + 1}. {f}" for i, f in enumerate(self.findings)]
        parts += [f"note: {n}" for n in self.notes]
        return "\n".join(parts)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


# --- reading the cluster ----------------------------------------------------------------------------------

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
    with api_errors(f"listing {kind}", server=lab.server):
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
    return [{"metadata": {k: _meta(o).get(k) for k in ("name", "namespace")},
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


# --- small helpers over dicts --------------------------------------------------------------------------------

def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _cond(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def _ns_flag(ns: str | None) -> str:
    return f"-n {ns} " if ns else ""


def _events_for(snap: Snapshot, kind: str, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
    found = [e for e in snap.events if (e.get("involvedObject") or {}).get("kind") == kind
             and (e.get("involvedObject") or {}).get("name") == name
             and (namespace is None or _meta(e).get("namespace") == namespace)]
    return sorted(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def _event_evidence(event: dict[str, Any], ns: str | None) -> Evidence:
    inv = event.get("involvedObject") or {}
    count = event.get("count") or 1
    times = f" (x{count})" if count > 1 else ""
    return Evidence("event", f"{event.get('type')} {event.get('reason')}{times} {inv.get('kind')}/{inv.get('name')}: "
                             f"{(event.get('message') or '').strip()[:240]}",
                    f"kubectl {_ns_flag(ns)}events --for {inv.get('kind', '').lower()}/{inv.get('name')}")


def _ready(pod: dict[str, Any]) -> bool:
    return _cond(pod, "Ready").get("status") == "True"


def _live(pod: dict[str, Any]) -> bool:
    return not _meta(pod).get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded", "Failed")


def _failed_alone(pod: dict[str, Any]) -> bool:
    """A pod that failed for good and that nothing re-creates or reports on (a bare pod, ``restartPolicy: Never``):
    its failure is the symptom. A Job's pods are its own rule's; evicted pods (status.reason) are leftovers."""
    return ((pod.get("status") or {}).get("phase") == "Failed" and not (pod.get("status") or {}).get("reason")
            and not _meta(pod).get("deletionTimestamp")
            and not any(r.get("controller") for r in _meta(pod).get("ownerReferences") or []))


def _owner(snap: Snapshot, obj: dict[str, Any]) -> tuple[str, str]:
    """(kind, name) of the workload a pod belongs to: its Deployment through the ReplicaSet, or itself."""
    refs = _meta(obj).get("ownerReferences") or []
    ctrl = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ctrl is None:
        return ("Pod", _meta(obj).get("name", ""))
    if ctrl.get("kind") == "ReplicaSet":
        rs = next((r for r in snap.replicasets if _meta(r).get("name") == ctrl.get("name")
                   and _meta(r).get("namespace") == _meta(obj).get("namespace")), None)
        if rs is not None:
            up = _owner(snap, rs)
            if up[0] == "Deployment":
                return up
        return ("ReplicaSet", ctrl.get("name", ""))
    return (ctrl.get("kind", "Pod"), ctrl.get("name", ""))


def _subject(kind: str, name: str) -> str:
    return f"{kind.lower()}/{name}"


def _deployment(snap: Snapshot, ns: str, name: str) -> dict[str, Any] | None:
    return next((d for d in snap.deployments if _meta(d).get("name") == name and _meta(d).get("namespace") == ns),
                None)


def _revisions(snap: Snapshot, dep: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployment's ReplicaSets, oldest revision first."""
    uid = _meta(dep).get("uid")
    owned = [rs for rs in snap.replicasets if any(r.get("uid") == uid for r in _meta(rs).get("ownerReferences") or [])]
    return sorted(owned, key=lambda rs: int((_meta(rs).get("annotations") or {}).get(
        "deployment.kubernetes.io/revision", 0)))


def _can_undo(snap: Snapshot, kind: str, ns: str, name: str) -> bool:
    dep = _deployment(snap, ns, name) if kind == "Deployment" else None
    return dep is not None and len(_revisions(snap, dep)) >= 2


def _undo(ns: str, name: str) -> str:
    return f"kubectl -n {ns} rollout undo deployment/{name}"


def _template_spec(snap: Snapshot, kind: str, ns: str, name: str, pod: dict[str, Any]) -> dict[str, Any]:
    dep = _deployment(snap, ns, name) if kind == "Deployment" else None
    return ((dep or {}).get("spec") or {}).get("template", {}).get("spec") or pod.get("spec") or {}


def _requests(pod: dict[str, Any], resource: str) -> float:
    total = 0.0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        total += quantity((res.get("requests") or {}).get(resource, (res.get("limits") or {}).get(resource)))
    return total


def _free(snap: Snapshot, resource: str) -> dict[str, float]:
    """Per schedulable node, how much of ``resource`` no running pod has requested (what the scheduler counts)."""
    free = {}
    for node in snap.nodes:
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        name = _meta(node)["name"]
        alloc = quantity(((node.get("status") or {}).get("allocatable") or {}).get(resource, 0))
        used = sum(_requests(p, resource) for p in snap.all_pods
                   if (p.get("spec") or {}).get("nodeName") == name and _live(p))
        free[name] = alloc - used
    return free


def _jsonpatch(ns: str, kind: str, name: str, ops: list[dict[str, Any]]) -> str:
    return f"kubectl -n {ns} patch {kind.lower()}/{name} --type=json -p {shlex.quote(json.dumps(ops))}"


# Workloads whose pod template can be patched in place (a Job's cannot; a bare pod's command and env cannot).
_PATCHABLE = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


def _template_command(ns: str, kind: str, name: str, pname: str, path: str) -> str:
    """``kubectl get`` showing a field of the pod template (the workload's, or the bare pod's own spec)."""
    if kind in _PATCHABLE or kind == "Job":
        return f"kubectl -n {ns} get {kind.lower()} {name} -o jsonpath='{{.spec.template.spec.{path}}}'"
    return f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.spec.{path}}}'"


def _seconds_since(snap: Snapshot, stamp: str | None) -> float | None:
    if not (snap.taken_at and stamp):
        return None
    with contextlib.suppress(ValueError):
        return (dt.datetime.fromisoformat(snap.taken_at) - dt.datetime.fromisoformat(stamp)).total_seconds()
    return None


def _tail(text: str, n: int = 240) -> str:
    """The end of a long runtime message (its cause is at the end, after the layers that passed it on)."""
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-(n - 3):]


_WORDS = {"configmap": "ConfigMap", "secret": "Secret"}


def _env_refs(spec: dict[str, Any], obj_kind: str, obj: str, key: str | None) -> list[dict[str, Any]]:
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
                                 "text": f"env {env.get('name')} from {key_ref} {obj}/{ref.get('key')}"})
            for j, src in enumerate(c.get("envFrom") or []):
                if (src.get(all_ref) or {}).get("name") == obj and key is None:
                    path = f"{base}/envFrom/{j}/{all_ref}"
                    refs.append({"container": cname, "field": f"{shown}.envFrom", "key": None,
                                 "name_path": f"{path}/name", "key_path": None, "optional_path": f"{path}/optional",
                                 "text": f"envFrom {all_ref} {obj} (every key as a variable)"})
    return refs


def _config_fix(snap: Snapshot, ns: str, kind: str, name: str, obj_kind: str, obj: str, key: str | None,
                refs: list[dict[str, Any]], evidence: list[Evidence]) -> tuple[str, str]:
    """(what the reference does, fix) for a ConfigMap/Secret ``obj`` (or its ``key``) that does not exist: point the
    reference at the existing one it most likely meant, or create what it names; ``optional: true`` as the other way.
    Adds what the namespace has to ``evidence``."""
    word = _WORDS[obj_kind]
    have = {_meta(o)["name"]: o for o in (snap.configmaps if obj_kind == "configmap" else snap.secrets)
            if _meta(o).get("namespace") == ns}
    patchable = kind in _PATCHABLE and bool(refs)
    alternative = ("\n# or, if the app can run without it: " + _jsonpatch(ns, kind, name, [
        {"op": "add", "path": r["optional_path"], "value": True} for r in refs])) if patchable else ""
    if key is None:
        evidence.append(Evidence(obj_kind, f"no {word} {obj} in {ns}; it has: {', '.join(sorted(have)) or 'none'}",
                                 f"kubectl -n {ns} get {obj_kind}s"))
        close = difflib.get_close_matches(obj, sorted(have), n=1, cutoff=0.6)
        if close and patchable:
            return (f"names {word} {obj!r}, which does not exist; {close[0]!r} does: point it there",
                    _jsonpatch(ns, kind, name, [{"op": "replace", "path": r["name_path"], "value": close[0]}
                                                for r in refs]))
        keys = list(dict.fromkeys(r["key"] for r in refs if r.get("key")))
        if obj_kind == "secret" and keys and set(keys) <= {"tls.crt", "tls.key"}:
            create = f"kubectl -n {ns} create secret tls {obj} --cert=tls.crt --key=tls.key   # your certificate files"
        else:
            create = f"kubectl -n {ns} create {'configmap' if obj_kind == 'configmap' else 'secret generic'} {obj}"
            create += "".join(f" --from-literal={k}=VALUE" for k in keys) + (
                "   # VALUE: what the app expects" if keys else
                " --from-file=PATH   # the file(s) the app reads" if any(r.get("volume") for r in refs) else
                " --from-literal=KEY=VALUE   # the variables the app expects")
        return f"names {word} {obj!r}, which does not exist in {ns}: create it", create + alternative
    keys = sorted((have.get(obj) or {}).get("data") or {})
    if obj in have:
        evidence.append(Evidence(obj_kind, f"{word} {obj} has the key(s) {', '.join(keys) or 'none'}, not {key}",
                                 f"kubectl -n {ns} describe {obj_kind} {obj}"))
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if close and patchable and all(r.get("key_path") for r in refs):
        return (f"asks {word} {obj} for key {key!r}, which it does not have; it has {close[0]!r}: ask for that",
                _jsonpatch(ns, kind, name, [{"op": "replace", "path": r["key_path"], "value": close[0]} for r in refs]))
    field_name = "data" if obj_kind == "configmap" else "stringData"
    return (f"asks {word} {obj} for key {key!r}, which it does not have: add the key",
            f"kubectl -n {ns} patch {obj_kind} {obj} --type=merge -p "
            f"{shlex.quote(json.dumps({field_name: {key: 'VALUE'}}))}   # VALUE: what the app expects" + alternative)


# A command that waits for a name to resolve: `until nslookup myservice; do sleep 2; done` (the documentation's init
# container), `nslookup mydb.NS.svc.cluster.local`, `getent hosts db`, `nc -z db 5432`.
_LOOKUP = re.compile(r"\b(?:nslookup|getent hosts|dig|nc -zv?|nc -vz)\s+(?P<host>[A-Za-z0-9][-A-Za-z0-9.]*)")


def _awaited_service(snap: Snapshot, ns: str, command: list[str]) -> tuple[str, list[str]] | None:
    """(name, Services the namespace has) when ``command`` looks up a Service of ``ns`` the snapshot does not hold."""
    m = _LOOKUP.search(" ".join(command))
    if not m:
        return None
    labels = m["host"].split(".")
    where = labels[1] if len(labels) > 1 and labels[1] and labels[1] != "svc" else ns
    if where != ns:  # another namespace, or a name outside the cluster: not in the snapshot, so not judged
        return None
    names = sorted(_meta(s)["name"] for s in snap.services if _meta(s).get("namespace") == ns)
    return None if labels[0] in names else (labels[0], names)


# --- the rules ---------------------------------------------------------------------------------------------

def _unschedulable(snap: Snapshot, pod: dict[str, Any], kind: str, name: str) -> Finding | None:
    cond = _cond(pod, "PodScheduled")
    if cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
        return None
    ns, pname = _meta(pod)["namespace"], _meta(pod)["name"]
    message = cond.get("message") or ""
    head = message.split("preemption:")[0]
    reasons = [r.strip().rstrip(".") for r in re.split(r", |\. ", head.split("available:", 1)[-1]) if r.strip()]
    evidence = [Evidence("pod condition", f"PodScheduled=False Unschedulable: {message[:240]}",
                         f"kubectl -n {ns} get pod {pname} -o "
                         f"jsonpath='{{.status.conditions[?(@.type==\"PodScheduled\")].message}}'")]
    evidence += [_event_evidence(e, ns) for e in _events_for(snap, "Pod", pname, ns)[-1:]
                 if e.get("reason") == "FailedScheduling"]
    spec = _template_spec(snap, kind, ns, name, pod)
    cname = ((spec.get("containers") or [{}])[0]).get("name", "")
    subject = _subject(kind, name)
    target = f"{kind.lower()}/{name}"

    def has(word: str) -> list[str]:
        return [r for r in reasons if word in r]

    if has("PersistentVolumeClaim") or has("persistentvolumeclaim"):
        return _unbound_pvc(snap, pod, kind, name, evidence)
    gpu = [r for r in has("Insufficient") if "nvidia.com/" in r]
    if gpu:
        resource = re.search(r"Insufficient (\S+)", gpu[0]).group(1)  # type: ignore[union-attr]
        free = _free(snap, resource)
        best = max(free.values(), default=0)
        want = _requests(pod, resource)
        evidence.append(Evidence("node allocatable", f"the pod asks for {want:g} {resource}; the most any node has "
                                 f"free is {best:g} ({', '.join(f'{n}: {v:g}' for n, v in sorted(free.items()) if v)})",
                                 "kubectl describe nodes | grep -A8 'Allocated resources'"))
        fix = (f"kubectl -n {ns} set resources {target} -c {cname} --limits={resource}={int(best)}" if best >= 1 else
               "kubectl get pods -A -o wide --field-selector spec.nodeName=NODE   # free GPUs first, or add a node")
        return Finding("InsufficientGPU", subject, ns, f"{want:g} {resource} requested; no node has that many free "
                       f"(at most {best:g}): ask for what a node has, or add GPU nodes", evidence, fix)
    for resource, code in (("cpu", "InsufficientCPU"), ("memory", "InsufficientMemory")):
        if has(f"Insufficient {resource}"):
            free = _free(snap, resource)
            best = max(free.values(), default=0)
            want = _requests(pod, resource)
            step = 0.1 if resource == "cpu" else 2**26
            fits = max(int(best / 2 / step) * step, step)  # half what the roomiest node has free: room to spare
            evidence.append(Evidence("node allocatable", f"the pod requests {format_quantity(resource, want)} "
                                     f"{resource}; the most any node has unrequested is "
                                     f"{format_quantity(resource, best)}",
                                     "kubectl describe nodes | grep -A8 'Allocated resources'"))
            return Finding(code, subject, ns, f"requests {format_quantity(resource, want)} {resource}, more than "
                           f"any node has free ({format_quantity(resource, best)}): request less (kubectl top shows "
                           f"what it uses) or add nodes", evidence,
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
                    nname = _meta(node)["name"]
                    evidence.append(Evidence("node taint", f"{nname} matches the pod's node selector/affinity and has "
                                             f"taint {t['key']}{value}:{t['effect']}, which the pod does not tolerate",
                                             f"kubectl get node {nname} -o jsonpath='{{.spec.taints}}'"))
                    fixes.append(f"kubectl taint nodes {nname} {t['key']}{value}:{t['effect']}-")
        if fixes:
            return Finding("UntoleratedTaint", subject, ns, "the nodes the pod may run on carry a taint it does not "
                           "tolerate: remove the taint if its reason is over (or give the pod a toleration)",
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
            evidence.append(Evidence("nodes", f"no node has labels matching {sel}",
                                     f"kubectl get nodes -l '{sel}' --show-labels"))
        fix = _jsonpatch(ns, kind, name, ops) if kind == "Deployment" and ops else \
            "kubectl get nodes --show-labels   # then fix the pod's nodeSelector/affinity, or label a node"
        return Finding("NodeAffinityMismatch", subject, ns, f"its node selector/affinity ({'; '.join(shown)}) matches "
                       f"no node: drop or correct the rule, or label the nodes meant for it", evidence, fix)
    return Finding("Unschedulable", subject, ns, f"the scheduler says: {head.strip()[:160]}", evidence,
                   f"kubectl -n {ns} describe pod {pname}")


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
    labels = _meta(node).get("labels") or {}
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
    ns = _meta(pod)["namespace"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
              if v.get("persistentVolumeClaim")]
    fix = f"kubectl -n {ns} describe pvc"
    summary = "a PersistentVolumeClaim of the pod is not bound"
    for claim in claims:
        pvc = next((p for p in snap.pvcs if _meta(p).get("name") == claim and _meta(p).get("namespace") == ns), None)
        if pvc is None:
            evidence.append(Evidence("pvc", f"persistentvolumeclaim {claim} does not exist",
                                     f"kubectl -n {ns} get pvc {claim}"))
            summary = f"the pod mounts claim {claim}, which does not exist"
            continue
        phase = (pvc.get("status") or {}).get("phase")
        if phase == "Bound":
            continue
        sc = (pvc.get("spec") or {}).get("storageClassName")
        evidence.append(Evidence("pvc", f"persistentvolumeclaim {claim} is {phase}, storageClassName {sc}",
                                 f"kubectl -n {ns} get pvc {claim}"))
        evidence += [_event_evidence(e, ns) for e in _events_for(snap, "PersistentVolumeClaim", claim, ns)[-1:]]
        classes = {_meta(s)["name"]: s for s in snap.storageclasses}
        if sc and sc not in classes:
            default = next((s for s in snap.storageclasses if (_meta(s).get("annotations") or {}).get(
                "storageclass.kubernetes.io/is-default-class") == "true"), None)
            evidence.append(Evidence("storageclass", f"no StorageClass {sc}; the cluster has: "
                                     f"{', '.join(sorted(classes)) or 'none'}", "kubectl get storageclass"))
            summary = (f"claim {claim} asks for StorageClass {sc!r}, which does not exist: create that class (below), "
                       f"or recreate the claim with an existing one"
                       + (f" ({_meta(default)['name']})" if default else ""))
            if default:
                fix = (f"kubectl apply -f - <<'EOF'\napiVersion: storage.k8s.io/v1\nkind: StorageClass\n"
                       f"metadata: {{name: {sc}}}\nprovisioner: {default['provisioner']}\n"
                       f"volumeBindingMode: {default.get('volumeBindingMode', 'Immediate')}\n"
                       f"reclaimPolicy: {default.get('reclaimPolicy', 'Delete')}\nEOF")
        else:
            summary = f"claim {claim} is {phase}: no PersistentVolume matches it and its class provisions none"
            fix = f"kubectl -n {ns} describe pvc {claim}   # then provide a matching PV or a provisioning class"
    return Finding("UnboundPVC", _subject(kind, name), ns, summary, evidence, fix)


def _image_fix(snap: Snapshot, kind: str, ns: str, name: str, cname: str, image: str) -> str:
    if _can_undo(snap, kind, ns, name):
        return _undo(ns, name)
    running = {c.get("image") for p in snap.all_pods for c in (p.get("spec") or {}).get("containers") or []
               if (p.get("status") or {}).get("phase") == "Running"} - {image}
    close = difflib.get_close_matches(image, sorted(r for r in running if r), n=1, cutoff=0.6)
    new = close[0] if close else "IMAGE:TAG-THAT-EXISTS"
    return f"kubectl -n {ns} set image {kind.lower()}/{name} {cname}={new}"


def _probe_fix(snap: Snapshot, kind: str, ns: str, name: str, spec: dict[str, Any], probe_kind: str,
               output: str) -> tuple[str, str]:
    """(why, fix) for a failing probe: a port nothing listens on, a path that answers 404, or else undo."""
    for i, c in enumerate(spec.get("containers") or []):
        probe = c.get(probe_kind) or {}
        handler = next((k for k in ("httpGet", "tcpSocket", "grpc") if k in probe), None)
        if handler is None:
            continue
        port = probe[handler].get("port")
        declared = [p.get("containerPort") for p in c.get("ports") or []]
        names = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        number = names.get(port, port)
        base = f"/spec/template/spec/containers/{i}/{probe_kind}/{handler}"
        if declared and number not in declared and ("refused" in output or "dial tcp" in output):
            return (f"it checks port {port}, but the container listens on {declared[0]} (connection refused)",
                    _jsonpatch(ns, kind, name, [{"op": "replace", "path": f"{base}/port", "value": declared[0]}]))
        if handler == "httpGet" and "statuscode: 404" in output:
            return (f"it asks for {probe[handler].get('path', '/')}, which the app answers with 404",
                    _jsonpatch(ns, kind, name, [{"op": "replace", "path": f"{base}/path", "value": "/"}]))
    if _can_undo(snap, kind, ns, name):
        return "the probe started failing with the latest revision", _undo(ns, name)
    return ("the app does not answer the probe", f"kubectl -n {ns} edit {kind.lower()}/{name}   # fix the {probe_kind}"
            " (what it checks, or initialDelaySeconds/failureThreshold)")


_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName")
_MISSING_OBJECT = re.compile(r'(?P<kind>configmap|secret) "(?P<name>[^"]+)" not found')
# kubelet_pods.go: "couldn't find key %v in ConfigMap %v/%v" (and in Secret)
_MISSING_KEY = re.compile(r"couldn't find key (?P<key>\S+) in (?P<kind>ConfigMap|Secret) (?P<ns>[^/\s]+)/(?P<name>\S+)")
# runc's words, passed on by containerd: `exec: "curl": executable file not found in $PATH`
_EXEC = re.compile(r'exec: "(?P<exe>[^"]+)": (?P<why>[^:]+)')
# What a small image has instead (busybox and alpine have wget and sh, not curl and bash).
_INSTEAD = {"curl": "wget", "bash": "sh"}
INIT_STUCK_S = 300  # an init container still running after this long is stuck, not slow


def _state_evidence(ns: str, pname: str, init: bool, line: str) -> Evidence:
    field_name = "initContainerStatuses" if init else "containerStatuses"
    return Evidence("pod status", line,
                    f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.{field_name}[*].state}}'")


def _last_state_command(ns: str, pname: str, init: bool) -> str:
    field_name = "initContainerStatuses" if init else "containerStatuses"
    return f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.{field_name}[*].lastState}}'"


def _image_finding(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, cs: dict[str, Any],
                   spec: dict[str, Any], events: list[dict[str, Any]], init: bool) -> Finding:
    ns, pname, cname = _meta(pod)["namespace"], _meta(pod)["name"], cs.get("name")
    waiting = (cs.get("state") or {}).get("waiting") or {}
    where = "init container" if init else "container"
    ev = [_state_evidence(ns, pname, init, f"{where} {cname}: waiting {waiting.get('reason')}: "
                          f"{(waiting.get('message') or '')[:200]}".rstrip(": "))]
    ev += [_event_evidence(e, ns) for e in events if e.get("reason") == "Failed"
           and "Failed to pull" in (e.get("message") or "")][-1:]
    image = next((c.get("image") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
                  if c.get("name") == cname), "")
    return Finding("ImagePullBackOff", _subject(kind, name), ns, f"image {cs.get('image') or image!r} cannot be pulled"
                   + (f" for init container {cname} (Init:{waiting.get('reason')})" if init else "")
                   + ": the name or tag does not exist in the registry (or needs credentials)", ev,
                   _image_fix(snap, kind, ns, name, cname, image))


def _config_error(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, cs: dict[str, Any],
                  spec: dict[str, Any], events: list[dict[str, Any]], init: bool) -> Finding:
    """CreateContainerConfigError: the kubelet cannot build the container's environment from what it names."""
    ns, pname, cname = _meta(pod)["namespace"], _meta(pod)["name"], cs.get("name")
    message = ((cs.get("state") or {}).get("waiting") or {}).get("message") or ""
    where = "init container" if init else "container"
    ev = [_state_evidence(ns, pname, init, f"{where} {cname}: waiting CreateContainerConfigError: {message[:200]}")]
    ev += [_event_evidence(e, ns) for e in events if e.get("reason") == "Failed" and message
           and message in (e.get("message") or "")][-1:]
    subject = _subject(kind, name)
    m = _MISSING_KEY.search(message) or _MISSING_OBJECT.search(message)
    if not m:
        return Finding("CreateContainerConfigError", subject, ns, f"the kubelet cannot build {where} {cname}'s "
                       f"configuration: {message[:160]}", ev, f"kubectl -n {ns} describe pod {pname}")
    obj_kind, obj = m["kind"].lower(), m["name"]
    key = m.groupdict().get("key")
    refs = _env_refs(spec, obj_kind, obj, key)
    for r in refs:
        ev.append(Evidence("pod spec", f"container {r['container']}: {r['text']}",
                           _template_command(ns, kind, name, pname, r["field"])))
    why, fix = _config_fix(snap, ns, kind, name, obj_kind, obj, key, refs, ev)
    users = list(dict.fromkeys(r["container"] for r in refs)) or [cname]
    return Finding("CreateContainerConfigError", subject, ns, f"{'containers' if len(users) > 1 else 'container'} "
                   f"{', '.join(users)} cannot start: {'their' if len(users) > 1 else 'its'} env {why}", ev, fix)


def _start_failure(cs: dict[str, Any]) -> dict[str, Any]:
    """The StartError a container status records (now, or as its last state), or {}."""
    state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated") or {}
    for t in (state.get("terminated") or {}, last):
        if t.get("reason") == "StartError":
            return t
    waiting = state.get("waiting") or {}
    if waiting.get("reason") == "RunContainerError" and _EXEC.search(waiting.get("message") or ""):
        return {"reason": "RunContainerError", "exitCode": 128, "message": waiting["message"]}
    return {}


def _start_error(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, cs: dict[str, Any],
                 spec: dict[str, Any], events: list[dict[str, Any]], init: bool) -> Finding:
    """StartError, exit code 128: the runtime could not exec the command (not in the image, or not executable)."""
    ns, pname, cname = _meta(pod)["namespace"], _meta(pod)["name"], cs.get("name")
    failed = _start_failure(cs)
    message = failed.get("message") or ""
    waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
    where = "init container" if init else "container"
    group = "initContainers" if init else "containers"
    now = ((cs.get("state") or {}).get("terminated") or {}).get("reason") == "StartError"
    ev = [Evidence("pod status", f"{where} {cname}: {('waiting ' + waiting + ', ') if waiting else ''}"
                   f"{'' if now else 'last '}terminated {failed.get('reason')}, exit code {failed.get('exitCode')}, "
                   f"restartCount {cs.get('restartCount', 0)}: {_tail(message, 200)}",
                   _last_state_command(ns, pname, init))]
    m = _EXEC.search(message)
    exe = m["exe"] if m else ""
    ev += [_event_evidence(e, ns) for e in events if e.get("reason") == "Failed"
           and exe and f'"{exe}"' in (e.get("message") or "")][-1:]
    i, container = next(((i, c) for i, c in enumerate(spec.get(group) or []) if c.get("name") == cname), (0, {}))
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    image = container.get("image") or cs.get("image") or ""
    if command or args:
        ev.append(Evidence("pod spec", f"{where} {cname} runs {json.dumps(command + args)} in image {image}",
                           _template_command(ns, kind, name, pname, f'{group}[?(@.name=="{cname}")].command')))
    why = (m["why"] if m else "the runtime refused it").strip()
    summary = (f"{where} {cname} cannot start: exec {exe!r}: {why}" if exe else f"{where} {cname} cannot start: "
               f"{_tail(message, 120)}") + (f" (image {image})" if image else "")
    base = exe.rsplit("/", 1)[-1]
    instead = _INSTEAD.get(base) if "not found" in why else None
    urls = [a for a in command[1:] + args if "://" in a]
    if base == "curl" and not urls:  # wget can stand in for curl fetching a URL, not for the rest of curl
        instead = None
    fix = ""
    if instead and command and command[0] == exe:
        # curl -s URL -> wget -qO- URL (the URLs kept, curl's flags dropped); bash ... -> sh ...
        new = ["wget", "-qO-", *urls] if base == "curl" else [instead, *command[1:], *args]
        summary += f"; the image has {instead}: run {shlex.join(new)} instead (or use an image that has {base})"
        if kind in _PATCHABLE:
            base_path = f"/spec/template/spec/{group}/{i}"
            fix = _jsonpatch(ns, kind, name, [{"op": "replace", "path": f"{base_path}/command", "value": new}]
                             + ([{"op": "remove", "path": f"{base_path}/args"}] if args else []))
        elif kind == "Pod":
            fix = (f"kubectl -n {ns} get pod {pname} -o yaml > {pname}.yaml   # in it, set {where} {cname}'s command "
                   f"to {json.dumps(new)}" + (" and drop its args" if args else "")
                   + f"\nkubectl -n {ns} replace --force -f {pname}.yaml   # a pod's command cannot change: this "
                   "deletes and re-creates it")
    if not fix and _can_undo(snap, kind, ns, name):
        summary += "; it started with the latest revision: roll back, then fix it"
        fix = _undo(ns, name)
    if not fix:
        fix = (f"kubectl -n {ns} edit {kind.lower()}/{name}   # {where} {cname}: run an executable "
               f"{image or 'the image'} has, or use an image that has {exe or 'it'}")
    return Finding("StartError", _subject(kind, name), ns, summary, ev, fix)


def _service_wait(snap: Snapshot, ns: str, kind: str, name: str, pname: str, i: int, container: dict[str, Any],
                  ev: list[Evidence]) -> tuple[str, str] | None:
    """(why, fix) when an init container's command waits for a Service the namespace does not have: point the
    command at the one it most likely meant, or create it. Adds the evidence to ``ev``."""
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    awaited = _awaited_service(snap, ns, command + args)
    if awaited is None:
        return None
    svc, names = awaited
    cname = container.get("name")
    ev.append(Evidence("pod spec", f"init container {cname} waits for {svc}: {_tail(shlex.join(command + args), 200)}",
                       _template_command(ns, kind, name, pname, f'initContainers[?(@.name=="{cname}")].command')))
    ev.append(Evidence("services", f"no Service {svc} in {ns}, so its name never resolves; {ns} has: "
                       f"{', '.join(names) or 'none'}", f"kubectl -n {ns} get services"))
    close = difflib.get_close_matches(svc, names, n=1, cutoff=0.6)
    if close and kind in _PATCHABLE:
        word = re.compile(rf"\b{re.escape(svc)}\b")
        base = f"/spec/template/spec/initContainers/{i}"
        ops = [{"op": "replace", "path": f"{base}/{field_name}", "value": [word.sub(close[0], a) for a in values]}
               for field_name, values in (("command", command), ("args", args)) if any(word.search(a) for a in values)]
        return (f"it waits for Service {svc}, which does not exist; {close[0]} does: wait for that",
                _jsonpatch(ns, kind, name, ops))
    meant = f"; if it means {close[0]}, fix its command (the pod must be re-created)" if close else ""
    return (f"it waits for Service {svc}, which does not exist in {ns}: create it (or deploy what provides it){meant}",
            f"kubectl -n {ns} create service clusterip {svc} --tcp=80:80   # the ports and selector of the real one")


def _init_findings(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, spec: dict[str, Any],
                   events: list[dict[str, Any]]) -> Finding | None:
    """The first init container that has not completed, when it fails or blocks: the app's containers wait for it
    (they show PodInitializing), so it is the cause."""
    ns, pname = _meta(pod)["namespace"], _meta(pod)["name"]
    inits = spec.get("initContainers") or (pod.get("spec") or {}).get("initContainers") or []
    sidecars = {c.get("name") for c in inits if c.get("restartPolicy") == "Always"}  # they run on by design
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
    subject = _subject(kind, name)
    for cs in statuses:
        cname = cs.get("name")
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated") or {}, state.get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if cname in sidecars or (terminated and terminated.get("exitCode") == 0):
            continue
        reason = waiting.get("reason", "")
        if reason == "CreateContainerConfigError":
            return _config_error(snap, pod, kind, name, cs, spec, events, init=True)
        if reason in _PULL_REASONS:
            return _image_finding(snap, pod, kind, name, cs, spec, events, init=True)
        if _start_failure(cs):
            return _start_error(snap, pod, kind, name, cs, spec, events, init=True)
        i, container = next(((i, c) for i, c in enumerate(inits) if c.get("name") == cname), (0, {}))
        failed = terminated or (last if last.get("exitCode") else {})
        if reason == "CrashLoopBackOff" or terminated or failed:
            code = failed.get("exitCode")
            shown = ("Init:CrashLoopBackOff" if reason == "CrashLoopBackOff" else "Init:Error" if terminated else
                     f"Init:{statuses.index(cs)}/{len(statuses)}, running again after a failure")
            ev = [Evidence("pod status", f"init container {cname}: {shown}, restartCount {cs.get('restartCount', 0)}, "
                           f"last exit code {code} ({failed.get('reason', '')}: "
                           f"{EXIT_CODES.get(code, 'the process chose it')})",
                           _last_state_command(ns, pname, True)),
                  Evidence("logs", "what the init container printed before it exited",
                           f"kubectl -n {ns} logs {pname} -c {cname}" + (" --previous" if not terminated else ""))]
            ev += [_event_evidence(e, ns) for e in events if e.get("reason") == "BackOff"][-1:]
            waits = _service_wait(snap, ns, kind, name, pname, i, container, ev)
            summary = (f"init container {cname} exits with code {code} ({EXIT_CODES.get(code, 'its own choice')}), so "
                       f"the pod's containers never start")
            if waits:
                why, fix = waits
                summary += f": {why}"
            elif _can_undo(snap, kind, ns, name):
                summary += "; it started with the latest revision: roll back, then fix it"
                fix = _undo(ns, name)
            else:
                fix = (f"kubectl -n {ns} logs {pname} -c {cname}" + (" --previous" if not terminated else "")
                       + "   # read why, then fix its command or what it needs")
            return Finding("InitContainerFailing", subject, ns, summary, ev, fix)
        if "running" in state and _cond(pod, "Initialized").get("status") == "False":
            cond = _cond(pod, "Initialized")
            started = (state.get("running") or {}).get("startedAt")
            lasted = _seconds_since(snap, started)
            ev = [Evidence("pod condition", f"Initialized=False {cond.get('reason')}: {cond.get('message', '')} "
                           f"(kubectl shows Init:{statuses.index(cs)}/{len(statuses)})",
                           f"kubectl -n {ns} get pod {pname}"),
                  Evidence("pod status", f"init container {cname} has been running since {started}"
                           + (f" ({lasted / 60:.0f} min)" if lasted is not None else ""),
                           f"kubectl -n {ns} logs {pname} -c {cname}   # what it is waiting for")]
            waits = _service_wait(snap, ns, kind, name, pname, i, container, ev)
            if waits:
                why, fix = waits
            elif lasted is not None and lasted > INIT_STUCK_S:
                why, fix = ("it has not finished in time", f"kubectl -n {ns} logs {pname} -c {cname}   # what it "
                            "waits for; then provide that, or fix its command")
            else:
                return None
            return Finding("InitContainerBlocked", subject, ns, f"init container {cname} keeps running, so the pod's "
                           f"containers never start: {why}", ev, fix)
        return None  # init containers run one at a time: the later ones have not started
    return None


# operation_generator.go: `MountVolume.SetUp failed for volume "config" : configmap "app-config" not found`; the
# configmap and secret plugins: `configmap references non-existent config key: KEY`, `references non-existent secret
# key: KEY`.
_MOUNT = re.compile(r'MountVolume\.SetUp failed for volume "(?P<volume>[^"]+)"\s*:\s*(?P<error>.+)')
_MOUNT_KEY = re.compile(r"references non-existent (?:config|secret) key: (?P<key>\S+)")


def _failed_mount(snap: Snapshot, pod: dict[str, Any], kind: str, name: str) -> Finding | None:
    """A pod held in ContainerCreating by a volume the kubelet cannot set up (its FailedMount events say which)."""
    status = pod.get("status") or {}
    states = [cs.get("state") or {} for cs in (status.get("initContainerStatuses") or [])
              + (status.get("containerStatuses") or [])]
    # Events outlive the problem: only a pod whose containers still wait for their volumes counts (not one that got
    # past them and now waits for something else, CreateContainerConfigError say).
    if status.get("phase") != "Pending" or any(set(st) - {"waiting"} or (st.get("waiting") or {}).get("reason") not in
                                               ("ContainerCreating", "PodInitializing") for st in states):
        return None
    ns, pname = _meta(pod)["namespace"], _meta(pod)["name"]
    mounts = [e for e in _events_for(snap, "Pod", pname, ns) if e.get("reason") == "FailedMount"]
    if not mounts:
        return None
    event = ([e for e in mounts if _MOUNT.search(e.get("message") or "")] or mounts)[-1]
    waiting = sorted({((cs.get("state") or {}).get("waiting") or {}).get("reason", "")
                      for cs in status.get("containerStatuses") or []} - {""}) or ["ContainerCreating"]
    ev = [Evidence("pod status", f"pod {pname} is Pending, its containers waiting {', '.join(waiting)}",
                   f"kubectl -n {ns} get pod {pname}"), _event_evidence(event, ns)]
    subject = _subject(kind, name)
    m = _MOUNT.search(event.get("message") or "")
    spec = _template_spec(snap, kind, ns, name, pod)
    i, volume = next(((i, v) for i, v in enumerate(spec.get("volumes") or []) if m and v.get("name") == m["volume"]),
                     (0, {}))
    source = "configMap" if "configMap" in volume else "secret" if "secret" in volume else ""
    if not m or not source:
        return Finding("FailedMount", subject, ns, f"a volume of the pod cannot be mounted: "
                       f"{(event.get('message') or '')[:160]}", ev, f"kubectl -n {ns} describe pod {pname}")
    vol, err = m["volume"], m["error"]
    src = volume[source]
    obj = src.get("name") if source == "configMap" else src.get("secretName")
    obj_kind = source.lower()
    users = [f"{c.get('name')} at {vm.get('mountPath')}" for c in (spec.get("initContainers") or [])
             + (spec.get("containers") or []) for vm in c.get("volumeMounts") or [] if vm.get("name") == vol]
    items = src.get("items") or []
    ev.append(Evidence("pod spec", f"volume {vol} is {source} {obj}"
                       + (f" (items {', '.join(str(it.get('key')) for it in items)})" if items else "")
                       + f", mounted by {', '.join(users) or 'no container'}",
                       _template_command(ns, kind, name, pname, f'volumes[?(@.name=="{vol}")]')))
    base = f"/spec/template/spec/volumes/{i}/{source}"
    key = (km := _MOUNT_KEY.search(err)) and km["key"]
    refs = [{"container": None, "volume": vol, "key": it.get("key"),
             "name_path": f"{base}/{'name' if source == 'configMap' else 'secretName'}",
             "key_path": f"{base}/items/{j}/key", "optional_path": f"{base}/optional"}
            for j, it in enumerate(items) if key is None or it.get("key") == key]
    if not refs and key is None:
        refs = [{"container": None, "volume": vol, "key": None, "key_path": None, "optional_path": f"{base}/optional",
                 "name_path": f"{base}/{'name' if source == 'configMap' else 'secretName'}"}]
    if key is None and not _MISSING_OBJECT.search(err):
        return Finding("FailedMount", subject, ns, f"volume {vol} ({source} {obj}) cannot be mounted: {err[:160]}",
                       ev, f"kubectl -n {ns} describe pod {pname}")
    why, fix = _config_fix(snap, ns, kind, name, obj_kind, obj, key, refs, ev)
    return Finding("FailedMount", subject, ns, f"volume {vol} cannot be mounted, so the pod stays ContainerCreating: "
                   f"it {why}", ev, fix)


def _container_findings(snap: Snapshot, pod: dict[str, Any], kind: str, name: str) -> Finding | None:
    ns, pname = _meta(pod)["namespace"], _meta(pod)["name"]
    status = pod.get("status") or {}
    spec = _template_spec(snap, kind, ns, name, pod)
    events = _events_for(snap, "Pod", pname, ns)
    subject = _subject(kind, name)
    init = _init_findings(snap, pod, kind, name, spec, events)
    if init is not None:
        return init
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        reason = waiting.get("reason", "")
        cname = cs.get("name")
        if reason == "CreateContainerConfigError":
            return _config_error(snap, pod, kind, name, cs, spec, events, init=False)
        if reason in _PULL_REASONS:
            return _image_finding(snap, pod, kind, name, cs, spec, events, init=False)
        if _start_failure(cs):  # before the crash loop it causes: exit code 128, the command never ran
            return _start_error(snap, pod, kind, name, cs, spec, events, init=False)
        killed_by_probe = [e for e in events if e.get("reason") == "Killing"
                           and "failed liveness probe" in (e.get("message") or "")]
        if killed_by_probe or (reason == "CrashLoopBackOff" and any(
                e.get("reason") == "Unhealthy" and "Liveness" in (e.get("message") or "") for e in events)):
            unhealthy = [e for e in events if e.get("reason") == "Unhealthy" and "Liveness" in (e.get("message") or "")]
            ev = [_event_evidence(e, ns) for e in unhealthy[-1:] + killed_by_probe[-1:]]
            ev.append(Evidence("pod status", f"container {cname}: restartCount {cs.get('restartCount', 0)}, last exit "
                               f"code {last.get('exitCode', '?')} ({last.get('reason', '')})",
                               f"kubectl -n {ns} get pod {pname} -o "
                               f"jsonpath='{{.status.containerStatuses[*].lastState}}'"))
            output = " ".join(e.get("message") or "" for e in unhealthy)
            why, fix = _probe_fix(snap, kind, ns, name, spec, "livenessProbe", output)
            return Finding("LivenessProbeFailing", subject, ns, f"the liveness probe fails and the kubelet kills the "
                           f"container: {why}", ev, fix,
                           queries=[("restarts", f'kube_pod_container_status_restarts_total{{namespace="{ns}",'
                                                 f'pod="{pname}"}}')])
        if last.get("reason") == "OOMKilled":
            limit = next(((c.get("resources") or {}).get("limits") or {}).get("memory") for c in
                         spec.get("containers") or [] if c.get("name") == cname)
            ev = [Evidence("pod status", f"container {cname}: last terminated OOMKilled, exit code "
                           f"{last.get('exitCode')}, restartCount {cs.get('restartCount', 0)}, memory limit {limit}",
                           f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.containerStatuses[*].lastState}}'")]
            doubled = format_quantity("memory", 2 * quantity(limit)) if limit else "512Mi"
            return Finding("OOMKilled", subject, ns, f"the container outgrew its memory limit ({limit}) and was killed "
                           f"by the kernel: raise the limit (or fix the leak)", ev,
                           f"kubectl -n {ns} set resources {kind.lower()}/{name} -c {cname} --limits=memory={doubled}",
                           queries=[("memory working set", f'container_memory_working_set_bytes{{namespace="{ns}",'
                                                           f'pod="{pname}", container="{cname}"}}')])
        if reason == "CrashLoopBackOff" or (last.get("exitCode") and cs.get("restartCount")):
            code = last.get("exitCode")
            ev = [Evidence("pod status", f"container {cname}: {reason or 'restarted'}, restartCount "
                           f"{cs.get('restartCount', 0)}, last exit code {code} ({last.get('reason', '')}: "
                           f"{EXIT_CODES.get(code, 'the process chose it')})",
                           f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.containerStatuses[*].lastState}}'"),
                  Evidence("logs", "what the process printed before it exited",
                           f"kubectl -n {ns} logs {pname} -c {cname} --previous")]
            ev += [_event_evidence(e, ns) for e in events if e.get("reason") == "BackOff"][-1:]
            undo = _can_undo(snap, kind, ns, name)
            fix = _undo(ns, name) if undo else (f"kubectl -n {ns} logs {pname} -c {cname} --previous   # read why, "
                                                f"then fix the command or the config it needs")
            return Finding("CrashLoopBackOff", subject, ns, f"the process exits with code {code} "
                           f"({EXIT_CODES.get(code, 'its own choice')})" + (
                               "; it started with the latest revision: roll back, then fix it" if undo else ""),
                           ev, fix, queries=[("restarts", f'kube_pod_container_status_restarts_total{{namespace="{ns}",'
                                                          f'pod="{pname}"}}')])
    if status.get("phase") == "Running" and not _ready(pod):
        unhealthy = [e for e in events if e.get("reason") == "Unhealthy" and "Readiness" in (e.get("message") or "")]
        if unhealthy:
            ev = [Evidence("pod condition", f"Ready=False: {_cond(pod, 'Ready').get('message', '')}",
                           f"kubectl -n {ns} get pod {pname}")]
            ev += [_event_evidence(e, ns) for e in unhealthy[-1:]]
            ev += _service_endpoints_evidence(snap, pod)
            output = " ".join(e.get("message") or "" for e in unhealthy)
            why, fix = _probe_fix(snap, kind, ns, name, spec, "readinessProbe", output)
            return Finding("ReadinessProbeFailing", subject, ns, f"the pods run but never turn Ready, so no Service "
                           f"sends them traffic: {why}", ev, fix)
    return None


def _selected(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _service_endpoints_evidence(snap: Snapshot, pod: dict[str, Any]) -> list[Evidence]:
    out = []
    labels = _meta(pod).get("labels") or {}
    for svc in snap.services:
        if _meta(svc).get("namespace") != _meta(pod).get("namespace"):
            continue
        if _selected(labels, (svc.get("spec") or {}).get("selector") or {}):
            name, ns = _meta(svc)["name"], _meta(svc)["namespace"]
            ready = _ready_endpoints(snap, ns, name)
            out.append(Evidence("endpoints", f"service {name} has {ready} ready endpoint(s)",
                                f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name}"))
    return out


def _ready_endpoints(snap: Snapshot, ns: str, service: str) -> int:
    return sum(1 for s in snap.endpointslices if _meta(s).get("namespace") == ns
               and (_meta(s).get("labels") or {}).get("kubernetes.io/service-name") == service
               for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))


def _services(snap: Snapshot) -> list[Finding]:
    found = []
    for svc in snap.services:
        selector = (svc.get("spec") or {}).get("selector") or {}
        ns, name = _meta(svc)["namespace"], _meta(svc)["name"]
        pods = [p for p in snap.pods if _meta(p).get("namespace") == ns and _live(p)]
        if not selector or any(_selected(_meta(p).get("labels") or {}, selector) for p in pods):
            continue
        # Which workload did it mean? The one whose pod labels are closest to the selector (or named like it).
        best, best_score = None, 0.0
        for p in pods:
            labels = {k: v for k, v in (_meta(p).get("labels") or {}).items() if k != "pod-template-hash"}
            score = sum(difflib.SequenceMatcher(None, str(selector.get(k, "")), str(v)).ratio()
                        for k, v in labels.items() if k in selector) + (1 if name in labels.values() else 0)
            if score > best_score:
                best, best_score = labels, score
        sel_text = ",".join(f"{k}={v}" for k, v in selector.items())
        ev = [Evidence("service", f"service {name} selects {sel_text}",
                      f"kubectl -n {ns} get service {name} -o jsonpath='{{.spec.selector}}'"),
              Evidence("pods", f"no pod in {ns} has labels {sel_text}", f"kubectl -n {ns} get pods -l {sel_text}"),
              Evidence("endpoints", f"service {name} has {_ready_endpoints(snap, ns, name)} ready endpoint(s)",
                       f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name}")]
        if best:
            ev.append(Evidence("pods", "the pods it most likely means carry "
                               + ",".join(f"{k}={v}" for k, v in best.items()),
                               f"kubectl -n {ns} get pods --show-labels"))
            fix = _jsonpatch(ns, "Service", name, [{"op": "replace", "path": "/spec/selector", "value": best}])
        else:
            fix = f"kubectl -n {ns} get pods --show-labels   # then set the Service's selector to their labels"
        found.append(Finding("ServiceSelectorMismatch", f"service/{name}", ns, f"its selector {sel_text} matches no "
                             f"pod, so it has no endpoints and every request to it fails", ev, fix))
    return found + _service_ports(snap)


def _declared_ports(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The container ports the pods declare (name, containerPort), once each."""
    seen: dict[tuple[Any, Any], dict[str, Any]] = {}
    for p in pods:
        for c in (p.get("spec") or {}).get("containers") or []:
            for port in c.get("ports") or []:
                seen.setdefault((port.get("name"), port.get("containerPort")), port)
    return list(seen.values())


def _port_meant(wanted: int | str, service_port: int, declared: list[dict[str, Any]]) -> int | str:
    """The declared port a wrong targetPort most likely meant: the one with the Service's own number, else the
    closest name, else the first; named if it has a name (a name survives the container changing its number)."""
    def key(port: dict[str, Any]) -> tuple[bool, float]:
        return (port.get("containerPort") == service_port,
                difflib.SequenceMatcher(None, str(wanted), str(port.get("name") or "")).ratio())
    best = max(declared, key=key)
    return best.get("name") or best["containerPort"]


def _service_ports(snap: Snapshot) -> list[Finding]:
    """A targetPort no selected pod declares. A *named* one is certain: the EndpointSlice controller cannot resolve
    it, so the slices list the pods with no port and kube-proxy programs nothing (`kubectl get endpoints` says
    <none>). A *number* no container declares is likely wrong (declaring ports is optional, but these pods declare
    theirs), and the connection is refused on a cluster where the pods run."""
    found = []
    for svc in snap.services:
        spec = svc.get("spec") or {}
        selector = spec.get("selector") or {}
        ns, name = _meta(svc)["namespace"], _meta(svc)["name"]
        pods = [p for p in snap.pods if _meta(p).get("namespace") == ns and _live(p)
                and _selected(_meta(p).get("labels") or {}, selector)]
        declared = _declared_ports(pods)
        if not pods or not declared:
            continue
        for i, sp in enumerate(spec.get("ports") or []):
            target = sp.get("targetPort", sp.get("port"))
            named = isinstance(target, str) and not target.isdigit()
            if any((p.get("name") if named else p.get("containerPort")) == (target if named else int(target))
                   for p in declared):
                continue
            meant = _port_meant(target, sp.get("port"), declared)
            has = ", ".join(f"{p.get('name') or '(unnamed)'}={p.get('containerPort')}" for p in declared)
            sel_text = ",".join(f"{k}={v}" for k, v in selector.items())
            ev = [Evidence("service", f"service {name} port {sp.get('port')} targets {target!s}",
                           f"kubectl -n {ns} get service {name} -o jsonpath='{{.spec.ports}}'"),
                  Evidence("pods", f"its {len(pods)} pod(s) ({sel_text}) declare the ports {has}",
                           f"kubectl -n {ns} get pods -l {sel_text} "
                           f"-o jsonpath='{{.items[0].spec.containers[*].ports}}'")]
            if named:
                listed = _ready_endpoints(snap, ns, name)
                ev.append(Evidence("endpoints", f"service {name}'s EndpointSlices list {listed} ready pod(s) with no "
                                   f"port for {target!r}, so no traffic reaches them",
                                   f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name} "
                                   f"-o jsonpath='{{.items[*].ports}}'; kubectl -n {ns} get endpoints {name}"))
            fix = _jsonpatch(ns, "Service", name, [{"op": "replace", "path": f"/spec/ports/{i}/targetPort",
                                                    "value": meant}])
            what = "no pod has a port named" if named else "no container declares port"
            found.append(Finding("ServicePortMismatch", f"service/{name}", ns, f"its port {sp.get('port')} targets "
                                 f"{target!s}, but {what} {target!s} (they declare {has}), so connections to it are "
                                 f"refused", ev, fix))
    return found


_QUOTA = re.compile(r"exceeded quota: (?P<q>[^,]+), requested: (?P<req>\S+), used: (?P<used>\S+), "
                    r"limited: (?P<lim>\S+)")
_LIMIT = re.compile(r"(?P<bound>maximum|minimum) (?P<res>\w+) usage per (?P<scope>Container|Pod) is (?P<edge>\S+?),? "
                    r"(?:but|No) (?P<what>limit|request) is (?P<value>[^,\s]+)")


def _pairs(text: str) -> dict[str, float]:
    return {k: quantity(v) for k, v in (p.split("=", 1) for p in text.rstrip(".").split(","))}


# serviceaccount admission: `error looking up service account NS/NAME: serviceaccount "NAME" not found`
_NO_SA = re.compile(r'error looking up service account (?P<ns>[^/\s]+)/(?P<sa>[^:\s]+): serviceaccount "[^"]+" '
                    r"not found")
# pod-security admission: `violates PodSecurity "baseline:latest": privileged (container "c" must not set ...), ...`
_PSA = re.compile(r'violates PodSecurity "(?P<level>[^":]+):(?P<version>[^"]+)": (?P<checks>.+)')


def _retry(ns: str, rname: str) -> str:
    # The ReplicaSet controller retries refused creates with exponential back-off (minutes, after a burst of
    # refusals); any change to the ReplicaSet makes it sync at once, so a fix outside it touches it after.
    return (f"kubectl -n {ns} annotate replicaset {rname} --overwrite troubleshooting.labkit.io/retry=\"$(date +%s)\""
            "   # retry now, not after the controller's back-off")


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for k, v in more.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = json.loads(json.dumps(v))


def _psa_patch(spec: dict[str, Any], checks: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """A strategic-merge patch of the pod template that meets the Pod Security checks named in ``checks``, what it
    changes, and the checks it leaves to a person (hostPath volumes, hostPort, ...: the pod needs them or it is
    redesigned)."""
    container_fix = {"privileged": {"privileged": None},
                     "allowPrivilegeEscalation != false": {"allowPrivilegeEscalation": False},
                     "unrestricted capabilities": {"capabilities": {"drop": ["ALL"]}},
                     "non-default capabilities": {"capabilities": {"add": None}}}
    pod_fix = {"runAsNonRoot != true": {"securityContext": {"runAsNonRoot": True}},
               "seccompProfile": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
               "host namespaces": {"hostNetwork": None, "hostPID": None, "hostIPC": None}}
    groups = {c.get("name"): g for g in ("initContainers", "containers") for c in spec.get(g) or []}
    patch: dict[str, Any] = {}
    changed, manual = [], []
    for label, detail in re.findall(r"(?:^|, )([^(]+?) \(([^)]*)\)", checks):
        if label in container_fix:
            for cname in re.findall(r'"([^"]+)"', detail.split(" must")[0]) or list(groups):
                entries = patch.setdefault(groups.get(cname, "containers"), [])  # merged by name, as kubectl does
                entry = next((e for e in entries if e["name"] == cname), None)
                if entry is None:
                    entry = {"name": cname, "securityContext": {}}
                    entries.append(entry)
                _merge(entry["securityContext"], container_fix[label])
            changed.append(label)
        elif label in pod_fix:
            _merge(patch, pod_fix[label])
            changed.append(label)
        else:
            manual.append(f"{label} ({detail})")
    return patch, changed, manual


def _replicasets(snap: Snapshot) -> list[Finding]:
    found = []
    for rs in snap.replicasets:
        cond = _cond(rs, "ReplicaFailure")
        ns, rname = _meta(rs)["namespace"], _meta(rs)["name"]
        missing = int((rs.get("spec") or {}).get("replicas") or 0) - int((rs.get("status") or {}).get("replicas") or 0)
        refused = [e for e in _events_for(snap, "ReplicaSet", rname, ns) if e.get("reason") == "FailedCreate"]
        if cond.get("status") == "True":
            message = cond.get("message") or ""
            ev = [Evidence("replicaset condition", f"ReplicaFailure=True {cond.get('reason')}: {message[:240]}",
                           f"kubectl -n {ns} describe replicaset {rname}")]
        elif refused and missing > 0:  # the events, while pods are still missing (they outlive a fixed refusal)
            message, ev = refused[-1].get("message") or "", []
        else:
            continue
        kind, name = _owner(snap, rs)
        if kind == "Pod":
            kind, name = "ReplicaSet", rname
        ev += [_event_evidence(e, ns) for e in refused[-1:]]
        if (m := _QUOTA.search(message)):
            req, used, lim = _pairs(m["req"]), _pairs(m["used"]), _pairs(m["lim"])
            need = {r: used.get(r, 0) + req[r] * max(missing, 1) for r in req
                    if used.get(r, 0) + req[r] > lim.get(r, 0)}
            hard = {r: format_quantity(r, v) for r, v in need.items()}
            ev.append(Evidence("resourcequota", f"quota {m['q']}: used {m['used']} of {m['lim']}; each pod asks "
                               f"{m['req']}; {missing} pod(s) missing",
                               f"kubectl -n {ns} describe resourcequota {m['q']}"))
            fix = (f"kubectl -n {ns} patch resourcequota {m['q']} --type=merge -p "
                   f"{shlex.quote(json.dumps({'spec': {'hard': hard}}))}\n" + _retry(ns, rname))
            found.append(Finding("QuotaExceeded", _subject(kind, name), ns, f"ResourceQuota {m['q']} is full: "
                                 f"{missing} pod(s) cannot be created; raise the quota (or ask less per pod, or run "
                                 f"fewer)", ev, fix))
        elif (hits := list(_LIMIT.finditer(message))):
            dep = _deployment(snap, ns, name) if kind == "Deployment" else None
            spec = ((dep or rs).get("spec") or {}).get("template", {}).get("spec") or {}
            cname = ((spec.get("containers") or [{}])[0]).get("name", "")
            args = []
            for h in hits:
                flag = "limits" if h["bound"] == "maximum" else "requests"
                args.append(f"--{flag}={h['res']}={h['edge']}")
                if h["bound"] == "maximum":  # a request above the new limit would be refused too
                    args.append(f"--requests={h['res']}={h['edge']}")
            ev.append(Evidence("limitrange", "; ".join(h.group(0) for h in hits),
                               f"kubectl -n {ns} describe limitrange"))
            found.append(Finding("LimitRangeViolation", _subject(kind, name), ns, "a LimitRange in the namespace "
                                 "refuses the pods: " + "; ".join(f"{h['res']} {h['what']} {h['value']} is above the "
                                                          f"{h['bound']} {h['edge']}" if h["bound"] == "maximum" else
                                                          f"{h['res']} {h['what']} {h['value']} is below the minimum "
                                                          f"{h['edge']}" for h in hits), ev,
                                 f"kubectl -n {ns} set resources {kind.lower()}/{name} -c {cname} "
                                 + " ".join(dict.fromkeys(args))))
        elif (m := _NO_SA.search(message)):
            sa = m["sa"]
            have = sorted(_meta(a)["name"] for a in snap.serviceaccounts if _meta(a).get("namespace") == ns)
            ev.append(Evidence("serviceaccount", f"no ServiceAccount {sa} in {ns}; it has: {', '.join(have) or 'none'}",
                               f"kubectl -n {ns} get serviceaccounts"))
            close = difflib.get_close_matches(sa, [a for a in have if a != "default"], n=1, cutoff=0.6)
            if close and kind in _PATCHABLE:
                why = f"{close[0]!r} exists: run them as that"
                fix = _jsonpatch(ns, kind, name, [{"op": "replace", "path": "/spec/template/spec/serviceAccountName",
                                                   "value": close[0]}])
            else:
                why = "create it (and bind the Role it needs), or name one that exists"
                fix = f"kubectl -n {ns} create serviceaccount {sa}\n" + _retry(ns, rname)
            found.append(Finding("ServiceAccountNotFound", _subject(kind, name), ns, f"its pods run as ServiceAccount "
                                 f"{sa}, which does not exist, so the API server refuses them ({missing} missing): "
                                 f"{why}", ev, fix))
        elif (m := _PSA.search(message)):
            dep = _deployment(snap, ns, name) if kind == "Deployment" else None
            spec = ((dep or rs).get("spec") or {}).get("template", {}).get("spec") or {}
            patch, changed, manual = _psa_patch(spec, m["checks"])
            ev.append(Evidence("namespace", f"namespace {ns} enforces Pod Security level {m['level']} "
                               f"({m['version']}); the pods fail: {_tail(m['checks'], 200)}",
                               f"kubectl get namespace {ns} --show-labels"))
            fix = (f"kubectl -n {ns} patch {kind.lower()}/{name} --type=strategic -p "
                   f"{shlex.quote(json.dumps({'spec': {'template': {'spec': patch}}}))}" if patch else
                   f"kubectl -n {ns} edit {kind.lower()}/{name}   # make the pod template meet {m['level']}")
            if patch and kind == "ReplicaSet":
                fix += "\n" + _retry(ns, rname)
            if manual and patch:
                fix += f"\n# by hand (the pods need a redesign, or another namespace): {'; '.join(manual)}"
            found.append(Finding("PodSecurityViolation", _subject(kind, name), ns, f"namespace {ns} enforces Pod "
                                 f"Security {m['level']!r} and the pod template breaks it "
                                 f"({', '.join(changed + [x.split(' (')[0] for x in manual])}), so no pod is "
                                 f"created ({missing} missing): change the pods, not the namespace's level",
                                 ev, fix))
    return found


_SCALABLE = {"Deployment": "deployments", "StatefulSet": "statefulsets", "ReplicaSet": "replicasets"}
# The condition's reason says which kind of metric failed (horizontal.go computeStatusForXMetric).
_METRIC_TYPES = {"FailedGetPodsMetric": "Pods", "FailedGetObjectMetric": "Object",
                 "FailedGetExternalMetric": "External"}
# replica_calculator.go: "missing request for %s in container %s of Pod %s"
_NO_REQUEST = re.compile(r"missing request for (?P<resource>\S+) in container (?P<container>\S+) of Pod")


def _hpa_target(snap: Snapshot, hpa: dict[str, Any], cond: dict[str, Any]) -> Finding:
    """AbleToScale=False FailedGetScale: the target the HPA names cannot be read (no such object, or no such kind)."""
    ns, name = _meta(hpa)["namespace"], _meta(hpa)["name"]
    target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    tkind, tname = target.get("kind", ""), target.get("name", "")
    message = cond.get("message") or ""
    ev = [Evidence("hpa condition", f"AbleToScale=False FailedGetScale: {message[:240]}",
                   f"kubectl -n {ns} describe hpa {name}")]
    ev += [_event_evidence(e, ns) for e in _events_for(snap, "HorizontalPodAutoscaler", name, ns)
           if e.get("reason") == "FailedGetScale"][-1:]
    if "no matches for kind" in message or tkind not in _SCALABLE:
        kinds = difflib.get_close_matches(tkind, list(_SCALABLE), n=1, cutoff=0.5)
        ev.append(Evidence("api resources", f"no kind {tkind!r} has a scale subresource here"
                           + (f"; {kinds[0]} does" if kinds else ""), "kubectl api-resources --api-group=apps"))
        fix = (_jsonpatch(ns, "HorizontalPodAutoscaler", name, [{"op": "replace", "path": "/spec/scaleTargetRef/kind",
                                                                  "value": kinds[0]}]) if kinds else
               f"kubectl -n {ns} edit hpa {name}   # spec.scaleTargetRef: the kind and name of a workload that exists")
        return Finding("HPATargetNotFound", f"horizontalpodautoscaler/{name}", ns, f"its scaleTargetRef names kind "
                       f"{tkind!r}, which cannot be scaled" + (f" (meant: {kinds[0]}?)" if kinds else ""), ev, fix)
    pool = snap.deployments if tkind == "Deployment" else snap.replicasets if tkind == "ReplicaSet" else []
    have = sorted(_meta(o)["name"] for o in pool if _meta(o).get("namespace") == ns)
    close = difflib.get_close_matches(tname, have, n=3, cutoff=0.6)
    listed = (f"the closest: {', '.join(close)}" if close else f"it has: {', '.join(have) or 'none'}") \
        if pool or tkind in ("Deployment", "ReplicaSet") else "(not read by the engine: list them)"
    ev.append(Evidence(_SCALABLE[tkind], f"no {tkind} {tname} in {ns}; {listed}", f"kubectl -n {ns} get "
                       f"{_SCALABLE[tkind]}"))
    if close:
        fix = _jsonpatch(ns, "HorizontalPodAutoscaler", name, [{"op": "replace", "path": "/spec/scaleTargetRef/name",
                                                                "value": close[0]}])
        why = f"{close[0]} exists: point it there"
    else:
        fix = (f"kubectl -n {ns} get {_SCALABLE[tkind]}   # then set the HPA's spec.scaleTargetRef.name to one of them "
               f"(kubectl -n {ns} edit hpa {name})")
        why = "point it at the workload it should scale (or create that workload)"
    return Finding("HPATargetNotFound", f"horizontalpodautoscaler/{name}", ns, f"its scaleTargetRef names {tkind} "
                   f"{tname}, which does not exist, so it cannot read or change a replica count: {why}", ev, fix)


def _hpas(snap: Snapshot) -> list[Finding]:
    found = []
    for hpa in snap.hpas:
        able = _cond(hpa, "AbleToScale")
        if able.get("status") == "False" and able.get("reason") == "FailedGetScale":
            found.append(_hpa_target(snap, hpa, able))  # no target, no metric to read: one finding, not two
            continue
        cond = _cond(hpa, "ScalingActive")
        if cond.get("status") != "False" or cond.get("reason") == "ScalingDisabled":
            continue
        ns, name = _meta(hpa)["namespace"], _meta(hpa)["name"]
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        message = cond.get("message") or ""
        ev = [Evidence("hpa condition", f"ScalingActive=False {cond.get('reason')}: {message[:240]}",
                       f"kubectl -n {ns} describe hpa {name}")]
        ev += [_event_evidence(e, ns) for e in _events_for(snap, "HorizontalPodAutoscaler", name, ns)][-1:]
        dep = _deployment(snap, ns, target.get("name", "")) if target.get("kind") == "Deployment" else None
        containers = ((dep or {}).get("spec") or {}).get("template", {}).get("spec", {}).get("containers") or []
        metrics = (hpa.get("spec") or {}).get("metrics") or []
        resources = {m.get("resource", {}).get("name") for m in metrics if m.get("type") == "Resource"} - {None}
        lacking = [(c["name"], r) for c in containers for r in resources
                   if r not in ((c.get("resources") or {}).get("requests") or {})]
        no_request = _NO_REQUEST.search(message)
        custom = {m.get("type"): ((m.get(m.get("type", "").lower()) or {}).get("metric") or {}).get("name")
                  for m in metrics if m.get("type") in ("Pods", "Object", "External")}
        if lacking or (no_request and not dep):
            if not lacking:  # the target is not in the snapshot: the condition names the container
                lacking = [(no_request["container"], no_request["resource"])]
            ev.append(Evidence("deployment", f"container(s) {', '.join(sorted({c for c, _ in lacking}))} of "
                               f"{target.get('kind', '').lower()}/{target.get('name')} request no "
                               f"{', '.join(sorted({r for _, r in lacking}))}: utilization is usage / request",
                               f"kubectl -n {ns} get deployment {target.get('name')} -o "
                               f"jsonpath='{{.spec.template.spec.containers[*].resources}}'"))
            defaults = {"cpu": "100m", "memory": "128Mi"}
            flags = ",".join(f"{r}={defaults.get(r, '100m')}" for r in sorted({r for _, r in lacking}))
            names = sorted({c for c, _ in lacking})
            # `set resources` without -c sets every container: name the one that lacks it when others have theirs
            only = f" -c {names[0]}" if len(names) == 1 and (not dep or len(containers) > 1) else ""
            fix = f"kubectl -n {ns} set resources deployment/{target.get('name')}{only} --requests={flags}"
            why = "its target's containers have no resource request, so there is no utilization to compute"
        elif (mtype := _METRIC_TYPES.get(cond.get("reason", ""))):
            external = mtype == "External"
            api = "v1beta1.external.metrics.k8s.io" if external else "v1beta1.custom.metrics.k8s.io"
            metric = custom.get(mtype) or "METRIC"
            described = next((m["object"].get("describedObject") or {} for m in metrics if m.get("type") == "Object"),
                             {})
            plural = (described.get("kind") or "").lower()
            plural += "es" if plural.endswith("s") else "s"
            path = (f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}" if external else
                    f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{ns}/{plural}/{described.get('name')}/{metric}"
                    if mtype == "Object" else f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{ns}/pods/*/{metric}")
            ev.append(Evidence("metrics api", f"whether {api} serves {metric} for the target's pods",
                               f"kubectl get --raw '{path}'"))
            fix = (f"kubectl get apiservice {api}   # the adapter (prometheus-adapter) must be Available and have a "
                   f"rule for {metric}")
            why = f"the {'external' if external else 'custom'} metrics API returns no {metric}"
        else:
            ev.append(Evidence("metrics api", "whether the metrics pipeline answers for these pods",
                               f"kubectl -n {ns} top pods   # and: kubectl get apiservice v1beta1.metrics.k8s.io"))
            fix = "kubectl get apiservice v1beta1.metrics.k8s.io   # metrics-server (or the adapter) must be Available"
            why = "the metrics API returns nothing for its pods"
        found.append(Finding("HPAWithoutMetrics", f"horizontalpodautoscaler/{name}", ns,
                             f"the autoscaler cannot compute a replica count: {why}", ev, fix))
    return found


def _job_pods(snap: Snapshot, job: dict[str, Any]) -> list[dict[str, Any]]:
    ns, name, uid = _meta(job)["namespace"], _meta(job)["name"], _meta(job).get("uid")
    return [p for p in snap.pods if _meta(p).get("namespace") == ns and (
        any(r.get("kind") == "Job" and (r.get("uid") == uid if uid else r.get("name") == name)
            for r in _meta(p).get("ownerReferences") or [])
        or (_meta(p).get("labels") or {}).get("batch.kubernetes.io/job-name") == name)]


def _jobs(snap: Snapshot) -> list[Finding]:
    """A Job that gave up (condition Failed=True): its pods are Failed, so the pod rules do not see them."""
    found = []
    for job in snap.jobs:
        cond = _cond(job, "Failed")
        if cond.get("status") != "True":
            continue
        ns, name = _meta(job)["namespace"], _meta(job)["name"]
        spec, status = job.get("spec") or {}, job.get("status") or {}
        reason = cond.get("reason") or ""
        ev = [Evidence("job condition", f"Failed=True {reason}: {cond.get('message', '')}",
                       f"kubectl -n {ns} describe job {name}")]
        ev += [_event_evidence(e, ns) for e in _events_for(snap, "Job", name, ns) if e.get("reason") == reason][-1:]
        exits = []  # (pod, container, terminated state) of each container that ended with an error
        for p in _job_pods(snap, job):
            for cs in ((p.get("status") or {}).get("initContainerStatuses") or []) + (
                    (p.get("status") or {}).get("containerStatuses") or []):
                t = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
                if t.get("exitCode"):
                    exits.append((_meta(p)["name"], cs.get("name"), t))
        codes = dict.fromkeys(t["exitCode"] for _, _, t in exits)
        meaning = "; ".join(f"exit code {c} ({EXIT_CODES.get(c, 'the process chose it')})" for c in codes)
        if exits:
            shown = "; ".join(f"{pod}/{c} exit {t['exitCode']} ({t.get('reason', '')})" for pod, c, t in exits[:3])
            ev.append(Evidence("pods", f"{len({pod for pod, _, _ in exits})} pod(s) failed: {shown}"
                               + (f" and {len(exits) - 3} more" if len(exits) > 3 else ""),
                               f"kubectl -n {ns} get pods -l batch.kubernetes.io/job-name={name} -o custom-columns="
                               "POD:.metadata.name,EXIT:.status.containerStatuses[*].state.terminated.exitCode,"
                               "REASON:.status.containerStatuses[*].state.terminated.reason"))
            started = next((t for _, _, t in exits if t.get("reason") == "StartError"), None)
            if started:
                ev.append(Evidence("pod status", f"StartError: {_tail(started.get('message') or '', 200)}",
                                   f"kubectl -n {ns} describe pods -l batch.kubernetes.io/job-name={name}"))
        if reason == "BackoffLimitExceeded":
            summary = (f"the Job gave up after {status.get('failed', len(exits))} failed pod(s) (backoffLimit "
                       f"{spec.get('backoffLimit', 6)})" + (f": its command ends with {meaning}" if meaning else ""))
            look = f"kubectl -n {ns} logs job/{name}   # why its pods failed; fix the command (or what it needs)"
        elif reason == "DeadlineExceeded":
            summary = (f"the Job ran longer than its activeDeadlineSeconds ({spec.get('activeDeadlineSeconds')} s), "
                       f"so its pods were stopped: make it faster, or give it longer")
            look = (f"kubectl -n {ns} logs job/{name}   # how far it got; raise spec.activeDeadlineSeconds (or make it "
                    f"faster) in its manifest")
        else:
            summary = f"the Job failed ({reason}): {cond.get('message', '')}" + (f"; {meaning}" if meaning else "")
            look = f"kubectl -n {ns} logs job/{name}   # why its pods failed"
        # A Job's pod template cannot be changed: once fixed in its manifest, the Job is run anew.
        fix = (f"{look}\n# then run it anew (a Job's pod template cannot change): "
               f"kubectl -n {ns} delete job {name} && kubectl -n {ns} apply -f JOB-MANIFEST.yaml")
        found.append(Finding("JobFailed", f"job/{name}", ns, summary, ev, fix))
    return found


def _deployments(snap: Snapshot) -> list[Finding]:
    found = []
    for dep in snap.deployments:
        cond = _cond(dep, "Progressing")
        if cond.get("reason") != "ProgressDeadlineExceeded":
            continue
        if (dep.get("status") or {}).get("observedGeneration", 0) < _meta(dep).get("generation", 0):
            continue
        ns, name = _meta(dep)["namespace"], _meta(dep)["name"]
        revs = _revisions(snap, dep)
        ev = [Evidence("deployment condition", f"Progressing=False ProgressDeadlineExceeded: {cond.get('message')}",
                       f"kubectl -n {ns} rollout status deployment/{name}")]
        if revs:
            new = revs[-1]
            images = ",".join(c.get("image", "") for c in new["spec"]["template"]["spec"].get("containers") or [])
            rev = (_meta(new).get("annotations") or {}).get("deployment.kubernetes.io/revision")
            ev.append(Evidence("rollout history", f"revision {rev} ({_meta(new)['name']}, image {images}): "
                               f"{(new.get('status') or {}).get('readyReplicas', 0) or 0} of "
                               f"{new['spec'].get('replicas', 0)} ready", f"kubectl -n {ns} rollout history "
                               f"deployment/{name}"))
        undo = len(revs) >= 2
        found.append(Finding("ProgressDeadlineExceeded", f"deployment/{name}", ns, "the rollout has stopped: its new "
                             "pods did not become available within progressDeadlineSeconds" + (
                                 "; the previous revision worked: roll back, then fix the new one" if undo else ""),
                             ev, _undo(ns, name) if undo else f"kubectl -n {ns} describe deployment {name}"))
    return found


def _scope_pods_on(snap: Snapshot, node: str) -> list[dict[str, Any]]:
    return [p for p in snap.pods if (p.get("spec") or {}).get("nodeName") == node and _live(p)]


def _workload_pods_on(snap: Snapshot, node: str) -> list[dict[str, Any]]:
    return [p for p in snap.all_pods if (p.get("spec") or {}).get("nodeName") == node and _live(p)
            and not any(r.get("kind") == "DaemonSet" for r in _meta(p).get("ownerReferences") or [])]


def _node_in_scope(snap: Snapshot, node: dict[str, Any]) -> bool:
    """A sick node matters while it runs the scope's pods (or, for the whole cluster, while it takes or holds work)."""
    name = _meta(node)["name"]
    if snap.namespace:
        return bool(_scope_pods_on(snap, name))
    return not (node.get("spec") or {}).get("unschedulable") or bool(_workload_pods_on(snap, name))


def _drain(snap: Snapshot, node: str) -> str:
    """``kubectl drain``; with ``--force`` only when pods without a controller run there: drain refuses them
    otherwise, and on a node that has to go they are lost either way (nothing recreates them)."""
    bare = [p for p in _workload_pods_on(snap, node)
            if not any(r.get("controller") for r in _meta(p).get("ownerReferences") or [])]
    return f"kubectl drain {node} --ignore-daemonsets --delete-emptydir-data" + (" --force" if bare else "")


def _pods_line(snap: Snapshot, node: str) -> Evidence:
    pods = _scope_pods_on(snap, node) if snap.namespace else _workload_pods_on(snap, node)
    names = ", ".join(f"{_meta(p)['namespace']}/{_meta(p)['name']}" for p in pods[:6]) or "none"
    return Evidence("pods", f"pods on {node}: {names}", f"kubectl get pods -A -o wide --field-selector "
                                                          f"spec.nodeName={node}")


def _nodes(snap: Snapshot) -> list[Finding]:
    found = []
    for node in snap.nodes:
        if not _node_in_scope(snap, node):
            continue
        name = _meta(node)["name"]
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
            ev += [_event_evidence(e, None) for e in snap.node_events
                   if (e.get("involvedObject") or {}).get("name") == name and e.get("reason") == c.get("reason")][-1:]
            ev.append(_pods_line(snap, name))
            found.append(Finding(code, f"node/{name}", snap.namespace or "", f"node {name} reports {ctype} "
                                 f"({c.get('reason')}); its pods are at risk: drain it (it is cordoned first), "
                                 f"repair or reboot it, then `kubectl uncordon {name}`", ev, _drain(snap, name),
                                 queries=[("NPD's gauge", f'problem_gauge{{type="{ctype}"}} > 0')]
                                 if code == "NodeProblem" else []))
    nodes = {_meta(n)["name"]: n for n in snap.nodes}
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
        lost = " (79: fallen off the bus, its jobs are lost)" if any(r["xid"] == 79 for r in rows) else ""
        found.append(Finding("GPUXidError", f"node/{node_name}", snap.namespace or "",
                             f"{node_name} reports {what}{lost}; drain the node, reset the GPU (nvidia-smi -r) or "
                             f"replace it, then `kubectl uncordon {node_name}`", ev, _drain(snap, node_name),
                             queries=[("XID per GPU", f'{XID_METRIC}{{Hostname="{node_name}"}} > 0')]))
    return found


def analyze(snap: Snapshot) -> list[Finding]:
    """Every finding in ``snap``, ranked (most likely root cause first); pure: reads no cluster."""
    findings: list[Finding] = []
    per_workload: dict[tuple[str, str, str], Finding] = {}
    for pod in snap.pods:
        if not (_live(pod) or _failed_alone(pod)):
            continue
        kind, name = _owner(snap, pod)
        finding = (_unschedulable(snap, pod, kind, name) or _failed_mount(snap, pod, kind, name)
                   or _container_findings(snap, pod, kind, name))
        if finding is None:
            continue
        key = (finding.namespace, finding.subject, finding.cause)
        if key in per_workload:  # one finding per workload and cause; count the pods
            per_workload[key].explains.append(f"pod/{_meta(pod)['name']}")
            continue
        per_workload[key] = finding
        findings.append(finding)
    findings += (_services(snap) + _replicasets(snap) + _jobs(snap) + _hpas(snap) + _deployments(snap)
                 + _nodes(snap))
    return rank(findings)


def rank(findings: list[Finding]) -> list[Finding]:
    """Order by how much a cause explains; a stuck rollout absorbs the findings about its own pods."""
    by_subject: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        by_subject.setdefault((f.namespace, f.subject), []).append(f)
    kept = []
    for f in findings:
        if f.cause != "ProgressDeadlineExceeded":
            continue
        for other in by_subject.get((f.namespace, f.subject), []):
            if other is not f:
                f.explains.append(other.cause)
                f.evidence += other.evidence[:2]
                f.summary += f" (the new pods: {other.cause})"
    for f in findings:
        absorbed = any(g.cause == "ProgressDeadlineExceeded" and f is not g and f.cause in g.explains
                       and (g.namespace, g.subject) == (f.namespace, f.subject) for g in findings)
        if not absorbed:
            kept.append(f)
    return sorted(kept, key=lambda f: (-f.score, f.namespace, f.subject))


# --- evidence from elsewhere: Prometheus here; logs (lesson 09) and traces (lesson 10) plug in ----------------

EvidenceSource = Callable[[Snapshot, Finding], Iterable[Evidence]]
_EVIDENCE_SOURCES: dict[str, EvidenceSource] = {}


def register_evidence_source(name: str, source: EvidenceSource) -> None:
    """Add evidence to every finding from another signal (logs, traces): ``source(snapshot, finding)`` returns
    Evidence lines, each naming its query (a LogsQL query, a Jaeger search). Registering a name again replaces it.
    A source that fails is named in the diagnosis' notes; the diagnosis still stands."""
    _EVIDENCE_SOURCES[name] = source


def _prometheus_evidence(snap: Snapshot, finding: Finding) -> Iterable[Evidence]:
    if not finding.queries or not addons.url("prometheus"):
        return []
    out = []
    for what, expr in finding.queries:
        frame = promql.query(expr)
        if not frame.empty:
            out.append(Evidence("prometheus", f"{what}: {expr} = {frame['value'].max():g}",
                                f"curl -s '{promql.prometheus_url()}/api/v1/query' --data-urlencode 'query={expr}'"))
    return out


register_evidence_source("prometheus", _prometheus_evidence)


def collect_evidence(snap: Snapshot, findings: list[Finding]) -> list[str]:
    """Ask every registered evidence source about every finding; return notes naming the sources that failed."""
    notes = []
    for name, source in _EVIDENCE_SOURCES.items():
        for finding in findings:
            try:
                finding.evidence += list(source(snap, finding))
            except (LabkitError, OSError, ValueError, KeyError) as exc:
                notes.append(f"evidence source {name!r} failed: {exc}")
                break
    return notes


def diagnose(lab: Lab | None = None, namespace: str | None = None) -> Diagnosis:
    """Ranked findings for ``namespace`` (``None``: the whole cluster), each with evidence and a fix command.

    Introduced in notebook 11_troubleshooting. What it reads is what ``kubectl get pods,events,deploy,rs,svc,
    endpointslices,hpa,pvc -n NS -o yaml``, ``kubectl get nodes,storageclasses -o yaml`` and the add-ons' metrics
    show; ``labkit diagnose -n NS`` prints the same.
    """
    if lab is None:
        from .kube.client import connect

        lab = connect()
    snap = snapshot(lab, namespace)
    findings = analyze(snap)
    notes = collect_evidence(snap, findings)
    if not snap.gpu_source:
        notes.append("GPU exporter not running: XID errors not checked (labkit up --with gpu-exporter)")
    return Diagnosis(namespace, findings, notes)
