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
