"""Traces of the workload model's requests (链路追踪): spans sent to Jaeger over OTLP/HTTP (JSON).

What is simulated: no container runs, so no application emits spans. The workload model (:mod:`labkit.sim.workload`)
already decides which pod serves each client's requests and how long a request takes; this module samples some of
those requests every tick and writes the spans an instrumented application would have sent, with the same call
graph and timing:

- a client pod's request loop (``wget http://frontend``) is a CLIENT span of the client (its ``app`` or ``run``
  label, else the pod name), whose child is a SERVER span of the Service's pod that serves it (a Ready endpoint,
  chosen at random as kube-proxy would);
- a serving pod that calls other Services (its annotation ``workload.labkit.io/calls: "checkout,catalog"`` or an
  env URL ``http://SERVICE``: :mod:`labkit.sim.calls`, the call graph the model's load and logs follow too) calls
  them one after the other for each request, each a child SERVER span in that Service's pod (cycles and depth past
  :data:`~labkit.sim.calls.MAX_DEPTH` are cut);
- a span's own time is drawn from an exponential distribution (the shape the model's latency histogram assumes)
  whose mean is the pod's own time in the model (:attr:`labkit.sim.workload.PodLoad.own_s`: queueing included for
  pods that serve clients directly); a parent's span lasts its own time plus its children's, as the model's
  response time does;
- a latency fault: the Service annotation ``workload.labkit.io/added-latency: "300ms"`` adds that much to every
  request a pod of that Service serves (``kubectl annotate service checkout workload.labkit.io/added-latency=300ms``);
- a called Service without a Ready endpoint: the caller's span ends at once with an error status, as a refused
  connection would.

Spans go to ``http://127.0.0.1:PORT/v1/traces`` (OTLP/HTTP with JSON bodies: no SDK needed), where PORT is read from
the file the Jaeger add-on writes when it starts; without that file no span is built. The called pods' requests are
the model's too: they count in their request metrics, CPU usage and logs.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calls import MAX_DEPTH, Key, calls_of, latency_faults

log = logging.getLogger("labkit.sim.traces")

# Share of client requests that become a trace, and at most this many traces per client per tick.
SAMPLE_RATIO = 0.1
MAX_TRACES_PER_CLIENT = 5
# One hop through kube-proxy and the pod network: between a CLIENT span and its SERVER span, each way.
NETWORK_S = 0.0004
SEND_TIMEOUT_S = 2.0
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
STATUS_ERROR = 2



def caller_name(pod: Mapping[str, Any]) -> str:
    """How a client pod names itself in traces: its ``app`` label, ``run`` (``kubectl run``), else its name."""
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    return str(labels.get("app") or labels.get("run") or meta.get("name", "client"))


@dataclass
class Topology:
    """What the spans follow: who serves each Service, whom each pod calls, how long each pod takes."""

    endpoints: dict[Key, list[str]] = field(default_factory=dict)  # Service -> Ready pod names
    calls: dict[Key, list[Key]] = field(default_factory=dict)  # pod -> Services it calls per request
    own_s: dict[Key, float] = field(default_factory=dict)  # pod -> mean own time per request
    added_s: dict[Key, float] = field(default_factory=dict)  # Service -> latency fault


def _ids(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits) or 1:0{bits // 4}x}"


def _attrs(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, value in values.items():
        kind = "intValue" if isinstance(value, int) and not isinstance(value, bool) else "stringValue"
        out.append({"key": key, "value": {kind: str(value) if kind == "stringValue" else value}})
    return out


@dataclass
class Span:
    """One span before encoding: the resource it belongs to (service, namespace, pod) and the span itself."""

    service: str
    namespace: str
    pod: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    start: float
    end: float
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def sample_trace(client_ns: str, client_pod: str, caller: str, service: Key, topology: Topology,
                 rng: random.Random, *, start: float) -> list[Span]:
    """The spans of one request from a client pod to ``service`` and everything it calls, starting at ``start``."""
    trace_id = _ids(rng, 128)
    spans: list[Span] = []
    root = Span(caller, client_ns, client_pod, trace_id, _ids(rng, 64), "", f"GET http://{service[1]}",
                SPAN_KIND_CLIENT, start, start, {"http.request.method": "GET", "server.address": service[1]})
    spans.append(root)
    root.end = _serve(service, root, topology, rng, spans, start + NETWORK_S, path=()) + NETWORK_S
    return spans


def _serve(service: Key, parent: Span, topology: Topology, rng: random.Random, spans: list[Span], start: float,
           *, path: tuple[Key, ...]) -> float:
    """Add the SERVER span of ``service`` answering ``parent`` (and its calls); return when it ended."""
    pods = topology.endpoints.get(service) or []
    if not pods:
        parent.error = f"no Ready endpoint for Service {service[0]}/{service[1]} (connection refused)"
        return start
    pod = rng.choice(pods)
    own = rng.expovariate(1.0 / topology.own_s[(service[0], pod)]) if topology.own_s.get((service[0], pod)) else 0.0
    span = Span(service[1], service[0], pod, parent.trace_id, _ids(rng, 64), parent.span_id, "GET /", SPAN_KIND_SERVER,
                start, start, {"http.request.method": "GET", "http.route": "/", "http.response.status_code": 200})
    spans.append(span)
    # Half the own work, the fault's delay, then each call in turn, then the rest of the work.
    t = start + own / 2 + topology.added_s.get(service, 0.0)
    for call in topology.calls.get((service[0], pod), []):
        if call in path or call == service or len(path) >= MAX_DEPTH:
            continue
        child = Span(service[1], service[0], pod, parent.trace_id, _ids(rng, 64), span.span_id,
                     f"GET http://{call[1]}", SPAN_KIND_CLIENT, t, t,
                     {"http.request.method": "GET", "server.address": call[1]})
        spans.append(child)
        child.end = _serve(call, child, topology, rng, spans, t + NETWORK_S, path=(*path, service)) + NETWORK_S
        t = child.end
        if child.error:
            span.error = child.error
            span.attributes["http.response.status_code"] = 502
            break
    span.end = t + own / 2
    return span.end


def otlp_json(spans: Iterable[Span]) -> dict[str, Any]:
    """The OTLP/HTTP JSON body (``ExportTraceServiceRequest``): one resource per (service, namespace, pod)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for s in spans:
        body: dict[str, Any] = {
            "traceId": s.trace_id, "spanId": s.span_id, "name": s.name, "kind": s.kind,
            "startTimeUnixNano": str(int(s.start * 1e9)), "endTimeUnixNano": str(int(s.end * 1e9)),
            "attributes": _attrs(s.attributes),
        }
        if s.parent_id:
            body["parentSpanId"] = s.parent_id
        if s.error:
            body["status"] = {"code": STATUS_ERROR, "message": s.error}
        groups.setdefault((s.service, s.namespace, s.pod), []).append(body)
    return {"resourceSpans": [
        {"resource": {"attributes": _attrs({"service.name": svc, "service.namespace": ns, "k8s.namespace.name": ns,
                                            "k8s.pod.name": pod})},
         "scopeSpans": [{"scope": {"name": "labkit.sim.traces"}, "spans": bodies}]}
        for (svc, ns, pod), bodies in sorted(groups.items())]}


def send(url: str, spans: list[Span]) -> None:
    """POST ``spans`` to the OTLP/HTTP receiver at ``url`` (``http://127.0.0.1:PORT``) as JSON."""
    data = json.dumps(otlp_json(spans)).encode()
    request = urllib.request.Request(f"{url}/v1/traces", data=data, method="POST",  # noqa: S310 - loopback
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_S) as resp:  # noqa: S310 - loopback
            resp.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"Jaeger answered {exc.code}: {exc.read()[:200]!r}") from exc


class Tracer:
    """The workload model's span writer: each tick, samples client requests and sends their spans to Jaeger."""

    def __init__(self, endpoint_file: str | Path | None, *, list_services: Callable[[], list[dict[str, Any]]],
                 list_endpoints: Callable[[str, str], list[str]], seed: int | None = None) -> None:
        self.endpoint_file = Path(endpoint_file) if endpoint_file else None
        self.list_services = list_services
        self.list_endpoints = list_endpoints
        self.rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self.sent = 0
        self._warned = ""

    def endpoint(self) -> str | None:
        """Jaeger's OTLP/HTTP base URL while the add-on runs (it writes its port file when it starts)."""
        if self.endpoint_file is None:
            return None
        try:
            return f"http://127.0.0.1:{int(self.endpoint_file.read_text())}"
        except (OSError, ValueError):
            return None

    def tick(self, dt: float, *, clients: Iterable[Any], running: Iterable[Mapping[str, Any]],
             servers: Mapping[Key, Any], loads: Iterable[Any], endpoints: Mapping[Key, list[str]]) -> int:
        """Sample this tick's requests and send their spans; returns how many traces were sent (never raises)."""
        url = self.endpoint()
        clients = list(clients)
        if url is None or not clients:
            return 0
        try:
            spans = self._sample(dt, clients, list(running), servers, list(loads), endpoints)
            if spans:
                self._send(url, spans)
        except Exception as exc:  # tracing must never stop the model's metrics
            if str(exc) != self._warned:
                log.warning("cannot send spans to %s: %s", url, exc)
                self._warned = str(exc)
            return 0
        traces = len({s.trace_id for s in spans})
        self.sent += traces
        return traces

    def topology(self, running: list[Mapping[str, Any]], servers: Mapping[Key, Any], loads: list[Any],
                 endpoints: Mapping[Key, list[str]]) -> Topology:
        """Who serves what and whom each pod calls, from this tick's pods, Services and EndpointSlices."""
        topo = Topology(endpoints=dict(endpoints))
        for pod in running:
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            calls = calls_of(pod)
            if calls:
                topo.calls[key] = calls
            if key in servers:
                topo.own_s[key] = servers[key].service_s
        for load in loads:  # every pod the model routes requests to: its own time, queueing included
            topo.own_s[(load.namespace, load.pod)] = load.own_s
        wanted = {c for calls in topo.calls.values() for c in calls}
        for svc in sorted(wanted - set(topo.endpoints)):
            topo.endpoints[svc] = self.list_endpoints(*svc)
        topo.added_s = latency_faults(self.list_services())
        return topo

    def _sample(self, dt: float, clients: list[Any], running: list[Mapping[str, Any]], servers: Mapping[Key, Any],
                loads: list[Any], endpoints: Mapping[Key, list[str]]) -> list[Span]:
        topo = self.topology(running, servers, loads, endpoints)
        pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in running}
        # The model's throughput comes from the serving pods' own time (labkit.sim.workload): sample at that rate,
        # so the traces are a tenth of the requests http_requests_total counts.
        latency = {(ld.namespace, ld.service): ld.own_s for ld in loads}
        now = time.time()
        spans: list[Span] = []
        for c in clients:
            service = (c.service_namespace, c.service)
            # A closed loop sends one request per (think + response) seconds.
            requests = c.loops * dt / max(c.think_s + latency.get(service, 0.0), 1e-3)
            wanted = requests * SAMPLE_RATIO
            count = min(MAX_TRACES_PER_CLIENT, math.floor(wanted) + (self.rng.random() < wanted % 1))
            caller = caller_name(pods.get((c.namespace, c.pod), {"metadata": {"name": c.pod}}))
            for _ in range(count):
                start = now - dt + self.rng.random() * dt
                spans += sample_trace(c.namespace, c.pod, caller, service, topo, self.rng, start=start)
        return spans

    def _send(self, url: str, spans: list[Span]) -> None:
        send(url, spans)
