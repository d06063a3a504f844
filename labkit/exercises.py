"""Exercises at the end of each notebook: ``lk.exercises.check(lab, "01-rollout-v3", namespace=ns)``.

Introduced in notebook 01_deployment_rollouts. A checker reads the live cluster and says PASS, or what is
still wrong and a hint. ``solution(...)`` reveals the kubectl/YAML answer; progress is kept in
``labkit.paths.progress_file()`` so a learner can see what they have done across notebooks.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .client import Lab, api_errors
from .errors import NotFound
from .paths import progress_file
from .rollouts import rollout_state, rollout_undo


@dataclass
class Result:
    """What a checker found: passed or not, what is wrong, and a hint."""

    exercise: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    hint: str = ""

    def __str__(self) -> str:
        if self.passed:
            return f"PASS {self.exercise}: well done."
        lines = [f"NOT YET {self.exercise}:"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines + ([f"  hint: {self.hint}"] if self.hint else []))

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


@dataclass
class Exercise:
    """One task: what to do, how the cluster is checked, the answer."""

    id: str
    task: str
    hint: str
    solution: str
    checker: Callable[[Lab, str], list[str]]
    # What the notebook does for the learner under LABKIT_IN_TEST=1: the solution, through the API.
    autosolve: Callable[[Lab, str], None] | None = None


EXERCISES: dict[str, Exercise] = {}


def exercise(ex: Exercise) -> Exercise:
    EXERCISES[ex.id] = ex
    return ex


def _get(lab: Lab, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    res = lab.dynamic.resources.get(api_version="apps/v1", kind=kind)
    try:
        with api_errors(f"reading {kind.lower()}/{name}", server=lab.server):
            return res.get(name=name, namespace=namespace).to_dict()
    except NotFound:
        return None


def _patch(lab: Lab, kind: str, name: str, namespace: str, body: dict[str, Any]) -> None:
    """A strategic merge patch, as ``kubectl patch KIND NAME -p '{...}'`` sends it."""
    res = lab.dynamic.resources.get(api_version="apps/v1", kind=kind)
    with api_errors(f"patching {kind.lower()}/{name}", server=lab.server):
        res.patch(name=name, namespace=namespace, body=body, content_type="application/strategic-merge-patch+json")


def _resolve(value: Any, replicas: int, *, round_up: bool) -> int:
    """maxSurge/maxUnavailable as a number of pods (percentages round as the controller rounds them)."""
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * replicas / 100
        return int(-(-exact // 1)) if round_up else int(exact)
    return int(value)


def _pods(lab: Lab, namespace: str, selector: dict[str, str]) -> list[Any]:
    sel = ",".join(f"{k}={v}" for k, v in selector.items())
    with api_errors(f"listing pods in {namespace}", server=lab.server):
        return [p for p in lab.core.list_namespaced_pod(namespace, label_selector=sel).items
                if not p.metadata.deletion_timestamp]


def check(lab: Lab, exercise_id: str, *, namespace: str) -> Result:
    """Check an exercise against the live cluster, record progress, and return the result.

    Introduced in notebook 01_deployment_rollouts.
    """
    ex = EXERCISES.get(exercise_id)
    if ex is None:
        raise KeyError(f"no exercise {exercise_id!r}; known: {sorted(EXERCISES)}")
    problems = ex.checker(lab, namespace)
    result = Result(exercise_id, passed=not problems, problems=problems, hint="" if not problems else ex.hint)
    _record(exercise_id, result.passed)
    return result


def task(exercise_id: str) -> str:
    """The exercise's task text."""
    return EXERCISES[exercise_id].task


def solution(exercise_id: str) -> Any:
    """The answer, folded away until clicked (an HTML ``<details>`` block; plain text outside Jupyter).

    Introduced in notebook 01_deployment_rollouts.
    """
    from IPython.display import HTML

    body = html.escape(EXERCISES[exercise_id].solution)
    return HTML(f"<details><summary>Show the solution to {exercise_id}</summary><pre>{body}</pre></details>")


def in_test() -> bool:
    """True when the notebook runs under test (LABKIT_IN_TEST=1): waits shorten, exercises solve themselves."""
    return os.environ.get("LABKIT_IN_TEST") == "1"


def solve_for_test(lab: Lab, exercise_id: str, *, namespace: str) -> str:
    """Apply the solution only under test, so the stored run checks a solved exercise; a no-op otherwise.

    Introduced in notebook 01_deployment_rollouts. Prints the same line either way, so outputs stay stable.
    """
    ex = EXERCISES[exercise_id]
    if in_test() and ex.autosolve:
        ex.autosolve(lab, namespace)
    return f"{exercise_id}: solution applied if LABKIT_IN_TEST=1, otherwise your turn"


def _record(exercise_id: str, passed: bool) -> None:
    path = progress_file()
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        data = {}  # a damaged progress file must not break a lesson
    entry = data.get(exercise_id, {"attempts": 0, "passed": False})
    entry["attempts"] += 1
    if passed and not entry["passed"]:
        entry["passed"] = True
        entry["passed_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data[exercise_id] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True))
    except OSError:
        pass


def progress() -> pd.DataFrame:
    """Every exercise with whether you passed it and how many checks it took.

    Introduced in notebook 01_deployment_rollouts.
    """
    path = progress_file()
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        data = {}
    rows = [{"exercise": k, "task": EXERCISES[k].task.split("\n")[0], "passed": data.get(k, {}).get("passed", False),
             "attempts": data.get(k, {}).get("attempts", 0)} for k in sorted(EXERCISES)]
    return pd.DataFrame(rows, columns=["exercise", "task", "passed", "attempts"])


# ---------------------------------------------------------------- 01: Deployment rollouts


def _check_rollout_v3(lab: Lab, namespace: str) -> list[str]:
    dep = _get(lab, "Deployment", "web", namespace)
    if dep is None:
        return ["there is no Deployment `web` in this namespace"]
    problems = []
    images = [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]]
    if images[0] != "nginx:1.27":
        problems.append(f"the pods run {images[0]}, not nginx:1.27")
    strategy = dep["spec"].get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        problems.append(f"the strategy is {strategy.get('type')}, which stops every pod at once")
    else:
        rolling = strategy.get("rollingUpdate") or {}
        unavailable = _resolve(rolling.get("maxUnavailable"), dep["spec"].get("replicas", 1), round_up=False)
        if unavailable > 1:
            problems.append(f"maxUnavailable allows {unavailable} pods down at once; at most 1 is asked")
    done, message = rollout_state(dep)
    if not done:
        problems.append(f"the rollout is not finished: {message}")
    return problems


exercise(Exercise(
    id="01-rollout-v3",
    task="Roll out version 3 of `web` (image nginx:1.27) with at most one pod unavailable at any time.",
    hint="set spec.strategy.rollingUpdate.maxUnavailable to 1 (or 0) and the image to nginx:1.27, then "
         "`kubectl rollout status deployment/web`",
    solution="""kubectl -n lesson-01 patch deployment web -p \\
  '{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":1,"maxSurge":1}}}}'
kubectl -n lesson-01 set image deployment/web web=nginx:1.27
kubectl -n lesson-01 annotate deployment/web kubernetes.io/change-cause="v3: nginx 1.27" --overwrite
kubectl -n lesson-01 rollout status deployment/web""",
    checker=_check_rollout_v3,
    autosolve=lambda lab, ns: _patch(lab, "Deployment", "web", ns, {
        "metadata": {"annotations": {"kubernetes.io/change-cause": "v3: nginx 1.27"}},
        "spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
                 "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
))


def _check_recover(lab: Lab, namespace: str) -> list[str]:
    dep = _get(lab, "Deployment", "api", namespace)
    if dep is None:
        return ["there is no Deployment `api` in this namespace"]
    problems = []
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    if "does-not-exist" in image:
        problems.append(f"`api` still asks for {image}, an image that cannot be pulled")
    if dep["spec"].get("paused"):
        problems.append("`api` is paused, so nothing you change rolls out")
    done, message = rollout_state(dep)
    if not done:
        problems.append(f"the rollout is not finished: {message}")
    return problems


exercise(Exercise(
    id="01-recover",
    task="Deployment `api` is stuck on a bad image. Bring it back to the last good revision so that all its "
         "replicas are available again.",
    hint="`kubectl rollout history deployment/api` lists the revisions; "
         "`kubectl rollout undo deployment/api --to-revision=N` goes back to one",
    solution="""kubectl -n lesson-01 rollout history deployment/api
kubectl -n lesson-01 rollout undo deployment/api --to-revision=1
kubectl -n lesson-01 rollout status deployment/api""",
    checker=_check_recover,
    autosolve=lambda lab, ns: print(rollout_undo(lab, "api", namespace=ns, to_revision=1)),
))


# ---------------------------------------------------------------- 03: health probes


def _ready_pods_problems(lab: Lab, namespace: str, name: str, dep: dict[str, Any]) -> list[str]:
    pods = _pods(lab, namespace, dep["spec"]["selector"].get("matchLabels") or {})
    unready = [p.metadata.name for p in pods if not any(c.type == "Ready" and c.status == "True"
                                                         for c in p.status.conditions or [])]
    problems = []
    done, message = rollout_state(dep)
    if not done:
        problems.append(f"`{name}` is not fully rolled out: {message}")
    if unready:
        problems.append(f"pods not Ready yet: {', '.join(sorted(unready))}")
    return problems


def _check_fix_readiness(lab: Lab, namespace: str) -> list[str]:
    dep = _get(lab, "Deployment", "shop", namespace)
    if dep is None:
        return ["there is no Deployment `shop` in this namespace"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    probe = container.get("readinessProbe")
    if not probe:
        return ["`shop` has no readinessProbe any more: keep the probe, fix what it asks for"]
    problems = []
    http = probe.get("httpGet") or {}
    if http and http.get("path", "/") not in ("/", "/index.html"):
        problems.append(f"the readiness probe asks nginx for {http.get('path')}, which nginx answers with 404")
    if http and http.get("port") not in (80, "80", "http"):
        problems.append(f"the readiness probe knocks on port {http.get('port')}; nginx listens on 80")
    return problems + _ready_pods_problems(lab, namespace, "shop", dep)


exercise(Exercise(
    id="03-fix-readiness",
    task="Deployment `shop` never becomes Ready. Fix its readiness probe (keep a probe!) so that its pods turn "
         "Ready and the Service `shop` gets endpoints.",
    hint="`kubectl describe pod -l app=shop` shows `Readiness probe failed`; nginx serves `/` on port 80",
    solution="""kubectl -n lesson-03 patch deployment shop --type=json -p \\
  '[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/httpGet/path","value":"/"}]'
kubectl -n lesson-03 rollout status deployment/shop
kubectl -n lesson-03 get endpointslices -l kubernetes.io/service-name=shop""",
    checker=_check_fix_readiness,
    autosolve=lambda lab, ns: _patch(lab, "Deployment", "shop", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "shop", "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}}}),
))


def _check_startup(lab: Lab, namespace: str) -> list[str]:
    dep = _get(lab, "Deployment", "slow", namespace)
    if dep is None:
        return ["there is no Deployment `slow` in this namespace"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    problems = []
    if not container.get("livenessProbe"):
        problems.append("keep the liveness probe: the point is to protect it, not to remove it")
    startup = container.get("startupProbe")
    if not startup:
        problems.append("`slow` has no startupProbe, so the liveness probe kills it before it has started")
    else:
        budget = startup.get("initialDelaySeconds", 0) + startup.get("periodSeconds", 10) * (
            startup.get("failureThreshold", 3) - 1)
        if budget < 20:
            problems.append(f"the startup probe gives up after about {budget}s, but the app needs 20s to start")
    pods = _pods(lab, namespace, dep["spec"]["selector"].get("matchLabels") or {})
    restarted = [p.metadata.name for p in pods if sum(s.restart_count for s in p.status.container_statuses or [])]
    if restarted:
        problems.append(f"pods restarted (so the probes still kill them): {', '.join(sorted(restarted))}")
    return problems + _ready_pods_problems(lab, namespace, "slow", dep)


exercise(Exercise(
    id="03-startup-probe",
    task="Deployment `slow` needs 20 s to start and its liveness probe kills it first. Add a startupProbe so that "
         "it starts, becomes Ready, and is not restarted.",
    hint="a startupProbe with the same check as the liveness probe and periodSeconds x failureThreshold "
         "comfortably above 20 s, e.g. periodSeconds: 5, failureThreshold: 10",
    solution="""# in the container of deployment/slow (kubectl -n lesson-03 edit deployment slow):
startupProbe:
  exec: {command: [cat, /tmp/started]}
  periodSeconds: 5
  failureThreshold: 10""",
    checker=_check_startup,
    autosolve=lambda lab, ns: _patch(lab, "Deployment", "slow", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "slow", "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]},
                                                       "periodSeconds": 5, "failureThreshold": 10}}]}}}}),
))


# ---------------------------------------------------------------- 02: StatefulSet canary


def _sts_pods(lab: Lab, namespace: str, sts: dict[str, Any]) -> dict[int, Any]:
    name = sts["metadata"]["name"]
    pods = _pods(lab, namespace, sts["spec"]["selector"].get("matchLabels") or {})
    return {int(p.metadata.name.rsplit("-", 1)[1]): p for p in pods if p.metadata.name.startswith(f"{name}-")}


def _check_canary(lab: Lab, namespace: str) -> list[str]:
    sts = _get(lab, "StatefulSet", "db", namespace)
    if sts is None:
        return ["there is no StatefulSet `db` in this namespace"]
    replicas = sts["spec"].get("replicas", 1)
    status = sts.get("status") or {}
    problems = []
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    if image != "nginx:1.27":
        problems.append(f"the template asks for {image}, not nginx:1.27")
    partition = ((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0)
    if partition != replicas - 1:
        problems.append(f"partition is {partition}: with {replicas} replicas, partition {replicas - 1} updates "
                        f"exactly one pod (ordinal {replicas - 1})")
    pods = _sts_pods(lab, namespace, sts)
    update, current = status.get("updateRevision"), status.get("currentRevision")
    on_new = sorted(i for i, p in pods.items() if (p.metadata.labels or {}).get("controller-revision-hash") == update)
    if update != current and on_new != [replicas - 1]:
        problems.append(f"pods on the new revision: ordinals {on_new}; the canary is ordinal {replicas - 1} only")
    if update == current and partition == replicas - 1 and image == "nginx:1.27":
        problems.append("every pod is on the same revision: the canary needs the others left on the old one")
    if status.get("readyReplicas", 0) < replicas:
        problems.append(f"only {status.get('readyReplicas', 0)} of {replicas} pods are Ready")
    return problems


exercise(Exercise(
    id="02-canary-one",
    task="Canary exactly one pod of StatefulSet `db`: the highest ordinal runs nginx:1.27, the others stay on the "
         "old revision.",
    hint="set spec.updateStrategy.rollingUpdate.partition to replicas - 1 BEFORE changing the image",
    solution="""kubectl -n lesson-02 patch statefulset db -p \\
  '{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}'
kubectl -n lesson-02 set image statefulset/db db=nginx:1.27
kubectl -n lesson-02 rollout status statefulset/db""",
    checker=_check_canary,
    autosolve=lambda lab, ns: _patch(lab, "StatefulSet", "db", ns, {"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
        "template": {"spec": {"containers": [{"name": "db", "image": "nginx:1.27"}]}}}}),
))


def _check_finish(lab: Lab, namespace: str) -> list[str]:
    sts = _get(lab, "StatefulSet", "db", namespace)
    if sts is None:
        return ["there is no StatefulSet `db` in this namespace"]
    problems = []
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    if image != "nginx:1.27":
        problems.append(f"the template asks for {image}, not nginx:1.27")
    partition = ((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0)
    if partition:
        problems.append(f"partition is still {partition}, so ordinals below it keep the old revision")
    done, message = rollout_state(sts)
    if not done:
        problems.append(f"the rollout is not finished: {message}")
    return problems


exercise(Exercise(
    id="02-finish-rollout",
    task="The canary looks good: finish the rollout of StatefulSet `db` so that every pod runs nginx:1.27.",
    hint="set the partition back to 0 and watch `kubectl rollout status statefulset/db`",
    solution="""kubectl -n lesson-02 patch statefulset db -p \\
  '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}'
kubectl -n lesson-02 rollout status statefulset/db""",
    checker=_check_finish,
    autosolve=lambda lab, ns: _patch(lab, "StatefulSet", "db", ns, {"spec": {
        "updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
))
