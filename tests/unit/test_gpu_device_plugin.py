"""Time-slicing switched on per node (labkit.sim.gpu.device_plugin), as the GPU Operator does it: the configuration
the node's label picks, what the node then advertises and is labelled, and how the allocator hands out replicas."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.cluster.topology import load_topology, node_manifest
from labkit.sim.gpu import device_plugin as dp
from labkit.sim.gpu.attribution import GpuNode

CONFIG = """version: v1
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      replicas: 4
"""


def lab_node(name: str, **labels: str) -> dict[str, Any]:
    entry = next(n for n in load_topology() if n["name"] == name)
    node = node_manifest(entry, kubelet_version="v1.36.3")
    node["metadata"]["labels"].update(labels)
    return node


def switched(node: dict[str, Any], configs: dict[str, str] | None) -> dict[str, Any]:
    """The node after the daemon's patches (labels merged; GPU capacity replaced, None removes)."""
    labels, capacity = dp.desired(node, configs)
    meta, status = dp.node_patches(node, labels, capacity)
    merged = {**node["metadata"]["labels"], **(meta or {}).get("metadata", {}).get("labels", {})}
    cap = dict(node["status"]["capacity"])
    for key, value in ((status or {}).get("status", {}).get("capacity") or {}).items():
        cap.pop(key, None) if value is None else cap.__setitem__(key, value)
    return {"metadata": {"name": node["metadata"]["name"], "labels": merged}, "status": {"capacity": cap}}


@pytest.mark.parametrize(("text", "expected"), [
    (CONFIG, dp.TimeSlicing(4)),
    (CONFIG.replace("timeSlicing:", "timeSlicing:\n    renameByDefault: true"), dp.TimeSlicing(4, rename=True)),
    (CONFIG.replace("replicas: 4", "replicas: 1"), None),
    ("version: v1\n", None),
])
def test_the_plugins_configuration_is_read(text: str, expected: dp.TimeSlicing | None) -> None:
    assert dp.time_slicing(text) == expected


def test_a_configuration_the_plugin_cannot_read_says_why() -> None:
    with pytest.raises(ValueError, match="unable to parse config"):
        dp.time_slicing("sharing: [")
    with pytest.raises(ValueError, match="invalid replicas 0"):
        dp.time_slicing(CONFIG.replace("replicas: 4", "replicas: 0"))


def test_the_label_switches_a_node_to_four_replicas_of_each_gpu_and_back() -> None:
    node = lab_node("gpu-node-2", **{dp.CONFIG_LABEL: "any"})
    shared = switched(node, {"any": CONFIG})
    assert shared["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert shared["metadata"]["labels"]["nvidia.com/gpu.replicas"] == "4"
    assert shared["metadata"]["labels"]["nvidia.com/gpu.sharing-strategy"] == "time-slicing"
    assert shared["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-SHARED"
    gpu = GpuNode.from_node(shared)
    assert (gpu.count, gpu.replicas, gpu.shared_resource) == (2, 4, "nvidia.com/gpu")
    devices = gpu.devices("nvidia.com/gpu")
    assert len(devices) == 8 and devices[:3] == ["shared:0:0", "shared:1:0", "shared:0:1"]  # spread, then stack
    del shared["metadata"]["labels"][dp.CONFIG_LABEL]
    back = switched({**shared, "status": {"capacity": shared["status"]["capacity"],
                                          "allocatable": shared["status"]["capacity"]}}, {"any": CONFIG})
    assert back["status"]["capacity"]["nvidia.com/gpu"] == "2"
    assert back["metadata"]["labels"]["nvidia.com/gpu.replicas"] == "1"
    assert back["metadata"]["labels"]["nvidia.com/gpu.sharing-strategy"] == "none"
    assert back["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert GpuNode.from_node(back).devices("nvidia.com/gpu") == ["gpu:0", "gpu:1"]


def test_rename_by_default_advertises_the_shared_resource_and_mig_slices_stay() -> None:
    node = lab_node("gpu-node-3", **{dp.CONFIG_LABEL: "renamed"})
    renamed = CONFIG.replace("timeSlicing:", "timeSlicing:\n    renameByDefault: true")
    shared = switched(node, {"renamed": renamed})
    capacity = shared["status"]["capacity"]
    assert capacity["nvidia.com/gpu.shared"] == "4" and "nvidia.com/gpu" not in capacity  # its one whole GPU, x4
    assert capacity["nvidia.com/mig-1g.10gb"] == "7"
    assert GpuNode.from_node(shared).devices("nvidia.com/gpu.shared")[0] == "shared:0:0"


def test_a_node_without_the_label_or_without_the_configmap_keeps_its_devices() -> None:
    for node, configs in ((lab_node("gpu-node-1"), {"any": CONFIG}),
                          (lab_node("gpu-node-1", **{dp.CONFIG_LABEL: "any"}), None),
                          (lab_node("gpu-node-1", **{dp.CONFIG_LABEL: "other"}), {"any": CONFIG})):
        labels, capacity = dp.desired(node, configs)
        assert capacity == {"nvidia.com/gpu": "2"}
        assert dp.node_patches(node, labels, capacity) == (None, None)  # nothing to patch
    assert dp.desired(lab_node("cpu-node-1"), {"any": CONFIG}) is None
