"""The kubelet's cAdvisor endpoint of the simulated nodes (labkit.sim.cadvisor): cAdvisor's names and labels, the
same CPU and memory as KWOK's resource endpoint, network from the model's requests, CFS periods from its load."""

from __future__ import annotations

import re

from labkit.sim import cadvisor

RESOURCE = """# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="web",namespace="shop",pod="web-1"} 12.5
container_cpu_usage_seconds_total{container="sidecar",namespace="shop",pod="web-1"} 0.5
container_memory_working_set_bytes{container="web",namespace="shop",pod="web-1"} 6.7108864e+07
container_memory_working_set_bytes{container="sidecar",namespace="shop",pod="web-1"} 1.6777216e+07
pod_cpu_usage_seconds_total{namespace="shop",pod="web-1"} 13
node_cpu_usage_seconds_total 40
"""

POD = {
    "metadata": {"namespace": "shop", "name": "web-1", "uid": "1f0c-aa"},
    "spec": {"nodeName": "kwok-node-0", "containers": [
        {"name": "web", "image": "nginx:1.27", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}},
        {"name": "sidecar", "image": "busybox:1.36"}]},
    "status": {"phase": "Running", "qosClass": "Burstable", "containerStatuses": [
        {"name": "web", "image": "docker.io/library/nginx:1.27", "containerID": "containerd://abc123",
         "state": {"running": {"startedAt": "2026-12-06T10:00:00Z"}}},
        {"name": "sidecar", "image": "docker.io/library/busybox:1.36", "containerID": "containerd://def456",
         "state": {"running": {"startedAt": "2026-12-06T10:00:01Z"}}}]},
}


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for line in text.splitlines():
        if m := re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line):
            out[(m[1], frozenset(re.findall(r'(\w+)="([^"]*)"', m[2])))] = float(m[3])
    return out


def _one(samples: dict, metric: str, **labels: str) -> float:
    found = [v for (name, ls), v in samples.items() if name == metric and set(labels.items()) <= ls]
    assert len(found) == 1, (metric, labels, found)
    return found[0]


def test_cadvisor_series_carry_kwoks_usage_with_cadvisors_labels() -> None:
    cfs = cadvisor.CfsCounters()
    cfs.advance([POD], {("shop", "web-1"): 0.9}, dt=60.0)  # a minute at 90 % of its 500m limit
    text = cadvisor.render([POD], cadvisor.parse_resource_metrics(RESOURCE), {("shop", "web-1"): 300.0},
                           cfs.by_container, now=1_700_000_000.0)
    samples = _samples(text)
    web = {"container": "web", "pod": "web-1", "namespace": "shop"}
    assert _one(samples, "container_cpu_usage_seconds_total", **web, cpu="total", image="docker.io/library/nginx:1.27",
                id="/kubepods/burstable/pod1f0c-aa/abc123", name="abc123") == 12.5
    assert _one(samples, "container_memory_working_set_bytes", **web) == 64 * 2**20
    assert _one(samples, "container_memory_rss", **web) == 64 * 2**20
    assert _one(samples, "container_spec_memory_limit_bytes", **web) == 128 * 2**20
    # The pod's own cgroup: the containers' sums, and its network from 300 requests.
    pod = {"container": "", "pod": "web-1", "image": "", "id": "/kubepods/burstable/pod1f0c-aa"}
    assert _one(samples, "container_cpu_usage_seconds_total", **pod) == 13.0
    assert _one(samples, "container_network_receive_bytes_total", **pod, interface="eth0") == 300 * 110
    assert _one(samples, "container_network_transmit_bytes_total", **pod, interface="eth0") == 300 * 853
    # CFS: 10 periods a second for the limited container only, 0.9**4 of them throttled.
    assert _one(samples, "container_cpu_cfs_periods_total", **web) == 600
    assert _one(samples, "container_cpu_cfs_throttled_periods_total", **web) == int(600 * 0.9**4)
    assert not [k for k in samples if k[0].startswith("container_cpu_cfs") and ("container", "sidecar") in k[1]]
    assert _one(samples, "container_start_time_seconds", **web) == 1_796_551_200.0
    assert "# TYPE container_cpu_usage_seconds_total counter" in text
    assert not [k for k in samples if k[0].startswith("node_") or k[0].startswith("pod_")]


def test_a_container_kwok_does_not_report_has_no_cgroup_yet() -> None:
    waiting = {**POD, "status": {**POD["status"], "containerStatuses": [
        {"name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}}]}}
    assert cadvisor.render([waiting], cadvisor.parse_resource_metrics(RESOURCE), {}, {}).strip() == ""


def test_throttling_grows_steeply_near_the_limit() -> None:
    shares = [cadvisor.throttled_share(b) for b in (0.0, 0.5, 0.9, 1.0, 1.5)]
    assert shares[0] == 0 and shares[1] < 0.1 < shares[2] < shares[3] == shares[4] == 1.0
