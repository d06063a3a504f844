"""e2e for the dashboards (07_dashboards): every shipped Grafana-model dashboard renders on the live lab and each of
its panels shows data; check_panel passes a panel that works and names what is wrong with one that does not.

Load comes from a Deployment + Service + a client pod looping requests, as lesson 04 makes it (the workload model
turns it into CPU use and request metrics). Waits poll Prometheus under a deadline and say what they last saw.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

import labkit as lk
from labkit import addons
from labkit import dashboards as dash
from labkit.kube.rollouts import scale
from labkit.observability import promql

pytestmark = pytest.mark.e2e

# Everything the shipped dashboards read: Prometheus and the exporters it scrapes.
ADDONS = ("prometheus", "gpu-exporter", "workload-model", "kube-state-metrics", "node-exporter")
APP = "web"
# The control plane is scraped every 10 s and a latency quantile needs a scheduling attempt between two scrapes.
PANEL_DATA_S = 120
GPU_POD = "trainer"


def load_objects(name: str) -> list[dict]:
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                      {"name": name, "image": "nginx:1.27",
                       "resources": {"requests": {"cpu": "200m", "memory": "64Mi"},
                                     "limits": {"cpu": "500m", "memory": "128Mi"}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-client"}, "spec": {"containers": [
            {"name": "client", "image": "busybox:1.36",
             "command": ["/bin/sh", "-c", f"while sleep 0.02; do wget -q -O- http://{name}; done"]}]}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": GPU_POD, "annotations": {"gpu.labkit.io/utilization": "80"}},
         "spec": {"containers": [{"name": "cuda", "image": "nvidia/cuda:12.4.1-base-ubuntu22.04",
                                  "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}},
    ]


@pytest.fixture(scope="module")
def loaded(lab: lk.Lab) -> Iterator[str]:
    """A namespace with a loaded app, once Prometheus has its request metrics."""
    from kubernetes import client as k8s

    addons.require(*ADDONS)
    namespace = f"t-dash-{uuid.uuid4().hex[:6]}"
    lab.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(
        name=namespace, labels={"app.kubernetes.io/managed-by": "labkit", "labkit.io/test": "e2e"})))
    try:
        lk.apply(lab, load_objects(APP), namespace=namespace)
        expr = f'sum(rate(http_requests_total{{namespace="{namespace}"}}[1m]))'
        promql.wait_for_series(f"{expr} > 0", timeout=120)
        # A panel draws a range (15 minutes, one point a step): the series must be old enough to have a point on a
        # step, not just two samples now.
        deadline = time.monotonic() + 60
        while promql.query_range(expr, minutes=15, step="8s").empty and time.monotonic() < deadline:
            time.sleep(1)
        yield namespace
    finally:
        lab.core.delete_namespace(namespace, propagation_policy="Background")


def empty_panels(view: dash.DashboardView) -> dict[str, list[str]]:
    drawn = {p.title for p in view.dashboard.panels if p.supported}
    return {title: view.data[title].attrs.get("queries", []) if title in view.data else ["(not drawn)"]
            for title in sorted(drawn) if title not in view.data or not dash.has_data(view.data[title])}


@pytest.mark.parametrize("name", dash.shipped())
def test_every_panel_of_each_shipped_dashboard_shows_data_on_the_lab(lab: lk.Lab, loaded: str, name: str) -> None:
    board = dash.load(name)
    assert dash.validate(board) == [] and board.unsupported == []
    view = dash.render(board, variables={"namespace": loaded} if name == "workloads" else None, time_range="5m")
    view.expand_all()
    # Rates need two scrapes of a new series: redraw until every panel has data, under a deadline. Latency quantiles
    # are rates of histogram buckets: they need scheduling to happen between two scrapes of the scheduler (every
    # 10 s; on a quiet cluster a real Grafana shows "No data" there too), so while that panel is empty each round
    # adds a replica: one more scheduling attempt.
    deadline = time.monotonic() + PANEL_DATA_S
    while (empty := empty_panels(view)) or view.errors:
        if time.monotonic() > deadline:
            pytest.fail(f"dashboard {name!r}: panels without data after {PANEL_DATA_S}s: "
                        f"{json.dumps(empty, indent=1)}; errors: {view.errors}; "
                        f"try the queries at {promql.prometheus_url()}/graph")
        if name == "control-plane" and any("Scheduling" in title for title in empty):
            replicas = lab.apps.read_namespaced_deployment(APP, loaded).spec.replicas
            scale(lab, APP, namespace=loaded, replicas=replicas + 1)
        time.sleep(5)
        view.draw()
    assert set(view.figures) == {p.title for p in board.panels}
    for title, fig in view.figures.items():
        assert fig.layout.title.text == title and (fig.data or fig.layout.annotations), title


def test_the_gpu_dashboard_names_the_pod_on_each_busy_gpu(loaded: str) -> None:
    board = dash.load("gpu")
    panel = board.panel("GPU -> pod")
    deadline = time.monotonic() + 60
    while (table := dash.table_frame(panel, dash.panel_data(board, panel))).empty or GPU_POD not in set(
            table.get("pod", [])):
        if time.monotonic() > deadline:
            pytest.fail(f"no row for pod {GPU_POD} in the GPU -> pod table after 60s; last: {table.to_dict('records')}")
        time.sleep(1)
    row = table[table["pod"] == GPU_POD].iloc[0]
    assert row["namespace"] == loaded and row["container"] == "cuda" and list(table.columns[:6]) == [
        "Hostname", "gpu", "modelName", "namespace", "pod", "container"]


def test_panel_figure_draws_one_panel_live(loaded: str) -> None:
    fig = dash.panel_figure("workloads", "Request rate", variables={"namespace": loaded}, time_range="5m")
    pods = {t.name for t in fig.data}
    assert pods and all(p.startswith(f"{APP}-") for p in pods)
    assert fig.layout.yaxis.ticksuffix.endswith("req/s")


def panel(expr: str) -> dict:
    """The panel a learner adds in the exercise (lk.dashboards.add_panel gives it an id, datasource, place)."""
    return {"type": "timeseries", "title": "Requests per Service",
            "fieldConfig": {"defaults": {"unit": "reqps"}, "overrides": []},
            "targets": [{"refId": "A", "expr": expr, "legendFormat": "{{service}}"}]}


def test_check_panel_passes_a_working_panel_and_names_the_problem_of_a_broken_one(loaded: str, tmp_path) -> None:
    mine = dash.add_panel("workloads", panel(
        'sum by (service) (rate(http_requests_total{namespace="$namespace"}[1m]))'))
    path = tmp_path / "workloads-plus.json"
    path.write_text(json.dumps(mine, indent=2))
    assert dash.check_panel(path, "Requests per Service", variables={"namespace": loaded}) is None
    fig = dash.panel_figure(path, "Requests per Service", variables={"namespace": loaded})
    assert [t.name for t in fig.data] == [APP]
    typo = dash.add_panel("workloads", panel('sum(rate(http_request_total{namespace="$namespace"}[1m]))'))
    problem = dash.check_panel(typo, "Requests per Service", variables={"namespace": loaded})
    assert problem and "return no data" in problem and f'namespace="{loaded}"' in problem
    broken = dash.add_panel("workloads", panel("sum(rate(http_requests_total[1m]"))
    problem = dash.check_panel(broken, "Requests per Service", variables={"namespace": loaded})
    assert problem and "Prometheus rejected" in problem
    twice = dash.add_panel(mine, panel("sum(up)"))
    problem = dash.check_panel(twice, "Requests per Service", variables={"namespace": loaded})
    assert problem == "2 panels are titled 'Requests per Service': give the new one a title of its own"
