"""NVML's C interface served by the simulated GPUs: what ``libnvidia-ml.so.1`` would answer.

:class:`FakeNvmlLibrary` stands where pynvml keeps its loaded library (``pynvml.nvmlLib``). Each NVML
symbol is a real C function pointer (a ctypes callback with NVML's signature): it takes device handles,
pointers to NVML's output structures and buffers, and returns an ``nvmlReturn_t``. So pynvml's own
wrappers run unchanged, and so do tools that take the raw pointers from ``_nvmlGetFunctionPointer`` and
call them C-style (nvitop). Every symbol answers from :class:`~labkit.sim.gpu.fake_nvml.FakeNvml`, so
Python-level and C-level callers see one implementation. Symbols the simulation lacks are absent, which
pynvml reports as ``NVMLError_FunctionNotFound``, as an older driver would.

Why callbacks rather than a stand-in ``libnvidia-ml.so.1`` built from C: they need no compiler and no
shared-memory protocol, they reuse the Python model as it is, and every NVML client here loads NVML
through pynvml. The cost: a program that dlopens the C library itself (``nvidia-smi``, DCGM) does not
see the fake."""

from __future__ import annotations

import ctypes
import itertools
import logging
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from labkit.errors import LabkitError
from labkit.sim.gpu.fake_nvml import FakeHandle, FakeNvml
from labkit.sim.gpu.real_pynvml import SHIM_MARKER, genuine_pynvml_path, pynvml

N = pynvml
log = logging.getLogger(__name__)
_V, _U, _ULL, _I = ctypes.c_void_p, ctypes.c_uint, ctypes.c_ulonglong, ctypes.c_int
_bases = itertools.count(1)
# Handles are opaque pointers to callers; these values are never dereferenced.
_HANDLE_STRIDE = 0x100


class _Status(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _put(address: int | None, ctype: Any, value: Any) -> None:
    if not address:
        raise _Status(N.NVML_ERROR_INVALID_ARGUMENT)
    ctypes.cast(address, ctypes.POINTER(ctype))[0] = value


def _put_struct(address: int | None, struct: ctypes.Structure, *, keep_version: bool = False) -> None:
    if not address:
        raise _Status(N.NVML_ERROR_INVALID_ARGUMENT)
    offset = ctypes.sizeof(ctypes.c_uint) if keep_version else 0  # v2 structs start with the caller's version
    ctypes.memmove(address + offset, ctypes.addressof(struct) + offset, ctypes.sizeof(struct) - offset)


def _put_text(address: int | None, length: int, text: str) -> None:
    data = text.encode() + b"\0"
    if not address:
        raise _Status(N.NVML_ERROR_INVALID_ARGUMENT)
    if len(data) > length:
        raise _Status(N.NVML_ERROR_INSUFFICIENT_SIZE)
    ctypes.memmove(address, data, len(data))


def _put_array(count_address: int | None, array_address: int | None, ctype: Any, items: list[Any]) -> None:
    """NVML's two-call convention: too small (or no) array -> the needed count and INSUFFICIENT_SIZE."""
    if not count_address:
        raise _Status(N.NVML_ERROR_INVALID_ARGUMENT)
    count = ctypes.cast(count_address, ctypes.POINTER(ctypes.c_uint))
    room = count[0]
    count[0] = len(items)
    if not items:
        return
    if not array_address or room < len(items):
        raise _Status(N.NVML_ERROR_INSUFFICIENT_SIZE)
    array = ctypes.cast(array_address, ctypes.POINTER(ctype))
    for i, item in enumerate(items):
        array[i] = item


class _ProcessInfoV1(ctypes.Structure):
    """``nvmlProcessInfo_v1_t`` of the unversioned symbols (pynvml no longer defines it)."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


def _process_struct(version: int) -> type[ctypes.Structure]:
    # The _v3 symbols of R550 drivers fill the v2 layout (pynvml's c_nvmlProcessInfo_v3_t is that struct).
    return _ProcessInfoV1 if version == 1 else N.c_nvmlProcessInfo_v2_t


class FakeNvmlLibrary:
    """Stands in for ``CDLL("libnvidia-ml.so.1")``: attribute access yields C function pointers."""

    def __init__(self, fake: FakeNvml) -> None:
        self.fake = fake
        self._base = next(_bases) << 24
        self._thunks: dict[str, Any] = {}
        self._pointers: dict[str, Any] = {}
        self._error_strings: dict[int, ctypes.Array] = {}
        self._symbols = self._symbol_table()

    def __repr__(self) -> str:
        return f"<fake libnvidia-ml.so.1 for {self.fake.machine!r}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self.__dict__.get("_symbols", {}):
            raise AttributeError(f"libnvidia-ml.so.1 (simulated) has no symbol {name}")
        if name not in self._pointers:
            argtypes, impl = self._symbols[name]
            restype = _V if name == "nvmlErrorString" else _I
            thunk = ctypes.CFUNCTYPE(restype, *argtypes)(self._guard(name, impl))
            self._thunks[name] = thunk  # keep the callback alive as long as the library
            # A plain function pointer, as CDLL hands out: no argtypes, so callers pass C values as to NVML.
            pointer = ctypes.CDLL(None)._FuncPtr(ctypes.cast(thunk, ctypes.c_void_p).value)
            pointer.__name__ = name
            self._pointers[name] = pointer
        return self._pointers[name]

    def symbols(self) -> list[str]:
        """Every NVML symbol this library exports."""
        return sorted(self._symbols)

    # -- handles -----------------------------------------------------------------------------------

    def handle_value(self, handle: FakeHandle) -> int:
        return self._base + handle.gpu * _HANDLE_STRIDE + (0 if handle.mig is None else handle.mig + 1)

    def handle_of(self, value: int | None) -> FakeHandle:
        offset = (value or 0) - self._base
        if value is None or not 0 <= offset < len(self.fake.machine.devices) * _HANDLE_STRIDE:
            raise _Status(N.NVML_ERROR_INVALID_ARGUMENT)
        gpu, mig = divmod(offset, _HANDLE_STRIDE)
        return FakeHandle(id(self.fake.machine), gpu, None if mig == 0 else mig - 1)

    def _guard(self, name: str, impl: Callable[..., None]) -> Callable[..., int]:
        def entry(*args: Any) -> int:
            if name == "nvmlErrorString":
                return impl(*args)
            try:
                impl(*args)
            except _Status as status:
                return status.code
            except N.NVMLError as exc:
                return int(exc.value)
            except LabkitError as exc:  # the lab's exporter went away: to a C caller, the driver is gone
                log.warning("simulated %s: %s", name, exc)
                return N.NVML_ERROR_DRIVER_NOT_LOADED
            except Exception:  # a C caller cannot receive a Python exception
                log.exception("simulated %s failed", name)
                return N.NVML_ERROR_UNKNOWN
            return N.NVML_SUCCESS

        return entry

    # -- the symbol table --------------------------------------------------------------------------

    def _symbol_table(self) -> dict[str, tuple[tuple[Any, ...], Callable[..., Any]]]:
        f = self.fake
        h = self.handle_of
        table: dict[str, tuple[tuple[Any, ...], Callable[..., Any]]] = {}

        def scalar(name: str, ctype: Any, method: Callable[[FakeHandle], Any] | None = None) -> None:
            method = method or getattr(f, name)
            table[name] = ((_V, _V), lambda dev, out: _put(out, ctype, method(h(dev))))

        def with_arg(name: str, ctype: Any) -> None:
            method = getattr(f, name)
            table[name] = ((_V, _U, _V), lambda dev, arg, out: _put(out, ctype, method(h(dev), arg)))

        def text(name: str) -> None:
            method = getattr(f, name)
            table[name] = ((_V, _V, _U), lambda dev, buf, size: _put_text(buf, size, method(h(dev))))

        def pair(name: str, ctype: Any, method: Callable[[FakeHandle], Any] | None = None) -> None:
            method = method or getattr(f, name)

            def impl(dev: int, first: int, second: int) -> None:
                a, b = method(h(dev))
                _put(first, ctype, a)
                _put(second, ctype, b)

            table[name] = ((_V, _V, _V), impl)

        def setter(name: str, arity: int) -> None:
            method = getattr(f, name)
            table[name] = ((_V, *([_U] * arity)), lambda dev, *args: method(h(dev), *args))

        # lifecycle and system
        table["nvmlInit"] = table["nvmlInit_v2"] = ((), lambda: f.nvmlInit())
        table["nvmlInitWithFlags"] = ((_U,), lambda flags: f.nvmlInitWithFlags(flags))
        table["nvmlShutdown"] = ((), lambda: f.nvmlShutdown())
        table["nvmlErrorString"] = ((_I,), self._error_string)
        for name, method in (("nvmlSystemGetDriverVersion", f.nvmlSystemGetDriverVersion),
                             ("nvmlSystemGetNVMLVersion", f.nvmlSystemGetNVMLVersion)):
            table[name] = ((_V, _U), lambda buf, size, m=method: _put_text(buf, size, m()))
        for name in ("nvmlSystemGetCudaDriverVersion", "nvmlSystemGetCudaDriverVersion_v2"):
            table[name] = ((_V,), lambda out: _put(out, _I, f.nvmlSystemGetCudaDriverVersion()))
        table["nvmlSystemGetProcessName"] = ((_U, _V, _U), lambda pid, buf, size: _put_text(
            buf, size, f.nvmlSystemGetProcessName(pid)))
        table["nvmlDeviceGetCount"] = table["nvmlDeviceGetCount_v2"] = (
            (_V,), lambda out: _put(out, _U, f.nvmlDeviceGetCount()))

        # handles
        def by_index(index: int, out: int) -> None:
            _put(out, _V, self.handle_value(f.nvmlDeviceGetHandleByIndex(index)))

        table["nvmlDeviceGetHandleByIndex"] = table["nvmlDeviceGetHandleByIndex_v2"] = ((_U, _V), by_index)
        for name, method in (("nvmlDeviceGetHandleByUUID", f.nvmlDeviceGetHandleByUUID),
                             ("nvmlDeviceGetHandleByPciBusId", f.nvmlDeviceGetHandleByPciBusId),
                             ("nvmlDeviceGetHandleByPciBusId_v2", f.nvmlDeviceGetHandleByPciBusId)):
            table[name] = ((_V, _V), lambda key, out, m=method: _put(
                out, _V, self.handle_value(m(ctypes.string_at(key).decode()) if key else _bad())))
        table["nvmlDeviceGetMigDeviceHandleByIndex"] = ((_V, _U, _V), lambda dev, i, out: _put(
            out, _V, self.handle_value(f.nvmlDeviceGetMigDeviceHandleByIndex(h(dev), i))))
        table["nvmlDeviceGetDeviceHandleFromMigDeviceHandle"] = ((_V, _V), lambda dev, out: _put(
            out, _V, self.handle_value(f.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(h(dev)))))

        # identity, modes, counters
        for name in ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetSerial", "nvmlDeviceGetVbiosVersion",
                     "nvmlDeviceGetInforomImageVersion"):
            text(name)
        table["nvmlDeviceGetInforomVersion"] = ((_V, _U, _V, _U), lambda dev, obj, buf, size: _put_text(
            buf, size, f.nvmlDeviceGetInforomVersion(h(dev), obj)))
        for name in ("nvmlDeviceGetIndex", "nvmlDeviceGetMinorNumber", "nvmlDeviceGetBoardId", "nvmlDeviceGetBrand",
                     "nvmlDeviceGetArchitecture", "nvmlDeviceGetComputeMode", "nvmlDeviceGetPersistenceMode",
                     "nvmlDeviceGetDisplayMode", "nvmlDeviceGetDisplayActive", "nvmlDeviceGetFanSpeed",
                     "nvmlDeviceGetNumFans", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetPowerManagementLimit",
                     "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementDefaultLimit",
                     "nvmlDeviceGetPerformanceState", "nvmlDeviceGetPowerState", "nvmlDeviceGetPcieReplayCounter",
                     "nvmlDeviceGetCurrPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkGeneration",
                     "nvmlDeviceGetCurrPcieLinkWidth", "nvmlDeviceGetMaxPcieLinkWidth",
                     "nvmlDeviceGetMaxMigDeviceCount", "nvmlDeviceGetGpuInstanceId",
                     "nvmlDeviceGetComputeInstanceId"):
            scalar(name, _U)
        scalar("nvmlDeviceIsMigDeviceHandle", _U, lambda dev: int(f.nvmlDeviceIsMigDeviceHandle(dev)))
        for name in ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetCurrentClocksEventReasons",
                     "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetSupportedClocksEventReasons",
                     "nvmlDeviceGetSupportedClocksThrottleReasons"):
            scalar(name, _ULL)
        for name in ("nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureThreshold", "nvmlDeviceGetClockInfo",
                     "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetApplicationsClock",
                     "nvmlDeviceGetDefaultApplicationsClock", "nvmlDeviceGetPcieThroughput",
                     "nvmlDeviceGetFanSpeed_v2"):
            with_arg(name, _U)
        for name, ctype in (("nvmlDeviceGetEccMode", _U), ("nvmlDeviceGetEncoderUtilization", _U),
                            ("nvmlDeviceGetDecoderUtilization", _U), ("nvmlDeviceGetMigMode", _U),
                            ("nvmlDeviceGetPowerManagementLimitConstraints", _U),
                            ("nvmlDeviceGetCudaComputeCapability", _I), ("nvmlDeviceGetDriverModel", _U),
                            ("nvmlDeviceGetDriverModel_v2", _U)):
            pair(name, ctype)

        def temperature_v(dev: int, out: int) -> None:
            request = N.c_nvmlTemperature_v1_t.from_address(out) if out else _bad()
            if request.version != N.nvmlTemperature_v1:
                raise _Status(N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
            request.temperature = f.nvmlDeviceGetTemperature(h(dev), request.sensorType)

        table["nvmlDeviceGetTemperatureV"] = ((_V, _V), temperature_v)

        # structures
        table["nvmlDeviceGetMemoryInfo"] = ((_V, _V), lambda dev, out: _put_struct(
            out, f.nvmlDeviceGetMemoryInfo(h(dev))))

        def memory_v2(dev: int, out: int) -> None:
            version = ctypes.c_uint.from_address(out).value if out else _bad()
            if version != N.nvmlMemory_v2:
                raise _Status(N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
            _put_struct(out, f.nvmlDeviceGetMemoryInfo(h(dev), version), keep_version=True)

        table["nvmlDeviceGetMemoryInfo_v2"] = ((_V, _V), memory_v2)
        for name, method in (("nvmlDeviceGetUtilizationRates", f.nvmlDeviceGetUtilizationRates),
                             ("nvmlDeviceGetBAR1MemoryInfo", f.nvmlDeviceGetBAR1MemoryInfo),
                             ("nvmlDeviceGetPciInfo", f.nvmlDeviceGetPciInfo),
                             ("nvmlDeviceGetPciInfo_v2", f.nvmlDeviceGetPciInfo),
                             ("nvmlDeviceGetPciInfo_v3", f.nvmlDeviceGetPciInfo)):
            table[name] = ((_V, _V), lambda dev, out, m=method: _put_struct(out, m(h(dev))))

        def remapped_rows(dev: int, *outs: int) -> None:
            for out, value in zip(outs, f.nvmlDeviceGetRemappedRows(h(dev)), strict=True):
                _put(out, _U, value)

        table["nvmlDeviceGetRemappedRows"] = ((_V, _V, _V, _V, _V), remapped_rows)
        table["nvmlDeviceGetTotalEccErrors"] = ((_V, _U, _U, _V), lambda dev, kind, counter, out: _put(
            out, _ULL, f.nvmlDeviceGetTotalEccErrors(h(dev), kind, counter)))
        table["nvmlDeviceGetMemoryErrorCounter"] = ((_V, _U, _U, _U, _V), lambda dev, kind, counter, where, out: _put(
            out, _ULL, f.nvmlDeviceGetMemoryErrorCounter(h(dev), kind, counter, where)))

        # lists (NVML's two-call convention)
        table["nvmlDeviceGetSupportedMemoryClocks"] = ((_V, _V, _V), lambda dev, count, arr: _put_array(
            count, arr, _U, f.nvmlDeviceGetSupportedMemoryClocks(h(dev))))
        table["nvmlDeviceGetSupportedGraphicsClocks"] = ((_V, _U, _V, _V), lambda dev, mem, count, arr: _put_array(
            count, arr, _U, f.nvmlDeviceGetSupportedGraphicsClocks(h(dev), mem)))
        for kind in ("Compute", "Graphics", "MPSCompute"):
            for version, suffix in ((1, ""), (2, "_v2"), (3, "_v3")):
                name = f"nvmlDeviceGet{kind}RunningProcesses{suffix}"
                table[name] = ((_V, _V, _V), self._processes(getattr(f, name), _process_struct(version)))

        def process_utilization(dev: int, arr: int, count: int, since_us: int) -> None:
            _put_array(count, arr, N.c_nvmlProcessUtilizationSample_t,
                       f.nvmlDeviceGetProcessUtilization(h(dev), since_us))

        table["nvmlDeviceGetProcessUtilization"] = ((_V, _V, _V, _ULL), process_utilization)

        def field_values(dev: int, count: int, arr: int) -> None:
            if not arr or count < 0:
                raise _Status(N.NVML_ERROR_INVALID_ARGUMENT)
            slots = (N.c_nvmlFieldValue_t * count).from_address(arr)
            answered = f.nvmlDeviceGetFieldValues(h(dev), [(s.fieldId, s.scopeId) for s in slots])
            ctypes.memmove(arr, ctypes.addressof(answered), ctypes.sizeof(answered))

        table["nvmlDeviceGetFieldValues"] = ((_V, _I, _V), field_values)

        # operator controls
        setter("nvmlDeviceSetPowerManagementLimit", 1)
        setter("nvmlDeviceSetApplicationsClocks", 2)
        setter("nvmlDeviceResetApplicationsClocks", 0)
        setter("nvmlDeviceSetGpuLockedClocks", 2)
        setter("nvmlDeviceResetGpuLockedClocks", 0)
        return table

    def _processes(self, method: Callable[[FakeHandle], list[Any]], struct: type[ctypes.Structure]) -> Callable:
        def impl(dev: int, count: int, arr: int) -> None:
            items = []
            for p in method(self.handle_of(dev)):
                item = struct(pid=p.pid, usedGpuMemory=p.usedGpuMemory)
                if hasattr(item, "gpuInstanceId"):
                    item.gpuInstanceId, item.computeInstanceId = p.gpuInstanceId, p.computeInstanceId
                items.append(item)
            _put_array(count, arr, struct, items)

        return impl

    def _error_string(self, code: int) -> int:
        if code not in self._error_strings:
            text = N.NVMLError._errcode_to_string.get(code, "Unknown Error")
            self._error_strings[code] = ctypes.create_string_buffer(text.encode())
        return ctypes.addressof(self._error_strings[code])


def _bad() -> Any:
    raise _Status(N.NVML_ERROR_INVALID_ARGUMENT)


def pynvml_over(fake: FakeNvml, name: str = "pynvml") -> ModuleType:
    """A fresh copy of NVIDIA's own pynvml whose library handle is the simulated ``libnvidia-ml.so.1``.

    pynvml's wrapper code, structures and exceptions are the genuine ones; only the C library differs.
    ``name`` is the module's name (``pynvml`` when it is to replace the real module in a tool's process)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, genuine_pynvml_path())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # pynvml builds its exception classes from sys.modules[__name__]
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is not None:
            sys.modules[name] = previous
        elif name != "pynvml":
            sys.modules.pop(name, None)
    module.nvmlLib = FakeNvmlLibrary(fake)
    module.fake = fake
    setattr(module, SHIM_MARKER, True)
    return module
