"""Lesson 10, tracing (链路追踪) with Jaeger: notebook 10_tracing's shop, Jaeger queries, figures and exercise.

Jaeger (the ``jaeger`` add-on) is real; the spans come from the workload model (:mod:`labkit.sim.traces`), which
routes the shop's requests: a load generator calls ``frontend``, which calls ``catalog`` and ``checkout``, which
calls ``payment`` (each pod's ``workload.labkit.io/calls`` annotation). Every query here is one call of Jaeger's
HTTP API, the same the Jaeger UI makes (``curl 'http://127.0.0.1:PORT/api/traces?service=frontend'``).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from .. import addons
from ..addons.jaeger import control_plane_port, otlp_endpoint
from ..cluster.kwok_backend import TRACING_CONFIG_FILE
from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..errors import LabkitError
from ..i18n import _
from ..kube.client import Lab, api_errors
from ..kube.objects import get, patch
from ..kube.wait import poll
from ..paths import state_dir
from ..sim.calls import LATENCY_FAULT_ANNOTATION, parse_duration
from ..sim.traces import SPAN_KIND_CLIENT, Span, send

ADDON = "jaeger"
ENTRY = "frontend"
SERVICES = ("frontend", "catalog", "checkout", "payment")
# Who calls whom (the calls annotation of each Deployment's pods): the topology Jaeger must find.
CALLS = {"frontend": "catalog,checkout", "checkout": "payment"}
CALLER = "loadgen"
FAULT = "250ms"


def _deployment(name: str, *, limit: str, calls: str = "") -> str:
    annotations = f"\n      annotations: {{workload.labkit.io/calls: \"{calls}\"}}" if calls else ""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}{annotations}
    spec:
      containers:
      - name: {name}
        image: nginx:1.27
        resources: {{requests: {{cpu: 100m}}, limits: {{cpu: {limit}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80}}]
"""


SHOP = "---\n".join([
    _deployment("frontend", limit="1", calls=CALLS["frontend"]),
    _deployment("catalog", limit="2"),
    _deployment("checkout", limit="1", calls=CALLS["checkout"]),
    _deployment("payment", limit="1"),
]) + f"""---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {CALLER}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {CALLER}}}
  template:
    metadata:
      labels: {{app: {CALLER}}}
    spec:
      containers:
      - name: {CALLER}
        image: busybox:1.28
        command: ["/bin/sh", "-c", "while sleep 0.05; do wget -q -O- http://frontend; done"]
"""
"""The lesson's shop: four Services (each a Deployment of 2) and a load generator, as ``kubectl apply -f`` reads it."""


# --- Jaeger's HTTP API ---------------------------------------------------------------------------------------------

def jaeger_url() -> str:
    """Where the lab's Jaeger query API answers (``labkit status`` shows it)."""
    url = addons.url(ADDON)
    if url is None:
        raise LabkitError(_("Jaeger is not running"), fix='lk.addons.require("jaeger")   # '
                          + _("or: {command}").format(command="labkit up --with jaeger"))
    return url


def api(path: str, **params: Any) -> Any:
    """``curl 'http://127.0.0.1:PORT/api/PATH?PARAMS'``: the ``data`` of Jaeger's answer."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{jaeger_url()}/api/{path}" + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the lab's loopback Jaeger
            return json.loads(resp.read())["data"]
    except urllib.error.HTTPError as exc:
        raise LabkitError(_("Jaeger answered {code} to {url}: {body!r}").format(code=exc.code, url=url,
                                                                                body=exc.read()[:300]),
                          fix=f"curl -s '{url}'   # " + _("and: {command}").format(command="labkit status")) from exc


def services() -> list[str]:
    """Every service Jaeger has spans from (``curl .../api/services``)."""
    return sorted(api("services") or [])


def _namespace(trace: dict[str, Any]) -> str:
    """The Kubernetes namespace of a trace's services (their resource attribute ``k8s.namespace.name``)."""
    for process in trace.get("processes", {}).values():
        for tag in process.get("tags") or []:
            if tag["key"] == "k8s.namespace.name":
                return str(tag["value"])
    return ""


def find_traces(service: str = ENTRY, *, namespace: str | None = None, since: float | None = None,
                lookback: str = "2m", limit: int = 20, min_duration: str | None = None) -> list[dict[str, Any]]:
    """Traces through ``service``, newest first (``curl '.../api/traces?service=S&lookback=2m&minDuration=200ms'``);
    ``since`` (unix seconds) keeps traces that started after it, ``namespace`` those of one namespace's pods."""
    start = int(since * 1e6) if since else None
    found = api("traces", service=service, start=start, end=int(time.time() * 1e6) if start else None,
                lookback=None if start else lookback, limit=max(limit, 100), minDuration=min_duration) or []
    found = [t for t in found if namespace is None or _namespace(t) == namespace]
    return sorted(found, key=lambda t: min(s["startTime"] for s in t["spans"]), reverse=True)[:limit]


def wait_traces(service: str = ENTRY, *, namespace: str | None = None, count: int = 1, since: float | None = None,
                min_duration: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll Jaeger until ``count`` traces through ``service`` match; spans arrive within a tick of the model."""
    def check() -> tuple[bool, list[dict[str, Any]]]:
        found = find_traces(service, namespace=namespace, since=since, min_duration=min_duration,
                            limit=max(count, 20))
        return len(found) >= count, found

    def too_few(found: list[dict[str, Any]]) -> str:
        if namespace:
            return _("Jaeger has {found} traces through {service} (wanted {count}) after {timeout:.0f}s in namespace "
                     "{namespace}").format(found=len(found), service=service, count=count, timeout=timeout,
                                           namespace=namespace)
        return _("Jaeger has {found} traces through {service} (wanted {count}) after {timeout:.0f}s").format(
            found=len(found), service=service, count=count, timeout=timeout)

    return poll(check, timeout=timeout, what=too_few,
                fix=f"curl -s '{jaeger_url()}/api/traces?service={service}&lookback=5m' | head   # "
                    + _("and: {command}").format(command="kubectl get pods -n lesson-10; labkit status "
                                                         "(workload-model, jaeger)"))


def spans(trace: dict[str, Any]) -> pd.DataFrame:
    """One row per span of a trace, in start order: service, operation, kind, start (ms after the trace began),
    duration and self time (duration minus its children's), depth, span and parent ids, error."""
    processes = trace.get("processes", {})
    rows = []
    for s in trace["spans"]:
        parent = next((r["spanID"] for r in s.get("references") or [] if r.get("refType") == "CHILD_OF"), "")
        tags = {t["key"]: t["value"] for t in s.get("tags") or []}
        rows.append({"service": processes.get(s["processID"], {}).get("serviceName", "?"),
                     "operation": s["operationName"], "kind": tags.get("span.kind", ""), "span": s["spanID"],
                     "parent": parent, "start_us": s["startTime"], "duration_ms": s["duration"] / 1000,
                     "error": bool(tags.get("error")) or tags.get("otel.status_code") == "ERROR"})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    t0 = table.start_us.min()
    table["start_ms"] = (table.start_us - t0) / 1000
    children = table.groupby("parent").duration_ms.sum()
    table["self_ms"] = (table.duration_ms - table.span.map(children).fillna(0)).clip(lower=0)
    depth = {}
    by_span = table.set_index("span").parent.to_dict()
    for span in table.span:
        d, p = 0, by_span[span]
        while p in by_span:
            d, p = d + 1, by_span[p]
        depth[span] = d
    table["depth"] = table.span.map(depth)
    cols = ["service", "operation", "kind", "start_ms", "duration_ms", "self_ms", "depth", "span", "parent", "error"]
    return table.sort_values(["start_ms", "depth"])[cols].reset_index(drop=True)


def call_edges(trace: dict[str, Any]) -> set[tuple[str, str]]:
    """(caller service, called service) for each SERVER span whose parent is another service's CLIENT span."""
    table = spans(trace).set_index("span")
    edges = set()
    for _index, row in table[table.kind == "server"].iterrows():
        if row.parent in table.index and table.loc[row.parent, "service"] != row.service:
            edges.add((str(table.loc[row.parent, "service"]), str(row.service)))
    return edges


def dependencies(*, lookback_s: float = 300) -> pd.DataFrame:
    """The service graph Jaeger derives from parent/child spans (调用拓扑):
    ``curl '.../api/dependencies?endTs=NOW_MS&lookback=300000'``."""
    data = api("dependencies", endTs=int(time.time() * 1000), lookback=int(lookback_s * 1000)) or []
    table = pd.DataFrame(data, columns=["parent", "child", "callCount"])
    # A service's SERVER span is the parent of its own CLIENT spans: Jaeger counts those as self-edges; not calls.
    table = table[table.parent != table.child]
    return table.sort_values(["parent", "child"]).reset_index(drop=True)


def self_times(traces: list[dict[str, Any]]) -> pd.DataFrame:
    """Per service over ``traces``: mean span duration and mean self time (ms), slowest self time first."""
    rows = [spans(t).assign(trace=i) for i, t in enumerate(traces)]
    if not rows:
        return pd.DataFrame(columns=["service", "spans", "mean_duration_ms", "mean_self_ms"])
    table = pd.concat(rows)
    table = table[table.kind == "server"]
    out = table.groupby("service").agg(spans=("span", "count"), mean_duration_ms=("duration_ms", "mean"),
                                       mean_self_ms=("self_ms", "mean"))
    return out.sort_values("mean_self_ms", ascending=False).round(2).reset_index()


def slowest_service(traces: list[dict[str, Any]]) -> str | None:
    """The service whose own work (self time) is largest across ``traces``: where the time goes."""
    table = self_times(traces)
    return None if table.empty else str(table.service.iloc[0])


# --- the control plane's own traces -------------------------------------------------------------------------------

CONTROL_PLANE = ("apiserver", "etcd")
CLIENT = "labkit-notebook"


def control_plane_traced() -> bool:
    """Whether this lab's API server and etcd send their spans to Jaeger (the embedded cluster, started by a labkit
    that wires them: :data:`labkit.cluster.kwok_backend.TRACING_SAMPLING_PER_MILLION`)."""
    return control_plane_port() is not None


def control_plane_config() -> str | None:
    """The API server's ``--tracing-config-file`` as ``labkit up`` wrote it, or None when this lab has none."""
    path = state_dir() / TRACING_CONFIG_FILE
    return path.read_text() if control_plane_traced() and path.exists() else None


def traced_create(lab: Lab, namespace: str) -> str:
    """``kubectl create configmap traced-XXXXX`` with a sampled W3C ``traceparent`` header (kubectl has no flag):
    the API server continues the trace and passes it to etcd. Our own CLIENT span goes to Jaeger too (OTLP/HTTP),
    so the trace starts where the request did. Returns the trace id (``curl .../api/traces/ID``)."""
    trace_id, span_id = f"{random.getrandbits(128):032x}", f"{random.getrandbits(64) or 1:016x}"
    start = time.time()
    with api_errors(_("creating a configmap"), server=lab.server):
        made = lab.core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "traced-"},
                                                                 "data": {"traced": "yes"}},
                                                     _headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
    span = Span(CLIENT, namespace, "", trace_id, span_id, "", f"POST /api/v1/namespaces/{namespace}/configmaps",
                SPAN_KIND_CLIENT, start, time.time(),
                {"http.request.method": "POST", "k8s.configmap.name": made.metadata.name})
    endpoint = otlp_endpoint(addons.addons_dir() / ADDON)
    if endpoint is None:
        raise LabkitError(_("Jaeger has no OTLP endpoint yet"), fix='lk.addons.require("jaeger")')
    send(endpoint, [span])
    return trace_id


def wait_trace(trace_id: str, *, services: tuple[str, ...] = (CLIENT, *CONTROL_PLANE),
               timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``curl .../api/traces/ID`` until the trace has spans from every one of ``services``."""
    def check() -> tuple[bool, tuple[set[str], dict[str, Any]]]:
        try:
            found = api(f"traces/{trace_id}") or []
        except LabkitError:  # 404 until its first span is stored
            found = []
        trace = found[0] if found else {}
        seen = {p["serviceName"] for p in trace.get("processes", {}).values()}
        return set(services) <= seen, (seen, trace)

    _seen, trace = poll(
        check, timeout=timeout,
        what=lambda seen: _("trace {trace_id} has spans from {seen}, not yet from {missing}, after {timeout:.0f}s")
        .format(trace_id=trace_id, seen=sorted(seen[0]) or _("nobody"), missing=sorted(set(services) - seen[0]),
                timeout=timeout),
        fix=f"curl -s '{jaeger_url()}/api/traces/{trace_id}' | head -c 600")
    return trace


# --- faults --------------------------------------------------------------------------------------------------------

def inject_latency(lab: Lab, service: str, *, namespace: str, delay: str = FAULT) -> float:
    """Slow every request a Service's pods serve (``kubectl annotate service S
    workload.labkit.io/added-latency=250ms``); returns the time it took effect (for ``since=``)."""
    patch(lab, "Service", service, {"metadata": {"annotations": {LATENCY_FAULT_ANNOTATION: delay}}},
          namespace=namespace)
    return time.time()


def clear_latency(lab: Lab, *, namespace: str) -> float:
    """Remove every latency fault in the namespace (``kubectl annotate service --all
    workload.labkit.io/added-latency-``); returns the time."""
    for name in SERVICES:
        patch(lab, "Service", name, {"metadata": {"annotations": {LATENCY_FAULT_ANNOTATION: None}}},
              namespace=namespace)
    return time.time()


def break_one_service(lab: Lab, *, namespace: str) -> float:
    """The exercise's fault: one of the shop's services (not named) turns slow; returns when (for ``since=``)."""
    clear_latency(lab, namespace=namespace)
    return inject_latency(lab, random.choice(SERVICES[1:]), namespace=namespace, delay="300ms")  # noqa: S311


# --- figures ---------------------------------------------------------------------------------------------------------

def topology_figure(deps: pd.DataFrame) -> go.Figure:
    """The service graph as Jaeger's "System Architecture" view draws it: callers left, called services right,
    each edge labelled with its call count."""
    names = sorted(set(deps.parent) | set(deps.child))
    level = {n: 0 for n in names}
    for _round in names:  # longest path from a root: a service sits one column right of its deepest caller
        for p, c in zip(deps.parent, deps.child, strict=True):
            level[c] = max(level[c], level[p] + 1)
    columns: dict[int, list[str]] = {}
    for n in names:
        columns.setdefault(level[n], []).append(n)
    pos = {n: (lv, i - (len(col) - 1) / 2) for lv, col in columns.items() for i, n in enumerate(col)}
    fig = go.Figure()
    for p, c, count in zip(deps.parent, deps.child, deps.callCount, strict=True):
        (x0, y0), (x1, y1) = pos[p], pos[c]
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                           arrowhead=3, arrowsize=1.5, standoff=28, startstandoff=28, arrowcolor="#888")
        fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=f"{count} calls", showarrow=False,
                           yshift=10, font={"size": 11, "color": "#555"})
    fig.add_trace(go.Scatter(x=[pos[n][0] for n in names], y=[pos[n][1] for n in names], text=names,
                             mode="markers+text", textposition="bottom center", hoverinfo="text",
                             marker={"size": 36, "color": "#60a5fa", "line": {"width": 2, "color": "#1e3a8a"}}))
    fig.update_layout(title="Service topology (调用拓扑) from Jaeger's /api/dependencies", showlegend=False,
                      height=360, margin={"l": 20, "r": 20, "t": 50, "b": 20},
                      xaxis={"visible": False, "range": [-0.5, max(level.values(), default=0) + 0.5]},
                      yaxis={"visible": False, "range": [-1.6, 1.6]})
    return fig


def waterfall_figure(trace: dict[str, Any], *, title: str = "One request's waterfall (调用链)") -> go.Figure:
    """A trace as Jaeger's trace view draws it: one bar per span, indented by depth, along the time axis."""
    table = spans(trace)
    labels = [f"{'  ' * d}{s}: {op}" for d, s, op in zip(table.depth, table.service, table.operation, strict=True)]
    colors = {s: c for s, c in zip(sorted(table.service.unique()),
                                   ["#60a5fa", "#f59e0b", "#34d399", "#f472b6", "#a78bfa", "#94a3b8"] * 3,
                                   strict=False)}
    fig = go.Figure(go.Bar(
        y=labels, x=table.duration_ms, base=table.start_ms, orientation="h",
        marker={"color": [colors[s] for s in table.service]},
        text=[f"{d:.1f} ms" for d in table.duration_ms], textposition="outside",
        hovertext=[f"{s} self {v:.1f} ms" for s, v in zip(table.service, table.self_ms, strict=True)]))
    fig.update_layout(title=title, height=80 + 32 * len(table), margin={"l": 20, "r": 40, "t": 50, "b": 40},
                      xaxis_title="ms since the request started", yaxis={"autorange": "reversed"},
                      showlegend=False)
    return fig


# --- exercise ------------------------------------------------------------------------------------------------------

_exercise_since: dict[str, float] = {}


def start_exercise(lab: Lab, *, namespace: str) -> None:
    """Break one service for exercise 10-slow-service (the check reads traces from this moment on)."""
    _exercise_since[namespace] = break_one_service(lab, namespace=namespace)


def exercise_started(namespace: str) -> float | None:
    """When :func:`start_exercise` broke a service in ``namespace`` (unix seconds), for ``since=``."""
    return _exercise_since.get(namespace)


def _live_culprit(namespace: str) -> tuple[str | None, int]:
    since = _exercise_since.get(namespace)
    if since is None:
        return None, 0
    slow = wait_traces(ENTRY, namespace=namespace, since=since, min_duration="200ms", count=3, timeout=20)
    return slowest_service(slow), len(slow)


def check_slow_service(attempt: Attempt) -> list[str]:
    if attempt.namespace not in _exercise_since:
        return [_("no fault injected yet: run l10.start_exercise(lab, namespace=ns) first")]
    if not attempt.answer:
        return [_("pass the Service's name as answer=\"...\"")]
    culprit, n = _live_culprit(attempt.namespace)
    if str(attempt.answer).strip().lower() != culprit:
        return [_("{answer!r} is not where the time goes in the {n} slow traces through {entry} since the fault: "
                  "its own spans are not the slowest (a slow parent may only be waiting for a slow child)")
                .format(answer=attempt.answer, n=n, entry=ENTRY)]
    return []


REPRODUCE_SERVICE, REPRODUCE_MIN_S = "catalog", 0.1  # the reproduced regression: catalog, at least 100 ms


def _last_changed(obj: dict[str, Any]) -> float:
    """When an object was last written (its newest managedFields entry; kubectl annotate writes one), unix seconds."""
    times = [dt.datetime.fromisoformat(f["time"].replace("Z", "+00:00")).timestamp()
             for f in obj["metadata"].get("managedFields") or [] if f.get("time")]
    return max(times, default=0.0)


def _reproduce(attempt: Attempt) -> None:
    patch(attempt.lab, "Service", REPRODUCE_SERVICE, {"metadata": {"annotations": {LATENCY_FAULT_ANNOTATION: "150ms"}}},
          namespace=attempt.namespace)


def check_reproduced_latency(attempt: Attempt) -> list[str]:
    """Service catalog carries an added latency of at least 100 ms, and Jaeger shows it as catalog's own time."""
    service = get(attempt.lab, "Service", REPRODUCE_SERVICE, namespace=attempt.namespace)
    if service is None:
        return [_("no Service {reproduce_service} in {namespace}: run the cells of section 1 first")
                .format(reproduce_service=REPRODUCE_SERVICE, namespace=attempt.namespace)]
    added = parse_duration((service["metadata"].get("annotations") or {}).get(LATENCY_FAULT_ANNOTATION))
    if added < REPRODUCE_MIN_S:
        return [_("Service {service} adds {ms:.0f} ms to its requests; the regression to reproduce adds 150 ms (the "
                  "annotation {annotation} on the Service)")
                .format(service=REPRODUCE_SERVICE, ms=added * 1000, annotation=LATENCY_FAULT_ANNOTATION)]
    since = max(time.time() - 60, _last_changed(service))  # traces from before the annotation prove nothing
    try:
        slow = wait_traces(ENTRY, namespace=attempt.namespace, since=since, min_duration="100ms", count=3, timeout=20)
    except LabkitError:
        return [_("no trace through {entry} since the annotation took 100 ms or more: is the load generator "
                  "running? (kubectl -n {namespace} get deploy)").format(entry=ENTRY, namespace=attempt.namespace)]
    own = self_times(slow).set_index("service").mean_self_ms
    if own.get(REPRODUCE_SERVICE, 0) < REPRODUCE_MIN_S * 1000:
        return [_("the slow traces spend their time elsewhere: {service}'s own time is {ms:.0f} ms")
                .format(service=REPRODUCE_SERVICE, ms=own.get(REPRODUCE_SERVICE, 0))]
    return []


SOLUTION = """slow = l10.wait_traces("frontend", namespace=ns, since=l10.exercise_started(ns), min_duration="200ms",
                       count=3)
l10.self_times(slow)            # the first row: the service whose own spans take the time
answer = l10.slowest_service(slow)
lk.check(lab, "10-slow-service", namespace=ns, answer=answer)
"""

EXERCISES = [
    Exercise(
        id="10-slow-service",
        task="After l10.start_exercise(...), requests through frontend are slow. Name the Service that causes it, "
             "from the live traces in Jaeger, and check it with answer=\"<service>\".",
        hint="find the slow traces (minDuration 200ms), then look at each span's self time (its duration minus its "
             "children's): frontend is slow too, but only because it waits; l10.self_times(traces) puts it in a table",
        solution=SOLUTION,
        check=check_slow_service,
        solve=lambda attempt: _live_culprit(attempt.namespace)[0],
    ),
    Exercise(
        id="10-reproduce-latency",
        task="The catalog team reports that their next version adds 150 ms to every request. Reproduce that in the "
             "lab with one kubectl command on Service catalog (no helper), then see it in Jaeger as catalog's own "
             "time; the check reads the Service and the traces since you changed it.",
        hint=f"section 4 slowed payment with an annotation on its Service: `kubectl annotate service ... "
             f"{LATENCY_FAULT_ANNOTATION}=...`; l10.self_times(l10.wait_traces(\"frontend\", namespace=ns, "
             "min_duration=\"100ms\", since=time.time() - 30)) shows whose own time grew",
        solution=f"!kubectl -n lesson-10 annotate service catalog {LATENCY_FAULT_ANNOTATION}=150ms --overwrite\n"
                 "l10.self_times(l10.wait_traces(\"frontend\", namespace=ns, min_duration=\"100ms\", "
                 "since=time.time() - 30, count=3))",
        check=check_reproduced_latency,
        solve=_reproduce,
    ),
]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "10_tracing",
    "tracing (链路追踪) with a real Jaeger: a trace's spans and parent/child links, one request's waterfall, "
    "the service topology (调用拓扑) from Jaeger's dependencies, a latency fault found as the slow service's "
    "own time, and a `kubectl create` traced through the API server into etcd",
    LessonRights("add-ons jaeger, workload-model (traces of every namespace's simulated requests)",
                 refused="its Jaeger holds the traces of every namespace's simulated requests, so its "
                         "queries would show other students' services"),
    exercises=tuple(EXERCISES),
)
