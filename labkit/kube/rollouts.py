"""Rollouts of Deployments and StatefulSets, verb for verb as ``kubectl rollout ...`` does them.

Introduced in notebook 01_deployment_rollouts (StatefulSet revisions in 02_statefulset_canary).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pandas as pd

from ..errors import LabkitError, NotFound
from ..i18n import _
from .client import Lab, api_errors
from .wait import deployment_failed, wait_for

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
# kubectl rollout undo copies a revision's annotations back, except these bookkeeping ones.
_SKIP_ANNOTATIONS = {
    "kubectl.kubernetes.io/last-applied-configuration", REVISION, "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
}


def _kind(kind: str) -> str:
    k = kind.lower().rstrip("s")
    if k in ("deployment", "deploy"):
        return "Deployment"
    if k in ("statefulset", "st"):
        return "StatefulSet"
    raise ValueError(f"rollouts work on a Deployment or a StatefulSet, not {kind!r}")


def _read(lab: Lab, kind: str, name: str, namespace: str) -> Any:
    with api_errors(_("reading {kind}/{name}").format(kind=kind.lower(), name=name), server=lab.server):
        if kind == "Deployment":
            return lab.apps.read_namespaced_deployment(name, namespace)
        return lab.apps.read_namespaced_stateful_set(name, namespace)


def _patch(lab: Lab, kind: str, name: str, namespace: str, body: Any) -> None:
    with api_errors(_("patching {kind}/{name}").format(kind=kind.lower(), name=name), server=lab.server):
        if kind == "Deployment":
            lab.apps.patch_namespaced_deployment(name, namespace, body)
        else:
            lab.apps.patch_namespaced_stateful_set(name, namespace, body)


def rollout_state(obj: dict[str, Any] | None) -> tuple[bool, str]:
    """(done, message) for a Deployment or StatefulSet dict, worded as ``kubectl rollout status`` words it."""
    if obj is None:
        return False, "the object does not exist"
    kind, name = obj.get("kind", "Deployment"), obj["metadata"]["name"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 0):
        return False, f"Waiting for {kind.lower()} spec update to be observed..."
    updated = status.get("updatedReplicas", 0)
    if kind == "StatefulSet":
        ready = status.get("readyReplicas", 0)
        part = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition") or 0
        if ready < want:
            return False, f"Waiting for {want - ready} pods to be ready..."
        if part:
            if updated < want - part:
                return False, (f"Waiting for partitioned roll out to finish: {updated} out of {want - part} "
                               "new pods have been updated...")
            return True, f"partitioned roll out complete: {updated} new pods have been updated..."
        if status.get("updateRevision") != status.get("currentRevision"):
            return False, f"waiting for statefulset rolling update to complete {updated} pods at revision " \
                          f"{status.get('updateRevision')}..."
        return True, f"statefulset rolling update complete {want} pods at revision {status.get('currentRevision')}..."
    if deployment_failed(obj):
        return False, f'deployment "{name}" exceeded its progress deadline'
    total, available = status.get("replicas", 0), status.get("availableReplicas", 0)
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if updated < want:
        return False, waiting + f"{updated} out of {want} new replicas have been updated..."
    if total > updated:
        return False, waiting + f"{total - updated} old replicas are pending termination..."
    if available < updated:
        return False, waiting + f"{available} of {updated} updated replicas are available..."
    return True, f'deployment "{name}" successfully rolled out'


def rollout_status(lab: Lab, name: str, *, namespace: str, kind: str = "deployment", timeout: float = 60.0) -> str:
    """Wait until the rollout is complete and return kubectl's message.

    Introduced in notebook 01_deployment_rollouts. Same as ``kubectl rollout status deployment/NAME --timeout=60s``.
    Raises WaitFailed when a Deployment passes its progressDeadlineSeconds during the wait, WaitTimeout at
    ``timeout``. A deadline that was exceeded before the call (say, before an undo) is not held against the new
    rollout: the controller keeps that condition until the new rollout makes progress (``kubectl rollout status``
    would stop on it at once).
    """
    kind = _kind(kind)
    started = time.time()
    obj = wait_for(lab, kind, name, namespace=namespace, condition=lambda o: rollout_state(o)[0], timeout=timeout,
                   fail_when=lambda o: deployment_failed(o, since=started))
    return rollout_state(obj)[1]


def _replicasets(lab: Lab, name: str, namespace: str) -> list[Any]:
    dep = _read(lab, "Deployment", name, namespace)
    selector = ",".join(f"{k}={v}" for k, v in (dep.spec.selector.match_labels or {}).items())
    with api_errors(_("listing replicasets of deployment/{name}").format(name=name), server=lab.server):
        items = lab.apps.list_namespaced_replica_set(namespace, label_selector=selector).items
    owned = [rs for rs in items if any(o.uid == dep.metadata.uid for o in rs.metadata.owner_references or [])]
    return sorted(owned, key=lambda rs: int((rs.metadata.annotations or {}).get(REVISION, 0)))


def _revisions(lab: Lab, name: str, namespace: str) -> list[Any]:
    sts = _read(lab, "StatefulSet", name, namespace)
    with api_errors(_("listing controllerrevisions of statefulset/{name}").format(name=name), server=lab.server):
        items = lab.apps.list_namespaced_controller_revision(namespace).items
    owned = [r for r in items if any(o.uid == sts.metadata.uid for o in r.metadata.owner_references or [])]
    return sorted(owned, key=lambda r: r.revision)


def _images(template: Any) -> str:
    return ",".join(c.image for c in template.spec.containers)


def rollout_history(lab: Lab, name: str, *, namespace: str, kind: str = "deployment") -> pd.DataFrame:
    """One row per revision: its number, change cause and image(s).

    Introduced in notebook 01_deployment_rollouts. Same as ``kubectl rollout history deployment/NAME``
    (a Deployment keeps one ReplicaSet per revision; a StatefulSet one ControllerRevision).
    """
    kind = _kind(kind)
    rows = []
    if kind == "Deployment":
        for rs in _replicasets(lab, name, namespace):
            ann = rs.metadata.annotations or {}
            rows.append({"revision": int(ann.get(REVISION, 0)), "change_cause": ann.get(CHANGE_CAUSE, "<none>"),
                         "image": _images(rs.spec.template), "replicaset": rs.metadata.name,
                         "replicas": rs.status.replicas or 0})
    else:
        for rev in _revisions(lab, name, namespace):
            data = rev.data or {}
            containers = (((data.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers", [])
            ann = rev.metadata.annotations or {}
            rows.append({"revision": rev.revision, "change_cause": ann.get(CHANGE_CAUSE, "<none>"),
                         "image": ",".join(c.get("image", "") for c in containers),
                         "controllerrevision": rev.metadata.name})
    cols = ["revision", "change_cause", "image", "replicaset" if kind == "Deployment" else "controllerrevision"]
    if kind == "Deployment":
        cols.append("replicas")
    return pd.DataFrame(rows, columns=cols)


def rollout_undo(lab: Lab, name: str, *, namespace: str, to_revision: int | None = None,
                 kind: str = "deployment") -> str:
    """Roll back to the previous revision, or to ``to_revision``; return kubectl's message.

    Same as ``kubectl rollout undo deployment/NAME [--to-revision=N]``: the old revision's pod template is
    copied into the object, which the controller then rolls out as a NEW revision number.
    """
    kind = _kind(kind)
    if kind == "StatefulSet":
        revs = _revisions(lab, name, namespace)
        target = _pick(revs, [r.revision for r in revs], to_revision, name)
        _patch(lab, kind, name, namespace, (target.data or {}))
        return f"statefulset.apps/{name} rolled back"
    dep = _read(lab, kind, name, namespace)
    if dep.spec.paused:
        raise LabkitError(_("you cannot rollback a paused deployment; resume it first with "
                            "`kubectl rollout resume deployment/{name}` and try again").format(name=name))
    sets = _replicasets(lab, name, namespace)
    target = _pick(sets, [int((rs.metadata.annotations or {}).get(REVISION, 0)) for rs in sets], to_revision, name)
    template = lab.api_client.sanitize_for_serialization(target.spec.template)
    template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    annotations = {k: v for k, v in (target.metadata.annotations or {}).items() if k not in _SKIP_ANNOTATIONS}
    if template == lab.api_client.sanitize_for_serialization(dep.spec.template):
        return f"deployment.apps/{name} skipped rollback (current template already matches revision " \
               f"{(target.metadata.annotations or {}).get(REVISION)})"
    body = [{"op": "replace", "path": "/spec/template", "value": template}]
    if annotations:
        body.append({"op": "add", "path": "/metadata/annotations", "value": {
            **(dep.metadata.annotations or {}), **annotations}})
    # A list body makes the client send a JSON patch, as kubectl does for undo.
    _patch(lab, kind, name, namespace, body)
    return f"deployment.apps/{name} rolled back"


def _pick(items: list[Any], numbers: list[int], to_revision: int | None, name: str) -> Any:
    if not items:
        raise NotFound(_("{name} has no revisions yet").format(name=name))
    if to_revision is None or to_revision == 0:
        if len(items) < 2:
            raise LabkitError(_("no rollout history found for {name}: there is no previous revision to go back to")
                              .format(name=name))
        return items[-2]
    for item, number in zip(items, numbers, strict=True):
        if number == to_revision:
            return item
    raise NotFound(_("unable to find the specified revision {to_revision} of {name}; it has {numbers}")
                   .format(to_revision=to_revision, name=name, numbers=numbers),
                   fix=f"kubectl rollout history {name}   # "
                   + _("lists the revisions kept (revisionHistoryLimit)"))


def rollout_pause(lab: Lab, name: str, *, namespace: str) -> str:
    """Pause a Deployment: template edits pile up without rolling out.

    Introduced in notebook 01_deployment_rollouts. Same as ``kubectl rollout pause deployment/NAME``.
    """
    _patch(lab, "Deployment", name, namespace, {"spec": {"paused": True}})
    return f"deployment.apps/{name} paused"


def rollout_resume(lab: Lab, name: str, *, namespace: str) -> str:
    """Resume a paused Deployment: everything changed while paused rolls out as one revision.

    Introduced in notebook 01_deployment_rollouts. Same as ``kubectl rollout resume deployment/NAME``.
    """
    _patch(lab, "Deployment", name, namespace, {"spec": {"paused": False}})
    return f"deployment.apps/{name} resumed"


def rollout_restart(lab: Lab, name: str, *, namespace: str, kind: str = "deployment") -> str:
    """Replace every pod by a new one, without changing the image.

    Introduced in notebook 01_deployment_rollouts. Same as ``kubectl rollout restart deployment/NAME``.
    """
    kind = _kind(kind)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _patch(lab, kind, name, namespace, {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now}}}}})
    return f"{kind.lower()}.apps/{name} restarted"


def set_image(lab: Lab, name: str, *, namespace: str, image: str, container: str | None = None,
              change_cause: str | None = None, kind: str = "deployment") -> str:
    """Change a container's image (the first container unless ``container`` is named).

    Same as ``kubectl set image deployment/NAME CONTAINER=IMAGE`` (plus
    ``kubectl annotate deployment/NAME kubernetes.io/change-cause=...`` when ``change_cause`` is given).
    """
    kind = _kind(kind)
    obj = _read(lab, kind, name, namespace)
    names = [c.name for c in obj.spec.template.spec.containers]
    target = container or names[0]
    if target not in names:
        raise NotFound(_("{kind}/{name} has no container {target!r}; it has {names}")
                       .format(kind=kind.lower(), name=name, target=target, names=names))
    body: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{"name": target, "image": image}]}}}}
    if change_cause:
        body["metadata"] = {"annotations": {CHANGE_CAUSE: change_cause}}
    _patch(lab, kind, name, namespace, body)
    return f"{kind.lower()}.apps/{name} image updated"


def scale(lab: Lab, name: str, *, namespace: str, replicas: int, kind: str = "deployment") -> str:
    """Set the number of replicas.

    Introduced in notebook 01_deployment_rollouts. Same as ``kubectl scale deployment/NAME --replicas=N``.
    """
    kind = _kind(kind)
    _patch(lab, kind, name, namespace, {"spec": {"replicas": int(replicas)}})
    return f"{kind.lower()}.apps/{name} scaled"


def pods_by_revision(lab: Lab, name: str, *, namespace: str, kind: str = "deployment") -> pd.DataFrame:
    """A Deployment's pods with the revision of the ReplicaSet that owns each; the data under the control panel.

    Introduced in notebook 01_deployment_rollouts. Like ``kubectl get pods -L pod-template-hash``.
    With ``kind="statefulset"`` (notebook 02_statefulset_canary): the StatefulSet's pods in ordinal order, each
    with the number of the ControllerRevision its ``controller-revision-hash`` label names
    (``kubectl get pods -L controller-revision-hash``).
    """
    kind = _kind(kind)
    if kind == "StatefulSet":
        revision_of = {r.metadata.name: r.revision for r in _revisions(lab, name, namespace)}
    else:
        revision_of = {rs.metadata.name: int((rs.metadata.annotations or {}).get(REVISION, 0))
                       for rs in _replicasets(lab, name, namespace)}
    with api_errors(_("listing pods in {namespace}").format(namespace=namespace), server=lab.server):
        pods = lab.core.list_namespaced_pod(namespace).items
    rows = []
    for p in pods:
        if kind == "StatefulSet":
            owned = any(o.kind == "StatefulSet" and o.name == name for o in p.metadata.owner_references or [])
            owner = (p.metadata.labels or {}).get("controller-revision-hash") if owned else None
        else:
            owner = next((o.name for o in p.metadata.owner_references or [] if o.kind == "ReplicaSet"), None)
        if owner not in revision_of:
            continue
        statuses = p.status.container_statuses or []
        waiting = next((s.state.waiting.reason for s in statuses if s.state and s.state.waiting), None)
        rows.append({"pod": p.metadata.name, "revision": revision_of[owner],
                     "status": "Terminating" if p.metadata.deletion_timestamp else (waiting or p.status.phase),
                     "ready": all(s.ready for s in statuses) and bool(statuses),
                     "image": ",".join(c.image for c in p.spec.containers)})
    df = pd.DataFrame(rows, columns=["pod", "revision", "status", "ready", "image"])
    if kind == "StatefulSet":
        order = df.pod.str.rsplit("-", n=1).str[-1].astype(int) if not df.empty else df.pod
        return df.assign(_ordinal=order).sort_values("_ordinal").drop(columns="_ordinal").reset_index(drop=True)
    return df.sort_values(["revision", "pod"]).reset_index(drop=True)


__all__ = ["pods_by_revision", "rollout_history", "rollout_pause", "rollout_restart", "rollout_resume",
           "rollout_state", "rollout_status", "rollout_undo", "scale", "set_image"]
