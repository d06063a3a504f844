"""e2e: every exercise checker passes on a correct solution and fails, with its hint, on a wrong one."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

import labkit as lk
from labkit import lessons
from labkit.course import exercises
from labkit.kube import rollouts

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def private_progress(tmp_path, monkeypatch):
    # Checks record progress; keep the learner's own progress file out of tests.
    monkeypatch.setattr(exercises, "progress_file", lambda: tmp_path / "progress.json")
    # These tests solve exercises themselves, so checks run as a learner's do: once, never solving.
    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)


def deployment(name: str, image: str, replicas: int = 2, **container: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 2}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image, **container}]}}}}


def statefulset(image: str, partition: int = 0) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": "db"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
                     "template": {"metadata": {"labels": {"app": "db"}},
                                  "spec": {"containers": [{"name": "db", "image": image}]}}}}


def solve(lab: lk.Lab, exercise_id: str, namespace: str) -> None:
    """What the test run does in a notebook: apply the exercise's solution through the API."""
    lessons.catalogue().get(exercise_id).solve(exercises.Attempt(lab, namespace))


def test_rollout_v3(lab, namespace):
    lk.apply(lab, deployment("web", "nginx:1.26"), namespace=namespace)
    rollouts.rollout_status(lab, "web", namespace=namespace)
    wrong = lk.check(lab, "01-rollout-v3", namespace=namespace)
    assert not wrong.passed and wrong.hint
    assert any("nginx:1.26" in p for p in wrong.problems)
    assert any("maxUnavailable allows 2" in p for p in wrong.problems)
    solve(lab, "01-rollout-v3", namespace)
    rollouts.rollout_status(lab, "web", namespace=namespace)
    assert lk.check(lab, "01-rollout-v3", namespace=namespace).passed


def test_recover(lab, namespace):
    lk.apply(lab, deployment("api", "nginx:1.26"), namespace=namespace)
    rollouts.rollout_status(lab, "api", namespace=namespace)
    rollouts.set_image(lab, "api", namespace=namespace, image="nginx:does-not-exist")
    wrong = lk.check(lab, "01-recover", namespace=namespace)
    assert not wrong.passed and "does-not-exist" in wrong.problems[0] and "rollout undo" in wrong.hint
    solve(lab, "01-recover", namespace)
    rollouts.rollout_status(lab, "api", namespace=namespace, timeout=60)
    assert lk.check(lab, "01-recover", namespace=namespace).passed


def test_first_pod(lab, namespace):
    missing = lk.check(lab, "00-first-pod", namespace=namespace)
    assert missing.problems == ["there is no Pod `greeter` in this namespace"]
    lk.apply(lab, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "greeter"},
                   "spec": {"restartPolicy": "Never", "containers": [
                       {"name": "greeter", "image": "busybox:1.36", "args": ["echo", "hi"]}]}}, namespace=namespace)
    lk.wait_for(lab, "Pod", "greeter", namespace=namespace, timeout=60, condition="jsonpath={.status.phase}=Succeeded")
    wrong = lk.check(lab, "00-first-pod", namespace=namespace)
    assert wrong.problems == ["greeter's log (kubectl logs greeter) is 'hi', not 'hello from labkit'"]
    lab.core.delete_namespaced_pod("greeter", namespace, grace_period_seconds=0)
    lk.wait_for(lab, "Pod", "greeter", namespace=namespace, timeout=60, condition="delete")
    solve(lab, "00-first-pod", namespace)
    lk.wait_for(lab, "Pod", "greeter", namespace=namespace, timeout=60, condition="jsonpath={.status.phase}=Succeeded")
    assert lk.check(lab, "00-first-pod", namespace=namespace).passed


def test_expose(lab, namespace):
    lk.apply(lab, deployment("hello", "nginx:1.27", replicas=5), namespace=namespace)
    lk.apply(lab, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}, namespace=namespace)
    assert any("not the Deployment's pods" in p for p in lk.check(lab, "00-expose", namespace=namespace).problems)
    lab.core.delete_namespaced_service("hello", namespace)
    solve(lab, "00-expose", namespace)
    rollouts.rollout_status(lab, "hello", namespace=namespace, timeout=60)
    passed = None
    for _ in range(60):  # the EndpointSlice controller lists the 5 pods a moment after they are Ready
        if (passed := lk.check(lab, "00-expose", namespace=namespace)).passed:
            break
        time.sleep(1)
    assert passed is not None and passed.passed, passed


def test_fix_readiness(lab, namespace):
    lk.apply(lab, deployment("shop", "nginx:1.27", readinessProbe={"httpGet": {"path": "/healthz", "port": 80},
                                                                  "periodSeconds": 1}), namespace=namespace)
    lk.wait_for(lab, "Deployment", "shop", namespace=namespace, condition="jsonpath={.status.replicas}=2")
    wrong = lk.check(lab, "03-fix-readiness", namespace=namespace)
    assert not wrong.passed and any("404" in p for p in wrong.problems) and wrong.hint
    solve(lab, "03-fix-readiness", namespace)
    rollouts.rollout_status(lab, "shop", namespace=namespace, timeout=60)
    assert lk.check(lab, "03-fix-readiness", namespace=namespace).passed


def test_startup_probe(lab, namespace):
    lk.apply(lab, deployment("slow", "busybox:1.36", replicas=1,
                             command=["sh", "-c", "sleep 20; touch /tmp/started; sleep 3600"],
                             livenessProbe={"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 2,
                                            "failureThreshold": 2}), namespace=namespace)
    wrong = lk.check(lab, "03-startup-probe", namespace=namespace)
    assert not wrong.passed and any("no startupProbe" in p for p in wrong.problems)
    solve(lab, "03-startup-probe", namespace)
    rollouts.rollout_status(lab, "slow", namespace=namespace, timeout=60)
    assert lk.check(lab, "03-startup-probe", namespace=namespace).passed


def test_tcp_probe(lab, namespace):
    lk.apply(lab, deployment("gateway", "nginx:1.27", readinessProbe={"tcpSocket": {"port": 8080},
                                                                     "periodSeconds": 2}), namespace=namespace)
    lk.wait_for(lab, "Deployment", "gateway", namespace=namespace, condition="jsonpath={.status.replicas}=2")
    wrong = lk.check(lab, "03-tcp-probe", namespace=namespace)
    assert not wrong.passed and any("port 8080, where nothing listens" in p for p in wrong.problems) and wrong.hint
    solve(lab, "03-tcp-probe", namespace)
    rollouts.rollout_status(lab, "gateway", namespace=namespace, timeout=60)
    assert lk.check(lab, "03-tcp-probe", namespace=namespace).passed


def test_memory_hpa(lab, namespace):
    from labkit.lessons import hpa

    lk.apply(lab, hpa.SESSIONS_APP, namespace=namespace)
    rollouts.rollout_status(lab, "sessions", namespace=namespace, timeout=60)
    missing = lk.check(lab, "04-memory-hpa", namespace=namespace)
    assert missing.problems == ["there is no HorizontalPodAutoscaler `sessions` in this namespace"]
    wrong = yaml.safe_load(hpa.MEMORY_HPA_SOLUTION)
    wrong["spec"]["metrics"][0]["resource"]["name"] = "cpu"
    lk.apply(lab, wrong, namespace=namespace)
    assert "it has no Resource metric on memory" in lk.check(lab, "04-memory-hpa", namespace=namespace).problems
    solve(lab, "04-memory-hpa", namespace)
    lk.wait_for(lab, "HorizontalPodAutoscaler", "sessions", namespace=namespace, timeout=90,
                api_version="autoscaling/v2",
                condition="jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}=60")
    assert lk.check(lab, "04-memory-hpa", namespace=namespace).passed


def test_canary_then_finish(lab, namespace):
    lk.apply(lab, statefulset("nginx:1.25"), namespace=namespace)
    rollouts.rollout_status(lab, "db", namespace=namespace, kind="statefulset")
    lk.apply(lab, statefulset("nginx:1.27"), namespace=namespace)   # no partition: all pods roll, not a canary
    rollouts.rollout_status(lab, "db", namespace=namespace, kind="statefulset", timeout=60)
    wrong = lk.check(lab, "02-canary-one", namespace=namespace)
    assert not wrong.passed and any("partition is 0" in p for p in wrong.problems)
    lk.apply(lab, statefulset("nginx:1.25"), namespace=namespace)
    rollouts.rollout_status(lab, "db", namespace=namespace, kind="statefulset", timeout=60)
    solve(lab, "02-canary-one", namespace)
    rollouts.rollout_status(lab, "db", namespace=namespace, kind="statefulset", timeout=60)
    assert lk.check(lab, "02-canary-one", namespace=namespace).passed
    unfinished = lk.check(lab, "02-finish-rollout", namespace=namespace)
    assert not unfinished.passed and any("partition is still 2" in p for p in unfinished.problems)
    solve(lab, "02-finish-rollout", namespace)
    rollouts.rollout_status(lab, "db", namespace=namespace, kind="statefulset", timeout=60)
    assert lk.check(lab, "02-finish-rollout", namespace=namespace).passed
