"""e2e: a real Jaeger receives the workload model's spans for the shop's requests; a trace has the expected spans and
parent/child links, Jaeger's dependency graph has the call graph's edges, a latency fault shows up as the slow
service's own time; lesson 10's exercise fails unsolved and passes with the service the traces name.
"""

from __future__ import annotations

import subprocess
import time

import pytest

import labkit as lk
from labkit.course import exercises
from labkit.lessons import tracing as l10

pytestmark = pytest.mark.e2e

EXPECTED_EDGES = {("loadgen", "frontend"), ("frontend", "catalog"), ("frontend", "checkout"),
                  ("checkout", "payment")}


@pytest.fixture
def shop(lab: lk.Lab, namespace: str) -> str:
    lk.addons.require(l10.ADDON, "workload-model")
    lk.apply(lab, l10.SHOP, namespace=namespace)
    for name in (*l10.SERVICES, l10.CALLER):
        lk.wait_for(lab, "Deployment", name, namespace=namespace, condition="condition=Available", timeout=90)
    return namespace


def test_jaeger_serves_its_query_api_on_loopback() -> None:
    lk.addons.require(l10.ADDON)
    assert l10.jaeger_url().startswith("http://127.0.0.1:")
    assert isinstance(l10.services(), list)


def test_a_trace_follows_the_call_graph_with_parent_child_links(lab: lk.Lab, shop: str) -> None:
    since = time.time()
    traces = l10.wait_traces("frontend", namespace=shop, since=since, count=3, timeout=60)
    trace = traces[0]
    table = l10.spans(trace)
    servers = table[table.kind == "server"]
    assert sorted(servers.service) == ["catalog", "checkout", "frontend", "payment"]
    assert l10.call_edges(trace) == EXPECTED_EDGES
    by_span = table.set_index("span")
    for _, row in table.iterrows():  # every span but the root has its parent in the trace and lies inside it
        if row.parent:
            parent = by_span.loc[row.parent]
            assert parent.start_ms <= row.start_ms + 1e-3
            assert row.start_ms + row.duration_ms <= parent.start_ms + parent.duration_ms + 1e-3
    assert (table.depth == 0).sum() == 1 and table.loc[table.depth == 0, "service"].item() == "loadgen"
    assert set(l10.services()) >= {"loadgen", *l10.SERVICES}


def test_the_dependency_graph_has_the_call_graphs_edges(lab: lk.Lab, shop: str) -> None:
    l10.wait_traces("frontend", namespace=shop, since=time.time(), count=2, timeout=60)
    deadline = time.monotonic() + 30
    deps = l10.dependencies(lookback_s=120)
    while not EXPECTED_EDGES <= set(zip(deps.parent, deps.child, strict=True)) and time.monotonic() < deadline:
        time.sleep(1)
        deps = l10.dependencies(lookback_s=120)
    assert EXPECTED_EDGES <= set(zip(deps.parent, deps.child, strict=True)), deps
    assert (deps.callCount > 0).all()
    assert len(l10.topology_figure(deps).data) == 1


def test_a_latency_fault_is_found_as_the_slow_services_own_time(lab: lk.Lab, shop: str) -> None:
    since = l10.inject_latency(lab, "payment", namespace=shop, delay="250ms")
    slow = l10.wait_traces("frontend", namespace=shop, since=since, min_duration="200ms", count=3, timeout=60)
    table = l10.self_times(slow).set_index("service")
    assert l10.slowest_service(slow) == "payment"
    assert table.loc["payment", "mean_self_ms"] >= 250
    # checkout and frontend are slow too, but only because they wait for payment
    assert table.loc["checkout", "mean_duration_ms"] >= 250 > table.loc["checkout", "mean_self_ms"]
    after = l10.clear_latency(lab, namespace=shop)
    fast = l10.wait_traces("frontend", namespace=shop, since=after + 1.5, count=3, timeout=60)
    assert l10.self_times(fast).mean_self_ms.max() < 200


def test_exercise_fails_unsolved_and_passes_with_the_service_the_traces_name(lab: lk.Lab, shop: str,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)
    assert not lk.check(lab, "10-slow-service", namespace=shop, answer="frontend").passed  # no fault yet
    l10.start_exercise(lab, namespace=shop)
    culprit = next(s for s in l10.SERVICES
                   if (lab.core.read_namespaced_service(s, shop).metadata.annotations or {})
                   .get("workload.labkit.io/added-latency"))
    wrong = lk.check(lab, "10-slow-service", namespace=shop, answer="frontend")
    assert not wrong.passed and wrong.hint
    assert lk.check(lab, "10-slow-service", namespace=shop, answer=culprit).passed
    assert exercises.Catalogue(l10.EXERCISES).get("10-slow-service").solve is not None


def test_the_reproduce_latency_exercise_wants_the_annotation_and_catalogs_own_time(
        lab: lk.Lab, shop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)
    l10.clear_latency(lab, namespace=shop)
    assert not lk.check(lab, "10-reproduce-latency", namespace=shop).passed  # nothing changed yet
    l10.inject_latency(lab, "catalog", namespace=shop, delay="20ms")
    too_little = lk.check(lab, "10-reproduce-latency", namespace=shop)
    assert not too_little.passed and "20 ms" in " ".join(too_little.problems)
    # what the learner types, with the lab's own kubectl
    kubectl = lk.use_lab_kubectl(lab)
    subprocess.run([kubectl, "-n", shop, "annotate", "service", "catalog",
                    f"{l10.LATENCY_FAULT_ANNOTATION}=150ms", "--overwrite"], check=True, capture_output=True)
    assert lk.check(lab, "10-reproduce-latency", namespace=shop).passed
    l10.clear_latency(lab, namespace=shop)


def test_a_sampled_request_is_traced_through_the_api_server_into_etcd_and_no_other(lab: lk.Lab,
                                                                                    namespace: str) -> None:
    lk.addons.require(l10.ADDON)
    assert l10.control_plane_traced(), "labkit up gave the control plane no trace endpoint (see backend.json)"
    since = time.time()
    lab.core.create_namespaced_config_map(namespace, {"metadata": {"name": "not-traced"}})  # no traceparent
    trace = l10.wait_trace(l10.traced_create(lab, namespace), timeout=60)
    table = l10.spans(trace)
    assert l10.call_edges(trace) == {(l10.CLIENT, "apiserver"), ("apiserver", "etcd")}
    assert list(table[table.depth == 0].service) == [l10.CLIENT]
    assert {"authorization", "priorityandfairness", "Create", "Create etcd3"} <= set(
        table[table.service == "apiserver"].operation)
    etcd = table[table.service == "etcd"].iloc[0]
    parent = table.set_index("span").loc[etcd.parent]
    assert (etcd.kind, parent.service, parent.kind, parent.operation) == ("server", "apiserver", "client",
                                                                        etcd.operation)
    # Sampling 0 per million, parent-based: the request sent just before, without a traceparent, left no trace (the
    # API server's exporter sends its batches in order, so it would have arrived with or before the traced one).
    recent = l10.find_traces("apiserver", since=since, limit=50)
    assert [t["traceID"] for t in recent] == [trace["traceID"]], [l10.spans(t).operation.tolist() for t in recent]


def test_the_called_services_serve_count_and_time_the_requests_their_spans_show(lab: lk.Lab, shop: str) -> None:
    """One call graph for load, metrics and spans: every frontend request calls catalog and checkout once, every
    checkout request payment once; each pod's response time holds its calls' (the model's /state)."""
    from labkit.lessons import hpa

    def per_service() -> dict[str, tuple[float, float]]:
        state = hpa.model_state()
        state = state[state.namespace == shop] if not state.empty else state
        return {svc: (rows.rps.sum(), (rows.rps * rows.latency_s).sum() / rows.rps.sum())
                for svc, rows in state.groupby("service")} if not state.empty else {}

    deadline = time.monotonic() + 60
    seen = per_service()
    while set(seen) != set(l10.SERVICES) and time.monotonic() < deadline:
        time.sleep(1)  # the model's next tick lists the new pods and their endpoints
        seen = per_service()
    assert set(seen) == set(l10.SERVICES), seen
    rps = {svc: r for svc, (r, _) in seen.items()}
    latency = {svc: t for svc, (_, t) in seen.items()}
    assert rps["frontend"] > 0
    assert rps["catalog"] == pytest.approx(rps["frontend"], rel=0.01)  # /state rounds to 3 decimals
    assert rps["checkout"] == pytest.approx(rps["frontend"], rel=0.01)
    assert rps["payment"] == pytest.approx(rps["checkout"], rel=0.01)
    assert latency["checkout"] > latency["payment"] and latency["frontend"] > latency["catalog"] + latency["checkout"]
