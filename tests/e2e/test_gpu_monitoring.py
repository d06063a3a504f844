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
from labkit import addons, promql
from labkit.cluster.ports import free_port


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

