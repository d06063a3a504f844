"""A live GPU dashboard: utilization, memory, power, temperature and clocks per GPU, refreshed at an interval.

Data functions (:func:`nvml_snapshot`, :func:`prometheus_snapshot`) return one row per GPU; the
dashboard only displays what they return. Figures are plotly, rendered through plotly's mimetype.

Introduced in notebook 12_gpu_monitoring.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go
from IPython.display import display
from plotly.subplots import make_subplots

from . import promql
from .gpu_lessons import nvml_inventory

PANELS = (("utilization_pct", "utilization %"), ("memory_used_mib", "memory used MiB"), ("power_w", "power W"),
          ("temperature_c", "temperature °C"), ("sm_clock_mhz", "SM clock MHz"))
_PROM = {"utilization_pct": "DCGM_FI_DEV_GPU_UTIL", "memory_used_mib": "DCGM_FI_DEV_FB_USED",
         "power_w": "DCGM_FI_DEV_POWER_USAGE", "temperature_c": "DCGM_FI_DEV_GPU_TEMP",
         "sm_clock_mhz": "DCGM_FI_DEV_SM_CLOCK"}


def nvml_snapshot(api: Any) -> pd.DataFrame:
    """One row per GPU of this machine, through NVML (real or simulated); columns ``gpu`` + the panels.

    Introduced in notebook 12_gpu_monitoring.
    """
    machine = getattr(api, "machine", None)
    inv = nvml_inventory(api)
    inv["gpu"] = [f"{machine.node if machine else 'local'}/{i}" for i in inv["index"]]
    return inv[["gpu", *(c for c, _ in PANELS)]]


def prometheus_snapshot() -> pd.DataFrame:
    """One row per GPU of the lab's cluster, from the latest Prometheus samples (no MIG instances).

    Introduced in notebook 12_gpu_monitoring.
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


class GpuDashboard:
    """Widgets that redraw from ``sample()`` every ``interval_s`` until :meth:`stop` (or the Stop button).

    Introduced in notebook 12_gpu_monitoring.
    """

    def __init__(self, sample: Callable[[], pd.DataFrame], *, interval_s: float = 2.0, history: int = 60) -> None:
        self.sample, self.interval_s, self.history = sample, interval_s, history
        self.frames: list[pd.DataFrame] = []
        self.updates = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._plot = widgets.Output()
        self._status = widgets.HTML()
        self._button = widgets.Button(description="Stop", icon="stop")
        self._button.on_click(lambda _b: self.stop())
        self.widget = widgets.VBox([widgets.HBox([self._button, self._status]), self._plot])
        self._thread = threading.Thread(target=self._loop, name="gpu-dashboard", daemon=True)

    def _ipython_display_(self) -> None:
        display(self.widget)

    def start(self) -> GpuDashboard:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                snap = self.sample().assign(t=time.time())
                self.frames = (self.frames + [snap])[-self.history:]
                self.render()
                self.updates += 1
            except Exception as exc:  # noqa: BLE001 -- show the failure in the widget, keep the kernel alive
                self.error = f"{type(exc).__name__}: {exc}"
                self._status.value = f"<b>stopped</b>: {self.error}"
                return
            self._stop.wait(self.interval_s)

    def figure(self) -> go.Figure:
        """The current plot: one panel per metric, one line per GPU."""
        data = pd.concat(self.frames) if self.frames else pd.DataFrame(columns=["gpu", "t"])
        fig = make_subplots(rows=1, cols=len(PANELS), subplot_titles=[title for _, title in PANELS])
        for col, (metric, _) in enumerate(PANELS, start=1):
            for gpu, part in data.groupby("gpu"):
                fig.add_scatter(x=part["t"] - data["t"].max(), y=pd.to_numeric(part[metric], errors="coerce"),
                                name=str(gpu), legendgroup=str(gpu), showlegend=col == 1, row=1, col=col)
        fig.update_layout(height=300, margin={"t": 40, "b": 30}, xaxis_title="seconds ago")
        return fig

    def render(self) -> None:
        fig = self.figure()
        # Set the Output widget's state instead of printing into it: from a background thread, printing would
        # land in whichever cell runs at that moment.
        bundle = {"application/vnd.plotly.v1+json": fig.to_plotly_json(), "text/plain": "GPU dashboard"}
        self._plot.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
        self._status.value = f"update {self.updates + 1}, every {self.interval_s:g}s"

    def stop(self) -> None:
        """Stop refreshing (the last picture stays)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.interval_s + 5)
        self._status.value = f"stopped after {self.updates} updates"
        self._button.disabled = True
