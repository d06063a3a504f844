"""GPU monitoring end to end: real scheduler -> simulated device plugin allocation -> exporter -> real Prometheus.

Without Prometheus these tests fail and say how to install it; they never skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import labkit as lk
from labkit import addons
from labkit.cluster.ports import free_port
from labkit.observability import promql


def _gpu_pod(name: str, resource: str = "nvidia.com/gpu", *, memory_mib: int = 30000) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"gpu.labkit.io/utilization": "80",
                                                       "gpu.labkit.io/memory-mib": str(memory_mib)}},
            "spec": {"containers": [{"name": "cuda", "image": "nvidia/cuda:12.4.1-base-ubuntu22.04",
                                     "resources": {"limits": {resource: "1"}}}]}}


@pytest.fixture(scope="module")
def running_addons(lab: lk.Lab) -> dict[str, str]:
    """The GPU exporter and Prometheus, started on demand as the GPU lesson starts them."""
    if why := addons.REGISTRY["prometheus"].missing():
        pytest.fail(f"these tests need Prometheus: {why}", pytrace=False)
    return addons.require("gpu-exporter", "prometheus")


def _scrape_until(url: str, needle: str, *, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 -- loopback
            text = resp.read().decode()
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def test_scheduled_gpu_pod_is_attributed_in_exporter_and_prometheus(lab, namespace, running_addons) -> None:
    lk.apply(lab, _gpu_pod("trainer", memory_mib=31337), namespace=namespace)
    pod = lk.wait_for(lab, "Pod", "trainer", namespace=namespace, condition="condition=Ready", timeout=60)
    node = pod["spec"]["nodeName"]
    text = _scrape_until(running_addons["gpu-exporter"], f'namespace="{namespace}",pod="trainer"')
    lines = [line for line in text.splitlines()
             if line.startswith("DCGM_FI_DEV_FB_USED{") and f'namespace="{namespace}"' in line]
    assert len(lines) == 1, text[-2000:]
    assert f'Hostname="{node}"' in lines[0] and 'container="cuda"' in lines[0] and lines[0].endswith(" 31337")
    frame = promql.wait_for_series(f'DCGM_FI_DEV_FB_USED{{namespace="{namespace}"}}', timeout=30)
    row = frame.iloc[0]
    assert (row["pod"], row["container"], row["Hostname"], row["value"]) == ("trainer", "cuda", node, 31337.0)


def test_mig_pod_lands_on_the_mig_node_and_gets_an_instance(lab, namespace, running_addons) -> None:
    lk.apply(lab, _gpu_pod("infer", "nvidia.com/mig-1g.10gb", memory_mib=4096), namespace=namespace)
    pod = lk.wait_for(lab, "Pod", "infer", namespace=namespace, condition="condition=Ready", timeout=60)
    assert pod["spec"]["nodeName"] == "gpu-node-3"
    text = _scrape_until(running_addons["gpu-exporter"], f'namespace="{namespace}",pod="infer"')
    lines = [line for line in text.splitlines()
             if line.startswith("DCGM_FI_DEV_FB_USED{") and f'namespace="{namespace}"' in line]
    assert len(lines) == 1 and 'GPU_I_PROFILE="1g.10gb"' in lines[0] and lines[0].endswith(" 4096"), lines


def test_addons_start_on_request_and_stop_with_labkit_down(tmp_path: Path) -> None:
    if why := addons.REGISTRY["prometheus"].missing():
        pytest.fail(f"this test needs Prometheus: {why}", pytrace=False)
    env = dict(os.environ, LABKIT_STATE_DIR=str(tmp_path / "state"), LABKIT_API_PORT=str(free_port()))

    def labkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "labkit.cli", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    try:
        up = labkit("up", "--backend", "kwok", "--with", "gpu-exporter,prometheus")
        assert up.returncode == 0, up.stderr
        assert "gpu-exporter: started" in up.stdout and "prometheus: started" in up.stdout, up.stdout
        folder = tmp_path / "state" / "addons"
        # The two asked for, what Prometheus needs (its Kubernetes SD), and what `labkit up` starts with the embedded
        # cluster (the storage provisioner).
        expected = {"gpu-exporter", "prometheus", *addons.REGISTRY["prometheus"].needs, *addons.with_cluster("kwok")}
        assert {p.stem for p in folder.glob("*.pid")} == expected
        pids = [int(p.read_text()) for p in folder.glob("*.pid")]
        assert all(Path(f"/proc/{pid}").exists() for pid in pids)
        status = labkit("status")
        assert "gpu-exporter" in status.stdout and "prometheus" in status.stdout
    finally:
        down = labkit("down")
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()
                and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not (tmp_path / "state" / "addons").exists()


NVITOP_PROBE = """
import json
from nvitop import Device
rows = []
for device in Device.all():
    rows.append({"uuid": device.uuid(), "memory_used_mib": device.memory_used() // 2**20,
                 "utilization": device.gpu_utilization(), "pids": sorted(device.processes()),
                 "mig": [{"gi": m.gpu_instance_id(), "memory_used_mib": m.memory_used() // 2**20,
                          "pids": sorted(m.processes())} for m in device.mig_devices()]})
print(json.dumps(rows))
"""


def _tool(env: dict[str, str], cwd: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stdout


def test_terminal_tools_see_the_gpus_prometheus_shows(lab, namespace, running_addons, tmp_path) -> None:
    """nvitop and gpustat in their own processes beside the lab read the exporter's one GPU state: the pods'
    processes (MIG ones on their instance) and the same memory and utilization Prometheus scraped."""
    import json

    from labkit.sim.gpu import fake_pynvml_env
    from labkit.sim.gpu.attribution import pod_pid

    lk.apply(lab, _gpu_pod("trainer", memory_mib=23456), namespace=namespace)
    lk.apply(lab, _gpu_pod("infer", "nvidia.com/mig-1g.10gb", memory_mib=4096), namespace=namespace)
    trainer = lk.wait_for(lab, "Pod", "trainer", namespace=namespace, condition="condition=Ready", timeout=60)
    infer = lk.wait_for(lab, "Pod", "infer", namespace=namespace, condition="condition=Ready", timeout=60)
    fb = promql.wait_for_series(f'DCGM_FI_DEV_FB_USED{{namespace="{namespace}"}}', min_rows=2, timeout=60)
    prom = {row["pod"]: row for _, row in fb.iterrows()}
    util = promql.wait_for_series(f'DCGM_FI_DEV_GPU_UTIL{{namespace="{namespace}",pod="trainer"}}', timeout=60)

    def env_for(node: str) -> dict[str, str]:
        env = fake_pynvml_env(source="lab")
        env["LABKIT_FAKE_GPU_NODE"] = node
        return env

    (tmp_path / "probe.py").write_text(NVITOP_PROBE)
    node = trainer["spec"]["nodeName"]
    rows = json.loads(_tool(env_for(node), tmp_path, "probe.py"))
    gpu = rows[int(prom["trainer"]["gpu"])]
    assert pod_pid(trainer["metadata"]["uid"]) in gpu["pids"]
    assert gpu["uuid"] == prom["trainer"]["UUID"]
    assert gpu["memory_used_mib"] >= 23456 and float(gpu["memory_used_mib"]) == _node_fb(node, prom["trainer"]["gpu"])
    assert gpu["utilization"] == float(util.iloc[0]["value"]) == 80
    gpustat = json.loads(_tool(env_for(node), tmp_path, "-m", "gpustat", "--json"))["gpus"]
    assert gpustat[int(prom["trainer"]["gpu"])]["memory.used"] == gpu["memory_used_mib"]

    assert infer["spec"]["nodeName"] == "gpu-node-3"
    rows = json.loads(_tool(env_for("gpu-node-3"), tmp_path, "probe.py"))
    slices = [m for r in rows for m in r["mig"] if pod_pid(infer["metadata"]["uid"]) in m["pids"]]
    assert len(slices) == 1 and slices[0]["gi"] == int(prom["infer"]["GPU_I_ID"])
    assert slices[0]["memory_used_mib"] == float(prom["infer"]["value"]) == 4096
    screen = _tool(env_for("gpu-node-3"), tmp_path, "-m", "nvitop", "--once", "--ascii")
    assert f"GI/CI: {slices[0]['gi']}/0" in screen and str(pod_pid(infer["metadata"]["uid"])) in screen, screen


def _node_fb(node: str, gpu: str) -> float:
    """The whole GPU's framebuffer in Prometheus (every pod on it shares one value), for one node's GPU."""
    frame = promql.query(f'max(DCGM_FI_DEV_FB_USED{{Hostname="{node}",gpu="{gpu}",GPU_I_ID=""}})')
    return float(frame.iloc[0]["value"])


def test_fault_path_from_injection_to_nvml_exporter_prometheus_and_rules(lab, namespace, running_addons) -> None:
    """XID 48 (double-bit ECC), 64 (row-remap failure) and 79 (off the bus) on the GPU a pod runs on: NVML, the
    exporter's metrics, Prometheus and the alert expressions all see them; drain, reset and a new board undo them."""
    from labkit.lessons import gpu_monitoring as g12

    g12.restore_gpu_nodes(lab)
    lk.apply(lab, _gpu_pod("trainer", memory_mib=20000), namespace=namespace)
    pod = lk.wait_for(lab, "Pod", "trainer", namespace=namespace, condition="condition=Ready", timeout=60)
    node = pod["spec"]["nodeName"]
    held = g12.pod_resources(namespace=namespace)
    gpu = int(held[held["pod"] == "trainer"]["gpu"].iloc[0])
    try:
        g12.inject_fault(node, gpu, xid=48)
        g12.inject_fault(node, gpu, xid=64)
        seen = g12.nvml_errors(node, gpu)
        assert (seen["ecc_dbe_volatile"], seen["remap_pending"], seen["remap_failure"]) == (1, 1, 1), seen
        assert set(g12.gpu_health(node, gpu).query("result == 'FAIL'")["system"]) == {"Memory"}
        text = _scrape_until(running_addons["gpu-exporter"] + f"/{node}", "DCGM_FI_DEV_ROW_REMAP_FAILURE")
        line = next(line for line in text.splitlines()
                    if line.startswith("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{") and f'gpu="{gpu}"' in line)
        assert 'pod="trainer"' in line and line.endswith(" 1"), line
        alerts = g12.wait_for_alerts({"GpuEccDoubleBitError", "GpuRowRemapFailure", "GpuXidError"}, node=node)
        assert set(alerts["gpu"]) == {gpu}, alerts

        g12.inject_fault(node, gpu, xid=79)
        assert "GPU is lost" in g12.nvml_errors(node, gpu)["handle"]
        frame = promql.wait_for_series(f'DCGM_FI_DEV_XID_ERRORS{{Hostname="{node}",gpu="{gpu}"}} == 79', timeout=30)
        assert frame.iloc[0]["err_msg"] == "GPU has fallen off the bus", frame
        assert "12-xid-node" in {e.id for e in g12.EXERCISES}
        with pytest.raises(lk.LabkitError, match="in use"):
            g12.reset_gpu(node, gpu)  # nvidia-smi -r refuses while the pod's process holds the GPU
        lk.cordon(lab, node)
        assert "trainer" in lk.drain(lab, node)
        lk.wait_for(lab, "Pod", "trainer", namespace=namespace, condition="delete", timeout=60)
        faults = g12.reset_gpu(node, gpu, wait_s=30)
        assert not faults["lost"] and faults["volatile_uncorrected"] == 0 and not faults["remap_pending"]
        assert faults["remap_failure"]  # a reset does not fix it: RMA
        assert g12.gpu_health(node, gpu).set_index("system").loc["Memory", "result"] == "FAIL"
        g12.replace_board(node, gpu)
        assert set(g12.gpu_health(node, gpu)["result"]) == {"PASS"}
    finally:
        g12.restore_gpu_nodes(lab)



def test_a_cuda_image_newer_than_the_driver_is_refused_named_and_fixed(lab, namespace) -> None:
    """The NVIDIA runtime's check through the real API: the kubelet's StartError, the insight engine's reading of
    it, and exercise 12-cuda-image failing on the refused image and passing on one the driver supports."""
    import yaml

    from labkit.course.exercises import Attempt
    from labkit.lessons import gpu_monitoring as g12

    refused = yaml.safe_load(g12.CUDA_APP.replace("12.4.1", "12.6.3"))
    lk.apply(lab, refused, namespace=namespace)
    lk.wait_for(lab, "Pod", "cuda-app", namespace=namespace, timeout=60,
                condition="jsonpath={.status.containerStatuses[0].lastState.terminated.reason}=StartError")
    (problem,) = g12.CUDA_IMAGE.check(Attempt(lab, namespace))
    assert "nvidia/cuda:12.6.3-base-ubuntu22.04 (cuda>=12.6)" in problem, problem
    first = lk.diagnose(lab, namespace).findings[0]
    assert first.cause == "StartError" and "requires cuda>=12.6" in first.summary, first
    assert "supports CUDA 12.4" in first.summary and "set image pod/cuda-app" in first.fix, first
    lk.delete(lab, refused, namespace=namespace)
    lk.wait_for(lab, "Pod", "cuda-app", namespace=namespace, condition="delete", timeout=60)
    lk.apply(lab, g12.CUDA_APP, namespace=namespace)
    lk.wait_for(lab, "Pod", "cuda-app", namespace=namespace, condition="jsonpath={.status.phase}=Succeeded",
                timeout=60)
    assert g12.CUDA_IMAGE.check(Attempt(lab, namespace)) == []


def test_time_slicing_switched_on_by_a_node_label_shares_one_gpus_memory(lab, namespace, running_addons) -> None:
    """The GPU Operator's way through the real API: a ConfigMap of device-plugin configurations and a node label
    that picks one. The node then advertises 4 replicas per GPU, two pods land on one GPU, and its memory is one
    pool: NVML's process list and DCGM_FI_DEV_FB_USED add the pods up. Removing the label gives the devices back."""
    import yaml

    from labkit.operations import pod_resources
    from labkit.sim.gpu import device_plugin as dp

    config = {"version": "v1", "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 4}]}}}
    lk.apply(lab, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dp.CONFIG_NAMESPACE}},
                   {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": dp.CONFIG_NAME, "namespace": dp.CONFIG_NAMESPACE},
                    "data": {"any": yaml.safe_dump(config)}}])
    held = set(pod_resources().node)
    node = next(n for n in ("gpu-node-2", "gpu-node-1") if n not in held)  # a node no other test's pod holds
    lab.core.patch_node(node, {"metadata": {"labels": {dp.CONFIG_LABEL: "any"}}})
    try:
        lk.wait_for(lab, "Node", node, api_version="v1", timeout=30,
                    condition=lambda n: n is not None and n["status"]["allocatable"].get("nvidia.com/gpu") == "8")
        obj = lab.core.read_node(node)
        assert obj.metadata.labels["nvidia.com/gpu.replicas"] == "4"
        assert obj.metadata.labels["nvidia.com/gpu.product"].endswith("-SHARED")
        for name in ("share-a", "share-b", "share-c"):
            pod = _gpu_pod(name, memory_mib=25000)
            pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
            lk.apply(lab, pod, namespace=namespace)
        for name in ("share-a", "share-b", "share-c"):
            lk.wait_for(lab, "Pod", name, namespace=namespace, condition="condition=Ready", timeout=60)
        deadline = time.monotonic() + 30
        while len(held := pod_resources(namespace=namespace)) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert set(held.resource) == {"nvidia.com/gpu"} and len(held) == 3, held
        by_gpu = held.groupby("gpu").pod.apply(sorted).to_dict()
        # Spread over both GPUs, then stacked; which pod goes where follows the order they started (a busy machine
        # may start share-c before share-b), as the kubelet allocates devices when it admits each pod.
        assert sorted(len(pods) for pods in by_gpu.values()) == [1, 2], by_gpu
        gpu, stacked = next((gpu, pods) for gpu, pods in by_gpu.items() if len(pods) == 2)
        used = promql.wait_for_series(f'DCGM_FI_DEV_FB_USED{{Hostname="{node}",gpu="{gpu}",namespace="{namespace}"}} '
                                      '== 50000', timeout=30)
        assert set(used.pod) == set(stacked), used  # one pool: each pod's series shows the GPU's total
    finally:
        lab.core.patch_node(node, {"metadata": {"labels": {dp.CONFIG_LABEL: None}}})
    lk.wait_for(lab, "Node", node, api_version="v1", timeout=30,
                condition=lambda n: n is not None and n["status"]["allocatable"].get("nvidia.com/gpu") == "2")
    assert lab.core.read_node(node).metadata.labels["nvidia.com/gpu.sharing-strategy"] == "none"
