"""Which pod holds which GPU: the device plugin's allocation and the kubelet pod-resources view, simulated.

On a real GPU node the NVIDIA device plugin hands each container specific devices when it starts,
the kubelet checkpoints that choice (``/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint``)
and reports it on its pod-resources socket, where dcgm-exporter reads it to add ``pod``,
``namespace`` and ``container`` labels. Here the same happens from the pods the real scheduler
bound: first free device in pod creation order, kept for the pod's lifetime.

Pods declare the load they simulate with annotations (per allocated GPU or MIG slice):

``gpu.labkit.io/utilization``   percent busy, 0-100 (default 0: the pod holds the GPU but idles)
``gpu.labkit.io/memory-mib``    framebuffer the pod uses, MiB (default 0)
``gpu.labkit.io/memory-bound``  0 (compute-bound) .. 1 (memory-bound) (default 0.3)"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.cluster.topology import DEFAULT_GPU_CUDA, DEFAULT_GPU_DRIVER
from labkit.settings import GPU_RESOURCE, MIG_RESOURCE_PREFIX, SHARED_GPU_RESOURCE
from labkit.sim.gpu import FakeMachine, FakeNvml, PodRef, Workload, collect_samples, render_samples
from labkit.sim.gpu.dcgm_exporter import MetricSample
from labkit.sim.gpu.machine import FakeProcess, cuda_version_number
from labkit.sim.gpu.profiles import GpuProfile
from labkit.sim.nvidia_toolkit import CUDA_LABEL, DRIVER_LABEL

ANNOTATION_UTILIZATION = "gpu.labkit.io/utilization"
ANNOTATION_MEMORY_MIB = "gpu.labkit.io/memory-mib"
ANNOTATION_MEMORY_BOUND = "gpu.labkit.io/memory-bound"
DEFAULT_MEMORY_BOUND = 0.3

# DCGM cannot read these per physical GPU once it is split into MIG instances; they move to the instances.
_MIG_PER_INSTANCE = {"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED",
                     "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
                     "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_DRAM_ACTIVE"}
_ATTRIBUTE_KEYS = {"container", "namespace", "pod", "err_code", "err_msg"}


def is_gpu_resource(name: str) -> bool:
    """True for the extended resources the NVIDIA device plugin advertises."""
    return name in (GPU_RESOURCE, SHARED_GPU_RESOURCE) or name.startswith(MIG_RESOURCE_PREFIX)


def mig_slices(profile: str) -> int:
    """Compute slices of a MIG profile name: ``3g.40gb`` -> 3."""
    return int(profile.split("g.", 1)[0])


@dataclass(frozen=True)
class MigInstance:
    """One MIG GPU instance carved out of a physical GPU."""

    gpu: int
    gi_id: int
    profile: str


@dataclass(frozen=True)
class GpuNode:
    """The devices one node's device plugin advertises."""

    name: str
    product: str
    count: int
    whole_gpus: tuple[int, ...]
    replicas: int = 0
    mig: tuple[MigInstance, ...] = ()
    driver: str = DEFAULT_GPU_DRIVER   # GPU feature discovery's nvidia.com/cuda.driver-version.full
    cuda: str = DEFAULT_GPU_CUDA       # ... and nvidia.com/cuda.runtime-version.full
    shared_resource: str = SHARED_GPU_RESOURCE  # time-slicing's replicas: nvidia.com/gpu unless renamed

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> GpuNode | None:
        """Read a Node object (as a dict); None when it advertises no NVIDIA resources."""
        capacity = node.get("status", {}).get("capacity", {}) or {}
        labels = node.get("metadata", {}).get("labels", {}) or {}
        if not any(is_gpu_resource(k) for k in capacity):
            return None
        # Time-slicing: each GPU advertised `replicas` times, as nvidia.com/gpu.shared (renameByDefault) or under
        # its own name nvidia.com/gpu (GPU feature discovery's sharing-strategy label says which).
        renamed = SHARED_GPU_RESOURCE in capacity
        sliced = renamed or labels.get("nvidia.com/gpu.sharing-strategy") == "time-slicing"
        replicas = int(labels.get("nvidia.com/gpu.replicas", 0)) if sliced else 0
        shared_resource = SHARED_GPU_RESOURCE if renamed or not replicas else GPU_RESOURCE
        whole = 0 if replicas and not renamed else int(capacity.get(GPU_RESOURCE, 0))
        shared_gpus = int(capacity.get(shared_resource, 0)) // replicas if replicas else 0
        count = int(labels.get("nvidia.com/gpu.count", whole + shared_gpus or 1))
        # Mixed MIG strategy: whole GPUs come first, the MIG-partitioned ones last.
        plain = whole + shared_gpus
        mig_gpus = list(range(plain, count)) or [count - 1]
        mig: list[MigInstance] = []
        used = dict.fromkeys(mig_gpus, 0)
        next_id = dict.fromkeys(mig_gpus, 1)
        for key in sorted(k for k in capacity if k.startswith(MIG_RESOURCE_PREFIX)):
            profile = key.removeprefix(MIG_RESOURCE_PREFIX)
            for _ in range(int(capacity[key])):
                gpu = next((g for g in mig_gpus if used[g] + mig_slices(profile) <= 7), mig_gpus[-1])
                used[gpu] += mig_slices(profile)
                mig.append(MigInstance(gpu, next_id[gpu], profile))
                next_id[gpu] += 1
        return cls(name=node["metadata"]["name"], product=labels.get("nvidia.com/gpu.product", ""),
                   count=max(count, 1), whole_gpus=tuple(range(plain)), replicas=replicas, mig=tuple(mig),
                   driver=labels.get(DRIVER_LABEL, DEFAULT_GPU_DRIVER), cuda=labels.get(CUDA_LABEL, DEFAULT_GPU_CUDA),
                   shared_resource=shared_resource)

    def devices(self, resource: str) -> list[str]:
        """Device ids for one resource, in the order the device plugin hands them out."""
        if resource == GPU_RESOURCE and not self.replicas:
            return [f"gpu:{g}" for g in self.whole_gpus]
        if resource == self.shared_resource and self.replicas:
            return [f"shared:{g}:{r}" for r in range(self.replicas) for g in self.whole_gpus]
        if resource.startswith(MIG_RESOURCE_PREFIX):
            profile = resource.removeprefix(MIG_RESOURCE_PREFIX)
            return [f"mig:{m.gpu}:{m.gi_id}" for m in self.mig if m.profile == profile]
        return []


@dataclass(frozen=True)
class GpuPod:
    """What the allocator needs from a Pod."""

    uid: str
    namespace: str
    name: str
    node: str
    created: str
    container: str
    requests: tuple[tuple[str, int], ...]
    workload: Workload

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> GpuPod | None:
        """A Running pod bound to a node that asks for NVIDIA resources; None for any other pod."""
        meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {}) or {}
        if status.get("phase") != "Running" or not spec.get("nodeName") or meta.get("deletionTimestamp"):
            return None
        requests: dict[str, int] = {}
        container = ""
        for c in spec.get("containers", []):
            limits = (c.get("resources") or {}).get("limits") or {}
            for key, value in limits.items():
                if is_gpu_resource(key) and int(value) > 0:
                    requests[key] = requests.get(key, 0) + int(value)
                    container = container or c["name"]
        if not requests:
            return None
        return cls(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"], node=spec["nodeName"],
                   created=str(meta.get("creationTimestamp", "")), container=container,
                   requests=tuple(sorted(requests.items())), workload=workload_from_annotations(meta))

    @property
    def ref(self) -> PodRef:
        return PodRef(self.namespace, self.name, self.container)


def workload_from_annotations(meta: Mapping[str, Any]) -> Workload:
    """The simulated load a pod declares per device; bad values raise ValueError naming the annotation."""
    ann = meta.get("annotations") or {}
    try:
        return Workload(
            utilization_pct=float(ann.get(ANNOTATION_UTILIZATION, 0)),
            memory_mib=int(float(ann.get(ANNOTATION_MEMORY_MIB, 0))),
            memory_bound=float(ann.get(ANNOTATION_MEMORY_BOUND, DEFAULT_MEMORY_BOUND)),
        )
    except ValueError as exc:
        where = f"{meta.get('namespace')}/{meta.get('name')}"
        raise ValueError(f"pod {where}: bad gpu.labkit.io annotation: {exc}") from exc


@dataclass
class Allocator:
    """The kubelet's device manager in miniature: stable device ids per pod, checkpointed to a file."""

    checkpoint: Path | None = None
    nodes: dict[str, GpuNode] = field(default_factory=dict)
    pods: dict[str, GpuPod] = field(default_factory=dict)
    devices: dict[str, list[str]] = field(default_factory=dict)  # pod uid -> device ids
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if self.checkpoint and self.checkpoint.exists():
            self.devices = {k: list(v) for k, v in json.loads(self.checkpoint.read_text()).items()}

    def reconcile(self, pods: Iterable[GpuPod], nodes: Iterable[GpuNode] | None = None) -> bool:
        """Drop pods that are gone, give new ones the first free devices in creation order; True if changed."""
        with self.lock:
            if nodes is not None:
                self.nodes = {n.name: n for n in nodes}
            live = {p.uid: p for p in pods if p.node in self.nodes}
            before = dict(self.devices)
            self.devices = {uid: devs for uid, devs in self.devices.items() if uid in live}
            self.pods = live
            for pod in sorted(live.values(), key=lambda p: (p.created, p.namespace, p.name)):
                if pod.uid not in self.devices:
                    self.devices[pod.uid] = self._allocate(pod)
            changed = before != self.devices
            if changed and self.checkpoint:
                self.checkpoint.write_text(json.dumps(self.devices, indent=1, sort_keys=True))
            return changed

    def _allocate(self, pod: GpuPod) -> list[str]:
        node = self.nodes[pod.node]
        taken = {d for uid, devs in self.devices.items() if self.pods[uid].node == pod.node for d in devs}
        chosen: list[str] = []
        for resource, amount in pod.requests:
            free = [d for d in node.devices(resource) if d not in taken]
            chosen += free[:amount]  # the scheduler already counted; a shortfall only follows a topology edit
        return chosen

    def rows(self) -> list[dict[str, Any]]:
        """One row per (pod, device): what ``ListPodResources`` would answer, flattened."""
        with self.lock:
            rows = []
            for uid, devs in self.devices.items():
                pod = self.pods[uid]
                for dev in devs:
                    kind, gpu, *rest = dev.split(":")
                    node = self.nodes[pod.node]
                    inst = next((m for m in node.mig if rest and f"mig:{m.gpu}:{m.gi_id}" == dev), None)
                    mig_name = f"{MIG_RESOURCE_PREFIX}{inst.profile if inst else '?'}"
                    resource = {"gpu": GPU_RESOURCE, "shared": node.shared_resource}.get(kind) or mig_name
                    rows.append({"node": pod.node, "namespace": pod.namespace, "pod": pod.name,
                                 "container": pod.container, "resource": resource, "gpu": int(gpu),
                                 "mig_instance": int(rest[0]) if kind == "mig" else None, "device_id": dev})
            return sorted(rows, key=lambda r: (r["node"], r["gpu"], r["device_id"]))

    def holders(self, node: str) -> dict[str, list[GpuPod]]:
        """Device id -> pods holding it on one node."""
        with self.lock:
            out: dict[str, list[GpuPod]] = {}
            for uid, devs in self.devices.items():
                if self.pods[uid].node == node:
                    for dev in devs:
                        out.setdefault(dev, []).append(self.pods[uid])
            return out

    def gpu_workloads(self, node: str) -> dict[int, Workload]:
        """The load each physical GPU of a node carries: its pods' loads, combined the way sharing combines them."""
        node_info = self.nodes.get(node)
        per_gpu: dict[int, list[tuple[Workload, float]]] = {}
        for dev, pods in self.holders(node).items():
            kind, gpu, *rest = dev.split(":")
            weight = 1.0
            if kind == "mig" and node_info:
                inst = next(m for m in node_info.mig if m.gpu == int(gpu) and m.gi_id == int(rest[0]))
                weight = mig_slices(inst.profile) / 7  # a 1g slice keeps 1/7 of the SMs busy at most
            per_gpu.setdefault(int(gpu), []).extend((p.workload, weight) for p in pods)
        return {gpu: combine(loads) for gpu, loads in per_gpu.items()}

    def gpu_processes(self, node: str, profile: GpuProfile | None = None) -> dict[int, list[FakeProcess]]:
        """The processes NVML lists per physical GPU of a node: one per pod, with its memory and MIG instance.

        With the node's ``profile``, a pod on a MIG instance holds at most the instance's memory."""
        node_info = self.nodes.get(node)
        out: dict[int, list[FakeProcess]] = {}
        for dev, pods in self.holders(node).items():
            kind, gpu, *rest = dev.split(":")
            gi_id = int(rest[0]) if kind == "mig" else None
            cap = None
            if gi_id is not None and node_info and profile is not None and profile.supports_mig:
                inst = next(m for m in node_info.mig if m.gpu == int(gpu) and m.gi_id == gi_id)
                cap = profile.mig_profile(inst.profile).memory_mib
            for pod in pods:
                memory = pod.workload.memory_mib if cap is None else min(cap, pod.workload.memory_mib)
                out.setdefault(int(gpu), []).append(
                    FakeProcess(pod_pid(pod.uid), memory, gi_id, f"{pod.namespace}/{pod.name}"))
        return out


def pod_pid(uid: str) -> int:
    """The process id NVML lists for a pod's simulated CUDA process: stable per pod, and above Linux's
    largest ``pid_max`` (2**22), so it never names a real process on this machine."""
    return 2**22 + 1 + zlib.crc32(uid.encode()) % 1_000_000


def combine(loads: list[tuple[Workload, float]]) -> Workload:
    """Loads that share one GPU: busy time adds up (to 100 %), memory adds up, memory-boundness averages."""
    busy = sum(w.utilization_pct * weight for w, weight in loads)
    if busy <= 0:
        return Workload(0.0, sum(w.memory_mib for w, _ in loads), DEFAULT_MEMORY_BOUND)
    bound = sum(w.memory_bound * w.utilization_pct * weight for w, weight in loads) / busy
    return Workload(min(100.0, busy), sum(w.memory_mib for w, _ in loads), min(1.0, bound))


def configure_machine(machine: FakeMachine, node: GpuNode) -> None:
    """The node's driver (its labels), and MIG on the simulated GPUs the node's device plugin reports as partitioned."""
    machine.driver_version, machine.cuda_version = node.driver, cuda_version_number(node.cuda)
    for gpu in sorted({m.gpu for m in node.mig}):
        if gpu < len(machine.devices):
            machine.configure_mig(gpu, [m.profile for m in node.mig if m.gpu == gpu])


def _with_attributes(sample: MetricSample, extra: Mapping[str, str]) -> MetricSample:
    base = [kv for kv in sample.labels if kv[0] not in _ATTRIBUTE_KEYS]
    attrs = {k: v for k, v in sample.labels if k in _ATTRIBUTE_KEYS} | dict(extra)
    return MetricSample(sample.name, tuple(base + sorted(attrs.items())), sample.value)


def node_samples(machine: FakeMachine, allocator: Allocator, *, hostname_label: str = "Hostname") -> list[MetricSample]:
    """dcgm-exporter samples of one node, with pod labels from the allocation and per-instance MIG series."""
    node = allocator.nodes.get(machine.node)
    holders = allocator.holders(machine.node)
    mig_gpus = {m.gpu for m in node.mig} if node else set()
    by_gpu: dict[int, list[GpuPod]] = {}
    for dev, pods in holders.items():
        kind, gpu, *_ = dev.split(":")
        if kind != "mig":
            by_gpu.setdefault(int(gpu), []).extend(pods)
    with machine.lock:
        samples = collect_samples(FakeNvml(machine), hostname=machine.node, hostname_label=hostname_label)
    out: list[MetricSample] = []
    for sample in samples:
        gpu = int(dict(sample.labels)["gpu"])
        if gpu in mig_gpus and sample.name in _MIG_PER_INSTANCE:
            continue
        pods = sorted(by_gpu.get(gpu, []), key=lambda p: (p.namespace, p.name))
        if not pods:
            out.append(sample)
        # A time-sliced GPU is reported once per pod that shares it, each copy with that pod's labels.
        out += [_with_attributes(sample, p.ref._asdict()) for p in pods]
    if node:
        out += _mig_samples(machine, node, holders, hostname_label)
    return out


def _mig_samples(machine: FakeMachine, node: GpuNode, holders: Mapping[str, list[GpuPod]],
                 hostname_label: str) -> list[MetricSample]:
    out = []
    driver = machine.driver_version
    for inst in node.mig:
        if inst.gpu >= len(machine.devices):
            continue
        device = machine.devices[inst.gpu]
        pods = holders.get(f"mig:{inst.gpu}:{inst.gi_id}", [])
        load = combine([(p.workload, 1.0) for p in pods])
        size = machine.profile.mig_profile(inst.profile).memory_mib if machine.profile.supports_mig else 0
        used = min(size, load.memory_mib)
        labels = [("gpu", str(inst.gpu)), ("UUID", device.uuid), ("pci_bus_id", device.pci_bus_id),
                  ("device", f"nvidia{inst.gpu}"), ("modelName", device.profile.name),
                  ("GPU_I_PROFILE", inst.profile), ("GPU_I_ID", str(inst.gi_id)),
                  (hostname_label, machine.node), ("DCGM_FI_DRIVER_VERSION", driver)]
        attrs = sorted(pods[0].ref._asdict().items()) if pods else []
        for name, value in (("DCGM_FI_DEV_FB_USED", str(used)), ("DCGM_FI_DEV_FB_FREE", str(size - used)),
                            ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", f"{load.utilization_pct / 100:f}")):
            out.append(MetricSample(name, tuple(labels + attrs), value))
    return out


def cluster_metrics(fleet: Mapping[str, FakeMachine], allocator: Allocator, *, node: str | None = None,
                    hostname_label: str = "Hostname") -> str:
    """The exposition of every GPU node (or one), pods attributed as dcgm-exporter does in Kubernetes mode."""
    names = [node] if node else list(fleet)
    samples: list[MetricSample] = []
    with allocator.lock:  # the daemon changes pods and their loads under this lock: a scrape sees both or neither
        for name in names:
            samples += node_samples(fleet[name], allocator, hostname_label=hostname_label)
    return render_samples(samples)
