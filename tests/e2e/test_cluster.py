"""The embedded cluster does what a real one does: real controllers, real scheduler, metrics-server."""

from __future__ import annotations

import time

import pytest

import labkit as lk

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        kwok.x-k8s.io/usage-cpu: 150m
        kwok.x-k8s.io/usage-memory: 48Mi
    spec:
      containers:
      - name: web
        image: nginx:1.27
        resources:
          requests: {cpu: 100m, memory: 64Mi}
"""


def _gpu_pod(name: str, gpus: int) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "cuda", "image": "nvidia/cuda:12.4.1-base-ubuntu22.04",
                                 "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
    }


def test_deployment_gets_replicaset_and_running_pods(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, DEPLOYMENT, namespace=namespace)
    dep = lk.wait_for(lab, "Deployment", "web", namespace=namespace, condition="condition=Available", timeout=60)
    assert dep["status"]["readyReplicas"] == 3
    rs = lab.apps.list_namespaced_replica_set(namespace).items
    assert len(rs) == 1 and rs[0].metadata.owner_references[0].name == "web"  # made by the real controller
    pods = lk.pods_table(lab, namespace)
    assert list(pods["phase"]) == ["Running"] * 3
    assert set(pods["node"]) <= set(lk.nodes_table(lab)["node"])


def test_metrics_server_reports_pod_usage(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, DEPLOYMENT, namespace=namespace)
    lk.wait_for(lab, "Deployment", "web", namespace=namespace, condition="condition=Available", timeout=60)
    deadline = time.monotonic() + 90  # metrics-server scrapes every 15 s and needs two points for CPU
    usage = lk.pod_usage_table(lab, namespace)
    while len(usage) < 3 and time.monotonic() < deadline:
        time.sleep(3)
        usage = lk.pod_usage_table(lab, namespace)
    assert len(usage) == 3, f"metrics-server returned usage for {len(usage)} of 3 pods"
    assert usage["memory_mib"].tolist() == pytest.approx([48, 48, 48])
    assert all(100 <= cpu <= 200 for cpu in usage["cpu_m"]), usage


def test_gpu_pod_lands_only_on_gpu_nodes(lab: lk.Lab, namespace: str) -> None:
    gpu_nodes = set(lk.nodes_table(lab).query("gpus > 0 or gpu_slices > 0")["node"])
    assert gpu_nodes, "the topology should have GPU nodes"
    for i in range(3):
        lk.apply(lab, _gpu_pod(f"gpu-{i}", 1), namespace=namespace)
    for i in range(3):
        pod = lk.wait_for(lab, "Pod", f"gpu-{i}", namespace=namespace, condition="condition=Ready", timeout=60)
        assert pod["spec"]["nodeName"] in gpu_nodes


def test_pod_asking_for_100_gpus_stays_pending(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, _gpu_pod("greedy", 100), namespace=namespace)

    def failed_scheduling() -> list:
        events = lab.core.list_namespaced_event(namespace, field_selector="involvedObject.name=greedy").items
        return [e for e in events if e.reason == "FailedScheduling"]

    deadline = time.monotonic() + 30
    while not failed_scheduling() and time.monotonic() < deadline:
        time.sleep(0.5)
    events = failed_scheduling()
    assert events, "the scheduler should have recorded FailedScheduling"
    assert "nvidia.com/gpu" in events[0].message
    assert lab.core.read_namespaced_pod("greedy", namespace).status.phase == "Pending"


def test_wait_times_out_with_last_status(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, _gpu_pod("greedy", 100), namespace=namespace)
    with pytest.raises(lk.WaitTimeout) as err:
        lk.wait_for(lab, "Pod", "greedy", namespace=namespace, condition="condition=Ready", timeout=3)
    assert "PodScheduled=False" in str(err.value) and "kubectl describe pod/greedy" in str(err.value)


def test_wait_for_delete(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, _gpu_pod("short", 1), namespace=namespace)
    lk.wait_for(lab, "Pod", "short", namespace=namespace, condition="condition=Ready", timeout=60)
    lab.core.delete_namespaced_pod("short", namespace)
    assert lk.wait_for(lab, "Pod", "short", namespace=namespace, condition="delete", timeout=60) is None
    # Already gone (or never there): the wait returns at once, as `kubectl wait --for=delete` does.
    assert lk.wait_for(lab, "Pod", "short", namespace=namespace, condition="delete", timeout=60) is None


def test_apply_typo_in_kind_names_the_fix(lab: lk.Lab, namespace: str) -> None:
    with pytest.raises(lk.ManifestError, match="did you mean `kind: Deployment`"):
        lk.apply(lab, DEPLOYMENT.replace("kind: Deployment", "kind: Deploymnet"), namespace=namespace)


def test_apply_invalid_field_reports_server_message(lab: lk.Lab, namespace: str) -> None:
    with pytest.raises(lk.ManifestError, match="replicas"):
        lk.apply(lab, DEPLOYMENT.replace("replicas: 3", "replicas: -1"), namespace=namespace)


def test_apply_twice_is_idempotent(lab: lk.Lab, namespace: str) -> None:
    assert lk.apply(lab, DEPLOYMENT, namespace=namespace) == ["deployment/web"]
    assert lk.apply(lab, DEPLOYMENT, namespace=namespace) == ["deployment/web"]
