"""Lesson 11, common cluster troubleshooting (常见集群排错): notebook 11_troubleshooting's scenarios and exercises.

A scenario is data (``labkit/data/troubleshooting/scenarios.yaml``): manifests, sometimes a second revision that
breaks them, sometimes a fault outside the namespace (a node taint, a kernel problem node-problem-detector reports, a
GPU's XID error, the namespace's Pod Security label). Scenarios marked ``benchmark_only`` are left out of
:func:`all_scenarios` (so out of the notebook's tickets and the e2e drill); ``benchmarks/diagnose_confusion.py`` runs
them with the rest. :func:`inject` sets one up in its own namespace and waits until its symptom shows;
:func:`clean_up` undoes every fault outside the namespaces. The learner is told the symptom only; the engine
(:func:`labkit.insight.diagnose`, ``lk.diagnose``) must name the cause, and the exercises check the fix live.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pandas as pd
import yaml

from .. import addons
from ..cluster import backends
from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..errors import LabkitError, NotFound, WaitFailed, WaitTimeout
from ..i18n import _
from ..insight import Diagnosis, diagnose
from ..kube import nodes
from ..kube.apply import apply
from ..kube.client import Lab, api_errors
from ..kube.namespaces import lesson_namespace
from ..kube.objects import get, live_pods, patch
from ..kube.rollouts import rollout_state
from ..kube.wait import poll, wait_for, wait_for_set
from ..operations import NPD_CONDITIONS, inject_fault, pod_resources, reboot, restore_gpu_nodes, wait_npd_ready
from ..paths import data_file
from ..sim import node_logs

NAMESPACE = "lesson-11"
# kubectl's resource names -> (kind, apiVersion), for the scenarios' fields.
KINDS = {"deployment": ("Deployment", "apps/v1"), "service": ("Service", "v1"), "node": ("Node", "v1"),
         "replicaset": ("ReplicaSet", "apps/v1"), "horizontalpodautoscaler": ("HorizontalPodAutoscaler",
                                                                              "autoscaling/v2"),
         "job": ("Job", "batch/v1")}
API_VERSIONS = {kind: version for kind, version in KINDS.values()}
STORAGE_CLASSES_ADDED = ("fast-ssd",)


@dataclass(frozen=True)
class Scenario:
    """One failure: what the user sees, what the engine must name, how it is set up and how the lab tells it fixed."""

    name: str
    symptom: str
    cause: str
    manifests: str
    then: dict[str, Any] = field(default_factory=dict)
    fault: dict[str, Any] = field(default_factory=dict)
    settle: dict[str, Any] | list[dict[str, Any]] = field(default_factory=dict)  # a list: wait for each
    fixed: dict[str, Any] = field(default_factory=dict)
    addons: tuple[str, ...] = ()
    cleanup: dict[str, Any] = field(default_factory=dict)
    benchmark_only: bool = False  # run by benchmarks/diagnose_confusion.py, not by the notebook or the e2e drill
    also: tuple[str, ...] = ()    # a second fault in the same namespace: the engine must find it too

    @property
    def node_level(self) -> bool:
        """Its fault acts on a node, and its fix (a drain) moves every pod off that node, not just its own."""
        return bool(self.fault.get("node_problem") or self.fault.get("gpu_xid"))


@cache
def _data() -> dict[str, Any]:
    return yaml.safe_load(data_file("troubleshooting/scenarios.yaml").read_text())


def all_scenarios(*, benchmark: bool = False) -> dict[str, Scenario]:
    """Every scenario, by name; ``benchmark=True`` adds the benchmark-only ones (more of kubelet 1.36's failures:
    they would lengthen the notebook's drill and the e2e test, which iterate over this)."""
    every = {name: Scenario(name=name, **{k: tuple(v) if k in ("addons", "also") else v for k, v in spec.items()})
             for name, spec in _data()["scenarios"].items()}
    return {name: sc for name, sc in every.items() if benchmark or not sc.benchmark_only}


def scenario(name: str) -> Scenario:
    try:
        return all_scenarios(benchmark=True)[name]
    except KeyError:
        raise LabkitError(_("no scenario {name!r}").format(name=name),
                          fix=_("one of: {names}").format(names=", ".join(all_scenarios(benchmark=True)))) from None


def symptoms() -> pd.DataFrame:
    """What each scenario looks like to a user: the ticket you get, nothing more."""
    return pd.DataFrame([{"scenario": s.name, "symptom": s.symptom} for s in all_scenarios().values()])


def not_shown() -> pd.DataFrame:
    """Failures of the course's list that the embedded backend cannot show honestly, and why."""
    return pd.DataFrame([{"failure": k, "why": v} for k, v in _data()["not_shown"].items()])


def namespace_of(name: str) -> str:
    return f"{NAMESPACE}-{name}"


# --- faults outside the namespace ---------------------------------------------------------------------------

def _gpus_of(namespace: str, node: str) -> list[int]:
    held = pod_resources(namespace=namespace)
    return sorted({int(g) for g in held[held["node"] == node]["gpu"].dropna()}) or [0]


def _inject_fault(lab: Lab, sc: Scenario, namespace: str) -> None:
    if taint := sc.fault.get("taint"):
        nodes.taint(lab, taint["node"], taint["key"], taint["effect"], taint.get("value"))
    if problem := sc.fault.get("node_problem"):
        wait_npd_ready(lab)
        node_logs.inject(problem["node"], problem["problem"])
    if xid := sc.fault.get("gpu_xid"):
        for gpu in _gpus_of(namespace, xid["node"]):
            inject_fault(xid["node"], gpu, xid=xid["xid"])


def clean_up(lab: Lab, names: list[str] | None = None) -> None:
    """Undo every fault the scenarios put outside their namespaces: taints removed, sick nodes rebooted, GPU boards
    replaced, nodes uncordoned, StorageClasses they led to deleted. The namespaces go with :func:`remove_namespaces`."""
    gpu_nodes: set[str] = set()
    for sc in (scenario(n) for n in (names or list(all_scenarios()))):
        if taint := sc.fault.get("taint"):
            nodes.untaint(lab, taint["node"], taint["key"])
        if (problem := sc.fault.get("node_problem")) and addons.url("node-problem-detector"):
            node = get(lab, "Node", problem["node"], api_version="v1") or {}
            if any(c.get("status") == "True" for c in (node.get("status") or {}).get("conditions") or []
                   if c.get("type") in NPD_CONDITIONS):
                reboot(lab, problem["node"])
        if problem:
            nodes.cordon(lab, problem["node"], unschedulable=False)
        if xid := sc.fault.get("gpu_xid"):
            gpu_nodes.add(xid["node"])
        for sc_name in (sc.cleanup or {}).get("storageclass", "").split():
            try:
                with api_errors(_("deleting storageclass {name}").format(name=sc_name), server=lab.server):
                    lab.dynamic.resources.get(api_version="storage.k8s.io/v1", kind="StorageClass").delete(
                        name=sc_name)
            except NotFound:
                pass
    if gpu_nodes and addons.url("gpu-exporter"):
        restore_gpu_nodes(lab)  # faulty boards replaced, GPU nodes uncordoned (lesson 12's undo too)
    for node in gpu_nodes:
        nodes.cordon(lab, node, unschedulable=False)


def remove_namespaces(lab: Lab) -> list[str]:
    """Delete every scenario namespace (``kubectl delete namespace -l labkit.io/lesson`` for lesson-11-*), without
    waiting: what the fixed scenarios still hold (CPU, GPUs) goes back to the lab."""
    with api_errors(_("listing namespaces"), server=lab.server):
        names = [n.metadata.name for n in lab.core.list_namespace().items
                 if n.metadata.name.startswith(NAMESPACE + "-")]
    for name in names:
        with contextlib.suppress(NotFound), api_errors(_("deleting namespace {name}").format(name=name),
                                                       server=lab.server):
            lab.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
            lab.core.delete_namespace(name, propagation_policy="Background")
    return names


# --- waiting for a symptom, or for its fix ------------------------------------------------------------------

def _pods(lab: Lab, namespace: str, selector: str) -> list[dict[str, Any]]:
    res = lab.dynamic.resources.get(api_version="v1", kind="Pod")
    with api_errors(_("listing pods -l {selector}").format(selector=selector), server=lab.server):
        return [p for p in res.get(namespace=namespace, label_selector=selector).to_dict().get("items") or []
                if not p["metadata"].get("deletionTimestamp")]


def _state(lab: Lab, namespace: str, spec: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``spec`` (a scenario's ``settle`` or ``fixed``) holds now, and what was seen."""
    kind, name, cond = spec["kind"], spec.get("name"), spec["condition"]
    selector = spec.get("selector", "")
    if cond == "unschedulable":
        pods = _pods(lab, namespace, selector)
        stuck = [p for p in pods
                 if any(c.get("reason") == "Unschedulable" for c in p["status"].get("conditions") or [])]
        return bool(stuck), f"{len(stuck)} of {len(pods)} pods Unschedulable"
    if cond.startswith("waiting="):  # an init container's too (kubectl shows Init:CrashLoopBackOff)
        want = cond.split("=", 1)[1]
        pods = _pods(lab, namespace, selector)
        hit = [p for p in pods for s in (p["status"].get("initContainerStatuses") or [])
               + (p["status"].get("containerStatuses") or [])
               if ((s.get("state") or {}).get("waiting") or {}).get("reason") == want]
        return bool(hit), f"{len(hit)} pods waiting {want}"
    if cond.startswith("event="):
        reason = cond.split("=", 1)[1]
        with api_errors(_("listing events"), server=lab.server):
            events = lab.core.list_namespaced_event(namespace, field_selector=f"reason={reason}").items
        return bool(events), f"{len(events)} {reason} events"
    if cond == "endpoints":
        slices = wait_for_set(lab, "EndpointSlice", namespace=namespace, api_version="discovery.k8s.io/v1",
                              label_selector=f"kubernetes.io/service-name={name}", condition=lambda _: True, timeout=5)
        # A slice without ports (a targetPort no pod declares by name) lists its pods, yet no traffic reaches them.
        ready = sum(1 for s in slices if s.get("ports") for e in s.get("endpoints") or []
                    if (e.get("conditions") or {}).get("ready"))
        return ready > 0, f"service {name}: {ready} ready endpoints with a port"
    if cond == "gpu-xid":
        from ..insight import gpu_metrics

        rows = gpu_metrics()[0]
        return any(r["node"] == name for r in rows), f"XID rows: {rows}"
    obj = get(lab, kind, name, namespace=namespace, api_version=API_VERSIONS.get(kind))
    if cond in ("rolled-out", "no-restarts") or cond.startswith("off-node="):
        done, message = rollout_state(obj)
        if not done:
            return False, message
        pods = live_pods(lab, namespace, ((obj or {}).get("spec") or {}).get("selector", {}).get("matchLabels") or {})
        if cond == "no-restarts":
            restarted = [p.metadata.name for p in pods if sum(s.restart_count for s in p.status.container_statuses
                                                               or [])]
            young = [p.metadata.name for p in pods if (dt.datetime.now(dt.UTC) - p.status.start_time
                                                       ).total_seconds() < 8]
            return not restarted and not young and bool(pods), f"restarted: {restarted}, started < 8 s ago: {young}"
        if cond.startswith("off-node="):
            node = cond.split("=", 1)[1]
            on = [p.metadata.name for p in pods if p.spec.node_name == node]
            return not on, f"pods still on {node}: {on}"
        return True, message
    from ..kube.wait import parse_condition

    return parse_condition(cond)(obj), f"{kind}/{name}: {((obj or {}).get('status') or {}).get('conditions')}"


def wait_state(lab: Lab, namespace: str, spec: dict[str, Any], *, timeout: float = 60.0, what: str = "") -> str:
    """Block until ``spec`` holds (``kubectl wait``-like, for the conditions a scenario names); return what was seen.
    Several kinds of objects make the state: nothing single to watch, so it is polled."""
    def check() -> tuple[bool, str]:
        try:
            return _state(lab, namespace, spec)
        except WaitTimeout as exc:
            return False, str(exc)

    return poll(check, timeout=timeout,
                what=lambda seen: _("{what} not reached in {namespace} within {timeout:.0f}s; last seen: {seen}")
                .format(what=what or spec, namespace=namespace, timeout=timeout, seen=seen),
                fix=f"kubectl -n {namespace} get all,events")


def _settled(lab: Lab, namespace: str) -> tuple[bool, str]:
    """Whether the namespace's workloads are at rest: each Deployment rolled out, each ReplicaSet at its count (an
    old revision's pods gone), no pod terminating. Until then a diagnosis may still see what the fix replaces."""
    for kind in ("Deployment", "ReplicaSet", "Pod"):
        res = lab.dynamic.resources.get(api_version="v1" if kind == "Pod" else "apps/v1", kind=kind)
        with api_errors(_("listing {kind}s in {namespace}").format(kind=kind, namespace=namespace), server=lab.server):
            items = res.get(namespace=namespace).to_dict().get("items") or []
        for obj in items:
            name, status = obj["metadata"]["name"], obj.get("status") or {}
            if kind == "Deployment" and not (done := rollout_state(obj))[0]:
                return False, f"deployment {name}: {done[1]}"
            have, want = status.get("replicas") or 0, obj["spec"].get("replicas") or 0
            if kind == "ReplicaSet" and have != want:
                return False, f"replicaset {name}: {have} pods, wants {want}"
            # The ReplicaSet controller clears a failure to create pods at its next sync after the count is right;
            # until then a diagnosis still reads the refusal the fix removed.
            if kind == "ReplicaSet" and any(c.get("type") == "ReplicaFailure" and c.get("status") == "True"
                                            for c in status.get("conditions") or []):
                return False, f"replicaset {name}: still reports ReplicaFailure"
            if kind == "Pod" and obj["metadata"].get("deletionTimestamp"):
                return False, f"pod {name} terminating"
    return True, "settled"


def wait_settled(lab: Lab, namespace: str, *, timeout: float = 60.0) -> str:
    """Block until :func:`_settled` holds: after a fix, before the diagnosis that judges it."""
    return poll(lambda: _settled(lab, namespace), timeout=timeout,
                what=lambda seen: _("{namespace} did not settle within {timeout:.0f}s; last seen: {seen}").format(
                    namespace=namespace, timeout=timeout, seen=seen),
                fix=f"kubectl -n {namespace} get deploy,rs,pods")


# --- the drill: inject, diagnose, fix, check ------------------------------------------------------------------

def reset_namespace(lab: Lab, namespace: str) -> str:
    """:func:`labkit.lesson_namespace`, faster: the old pods go first with no grace period (``kubectl delete pods
    --all --grace-period=0 --force``), so the namespace controller does not wait out their 30 s grace periods."""
    try:
        with api_errors(_("deleting the pods of {namespace}").format(namespace=namespace), server=lab.server):
            lab.core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    except NotFound:
        pass
    return lesson_namespace(lab, namespace)


def inject(lab: Lab, name: str, *, namespace: str | None = None, timeout: float = 90.0) -> str:
    """Set scenario ``name`` up in its own namespace (reset first) and wait until its symptom shows; return the
    namespace. What it applies is ``scenario(name).manifests`` (``kubectl apply -n NS -f -``), then ``.then``."""
    sc = scenario(name)
    ns = namespace or namespace_of(name)
    if sc.addons:
        addons.require(*sc.addons)
    clean_up(lab, [name])
    reset_namespace(lab, ns)
    if labels := sc.fault.get("namespace_labels"):  # e.g. the Pod Security level it enforces, before any pod
        patch(lab, "Namespace", ns, {"metadata": {"labels": labels}}, api_version="v1", patch_type="merge")
    if sc.fault.get("taint"):
        _inject_fault(lab, sc, ns)
    apply(lab, sc.manifests, namespace=ns)
    if sc.then or sc.node_level:
        for doc in yaml.safe_load_all(sc.manifests):
            if doc and doc["kind"] == "Deployment":
                wait_for(lab, "Deployment", doc["metadata"]["name"], namespace=ns, condition="condition=Available",
                         timeout=timeout)
    for target, body in (sc.then or {}).items():  # kubectl patch KIND/NAME -p BODY: the change that breaks it
        kind, _slash, obj = target.partition("/")
        patch(lab, KINDS[kind][0], obj, body, namespace=ns, api_version=KINDS[kind][1])
    if sc.node_level:
        _inject_fault(lab, sc, ns)
    for settle in sc.settle if isinstance(sc.settle, list) else [sc.settle]:  # a pair has one symptom per fault
        wait_state(lab, ns, settle, timeout=timeout, what=_("the symptom of {name}").format(name=name))
    return ns


def inject_many(lab: Lab, names: list[str], *, timeout: float = 90.0) -> dict[str, str]:
    """:func:`inject` several namespaced scenarios at once (each in its own namespace); return name -> namespace."""
    if any(scenario(n).node_level for n in names):
        raise LabkitError(_("node-level scenarios drain nodes: inject them one at a time with inject()"))
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        return dict(zip(names, pool.map(lambda n: inject(lab, n, timeout=timeout), names), strict=True))


def run_fix(command: str, *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a finding's fix in bash with the lab's kubectl, as a learner would paste it into a terminal."""
    done = subprocess.run(["bash", "-c", command], env=backends.env(), capture_output=True, text=True,  # noqa: S603
                          timeout=timeout, check=False)
    if done.returncode:
        raise LabkitError(_("the fix failed (exit {code}): {command}\n{stdout}{stderr}").format(
            code=done.returncode, command=command, stdout=done.stdout, stderr=done.stderr))
    return done


@dataclass
class DrillResult:
    """One scenario: what the engine said before the fix, whether its fix fixed it, and what it says after."""

    scenario: str
    expected: str
    namespace: str
    before: Diagnosis | None = None
    fixed: bool = False
    after: Diagnosis | None = None
    error: str = ""
    seconds: float = 0.0

    @property
    def top(self) -> str:
        return self.before.top.cause if self.before and self.before.top else "(nothing)"


def drill(lab: Lab, names: list[str] | None = None, *, fix: bool = True, workers: int = 6,
          timeout: float = 90.0, keep: bool = False) -> list[DrillResult]:
    """Inject each scenario, diagnose its namespace, run the top finding's fix, wait for the lab to call it fixed,
    diagnose again, delete its namespace (``keep=True`` keeps them). Namespaced scenarios run concurrently;
    node-level ones (their fix drains a node) one at a time
    after them. A scenario without ``fixed`` is diagnosed only: its fix needs a person (what a failed Job should have
    run). For the e2e test and ``benchmarks/diagnose_confusion.py``."""
    chosen = [scenario(n) for n in (names or list(all_scenarios()))]

    def one(sc: Scenario) -> DrillResult:
        started = time.monotonic()
        result = DrillResult(sc.name, sc.cause, namespace_of(sc.name))
        try:
            result.namespace = inject(lab, sc.name, timeout=timeout)
            result.before = diagnose(lab, result.namespace)
            if fix and result.before.top is not None and sc.fixed:
                run_fix(result.before.top.fix)
                wait_state(lab, result.namespace, sc.fixed, timeout=timeout,
                           what=_("the fix of {name}").format(name=sc.name))
                result.fixed = True
                # The fix's rollout must be over (the old revision's pending pod gone) before the verdict, or a busy
                # machine sees the cause it just fixed.
                wait_settled(lab, result.namespace, timeout=timeout)
                result.after = diagnose(lab, result.namespace)
        except (LabkitError, WaitFailed, WaitTimeout, subprocess.TimeoutExpired) as exc:
            result.error = str(exc)
        finally:
            if sc.node_level:
                clean_up(lab, [sc.name])
            if not keep:  # what a fixed scenario holds (GPUs, CPU) goes back before the node-level ones run
                with contextlib.suppress(NotFound):
                    with api_errors(_("deleting namespace {name}").format(name=result.namespace), server=lab.server):
                        lab.core.delete_namespace(result.namespace, propagation_policy="Background")
        result.seconds = time.monotonic() - started
        return result

    with ThreadPoolExecutor(max_workers=workers) as pool:
        first = list(pool.map(one, [s for s in chosen if not s.node_level]))
    return first + [one(s) for s in chosen if s.node_level]


def confusion(results: list[DrillResult]) -> pd.DataFrame:
    """Scenario (injected cause) x the engine's first-ranked cause: counts; a perfect engine fills the diagonal."""
    frame = pd.DataFrame([{"injected": r.expected, "diagnosed": r.top} for r in results])
    return pd.crosstab(frame["injected"], frame["diagnosed"])


def evidence_table(diagnosis: Diagnosis, rank: int = 1) -> pd.DataFrame:
    """The evidence of one finding (rank 1 = the top): source, what it says, the command that shows it."""
    finding = diagnosis.findings[rank - 1]
    return pd.DataFrame([{"source": e.source, "evidence": e.line, "command": e.command} for e in finding.evidence])


# --- exercises: fix an injected fault with kubectl only ---------------------------------------------------------

def _exercise_check(name: str) -> Any:
    def check(attempt: Attempt) -> list[str]:
        sc = scenario(name)
        ns = namespace_of(name)
        if get(attempt.lab, "Namespace", ns, api_version="v1") is None:
            return [_("there is no namespace {ns}: run the cell that injects {name!r} first")
                    .format(ns=ns, name=name)]
        try:
            ok, seen = _state(attempt.lab, ns, sc.fixed)
        except (LabkitError, WaitTimeout) as exc:
            ok, seen = False, str(exc)
        problems = [] if ok else [_("not fixed yet: {seen}").format(seen=seen)]
        still = [f for f in diagnose(attempt.lab, ns).findings if f.cause == sc.cause]
        problems += [_("the cluster still shows {cause} on {subject}: {summary}").format(
            cause=f.cause, subject=f.subject, summary=f.summary) for f in still]
        for doc in yaml.safe_load_all(sc.manifests):
            if doc and get(attempt.lab, doc["kind"], doc["metadata"]["name"], namespace=ns,
                           api_version=doc["apiVersion"]) is None:
                problems.append(_("{kind} {name} is gone: fix it, do not delete it")
                                .format(kind=doc['kind'], name=doc['metadata']['name']))
        return problems

    return check


def _solve(name: str) -> Any:
    def solve(attempt: Attempt) -> None:
        top = diagnose(attempt.lab, namespace_of(name)).top
        if top is not None:
            run_fix(top.fix)

    return solve


EXERCISES = [
    Exercise(
        id="11-fix-image",
        task="Scenario `image-pull` (namespace lesson-11-image-pull): the web front end never served a page. Find why "
             "with kubectl and fix it with kubectl (do not delete the Deployment).",
        hint="kubectl get pods; kubectl describe pod -l app=web (Events: Failed to pull image ...); which image runs "
             "fine elsewhere in the namespace? kubectl set image deployment/web web=...",
        solution="kubectl -n lesson-11-image-pull set image deployment/web web=nginx:1.27\n"
                 "kubectl -n lesson-11-image-pull rollout status deployment/web",
        check=_exercise_check("image-pull"),
        solve=_solve("image-pull"),
    ),
    Exercise(
        id="11-fix-service",
        task="Scenario `service-selector` (namespace lesson-11-service-selector): the API's pods are Ready but "
             "http://api fails. Make the Service reach them, with kubectl.",
        hint="kubectl get endpointslices -l kubernetes.io/service-name=api shows none; compare kubectl get svc api "
             "-o jsonpath='{.spec.selector}' with kubectl get pods --show-labels",
        solution="kubectl -n lesson-11-service-selector patch service api --type=json \\\n"
                 "  -p '[{\"op\":\"replace\",\"path\":\"/spec/selector\","
                 "\"value\":{\"app\":\"api\",\"tier\":\"backend\"}}]'",
        check=_exercise_check("service-selector"),
        solve=_solve("service-selector"),
    ),
    Exercise(
        id="11-fix-quota",
        task="Scenario `quota` (namespace lesson-11-quota): checkout was scaled to 3 replicas and only 2 run. Get all "
             "3 running without removing the ResourceQuota.",
        hint="kubectl describe rs -l app=checkout (FailedCreate: exceeded quota ...); kubectl describe quota compute "
             "shows Used and Hard; kubectl patch resourcequota compute --type=merge -p '{\"spec\":{\"hard\":{...}}}'",
        solution="kubectl -n lesson-11-quota patch resourcequota compute --type=merge \\\n"
                 "  -p '{\"spec\":{\"hard\":{\"requests.cpu\":\"1500m\",\"limits.cpu\":\"3\"}}}'\n"
                 "# the ReplicaSet controller retries refused creates with back-off (minutes); touching the ReplicaSet "
                 "retries now:\n"
                 "kubectl -n lesson-11-quota annotate rs -l app=checkout --overwrite "
                 "troubleshooting.labkit.io/retry=now",
        check=_exercise_check("quota"),
        solve=_solve("quota"),
    ),
    Exercise(
        id="11-fix-crash",
        task="Scenario `crash-loop` (namespace lesson-11-crash-loop): since the last release the orders worker keeps "
             "restarting. Bring the service back with kubectl.",
        hint="kubectl get pods (CrashLoopBackOff, RESTARTS); kubectl describe pod shows Last State: Terminated, Exit "
             "Code; kubectl rollout history deployment/orders; kubectl rollout undo ...",
        solution="kubectl -n lesson-11-crash-loop rollout undo deployment/orders\n"
                 "kubectl -n lesson-11-crash-loop rollout status deployment/orders",
        check=_exercise_check("crash-loop"),
        solve=_solve("crash-loop"),
    ),
]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "11_troubleshooting",
    "common cluster troubleshooting (常见集群排错): a method (symptom → scope → evidence → cause → fix) with "
    "kubectl first, injected failure scenarios told only by their symptom, an insight engine like CIE "
    "(容器洞察引擎, `lk.diagnose`), exercises fixed with kubectl only",
    LessonRights("lists nodes, StorageClasses and pods in every namespace (lk.diagnose); taints nodes in "
                 "its scenarios",
                 refused="its insight engine reads every namespace and the nodes, and its scenarios taint "
                         "and break shared nodes"),
    exercises=tuple(EXERCISES),
)
