"""The lab's Prometheus configuration and everything it ships, checked by Prometheus' own promtool.

`promtool check config` on the config labkit writes (with its rule files, which it checks too), `promtool check rules`
on every rule file under labkit/data; the Kubernetes jobs' discovery and relabelling; the add-ons' command lines.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from labkit.addons import REGISTRY
from labkit.addons.base import Context
from labkit.addons.kube_state_metrics import KubeStateMetrics
from labkit.addons.node_exporter import NodeExporter
from labkit.addons.prometheus import RULES_DIR, ClusterAccess, prometheus_config
from labkit.addons.prometheus_operated import component as prometheus_component
from labkit.cluster import kwok_backend
from labkit.cluster.binaries import ensure_component
from labkit.paths import data_file


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """The lab's own promtool (the Prometheus build the lab runs): cached, else got now (a declared dependency)."""
    promtool = ensure_component(prometheus_component(), progress=lambda _m: None)["promtool"]
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, timeout=60)


def shipped_rule_files() -> list[Path]:
    """Every Prometheus rule file in labkit/data: YAML whose top level is ``groups``."""
    found = []
    for path in sorted(data_file(".").rglob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue
        if len(docs) == 1 and isinstance(docs[0], dict) and set(docs[0]) == {"groups"}:
            found.append(path)
    return found


@pytest.fixture
def cluster(tmp_path: Path) -> ClusterAccess:
    for name in ("ca.crt", "admin.crt", "admin.key"):
        (tmp_path / name).write_text("placeholder\n")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:16443",
                                                 "certificate-authority": str(tmp_path / "ca.crt")}}],
        "users": [{"name": "lab", "user": {"client-certificate": str(tmp_path / "admin.crt"),
                                           "client-key": str(tmp_path / "admin.key")}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}]}))
    return ClusterAccess.from_kubeconfig(kubeconfig, tmp_path / "tls")


CONTROL_PLANE = {
    "etcd": {"host": "127.0.0.1:2379", "scheme": "http", "path": "/metrics"},
    "kube-scheduler": {"host": "127.0.0.1:10259", "scheme": "https", "path": "/metrics", "insecureSkipVerify": True},
    "kube-controller-manager": {"host": "127.0.0.1:10257", "scheme": "https", "path": "/metrics"},
}


def _config(tmp_path: Path, cluster: ClusterAccess) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(data_file(RULES_DIR), rules)
    path = tmp_path / "prometheus.yml"
    path.write_text(prometheus_config(tmp_path / "targets", cluster=cluster, rules_dir=rules,
                                      control_plane=CONTROL_PLANE, cadvisor="127.0.0.1:18099"))
    return path


def test_shipped_rule_files_pass_promtool_check_rules() -> None:
    files = shipped_rule_files()
    assert data_file(RULES_DIR) / "kubernetes.yaml" in files
    result = _promtool("check", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_config_labkit_writes_passes_promtool_check_config(tmp_path: Path, cluster: ClusterAccess) -> None:
    result = _promtool("check", "config", str(_config(tmp_path, cluster)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr and "rules found" in result.stdout + result.stderr


def test_the_config_without_a_cluster_passes_too(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(prometheus_config(tmp_path / "targets"))
    result = _promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_jobs_discover_and_relabel_like_kube_prometheus(tmp_path: Path, cluster: ClusterAccess) -> None:
    config = yaml.safe_load(_config(tmp_path, cluster).read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"apiserver", "etcd", "kube-scheduler", "kube-controller-manager", "kubelet", "labkit-addons"}
    api = jobs["apiserver"]
    assert api["tls_config"] == {"ca_file": cluster.ca, "cert_file": cluster.cert, "key_file": cluster.key}
    assert api["relabel_configs"][-1] == {"target_label": "__address__", "replacement": "127.0.0.1:16443"}
    assert jobs["kube-scheduler"]["tls_config"]["insecure_skip_verify"] is True
    assert jobs["etcd"]["scheme"] == "http" and "tls_config" not in jobs["etcd"]
    loopback = jobs["etcd"]["relabel_configs"][-1]
    assert loopback["target_label"] == "__address__" and loopback["replacement"] == "127.0.0.1:$1"
    kubelet = {r.get("target_label"): r for r in jobs["kubelet"]["relabel_configs"]}
    # cAdvisor's endpoint, which the workload model serves, labelled as kube-prometheus labels the kubelet's.
    assert kubelet["__address__"]["replacement"] == "127.0.0.1:18099"
    assert kubelet["__metrics_path__"]["replacement"] == "/nodes/$1/metrics/cadvisor"
    assert kubelet["metrics_path"]["replacement"] == "/metrics/cadvisor"
    without_model = yaml.safe_load(prometheus_config(tmp_path / "targets", cluster=cluster))
    resource = {r.get("target_label"): r for j in without_model["scrape_configs"] if j["job_name"] == "kubelet"
                for r in j["relabel_configs"]}
    assert resource["__metrics_path__"]["replacement"] == "/metrics/nodes/$1/metrics/resource"
    assert "__address__" not in resource  # KWOK, as discovered
    assert jobs["kubelet"]["kubernetes_sd_configs"] == [{"role": "node", "kubeconfig_file": str(cluster.kubeconfig)}]
    assert jobs["apiserver"]["kubernetes_sd_configs"][0]["role"] == "endpointslice"
    assert config["rule_files"] == [f"{tmp_path / 'rules'}/*.yaml"]


def test_kubeconfig_with_embedded_certificates_becomes_files(tmp_path: Path) -> None:
    data = base64.b64encode(b"PEM").decode()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443/",
                                               "certificate-authority-data": data}}],
        "users": [{"name": "u", "user": {"client-certificate-data": data, "client-key-data": data}}]}))
    access = ClusterAccess.from_kubeconfig(kubeconfig, tmp_path / "tls")
    assert access.address == "127.0.0.1:6443"
    assert access.ca and Path(access.ca).read_bytes() == b"PEM" and access.key and Path(access.key).exists()


def test_component_metrics_reads_kwokctls_record(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    assert kwok_backend.component_metrics() == {}
    kwok_backend.cluster_dir().mkdir(parents=True)
    (kwok_backend.cluster_dir() / "kwok.yaml").write_text(yaml.safe_dump({"components": [
        {"name": "etcd", "metric": {"host": "127.0.0.1:2379", "scheme": "http", "path": "/metrics"}},
        {"name": "kubectl"}]}))
    assert kwok_backend.component_metrics() == {"etcd": {"host": "127.0.0.1:2379", "scheme": "http",
                                                         "path": "/metrics"}}


@pytest.mark.parametrize("addon", [KubeStateMetrics(), NodeExporter()])
def test_exporters_listen_on_loopback_and_name_their_folder(addon, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(addon.binary_env, "/bin/true")
    ctx = Context(kubeconfig=tmp_path / "kubeconfig", folder=tmp_path / addon.name, targets=tmp_path / "t.json",
                  port=40000, ports={})
    ctx.folder.mkdir()
    addon.prepare(ctx)
    cmd = " ".join(addon.command(ctx))
    assert "127.0.0.1:40000" in cmd or "--host=127.0.0.1 --port=40000" in cmd
    assert "0.0.0.0" not in cmd and "=::" not in cmd and str(ctx.folder) in cmd
    jobs = {g["labels"]["job"] for g in addon.scrape_targets(ctx)}
    assert addon.metrics_job in jobs
    assert addon.name in REGISTRY
