"""The fake answers pynvml's API with pynvml's own types, constants and exception classes."""

import pytest

from labkit.sim.gpu import (
    FakeMachine,
    FakeNvml,
    NvmlUnavailable,
    Workload,
    inject_ecc_errors,
    inject_xid,
    nvml,
    nvml_mode,
    reset_gpu,
)
from labkit.sim.gpu.real_pynvml import pynvml

MIB = 1024 * 1024


@pytest.fixture
def api():
    fake = FakeNvml(FakeMachine(count=2))
    fake.nvmlInit()
    yield fake
    fake.nvmlShutdown()


def test_calls_before_init_raise_uninitialized():
    fake = FakeNvml(FakeMachine(count=1))
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()


def test_constants_and_exceptions_are_pynvml_own(api):
    assert api.NVML_TEMPERATURE_GPU == pynvml.NVML_TEMPERATURE_GPU
    assert api.NVMLError_NotSupported is pynvml.NVMLError_NotSupported
    assert api.nvmlClocksThrottleReasonSwPowerCap == pynvml.nvmlClocksThrottleReasonSwPowerCap


def test_system_and_identity(api):
    assert api.nvmlSystemGetDriverVersion() == "550.127.05"
    assert api.nvmlSystemGetCudaDriverVersion_v2() == 12040
    assert api.nvmlDeviceGetCount() == 2
    handle = api.nvmlDeviceGetHandleByIndex(1)
    assert api.nvmlDeviceGetName(handle) == "NVIDIA H100 80GB HBM3"
    assert api.nvmlDeviceGetIndex(handle) == 1
    uuid = api.nvmlDeviceGetUUID(handle)
    assert uuid.startswith("GPU-")
    assert api.nvmlDeviceGetHandleByUUID(uuid) == handle
    pci = api.nvmlDeviceGetPciInfo(handle)
    assert isinstance(pci, pynvml.nvmlPciInfo_t)
    assert pci.busId == "00000000:2A:00.0" and pci.bus == 0x2A  # pynvml decodes char arrays
    assert api.nvmlDeviceGetHandleByPciBusId(pci.busId) == handle
    assert api.nvmlDeviceGetBrand(handle) == pynvml.NVML_BRAND_NVIDIA
    # Firmware (per board) and driver (per host) are separate things with separate versions.
    assert api.nvmlDeviceGetVbiosVersion(handle) != api.nvmlSystemGetDriverVersion()
    assert api.nvmlDeviceGetInforomVersion(handle, pynvml.NVML_INFOROM_OEM)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        api.nvmlDeviceGetHandleByIndex(2)
    with pytest.raises(pynvml.NVMLError_NotFound):
        api.nvmlDeviceGetHandleByUUID("GPU-00000000-0000-0000-0000-000000000000")


@pytest.mark.parametrize("workload_mib", [0, 30_000, 10**6])
def test_memory_info_adds_up(api, workload_mib):
    api.machine.set_workload(0, Workload(50, workload_mib, 0.2))
    handle = api.nvmlDeviceGetHandleByIndex(0)
    v1 = api.nvmlDeviceGetMemoryInfo(handle)
    assert isinstance(v1, pynvml.c_nvmlMemory_t)
    assert v1.used + v1.free == v1.total == 81559 * MIB
    v2 = api.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    assert v2.used + v2.free + v2.reserved == v2.total
    assert v2.used == min(workload_mib, 81559 - 328) * MIB


def test_units_of_power_clocks_and_utilization(api):
    handle = api.nvmlDeviceGetHandleByIndex(0)
    api.machine.set_workload(0, Workload(80, 1000, 0.5))
    api.machine.step(5)
    assert api.nvmlDeviceGetPowerManagementLimitConstraints(handle) == [200_000, 700_000]  # mW
    assert api.nvmlDeviceGetEnforcedPowerLimit(handle) == 700_000
    assert 100_000 < api.nvmlDeviceGetPowerUsage(handle) < 700_000
    assert api.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM) == 1980  # MHz
    assert api.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM) == 2619
    util = api.nvmlDeviceGetUtilizationRates(handle)
    assert (util.gpu, 0 < util.memory <= 100) == (80, True)
    assert api.nvmlDeviceGetTemperatureThreshold(handle, pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN) == 89
    assert api.nvmlDeviceGetPerformanceState(handle) == pynvml.NVML_PSTATE_0
    assert api.nvmlDeviceGetPcieThroughput(handle, pynvml.NVML_PCIE_UTIL_RX_BYTES) > 0  # KB/s
    processes = api.nvmlDeviceGetComputeRunningProcesses(handle)
    assert [p.usedGpuMemory for p in processes] == [1000 * MIB]


def test_unsupported_features_raise_pynvml_not_supported():
    t4 = FakeNvml(FakeMachine(profile="T4", count=1))
    t4.nvmlInit()
    handle = t4.nvmlDeviceGetHandleByIndex(0)
    for call in (
        lambda: t4.nvmlDeviceGetFanSpeed(handle),
        lambda: t4.nvmlDeviceGetMigMode(handle),
        lambda: t4.nvmlDeviceGetRemappedRows(handle),
        lambda: t4.nvmlDeviceGetTemperatureThreshold(handle, pynvml.NVML_TEMPERATURE_THRESHOLD_MEM_MAX),
    ):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            call()
    assert t4.nvmlDeviceGetSupportedMemoryClocks(handle) == [5001, 405]


def test_functions_the_fake_lacks_raise_function_not_found(api):
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        api.nvmlDeviceGetVgpuMetadata(api.nvmlDeviceGetHandleByIndex(0))


def test_clock_controls_validate_like_nvml(api):
    handle = api.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        api.nvmlDeviceSetGpuLockedClocks(handle, 1500, 1000)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        api.nvmlDeviceSetApplicationsClocks(handle, 2619, 1234)  # not on the clock table
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        api.nvmlDeviceSetPowerManagementLimit(handle, 900_000)
    graphics = api.nvmlDeviceGetSupportedGraphicsClocks(handle, 2619)
    assert graphics[0] == 1980 and graphics == sorted(graphics, reverse=True)
    api.nvmlDeviceSetApplicationsClocks(handle, 2619, graphics[10])
    assert api.nvmlDeviceGetApplicationsClock(handle, pynvml.NVML_CLOCK_GRAPHICS) == graphics[10]
    api.nvmlDeviceResetApplicationsClocks(handle)
    api.nvmlDeviceSetGpuLockedClocks(handle, 1200, 1200)
    api.machine.set_workload(0, Workload(90, 1000, 0.5))
    api.machine.step(2)
    assert api.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM) == 1200
    api.nvmlDeviceResetGpuLockedClocks(handle)
    api.machine.step(2)
    assert api.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM) == 1980


def test_mig_handles(api):
    api.machine.configure_mig(0, ["3g.40gb", "2g.20gb", "1g.10gb"])
    parent = api.nvmlDeviceGetHandleByIndex(0)
    assert api.nvmlDeviceGetMigMode(parent) == [pynvml.NVML_DEVICE_MIG_ENABLE] * 2
    assert api.nvmlDeviceGetMaxMigDeviceCount(parent) == 7
    mig = api.nvmlDeviceGetMigDeviceHandleByIndex(parent, 1)
    assert api.nvmlDeviceIsMigDeviceHandle(mig) and not api.nvmlDeviceIsMigDeviceHandle(parent)
    assert api.nvmlDeviceGetName(mig).endswith("MIG 2g.20gb")
    assert api.nvmlDeviceGetUUID(mig).startswith("MIG-")
    assert api.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig) == parent
    with pytest.raises(pynvml.NVMLError_NotFound):
        api.nvmlDeviceGetMigDeviceHandleByIndex(parent, 3)
    with pytest.raises(ValueError, match="slices"):
        api.machine.configure_mig(1, ["4g.40gb", "4g.40gb"])


def test_xid_79_loses_the_gpu_until_reset(api):
    handle = api.nvmlDeviceGetHandleByIndex(0)
    api.machine.set_workload(0, Workload(90, 1000, 0.1))
    event = inject_xid(api.machine, 0, 79)
    assert event.message == "GPU has fallen off the bus"
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        api.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        api.nvmlDeviceGetHandleByIndex(0)
    assert api.nvmlDeviceGetName(api.nvmlDeviceGetHandleByIndex(1))  # the neighbour is fine
    reset_gpu(api.machine, 0)
    assert api.nvmlDeviceGetUtilizationRates(handle).gpu == 0  # the job died with the GPU


def test_ecc_counters_volatile_and_aggregate(api):
    handle = api.nvmlDeviceGetHandleByIndex(0)
    corrected, uncorrected = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    inject_ecc_errors(api.machine, 0, corrected=5)
    inject_xid(api.machine, 0, 48)  # double-bit ECC error
    assert api.nvmlDeviceGetTotalEccErrors(handle, corrected, pynvml.NVML_VOLATILE_ECC) == 5
    assert api.nvmlDeviceGetTotalEccErrors(handle, uncorrected, pynvml.NVML_AGGREGATE_ECC) == 1
    assert (
        api.nvmlDeviceGetMemoryErrorCounter(
            handle, uncorrected, pynvml.NVML_VOLATILE_ECC, pynvml.NVML_MEMORY_LOCATION_DEVICE_MEMORY
        )
        == 1
    )
    assert api.nvmlDeviceGetRemappedRows(handle) == (0, 1, 1, 0)
    reset_gpu(api.machine, 0)
    assert api.nvmlDeviceGetTotalEccErrors(handle, uncorrected, pynvml.NVML_VOLATILE_ECC) == 0
    assert api.nvmlDeviceGetTotalEccErrors(handle, uncorrected, pynvml.NVML_AGGREGATE_ECC) == 1
    assert api.nvmlDeviceGetRemappedRows(handle)[2] == 0  # the pending remap is applied by the reset


def _driver_present():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_entry_point_env_switch(monkeypatch):
    monkeypatch.setenv("LABKIT_FAKE_GPU", "1")
    monkeypatch.setenv("LABKIT_FAKE_GPU_SOURCE", "local")  # a private node, whatever lab runs beside the tests
    monkeypatch.setenv("LABKIT_FAKE_GPU_PROFILE", "T4")
    monkeypatch.setenv("LABKIT_FAKE_GPU_COUNT", "3")
    assert nvml_mode(refresh=True).mode == "fake"
    fake = nvml()
    fake.nvmlInit()
    assert fake.nvmlDeviceGetCount() == 3 and fake.nvmlDeviceGetName(fake.nvmlDeviceGetHandleByIndex(0)) == "Tesla T4"
    monkeypatch.setenv("LABKIT_FAKE_GPU", "0")
    if _driver_present():
        assert nvml(refresh=True) is pynvml
    else:
        with pytest.raises(NvmlUnavailable, match="LABKIT_FAKE_GPU"):
            nvml(refresh=True)
    monkeypatch.delenv("LABKIT_FAKE_GPU")
    mode = nvml_mode(refresh=True)
    assert mode.mode == ("real" if _driver_present() else "fake") and mode.reason


@pytest.mark.parametrize("memory_bound", [0.1, 0.3, 0.7])
def test_dcgm_tensor_activity_times_the_clock_is_the_work_rate(memory_bound: float) -> None:
    """DCGM_FI_PROF_PIPE_TENSOR_ACTIVE is a share of elapsed time: a locked-down clock leaves it as high or higher,
    and only its product with the SM clock falls, by the job's throughput (less for memory-bound work)."""
    rate, throughput, active = {}, {}, {}
    for clock in (1980, 1200):
        machine = FakeMachine(count=1, node="bench", seed=0)
        api = FakeNvml(machine)
        api.nvmlInit()
        handle = api.nvmlDeviceGetHandleByIndex(0)
        api.nvmlDeviceSetGpuLockedClocks(handle, clock, clock)
        machine.set_workload(0, Workload(100, 40_000, memory_bound))
        machine.step(120)
        sample, reading = machine.sample(0), api.labkit_profiling(handle)
        active[clock], throughput[clock] = reading.tensor_active, sample.throughput
        rate[clock] = reading.tensor_active * sample.sm_clock_mhz
    assert active[1200] >= active[1980]
    assert rate[1200] / rate[1980] == pytest.approx(throughput[1200] / throughput[1980], rel=1e-6)
    assert 1200 / 1980 < rate[1200] / rate[1980] < 1  # diminishing returns: the work falls less than the clock
