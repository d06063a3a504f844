"""Classroom mode's pure logic: names, the objects and rights each student gets, kubeconfigs, refusals, progress."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit import lessons
from labkit.course import classroom
from labkit.course.exercises import Result
from labkit.errors import LabkitError
from labkit.kube.client import Lab
from labkit.lessons import records


def _admin(ca: str = "ca.crt") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "admin",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": ca}}],
            "contexts": [{"name": "admin", "context": {"cluster": "c", "user": "admin"}}],
            "users": [{"name": "admin", "user": {"client-certificate": "admin.crt"}}]}


def _lab(kubeconfig: Path | None) -> Lab:
    return Lab(api_client=None, kubeconfig=kubeconfig, backend="current", server="https://127.0.0.1:6443")  # type: ignore[arg-type]


def test_student_names_are_padded_so_they_sort_and_the_prefix_must_be_a_namespace_name() -> None:
    assert classroom.student_names(3) == ["student-01", "student-02", "student-03"]
    assert classroom.student_names(120, "cs101")[-1] == "cs101-120"
    assert classroom.student_names(120)[0] == "student-001"
    for bad in ("Student", "a_b", "-x", "x" * 41):
        with pytest.raises(LabkitError, match="namespace name"):
            classroom.student_names(2, bad)
    with pytest.raises(LabkitError, match="at least 1"):
        classroom.student_names(0)


def test_every_lesson_says_whether_a_student_can_run_it() -> None:
    """Each lesson's record says what it needs beyond its namespace, and why a student is refused (or not)."""
    assert all(r.rights.cluster_scoped for r in records())
    assert {r.namespace for r in records() if r.rights.refused is None} == {"lesson-00", "lesson-01", "lesson-03"}


def test_a_refusal_names_the_lesson_the_student_the_cluster_scoped_right_and_what_to_ask() -> None:
    rights = {r.namespace: r.rights for r in records()}
    assert classroom.refusal("lesson-01", "student-07", rights["lesson-01"]) is None
    why = classroom.refusal("lesson-05", "student-07", rights["lesson-05"])
    assert why is not None
    assert "lesson-05" in why and "student-07" in why and "NodePools" in why and "cluster-scoped" in why
    assert "nobody has said" in (classroom.refusal("lesson-99", "student-07", None) or "")
    assert "instructor" in classroom._ASK


def test_a_students_role_stays_in_their_namespace_and_cannot_escalate() -> None:
    objs = {o["kind"]: o for o in classroom.student_objects("student-02")}
    assert set(objs) == {"Namespace", "ResourceQuota", "LimitRange", "ServiceAccount", "Role", "RoleBinding"}
    assert all(o["metadata"].get("namespace") == "student-02" for k, o in objs.items() if k != "Namespace")
    assert objs["Namespace"]["metadata"]["labels"][classroom.EXTENSION] == "student-02"
    resources = {r for rule in objs["Role"]["rules"] for r in rule["resources"]}
    verbs = {v for rule in objs["Role"]["rules"] for v in rule["verbs"]}
    groups = {g for rule in objs["Role"]["rules"] for g in rule["apiGroups"]}
    assert not resources & {"secrets", "roles", "rolebindings", "nodes", "pods/exec",
                            "serviceaccounts/token", "resourcequotas/status"}
    assert "*" not in resources | verbs | groups
    assert not verbs & {"escalate", "bind", "impersonate"}
    assert "rbac.authorization.k8s.io" not in groups
    for rule in objs["Role"]["rules"]:  # quota and limits: read only; their own Namespace object: get
        if {"resourcequotas", "limitranges"} & set(rule["resources"]):
            assert rule["verbs"] == classroom.READ
        if "namespaces" in rule["resources"]:
            assert rule["resources"] == ["namespaces"] and rule["verbs"] == ["get"]
    assert objs["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "student", "namespace": "student-02"}]
    assert objs["ResourceQuota"]["spec"]["hard"]["pods"] == classroom.DEFAULT_QUOTA["pods"]
    assert classroom.student_objects("s-01", quota={"pods": "3"})[1]["spec"]["hard"] == {"pods": "3"}


def test_the_only_cluster_scoped_grant_is_reading_nodes_and_storage_classes() -> None:
    objects = {o["kind"]: o for o in classroom.cluster_objects(["student-01", "student-02"], "student")}
    role, binding = objects["ClusterRole"], objects["ClusterRoleBinding"]
    assert set(objects) == {"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                            "ValidatingAdmissionPolicyBinding"}  # the guard grants nothing
    assert {(tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"]} == {
        (("nodes",), ("get", "list", "watch")), (("storageclasses",), ("get", "list", "watch"))}
    assert [s["namespace"] for s in binding["subjects"]] == ["student-01", "student-02"]
    assert binding["metadata"]["name"] == "labkit-student-cluster-read-student"


def test_a_student_kubeconfig_is_self_contained_and_marks_classroom_mode(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    cluster = classroom.cluster_entry(_admin(), base=tmp_path, server="https://class.example:6443")
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"-----BEGIN CERTIFICATE-----\n"
    assert "certificate-authority" not in cluster and cluster["server"] == "https://class.example:6443"
    config = classroom.student_kubeconfig(cluster, student="student-04", token="T", expires="2026-01-01T00:00:00")
    assert config["users"][0]["user"] == {"token": "T"}
    assert config["contexts"][0]["context"]["namespace"] == "student-04"
    assert classroom.student_of(yaml.safe_load(yaml.safe_dump(config))) == "student-04"
    assert classroom.student_of(_admin()) is None
    assert classroom.student_of({}) is None
    with pytest.raises(LabkitError, match="no context"):
        classroom.cluster_entry({**_admin(), "current-context": "gone"})


def test_outside_classroom_mode_lesson_namespace_is_the_lab_one_and_nothing_is_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = tmp_path / "admin.kubeconfig"
    admin.write_text(yaml.safe_dump(_admin()))
    called = []
    monkeypatch.setattr(lessons, "reset_namespace", lambda lab, name, timeout: called.append(name) or name)
    assert lessons.lesson_namespace(_lab(admin), "lesson-05") == "lesson-05" and called == ["lesson-05"]
    assert classroom.report(_lab(admin), Result("01-recover", passed=True)) is False
    assert classroom.student(_lab(None)) is None


def test_a_student_is_refused_a_cluster_scoped_lesson_before_anything_is_deleted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "student-03.kubeconfig"
    path.write_text(yaml.safe_dump(classroom.student_kubeconfig({"server": "https://x"}, student="student-03",
                                                                token="T", expires="?")))
    monkeypatch.setattr(classroom, "reset_namespace", lambda *a, **k: pytest.fail("must not reset"))
    with pytest.raises(classroom.ClassroomRefused, match="lesson-12 cannot run for student-03") as exc:
        lessons.lesson_namespace(_lab(path), "lesson-12")
    assert "cordon" in str(exc.value) and "instructor" in str(exc.value)
    reset: list[str] = []
    monkeypatch.setattr(classroom, "reset_namespace", lambda lab, ns, timeout: reset.append(ns))
    assert lessons.lesson_namespace(_lab(path), "lesson-01") == "student-03" and reset == ["student-03"]
    monkeypatch.setenv("LABKIT_CLASSROOM", "0")
    assert classroom.student(_lab(path)) is None


def test_progress_counts_attempts_keeps_the_first_pass_and_flags_test_runs() -> None:
    entries = classroom.merge_result({}, Result("01-recover", passed=False), now="t1")
    entries = classroom.merge_result(entries, Result("01-recover", passed=True), now="t2")
    entries = classroom.merge_result(entries, Result("01-recover", passed=False), now="t3")
    assert entries["01-recover"] == {"attempts": 3, "passed": True, "passed_at": "t2", "last_check": "t3"}
    solved = classroom.merge_result({}, Result("03-startup-probe", passed=True, solved_by_test=True), now="t4")
    assert solved["03-startup-probe"]["solved_by_test"] is True


def test_status_rows_count_only_exercises_a_student_can_run_and_not_test_runs() -> None:
    reports = {"student-02": None,
               "student-01": {"01-recover": {"passed": True, "attempts": 2, "last_check": "t2"},
                              "03-startup-probe": {"passed": True, "attempts": 1, "last_check": "t9",
                                                   "solved_by_test": True},
                              "05-render-fits": {"passed": True, "attempts": 1, "last_check": "t1"}}}
    rows = classroom.progress_rows(reports, records())
    assert [r["student"] for r in rows] == ["student-01", "student-02"]
    # a shared cluster runs the lessons whose rights a student has: 00, 01 and 03 (05 needs node pools)
    runnable = len([ex for r in records() if r.rights.refused is None for ex in r.exercises])
    assert runnable == sum(len(lessons.lesson(n).LESSON.exercises) for n in ("00", "01", "03"))
    first = rows[0]
    assert first["passed"] == 1 and first["of"] == runnable and first["attempts"] == 4 and first["last_check"] == "t9"
    assert first["test_runs"] == ["03-startup-probe"]
    assert rows[1] == {"student": "student-02", "passed": 0, "of": runnable, "attempts": 0, "last_check": "-",
                       "exercises_passed": "-", "test_runs": []}


def test_the_classroom_verbs_parse_and_create_needs_a_class_size(capsys: pytest.CaptureFixture[str]) -> None:
    from labkit import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["classroom", "create"])
    assert exc.value.code == 2 and "--students" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["classroom", "--help"])
    out = capsys.readouterr().out
    assert all(verb in out for verb in ("create", "delete", "status"))


class _FakeCore:
    """The two ConfigMap calls report() makes, with one conflicting writer in between."""

    def __init__(self) -> None:
        self.stored: Any = None
        self.conflicts = 1

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        if self.stored is None:
            raise ApiException(status=404, reason="Not Found")
        return self.stored

    def create_namespaced_config_map(self, namespace: str, body: Any) -> None:
        from kubernetes.client.exceptions import ApiException

        if self.conflicts:  # another notebook of the same student created it first
            self.conflicts -= 1
            body.data = {"01-recover": '{"attempts": 1, "passed": false}'}
            body.metadata.resource_version = "1"
            self.stored = body
            raise ApiException(status=409, reason="AlreadyExists")
        self.stored = body

    def replace_namespaced_config_map(self, name: str, namespace: str, body: Any) -> None:
        assert body.metadata.resource_version == self.stored.metadata.resource_version
        self.stored = body


def test_report_retries_a_conflict_and_keeps_the_other_writers_attempt(tmp_path: Path) -> None:
    path = tmp_path / "student-05.kubeconfig"
    path.write_text(yaml.safe_dump(classroom.student_kubeconfig({"server": "https://x"}, student="student-05",
                                                                token="T", expires="?")))
    core = _FakeCore()

    class FakeLab(Lab):
        @property
        def core(self) -> Any:  # type: ignore[override]
            return core

    lab = FakeLab(api_client=None, kubeconfig=path, backend="current", server="https://x")  # type: ignore[arg-type]
    assert classroom.report(lab, Result("01-recover", passed=True)) is True
    import json

    entry = json.loads(core.stored.data["01-recover"])
    assert entry["attempts"] == 2 and entry["passed"] is True
    assert core.stored.metadata.labels[classroom.EXTENSION] == "student-05"


def test_a_student_namespace_enforces_pod_security_baseline_and_warns_at_restricted() -> None:
    ns = next(o for o in classroom.student_objects("student-02") if o["kind"] == "Namespace")
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
    # The students' Role may read their Namespace object and nothing more: they cannot lift these labels.
    rule = next(r for r in classroom.STUDENT_RULES if "namespaces" in r["resources"])
    assert rule["verbs"] == ["get"]
    limits = next(o for o in classroom.student_objects("student-02") if o["kind"] == "LimitRange")
    assert limits["spec"]["limits"][0]["max"] == {"cpu": "2", "memory": "2Gi"}


def test_the_guard_policy_binds_to_every_student_namespace_and_denies() -> None:
    policy, binding = classroom.guard_objects()
    assert policy["kind"] == "ValidatingAdmissionPolicy" and policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": classroom.EXTENSION, "operator": "Exists"}]
    assert {d["kind"] for d in classroom.cluster_objects(["s-01"], "s")} >= {"ValidatingAdmissionPolicy",
                                                                             "ValidatingAdmissionPolicyBinding"}
    assert len(policy["spec"]["validations"]) == len(classroom.GUARD_VALIDATIONS) == 3
