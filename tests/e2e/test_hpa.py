"""e2e for lesson 04: the real HPA controller scales on CPU (metrics-server) and on a custom metric (Prometheus ->
prometheus-adapter), the workload model's invariants hold, the adapter's APIService is Available.

Every wait has a deadline and says what it last saw; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

import labkit as lk
from labkit import addons, lessons
from labkit.course import exercises
from labkit.kube.objects import get
from labkit.kube.rollouts import scale
from labkit.lessons import hpa as lesson

pytestmark = pytest.mark.e2e

LOOP = "while sleep 0.01; do wget -q -O- http://{svc}; done"


@pytest.fixture(scope="module", autouse=True)
def hpa_addons(lab: lk.Lab) -> dict[str, str]:
    return addons.require("workload-model", "prometheus", "prometheus-adapter")


@pytest.fixture(autouse=True)
def private_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(exercises, "progress_file", lambda: tmp_path / "progress.json")
    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)


def app(name: str, *, replicas: int = 1, cpu: dict[str, str] | None = None, **container: Any) -> list[dict]:
    resources = {"resources": {"requests": {"cpu": cpu["request"]}, "limits": {"cpu": cpu["limit"]}}} if cpu else {}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                      {"name": name, "image": "nginx:1.27", **resources, **container}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}},
    ]


def client(name: str, service: str, *, sleep: str = "0.01") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [
        {"name": "client", "image": "busybox:1.36",
         "command": ["/bin/sh", "-c", f"while sleep {sleep}; do wget -q -O- http://{service}; done"]}]}}


def hpa(name: str, metric: dict, *, max_replicas: int = 10) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": 1, "maxReplicas": max_replicas, "metrics": [metric],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}


CPU_50 = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}
RPS_5 = {"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"},
                                  "target": {"type": "AverageValue", "averageValue": "5"}}}


def model(namespace: str) -> dict[str, dict[str, Any]]:
    """The workload model's view of the namespace: pod -> its load."""
    with urllib.request.urlopen(addons.url("workload-model"), timeout=5) as resp:  # noqa: S310 - loopback
        return {p["pod"]: p for p in json.loads(resp.read())["pods"] if p["namespace"] == namespace}


def requests_total(namespace: str) -> dict[str, float]:
    url = addons.url("workload-model").replace("/state", "/metrics")
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    pattern = re.compile(rf'^http_requests_total{{namespace="{namespace}",pod="([^"]+)",service="[^"]+"}} (\S+)$', re.M)
    return {pod: float(v) for pod, v in pattern.findall(text)}


def until(what: str, probe: Callable[[], Any], done: Callable[[Any], bool], *, timeout: float = 60) -> Any:
    """Poll ``probe`` until ``done(value)``; fail with the last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not done(value):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s; last seen: {value}")
        time.sleep(0.5)
        value = probe()
    return value


def test_load_only_to_ready_pods_usage_falls_as_replicas_rise_and_stops_with_the_client(lab, namespace):
    never_ready = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unready", "labels": {"app": "api"}},
                   "spec": {"containers": [{"name": "api", "image": "nginx:1.27", "readinessProbe": {
                       "httpGet": {"path": "/healthz", "port": 80}, "periodSeconds": 1}}]}}
    lk.apply(lab, [*app("api", cpu={"request": "200m", "limit": "500m"}), never_ready,
                   client("caller", "api")], namespace=namespace)
    one = until("load reaches the one ready pod", lambda: model(namespace), lambda m: len(m) == 1)
    assert "unready" not in one
    (pod, load), = one.items()
    assert 400 < load["cpu_m"] <= 501
    first = requests_total(namespace)[pod]
    scale(lab, "api", namespace=namespace, replicas=4)
    four = until("load shared by four ready pods", lambda: model(namespace), lambda m: len(m) == 4)
    assert "unready" not in four
    assert all(p["cpu_m"] < load["cpu_m"] / 2 for p in four.values())
    assert requests_total(namespace)[pod] > first   # the counter only grows
    usage = lab.dynamic.resources.get(api_version="kwok.x-k8s.io/v1alpha1", kind="ResourceUsage")
    assert {u.metadata.name for u in usage.get(namespace=namespace).items} == set(four)
    lk.delete(lab, client("caller", "api"), namespace=namespace)
    until("load stops with the client", lambda: model(namespace), lambda m: not m)
    until("ResourceUsages removed once idle", lambda: usage.get(namespace=namespace).items, lambda items: not items)


def test_cpu_hpa_scales_up_under_load_and_down_after_it(lab, namespace):
    lk.apply(lab, [*app("php-apache", cpu={"request": "200m", "limit": "500m"}), hpa("php-apache", CPU_50),
                   client("load-generator", "php-apache")], namespace=namespace)
    up = lk.wait_for(lab, "Deployment", "php-apache", namespace=namespace, timeout=180,
                     condition=lambda o: (o or {}).get("spec", {}).get("replicas", 0) >= 4)
    assert up["spec"]["replicas"] <= 10
    lk.delete(lab, client("load-generator", "php-apache"), namespace=namespace)
    lk.wait_for(lab, "Deployment", "php-apache", namespace=namespace, timeout=120,
                condition="jsonpath={.spec.replicas}=1")
    # The controller records its events asynchronously: the scale-down's may land just after the replicas change.
    rescales = until("both rescale events recorded",
                     lambda: (lambda e: e[e.reason == "SuccessfulRescale"].message)(
                         lesson.hpa_events(lab, namespace, "php-apache")),
                     lambda m: m.str.contains("below target").any(), timeout=30)
    assert rescales.str.contains("cpu resource utilization").any()


def test_custom_metric_hpa_scales_up_under_load_and_down_after_it(lab, namespace):
    lk.apply(lab, [*app("web", cpu={"request": "100m", "limit": "1"}), hpa("web", RPS_5),
                   client("web-client", "web")], namespace=namespace)
    lk.wait_for(lab, "Deployment", "web", namespace=namespace, timeout=120,
                condition=lambda o: (o or {}).get("spec", {}).get("replicas", 0) >= 3)
    values = lesson.custom_metric(lab, namespace, "http_requests_per_second")
    assert (values.value > 0).any()
    lk.delete(lab, client("web-client", "web"), namespace=namespace)
    lk.wait_for(lab, "Deployment", "web", namespace=namespace, timeout=120, condition="jsonpath={.spec.replicas}=1")


def test_adapter_apiservice_is_available_and_metrics_k8s_io_stays_metrics_servers(lab):
    apiservice = lk.wait_for(lab, "APIService", "v1beta1.custom.metrics.k8s.io", condition="condition=Available",
                             timeout=60)
    assert apiservice["spec"]["service"] == {"name": "prometheus-adapter", "namespace": "kube-system",
                                             "port": apiservice["spec"]["service"]["port"]}
    assert apiservice["spec"]["insecureSkipTLSVerify"] is True
    resource_metrics = get(lab, "APIService", "v1beta1.metrics.k8s.io")
    assert resource_metrics["spec"]["service"]["name"] == "metrics-server"
    svc = lab.core.read_namespaced_service("prometheus-adapter", "kube-system")
    assert (svc.spec.type, svc.spec.external_name) == ("ExternalName", "127.0.0.1")


def _check_until_passes(lab: lk.Lab, exercise_id: str, namespace: str, *, timeout: float = 90) -> None:
    until(f"{exercise_id} passes once solved", lambda: lk.check(lab, exercise_id, namespace=namespace),
          lambda r: r.passed, timeout=timeout)


def test_rps_hpa_exercise(lab, namespace):
    lk.apply(lab, [*app("shop", cpu={"request": "100m", "limit": "1"}), client("shop-client", "shop", sleep="0.05")],
             namespace=namespace)
    assert not lk.check(lab, "04-rps-hpa", namespace=namespace).passed   # no HPA yet
    too_loose = hpa("shop", {"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"},
                                                      "target": {"type": "AverageValue", "averageValue": "20"}}})
    lk.apply(lab, too_loose, namespace=namespace)
    wrong = lk.check(lab, "04-rps-hpa", namespace=namespace)
    assert not wrong.passed and any("5 or less" in p for p in wrong.problems) and wrong.hint
    lessons.catalogue().get("04-rps-hpa").solve(exercises.Attempt(lab, namespace))
    _check_until_passes(lab, "04-rps-hpa", namespace)


def test_missing_request_exercise(lab, namespace):
    lk.apply(lab, [*app("billing"), hpa("billing", CPU_50, max_replicas=5)], namespace=namespace)
    stuck = lk.wait_for(lab, "HorizontalPodAutoscaler", "billing", namespace=namespace, api_version="autoscaling/v2",
                        condition=lambda o: "missing request for cpu" in str((o or {}).get("status")), timeout=60)
    active = next(c for c in stuck["status"]["conditions"] if c["type"] == "ScalingActive")
    assert active["status"] == "False" and "failed to get cpu utilization: missing request for cpu" in active["message"]
    wrong = lk.check(lab, "04-missing-request", namespace=namespace)
    assert not wrong.passed and any("no CPU request" in p for p in wrong.problems)
    lessons.catalogue().get("04-missing-request").solve(exercises.Attempt(lab, namespace))
    _check_until_passes(lab, "04-missing-request", namespace)
    # The check reads the pods; the controller must agree at its next sync.
    lk.wait_for(lab, "HorizontalPodAutoscaler", "billing", namespace=namespace, api_version="autoscaling/v2",
                condition=lambda o: "missing request" not in str((o or {}).get("status")), timeout=60)
