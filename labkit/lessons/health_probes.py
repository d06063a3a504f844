"""Lesson 03, health probes (探针检查机制): notebook 03_health_probes' exercises."""

from __future__ import annotations

from typing import Any

from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..i18n import _
from ..kube.client import Lab
from ..kube.objects import live_pods, patch
from ..kube.rollouts import rollout_state


def _ready_pods_problems(lab: Lab, namespace: str, name: str, dep: dict[str, Any]) -> list[str]:
    pods = live_pods(lab, namespace, dep["spec"]["selector"].get("matchLabels") or {})
    unready = [p.metadata.name for p in pods if not any(c.type == "Ready" and c.status == "True"
                                                         for c in p.status.conditions or [])]
    problems = []
    done, message = rollout_state(dep)
    if not done:
        problems.append(_("`{name}` is not fully rolled out: {message}").format(name=name, message=message))
    if unready:
        problems.append(_("pods not Ready yet: {unready}").format(unready=', '.join(sorted(unready))))
    return problems


def _check_fix_readiness(attempt: Attempt) -> list[str]:
    lab, namespace = attempt.lab, attempt.namespace
    dep = attempt.require("Deployment", "shop", api_version="apps/v1")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    probe = container.get("readinessProbe")
    if not probe:
        return [_("`shop` has no readinessProbe any more: keep the probe, fix what it asks for")]
    problems = []
    http = probe.get("httpGet") or {}
    if http and http.get("path", "/") not in ("/", "/index.html"):
        problems.append(_("the readiness probe asks nginx for {path}, which nginx answers with 404")
                        .format(path=http.get('path')))
    if http and http.get("port") not in (80, "80", "http"):
        problems.append(_("the readiness probe knocks on port {port}; nginx listens on 80")
                        .format(port=http.get('port')))
    return problems + _ready_pods_problems(lab, namespace, "shop", dep)


FIX_READINESS = Exercise(
    id="03-fix-readiness",
    task="Deployment `shop` never becomes Ready. Fix its readiness probe (keep a probe!) so that its pods turn "
         "Ready and the Service `shop` gets endpoints.",
    hint="`kubectl describe pod -l app=shop` shows `Readiness probe failed`; nginx serves `/` on port 80",
    solution="""kubectl -n lesson-03 patch deployment shop --type=json -p \\
  '[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/httpGet/path","value":"/"}]'
kubectl -n lesson-03 rollout status deployment/shop
kubectl -n lesson-03 get endpointslices -l kubernetes.io/service-name=shop""",
    check=_check_fix_readiness,
    solve=lambda a: patch(a.lab, "Deployment", "shop", namespace=a.namespace, body={"spec": {"template": {"spec": {
        "containers": [{"name": "shop", "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}}}),
)


def _check_startup(attempt: Attempt) -> list[str]:
    lab, namespace = attempt.lab, attempt.namespace
    dep = attempt.require("Deployment", "slow", api_version="apps/v1")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    problems = []
    if not container.get("livenessProbe"):
        problems.append(_("keep the liveness probe: the point is to protect it, not to remove it"))
    startup = container.get("startupProbe")
    if not startup:
        problems.append(_("`slow` has no startupProbe, so the liveness probe kills it before it has started"))
    else:
        budget = startup.get("initialDelaySeconds", 0) + startup.get("periodSeconds", 10) * (
            startup.get("failureThreshold", 3) - 1)
        if budget < 20:
            problems.append(_("the startup probe gives up after about {budget}s, but the app needs 20s to start")
                            .format(budget=budget))
    pods = live_pods(lab, namespace, dep["spec"]["selector"].get("matchLabels") or {})
    restarted = [p.metadata.name for p in pods if sum(s.restart_count for s in p.status.container_statuses or [])]
    if restarted:
        problems.append(_("pods restarted (so the probes still kill them): {restarted}")
                        .format(restarted=', '.join(sorted(restarted))))
    return problems + _ready_pods_problems(lab, namespace, "slow", dep)


STARTUP_PROBE = Exercise(
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
    check=_check_startup,
    solve=lambda a: patch(a.lab, "Deployment", "slow", namespace=a.namespace, body={"spec": {"template": {"spec": {
        "containers": [{"name": "slow", "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]},
                                                       "periodSeconds": 5, "failureThreshold": 10}}]}}}}),
)

def _check_tcp_probe(attempt: Attempt) -> list[str]:
    lab, namespace = attempt.lab, attempt.namespace
    dep = attempt.require("Deployment", "gateway", api_version="apps/v1", why="run the cell that creates it")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    tcp = (container.get("readinessProbe") or {}).get("tcpSocket")
    if not tcp:
        return [_("keep a tcpSocket readiness probe: the task is to point it at the right port")]
    problems = []
    if tcp.get("port") not in (80, "80", "http"):
        problems.append(_("the probe connects to port {port}, where nothing listens: nginx listens on 80")
                        .format(port=tcp.get('port')))
    return problems + _ready_pods_problems(lab, namespace, "gateway", dep)


TCP_PROBE = Exercise(
    id="03-tcp-probe",
    task="Deployment `gateway` never becomes Ready: its TCP readiness probe (4层 tcp socket 探针) connects to a port "
         "nginx does not listen on. Point the probe at the port nginx listens on, keeping it a tcpSocket probe.",
    hint="`kubectl describe pod -l app=gateway` shows `Readiness probe failed: dial tcp ...: connection refused` "
         "and the port; nginx listens on 80",
    solution="""kubectl -n lesson-03 patch deployment gateway --type=json -p \
  '[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/tcpSocket/port","value":80}]'
kubectl -n lesson-03 rollout status deployment/gateway""",
    check=_check_tcp_probe,
    solve=lambda a: patch(a.lab, "Deployment", "gateway", namespace=a.namespace, body={"spec": {"template": {
        "spec": {"containers": [{"name": "gateway", "readinessProbe": {"tcpSocket": {"port": 80}}}]}}}}),
)

EXERCISES = [FIX_READINESS, STARTUP_PROBE, TCP_PROBE]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "03_health_probes",
    "liveness, readiness and startup probes (探针检查机制)",
    LessonRights("none"),
    exercises=tuple(EXERCISES),
)
