"""Lesson 12, GPU monitoring: nvidia-smi-style inventory, the clock-frequency experiment, GPU time per pod,
the live dashboard's data, and the lesson's exercises.

Data functions return pandas tables; ``*_figure`` functions turn them into plotly figures (never shown here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import yaml

from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..display.widgets import Dashboard
from ..errors import LabkitError, WaitTimeout
from ..i18n import _
from ..kube.apply import apply
from ..kube.nodes import cordon, drain
from ..kube.objects import get
from ..observability import promql
from ..operations import exporter_url

# Lab operations this lesson teaches, reached from its notebook as g12.inject_fault and so on.
from ..operations import inject_fault as inject_fault
from ..operations import pod_resources as pod_resources
from ..operations import replace_board as replace_board
from ..operations import reset_gpu as reset_gpu
from ..operations import restore_gpu_nodes as restore_gpu_nodes
from ..paths import data_file
from ..settings import DEFAULT_GPU_PROFILE, GPU_RESOURCE, SCRAPE_INTERVAL_S
from ..sim.gpu import FakeMachine, FakeNvml, Workload, dcgm, degrade_cooling, fake_pynvml_env, nvml_mode, reason_names
from ..sim.gpu.attribution import pod_pid

# The health and diagnostic model lives with the simulation (dcgmi prints it too); these names stay lesson 12's.
from ..sim.gpu.dcgm import DIAG_DURATION as DIAG_DURATION
from ..sim.gpu.dcgm import DIAG_TESTS as DIAG_TESTS
from ..sim.gpu.dcgm import HEALTH_SYSTEMS as HEALTH_SYSTEMS
from ..sim.gpu.dcgm import PCIE_REPLAY_WARN as PCIE_REPLAY_WARN
from ..sim.gpu.machine import FakeProcess
from ..sim.gpu.real_pynvml import pynvml as N

NA = "n/a"


def _read(fn: Any, *args: Any) -> Any:
    """One NVML reading; NotSupported (and any NVML error) becomes "n/a", as nvidia-smi prints [N/A]."""
    try:
        value = fn(*args)
    except N.NVMLError:
        return NA
    return value.decode() if isinstance(value, bytes) else value


def nvml_inventory(api: Any) -> pd.DataFrame:
    """What ``nvidia-smi --query-gpu=...`` lists, read through NVML (real pynvml or the fake).

    """
    api.nvmlInit()
    try:
        rows = []
        for i in range(api.nvmlDeviceGetCount()):
            h = api.nvmlDeviceGetHandleByIndex(i)
            mem = _read(api.nvmlDeviceGetMemoryInfo, h)
            util = _read(api.nvmlDeviceGetUtilizationRates, h)
            power = _read(api.nvmlDeviceGetPowerUsage, h)
            limit = _read(api.nvmlDeviceGetPowerManagementLimit, h)
            reasons = _read(api.nvmlDeviceGetCurrentClocksEventReasons, h)
            rows.append({
                "index": i,
                "name": _read(api.nvmlDeviceGetName, h),
                "memory_used_mib": mem.used // 2**20 if mem != NA else NA,
                "memory_total_mib": mem.total // 2**20 if mem != NA else NA,
                "utilization_pct": util.gpu if util != NA else NA,
                "power_w": round(power / 1000, 1) if power != NA else NA,
                "power_limit_w": round(limit / 1000) if limit != NA else NA,
                "temperature_c": _read(api.nvmlDeviceGetTemperature, h, N.NVML_TEMPERATURE_GPU),
                "sm_clock_mhz": _read(api.nvmlDeviceGetClockInfo, h, N.NVML_CLOCK_SM),
                "sm_clock_max_mhz": _read(api.nvmlDeviceGetMaxClockInfo, h, N.NVML_CLOCK_SM),
                "pstate": _read(api.nvmlDeviceGetPerformanceState, h),
                "clock_event_reasons": ",".join(reason_names(reasons)) or "none" if reasons != NA else NA,
            })
        return pd.DataFrame(rows)
    finally:
        api.nvmlShutdown()


def driver_and_firmware(api: Any) -> pd.DataFrame:
    """Driver (software on the host) beside firmware (VBIOS, InfoROM: stored on the board), per GPU.

    """
    api.nvmlInit()
    try:
        driver = _read(api.nvmlSystemGetDriverVersion)
        cuda = _read(api.nvmlSystemGetCudaDriverVersion)
        cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else NA
        rows = []
        for i in range(api.nvmlDeviceGetCount()):
            h = api.nvmlDeviceGetHandleByIndex(i)
            rows.append({"index": i, "driver (host software)": driver, "CUDA driver API": cuda_text,
                         "VBIOS (board firmware)": _read(api.nvmlDeviceGetVbiosVersion, h),
                         "InfoROM image (board firmware)": _read(api.nvmlDeviceGetInforomImageVersion, h)})
        return pd.DataFrame(rows)
    finally:
        api.nvmlShutdown()


NEWER_NVML_FUNCTIONS = ("nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetRemappedRows",
                        "nvmlDeviceGetPlatformInfo", "nvmlDeviceGetPowerMizerMode_v1")


def nvml_versions(api: Any, functions: Sequence[str] = NEWER_NVML_FUNCTIONS) -> pd.DataFrame:
    """Version queries (``nvidia-smi`` prints the first three in its header) and which C functions the loaded
    driver library exports: NVML is backward compatible, so an old call works on a new driver, while a call newer
    than the driver answers ``NVML_ERROR_FUNCTION_NOT_FOUND`` (pynvml: ``NVMLError_FunctionNotFound``)."""
    api.nvmlInit()
    try:
        cuda = api.nvmlSystemGetCudaDriverVersion()
        rows = [("nvmlSystemGetDriverVersion", _read(api.nvmlSystemGetDriverVersion)),
                ("nvmlSystemGetCudaDriverVersion", f"{cuda} (CUDA {_cuda_text(cuda)})"),
                ("nvmlSystemGetNVMLVersion", _read(api.nvmlSystemGetNVMLVersion))]
        lookup = getattr(api, "_nvmlGetFunctionPointer", None) or N._nvmlGetFunctionPointer
        for name in functions:
            try:
                lookup(name)
                rows.append((name, "exported"))
            except N.NVMLError as exc:
                code = "NVML_ERROR_FUNCTION_NOT_FOUND" if exc.value == N.NVML_ERROR_FUNCTION_NOT_FOUND else exc.value
                rows.append((name, f"{exc} ({code})"))
        return pd.DataFrame(rows, columns=["query", "answer"])
    finally:
        api.nvmlShutdown()


# --- the same GPUs from a terminal: nvitop and gpustat, unmodified -----------------------------------------------

_NVITOP_PROBE = textwrap.dedent("""
    import json
    from nvitop import Device
    rows = []
    for device in Device.all():
        for d in [device, *device.mig_devices()]:
            mig = d is not device
            rows.append({"device": f"{device.index}:{d.index[1]}" if mig else str(d.index), "name": d.name(),
                         "memory_used_mib": d.memory_used() // 2**20, "memory_total_mib": d.memory_total() // 2**20,
                         "utilization_pct": "-" if mig else d.gpu_utilization(),
                         "gpu_instance": d.gpu_instance_id() if mig else "-", "pids": sorted(d.processes())})
    print(json.dumps(rows))
""")


def terminal_env(node: str) -> dict[str, str]:
    """The environment of a shell after ``eval "$(labkit gpu-env)"``, looking at one GPU node of the lab.

    ``import pynvml`` in it is NVIDIA's pynvml over the simulated C library, mirroring the lab's GPU exporter
    (``LABKIT_FAKE_GPU_NODE=NODE``). On a host with real GPUs, this shell's own environment."""
    if nvml_mode().mode == "real":
        return dict(os.environ)
    env = fake_pynvml_env(source="lab")
    env["LABKIT_FAKE_GPU_NODE"] = node
    return env


def use_gpu_node(node: str = "gpu-node-1") -> dict[str, str]:
    """Make this kernel's ``!nvidia-smi``, ``!dcgmi``, ``!nvitop`` and pynvml subprocesses look at one GPU node of the
    lab (``eval "$(labkit gpu-env)"; export LABKIT_FAKE_GPU_NODE=NODE`` in a shell); returns the variables it set.

    On a host with real GPUs nothing is shadowed and nothing changes."""
    changed = {name: value for name, value in terminal_env(node).items() if os.environ.get(name) != value}
    os.environ.update(changed)
    return changed


def run_tool(*args: str, node: str = "gpu-node-1", timeout: float = 120) -> str:
    """Run an NVML client in its own process, as in a terminal beside the lab; returns what it prints.

    ``run_tool("nvitop", "--once", node="gpu-node-3")`` is ``LABKIT_FAKE_GPU_NODE=gpu-node-3 nvitop --once``."""
    result = subprocess.run([sys.executable, "-m", *args], env=terminal_env(node), capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        raise LabkitError(_("`{command}` failed (exit {code}): {error}").format(
                              command=" ".join(args), code=result.returncode, error=result.stderr.strip()[-800:]),
                          fix=_("run it yourself: eval \"$(labkit gpu-env)\"; {command}").format(
                              command=" ".join(args)))
    return result.stdout


def pod_process_id(lab: Any, name: str, namespace: str) -> int:
    """The process id NVML lists for a GPU pod of the lab (``kubectl get pod NAME -o jsonpath='{.metadata.uid}'``,
    then a stable number above Linux's largest pid: the pod's container is simulated)."""
    pod = get(lab, "Pod", name, namespace=namespace)
    if pod is None:
        raise LabkitError(_("no pod {namespace}/{name}").format(namespace=namespace, name=name),
                          fix=f"kubectl get pods -n {namespace}")
    return pod_pid(pod["metadata"]["uid"])


def nvitop_devices(node: str = "gpu-node-1") -> pd.DataFrame:
    """Every GPU and MIG device of a node as nvitop's Python API sees it, from a separate process."""
    probe = subprocess.run([sys.executable, "-c", _NVITOP_PROBE], env=terminal_env(node), capture_output=True,
                           text=True, timeout=120, check=False)
    if probe.returncode != 0:
        raise LabkitError(_("nvitop's API failed: {error}").format(error=probe.stderr.strip()[-800:]),
                          fix="pip install nvitop")
    return pd.DataFrame(json.loads(probe.stdout))


# --- what the container runtime does with CUDA ----------------------------------------------------------------------

# Images and the CUDA they were built with (their NVIDIA_REQUIRE_CUDA says cuda>=MAJOR.MINOR).
CUDA_IMAGES = (("nvidia/cuda:11.8.0-base-ubuntu22.04", 11080), ("nvidia/cuda:12.4.1-base-ubuntu22.04", 12040),
               ("nvidia/cuda:12.6.3-base-ubuntu22.04", 12060))


def _cuda_text(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def cuda_compatibility(api: Any) -> pd.DataFrame:
    """Which CUDA images the NVIDIA container runtime would start on this node's driver, and why.

    The runtime mounts the driver's libraries and checks the image's ``NVIDIA_REQUIRE_CUDA`` against the CUDA
    version the driver supports (``nvmlSystemGetCudaDriverVersion``); the CUDA toolkit is the image's own."""
    api.nvmlInit()
    try:
        driver, supported = api.nvmlSystemGetDriverVersion(), api.nvmlSystemGetCudaDriverVersion()
    finally:
        api.nvmlShutdown()
    rows = []
    for image, built in CUDA_IMAGES:
        need = f"cuda>={_cuda_text(built)}"
        ok = supported >= built
        rows.append({"image": image, "CUDA toolkit (in the image)": _cuda_text(built), "NVIDIA_REQUIRE_CUDA": need,
                     "driver": driver, "driver supports CUDA": _cuda_text(supported),
                     "container": "starts" if ok else f"refused: unsatisfied condition: {need}"})
    return pd.DataFrame(rows)


# --- memory under sharing: one pool (time-slicing) vs hardware partitions (MIG) -----------------------------------


def sharing_memory(asks_mib: Sequence[tuple[str, int]] = (("team-a/trainer", 60_000), ("team-b/notebook", 30_000))
                   ) -> pd.DataFrame:
    """Two pods' memory on one GPU, read back through NVML: time-sliced on a whole H100, then each on its own MIG
    instance (``3g.40gb``). A simulated node with the lab's model; pods start in the order given."""
    rows = []
    for sharing in ("time-slicing", "MIG 3g.40gb"):
        machine = FakeMachine(profile="H100-SXM", count=1, node="sharing-demo")
        mig = sharing.startswith("MIG")
        if mig:
            machine.configure_mig(0, ["3g.40gb"] * len(asks_mib))
        pids = {4_194_400 + i: (pod, ask) for i, (pod, ask) in enumerate(asks_mib)}
        machine.set_workload(0, Workload(80, sum(a for _, a in asks_mib), 0.3))
        machine.set_processes({0: [FakeProcess(pid, ask, i + 1 if mig else None, pod)
                                   for i, (pid, (pod, ask)) in enumerate(pids.items())]})
        api = FakeNvml(machine)
        api.nvmlInit()
        gpu = api.nvmlDeviceGetHandleByIndex(0)
        handles = ([api.nvmlDeviceGetMigDeviceHandleByIndex(gpu, i) for i in range(len(asks_mib))] if mig
                   else [gpu] * len(asks_mib))
        for handle, (pid, (pod, ask)) in zip(handles, pids.items(), strict=True):
            held = next(p.usedGpuMemory for p in api.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid == pid)
            total = api.nvmlDeviceGetMemoryInfo(handle).total
            rows.append({"sharing": sharing, "pod": pod, "asks_mib": ask,
                         "device_memory_mib": total // 2**20, "holds_mib": held // 2**20,
                         "cudaMalloc": "ok" if held // 2**20 == ask else "out of memory"})
        api.nvmlShutdown()
    return pd.DataFrame(rows)


def clock_sweep(*, profile: str = DEFAULT_GPU_PROFILE, clocks_mhz: Sequence[int] = (900, 1200, 1500, 1755, 1980),
                memory_bound: Iterable[float] = (0.1, 0.7), seconds: float = 300, seed: int = 0) -> pd.DataFrame:
    """Lock the SM clock at each value (``nvidia-smi -lgc X,X``), run a full load, read the steady state.

    """
    rows = []
    for bound in memory_bound:
        for clock in clocks_mhz:
            machine = FakeMachine(profile=profile, count=1, node="bench", seed=seed)
            api = FakeNvml(machine)
            api.nvmlInit()
            handle = api.nvmlDeviceGetHandleByIndex(0)
            api.nvmlDeviceSetGpuLockedClocks(handle, clock, clock)
            machine.set_workload(0, Workload(100, 40_000, bound))
            machine.step(seconds)
            s = machine.sample(0)
            rows.append({"memory_bound": bound, "locked_clock_mhz": clock, "sm_clock_mhz": s.sm_clock_mhz,
                         "power_w": round(s.power_w), "temperature_c": round(s.temperature_c),
                         "throughput": round(s.throughput, 3), "work_per_kj": round(s.throughput / s.power_w * 1000, 2),
                         "reasons": ",".join(s.reasons) or "none"})
            api.nvmlShutdown()
    return pd.DataFrame(rows)


def overclock_model(*, profile: str = DEFAULT_GPU_PROFILE, offsets_mhz: Sequence[int] = (0, 50, 100, 150, 200),
                    utilization_pct: Iterable[int] = (100, 60), memory_bound: float = 0.1,
                    run_hours: float = 24.0) -> pd.DataFrame:
    """What a clock offset (overclocking, 超频) would buy and break, by the model in ``labkit.sim.gpu.physics``.

    One row per load and offset: the clock reached under the default power limit, throughput, watts, and the
    expected timing errors (wrong results or XID 13/31 crashes) in a ``run_hours`` training run. A model, not a
    measurement: datacenter boards refuse offsets (``nvidia-smi -lgc`` only picks a point of the validated table)."""
    from ..sim.gpu.physics import overclocked, relative_throughput
    from ..sim.gpu.profiles import load_profile

    board = load_profile(profile)
    rows = []
    for util in utilization_pct:
        for offset in offsets_mhz:
            clock, watts, errors = overclocked(board, Workload(util, 40_000, memory_bound), offset)
            rows.append({"load_pct": util, "offset_mhz": offset, "asked_mhz": board.sm_clock_max_mhz + offset,
                         "sm_clock_mhz": round(clock), "power_w": round(watts),
                         "throughput": round(relative_throughput(board, sm_clock_mhz=clock, memory_bound=memory_bound)
                                             * util / 100, 3),
                         "errors_per_run": round(errors * run_hours, 3)})
    return pd.DataFrame(rows)


def power_limit_sweep(*, profile: str = DEFAULT_GPU_PROFILE, limits_w: Sequence[int] = (700, 600, 500, 400, 300, 200),
                      memory_bound: float = 0.3, host_w_per_gpu: float = 150.0, seconds: float = 300,
                      seed: int = 0) -> pd.DataFrame:
    """Cap the board's power (``nvidia-smi -pl W``, NVML ``nvmlDeviceSetPowerManagementLimit``) and run one job.

    The job is one hour of work at full speed. ``host_w_per_gpu`` is the rest of the server (CPUs, memory, fans,
    NICs) per GPU, an assumption: it keeps drawing while a slower job runs longer."""
    rows = []
    for limit in limits_w:
        machine = FakeMachine(profile=profile, count=1, node="bench", seed=seed)
        api = FakeNvml(machine)
        api.nvmlInit()
        api.nvmlDeviceSetPowerManagementLimit(api.nvmlDeviceGetHandleByIndex(0), limit * 1000)
        machine.set_workload(0, Workload(100, 40_000, memory_bound))
        machine.step(seconds)
        s = machine.sample(0)
        job_s = 3600 / s.throughput
        rows.append({"power_limit_w": limit, "sm_clock_mhz": s.sm_clock_mhz, "gpu_power_w": round(s.power_w),
                     "throughput": round(s.throughput, 3), "job_minutes": round(job_s / 60, 1),
                     "gpu_kj_per_job": round(s.power_w * job_s / 1000),
                     "server_kj_per_job": round((s.power_w + host_w_per_gpu) * job_s / 1000),
                     "reasons": ",".join(s.reasons) or "none"})
        api.nvmlShutdown()
    return pd.DataFrame(rows)


def throttle_run(*, profile: str = DEFAULT_GPU_PROFILE, cooling_factor: float = 1.8, seconds: int = 240,
                 seed: int = 0) -> pd.DataFrame:
    """A full compute-bound load on a GPU whose cooling got worse (a failed fan, a blocked air inlet).

    """
    machine = FakeMachine(profile=profile, count=1, node="bench", seed=seed)
    degrade_cooling(machine, 0, factor=cooling_factor)
    machine.set_workload(0, Workload(100, 40_000, 0.1))
    rows = [{"time_s": s.time_s, "sm_clock_mhz": s.sm_clock_mhz, "power_w": round(s.power_w, 1),
             "temperature_c": round(s.temperature_c, 1), "throughput": round(s.throughput, 3),
             "reasons": ",".join(s.reasons) or "none"} for s in machine.run(seconds, dt_s=2.0)]
    return pd.DataFrame(rows)


def clock_sweep_figure(sweep: pd.DataFrame) -> go.Figure:
    """Throughput and power against the locked clock, one line per workload type."""
    fig = go.Figure()
    for bound, part in sweep.groupby("memory_bound"):
        kind = "memory-bound" if bound >= 0.5 else "compute-bound"
        fig.add_scatter(x=part["locked_clock_mhz"], y=part["throughput"], name=f"throughput, {kind}")
        fig.add_scatter(x=part["locked_clock_mhz"], y=part["power_w"], name=f"power (W), {kind}", yaxis="y2",
                        line={"dash": "dot"})
    fig.update_layout(title="Raising the clock: throughput vs power", xaxis_title="locked SM clock (MHz)",
                      yaxis_title="throughput (1.0 = max clock)", yaxis2={"title": "power (W)", "overlaying": "y",
                                                                          "side": "right"}, height=420)
    return fig


def throttle_figure(run: pd.DataFrame) -> go.Figure:
    """Temperature and SM clock over time: the firmware trading clock for heat."""
    fig = go.Figure()
    fig.add_scatter(x=run["time_s"], y=run["temperature_c"], name="temperature (°C)")
    fig.add_scatter(x=run["time_s"], y=run["sm_clock_mhz"], name="SM clock (MHz)", yaxis="y2")
    fig.update_layout(title="Poor cooling: thermal throttling", xaxis_title="seconds",
                      yaxis_title="°C", yaxis2={"title": "MHz", "overlaying": "y", "side": "right"}, height=380)
    return fig


# --- GPU time per pod and namespace, from Prometheus -------------------------------------------------

def gpu_time_queries(window: str = "10m", scrape_interval_s: float = SCRAPE_INTERVAL_S) -> dict[str, str]:
    """The PromQL behind :func:`gpu_time_by_pod`: allocated GPU-seconds and busy GPU-seconds per pod.

    """
    sel = 'DCGM_FI_DEV_GPU_UTIL{pod!=""}'
    return {
        "allocated_gpu_s": f"sum by (namespace, pod) (count_over_time({sel}[{window}])) * {scrape_interval_s:g}",
        "busy_gpu_s": f"sum by (namespace, pod) (sum_over_time({sel}[{window}])) / 100 * {scrape_interval_s:g}",
    }


def gpu_time_by_pod(*, window: str = "10m", namespace: str | None = None) -> pd.DataFrame:
    """GPU-seconds each pod held and kept busy over ``window`` (whole GPUs; MIG slices report engine activity).

    """
    frames = []
    at = time.time()  # both queries at one instant: a scrape between them would move the window's edge
    for column, expr in gpu_time_queries(window).items():
        frame = promql.query(expr, at=at)
        if frame.empty:
            continue
        frames.append(frame.set_index(["namespace", "pod"])["value"].rename(column))
    if not frames:
        return pd.DataFrame(columns=["namespace", "pod", "allocated_gpu_s", "busy_gpu_s", "efficiency"])
    table = pd.concat(frames, axis=1).fillna(0).reset_index()
    if namespace:
        table = table[table["namespace"] == namespace]
    table["efficiency"] = (table["busy_gpu_s"] / table["allocated_gpu_s"]).round(2)
    return table.sort_values(["namespace", "pod"]).reset_index(drop=True)


def since_started(lab: Any, namespace: str, pod: str, *, cap: str = "5m") -> str:
    """A PromQL range (``"42s"``) covering the pod's life so far (``kubectl get pod POD -o
    jsonpath='{.status.startTime}'``), at most ``cap``: series of an earlier pod of the same name stay out."""
    obj = get(lab, "Pod", pod, namespace=namespace, api_version="v1")
    started = (obj or {}).get("status", {}).get("startTime")
    if not started:
        raise LabkitError(_("pod {namespace}/{pod} has not started").format(namespace=namespace, pod=pod),
                          fix=f"kubectl get pod -n {namespace} {pod}")
    cap_s = int(cap[:-1]) * {"s": 1, "m": 60, "h": 3600}[cap[-1]]
    return f"{min(int(time.time() - pd.Timestamp(started).timestamp()) + 1, cap_s)}s"


def gpu_time_by_namespace(table: pd.DataFrame) -> pd.DataFrame:
    """Roll the per-pod table up per namespace (a team's GPU bill)."""
    out = table.groupby("namespace")[["allocated_gpu_s", "busy_gpu_s"]].sum().reset_index()
    out["efficiency"] = (out["busy_gpu_s"] / out["allocated_gpu_s"]).round(2)
    return out


# --- faults: XID, ECC, row remapping; health, per-job statistics, and what an operator does ------------------

# The alerting rules, written as dcgm-exporter users write them: a rule file the lab's Prometheus loads (beside lesson
# 06's recording rules); the lesson also evaluates each expression with PromQL to show what would fire, per GPU.
FAULT_RULES_FILE = "prometheus/rules/gpu-faults.yaml"


def fault_rules() -> dict[str, tuple[str, str, str]]:
    """alert name -> (expression, severity, summary), read from the rule file."""
    groups = yaml.safe_load(data_file(FAULT_RULES_FILE).read_text())["groups"]
    return {r["alert"]: (r["expr"], r["labels"]["severity"], r["annotations"]["summary"])
            for g in groups for r in g["rules"]}


def fault_rules_yaml() -> str:
    """The rule file itself (``promtool check rules FILE`` accepts it)."""
    return data_file(FAULT_RULES_FILE).read_text()


def firing_alerts(*, node: str | None = None) -> pd.DataFrame:
    """Each rule's expression evaluated now by the lab's Prometheus: one row per (alert, GPU) that would fire.

    Same as ``curl 'http://127.0.0.1:PORT/api/v1/query?query=DCGM_FI_DEV_XID_ERRORS > 0'`` per rule."""
    rows = []
    for name, (expr, _severity, _text) in fault_rules().items():
        frame = promql.query(f"max by (Hostname, gpu) ({expr})")
        for row in frame.itertuples():
            if node is None or row.Hostname == node:
                rows.append({"alert": name, "node": row.Hostname, "gpu": int(row.gpu), "value": row.value})
    return pd.DataFrame(rows, columns=["alert", "node", "gpu", "value"])


def wait_for_alerts(alerts: set[str], *, node: str, timeout: float = 60.0) -> pd.DataFrame:
    """Block until every alert in ``alerts`` fires for ``node`` (one scrape, then the rule expression)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = firing_alerts(node=node)
        if alerts <= set(frame["alert"]):
            return frame
        if time.monotonic() > deadline:
            raise WaitTimeout(_("alerts {alerts} not all firing for {node} after {timeout:.0f}s; firing: {firing}")
                              .format(alerts=sorted(alerts), node=node, timeout=timeout,
                                      firing=frame.to_dict("records")),
                              fix=_("check the exporter: curl {url}/{node} | grep -e XID -e ECC -e REMAP").format(
                                  url=exporter_url(), node=node))
        time.sleep(0.5)


def nvml_errors(node: str, gpu: int) -> dict[str, Any]:
    """What NVML reports about one GPU's errors, read from a terminal's view of the lab (a mirror of the one state).

    nvmlDeviceGetHandleByIndex (``NVML_ERROR_GPU_IS_LOST`` after XID 79), nvmlDeviceGetTotalEccErrors,
    nvmlDeviceGetRemappedRows; the XID itself reaches NVML clients as an event (nvmlEventSetWait,
    ``nvmlEventTypeXidCriticalError``) and the kernel log (``NVRM: Xid``): shown here as the last one."""
    from ..sim.gpu.shared import MirrorMachine

    machine = MirrorMachine(exporter_url().removesuffix("/metrics"), node)
    api = FakeNvml(machine)
    api.nvmlInit()
    try:
        row: dict[str, Any] = {"node": node, "gpu": gpu,
                               "last_xid (event)": machine.devices[gpu].faults.last_xid}
        try:
            h = api.nvmlDeviceGetHandleByIndex(gpu)
        except N.NVMLError as exc:
            return {**row, "handle": str(exc)}
        row["handle"] = "ok"
        for kind, err in (("sbe", N.NVML_MEMORY_ERROR_TYPE_CORRECTED), ("dbe", N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
            for scope, counter in (("volatile", N.NVML_VOLATILE_ECC), ("aggregate", N.NVML_AGGREGATE_ECC)):
                row[f"ecc_{kind}_{scope}"] = _read(api.nvmlDeviceGetTotalEccErrors, h, err, counter)
        rows = _read(api.nvmlDeviceGetRemappedRows, h)
        keys = ("remapped_correctable", "remapped_uncorrectable", "remap_pending", "remap_failure")
        row.update(dict(zip(keys, rows, strict=True)) if rows != NA else dict.fromkeys(keys, NA))
        return row
    finally:
        api.nvmlShutdown()


def health_checks(faults: dict[str, Any]) -> pd.DataFrame:
    """``dcgmi health -c`` for one GPU from its fault record (``/nvml/<node>`` devices[i].faults): per system
    PASS, WARN or FAIL with what to do. A model of DCGM's background health watches, not DCGM."""
    return pd.DataFrame([asdict(check) for check in dcgm.health_checks(faults)],
                        columns=["system", "result", "detail"])


def gpu_health(node: str, gpu: int) -> pd.DataFrame:
    """:func:`health_checks` on the lab's live GPU (``curl http://127.0.0.1:PORT/nvml/NODE``)."""
    from ..sim.gpu.shared import fetch_state

    return health_checks(fetch_state(exporter_url().removesuffix("/metrics"), node)["devices"][gpu]["faults"])


def diagnostics(faults: dict[str, Any], processes: int, *, level: int = 1) -> pd.DataFrame:
    """``dcgmi diag -r LEVEL`` for one GPU from its fault record and how many processes use it: per test PASS, FAIL
    or SKIP with the reason. A model of DCGM's active diagnostic (which takes the GPU for itself), not DCGM: a lost
    GPU fails the deployment checks and skips the rest; a GPU in use fails "Compute Processes" and is not stressed."""
    return pd.DataFrame([asdict(result) for result in dcgm.diagnostics(faults, processes, level=level)],
                        columns=["level", "category", "test", "result", "detail"])


def gpu_diag(node: str, gpu: int, *, level: int = 1) -> pd.DataFrame:
    """:func:`diagnostics` on the lab's live GPU (``dcgmi diag -r LEVEL -i GPU`` on that node)."""
    from ..sim.gpu.shared import fetch_state

    device = fetch_state(exporter_url().removesuffix("/metrics"), node)["devices"][gpu]
    return diagnostics(device["faults"], len(device.get("processes") or []), level=level)


def process_stats(samples: pd.DataFrame) -> dict[str, float]:
    """``dcgmi stats -j JOB -v`` from samples of one process's GPU (columns ``time`` (datetime), ``power_w``,
    ``fb_used_mib``, ``gpu_util``): energy (trapezoid of power over time), max memory, SM utilization."""
    frame = samples.sort_values("time")
    seconds = frame["time"].map(lambda t: t.timestamp()).to_numpy(dtype=float)
    power = frame["power_w"].to_numpy(dtype=float)
    energy = float(((power[1:] + power[:-1]) / 2 * (seconds[1:] - seconds[:-1])).sum()) if len(frame) > 1 else 0.0
    duration = float(seconds[-1] - seconds[0]) if len(frame) else 0.0
    return {"duration_s": duration, "energy_j": round(energy),
            "avg_power_w": round(energy / duration, 1) if duration else 0.0,
            "max_memory_mib": float(frame["fb_used_mib"].max()), "sm_util_avg_pct": round(frame["gpu_util"].mean(), 1),
            "sm_util_max_pct": float(frame["gpu_util"].max()), "sm_util_min_pct": float(frame["gpu_util"].min())}


def job_stats(lab: Any, namespace: str, pods: Sequence[str]) -> pd.DataFrame:
    """:func:`process_stats` per pod since it started (its ``status.startTime``), from the lab's Prometheus
    (``query_range`` of DCGM_FI_DEV_POWER_USAGE, DCGM_FI_DEV_FB_USED, DCGM_FI_DEV_GPU_UTIL with the pod's labels):
    what ``dcgmi stats -j JOB -v`` reports per process."""
    rows = []
    for pod in pods:
        sel = f'{{namespace="{namespace}",pod="{pod}"}}'
        # One range query (one grid of timestamps) for the three metrics, told apart by a "field" label.
        expr = " or ".join(f'label_replace(max({metric}{sel}), "field", "{column}", "", "")'
                           for column, metric in (("power_w", "DCGM_FI_DEV_POWER_USAGE"),
                                                  ("fb_used_mib", "DCGM_FI_DEV_FB_USED"),
                                                  ("gpu_util", "DCGM_FI_DEV_GPU_UTIL")))
        pod_obj = get(lab, "Pod", pod, namespace=namespace, api_version="v1")
        if pod_obj is None or not (pod_obj.get("status") or {}).get("startTime"):
            raise LabkitError(_("pod {namespace}/{pod} has not started").format(namespace=namespace, pod=pod),
                              fix=f"kubectl get pod -n {namespace} {pod}")
        started = pd.Timestamp(pod_obj["status"]["startTime"]).timestamp()
        frame = promql.query_range(expr, minutes=max(time.time() - started, 1.0) / 60)
        samples = (frame.pivot(index="time", columns="field", values="value").dropna().reset_index()
                   if not frame.empty else pd.DataFrame(columns=["time", "power_w", "fb_used_mib", "gpu_util"]))
        rows.append({"pod": pod, "samples": len(samples), **process_stats(samples)})
    return pd.DataFrame(rows)


def lost_gpu_nodes() -> list[str]:
    """GPU nodes with a GPU that fell off the bus, from the exporter's state (``curl .../nvml/NODE``)."""
    from ..sim.gpu.shared import fetch_state

    base = exporter_url().removesuffix("/metrics")
    nodes = json.loads(urllib.request.urlopen(f"{base}/nvml", timeout=10).read())  # noqa: S310 -- loopback
    return [n for n in nodes if any(d["faults"]["lost"] for d in fetch_state(base, n)["devices"])]


def _check_xid_node(attempt: Attempt) -> list[str]:
    nodes = lost_gpu_nodes()
    if not nodes:
        return [_("no GPU reports XID 79 right now: run the cell that injects it")]
    problems = []
    for node in nodes:
        obj = get(attempt.lab, "Node", node, api_version="v1") or {}
        if not obj.get("spec", {}).get("unschedulable"):
            problems.append(_("{node} (its GPU fell off the bus) is still schedulable: kubectl cordon {node}")
                            .format(node=node))
        pods = attempt.lab.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        left = [f"{p.metadata.namespace}/{p.metadata.name}" for p in pods
                if not any(o.kind == "DaemonSet" for o in p.metadata.owner_references or [])]
        if left:
            problems.append(_("pods still on {node}: {left}; kubectl drain {node} --ignore-daemonsets")
                            .format(node=node, left=left))
    return problems


def _solve_xid_node(attempt: Attempt) -> list[str]:
    evicted = []
    for node in lost_gpu_nodes():
        cordon(attempt.lab, node)
        evicted += drain(attempt.lab, node)
    return evicted


XID_NODE = Exercise(
    id="12-xid-node",
    task="A GPU reports XID 79 (fallen off the bus). Find its node and take it out of service: cordon it and "
         "drain its pods.",
    hint="firing_alerts() or DCGM_FI_DEV_XID_ERRORS == 79 names the Hostname; then kubectl cordon and kubectl drain",
    solution="""node = lk.promql.query('DCGM_FI_DEV_XID_ERRORS == 79')["Hostname"].iloc[0]
!kubectl cordon {node}
!kubectl drain {node} --ignore-daemonsets --delete-emptydir-data""",
    check=_check_xid_node,
    solve=_solve_xid_node,
)


# --- exercises and the driver-vs-firmware quiz --------------------------------------------------------

ADDONS = ("gpu-exporter", "prometheus")
MIG_SLICE = "nvidia.com/mig-1g.10gb"


def _top_memory_pod(namespace: str) -> str | None:
    frame = promql.query(f'max by (pod) (DCGM_FI_DEV_FB_USED{{namespace="{namespace}"}})')
    return None if frame.empty else str(frame.sort_values("value").iloc[-1]["pod"])


def _check_top_memory_pod(attempt: Attempt) -> list[str]:
    top = _top_memory_pod(attempt.namespace)
    if top is None:
        return [_("Prometheus has no GPU memory series for namespace {namespace} yet; wait one scrape")
                .format(namespace=attempt.namespace)]
    if attempt.answer is None:
        return [_("no answer yet: set `answer` to a pod name")]
    if attempt.answer != top:
        return [_("{answer!r} is not the pod using the most GPU memory in {namespace}")
                .format(answer=attempt.answer, namespace=attempt.namespace)]
    return []


TOP_MEMORY_POD = Exercise(
    id="12-top-memory-pod",
    task="Which pod in this lesson's namespace uses the most GPU memory right now? Answer with its name, "
         "found with PromQL.",
    hint='topk(1, DCGM_FI_DEV_FB_USED{namespace="lesson-12"}) and read its pod label',
    solution="""top = lk.promql.query('topk(1, DCGM_FI_DEV_FB_USED{namespace="lesson-12"})')
answer = top["pod"].iloc[0]""",
    check=_check_top_memory_pod,
    solve=lambda a: _top_memory_pod(a.namespace),
)

MIG_JOB = f"""
apiVersion: v1
kind: Pod
metadata: {{name: mig-job}}
spec:
  containers:
  - name: cuda
    image: nvidia/cuda:12.4.1-base-ubuntu22.04
    resources: {{limits: {{{MIG_SLICE}: "1"}}}}
"""


def _check_mig_pod(attempt: Attempt, name: str = "mig-job") -> list[str]:
    pod = get(attempt.lab, "Pod", name, namespace=attempt.namespace, api_version="v1")
    if pod is None:
        return [_("no pod {name} in {namespace} yet").format(name=name, namespace=attempt.namespace)]
    limits = (pod["spec"]["containers"][0].get("resources") or {}).get("limits") or {}
    if limits.get(MIG_SLICE) != "1":
        return [_("{name} asks for {limits}; it should ask for {mig_slice}: 1")
                .format(name=name, limits=limits, mig_slice=MIG_SLICE)]
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Running":
        return [_("{name} is {phase}; `kubectl describe pod {name}` says why").format(name=name, phase=phase)]
    return []


MIG_POD = Exercise(
    id="12-mig-pod",
    task=f"Run a pod `mig-job` that holds exactly one {MIG_SLICE} slice of a MIG-partitioned A100.",
    hint=f"resources.limits['{MIG_SLICE}']: \"1\"; the scheduler finds the node that advertises it",
    solution=f"kubectl -n lesson-12 apply -f - <<'EOF'{MIG_JOB}EOF",
    check=_check_mig_pod,
    solve=lambda a: apply(a.lab, MIG_JOB, namespace=a.namespace),
)


CUDA_APP = """
apiVersion: v1
kind: Pod
metadata: {name: cuda-app}
spec:
  restartPolicy: OnFailure
  containers:
  - name: cuda
    image: nvidia/cuda:12.4.1-base-ubuntu22.04
    command: ["nvidia-smi"]
    resources: {limits: {nvidia.com/gpu: 1}}
"""


def _refusal(pod: dict[str, Any]) -> str | None:
    """The NVIDIA runtime's unsatisfied condition from the pod's container status (now or last), or None."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            message = (state.get("terminated") or {}).get("message") or ""
            if "unsatisfied condition: " in message:
                return message.split("unsatisfied condition: ", 1)[1].split(",", 1)[0]
    return None


def _check_cuda_app(attempt: Attempt, name: str = "cuda-app") -> list[str]:
    pod = get(attempt.lab, "Pod", name, namespace=attempt.namespace, api_version="v1")
    if pod is None:
        return [_("no pod {name} in {namespace} yet").format(name=name, namespace=attempt.namespace)]
    container = pod["spec"]["containers"][0]
    limits = (container.get("resources") or {}).get("limits") or {}
    if str(limits.get(GPU_RESOURCE, "0")) in ("0", ""):
        return [_("{name} asks for no GPU: give it {resource}: 1 under resources.limits")
                .format(name=name, resource=GPU_RESOURCE)]
    if "cuda" not in container.get("image", ""):
        return [_("{name} runs {image}, not a CUDA image (nvidia/cuda:...)").format(name=name,
                                                                                  image=container.get("image"))]
    if condition := _refusal(pod):
        return [_("the NVIDIA runtime refuses {image} ({condition}): pick the CUDA version the nodes' driver supports "
                  "(kubectl get nodes -L nvidia.com/cuda.runtime-version.full), then delete and re-create the pod")
                .format(image=container.get("image"), condition=condition)]
    phase = (pod.get("status") or {}).get("phase")
    if phase not in ("Running", "Succeeded"):
        return [_("{name} is {phase}; `kubectl describe pod {name}` says why").format(name=name, phase=phase)]
    return []


CUDA_IMAGE = Exercise(
    id="12-cuda-image",
    task="Run a pod `cuda-app` in lesson-12 that holds one nvidia.com/gpu and runs nvidia-smi in an nvidia/cuda "
         "image the NVIDIA runtime accepts on this lab's GPU nodes.",
    hint="kubectl get nodes -L nvidia.com/cuda.runtime-version.full says which CUDA the driver supports; an image "
         "built for that CUDA or an older one starts",
    solution=f"kubectl -n lesson-12 apply -f - <<'EOF'{CUDA_APP}EOF",
    check=_check_cuda_app,
    solve=lambda a: apply(a.lab, CUDA_APP, namespace=a.namespace),
)


QUIZ = {
    "q1": ("Where is GPU firmware (VBIOS) stored?",
           {"a": "on the host's disk, next to the driver", "b": "in non-volatile memory on the GPU board",
            "c": "inside the container image"}, "b"),
    "q2": ("Which one do you update with a package manager and a reboot (or module reload)?",
           {"a": "the driver", "b": "the VBIOS", "c": "the InfoROM"}, "a"),
    "q3": ("Who sets up the memory controller and clocks when the GPU powers on, before any driver loads?",
           {"a": "the CUDA runtime", "b": "the kubelet", "c": "the firmware"}, "c"),
    "q4": ("The NVIDIA container runtime mounts which of these into a GPU container?",
           {"a": "the firmware", "b": "the host driver's user-space libraries (libcuda, libnvidia-ml)",
            "c": "a copy of the kernel module"}, "b"),
    "q5": ("`nvidia-smi -q` shows 'VBIOS Version' and 'Driver Version'. Which changes when you upgrade the "
           "GPU Operator's driver container?", {"a": "VBIOS Version", "b": "Driver Version", "c": "both"}, "b"),
}


def quiz_questions() -> pd.DataFrame:
    """The driver-vs-firmware self-check, one row per question."""
    rows = [{"question": key, "text": text, "choices": "; ".join(f"{k}) {v}" for k, v in choices.items())}
            for key, (text, choices, _) in QUIZ.items()]
    return pd.DataFrame(rows)


def grade_quiz(answers: dict[str, str | None]) -> pd.DataFrame:
    """Mark each answer right, wrong or unanswered (the right answers stay hidden until ``lk.solution``)."""
    rows = []
    for key, (_question, _choices, right) in QUIZ.items():
        given = answers.get(key)
        rows.append({"question": key, "answer": given or "-",
                     "result": "unanswered" if not given else ("right" if given == right else "wrong")})
    return pd.DataFrame(rows)


def _check_quiz(attempt: Attempt) -> list[str]:
    graded = grade_quiz(attempt.answer or {})
    verdicts = {"wrong": _("wrong"), "unanswered": _("unanswered")}
    return [_("{question}: {result}").format(question=row.question, result=verdicts.get(row.result, row.result))
            for row in graded.itertuples() if row.result != "right"]


QUIZ_DRIVER_FIRMWARE = Exercise(
    id="12-driver-vs-firmware",
    task="Answer the five driver-vs-firmware questions (a dict such as {'q1': 'b', ...}).",
    hint="firmware lives on the board and runs before any driver; the driver is host software you upgrade",
    solution="\n".join(f"{k}: {right}) {choices[right]}" for k, (_, choices, right) in QUIZ.items()),
    check=_check_quiz,
    solve=lambda a: {k: right for k, (_, _, right) in QUIZ.items()},
)

EXERCISES = [TOP_MEMORY_POD, MIG_POD, CUDA_IMAGE, QUIZ_DRIVER_FIRMWARE, XID_NODE]


def exporter_lines(metric: str, *, namespace: str) -> list[str]:
    """The exporter's raw text lines of one metric for one namespace (what Prometheus scrapes)."""
    url = exporter_url()
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 -- loopback
        text = resp.read().decode()
    return [line for line in text.splitlines() if line.startswith(metric + "{") and f'namespace="{namespace}"' in line]


# --- the live GPU dashboard's data ------------------------------------------------------------------

PANELS = (("utilization_pct", "utilization %"), ("memory_used_mib", "memory used MiB"), ("power_w", "power W"),
          ("temperature_c", "temperature °C"), ("sm_clock_mhz", "SM clock MHz"))
_PROM = {"utilization_pct": "DCGM_FI_DEV_GPU_UTIL", "memory_used_mib": "DCGM_FI_DEV_FB_USED",
         "power_w": "DCGM_FI_DEV_POWER_USAGE", "temperature_c": "DCGM_FI_DEV_GPU_TEMP",
         "sm_clock_mhz": "DCGM_FI_DEV_SM_CLOCK"}


def nvml_snapshot(api: Any) -> pd.DataFrame:
    """One row per GPU of this machine, through NVML (real or simulated); columns ``gpu`` + the panels.

    """
    machine = getattr(api, "machine", None)
    inv = nvml_inventory(api)
    inv["gpu"] = [f"{machine.node if machine else 'local'}/{i}" for i in inv["index"]]
    return inv[["gpu", *(c for c, _ in PANELS)]]


def prometheus_snapshot() -> pd.DataFrame:
    """One row per GPU of the lab's cluster, from the latest Prometheus samples (no MIG instances).

    """
    merged: pd.DataFrame | None = None
    for column, metric in _PROM.items():
        frame = promql.query(f'max by (Hostname, gpu) ({metric}{{GPU_I_ID=""}})')
        if frame.empty:
            continue
        frame = frame.assign(gpu=frame["Hostname"] + "/" + frame["gpu"])[["gpu", "value"]]
        frame = frame.rename(columns={"value": column})
        merged = frame if merged is None else merged.merge(frame, on="gpu", how="outer")
    return merged if merged is not None else pd.DataFrame(columns=["gpu", *(c for c, _ in PANELS)])


def gpu_dashboard(*, interval_s: float = SCRAPE_INTERVAL_S) -> Dashboard:
    """A live dashboard of every GPU in the lab's cluster, from Prometheus (stop it with its button or ``.stop()``)."""
    return Dashboard(prometheus_snapshot, key="gpu", panels=PANELS, interval_s=interval_s)


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "12_gpu_monitoring",
    "NVML, DCGM, dcgm-exporter, Prometheus, device plugin, pod-resources, sharing, clocks, power limits "
    "and overclocking; a GPU fault (ECC, row remap, XID 79) seen in NVML, the exporter and an alert, then "
    "cordon, drain, reset, `dcgmi health`- and `dcgmi diag`-style verdicts (modelled from the one GPU "
    "state) and the RMA",
    LessonRights("cordon/drain nodes (patch nodes, evict pods of every namespace); GPU add-ons",
                 refused="it cordons and drains GPU nodes (patch nodes, evictions in every namespace)"),
    addons=tuple(ADDONS),
    exercises=tuple(EXERCISES),
)
