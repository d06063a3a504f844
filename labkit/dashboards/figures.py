"""Figures: one per panel type (part of :mod:`labkit.dashboards`)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..i18n import _
from .data import has_data, panel_data
from .model import (
    GRID_UNIT_PX,
    MAX_INDICATORS,
    SUPPORTED,
    Dashboard,
    DashboardError,
    Panel,
    Threshold,
    color,
    load,
)
from .units import auto_decimals, format_value, mapped, threshold_color, unit_scale
from .variables import duration_seconds

_REDUCERS = {
    "lastNotNull": lambda s: s.dropna().iloc[-1] if s.notna().any() else float("nan"),
    "last": lambda s: s.iloc[-1], "firstNotNull": lambda s: s.dropna().iloc[0] if s.notna().any() else float("nan"),
    "first": lambda s: s.iloc[0], "mean": lambda s: s.mean(), "max": lambda s: s.max(), "min": lambda s: s.min(),
    "sum": lambda s: s.sum(), "count": lambda s: float(s.count()), "range": lambda s: s.max() - s.min(),
    "delta": lambda s: s.diff().clip(lower=0).sum(), "diff": lambda s: s.dropna().iloc[-1] - s.dropna().iloc[0],
}


def reduce(panel: Panel, frame: pd.DataFrame) -> pd.DataFrame:
    """One value per series, as stat/gauge/bar gauge panels reduce them (``options.reduceOptions.calcs``)."""
    calcs = (panel.options.get("reduceOptions") or {}).get("calcs") or ["lastNotNull"]
    reducer = _REDUCERS.get(calcs[0], _REDUCERS["lastNotNull"])
    rows = []
    for name, part in frame.groupby("series", sort=False):
        values = pd.to_numeric(part.sort_values("time")["value"], errors="coerce").replace(
            [float("inf"), float("-inf")], float("nan"))
        rows.append({"series": str(name), "value": float(reducer(values)) if len(values) else float("nan")})
    return pd.DataFrame(rows, columns=["series", "value"])


def _layout(fig: go.Figure, panel: Panel, **extra: Any) -> go.Figure:
    # White like Grafana's light theme, set directly: a named plotly template costs ~0.3 s per figure.
    fig.update_layout(title={"text": panel.title, "x": 0.01, "font": {"size": 14}}, plot_bgcolor="white",
                      paper_bgcolor="white", height=max(2, panel.grid.h) * GRID_UNIT_PX,
                      margin={"t": 36, "b": 24, "l": 48, "r": 12}, **extra)
    if any(isinstance(t, go.Scatter | go.Bar | go.Heatmap) for t in fig.data):  # axes only where something uses them
        fig.update_xaxes(gridcolor="#ebebeb", zerolinecolor="#ebebeb")
        fig.update_yaxes(gridcolor="#ebebeb", zerolinecolor="#ebebeb")
    fig.layout.meta = {"panel": panel.title, "type": panel.type}
    return fig


def _no_data(fig: go.Figure, panel: Panel, why: str = "No data") -> go.Figure:
    fig.add_annotation(text=why, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, panel)


def _range(panel: Panel, values: pd.Series) -> tuple[float, float]:
    finite = values[values.map(lambda v: math.isfinite(v))] if len(values) else values
    low = panel.min if panel.min is not None else min(0.0, float(finite.min()) if len(finite) else 0.0)
    if panel.max is not None:
        high = panel.max
    elif panel.unit == "percent":
        high = 100.0
    elif panel.unit == "percentunit":
        high = 1.0
    else:
        high = float(finite.max()) if len(finite) and finite.max() > low else low + 1
    return low, high


def _epoch_ms(times: pd.Series) -> pd.Series:
    """Timestamps as milliseconds since the epoch: a date axis reads them, and they travel as a compact typed array
    (ISO strings were three quarters of a busy panel's JSON)."""
    return pd.to_datetime(times, utc=True).dt.as_unit("ms").astype("int64")  # whatever unit pandas inferred


def _timeseries(panel: Panel, frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    values = pd.to_numeric(frame["value"], errors="coerce")
    finite = values[values.map(math.isfinite)]
    divisor, suffix = unit_scale(panel.unit, float(finite.abs().max()) if len(finite) else 0.0)
    custom = panel.custom
    stacked = (custom.get("stacking") or {}).get("mode") in ("normal", "percent")
    bars = custom.get("drawStyle") == "bars"
    fill = float(custom.get("fillOpacity") or 0) / 100
    for name, part in frame.groupby("series", sort=True):
        part = part.sort_values("time")
        y = pd.to_numeric(part["value"], errors="coerce") / divisor
        if not y.map(math.isfinite).any():
            continue  # e.g. a latency quantile of an idle queue: nothing to draw, and it would only crowd the legend
        if bars:
            fig.add_trace(go.Bar(x=_epoch_ms(part["time"]), y=y, name=str(name)))
            continue
        fig.add_trace(go.Scatter(
            x=_epoch_ms(part["time"]), y=y, mode="lines", name=str(name), line={"width": custom.get("lineWidth", 1)},
            stackgroup="stack" if stacked else None, fill=None if stacked or not fill else "tozeroy",
            opacity=1.0, hovertemplate=f"%{{y:.3~f}}{suffix}<extra>%{{fullData.name}}</extra>"))
    mode = (custom.get("thresholdsStyle") or {}).get("mode", "off")
    if mode != "off":
        for step in panel.thresholds:
            if step.value is not None:
                fig.add_hline(y=step.value / divisor, line={"dash": "dash", "color": color(step.color), "width": 1})
    yaxis: dict[str, Any] = {"ticksuffix": suffix, "rangemode": "tozero"}
    if panel.min is not None or panel.max is not None:
        low = panel.min / divisor if panel.min is not None else None
        high = panel.max / divisor if panel.max is not None else None
        if low is not None and high is not None:
            yaxis["range"] = [low, high]
    legend_opts = panel.options.get("legend") or {}
    return _layout(fig, panel, xaxis={"type": "date"}, yaxis=yaxis, barmode="stack" if bars and stacked else None,
                   showlegend=legend_opts.get("showLegend", True) is not False,
                   legend={"orientation": "h", "y": -0.15} if legend_opts.get("placement") != "right" else {})


def _grid_domains(count: int, *, wide: bool) -> list[dict[str, list[float]]]:
    cols = count if wide else max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / cols)
    domains = []
    for i in range(count):
        r, c = divmod(i, cols)
        domains.append({"x": [c / cols + 0.01, (c + 1) / cols - 0.01],
                        "y": [1 - (r + 1) / rows + 0.02, 1 - r / rows - 0.08]})
    return domains


def _indicators(panel: Panel, frame: pd.DataFrame, *, gauge: bool) -> go.Figure:
    fig = go.Figure()
    reduced = reduce(panel, frame)
    if reduced.empty:
        return _no_data(fig, panel)
    hidden = len(reduced) - MAX_INDICATORS
    reduced = reduced.head(MAX_INDICATORS)
    low, high = _range(panel, reduced["value"])
    finite = reduced["value"][reduced["value"].map(math.isfinite)]
    divisor, suffix = unit_scale(panel.unit, float(finite.abs().max()) if len(finite) else 0.0)
    decimals = panel.decimals if panel.decimals is not None else auto_decimals(
        float(finite.abs().max()) / divisor if len(finite) else 0.0)
    domains = _grid_domains(len(reduced), wide=panel.grid.w >= 2 * panel.grid.h)
    for (name, value), domain in zip(reduced.itertuples(index=False), domains, strict=True):
        shade = threshold_color(panel, value, low=low, high=high)
        text = mapped(panel, value)
        if text and not gauge:  # a value mapping shows its text in place of the number
            shade = text[1] or shade
            fig.add_annotation(text=f"<b>{html.escape(text[0])}</b>", x=sum(domain["x"]) / 2,
                               y=sum(domain["y"]) / 2, xref="paper", yref="paper", showarrow=False,
                               font={"size": 28, "color": shade})
        indicator: dict[str, Any] = {
            "value": value / divisor if math.isfinite(value) else None, "domain": domain,
            "title": {"text": name if len(reduced) > 1 else "", "font": {"size": 11}},
            "number": {"suffix": suffix, "valueformat": f".{decimals}f", "font": {"color": shade}}}
        if gauge:
            steps, edges = [], [low] + [s.value if panel.threshold_mode != "percentage" else
                                        low + (high - low) * s.value / 100
                                        for s in panel.thresholds[1:] if s.value is not None] + [high]
            for step, start, end in zip(panel.thresholds or (Threshold(None, "green"),), edges, edges[1:],
                                        strict=False):
                steps.append({"range": [start / divisor, end / divisor], "color": color(step.color)})
            indicator.update(mode="gauge+number", gauge={
                "axis": {"range": [low / divisor, high / divisor], "ticksuffix": suffix},
                "bar": {"color": shade, "thickness": 0.6},
                "steps": [{**s, "thickness": 0.25} for s in steps] if panel.options.get(
                    "showThresholdMarkers", True) else []})
        else:
            indicator.update(mode="number")
            if text:
                indicator["number"]["font"]["color"] = "rgba(0,0,0,0)"  # the annotation stands in its place
            if panel.options.get("graphMode", "area") == "area":
                _sparkline(fig, frame[frame["series"] == name], domain, shade, divisor)
        fig.add_trace(go.Indicator(**indicator))
    if hidden > 0:
        fig.add_annotation(text=f"+{hidden} more series (narrow the query)", x=1, y=0, xref="paper", yref="paper",
                           xanchor="right", yanchor="bottom", showarrow=False, font={"size": 10})
    return _layout(fig, panel)


def _sparkline(fig: go.Figure, part: pd.DataFrame, domain: dict[str, list[float]], shade: str,
               divisor: float) -> None:
    """The faint area behind a stat's number (graphMode "area"), on hidden axes of its own."""
    if len(part) < 2:
        return
    n = sum(1 for t in fig.data if isinstance(t, go.Scatter)) + 1
    part = part.sort_values("time")
    fig.add_trace(go.Scatter(x=_epoch_ms(part["time"]), y=pd.to_numeric(part["value"], errors="coerce") / divisor,
                             mode="lines", fill="tozeroy", line={"color": shade, "width": 1}, opacity=0.35,
                             hoverinfo="skip", showlegend=False, xaxis=f"x{n}", yaxis=f"y{n}"))
    low, high = domain["y"]
    hidden = {"visible": False, "fixedrange": True}
    fig.layout[f"xaxis{n}"] = {**hidden, "domain": domain["x"], "anchor": f"y{n}", "type": "date"}
    fig.layout[f"yaxis{n}"] = {**hidden, "domain": [low, low + (high - low) * 0.45], "anchor": f"x{n}",
                               "rangemode": "tozero"}


def _bargauge(panel: Panel, frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    reduced = reduce(panel, frame)
    if reduced.empty:
        return _no_data(fig, panel)
    low, high = _range(panel, reduced["value"])
    finite = reduced["value"][reduced["value"].map(math.isfinite)]
    divisor, suffix = unit_scale(panel.unit, float(finite.abs().max()) if len(finite) else 0.0)
    vertical = panel.options.get("orientation") == "vertical"
    values = reduced["value"] / divisor
    texts = [(mapped(panel, v) or (format_value(v, panel.unit, panel.decimals),))[0] for v in reduced["value"]]
    colors = [threshold_color(panel, v, low=low, high=high) for v in reduced["value"]]
    bar = go.Bar(x=reduced["series"] if vertical else values, y=values if vertical else reduced["series"],
                 orientation="v" if vertical else "h", marker={"color": colors}, text=texts,
                 textposition="auto", hoverinfo="text+name")
    fig.add_trace(bar)
    axis = {"range": [low / divisor, high / divisor], "ticksuffix": suffix}
    if vertical:
        return _layout(fig, panel, yaxis=axis, showlegend=False)
    return _layout(fig, panel, xaxis=axis, yaxis={"autorange": "reversed"}, showlegend=False)


def table_frame(panel: Panel, frame: pd.DataFrame) -> pd.DataFrame:
    """What a table panel shows: labels as columns, one ``Value`` column per query (``Value #A`` when several),
    series of the same labels merged (Grafana's merge), then its organize transformation (hide, rename, order)."""
    if frame.empty:
        return pd.DataFrame()
    last = frame.sort_values("time").groupby(["refId", "series"], sort=False).tail(1)
    label_cols = [c for c in last.columns if c not in ("time", "value", "series", "refId", "__name__")]
    refs = list(dict.fromkeys(last["refId"]))
    merged: pd.DataFrame | None = None
    for ref in refs:
        part = last[last["refId"] == ref]
        cols = [c for c in label_cols if part[c].notna().any()]
        column = "Value" if len(refs) == 1 else f"Value #{ref}"
        piece = part[cols + ["value"]].rename(columns={"value": column})
        merged = piece if merged is None else merged.merge(
            piece, how="outer", on=[c for c in cols if c in merged.columns] or None) if any(
            c in merged.columns for c in cols) else pd.concat([merged, piece], ignore_index=True)
    assert merged is not None
    for t in panel.raw.get("transformations") or []:
        if t.get("id") == "organize":
            opts = t.get("options") or {}
            hidden = [c for c, hide in (opts.get("excludeByName") or {}).items() if hide and c in merged.columns]
            merged = merged.drop(columns=hidden)
            order = opts.get("indexByName") or {}
            if order:
                merged = merged[sorted(merged.columns, key=lambda c: order.get(c, len(order) + 1))]
            merged = merged.rename(columns={k: v for k, v in (opts.get("renameByName") or {}).items() if v})
    value_cols = [c for c in merged.columns if str(c).startswith("Value")]
    label_order = [c for c in merged.columns if c not in value_cols]
    return merged.sort_values(label_order).reset_index(drop=True) if label_order else merged


def _table(panel: Panel, frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    table = table_frame(panel, frame)
    if table.empty:
        return _no_data(fig, panel)
    cells, fills = [], []
    for col in table.columns:
        if pd.api.types.is_numeric_dtype(table[col]):
            cells.append([(mapped(panel, v) or (format_value(v, panel.unit, panel.decimals),))[0]
                          for v in table[col]])
            cell_type = ((panel.custom.get("cellOptions") or {}).get("type") or panel.custom.get("displayMode", ""))
            fills.append([threshold_color(panel, v) if "color" in cell_type else "white" for v in table[col]])
        else:
            cells.append(["" if pd.isna(v) else str(v) for v in table[col]])
            fills.append(["white"] * len(table))
    fig.add_trace(go.Table(header={"values": [f"<b>{html.escape(str(c))}</b>" for c in table.columns],
                                   "align": "left", "fill_color": "#eef0f3"},
                           cells={"values": cells, "align": "left", "fill_color": fills}))
    return _layout(fig, panel)


def _bucket_bound(value: Any) -> float:
    return float("inf") if str(value) in ("+Inf", "inf") else float(value)


def _heatmap(panel: Panel, frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    if frame.empty:
        return _no_data(fig, panel)
    data = frame.copy()
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    if "le" in data.columns and data["le"].notna().all():
        # Prometheus histogram buckets are cumulative: each bucket's own count is the difference to the one below.
        data["bound"] = data["le"].map(_bucket_bound)
        wide = data.pivot_table(index="time", columns="bound", values="value", aggfunc="sum").sort_index(axis=1)
        per_bucket = wide.diff(axis=1).fillna(wide)
        divisor, suffix = unit_scale(panel.unit or "short", max((b for b in wide.columns if math.isfinite(b)),
                                                                default=1.0))
        labels = [f"{format_value(b, panel.unit) if math.isfinite(b) else '+Inf'}" for b in wide.columns]
        z, y = per_bucket.T.values, labels
        x = _epoch_ms(pd.Series(per_bucket.index))
    else:
        wide = data.pivot_table(index="time", columns="series", values="value", aggfunc="sum")
        z, y, x = wide.T.values, [str(c) for c in wide.columns], _epoch_ms(pd.Series(wide.index))
    scheme = ((panel.options.get("color") or {}).get("scheme")) or "Oranges"
    fig.add_trace(go.Heatmap(x=x, y=y, z=z, colorscale=scheme if scheme in _PLOTLY_SCALES else "Oranges",
                             colorbar={"thickness": 10}))
    return _layout(fig, panel, xaxis={"type": "date"}, yaxis={"type": "category"})


_PLOTLY_SCALES = {"Oranges", "Reds", "Greens", "Blues", "Purples", "Greys", "Viridis", "Plasma", "Inferno",
                  "Magma", "Cividis", "Turbo", "Spectral", "RdYlGn", "YlOrRd", "YlGnBu"}


def figure(panel: Panel, frame: pd.DataFrame) -> go.Figure:
    """The plotly figure of one panel from its data (:func:`panel_data`): drawn, never shown."""
    if not panel.supported:
        return _no_data(go.Figure(), panel, f"panel type {panel.type!r} is not supported by labkit's renderer")
    if panel.kind == "timeseries":
        return _timeseries(panel, frame) if has_data(frame) else _no_data(go.Figure(), panel)
    if panel.kind in ("stat", "gauge"):
        return _indicators(panel, frame, gauge=panel.kind == "gauge")
    if panel.kind == "bargauge":
        return _bargauge(panel, frame)
    if panel.kind == "table":
        return _table(panel, frame)
    return _heatmap(panel, frame)


def panel_figure(dashboard: Dashboard | str | Path | Mapping[str, Any], title: str, *,
                 variables: Mapping[str, str | Sequence[str]] | None = None,
                 time_range: str | float | None = None) -> go.Figure:
    """One panel, queried now and drawn: ``lk.dashboards.panel_figure("gpu", "GPU utilisation")``.

    Its queries are what ``curl 'http://127.0.0.1:PORT/api/v1/query_range?query=...'`` sends (``query`` for instant
    ones and tables), with the dashboard's variables replaced; ``time_range`` defaults to the dashboard's."""
    board = dashboard if isinstance(dashboard, Dashboard) else load(dashboard)
    time_range = time_range or since(board)
    panel = board.panel(title)
    if not panel.supported:
        raise DashboardError(_("panel {title!r} is of type {type!r}, which labkit's renderer does not draw").format(
                                 title=title, type=panel.type),
                             fix=_("supported types: {types}").format(types=", ".join(SUPPORTED)))
    fig = figure(panel, panel_data(board, panel, variables=variables, time_range=time_range))
    return fig


def since(board: Dashboard) -> str:
    span = board.time_from.removeprefix("now-")
    try:
        duration_seconds(span)
    except DashboardError:
        return "15m"  # an absolute time range: the lab's Prometheus keeps recent data, show the last 15 minutes
    return span

