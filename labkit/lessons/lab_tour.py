"""Lesson 00, the lab tour: what is real and what is simulated on each backend (the first table a learner sees)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..i18n import _
from ..kube.apply import apply
from ..kube.client import Lab, api_errors

_PARTS = [
    # component, what it does, kwok, kind, current
    ("etcd", "stores every object", "real (local process)", "real (container)", "real"),
    ("kube-apiserver", "the API kubectl and labkit talk to", "real (local process)", "real (container)", "real"),
    ("kube-controller-manager", "Deployment, ReplicaSet, StatefulSet, HPA... controllers",
     "real (local process)", "real (container)", "real"),
    ("kube-scheduler", "places pods on nodes", "real (local process)", "real (container)", "real"),
    ("metrics-server", "CPU/memory usage for kubectl top and HPA", "real (local process)", "real (pod)",
     "as installed"),
    ("nodes / kubelet", "run containers, report status", "simulated by KWOK", "real (Docker containers)", "real"),
    ("containers", "your images and commands", "simulated by KWOK Stages", "real", "real"),
    ("GPUs", "nvidia.com/gpu capacity, NVML, DCGM metrics", "simulated (fake-GPU mode)",
     "simulated (fake-GPU mode)", "real if present, else simulated"),
]


def lab_parts(lab: Lab) -> pd.DataFrame:
    """One row per component: what it does and whether it is real on this lab's backend."""
    column = {"kwok": 2, "kind": 3}.get(lab.backend, 4)
    return pd.DataFrame([(p[0], p[1], p[column]) for p in _PARTS],
                        columns=["component", "role", f"on this lab ({lab.backend})"])


# --- exercises ---------------------------------------------------------------------------------------------------

GREETING = "hello from labkit"


def _check_first_pod(attempt: Attempt) -> list[str]:
    pod = attempt.require("Pod", "greeter", api_version="v1")
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Succeeded":
        return [_("pod greeter is {phase}: it should print its line and exit (restartPolicy: Never), so Succeeded")
                .format(phase=phase)]
    with api_errors(_("reading greeter's log"), server=attempt.lab.server):
        log = attempt.lab.core.read_namespaced_pod_log("greeter", attempt.namespace)
    if GREETING not in log:
        return [_("greeter's log (kubectl logs greeter) is {log!r}, not {greeting!r}")
                .format(log=log.strip(), greeting=GREETING)]
    return []


FIRST_POD = Exercise(
    id="00-first-pod",
    task=f"Run a pod `greeter` (image busybox:1.36) that prints `{GREETING}` once and exits; then read what it "
         "printed with `kubectl logs`.",
    hint="kubectl run makes a pod: --restart=Never so that it is not restarted, and the command after `--`",
    solution=f"""kubectl -n lesson-00 run greeter --image=busybox:1.36 --restart=Never -- echo "{GREETING}"
kubectl -n lesson-00 get pod greeter      # STATUS Completed once it has run
kubectl -n lesson-00 logs greeter""",
    check=_check_first_pod,
    solve=lambda a: apply(a.lab, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "greeter"},
                                  "spec": {"restartPolicy": "Never", "containers": [
                                      {"name": "greeter", "image": "busybox:1.36", "args": ["echo", GREETING]}]}},
                          namespace=a.namespace),
)


def _check_expose(attempt: Attempt) -> list[str]:
    svc = attempt.require("Service", "hello", api_version="v1", why="expose Deployment hello")
    problems = []
    if (svc["spec"].get("selector") or {}) != {"app": "hello"}:
        problems.append(_("Service hello selects {selector}, not the Deployment's pods (app=hello)")
                        .format(selector=svc['spec'].get('selector')))
    if [p.get("port") for p in svc["spec"].get("ports") or []] != [80]:
        problems.append(_("Service hello should listen on port 80 (nginx's port)"))
    from kubernetes import client

    with api_errors(_("listing Service hello's EndpointSlices"), server=attempt.lab.server):
        slices = client.DiscoveryV1Api(attempt.lab.api_client).list_namespaced_endpoint_slice(
            attempt.namespace, label_selector="kubernetes.io/service-name=hello").items
    ready = [e for s_ in slices for e in s_.endpoints or [] if e.conditions is None or e.conditions.ready]
    if not problems and len(ready) != 5:
        problems.append(_("Service hello has {n_ready} ready endpoints; Deployment hello runs 5 pods")
                        .format(n_ready=len(ready)))
    return problems


def _expose(attempt: Attempt) -> Any:
    return apply(attempt.lab, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"},
                               "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80}]}},
                 namespace=attempt.namespace)


EXPOSE = Exercise(
    id="00-expose",
    task="Give Deployment `hello` (5 pods after the scale above) a Service `hello` on port 80, so that its pods are "
         "reachable under one name; then check its endpoints with kubectl.",
    hint="kubectl expose makes a Service with the Deployment's selector; `kubectl get endpointslices -l "
         "kubernetes.io/service-name=hello` lists its pods",
    solution="""kubectl -n lesson-00 expose deployment hello --port=80
kubectl -n lesson-00 get endpointslices -l kubernetes.io/service-name=hello""",
    check=_check_expose,
    solve=_expose,
)

EXERCISES = [FIRST_POD, EXPOSE]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "00_lab_tour",
    "what is real and simulated, nodes, versions, a first Deployment with kubectl beside each step",
    LessonRights("reads nodes (get/list/watch nodes: granted to students, read-only)"),
    exercises=tuple(EXERCISES),
)
