"""e2e for classroom mode on the embedded lab: N students share one cluster and none can touch another's namespace
or anything cluster-scoped beyond reading nodes and StorageClasses; each can do a lesson's work in their own.

Denials are counted three ways, with each student's own token: a SelfSubjectRulesReview of every other student's
namespace (every right held there, whatever the verb or kind: none), a SelfSubjectAccessReview for every verb on
every kind the API serves (subresources too) on the next student's namespace and cluster-wide (what RBAC allows),
and real requests on every other student's namespace and on cluster-scoped objects (what the API server does).
``LABKIT_CLASSROOM_STUDENTS`` sets N (default 3).
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

import labkit as lk
from labkit import lessons
from labkit.course import classroom, exercises
from labkit.kube.rollouts import rollout_undo, set_image

pytestmark = pytest.mark.e2e

STUDENTS = int(os.environ.get("LABKIT_CLASSROOM_STUDENTS", "3"))
VERBS = [*classroom.ALL, "escalate", "bind", "impersonate", "approve", "sign"]
# Kubernetes' own system:basic-user ClusterRole lets every authenticated user ask about their own rights.
SELF_REVIEWS = {("authentication.k8s.io", "selfsubjectreviews", "create"),
                ("authorization.k8s.io", "selfsubjectaccessreviews", "create"),
                ("authorization.k8s.io", "selfsubjectrulesreviews", "create")}
ALLOWED_CLUSTER_SCOPED = {(g, r, v) for rule in classroom.CLUSTER_READ_RULES for g in rule["apiGroups"]
                          for r in rule["resources"] for v in rule["verbs"]}


@pytest.fixture(scope="module")
def room(lab: lk.Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    prefix = f"e2e{uuid.uuid4().hex[:6]}"
    out = tmp_path_factory.mktemp("classroom")
    paths = classroom.create(lab, students=STUDENTS, prefix=prefix, out=out, token_hours=1)
    students = {p.stem: lk.connect(p) for p in paths}
    for name in students:  # an object in every namespace for the others to try to read, change and delete
        lab.core.create_namespaced_config_map(name, k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name="homework"), data={"answer": name}))
    yield {"prefix": prefix, "out": out, "paths": paths, "students": students}
    gone = classroom.delete(lab, prefix=prefix, out=out)
    assert sorted(gone) == sorted(students) and not list(out.glob("*.kubeconfig"))


@pytest.fixture(autouse=True)
def private_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exercises, "progress_file", lambda: tmp_path / "progress.json")
    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)


def _served(lab: lk.Lab) -> dict[tuple[str, str, str, bool], str]:
    """(group, resource, subresource, namespaced) -> group/version of everything the API server serves (``kubectl
    api-resources``, subresources included)."""
    found = {}
    for res in lab.dynamic.resources.search():
        if type(res).__name__ != "Resource":  # the search also yields each resource's list type
            continue
        for sub in ["", *getattr(res, "subresources", {})]:
            found.setdefault((res.group or "", res.name, sub, bool(res.namespaced)), res.group_version)
    return dict(sorted(found.items()))


def _call(student: lk.Lab, method: str, path: str, body: Any = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """One raw request with the student's token: (HTTP status, JSON body). Raw, because the typed client's models
    cost 100 ms a review on this machine and the review count is in the thousands."""
    cfg = student.api_client.configuration
    token = cfg.api_key.get("BearerToken") or cfg.api_key.get("authorization")
    answer = student.api_client.call_api(method, cfg.host + path, body=body, _request_timeout=30, header_params={
        "Authorization": token, "Content-Type": "application/json", "Accept": "application/json", **(headers or {})})
    answer.read()
    return answer.status, json.loads(answer.data or b"{}")


def _allowed(student: lk.Lab, group: str, resource: str, sub: str, verb: str, namespace: str | None) -> bool:
    """What RBAC answers for this student (``kubectl auth can-i VERB RESOURCE -n NAMESPACE``)."""
    attributes = {"group": group, "resource": resource, "verb": verb, "subresource": sub, "namespace": namespace}
    status, review = _call(student, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {k: v for k, v in attributes.items() if v}}})
    assert status == 201, (status, review)
    return bool(review["status"].get("allowed"))


def _review_all(student: lk.Lab, questions: list[tuple[str, str, str, str, str | None]]) -> list[bool]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda q: _allowed(student, *q), questions))


def _rules_in(student: lk.Lab, namespace: str) -> list[dict[str, Any]]:
    """Every rule the student holds in a namespace (``kubectl auth can-i --list -n NAMESPACE``)."""
    status, review = _call(student, "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": namespace}})
    assert status == 201 and not review["status"].get("incomplete"), review
    return review["status"].get("resourceRules") or []


def test_every_verb_on_every_other_students_namespace_and_cluster_scoped_object_is_denied(
        lab: lk.Lab, room: dict[str, Any]) -> None:
    served = _served(lab)
    namespaced = [r for r in served if r[3]]
    cluster_scoped = [r for r in served if not r[3]]
    assert len(namespaced) > 30 and len(cluster_scoped) > 15, (len(namespaced), len(cluster_scoped))
    students = list(room["students"])
    everywhere = {r for _, r, _ in ALLOWED_CLUSTER_SCOPED | SELF_REVIEWS}
    lines, leaks = [], []
    for i, (name, student) in enumerate(room["students"].items()):
        # 1. the rules review: everything the student may do in each other namespace, whatever the verb or kind
        for other in students:
            rules = _rules_in(student, other)
            beyond = [r for r in rules if not set(r.get("resources") or []) <= everywhere]
            if other == name:
                assert beyond, f"{name} has no rights in their own namespace"
            elif beyond:
                leaks.append(f"{name} holds {beyond} in {other}")
        # 2. one access review per verb and served kind (subresources too): on the next student's namespace, on
        #    every cluster-scoped kind, and (allowed) the lessons' kinds in their own namespace
        neighbour = students[(i + 1) % len(students)]
        others = [(g, r, sub, verb, neighbour) for g, r, sub, _ in namespaced for verb in VERBS]
        granted = {(g, r, v) for g, r, sub, _ in cluster_scoped for v in VERBS if not sub and (
            (g, r, v) in ALLOWED_CLUSTER_SCOPED or (g, r, v) in SELF_REVIEWS)}
        cluster = [(g, r, sub, verb, None) for g, r, sub, _ in cluster_scoped for verb in VERBS
                   if sub or (g, r, verb) not in granted]
        own = [(g, r, "", verb, name) for r, g in (("deployments", "apps"), ("pods", ""), ("statefulsets", "apps"),
                                                   ("services", ""), ("configmaps", "")) for verb in classroom.ALL]
        answers = _review_all(student, others + cluster + own + [(g, r, "", v, None) for g, r, v in granted])
        it = iter(answers)
        leaks += [f"{name} may {q[3]} {q[1]}{'/' + q[2] if q[2] else ''} in {q[4]}" for q in others if next(it)]
        leaks += [f"{name} may {q[3]} {q[1]}{'/' + q[2] if q[2] else ''} (cluster-scoped)" for q in cluster if next(it)]
        leaks += [f"{name} cannot {q[3]} {q[1]} in their own namespace" for q in own if not next(it)]
        leaks += [f"{name} cannot {v} {r} (granted)" for g, r, v in granted if not next(it)]
        denied_other = sum(1 for a in answers[:len(others)] if not a)
        denied_cluster = sum(1 for a in answers[len(others):len(others) + len(cluster)] if not a)
        lines.append(f"{name}: no rule in any of {len(students) - 1} other namespaces; on {neighbour}: "
                     f"{denied_other} of {len(others)} verb x kind denied; cluster-scoped: {denied_cluster} of "
                     f"{len(cluster)} denied (granted: read nodes, storageclasses; the self-reviews every user has)")
    print("\n".join(lines))
    assert not leaks, "\n".join(leaks)
    assert len(lines) == STUDENTS


def _status(call: Callable[[], Any]) -> int:
    """The HTTP status a request got: a raw call returns it, the typed client raises it."""
    try:
        answer = call()
    except ApiException as exc:
        return exc.status
    return answer if isinstance(answer, int) else 200


def _attempts_on(lab: lk.Lab, student: lk.Lab, name: str, other: str) -> dict[str, Callable[[], Any]]:
    """Real requests by student ``name`` on another student's namespace: every kind listed, objects changed."""
    core, apps = student.core, student.apps
    cm = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="planted"), data={"from": name})
    calls: dict[str, Callable[[], Any]] = {
        "get homework": lambda: core.read_namespaced_config_map("homework", other),
        "patch homework": lambda: core.patch_namespaced_config_map("homework", other, {"data": {"answer": "x"}}),
        "delete homework": lambda: core.delete_namespaced_config_map("homework", other),
        "create configmap": lambda: core.create_namespaced_config_map(other, cm),
        "delete all pods": lambda: core.delete_collection_namespaced_pod(other),
        "create deployment": lambda: apps.create_namespaced_deployment(other, {
            "metadata": {"name": "x"}, "spec": {"selector": {"matchLabels": {"a": "x"}}, "template": {
                "metadata": {"labels": {"a": "x"}}, "spec": {"containers": [{"name": "x", "image": "x"}]}}}}),
        "create a token for their ServiceAccount": lambda: core.create_namespaced_service_account_token(
            classroom.SERVICE_ACCOUNT, other, k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(
                audiences=[]))),
    }
    for (group, resource, sub, namespaced), version in _served(lab).items():  # list every namespaced kind served
        if not namespaced or sub:
            continue
        path = f"/{'api' if not group else 'apis'}/{version}/namespaces/{other}/{resource}"
        calls[f"list {resource}.{group}"] = lambda p=path: _call(student, "GET", p)[0]
    return calls


def _cluster_attempts(student: lk.Lab, name: str, other: str) -> dict[str, Callable[[], Any]]:
    """Real requests by student ``name`` on cluster-scoped objects and on their own RBAC and quota."""
    core, rbac = student.core, k8s.RbacAuthorizationV1Api(student.api_client)
    admin_binding = k8s.V1ClusterRoleBinding(
        metadata=k8s.V1ObjectMeta(name=f"{name}-admin"),
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"),
        subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="student", namespace=name)])
    everything = k8s.V1Role(metadata=k8s.V1ObjectMeta(name="more"),
                            rules=[k8s.V1PolicyRule(api_groups=["*"], resources=["*"], verbs=["*"])])
    return {
        "list namespaces": lambda: core.list_namespace(),
        "create namespace": lambda: core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(
            name=f"{name}-extra"))),
        "delete another student's namespace": lambda: core.delete_namespace(other),
        "cordon a node": lambda: core.patch_node("cpu-node-1", {"spec": {"unschedulable": True}}),
        "list persistentvolumes": lambda: core.list_persistent_volume(),
        "bind cluster-admin": lambda: rbac.create_cluster_role_binding(admin_binding),
        "grant themselves a Role": lambda: rbac.create_namespaced_role(name, everything),
        "raise their quota": lambda: core.patch_namespaced_resource_quota(
            "student", name, {"spec": {"hard": {"pods": "1000"}}}),
        "read secrets": lambda: core.list_namespaced_secret(name),
        "list crds": lambda: _call(student, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")[0],
        "impersonate the admin": lambda: _call(student, "GET", "/api/v1/namespaces",
                                               headers={"Impersonate-User": "kubernetes-admin"})[0],
        # The kubelet port's verbs (labkit's kubelet server runs commands in sandboxes): refused before any pod is
        # looked at, in their own namespace too.
        "exec into a pod of their own": lambda: _call(student, "POST",
                                                      f"/api/v1/namespaces/{name}/pods/any/exec?command=ls")[0],
        "port-forward to a pod of their own": lambda: _call(student, "POST",
                                                            f"/api/v1/namespaces/{name}/pods/any/portforward")[0],
    }


def test_real_requests_to_other_students_and_cluster_scoped_objects_are_refused(
        lab: lk.Lab, room: dict[str, Any]) -> None:
    students = room["students"]
    refused = tried = 0
    wrong = []
    for name, student in students.items():
        others = [o for o in students if o != name]
        attempts = {f"{what} in {other}": call for other in others
                    for what, call in _attempts_on(lab, student, name, other).items()}
        attempts.update(_cluster_attempts(student, name, others[0]))
        for what, call in attempts.items():
            tried += 1
            code = _status(call)
            refused += code == 403
            if code != 403:
                wrong.append(f"{name}: {what} answered {code}, not 403")
        assert _status(student.core.list_node) == 200  # the one cluster-scoped read they have
    print(f"{STUDENTS} students: {refused} of {tried} real requests refused with 403")
    assert not wrong, "\n".join(wrong)
    for name in students:  # the admin sees every homework untouched
        assert lab.core.read_namespaced_config_map("homework", name).data == {"answer": name}


def test_a_student_does_lesson_01s_exercise_in_their_namespace_and_the_instructor_sees_it(
        lab: lk.Lab, room: dict[str, Any]) -> None:
    name, student = next(iter(room["students"].items()))
    assert classroom.student(student) == name and classroom.student(lab) is None
    expires = dt.datetime.fromisoformat(student.kubeconfig.read_text().split("expires: ")[1].split("\n")[0]
                                        .strip("'\""))
    assert dt.timedelta(minutes=55) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1, minutes=1)

    ns = lk.lesson_namespace(student, "lesson-01")
    assert ns == name
    homework = {o: [c.metadata.name for c in lab.core.list_namespaced_config_map(o).items] for o in room["students"]}
    assert all(("homework" in cms) == (o != name) for o, cms in homework.items())  # reset: only their own namespace
    lk.apply(student, """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "nginx:1.25"}]
""", namespace=ns)
    lk.rollout_status(student, "api", namespace=ns, timeout=60)
    pod = student.core.list_namespaced_pod(ns).items[0]
    assert pod.spec.containers[0].resources.requests == classroom.DEFAULT_LIMITS["defaultRequest"]  # LimitRange
    set_image(student, "api", namespace=ns, image="nginx:does-not-exist")
    lk.wait_for(student, "Deployment", "api", namespace=ns, condition="jsonpath={.status.updatedReplicas}=1")
    assert not lk.check(student, "01-recover", namespace=ns).passed
    rollout_undo(student, "api", namespace=ns, to_revision=1)
    lk.rollout_status(student, "api", namespace=ns, timeout=60)
    result = lk.check(student, "01-recover", namespace=ns)
    assert result.passed, result

    rows = {r["student"]: r for r in classroom.status(lab, lessons.records(), prefix=room["prefix"])}
    assert rows[name]["passed"] == 1 and rows[name]["attempts"] == 2 and "01-recover" in rows[name]["exercises_passed"]
    assert all(r["passed"] == 0 for s, r in rows.items() if s != name)

    with pytest.raises(lk.LabkitError, match="exceeded quota"):  # the quota is real: 3 x 2 CPUs > 4 requested
        lk.apply(student, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "greedy"}, "spec": {
            "containers": [{"name": f"c{i}", "image": "nginx:1.25", "resources": {"limits": {"cpu": "2"}}}
                           for i in range(3)]}}, namespace=ns)
    with pytest.raises(classroom.ClassroomRefused, match="lesson-05 cannot run for"):
        lk.lesson_namespace(student, "lesson-05")

    assert lk.lesson_namespace(student, "lesson-03") == name  # the next lesson starts empty, progress kept
    assert not student.apps.list_namespaced_deployment(ns).items
    assert not student.core.list_namespaced_pod(ns).items
    kept = {c.metadata.name for c in student.core.list_namespaced_config_map(ns).items}
    assert kept == {classroom.PROGRESS_CONFIGMAP, "kube-root-ca.crt"}


def _pod(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


_NGINX = {"name": "c", "image": "nginx:1.27"}
# Each way from a namespace onto a node (or past the scheduler, or beyond a shared node's size), as a manifest a
# student could apply; with the words of the refusal the API server must give.
ESCAPES: dict[str, tuple[dict[str, Any], str]] = {
    "privileged container": (_pod({"containers": [{**_NGINX, "securityContext": {"privileged": True}}]}, "priv"),
                             "privileged"),
    "hostPID": (_pod({"hostPID": True, "containers": [_NGINX]}, "hostpid"), "host namespaces"),
    "hostNetwork": (_pod({"hostNetwork": True, "containers": [_NGINX]}, "hostnet"), "host namespaces"),
    "hostIPC": (_pod({"hostIPC": True, "containers": [_NGINX]}, "hostipc"), "host namespaces"),
    "hostPath of the node's /": (_pod({"containers": [{**_NGINX, "volumeMounts": [{"name": "root",
                                                                                    "mountPath": "/host"}]}],
                                       "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, "hostpath"),
                                 "hostPath volumes"),
    "hostPort": (_pod({"containers": [{**_NGINX, "ports": [{"containerPort": 80, "hostPort": 8080}]}]}, "hostport"),
                 "hostPort"),
    "added capability SYS_ADMIN": (_pod({"containers": [{**_NGINX, "securityContext": {
        "capabilities": {"add": ["SYS_ADMIN"]}}}]}, "capadd"), "non-default capabilities"),
    "unconfined seccomp": (_pod({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                                 "containers": [_NGINX]}, "unconfined"), "seccompProfile"),
    "spec.nodeName past the scheduler": (_pod({"nodeName": "cpu-node-1", "containers": [_NGINX]}, "pinned"),
                                         "spec.nodeName"),
    "one container beyond the LimitRange": (_pod({"containers": [{**_NGINX, "resources": {
        "requests": {"cpu": "3"}, "limits": {"cpu": "3"}}}]}, "huge"), "maximum cpu usage per Container is 2"),
    "NodePort Service": ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"}, "spec": {
        "type": "NodePort", "selector": {"a": "b"}, "ports": [{"port": 80}]}}, "ClusterIP only"),
    "LoadBalancer Service": ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"}, "spec": {
        "type": "LoadBalancer", "selector": {"a": "b"}, "ports": [{"port": 80}]}}, "ClusterIP only"),
    "Service with externalIPs": ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"}, "spec": {
        "externalIPs": ["10.1.2.3"], "selector": {"a": "b"}, "ports": [{"port": 80}]}}, "externalIPs"),
}


def _refusal(student: lk.Lab, namespace: str, doc: dict[str, Any]) -> tuple[int, str]:
    """(HTTP status, message) of creating ``doc`` as the student (``kubectl create -f``)."""
    kind = doc["kind"].lower() + "s"
    group = "/api/v1" if doc["apiVersion"] == "v1" else f"/apis/{doc['apiVersion']}"
    status, answer = _call(student, "POST", f"{group}/namespaces/{namespace}/{kind}", body=doc)
    return status, str(answer.get("message", ""))


def test_no_student_manifest_reaches_a_node_or_skips_the_scheduler(lab: lk.Lab, room: dict[str, Any]) -> None:
    name, student = list(room["students"].items())[-1]
    wrong = []
    for what, (doc, words) in ESCAPES.items():
        status, message = _refusal(student, name, doc)
        if status != 403 or words not in message:
            wrong.append(f"{what}: {status} {message[:200]!r} (expected 403 saying {words!r})")
    # A controller creates the pods of a Deployment: the API server refuses them there, and nothing runs.
    template = ESCAPES["privileged container"][0]
    status, _ = _refusal(student, name, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "priv"},
                                         "spec": {"selector": {"matchLabels": {"a": "priv"}}, "template": {
                                             "metadata": {"labels": {"a": "priv"}}, "spec": template["spec"]}}})
    assert status == 201
    failed = lk.wait_for_set(lab, "ReplicaSet", namespace=name, label_selector="a=priv", timeout=60, condition=lambda
                             sets: any(c["type"] == "ReplicaFailure" and "PodSecurity" in c.get("message", "")
                                       for rs in sets for c in (rs.get("status") or {}).get("conditions") or []))
    assert failed and not lab.core.list_namespaced_pod(name, label_selector="a=priv").items
    # ... and the student cannot lift the labels that say so.
    status, message = _call(student, "PATCH", f"/api/v1/namespaces/{name}", body=[
        {"op": "remove", "path": "/metadata/labels/pod-security.kubernetes.io~1enforce"}],
        headers={"Content-Type": "application/json-patch+json"})
    if status != 403:
        wrong.append(f"relabelling their namespace answered {status}")
    labels = lab.core.read_namespace(name).metadata.labels
    assert {k: v for k, v in labels.items() if k.startswith("pod-security")} == classroom.POD_SECURITY_LABELS
    print(f"{name}: {len(ESCAPES) + 1} escapes refused by the API server (Pod Security baseline, the guard policy, "
          f"the LimitRange, RBAC); a privileged Deployment makes no pod")
    assert not wrong, "\n".join(wrong)


def _lesson_manifests(lesson: str) -> list[dict[str, Any]]:
    """Every Kubernetes object a lesson's notebook writes as a YAML string literal in its code cells."""
    notebook = next((Path(__file__).parents[2] / "notebooks").glob(f"{lesson}_*.ipynb"))
    found = []
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        try:
            python = [line for line in source.splitlines() if not line.lstrip().startswith(("!", "%"))]
            tree = ast.parse("\n".join(python))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "apiVersion:" in node.value:
                found += [d for d in yaml.safe_load_all(node.value) if isinstance(d, dict) and d.get("kind")]
    return found


@pytest.mark.parametrize("lesson", [r.number for r in lessons.records() if r.rights.refused is None])
def test_the_lessons_a_student_runs_pass_pod_security_and_the_guard(lab: lk.Lab, room: dict[str, Any],
                                                                    lesson: str) -> None:
    """Each manifest of the lesson's notebook, and the pod its controller would make, created as the student with a
    server-side dry run: admission (Pod Security, the guard, the LimitRange) judges it, nothing is stored."""
    name, student = list(room["students"].items())[-1]
    docs = _lesson_manifests(lesson)
    assert docs, f"no manifest found in notebook {lesson}"
    refused = []
    for doc in docs:
        template = ((doc.get("spec") or {}).get("template") or {}).get("spec")
        for obj in [doc, *([_pod(template, f"{doc['metadata']['name']}-pod")] if template else [])]:
            kind = obj["kind"].lower() + "s"
            group = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
            status, answer = _call(student, "POST", f"{group}/namespaces/{name}/{kind}?dryRun=All", body=obj)
            if status != 201:
                refused.append(f"{obj['kind']}/{obj['metadata']['name']}: {status} {answer.get('message')}")
    print(f"lesson {lesson}: {len(docs)} manifests admitted for {name}")
    assert not refused, "\n".join(refused)
