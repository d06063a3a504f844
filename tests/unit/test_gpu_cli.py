"""labkit's nvidia-smi and dcgmi, run as a learner types them: the launchers on the gpu-env PATH, each in its own
process, against a simulated node an exporter in this process owns (the lab's arrangement, without a cluster)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from labkit.sim.gpu import FakeMachine, Workload, fake_pynvml_env, inject_xid, start_exporter
from labkit.sim.gpu.dcgm import DIAG_TESTS
from labkit.sim.gpu.machine import FakeProcess

TRAINER_PID = 4_194_400
# What pynvml itself says in the tools' environment, to hold their output against.
_PYNVML_PROBE = """
import json, pynvml as N
N.nvmlInit()
rows = []
for i in range(N.nvmlDeviceGetCount()):
    h = N.nvmlDeviceGetHandleByIndex(i)
    mem = N.nvmlDeviceGetMemoryInfo(h, N.nvmlMemory_v2)
    mig = [N.nvmlDeviceGetUUID(N.nvmlDeviceGetMigDeviceHandleByIndex(h, j))
           for j in range(N.nvmlDeviceGetMaxMigDeviceCount(h))
           if N.nvmlDeviceGetMigMode(h)[0] == N.NVML_DEVICE_MIG_ENABLE and j < 2]
    rows.append({"index": i, "name": N.nvmlDeviceGetName(h), "uuid": N.nvmlDeviceGetUUID(h),
                 "memory.total": mem.total // 2**20, "memory.used": mem.used // 2**20,
                 "temperature.gpu": N.nvmlDeviceGetTemperature(h, N.NVML_TEMPERATURE_GPU),
                 "utilization.gpu": N.nvmlDeviceGetUtilizationRates(h).gpu,
                 "power.draw": f"{N.nvmlDeviceGetPowerUsage(h) / 1000:.2f}",
                 "clocks.sm": N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_SM),
                 "pstate": f"P{N.nvmlDeviceGetPerformanceState(h)}", "mig": mig})
print(json.dumps(rows))
"""


@pytest.fixture(scope="module")
def node():
    """An A100 node: GPU 0 runs a trainer, GPU 1 is split into two MIG instances; served as the lab serves it."""
    machine = FakeMachine(profile="A100-SXM-80GB", count=2, node="gpu-node-9", clock="manual")
    machine.set_workload(0, Workload(90, 30_000, 0.2))
    machine.configure_mig(1, ["3g.40gb", "3g.40gb"])
    machine.set_processes({0: [FakeProcess(TRAINER_PID, 30_000, None, "lesson-12/trainer")]})
    machine.step(30)
    with start_exporter(machine) as server:
        env = fake_pynvml_env(source=server.base_url)
        env["LABKIT_FAKE_GPU_NODE"] = machine.node
        probe = subprocess.run([sys.executable, "-c", _PYNVML_PROBE], env=env, capture_output=True, text=True,
                               timeout=60, check=True)
        yield machine, env, json.loads(probe.stdout)


def _run(env, *command):
    """The command as a shell finds it: PATH's first `nvidia-smi`/`dcgmi` is labkit's launcher."""
    assert shutil.which(command[0], path=env["PATH"]).endswith(f"/bin/{command[0]}")
    result = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_summary_table_lists_each_gpu_as_nvml_reports_it(node):
    _machine, env, nvml = node
    out = _run(env, "nvidia-smi").stdout
    assert "Driver Version: 550.127.05" in out and "CUDA Version: 12.4" in out
    for gpu in nvml:
        assert f"|   {gpu['index']}  {gpu['name']}" in out
        assert f"MiB / {gpu['memory.total']:>6}MiB" in out
    assert "MIG devices:" in out and "Enabled" in out  # GPU 1's instances get their own table
    assert f"{TRAINER_PID}      C   lesson-12/trainer" in out
    assert {len(line) for line in out.splitlines()[1:]} <= {0, 89, 91}  # R550's widths; its spacer line is 89


def test_query_gpu_csv_equals_pynvml(node):
    _machine, env, nvml = node
    fields = ["index", "name", "uuid", "memory.total", "memory.used", "temperature.gpu", "utilization.gpu",
              "power.draw", "clocks.sm", "pstate"]
    result = _run(env, "nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits", "-i", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(", ") == [str(nvml[0][f]) for f in fields]
    header = _run(env, "nvidia-smi", "--query-gpu=memory.total,clocks_throttle_reasons.active", "--format=csv")
    assert header.stdout.splitlines()[0] == "memory.total [MiB], clocks_event_reasons.active"
    assert header.stdout.splitlines()[1] == f"{nvml[0]['memory.total']} MiB, 0x0000000000000000"


def test_list_gpus_names_every_uuid_and_mig_device(node):
    _machine, env, nvml = node
    out = _run(env, "nvidia-smi", "-L").stdout.splitlines()
    assert out[0] == f"GPU 0: {nvml[0]['name']} (UUID: {nvml[0]['uuid']})"
    assert out[1] == f"GPU 1: {nvml[1]['name']} (UUID: {nvml[1]['uuid']})"
    assert out[2:] == [f"  MIG 3g.40gb     Device  {i}: (UUID: {uuid})" for i, uuid in enumerate(nvml[1]["mig"])]


def test_unknown_field_and_unsupported_option_say_so_with_exit_2(node):
    _machine, env, _nvml = node
    bad = _run(env, "nvidia-smi", "--query-gpu=index,bogus", "--format=csv")
    assert (bad.returncode, bad.stdout) == (2, 'Field "bogus" is not a valid field to query.\n\n')
    unsupported = _run(env, "nvidia-smi", "-pm", "1")
    assert unsupported.returncode == 2 and "`-pm` is not supported" in unsupported.stderr
    assert "--query-gpu=FIELDS" in unsupported.stderr  # names what is supported
    assert _run(env, "dcgmi", "stats", "-j", "1").returncode == 2


def test_reset_is_refused_while_in_use_and_resets_the_owned_state_when_idle(node):
    machine, env, _nvml = node
    busy = _run(env, "nvidia-smi", "-r", "-i", "0")
    assert busy.returncode != 0 and "is currently in use by another process" in busy.stdout
    inject_xid(machine, 1, 48)  # a double-bit ECC error on the idle GPU
    assert _run(env, "dcgmi", "health", "-c").returncode == 1
    done = _run(env, "nvidia-smi", "-r", "-i", "1")
    assert done.returncode == 0 and "was successfully reset." in done.stdout
    assert machine.devices[1].faults.volatile_uncorrected == 0  # the exporter's state, as reset_gpu leaves it


def test_dcgmi_health_fails_a_gpu_with_a_double_bit_ecc_error(node):
    machine, env, _nvml = node
    healthy = _run(env, "dcgmi", "health", "-c")
    assert healthy.returncode == 0 and "| Overall Health            | Healthy" in healthy.stdout
    inject_xid(machine, 0, 48)
    try:
        failing = _run(env, "dcgmi", "health", "-g", "0", "-c")
        assert failing.returncode == 1
        assert "| Overall Health            | Failure" in failing.stdout
        assert "| -> 0                      | Failure" in failing.stdout
        assert "|       -> Memory system    | Failure" in failing.stdout
        assert "-> 1 " not in failing.stdout  # the other GPU is fine
    finally:
        from labkit.sim.gpu.faults import replace_board

        replace_board(machine, 0)
        machine.set_workload(0, Workload(90, 30_000, 0.2))


def test_dcgmi_discovery_and_diag_levels(node):
    _machine, env, nvml = node
    discovery = _run(env, "dcgmi", "discovery", "-l").stdout
    assert discovery.startswith("2 GPUs found.") and all(f"Device UUID: {g['uuid']}" in discovery for g in nvml)
    long_run = _run(env, "dcgmi", "diag", "-r", "3", "-i", "1").stdout
    for _category, test in (t for level in (1, 2, 3) for t in DIAG_TESTS[level]):
        assert f"| {test:<25} | " in long_run
    quick = _run(env, "dcgmi", "diag", "-r", "1", "-i", "0")
    assert quick.returncode == 1 and "| Compute Processes         | Fail" in quick.stdout  # the trainer holds it
    assert "Targeted Stress" not in quick.stdout


def test_use_gpu_node_puts_the_launchers_on_this_kernels_path(monkeypatch):
    from labkit.lessons.gpu_monitoring import use_gpu_node
    from labkit.sim.gpu import nvml_mode

    if nvml_mode().mode == "real":
        pytest.skip("a host with real GPUs shadows nothing")
    for name in ("PATH", "PYTHONPATH", "LABKIT_FAKE_GPU", "LABKIT_FAKE_GPU_NODE", "LABKIT_FAKE_GPU_SOURCE"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    changed = use_gpu_node("gpu-node-3")
    assert changed["LABKIT_FAKE_GPU_NODE"] == "gpu-node-3" == os.environ["LABKIT_FAKE_GPU_NODE"]
    assert shutil.which("dcgmi") == shutil.which("dcgmi", path=changed["PATH"].split(os.pathsep)[0])
    assert use_gpu_node("gpu-node-3") == {}  # the second call finds everything in place


def test_a_stand_in_that_gets_no_answer_gives_up_at_its_deadline(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from labkit.sim.gpu import cli_options, smi

    monkeypatch.setattr(smi, "deadline", lambda tool: cli_options.deadline(tool, 1))
    monkeypatch.setattr(smi, "run", lambda argv: time.sleep(5) or ([], 0))
    started = time.monotonic()
    assert smi.main(["-L"]) == smi.EXIT_OTHER
    assert time.monotonic() - started < 4
    assert "nvidia-smi (labkit's stand-in): no answer within 1 s" in capsys.readouterr().err
