"""The physics model: invariants a learner can check on a real GPU, and exact replay under a seed."""

import math
import time

import pytest

from labkit.sim.gpu import FakeMachine, FakeNvml, Workload, degrade_cooling, load_profile, relative_throughput
from labkit.sim.gpu.real_pynvml import pynvml

COMPUTE_BOUND = Workload(utilization_pct=100, memory_mib=60_000, memory_bound=0.0)
MEMORY_BOUND = Workload(utilization_pct=100, memory_mib=60_000, memory_bound=0.9)


def _api(machine):
    api = FakeNvml(machine)
    api.nvmlInit()
    return api, api.nvmlDeviceGetHandleByIndex(0)


@pytest.mark.parametrize("profile", ["H100-SXM", "H200", "A100-SXM-80GB", "T4"])
@pytest.mark.parametrize("limit_fraction", [1.0, 0.6])
def test_power_stays_under_the_limit_in_steady_state(profile, limit_fraction):
    machine = FakeMachine(profile=profile, count=1)
    api, handle = _api(machine)
    low, high = api.nvmlDeviceGetPowerManagementLimitConstraints(handle)
    limit_mw = max(low, round(high * limit_fraction))
    api.nvmlDeviceSetPowerManagementLimit(handle, limit_mw)
    machine.set_workload(0, COMPUTE_BOUND)
    machine.step(300)
    for sample in machine.run(60):
        assert sample.power_w <= limit_mw / 1000 * 1.02  # 2%: the reading's noise, as on real boards
    reasons = api.nvmlDeviceGetCurrentClocksThrottleReasons(handle)
    assert reasons & pynvml.nvmlClocksThrottleReasonSwPowerCap
    assert api.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM) < api.nvmlDeviceGetMaxClockInfo(
        handle, pynvml.NVML_CLOCK_SM
    )


def test_no_power_cap_reason_when_under_the_limit():
    machine = FakeMachine(count=1)
    api, handle = _api(machine)
    machine.set_workload(0, MEMORY_BOUND)
    machine.step(60)
    assert api.nvmlDeviceGetCurrentClocksEventReasons(handle) == 0
    assert api.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM) == load_profile().sm_clock_max_mhz


def test_idle_gpu_reports_gpu_idle_and_low_clock():
    machine = FakeMachine(count=1)
    api, handle = _api(machine)
    machine.step(10)
    assert api.nvmlDeviceGetCurrentClocksEventReasons(handle) == pynvml.nvmlClocksEventReasonGpuIdle
    assert api.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM) == load_profile().sm_clock_min_mhz


def test_temperature_follows_a_first_order_lag():
    profile = load_profile("H100-SXM")
    machine = FakeMachine(profile=profile, count=1)
    start = machine.sample(0).temperature_c
    machine.set_workload(0, MEMORY_BOUND)  # unthrottled, so power is constant from the first step
    series = [s for s in machine.run(10 * profile.thermal_time_constant_s, dt_s=1.0)]
    final = series[-1].temperature_c
    assert final > start + 10
    assert all(b.temperature_c >= a.temperature_c - 0.05 for a, b in zip(series, series[1:], strict=False))
    after_tau = series[round(profile.thermal_time_constant_s) - 1].temperature_c
    assert (after_tau - start) / (final - start) == pytest.approx(1 - math.exp(-1), abs=0.03)


def test_poor_cooling_triggers_thermal_slowdown():
    machine = FakeMachine(count=1)
    api, handle = _api(machine)
    machine.set_workload(0, COMPUTE_BOUND)
    degrade_cooling(machine, 0, factor=3.0)
    machine.step(600)
    reasons = api.nvmlDeviceGetCurrentClocksEventReasons(handle)
    assert reasons & pynvml.nvmlClocksEventReasonSwThermalSlowdown
    assert machine.sample(0).temperature_c < load_profile().temp_shutdown_c


def _throughput_at(clock_mhz, workload):
    machine = FakeMachine(count=1)
    api, handle = _api(machine)
    machine.set_workload(0, workload)
    api.nvmlDeviceSetGpuLockedClocks(handle, clock_mhz, clock_mhz)
    machine.step(30)
    sample = machine.sample(0)
    assert sample.sm_clock_mhz == clock_mhz
    return sample.throughput


def test_raising_clocks_helps_memory_bound_work_less():
    half_to_full = {}
    for name, workload in (("compute", Workload(100, 1000, 0.0)), ("memory", Workload(100, 1000, 0.9))):
        half_to_full[name] = _throughput_at(1860, workload) / _throughput_at(930, workload)
    assert half_to_full["compute"] == pytest.approx(2.0, rel=0.01)
    assert 1.0 < half_to_full["memory"] < 1.15


def test_relative_throughput_diminishing_returns():
    profile = load_profile()
    gains = [
        relative_throughput(profile, sm_clock_mhz=hi, memory_bound=0.7)
        - relative_throughput(profile, sm_clock_mhz=lo, memory_bound=0.7)
        for lo, hi in ((600, 900), (900, 1200), (1200, 1500), (1500, 1800))
    ]
    assert all(later < earlier for earlier, later in zip(gains, gains[1:], strict=False))


def test_energy_counter_integrates_power():
    machine = FakeMachine(count=1)
    api, handle = _api(machine)
    machine.set_workload(0, MEMORY_BOUND)
    series = machine.run(100)
    energy_mj = api.nvmlDeviceGetTotalEnergyConsumption(handle)
    # The counter starts at 0 when the simulated node boots; each 1 s step adds power x 1 s.
    assert energy_mj == pytest.approx(sum(s.power_w for s in series) * 1000, rel=1e-6)


def test_same_seed_replays_exactly_and_other_seeds_differ():
    def series(seed):
        machine = FakeMachine(count=2, seed=seed)
        machine.set_workloads({0: COMPUTE_BOUND, 1: (70, 20_000, 0.5)})
        return [(s.power_w, s.temperature_c, s.sm_clock_mhz) for s in machine.run(120)]

    assert series(7) == series(7)
    assert series(7) != series(8)


def test_wall_clock_mode_follows_real_time():
    machine = FakeMachine(count=1, clock="wall")
    api, handle = _api(machine)
    machine.set_workload(0, MEMORY_BOUND)
    time.sleep(0.3)
    api.nvmlDeviceGetPowerUsage(handle)  # every read catches the simulation up
    assert 0.25 <= machine.sim_time_s < 5


@pytest.mark.parametrize("profile", ["H100-SXM", "H200", "A100-SXM-80GB", "T4"])
def test_overclocking_a_power_bound_board_buys_nothing(profile):
    from labkit.sim.gpu.physics import overclocked

    board = load_profile(profile)
    full = Workload(utilization_pct=100, memory_mib=40_000, memory_bound=0.1)
    clocks = [overclocked(board, full, offset)[0] for offset in (0, 100, 200)]
    assert clocks[0] == clocks[1] == clocks[2] <= board.sm_clock_max_mhz  # the power limit binds, not the table
    assert all(overclocked(board, full, offset)[1] <= board.power_default_limit_w + 1e-6 for offset in (0, 200))


@pytest.mark.parametrize("profile", ["H100-SXM", "T4"])
def test_overclocking_past_the_table_trades_a_little_speed_for_many_errors(profile):
    from labkit.sim.gpu.physics import overclocked

    board = load_profile(profile)
    partial = Workload(utilization_pct=60, memory_mib=40_000, memory_bound=0.1)
    runs = [overclocked(board, partial, offset) for offset in (0, 50, 100, 150)]
    assert runs[0][2] == 0.0  # within the validated table: no timing errors
    errors = [r[2] for r in runs[1:]]
    assert errors == sorted(errors) and errors[-1] > 100 * errors[0] > 0
    gain = relative_throughput(board, sm_clock_mhz=runs[-1][0], memory_bound=0.1) / relative_throughput(
        board, sm_clock_mhz=runs[0][0], memory_bound=0.1)
    assert gain < (board.sm_clock_max_mhz + 150) / board.sm_clock_max_mhz  # less than the clock ratio
    assert runs[-1][1] > runs[0][1]  # and it costs power
