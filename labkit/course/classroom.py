"""Classroom mode: one shared cluster, one namespace per student, each student with only the rights lessons need.

The instructor runs ``labkit classroom create --students N`` (admin kubeconfig) on the ``current`` backend, or on the
embedded lab to rehearse. Per student it makes a Namespace, a ResourceQuota and LimitRange, a ServiceAccount, a
Role + RoleBinding, and writes a kubeconfig whose user is a short-lived token for that ServiceAccount (TokenRequest
API, as ``kubectl create token``). The kubeconfig's context names the student's namespace and carries a
``labkit.io/classroom`` extension, which is how a notebook knows it runs for a student:

- :func:`student_namespace` (``lk.lesson_namespace`` in classroom mode) then returns the student's own namespace,
  emptied of the previous lesson's objects, instead of deleting and re-creating ``lesson-NN`` (which needs
  cluster-scoped rights); lessons that need cluster-scoped objects or the lab's add-ons are refused with the reason
  (the rights in each lesson's record, :class:`labkit.course.LessonRights`).
- :func:`report` (called by ``lk.check``) writes the student's exercise results into the ConfigMap
  ``labkit-progress`` in their namespace; ``labkit classroom status`` reads every student's. Results are reported by
  the student's own notebook: a student can edit that ConfigMap, so it is a progress report, not an exam record.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..errors import LabkitError, NotFound
from ..i18n import _
from ..kube.client import Lab, api_errors
from ..kube.namespaces import MANAGED_BY
from ..kube.wait import wait_for_set
from ..paths import state_dir
from .exercises import Result
from .lesson import Lesson, LessonRights

EXTENSION = "labkit.io/classroom"  # kubeconfig context extension, and the label on a student's objects
SERVICE_ACCOUNT = "student"
ROLE = "labkit-student"
CLUSTER_ROLE = "labkit-student-cluster-read"
PROGRESS_CONFIGMAP = "labkit-progress"
KEEP_CONFIGMAPS = (PROGRESS_CONFIGMAP, "kube-root-ca.crt")  # what resetting a student's namespace leaves
DEFAULT_TOKEN_HOURS = 8.0

ALL = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
READ = ["get", "list", "watch"]
# Namespaced rights of a student in their own namespace: what lessons 00, 01 and 03 do (and kubectl beside them).
# No secrets, no RBAC objects, no quota changes, no pods/exec (lesson 02 on kind needs it; it is refused anyway).
STUDENT_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "persistentvolumeclaims", "events",
                                      "endpoints"], "verbs": ALL},
    {"apiGroups": [""], "resources": ["pods/log", "pods/status", "resourcequotas", "limitranges",
                                      "serviceaccounts"], "verbs": READ},
    # A Role can grant `get` on its own Namespace object (`kubectl get namespace STUDENT`), nothing more.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets",
                                          "deployments/scale", "statefulsets/scale", "replicasets/scale",
                                          "controllerrevisions"], "verbs": ALL},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ALL},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ALL},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ALL},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": READ},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": READ},
]
# The one cluster-scoped grant: read nodes and StorageClasses (lesson 00's node table, `kubectl get storageclass`).
# Neither names a student's objects; everything else cluster-scoped (namespaces, PVs, CRDs...) is denied.
CLUSTER_READ_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": READ},
    {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": READ},
]
# What a student's lesson reset deletes (kind, apiVersion), in an order that lets controllers stop first.
RESET_KINDS = [("HorizontalPodAutoscaler", "autoscaling/v2"), ("CronJob", "batch/v1"), ("Job", "batch/v1"),
               ("Deployment", "apps/v1"), ("StatefulSet", "apps/v1"), ("DaemonSet", "apps/v1"),
               ("ReplicaSet", "apps/v1"), ("ControllerRevision", "apps/v1"), ("PodDisruptionBudget", "policy/v1"),
               ("Pod", "v1"), ("Service", "v1"), ("ConfigMap", "v1"), ("PersistentVolumeClaim", "v1"),
               ("Event", "v1")]

DEFAULT_QUOTA = {"pods": "30", "services": "10", "configmaps": "20", "persistentvolumeclaims": "10",
                 "requests.cpu": "4", "requests.memory": "8Gi", "limits.cpu": "8", "limits.memory": "16Gi",
                 "requests.storage": "20Gi"}
# Containers that say nothing get these, so that the quota on requests/limits admits them; `max` refuses one
# container that would take a shared node's whole capacity (the quota alone allows 4 CPUs in one container).
DEFAULT_LIMITS = {"default": {"cpu": "500m", "memory": "512Mi"}, "defaultRequest": {"cpu": "50m", "memory": "64Mi"},
                  "max": {"cpu": "2", "memory": "2Gi"}}

# Pod Security Admission on every student namespace: `baseline` refuses what reaches the node (privileged, host
# namespaces, hostPath, host ports, added capabilities); the lessons' manifests pass it. `restricted` is what
# they are warned and audited against (they do not set runAsNonRoot or a seccomp profile, as the course's examples).
POD_SECURITY = {"enforce": "baseline", "warn": "restricted", "audit": "restricted"}
POD_SECURITY_LABELS = {**{f"pod-security.kubernetes.io/{mode}": level for mode, level in POD_SECURITY.items()},
                       **{f"pod-security.kubernetes.io/{mode}-version": "latest" for mode in POD_SECURITY}}

# What RBAC and Pod Security let through, refused in student namespaces by a ValidatingAdmissionPolicy (CEL, in the
# API server: no webhook to run): the way out through a node's ports, a pod placed past the scheduler.
GUARD_POLICY = "labkit-student-guard"
GUARD_VALIDATIONS: list[dict[str, str]] = [
    {"expression": "request.kind.kind != 'Service' || !has(object.spec.type) || object.spec.type == 'ClusterIP'",
     "message": "a student's Service is ClusterIP only: NodePort and LoadBalancer open a port on the shared "
                "cluster's nodes (use `kubectl port-forward` or a ClusterIP Service)",
     "reason": "Forbidden"},
    {"expression": "request.kind.kind != 'Service' || !has(object.spec.externalIPs) || "
                   "size(object.spec.externalIPs) == 0",
     "message": "a student's Service may not set externalIPs (it would capture traffic to those addresses on "
                "every node)", "reason": "Forbidden"},
    {"expression": "request.kind.kind != 'Pod' || request.operation != 'CREATE' || !has(object.spec.nodeName) || "
                   "object.spec.nodeName == ''",
     "message": "a student's pod may not name spec.nodeName: that skips the scheduler (and its taints, quotas of "
                "nodes and cordons); use a nodeSelector or node affinity", "reason": "Forbidden"},
]


_ASK = ("run it in a lab of your own, where every lesson runs: your laptop's (`labkit up`) or the class hub's (your "
        "instructor's `labkit hub`, docs/classroom.md); or ask your instructor to show it on the projector")


class ClassroomRefused(LabkitError):
    """A lesson that needs cluster-scoped rights, started with a student's kubeconfig."""


# ---------------------------------------------------------------- pure logic


def student_names(students: int, prefix: str = "student") -> list[str]:
    """``student-01`` ... ``student-NN`` (at least two digits, so they sort)."""
    if students < 1:
        raise LabkitError(f"--students must be at least 1, not {students}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", prefix) or len(prefix) > 40:
        raise LabkitError(f"--prefix {prefix!r} is not a valid start of a namespace name",
                          fix="use lowercase letters, digits and '-', e.g. --prefix student")
    width = max(2, len(str(students)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, students + 1)]


def refusal(lesson: str, student: str, rights: LessonRights | None) -> str | None:
    """Why ``student`` cannot run ``lesson`` (its namespace name, e.g. ``lesson-05``) with what its record says it
    needs (``rights``; None: no lesson record names it), or None when they can."""
    if rights is None:
        return (f"{lesson} is no lesson's namespace (labkit.lessons.records()), so nobody has said whether a "
                f"student's rights are enough for it")
    if rights.refused is None:
        return None
    return (f"{lesson} cannot run for {student}: {rights.refused}. A student's kubeconfig has rights only inside "
            f"namespace {student} (cluster-scoped rights it needs: {rights.cluster_scoped})")


def student_objects(student: str, *, quota: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Namespace, ResourceQuota, LimitRange, ServiceAccount, Role and RoleBinding of one student."""
    labels = {**MANAGED_BY, EXTENSION: student}
    meta = {"namespace": student, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": student,
                                                               "labels": {**labels, **POD_SECURITY_LABELS}}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "student", **meta},
         "spec": {"hard": dict(quota or DEFAULT_QUOTA)}},
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "student", **meta},
         "spec": {"limits": [{"type": "Container", **DEFAULT_LIMITS}]}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, **meta},
         "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": ROLE, **meta},
         "rules": STUDENT_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": ROLE, **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": student}]},
    ]


def guard_objects() -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy of :data:`GUARD_VALIDATIONS` and its binding to every student namespace (shared
    by all classes: it selects namespaces by the ``labkit.io/classroom`` label)."""
    meta = {"name": GUARD_POLICY, "labels": {**MANAGED_BY, EXTENSION: "shared"}}
    group = "admissionregistration.k8s.io/v1"
    return [
        {"apiVersion": group, "kind": "ValidatingAdmissionPolicy", "metadata": meta, "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                    "operations": ["CREATE", "UPDATE"],
                                                    "resources": ["pods", "services"]}]},
            "validations": GUARD_VALIDATIONS}},
        {"apiVersion": group, "kind": "ValidatingAdmissionPolicyBinding", "metadata": meta, "spec": {
            "policyName": GUARD_POLICY, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchExpressions": [{"key": EXTENSION,
                                                                           "operator": "Exists"}]}}}},
    ]


def cluster_objects(students: Iterable[str], prefix: str) -> list[dict[str, Any]]:
    """The shared read-only ClusterRole and admission guard, and one ClusterRoleBinding per class (``prefix``)
    naming every student."""
    labels = {**MANAGED_BY, EXTENSION: prefix}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": CLUSTER_ROLE, "labels": {**MANAGED_BY, EXTENSION: "shared"}},
         "rules": CLUSTER_READ_RULES},
        *guard_objects(),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{CLUSTER_ROLE}-{prefix}", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": s} for s in students]},
    ]


def _current(config: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return entry
    raise LabkitError(f"the kubeconfig has no {section[:-1]} named {name!r}",
                      fix="kubectl config view   # " + _("check current-context and its cluster and user"))


def cluster_entry(admin: dict[str, Any], *, base: Path | None = None, server: str | None = None) -> dict[str, Any]:
    """The admin kubeconfig's current cluster, self-contained (CA inlined) and optionally at another address."""
    context = _current(admin, "contexts", admin.get("current-context", ""))["context"]
    cluster = dict(_current(admin, "clusters", context["cluster"])["cluster"])
    ca_file = cluster.pop("certificate-authority", None)
    if ca_file:
        path = Path(ca_file) if base is None else base / ca_file
        cluster["certificate-authority-data"] = base64.b64encode(path.read_bytes()).decode()
    if server:
        cluster["server"] = server
    return cluster


def student_kubeconfig(cluster: dict[str, Any], *, student: str, token: str, expires: str) -> dict[str, Any]:
    """A kubeconfig for one student: their token, their namespace, and the extension that marks classroom mode."""
    name = f"labkit-{student}"
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": "labkit-classroom", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {
            "cluster": "labkit-classroom", "user": name, "namespace": student,
            "extensions": [{"name": EXTENSION, "extension": {"student": student, "namespace": student,
                                                             "expires": expires}}]}}],
    }


def student_of(kubeconfig: dict[str, Any]) -> str | None:
    """The student a kubeconfig belongs to (its current context's ``labkit.io/classroom`` extension), else None."""
    try:
        context = _current(kubeconfig, "contexts", kubeconfig.get("current-context", ""))["context"]
    except (LabkitError, KeyError, TypeError):
        return None
    for ext in context.get("extensions") or []:
        if ext.get("name") == EXTENSION:
            return (ext.get("extension") or {}).get("namespace") or context.get("namespace")
    return None


def merge_result(entries: dict[str, Any], result: Result, *, now: str) -> dict[str, Any]:
    """One exercise's entry in the progress ConfigMap after a check: attempts, passed (sticky), when."""
    entry = dict(entries.get(result.exercise) or {"attempts": 0, "passed": False})
    entry["attempts"] = int(entry.get("attempts", 0)) + 1
    entry["last_check"] = now
    if result.passed and not entry.get("passed"):
        entry["passed"], entry["passed_at"] = True, now
    if result.solved_by_test:
        entry["solved_by_test"] = True  # an instructor must not count a test run as a student's work
    return {**entries, result.exercise: entry}


def progress_rows(reports: dict[str, dict[str, Any] | None], lessons: Iterable[Lesson], *,
                  every_lesson: bool = False) -> list[dict[str, Any]]:
    """``labkit classroom status``'s rows: per student, exercises passed out of those a student can run (all of
    them with ``every_lesson``: a private lab per student, ``labkit hub``)."""
    runnable = [ex.id for lesson in lessons for ex in lesson.exercises
                if every_lesson or lesson.rights.refused is None]
    rows = []
    for student, entries in sorted(reports.items()):
        entries = entries or {}
        passed = sorted(k for k, v in entries.items() if v.get("passed") and not v.get("solved_by_test"))
        last = max((v.get("last_check") or v.get("passed_at") or "" for v in entries.values()), default="")
        rows.append({"student": student, "passed": len([p for p in passed if p in runnable]),
                     "of": len(runnable), "attempts": sum(int(v.get("attempts", 0)) for v in entries.values()),
                     "last_check": last or "-", "exercises_passed": " ".join(passed) or "-",
                     "test_runs": sorted(k for k, v in entries.items() if v.get("solved_by_test"))})
    return rows


# ---------------------------------------------------------------- on the cluster


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _apply_object(lab: Lab, doc: dict[str, Any]) -> None:
    res = lab.dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    name, ns = doc["metadata"]["name"], doc["metadata"].get("namespace")
    with api_errors(_("applying {kind}/{name}").format(kind=doc['kind'], name=name), server=lab.server):
        res.server_side_apply(body=doc, name=name, namespace=ns, field_manager="labkit-classroom",
                              force_conflicts=True)


def request_token(lab: Lab, student: str, *, expiration_s: int) -> tuple[str, str]:
    """A token for the student's ServiceAccount and its expiry (``kubectl create token student -n STUDENT
    --duration=Ns``)."""
    from kubernetes import client as k8s

    body = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[],
                                                                        expiration_seconds=expiration_s))
    with api_errors(_("requesting a token for {student}").format(student=student), server=lab.server):
        answer = lab.core.create_namespaced_service_account_token(SERVICE_ACCOUNT, student, body)
    expires = answer.status.expiration_timestamp
    return answer.status.token, expires.isoformat(timespec="seconds") if expires else "?"


def default_out() -> Path:
    return state_dir() / "classroom"


def _admin_kubeconfig(lab: Lab) -> tuple[dict[str, Any], Path]:
    if lab.kubeconfig is None:
        raise LabkitError("this lab connection has no kubeconfig file to copy the cluster's address from",
                          fix="labkit classroom create --kubeconfig ADMIN_KUBECONFIG")
    path = Path(lab.kubeconfig)
    admin = yaml.safe_load(path.read_text()) or {}
    if student_of(admin):
        raise LabkitError(f"{path} is a student's kubeconfig; a classroom is created with the admin's",
                          fix="unset LABKIT_KUBECONFIG, or pass --kubeconfig with the cluster admin's file")
    return admin, path


def create(lab: Lab, *, students: int, prefix: str = "student", out: Path | None = None,
           token_hours: float = DEFAULT_TOKEN_HOURS, server: str | None = None,
           quota: dict[str, str] | None = None) -> list[Path]:
    """Namespace, quota, RBAC and a kubeconfig per student; run again to renew the tokens.

    Same as, per student: ``kubectl create namespace S; kubectl apply -f quota.yaml -f rbac.yaml -n S;
    kubectl create token student -n S --duration=8h``, then a kubeconfig with that token.
    """
    admin, admin_path = _admin_kubeconfig(lab)
    cluster = cluster_entry(admin, base=admin_path.parent, server=server)
    names = student_names(students, prefix)
    out = out or default_out()
    out.mkdir(parents=True, exist_ok=True)
    for doc in cluster_objects(names, prefix):
        _apply_object(lab, doc)
    written = []
    for student in names:
        for doc in student_objects(student, quota=quota):
            _apply_object(lab, doc)
        token, expires = request_token(lab, student, expiration_s=int(token_hours * 3600))
        path = out / f"{student}.kubeconfig"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(student_kubeconfig(cluster, student=student, token=token, expires=expires),
                                       sort_keys=False))
        written.append(path)
    return written


def class_namespaces(lab: Lab, prefix: str | None = None) -> list[str]:
    """The student namespaces on the cluster (``kubectl get ns -l labkit.io/classroom``), of one class or all."""
    with api_errors(_("listing the classroom's namespaces"), server=lab.server):
        items = lab.core.list_namespace(label_selector=EXTENSION).items
    names = sorted(ns.metadata.name for ns in items if not ns.metadata.deletion_timestamp)
    return [n for n in names if prefix is None or re.fullmatch(rf"{re.escape(prefix)}-\d+", n)]


def delete(lab: Lab, *, prefix: str = "student", out: Path | None = None, timeout: float = 120.0) -> list[str]:
    """Delete every student namespace of the class (with all their objects), its binding and kubeconfig files.

    Same as ``kubectl delete ns -l labkit.io/classroom; kubectl delete clusterrolebinding
    labkit-student-cluster-read-PREFIX``.
    """
    from kubernetes import client as k8s

    names = class_namespaces(lab, prefix)
    for name in names:
        try:
            with api_errors(_("deleting namespace {name}").format(name=name), server=lab.server):
                lab.core.delete_namespace(name, propagation_policy="Background")
        except NotFound:
            pass
    rbac = k8s.RbacAuthorizationV1Api(lab.api_client)
    try:
        with api_errors(_("deleting the class's ClusterRoleBinding"), server=lab.server):
            rbac.delete_cluster_role_binding(f"{CLUSTER_ROLE}-{prefix}")
    except NotFound:
        pass
    if not class_namespaces(lab):  # the last class gone: the shared ClusterRole and admission guard too
        shared = [(rbac.delete_cluster_role, _("the students' ClusterRole"), CLUSTER_ROLE)]
        admission = k8s.AdmissionregistrationV1Api(lab.api_client)
        shared += [(admission.delete_validating_admission_policy_binding, _("the guard's binding"), GUARD_POLICY),
                   (admission.delete_validating_admission_policy, _("the students' admission guard"), GUARD_POLICY)]
        for remove, what, name in shared:
            try:
                with api_errors(_("deleting {what}").format(what=what), server=lab.server):
                    remove(name)
            except NotFound:
                pass
    wait_for_set(lab, "Namespace", namespace=None, label_selector=EXTENSION,  # type: ignore[arg-type]
                 condition=lambda objs: not [o for o in objs if o["metadata"]["name"] in names], timeout=timeout)
    folder = out or default_out()
    for name in names:
        (folder / f"{name}.kubeconfig").unlink(missing_ok=True)
    return names


def read_reports(lab: Lab, prefix: str | None = None) -> dict[str, dict[str, Any] | None]:
    """Each student's progress ConfigMap as a dict (None when they have checked nothing yet), in one list call
    (``kubectl get configmaps -A --field-selector metadata.name=labkit-progress``)."""
    students = class_namespaces(lab, prefix)
    with api_errors(_("reading the students' progress"), server=lab.server):
        found = lab.core.list_config_map_for_all_namespaces(
            field_selector=f"metadata.name={PROGRESS_CONFIGMAP}").items
    data = {cm.metadata.namespace: cm.data or {} for cm in found if cm.metadata.namespace in students}
    return {s: ({k: json.loads(v) for k, v in data[s].items()} if s in data else None) for s in students}


def status(lab: Lab, lessons: Iterable[Lesson], *, prefix: str | None = None) -> list[dict[str, Any]]:
    """Every student's progress (``kubectl get configmap labkit-progress -n STUDENT -o yaml`` for each)."""
    return progress_rows(read_reports(lab, prefix), lessons)


# ---------------------------------------------------------------- what a student's notebook calls


def student(lab: Lab) -> str | None:
    """The student this connection belongs to (their namespace), or None outside classroom mode."""
    if lab.kubeconfig is None or os.environ.get("LABKIT_CLASSROOM") == "0":
        return None
    try:
        return student_of(yaml.safe_load(Path(lab.kubeconfig).read_text()) or {})
    except (OSError, yaml.YAMLError):
        return None


def reset_namespace(lab: Lab, namespace: str, *, timeout: float = 90.0) -> None:
    """Delete the previous lesson's objects from a student's namespace and wait until its pods and claims are gone.

    Same as ``kubectl delete deploy,sts,rs,job,hpa,pdb,pod,svc,pvc,cm,events --all -n NS`` (keeping the progress
    ConfigMap and kube-root-ca.crt).
    """
    keep = ",".join(f"metadata.name!={name}" for name in KEEP_CONFIGMAPS)
    for kind, api_version in RESET_KINDS:
        res = lab.dynamic.resources.get(api_version=api_version, kind=kind)
        # deletecollection needs a selector: every object of the namespace, or all but the kept ConfigMaps
        selector = keep if kind == "ConfigMap" else f"metadata.namespace={namespace}"
        with api_errors(_("deleting the previous lesson's {kind}s in {namespace}").format(kind=kind,
                                                                                           namespace=namespace),
                        server=lab.server):
            res.delete(namespace=namespace, body={"propagationPolicy": "Background"}, field_selector=selector)
    for kind in ("Pod", "PersistentVolumeClaim"):
        wait_for_set(lab, kind, namespace=namespace, condition=lambda objs: not objs, timeout=timeout)


def student_namespace(lab: Lab, who: str, lesson: str, rights: LessonRights | None, *, timeout: float = 90.0) -> str:
    """Student ``who``'s namespace, emptied for ``lesson`` (``kubectl delete deploy,sts,pod,svc,pvc,cm --all -n
    STUDENT``); refused, with the reason, when the lesson's ``rights`` are more than a student has."""
    why = refusal(lesson, who, rights)
    if why:
        raise ClassroomRefused(why, fix=_ASK)
    reset_namespace(lab, who, timeout=timeout)
    return who


def report(lab: Lab, result: Result, *, attempts: int = 5) -> bool:
    """Record a check's result in the student's ``labkit-progress`` ConfigMap (classroom mode only).

    Same as ``kubectl -n STUDENT patch configmap labkit-progress --type=merge -p '{"data": {...}}'``; retried on a
    conflict (two notebooks checking at once). A failure to report never fails the check: False, with a warning.
    """
    from kubernetes import client as k8s

    who = student(lab)
    if who is None:
        return False
    for _attempt in range(attempts):
        try:
            try:
                with api_errors(_("reading {who}'s progress").format(who=who), server=lab.server):
                    cm = lab.core.read_namespaced_config_map(PROGRESS_CONFIGMAP, who)
            except NotFound:
                cm = None
            entries = {k: json.loads(v) for k, v in ((cm.data if cm else None) or {}).items()}
            data = {k: json.dumps(v, sort_keys=True) for k, v in merge_result(entries, result, now=_now()).items()}
            meta = k8s.V1ObjectMeta(name=PROGRESS_CONFIGMAP, labels={**MANAGED_BY, EXTENSION: who},
                                    resource_version=cm.metadata.resource_version if cm else None)
            with api_errors(_("writing {who}'s progress").format(who=who), server=lab.server):
                if cm is None:
                    lab.core.create_namespaced_config_map(who, k8s.V1ConfigMap(metadata=meta, data=data))
                else:
                    lab.core.replace_namespaced_config_map(PROGRESS_CONFIGMAP, who,
                                                           k8s.V1ConfigMap(metadata=meta, data=data))
            return True
        except LabkitError as exc:
            if "409" not in str(exc) and "already exists" not in str(exc) and "modified" not in str(exc):
                print(f"(could not report this result to your instructor: {exc})")
                return False
    print("(could not report this result to your instructor: the progress ConfigMap kept changing)")
    return False
