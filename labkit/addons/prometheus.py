"""A real Prometheus 3.5 on loopback: the lab's metrics database (the build :mod:`.prometheus_operated` defines: the
release archive, else built from its module with the service discovery the lab uses; its web UI with it).

What it scrapes, and how it finds it (lesson 06 draws this from the live lab):

- the control plane's own ``/metrics`` through Prometheus' Kubernetes service discovery (``kubernetes_sd_configs``)
  against the lab's API server (Prometheus runs outside the cluster, so the SD config names the lab's kubeconfig,
  ``kubeconfig_file``, where a pod would use its service account). The API server from the ``kubernetes`` Service's
  EndpointSlice; on the embedded backend also etcd, kube-scheduler and kube-controller-manager, which kwokctl runs
  as local processes: labkit registers a selector-less Service and EndpointSlice for each in ``kube-system`` (as
  kube-prometheus does for kubeadm's control plane), and relabelling points the discovered address at 127.0.0.1,
  where the processes listen (an EndpointSlice may not hold a loopback address);
- ``kubelet``: every KWOK node found through ``role: node``; its kubelet endpoint is the KWOK controller, which serves
  the node's resource metrics at ``/metrics/nodes/NODE/metrics/resource`` (the ``Metric`` in
  ``labkit/data/kwok-metrics.yaml``): ``container_cpu_usage_seconds_total`` and ``container_memory_working_set_bytes``
  with cAdvisor's names and ``namespace``/``pod``/``container`` labels, from the very endpoint metrics-server reads,
  so ``kubectl top``, the HPA and PromQL agree. With the workload model running (it starts with the embedded
  cluster), Prometheus scrapes each node's cAdvisor metrics instead, as kube-prometheus does
  (``metrics_path="/metrics/cadvisor"``): the same container usage, read from that endpoint, plus the pods' own
  cgroups (``container=""``), the network and CFS throttling (:mod:`labkit.sim.cadvisor`; the model serves it, since
  KWOK v0.8.0 keeps one metrics registry per node for every ``Metric`` object and a second one repeating
  cAdvisor's names fights the first);
- the add-ons that serve metrics through file_sd: one file per add-on under ``<addons>/targets/``, written when that
  add-on starts, so add-ons started later are scraped without a restart.

Recording rules ship in ``labkit/data/prometheus/rules/``; ``promtool check config`` / ``check rules`` pass on both.
Equals ``prometheus --config.file=prometheus.yml --web.listen-address=127.0.0.1:PORT``.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from .. import state
from ..cluster.binaries import Component, Progress
from ..cluster.health import ApiConnection, ApiError
from ..errors import WaitTimeout
from ..paths import data_file
from ..settings import CONTROL_PLANE_SCRAPE_INTERVAL_S, SCRAPE_INTERVAL
from .base import Addon, Context
from .prometheus_operated import component as prometheus_component
from .prometheus_operated import ensure_ui, link_ui
from .workload_model import WorkloadModel

# Control-plane processes found through Services labkit registers in kube-system (embedded backend): job -> Service.
CONTROL_PLANE_JOBS = {"etcd": "etcd", "kube-scheduler": "kube-scheduler",
                      "kube-controller-manager": "kube-controller-manager"}
MANAGED_BY = {"app.kubernetes.io/managed-by": "labkit"}
RULES_DIR = "prometheus/rules"


class Prometheus(Addon):
    name = "prometheus"
    summary = "Prometheus server and UI"
    port_env = "LABKIT_PROMETHEUS_PORT"
    ready_path = "/-/ready"
    binary_env = "LABKIT_PROMETHEUS_BINARY"
    binary_name = "prometheus"
    metrics_job = "prometheus"

    def component(self) -> Component:
        return prometheus_component()

    def ensure_assets(self, progress: Progress) -> None:
        ensure_ui(progress)

    def prepare(self, ctx: Context) -> None:
        ctx.targets.parent.mkdir(parents=True, exist_ok=True)  # Prometheus watches the folder: it must exist first
        rules = ctx.folder / "rules"
        shutil.rmtree(rules, ignore_errors=True)
        shutil.copytree(data_file(RULES_DIR), rules)
        control_plane = register_control_plane(ctx.kubeconfig) if state.backend() == "kwok" else {}
        cluster = ClusterAccess.from_kubeconfig(ctx.kubeconfig, ctx.folder / "tls")
        model = ctx.ports.get(WorkloadModel.name)  # it starts with the embedded cluster and serves cAdvisor's metrics
        (ctx.folder / "prometheus.yml").write_text(
            prometheus_config(ctx.targets.parent, cluster=cluster, rules_dir=rules, control_plane=control_plane,
                              cadvisor=f"127.0.0.1:{model}" if model else None))
        link_ui(ctx.folder)

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # missing() is checked before start
        return [binary, f"--config.file={ctx.folder / 'prometheus.yml'}",
                f"--web.listen-address=127.0.0.1:{ctx.port}", f"--storage.tsdb.path={ctx.folder / 'data'}",
                "--storage.tsdb.retention.time=1d", "--web.enable-lifecycle"]


class ClusterAccess:
    """What Prometheus needs to reach the API server as the lab's admin: kubeconfig, server, CA, client cert."""

    def __init__(self, kubeconfig: Path, server: str, ca: str | None, cert: str | None, key: str | None):
        self.kubeconfig, self.server, self.ca, self.cert, self.key = kubeconfig, server, ca, cert, key

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, folder: Path) -> ClusterAccess:
        """Read the current context; certificates embedded as ``*-data`` are written as files into ``folder``."""
        config = yaml.safe_load(kubeconfig.read_text()) or {}
        context = next((c["context"] for c in config.get("contexts") or []
                        if c["name"] == config.get("current-context")), {})
        cluster = next((c["cluster"] for c in config.get("clusters") or [] if c["name"] == context.get("cluster")),
                       {})
        user = next((u["user"] for u in config.get("users") or [] if u["name"] == context.get("user")), {})

        def file(entry: dict[str, Any], key: str) -> str | None:
            if entry.get(key):
                return str(entry[key])
            if entry.get(f"{key}-data"):
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / key
                path.write_bytes(base64.b64decode(entry[f"{key}-data"]))
                return str(path)
            return None

        return cls(kubeconfig, str(cluster.get("server", "")), file(cluster, "certificate-authority"),
                   file(user, "client-certificate"), file(user, "client-key"))

    @property
    def address(self) -> str:
        """host:port of the API server as the kubeconfig reaches it."""
        return self.server.split("://", 1)[-1].rstrip("/")


def _discovery_objects(name: str, address: str, port: int, scheme: str) -> list[dict[str, Any]]:
    """A selector-less Service and its EndpointSlice for one control-plane process (what Prometheus discovers)."""
    labels = {**MANAGED_BY, "app.kubernetes.io/name": name}
    port_name = f"{scheme}-metrics"
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": "None", "ports": [{"name": port_name, "port": port, "targetPort": port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": name, "namespace": "kube-system",
                      "labels": {**labels, "kubernetes.io/service-name": name}},
         "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
         "endpoints": [{"addresses": [address], "conditions": {"ready": True}}]},
    ]


def _advertised_address(api: ApiConnection, *, timeout: float = 60.0) -> str:
    """The API server's own address in its ``kubernetes`` EndpointSlice, which it writes a moment after it starts."""
    path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"
    deadline = time.monotonic() + timeout
    while True:
        status, body = api.request("GET", path)
        if status == 200:
            endpoints = json.loads(body).get("endpoints") or []
            if endpoints and endpoints[0].get("addresses"):
                return str(endpoints[0]["addresses"][0])
        if time.monotonic() > deadline:
            raise WaitTimeout(f"the API server has not published its own address after {timeout:.0f}s "
                              f"(HTTP {status}: {body[:200]!r})", last_seen=body,
                              fix="kubectl get endpointslice kubernetes -o yaml; `labkit status` shows the API server")
        time.sleep(0.2)


def register_control_plane(kubeconfig: Path) -> dict[str, dict[str, Any]]:
    """Make etcd, kube-scheduler and kube-controller-manager discoverable; return job -> kwokctl's metric block.

    Same as ``kubectl apply --server-side -f`` of one Service and one EndpointSlice per process in kube-system. The
    address is the one the API server advertises for itself (``kubectl get endpointslice kubernetes``): the
    control-plane host as the cluster names it. The processes listen on 127.0.0.1, which an EndpointSlice may not
    hold; the scrape config's relabelling rewrites it.
    """
    from ..cluster.kwok_backend import component_metrics

    metrics = component_metrics()
    found: dict[str, dict[str, Any]] = {}
    with ApiConnection(kubeconfig) as api:
        address = _advertised_address(api)
        for job, component in CONTROL_PLANE_JOBS.items():
            if component not in metrics:
                continue
            metric = metrics[component]
            port = int(str(metric["host"]).rsplit(":", 1)[1])
            for doc in _discovery_objects(component, address, port, str(metric.get("scheme", "http"))):
                base = "/api/v1" if doc["apiVersion"] == "v1" else "/apis/discovery.k8s.io/v1"
                plural = "services" if doc["kind"] == "Service" else "endpointslices"
                path = f"{base}/namespaces/kube-system/{plural}/{doc['metadata']['name']}"
                status, body = api.request("PATCH", path + "?fieldManager=labkit&force=true", doc,
                                           content_type="application/apply-patch+yaml")
                if status >= 400:
                    raise ApiError(status, body)
            found[job] = metric
    return found


def _tls(cluster: ClusterAccess, *, verify: bool) -> dict[str, Any]:
    tls: dict[str, Any] = {}
    if verify and cluster.ca:
        tls["ca_file"] = cluster.ca
    if not verify:
        tls["insecure_skip_verify"] = True
    if cluster.cert and cluster.key:
        tls |= {"cert_file": cluster.cert, "key_file": cluster.key}
    return tls


def _sd(cluster: ClusterAccess, role: str) -> list[dict[str, Any]]:
    """``kubernetes_sd_configs`` for ``role``, reaching the API server as the lab's kubeconfig does."""
    return [{"role": role, "kubeconfig_file": str(cluster.kubeconfig)}]


def _common_labels() -> list[dict[str, Any]]:
    """namespace and service labels from the discovered object, as kube-prometheus sets them."""
    return [{"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"}]


def kubernetes_jobs(cluster: ClusterAccess, control_plane: dict[str, dict[str, Any]],
                    cadvisor: str | None = None) -> list[dict[str, Any]]:
    """The scrape jobs found through Kubernetes SD: API server, control plane, kubelet (resource metrics, and
    cAdvisor's from ``cadvisor``, the workload model's host:port, when it runs)."""
    jobs: list[dict[str, Any]] = [{
        "job_name": "apiserver",
        "scrape_interval": f"{CONTROL_PLANE_SCRAPE_INTERVAL_S}s",
        "kubernetes_sd_configs": _sd(cluster, "endpointslice"),
        "scheme": "https",
        "tls_config": _tls(cluster, verify=True),
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_namespace", "__meta_kubernetes_service_name",
                               "__meta_kubernetes_endpointslice_port_name"],
             "regex": "default;kubernetes;https", "action": "keep"},
            *_common_labels(),
            # The advertised address (kwokctl: 192.0.2.2) is the cluster's name for the host; Prometheus runs
            # outside the cluster and reaches the API server where the kubeconfig does.
            {"target_label": "__address__", "replacement": cluster.address},
        ],
    }]
    for job, metric in control_plane.items():
        https = metric.get("scheme") == "https"
        entry: dict[str, Any] = {
            "job_name": job,
            "scrape_interval": f"{CONTROL_PLANE_SCRAPE_INTERVAL_S}s",
            "kubernetes_sd_configs": _sd(cluster, "endpointslice"),
            "scheme": "https" if https else "http",
            "metrics_path": str(metric.get("path", "/metrics")),
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_namespace", "__meta_kubernetes_service_name"],
                 "regex": f"kube-system;{CONTROL_PLANE_JOBS[job]}", "action": "keep"},
                *_common_labels(),
                # Keep the port, swap the advertised host for loopback, where the process listens.
                {"source_labels": ["__address__"], "regex": r"[^:]+:(\d+)", "target_label": "__address__",
                 "replacement": "127.0.0.1:$1"},
            ],
        }
        if https:
            # Their serving certificates are self-signed by each process (as in kubeadm clusters, where
            # kube-prometheus skips verification too); the client certificate is the lab's admin.
            entry["tls_config"] = _tls(cluster, verify=False)
        jobs.append(entry)
    # The kubelet as kube-prometheus scrapes it: cAdvisor's endpoint (job="kubelet", metrics_path="/metrics/cadvisor"),
    # which the workload model serves for KWOK's nodes (labkit.sim.cadvisor); without the model, the resource
    # endpoint KWOK serves (the same container series, without the pods' own cgroups and the network).
    path, address = ("/metrics/cadvisor", cadvisor) if cadvisor else ("/metrics/resource", None)
    jobs.append({
        "job_name": "kubelet",
        "kubernetes_sd_configs": _sd(cluster, "node"),
        "scheme": "http",
        "relabel_configs": [
            # KWOK's nodes: their kubelet endpoint (InternalIP:daemonEndpoints port) is the KWOK controller.
            {"source_labels": ["__meta_kubernetes_node_annotation_kwok_x_k8s_io_node"], "regex": "fake",
             "action": "keep"},
            {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "__metrics_path__",
             "replacement": "/nodes/$1/metrics/cadvisor" if cadvisor else "/metrics/nodes/$1/metrics/resource"},
            *([{"target_label": "__address__", "replacement": address}] if address else []),
            {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"},
            # Every node's kubelet is the same host:port here; name the target after its node instead.
            {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "instance"},
            {"target_label": "metrics_path", "replacement": path},
        ],
    })
    return jobs


def prometheus_config(targets_dir: Path, *, cluster: ClusterAccess | None = None, rules_dir: Path | None = None,
                      control_plane: dict[str, dict[str, Any]] | None = None, cadvisor: str | None = None) -> str:
    """Prometheus' config: the Kubernetes jobs (with a cluster), one job for the add-ons' file_sd, the rule files."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
    }
    if rules_dir is not None:
        config["rule_files"] = [f"{rules_dir}/*.yaml"]
    jobs = kubernetes_jobs(cluster, control_plane or {}, cadvisor) if cluster is not None else []
    # Each add-on's target group sets its own job label (e.g. dcgm-exporter, kube-state-metrics).
    jobs.append({"job_name": "labkit-addons",
                 "file_sd_configs": [{"files": [f"{targets_dir}/*.json"], "refresh_interval": "5s"}]})
    config["scrape_configs"] = jobs
    return ("# written by labkit; edits are replaced when the add-on starts again\n"
            "# Prometheus runs outside the cluster: its Kubernetes discovery reaches the API server through the lab's\n"
            "# kubeconfig (`kubeconfig_file`), where a Prometheus in a pod would use its service account.\n"
            + yaml.safe_dump(config, sort_keys=False, width=120))
