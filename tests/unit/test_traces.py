"""The workload model's spans (labkit.sim.traces): call graph, parent/child links, timing, faults, OTLP JSON."""

from __future__ import annotations

import random
import statistics

import pytest

from labkit.addons import jaeger
from labkit.sim import calls, traces
from labkit.sim import workload as wm

NS = "shop"


def _topology(*, added: float = 0.0, checkout_ready: bool = True) -> traces.Topology:
    return traces.Topology(
        endpoints={(NS, "frontend"): ["frontend-a"], (NS, "checkout"): ["checkout-a"] if checkout_ready else [],
                   (NS, "payment"): ["payment-a"], (NS, "catalog"): ["catalog-a"]},
        calls={(NS, "frontend-a"): [(NS, "catalog"), (NS, "checkout")], (NS, "checkout-a"): [(NS, "payment")],
               (NS, "payment-a"): [(NS, "frontend")]},  # a cycle: cut, never followed
        own_s={(NS, "frontend-a"): 0.01, (NS, "checkout-a"): 0.005, (NS, "payment-a"): 0.004,
               (NS, "catalog-a"): 0.002},
        added_s={(NS, "payment"): added} if added else {})


def _trace(topology: traces.Topology, seed: int = 1) -> list[traces.Span]:
    return traces.sample_trace(NS, "loadgen-x", "loadgen", (NS, "frontend"), topology, random.Random(seed), start=100.0)


def test_parse_annotations() -> None:
    assert calls.parse_duration("300ms") == pytest.approx(0.3)
    assert calls.parse_duration("1.5s") == calls.parse_duration("1.5") == 1.5
    assert calls.parse_duration("soon") == calls.parse_duration(None) == 0.0
    assert calls.parse_calls("checkout, catalog.other payment.shop.svc", NS) == [
        (NS, "checkout"), ("other", "catalog"), ("shop", "payment")]
    assert traces.caller_name({"metadata": {"name": "p", "labels": {"run": "load"}}}) == "load"


def test_spans_follow_the_call_graph_with_parent_links() -> None:
    spans = _trace(_topology())
    by_id = {s.span_id: s for s in spans}
    assert len({s.trace_id for s in spans}) == 1
    edges = {(by_id[s.parent_id].service, s.service) for s in spans if s.parent_id}
    # CLIENT spans stay in the caller's service; each SERVER span's parent is the caller's CLIENT span.
    servers = [s for s in spans if s.kind == traces.SPAN_KIND_SERVER]
    assert [s.service for s in servers] == ["frontend", "catalog", "checkout", "payment"]
    assert {(by_id[by_id[s.parent_id].parent_id].service if by_id[s.parent_id].parent_id else
             by_id[s.parent_id].service, s.service) for s in servers} == {
        ("loadgen", "frontend"), ("frontend", "catalog"), ("frontend", "checkout"), ("checkout", "payment")}
    assert ("payment", "frontend") not in edges
    for s in spans:  # children lie inside their parents
        if s.parent_id:
            parent = by_id[s.parent_id]
            assert parent.start <= s.start and s.end <= parent.end + 1e-9


def test_own_time_follows_the_models_latency_and_a_fault_slows_its_service() -> None:
    def payment_durations(topology: traces.Topology) -> list[float]:
        return [s.end - s.start for seed in range(400) for s in _trace(topology, seed)
                if s.service == "payment" and s.kind == traces.SPAN_KIND_SERVER]

    normal = payment_durations(_topology())
    assert statistics.mean(normal) == pytest.approx(0.004, rel=0.2)  # exponential around the pod's mean
    slow = payment_durations(_topology(added=0.3))
    assert min(slow) >= 0.3 and statistics.mean(slow) == pytest.approx(0.304, rel=0.05)


def test_a_service_without_ready_endpoints_fails_its_caller() -> None:
    spans = _trace(_topology(checkout_ready=False))
    assert "payment" not in {s.service for s in spans}
    failed = [s for s in spans if s.error]
    assert {s.service for s in failed} == {"frontend"} and "checkout" in failed[0].error


def test_otlp_json_groups_spans_by_resource() -> None:
    body = traces.otlp_json(_trace(_topology()))
    resources = {tuple(a["value"]["stringValue"] for a in r["resource"]["attributes"] if a["key"] == "service.name")[0]
                 for r in body["resourceSpans"]}
    assert resources == {"loadgen", "frontend", "catalog", "checkout", "payment"}
    span = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])


def test_tracer_samples_client_requests_and_stays_quiet_without_jaeger(tmp_path) -> None:
    port_file = tmp_path / "otlp-port"
    sent: list[list[traces.Span]] = []
    tracer = traces.Tracer(port_file, list_services=lambda: [
        {"metadata": {"namespace": NS, "name": "frontend", "annotations": {calls.LATENCY_FAULT_ANNOTATION: "50ms"}}}],
        list_endpoints=lambda ns, svc: [], seed=3)
    tracer._send = lambda url, spans: sent.append(spans)  # type: ignore[method-assign]
    client = wm.Client(NS, "loadgen-x", NS, "frontend", think_s=0.01)
    load = wm.PodLoad(NS, "frontend-a", "frontend", rps=9.0, latency_s=0.1, inflight=0.9, cpu_m=400, memory=0)
    running = [{"metadata": {"namespace": NS, "name": "frontend-a", "annotations": {}}}]
    args = {"clients": [client], "running": running, "servers": {}, "loads": [load],
            "endpoints": {(NS, "frontend"): ["frontend-a"]}}
    assert tracer.tick(1.0, **args) == 0 and not sent  # no Jaeger yet
    port_file.write_text("4318")
    assert tracer.endpoint() == "http://127.0.0.1:4318"
    counts = [tracer.tick(1.0, **args) for _ in range(50)]
    # ~9 requests/s, 10% sampled: about 0.9 traces per second
    assert 0.5 < statistics.mean(counts) < 1.3
    frontend = [s for batch in sent for s in batch if s.service == "frontend"]
    assert all(s.end - s.start >= 0.05 for s in frontend)


def test_jaeger_config_puts_every_listener_on_loopback() -> None:
    config = jaeger.config(query_port=1, grpc_port=2, otlp_port=3, health_port=4, health_grpc_port=5)
    text = str(config)
    endpoints = [part for part in text.split("'") if ":" in part and part[0].isdigit()]
    assert sorted(endpoints) == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5"]
    assert config["service"]["telemetry"]["metrics"] == {"level": "none"}  # type: ignore[index]
    assert "grpc" not in config["receivers"]["otlp"]["protocols"]  # type: ignore[index]
    traced = jaeger.config(query_port=1, grpc_port=2, otlp_port=3, health_port=4, health_grpc_port=5,
                           control_plane_port=6)
    assert traced["receivers"]["otlp"]["protocols"]["grpc"] == {"endpoint": "127.0.0.1:6"}  # type: ignore[index]


def _as_jaeger(spans: list[traces.Span]) -> dict:
    """What Jaeger's /api/traces returns for these spans (its JSON model: processes, references, microseconds)."""
    services = sorted({s.service for s in spans})
    kinds = {traces.SPAN_KIND_SERVER: "server", traces.SPAN_KIND_CLIENT: "client"}
    return {"traceID": spans[0].trace_id, "processes": {
        f"p{i}": {"serviceName": s, "tags": [{"key": "k8s.namespace.name", "type": "string", "value": NS}]}
        for i, s in enumerate(services)},
        "spans": [{"traceID": s.trace_id, "spanID": s.span_id, "operationName": s.name,
                   "references": [{"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_id}]
                   if s.parent_id else [], "startTime": int(s.start * 1e6), "duration": int((s.end - s.start) * 1e6),
                   "tags": [{"key": "span.kind", "type": "string", "value": kinds[s.kind]}],
                   "processID": f"p{services.index(s.service)}"} for s in spans]}


def test_lesson_tables_find_the_edges_and_the_slow_service() -> None:
    from labkit.lessons import tracing as l10

    trace = _as_jaeger(_trace(_topology(added=0.3)))
    assert l10._namespace(trace) == NS
    assert l10.call_edges(trace) == {("loadgen", "frontend"), ("frontend", "catalog"), ("frontend", "checkout"),
                                     ("checkout", "payment")}
    table = l10.spans(trace)
    assert table.start_ms.iloc[0] == 0 and (table.depth == 0).sum() == 1
    assert l10.slowest_service([trace]) == "payment"
    times = l10.self_times([trace]).set_index("service")
    assert times.mean_self_ms["payment"] >= 300 > times.mean_self_ms["checkout"]
    assert len(l10.waterfall_figure(trace).data[0].x) == len(table)
