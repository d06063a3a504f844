"""Topology file -> Node objects, as a kubelet and NVIDIA's GPU feature discovery would label them."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.cluster.topology import load_topology, node_manifest
from labkit.errors import ManifestError


def test_default_topology_has_cpu_gpu_and_mig_nodes() -> None:
    nodes = load_topology()
    gpu = [n for n in nodes if n.get("gpu")]
    assert len(gpu) == 3 and len(nodes) - len(gpu) >= 2
    assert [n["name"] for n in gpu if n["gpu"].get("mig")] == ["gpu-node-3"]


def test_gpu_node_advertises_gpus_and_gfd_labels() -> None:
    node = next(n for n in load_topology() if n.get("gpu"))
    obj = node_manifest(node, kubelet_version="v1.36.3")
    assert obj["status"]["capacity"]["nvidia.com/gpu"] == str(node["gpu"]["count"])
    labels = obj["metadata"]["labels"]
    assert labels["nvidia.com/gpu.present"] == "true"
    assert labels["nvidia.com/gpu.product"] == node["gpu"]["product"]
    ann = obj["metadata"]["annotations"]
    assert ann["kwok.x-k8s.io/node"] == "fake"
    assert ann["metrics.k8s.io/resource-metrics-path"] == f"/metrics/nodes/{node['name']}/metrics/resource"


def test_time_slicing_and_mig_resources() -> None:
    node = {"name": "g", "cpu": "8", "memory": "64Gi",
            "gpu": {"count": 2, "product": "NVIDIA-A100-SXM4-80GB", "memory_mib": 81920,
                    "sharing": "time-slicing", "replicas": 4, "mig": {"1g.10gb": 7}}}
    obj = node_manifest(node, kubelet_version="v1.36.3")
    cap = obj["status"]["capacity"]
    assert cap["nvidia.com/gpu.shared"] == "8" and "nvidia.com/gpu" not in cap
    assert cap["nvidia.com/mig-1g.10gb"] == "7"
    assert obj["metadata"]["labels"]["nvidia.com/gpu.replicas"] == "4"


def test_cpu_node_has_no_gpu() -> None:
    node = next(n for n in load_topology() if not n.get("gpu"))
    obj = node_manifest(node, kubelet_version="v1.36.3")
    assert not [k for k in obj["status"]["capacity"] if k.startswith("nvidia.com")]


@pytest.mark.parametrize("text, message", [
    ("nodes: [", "not valid YAML"),
    ("nodes: []", "no `nodes:` list"),
    ("nodes:\n- name: a\n  cpu: '1'\n", "node #0 has no `memory`"),
])
def test_bad_topology_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        load_topology(path)
