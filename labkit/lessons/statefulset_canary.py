"""Lesson 02, StatefulSet ordered and partitioned updates (灰度发布): the exercises (the volumes: `kubectl exec`)."""

from __future__ import annotations

from typing import Any

from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..i18n import _
from ..kube.client import Lab
from ..kube.objects import live_pods, patch
from ..kube.rollouts import rollout_state


def _sts_pods(lab: Lab, namespace: str, sts: dict[str, Any]) -> dict[int, Any]:
    name = sts["metadata"]["name"]
    pods = live_pods(lab, namespace, sts["spec"]["selector"].get("matchLabels") or {})
    return {int(p.metadata.name.rsplit("-", 1)[1]): p for p in pods if p.metadata.name.startswith(f"{name}-")}


def _check_canary(attempt: Attempt) -> list[str]:
    lab, namespace = attempt.lab, attempt.namespace
    sts = attempt.require("StatefulSet", "db", api_version="apps/v1")
    replicas = sts["spec"].get("replicas", 1)
    status = sts.get("status") or {}
    problems = []
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    if image != "nginx:1.27":
        problems.append(_("the template asks for {image}, not nginx:1.27").format(image=image))
    partition = ((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0)
    if partition != replicas - 1:
        problems.append(_("partition is {partition}: with {replicas} replicas, partition {last} updates exactly "
                          "one pod (ordinal {last})")
                        .format(partition=partition, replicas=replicas, last=replicas - 1))
    pods = _sts_pods(lab, namespace, sts)
    update, current = status.get("updateRevision"), status.get("currentRevision")
    on_new = sorted(i for i, p in pods.items() if (p.metadata.labels or {}).get("controller-revision-hash") == update)
    if update != current and on_new != [replicas - 1]:
        problems.append(_("pods on the new revision: ordinals {on_new}; the canary is ordinal {last} only")
                        .format(on_new=on_new, last=replicas - 1))
    if update == current and partition == replicas - 1 and image == "nginx:1.27":
        problems.append(_("every pod is on the same revision: the canary needs the others left on the old one"))
    if status.get("readyReplicas", 0) < replicas:
        problems.append(_("only {ready_replicas} of {replicas} pods are Ready")
                        .format(ready_replicas=status.get('readyReplicas', 0), replicas=replicas))
    return problems


CANARY_ONE = Exercise(
    id="02-canary-one",
    task="Canary exactly one pod of StatefulSet `db`: the highest ordinal runs nginx:1.27, the others stay on the "
         "old revision.",
    hint="set spec.updateStrategy.rollingUpdate.partition to replicas - 1 BEFORE changing the image",
    solution="""kubectl -n lesson-02 patch statefulset db -p \\
  '{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}'
kubectl -n lesson-02 set image statefulset/db db=nginx:1.27
kubectl -n lesson-02 rollout status statefulset/db""",
    check=_check_canary,
    solve=lambda a: patch(a.lab, "StatefulSet", "db", namespace=a.namespace, body={"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
        "template": {"spec": {"containers": [{"name": "db", "image": "nginx:1.27"}]}}}}),
)


def _check_finish(attempt: Attempt) -> list[str]:
    sts = attempt.require("StatefulSet", "db", api_version="apps/v1")
    problems = []
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    if image != "nginx:1.27":
        problems.append(_("the template asks for {image}, not nginx:1.27").format(image=image))
    partition = ((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0)
    if partition:
        problems.append(_("partition is still {partition}, so ordinals below it keep the old revision")
                        .format(partition=partition))
    done, message = rollout_state(sts)
    if not done:
        problems.append(_("the rollout is not finished: {message}").format(message=message))
    return problems


FINISH_ROLLOUT = Exercise(
    id="02-finish-rollout",
    task="The canary looks good: finish the rollout of StatefulSet `db` so that every pod runs nginx:1.27.",
    hint="set the partition back to 0 and watch `kubectl rollout status statefulset/db`",
    solution="""kubectl -n lesson-02 patch statefulset db -p \\
  '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}'
kubectl -n lesson-02 rollout status statefulset/db""",
    check=_check_finish,
    solve=lambda a: patch(a.lab, "StatefulSet", "db", namespace=a.namespace, body={"spec": {
        "updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
)

EXERCISES = [CANARY_ONE, FINISH_ROLLOUT]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "02_statefulset_canary",
    "ordered updates, partition canaries (灰度发布), rollback, PV data that does not roll back",
    LessonRights("get persistentvolumes; writes a file on the simulated node's disk on the lab's machine",
                 refused="its volume section reads PersistentVolumes (cluster-scoped: they name every "
                         "student's claims) and writes on the embedded node's disk, which only the lab's "
                         "own machine reaches"),
    exercises=tuple(EXERCISES),
)
