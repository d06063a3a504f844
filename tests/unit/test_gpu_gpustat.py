"""gpustat, unmodified, shows the simulated GPUs: in a subprocess through the pynvml stand-in, and in-process."""

import importlib
import json
import subprocess
import sys

import pytest

from labkit.sim.gpu import FakeMachine, FakeNvml, Workload, fake_pynvml_env, install_fake_pynvml


def _gpustat(env, cwd, *args):
    """Run the real gpustat CLI in a subprocess whose `pynvml` is the stand-in."""
    return subprocess.run([sys.executable, "-m", "gpustat", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("profile", "name", "total_mib"), [("H100-SXM", "NVIDIA H100 80GB HBM3", 81559), ("T4", "Tesla T4", 15360)]
)
def test_gpustat_subprocess_sees_fake_gpus(tmp_path, profile, name, total_mib):
    env = fake_pynvml_env(profile=profile, count=2, node="gpu-node-1")
    result = _gpustat(env, tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [gpu["name"] for gpu in report["gpus"]] == [name, name]
    assert {gpu["memory.total"] for gpu in report["gpus"]} == {total_mib}
    assert report["driver_version"] == "550.127.05"
    text = _gpustat(env, tmp_path, "--no-color").stdout
    assert f"[1] {name}" in text and f"/ {total_mib} MB" in text


def test_gpustat_in_process_reads_a_loaded_gpu():
    machine = FakeMachine(count=2)
    machine.set_workload(1, Workload(75, 30_000, 0.3))
    machine.step(30)
    with install_fake_pynvml(FakeNvml(machine)):
        # gpustat binds pynvml at import time, so import it fresh inside the swap.
        for module in [m for m in sys.modules if m.startswith("gpustat")]:
            del sys.modules[module]
        core = importlib.import_module("gpustat.core")
        stats = core.new_query()
    for module in [m for m in sys.modules if m.startswith("gpustat")]:
        del sys.modules[module]
    gpu = stats.gpus[1]
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.utilization == 75
    assert gpu.memory_used == 30_000
    assert gpu.power_draw > 200
