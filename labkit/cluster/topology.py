"""The lab's nodes, from one editable file (``labkit/data/topology.yaml`` or ``$LABKIT_TOPOLOGY``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import ManifestError
from ..paths import data_file
from ..settings import GPU_RESOURCE, SHARED_GPU_RESOURCE

# The NVIDIA driver on every GPU node unless its `gpu:` entry says `driver:` and `cuda:` (the CUDA version that driver
# supports, as nvidia-smi's header says it). The simulated GPUs, the node labels and the container toolkit's start-up
# check all read it from here.
DEFAULT_GPU_DRIVER = "550.127.05"
DEFAULT_GPU_CUDA = "12.4"

# metrics-server asks each node's kubelet for /metrics/resource; KWOK serves the simulated one here.
METRICS_PATH = "/metrics/nodes/{name}/metrics/resource"


def load_topology(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Read the node list; errors name the file and the entry that is wrong."""
    source = path or os.environ.get("LABKIT_TOPOLOGY")
    text = Path(source).read_text() if source else data_file("topology.yaml").read_text()
    where = str(source or "labkit/data/topology.yaml")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ManifestError(f"{where} is not valid YAML: {exc}", fix=f"fix the syntax in {where}") from exc
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise ManifestError(f"{where} has no `nodes:` list", fix="see labkit/data/topology.yaml for the format")
    for i, node in enumerate(nodes):
        for key in ("name", "cpu", "memory"):
            if key not in node:
                raise ManifestError(f"{where}: node #{i} has no `{key}`", fix=f"add `{key}:` to that node")
    return nodes


def gpu_labels(gpu: dict[str, Any]) -> dict[str, str]:
    """The labels NVIDIA's GPU feature discovery puts on a GPU node."""
    labels = {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": str(gpu["count"]),
        "nvidia.com/gpu.product": gpu["product"],
        "nvidia.com/gpu.memory": str(gpu["memory_mib"]),
        "nvidia.com/gpu.family": gpu.get("family", "unknown"),
        "nvidia.com/gpu.compute.major": str(gpu.get("compute_major", 0)),
        "nvidia.com/gpu.compute.minor": str(gpu.get("compute_minor", 0)),
        "nvidia.com/gpu.deploy.device-plugin": "true",
        "nvidia.com/gpu.deploy.dcgm-exporter": "true",
        "nvidia.com/mig.capable": str(gpu.get("mig_capable", True)).lower(),
    }
    driver, cuda = str(gpu.get("driver", DEFAULT_GPU_DRIVER)), str(gpu.get("cuda", DEFAULT_GPU_CUDA))
    major, minor, revision = (driver.split(".") + ["", "", ""])[:3]
    labels |= {"nvidia.com/cuda.driver-version.full": driver, "nvidia.com/cuda.driver-version.major": major,
               "nvidia.com/cuda.driver-version.minor": minor, "nvidia.com/cuda.driver-version.revision": revision,
               "nvidia.com/cuda.runtime-version.full": cuda,
               "nvidia.com/cuda.runtime-version.major": cuda.split(".")[0],
               "nvidia.com/cuda.runtime-version.minor": (cuda.split(".") + ["0"])[1]}
    if gpu.get("mig"):
        labels["nvidia.com/mig.strategy"] = "mixed"
    # GPU feature discovery states the sharing of every GPU node: replicas 1 and strategy none when unshared.
    labels["nvidia.com/gpu.replicas"], labels["nvidia.com/gpu.sharing-strategy"] = "1", "none"
    if gpu.get("sharing") == "time-slicing":
        labels["nvidia.com/gpu.sharing-strategy"] = "time-slicing"
        labels["nvidia.com/gpu.replicas"] = str(gpu.get("replicas", 4))
    return labels


# Pod IPs as kind's nodes hand them out: one /24 per node from 10.244.0.0/16 (KWOK takes a pod's IP from its node's
# podCIDR; without one, from 10.0.0.0/24, the API server's Service range, so a pod could get the kubernetes
# Service's 10.0.0.1).
POD_CIDR = "10.244.{index}.0/24"


def node_manifest(node: dict[str, Any], *, kubelet_version: str, index: int = 0) -> dict[str, Any]:
    """A Node object as a kubelet would register it, marked for KWOK to manage."""
    name = node["name"]
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "labkit-gpu" if node.get("gpu") else "labkit-cpu",
        "type": "kwok",
        **node.get("labels", {}),
    }
    capacity = {"cpu": str(node["cpu"]), "memory": str(node["memory"]), "pods": str(node.get("pods", 110))}
    gpu = node.get("gpu")
    if gpu:
        labels.update(gpu_labels(gpu))
        resource = SHARED_GPU_RESOURCE if gpu.get("sharing") == "time-slicing" else GPU_RESOURCE
        # Mixed MIG strategy: GPUs split into MIG instances are advertised as those, not as whole GPUs.
        whole = gpu["count"] - int(gpu.get("mig_gpus", 0))
        count = whole * (gpu.get("replicas", 4) if gpu.get("sharing") == "time-slicing" else 1)
        if count:
            capacity[resource] = str(count)
        for profile, slices in (gpu.get("mig") or {}).items():
            capacity[f"nvidia.com/mig-{profile}"] = str(slices)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                "node.alpha.kubernetes.io/ttl": "0",
                "metrics.k8s.io/resource-metrics-path": METRICS_PATH.format(name=name),
            },
        },
        "spec": {"podCIDR": POD_CIDR.format(index=index), "podCIDRs": [POD_CIDR.format(index=index)]},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": kubelet_version,
                "kubeProxyVersion": kubelet_version,
                "containerRuntimeVersion": "kwok://simulated",
                "osImage": "KWOK simulated node",
                "kernelVersion": "simulated",
            },
        },
    }
