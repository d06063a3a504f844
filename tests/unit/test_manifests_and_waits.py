"""Manifest parsing and wait conditions: the logic that needs no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import ManifestError
from labkit.kube.apply import load_manifests
from labkit.kube.wait import deployment_failed, parse_condition

TWO_DOCS = """
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
"""


def test_several_documents_and_files(tmp_path: Path) -> None:
    assert [d["metadata"]["name"] for d in load_manifests(TWO_DOCS)] == ["a", "b"]
    path = tmp_path / "cm.yaml"
    path.write_text(TWO_DOCS)
    assert len(load_manifests(path)) == 2
    assert len(load_manifests(str(path))) == 2


@pytest.mark.parametrize("text, message", [
    ("apiVersion: v1\nkind: Pod\nmetadata:\n\tname: x\n", "not valid YAML"),
    ("kind: Pod\nmetadata: {name: x}\n", "needs `apiVersion` and `kind`"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {}\n", "has no metadata.name"),
    ("missing-file.yaml", "no such manifest file"),
])
def test_bad_manifests_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        load_manifests(text)


DEP = {"status": {"readyReplicas": 3, "conditions": [
    {"type": "Available", "status": "True"},
    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}}


def test_condition_specs_like_kubectl_wait() -> None:
    assert parse_condition("condition=Available")(DEP)
    assert not parse_condition("condition=Available=False")(DEP)
    assert parse_condition("jsonpath={.status.readyReplicas}=3")(DEP)
    assert not parse_condition("jsonpath={.status.readyReplicas}=4")(DEP)
    assert parse_condition("jsonpath={.status.conditions[0].type}=Available")(DEP)
    assert parse_condition("delete")(None) and not parse_condition("delete")(DEP)
    assert not parse_condition("condition=Available")(None)
    with pytest.raises(ValueError, match="unknown wait condition"):
        parse_condition("ready")


def test_progress_deadline_is_a_failure_not_a_wait() -> None:
    stuck = {"status": {"conditions": [{"type": "Progressing", "status": "False",
                                        "reason": "ProgressDeadlineExceeded", "message": "web timed out"}]}}
    assert "ProgressDeadlineExceeded" in deployment_failed(stuck)
    assert deployment_failed(DEP) is None


class _Gone:
    """A dynamic-client resource whose object no longer exists: every GET answers 404."""

    namespaced = True

    def get(self, **_kw):
        from kubernetes.client.exceptions import ApiException

        raise ApiException(status=404, reason="Not Found")


class _StubLab:
    server = "https://127.0.0.1:0"

    class dynamic:  # noqa: N801 - mirrors Lab.dynamic
        class resources:  # noqa: N801
            @staticmethod
            def get(**_kw):
                return _Gone()

        @staticmethod
        def watch(*_a, **_kw):
            raise AssertionError("a delete wait on an object that is already gone must not watch")


def test_delete_wait_on_an_object_already_gone_returns_at_once() -> None:
    from labkit.kube.wait import wait_for

    assert wait_for(_StubLab(), "Pod", "gone", namespace="ns", condition="delete", timeout=5) is None


def test_a_condition_wait_on_a_missing_object_times_out_and_says_so() -> None:
    from labkit.errors import WaitTimeout
    from labkit.kube.wait import wait_for

    class _Lab(_StubLab):
        class dynamic(_StubLab.dynamic):  # noqa: N801
            @staticmethod
            def watch(*_a, **_kw):
                return iter(())  # the watch ends with nothing to report, as at a server-side timeout

    with pytest.raises(WaitTimeout, match="does not exist"):
        wait_for(_Lab(), "Pod", "gone", namespace="ns", condition="condition=Ready", timeout=0.5)


class _SetLab(_StubLab):
    """Two pods listed; the watch then deletes one of them."""

    class dynamic:  # noqa: N801
        class resources:  # noqa: N801
            @staticmethod
            def get(**_kw):
                class _Listing:
                    namespaced = True

                    @staticmethod
                    def get(**_kw):
                        class _R:
                            @staticmethod
                            def to_dict():
                                return {"metadata": {"resourceVersion": "7"},
                                        "items": [{"metadata": {"name": "web-0"}}, {"metadata": {"name": "web-1"}}]}
                        return _R()
                return _Listing()

        @staticmethod
        def watch(*_a, **kw):
            assert kw["resource_version"] == "7" and kw["label_selector"] == "app=web"
            return iter([{"type": "DELETED", "raw_object": {"metadata": {"name": "web-1"}}}])


def test_set_wait_lists_then_follows_the_watch_until_the_set_is_right() -> None:
    from labkit.kube.wait import wait_for_set

    left = wait_for_set(_SetLab(), "Pod", namespace="ns", label_selector="app=web", timeout=5,
                        condition=lambda pods: [p["metadata"]["name"] for p in pods] == ["web-0"])
    assert [p["metadata"]["name"] for p in left] == ["web-0"]


def test_set_wait_that_never_holds_times_out_naming_what_it_saw() -> None:
    from labkit.errors import WaitTimeout
    from labkit.kube.wait import wait_for_set

    with pytest.raises(WaitTimeout, match="last seen: web-0"):
        wait_for_set(_SetLab(), "Pod", namespace="ns", label_selector="app=web", timeout=0.5,
                     condition=lambda pods: not pods)
