"""e2e for lesson 06: every target of the lab's Prometheus is up (control plane, kube-state-metrics, node exporter,
kubelet resource metrics, add-ons), kube-state-metrics reports the lab's real objects, container metrics agree with
metrics-server's for the same pod, the shipped rules run, and the lesson's exercises fail and pass as they should.

Every wait has a deadline and says what it last saw; nothing sleeps a fixed time.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

import labkit as lk
from labkit import addons, lessons
from labkit.addons.prometheus import RULES_DIR
from labkit.course import exercises
from labkit.errors import WaitTimeout
from labkit.lessons import prometheus as lesson
from labkit.observability import promql
from labkit.paths import data_file

pytestmark = pytest.mark.e2e

FULL = (*lesson.ADDONS, "gpu-exporter")


@pytest.fixture(scope="module", autouse=True)
def running(lab: lk.Lab) -> dict[str, str]:
    return addons.require(*FULL)


@pytest.fixture(autouse=True)
def private_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(exercises, "progress_file", lambda: tmp_path / "progress.json")
    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)


@pytest.fixture(scope="module")
def loaded(lab: lk.Lab) -> Iterator[str]:
    """A namespace with the lesson's two services under load from their client pods."""
    from kubernetes import client as k8s

    name = f"t-{uuid.uuid4().hex[:8]}"
    lab.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(
        name=name, labels={"app.kubernetes.io/managed-by": "labkit", "labkit.io/test": "e2e"})))
    lk.wait_for(lab, "ServiceAccount", "default", namespace=name, condition=lambda sa: sa is not None)
    lk.apply(lab, lesson.APP, namespace=name)
    yield name
    lab.core.delete_namespace(name, propagation_policy="Background")


def until(what: str, probe: Callable[[], Any], ok: Callable[[Any], bool], *, timeout: float, how: str) -> Any:
    deadline = time.monotonic() + timeout
    seen = probe()
    while not ok(seen):
        if time.monotonic() > deadline:
            raise WaitTimeout(f"{what}: not after {timeout:.0f}s; last seen: {seen}", last_seen=seen, fix=how)
        time.sleep(0.5)
        seen = probe()
    return seen


def test_every_target_is_up() -> None:
    table = lesson.wait_for_targets((*lesson.JOBS, "dcgm-exporter"), timeout=90)
    jobs = set(table.job)
    assert {"apiserver", "etcd", "kube-scheduler", "kube-controller-manager", "kube-state-metrics", "node-exporter",
            "kubelet", "workload-model", "dcgm-exporter", "prometheus"} <= jobs
    assert (table.health == "up").all(), table[table.health != "up"]
    # Every KWOK node is one kubelet target, named after its node.
    nodes = set(lk.nodes_table(lk.connect()).node)
    assert set(table[table.job == "kubelet"].instance) == nodes
    # Every target is on loopback.
    urls = [t["scrapeUrl"] for t in promql.target_details()]
    assert all(u.split("://", 1)[1].startswith("127.0.0.1:") for u in urls), urls


def test_control_plane_targets_are_found_by_kubernetes_sd_and_relabelled_to_loopback() -> None:
    lesson.wait_for_targets(("etcd", "kube-scheduler", "apiserver"), timeout=60)
    etcd = lesson.relabelling("etcd").set_index("label")
    discovered = etcd.loc["__address__", "discovered (before relabelling)"]
    after = etcd.loc["instance", "after relabelling"]
    assert not discovered.startswith("127.") and after == "127.0.0.1:" + discovered.rsplit(":", 1)[1]
    assert etcd.loc["__meta_kubernetes_service_name", "discovered (before relabelling)"] == "etcd"
    assert etcd.loc["namespace", "after relabelling"] == "kube-system"
    rules = lesson.relabel_rules("kube-scheduler")
    assert any(r.get("action") == "keep" for r in rules)


def test_control_plane_metrics_answer() -> None:
    checks = {
        'sum(rate(apiserver_request_total{job="apiserver"}[1m]))': lambda v: v > 0,
        'max(etcd_server_has_leader{job="etcd"})': lambda v: v == 1,
        'sum(scheduler_schedule_attempts_total{job="kube-scheduler"})': lambda v: v > 0,
        'count(workqueue_depth{job="kube-controller-manager"})': lambda v: v > 5,
        'count(node_cpu_seconds_total{job="node-exporter", mode="idle"})': lambda v: v >= 1,
    }
    for expr, ok in checks.items():
        frame = lesson.wait_for_value(expr, lambda f: not f.empty, timeout=60)
        assert ok(float(frame.value.iloc[0])), (expr, frame)


def test_kube_state_metrics_reports_the_labs_objects(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, lesson.TOO_BIG, namespace=namespace)
    frame = lesson.wait_for_value(
        f'kube_deployment_status_replicas_unavailable{{namespace="{namespace}", deployment="too-big"}}',
        lambda f: not f.empty and f.value.iloc[0] == 2, timeout=60, what="too-big's unavailable replicas")
    assert frame.value.iloc[0] == 2
    pending = promql.query(f'sum(kube_pod_status_phase{{namespace="{namespace}", phase="Pending"}})')
    assert pending.value.iloc[0] == 2
    nodes = {n.metadata.name for n in lab.core.list_node().items}
    info = lesson.wait_for_value("kube_node_info", lambda f: set(f.get("node", [])) == nodes, timeout=30)
    assert set(info.node) == nodes


def test_container_metrics_agree_with_metrics_server(lab: lk.Lab, loaded: str) -> None:
    """The kubelet target is the very endpoint metrics-server scrapes, so `kubectl top` and PromQL agree."""
    def metrics_server() -> dict[str, tuple[float, float]]:
        items = k8s_custom(lab).list_namespaced_custom_object("metrics.k8s.io", "v1beta1", loaded, "pods")["items"]
        return {i["metadata"]["name"]: (_cores(i["containers"][0]["usage"]["cpu"]),
                                        _bytes(i["containers"][0]["usage"]["memory"]))
                for i in items if i["metadata"]["name"].startswith("checkout-")
                and i["metadata"]["name"] != "checkout-client"}

    # checkout's one pod is busy at its 150m limit once its client's load arrives: a steady usage to compare.
    top = until("metrics-server reports checkout busy", metrics_server,
                lambda m: bool(m) and all(cpu > 0.1 for cpu, _ in m.values()), timeout=90,
                how=f"kubectl -n {loaded} top pods")
    pod = next(iter(top))
    selector = f'namespace="{loaded}", pod="{pod}", container="checkout"'
    # Steady: the last 30 s all at the limit in Prometheus' view too; then read both sides at the same moment.
    lesson.wait_for_value(f"rate(container_cpu_usage_seconds_total{{{selector}}}[30s])",
                          lambda f: not f.empty and f.value.iloc[0] > 0.135, timeout=90, what="checkout at its limit")
    cpu, memory = metrics_server()[pod]
    rate = promql.query(f"rate(container_cpu_usage_seconds_total{{{selector}}}[30s])")
    working_set = promql.query(f"container_memory_working_set_bytes{{{selector}}}")
    assert abs(rate.value.iloc[0] - cpu) <= 0.15 * cpu, (rate.value.iloc[0], cpu)
    assert abs(working_set.value.iloc[0] - memory) <= 0.1 * memory, (working_set.value.iloc[0], memory)
    assert {"namespace", "pod", "container", "node"} <= set(rate.columns)


def test_shipped_recording_rules_run_and_the_live_config_passes_promtool(promtool: str) -> None:
    shipped = {r["record"] for g in yaml.safe_load((data_file(RULES_DIR) / "kubernetes.yaml").read_text())["groups"]
               for r in g["rules"]}
    groups = promql.api("/api/v1/rules", {"type": "record"})["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert shipped <= set(loaded)
    assert all(loaded[name]["health"] != "err" for name in shipped), [loaded[n] for n in shipped]
    lesson.wait_for_value("instance:node_cpu_utilisation:rate1m", lambda f: not f.empty, timeout=60)
    config = promql.api("/api/v1/status/flags")["config.file"]
    result = subprocess.run([promtool, "check", "config", config], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tsdb_and_architecture_tables() -> None:
    tsdb = lesson.tsdb().set_index("what").value
    assert tsdb["head: series in memory"] > 100 and tsdb["retention (--storage.tsdb.retention.time)"] == "1d"
    assert "wal" in lesson.on_disk()
    parts = lesson.architecture()
    assert parts.set_index("add-on").loc["kube-state-metrics", "where"].startswith("http://127.0.0.1:")


def test_cpu_query_exercise_both_ways(lab: lk.Lab, loaded: str) -> None:
    lesson.wait_for_value(lesson.CPU_REFERENCE.format(ns=loaded), lambda f: len(f) >= 3, timeout=90)
    empty = lk.check(lab, "06-cpu-by-pod", namespace=loaded)
    assert not empty.passed and "my_query" in empty.problems[0]
    raw = lk.check(lab, "06-cpu-by-pod", namespace=loaded,
                   answer=f'rate(container_cpu_usage_seconds_total{{namespace="{loaded}"}}[1m])')
    assert not raw.passed and "aggregate" in raw.problems[0]
    broken = lk.check(lab, "06-cpu-by-pod", namespace=loaded, answer="sum by (pod) (rate(")
    assert not broken.passed
    # cAdvisor's pod cgroups (container="") counted too: every pod's CPU twice, as on a real cluster.
    doubled = lk.check(lab, "06-cpu-by-pod", namespace=loaded,
                       answer=f'sum by (pod) (rate(container_cpu_usage_seconds_total{{namespace="{loaded}"}}[1m]))')
    assert not doubled.passed and "expected about" in "\n".join(doubled.problems), doubled.problems
    answer = lessons.catalogue().get("06-cpu-by-pod").solve(exercises.Attempt(lab, loaded))
    assert lk.check(lab, "06-cpu-by-pod", namespace=loaded, answer=answer).passed


def test_p99_rule_exercise_both_ways(lab: lk.Lab, loaded: str) -> None:
    lesson.wait_for_value(lesson.P99_REFERENCE.format(ns=loaded), lambda f: len(f) == 2, timeout=90)
    bad = lk.check(lab, "06-p99-recording-rule", namespace=loaded, answer="groups:\n- name: x\n  rules:\n  - record: "
                   f"{lesson.P99_RECORD}\n    expr: histogram_quantile(0.99,\n")
    assert not bad.passed and "promtool" in bad.problems[0]
    no_le = lk.check(lab, "06-p99-recording-rule", namespace=loaded, answer=(
        f"groups:\n- name: x\n  rules:\n  - record: {lesson.P99_RECORD}\n    expr: histogram_quantile(0.99, sum by "
        f"(service) (rate(http_request_duration_seconds_bucket{{namespace=\"{loaded}\"}}[1m])))\n"))
    assert not no_le.passed
    solution = lesson.P99_SOLUTION.replace(lesson.NAMESPACE, loaded)
    try:
        result = lk.check(lab, "06-p99-recording-rule", namespace=loaded, answer=solution)
        assert result.passed, result
    finally:
        lesson.learner_rules_file().unlink(missing_ok=True)
        promql.reload()


def _cores(quantity: str) -> float:
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    return float(quantity[:-1]) * units[quantity[-1]] if quantity[-1] in units else float(quantity)


def _bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return float(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else float(quantity)


def k8s_custom(lab: lk.Lab) -> Any:
    from kubernetes import client as k8s

    return k8s.CustomObjectsApi(lab.api_client)


def test_the_kubelets_cadvisor_endpoint_is_scraped_as_kube_prometheus_scrapes_it(lab: lk.Lab, loaded: str) -> None:
    """One kubelet target per node at metrics_path="/metrics/cadvisor"; cAdvisor's labels from the pod; each pod's
    own cgroup sums its containers; network and CFS throttling follow the load."""
    nodes = {n.metadata.name for n in lab.core.list_node().items}
    targets = lesson.kubelet_targets(lab)
    assert set(targets.instance) == nodes and (targets.health == "up").all(), targets
    paths = {t["labels"].get("metrics_path") for t in promql.target_details() if t["labels"].get("job") == "kubelet"}
    assert paths == {"/metrics/cadvisor"}
    lk.rollout_status(lab, "checkout", namespace=loaded)
    pod = next(p for p in lab.core.list_namespaced_pod(loaded, label_selector="app=checkout").items
               if not p.metadata.deletion_timestamp)
    name = pod.metadata.name
    # Prometheus keeps no empty label: the pod's own cgroup (container="") comes without a container label.
    series = lesson.wait_for_value(f'container_cpu_usage_seconds_total{{namespace="{loaded}", pod="{name}"}}',
                                   lambda f: "container" in f and {"checkout", ""} <= set(f.container.fillna("")),
                                   timeout=90, what="checkout's container and pod cgroup")
    series["container"] = series.container.fillna("")
    row = series[series.container == "checkout"].iloc[0]
    status = next(s for s in pod.status.container_statuses if s.name == "checkout")
    cid = status.container_id.split("://")[-1]
    assert (row["name"], row["image"], row["job"]) == (cid, status.image, "kubelet")
    assert row["id"].endswith(f"/pod{pod.metadata.uid}/{cid}") and row["id"].startswith("/kubepods")
    pod_cgroup = series[series.container == ""].value.iloc[0]
    assert abs(pod_cgroup - series[series.container != ""].value.sum()) <= 1e-6 * max(pod_cgroup, 1.0)
    selector = f'namespace="{loaded}", pod="{name}"'
    ratio = lesson.wait_for_value(
        f"rate(container_network_transmit_bytes_total{{{selector}}}[30s])"
        f" / rate(container_network_receive_bytes_total{{{selector}}}[30s])",
        lambda f: not f.empty and f.value.iloc[0] > 0, timeout=90, what="checkout's network")
    assert abs(ratio.value.iloc[0] - 853 / 110) < 0.1, ratio  # an answer out per request in
    throttled = lesson.wait_for_value(
        f'rate(container_cpu_cfs_throttled_periods_total{{{selector}, container="checkout"}}[30s])'
        f' / rate(container_cpu_cfs_periods_total{{{selector}, container="checkout"}}[30s])',
        lambda f: not f.empty and f.value.iloc[0] > 0.5, timeout=90, what="checkout throttled at its CPU limit")
    assert throttled.value.iloc[0] <= 1.0
