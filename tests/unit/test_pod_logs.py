"""The simulated containers' logs (labkit.sim.pod_logs): CRI lines, errors spread exactly, downstream calls, KWOK's
Logs object, and one request line per counted request (what a container prints itself: tests/unit/test_sandbox.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.sim import calls, pod_logs
from labkit.sim.pod_logs import PodLogs, Run, cri_line, is_error, logs_object, parse_cri
from labkit.sim.workload import PodLoad, Server, downstream_loads, response_times


def test_cri_line_is_what_containerd_writes() -> None:
    line = cri_line(1_700_000_000.25, "stderr", "boom")
    assert line == "2023-11-14T22:13:20.250000000Z stderr F boom\n"
    assert parse_cri(line) == ("2023-11-14T22:13:20.250000000Z", "stderr", "boom")


def test_errors_are_spread_exactly() -> None:
    for rate in (0.0, 0.1, 0.3, 0.5, 1.0):
        for n in (1, 7, 10, 99):
            assert sum(is_error(k, rate) for k in range(1, n + 1)) == int(n * rate + 1e-9)


def test_calls_come_from_env_urls_then_the_calls_annotation_each_once() -> None:
    pod = {"metadata": {"namespace": "shop", "annotations": {calls.CALLS_ANNOTATION: "audit, orders"}},
           "spec": {"containers": [{"env": [{"name": "ORDERS_URL", "value": "http://orders"},
                                            {"name": "PAY", "value": "http://pay.billing.svc.cluster.local:8080/x"},
                                            {"name": "MODE", "value": "fast"}]}]}}
    assert calls.calls_of(pod) == [("shop", "orders"), ("billing", "pay"), ("shop", "audit")]


def test_downstream_load_is_shared_by_the_called_services_ready_pods() -> None:
    loads = [PodLoad("shop", "fe-1", "frontend", 4.0, 0.1, 0.4, 50, 0), PodLoad("shop", "fe-2", "frontend", 2.0,
                                                                                   0.1, 0.2, 50, 0)]
    servers = {("shop", n): Server("shop", n, n, ()) for n in ("o-1", "o-2", "o-3")}
    out = downstream_loads(loads, {("shop", "fe-1"): [("shop", "orders")], ("shop", "fe-2"): [("shop", "orders")]},
                           servers, {("shop", "orders"): ["o-1", "o-2"]})
    assert [(ld.pod, ld.rps) for ld in out] == [("o-1", 3.0), ("o-2", 3.0)]


def test_calls_are_followed_down_the_graph_and_response_times_add_up() -> None:
    ns = "shop"
    servers = {(ns, n): Server(ns, n, n, ()) for n in ("fe-1", "co-1", "pay-1", "pay-2")}  # 45m per request, 2 CPUs
    callers = {(ns, "fe-1"): [(ns, "checkout")], (ns, "co-1"): [(ns, "payment")],
               (ns, "pay-1"): [(ns, "frontend")], (ns, "pay-2"): [(ns, "frontend")]}  # a cycle back: cut
    endpoints = {(ns, "frontend"): ["fe-1"], (ns, "checkout"): ["co-1"], (ns, "payment"): ["pay-1", "pay-2"]}
    front = PodLoad(ns, "fe-1", "frontend", 10.0, 0.05, 0.5, 100, 0)
    called = downstream_loads([front], callers, servers, endpoints)
    assert [(ld.pod, ld.service, ld.rps) for ld in called] == [("co-1", "checkout", 10.0), ("pay-1", "payment", 5.0),
                                                               ("pay-2", "payment", 5.0)]
    service_s = servers[(ns, "co-1")].service_s
    assert all(ld.latency_s == ld.own_s == service_s for ld in called)
    own = {(ld.namespace, ld.pod): ld.own_s for ld in [front, *called]}
    times = response_times([front], own, callers, endpoints, {(ns, "payment"): 0.25})
    assert times[(ns, "pay-1")] == pytest.approx(service_s + 0.25)  # its own time and the fault; frontend is cut
    assert times[(ns, "co-1")] == pytest.approx(2 * service_s + 0.25)
    assert times[(ns, "fe-1")] == pytest.approx(0.05 + 2 * service_s + 0.25)  # own (queueing included) + its calls


def _pod(name: str, *, restart: int = 0, running: bool = True, command: list[str] | None = None) -> dict:
    cid = pod_logs.predicted_container_id(f"uid-{name}", "app", restart)
    state = {"running": {"startedAt": "2026-01-01T00:00:00Z"}} if running else {"waiting": {"reason": "X"}}
    return {"metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}", "annotations": {}},
            "spec": {"containers": [{"name": "app", **({"command": command} if command else {})}]},
            "status": {"containerStatuses": [{"name": "app", "restartCount": restart, "containerID": f"kwok://{cid}",
                                              "state": state}]}}


def test_one_line_per_counted_request_and_a_logs_object(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pod_logs, "log_root", lambda: tmp_path)
    logs = PodLogs(tmp_path)
    pod = _pod("web")
    pod["metadata"]["annotations"] = {pod_logs.ERROR_RATE_ANNOTATION: "0.25"}
    logs.observe([pod], now=1_767_225_601.0)
    body = logs_object(pod, {"app": logs.runs[("ns", "web", "app")]})
    assert body["kind"] == "Logs" and body["spec"]["logs"][0]["containers"] == ["app"]
    current = Path(body["spec"]["logs"][0]["logsFile"])
    logs.requests({("ns", "web"): ("web", 3.7, 0.05)}, {("ns", "web"): pod}, now=1_767_225_602.0, dt=1.0)
    logs.requests({("ns", "web"): ("web", 8.2, 0.05)}, {("ns", "web"): pod}, now=1_767_225_603.0, dt=1.0)
    records = [json.loads(parse_cri(line)[2]) for line in current.read_text().splitlines()]
    served = [r for r in records if "request_id" in r]
    assert len(served) == 8 and sum(r["level"] == "error" for r in served) == 2
    assert 'http_request_errors_total{namespace="ns",pod="web",service="web"} 2' in logs.render_error_metrics()
    link = next((tmp_path / "containers").iterdir())
    assert link.name == f"web_ns_app-{pod_logs.predicted_container_id('uid-web', 'app', 0)}.log"


def test_a_restart_points_current_and_previous_at_their_starts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pod_logs, "log_root", lambda: tmp_path)
    logs = PodLogs(tmp_path)
    logs.observe([_pod("w")], now=1_767_225_600.5)
    Run("ns", "w", "uid-w", "app", 0, "c0", 1_767_225_600.0).write([(1_767_225_600.0, "stderr", "dying")])
    logs.observe([_pod("w", running=False)], now=1_767_225_603.0)
    logs.observe([_pod("w", restart=1)], now=1_767_225_613.0)
    body = logs_object(_pod("w", restart=1), {"app": logs.runs[("ns", "w", "app")]})
    previous = Path(body["spec"]["logs"][0]["previousLogsFile"])
    assert [parse_cri(x)[1:] for x in previous.read_text().splitlines()] == [("stderr", "dying")]
    assert previous.resolve().name == "0.log"
    assert Path(body["spec"]["logs"][0]["logsFile"]).resolve().name == "1.log"
