"""The kubelet's cAdvisor endpoint for the simulated nodes, served by the workload model at
``/nodes/NODE/metrics/cadvisor``.

A real kubelet serves cAdvisor's container metrics at ``/metrics/cadvisor`` beside its resource metrics. KWOK serves
the resource metrics (``labkit/data/kwok-metrics.yaml``), but it keeps one metrics registry per node for every
``Metric`` object, so a second object that repeats cAdvisor's metric names with cAdvisor's labels fights the first;
this endpoint is therefore the workload model's, and Prometheus scrapes it as kube-prometheus scrapes the kubelet's
(``job="kubelet"``, ``metrics_path="/metrics/cadvisor"``, ``instance`` the node). Each number has one source:

- CPU seconds and working set: KWOK's ``/metrics/resource`` for the node, read at each scrape (what ``kubectl top``
  and metrics-server see), with cAdvisor's labels added from the pod: ``id`` the container's cgroup (cgroupfs
  driver), ``name`` its container ID, ``image`` its image; the pod's own cgroup (``container=""``) sums them;
- network (on the pod's cgroup, ``interface="eth0"``): the model's requests (``http_requests_total``) times what one
  request moves (:data:`REQUEST_BYTES` in, :data:`RESPONSE_BYTES` out);
- CFS periods: :data:`CFS_PERIODS_PER_S` a second for a container with a CPU limit while the model runs, throttled
  ones as :func:`throttled_share` of them (a model);
- modelled as none: page cache (rss = working set = usage) and disk I/O (the ``container_fs_*`` counters stay 0).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..kube.quantity import quantity

# What one request moves over the pod's eth0: wget's GET with its headers in, nginx's welcome page (615 bytes) with
# its headers out (the representative answer); a packet per 1448-byte segment plus the TCP handshake and close.
REQUEST_BYTES = 110
RESPONSE_BYTES = 853
SEGMENT_BYTES = 1448
CONNECTION_PACKETS = 3
# The kernel's CFS period is 100 ms: a container with a CPU limit gets its quota anew 10 times a second.
CFS_PERIODS_PER_S = 10
CFS_PERIOD_S = 1.0 / CFS_PERIODS_PER_S
DISK = "/dev/vda"
ROUTE = re.compile(r"^/nodes/([a-z0-9][-a-z0-9.]*)/metrics/cadvisor$")
_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Key = tuple[str, str]  # (namespace, pod)


def throttled_share(busy: float) -> float:
    """The share of CFS periods in which a container with a CPU limit uses up its quota, for the share of its limit
    it is busy: a model (a period is throttled when work is still queued as the quota runs out, which grows steeply
    near the limit): busy**4, so 6 % of periods at half load, 66 % at 90 %, all of them at the limit."""
    return min(1.0, max(0.0, busy)) ** 4


@dataclass
class Cfs:
    periods: float = 0.0
    throttled: float = 0.0


class CfsCounters:
    """``container_cpu_cfs_periods_total`` and ``..._throttled_periods_total`` per container, tick by tick."""

    def __init__(self) -> None:
        self.by_container: dict[tuple[str, str, str], Cfs] = {}

    def advance(self, running: Iterable[Mapping[str, Any]], busy: Mapping[Key, float], dt: float) -> None:
        """``busy``: (namespace, pod) -> the share of its first container's CPU limit its load uses."""
        alive = set()
        for pod in running:
            meta = pod["metadata"]
            for i, c in enumerate(pod["spec"].get("containers") or []):
                if not ((c.get("resources") or {}).get("limits") or {}).get("cpu"):
                    continue
                key = (meta["namespace"], meta["name"], c["name"])
                alive.add(key)
                cfs = self.by_container.setdefault(key, Cfs())
                cfs.periods += CFS_PERIODS_PER_S * dt
                if i == 0:  # the first container serves the pod's requests (labkit.sim.workload)
                    cfs.throttled += CFS_PERIODS_PER_S * dt * throttled_share(busy.get(key[:2], 0.0))
        for key in set(self.by_container) - alive:
            del self.by_container[key]


def parse_resource_metrics(text: str) -> dict[tuple[str, str, str, str], float]:
    """KWOK's ``/metrics/resource`` text: (metric, namespace, pod, container) -> value, for the container series."""
    out = {}
    for line in text.splitlines():
        if (m := _SAMPLE.match(line)) is None:
            continue
        labels = dict(_LABEL.findall(m[2]))
        if "container" in labels:
            out[(m[1], labels.get("namespace", ""), labels.get("pod", ""), labels["container"])] = float(m[3])
    return out


def pod_cgroup(pod: Mapping[str, Any]) -> str:
    """The pod's cgroup as cAdvisor names it under the cgroupfs driver (by QoS class)."""
    qos = (pod.get("status") or {}).get("qosClass") or "BestEffort"
    parent = "/kubepods" if qos == "Guaranteed" else f"/kubepods/{qos.lower()}"
    return f"{parent}/pod{pod['metadata']['uid']}"


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def render(pods: Iterable[Mapping[str, Any]], resource: Mapping[tuple[str, str, str, str], float],
           requests: Mapping[Key, float], cfs: Mapping[tuple[str, str, str], Cfs], *,
           now: float | None = None) -> str:
    """cAdvisor's text for the node's running ``pods``: ``resource`` from KWOK (:func:`parse_resource_metrics`),
    ``requests`` the model's request counters per pod, ``cfs`` its CFS counters per container."""
    now = time.time() if now is None else now
    families: dict[str, tuple[str, str, list[str]]] = {}

    def add(name: str, kind: str, help_text: str, labels: str, value: float) -> None:
        families.setdefault(name, (kind, help_text, []))[2].append(f"{name}{{{labels}}} {float(value)!r}")

    for pod in sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        meta, spec = pod["metadata"], pod.get("spec") or {}
        ns, name, cgroup = meta["namespace"], meta["name"], pod_cgroup(pod)
        statuses = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        total_cpu = total_memory = 0.0
        for c in spec.get("containers") or []:
            status = statuses.get(c["name"]) or {}
            started = ((status.get("state") or {}).get("running") or {}).get("startedAt")
            cpu = resource.get(("container_cpu_usage_seconds_total", ns, name, c["name"]))
            if not started or cpu is None:
                continue  # not running, or KWOK does not report it yet: cAdvisor has no cgroup for it either
            memory = resource.get(("container_memory_working_set_bytes", ns, name, c["name"]), 0.0)
            total_cpu, total_memory = total_cpu + cpu, total_memory + memory
            cid = str(status.get("containerID") or "").split("://")[-1]
            base = _labels(container=c["name"], id=f"{cgroup}/{cid}", image=str(status.get("image") or c["image"]),
                           name=cid, namespace=ns, pod=name)
            add("container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.",
                f'{base},cpu="total"', cpu)
            for metric, help_text in (("container_memory_working_set_bytes", "Current working set in bytes."),
                                      ("container_memory_rss", "Size of RSS in bytes."),
                                      ("container_memory_usage_bytes", "Current memory usage in bytes, including "
                                       "all memory regardless of when it was accessed")):
                add(metric, "gauge", help_text, base, memory)
            add("container_memory_cache", "gauge", "Number of bytes of page cache memory.", base, 0.0)
            limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
            if limit is not None:
                add("container_spec_memory_limit_bytes", "gauge", "Memory limit for the container.", base,
                    quantity(limit))
            if (counters := cfs.get((ns, name, c["name"]))) is not None:
                add("container_cpu_cfs_periods_total", "counter", "Number of elapsed enforcement period intervals.",
                    base, math.floor(counters.periods))
                add("container_cpu_cfs_throttled_periods_total", "counter", "Number of throttled period intervals.",
                    base, math.floor(counters.throttled))
                add("container_cpu_cfs_throttled_seconds_total", "counter",
                    "Total time duration the container has been throttled.", base, counters.throttled * CFS_PERIOD_S)
            disk = f'{base},device="{DISK}"'
            for metric, help_text in (("container_fs_reads_bytes_total", "Cumulative count of bytes read"),
                                      ("container_fs_writes_bytes_total", "Cumulative count of bytes written"),
                                      ("container_fs_reads_total", "Cumulative count of reads completed"),
                                      ("container_fs_writes_total", "Cumulative count of writes completed")):
                add(metric, "counter", help_text, disk, 0.0)
            add("container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds.",
                base, _epoch(started))
            add("container_last_seen", "gauge", "Last time a container was seen by the exporter", base, now)
        if not total_cpu and not total_memory:
            continue
        whole = _labels(container="", id=cgroup, image="", name="", namespace=ns, pod=name)
        add("container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.",
            f'{whole},cpu="total"', total_cpu)
        add("container_memory_working_set_bytes", "gauge", "Current working set in bytes.", whole, total_memory)
        served = requests.get((ns, name), 0.0)
        eth0 = f'{whole},interface="eth0"'
        for metric, help_text, value in (
                ("container_network_receive_bytes_total", "Cumulative count of bytes received",
                 served * REQUEST_BYTES),
                ("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted",
                 served * RESPONSE_BYTES),
                ("container_network_receive_packets_total", "Cumulative count of packets received",
                 served * (CONNECTION_PACKETS + math.ceil(REQUEST_BYTES / SEGMENT_BYTES))),
                ("container_network_transmit_packets_total", "Cumulative count of packets transmitted",
                 served * (CONNECTION_PACKETS + math.ceil(RESPONSE_BYTES / SEGMENT_BYTES))),
                ("container_network_receive_packets_dropped_total",
                 "Cumulative count of packets dropped while receiving", 0.0),
                ("container_network_transmit_packets_dropped_total",
                 "Cumulative count of packets dropped while transmitting", 0.0)):
            add(metric, "counter", help_text, eth0, math.floor(value))
    lines = []
    for metric, (kind, help_text, samples) in families.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}", *samples]
    return "\n".join(lines) + "\n"


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
