"""``nvidia-smi``: labkit's stand-in for NVIDIA's tool, reading the simulated (or real) GPUs through NVML.

Like nvitop, it is an NVML client and nothing more: every value comes from ``import pynvml``. In a shell after
``eval "$(labkit gpu-env)"`` that is NVIDIA's pynvml over labkit's simulated C library, so it shows the lab's GPUs;
on a GPU host it would show the real ones. Output follows nvidia-smi R550's layout and wording.

``python -m labkit.sim.gpu.smi ARGS`` (or ``nvidia-smi ARGS`` on the gpu-env PATH) supports::

    nvidia-smi                       the summary table, MIG devices, processes
    nvidia-smi -L                    GPUs and their MIG devices with UUIDs
    nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv
    nvidia-smi -q [-d ECC|CLOCK|PERFORMANCE|MEMORY|TEMPERATURE|POWER|ROW_REMAPPER]
    nvidia-smi -r                    reset (refused while a process uses the GPU)
    nvidia-smi -lgc MIN,MAX          lock the GPU clocks (-rgc resets them)
    nvidia-smi -pl WATTS             set the power limit
    -i INDEX|UUID[,...] with any of them

Anything else exits 2 and names these. ``-lgc``, ``-rgc`` and ``-pl`` are NVML's set calls (the real tool needs
root for them; this one does not ask): on the lab's GPUs they change the one state the GPU exporter owns, so its
``/metrics`` and every other NVML client see them. The reset is the one action NVML's public API lacks (the real tool
asks the driver); here it goes to the GPU exporter that owns the simulated state, as ``lk.operations.reset_gpu`` does.
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pynvml

from labkit.sim.gpu.cli_options import DeadlineExceeded, UsageError, deadline, parse_options

N = pynvml
MIB = 1024 * 1024
WIDTH = 91  # R550's summary table
USAGE = textwrap.dedent("""\
    Supported by labkit's nvidia-smi (a stand-in reading the GPUs through NVML):
      nvidia-smi                        summary table
      nvidia-smi -L                     list GPUs and MIG devices
      nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]
      nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv
      nvidia-smi -q [-d ECC,CLOCK,PERFORMANCE,MEMORY,TEMPERATURE,POWER,ROW_REMAPPER]
      nvidia-smi -r                     GPU reset
      nvidia-smi -lgc MIN,MAX           lock GPU clocks (--lock-gpu-clocks=MIN,MAX); -rgc resets them
      nvidia-smi -pl WATTS              set the power limit (--power-limit=WATTS)
      -i INDEX|UUID[,...]               select GPUs, with any of the above
    --help-query-gpu lists the --query-gpu fields.""")
EXIT_INVALID_ARGUMENT = 2  # nvidia-smi's RETURN VALUE for "a supplied argument or flag is invalid"
EXIT_NOT_FOUND = 6  # "the query was unsuccessful"
EXIT_OTHER = 255  # "other error or internal driver error occurred"


class NotAvailable:
    """A reading the device does not give (NVML says NotSupported, or the like): nvidia-smi prints N/A."""

    def __repr__(self) -> str:
        return "N/A"


NA = NotAvailable()


def query(fn: Callable[..., Any], *args: Any) -> Any:
    """One NVML call; any NVML error becomes :data:`NA` (the one place NVML errors turn into "not available")."""
    try:
        value = fn(*args)
    except N.NVMLError:
        return NA
    return value.decode() if isinstance(value, bytes) else value


def text(value: Any, unit: str = "", *, decimals: int | None = None) -> str:
    """A reading as nvidia-smi prints it: ``N/A``, ``71.23 W``, ``81559 MiB``."""
    if value is NA:
        return "N/A"
    shown = f"{value:.{decimals}f}" if decimals is not None else str(value)
    return f"{shown} {unit}" if unit else shown


# --- readings ------------------------------------------------------------------------------------------------------


def memory(handle: Any) -> Any:
    """FB memory with reserved apart (v2), as R550's nvidia-smi shows it; v1 on a driver without the v2 call."""
    info = query(N.nvmlDeviceGetMemoryInfo, handle, N.nvmlMemory_v2)
    return info if info is not NA else query(N.nvmlDeviceGetMemoryInfo, handle)


def mib(info: Any, attribute: str) -> Any:
    return NA if info is NA else getattr(info, attribute) // MIB


def watts(milliwatts: Any) -> Any:
    return NA if milliwatts is NA else milliwatts / 1000


def enabled(mode: Any) -> Any:
    return NA if mode is NA else ("Enabled" if mode else "Disabled")


def mig_mode(handle: Any, which: int) -> Any:
    modes = query(N.nvmlDeviceGetMigMode, handle)
    return NA if modes is NA else enabled(modes[which] == N.NVML_DEVICE_MIG_ENABLE)


def bus_id(handle: Any) -> Any:
    info = query(N.nvmlDeviceGetPciInfo, handle)
    if info is NA:
        return NA
    busid = info.busId
    return busid.decode() if isinstance(busid, bytes) else busid


def pstate(handle: Any) -> Any:
    state = query(N.nvmlDeviceGetPerformanceState, handle)
    return NA if state is NA else f"P{state}"


def reasons_mask(handle: Any) -> Any:
    mask = query(N.nvmlDeviceGetCurrentClocksEventReasons, handle)
    return NA if mask is NA else f"0x{mask:016x}"


def ecc_total(handle: Any, error_type: int, counter: int) -> Any:
    return query(N.nvmlDeviceGetTotalEccErrors, handle, error_type, counter)


def compute_mode(handle: Any) -> Any:
    mode = query(N.nvmlDeviceGetComputeMode, handle)
    names = {N.NVML_COMPUTEMODE_DEFAULT: "Default", N.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS: "E. Process",
             N.NVML_COMPUTEMODE_PROHIBITED: "Prohibited"}
    return NA if mode is NA else names.get(mode, str(mode))


@dataclass(frozen=True)
class Field:
    """One ``--query-gpu`` property: its canonical name (what the CSV header says), unit, and NVML reading."""

    name: str
    read: Callable[[Any], Any]
    unit: str = ""
    aliases: tuple[str, ...] = ()
    decimals: int | None = None


def _clock(kind: int, *, maximum: bool = False) -> Callable[[Any], Any]:
    fn = N.nvmlDeviceGetMaxClockInfo if maximum else N.nvmlDeviceGetClockInfo
    return lambda h: query(fn, h, kind)


GPU_FIELDS = (
    Field("timestamp", lambda h: time.strftime("%Y/%m/%d %H:%M:%S.000")),
    Field("driver_version", lambda h: query(N.nvmlSystemGetDriverVersion)),
    Field("count", lambda h: query(N.nvmlDeviceGetCount)),
    Field("name", lambda h: query(N.nvmlDeviceGetName, h), aliases=("gpu_name",)),
    Field("serial", lambda h: query(N.nvmlDeviceGetSerial, h), aliases=("gpu_serial",)),
    Field("uuid", lambda h: query(N.nvmlDeviceGetUUID, h), aliases=("gpu_uuid",)),
    Field("pci.bus_id", bus_id, aliases=("gpu_bus_id",)),
    Field("index", lambda h: query(N.nvmlDeviceGetIndex, h)),
    Field("vbios_version", lambda h: query(N.nvmlDeviceGetVbiosVersion, h)),
    Field("persistence_mode", lambda h: enabled(query(N.nvmlDeviceGetPersistenceMode, h))),
    Field("compute_mode", compute_mode),
    Field("pstate", pstate),
    Field("fan.speed", lambda h: query(N.nvmlDeviceGetFanSpeed, h), "%"),
    Field("temperature.gpu", lambda h: query(N.nvmlDeviceGetTemperature, h, N.NVML_TEMPERATURE_GPU)),
    Field("utilization.gpu", lambda h: getattr(query(N.nvmlDeviceGetUtilizationRates, h), "gpu", NA), "%"),
    Field("utilization.memory", lambda h: getattr(query(N.nvmlDeviceGetUtilizationRates, h), "memory", NA), "%"),
    Field("memory.total", lambda h: mib(memory(h), "total"), "MiB"),
    Field("memory.reserved", lambda h: mib(memory(h), "reserved"), "MiB"),
    Field("memory.used", lambda h: mib(memory(h), "used"), "MiB"),
    Field("memory.free", lambda h: mib(memory(h), "free"), "MiB"),
    Field("power.draw", lambda h: watts(query(N.nvmlDeviceGetPowerUsage, h)), "W", decimals=2),
    Field("power.limit", lambda h: watts(query(N.nvmlDeviceGetPowerManagementLimit, h)), "W", decimals=2),
    Field("power.default_limit", lambda h: watts(query(N.nvmlDeviceGetPowerManagementDefaultLimit, h)), "W",
          decimals=2),
    Field("clocks.current.graphics", _clock(N.NVML_CLOCK_GRAPHICS), "MHz", ("clocks.gr",)),
    Field("clocks.current.sm", _clock(N.NVML_CLOCK_SM), "MHz", ("clocks.sm",)),
    Field("clocks.current.memory", _clock(N.NVML_CLOCK_MEM), "MHz", ("clocks.mem",)),
    Field("clocks.max.graphics", _clock(N.NVML_CLOCK_GRAPHICS, maximum=True), "MHz", ("clocks.max.gr",)),
    Field("clocks.max.sm", _clock(N.NVML_CLOCK_SM, maximum=True), "MHz"),
    Field("clocks.max.memory", _clock(N.NVML_CLOCK_MEM, maximum=True), "MHz", ("clocks.max.mem",)),
    Field("clocks_event_reasons.active", reasons_mask, aliases=("clocks_throttle_reasons.active",)),
    Field("ecc.errors.corrected.volatile.total",
          lambda h: ecc_total(h, N.NVML_MEMORY_ERROR_TYPE_CORRECTED, N.NVML_VOLATILE_ECC)),
    Field("ecc.errors.uncorrected.volatile.total",
          lambda h: ecc_total(h, N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_VOLATILE_ECC)),
    Field("ecc.errors.corrected.aggregate.total",
          lambda h: ecc_total(h, N.NVML_MEMORY_ERROR_TYPE_CORRECTED, N.NVML_AGGREGATE_ECC)),
    Field("ecc.errors.uncorrected.aggregate.total",
          lambda h: ecc_total(h, N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_AGGREGATE_ECC)),
    Field("mig.mode.current", lambda h: mig_mode(h, 0)),
    Field("mig.mode.pending", lambda h: mig_mode(h, 1)),
)
GPU_FIELD_BY_NAME = {name: f for f in GPU_FIELDS for name in (f.name, *f.aliases)}


@dataclass(frozen=True)
class Process:
    """One compute process as NVML lists it on a GPU (``gi``/``ci`` NA outside MIG)."""

    gpu: int
    pid: int
    used_mib: Any
    gi: Any
    ci: Any
    name: Any


def processes(index: int, handle: Any) -> list[Process]:
    """Compute processes on a GPU (every MIG instance's too), with their names."""
    listed = query(N.nvmlDeviceGetComputeRunningProcesses, handle)
    if listed is NA:
        return []
    not_mig = N.NVML_VALUE_NOT_AVAILABLE_uint.value

    def mig_id(value: Any) -> Any:
        return NA if value is None or value == not_mig else value

    return [Process(index, p.pid, NA if p.usedGpuMemory is None else p.usedGpuMemory // MIB,
                    mig_id(getattr(p, "gpuInstanceId", None)), mig_id(getattr(p, "computeInstanceId", None)),
                    query(N.nvmlSystemGetProcessName, p.pid)) for p in listed]


def mig_devices(handle: Any) -> Iterator[tuple[int, Any]]:
    """(MIG device index, handle) of each MIG device on a GPU with MIG enabled."""
    if mig_mode(handle, 0) != "Enabled":
        return
    for slot in range(query(N.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
        mig = query(N.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot)
        if mig is not NA:
            yield slot, mig


# --- GPU selection ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    """A GPU picked by index (``handle`` None when NVML cannot reach it, e.g. XID 79, with the reason)."""

    index: int
    handle: Any
    problem: str = ""


def select(ids: str | None) -> list[Gpu]:
    """Every GPU, or those ``-i`` names (indices or UUIDs, comma-separated)."""
    count = N.nvmlDeviceGetCount()
    wanted: list[int] = []
    for item in (ids.split(",") if ids else [str(i) for i in range(count)]):
        item = item.strip()
        if item.isdigit():
            if int(item) >= count:
                raise LookupError(item)
            wanted.append(int(item))
        else:
            handle = query(N.nvmlDeviceGetHandleByUUID, item)
            if handle is NA:
                raise LookupError(item)
            wanted.append(N.nvmlDeviceGetIndex(handle))
    gpus = []
    for index in wanted:
        try:
            gpus.append(Gpu(index, N.nvmlDeviceGetHandleByIndex(index)))
        except N.NVMLError as exc:
            gpus.append(Gpu(index, None, str(exc)))
    return gpus


def unreachable(gpu: Gpu) -> str:
    """What nvidia-smi prints for a GPU whose handle NVML cannot give."""
    return f"Unable to determine the device handle for GPU {gpu.index}: {gpu.problem}"


# --- the summary table -----------------------------------------------------------------------------------------------


def _cuda_version() -> str:
    version = query(N.nvmlSystemGetCudaDriverVersion)
    return "N/A" if version is NA else f"{version // 1000}.{version % 1000 // 10}"


def _rule(widths: Sequence[int], fill: str = "-", edge: str = "+", joint: str = "+") -> str:
    return edge + joint.join(fill * w for w in widths) + edge


def _full(content: str) -> str:
    return f"| {content:<{WIDTH - 4}} |"


def summary(gpus: list[Gpu]) -> list[str]:
    """``nvidia-smi`` with no arguments: header, one block per GPU, MIG devices, processes."""
    driver = text(query(N.nvmlSystemGetDriverVersion))
    cells = (41, 24, 22)
    lines = [time.strftime("%a %b %e %H:%M:%S %Y").ljust(31), _rule([WIDTH - 2]),
             f"| NVIDIA-SMI {driver:<23}Driver Version: {driver:<15}CUDA Version: {_cuda_version():<9}|",
             "|" + _rule(cells)[1:],  # R550 opens the header's rule with "|" and closes it with "+"
             "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
             "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
             "|                                         |                        |               MIG M. |",
             _rule(cells, "=", "|")]
    for gpu in gpus:
        if gpu.handle is None:
            lines += [_full(unreachable(gpu)[: WIDTH - 4]), _rule(cells)]
            continue
        lines += _gpu_block(gpu)
        lines.append(_rule(cells))
    lines += _mig_table(gpus)
    lines += [" " * (WIDTH - 2), *process_table(gpus)]
    return lines


def _gpu_block(gpu: Gpu) -> list[str]:
    h = gpu.handle
    name = text(query(N.nvmlDeviceGetName, h))
    name = name if len(name) <= 29 else name[:26] + "..."
    persistence = "On" if query(N.nvmlDeviceGetPersistenceMode, h) == N.NVML_FEATURE_ENABLED else "Off"
    display = "On" if query(N.nvmlDeviceGetDisplayActive, h) == N.NVML_FEATURE_ENABLED else "Off"
    mig_on = mig_mode(h, 0) == "Enabled"
    # With MIG on, the volatile ECC count and utilization are per MIG device; the parent shows ECC's mode.
    ecc = "On" if mig_on else text(ecc_total(h, N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_VOLATILE_ECC))
    fan = query(N.nvmlDeviceGetFanSpeed, h)
    temp = query(N.nvmlDeviceGetTemperature, h, N.NVML_TEMPERATURE_GPU)
    draw, cap = watts(query(N.nvmlDeviceGetPowerUsage, h)), watts(query(N.nvmlDeviceGetPowerManagementLimit, h))
    info = memory(h)
    util = query(N.nvmlDeviceGetUtilizationRates, h)
    left = f" {'N/A' if fan is NA else f'{fan}%':>3}  {'N/A' if temp is NA else f'{temp}C':>4}    {text(pstate(h))}"
    power = f"{text(draw, decimals=0)}W / {text(cap, decimals=0):>4}W "
    used, total = text(mib(info, "used")), text(mib(info, "total"))
    gpu_util = "N/A" if mig_on or util is NA else f"{util.gpu}%"
    return [f"| {gpu.index:>3}  {name:<31}{persistence:<3} |   {text(bus_id(h))} {display:>3} | {ecc:>20} |",
            f"|{left}{power:>{41 - len(left)}}|{used:>8}MiB / {total:>6}MiB | {gpu_util:>7}{compute_mode(h):>13} |",
            f"|{'':41}|{'':24}| {text(mig_mode(h, 0)):>20} |"]


def _mig_table(gpus: list[Gpu]) -> list[str]:
    cells = (18, 34, 11, 23)
    rows = []
    for gpu in gpus:
        if gpu.handle is None:
            continue
        for slot, mig in mig_devices(gpu.handle):
            info, bar1 = memory(mig), query(N.nvmlDeviceGetBAR1MemoryInfo, mig)
            attributes = query(N.nvmlDeviceGetAttributes_v2, mig)
            sm = text(getattr(attributes, "multiprocessorCount", NA))
            engines = [text(getattr(attributes, a, NA)) for a in ("sharedCopyEngineCount", "sharedEncoderCount",
                                                                 "sharedDecoderCount", "sharedOfaCount",
                                                                 "sharedJpgCount")]
            ecc = text(ecc_total(mig, N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_VOLATILE_ECC))
            bar_used = text(NA if bar1 is NA else bar1.bar1Used // MIB)
            bar_total = text(NA if bar1 is NA else bar1.bar1Total // MIB)
            rows += [f"|{gpu.index:>3}{text(query(N.nvmlDeviceGetGpuInstanceId, mig)):>5}"
                     f"{text(query(N.nvmlDeviceGetComputeInstanceId, mig)):>4}{slot:>4}  |"
                     f"{text(mib(info, 'used')):>16}MiB / {text(mib(info, 'total')):>5}MiB    |"
                     f" {sm:<3}{ecc:>6} |{engines[0]:>3}{engines[1]:>4}{engines[2]:>5}{engines[3]:>5}{engines[4]:>5} |",
                     f"|{'':18}|{bar_used:>18}MiB / {bar_total:>5}MiB  |{'':11}|{'':23}|",
                     _rule(cells)]
    if not rows:
        return []
    return ["", _rule([WIDTH - 2]), _full("MIG devices:"), _rule(cells),
            "| GPU  GI  CI  MIG |                     Memory-Usage |        Vol|        Shared         |",
            "|      ID  ID  Dev |                       BAR1-Usage | SM     Unc| CE ENC  DEC  OFA  JPG |",
            "|                  |                                  |        ECC|                       |",
            _rule(cells, "=", "|"), *rows]


def process_table(gpus: list[Gpu]) -> list[str]:
    """The "Processes:" box of the summary."""
    lines = [_rule([WIDTH - 2]), _full("Processes:"),
             "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |",
             "|        ID   ID                                                               Usage      |",
             _rule([WIDTH - 2], "=", "|")]
    found = [p for gpu in gpus if gpu.handle is not None for p in processes(gpu.index, gpu.handle)]
    for p in found:
        used = f"{text(p.used_mib)}MiB"
        name = text(p.name)
        name = name if len(name) <= 40 else "..." + name[-37:]
        lines.append(f"|{p.gpu:>5}{text(p.gi):>6}{text(p.ci):>5}{p.pid:>10}{'C':>7}   {name:<{51 - len(used)}} "
                     f"{used} |")
    if not found:
        lines.append(_full(" No running processes found"))
    return [*lines, _rule([WIDTH - 2])]


# --- -L ---------------------------------------------------------------------------------------------------------------


def list_gpus(gpus: list[Gpu]) -> list[str]:
    """``nvidia-smi -L``: each GPU with its UUID, its MIG devices indented below it."""
    lines = []
    for gpu in gpus:
        if gpu.handle is None:
            lines.append(unreachable(gpu))
            continue
        h = gpu.handle
        lines.append(f"GPU {gpu.index}: {text(query(N.nvmlDeviceGetName, h))} "
                     f"(UUID: {text(query(N.nvmlDeviceGetUUID, h))})")
        for slot, mig in mig_devices(h):
            profile = text(query(N.nvmlDeviceGetName, mig)).rpartition(" MIG ")[2]
            lines.append(f"  MIG {profile:<12}Device {slot:>2}: (UUID: {text(query(N.nvmlDeviceGetUUID, mig))})")
    return lines


# --- --query-gpu and --query-compute-apps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvFormat:
    header: bool
    units: bool


def csv_format(spec: str | None) -> CsvFormat:
    options = set((spec or "").split(","))
    if "csv" not in options or options - {"csv", "noheader", "nounits"}:
        raise UsageError(f"--format={spec or ''}: labkit's nvidia-smi writes csv, with noheader and nounits")
    return CsvFormat(header="noheader" not in options, units="nounits" not in options)


def query_gpu(names: str, form: CsvFormat, gpus: list[Gpu]) -> tuple[list[str], int]:
    """``--query-gpu=...``: one CSV row per GPU, the fields' canonical names in the header."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    for name in wanted:
        if name not in GPU_FIELD_BY_NAME:
            return [f'Field "{name}" is not a valid field to query.', ""], EXIT_INVALID_ARGUMENT
    fields = [GPU_FIELD_BY_NAME[n] for n in wanted]
    lines = [", ".join(f"{f.name} [{f.unit}]" if f.unit else f.name for f in fields)] if form.header else []
    for gpu in gpus:
        if gpu.handle is None:
            lines.append(unreachable(gpu))
            continue
        values = []
        for f in fields:
            value = f.read(gpu.handle)
            values.append("[N/A]" if value is NA else text(value, f.unit if form.units else "", decimals=f.decimals))
        lines.append(", ".join(values))
    return lines, 0


APP_FIELDS = {"pid": ("pid", ""), "process_name": ("process_name", ""), "name": ("process_name", ""),
              "used_gpu_memory": ("used_gpu_memory", "MiB"), "used_memory": ("used_gpu_memory", "MiB"),
              "gpu_uuid": ("gpu_uuid", ""), "gpu_bus_id": ("gpu_bus_id", ""), "gpu_name": ("gpu_name", "")}


def query_compute_apps(names: str, form: CsvFormat, gpus: list[Gpu]) -> tuple[list[str], int]:
    """``--query-compute-apps=...``: one CSV row per compute process."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    for name in wanted:
        if name not in APP_FIELDS:
            return [f'Field "{name}" is not a valid field to query.', ""], EXIT_INVALID_ARGUMENT
    columns = [APP_FIELDS[n] for n in wanted]
    lines = [", ".join(f"{c} [{u}]" if u else c for c, u in columns)] if form.header else []
    for gpu in gpus:
        if gpu.handle is None:
            continue
        gpu_values = {"gpu_uuid": query(N.nvmlDeviceGetUUID, gpu.handle), "gpu_bus_id": bus_id(gpu.handle),
                      "gpu_name": query(N.nvmlDeviceGetName, gpu.handle)}
        for p in processes(gpu.index, gpu.handle):
            row = {"pid": p.pid, "process_name": p.name, "used_gpu_memory": p.used_mib, **gpu_values}
            lines.append(", ".join("[N/A]" if row[c] is NA else text(row[c], u if form.units else "")
                                   for c, u in columns))
    return lines, 0


# --- -q ---------------------------------------------------------------------------------------------------------------

Entry = tuple[int, str, Any]  # (depth, label, value; None for a heading)
LABEL_WIDTH = 42


def _yes(flag: Any) -> Any:
    return NA if flag is NA else ("Yes" if flag else "No")


def _memory_sections(h: Any) -> list[Entry]:
    info, bar1 = memory(h), query(N.nvmlDeviceGetBAR1MemoryInfo, h)
    fb = [(1, "FB Memory Usage", None),
          *[(2, label, text(mib(info, attr), "MiB")) for label, attr in
            (("Total", "total"), ("Reserved", "reserved"), ("Used", "used"), ("Free", "free"))]]
    bar = [(1, "BAR1 Memory Usage", None),
           *[(2, label, text(NA if bar1 is NA else getattr(bar1, attr) // MIB, "MiB")) for label, attr in
             (("Total", "bar1Total"), ("Used", "bar1Used"), ("Free", "bar1Free"))]]
    return fb + bar


def _ecc_sections(h: Any) -> list[Entry]:
    mode = query(N.nvmlDeviceGetEccMode, h)
    entries: list[Entry] = [(1, "ECC Mode", None),
                            (2, "Current", NA if mode is NA else ("Enabled" if mode[0] else "Disabled")),
                            (2, "Pending", NA if mode is NA else ("Enabled" if mode[1] else "Disabled")),
                            (1, "ECC Errors", None)]
    for scope, counter in (("Volatile", N.NVML_VOLATILE_ECC), ("Aggregate", N.NVML_AGGREGATE_ECC)):
        entries.append((2, scope, None))
        # nvidia-smi's DRAM rows are NVML's device-memory location; SRAM is the on-chip RAM.
        for where, location in (("SRAM", N.NVML_MEMORY_LOCATION_SRAM), ("DRAM", N.NVML_MEMORY_LOCATION_DRAM)):
            for kind, error_type in (("Correctable", N.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                                     ("Uncorrectable", N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
                value = query(N.nvmlDeviceGetMemoryErrorCounter, h, error_type, counter, location)
                entries.append((3, f"{where} {kind}", value))
    return entries


def _remapper_sections(h: Any) -> list[Entry]:
    rows = query(N.nvmlDeviceGetRemappedRows, h)
    if rows is NA:
        return [(1, "Remapped Rows", NA)]
    correctable, uncorrectable, pending, failure = rows
    return [(1, "Remapped Rows", None), (2, "Correctable Error", correctable),
            (2, "Uncorrectable Error", uncorrectable), (2, "Pending", _yes(pending)),
            (2, "Remapping Failure Occurred", _yes(failure))]


def _temperature_sections(h: Any) -> list[Entry]:
    def threshold(kind: int) -> str:
        return text(query(N.nvmlDeviceGetTemperatureThreshold, h, kind), "C")

    return [(1, "Temperature", None),
            (2, "GPU Current Temp", text(query(N.nvmlDeviceGetTemperature, h, N.NVML_TEMPERATURE_GPU), "C")),
            (2, "GPU T.Limit Temp", NA),
            (2, "GPU Shutdown Temp", threshold(N.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN)),
            (2, "GPU Slowdown Temp", threshold(N.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)),
            (2, "GPU Max Operating Temp", threshold(N.NVML_TEMPERATURE_THRESHOLD_GPU_MAX)),
            (2, "GPU Target Temperature", NA),
            (2, "Memory Current Temp", NA),
            (2, "Memory Max Operating Temp", threshold(N.NVML_TEMPERATURE_THRESHOLD_MEM_MAX))]


def _power_sections(h: Any) -> list[Entry]:
    limits = query(N.nvmlDeviceGetPowerManagementLimitConstraints, h)
    low, high = (NA, NA) if limits is NA else (watts(limits[0]), watts(limits[1]))
    limit = watts(query(N.nvmlDeviceGetPowerManagementLimit, h))
    return [(1, "GPU Power Readings", None),
            (2, "Power Draw", text(watts(query(N.nvmlDeviceGetPowerUsage, h)), "W", decimals=2)),
            (2, "Current Power Limit", text(limit, "W", decimals=2)),
            (2, "Requested Power Limit", text(limit, "W", decimals=2)),
            (2, "Default Power Limit",
             text(watts(query(N.nvmlDeviceGetPowerManagementDefaultLimit, h)), "W", decimals=2)),
            (2, "Min Power Limit", text(low, "W", decimals=2)),
            (2, "Max Power Limit", text(high, "W", decimals=2))]


def _clock_sections(h: Any) -> list[Entry]:
    kinds = (("Graphics", N.NVML_CLOCK_GRAPHICS), ("SM", N.NVML_CLOCK_SM), ("Memory", N.NVML_CLOCK_MEM),
             ("Video", N.NVML_CLOCK_VIDEO))
    entries: list[Entry] = [(1, "Clocks", None)]
    entries += [(2, label, text(query(N.nvmlDeviceGetClockInfo, h, kind), "MHz")) for label, kind in kinds]
    for heading, fn in (("Applications Clocks", N.nvmlDeviceGetApplicationsClock),
                        ("Default Applications Clocks", N.nvmlDeviceGetDefaultApplicationsClock)):
        entries.append((1, heading, None))
        entries += [(2, label, text(query(fn, h, kind), "MHz")) for label, kind in kinds[::2]]
    entries.append((1, "Max Clocks", None))
    entries += [(2, label, text(query(N.nvmlDeviceGetMaxClockInfo, h, kind), "MHz")) for label, kind in kinds]
    return entries


# nvidia-smi's "Clocks Event Reasons" rows (R550), the NVML bit behind each, and how deep each is indented.
CLOCK_EVENT_REASONS = (
    (2, "Idle", N.nvmlClocksEventReasonGpuIdle),
    (2, "Applications Clocks Setting", N.nvmlClocksEventReasonApplicationsClocksSetting),
    (2, "SW Power Cap", N.nvmlClocksEventReasonSwPowerCap),
    (2, "HW Slowdown", N.nvmlClocksEventReasonHwSlowdown),
    (3, "HW Thermal Slowdown", N.nvmlClocksEventReasonHwThermalSlowdown),
    (3, "HW Power Brake Slowdown", N.nvmlClocksEventReasonHwPowerBrakeSlowdown),
    (2, "Sync Boost", N.nvmlClocksEventReasonSyncBoost),
    (2, "SW Thermal Slowdown", N.nvmlClocksEventReasonSwThermalSlowdown),
    (2, "Display Clock Setting", N.nvmlClocksEventReasonDisplayClockSetting),
)


def _performance_sections(h: Any) -> list[Entry]:
    mask = query(N.nvmlDeviceGetCurrentClocksEventReasons, h)
    return [(1, "Performance State", pstate(h)), (1, "Clocks Event Reasons", None),
            *[(depth, label, NA if mask is NA else ("Active" if mask & bit else "Not Active"))
              for depth, label, bit in CLOCK_EVENT_REASONS]]


def _identity_sections(h: Any) -> list[Entry]:
    mig = [(1, "MIG Mode", None), (2, "Current", mig_mode(h, 0)), (2, "Pending", mig_mode(h, 1))]
    pci = query(N.nvmlDeviceGetPciInfo, h)
    link = [(1, "PCI", None),
            (2, "Bus", NA if pci is NA else f"0x{pci.bus:02X}"),
            (2, "Device", NA if pci is NA else f"0x{pci.device:02X}"),
            (2, "Domain", NA if pci is NA else f"0x{pci.domain:04X}"),
            (2, "Device Id", NA if pci is NA else f"0x{pci.pciDeviceId:08X}"),
            (2, "Bus Id", bus_id(h)), (2, "Sub System Id", NA if pci is NA else f"0x{pci.pciSubSystemId:08X}"),
            (2, "GPU Link Info", None), (3, "PCIe Generation", None),
            (4, "Max", query(N.nvmlDeviceGetMaxPcieLinkGeneration, h)),
            (4, "Current", query(N.nvmlDeviceGetCurrPcieLinkGeneration, h)),
            (3, "Link Width", None),
            (4, "Max", text(query(N.nvmlDeviceGetMaxPcieLinkWidth, h)) + "x"),
            (4, "Current", text(query(N.nvmlDeviceGetCurrPcieLinkWidth, h)) + "x"),
            (2, "Replays Since Reset", query(N.nvmlDeviceGetPcieReplayCounter, h))]
    return [(1, "Product Name", query(N.nvmlDeviceGetName, h)),
            (1, "Display Mode", enabled(query(N.nvmlDeviceGetDisplayMode, h))),
            (1, "Display Active", enabled(query(N.nvmlDeviceGetDisplayActive, h))),
            (1, "Persistence Mode", enabled(query(N.nvmlDeviceGetPersistenceMode, h))), *mig,
            (1, "Serial Number", query(N.nvmlDeviceGetSerial, h)), (1, "GPU UUID", query(N.nvmlDeviceGetUUID, h)),
            (1, "Minor Number", query(N.nvmlDeviceGetMinorNumber, h)),
            (1, "VBIOS Version", query(N.nvmlDeviceGetVbiosVersion, h)),
            (1, "Inforom Version", None), (2, "Image Version", query(N.nvmlDeviceGetInforomImageVersion, h)),
            (2, "OEM Object", query(N.nvmlDeviceGetInforomVersion, h, N.NVML_INFOROM_OEM)),
            (2, "ECC Object", query(N.nvmlDeviceGetInforomVersion, h, N.NVML_INFOROM_ECC)), *link,
            (1, "Fan Speed", text(query(N.nvmlDeviceGetFanSpeed, h), "%"))]


def _utilization_sections(h: Any) -> list[Entry]:
    util = query(N.nvmlDeviceGetUtilizationRates, h)
    return [(1, "Compute Mode", compute_mode(h)), (1, "Utilization", None),
            (2, "Gpu", text(getattr(util, "gpu", NA), "%")), (2, "Memory", text(getattr(util, "memory", NA), "%"))]


def _process_sections(index: int, h: Any) -> list[Entry]:
    found = processes(index, h)
    if not found:
        return [(1, "Processes", "None")]
    entries: list[Entry] = [(1, "Processes", None)]
    for p in found:
        entries += [(2, "GPU instance ID", p.gi), (2, "Compute instance ID", p.ci), (2, "Process ID", p.pid),
                    (2, "Type", "C"), (2, "Name", p.name), (2, "Used GPU Memory", text(p.used_mib, "MiB"))]
    return entries


# -d NAME -> the sections it shows, in nvidia-smi's order.
DISPLAY_SECTIONS: dict[str, tuple[Callable[[Any], list[Entry]], ...]] = {
    "PERFORMANCE": (_performance_sections,),
    "MEMORY": (_memory_sections,),
    "ECC": (_ecc_sections,),
    "ROW_REMAPPER": (_remapper_sections,),
    "TEMPERATURE": (_temperature_sections,),
    "POWER": (_power_sections,),
    "CLOCK": (_clock_sections,),
}
FULL_QUERY = (_identity_sections, _performance_sections, _memory_sections, _utilization_sections, _ecc_sections,
              _remapper_sections, _temperature_sections, _power_sections, _clock_sections)


def _entry_line(depth: int, label: str, value: Any) -> str:
    heading = "    " * depth + label
    return heading if value is None else f"{heading:<{LABEL_WIDTH}}: {text(value)}"


def query_report(gpus: list[Gpu], display: str | None) -> list[str]:
    """``nvidia-smi -q [-d ...]``: the NVSMI log, the named sections only when ``-d`` is given."""
    if display:
        names = [d.strip().upper() for d in display.split(",")]
        unknown = [d for d in names if d not in DISPLAY_SECTIONS]
        if unknown:
            raise UsageError(f"-d {','.join(unknown)}: labkit's nvidia-smi shows {', '.join(DISPLAY_SECTIONS)}")
        sections = [s for d in names for s in DISPLAY_SECTIONS[d]]
    else:
        sections = list(FULL_QUERY)
    lines = ["", "==============NVSMI LOG==============", "",
             _entry_line(0, "Timestamp", time.strftime("%a %b %e %H:%M:%S %Y")),
             _entry_line(0, "Driver Version", query(N.nvmlSystemGetDriverVersion)),
             _entry_line(0, "CUDA Version", _cuda_version()), "",
             _entry_line(0, "Attached GPUs", query(N.nvmlDeviceGetCount))]
    for gpu in gpus:
        if gpu.handle is None:
            lines.append(unreachable(gpu))
            continue
        lines.append(f"GPU {text(bus_id(gpu.handle))}")
        for section in sections:
            lines += [_entry_line(*entry) for entry in section(gpu.handle)]
        if not display:
            lines += [_entry_line(*entry) for entry in _process_sections(gpu.index, gpu.handle)]
        lines.append("")
    return lines


# --- -r ---------------------------------------------------------------------------------------------------------------


def reset(gpus: list[Gpu]) -> tuple[list[str], int]:
    """``nvidia-smi -r``: refused while a process uses a GPU, as on a real node; else the GPU is reset."""
    if not getattr(N, "__labkit_fake__", False):
        return ["labkit's nvidia-smi cannot reset a real GPU: NVML has no reset call (NVIDIA's tool asks the "
                "driver). Run NVIDIA's nvidia-smi -r as root."], EXIT_INVALID_ARGUMENT
    # Imported here: a pynvml-only client otherwise; the reset alone goes to the state's owner, not through NVML.
    from labkit.sim.gpu.shared import post_fault, state_owner

    owner = state_owner()
    if owner is None:
        return ["These simulated GPUs are a private node that lives only in this process "
                "(LABKIT_FAKE_GPU_SOURCE=local): there is nothing to reset. Reset the lab's GPUs: "
                'eval "$(labkit gpu-env)"; nvidia-smi -r -i INDEX'], EXIT_INVALID_ARGUMENT
    busy = [(gpu, bus_id(gpu.handle)) for gpu in gpus if gpu.handle is not None and processes(gpu.index, gpu.handle)]
    if busy:
        lines = [f"GPU {text(bus)} is currently in use by another process." for _, bus in busy]
        devices = "1 device is" if len(busy) == 1 else f"{len(busy)} devices are"
        lines += ["", f"{devices} currently being used by one or more other processes (e.g., Fabric Manager, CUDA "
                      "application, graphics application such as an X server, or a monitoring application such as "
                      "another instance of nvidia-smi). Please first kill all processes using this device and all "
                      "compute applications running in the system.",
                  "(In the lab: kubectl cordon NODE; kubectl drain NODE --ignore-daemonsets)"]
        return lines, EXIT_OTHER
    base_url, node = owner
    lines = []
    for gpu in gpus:
        name = text(bus_id(gpu.handle)) if gpu.handle is not None else str(gpu.index)
        post_fault(base_url, node, {"gpu": gpu.index, "reset": True})
        lines.append(f"GPU {name} was successfully reset.")
    return [*lines, "All done."], 0


# --- -lgc, -rgc, -pl --------------------------------------------------------------------------------------------------


def _settings_failed(lines: list[str], code: int) -> tuple[list[str], int]:
    # nvidia-smi's exit status is the NVML error's code (2 invalid argument, 3 not supported, 4 no permission, ...).
    return [*lines, "Terminating early due to previous errors."], code


def lock_clocks(gpus: list[Gpu], spec: str) -> tuple[list[str], int]:
    """``nvidia-smi -lgc MIN,MAX`` (or one value for both): nvmlDeviceSetGpuLockedClocks on each GPU."""
    try:
        low, _, high = spec.partition(",")
        low_mhz = int(low)
        high_mhz = int(high) if high else low_mhz
    except ValueError:
        raise UsageError(f"-lgc {spec}: give the clocks in MHz as MIN,MAX (e.g. 1500,1500) or one value") from None
    lines = []
    for gpu in gpus:
        if gpu.handle is None:
            return _settings_failed([*lines, unreachable(gpu)], N.NVML_ERROR_GPU_IS_LOST)
        try:
            N.nvmlDeviceSetGpuLockedClocks(gpu.handle, low_mhz, high_mhz)
        except N.NVMLError as exc:
            return _settings_failed([*lines, f"Failed to set locked GPU clocks for GPU {text(bus_id(gpu.handle))}: "
                                             f"{exc}"], exc.value)
        lines.append(f'GPU clocks set to "(gpcClkMin {low_mhz}, gpcClkMax {high_mhz})" for GPU '
                     f"{text(bus_id(gpu.handle))}")
    return [*lines, "All done."], 0


def reset_clocks(gpus: list[Gpu]) -> tuple[list[str], int]:
    """``nvidia-smi -rgc``: nvmlDeviceResetGpuLockedClocks on each GPU."""
    for gpu in gpus:
        if gpu.handle is None:
            return _settings_failed([unreachable(gpu)], N.NVML_ERROR_GPU_IS_LOST)
        try:
            N.nvmlDeviceResetGpuLockedClocks(gpu.handle)
        except N.NVMLError as exc:
            return _settings_failed([f"Failed to reset locked GPU clocks for GPU {text(bus_id(gpu.handle))}: {exc}"],
                                    exc.value)
    return ["All done."], 0


def power_limit(gpus: list[Gpu], spec: str) -> tuple[list[str], int]:
    """``nvidia-smi -pl WATTS``: nvmlDeviceSetPowerManagementLimit on each GPU; NVML refuses a limit outside the
    board's range, and the message names that range."""
    try:
        watts_wanted = float(spec)
    except ValueError:
        raise UsageError(f"-pl {spec}: give the power limit in watts, e.g. -pl 400") from None
    lines = []
    for gpu in gpus:
        if gpu.handle is None:
            return _settings_failed([*lines, unreachable(gpu)], N.NVML_ERROR_GPU_IS_LOST)
        bus = text(bus_id(gpu.handle))
        before = watts(query(N.nvmlDeviceGetPowerManagementLimit, gpu.handle))
        try:
            N.nvmlDeviceSetPowerManagementLimit(gpu.handle, round(watts_wanted * 1000))
        except N.NVMLError_InvalidArgument as exc:
            limits = query(N.nvmlDeviceGetPowerManagementLimitConstraints, gpu.handle)
            low, high = (NA, NA) if limits is NA else (watts(limits[0]), watts(limits[1]))
            return _settings_failed([*lines, f"Provided power limit {watts_wanted:.2f} W is not a valid power limit "
                                             f"which should be between {text(low, 'W', decimals=2)} and "
                                             f"{text(high, 'W', decimals=2)} for GPU {bus}"], exc.value)
        except N.NVMLError as exc:
            return _settings_failed([*lines, f"Failed to set power management limit for GPU {bus}: {exc}"], exc.value)
        after = watts(query(N.nvmlDeviceGetPowerManagementLimit, gpu.handle))
        lines.append(f"Power limit for GPU {bus} was set to {text(after, 'W', decimals=2)} from "
                     f"{text(before, 'W', decimals=2)}.")
    return [*lines, "All done."], 0


# --- the command line ------------------------------------------------------------------------------------------------

# option -> its canonical name, for options that take a value
VALUED = {"-i": "id", "--id": "id", "-d": "display", "--display": "display", "--format": "format",
          "--query-gpu": "query-gpu", "--query-compute-apps": "query-compute-apps",
          "-lgc": "lock-gpu-clocks", "--lock-gpu-clocks": "lock-gpu-clocks", "-pl": "power-limit",
          "--power-limit": "power-limit"}
FLAGS = {"-L": "list", "--list-gpus": "list", "-q": "query", "--query": "query", "-r": "reset",
         "--gpu-reset": "reset", "-rgc": "reset-gpu-clocks", "--reset-gpu-clocks": "reset-gpu-clocks",
         "-h": "help", "--help": "help", "--help-query-gpu": "help-query-gpu"}
MODES = ("list", "query", "reset", "query-gpu", "query-compute-apps", "lock-gpu-clocks", "reset-gpu-clocks",
         "power-limit")


def parse(argv: Sequence[str]) -> dict[str, str]:
    """nvidia-smi's options (``--opt=value``, ``--opt value``, ``-i 0``) into {canonical name: value}."""
    return parse_options(argv, VALUED, FLAGS)


def run(argv: Sequence[str]) -> tuple[list[str], int]:
    """What ``nvidia-smi ARGV`` prints (stdout lines) and its exit status."""
    options = parse(argv)
    if "help" in options:
        return USAGE.splitlines(), 0
    if "help-query-gpu" in options:
        return ['List of valid properties to query for the switch "--query-gpu=":', "",
                *(" or ".join(f'"{n}"' for n in (f.name, *f.aliases)) for f in GPU_FIELDS)], 0
    modes = [m for m in MODES if m in options]
    if len(modes) > 1 or ("display" in options and modes != ["query"]):
        raise UsageError(f"these options do not go together: {' '.join(sorted(options))}")
    if "format" in options and modes[0:1] not in (["query-gpu"], ["query-compute-apps"]):
        raise UsageError("--format goes with --query-gpu or --query-compute-apps")
    N.nvmlInit()
    try:
        try:
            gpus = select(options.get("id"))
        except LookupError:
            return ["No devices were found"], EXIT_NOT_FOUND
        mode = modes[0] if modes else "summary"
        if mode == "list":
            return list_gpus(gpus), 0
        if mode == "query":
            return query_report(gpus, options.get("display")), 0
        if mode == "reset":
            return reset(gpus)
        if mode == "lock-gpu-clocks":
            return lock_clocks(gpus, options["lock-gpu-clocks"])
        if mode == "reset-gpu-clocks":
            return reset_clocks(gpus)
        if mode == "power-limit":
            return power_limit(gpus, options["power-limit"])
        if mode == "query-gpu":
            return query_gpu(options["query-gpu"], csv_format(options.get("format")), gpus)
        if mode == "query-compute-apps":
            return query_compute_apps(options["query-compute-apps"], csv_format(options.get("format")), gpus)
        return summary(gpus), 0
    finally:
        N.nvmlShutdown()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with deadline("nvidia-smi"):
            lines, status = run(sys.argv[1:] if argv is None else argv)
    except DeadlineExceeded as exc:
        print(exc, file=sys.stderr)
        return EXIT_OTHER
    except UsageError as exc:
        print(f"nvidia-smi: {exc}.\n{USAGE}", file=sys.stderr)
        return EXIT_INVALID_ARGUMENT
    except N.NVMLError as exc:
        print(f"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver ({exc}).",
              file=sys.stderr)
        return EXIT_OTHER
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
