"""Grafana's dashboard JSON model as labkit reads and draws it, on real dashboard files: the shipped ones and a
fixture written the way Grafana's "Export for sharing externally" writes one. No cluster: Prometheus answers are
stubbed where a test needs them (tests/e2e/test_dashboards.py draws every shipped dashboard on the live lab)."""

from __future__ import annotations

import copy
import csv
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from labkit import dashboards as dash
from labkit.observability import promql
from labkit.sim.gpu import dcgm_exporter

FIXTURE = Path(__file__).parent / "fixtures" / "grafana-export.json"
NAMES = ["cluster-overview", "control-plane", "gpu", "workloads"]


def model(name: str) -> dict:
    return json.loads(dash.shipped_path(name).read_text())


# --- the shipped dashboards would import into Grafana ----------------------------------------------------------------

def test_the_lab_ships_four_dashboards() -> None:
    assert dash.shipped() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_dashboard_would_import_into_grafana_unchanged(name: str) -> None:
    raw = model(name)
    assert dash.validate(raw) == []
    assert raw["id"] is None and raw["uid"] == f"labkit-{name}" and raw["schemaVersion"] >= 39
    first = raw["templating"]["list"][0]
    assert {"type": "datasource", "query": "prometheus", "name": "datasource"}.items() <= first.items()
    board = dash.load(name)
    assert board.unsupported == []
    titles = [p.title for p in board.panels]
    assert len(titles) == len(set(titles)), "panel_figure and check_panel find panels by title"
    for panel in board.panels:
        assert panel.raw["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel.title
        assert all(t.expr for t in panel.targets) and panel.targets, panel.title
        assert panel.unit == "" or panel.unit in dash.UNITS, (panel.title, panel.unit)


def test_shipped_dashboards_use_every_supported_panel_type_rows_and_variables() -> None:
    boards = [dash.load(n) for n in NAMES]
    assert {p.type for b in boards for p in b.panels} == set(dash.SUPPORTED)
    assert any(r.collapsed for b in boards for r in b.rows) and any(
        r.title and not r.collapsed for b in boards for r in b.rows)
    kinds = {v.type for b in boards for v in b.variables}
    assert {"datasource", "query", "custom", "interval"} <= kinds


def _metrics(expr: str) -> set[str]:
    words = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[|\)|$|\s*[-/*+]|\s*or\b)", expr))
    functions = {"sum", "rate", "increase", "avg", "max", "min", "count", "histogram_quantile", "by", "vector", "or",
                 "le", "pod", "node", "verb", "code", "operation", "result", "queue", "name", "phase", "namespace",
                 "instance", "container", "deployment"}
    return {w for w in words if w not in functions and not w.startswith("$")}


def test_gpu_dashboard_asks_only_for_counters_dcgm_exporter_serves() -> None:
    path = Path(dcgm_exporter.__file__).parent / "dcgm_default_counters.csv"
    served = {row[0].strip() for row in csv.reader(path.read_text().splitlines())
              if row and not row[0].startswith("#")}
    asked = {m for p in dash.load("gpu").panels for t in p.targets for m in _metrics(t.expr)}
    asked |= {m for v in dash.load("gpu").variables if v.type == "query"
              for m in _metrics(v.query.split("(", 1)[-1].split(",")[0])}
    assert asked and asked <= served, asked - served


def test_workloads_dashboard_uses_the_metric_names_of_real_components() -> None:
    asked = {m for p in dash.load("workloads").panels for t in p.targets for m in _metrics(t.expr)}
    assert {"http_requests_total", "http_request_duration_seconds_bucket",  # the app (workload model)
            "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",  # cAdvisor
            "kube_pod_status_phase", "kube_deployment_status_replicas_available",  # kube-state-metrics
            "kube_pod_container_resource_requests"} <= asked


# --- reading the model -----------------------------------------------------------------------------------------------

def test_an_exported_dashboard_reads_with_rows_grid_and_unsupported_panels_listed() -> None:
    board = dash.load(FIXTURE)
    assert board.title == "Shop (exported from Grafana)" and board.time_from == "now-1h"
    assert [(r.title, r.collapsed, [p.title for p in r.panels]) for r in board.rows] == [
        (None, False, ["About", "Shop requests", "Responses by code"]),
        ("Details", True, ["Latency", "CPU (old graph panel)"])]
    assert board.unsupported == [("About", "text"), ("Responses by code", "piechart")]
    graph = board.panel("CPU (old graph panel)")  # drawn as the time series Grafana migrates it to
    assert (graph.kind, graph.supported, graph.unit, graph.min, graph.max) == ("timeseries", True, "percentunit", 0, 1)
    assert graph.custom["stacking"] == {"mode": "normal"} and graph.custom["fillOpacity"] == 10
    latency = board.panel("Latency")
    assert latency.grid == dash.GridPos(0, 4, 12, 8) and latency.row == "Details" and latency.unit == "s"
    assert [t.ref_id for t in latency.targets] == ["A"]  # the hidden query B is not run, as in Grafana
    stat = board.panel("Shop requests")
    assert stat.thresholds == (dash.Threshold(None, "green"), dash.Threshold(50.0, "semi-dark-orange"),
                               dash.Threshold(90.0, "#C4162A"))
    assert (stat.threshold_mode, stat.unit, stat.min, stat.max) == ("percentage", "reqps", 0.0, 200.0)
    assert stat.targets[0].legend_format == "__auto"
    with pytest.raises(dash.DashboardError, match="(?s)no panel titled 'Nope'.*'Latency'"):
        board.panel("Nope")


def test_the_exported_dashboards_variables() -> None:
    ns, service, interval, env = dash.load(FIXTURE).variables
    assert (ns.type, ns.query, ns.current) == ("query", "label_values(http_requests_total, namespace)", ("shop",))
    assert service.include_all and service.multi and service.current == (dash.ALL,) and service.label == "Service"
    assert (interval.type, interval.options, interval.current) == ("interval", ("1m", "5m", "10m"), ("5m",))
    assert (env.type, env.options, env.current) == ("custom", ("stage", "prod"), ("prod",))


def test_an_exported_dashboard_with_inputs_validates_but_a_broken_one_does_not() -> None:
    raw = json.loads(FIXTURE.read_text())
    assert dash.validate(raw) == []
    broken = copy.deepcopy(raw)
    broken["id"] = 12
    broken["uid"] = "has spaces"
    broken["panels"][1]["id"] = 7  # same as the text panel
    broken["panels"][2]["gridPos"] = {"h": 3, "w": 10, "x": 16, "y": 0}  # past column 24
    broken["panels"][3]["panels"][0]["gridPos"]["x"] = 6  # onto the graph panel
    broken["panels"][3]["panels"][0]["targets"][0]["expr"] += " * $factor"
    broken["panels"][1]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    verdicts = {f.message.split(":")[0]: f.verdict for f in dash.review(broken)}
    by_verdict: dict[str, str] = {}
    for f in dash.review(broken):
        by_verdict[f.verdict] = by_verdict.get(f.verdict, "") + f.message + "\n"
    assert "uid 'has spaces'" in by_verdict[dash.REFUSED]
    for expected in ("$factor, which no variable defines", "P1809F7CD0C75ACF3"):
        assert expected in by_verdict[dash.BREAKS], (expected, verdicts)
    for expected in ("'id' is set", "panel id 7 is used by more than one panel", "outside the 24-column grid",
                     "overlaps"):
        assert expected in by_verdict[dash.REWRITTEN], (expected, verdicts)
    problems = dash.validate(broken)  # what the learner must fix: not what Grafana fixes itself
    assert len(problems) == 3 and not any("overlaps" in p or "'id'" in p for p in problems)


def test_what_grafana_imports_and_migrates_is_accepted_and_drawn() -> None:
    """A dashboard as community dashboards were written for Grafana 6: the rows layout, graph and singlestat
    panels, a Mixed datasource, targets without a refId, the datasource as an input's name."""
    old = {
        "title": "Old GPU board", "schemaVersion": 14, "uid": "old-gpu", "id": 7,
        "__inputs": [{"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}],
        "templating": {"list": []},
        "rows": [
            {"title": "Overview", "showTitle": True, "height": "250px", "panels": [
                {"id": 1, "type": "singlestat", "title": "Temperature", "span": 4, "datasource": "${DS_PROMETHEUS}",
                 "format": "celsius", "valueName": "current", "thresholds": "70,85",
                 "colors": ["green", "orange", "red"], "gauge": {"show": True, "maxValue": 100},
                 "targets": [{"expr": "DCGM_FI_DEV_GPU_TEMP"}]},
                {"id": 2, "type": "graph", "title": "Power", "span": 8, "datasource": "-- Mixed --",
                 "yaxes": [{"format": "watt"}],
                 "targets": [{"expr": "DCGM_FI_DEV_POWER_USAGE", "datasource": "${DS_PROMETHEUS}"},
                             {"expr": "DCGM_FI_DEV_POWER_USAGE * 0", "datasource": {"uid": "${DS_PROMETHEUS}"}}]},
            ]},
            {"title": "Details", "collapse": True, "panels": [
                {"id": 3, "type": "table-old", "title": "All", "span": 12, "targets": [{"expr": "up"}]}]},
        ],
    }
    assert dash.validate(old) == []
    rewritten = "\n".join(str(f) for f in dash.review(old))
    assert "rows layout" in rewritten and "schemaVersion 14" in rewritten and "refId" in rewritten
    board = dash.parse(old)
    temperature, power = board.panels[:2]
    assert (temperature.kind, temperature.unit, temperature.max) == ("gauge", "celsius", 100.0)
    assert [(t.value, t.color) for t in temperature.thresholds] == [(None, "green"), (70.0, "orange"), (85.0, "red")]
    assert temperature.options["reduceOptions"]["calcs"] == ["lastNotNull"]
    assert (power.kind, power.unit) == ("timeseries", "watt")
    assert (temperature.grid, power.grid) == (dash.GridPos(0, 1, 8, 7), dash.GridPos(8, 1, 16, 7))
    details = board.rows[-1]
    assert details.title == "Details" and details.collapsed and details.panels[0].kind == "table"


def test_kubernetes_style_resources() -> None:
    resource = {"apiVersion": "dashboard.grafana.app/v1beta1", "kind": "Dashboard", "metadata": {"name": "x"},
                "spec": model("gpu")}
    assert dash.parse(resource).title == dash.load("gpu").title


def test_load_says_what_to_do_with_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(dash.DashboardError, match="shipped"):
        dash.load("no-such-dashboard")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(dash.DashboardError, match="not valid JSON"):
        dash.load(bad)


# --- units and thresholds --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "unit", "decimals", "shown"), [
    (0.425, "percentunit", None, "42.5%"), (42, "percent", None, "42%"), (100, "percent", 0, "100%"),
    (3 * 2**30, "bytes", None, "3 GiB"), (1536, "bytes", None, "1.50 KiB"), (512, "bytes", None, "512 B"),
    (81559, "mbytes", None, "79.6 GiB"), (2.5e9, "decbytes", None, "2.50 GB"),
    (0.25, "s", None, "250 ms"), (90, "s", None, "1.50 min"), (0.0000425, "s", None, "42.5 µs"),
    (5.5, "ms", None, "5.50 ms"), (1500, "ms", None, "1.50 s"), (12.5, "reqps", None, "12.5 req/s"),
    (350, "watt", None, "350 W"), (1500, "watt", None, "1.50 kW"), (71, "celsius", None, "71°C"),
    (71.5, "celsius", None, "71.5°C"), (1.98e9, "hertz", None, "1.98 GHz"), (1234, "short", None, "1.23 K"),
    (7, "short", None, "7"), (7.5, "short", None, "7.50"), (3, "none", 0, "3"), (2, "cores", None, "2 cores"),
    (None, "bytes", None, "No data"), (float("nan"), "s", None, "No data"), (4, "suffix: pods", 0, "4 pods"),
])
def test_units_print_as_grafana_prints_them(value, unit, decimals, shown) -> None:
    assert dash.format_value(value, unit, decimals) == shown


def test_threshold_steps_colour_values_absolute_and_percentage() -> None:
    board = dash.load("cluster-overview")
    pending = board.panel("Pods pending")  # green, orange from 1, red from 5
    assert [dash.threshold_color(pending, v) for v in (0, 1, 4.9, 5, 50)] == [
        "#73BF69", "#FF9830", "#FF9830", "#F2495C", "#F2495C"]
    stat = dash.load(FIXTURE).panel("Shop requests")  # percentage of 0..200: orange from 100, red from 180
    assert [dash.threshold_color(stat, v, low=0, high=200) for v in (99, 100, 179, 180)] == [
        "#73BF69", "#FF780A", "#FF780A", "#C4162A"]
    assert dash.color("dark-red") == "#C4162A" and dash.color("#123456") == "#123456" and dash.color("teal") == "teal"


# --- variables, interpolation, legends -------------------------------------------------------------------------------

def _choice(name: str, options: tuple[str, ...], selected: tuple[str, ...], **kw) -> dash.Choice:
    return dash.Choice(dash.Variable(name=name, type=kw.pop("type", "query"), label=name, query="", **kw),
                       options, selected)


def test_interpolation_of_variables_formats_and_builtins() -> None:
    window = dash.TimeRange.parse("15m", end=0)
    assert (window.seconds, window.step_s, window.rate_interval_s) == (900, 8, 40)  # 120 points; 4 x 10 s
    choices = {
        "namespace": _choice("namespace", ("a", "b"), ("a",)),
        "pod": _choice("pod", ("web-1", "web.2"), (dash.ALL,), multi=True, include_all=True),
        "node": _choice("node", ("n1", "n2"), (dash.ALL,), include_all=True, all_value=".*"),
        "gpu": _choice("gpu", ("0", "1", "2"), ("0", "2"), multi=True),
        "datasource": _choice("datasource", ("prometheus",), ("prometheus",), type="datasource"),
    }
    expr = ('x{namespace="$namespace", pod=~"${pod}", node=~"[[node]]", gpu=~"$gpu"}[$__rate_interval] '
            "$__interval $__range ${gpu:csv} $unknown")
    assert dash.interpolate(expr, choices, window) == (
        'x{namespace="a", pod=~"(web-1|web\\\\.2)", node=~".*", gpu=~"(0|2)"}[40s] 8s 900s 0,2 $unknown')


def test_legend_format_and_grafanas_default_names() -> None:
    labels = {"pod": "web-1", "namespace": "shop"}
    assert dash.legend("{{pod}} in {{ namespace }} ({{missing}})", labels) == "web-1 in shop ()"
    assert dash.legend("", labels) == '{namespace="shop", pod="web-1"}'
    assert dash.legend("__auto", {"__name__": "up", "job": "x"}) == 'up{job="x"}'
    assert dash.legend("", {}, "sum(up)") == "sum(up)"


def test_variables_resolve_in_order_keep_saved_choices_and_take_explicit_ones(monkeypatch) -> None:
    asked = []

    def label_values(label: str, *, match: str | None = None, timeout: float = 10.0) -> list[str]:
        asked.append((label, match))
        return {"namespace": ["shop", "billing"], "service": ["canary-web", "web", "api"]}[label]

    monkeypatch.setattr(promql, "label_values", label_values)
    board = dash.load(FIXTURE)
    choices = dash.resolve(board)
    assert choices["namespace"].selected == ("shop",)  # saved in the JSON and still offered
    assert choices["service"].options == ("api", "web") and choices["service"].is_all  # regex drops canary-, sorted
    assert asked[1] == ("service", 'http_requests_total{namespace="shop"}')
    assert choices["interval"].selected == ("5m",) and choices["env"].selected == ("prod",)
    asked.clear()
    picked = dash.resolve(board, {"namespace": "billing", "service": ["web"], "interval": "1m"})
    assert asked[1] == ("service", 'http_requests_total{namespace="billing"}')
    assert (picked["service"].selected, picked["service"].is_all, picked["interval"].selected) == (
        ("web",), False, ("1m",))


def test_query_variables_other_than_label_values_are_refused_with_the_form_to_use(prometheus) -> None:
    raw = model("workloads")
    raw["templating"]["list"][1]["query"] = {"query": "label_names()", "refId": "X"}
    with pytest.raises(dash.DashboardError, match="label_values"):
        dash.resolve(dash.parse(raw))
    choices = dash.resolve(dash.parse(raw), strict=False)  # what the rendered dashboard does: say so, go on
    assert choices["namespace"].options == () and "label_names()" in choices["namespace"].error
    view = dash.render(raw)
    assert "$namespace: variable $namespace: labkit reads" in view._status.value and not view.errors


def test_a_metrics_variable_lists_metric_names(monkeypatch) -> None:
    monkeypatch.setattr(promql, "label_values", lambda label, **kw: ["kube_pod_info", "up", "kube_node_info"])
    raw = model("workloads")
    raw["templating"]["list"][1]["query"] = {"query": "metrics(^kube_)", "refId": "X"}
    assert dash.resolve(dash.parse(raw), {"pod": "x"})["namespace"].options == ("kube_node_info", "kube_pod_info")


# --- panels drawn from (stubbed) Prometheus answers ------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def series(labels: dict[str, str], values: list[float]) -> pd.DataFrame:
    return pd.DataFrame([{**labels, "time": T0 + pd.Timedelta(seconds=5 * i), "value": v}
                         for i, v in enumerate(values)])


@pytest.fixture
def prometheus(monkeypatch) -> dict[str, pd.DataFrame]:
    """Stub Prometheus: answers (range or instant) by a substring of the query; records what was sent."""
    answers: dict[str, pd.DataFrame] = {}
    sent: list[tuple[str, str]] = []

    def answer(kind: str, expr: str) -> pd.DataFrame:
        sent.append((kind, expr))
        for key, frame in answers.items():
            if key in expr:
                return frame if kind == "range" else frame.groupby(
                    [c for c in frame.columns if c not in ("time", "value")] or (lambda _i: 0)).tail(1)
        return pd.DataFrame(columns=["time", "value"])

    monkeypatch.setattr(promql, "query_range", lambda expr, **kw: answer("range", expr))
    monkeypatch.setattr(promql, "query", lambda expr, **kw: answer("instant", expr))
    monkeypatch.setattr(promql, "label_values", lambda label, **kw: {"Hostname": ["gpu-node-1"],
                                                                     "gpu": ["0", "1"]}.get(label, []))
    monkeypatch.setattr(promql, "prometheus_url", lambda: "http://127.0.0.1:9")
    answers["__sent__"] = sent  # type: ignore[assignment]
    return answers


def test_a_timeseries_panel_names_series_by_legend_format_and_scales_its_unit(prometheus) -> None:
    prometheus["DCGM_FI_DEV_FB_USED"] = pd.concat([
        series({"Hostname": "gpu-node-1", "gpu": "0"}, [40000, 41000]),
        series({"Hostname": "gpu-node-1", "gpu": "1"}, [80000, 81000])])
    board = dash.load("gpu")
    data = dash.panel_data(board, "Framebuffer memory used")
    assert sorted(data.series.unique()) == ["gpu-node-1 GPU 0", "gpu-node-1 GPU 1"]
    assert data.attrs["queries"] == ['DCGM_FI_DEV_FB_USED{Hostname=~"gpu-node-1", gpu=~"(0|1)"}']
    fig = dash.figure(board.panel("Framebuffer memory used"), data)
    assert [t.name for t in fig.data] == ["gpu-node-1 GPU 0", "gpu-node-1 GPU 1"]
    assert fig.layout.yaxis.ticksuffix == " GiB" and max(fig.data[1].y) == pytest.approx(81000 / 1024)
    assert fig.layout.height == 8 * dash.GRID_UNIT_PX and fig.layout.title.text == "Framebuffer memory used"
    start = T0.timestamp() * 1000  # a date axis of epoch milliseconds
    assert fig.layout.xaxis.type == "date" and list(fig.data[0].x) == [start, start + 5000]


def test_stat_and_gauge_reduce_and_colour_by_threshold(prometheus) -> None:
    prometheus["max(DCGM_FI_DEV_GPU_TEMP"] = series({}, [60, 80, 88])
    board = dash.load("gpu")
    gauge = dash.figure(board.panel("Hottest GPU"), dash.panel_data(board, "Hottest GPU"))
    (indicator,) = gauge.data
    assert indicator.value == 88 and indicator.mode == "gauge+number" and indicator.number.suffix == "°C"
    assert indicator.gauge.bar.color == "#F2495C"  # past the red step at 85
    assert [tuple(s.range) for s in indicator.gauge.steps] == [(0, 75), (75, 85), (85, 100)]
    prometheus["DCGM_FI_DEV_POWER_USAGE"] = series({}, [1200, 1450.0])
    stat = dash.figure(board.panel("Power draw"), dash.panel_data(board, "Power draw"))
    spark, number = stat.data  # graphMode "area": the series as a faint area behind the number
    assert number.value == pytest.approx(1.45) and number.number.suffix == " kW"
    assert list(spark.y) == [pytest.approx(1.2), pytest.approx(1.45)] and spark.xaxis == "x"
    assert list(stat.layout.xaxis.domain) == list(number.domain.x) and not stat.layout.yaxis.visible


def test_bar_gauge_one_bar_per_series_coloured_and_labelled(prometheus) -> None:
    prometheus["DCGM_FI_DEV_GPU_UTIL"] = pd.concat([
        series({"Hostname": "gpu-node-1", "gpu": "0"}, [10, 20]),
        series({"Hostname": "gpu-node-1", "gpu": "1"}, [95, 97])])
    board = dash.load("gpu")
    (bar,) = dash.figure(board.panel("Utilisation by GPU"), dash.panel_data(board, "Utilisation by GPU")).data
    assert list(bar.y) == ["gpu-node-1 GPU 0", "gpu-node-1 GPU 1"] and list(bar.text) == ["20%", "97%"]
    assert list(bar.marker.color) == ["#5794F2", "#FF9830"]


def test_table_merges_queries_and_applies_organize(prometheus) -> None:
    prometheus["kube_deployment_spec_replicas"] = pd.concat([
        series({"deployment": "web", "namespace": "shop", "job": "ksm"}, [3]),
        series({"deployment": "api", "namespace": "shop", "job": "ksm"}, [2])])
    prometheus["kube_deployment_status_replicas_available"] = series(
        {"deployment": "web", "namespace": "shop", "job": "ksm"}, [1])
    board = dash.load("workloads")
    panel = board.panel("Deployments")
    data = dash.panel_data(board, panel, variables={"namespace": "shop"})
    assert all(kind == "instant" for kind, _ in prometheus["__sent__"][-2:])  # tables ask for now
    table = dash.table_frame(panel, data)
    assert list(table.columns) == ["deployment", "namespace", "desired", "available"]
    assert table[["deployment", "desired"]].to_dict("records") == [{"deployment": "api", "desired": 2.0},
                                                                   {"deployment": "web", "desired": 3.0}]
    assert math.isnan(table.available[0]) and table.available[1] == 1.0  # api has no series of its own: empty
    (cells,) = dash.figure(panel, data).data
    assert list(cells.cells.values[2]) == ["2", "3"]


def test_heatmap_of_histogram_buckets_counts_each_bucket_once(prometheus) -> None:
    prometheus["http_request_duration_seconds_bucket"] = pd.concat([
        series({"le": "0.1"}, [5, 6]), series({"le": "0.5"}, [8, 9]), series({"le": "+Inf"}, [10, 9])])
    board = dash.load("workloads")
    panel = board.panel("Request latency distribution")
    assert panel.unit == "s" and panel.targets[0].format == "heatmap"
    (heat,) = dash.figure(panel, dash.panel_data(board, panel, variables={"namespace": "shop"})).data
    assert list(heat.y) == ["100 ms", "500 ms", "+Inf"]
    assert [list(row) for row in heat.z] == [[5, 6], [3, 3], [2, 0]]


def test_panels_without_data_say_so_and_unsupported_ones_are_refused_by_name(prometheus) -> None:
    board = dash.load("gpu")
    fig = dash.figure(board.panel("Temperature"), dash.panel_data(board, "Temperature"))
    assert fig.layout.annotations[0].text == "No data" and not fig.data
    exported = dash.load(FIXTURE)
    with pytest.raises(dash.DashboardError, match="(?s)'piechart'.*supported types: timeseries"):
        dash.panel_figure(exported, "Responses by code")


def test_check_panel_reports_what_is_wrong(prometheus, tmp_path: Path) -> None:
    raw = model("gpu")
    assert "no panel titled 'Tensor cores'" in dash.check_panel(raw, "Tensor cores")
    raw["panels"].append({"type": "timeseries", "title": "Tensor cores", "id": 99,
                          "gridPos": {"x": 0, "y": 60, "w": 12, "h": 8},
                          "datasource": {"type": "prometheus", "uid": "${datasource}"}, "targets": []})
    assert "has no query" in dash.check_panel(raw, "Tensor cores")
    raw["panels"][-1]["targets"] = [{"refId": "A", "expr": "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
                                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}]
    assert "return no data" in dash.check_panel(raw, "Tensor cores")
    prometheus["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"] = series({"gpu": "0"}, [0.5])
    assert dash.check_panel(raw, "Tensor cores") is None
    twice = dash.add_panel(raw, {**raw["panels"][-1], "gridPos": {"x": 12, "y": 60, "w": 12, "h": 8}})
    assert "2 panels are titled 'Tensor cores'" in dash.check_panel(twice, "Tensor cores")
    raw["panels"][-1]["gridPos"]["w"] = 30
    assert dash.check_panel(raw, "Tensor cores") is None  # too wide: Grafana fits it in, as it imports it
    raw["panels"][-1]["targets"].append(dict(raw["panels"][-1]["targets"][0]))
    assert "share a refId" in dash.check_panel(raw, "Tensor cores")
    raw["panels"][-1]["targets"].pop()
    raw["panels"][-1].update(type="piechart", gridPos={"x": 0, "y": 60, "w": 12, "h": 8})
    assert "'piechart'" in dash.check_panel(raw, "Tensor cores")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(raw))
    assert "'piechart'" in dash.check_panel(path, "Tensor cores")


def test_the_rendered_widget_lists_unsupported_panels_and_opens_collapsed_rows_on_demand(prometheus) -> None:
    prometheus["http_requests_total"] = series({"service": "web"}, [1, 2, 3])
    prometheus["http_request_duration_seconds_bucket"] = pd.concat([
        series({"le": "0.1", "pod": "web-1"}, [1, 2]), series({"le": "+Inf", "pod": "web-1"}, [2, 4])])
    view = dash.render(FIXTURE, variables={"namespace": "shop"})
    header = view.children[0].value
    assert all(f"<b>{t}</b> ({k})" in header for t, k in view.unsupported)
    assert view.unsupported == [("About", "text"), ("Responses by code", "piechart")]
    assert repr(view) == (
        "<dashboard 'Shop (exported from Grafana)' $namespace=shop, $service=All, $interval=5m, $env=prod: 5 panels; "
        "(top): About, Shop requests, Responses by code; Details (collapsed): Latency, CPU (old graph panel); "
        "not drawn: About (text), Responses by code (piechart)>")
    assert set(view.figures) == {"Shop requests"}  # the collapsed row is not queried until opened
    view.expand_all()
    assert set(view.figures) == {"Shop requests", "Latency", "CPU (old graph panel)"} and not view.errors
    bundle = view._outputs[4].outputs[0]["data"]
    assert "application/vnd.plotly.v1+json" in bundle and not any("html" in k for k in bundle)
    json.dumps(bundle, allow_nan=False)  # what the kernel's message packer demands
    sent = [e for _, e in prometheus["__sent__"]]
    assert any('namespace="shop"' in e and "[5m]" in e for e in sent)  # $interval's saved value


def test_changing_a_dropdown_redraws_with_the_new_value(prometheus) -> None:
    prometheus["DCGM_FI_DEV"] = series({"Hostname": "gpu-node-1", "gpu": "0"}, [1, 2])
    view = dash.render("gpu")
    assert not view.errors and len(view.figures) == 12  # the collapsed row's table waits
    before = len(prometheus["__sent__"])
    view._dropdowns["gpu"].value = "1"
    after = [e for _, e in prometheus["__sent__"][before:]]
    assert after and all('gpu=~"1"' in e for e in after if "DCGM_FI_DEV_GPU_UTIL{" in e)
    assert view.choices["gpu"].selected == ("1",)


def test_a_dependent_variable_falls_back_when_its_choice_is_no_longer_offered(prometheus, monkeypatch) -> None:
    pods = {"shop": ["web-1", "web-2"], "billing": ["pay-1"]}

    def label_values(label: str, *, match: str | None = None, timeout: float = 10.0) -> list[str]:
        if label == "namespace":
            return sorted(pods)
        return pods[re.search(r'namespace="([^"]*)"', match or "").group(1)]

    monkeypatch.setattr(promql, "label_values", label_values)
    view = dash.render("workloads", variables={"namespace": "shop", "pod": ["web-1", "web-2"]})
    assert view._dropdowns["pod"].value == ("web-1", "web-2")  # several chosen in code: offered as one option
    assert view._dropdowns["pod"].options[0] == ("web-1 + web-2", ("web-1", "web-2"))
    view._dropdowns["pod"].value = "web-2"
    assert view.choices["pod"].selected == ("web-2",)
    view._dropdowns["namespace"].value = "billing"
    assert view.choices["pod"].options == ("pay-1",) and view.choices["pod"].is_all  # web-2 is not in billing
    assert view._dropdowns["pod"].value == dash.ALL
    sent = [e for _, e in prometheus["__sent__"][-3:]]
    assert all('namespace="billing"' in e for e in sent)


def test_durations_and_time_ranges() -> None:
    assert dash.duration_seconds("1m30s") == 90 and dash.duration_seconds("500ms") == 0.5
    with pytest.raises(dash.DashboardError, match="not a duration"):
        dash.duration_seconds("5 minutes")
    hour = dash.TimeRange.parse("now-1h", end=0)
    assert (hour.seconds, hour.step_s, hour.rate_interval_s) == (3600, 30, 40)
    assert dash.TimeRange.parse(2, end=0).seconds == 120  # minutes, as lk.promql.query_range takes them
    gpu = _choice("gpu", ("0", "1"), ("0", "1"), multi=True)
    assert dash.interpolate("${gpu:pipe} ${gpu:csv} ${gpu:regex}", {"gpu": gpu}, hour) == "0|1 0,1 (0|1)"


def test_add_panel_gives_the_next_id_the_datasource_and_a_free_place_above_collapsed_rows() -> None:
    before = model("workloads")
    after = dash.add_panel("workloads", {"type": "stat", "title": "Requests per Service", "targets": [
        {"refId": "A", "expr": 'sum(rate(http_requests_total{namespace="$namespace"}[1m]))'}]})
    assert dash.validate(after) == [] and before == model("workloads")  # a copy; the shipped file is untouched
    board = dash.parse(after)
    added = board.panel("Requests per Service")
    ids = [p["id"] for top in after["panels"] for p in [top, *(top.get("panels") or [])]]
    assert len(ids) == len(set(ids)) and added.id == max(ids)
    assert added.row == "Requests (RED)" and not [r for r in board.rows if r.title == "Requests (RED)"][0].collapsed
    assert added.grid == dash.GridPos(0, 34, 12, 8)  # under the last open row, whose panels end at y=34
    objects = next(p for p in after["panels"] if p.get("title") == "Objects")
    assert objects["gridPos"]["y"] == 34 + 8 and objects["panels"][0]["gridPos"]["y"] == 35 + 8
    assert added.raw["datasource"] == added.raw["targets"][0]["datasource"] == {"type": "prometheus",
                                                                                 "uid": "${datasource}"}


def test_a_stat_with_more_series_than_it_draws_says_how_many_it_left_out() -> None:
    panel = dash.load("gpu").panel("GPUs")
    frame = pd.concat([series({"gpu": str(i)}, [i]) for i in range(15)]).assign(
        series=lambda f: f["gpu"], refId="A")
    fig = dash.figure(panel, frame)
    assert len(fig.data) == dash.MAX_INDICATORS and fig.layout.annotations[0].text.startswith("+3 more series")


def test_value_mappings_replace_numbers_with_text_as_grafana_does() -> None:
    leader = dash.load("control-plane").panel("etcd has a leader")
    assert dash.mapped(leader, 1.0) == ("yes", "#73BF69") and dash.mapped(leader, 0.0) == ("NO", "#F2495C")
    assert dash.mapped(leader, 2.0) is None
    raw = {"type": "stat", "title": "t", "fieldConfig": {"defaults": {"mappings": [
        {"type": "range", "options": {"from": 80, "to": None, "result": {"text": "hot", "color": "dark-red"}}},
        {"type": "special", "options": {"match": "null+nan", "result": {"text": "idle"}}}]}}}
    panel = dash.parse({"panels": [raw]}).panel("t")
    assert dash.mapped(panel, 95) == ("hot", "#C4162A") and dash.mapped(panel, 79) is None
    assert dash.mapped(panel, float("nan")) == ("idle", None) == dash.mapped(panel, None)
    fig = dash.figure(leader, series({}, [1.0]).assign(series="x", refId="A"))
    assert fig.layout.annotations[0].text == "<b>yes</b>"


@pytest.mark.parametrize("name", dash.shipped())
def test_the_shipped_dashboards_give_grafana_nothing_to_rewrite(name: str) -> None:
    assert dash.review(name) == []
