"""Rules: admission (quotas, limits, service accounts, Pod Security) and ReplicaSets (part of :mod:`labkit.insight`)."""

from __future__ import annotations

import difflib
import json
import re
import shlex
from typing import Any

from ..i18n import _
from ..kube.quantity import format_quantity, quantity
from .findings import Evidence, Finding
from .objects import PATCHABLE, condition_of, deployment, event_evidence, events_for, jsonpatch, owner, subject_of, tail
from .snapshot import Snapshot, meta

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
            "   # " + _("retry now, not after the controller's back-off"))


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


def replicaset_findings(snap: Snapshot) -> list[Finding]:
    found = []
    for rs in snap.replicasets:
        cond = condition_of(rs, "ReplicaFailure")
        ns, rname = meta(rs)["namespace"], meta(rs)["name"]
        missing = int((rs.get("spec") or {}).get("replicas") or 0) - int((rs.get("status") or {}).get("replicas") or 0)
        refused = [e for e in events_for(snap, "ReplicaSet", rname, ns) if e.get("reason") == "FailedCreate"]
        if cond.get("status") == "True":
            message = cond.get("message") or ""
            ev = [Evidence("replicaset condition", f"ReplicaFailure=True {cond.get('reason')}: {message[:240]}",
                           f"kubectl -n {ns} describe replicaset {rname}")]
        elif refused and missing > 0:  # the events, while pods are still missing (they outlive a fixed refusal)
            message, ev = refused[-1].get("message") or "", []
        else:
            continue
        kind, name = owner(snap, rs)
        if kind == "Pod":
            kind, name = "ReplicaSet", rname
        ev += [event_evidence(e, ns) for e in refused[-1:]]
        if (m := _QUOTA.search(message)):
            req, used, lim = _pairs(m["req"]), _pairs(m["used"]), _pairs(m["lim"])
            need = {r: used.get(r, 0) + req[r] * max(missing, 1) for r in req
                    if used.get(r, 0) + req[r] > lim.get(r, 0)}
            hard = {r: format_quantity(r, v) for r, v in need.items()}
            ev.append(Evidence("resourcequota", _("quota {quota}: used {used} of {limited}; each pod asks {requested}; "
                                                  "{missing} pod(s) missing").format(
                quota=m["q"], used=m["used"], limited=m["lim"], requested=m["req"], missing=missing),
                               f"kubectl -n {ns} describe resourcequota {m['q']}"))
            fix = (f"kubectl -n {ns} patch resourcequota {m['q']} --type=merge -p "
                   f"{shlex.quote(json.dumps({'spec': {'hard': hard}}))}\n" + _retry(ns, rname))
            found.append(Finding("QuotaExceeded", subject_of(kind, name), ns, _(
                "ResourceQuota {quota} is full: {missing} pod(s) cannot be created; raise the quota (or ask less per "
                "pod, or run fewer)").format(quota=m["q"], missing=missing), ev, fix))
        elif (hits := list(_LIMIT.finditer(message))):
            dep = deployment(snap, ns, name) if kind == "Deployment" else None
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
            words = {"limit": _("limit"), "request": _("request")}
            broken = "; ".join(
                (_("{resource} {what} {value} is above the maximum {edge}") if h["bound"] == "maximum" else
                 _("{resource} {what} {value} is below the minimum {edge}")).format(
                    resource=h["res"], what=words.get(h["what"], h["what"]), value=h["value"], edge=h["edge"])
                for h in hits)
            found.append(Finding("LimitRangeViolation", subject_of(kind, name), ns, _(
                "a LimitRange in the namespace refuses the pods: {problems}").format(problems=broken), ev,
                                 f"kubectl -n {ns} set resources {kind.lower()}/{name} -c {cname} "
                                 + " ".join(dict.fromkeys(args))))
        elif (m := _NO_SA.search(message)):
            sa = m["sa"]
            have = sorted(meta(a)["name"] for a in snap.serviceaccounts if meta(a).get("namespace") == ns)
            ev.append(Evidence("serviceaccount", _("no {kind} {name} in {namespace}; it has: {names}").format(
                kind="ServiceAccount", name=sa, namespace=ns, names=", ".join(have) or _("none")),
                               f"kubectl -n {ns} get serviceaccounts"))
            close = difflib.get_close_matches(sa, [a for a in have if a != "default"], n=1, cutoff=0.6)
            if close and kind in PATCHABLE:
                why = _("{name!r} exists: run them as that").format(name=close[0])
                fix = jsonpatch(ns, kind, name, [{"op": "replace", "path": "/spec/template/spec/serviceAccountName",
                                                   "value": close[0]}])
            else:
                why = _("create it (and bind the Role it needs), or name one that exists")
                fix = f"kubectl -n {ns} create serviceaccount {sa}\n" + _retry(ns, rname)
            found.append(Finding("ServiceAccountNotFound", subject_of(kind, name), ns, _(
                "its pods run as ServiceAccount {account}, which does not exist, so the API server refuses them "
                "({missing} missing): {why}").format(account=sa, missing=missing, why=why), ev, fix))
        elif (m := _PSA.search(message)):
            dep = deployment(snap, ns, name) if kind == "Deployment" else None
            spec = ((dep or rs).get("spec") or {}).get("template", {}).get("spec") or {}
            patch, changed, manual = _psa_patch(spec, m["checks"])
            ev.append(Evidence("namespace", _("namespace {namespace} enforces Pod Security level {level} ({version}); "
                                              "the pods fail: {checks}").format(
                namespace=ns, level=m["level"], version=m["version"], checks=tail(m["checks"], 200)),
                               f"kubectl get namespace {ns} --show-labels"))
            fix = (f"kubectl -n {ns} patch {kind.lower()}/{name} --type=strategic -p "
                   f"{shlex.quote(json.dumps({'spec': {'template': {'spec': patch}}}))}" if patch else
                   f"kubectl -n {ns} edit {kind.lower()}/{name}   # "
                   + _("make the pod template meet {level}").format(level=m["level"]))
            if patch and kind == "ReplicaSet":
                fix += "\n" + _retry(ns, rname)
            if manual and patch:
                fix += "\n# " + _("by hand (the pods need a redesign, or another namespace): {checks}").format(
                    checks="; ".join(manual))
            found.append(Finding("PodSecurityViolation", subject_of(kind, name), ns, _(
                "namespace {namespace} enforces Pod Security {level!r} and the pod template breaks it ({checks}), so "
                "no pod is created ({missing} missing): change the pods, not the namespace's level").format(
                    namespace=ns, level=m["level"], checks=", ".join(changed + [x.split(" (")[0] for x in manual]),
                    missing=missing), ev, fix))
    return found


