"""Clock locks and power limits reach the one GPU state: `nvidia-smi -lgc/-rgc/-pl` in their own processes change
what the exporter that owns the node serves (its /metrics, every mirror), as lesson 12's clock and power sections
use them."""

import re
import subprocess
import urllib.error
import urllib.request

import pytest

from labkit import operations
from labkit.sim.gpu import FakeMachine, Workload, fake_pynvml_env, inject_xid, start_exporter
from labkit.sim.gpu.physics import REASON_APP_CLOCKS, REASON_SW_POWER_CAP, govern_clock, power_demand_w

QUERY = "--query-gpu=clocks.sm,power.draw,power.limit,clocks_event_reasons.active"
# GPU 0 runs a job whose demand at full clock fits under the default limit; GPU 1 one that does not.
MODERATE, HEAVY = Workload(60, 20_000, 0.3), Workload(100, 60_000, 0.0)


@pytest.fixture
def node():
    """An H100 node served by an exporter in this process, and the environment of a shell after `labkit gpu-env`."""
    machine = FakeMachine(profile="H100-SXM", count=2, node="gpu-node-7", clock="manual")
    machine.set_workloads({0: MODERATE, 1: HEAVY})
    machine.step(30)
    with start_exporter(machine) as server:
        env = fake_pynvml_env(source=server.base_url)
        env["LABKIT_FAKE_GPU_NODE"] = machine.node
        yield machine, server, env


def _smi(env, *args):
    result = subprocess.run(["nvidia-smi", *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def _query(env, gpu):
    """(clocks.sm MHz, power.draw W, power.limit W, clocks_event_reasons.active) of one GPU, as nvidia-smi shows."""
    result = _smi(env, QUERY, "--format=csv,noheader,nounits", "-i", str(gpu))
    assert result.returncode == 0, result.stderr
    clock, draw, limit, reasons = (v.strip() for v in result.stdout.strip().split(","))
    return int(clock), float(draw), float(limit), int(reasons, 16)


def _metric(server, name, gpu):
    text = urllib.request.urlopen(server.url, timeout=10).read().decode()  # noqa: S310 -- loopback
    return float(re.search(rf'^{name}{{gpu="{gpu}",[^}}]*}} (\S+)$', text, re.M).group(1))


def test_lock_and_reset_gpu_clocks_change_the_owned_state(node):
    machine, server, env = node
    profile = machine.profile
    assert _query(env, 0)[0] == profile.sm_clock_max_mhz  # this job's demand fits: full clock

    result = _smi(env, "-lgc", "1200,1200", "-i", "0")
    assert result.returncode == 0, result.stdout
    bus = machine.devices[0].pci_bus_id
    assert result.stdout.splitlines() == [f'GPU clocks set to "(gpcClkMin 1200, gpcClkMax 1200)" for GPU {bus}',
                                          "All done."]
    assert machine.devices[0].state.locked_clocks_mhz == (1200, 1200)
    assert machine.devices[1].state.locked_clocks_mhz is None  # -i 0 only
    machine.step(5)
    clock, _draw, _limit, reasons = _query(env, 0)
    assert clock == govern_clock(profile, machine.devices[0].state)[0] == 1200
    assert reasons & REASON_APP_CLOCKS
    assert _metric(server, "DCGM_FI_DEV_SM_CLOCK", 0) == clock

    result = _smi(env, "--reset-gpu-clocks", "-i", "0")
    assert (result.returncode, result.stdout.strip()) == (0, "All done.")
    machine.step(5)
    clock, _draw, _limit, reasons = _query(env, 0)
    assert clock == profile.sm_clock_max_mhz and not reasons & REASON_APP_CLOCKS
    assert _metric(server, "DCGM_FI_DEV_SM_CLOCK", 0) == clock


def test_lock_clamps_to_the_clock_table_and_refuses_min_above_max(node):
    machine, _server, env = node
    profile = machine.profile
    assert _smi(env, "--lock-gpu-clocks=100,9999", "-i", "1").returncode == 0
    assert machine.devices[1].state.locked_clocks_mhz == (profile.sm_clock_min_mhz, profile.sm_clock_max_mhz)
    result = _smi(env, "-lgc", "1500,1200", "-i", "1")
    assert result.returncode == 2  # NVML_ERROR_INVALID_ARGUMENT
    assert result.stdout.splitlines()[-1] == "Terminating early due to previous errors."


def test_power_limit_caps_the_draw_and_the_exporter_agrees(node):
    machine, server, env = node
    profile = machine.profile
    assert power_demand_w(profile, MODERATE, profile.sm_clock_max_mhz) > 400  # so a 400 W limit binds
    result = _smi(env, "-pl", "400", "-i", "0")
    bus = machine.devices[0].pci_bus_id
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        f"Power limit for GPU {bus} was set to 400.00 W from {profile.power_default_limit_w:.2f} W.", "All done."]
    machine.step(10)
    clock, draw, limit, reasons = _query(env, 0)
    assert limit == 400.0 and reasons & REASON_SW_POWER_CAP
    assert clock == govern_clock(profile, machine.devices[0].state)[0] < profile.sm_clock_max_mhz
    assert draw <= 400 * 1.02  # the model's power noise is a fraction of a percent
    assert _metric(server, "DCGM_FI_DEV_POWER_USAGE", 0) == pytest.approx(draw, abs=0.01)
    assert _metric(server, "DCGM_FI_DEV_SM_CLOCK", 0) == clock
    assert _query(env, 1)[2] == profile.power_default_limit_w  # the other GPU keeps its limit


def test_a_power_limit_outside_the_boards_range_is_nvmls_invalid_argument(node):
    machine, _server, env = node
    profile = machine.profile
    result = _smi(env, "--power-limit=900", "-i", "0")
    bus = machine.devices[0].pci_bus_id
    assert result.returncode == 2  # NVML_ERROR_INVALID_ARGUMENT, nvidia-smi's exit status for it
    assert result.stdout.splitlines() == [
        f"Provided power limit 900.00 W is not a valid power limit which should be between "
        f"{profile.power_min_limit_w:.2f} W and {profile.power_max_limit_w:.2f} W for GPU {bus}",
        "Terminating early due to previous errors."]
    assert machine.devices[0].state.power_limit_w == profile.power_default_limit_w


def test_a_lost_gpu_refuses_settings_with_gpu_is_lost(node):
    machine, server, _env = node
    inject_xid(machine, 1, 79)
    request = urllib.request.Request(f"{server.base_url}/settings/{machine.node}", method="POST",
                                     data=b'{"gpu": 1, "power_limit_w": 400}')
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 -- loopback
    assert refused.value.code == 400
    assert '"nvml_error": 15' in refused.value.read().decode()  # NVML_ERROR_GPU_IS_LOST


def test_restore_gpu_nodes_resets_clocks_and_power_limits(node, monkeypatch):
    machine, server, env = node
    profile = machine.profile
    assert _smi(env, "-lgc", "1200,1200").returncode == 0
    assert _smi(env, "-pl", "350").returncode == 0
    assert all(d.state.locked_clocks_mhz == (1200, 1200) and d.state.power_limit_w == 350 for d in machine.devices)
    monkeypatch.setattr(operations, "exporter_url", lambda: server.url)
    monkeypatch.setattr(operations, "get", lambda *_args, **_kwargs: {"spec": {}, "metadata": {"labels": {}}})  # plain
    assert operations.restore_gpu_nodes(lab=None) == []
    for device in machine.devices:
        assert device.state.locked_clocks_mhz is None and device.state.power_limit_w == profile.power_default_limit_w
    machine.step(5)
    clock, _draw, limit, _reasons = _query(env, 0)
    assert (clock, limit) == (profile.sm_clock_max_mhz, profile.power_default_limit_w)
