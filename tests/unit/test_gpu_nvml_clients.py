"""Real NVML clients, unmodified, against the simulated GPUs: nvitop (``--once`` and its Python API) and gpustat,
each in its own process whose ``import pynvml`` is NVIDIA's pynvml over labkit's simulated C library; NVML's C
calling convention and error codes; and one GPU state seen alike by a separate process and the exporter."""

import ctypes
import json
import re
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from labkit.sim.gpu import FakeMachine, FakeNvml, Workload, available_profiles, fake_pynvml_env, start_exporter
from labkit.sim.gpu.machine import FakeProcess
from labkit.sim.gpu.real_pynvml import pynvml
from labkit.sim.gpu.shared import MirrorMachine

MIB = 1024 * 1024
# (profile, NVML name, a MIG layout for GPU 1 or None)
PROFILES = {
    "H100-SXM": ("NVIDIA H100 80GB HBM3", ["3g.40gb", "3g.40gb"]),
    "H200": ("NVIDIA H200", None),
    "A100-SXM-80GB": ("NVIDIA A100-SXM4-80GB", ["1g.10gb"] * 7),
    "T4": ("Tesla T4", None),
}
TRAINER_PID, SLICE_PID = 4_194_400, 4_194_500


def test_every_profile_is_covered():
    assert sorted(PROFILES) == sorted(available_profiles())


def _node(profile: str) -> FakeMachine:
    """GPU 0 runs a trainer; GPU 1 is MIG-partitioned with one pod on its first instance (where MIG exists)."""
    # A manual clock: the model stands still between readings, so every reader must agree exactly.
    machine = FakeMachine(profile=profile, count=2, node="gpu-node-9", clock="manual")
    mig = PROFILES[profile][1]
    memory = 12_000 if profile == "T4" else 30_000
    machine.set_workload(0, Workload(90, memory, 0.2))
    processes = {0: [FakeProcess(TRAINER_PID, memory, None, "lesson/trainer")]}
    if mig:
        machine.configure_mig(1, mig)
        machine.set_workload(1, Workload(10, 5_000, 0.3))
        processes[1] = [FakeProcess(SLICE_PID, 5_000, 1, "lesson/inference")]
    machine.set_processes(processes)
    machine.step(30)  # warm: temperature and power away from their idle values
    return machine


@pytest.fixture(params=sorted(PROFILES))
def served(request):
    """One simulated node owned by an exporter in this process; tools in other processes mirror it."""
    machine = _node(request.param)
    with start_exporter(machine) as server:
        env = fake_pynvml_env(source=server.base_url)
        env["LABKIT_FAKE_GPU_NODE"] = machine.node
        yield request.param, machine, server, env


def _run(env, *args, cwd=None):
    result = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stdout


# --- NVML's C interface ------------------------------------------------------------------------------------------


@pytest.fixture
def clib():
    module = FakeNvml(_node("A100-SXM-80GB")).as_module("labkit_test_pynvml")
    module.nvmlInit()
    yield module
    module.nvmlShutdown()


def test_symbols_are_c_function_pointers_called_c_style(clib):
    fn = clib._nvmlGetFunctionPointer("nvmlDeviceGetMemoryInfo_v2")
    assert isinstance(fn, ctypes._CFuncPtr) and fn.argtypes is None  # as CDLL("libnvidia-ml.so.1") hands out
    handle = clib.c_nvmlDevice_t()
    assert clib._nvmlGetFunctionPointer("nvmlDeviceGetHandleByIndex_v2")(ctypes.c_uint(0), ctypes.byref(handle)) == 0
    memory = clib.c_nvmlMemory_v2_t(version=clib.nvmlMemory_v2)
    assert fn(handle, ctypes.byref(memory)) == clib.NVML_SUCCESS
    assert memory.used == 30_000 * MIB and memory.version == clib.nvmlMemory_v2
    stale = clib.c_nvmlMemory_v2_t(version=1)
    assert fn(handle, ctypes.byref(stale)) == clib.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    assert fn(ctypes.c_void_p(12345), ctypes.byref(memory)) == clib.NVML_ERROR_INVALID_ARGUMENT


def test_two_call_convention_for_process_lists(clib):
    handle = clib.nvmlDeviceGetHandleByIndex(0)
    fn = clib._nvmlGetFunctionPointer("nvmlDeviceGetComputeRunningProcesses_v3")
    count = ctypes.c_uint(0)
    assert fn(handle, ctypes.byref(count), None) == clib.NVML_ERROR_INSUFFICIENT_SIZE and count.value == 1
    procs = (clib.c_nvmlProcessInfo_v3_t * 4)()
    count.value = 4
    assert fn(handle, ctypes.byref(count), procs) == clib.NVML_SUCCESS and count.value == 1
    assert (procs[0].pid, procs[0].usedGpuMemory) == (TRAINER_PID, 30_000 * MIB)


def test_mig_handles_answer_process_memory_and_instance_queries(clib):
    parent = clib.nvmlDeviceGetHandleByIndex(1)
    assert clib.nvmlDeviceGetMigMode(parent) == [clib.NVML_DEVICE_MIG_ENABLE] * 2
    mig = clib.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)
    assert clib.nvmlDeviceGetGpuInstanceId(mig) == 1 and clib.nvmlDeviceGetComputeInstanceId(mig) == 0
    assert clib.nvmlDeviceGetMemoryInfo(mig).used == 5_000 * MIB
    (proc,) = clib.nvmlDeviceGetComputeRunningProcesses(mig)
    assert (proc.pid, proc.gpuInstanceId, proc.computeInstanceId) == (SLICE_PID, 1, 0)
    assert clib.nvmlDeviceGetComputeRunningProcesses(clib.nvmlDeviceGetMigDeviceHandleByIndex(parent, 1)) == []
    assert clib.nvmlDeviceGetBAR1MemoryInfo(mig).bar1Total > 0
    with pytest.raises(clib.NVMLError_InvalidArgument):
        clib.nvmlDeviceGetGpuInstanceId(parent)  # only MIG device handles have one


def test_unsupported_features_return_nvml_error_codes():
    t4 = FakeNvml(FakeMachine(profile="T4", count=1)).as_module("labkit_test_t4")
    sxm = FakeNvml(FakeMachine(profile="H100-SXM", count=1)).as_module("labkit_test_sxm")
    for module in (t4, sxm):
        module.nvmlInit()
    t4_handle, sxm_handle = t4.nvmlDeviceGetHandleByIndex(0), sxm.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(sxm.NVMLError_NotSupported):
        sxm.nvmlDeviceGetFanSpeed(sxm_handle)  # SXM boards are cooled by the chassis
    with pytest.raises(t4.NVMLError_NotSupported):
        t4.nvmlDeviceGetMigMode(t4_handle)
    (links,) = t4.nvmlDeviceGetFieldValues(t4_handle, [t4.NVML_FI_DEV_NVLINK_LINK_COUNT])
    assert links.nvmlReturn == t4.NVML_ERROR_NOT_SUPPORTED  # no NVLink on a PCIe T4
    (links,) = sxm.nvmlDeviceGetFieldValues(sxm_handle, [sxm.NVML_FI_DEV_NVLINK_LINK_COUNT])
    assert (links.nvmlReturn, links.value.uiVal) == (sxm.NVML_SUCCESS, 18)
    with pytest.raises(t4.NVMLError_NotSupported):
        t4.nvmlDeviceGetDriverModel(t4_handle)  # WDDM/TCC are Windows driver models
    with pytest.raises(t4.NVMLError_FunctionNotFound):
        t4.nvmlDeviceGetVgpuMetadata(t4_handle)  # a symbol the simulation does not export
    assert t4.nvmlDeviceGetCudaComputeCapability(t4_handle) == (7, 5)
    assert t4.nvmlDeviceGetTemperatureV(t4_handle, t4.NVML_TEMPERATURE_GPU) > 20


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_idle_state_before_the_model_steps(profile):
    """A fresh node reads like an idle board: lowest clocks, idle power, GpuIdle; GDDR boards in P8."""
    api = FakeNvml(FakeMachine(profile=profile, count=1))
    api.nvmlInit()
    handle = api.nvmlDeviceGetHandleByIndex(0)
    spec = api.machine.profile
    assert api.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM) == min(spec.memory_clocks_mhz)
    assert api.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM) == spec.sm_clock_min_mhz
    assert api.nvmlDeviceGetPowerUsage(handle) == spec.power_idle_w * 1000
    assert api.nvmlDeviceGetCurrentClocksEventReasons(handle) == pynvml.nvmlClocksThrottleReasonGpuIdle
    pstate = api.nvmlDeviceGetPerformanceState(handle)
    assert pstate == (pynvml.NVML_PSTATE_8 if len(spec.memory_clocks_mhz) > 1 else pynvml.NVML_PSTATE_0)
    api.machine.step(5)  # stepping the idle model changes nothing of that
    assert api.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM) == min(spec.memory_clocks_mhz)
    if profile == "T4":
        assert (pstate, min(spec.memory_clocks_mhz)) == (pynvml.NVML_PSTATE_8, 405)


# --- nvitop and gpustat, unmodified, in their own processes --------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_nvitop_once_on_a_private_idle_node(tmp_path, profile):
    out = _run(fake_pynvml_env(profile=profile, count=2), "-m", "nvitop", "--once", "--ascii", cwd=tmp_path)
    name = PROFILES[profile][0].removeprefix("NVIDIA ")
    assert out.count(name) == 2, out
    assert "Driver Version: 550.127.05" in out and "No running processes found" in out
    assert ("P8" in out) == (profile == "T4"), out


def test_nvitop_once_shows_the_served_node(served, tmp_path):
    profile, machine, _server, env = served
    out = _run(env, "-m", "nvitop", "--once", "--ascii", cwd=tmp_path)
    assert out.count(PROFILES[profile][0].removeprefix("NVIDIA ")) == 2, out
    used = machine.devices[0].memory_used_mib
    assert re.search(rf"\b{TRAINER_PID}\b", out) and " 90%" in out, out
    assert f"{used / 1024:.2f}GiB" in out or f"{used}MiB" in out, out
    if PROFILES[profile][1]:
        instances = len(PROFILES[profile][1])
        assert len(re.findall(r"GI/CI: +\d+/0", out)) == instances, out
        assert re.search(rf"1:0 +{SLICE_PID}\b", out), out  # the pod's process on MIG device 1:0
        assert "Enabled" in out
    else:
        assert "GI/CI" not in out


NVITOP_API = textwrap.dedent("""
    import json
    from nvitop import Device
    out = []
    for device in Device.all():
        snap = device.as_snapshot()
        row = {"name": snap.name, "memory_used": snap.memory_used, "memory_total": snap.memory_total,
               "temperature": snap.temperature, "utilization": snap.gpu_utilization, "power_mw": snap.power_usage,
               "mig_mode": device.mig_mode(), "cc": list(device.cuda_compute_capability()),
               "bar1_total": device.bar1_memory_info().total, "nvlink": device.nvlink_link_count(),
               "processes": {str(p): [proc.gpu_memory(), str(proc.gpu_instance_id())]
                             for p, proc in device.processes().items()},
               "mig": [{"name": m.name(), "gi": m.gpu_instance_id(), "ci": m.compute_instance_id(),
                        "memory_used": m.memory_used(), "memory_total": m.memory_total(),
                        "pids": sorted(m.processes())} for m in device.mig_devices()]}
        out.append(row)
    print(json.dumps(out))
""")


def test_nvitop_python_api_reads_the_served_node(served, tmp_path):
    profile, machine, _server, env = served
    (tmp_path / "probe.py").write_text(NVITOP_API)
    rows = json.loads(_run(env, "probe.py", cwd=tmp_path))
    name, mig = PROFILES[profile]
    assert [r["name"] for r in rows] == [name, name]
    first = rows[0]
    assert first["memory_used"] == machine.devices[0].memory_used_mib * MIB
    assert first["memory_total"] == machine.profile.memory_total_mib * MIB
    assert first["utilization"] == 90
    assert first["temperature"] == round(machine.devices[0].state.temperature_c)
    assert first["processes"] == {str(TRAINER_PID): [machine.devices[0].memory_used_mib * MIB, "N/A"]}
    assert first["cc"] == list(machine.profile.cuda_compute_capability)
    assert first["bar1_total"] == machine.profile.bar1_total_mib * MIB
    assert first["nvlink"] == machine.profile.nvlink_links
    if mig:
        second = rows[1]
        assert second["mig_mode"] == "Enabled" and len(second["mig"]) == len(mig)
        assert [m["gi"] for m in second["mig"]] == list(range(1, len(mig) + 1))
        assert {m["ci"] for m in second["mig"]} == {0}
        assert second["mig"][0]["pids"] == [SLICE_PID] and second["mig"][0]["memory_used"] == 5_000 * MIB
        assert second["mig"][0]["name"] == f"{name} MIG {mig[0]}"
        assert all(m["memory_used"] == 0 and m["pids"] == [] for m in second["mig"][1:])
        assert second["processes"] == {str(SLICE_PID): [5_000 * MIB, "1"]}
    else:
        assert rows[1]["mig"] == [] and rows[1]["processes"] == {}


def test_gpustat_reads_the_served_node(served, tmp_path):
    profile, machine, _server, env = served
    report = json.loads(_run(env, "-m", "gpustat", "--json", cwd=tmp_path))
    gpu = report["gpus"][0]
    assert gpu["name"] == PROFILES[profile][0]
    assert gpu["memory.used"] == machine.devices[0].memory_used_mib and gpu["utilization.gpu"] == 90
    assert gpu["uuid"] == machine.devices[0].uuid
    # gpustat drops processes whose pid is not a host process: the pods' containers are simulated.
    assert gpu["processes"] == []


def _exporter_values(server, metric: str) -> dict[str, float]:
    with urllib.request.urlopen(server.url, timeout=10) as resp:
        text = resp.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith(metric + "{") and 'GPU_I_ID="' not in line:
            gpu = re.search(r'\bgpu="(\d+)"', line).group(1)
            found[gpu] = float(line.rsplit(" ", 1)[1])
    return found


def test_a_separate_process_and_the_exporter_agree(served, tmp_path):
    """nvitop, gpustat and the exporter's /metrics read the same devices, from the one model the exporter owns."""
    _profile, machine, server, env = served
    (tmp_path / "probe.py").write_text(NVITOP_API)
    nvitop_rows = json.loads(_run(env, "probe.py", cwd=tmp_path))
    gpustat_rows = json.loads(_run(env, "-m", "gpustat", "--json", cwd=tmp_path))["gpus"]
    fb_used = _exporter_values(server, "DCGM_FI_DEV_FB_USED")
    util = _exporter_values(server, "DCGM_FI_DEV_GPU_UTIL")
    temperature = _exporter_values(server, "DCGM_FI_DEV_GPU_TEMP")
    power = _exporter_values(server, "DCGM_FI_DEV_POWER_USAGE")
    for gpu in (0, 1):
        assert nvitop_rows[gpu]["memory_used"] // MIB == gpustat_rows[gpu]["memory.used"] == fb_used[str(gpu)]
        assert nvitop_rows[gpu]["utilization"] == gpustat_rows[gpu]["utilization.gpu"] == util[str(gpu)]
        assert nvitop_rows[gpu]["temperature"] == gpustat_rows[gpu]["temperature.gpu"] == temperature[str(gpu)]
        assert abs(nvitop_rows[gpu]["power_mw"] / 1000 - power[str(gpu)]) < 0.001
    assert temperature["0"] > temperature["1"]  # the loaded GPU runs warmer: live values, not idle defaults
    assert [r["uuid"] for r in gpustat_rows] == [d.uuid for d in machine.devices]


def test_a_mirror_sends_its_settings_to_the_owner_and_follows_it(served):
    _profile, machine, server, _env = served
    mirror = FakeNvml(MirrorMachine(server.base_url, machine.node))
    mirror.nvmlInit()
    handle = mirror.nvmlDeviceGetHandleByIndex(0)
    low, high = mirror.nvmlDeviceGetPowerManagementLimitConstraints(handle)
    default = mirror.nvmlDeviceGetPowerManagementLimit(handle)
    mirror.nvmlDeviceSetPowerManagementLimit(handle, default - 10_000)
    assert machine.devices[0].state.power_limit_w * 1000 == default - 10_000  # the owner's state changed
    assert mirror.nvmlDeviceGetPowerManagementLimit(handle) == default - 10_000  # and the mirror re-read it at once
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        mirror.nvmlDeviceSetPowerManagementLimit(handle, high + 1_000)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        mirror.nvmlDeviceSetGpuLockedClocks(handle, 1500, 1200)
    mirror.nvmlDeviceSetPowerManagementLimit(handle, default)
    assert low <= default <= high
    machine.set_workload(0, Workload(40, 1_000, 0.2))
    machine.set_processes({0: [FakeProcess(TRAINER_PID, 1_000)]})
    mirror.machine._fetched = 0.0  # as if MAX_AGE_S had passed
    assert mirror.nvmlDeviceGetUtilizationRates(handle).gpu == 40
    assert mirror.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2).used == 1_000 * MIB


def test_a_shell_after_labkit_gpu_env_sees_the_running_labs_gpus(tmp_path):
    """`eval "$(labkit gpu-env)"; LABKIT_FAKE_GPU_NODE=... nvitop --once` finds the lab's exporter by itself."""
    import os

    machine = _node("A100-SXM-80GB")
    state = tmp_path / "state"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_FAKE_GPU")}
    env.update(LABKIT_STATE_DIR=str(state), LABKIT_FAKE_GPU="1")
    with start_exporter(machine) as server:
        (state / "gpu-nvml.url").write_text(server.base_url + "\n")  # what the lab's exporter writes at start
        script = (f'eval "$({sys.executable} -m labkit gpu-env)" && '
                  f"LABKIT_FAKE_GPU_NODE={machine.node} {sys.executable} -m nvitop --once --ascii")
        result = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"1:0 {SLICE_PID}" in re.sub(r" +", " ", result.stdout), result.stdout
    assert len(re.findall(r"GI/CI: +\d+/0", result.stdout)) == 7
    assert (state / "fake-pynvml" / "pynvml.py").exists()


def test_nvitop_tui_under_tmux_draws_the_served_mig_node(tmp_path):
    """nvitop's interactive screen (curses) in a detached tmux session shows the MIG instances and the pod."""
    import shutil
    import time

    tmux = shutil.which("tmux")
    assert tmux, "this test needs tmux (apt-get install tmux)"
    machine = _node("A100-SXM-80GB")
    socket = f"labkit-test-{tmp_path.name}"
    with start_exporter(machine) as server:
        env = fake_pynvml_env(source=server.base_url)
        env.update(LABKIT_FAKE_GPU_NODE=machine.node, TERM="xterm-256color")
        command = f"{sys.executable} -m nvitop"
        subprocess.run([tmux, "-L", socket, "new-session", "-d", "-s", "nvitop", "-x", "140", "-y", "45", command],
                       env=env, cwd=tmp_path, check=True, timeout=30)
        try:
            deadline, screen = time.monotonic() + 60, ""
            while f"{SLICE_PID}" not in screen or len(re.findall(r"GI/CI: +\d+/0", screen)) < 7:
                assert time.monotonic() < deadline, f"nvitop's screen after 60 s:\n{screen}"
                time.sleep(0.5)  # polling a screen: there is no event to wait on
                screen = subprocess.run([tmux, "-L", socket, "capture-pane", "-p", "-t", "nvitop"], env=env,
                                        capture_output=True, text=True, timeout=30).stdout
        finally:
            subprocess.run([tmux, "-L", socket, "kill-server"], env=env, timeout=30, check=False)
    assert "A100-SXM4-80GB" in screen and "Enabled" in screen and "Traceback" not in screen


def test_source_selection(tmp_path, monkeypatch):
    """auto: the lab's exporter when its address file answers, else a private node; lab: an error without one."""
    from labkit.sim.gpu.shared import GpuStateUnavailable, NoSuchGpuNode, machine_from_source

    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    env = {"LABKIT_FAKE_GPU_NODE": "gpu-node-9", "LABKIT_FAKE_GPU_PROFILE": "T4"}
    machine, why = machine_from_source(env)
    assert not isinstance(machine, MirrorMachine) and machine.profile.key == "T4" and "not running" in why
    with pytest.raises(GpuStateUnavailable, match="labkit up --with gpu-exporter"):
        machine_from_source({**env, "LABKIT_FAKE_GPU_SOURCE": "lab"})
    with start_exporter(_node("H200")) as server:
        (tmp_path / "gpu-nvml.url").write_text(server.base_url + "\n")
        machine, why = machine_from_source(env)
        assert isinstance(machine, MirrorMachine) and machine.profile.key == "H200" and server.base_url in why
        assert not isinstance(machine_from_source({**env, "LABKIT_FAKE_GPU_SOURCE": "local"})[0], MirrorMachine)
        with pytest.raises(NoSuchGpuNode, match="gpu-node-9"):
            machine_from_source({**env, "LABKIT_FAKE_GPU_NODE": "gpu-node-7"})
    # The exporter is gone but its address file stayed (a lab killed hard): auto falls back to a private node.
    machine, why = machine_from_source(env)
    assert not isinstance(machine, MirrorMachine) and "not running" in why


def test_when_the_labs_exporter_stops_a_c_caller_sees_the_driver_gone():
    machine = _node("T4")
    with start_exporter(machine) as server:
        module = FakeNvml(MirrorMachine(server.base_url, machine.node)).as_module("labkit_test_mirror")
        module.nvmlInit()
        handle = module.nvmlDeviceGetHandleByIndex(0)
        assert module.nvmlDeviceGetUtilizationRates(handle).gpu == 90
    module.fake.machine._fetched = 0.0  # stale: the next call re-reads, and nobody answers
    with pytest.raises(module.NVMLError_DriverNotLoaded):
        module.nvmlDeviceGetUtilizationRates(handle)
