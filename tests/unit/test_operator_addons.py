"""Lesson 07's add-ons and stand-ins without a cluster: the operator's pinned component and loopback command line,
the config-reloader's rewrite of a generated config, the workload model's per-pod /metrics, Alertmanager's config."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from labkit import addons, versions
from labkit.addons import alertmanager
from labkit.addons.alertmanager import alertmanager_config
from labkit.addons.base import Context
from labkit.cluster.binaries import ensure_component
from labkit.lessons.dashboards import _duration_s
from labkit.paths import data_file
from labkit.settings import OPERATED_NAME, OPERATED_NAMESPACE
from labkit.sim.config_reloader import expand, pod_env, rewrite, rule_files
from labkit.sim.workload import BUCKETS, POD_ROUTE, Counters, PodLoad, render_pod_metrics

# The shape of what prometheus-operator v0.85.0 writes for a ServiceMonitor and the Prometheus object's alerting.
GENERATED = {
    "global": {"scrape_interval": "2s", "external_labels": {"prometheus": "monitoring/lab",
                                                           "prometheus_replica": "$(POD_NAME)"}},
    "rule_files": ["/etc/prometheus/rules/prometheus-lab-rulefiles-0/*.yaml"],
    "scrape_configs": [{
        "job_name": "serviceMonitor/lesson-07/shop/0",
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": ["lesson-07"]}}],
        "relabel_configs": [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}],
    }, {"job_name": "scrapeConfig/monitoring/ksm", "static_configs": [{"targets": ["127.0.0.1:8080"]}]}],
    "alerting": {"alertmanagers": [{
        "path_prefix": "/", "scheme": "http", "api_version": "v2",
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": ["monitoring"]}}],
        "relabel_configs": [{"action": "keep", "source_labels": ["__meta_kubernetes_service_name"],
                             "regex": "alertmanager-operated"}]}]},
}


def _ctx(tmp_path: Path, name: str, port: int) -> Context:
    return Context(kubeconfig=tmp_path / "kubeconfig", folder=tmp_path / name, targets=tmp_path / f"{name}.json",
                   port=port, ports={"prometheus-operated": 9091, "alertmanager": 9093, "workload-model": 7000,
                                     "alert-webhook": 7001, name: port})


def test_operator_is_the_pinned_module_with_its_crds_from_the_same_module() -> None:
    comp = addons.REGISTRY["prometheus-operator"].component()
    assert (comp.module, comp.version, comp.binaries) == (
        "github.com/prometheus-operator/prometheus-operator", versions.PROMETHEUS_OPERATOR, ("operator",))
    assert comp.wrapper and comp.staging_version == versions.PROMETHEUS_OPERATOR  # its go.mod replaces two siblings
    assert comp.data == (("example/prometheus-operator-crd", "crds"),)


def test_operator_listens_on_loopback_with_the_lab_kubeconfig(tmp_path: Path, monkeypatch) -> None:
    binary = tmp_path / "operator"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("LABKIT_PROMETHEUS_OPERATOR_BINARY", str(binary))
    operator = addons.REGISTRY["prometheus-operator"]
    ctx = _ctx(tmp_path, "prometheus-operator", 8080)
    flags = dict(a.split("=", 1) for a in operator.command(ctx)[1:])
    assert flags["--web.listen-address"] == "127.0.0.1:8080" and flags["--web.enable-tls"] == "false"
    assert str(ctx.folder) in " ".join(operator.command(ctx))  # labkit's liveness check knows it by its folder
    assert operator.env(ctx)["KUBECONFIG"] == str(tmp_path / "kubeconfig")


def test_alertmanager_runs_alone_on_loopback_and_sends_to_the_webhook(tmp_path: Path) -> None:
    am = addons.REGISTRY["alertmanager"]
    cmd = am.command(_ctx(tmp_path, "alertmanager", 9093)) if am.binary() else []
    if cmd:
        assert "--web.listen-address=127.0.0.1:9093" in cmd and "--cluster.listen-address=" in cmd
    config = yaml.safe_load(alertmanager_config("http://127.0.0.1:7001/alerts"))
    assert config["receivers"][0]["webhook_configs"][0]["url"] == "http://127.0.0.1:7001/alerts"
    assert am.needs == ("alert-webhook",)


def test_shipped_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_config("http://127.0.0.1:7001/alerts"))
    tool = ensure_component(alertmanager.component(), progress=lambda _m: None)["amtool"]  # cached, else got now
    proc = subprocess.run([str(tool), "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_reloader_is_told_where_everything_listens(tmp_path: Path) -> None:
    args = addons.REGISTRY["config-reloader"].arguments(_ctx(tmp_path, "config-reloader", 7002))
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--prometheus-url"] == "http://127.0.0.1:9091"
    assert flags["--alertmanager"] == "127.0.0.1:9093"
    assert flags["--folder"] == str(tmp_path / "prometheus-operated")
    assert flags["--workload-port"] == "7000"  # no backend recorded: the embedded one


def test_rewrite_changes_only_what_differs_out_of_cluster() -> None:
    out = rewrite(GENERATED, kubeconfig="/lab/kubeconfig", rules_dir="/addon/rules", alertmanager="127.0.0.1:9093",
                  workload_port=7000)
    assert out["rule_files"] == ["/addon/rules/prometheus-lab-rulefiles-0/*.yaml"]
    sm = out["scrape_configs"][0]
    assert sm["kubernetes_sd_configs"] == [{"role": "endpoints", "namespaces": {"names": ["lesson-07"]},
                                            "kubeconfig_file": "/lab/kubeconfig"}]
    # The operator's relabelling comes first, untouched; the stand-in is appended.
    assert sm["relabel_configs"][0] == GENERATED["scrape_configs"][0]["relabel_configs"][0]
    appended = {r["target_label"]: r for r in sm["relabel_configs"][1:]}
    assert appended["__address__"]["replacement"] == "127.0.0.1:7000"
    assert appended["__metrics_path__"]["replacement"] == "/pods/$1/$2$3"
    assert out["scrape_configs"][1] == GENERATED["scrape_configs"][1]  # a static job is left alone
    am = out["alerting"]["alertmanagers"][0]
    assert am["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]
    assert "kubernetes_sd_configs" not in am and "relabel_configs" not in am and am["api_version"] == "v2"
    assert GENERATED["rule_files"][0].startswith("/etc/prometheus/rules/")  # the input is not modified


def test_without_the_stand_in_pod_targets_keep_their_addresses() -> None:
    out = rewrite(GENERATED, kubeconfig="k", rules_dir="r", alertmanager=None, workload_port=None)
    assert out["scrape_configs"][0]["relabel_configs"] == GENERATED["scrape_configs"][0]["relabel_configs"]


def test_the_prometheus_object_asks_for_the_version_labkit_runs() -> None:
    docs = list(yaml.safe_load_all(data_file("prometheus-operator/prometheus.yaml").read_text()))
    prom = next(d for d in docs if d["kind"] == "Prometheus")
    assert prom["spec"]["version"] == versions.OPERATED_PROMETHEUS
    assert (prom["metadata"]["namespace"], prom["metadata"]["name"]) == (OPERATED_NAMESPACE, OPERATED_NAME)
    comp = addons.REGISTRY["prometheus-operated"].component()
    assert comp.version == versions.OPERATED_PROMETHEUS_MODULE and comp.binaries == ("prometheus", "promtool")
    assert all(p[0] == "plugins/plugins.go" for p in comp.patches)  # only service discovery is left out


def test_pod_variables_are_expanded_as_the_sidecar_does() -> None:
    text = "external_labels: {prometheus_replica: $(POD_NAME)}\nregex: $(SHARD);|.+;.+\nkeep: $(UNKNOWN)\n"
    assert expand(text, pod_env("lab")) == ("external_labels: {prometheus_replica: prometheus-lab-0}\n"
                                            "regex: 0;|.+;.+\nkeep: $(UNKNOWN)\n")


def test_rule_files_come_from_each_configmap_key() -> None:
    cms = [{"metadata": {"name": "prometheus-lab-rulefiles-0"}, "data": {"a.yaml": "groups: []\n"}}]
    assert rule_files(cms) == {"prometheus-lab-rulefiles-0/a.yaml": "groups: []\n"}


def test_a_pods_own_metrics_carry_no_namespace_or_pod_labels() -> None:
    counters = Counters()
    counters.advance([PodLoad("ns", "shop-1", "shop", rps=10, latency_s=0.02, inflight=0.2, cpu_m=450,
                              memory=0)], dt=2.0)
    text = render_pod_metrics(counters, "ns", "shop-1")
    assert "http_requests_total 20.000" in text
    assert "namespace=" not in text and "pod=" not in text and "service=" not in text
    assert text.count("http_request_duration_seconds_bucket") == len(BUCKETS) + 1
    idle = render_pod_metrics(counters, "ns", "idle-pod")  # a Running pod without traffic answers zeros
    assert "http_requests_total 0.000" in idle


def test_pod_route_parses_namespace_and_pod() -> None:
    match = POD_ROUTE.match("/pods/lesson-07/shop-5d9c-abcde/metrics")
    assert match and match.groups() == ("lesson-07", "shop-5d9c-abcde")
    assert POD_ROUTE.match("/pods/ns/pod/other") is None


def test_prometheus_durations() -> None:
    assert _duration_s("1m") == 60 and _duration_s("60s") == 60 and _duration_s("1m30s") == 90
    assert _duration_s(None) == 0


def test_webhook_receiver_records_what_alertmanager_posts() -> None:
    import json
    import threading
    import urllib.request

    from labkit.sim.alert_webhook import Receiver

    receiver = Receiver(0)  # any free port on 127.0.0.1
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        host, port = receiver.server_address[:2]
        assert host == "127.0.0.1"
        body = {"version": "4", "status": "firing", "groupLabels": {"alertname": "X"}, "alerts": [{"labels": {}}]}
        post = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=json.dumps(body).encode(),
                                      headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(post, timeout=5).close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/notifications", timeout=5) as resp:
            got = json.loads(resp.read())
        assert [(r["seq"], r["notification"]["status"]) for r in got] == [(1, "firing")]
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_the_operated_prometheus_ui_is_optional_and_says_why_it_is_missing(monkeypatch, tmp_path) -> None:
    from labkit.addons import prometheus_operated

    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(prometheus_operated.shutil, "which", lambda _name: None)
    said: list[str] = []
    assert prometheus_operated.ensure_ui(said.append) is None
    assert said == ["the operated Prometheus' web UI needs npm (Node.js) to build; its HTTP API works without it"]
    done = prometheus_operated.ui_dir()
    done.mkdir(parents=True)
    (done / ".complete").write_text("v0")
    assert prometheus_operated.ensure_ui(said.append) == done and len(said) == 1  # cached: no npm needed
