"""pynvml's API answered by simulated GPUs: same function names, arguments, return types and exceptions.

Return values use pynvml's own ctypes structures and raise pynvml's own ``NVMLError_*``
classes, so code written against the real library (gpustat, nvitop-style scripts, the
notebooks) runs unchanged. Anything a device lacks raises ``NVMLError_NotSupported``;
functions this fake does not implement raise ``NVMLError_FunctionNotFound``, as an old
driver would."""

from __future__ import annotations

import inspect
import time
import types
import uuid
from dataclasses import dataclass
from typing import Any

from labkit.sim.gpu.machine import FakeDevice, FakeMachine, FakeProcess, SettingRefused
from labkit.sim.gpu.physics import (
    REASON_APP_CLOCKS,
    REASON_HW_SLOWDOWN,
    REASON_HW_THERMAL,
    REASON_IDLE,
    REASON_SW_POWER_CAP,
    REASON_SW_THERMAL,
    relative_throughput,
)
from labkit.sim.gpu.real_pynvml import pynvml

N = pynvml
_MIB = 1024 * 1024
# Of the time a step computes, the share its tensor pipes are busy (the rest: other SM work, waiting on operands).
TENSOR_PIPE_SHARE = 0.7
_PCIE_GBPS_X16 = {3: 15.75, 4: 31.5, 5: 63.0}
# Helpers in pynvml that never touch the driver, so the fake can keep the genuine ones.
_PURE_HELPERS = {"nvmlStructToFriendlyObject", "nvmlFriendlyObjectToStruct", "nvmlExceptionClass"}
_SUPPORTED_REASONS = (
    REASON_IDLE | REASON_APP_CLOCKS | REASON_SW_POWER_CAP | REASON_HW_SLOWDOWN | REASON_SW_THERMAL | REASON_HW_THERMAL
)


def _raise(code: int) -> None:
    # NVMLError.__new__ maps the code to pynvml's matching subclass, e.g. NVMLError_GpuIsLost.
    raise N.NVMLError(code)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class FakeHandle:
    """Stands in for pynvml's opaque ``c_nvmlDevice_t``; ``mig`` set for a MIG device handle."""

    owner: int
    gpu: int
    mig: int | None = None


@dataclass(frozen=True)
class ProfilingReading:
    """Values NVML does not expose but DCGM does (profiling counters, memory temperature, last XID)."""

    gr_engine_active: float
    tensor_active: float
    dram_active: float
    memory_temperature_c: int | None
    nvlink_bandwidth_total: int | None
    last_xid: int


class FakeNvml:
    """A module-like object with pynvml's functions, answering from one :class:`FakeMachine`.

    Constants, structures and exception classes resolve to pynvml's own, so
    ``fake.NVML_TEMPERATURE_GPU`` and ``except fake.NVMLError_NotSupported`` work."""

    __labkit_fake__ = True

    def __init__(self, machine: FakeMachine) -> None:
        self.machine = machine
        self._init_count = 0

    def __repr__(self) -> str:
        return f"<fake pynvml for {self.machine!r}>"

    def __getattr__(self, name: str) -> Any:
        return _stub_or_genuine(name)

    # -- lifecycle ---------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.nvmlInitWithFlags(0)

    def nvmlInitWithFlags(self, flags: int) -> None:
        self._init_count += 1

    def nvmlShutdown(self) -> None:
        self._require_init()
        self._init_count -= 1

    def nvmlErrorString(self, result: int) -> str:
        return N.NVMLError._errcode_to_string.get(result, "Unknown Error")

    def _require_init(self) -> None:
        if self._init_count <= 0:
            _raise(N.NVML_ERROR_UNINITIALIZED)

    # -- system --------------------------------------------------------------------------------

    def nvmlSystemGetDriverVersion(self) -> str:
        self._require_init()
        return self.machine.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._require_init()
        return self.machine.cuda_version

    nvmlSystemGetCudaDriverVersion_v2 = nvmlSystemGetCudaDriverVersion

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._require_init()
        return f"{self.machine.cuda_version // 1000}.{self.machine.driver_version}"

    # -- handles ---------------------------------------------------------------------------------

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        """The name of a process that holds a GPU (a pod's, as the lab attributes it); NOT_FOUND for others."""
        self._require_init()
        for device in self.machine.devices:
            if device.faults.lost:
                continue
            for process in self._processes(device):
                if process.pid == pid and process.name:
                    return process.name
        _raise(N.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetCount(self) -> int:
        self._require_init()
        return len(self.machine.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._require_init()
        if not 0 <= index < len(self.machine.devices):
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        if self.machine.devices[index].faults.lost:
            _raise(N.NVML_ERROR_GPU_IS_LOST)
        return FakeHandle(id(self.machine), index)

    def nvmlDeviceGetHandleByUUID(self, uuid_: str | bytes) -> FakeHandle:
        self._require_init()
        wanted = _text(uuid_)
        for device in self.machine.devices:
            if device.uuid == wanted:
                return self.nvmlDeviceGetHandleByIndex(device.index)
            for i in range(len(device.mig_instances)):
                if _mig_uuid(device, i) == wanted:
                    return FakeHandle(id(self.machine), device.index, i)
        _raise(N.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetHandleByPciBusId(self, pciBusId: str | bytes) -> FakeHandle:
        self._require_init()
        wanted = _text(pciBusId).upper()
        for device in self.machine.devices:
            if wanted in (device.pci_bus_id, device.pci_bus_id[4:]):
                return self.nvmlDeviceGetHandleByIndex(device.index)
        _raise(N.NVML_ERROR_NOT_FOUND)

    nvmlDeviceGetHandleByPciBusId_v2 = nvmlDeviceGetHandleByPciBusId

    def _set(self, handle: object, **request: Any) -> None:
        """One NVML set call: the machine applies it (a mirror sends it to the exporter that owns the state), or
        answers the NVML error the board would."""
        device = self._device(handle)
        try:
            self.machine.apply_settings(device.index, request)
        except SettingRefused as refused:
            _raise(refused.code)

    def _device(self, handle: object, *, mig_ok: bool = False) -> FakeDevice:
        self._require_init()
        if not isinstance(handle, FakeHandle) or handle.owner != id(self.machine):
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        if handle.mig is not None and not mig_ok:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)
        self.machine.sync()
        device = self.machine.devices[handle.gpu]
        if device.faults.lost:
            _raise(N.NVML_ERROR_GPU_IS_LOST)
        return device

    # -- identity and firmware -----------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        device = self._device(handle, mig_ok=True)
        if handle.mig is not None:
            return f"{device.profile.name} MIG {device.mig_instances[handle.mig].name}"
        return device.profile.name

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        device = self._device(handle, mig_ok=True)
        return device.uuid if handle.mig is None else _mig_uuid(device, handle.mig)

    def nvmlDeviceGetIndex(self, handle: FakeHandle) -> int:
        return self._device(handle).index

    def nvmlDeviceGetMinorNumber(self, handle: FakeHandle) -> int:
        return self._device(handle).index

    def nvmlDeviceGetSerial(self, handle: FakeHandle) -> str:
        return self._device(handle).serial

    def nvmlDeviceGetBoardId(self, handle: FakeHandle) -> int:
        return self._device(handle).pci_bus << 8

    def nvmlDeviceGetBrand(self, handle: FakeHandle) -> int:
        return getattr(N, f"NVML_BRAND_{self._device(handle).profile.brand.upper()}")

    def nvmlDeviceGetArchitecture(self, handle: FakeHandle) -> int:
        return getattr(N, f"NVML_DEVICE_ARCH_{self._device(handle).profile.architecture.upper()}")

    def nvmlDeviceGetVbiosVersion(self, handle: FakeHandle) -> str:
        return self._device(handle).profile.vbios_version

    def nvmlDeviceGetInforomImageVersion(self, handle: FakeHandle) -> str:
        return self._device(handle).profile.inforom_image_version

    def nvmlDeviceGetInforomVersion(self, handle: FakeHandle, infoRomObject: int) -> str:
        profile = self._device(handle).profile
        versions = {N.NVML_INFOROM_OEM: profile.inforom_oem_version, N.NVML_INFOROM_ECC: profile.inforom_ecc_version}
        if infoRomObject not in versions:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)
        return versions[infoRomObject]

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> Any:
        device = self._device(handle)
        info = N.nvmlPciInfo_t()
        info.busIdLegacy = device.pci_bus_id[4:].encode()
        info.busId = device.pci_bus_id.encode()
        info.domain, info.bus, info.device = 0, device.pci_bus, 0
        info.pciDeviceId = device.profile.pci_device_id
        info.pciSubSystemId = device.profile.pci_subsystem_id
        return info

    nvmlDeviceGetPciInfo_v3 = nvmlDeviceGetPciInfo

    # -- modes ---------------------------------------------------------------------------------

    def nvmlDeviceGetComputeMode(self, handle: FakeHandle) -> int:
        self._device(handle)
        return N.NVML_COMPUTEMODE_DEFAULT

    def nvmlDeviceGetPersistenceMode(self, handle: FakeHandle) -> int:
        self._device(handle)
        return N.NVML_FEATURE_ENABLED  # servers run nvidia-persistenced

    def nvmlDeviceGetDisplayMode(self, handle: FakeHandle) -> int:
        self._device(handle)
        return N.NVML_FEATURE_DISABLED

    nvmlDeviceGetDisplayActive = nvmlDeviceGetDisplayMode

    def nvmlDeviceGetDriverModel(self, handle: FakeHandle) -> list[int]:
        self._device(handle)
        _raise(N.NVML_ERROR_NOT_SUPPORTED)  # WDDM/TCC driver models exist on Windows only

    nvmlDeviceGetDriverModel_v2 = nvmlDeviceGetDriverModel

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeHandle) -> tuple[int, int]:
        major, minor = self._device(handle, mig_ok=True).profile.cuda_compute_capability
        return major, minor

    def nvmlDeviceGetEccMode(self, handle: FakeHandle) -> list[int]:
        device = self._device(handle)
        if not device.profile.has_ecc:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)
        return [N.NVML_FEATURE_ENABLED, N.NVML_FEATURE_ENABLED]

    # -- memory and utilization ----------------------------------------------------------------

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> Any:
        device = self._device(handle, mig_ok=True)
        if handle.mig is not None:
            total = device.mig_instances[handle.mig].memory_mib * _MIB
            reserved = 0
            used = min(total, sum(p.memory_mib for p in self._processes(device, handle.mig)) * _MIB)
        else:
            total = device.profile.memory_total_mib * _MIB
            reserved = device.profile.memory_reserved_mib * _MIB
            used = device.memory_used_mib * _MIB
        if not version:
            # The v1 structure has no reserved field; the driver counts it as used.
            return N.c_nvmlMemory_t(total=total, free=total - reserved - used, used=used + reserved)
        return N.c_nvmlMemory_v2_t(
            version=version, total=total, reserved=reserved, free=total - reserved - used, used=used
        )

    def nvmlDeviceGetBAR1MemoryInfo(self, handle: FakeHandle) -> Any:
        device = self._device(handle, mig_ok=True)
        total = device.profile.bar1_total_mib * _MIB
        if handle.mig is not None:  # a MIG device maps its share of the aperture
            total = total * device.mig_instances[handle.mig].slices // 8
        # The driver maps a few MiB for itself; each process maps a little more for its pinned buffers.
        used = min(total, (2 + 2 * len(self._processes(device, handle.mig))) * _MIB)
        return N.c_nvmlBAR1Memory_t(bar1Total=total, bar1Free=total - used, bar1Used=used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> Any:
        device = self._device(handle)
        return N.c_nvmlUtilization_t(gpu=round(device.state.workload.utilization_pct), memory=device.memory_util_pct)

    def nvmlDeviceGetEncoderUtilization(self, handle: FakeHandle) -> list[int]:
        self._device(handle)
        return [0, 167000]  # [percent, sampling period in microseconds]

    nvmlDeviceGetDecoderUtilization = nvmlDeviceGetEncoderUtilization

    def _processes(self, device: FakeDevice, mig: int | None = None) -> list[FakeProcess]:
        """Processes on a GPU (all of them on a MIG-enabled parent) or on one of its MIG instances."""
        if device.processes is not None:
            procs = list(device.processes)
        else:
            workload = device.state.workload
            if workload.utilization_pct <= 0 and workload.memory_mib <= 0:
                return []
            pid = workload.pid if workload.pid is not None else 40000 + device.index
            procs = [FakeProcess(pid, device.memory_used_mib)]
        return [p for p in procs if mig is None or p.gi_id == mig + 1]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[Any]:
        device = self._device(handle, mig_ok=True)
        not_mig = N.NVML_VALUE_NOT_AVAILABLE_uint.value
        return [
            N.nvmlFriendlyObject(
                {
                    "pid": p.pid,
                    "usedGpuMemory": p.memory_mib * _MIB,
                    "gpuInstanceId": not_mig if p.gi_id is None else p.gi_id,
                    "computeInstanceId": not_mig if p.gi_id is None else 0,
                }
            )
            for p in self._processes(device, handle.mig)
        ]

    nvmlDeviceGetComputeRunningProcesses_v2 = nvmlDeviceGetComputeRunningProcesses
    nvmlDeviceGetComputeRunningProcesses_v3 = nvmlDeviceGetComputeRunningProcesses

    def nvmlDeviceGetMPSComputeRunningProcesses(self, handle: FakeHandle) -> list[Any]:
        self._device(handle, mig_ok=True)
        return []  # no MPS control daemon runs on the simulated nodes

    nvmlDeviceGetMPSComputeRunningProcesses_v2 = nvmlDeviceGetMPSComputeRunningProcesses
    nvmlDeviceGetMPSComputeRunningProcesses_v3 = nvmlDeviceGetMPSComputeRunningProcesses

    def nvmlDeviceGetProcessUtilization(self, handle: FakeHandle, timeStamp: int) -> list[Any]:
        device = self._device(handle, mig_ok=True)
        if handle.mig is not None:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)  # per-process utilization is not sampled on MIG devices
        procs = self._processes(device)
        if not procs:
            _raise(N.NVML_ERROR_NOT_FOUND)
        workload = device.state.workload
        total = sum(p.memory_mib for p in procs) or 1
        now_us = int(time.time() * 1e6)
        samples = []
        for p in procs:
            share = p.memory_mib / total if len(procs) > 1 else 1.0
            samples.append(N.c_nvmlProcessUtilizationSample_t(
                pid=p.pid, timeStamp=now_us, smUtil=round(workload.utilization_pct * share),
                memUtil=round(device.memory_util_pct * share), encUtil=0, decUtil=0))
        return samples

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeHandle) -> list[Any]:
        self._device(handle, mig_ok=True)
        return []

    nvmlDeviceGetGraphicsRunningProcesses_v2 = nvmlDeviceGetGraphicsRunningProcesses
    nvmlDeviceGetGraphicsRunningProcesses_v3 = nvmlDeviceGetGraphicsRunningProcesses

    # -- thermals and power ---------------------------------------------------------------------

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        device = self._device(handle)
        if sensor != N.NVML_TEMPERATURE_GPU:
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        return round(device.state.temperature_c)

    def nvmlDeviceGetTemperatureV(self, handle: FakeHandle, sensor: int, version: int = N.nvmlTemperature_v1) -> int:
        if version != N.nvmlTemperature_v1:
            _raise(N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return self.nvmlDeviceGetTemperature(handle, sensor)

    def nvmlDeviceGetNumFans(self, device: FakeHandle) -> int:
        gpu = self._device(device)
        if not gpu.profile.has_fan:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)
        return 1

    def nvmlDeviceGetFanSpeed_v2(self, handle: FakeHandle, fan: int) -> int:
        if fan != 0:
            self._device(handle)
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        return self.nvmlDeviceGetFanSpeed(handle)

    def nvmlDeviceGetTemperatureThreshold(self, handle: FakeHandle, threshold: int) -> int:
        profile = self._device(handle).profile
        thresholds = {
            N.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: profile.temp_shutdown_c,
            N.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: profile.temp_slowdown_c,
            N.NVML_TEMPERATURE_THRESHOLD_GPU_MAX: profile.temp_max_operating_c,
            N.NVML_TEMPERATURE_THRESHOLD_MEM_MAX: profile.temp_memory_max_c,
        }
        if thresholds.get(threshold) is None:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)
        return thresholds[threshold]

    def nvmlDeviceGetFanSpeed(self, handle: FakeHandle) -> int:
        device = self._device(handle)
        if not device.profile.has_fan:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)  # SXM and passive cards are cooled by the chassis
        span = device.profile.temp_max_operating_c - device.profile.ambient_c
        return max(30, min(100, round(100 * (device.state.temperature_c - device.profile.ambient_c) / span)))

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return round(self._device(handle).state.power_w * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:
        return int(self._device(handle).state.energy_mj)

    def nvmlDeviceGetPowerManagementLimit(self, handle: FakeHandle) -> int:
        return round(self._device(handle).state.power_limit_w * 1000)

    nvmlDeviceGetEnforcedPowerLimit = nvmlDeviceGetPowerManagementLimit

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: FakeHandle) -> int:
        return round(self._device(handle).profile.power_default_limit_w * 1000)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: FakeHandle) -> list[int]:
        profile = self._device(handle).profile
        return [round(profile.power_min_limit_w * 1000), round(profile.power_max_limit_w * 1000)]

    def nvmlDeviceSetPowerManagementLimit(self, handle: FakeHandle, limit: int) -> None:
        self._set(handle, power_limit_w=limit / 1000)

    def nvmlDeviceGetPerformanceState(self, handle: FakeHandle) -> int:
        device = self._device(handle)
        # GDDR boards drop to P8 at idle; HBM datacenter parts under persistence mode stay in P0.
        if device.state.workload.utilization_pct <= 0 and len(device.profile.memory_clocks_mhz) > 1:
            return N.NVML_PSTATE_8
        return N.NVML_PSTATE_0

    nvmlDeviceGetPowerState = nvmlDeviceGetPerformanceState

    # -- clocks ------------------------------------------------------------------------------------

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, type: int) -> int:
        state = self._device(handle).state
        return self._clock(handle, type, sm=state.sm_clock_mhz, mem=state.mem_clock_mhz)

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeHandle, type: int) -> int:
        profile = self._device(handle).profile
        return self._clock(handle, type, sm=profile.sm_clock_max_mhz, mem=profile.memory_clocks_mhz[0])

    def nvmlDeviceGetApplicationsClock(self, handle: FakeHandle, clockType: int) -> int:
        device = self._device(handle)
        state, profile = device.state, device.profile
        sm = state.app_clock_mhz or profile.sm_clock_max_mhz
        return self._clock(handle, clockType, sm=sm, mem=state.app_mem_clock_mhz or profile.memory_clocks_mhz[0])

    def nvmlDeviceGetDefaultApplicationsClock(self, handle: FakeHandle, type: int) -> int:
        return self.nvmlDeviceGetMaxClockInfo(handle, type)

    def _clock(self, handle: FakeHandle, clock_type: int, *, sm: int, mem: int) -> int:
        profile = self._device(handle).profile
        video = round(sm * profile.video_clock_max_mhz / profile.sm_clock_max_mhz)
        clocks = {N.NVML_CLOCK_GRAPHICS: sm, N.NVML_CLOCK_SM: sm, N.NVML_CLOCK_MEM: mem, N.NVML_CLOCK_VIDEO: video}
        if clock_type not in clocks:
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        return clocks[clock_type]

    def nvmlDeviceGetSupportedMemoryClocks(self, handle: FakeHandle) -> list[int]:
        return list(self._device(handle).profile.memory_clocks_mhz)

    def nvmlDeviceGetSupportedGraphicsClocks(self, handle: FakeHandle, memoryClockMHz: int) -> list[int]:
        profile = self._device(handle).profile
        if memoryClockMHz not in profile.memory_clocks_mhz:
            _raise(N.NVML_ERROR_NOT_FOUND)
        return profile.supported_graphics_clocks_mhz()

    def nvmlDeviceSetApplicationsClocks(
        self, handle: FakeHandle, maxMemClockMHz: int, maxGraphicsClockMHz: int
    ) -> None:
        self._set(handle, application_clocks_mhz=[maxMemClockMHz, maxGraphicsClockMHz])

    def nvmlDeviceResetApplicationsClocks(self, handle: FakeHandle) -> None:
        self._set(handle, reset_application_clocks=True)

    def nvmlDeviceSetGpuLockedClocks(self, handle: FakeHandle, minGpuClockMHz: int, maxGpuClockMHz: int) -> None:
        self._set(handle, locked_clocks_mhz=[minGpuClockMHz, maxGpuClockMHz])

    def nvmlDeviceResetGpuLockedClocks(self, handle: FakeHandle) -> None:
        self._set(handle, reset_locked_clocks=True)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:
        return self._device(handle).state.reasons

    nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons

    def nvmlDeviceGetSupportedClocksEventReasons(self, handle: FakeHandle) -> int:
        self._device(handle)
        return _SUPPORTED_REASONS

    nvmlDeviceGetSupportedClocksThrottleReasons = nvmlDeviceGetSupportedClocksEventReasons

    # -- PCIe --------------------------------------------------------------------------------------

    def nvmlDeviceGetPcieThroughput(self, device: FakeHandle, counter: int) -> int:
        gpu = self._device(device)
        link_kbps = _PCIE_GBPS_X16[gpu.profile.pcie_generation] * 1e6 * gpu.profile.pcie_width / 16
        # Training jobs stream batches in over PCIe at a few percent of link speed; results go out less.
        rx = link_kbps * 0.03 * gpu.state.workload.utilization_pct / 100
        rates = {N.NVML_PCIE_UTIL_RX_BYTES: rx, N.NVML_PCIE_UTIL_TX_BYTES: rx * 0.4}
        if counter not in rates:
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        return round(rates[counter])

    def nvmlDeviceGetPcieReplayCounter(self, handle: FakeHandle) -> int:
        return self._device(handle).faults.pcie_replays

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: FakeHandle) -> int:
        return self._device(handle).profile.pcie_generation

    nvmlDeviceGetMaxPcieLinkGeneration = nvmlDeviceGetCurrPcieLinkGeneration

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: FakeHandle) -> int:
        return self._device(handle).profile.pcie_width

    nvmlDeviceGetMaxPcieLinkWidth = nvmlDeviceGetCurrPcieLinkWidth

    # -- ECC -----------------------------------------------------------------------------------------

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeHandle, errorType: int, counterType: int) -> int:
        device = self._device(handle)
        if not device.profile.has_ecc:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)
        faults = device.faults
        counts = {
            (N.NVML_MEMORY_ERROR_TYPE_CORRECTED, N.NVML_VOLATILE_ECC): faults.volatile_corrected,
            (N.NVML_MEMORY_ERROR_TYPE_CORRECTED, N.NVML_AGGREGATE_ECC): faults.aggregate_corrected,
            (N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_VOLATILE_ECC): faults.volatile_uncorrected,
            (N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_AGGREGATE_ECC): faults.aggregate_uncorrected,
        }
        if (errorType, counterType) not in counts:
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        return counts[(errorType, counterType)]

    def nvmlDeviceGetMemoryErrorCounter(
        self, handle: FakeHandle, errorType: int, counterType: int, locationType: int
    ) -> int:
        total = self.nvmlDeviceGetTotalEccErrors(handle, errorType, counterType)
        if not 0 <= locationType < N.NVML_MEMORY_LOCATION_COUNT:
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        # The simulated errors all land in device memory (DRAM/HBM), where nearly all real ones occur.
        return total if locationType == N.NVML_MEMORY_LOCATION_DEVICE_MEMORY else 0

    def nvmlDeviceGetRemappedRows(self, device: FakeHandle) -> tuple[int, int, int, int]:
        gpu = self._device(device)
        if not gpu.profile.has_row_remapping:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)  # pre-Ampere boards retire pages instead
        f = gpu.faults
        return (f.remapped_rows_correctable, f.remapped_rows_uncorrectable, int(f.remap_pending), int(f.remap_failure))

    # -- MIG -------------------------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, device: FakeHandle) -> list[int]:
        gpu = self._device(device)
        if not gpu.profile.supports_mig:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)
        mode = N.NVML_DEVICE_MIG_ENABLE if gpu.mig_enabled else N.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: FakeHandle) -> int:
        gpu = self._device(device)
        if not gpu.profile.supports_mig:
            _raise(N.NVML_ERROR_NOT_SUPPORTED)
        return gpu.profile.mig_max_instances

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: FakeHandle, index: int) -> FakeHandle:
        gpu = self._device(device)
        if not gpu.mig_enabled:
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        if not 0 <= index < len(gpu.mig_instances):
            _raise(N.NVML_ERROR_NOT_FOUND)
        return FakeHandle(device.owner, device.gpu, index)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: FakeHandle) -> FakeHandle:
        self._device(migDevice, mig_ok=True)
        if migDevice.mig is None:
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(migDevice.owner, migDevice.gpu)

    def nvmlDeviceIsMigDeviceHandle(self, device: FakeHandle) -> bool:
        self._device(device, mig_ok=True)
        return device.mig is not None

    def nvmlDeviceGetGpuInstanceId(self, device: FakeHandle) -> int:
        self._device(device, mig_ok=True)
        if device.mig is None:
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)  # only MIG device handles have one
        return device.mig + 1  # GPU instance ids as the device plugin's allocation numbers them

    def nvmlDeviceGetComputeInstanceId(self, device: FakeHandle) -> int:
        self._device(device, mig_ok=True)
        if device.mig is None:
            _raise(N.NVML_ERROR_INVALID_ARGUMENT)
        return 0  # one compute instance spanning each GPU instance, as the device plugin creates them

    # -- field values (NVLink) ---------------------------------------------------------------------

    def nvmlDeviceGetFieldValues(self, handle: FakeHandle, fieldIds: list[int | tuple[int, int]]) -> Any:
        device = self._device(handle, mig_ok=True)
        values = (N.c_nvmlFieldValue_t * len(fieldIds))()
        now_us = int(time.time() * 1e6)
        for slot, wanted in zip(values, fieldIds, strict=True):
            field_id, scope = wanted if isinstance(wanted, tuple) else (wanted, 0)
            slot.fieldId, slot.scopeId, slot.timestamp, slot.latencyUsec = field_id, scope, now_us, 0
            value = self._field_value(device, handle, field_id, scope)
            if value is None:
                slot.nvmlReturn = N.NVML_ERROR_NOT_SUPPORTED
                continue
            slot.nvmlReturn = N.NVML_SUCCESS
            if field_id == N.NVML_FI_DEV_NVLINK_LINK_COUNT:
                slot.valueType, slot.value.uiVal = N.NVML_VALUE_TYPE_UNSIGNED_INT, value
            else:
                slot.valueType, slot.value.ullVal = N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, value
        return values

    def _field_value(self, device: FakeDevice, handle: FakeHandle, field_id: int, scope: int) -> int | None:
        links = device.profile.nvlink_links
        if not links or handle.mig is not None:
            return None  # no NVLink on this board (or per MIG device)
        if field_id == N.NVML_FI_DEV_NVLINK_LINK_COUNT:
            return links
        if field_id in (N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX):
            if not 0 <= scope < links:
                return None
            return round(device.state.nvlink_kib / links)  # KiB since boot, spread evenly over the links
        return None

    # -- what DCGM adds on top of NVML -------------------------------------------------------------

    def labkit_profiling(self, handle: FakeHandle) -> ProfilingReading:
        """DCGM-only readings for the exporter; not part of pynvml (hence the ``labkit_`` prefix)."""
        self._require_init()
        device = self.machine.devices[handle.gpu]
        if device.faults.lost:
            return ProfilingReading(0.0, 0.0, 0.0, None, None, device.faults.last_xid)
        self.machine.sync()
        workload, profile = device.state.workload, device.profile
        busy = workload.utilization_pct / 100
        # A step's time splits into compute (scales with 1/clock) and memory (does not): DCGM's activities are
        # fractions of elapsed time, so a slower clock makes the tensor pipe busy for more of it, not less, while
        # the work done per second (tensor active x clock) falls with relative_throughput.
        throughput = relative_throughput(profile, sm_clock_mhz=device.state.sm_clock_mhz,
                                         memory_bound=workload.memory_bound)
        memory_share = workload.memory_bound * throughput
        memory_temp = None
        if profile.has_memory_temperature:
            # HBM stacks sit next to the die and run a few degrees hotter than it.
            memory_temp = round(profile.ambient_c + (device.state.temperature_c - profile.ambient_c) * 1.1)
        return ProfilingReading(
            gr_engine_active=busy,
            tensor_active=busy * TENSOR_PIPE_SHARE * (1 - memory_share),
            dram_active=busy * (0.1 + 0.8 * memory_share),
            memory_temperature_c=memory_temp,
            nvlink_bandwidth_total=0 if profile.nvlink_links else None,
            last_xid=device.faults.last_xid,
        )

    # -- becoming the pynvml module ----------------------------------------------------------------

    def _nvmlGetFunctionPointer(self, name: str) -> Any:
        """NVML's C function pointer for ``name``, served by this fake (see :mod:`labkit.sim.gpu.clib`)."""
        try:
            return getattr(self.as_module().nvmlLib, name)
        except AttributeError:
            _raise(N.NVML_ERROR_FUNCTION_NOT_FOUND)

    def as_module(self, name: str = "pynvml") -> types.ModuleType:
        """NVIDIA's own pynvml module (a private copy) whose C library is this fake: what tools import."""
        from labkit.sim.gpu.clib import pynvml_over  # clib builds on this module

        module = self.__dict__.get("_module")
        if module is None or module.__name__ != name:
            module = self.__dict__["_module"] = pynvml_over(self, name)
        return module


def _mig_uuid(device: FakeDevice, instance: int) -> str:
    return f"MIG-{uuid.uuid5(uuid.NAMESPACE_OID, f'{device.uuid}/{instance}')}"


def _stub_or_genuine(name: str) -> Any:
    """pynvml's attribute, except driver-calling functions this fake lacks, which become stubs."""
    value = getattr(N, name)
    if name.startswith("nvml") and inspect.isfunction(value) and name not in _PURE_HELPERS:

        def not_simulated(*_args: Any, **_kwargs: Any) -> Any:
            _raise(N.NVML_ERROR_FUNCTION_NOT_FOUND)

        not_simulated.__name__ = name
        not_simulated.__doc__ = f"{name} is not simulated by labkit's fake NVML."
        return not_simulated
    return value
