"""A small, deterministic model of how one GPU turns a workload into clocks, watts and degrees.

The chain is: workload -> power demand at a clock -> clock governor (power cap, thermal limits,
user clock locks) -> power drawn -> temperature (first-order lag) -> energy counter.
Time is simulated: callers step it explicitly, so a notebook run replays exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from labkit.sim.gpu.profiles import GpuProfile
from labkit.sim.gpu.real_pynvml import pynvml

# Dynamic power grows faster than linearly with clock because voltage rises with it.
_CLOCK_POWER_EXPONENT = 2.5
# Share of the dynamic power budget spent in the SMs; the rest is memory and I/O.
_SM_POWER_SHARE = 0.85
# Above the max operating temperature, firmware sheds this fraction of max clock per degree.
_SW_THERMAL_SHED_PER_C = 0.12
# The hardware slowdown halves clocks, as the HW_SLOWDOWN assertion does on real boards.
_HW_SLOWDOWN_FACTOR = 0.5
_POWER_NOISE_FRACTION = 0.004
_MAX_SUBSTEP_S = 0.5
_NVLINK_SHARE = 0.1
# Overclocking (a teaching model, not measured): a board is binned to meet timing up to its table's top clock plus a
# guard band; past it, setup-time violations become likely and grow about exponentially with the clock. They show
# up as wrong results (silent data corruption) or as XID 13/31 faults that kill the job.
_TIMING_GUARD_BAND = 0.04
_TIMING_ERRORS_PER_HOUR_AT_EDGE = 0.01
_TIMING_ERROR_GROWTH = 120.0  # errors/hour grow e-fold per 1/120 of the clock past the guard band

REASON_IDLE = pynvml.nvmlClocksThrottleReasonGpuIdle
REASON_APP_CLOCKS = pynvml.nvmlClocksThrottleReasonApplicationsClocksSetting
REASON_SW_POWER_CAP = pynvml.nvmlClocksThrottleReasonSwPowerCap
REASON_HW_SLOWDOWN = pynvml.nvmlClocksThrottleReasonHwSlowdown
REASON_SW_THERMAL = pynvml.nvmlClocksThrottleReasonSwThermalSlowdown
REASON_HW_THERMAL = pynvml.nvmlClocksThrottleReasonHwThermalSlowdown

_THERMAL_REASONS = REASON_SW_THERMAL | REASON_HW_SLOWDOWN | REASON_HW_THERMAL

_REASON_NAMES = {
    REASON_IDLE: "GpuIdle",
    REASON_APP_CLOCKS: "ApplicationsClocksSetting",
    REASON_SW_POWER_CAP: "SwPowerCap",
    REASON_HW_SLOWDOWN: "HwSlowdown",
    REASON_SW_THERMAL: "SwThermalSlowdown",
    REASON_HW_THERMAL: "HwThermalSlowdown",
}


@dataclass(frozen=True)
class Workload:
    """What a job asks of a GPU: how busy, how much memory, how memory-bound (0 compute .. 1 memory)."""

    utilization_pct: float = 0.0
    memory_mib: int = 0
    memory_bound: float = 0.0
    pid: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.utilization_pct <= 100:
            raise ValueError(f"utilization_pct must be 0..100, got {self.utilization_pct}")
        if not 0 <= self.memory_bound <= 1:
            raise ValueError(f"memory_bound must be 0..1, got {self.memory_bound}")
        if self.memory_mib < 0:
            raise ValueError(f"memory_mib must be >= 0, got {self.memory_mib}")

    @classmethod
    def coerce(cls, value: Workload | dict | tuple | None) -> Workload:
        """Accept a Workload, a dict of its fields, or a (util %, MiB, memory-bound) tuple."""
        if value is None:
            return cls()
        if isinstance(value, Workload):
            return value
        if isinstance(value, dict):
            return cls(**value)
        return cls(*value)


IDLE = Workload()


@dataclass
class GpuState:
    """The mutable physical state of one GPU, plus the knobs an operator can turn."""

    temperature_c: float
    power_w: float
    sm_clock_mhz: int
    mem_clock_mhz: int
    energy_mj: float = 0.0
    nvlink_kib: float = 0.0  # NVLink data moved since boot (TX and RX each), KiB
    reasons: int = REASON_IDLE
    power_limit_w: float = 0.0
    locked_clocks_mhz: tuple[int, int] | None = None
    app_clock_mhz: int | None = None
    app_mem_clock_mhz: int | None = None
    cooling_factor: float = 1.0
    workload: Workload = field(default_factory=Workload)


def initial_state(profile: GpuProfile) -> GpuState:
    """An idle GPU that has sat long enough to reach its idle temperature."""
    idle_temp = profile.ambient_c + profile.thermal_resistance_c_per_w * profile.power_idle_w
    return GpuState(
        temperature_c=idle_temp,
        power_w=profile.power_idle_w,
        sm_clock_mhz=profile.sm_clock_min_mhz,
        # The idle memory clock: the lowest entry (GDDR boards drop to it in P8; HBM parts have one clock).
        mem_clock_mhz=profile.memory_clocks_mhz[-1],
        power_limit_w=profile.power_default_limit_w,
    )


def power_demand_w(profile: GpuProfile, workload: Workload, sm_clock_mhz: float) -> float:
    """Watts the workload would draw at this SM clock if nothing capped it."""
    busy = workload.utilization_pct / 100.0
    # Memory-bound kernels leave SMs stalled on loads, so they burn less SM power.
    sm_activity = busy * (1.0 - 0.6 * workload.memory_bound)
    mem_activity = busy * (0.3 + 0.7 * workload.memory_bound)
    dynamic = profile.power_peak_demand_w - profile.power_idle_w
    ratio = sm_clock_mhz / profile.sm_clock_max_mhz
    return (
        profile.power_idle_w
        + dynamic * _SM_POWER_SHARE * sm_activity * ratio**_CLOCK_POWER_EXPONENT
        + dynamic * (1.0 - _SM_POWER_SHARE) * mem_activity
    )


def _clock_for_power(profile: GpuProfile, workload: Workload, limit_w: float) -> float:
    """Highest SM clock whose demand fits under limit_w (inverse of power_demand_w)."""
    at_zero = power_demand_w(profile, workload, 0.0)
    at_max = power_demand_w(profile, workload, profile.sm_clock_max_mhz)
    if limit_w <= at_zero or at_max <= at_zero:
        return 0.0
    share = min(1.0, (limit_w - at_zero) / (at_max - at_zero))
    return profile.sm_clock_max_mhz * share ** (1.0 / _CLOCK_POWER_EXPONENT)


def _quantize(profile: GpuProfile, clock_mhz: float) -> int:
    """Snap down to the clock table, which starts at the max clock and steps downward."""
    steps_below_max = math.ceil((profile.sm_clock_max_mhz - clock_mhz) / profile.clock_step_mhz - 1e-9)
    snapped = profile.sm_clock_max_mhz - max(0, steps_below_max) * profile.clock_step_mhz
    return max(profile.sm_clock_min_mhz, snapped)


def govern_clock(profile: GpuProfile, state: GpuState) -> tuple[int, int]:
    """The SM clock the firmware would pick now, and the clock-event reasons that explain it."""
    workload = state.workload
    locked = state.locked_clocks_mhz
    if workload.utilization_pct <= 0:
        floor = locked[0] if locked else profile.sm_clock_min_mhz
        return _quantize(profile, floor), REASON_IDLE

    # Every limiter proposes a ceiling; the lowest wins, and the reasons name the binding ones.
    caps: list[tuple[float, int]] = [(float(profile.sm_clock_max_mhz), 0)]
    for user_cap in (locked[1] if locked else None, state.app_clock_mhz):
        if user_cap is not None and user_cap < profile.sm_clock_max_mhz:
            caps.append((float(user_cap), REASON_APP_CLOCKS))
    if power_demand_w(profile, workload, profile.sm_clock_max_mhz) > state.power_limit_w:
        caps.append((_clock_for_power(profile, workload, state.power_limit_w), REASON_SW_POWER_CAP))
    excess_c = state.temperature_c - profile.temp_max_operating_c
    if excess_c >= 0:
        shed = max(0.0, 1.0 - _SW_THERMAL_SHED_PER_C * (excess_c + 1))
        caps.append((profile.sm_clock_max_mhz * shed, REASON_SW_THERMAL))
    if state.temperature_c >= profile.temp_slowdown_c:
        caps.append((profile.sm_clock_max_mhz * _HW_SLOWDOWN_FACTOR, REASON_HW_SLOWDOWN | REASON_HW_THERMAL))

    clock = _quantize(profile, min(cap for cap, _ in caps))
    reasons = 0
    for cap, reason in caps:
        # Thermal protections are asserted whenever the die is hot, binding or not.
        if reason & _THERMAL_REASONS or _quantize(profile, cap) <= clock:
            reasons |= reason
    if locked and not reasons & ~REASON_APP_CLOCKS:
        # A locked minimum holds only while no protection (power, thermal) asks for less.
        clock = max(clock, _quantize(profile, locked[0]))
    return clock, reasons


def step(profile: GpuProfile, state: GpuState, dt_s: float, *, noise: float = 0.0) -> GpuState:
    """Advance one GPU by dt_s simulated seconds; ``noise`` is a unit-normal draw for power jitter."""
    # Firmware re-decides clocks every few milliseconds; sub-stepping keeps the thermal loop from
    # oscillating when a caller takes long steps.
    substeps = max(1, math.ceil(dt_s / _MAX_SUBSTEP_S))
    for _ in range(substeps):
        state = _substep(profile, state, dt_s / substeps, noise)
    return state


def _substep(profile: GpuProfile, state: GpuState, dt_s: float, noise: float) -> GpuState:
    if dt_s <= 0:
        return state
    clock, reasons = govern_clock(profile, state)
    power = power_demand_w(profile, state.workload, clock) * (1.0 + _POWER_NOISE_FRACTION * noise)
    steady_c = profile.ambient_c + profile.thermal_resistance_c_per_w * state.cooling_factor * power
    # Exact solution of dT/dt = (T_ss - T) / tau over dt, so any step size stays stable.
    decay = math.exp(-dt_s / profile.thermal_time_constant_s)
    temperature = steady_c + (state.temperature_c - steady_c) * decay
    mem_clock = state.app_mem_clock_mhz or profile.memory_clocks_mhz[0]
    if state.workload.utilization_pct <= 0 and len(profile.memory_clocks_mhz) > 1:
        mem_clock = profile.memory_clocks_mhz[-1]  # GDDR parts drop memory clock when idle
    return replace(
        state,
        temperature_c=temperature,
        power_w=power,
        sm_clock_mhz=clock,
        mem_clock_mhz=mem_clock,
        energy_mj=state.energy_mj + power * dt_s * 1000.0,
        nvlink_kib=state.nvlink_kib + _nvlink_kib_per_s(profile, state.workload) * dt_s,
        reasons=reasons,
    )


def _nvlink_kib_per_s(profile: GpuProfile, workload: Workload) -> float:
    """Gradient all-reduce traffic: a busy data-parallel job keeps about a tenth of NVLink's bandwidth in use."""
    return profile.nvlink_bandwidth_gbps * 1e9 / 1024 * _NVLINK_SHARE * workload.utilization_pct / 100.0


def relative_throughput(profile: GpuProfile, *, sm_clock_mhz: float, memory_bound: float) -> float:
    """Work rate relative to the same job at max clock (1.0), by a roofline-style split.

    The compute share of each step scales with clock; the memory share does not, so raising clocks
    helps memory-bound work less and less."""
    if sm_clock_mhz <= 0:
        return 0.0
    compute_time = (1.0 - memory_bound) * profile.sm_clock_max_mhz / sm_clock_mhz
    return 1.0 / (compute_time + memory_bound)


def overclocked(profile: GpuProfile, workload: Workload, offset_mhz: float,
                power_limit_w: float | None = None) -> tuple[float, float, float]:
    """(SM clock, watts, timing errors per hour) with the V/F curve shifted up by ``offset_mhz`` (what
    ``nvmlDeviceSetGpcClkVfOffset`` does on boards that allow it; datacenter boards refuse it).

    The clock asked for is the table's top plus the offset; the power limit still caps it, so where the board is
    power-bound an offset buys nothing. Power grows with clock as below the top (voltage rises with frequency)."""
    limit = power_limit_w if power_limit_w is not None else profile.power_default_limit_w
    wanted = profile.sm_clock_max_mhz + offset_mhz
    at_zero = power_demand_w(profile, workload, 0.0)
    at_max = power_demand_w(profile, workload, profile.sm_clock_max_mhz)
    fits = profile.sm_clock_max_mhz * max(0.0, (limit - at_zero) / (at_max - at_zero)) ** (1.0 / _CLOCK_POWER_EXPONENT)
    clock = min(wanted, fits)
    return clock, power_demand_w(profile, workload, clock), timing_errors_per_hour(profile, clock)


def timing_errors_per_hour(profile: GpuProfile, sm_clock_mhz: float) -> float:
    """Expected timing errors per hour at this clock (0 within the validated table; see ``_TIMING_*``)."""
    if sm_clock_mhz <= profile.sm_clock_max_mhz:
        return 0.0
    edge = profile.sm_clock_max_mhz * (1.0 + _TIMING_GUARD_BAND)
    return _TIMING_ERRORS_PER_HOUR_AT_EDGE * math.exp(_TIMING_ERROR_GROWTH * (sm_clock_mhz / edge - 1.0))


def reason_names(bitmask: int) -> list[str]:
    """Human names of the clock-event reason bits, e.g. ``['SwPowerCap']``."""
    return [name for bit, name in _REASON_NAMES.items() if bitmask & bit]
