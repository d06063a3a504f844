"""Lesson 01, Deployment rolling update and rollback (更新, 回滚): the notebook 01_deployment_rollouts' exercises."""

from __future__ import annotations

from typing import Any

from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..i18n import _
from ..kube.objects import patch
from ..kube.rollouts import rollout_state, rollout_undo


def _resolve(value: Any, replicas: int, *, round_up: bool) -> int:
    """maxSurge/maxUnavailable as a number of pods (percentages round as the controller rounds them)."""
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * replicas / 100
        return int(-(-exact // 1)) if round_up else int(exact)
    return int(value)


def _check_rollout_v3(attempt: Attempt) -> list[str]:
    dep = attempt.require("Deployment", "web", api_version="apps/v1")
    problems = []
    images = [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]]
    if images[0] != "nginx:1.27":
        problems.append(_("the pods run {image}, not nginx:1.27").format(image=images[0]))
    strategy = dep["spec"].get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        problems.append(_("the strategy is {type}, which stops every pod at once").format(type=strategy.get('type')))
    else:
        rolling = strategy.get("rollingUpdate") or {}
        unavailable = _resolve(rolling.get("maxUnavailable"), dep["spec"].get("replicas", 1), round_up=False)
        if unavailable > 1:
            problems.append(_("maxUnavailable allows {unavailable} pods down at once; at most 1 is asked")
                            .format(unavailable=unavailable))
    done, message = rollout_state(dep)
    if not done:
        problems.append(_("the rollout is not finished: {message}").format(message=message))
    return problems


ROLLOUT_V3 = Exercise(
    id="01-rollout-v3",
    task="Roll out version 3 of `web` (image nginx:1.27) with at most one pod unavailable at any time.",
    hint="set spec.strategy.rollingUpdate.maxUnavailable to 1 (or 0) and the image to nginx:1.27, then "
         "`kubectl rollout status deployment/web`",
    solution="""kubectl -n lesson-01 patch deployment web -p \\
  '{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":1,"maxSurge":1}}}}'
kubectl -n lesson-01 set image deployment/web web=nginx:1.27
kubectl -n lesson-01 annotate deployment/web kubernetes.io/change-cause="v3: nginx 1.27" --overwrite
kubectl -n lesson-01 rollout status deployment/web""",
    check=_check_rollout_v3,
    solve=lambda a: patch(a.lab, "Deployment", "web", namespace=a.namespace, body={
        "metadata": {"annotations": {"kubernetes.io/change-cause": "v3: nginx 1.27"}},
        "spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
                 "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
)


def _check_recover(attempt: Attempt) -> list[str]:
    dep = attempt.require("Deployment", "api", api_version="apps/v1")
    problems = []
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    if "does-not-exist" in image:
        problems.append(_("`api` still asks for {image}, an image that cannot be pulled").format(image=image))
    if dep["spec"].get("paused"):
        problems.append(_("`api` is paused, so nothing you change rolls out"))
    done, message = rollout_state(dep)
    if not done:
        problems.append(_("the rollout is not finished: {message}").format(message=message))
    return problems


RECOVER = Exercise(
    id="01-recover",
    task="Deployment `api` is stuck on a bad image. Bring it back to the last good revision so that all its "
         "replicas are available again.",
    hint="`kubectl rollout history deployment/api` lists the revisions; "
         "`kubectl rollout undo deployment/api --to-revision=N` goes back to one",
    solution="""kubectl -n lesson-01 rollout history deployment/api
kubectl -n lesson-01 rollout undo deployment/api --to-revision=1
kubectl -n lesson-01 rollout status deployment/api""",
    check=_check_recover,
    solve=lambda a: rollout_undo(a.lab, "api", namespace=a.namespace, to_revision=1),
)

EXERCISES = [ROLLOUT_V3, RECOVER]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "01_deployment_rollouts",
    "rolling update, Recreate, history, pause/resume, a bad rollout and undo (更新, 回滚)",
    LessonRights("none"),
    exercises=tuple(EXERCISES),
)
