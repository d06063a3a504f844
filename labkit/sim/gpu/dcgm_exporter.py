"""Prometheus text in the shape NVIDIA's dcgm-exporter serves with its default counter set.

Metric names, ``# HELP``/``# TYPE`` lines, units and labels follow dcgm-exporter 4.x
(``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname``, the driver
version label, and in Kubernetes mode ``container``/``namespace``/``pod`` of the pod the
kubelet's pod-resources API reports for the GPU). Readings come through the NVML API, so the
same code exports simulated GPUs (:class:`FakeNvml`) or real ones (``pynvml``, without the
DCGM-only profiling fields)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from labkit.sim.gpu.fake_nvml import FakeHandle, FakeNvml
from labkit.sim.gpu.faults import xid_message
from labkit.sim.gpu.machine import FakeMachine
from labkit.sim.gpu.real_pynvml import pynvml as N

COUNTERS_FILE = Path(__file__).with_name("dcgm_default_counters.csv")
# dcgm-exporter releases up to 4.5.3-4.8.2 spell it "Hostname"; later sources renamed it "hostname".
HOSTNAME_LABEL = "Hostname"
_MIB = 1024 * 1024


class PodRef(NamedTuple):
    """The pod a GPU is allocated to, as the kubelet pod-resources API reports it."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class Counter:
    """One row of dcgm-exporter's counters file."""

    name: str
    prom_type: str
    help: str


@dataclass(frozen=True)
class MetricSample:
    """One exposition line: metric name, labels in output order, value already formatted."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: str


@cache
def default_counters() -> tuple[Counter, ...]:
    """dcgm-exporter's default counters (including the ``label`` row for the driver version)."""
    rows = []
    for line in COUNTERS_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, prom_type, help_text = (part.strip() for part in line.split(",", 2))
            rows.append(Counter(name, prom_type, help_text))
    return tuple(rows)


# Rows upstream's default file ships commented out; the lab enables them, as a cluster does with its own counters
# file (``dcgm-exporter -f custom.csv``), so ECC alerts have their metrics. Help texts are upstream's.
LAB_EXTRA_COUNTERS = (
    Counter("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter", "Total number of single-bit volatile ECC errors."),
    Counter("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors."),
)


def lab_counters() -> tuple[Counter, ...]:
    """The counters the lab's exporter serves: upstream's default set plus :data:`LAB_EXTRA_COUNTERS`."""
    return default_counters() + LAB_EXTRA_COUNTERS


def _int(value: float) -> str:
    return str(int(value))


def _double(value: float) -> str:
    return f"{value:f}"  # DCGM doubles print with Go's %f


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """An NVML reading, or None where the device does not support it (DCGM leaves those blank)."""
    try:
        return fn(*args)
    except N.NVMLError:
        return None


def _gpu_values(api: Any, handle: Any) -> dict[str, str]:
    """Field name -> formatted value for one GPU; unsupported fields are absent."""
    memory = _call(api.nvmlDeviceGetMemoryInfo, handle, N.nvmlMemory_v2)
    util = _call(api.nvmlDeviceGetUtilizationRates, handle)
    encoder = _call(api.nvmlDeviceGetEncoderUtilization, handle)
    decoder = _call(api.nvmlDeviceGetDecoderUtilization, handle)
    power_mw = _call(api.nvmlDeviceGetPowerUsage, handle)
    rows = _call(api.nvmlDeviceGetRemappedRows, handle)
    readings: dict[str, Any] = {
        "DCGM_FI_DEV_SM_CLOCK": _call(api.nvmlDeviceGetClockInfo, handle, N.NVML_CLOCK_SM),
        "DCGM_FI_DEV_MEM_CLOCK": _call(api.nvmlDeviceGetClockInfo, handle, N.NVML_CLOCK_MEM),
        "DCGM_FI_DEV_GPU_TEMP": _call(api.nvmlDeviceGetTemperature, handle, N.NVML_TEMPERATURE_GPU),
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": _call(api.nvmlDeviceGetTotalEnergyConsumption, handle),
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": _call(api.nvmlDeviceGetPcieReplayCounter, handle),
        "DCGM_FI_DEV_GPU_UTIL": util.gpu if util else None,
        "DCGM_FI_DEV_MEM_COPY_UTIL": util.memory if util else None,
        "DCGM_FI_DEV_ENC_UTIL": encoder[0] if encoder else None,
        "DCGM_FI_DEV_DEC_UTIL": decoder[0] if decoder else None,
        "DCGM_FI_DEV_FB_FREE": memory.free // _MIB if memory else None,
        "DCGM_FI_DEV_FB_USED": memory.used // _MIB if memory else None,
        "DCGM_FI_DEV_FB_RESERVED": memory.reserved // _MIB if memory else None,
        "DCGM_FI_DEV_VGPU_LICENSE_STATUS": 0 if memory else None,  # bare-metal GPUs: not a vGPU
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": rows[0] if rows else None,
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": rows[1] if rows else None,
        "DCGM_FI_DEV_ROW_REMAP_FAILURE": rows[3] if rows else None,
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": _call(api.nvmlDeviceGetTotalEccErrors, handle,
                                               N.NVML_MEMORY_ERROR_TYPE_CORRECTED, N.NVML_VOLATILE_ECC),
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": _call(api.nvmlDeviceGetTotalEccErrors, handle,
                                               N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_VOLATILE_ECC),
    }
    for counter, kind in (
        ("DCGM_FI_PROF_PCIE_TX_BYTES", N.NVML_PCIE_UTIL_TX_BYTES),
        ("DCGM_FI_PROF_PCIE_RX_BYTES", N.NVML_PCIE_UTIL_RX_BYTES),
    ):
        kb_per_s = _call(api.nvmlDeviceGetPcieThroughput, handle, kind)
        readings[counter] = kb_per_s * 1024 if kb_per_s is not None else None
    values = {name: _int(v) for name, v in readings.items() if v is not None}
    if power_mw is not None:
        values["DCGM_FI_DEV_POWER_USAGE"] = _double(power_mw / 1000)
    if hasattr(api, "labkit_profiling"):
        reading = api.labkit_profiling(handle)
        values["DCGM_FI_DEV_XID_ERRORS"] = _int(reading.last_xid)
        if memory is not None:  # a lost GPU reports only its XID
            values["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] = _double(reading.gr_engine_active)
            values["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"] = _double(reading.tensor_active)
            values["DCGM_FI_PROF_DRAM_ACTIVE"] = _double(reading.dram_active)
            if reading.memory_temperature_c is not None:
                values["DCGM_FI_DEV_MEMORY_TEMP"] = _int(reading.memory_temperature_c)
            if reading.nvlink_bandwidth_total is not None:
                values["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"] = _int(reading.nvlink_bandwidth_total)
    return values


def collect_samples(
    api: Any,
    *,
    hostname: str,
    attribution: Mapping[int, PodRef | tuple[str, str, str] | Mapping[str, str]] | None = None,
    hostname_label: str = HOSTNAME_LABEL,
) -> list[MetricSample]:
    """Every default-counter sample of one node, read through an NVML API (fake or real).

    ``attribution`` maps GPU index -> (namespace, pod, container); unlisted GPUs carry no pod labels."""
    attribution = attribution or {}
    api.nvmlInit()
    try:
        driver = api.nvmlSystemGetDriverVersion()
        gpus = [_read_gpu(api, index) for index in range(api.nvmlDeviceGetCount())]
    finally:
        api.nvmlShutdown()
    samples = []
    for counter in lab_counters():
        for gpu in gpus:
            if gpu is None or counter.name not in gpu.values:
                continue
            labels = [
                ("gpu", str(gpu.index)),
                ("UUID", gpu.uuid),
                ("pci_bus_id", gpu.pci_bus_id),
                ("device", f"nvidia{gpu.index}"),
                ("modelName", gpu.model),
            ]
            if hostname:
                labels.append((hostname_label, hostname))
            labels.append(("DCGM_FI_DRIVER_VERSION", driver))
            # dcgm-exporter prints its "attributes" (pod, XID text) after the labels, sorted by name.
            attributes = _pod_attributes(attribution.get(gpu.index))
            if counter.name == "DCGM_FI_DEV_XID_ERRORS":
                code = int(gpu.values[counter.name])
                attributes |= {"err_code": str(code), "err_msg": xid_message(code)}
            labels += sorted(attributes.items())
            samples.append(MetricSample(counter.name, tuple(labels), gpu.values[counter.name]))
    return samples


@dataclass(frozen=True)
class _GpuReading:
    index: int
    uuid: str
    pci_bus_id: str
    model: str
    values: dict[str, str]


def _read_gpu(api: Any, index: int) -> _GpuReading | None:
    if isinstance(api, FakeNvml):
        # A lost GPU refuses new handles, but DCGM still knows it from enumeration at start-up.
        device = api.machine.device(index)
        handle = FakeHandle(id(api.machine), index)
        return _GpuReading(index, device.uuid, device.pci_bus_id, device.profile.name, _gpu_values(api, handle))
    try:
        handle = api.nvmlDeviceGetHandleByIndex(index)
        bus_id = api.nvmlDeviceGetPciInfo(handle).busId
        uuid, name = api.nvmlDeviceGetUUID(handle), api.nvmlDeviceGetName(handle)
    except N.NVMLError:
        return None
    bus_id = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
    return _GpuReading(index, uuid, bus_id, name, _gpu_values(api, handle))


def _pod_attributes(ref: PodRef | tuple[str, str, str] | Mapping[str, str] | None) -> dict[str, str]:
    if ref is None:
        return {}
    if isinstance(ref, Mapping):
        ref = PodRef(ref["namespace"], ref["pod"], ref["container"])
    namespace, pod, container = ref
    return {"container": container, "namespace": namespace, "pod": pod}


def render_samples(samples: Iterable[MetricSample]) -> str:
    """Prometheus text exposition of samples, grouped under their counter's HELP and TYPE lines."""
    by_name: dict[str, list[MetricSample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    blocks = []
    for counter in lab_counters():
        family = by_name.get(counter.name)
        if not family:
            continue
        lines = [f"# HELP {counter.name} {counter.help}", f"# TYPE {counter.name} {counter.prom_type}"]
        for sample in family:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
            lines.append(f"{sample.name}{{{labels}}} {sample.value}")
        blocks.append("\n".join(lines) + "\n")
    return "".join(blocks)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def node_metrics(
    source: FakeMachine | Any,
    *,
    hostname: str | None = None,
    attribution: Mapping[int, PodRef | tuple[str, str, str] | Mapping[str, str]] | None = None,
    hostname_label: str = HOSTNAME_LABEL,
) -> str:
    """``/metrics`` of one node: a :class:`FakeMachine`, a :class:`FakeNvml`, or the ``pynvml`` module."""
    api, default_host = _api_for(source)
    return render_samples(
        collect_samples(api, hostname=hostname or default_host, attribution=attribution, hostname_label=hostname_label)
    )


def fleet_metrics(
    fleet: Mapping[str, FakeMachine],
    *,
    attribution: Mapping[str, Mapping[int, PodRef | tuple[str, str, str] | Mapping[str, str]]] | None = None,
    hostname_label: str = HOSTNAME_LABEL,
) -> str:
    """One exposition covering several nodes (each sample labelled with its node's hostname).

    ``attribution`` maps node -> GPU index -> (namespace, pod, container)."""
    attribution = attribution or {}
    samples: list[MetricSample] = []
    for node, machine in fleet.items():
        with machine.lock:  # one consistent snapshot even while a notebook steps the node
            samples += collect_samples(
                FakeNvml(machine), hostname=node, attribution=attribution.get(node), hostname_label=hostname_label
            )
    return render_samples(samples)


def _api_for(source: Any) -> tuple[Any, str]:
    if isinstance(source, FakeMachine):
        return FakeNvml(source), source.node
    if isinstance(source, FakeNvml):
        return source, source.machine.node
    import socket

    return source, socket.gethostname()
