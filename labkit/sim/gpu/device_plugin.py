"""The lab's NVIDIA device plugin configuration: time-slicing switched on per node, as the GPU Operator does it.

NVIDIA's device plugin reads its configurations from one ConfigMap (the GPU Operator's ClusterPolicy names it in
``devicePlugin.config.name``; NVIDIA's time-slicing guide creates ``time-slicing-config`` in ``gpu-operator``). A
node's label ``nvidia.com/device-plugin.config=KEY`` picks the key whose configuration applies there, and the plugin
restarts with it. With ``sharing.timeSlicing.resources: [{name: nvidia.com/gpu, replicas: N}]`` it advertises each
GPU N times: ``nvidia.com/gpu`` = GPUs x N (``nvidia.com/gpu.shared`` with ``renameByDefault: true``), and GPU
feature discovery labels the node ``nvidia.com/gpu.replicas=N``, ``nvidia.com/gpu.sharing-strategy=time-slicing``
and ``nvidia.com/gpu.product=<product>-SHARED`` (unshared: ``1``, ``none`` and the plain product). Nothing isolates
the replicas: the pods on one GPU share its memory and take turns on its SMs. Removing the label gives the node its
own devices back.

Here the lab's GPU daemon plays the plugin and GPU feature discovery: :func:`desired` says what a node should
advertise, given its topology entry and the configuration its label picks; the daemon patches the Node to match.
What this does not simulate: the plugin's restart, MPS, and ``failRequestsGreaterThanOne``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from labkit.cluster.topology import gpu_labels, load_topology, node_manifest
from labkit.settings import GPU_RESOURCE, SHARED_GPU_RESOURCE

CONFIG_NAMESPACE = "gpu-operator"
CONFIG_NAME = "time-slicing-config"
CONFIG_LABEL = "nvidia.com/device-plugin.config"
SHARED_SUFFIX = "-SHARED"
# What time-slicing changes among a GPU node's labels (GPU feature discovery's).
SHARING_STRATEGY = "nvidia.com/gpu.sharing-strategy"
SHARING_LABELS = ("nvidia.com/gpu.replicas", SHARING_STRATEGY, "nvidia.com/gpu.product")


@dataclass(frozen=True)
class TimeSlicing:
    replicas: int
    rename: bool = False


def time_slicing(config_text: str) -> TimeSlicing | None:
    """The time-slicing of ``nvidia.com/gpu`` in one device-plugin configuration (None: no sharing).

    Raises ValueError with the plugin's complaint when the configuration cannot be read."""
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"unable to parse config: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError("unable to parse config: not a mapping")
    sharing = (config.get("sharing") or {}).get("timeSlicing") or {}
    for resource in sharing.get("resources") or []:
        if resource.get("name") == GPU_RESOURCE:
            replicas = int(resource.get("replicas", 1))
            if replicas < 1:
                raise ValueError(f"invalid replicas {replicas} for {GPU_RESOURCE}: must be at least 1")
            rename = bool(resource.get("rename")) or bool(sharing.get("renameByDefault"))
            return TimeSlicing(replicas, rename) if replicas > 1 else None
    return None


def desired(node: Mapping[str, Any], configs: Mapping[str, str] | None,
            topology: list[dict[str, Any]] | None = None) -> tuple[dict[str, str], dict[str, str]] | None:
    """(labels, GPU capacity) the node should have; None for a node the topology gives no GPUs.

    ``configs``: the ConfigMap's data (None when it does not exist)."""
    name = node["metadata"]["name"]
    entry = next((n for n in (topology if topology is not None else load_topology()) if n["name"] == name), None)
    if not entry or not entry.get("gpu") or entry["gpu"].get("sharing"):
        return None  # not a GPU node, or one the topology shares already
    base = node_manifest(entry, kubelet_version="")["status"]["capacity"]
    capacity = {k: v for k, v in base.items() if k.startswith("nvidia.com/")}
    own = gpu_labels(entry["gpu"])
    labels: dict[str, str | None] = {k: own[k] for k in SHARING_LABELS}
    key = (node["metadata"].get("labels") or {}).get(CONFIG_LABEL)
    if key and configs and key in configs:
        sharing = time_slicing(configs[key])
        whole = int(capacity.get(GPU_RESOURCE, 0))
        if sharing and whole:
            del capacity[GPU_RESOURCE]
            capacity[SHARED_GPU_RESOURCE if sharing.rename else GPU_RESOURCE] = str(whole * sharing.replicas)
            labels |= {"nvidia.com/gpu.replicas": str(sharing.replicas),
                       SHARING_STRATEGY: "time-slicing",
                       "nvidia.com/gpu.product": labels["nvidia.com/gpu.product"] + SHARED_SUFFIX}
    return labels, capacity


def node_patches(node: Mapping[str, Any], labels: Mapping[str, str],
                 capacity: Mapping[str, str]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(metadata patch, status patch), each None when the node already matches: merge patches (None deletes)."""
    have = node["metadata"].get("labels") or {}
    label_patch = {k: v for k, v in labels.items() if have.get(k) != v}
    status = node.get("status") or {}
    have_gpu = {k: v for k, v in (status.get("capacity") or {}).items() if k.startswith("nvidia.com/")}
    have_alloc = {k: v for k, v in (status.get("allocatable") or {}).items() if k.startswith("nvidia.com/")}
    status_patch = None
    if have_gpu != dict(capacity) or have_alloc != dict(capacity):
        gone = dict.fromkeys((set(have_gpu) | set(have_alloc)) - set(capacity))  # None deletes in a merge patch
        status_patch = {"status": {"capacity": {**gone, **capacity}, "allocatable": {**gone, **capacity}}}
    return ({"metadata": {"labels": label_patch}} if label_patch else None), status_patch
