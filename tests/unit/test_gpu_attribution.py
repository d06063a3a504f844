"""Pod -> GPU attribution as the device plugin and pod-resources would report it, without a cluster."""

from __future__ import annotations

import re
import subprocess

import pytest

from labkit.cluster.topology import load_topology, node_manifest
from labkit.sim.gpu import FakeMachine
from labkit.sim.gpu.attribution import (
    Allocator,
    GpuNode,
    GpuPod,
    cluster_metrics,
    combine,
    configure_machine,
    workload_from_annotations,
)
from labkit.sim.gpu.physics import Workload

UPSTREAM_STYLE_LINTS = re.compile(
    r"^DCGM_\w+ (label names should be written in 'snake_case' not 'camelCase'"
    r"|counter metrics should have \"_total\" suffix|metric name should not include type 'counter')$")


def _node(name: str) -> GpuNode:
    spec = next(n for n in load_topology() if n["name"] == name)
    node = GpuNode.from_node(node_manifest(spec, kubelet_version="v1.36.3"))
    assert node is not None
    return node


def _pod(name: str, created: str, *, node: str = "gpu-node-1", resource: str = "nvidia.com/gpu", amount: int = 1,
         phase: str = "Running", annotations: dict | None = None) -> dict:
    return {"metadata": {"uid": f"uid-{name}", "namespace": "ml", "name": name, "creationTimestamp": created,
                         "annotations": annotations or {}},
            "spec": {"nodeName": node, "containers": [
                {"name": "sidecar", "resources": {}},
                {"name": "main", "resources": {"limits": {resource: str(amount), "cpu": "1"}}}]},
            "status": {"phase": phase}}


def _pods(*objs: dict) -> list[GpuPod]:
    return [p for p in (GpuPod.from_pod(o) for o in objs) if p]


def test_first_free_gpu_in_creation_order_and_stable_after_a_delete(tmp_path) -> None:
    nodes = [_node("gpu-node-1")]
    alloc = Allocator(checkpoint=tmp_path / "checkpoint.json")
    b, a = _pod("b", "2026-01-01T00:00:02Z"), _pod("a", "2026-01-01T00:00:01Z")
    alloc.reconcile(_pods(b, a), nodes)
    assert {r["pod"]: r["gpu"] for r in alloc.rows()} == {"a": 0, "b": 1}
    alloc.reconcile(_pods(b), nodes)  # a ends: b keeps GPU 1, as a running container keeps its device
    assert {r["pod"]: r["gpu"] for r in alloc.rows()} == {"b": 1}
    alloc.reconcile(_pods(b, _pod("c", "2026-01-01T00:00:03Z")), nodes)
    assert {r["pod"]: r["gpu"] for r in alloc.rows()} == {"b": 1, "c": 0}
    # A restarted exporter reads the checkpoint, like the kubelet's kubelet_internal_checkpoint.
    again = Allocator(checkpoint=tmp_path / "checkpoint.json")
    again.reconcile(_pods(b, _pod("c", "2026-01-01T00:00:03Z")), nodes)
    assert again.devices == alloc.devices


def test_only_running_bound_gpu_pods_count_and_container_is_the_requester() -> None:
    assert GpuPod.from_pod(_pod("p", "t", phase="Pending")) is None
    assert GpuPod.from_pod(_pod("p", "t", resource="cpu")) is None
    pod = GpuPod.from_pod(_pod("p", "t", amount=2))
    assert pod is not None and pod.container == "main" and pod.requests == (("nvidia.com/gpu", 2),)


def test_annotations_declare_the_load() -> None:
    load = workload_from_annotations({"annotations": {"gpu.labkit.io/utilization": "85",
                                                      "gpu.labkit.io/memory-mib": "40000",
                                                      "gpu.labkit.io/memory-bound": "0.7"}})
    assert load == Workload(85.0, 40000, 0.7)
    assert workload_from_annotations({}).utilization_pct == 0  # holding a GPU is not using it
    with pytest.raises(ValueError, match="gpu.labkit.io"):
        workload_from_annotations({"name": "x", "annotations": {"gpu.labkit.io/utilization": "150"}})


def test_mig_node_layout_matches_the_mixed_strategy() -> None:
    node = _node("gpu-node-3")
    assert node.count == 2 and node.whole_gpus == (0,)
    assert [(m.gpu, m.gi_id, m.profile) for m in node.mig] == [(1, i, "1g.10gb") for i in range(1, 8)]
    assert node.devices("nvidia.com/gpu") == ["gpu:0"]


def test_shared_loads_add_up_and_cap_at_100() -> None:
    total = combine([(Workload(70, 1000, 0.2), 1.0), (Workload(60, 2000, 0.8), 1.0)])
    assert total.utilization_pct == 100 and total.memory_mib == 3000 and 0.2 < total.memory_bound < 0.8


def _metrics(alloc: Allocator, fleet: dict[str, FakeMachine]) -> dict[str, list[str]]:
    text = cluster_metrics(fleet, alloc)
    lines: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            lines.setdefault(line.split("{", 1)[0], []).append(line)
    return lines


@pytest.fixture
def cluster() -> tuple[Allocator, dict[str, FakeMachine]]:
    nodes = [_node("gpu-node-1"), _node("gpu-node-3")]
    fleet = {"gpu-node-1": FakeMachine(node="gpu-node-1"),
             "gpu-node-3": FakeMachine(node="gpu-node-3", profile="A100-SXM-80GB")}
    configure_machine(fleet["gpu-node-3"], nodes[1])
    alloc = Allocator()
    alloc.reconcile(_pods(
        _pod("trainer", "1", annotations={"gpu.labkit.io/utilization": "90", "gpu.labkit.io/memory-mib": "60000"}),
        _pod("infer", "2", node="gpu-node-3", resource="nvidia.com/mig-1g.10gb",
             annotations={"gpu.labkit.io/memory-mib": "8000", "gpu.labkit.io/utilization": "50"})), nodes)
    for name, machine in fleet.items():
        machine.set_workloads(alloc.gpu_workloads(name))
        machine.step(30)
    return alloc, fleet


def test_exporter_labels_the_pod_on_its_gpu_and_mig_instance(cluster) -> None:
    alloc, fleet = cluster
    fb = _metrics(alloc, fleet)["DCGM_FI_DEV_FB_USED"]
    trainer = [line for line in fb if 'pod="trainer"' in line]
    assert len(trainer) == 1 and 'Hostname="gpu-node-1"' in trainer[0] and 'gpu="0"' in trainer[0]
    assert trainer[0].endswith(" 60000") and 'container="main",namespace="ml",pod="trainer"}' in trainer[0]
    infer = [line for line in fb if 'pod="infer"' in line]
    assert len(infer) == 1 and 'GPU_I_PROFILE="1g.10gb",GPU_I_ID="1"' in infer[0] and infer[0].endswith(" 8000")
    # A MIG-enabled GPU has no whole-GPU framebuffer series any more: its 7 instances report instead.
    assert sum('Hostname="gpu-node-3",' in line and 'gpu="1"' in line and "GPU_I_ID" not in line for line in fb) == 0
    assert sum('gpu="1"' in line and 'Hostname="gpu-node-3"' in line for line in fb) == 7
    util = _metrics(alloc, fleet)["DCGM_FI_DEV_GPU_UTIL"]
    assert any('pod="trainer"' in line and line.endswith(" 90") for line in util)


def test_promtool_parses_the_cluster_exposition(cluster, promtool: str) -> None:
    result = subprocess.run([promtool, "check", "metrics"], input=cluster_metrics(cluster[1], cluster[0]),
                            capture_output=True, text=True, check=False)
    assert result.returncode in (0, 3), result.stdout + result.stderr  # 1 would mean it does not parse
    lines = (result.stdout + result.stderr).strip().splitlines()
    # dcgm-exporter's own names trip promtool's style lints (camelCase labels, counters without _total).
    assert all(UPSTREAM_STYLE_LINTS.match(line) for line in lines), lines
