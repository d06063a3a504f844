"""Pinned versions of every binary the embedded cluster runs: the one place to change them.

Introduced in notebook 00_lab_tour (``lk.versions()`` shows them).
"""

from __future__ import annotations

KUBERNETES = "v1.36.3"
# The staging modules (k8s.io/api, client-go, ...) are tagged v0.<minor>.<patch>.
KUBERNETES_STAGING = "v0.36.3"
ETCD = "v3.6.16"
KWOK = "v0.8.0"
METRICS_SERVER = "v0.8.0"
# Add-on components, built (or taken from the cache) when the add-on that needs them first starts; not in PINNED,
# which lists the core cluster. prometheus-adapter (lesson 04); Karpenter with its KWOK provider (lesson 05).
PROMETHEUS_ADAPTER = "v0.12.0"
KARPENTER = "v1.15.0"
# kube-state-metrics (lesson 06): object state as metrics, scraped by the lab's Prometheus.
KUBE_STATE_METRICS = "v2.20.0"
# Karpenter v1.15.0's go.mod asks for go 1.26.9; the Go proxy serves this toolchain for the build.
KARPENTER_GO_TOOLCHAIN = "go1.27.3"
# prometheus-operator (lesson 07): the only version of its module the Go proxy serves here.
PROMETHEUS_OPERATOR = "v0.85.0"
# The lab's Prometheus (lessons 04, 06, 12) and the one prometheus-operator runs (lesson 07): Prometheus 3.5.0, the
# operator's default version, whose module is tagged v0.305.0 (the version the operator's own go.mod requires).
OPERATED_PROMETHEUS = "v3.5.0"
OPERATED_PROMETHEUS_MODULE = "v0.305.0"
# node-problem-detector (lesson 08): one per simulated node.
NODE_PROBLEM_DETECTOR = "v1.36.0"
# Alertmanager (lesson 07), node_exporter (lesson 06): the Prometheus project's releases, else built from source.
# v0.28.1: the last whose web UI is committed in its module; later ones embed a UI that npm builds (ui/app/dist).
ALERTMANAGER = "v0.28.1"
NODE_EXPORTER = "v1.12.1"
# VictoriaLogs (lesson 09): the log store (UI embedded) and its agent vlagent, from one module (Apache-2.0).
VICTORIALOGS = "v1.52.1"

# About how long a component's first build takes with an empty Go build cache on 2 cores (seconds; measured
# 2026-12-06, Go modules from the proxy): what a lesson says before it waits for one. A build on this machine
# records its own duration, which is used instead next time (labkit.cluster.binaries.expected_seconds).
COLD_BUILD_S: dict[str, int] = {
    "kubernetes": 222, "etcd": 60, "kwok": 90, "metrics-server": 90, "kube-state-metrics": 70,
    "prometheus-adapter": 146, "victorialogs": 16, "karpenter": 137, "node-problem-detector": 59,
    "prometheus-operator": 122, "prometheus": 203, "jaeger": 242, "alertmanager": 60, "node_exporter": 30,
}

PINNED: dict[str, str] = {
    "kubernetes": KUBERNETES,
    "etcd": ETCD,
    "kwok": KWOK,
    "metrics-server": METRICS_SERVER,
}
# Jaeger (lesson 10): the module's v1.76.0 tag carries both the v1 binaries (cmd/all-in-one) and Jaeger v2
# (cmd/jaeger, an OpenTelemetry Collector distribution), which labkit builds.
JAEGER = "v1.76.0"
# The Jaeger v2 release cut from the same commit: its archive (web UI embedded) is attached to the v1.76.0 release.
JAEGER_V2 = "v2.13.0"
# JupyterHub's proxy for `labkit hub` (npm package configurable-http-proxy).
CONFIGURABLE_HTTP_PROXY = "5.3.0"
# The Zero to JupyterHub Helm chart deploy/z2jh/values.yaml is written and validated for.
Z2JH_CHART = "4.4.0"
