"""The workload model's pure logic: client loops from pod commands, ready endpoints, the closed-loop queue, CPU per
pod as replicas change, counters, ResourceUsage objects."""

from __future__ import annotations

import pytest

from labkit.sim import workload as wm

WALKTHROUGH = "while sleep 0.01; do wget -q -O- http://php-apache; done"


def pod(name: str, *, command: list[str] | None = None, cpu: tuple[str, str] | None = ("200m", "500m"),
        namespace: str = "demo", annotations: dict[str, str] | None = None) -> dict:
    resources = {"requests": {"cpu": cpu[0]}, "limits": {"cpu": cpu[1]}} if cpu else {}
    container = {"name": "app", "image": "x", "resources": resources, **({"command": command} if command else {})}
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "annotations": annotations or {}},
            "spec": {"containers": [container]}, "status": {"phase": "Running"}}


def test_the_walkthrough_load_generator_is_a_client_of_php_apache() -> None:
    client = wm.parse_client(pod("load-generator", command=["/bin/sh", "-c", WALKTHROUGH]))
    assert client == wm.Client("demo", "load-generator", "demo", "php-apache", think_s=0.01, container="app")


def test_a_client_loop_prints_what_its_service_answers(tmp_path, monkeypatch) -> None:
    from labkit.cluster.stages import load_catalog
    from labkit.sim import pod_logs

    monkeypatch.setattr(pod_logs, "log_root", lambda: tmp_path)
    client = wm.parse_client(pod("load-generator", command=["/bin/sh", "-c", WALKTHROUGH]))
    server = {"metadata": {"namespace": "demo", "name": "php-apache-1"},
              "spec": {"containers": [{"name": "php-apache", "image": "registry.k8s.io/hpa-example"}]}}
    load = wm.PodLoad("demo", "php-apache-1", "php-apache", rps=40.0, latency_s=0.02, inflight=0.8, cpu_m=200,
                      memory=0)
    answers = wm.client_answers([client], [load], {("demo", "php-apache"): ["php-apache-1"]}, [server],
                                load_catalog())
    assert [(a.pod, a.rps, a.body) for a in answers] == [("load-generator", 40.0, "OK!")]
    logs = pod_logs.PodLogs(tmp_path)
    logs.runs[("demo", "load-generator", "app")] = pod_logs.Run("demo", "load-generator", "u", "app", 0, "c", 0.0)
    pod_logs.link_container_log(tmp_path, "demo", "load-generator", "u", "app", 0, "c")
    logs.client_output(answers, now=1_796_515_200.0, dt=0.5)
    lines = [pod_logs.parse_cri(x) for x in logs.runs[("demo", "load-generator", "app")].path.read_text().splitlines()]
    assert [(stream, msg) for _, stream, msg in lines] == [("stdout", "OK!" * 20)]  # no newline after OK!
    gone = wm.client_answers([client], [], {("demo", "php-apache"): []}, [], load_catalog())
    assert gone[0].body is None


@pytest.mark.parametrize(("url", "namespace", "service"), [
    ("http://web", "demo", "web"), ("http://web.shop", "shop", "web"), ("http://web.shop.svc:8080/x", "shop", "web"),
    ("http://web.shop.svc.cluster.local/", "shop", "web"),
])
def test_service_names_resolve_as_cluster_dns_does(url: str, namespace: str, service: str) -> None:
    client = wm.parse_client(pod("c", command=["sh", "-c", f"while true; do curl -s {url}; sleep 1; done"]))
    assert client is not None and (client.service_namespace, client.service, client.think_s) == (namespace, service, 1)


def test_a_pod_without_a_request_loop_is_no_client() -> None:
    assert wm.parse_client(pod("nginx")) is None
    assert wm.parse_client(pod("once", command=["wget", "http://web"])) is None  # one request, no loop


def test_only_ready_endpoints_get_traffic() -> None:
    slices = [{"endpoints": [
        {"targetRef": {"kind": "Pod", "name": "a"}, "conditions": {"ready": True}},
        {"targetRef": {"kind": "Pod", "name": "b"}, "conditions": {"ready": False}},
        {"targetRef": {"kind": "Pod", "name": "c"}, "conditions": {}},
    ]}, {"endpoints": None}]
    assert wm.ready_endpoints(slices) == ["a"]


def test_closed_loop_with_one_client_never_queues() -> None:
    throughput, response, queue = wm.closed_loop(1, 0.01, 0.09, 1)
    assert response == pytest.approx(0.09) and throughput == pytest.approx(10.0)
    assert wm.closed_loop(0, 0.01, 0.09, 1) == (0.0, 0.0, 0.0)


def test_more_clients_queue_and_utilization_stays_below_one() -> None:
    throughput, response, _ = wm.closed_loop(20, 0.01, 0.09, 1)
    assert response > 0.09 * 10
    assert throughput * 0.09 <= 1.0 + 1e-9   # a pod cannot serve faster than its CPU allows


def _loads(replicas: int, clients: int = 1, ready: int | None = None) -> list[wm.PodLoad]:
    servers = {("demo", f"p{i}"): wm.server_from_pod(pod(f"p{i}")) for i in range(replicas)}
    callers = [wm.Client("demo", f"c{i}", "demo", "php-apache", 0.01) for i in range(clients)]
    ready_names = [f"p{i}" for i in range(replicas if ready is None else ready)]
    return wm.pod_loads(callers, servers, {("demo", "php-apache"): ready_names})


def test_walkthrough_numbers_one_generator_saturates_one_pod_and_five_share_it() -> None:
    one = _loads(1)
    assert len(one) == 1 and 400 < one[0].cpu_m <= 500      # ~225% of the 200m request, under the 500m limit
    five = _loads(5)
    assert all(80 < p.cpu_m < 100 for p in five)             # ~45% each: the HPA's 50% target holds


def test_usage_per_pod_falls_as_replicas_rise() -> None:
    per_pod = [_loads(n, clients=3)[0].cpu_m for n in (1, 2, 4, 8)]
    assert per_pod == sorted(per_pod, reverse=True) and per_pod[0] > per_pod[-1]


def test_cpu_never_exceeds_the_limit() -> None:
    assert all(p.cpu_m <= 500 + wm.IDLE_CPU_M for p in _loads(1, clients=50))


def test_pods_that_are_not_ready_get_nothing() -> None:
    loads = _loads(3, ready=1)
    assert [p.pod for p in loads] == ["p0"]
    assert _loads(3, ready=0) == []


def test_no_client_means_no_load() -> None:
    assert _loads(3, clients=0) == []


def test_cost_comes_from_the_annotation() -> None:
    cheap = wm.server_from_pod(pod("p", annotations={wm.COST_ANNOTATION: "10m"}))
    assert cheap.cost_m == 10 and wm.server_from_pod(pod("q")).cost_m == wm.DEFAULT_CPU_PER_REQUEST_M
    no_limit = wm.server_from_pod(pod("r", cpu=None))
    assert no_limit.capacity_m == wm.UNLIMITED_CPU_M


def test_counters_are_monotonic_and_forget_deleted_pods() -> None:
    counters = wm.Counters()
    seen = []
    for replicas in (1, 3, 3, 1):
        counters.advance(_loads(replicas), 1.0, alive=[("demo", "p0")])
        seen.append(counters.series[("demo", "p0")].requests)
    assert seen == sorted(seen) and seen[-1] > seen[0]
    s = counters.series[("demo", "p0")]
    assert s.buckets == sorted(s.buckets) and s.buckets[-1] <= s.requests
    counters.advance([], 1.0, alive=[])
    assert counters.series == {}


def test_metrics_render_in_prometheus_text_format() -> None:
    counters = wm.Counters()
    counters.advance(_loads(1), 2.0)
    text = wm.render_metrics(counters)
    assert '# TYPE http_requests_total counter' in text
    assert 'http_requests_total{namespace="demo",pod="p0",service="php-apache"} 20.000' in text
    assert 'http_request_duration_seconds_bucket{namespace="demo",pod="p0",service="php-apache",le="+Inf"} 20.000' \
        in text


def test_resource_usage_is_owned_by_its_pod() -> None:
    load = _loads(1)[0]
    ru = wm.resource_usage(load, wm.server_from_pod(pod("p0")))
    assert ru["kind"] == "ResourceUsage" and ru["metadata"]["name"] == "p0"
    assert ru["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Pod", "name": "p0", "uid": "uid-p0"}
    assert ru["spec"]["usages"][0] == {"containers": ["app"], "usage": {
        "cpu": {"value": f"{round(load.cpu_m)}m"}, "memory": {"value": f"{round(load.memory / 2**20)}Mi"}}}


@pytest.mark.parametrize(("text", "value"), [("200m", 200), ("1", 1000), ("0.5", 500), (None, None)])
def test_cpu_quantities(text: str | None, value: float | None) -> None:
    assert wm.cpu_millicores(text) == value


def test_memory_quantities() -> None:
    assert wm.memory_bytes("64Mi") == 64 * 2**20 and wm.memory_bytes("1G") == 1e9 and wm.memory_bytes(None) is None
