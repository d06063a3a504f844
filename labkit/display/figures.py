"""Plotly figures drawn from labkit's pandas tables: returned, never shown (a notebook cell ends with the figure).

Layers run one way: cluster data -> tables (pandas) -> these figures -> widgets. :func:`show_offline` says how a
notebook shows them: interactive in JupyterLab, with a static PNG beside it for GitHub and nbconvert.
"""

from __future__ import annotations

import atexit
import base64
import sys
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io.base_renderers import MimetypeRenderer

from ..kube.events import ready_by_revision

STATIC_RENDERER = "labkit_png"
STATIC_WIDTH_PX = 900  # the width of JupyterLab's output area on a laptop screen; heights come from each figure
PLOTLY_DEFAULT_HEIGHT_PX = 450  # what plotly.js draws when a figure gives no height


class _StaticPng(MimetypeRenderer):
    """A PNG of each figure, drawn by kaleido in a local Chromium that stays running between figures.

    Started once it costs a browser start (seconds); each figure after it takes about a second. If the browser
    fails, figures are shown interactive only, with one line saying why: a learner's cell never fails for want of a
    picture."""

    def __init__(self) -> None:
        self.failed: str | None = None
        self._started = False

    def to_mimebundle(self, fig_dict: Any) -> dict[str, str]:
        if self.failed:
            return {}
        try:
            import kaleido

            if not self._started:
                kaleido.start_sync_server(silence_warnings=True)
                atexit.register(kaleido.stop_sync_server, silence_warnings=True)
                self._started = True
            # kaleido itself rather than plotly's to_image, which warns on every call that a running server
            # ignores its options (a warning that would land in every figure's cell)
            png = kaleido.calc_fig_sync(fig_dict, opts={
                "format": "png", "width": STATIC_WIDTH_PX,
                "height": (fig_dict.get("layout") or {}).get("height") or PLOTLY_DEFAULT_HEIGHT_PX})
        except Exception as exc:  # noqa: BLE001 -- any kaleido or browser failure: fall back, say so once
            self.failed = f"{type(exc).__name__}: {exc}"
            print(f"labkit: figures are interactive only from here on; the static PNG failed ({self.failed})",
                  file=sys.stderr)
            return {}
        return {"image/png": base64.b64encode(png).decode()}


def static_images_available() -> str | None:
    """The Chromium that draws static figures, or None (then figures are interactive only)."""
    # kaleido's own finder, so the answer is the browser kaleido will start
    from choreographer.browsers import Chromium

    return Chromium.find_browser(skip_local=False)


def show_offline() -> None:
    """Show figures as plotly's JSON mimetype (JupyterLab draws it offline; no plotly.js in the notebook), plus a
    static PNG where a Chromium is installed, so stored notebooks show their figures on GitHub and in nbconvert."""
    if STATIC_RENDERER not in pio.renderers:
        pio.renderers[STATIC_RENDERER] = _StaticPng()
    if static_images_available():
        pio.renderers.default = f"plotly_mimetype+{STATIC_RENDERER}"
    else:
        pio.renderers.default = "plotly_mimetype"
        print("labkit: no Chromium found, so figures are interactive only (static PNGs need one: "
              "apt-get install chromium, or any Chrome)", file=sys.stderr)


def rollout_timeline(table: pd.DataFrame, *, title: str = "Ready pods per revision") -> go.Figure:
    """Step chart of ready pods per revision over time: old ReplicaSet going down, new one coming up."""
    per = ready_by_revision(table)
    fig = go.Figure()
    for rev, part in per.groupby("revision", sort=True):
        fig.add_trace(go.Scatter(x=part.t, y=part.ready, mode="lines", line_shape="hv", name=f"revision {rev}"))
    if not per.empty:
        total = per.groupby("t")["ready"].sum()
        fig.add_trace(go.Scatter(x=total.index, y=total.values, mode="lines", line_shape="hv",
                                 line={"dash": "dot", "color": "gray"}, name="all ready"))
    fig.update_layout(title=title, xaxis_title="seconds since recording started", yaxis_title="ready pods",
                      template="plotly_white", height=360)
    return fig


def probe_timeline(table: pd.DataFrame, *, title: str = "Probe outcomes, readiness and restarts") -> go.Figure:
    """Per pod: Ready as a band over time, restarts and kubelet events (Unhealthy, Killing, BackOff) as markers."""
    fig = go.Figure()
    pods = table[table.kind == "Pod"]
    for name, part in pods.groupby("name", sort=True):
        fig.add_trace(go.Scatter(x=part.t, y=[name] * len(part), mode="markers",
                                 marker={"symbol": "square", "size": 9,
                                         "color": ["seagreen" if r else "lightgray" for r in part.ready]},
                                 text=[f"ready={r} restarts={n} {s or ''}" for r, n, s in
                                       zip(part.ready, part.restarts, part.reason, strict=True)],
                                 name=f"{name} (green = Ready)", showlegend=False))
    events = table[(table.kind == "Event") & table.reason.isin(
        ["Unhealthy", "Killing", "BackOff", "Started", "Failed"])]
    for reason, part in events.groupby("reason", sort=True):
        fig.add_trace(go.Scatter(x=part.t, y=[o.split("/", 1)[-1] for o in part.object], mode="markers",
                                 marker={"symbol": "x" if reason in ("Killing", "BackOff", "Failed") else "circle-open",
                                         "size": 12},
                                 text=part.message, name=reason))
    fig.update_layout(title=title, xaxis_title="seconds since recording started", template="plotly_white",
                      height=300 + 30 * pods.name.nunique())
    return fig
