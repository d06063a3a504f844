"""Plotly figures drawn from labkit's pandas tables: returned, never shown (a notebook cell ends with the figure).

Layers run one way: cluster data -> tables (pandas) -> these figures -> widgets.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .kube.events import ready_by_revision


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
