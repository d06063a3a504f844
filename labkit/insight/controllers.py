"""Rules: controllers (HPAs, Jobs, Deployments) (part of :mod:`labkit.insight`)."""

from __future__ import annotations

import difflib
import re
from typing import Any

from ..i18n import _
from .findings import Evidence, Finding, exit_meaning
from .objects import condition_of, deployment, event_evidence, events_for, jsonpatch, revisions, tail, undo_command
from .snapshot import Snapshot, meta

_SCALABLE = {"Deployment": "deployments", "StatefulSet": "statefulsets", "ReplicaSet": "replicasets"}
# The condition's reason says which kind of metric failed (horizontal.go computeStatusForXMetric).
_METRIC_TYPES = {"FailedGetPodsMetric": "Pods", "FailedGetObjectMetric": "Object",
                 "FailedGetExternalMetric": "External"}
# replica_calculator.go: "missing request for %s in container %s of Pod %s"
_NO_REQUEST = re.compile(r"missing request for (?P<resource>\S+) in container (?P<container>\S+) of Pod")


def _hpa_target(snap: Snapshot, hpa: dict[str, Any], cond: dict[str, Any]) -> Finding:
    """AbleToScale=False FailedGetScale: the target the HPA names cannot be read (no such object, or no such kind)."""
    ns, name = meta(hpa)["namespace"], meta(hpa)["name"]
    target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    tkind, tname = target.get("kind", ""), target.get("name", "")
    message = cond.get("message") or ""
    ev = [Evidence("hpa condition", f"AbleToScale=False FailedGetScale: {message[:240]}",
                   f"kubectl -n {ns} describe hpa {name}")]
    ev += [event_evidence(e, ns) for e in events_for(snap, "HorizontalPodAutoscaler", name, ns)
           if e.get("reason") == "FailedGetScale"][-1:]
    if "no matches for kind" in message or tkind not in _SCALABLE:
        kinds = difflib.get_close_matches(tkind, list(_SCALABLE), n=1, cutoff=0.5)
        ev.append(Evidence("api resources", _("no kind {kind!r} has a scale subresource here; {meant} does").format(
            kind=tkind, meant=kinds[0]) if kinds else _("no kind {kind!r} has a scale subresource here").format(
                kind=tkind), "kubectl api-resources --api-group=apps"))
        fix = (jsonpatch(ns, "HorizontalPodAutoscaler", name, [{"op": "replace", "path": "/spec/scaleTargetRef/kind",
                                                                  "value": kinds[0]}]) if kinds else
               f"kubectl -n {ns} edit hpa {name}   # "
               + _("spec.scaleTargetRef: the kind and name of a workload that exists"))
        summary = (_("its scaleTargetRef names kind {kind!r}, which cannot be scaled (meant: {meant}?)").format(
            kind=tkind, meant=kinds[0]) if kinds else _("its scaleTargetRef names kind {kind!r}, which cannot be "
                                                        "scaled").format(kind=tkind))
        return Finding("HPATargetNotFound", f"horizontalpodautoscaler/{name}", ns, summary, ev, fix)
    pool = snap.deployments if tkind == "Deployment" else snap.replicasets if tkind == "ReplicaSet" else []
    have = sorted(meta(o)["name"] for o in pool if meta(o).get("namespace") == ns)
    close = difflib.get_close_matches(tname, have, n=3, cutoff=0.6)
    listed = (_("the closest: {names}").format(names=", ".join(close)) if close else
              _("it has: {names}").format(names=", ".join(have) or _("none"))) \
        if pool or tkind in ("Deployment", "ReplicaSet") else _("(not read by the engine: list them)")
    ev.append(Evidence(_SCALABLE[tkind], _("no {kind} {name} in {namespace}; {listed}").format(
        kind=tkind, name=tname, namespace=ns, listed=listed), f"kubectl -n {ns} get {_SCALABLE[tkind]}"))
    if close:
        fix = jsonpatch(ns, "HorizontalPodAutoscaler", name, [{"op": "replace", "path": "/spec/scaleTargetRef/name",
                                                                "value": close[0]}])
        why = _("{name} exists: point it there").format(name=close[0])
    else:
        fix = (f"kubectl -n {ns} get {_SCALABLE[tkind]}   # "
               + _("then set the HPA's spec.scaleTargetRef.name to one of them ({command})").format(
                   command=f"kubectl -n {ns} edit hpa {name}"))
        why = _("point it at the workload it should scale (or create that workload)")
    return Finding("HPATargetNotFound", f"horizontalpodautoscaler/{name}", ns, _(
        "its scaleTargetRef names {kind} {name}, which does not exist, so it cannot read or change a replica count: "
        "{why}").format(kind=tkind, name=tname, why=why), ev, fix)


def hpa_findings(snap: Snapshot) -> list[Finding]:
    found = []
    for hpa in snap.hpas:
        able = condition_of(hpa, "AbleToScale")
        if able.get("status") == "False" and able.get("reason") == "FailedGetScale":
            found.append(_hpa_target(snap, hpa, able))  # no target, no metric to read: one finding, not two
            continue
        cond = condition_of(hpa, "ScalingActive")
        if cond.get("status") != "False" or cond.get("reason") == "ScalingDisabled":
            continue
        ns, name = meta(hpa)["namespace"], meta(hpa)["name"]
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        message = cond.get("message") or ""
        ev = [Evidence("hpa condition", f"ScalingActive=False {cond.get('reason')}: {message[:240]}",
                       f"kubectl -n {ns} describe hpa {name}")]
        ev += [event_evidence(e, ns) for e in events_for(snap, "HorizontalPodAutoscaler", name, ns)][-1:]
        dep = deployment(snap, ns, target.get("name", "")) if target.get("kind") == "Deployment" else None
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
            ev.append(Evidence("deployment", _("container(s) {containers} of {workload} request no {resources}: "
                                               "utilization is usage / request").format(
                containers=", ".join(sorted({c for c, _r in lacking})),
                workload=f"{target.get('kind', '').lower()}/{target.get('name')}",
                resources=", ".join(sorted({r for _c, r in lacking}))),
                               f"kubectl -n {ns} get deployment {target.get('name')} -o "
                               f"jsonpath='{{.spec.template.spec.containers[*].resources}}'"))
            defaults = {"cpu": "100m", "memory": "128Mi"}
            flags = ",".join(f"{r}={defaults.get(r, '100m')}" for r in sorted({r for _, r in lacking}))
            names = sorted({c for c, _ in lacking})
            # `set resources` without -c sets every container: name the one that lacks it when others have theirs
            only = f" -c {names[0]}" if len(names) == 1 and (not dep or len(containers) > 1) else ""
            fix = f"kubectl -n {ns} set resources deployment/{target.get('name')}{only} --requests={flags}"
            why = _("its target's containers have no resource request, so there is no utilization to compute")
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
            ev.append(Evidence("metrics api", _("whether {api} serves {metric} for the target's pods").format(
                api=api, metric=metric), f"kubectl get --raw '{path}'"))
            fix = (f"kubectl get apiservice {api}   # "
                   + _("the adapter (prometheus-adapter) must be Available and have a rule for {metric}").format(
                       metric=metric))
            why = (_("the external metrics API returns no {metric}") if external else
                   _("the custom metrics API returns no {metric}")).format(metric=metric)
        else:
            ev.append(Evidence("metrics api", _("whether the metrics pipeline answers for these pods"),
                               f"kubectl -n {ns} top pods   # "
                               + _("and: {command}").format(command="kubectl get apiservice v1beta1.metrics.k8s.io")))
            fix = ("kubectl get apiservice v1beta1.metrics.k8s.io   # "
                   + _("metrics-server (or the adapter) must be Available"))
            why = _("the metrics API returns nothing for its pods")
        found.append(Finding("HPAWithoutMetrics", f"horizontalpodautoscaler/{name}", ns,
                             _("the autoscaler cannot compute a replica count: {why}").format(why=why), ev, fix))
    return found


def _job_pods(snap: Snapshot, job: dict[str, Any]) -> list[dict[str, Any]]:
    ns, name, uid = meta(job)["namespace"], meta(job)["name"], meta(job).get("uid")
    return [p for p in snap.pods if meta(p).get("namespace") == ns and (
        any(r.get("kind") == "Job" and (r.get("uid") == uid if uid else r.get("name") == name)
            for r in meta(p).get("ownerReferences") or [])
        or (meta(p).get("labels") or {}).get("batch.kubernetes.io/job-name") == name)]


def job_findings(snap: Snapshot) -> list[Finding]:
    """A Job that gave up (condition Failed=True): its pods are Failed, so the pod rules do not see them."""
    found = []
    for job in snap.jobs:
        cond = condition_of(job, "Failed")
        if cond.get("status") != "True":
            continue
        ns, name = meta(job)["namespace"], meta(job)["name"]
        spec, status = job.get("spec") or {}, job.get("status") or {}
        reason = cond.get("reason") or ""
        ev = [Evidence("job condition", f"Failed=True {reason}: {cond.get('message', '')}",
                       f"kubectl -n {ns} describe job {name}")]
        ev += [event_evidence(e, ns) for e in events_for(snap, "Job", name, ns) if e.get("reason") == reason][-1:]
        exits = []  # (pod, container, terminated state) of each container that ended with an error
        for p in _job_pods(snap, job):
            for cs in ((p.get("status") or {}).get("initContainerStatuses") or []) + (
                    (p.get("status") or {}).get("containerStatuses") or []):
                t = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
                if t.get("exitCode"):
                    exits.append((meta(p)["name"], cs.get("name"), t))
        codes = dict.fromkeys(t["exitCode"] for _, _, t in exits)
        meaning = "; ".join(_("exit code {code} ({meaning})").format(
            code=c, meaning=exit_meaning(c, _("the process chose it"))) for c in codes)
        if exits:
            shown = "; ".join(_("{pod}/{container} exit {code} ({reason})").format(
                pod=pod, container=c, code=t["exitCode"], reason=t.get("reason", "")) for pod, c, t in exits[:3])
            failed = len({pod for pod, _c, _t in exits})
            ev.append(Evidence("pods", _("{count} pod(s) failed: {exits} and {more} more").format(
                count=failed, exits=shown, more=len(exits) - 3) if len(exits) > 3 else _(
                    "{count} pod(s) failed: {exits}").format(count=failed, exits=shown),
                               f"kubectl -n {ns} get pods -l batch.kubernetes.io/job-name={name} -o custom-columns="
                               "POD:.metadata.name,EXIT:.status.containerStatuses[*].state.terminated.exitCode,"
                               "REASON:.status.containerStatuses[*].state.terminated.reason"))
            started = next((t for _, _, t in exits if t.get("reason") == "StartError"), None)
            if started:
                ev.append(Evidence("pod status", f"StartError: {tail(started.get('message') or '', 200)}",
                                   f"kubectl -n {ns} describe pods -l batch.kubernetes.io/job-name={name}"))
        if reason == "BackoffLimitExceeded":
            failed, limit = status.get("failed", len(exits)), spec.get("backoffLimit", 6)
            summary = (_("the Job gave up after {failed} failed pod(s) (backoffLimit {limit}): its command ends with "
                         "{meaning}").format(failed=failed, limit=limit, meaning=meaning) if meaning else
                       _("the Job gave up after {failed} failed pod(s) (backoffLimit {limit})").format(
                           failed=failed, limit=limit))
            look = (f"kubectl -n {ns} logs job/{name}   # "
                    + _("why its pods failed; fix the command (or what it needs)"))
        elif reason == "DeadlineExceeded":
            summary = _("the Job ran longer than its activeDeadlineSeconds ({seconds} s), so its pods were stopped: "
                        "make it faster, or give it longer").format(seconds=spec.get("activeDeadlineSeconds"))
            look = (f"kubectl -n {ns} logs job/{name}   # "
                    + _("how far it got; raise spec.activeDeadlineSeconds (or make it faster) in its manifest"))
        else:
            summary = (_("the Job failed ({reason}): {message}; {meaning}") if meaning else
                       _("the Job failed ({reason}): {message}")).format(reason=reason,
                                                                         message=cond.get("message", ""),
                                                                         meaning=meaning)
            look = f"kubectl -n {ns} logs job/{name}   # " + _("why its pods failed")
        # A Job's pod template cannot be changed: once fixed in its manifest, the Job is run anew.
        fix = (f"{look}\n# " + _("then run it anew (a Job's pod template cannot change): {command}").format(
            command=f"kubectl -n {ns} delete job {name} && kubectl -n {ns} apply -f JOB-MANIFEST.yaml"))
        found.append(Finding("JobFailed", f"job/{name}", ns, summary, ev, fix))
    return found


def deployment_findings(snap: Snapshot) -> list[Finding]:
    found = []
    for dep in snap.deployments:
        cond = condition_of(dep, "Progressing")
        if cond.get("reason") != "ProgressDeadlineExceeded":
            continue
        if (dep.get("status") or {}).get("observedGeneration", 0) < meta(dep).get("generation", 0):
            continue
        ns, name = meta(dep)["namespace"], meta(dep)["name"]
        revs = revisions(snap, dep)
        ev = [Evidence("deployment condition", f"Progressing=False ProgressDeadlineExceeded: {cond.get('message')}",
                       f"kubectl -n {ns} rollout status deployment/{name}")]
        if revs:
            new = revs[-1]
            images = ",".join(c.get("image", "") for c in new["spec"]["template"]["spec"].get("containers") or [])
            rev = (meta(new).get("annotations") or {}).get("deployment.kubernetes.io/revision")
            ev.append(Evidence("rollout history", _("revision {revision} ({replicaset}, image {images}): {ready} of "
                                                    "{replicas} ready").format(
                revision=rev, replicaset=meta(new)["name"], images=images,
                ready=(new.get("status") or {}).get("readyReplicas", 0) or 0, replicas=new["spec"].get("replicas", 0)),
                f"kubectl -n {ns} rollout history deployment/{name}"))
        undo = len(revs) >= 2
        summary = (_("the rollout has stopped: its new pods did not become available within progressDeadlineSeconds; "
                     "the previous revision worked: roll back, then fix the new one") if undo else
                   _("the rollout has stopped: its new pods did not become available within progressDeadlineSeconds"))
        found.append(Finding("ProgressDeadlineExceeded", f"deployment/{name}", ns, summary,
                             ev, undo_command(ns, name) if undo else f"kubectl -n {ns} describe deployment {name}"))
    return found


