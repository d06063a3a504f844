"""Lesson 12's data: nvidia-smi-style inventory, the clock-frequency experiment, GPU time per pod, checks.

Data functions return pandas tables; ``*_figure`` functions turn them into plotly figures (never shown here).

Introduced in notebook 12_gpu_monitoring.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from . import promql
from .gpu import FakeMachine, FakeNvml, Workload, degrade_cooling, reason_names
from .gpu.real_pynvml import pynvml as N

NA = "n/a"


def use_plotly_mimetype() -> None:
    """Figures render as plotly's JSON mimetype: JupyterLab draws them offline, no plotly.js in the notebook.

    Introduced in notebook 12_gpu_monitoring.
    """
    pio.renderers.default = "plotly_mimetype"


def _read(fn: Any, *args: Any) -> Any:
    """One NVML reading; NotSupported (and any NVML error) becomes "n/a", as nvidia-smi prints [N/A]."""
    try:
        value = fn(*args)
    except N.NVMLError:
        return NA
    return value.decode() if isinstance(value, bytes) else value


def nvml_inventory(api: Any) -> pd.DataFrame:
    """What ``nvidia-smi --query-gpu=...`` lists, read through NVML (real pynvml or the fake).

    Introduced in notebook 12_gpu_monitoring.
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

    Introduced in notebook 12_gpu_monitoring.
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


def clock_sweep(*, profile: str = "H100-SXM", clocks_mhz: Sequence[int] = (900, 1200, 1500, 1755, 1980),
                memory_bound: Iterable[float] = (0.1, 0.7), seconds: float = 300, seed: int = 0) -> pd.DataFrame:
    """Lock the SM clock at each value (``nvidia-smi -lgc X,X``), run a full load, read the steady state.

    Introduced in notebook 12_gpu_monitoring.
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


def throttle_run(*, profile: str = "H100-SXM", cooling_factor: float = 1.8, seconds: int = 240,
                 seed: int = 0) -> pd.DataFrame:
    """A full compute-bound load on a GPU whose cooling got worse (a failed fan, a blocked air inlet).

    Introduced in notebook 12_gpu_monitoring.
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

def gpu_time_queries(window: str = "10m", scrape_interval_s: float = 2.0) -> dict[str, str]:
    """The PromQL behind :func:`gpu_time_by_pod`: allocated GPU-seconds and busy GPU-seconds per pod.

    Introduced in notebook 12_gpu_monitoring.
    """
    sel = 'DCGM_FI_DEV_GPU_UTIL{pod!=""}'
    return {
        "allocated_gpu_s": f"sum by (namespace, pod) (count_over_time({sel}[{window}])) * {scrape_interval_s:g}",
        "busy_gpu_s": f"sum by (namespace, pod) (sum_over_time({sel}[{window}])) / 100 * {scrape_interval_s:g}",
    }


def gpu_time_by_pod(*, window: str = "10m", namespace: str | None = None) -> pd.DataFrame:
    """GPU-seconds each pod held and kept busy over ``window`` (whole GPUs; MIG slices report engine activity).

    Introduced in notebook 12_gpu_monitoring.
    """
    frames = []
    for column, expr in gpu_time_queries(window).items():
        frame = promql.query(expr)
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


def gpu_time_by_namespace(table: pd.DataFrame) -> pd.DataFrame:
    """Roll the per-pod table up per namespace (a team's GPU bill)."""
    out = table.groupby("namespace")[["allocated_gpu_s", "busy_gpu_s"]].sum().reset_index()
    out["efficiency"] = (out["busy_gpu_s"] / out["allocated_gpu_s"]).round(2)
    return out


# --- exercises and the driver-vs-firmware quiz --------------------------------------------------------

@dataclass(frozen=True)
class CheckResult:
    """Pass or fail with a hint; prints as one line."""

    passed: bool
    message: str

    def __repr__(self) -> str:
        return f"{'PASS' if self.passed else 'NOT YET'}: {self.message}"


def check_top_memory_pod(answer: str | None, *, namespace: str) -> CheckResult:
    """Exercise 1: the pod in ``namespace`` using the most GPU memory, as Prometheus sees it now.

    Introduced in notebook 12_gpu_monitoring.
    """
    frame = promql.query(f'max by (pod) (DCGM_FI_DEV_FB_USED{{namespace="{namespace}"}})')
    if frame.empty:
        return CheckResult(False, f"Prometheus has no GPU memory series for namespace {namespace} yet; wait a scrape")
    top = frame.sort_values("value").iloc[-1]["pod"]
    if answer == top:
        return CheckResult(True, f"{answer} uses the most GPU memory in {namespace}")
    return CheckResult(False, "hint: topk(1, DCGM_FI_DEV_FB_USED{namespace=\"...\"}) and read its pod label")


def check_mig_pod(lab: Any, *, namespace: str, name: str = "mig-job") -> CheckResult:
    """Exercise 2: a Running pod ``name`` in ``namespace`` holding one ``nvidia.com/mig-1g.10gb`` slice.

    Introduced in notebook 12_gpu_monitoring.
    """
    from .client import api_errors
    from .errors import NotFound

    try:
        with api_errors(f"reading pod {name}", server=lab.server):
            pod = lab.core.read_namespaced_pod(name, namespace)
    except NotFound:
        return CheckResult(False, f"no pod {name} in {namespace} yet; hint: resources.limits['nvidia.com/mig-1g.10gb']")
    limits = pod.spec.containers[0].resources.limits or {}
    if limits.get("nvidia.com/mig-1g.10gb") != "1":
        return CheckResult(False, f"{name} asks for {limits}; it should ask for nvidia.com/mig-1g.10gb: 1")
    if pod.status.phase != "Running":
        return CheckResult(False, f"{name} is {pod.status.phase}; `kubectl describe pod {name}` says why")
    return CheckResult(True, f"{name} runs on a MIG slice of {pod.spec.node_name}")


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
    """The driver-vs-firmware self-check, one row per question.

    Introduced in notebook 12_gpu_monitoring.
    """
    rows = [{"question": key, "text": text, "choices": "; ".join(f"{k}) {v}" for k, v in choices.items())}
            for key, (text, choices, _) in QUIZ.items()]
    return pd.DataFrame(rows)


def grade_quiz(answers: dict[str, str | None]) -> pd.DataFrame:
    """Mark each answer right, wrong or unanswered (the right answers stay hidden until :func:`quiz_solution`).

    Introduced in notebook 12_gpu_monitoring.
    """
    rows = []
    for key, (_, _, right) in QUIZ.items():
        given = answers.get(key)
        rows.append({"question": key, "answer": given or "-",
                     "result": "unanswered" if not given else ("right" if given == right else "wrong")})
    return pd.DataFrame(rows)


def quiz_solution() -> pd.DataFrame:
    """The answers, with the choice's text."""
    return pd.DataFrame([{"question": k, "answer": right, "meaning": choices[right]}
                         for k, (_, choices, right) in QUIZ.items()])


def pod_resources(*, namespace: str | None = None) -> pd.DataFrame:
    """Which pod holds which GPU or MIG instance, as the kubelet's pod-resources API reports it.

    Read from the lab's GPU exporter (``curl http://127.0.0.1:PORT/pod-resources``).

    Introduced in notebook 12_gpu_monitoring.
    """
    import json
    import urllib.request

    from .cluster import addons
    from .errors import LabkitError

    url = addons.url(addons.EXPORTER)
    if url is None:
        raise LabkitError("the lab's GPU exporter is not running", fix="labkit up   # starts missing addons")
    with urllib.request.urlopen(url.removesuffix("/metrics") + "/pod-resources", timeout=10) as resp:  # noqa: S310
        rows = json.loads(resp.read())
    cols = ["node", "namespace", "pod", "container", "resource", "gpu", "mig_instance", "device_id"]
    frame = pd.DataFrame(rows, columns=cols)
    return frame[frame["namespace"] == namespace].reset_index(drop=True) if namespace else frame


def exporter_lines(metric: str, *, namespace: str) -> list[str]:
    """The exporter's raw text lines of one metric for one namespace (what Prometheus scrapes).

    Introduced in notebook 12_gpu_monitoring.
    """
    import urllib.request

    from .cluster import addons

    url = addons.url(addons.EXPORTER)
    if url is None:
        raise RuntimeError("the lab's GPU exporter is not running; `labkit up` starts it")
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 -- loopback
        text = resp.read().decode()
    return [line for line in text.splitlines() if line.startswith(metric + "{") and f'namespace="{namespace}"' in line]
