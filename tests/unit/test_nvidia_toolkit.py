"""The NVIDIA runtime's start-up check (labkit.sim.nvidia_toolkit) and its one source, the topology's driver:
the node labels, the simulated GPUs and the kubelet's StartError all say the same driver."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.cluster import stages
from labkit.cluster.topology import DEFAULT_GPU_CUDA, DEFAULT_GPU_DRIVER, gpu_labels, load_topology
from labkit.sim import kubelet as k
from labkit.sim import nvidia_toolkit as toolkit
from labkit.sim.gpu import FakeMachine
from labkit.sim.gpu.attribution import GpuNode, configure_machine

H100 = {"count": 2, "product": "NVIDIA-H100-80GB-HBM3", "memory_mib": 81559, "compute_major": 9, "compute_minor": 0}
NODE_550 = gpu_labels(H100)  # the lab's default driver: 550.127.05, CUDA 12.4


@pytest.fixture(scope="module")
def catalog() -> stages.Catalog:
    return stages.load_catalog()


def gpu_container(image: str, **extra: Any) -> dict[str, Any]:
    return {"name": "cuda", "image": image, "resources": {"limits": {"nvidia.com/gpu": 1}}, **extra}


def test_the_node_labels_say_the_topologys_driver_as_gpu_feature_discovery_writes_them() -> None:
    assert NODE_550["nvidia.com/cuda.driver-version.full"] == DEFAULT_GPU_DRIVER == "550.127.05"
    assert NODE_550["nvidia.com/cuda.driver-version.major"] == "550"
    assert NODE_550["nvidia.com/cuda.driver-version.revision"] == "05"
    assert NODE_550["nvidia.com/cuda.runtime-version.full"] == DEFAULT_GPU_CUDA == "12.4"
    assert (NODE_550["nvidia.com/cuda.runtime-version.major"], NODE_550["nvidia.com/cuda.runtime-version.minor"]) == (
        "12", "4")
    newer = gpu_labels({**H100, "driver": "570.195.03", "cuda": "12.8"})
    assert newer["nvidia.com/cuda.runtime-version.full"] == "12.8"
    assert all("cuda" not in str(n.get("gpu", {})) for n in load_topology()), "the shipped nodes use the default"


def test_the_simulated_gpus_report_the_driver_their_node_is_labelled_with() -> None:
    node = {"metadata": {"name": "gpu-x", "labels": gpu_labels({**H100, "driver": "570.195.03", "cuda": "12.8"})},
            "status": {"capacity": {"nvidia.com/gpu": "2"}}}
    machine = FakeMachine(count=1, node="gpu-x")
    configure_machine(machine, GpuNode.from_node(node))
    assert (machine.driver_version, machine.cuda_version) == ("570.195.03", 12080)


@pytest.mark.parametrize(("requirement", "failed"), [
    ("cuda>=12.4", None),
    ("cuda>=12.6", "cuda>=12.6"),
    ("cuda>=12.6 driver>=550", None),                          # any one alternative is enough
    ("cuda>=12.6 brand=tesla,driver>=550,driver<551", "cuda>=12.6"),  # brand is not known here: that one fails
    ("cuda>=11.0,driver>=560", "driver>=560"),                 # all conditions of an alternative must hold
    ("arch>=9.0", None),
    ("arch>=10.0", "arch>=10.0"),
])
def test_requirements_are_read_as_libnvidia_container_reads_them(requirement: str, failed: str | None) -> None:
    assert toolkit.failed_condition({"NVIDIA_REQUIRE_CUDA": requirement}, NODE_550) == failed


def test_a_cuda_image_newer_than_the_driver_is_refused_with_runcs_words(catalog: stages.Catalog) -> None:
    why = k.start_problem(gpu_container("nvidia/cuda:12.6.3-base-ubuntu22.04"), catalog, NODE_550)
    assert why is not None and why.startswith(k.RUNC_PREFIX)
    assert ("nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.6, please update your driver "
            "to a newer version, or use an earlier cuda container: unknown") in why
    # NVIDIA's device-plugin README sample keeps its base image's requirement: CUDA 12.5 needs a 555+ driver.
    assert "cuda>=12.5" in k.start_problem(
        gpu_container("nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0"), catalog, NODE_550)


@pytest.mark.parametrize(("container", "labels"), [
    (gpu_container("nvidia/cuda:12.4.1-base-ubuntu22.04"), NODE_550),                    # built for the node's CUDA
    (gpu_container("nvidia/cuda:11.8.0-base-ubuntu22.04"), NODE_550),                    # older runs on newer
    (gpu_container("nvidia/cuda:12.6.3-base-ubuntu22.04"),
     gpu_labels({**H100, "driver": "570.195.03", "cuda": "12.8"})),                      # a newer driver
    (gpu_container("nvidia/cuda:12.6.3-base-ubuntu22.04",
                   env=[{"name": "NVIDIA_DISABLE_REQUIRE", "value": "true"}]), NODE_550),  # the check turned off
    (gpu_container("nvidia/cuda:12.6.3-base-ubuntu22.04",
                   env=[{"name": "NVIDIA_REQUIRE_CUDA", "value": "cuda>=12.0"}]), NODE_550),  # the pod's env wins
    ({"name": "cuda", "image": "nvidia/cuda:12.6.3-base-ubuntu22.04"}, NODE_550),       # no GPU asked: no hook
    (gpu_container("nvidia/cuda:12.6.3-base-ubuntu22.04"), {}),                          # a node without NVIDIA
    (gpu_container("nginx:1.27"), NODE_550),                                              # no requirement at all
])
def test_what_the_hook_lets_start(catalog: stages.Catalog, container: dict[str, Any],
                                  labels: dict[str, str]) -> None:
    assert k.start_problem(container, catalog, labels) is None


def test_a_refused_gpu_pod_is_walked_to_start_error_then_back_off(catalog: stages.Catalog) -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
           "spec": {"nodeName": "gpu-node-1", "restartPolicy": "Always",
                    "containers": [gpu_container("nvidia/cuda:12.6.3-base-ubuntu22.04", command=["nvidia-smi"])]},
           "status": {}}
    nodes = {"gpu-node-1": NODE_550}
    ns = k.Namespace(objects=k.Objects())
    assert k.pod_verdict(pod, ns, catalog, NODE_550) == k.HELD
    assert k.pod_verdict(pod, ns, catalog, None) == k.PASSED  # the node's labels not known: nothing to check
    kubelet = k.Kubelet(catalog, nodes)
    walk = k.Walk("u-1", "ns", "p", seen=0.0)
    step = kubelet.step(walk, pod, ns, 100.0)
    (status,) = step.status["containerStatuses"]
    assert status["lastState"]["terminated"]["reason"] == "StartError"
    assert status["lastState"]["terminated"]["exitCode"] == 128
    assert "unsatisfied condition: cuda>=12.6" in status["lastState"]["terminated"]["message"]
    assert any(e[1] == "Failed" and "requirement error" in e[3] for e in step.events)
