"""The lesson-04 add-ons' wiring without a cluster: the workload model's command and targets, prometheus-adapter's
pinned component, command line (loopback, lab kubeconfig, the lab's Prometheus) and APIService registration."""

from __future__ import annotations

from pathlib import Path

import yaml

from labkit import addons, versions
from labkit.addons.base import Context
from labkit.addons.prometheus_adapter import APISERVICE, registration
from labkit.paths import data_file


def _ctx(tmp_path: Path, name: str, port: int) -> Context:
    return Context(kubeconfig=tmp_path / "kubeconfig", folder=tmp_path / name, targets=tmp_path / f"{name}.json",
                   port=port, ports={"prometheus": 9090, name: port})


def test_workload_model_runs_the_sim_module_and_is_scraped(tmp_path: Path) -> None:
    model = addons.REGISTRY["workload-model"]
    cmd = model.command(_ctx(tmp_path, "workload-model", 4321))
    assert cmd[1:3] == ["-m", "labkit.sim.workload"] and "4321" in cmd and str(tmp_path / "workload-model") in cmd
    groups = model.scrape_targets(_ctx(tmp_path, "workload-model", 4321))
    assert groups == [{"targets": ["127.0.0.1:4321"], "labels": {"job": "workload-model"}}]


def test_adapter_is_the_pinned_module_built_through_a_wrapper() -> None:
    comp = addons.REGISTRY["prometheus-adapter"].component()
    assert (comp.module, comp.version, comp.binaries) == ("sigs.k8s.io/prometheus-adapter",
                                                          versions.PROMETHEUS_ADAPTER, ("adapter",))
    assert comp.wrapper  # the Go proxy refuses the module's version list, which `go install m@v` needs


def test_adapter_command_line_stays_on_loopback_with_the_lab_kubeconfig(tmp_path: Path, monkeypatch) -> None:
    binary = tmp_path / "adapter"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("LABKIT_PROMETHEUS_ADAPTER_BINARY", str(binary))
    cmd = addons.REGISTRY["prometheus-adapter"].command(_ctx(tmp_path, "prometheus-adapter", 6443))
    assert cmd[0] == str(binary)
    flags = dict(arg.split("=", 1) for arg in cmd[1:])
    assert flags["--secure-port"] == "6443" and flags["--bind-address"] == "127.0.0.1"
    for flag in ("--lister-kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig"):
        assert flags[flag] == str(tmp_path / "kubeconfig")
    assert flags["--prometheus-url"] == "http://127.0.0.1:9090/"
    assert "--tls-cert-file" not in flags  # its own self-signed certificate, in --cert-dir


def test_registration_is_kwokctls_external_name_pattern_for_custom_metrics_only() -> None:
    service, apiservice = registration(7443)
    assert service["spec"] == {"type": "ExternalName", "externalName": "127.0.0.1"}
    assert apiservice["metadata"]["name"] == APISERVICE == "v1beta1.custom.metrics.k8s.io"
    assert apiservice["spec"]["group"] == "custom.metrics.k8s.io" and apiservice["spec"]["insecureSkipTLSVerify"]
    assert apiservice["spec"]["service"] == {"name": "prometheus-adapter", "namespace": "kube-system", "port": 7443}


def test_rules_turn_the_request_counter_into_a_rate() -> None:
    rule, = yaml.safe_load(data_file("prometheus-adapter/rules.yaml").read_text())["rules"]
    assert rule["seriesQuery"].startswith("http_requests_total")
    assert (rule["name"]["matches"], rule["name"]["as"]) == ("^(.*)_total$", "${1}_per_second")
    assert "rate(<<.Series>>" in rule["metricsQuery"]
