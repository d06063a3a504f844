"""Data: one panel's queries into a table (part of :mod:`labkit.dashboards`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import pandas as pd

from ..observability import promql
from .model import Dashboard, Panel
from .variables import Choice, TimeRange, duration, duration_seconds, interpolate, resolve

_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def legend(fmt: str, labels: Mapping[str, str], expr: str = "") -> str:
    """A series' name from its ``legendFormat`` (``"{{pod}}"``); without one, its labels, as Grafana shows them."""
    if fmt and fmt != "__auto":
        return _LEGEND.sub(lambda m: str(labels.get(m.group(1), "")), fmt)
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else (name or expr)


def panel_data(dashboard: Dashboard, panel: Panel | str, *, choices: Mapping[str, Choice] | None = None,
               variables: Mapping[str, str | Sequence[str]] | None = None,
               time_range: str | float | TimeRange = "15m") -> pd.DataFrame:
    """Every target of the panel against the lab's Prometheus: one row per series and point, with the labels, the
    ``series`` name (from legendFormat), ``refId``, ``time`` and ``value``; ``attrs["queries"]`` has the PromQL
    actually sent (variables replaced). Each is ``curl 'http://127.0.0.1:PORT/api/v1/query_range?query=EXPR&start=
    ...&end=...&step=...'`` (``/api/v1/query`` for instant queries and tables), as Grafana's query inspector shows."""
    panel = dashboard.panel(panel) if isinstance(panel, str) else panel
    window = time_range if isinstance(time_range, TimeRange) else TimeRange.parse(time_range)
    choices = choices if choices is not None else resolve(dashboard, variables, window=window)
    frames, sent = [], []
    for target in panel.targets:
        if not target.expr.strip():
            continue
        expr = interpolate(target.expr, choices, window)
        sent.append(expr)
        if target.instant or target.format == "table" or panel.kind == "table":  # a table shows now
            frame = promql.query(expr, at=window.end)
        else:
            step = max(window.step_s, duration_seconds(interpolate(target.interval, choices, window))
                       if target.interval else 0.0)
            frame = promql.query_range(expr, minutes=window.seconds / 60, step=duration(step))
        if frame.empty:
            continue
        label_cols = [c for c in frame.columns if c not in ("time", "value")]
        fmt = interpolate(target.legend_format, choices, window)
        names = [legend(fmt, {k: v for k, v in zip(label_cols, row, strict=True)
                                               if isinstance(v, str)}, expr)
                 for row in frame[label_cols].itertuples(index=False)] if label_cols else \
            [legend(fmt, {}, expr)] * len(frame)
        frames.append(frame.assign(series=names, refId=target.ref_id))
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["series", "refId", "time", "value"])
    data.attrs["queries"] = sent
    return data


def has_data(frame: pd.DataFrame) -> bool:
    """True when at least one returned point is a finite number (what "the panel shows data" means here)."""
    if frame.empty:
        return False
    values = pd.to_numeric(frame["value"], errors="coerce")
    return bool(values.map(lambda v: v is not None and math.isfinite(v)).any())


