"""A simulated GPU node: a few devices of one model, a seeded noise source and a simulated clock."""

from __future__ import annotations

import random
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from labkit.cluster.topology import DEFAULT_GPU_CUDA, DEFAULT_GPU_DRIVER
from labkit.settings import DEFAULT_GPU_PROFILE
from labkit.sim.gpu.faults import FaultState, inject_xid
from labkit.sim.gpu.physics import (
    GpuState,
    Workload,
    initial_state,
    reason_names,
    relative_throughput,
    step,
)
from labkit.sim.gpu.profiles import GpuProfile, MigProfile, load_profile
from labkit.sim.gpu.real_pynvml import pynvml

DEFAULT_NODES = ("gpu-node-1", "gpu-node-2")
DEFAULT_DRIVER_VERSION = DEFAULT_GPU_DRIVER


def cuda_version_number(text: str) -> int:
    """NVML's form of a CUDA version: 12.4 -> 12040 (``nvmlSystemGetCudaDriverVersion``)."""
    major, minor = (text.split(".") + ["0"])[:2]
    return int(major) * 1000 + int(minor) * 10


DEFAULT_CUDA_VERSION = cuda_version_number(DEFAULT_GPU_CUDA)
ClockMode = Literal["manual", "wall"]
# Wall-clock catch-up is chunked so a notebook left open overnight does not loop for minutes.
_MAX_CATCHUP_STEPS = 600


# The operator's knobs on one GPU, as a settings request names them (see FakeMachine.apply_settings).
SETTING_KEYS = ("locked_clocks_mhz", "reset_locked_clocks", "power_limit_w", "application_clocks_mhz",
                "reset_application_clocks", "defaults")


class SettingRefused(ValueError):
    """A setting the board refuses; ``code`` is the NVML error NVML's set call returns for it."""

    def __init__(self, message: str, *, code: int = pynvml.NVML_ERROR_INVALID_ARGUMENT) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class FakeProcess:
    """A process holding GPU memory, as NVML lists it; ``gi_id`` names its MIG GPU instance (None: whole GPU)."""

    pid: int
    memory_mib: int
    gi_id: int | None = None
    name: str = ""


@dataclass
class FakeDevice:
    """One simulated GPU: identity, physical state, faults and MIG layout."""

    index: int
    profile: GpuProfile
    uuid: str
    serial: str
    pci_bus: int
    state: GpuState
    faults: FaultState = field(default_factory=FaultState)
    mig_instances: list[MigProfile] = field(default_factory=list)
    mig_enabled: bool = False
    # Set by whoever owns the processes (the lab's exporter: one per pod); None: one process per loaded GPU.
    processes: list[FakeProcess] | None = None

    @property
    def pci_bus_id(self) -> str:
        """The 32-bit-domain form NVML and dcgm-exporter print, e.g. ``00000000:18:00.0``."""
        return f"00000000:{self.pci_bus:02X}:00.0"

    @property
    def memory_used_mib(self) -> int:
        """Framebuffer held by processes (excluding the driver's reservation)."""
        usable = self.profile.memory_total_mib - self.profile.memory_reserved_mib
        return min(usable, self.state.workload.memory_mib)

    @property
    def memory_free_mib(self) -> int:
        return self.profile.memory_total_mib - self.profile.memory_reserved_mib - self.memory_used_mib

    @property
    def memory_util_pct(self) -> int:
        """Share of time the memory controller is busy, as NVML's utilization.memory reports it."""
        workload = self.state.workload
        return round(workload.utilization_pct * (0.15 + 0.85 * workload.memory_bound))


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU, shaped for a pandas DataFrame row."""

    time_s: float
    node: str
    gpu: int
    name: str
    utilization_pct: float
    memory_used_mib: int
    memory_total_mib: int
    sm_clock_mhz: int
    mem_clock_mhz: int
    power_w: float
    power_limit_w: float
    temperature_c: float
    energy_j: float
    reasons: tuple[str, ...]
    throughput: float
    lost: bool


def _stable_seed(*parts: object) -> int:
    # hash() is salted per process; crc32 keeps seeds identical across runs and subprocesses.
    return zlib.crc32("/".join(map(str, parts)).encode())


class FakeMachine:
    """A GPU node of ``count`` identical devices.

    Time only moves when :meth:`step` or :meth:`run` is called (``clock="manual"``), or, with
    ``clock="wall"``, on every read by following the wall clock (for live dashboards)."""

    def __init__(
        self,
        *,
        profile: str | GpuProfile = DEFAULT_GPU_PROFILE,
        count: int = 2,
        node: str = DEFAULT_NODES[0],
        seed: int = 0,
        clock: ClockMode = "manual",
        driver_version: str = DEFAULT_DRIVER_VERSION,
        cuda_version: int = DEFAULT_CUDA_VERSION,
    ) -> None:
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        if not 1 <= count <= len(self.profile.pci_bus_numbers):
            raise ValueError(f"count must be 1..{len(self.profile.pci_bus_numbers)} for {self.profile.key}")
        if clock not in ("manual", "wall"):
            raise ValueError(f"clock must be 'manual' or 'wall', got {clock!r}")
        self.node = node
        self.seed = seed
        self.clock = clock
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.sim_time_s = 0.0
        self.lock = threading.RLock()
        self._rng = random.Random(_stable_seed(seed, node))  # noqa: S311 -- simulation noise, not security
        self._wall_origin = time.monotonic()
        self.devices = [self._make_device(i) for i in range(count)]

    def _make_device(self, index: int) -> FakeDevice:
        ident = uuid.UUID(int=random.Random(_stable_seed(self.seed, self.node, index)).getrandbits(128))  # noqa: S311
        return FakeDevice(
            index=index,
            profile=self.profile,
            uuid=f"GPU-{ident}",
            serial=f"16549{_stable_seed(self.node, index) % 10**8:08d}",
            pci_bus=self.profile.pci_bus_numbers[index],
            state=initial_state(self.profile),
        )

    def __repr__(self) -> str:
        return f"FakeMachine(node={self.node!r}, {len(self.devices)}x {self.profile.key}, t={self.sim_time_s:.1f}s)"

    def device(self, gpu: int) -> FakeDevice:
        if not 0 <= gpu < len(self.devices):
            raise IndexError(f"{self.node} has GPUs 0..{len(self.devices) - 1}, not {gpu}")
        return self.devices[gpu]

    def set_workload(self, gpu: int, workload: Workload | dict | tuple | None) -> None:
        """Declare what runs on one GPU from now on (None = idle)."""
        with self.lock:
            self.sync()
            device = self.device(gpu)
            if not device.faults.lost:
                device.state.workload = Workload.coerce(workload)

    def set_workloads(self, workloads: Mapping[int, Workload | dict | tuple | None]) -> None:
        """Declare the load of every GPU at once; GPUs missing from the mapping go idle."""
        with self.lock:
            for gpu in range(len(self.devices)):
                self.set_workload(gpu, workloads.get(gpu))

    def set_processes(self, processes: Mapping[int, Iterable[FakeProcess]]) -> None:
        """Declare the processes NVML lists on each GPU (the lab's exporter: one per pod); missing GPUs have none.

        Listed in arrival order: a GPU's memory is one pool, first come first served, so a process that asks for
        more than is still free holds only what was left (its next cudaMalloc fails with out-of-memory).
        Processes on a MIG instance draw on that instance's memory only."""
        with self.lock:
            for device in self.devices:
                pools: dict[int | None, int] = {None: device.profile.memory_total_mib
                                                - device.profile.memory_reserved_mib}
                for i, inst in enumerate(device.mig_instances if device.mig_enabled else []):
                    pools[i + 1] = inst.memory_mib
                granted = []
                for proc in processes.get(device.index, ()):
                    free = pools.get(proc.gi_id, 0)
                    got = min(proc.memory_mib, free)
                    pools[proc.gi_id] = free - got
                    granted.append(replace(proc, memory_mib=got))
                device.processes = sorted(granted, key=lambda p: p.pid)

    def apply_settings(self, gpu: int, request: Mapping[str, Any]) -> dict[str, Any]:
        """Turn an operator's knobs on one GPU, validated as NVML's set calls validate them; returns the GPU's settings.

        ``request`` holds any of: ``locked_clocks_mhz: [min, max]`` (nvmlDeviceSetGpuLockedClocks: clamped to the
        clock table, min > max refused), ``reset_locked_clocks: true``, ``power_limit_w: W`` (refused outside the
        board's min..max), ``application_clocks_mhz: [memory, sm]`` (both must be supported clocks),
        ``reset_application_clocks: true``, ``defaults: true`` (all of them back to the board's defaults). Raises
        :class:`SettingRefused` (nothing changed) for what NVML would refuse."""
        unknown = set(request) - {"gpu", *SETTING_KEYS}
        if unknown or not set(request) & set(SETTING_KEYS):
            raise SettingRefused(f"a settings request names some of {', '.join(SETTING_KEYS)}; got {sorted(request)}")
        with self.lock:
            self.sync()
            device = self.device(gpu)
            if device.faults.lost:
                raise SettingRefused(f"GPU {gpu} of {self.node} has fallen off the bus",
                                     code=pynvml.NVML_ERROR_GPU_IS_LOST)
            profile, state = device.profile, replace(device.state)
            if request.get("defaults"):
                state.locked_clocks_mhz = state.app_clock_mhz = state.app_mem_clock_mhz = None
                state.power_limit_w = profile.power_default_limit_w
            if request.get("reset_locked_clocks"):
                state.locked_clocks_mhz = None
            if request.get("reset_application_clocks"):
                state.app_clock_mhz = state.app_mem_clock_mhz = None
            if (locked := request.get("locked_clocks_mhz")) is not None:
                low, high = (int(mhz) for mhz in locked)
                if low > high:
                    raise SettingRefused(f"locked clocks need min <= max, got {low},{high}")

                def clamp(mhz: int) -> int:
                    return max(profile.sm_clock_min_mhz, min(profile.sm_clock_max_mhz, mhz))

                state.locked_clocks_mhz = (clamp(low), clamp(high))
            if (app := request.get("application_clocks_mhz")) is not None:
                mem, sm = (int(mhz) for mhz in app)
                if mem not in profile.memory_clocks_mhz or sm not in profile.supported_graphics_clocks_mhz():
                    raise SettingRefused(f"{mem},{sm} MHz is not a supported pair of application clocks")
                state.app_mem_clock_mhz, state.app_clock_mhz = mem, sm
            if (watts := request.get("power_limit_w")) is not None:
                if not profile.power_min_limit_w <= float(watts) <= profile.power_max_limit_w:
                    raise SettingRefused(f"power limit {float(watts):.2f} W is outside {profile.power_min_limit_w:.2f}"
                                         f"..{profile.power_max_limit_w:.2f} W")
                state.power_limit_w = float(watts)
            device.state = state
            return gpu_settings(device)

    def step(self, seconds: float = 1.0, *, dt_s: float = 1.0) -> None:
        """Advance simulated time by ``seconds`` in increments of at most ``dt_s``."""
        if seconds < 0 or dt_s <= 0:
            raise ValueError("seconds must be >= 0 and dt_s > 0")
        with self.lock:
            remaining = seconds
            while remaining > 1e-9:
                dt = min(dt_s, remaining)
                self._advance(dt)
                remaining -= dt

    def _advance(self, dt_s: float) -> None:
        self.sim_time_s += dt_s
        for device in self.devices:
            # Draw noise for every device every step, lost or not, so one fault does not
            # shift the random stream of its neighbours.
            noise = self._rng.gauss(0.0, 1.0)
            if device.faults.lost:
                continue
            device.state = step(device.profile, device.state, dt_s, noise=noise)
            if device.state.temperature_c >= device.profile.temp_shutdown_c:
                inject_xid(self, device.index, 79)

    def run(self, seconds: float, *, dt_s: float = 1.0) -> list[GpuSample]:
        """Step ``seconds`` forward and return one sample per GPU per step (a time series)."""
        series: list[GpuSample] = []
        with self.lock:
            steps = round(seconds / dt_s)
            for _ in range(steps):
                self._advance(dt_s)
                series.extend(self.samples())
        return series

    def sync(self) -> None:
        """In wall-clock mode, catch simulated time up with real time; otherwise do nothing."""
        if self.clock != "wall":
            return
        with self.lock:
            behind = time.monotonic() - self._wall_origin - self.sim_time_s
            if behind > 0.05:
                self.step(behind, dt_s=max(1.0, behind / _MAX_CATCHUP_STEPS))

    def sample(self, gpu: int) -> GpuSample:
        """The current reading of one GPU as a plain record."""
        with self.lock:
            device = self.device(gpu)
            state = device.state
            return GpuSample(
                time_s=self.sim_time_s,
                node=self.node,
                gpu=gpu,
                name=device.profile.name,
                utilization_pct=state.workload.utilization_pct,
                memory_used_mib=device.memory_used_mib,
                memory_total_mib=device.profile.memory_total_mib,
                sm_clock_mhz=state.sm_clock_mhz,
                mem_clock_mhz=state.mem_clock_mhz,
                power_w=state.power_w,
                power_limit_w=state.power_limit_w,
                temperature_c=state.temperature_c,
                energy_j=state.energy_mj / 1000.0,
                reasons=tuple(reason_names(state.reasons)),
                throughput=relative_throughput(
                    device.profile, sm_clock_mhz=state.sm_clock_mhz, memory_bound=state.workload.memory_bound
                )
                if state.workload.utilization_pct > 0
                else 0.0,
                lost=device.faults.lost,
            )

    def samples(self) -> list[GpuSample]:
        """Current readings of every GPU."""
        with self.lock:
            return [self.sample(i) for i in range(len(self.devices))]

    def configure_mig(self, gpu: int, instances: Iterable[str] | None) -> None:
        """Enable MIG with these GPU instances (e.g. ``["3g.40gb", "3g.40gb"]``), or disable it with None."""
        with self.lock:
            device = self.device(gpu)
            if instances is None:
                device.mig_enabled, device.mig_instances = False, []
                return
            if not self.profile.supports_mig:
                raise ValueError(f"{self.profile.name} does not support MIG")
            chosen = [self.profile.mig_profile(name) for name in instances]
            if sum(p.slices for p in chosen) > self.profile.mig_max_instances:
                raise ValueError(f"{instances} needs more than the {self.profile.mig_max_instances} slices there are")
            for p in set(chosen):
                if chosen.count(p) > p.max_count:
                    raise ValueError(f"at most {p.max_count} instances of {p.name} fit on one GPU")
            device.mig_enabled, device.mig_instances = True, chosen


def gpu_settings(device: FakeDevice) -> dict[str, Any]:
    """One GPU's operator settings as JSON-ready data (what ``POST /settings/<node>`` answers)."""
    state = device.state
    return {"gpu": device.index, "power_limit_w": state.power_limit_w,
            "locked_clocks_mhz": None if state.locked_clocks_mhz is None else list(state.locked_clocks_mhz),
            "application_clocks_mhz": None if state.app_clock_mhz is None
            else [state.app_mem_clock_mhz, state.app_clock_mhz]}


def make_fleet(
    *,
    nodes: Iterable[str] = DEFAULT_NODES,
    profile: str | GpuProfile = DEFAULT_GPU_PROFILE,
    count: int = 2,
    seed: int = 0,
    clock: ClockMode = "manual",
) -> dict[str, FakeMachine]:
    """One :class:`FakeMachine` per node name, seeded per node so nodes differ but replay exactly."""
    return {node: FakeMachine(profile=profile, count=count, node=node, seed=seed, clock=clock) for node in nodes}
