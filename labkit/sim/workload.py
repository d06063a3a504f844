"""The workload model: what the simulated pods are doing, one source of truth for every process that asks.

On the embedded cluster no container runs, so something must decide how busy a pod is. Here traffic is declared
the way Kubernetes users declare it: a **client pod** loops requests against a **Service**, as the load generator
of the Kubernetes HPA walkthrough does::

    kubectl run load-generator --image=busybox:1.28 --restart=Never -- \\
        /bin/sh -c "while sleep 0.01; do wget -q -O- http://php-apache; done"

The model reads that command (a URL ``http://SERVICE[.NAMESPACE][:PORT]`` and the loop's ``sleep``), finds the
Service's READY endpoints in its EndpointSlices (as kube-proxy does: a pod that is not Ready gets nothing) and
shares the load evenly between them. On kind the same manifests produce the same load for real (the busybox loop
runs, ``hpa-example`` burns CPU per request, the real kubelet reports it); there the model finds no KWOK
ResourceUsage API and writes nothing, and its request metrics are the model's estimate, since nginx exports none.

Cost model (documented in the lesson notebook 04_hpa):

- each request costs the serving container ``cpu-per-request`` millicore-seconds of CPU, taken from the pod
  annotation ``workload.labkit.io/cpu-per-request`` (default :data:`DEFAULT_CPU_PER_REQUEST_M`; read it as "one
  request per second costs this many millicores");
- a container serves at most as fast as its CPU limit allows (no limit: :data:`UNLIMITED_CPU_M`), so one
  request takes ``service_s = cpu-per-request / limit`` seconds;
- each ``while sleep T; do wget ...; done`` loop is one closed-loop client: it waits for its answer, then thinks
  ``T`` seconds. Throughput and response time follow from exact mean-value analysis (MVA) of that closed network
  (clients -> kube-proxy -> n identical pods), so more replicas mean shorter queues and less CPU per pod, and a
  saturated pod never uses more than its limit;
- CPU usage of a pod = idle CPU + its requests per second x cpu-per-request; memory = idle memory + the requests
  queued in it x :data:`MEMORY_PER_INFLIGHT`. Idle values come from KWOK's own annotations
  (``kwok.x-k8s.io/usage-cpu``/``-memory``), else 1m and 16Mi as ``labkit/data/kwok-metrics.yaml`` says.

The usage reaches metrics-server through KWOK's own mechanism: one ``ResourceUsage`` object per busy pod (same name
and namespace as the pod, owned by it so the garbage collector removes it with the pod), written only when the
value changes, never a patch to the pod (that would wake every pod watcher). The same numbers are exported in
Prometheus format (``http_requests_total``, ``http_request_duration_seconds``, labels namespace/pod/service), all
pods on one page (``/metrics``, the ``workload-model`` job of the lab's Prometheus), and pod by pod as each pod's own
``/metrics`` would say them (``/pods/NAMESPACE/POD/metrics``: no namespace/pod/service labels, which Prometheus adds
from service discovery). Nothing answers on a simulated pod's IP, so that per-pod route is the lab's stand-in for pod
networking: the operated Prometheus (lesson 07, :mod:`labkit.sim.config_reloader`) relabels each pod target's
address to it. Every Running pod answers there (zero requests while idle), as an instrumented app would.

Run as ``python -m labkit.sim.workload --kubeconfig K --port P --state DIR`` (the ``workload-model`` add-on);
binds 127.0.0.1.
Later lessons extend :class:`PodLoad` (what one pod is doing) and :func:`render_metrics`; logs and traces read the
same :class:`Snapshot`.
Calls: a serving pod that calls other Services (an env URL ``http://SERVICE`` or its ``workload.labkit.io/calls``
annotation: :mod:`labkit.sim.calls`) passes each request on to them, down the graph (:func:`downstream_loads`): the
called pods count, log and spend CPU on them too, and each pod's response time includes its calls' and its Service's
latency fault (:func:`response_times`). The extra time does not slow the clients' loops down (a simplification: the
closed-loop throughput is computed from the serving pods' own time).
Logs (lesson 09): each tick, :mod:`labkit.sim.pod_logs` writes one line per request these counters count, into the
files KWOK serves to ``kubectl logs``, a forwarded request with the caller's request id.
Traces (lesson 10): :mod:`labkit.sim.traces` samples each tick's requests and sends their spans to Jaeger, with the
same call graph and times.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..cluster.stages import Catalog, load_catalog
from ..cluster.topology import METRICS_PATH as RESOURCE_METRICS_PATH
from ..kube.quantity import optional_quantity
from . import cadvisor
from .cadvisor import CfsCounters
from .calls import MAX_DEPTH, Key, calls_of, latency_faults
from .declared import KWOK_USAGE_CPU, KWOK_USAGE_MEMORY, declared, limit
from .loopback_http import JSON, OK, PROMETHEUS_TEXT, Answer, LoopbackServer
from .pod_logs import ClientAnswer, PodLogs
from .responder import default_body
from .traces import Tracer

log = logging.getLogger("labkit.sim.workload")

COST_ANNOTATION = "workload.labkit.io/cpu-per-request"
# One request/s costs 45 millicores: one walkthrough load generator then drives php-apache (limit 500m) to
# ~450m, 225% of its 200m request, and the HPA settles at 5 replicas of ~45% each, as in the docs' walkthrough.
DEFAULT_CPU_PER_REQUEST_M = 45.0
# A container without a CPU limit may use up to this much (about one small node).
UNLIMITED_CPU_M = 2000.0
IDLE_CPU_M = 1.0
IDLE_MEMORY = 16 * 2**20
MEMORY_PER_INFLIGHT = 4 * 2**20
MANAGED_BY = "labkit-workload-model"
# Prometheus' default histogram buckets (client_golang's DefBuckets).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TICK_S = 1.0

_URL = re.compile(r"https?://([a-z0-9]([-a-z0-9.]*[a-z0-9])?)(:\d+)?(/\S*)?", re.IGNORECASE)
_SLEEP = re.compile(r"\bsleep\s+([0-9]*\.?[0-9]+)")


# --- pure logic: parsing, quantities, queueing ------------------------------------------------------------------

def cpu_millicores(quantity: str | int | float | None) -> float | None:
    """``"200m"`` -> 200.0, ``"1"`` -> 1000.0, ``"0.5"`` -> 500.0; None when absent."""
    cores = optional_quantity(quantity)
    return None if cores is None else cores * 1000.0


def memory_bytes(quantity: str | int | None) -> float | None:
    """``"64Mi"`` -> 67108864.0; None when absent."""
    return optional_quantity(quantity)


@dataclass(frozen=True)
class Client:
    """One client pod's request loop: which Service it calls and how long it sleeps between requests."""

    namespace: str
    pod: str
    service_namespace: str
    service: str
    think_s: float
    loops: int = 1
    container: str = ""  # the container whose loop it is (its log gets what the loop's wget prints)


def parse_client(pod: Mapping[str, Any]) -> Client | None:
    """The request loop a pod's command declares (``while sleep T; do wget ... http://svc; done``), else None."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    namespace = meta.get("namespace", "default")
    for container in spec.get("containers", []):
        loop = request_loop([*(container.get("command") or []), *(container.get("args") or [])])
        if loop is None:
            continue
        host, think_s = loop
        parts = host.split(".")
        # http://svc, http://svc.ns, http://svc.ns.svc, http://svc.ns.svc.cluster.local
        service_ns = parts[1] if len(parts) >= 2 and parts[1] != "svc" else namespace
        return Client(namespace, meta.get("name", ""), service_ns, parts[0], think_s=think_s,
                      container=container.get("name", ""))
    return None


def request_loop(words: list[str]) -> tuple[str, float] | None:
    """``(host, think seconds)`` of a command that requests a URL over and over (``while sleep T; do wget ...
    http://svc; done``), else None. Such a loop is this model's client; the container runtime runs every other
    command for real (:mod:`labkit.sim.runtime`), a finite ``for`` loop over ``wget`` included."""
    text = " ".join(words)
    if not re.search(r"\b(wget|curl)\b", text) or not re.search(r"\bwhile\b", text):
        return None
    url = _URL.search(text)
    if not url:
        return None
    sleep = _SLEEP.search(text)
    return url.group(1).lower(), float(sleep.group(1)) if sleep else 0.0


def client_answers(clients: Iterable[Client], loads: Iterable[PodLoad], endpoints: Mapping[Key, list[str]],
                   running: Iterable[Mapping[str, Any]], catalog: Catalog,
                   cluster_ips: Mapping[Key, str] | None = None) -> list[ClientAnswer]:
    """What each client loop's ``wget -q -O-`` prints, and how often: its share of its Service's requests and the
    body the Service's pods answer with (:func:`labkit.sim.responder.default_body`), or wget's error without one."""
    by_key = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in running}
    rps: dict[Key, float] = {}
    for ld in loads:
        rps[(ld.namespace, ld.service)] = rps.get((ld.namespace, ld.service), 0.0) + ld.rps
    clients = list(clients)
    out = []
    for c in clients:
        key = (c.service_namespace, c.service)
        sharing = sum(1 for o in clients if (o.service_namespace, o.service) == key)
        ready = endpoints.get(key) or []
        server = by_key.get((key[0], ready[0])) if ready else None
        body = default_body(server, catalog) if server else None
        out.append(ClientAnswer(c.namespace, c.pod, c.container, rps.get(key, 0.0) / max(1, sharing), body,
                                (cluster_ips or {}).get(key, c.service)))
    return out


def closed_loop(clients: int, think_s: float, service_s: float, servers: int) -> tuple[float, float, float]:
    """Exact mean-value analysis of ``clients`` closed loops over ``servers`` identical pods (even split).

    Returns (throughput in requests/s for all pods together, response time in s, mean requests queued per pod).
    """
    if clients <= 0 or servers <= 0 or service_s <= 0:
        return 0.0, 0.0, 0.0
    queue = 0.0
    throughput = response = 0.0
    for population in range(1, clients + 1):
        response = service_s * (1.0 + queue)
        throughput = population / (think_s + response)
        queue = throughput / servers * response
    return throughput, response, queue


@dataclass(frozen=True)
class Container:
    name: str
    cpu_request_m: float | None
    cpu_limit_m: float | None


@dataclass(frozen=True)
class Server:
    """A pod behind a Service: its containers' resources and what a request costs it."""

    namespace: str
    pod: str
    uid: str
    containers: tuple[Container, ...]
    cost_m: float = DEFAULT_CPU_PER_REQUEST_M
    idle_cpu_m: float = IDLE_CPU_M
    idle_memory: float = IDLE_MEMORY

    @property
    def capacity_m(self) -> float:
        """The CPU the pod may use: its containers' limits together (the first container serves)."""
        first = self.containers[0] if self.containers else None
        return (first.cpu_limit_m if first and first.cpu_limit_m else UNLIMITED_CPU_M)

    @property
    def service_s(self) -> float:
        return self.cost_m / self.capacity_m


def server_from_pod(pod: Mapping[str, Any]) -> Server:
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    annotations = meta.get("annotations") or {}
    containers = tuple(
        Container(c.get("name", ""), cpu_millicores((c.get("resources") or {}).get("requests", {}).get("cpu")),
                  cpu_millicores((c.get("resources") or {}).get("limits", {}).get("cpu")))
        for c in spec.get("containers", []))
    return Server(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""), containers,
                  cost_m=cpu_millicores(annotations.get(COST_ANNOTATION)) or DEFAULT_CPU_PER_REQUEST_M,
                  idle_cpu_m=cpu_millicores(annotations.get(KWOK_USAGE_CPU)) or IDLE_CPU_M,
                  idle_memory=memory_bytes(annotations.get(KWOK_USAGE_MEMORY)) or IDLE_MEMORY)


def declared_load(pod: Mapping[str, Any], server: Server) -> PodLoad | None:
    """The usage a pod's program declares (``stress --cpus 2``, ``--vm-bytes 150M``), as a load with no requests:
    CPU capped by its limit (the CFS quota), memory by its limit (beyond it the kernel kills it); None if none."""
    first = (pod.get("spec", {}).get("containers") or [{}])[0]
    wants = declared(first)
    if wants.cpu is None and wants.memory is None:
        return None
    memory_limit = limit(first, "memory")
    cpu_m = min(wants.cpu * 1000.0, server.capacity_m) if wants.cpu else server.idle_cpu_m
    memory = min(wants.memory, memory_limit or wants.memory) if wants.memory else server.idle_memory
    return PodLoad(server.namespace, server.pod, "", 0.0, 0.0, 0.0, cpu_m, memory)


def ready_endpoints(slices: Iterable[Mapping[str, Any]]) -> list[str]:
    """Pod names of the READY endpoints in a Service's EndpointSlices (what kube-proxy sends traffic to)."""
    names = []
    for s in slices:
        for ep in s.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            if ref.get("kind") == "Pod" and (ep.get("conditions") or {}).get("ready") is True:
                names.append(ref["name"])
    return sorted(set(names))


@dataclass
class PodLoad:
    """What one serving pod is doing now."""

    namespace: str
    pod: str
    service: str
    rps: float
    latency_s: float  # the mean response time its requests see: own_s, its Service's latency fault, its calls' time
    inflight: float
    cpu_m: float
    memory: float
    own_s: float = 0.0  # its own share: queueing and service time (what a span of it lasts without its children)

    def __post_init__(self) -> None:
        self.own_s = self.own_s or self.latency_s


def pod_loads(clients: Iterable[Client], servers: Mapping[tuple[str, str], Server],
              endpoints: Mapping[tuple[str, str], list[str]]) -> list[PodLoad]:
    """Each ready endpoint's load, Service by Service: clients share it evenly (kube-proxy's random choice).

    ``servers``: (namespace, pod) -> Server; ``endpoints``: (namespace, service) -> ready pod names.
    """
    by_service: dict[tuple[str, str], list[Client]] = {}
    for c in clients:
        by_service.setdefault((c.service_namespace, c.service), []).append(c)
    loads: dict[tuple[str, str], PodLoad] = {}
    for (ns, svc), callers in sorted(by_service.items()):
        pods = [servers[(ns, p)] for p in endpoints.get((ns, svc), []) if (ns, p) in servers]
        if not pods:
            continue  # no ready endpoint: the client's requests fail at once, no pod works
        loops = sum(c.loops for c in callers)
        think = sum(c.think_s * c.loops for c in callers) / loops
        service_s = sum(p.service_s for p in pods) / len(pods)
        throughput, response, queue = closed_loop(loops, think, service_s, len(pods))
        rps = throughput / len(pods)
        for p in pods:
            key = (ns, p.pod)
            prev = loads.get(key)
            cpu = min(p.capacity_m, rps * p.cost_m)
            if prev:  # a pod behind two Services: the loads add up, still capped by its limit
                prev.rps += rps
                prev.inflight += queue
                prev.cpu_m = min(p.capacity_m, prev.cpu_m - p.idle_cpu_m + cpu) + p.idle_cpu_m
                prev.memory += queue * MEMORY_PER_INFLIGHT
                continue
            loads[key] = PodLoad(ns, p.pod, svc, rps, response, queue, p.idle_cpu_m + cpu,
                                 p.idle_memory + queue * MEMORY_PER_INFLIGHT)
    return [loads[k] for k in sorted(loads)]


def downstream_loads(loads: Iterable[PodLoad], callers: Mapping[Key, list[Key]], servers: Mapping[Key, Server],
                     endpoints: Mapping[Key, list[str]]) -> list[PodLoad]:
    """The load serving pods pass on along the call graph (:mod:`labkit.sim.calls`): each request a pod serves calls
    every Service in ``callers[pod]`` once, shared evenly by that Service's ready pods (no queueing), and so on down;
    a Service already on the path (a cycle) and calls past :data:`~labkit.sim.calls.MAX_DEPTH` are cut, as in the
    traces. Returns the called pods' loads, one per pod."""
    out: dict[Key, PodLoad] = {}
    frontier = [((ld.namespace, ld.pod), ((ld.namespace, ld.service),), ld.rps) for ld in loads]
    for _ in range(MAX_DEPTH):
        rates: dict[tuple[Key, tuple[Key, ...]], float] = {}
        for pod, path, rps in frontier:
            for svc in callers.get(pod, []):
                if svc not in path:
                    rates[(svc, path)] = rates.get((svc, path), 0.0) + rps
        frontier = []
        for ((ns, svc), path), rate in sorted(rates.items()):
            pods = [servers[(ns, p)] for p in endpoints.get((ns, svc), []) if (ns, p) in servers]
            for p in pods:
                rps = rate / len(pods)
                frontier.append(((ns, p.pod), (*path, (ns, svc)), rps))
                cpu = min(p.capacity_m, rps * p.cost_m)
                if prev := out.get((ns, p.pod)):
                    prev.rps += rps
                    prev.cpu_m = min(p.capacity_m, prev.cpu_m - p.idle_cpu_m + cpu) + p.idle_cpu_m
                    continue
                out[(ns, p.pod)] = PodLoad(ns, p.pod, svc, rps, p.service_s, rps * p.service_s, p.idle_cpu_m + cpu,
                                           p.idle_memory + rps * p.service_s * MEMORY_PER_INFLIGHT)
        if not frontier:
            break
    return [out[k] for k in sorted(out)]


def response_times(roots: Iterable[PodLoad], own: Mapping[Key, float], callers: Mapping[Key, list[Key]],
                   endpoints: Mapping[Key, list[str]], faults: Mapping[Key, float]) -> dict[Key, float]:
    """Each pod's mean response time over the requests that reach it, from the client-facing loads ``roots`` down
    the call graph: its own time (``own``), plus its Service's latency fault, plus, one after the other, the mean
    response time of each Service it calls on that request's path (a Service without a ready pod answers at once,
    refused; a Service already on the path and calls past :data:`~labkit.sim.calls.MAX_DEPTH` are cut, as in
    :func:`downstream_loads` and the traces). What its latency histogram, its log lines' ``duration_ms`` and its
    spans' mean duration all say."""
    def time_on(pod: Key, service: Key, path: tuple[Key, ...]) -> float:
        total = own.get(pod, 0.0) + faults.get(service, 0.0)
        for call in callers.get(pod, []) if len(path) <= MAX_DEPTH else []:
            ready = [(call[0], p) for p in endpoints.get(call, [])]
            if call not in path and ready:
                total += sum(time_on(p, call, (*path, call)) for p in ready) / len(ready)
        return total

    weighted: dict[Key, list[float]] = {}

    def visit(pod: Key, service: Key, path: tuple[Key, ...], rate: float) -> None:
        acc = weighted.setdefault(pod, [0.0, 0.0])
        acc[0] += rate * time_on(pod, service, path)
        acc[1] += rate
        for call in callers.get(pod, []) if len(path) <= MAX_DEPTH else []:
            ready = [(call[0], p) for p in endpoints.get(call, [])]
            if call not in path and ready:
                for p in ready:
                    visit(p, call, (*path, call), rate / len(ready))

    for ld in roots:
        visit((ld.namespace, ld.pod), (ld.namespace, ld.service), ((ld.namespace, ld.service),), ld.rps)
    return {pod: total / rate for pod, (total, rate) in weighted.items() if rate > 0}


@dataclass
class Series:
    """One pod's request counter and latency histogram (monotonic while the model runs)."""

    service: str
    requests: float = 0.0
    duration_sum: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))


class Counters:
    """Per-pod ``http_requests_total`` and ``http_request_duration_seconds``, advanced tick by tick."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], Series] = {}

    def advance(self, loads: Iterable[PodLoad], dt: float, *, alive: Iterable[tuple[str, str]] = ()) -> None:
        """Add ``dt`` seconds of each load; forget pods not in ``alive`` (their series end, as a pod's would)."""
        keep = set(alive)
        for load in loads:
            key = (load.namespace, load.pod)
            keep.add(key)
            s = self.series.setdefault(key, Series(load.service))
            n = load.rps * dt
            s.requests += n
            s.duration_sum += n * load.latency_s
            # Response times of a queue are about exponential around their mean: spread the requests that way.
            for i, le in enumerate(BUCKETS):
                s.buckets[i] += n * (1.0 - math.exp(-le / load.latency_s)) if load.latency_s > 0 else n
        for key in [k for k in self.series if k not in keep]:
            del self.series[key]


def render_metrics(counters: Counters) -> str:
    """The Prometheus text format of every pod's counters (what each pod's /metrics would say)."""
    lines = ["# HELP http_requests_total Requests served by the pod.", "# TYPE http_requests_total counter"]
    for (ns, pod), s in sorted(counters.series.items()):
        lines.append(f'http_requests_total{{namespace="{ns}",pod="{pod}",service="{s.service}"}} {s.requests:.3f}')
    lines += ["# HELP http_request_duration_seconds Time to answer a request.",
              "# TYPE http_request_duration_seconds histogram"]
    for (ns, pod), s in sorted(counters.series.items()):
        labels = f'namespace="{ns}",pod="{pod}",service="{s.service}"'
        for le, count in zip(BUCKETS, s.buckets, strict=True):
            lines.append(f'http_request_duration_seconds_bucket{{{labels},le="{le}"}} {count:.3f}')
        lines.append(f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {s.requests:.3f}')
        lines.append(f"http_request_duration_seconds_sum{{{labels}}} {s.duration_sum:.6f}")
        lines.append(f"http_request_duration_seconds_count{{{labels}}} {s.requests:.3f}")
    return "\n".join(lines) + "\n"


def render_pod_metrics(counters: Counters, namespace: str, pod: str) -> str:
    """What the pod's own ``/metrics`` would say: its counter and histogram, without namespace/pod/service labels
    (a process does not know them; Prometheus attaches them from the target's discovery labels)."""
    s = counters.series.get((namespace, pod), Series(""))
    lines = ["# HELP http_requests_total Requests served by the pod.", "# TYPE http_requests_total counter",
             f"http_requests_total {s.requests:.3f}",
             "# HELP http_request_duration_seconds Time to answer a request.",
             "# TYPE http_request_duration_seconds histogram"]
    for le, count in zip(BUCKETS, s.buckets, strict=True):
        lines.append(f'http_request_duration_seconds_bucket{{le="{le}"}} {count:.3f}')
    lines += [f'http_request_duration_seconds_bucket{{le="+Inf"}} {s.requests:.3f}',
              f"http_request_duration_seconds_sum {s.duration_sum:.6f}",
              f"http_request_duration_seconds_count {s.requests:.3f}"]
    return "\n".join(lines) + "\n"


POD_ROUTE = re.compile(r"^/pods/([a-z0-9][-a-z0-9]*)/([a-z0-9][-a-z0-9.]*)/metrics$")


def busy_shares(loads: Iterable[PodLoad], servers: Mapping[Key, Server]) -> dict[Key, float]:
    """(namespace, pod) -> the share of its serving container's CPU limit its load uses (pods with a limit)."""
    out = {}
    for ld in loads:
        server = servers.get((ld.namespace, ld.pod))
        limit = server.containers[0].cpu_limit_m if server and server.containers else None
        if server is not None and limit:
            out[(ld.namespace, ld.pod)] = (ld.cpu_m - server.idle_cpu_m) / limit
    return out


def resource_usage(load: PodLoad, server: Server) -> dict[str, Any]:
    """KWOK's ResourceUsage for one busy pod (same name as the pod, owned by it)."""
    usage = {"cpu": {"value": f"{round(load.cpu_m)}m"}, "memory": {"value": f"{round(load.memory / 2**20)}Mi"}}
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ResourceUsage",
        "metadata": {"name": load.pod, "namespace": load.namespace,
                     "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": load.pod, "uid": server.uid}]},
        # The first container does the work; sidecars idle (an entry without containers is KWOK's default).
        "spec": {"usages": [{"containers": [server.containers[0].name], "usage": usage},
                            {"usage": {"cpu": {"value": f"{round(server.idle_cpu_m)}m"},
                                       "memory": {"value": f"{round(server.idle_memory / 2**20)}Mi"}}}]},
    }


@dataclass
class Snapshot:
    """The model's state at one tick: every busy pod's load (for /state, the lesson and the tests)."""

    at: float = 0.0
    clients: list[Client] = field(default_factory=list)
    loads: list[PodLoad] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps({"at": self.at, "clients": [c.__dict__ for c in self.clients],
                           "pods": [p.__dict__ for p in self.loads]}, indent=1)


# --- the process: read the cluster, write ResourceUsages, serve /metrics -----------------------------------------

class Model:
    """Every tick: list pods and EndpointSlices, compute loads, reconcile ResourceUsages, advance the counters."""

    def __init__(self, *, kubeconfig: str, port: int, traces_endpoint_file: str = "") -> None:
        from kubernetes import client

        from ..kube.client import api_client  # here: importing this module stays light

        self.api_client = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.discovery = client.DiscoveryV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        # KWOK's ResourceUsage API: absent on kind or a real cluster, where real kubelets report real usage.
        self.kwok_usage = self._has_resource_usage_api()
        # Container logs (lesson 09): written where KWOK serves them to `kubectl logs`; real kubelets do it elsewhere.
        self.pod_logs = PodLogs() if self.kwok_usage else None
        self.catalog = load_catalog()
        if self.pod_logs is not None:
            self.pod_logs.watch(self.core)
        self.counters = Counters()
        self.cfs = CfsCounters()  # the kubelet's cAdvisor endpoint (labkit.sim.cadvisor)
        self.on_node: dict[str, list[dict[str, Any]]] = {}  # node -> its Running pods
        self.snapshot = Snapshot()
        self.running: set[tuple[str, str]] = set()  # (namespace, pod) of every Running pod: each answers its route
        self.written: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = LoopbackServer(port, self.answer)
        # Spans of a sample of the requests routed here, once Jaeger runs (lesson 10, labkit.sim.traces).
        self.tracer = Tracer(traces_endpoint_file, list_services=self._services, list_endpoints=self._ready)

    def _has_resource_usage_api(self) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.list_cluster_custom_object("kwok.x-k8s.io", "v1alpha1", "resourceusages", limit=1)
        except ApiException as exc:
            if exc.status == 404:
                log.info("no KWOK ResourceUsage API here: real kubelets report usage; serving request metrics only")
                return False
            raise
        return True

    def tick(self, dt: float) -> None:
        raw = self.api_client.sanitize_for_serialization
        pods = [raw(p) for p in self.core.list_pod_for_all_namespaces().items]
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"
                   and not p["metadata"].get("deletionTimestamp")]
        clients = [c for c in map(parse_client, running) if c is not None]
        servers = {(p["metadata"]["namespace"], p["metadata"]["name"]): server_from_pod(p) for p in running}
        endpoints: dict[tuple[str, str], list[str]] = {}
        for ns, svc in {(c.service_namespace, c.service) for c in clients}:
            slices = self.discovery.list_namespaced_endpoint_slice(
                ns, label_selector=f"kubernetes.io/service-name={svc}").items
            endpoints[(ns, svc)] = ready_endpoints(raw(s) for s in slices)
        loads = pod_loads(clients, servers, endpoints)
        answers = (client_answers(clients, loads, endpoints, running, self.catalog, self._cluster_ips(
            [key for key, ready in endpoints.items() if not ready])) if self.pod_logs else [])
        loads = self._with_calls(loads, running, servers, endpoints, raw)
        with self.lock:
            self.counters.advance(loads, dt, alive=servers)
            self.cfs.advance(running, busy_shares(loads, servers), dt)
            self.snapshot = Snapshot(time.time(), clients, loads)
            self.running = set(servers)
            self.on_node = {}
            for p in running:
                self.on_node.setdefault(p["spec"].get("nodeName") or "", []).append(p)
        if self.kwok_usage:
            busy = {(ld.namespace, ld.pod) for ld in loads}
            declaring = [d for p in running if (key := (p["metadata"]["namespace"], p["metadata"]["name"])) not in busy
                         and (d := declared_load(p, servers[key])) is not None]
            self._reconcile(loads + declaring, servers)
        if self.pod_logs is not None:
            self._write_logs(pods, loads, dt)
            self.pod_logs.client_output(answers, time.time(), dt)
        self.tracer.tick(dt, clients=clients, running=running, servers=servers, loads=loads, endpoints=endpoints)

    def _with_calls(self, loads: list[PodLoad], running: list[dict[str, Any]], servers: Mapping[Key, Server],
                    endpoints: dict[Key, list[str]], raw: Any) -> list[PodLoad]:
        """``loads`` plus what serving pods pass on along the call graph (:mod:`labkit.sim.calls`), each with the
        response time its callers see (:func:`response_times`); adds the called Services' ready pods to
        ``endpoints`` (the traces follow the same)."""
        callers = {(p["metadata"]["namespace"], p["metadata"]["name"]): calls for p in running
                   if (calls := calls_of(p))}
        for ns, svc in {c for calls in callers.values() for c in calls} - set(endpoints):
            endpoints[(ns, svc)] = ready_endpoints(raw(s) for s in self.discovery.list_namespaced_endpoint_slice(
                ns, label_selector=f"kubernetes.io/service-name={svc}").items)
        merged = {(ld.namespace, ld.pod): replace(ld) for ld in loads}  # copies: ``loads`` stay the clients' share
        for ld in downstream_loads(loads, callers, servers, endpoints) if callers else []:
            if (key := (ld.namespace, ld.pod)) in merged:  # serves clients and callers: the loads add up
                merged[key].rps += ld.rps
                merged[key].cpu_m = min(servers[key].capacity_m, merged[key].cpu_m + ld.cpu_m
                                        - 2 * servers[key].idle_cpu_m) + servers[key].idle_cpu_m
            else:
                merged[key] = ld
        out = [merged[k] for k in sorted(merged)]
        faults = latency_faults(self._services())
        if callers or faults:
            times = response_times(loads, {(ld.namespace, ld.pod): ld.own_s for ld in out}, callers, endpoints,
                                   faults)
            for ld in out:
                ld.latency_s = times.get((ld.namespace, ld.pod), ld.latency_s)
        return out

    def _write_logs(self, pods: list[dict[str, Any]], loads: list[PodLoad], dt: float) -> None:
        """Each container's log as KWOK serves it to `kubectl logs` (:mod:`labkit.sim.pod_logs`)."""
        assert self.pod_logs is not None
        now = time.time()
        self.pod_logs.observe(pods, now)
        latency = {(ld.namespace, ld.pod): ld.latency_s for ld in loads}
        by_key = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
        with self.lock:  # /metrics reads the error counts
            served = {key: (s.service, s.requests, latency.get(key, 0.0)) for key, s in self.counters.series.items()}
            self.pod_logs.requests(served, by_key, now, dt)

    def _cluster_ips(self, keys: Iterable[Key]) -> dict[Key, str]:
        """The cluster IPs of these Services (what a client's wget connects to), where they exist."""
        ips = {}
        for ns, name in keys:
            try:
                ips[(ns, name)] = self.core.read_namespaced_service(name, ns).spec.cluster_ip
            except Exception:  # noqa: BLE001, S112 - no such Service: wget says the name does not resolve
                continue
        return ips

    def _services(self) -> list[dict[str, Any]]:
        raw = self.api_client.sanitize_for_serialization
        return [raw(s) for s in self.core.list_service_for_all_namespaces().items]

    def _ready(self, namespace: str, service: str) -> list[str]:
        slices = self.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}").items
        return ready_endpoints(self.api_client.sanitize_for_serialization(s) for s in slices)

    def _reconcile(self, loads: list[PodLoad], servers: Mapping[tuple[str, str], Server]) -> None:
        from kubernetes.client.exceptions import ApiException

        wanted = {(ld.namespace, ld.pod): resource_usage(ld, servers[(ld.namespace, ld.pod)]) for ld in loads}
        for key, body in wanted.items():
            if self.written.get(key, {}).get("spec") == body["spec"]:
                continue  # unchanged: no write, no watch event
            try:
                if key in self.written:
                    self.custom.patch_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", key[0], "resourceusages",
                                                               key[1], {"spec": body["spec"]})
                else:
                    self._create(body)
                self.written[key] = body
            except ApiException as exc:
                if exc.status == 404:
                    self.written.pop(key, None)  # deleted behind our back (the pod went): next tick creates it
                else:
                    log.warning("cannot write ResourceUsage %s/%s: %s", *key, exc.reason)
        for key in [k for k in self.written if k not in wanted]:
            # Idle again: KWOK falls back to the lab's ClusterResourceUsage (annotations or 1m / 16Mi).
            try:
                self.custom.delete_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", key[0], "resourceusages",
                                                            key[1])
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("cannot delete ResourceUsage %s/%s: %s", *key, exc.reason)
                    continue
            del self.written[key]

    def _cadvisor(self, node: str) -> Answer | None:
        """cAdvisor's metrics for ``node``: usage from KWOK's resource endpoint for it, read now."""
        try:
            status = self.core.read_node(node).status
        except Exception:  # noqa: BLE001 - no such node (gone since the scrape was planned): nothing to serve
            return None
        address = next((a.address for a in status.addresses or [] if a.type == "InternalIP"), "127.0.0.1")
        url = f"http://{address}:{status.daemon_endpoints.kubelet_endpoint.port}" \
              f"{RESOURCE_METRICS_PATH.format(name=node)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - KWOK on loopback
                resource = cadvisor.parse_resource_metrics(resp.read().decode())
        except OSError as exc:
            log.warning("cannot read %s: %s", url, exc)
            return None
        with self.lock:
            pods = list(self.on_node.get(node, []))
            requests = {key: s.requests for key, s in self.counters.series.items()}
            cfs = dict(self.cfs.by_container)
        return Answer(cadvisor.render(pods, resource, requests, cfs), PROMETHEUS_TEXT)

    def _create(self, body: dict[str, Any], plural: str = "resourceusages") -> None:
        from kubernetes.client.exceptions import ApiException

        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            self.custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", ns, plural, body)
        except ApiException as exc:
            if exc.status != 409:  # left over from an earlier run of the model: take it over
                raise
            self.custom.patch_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", ns, plural, name,
                                                       {"spec": body["spec"]})

    def run(self) -> None:
        self.httpd.start()
        last = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            try:
                self.tick(now - last)
            except Exception as exc:  # the API server restarting must not end the model; say so and retry
                log.warning("tick failed: %s", exc)
            last = now
            self.stopping.wait(max(0.0, TICK_S - (time.monotonic() - now)))
        self.httpd.shutdown()

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def answer(self, path: str) -> Answer | None:
        """``/metrics`` (all pods), ``/metrics/pods/NS/POD`` routes, ``/nodes/NODE/metrics/cadvisor`` (the kubelet's
        cAdvisor endpoint, :mod:`labkit.sim.cadvisor`), ``/state`` and ``/healthz``."""
        if (node := cadvisor.ROUTE.match(path)) and self.kwok_usage:
            return self._cadvisor(node[1])
        with self.lock:
            if path == "/metrics":
                errors = self.pod_logs.render_error_metrics() if self.pod_logs is not None else ""
                return Answer(render_metrics(self.counters) + errors, PROMETHEUS_TEXT)
            if path == "/state":
                return Answer(self.snapshot.as_json(), JSON)
            if path == "/healthz":
                return OK
            if (route := POD_ROUTE.match(path)) and (route[1], route[2]) in self.running:
                return Answer(render_pod_metrics(self.counters, route[1], route[2]), PROMETHEUS_TEXT)
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, required=True)
    # The add-on's folder: unused by the model, but it names the process as this lab's (labkit down finds it).
    parser.add_argument("--state", default="")
    parser.add_argument("--traces-endpoint-file", default="", help="Jaeger's OTLP port file (labkit.sim.traces)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    model = Model(kubeconfig=args.kubeconfig, port=args.port, traces_endpoint_file=args.traces_endpoint_file)
    signal.signal(signal.SIGTERM, model.stop)
    signal.signal(signal.SIGINT, model.stop)
    log.info("workload model on http://127.0.0.1:%d (/metrics, /state)", args.port)
    model.run()


if __name__ == "__main__":
    main()
