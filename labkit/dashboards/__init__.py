"""Grafana dashboards without Grafana: dashboards written in Grafana's own dashboard JSON model, drawn with plotly
and ipywidgets, live against the lab's Prometheus (Grafana itself is AGPL, which this project excludes).

``lk.dashboards.shipped()`` names the lab's dashboards (``labkit/data/dashboards/*.json``; each imports unchanged
into a real Grafana: Dashboards -> New -> Import); ``load(name_or_path)`` reads one, ``render(dashboard)`` draws it
as a widget whose dropdowns are the dashboard's ``$variables``, ``panel_figure(dashboard, title)`` one panel.
Supported panel types: timeseries, stat, gauge, bargauge, table, heatmap (and rows, collapsed or not; the old
``graph`` panel is drawn as the time series Grafana migrates it to). Any other panel is listed by title and type
(``Dashboard.unsupported`` and a note above the grid), never dropped silently.
Every panel query is a PromQL range or instant query, the same as
``curl 'http://127.0.0.1:PORT/api/v1/query_range?query=EXPR&start=...&end=...&step=...'``.
Introduced in notebook 07_dashboards.
"""

from __future__ import annotations

from .data import has_data, legend, panel_data
from .editing import add_panel, check_panel
from .figures import figure, panel_figure, reduce, table_frame
from .model import (
    ALL,
    BUILTIN_DATASOURCES,
    DASHBOARD_DIR,
    GRID_COLUMNS,
    GRID_UNIT_PX,
    MAX_INDICATORS,
    MIGRATED,
    MIN_SCHEMA_VERSION,
    POINTS,
    SINGLESTAT_REDUCERS,
    SUPPORTED,
    Dashboard,
    DashboardError,
    GridPos,
    Panel,
    Row,
    Target,
    Threshold,
    Variable,
    color,
    load,
    panels_from_rows,
    parse,
    shipped,
    shipped_path,
)
from .review import BREAKS, REFUSED, REWRITTEN, Finding, review, validate
from .units import UNITS, format_value, mapped, threshold_color, unit_scale
from .variables import Choice, TimeRange, duration_seconds, interpolate, resolve
from .widget import QUERY_WORKERS, TIME_RANGES, DashboardView, render

__all__ = [
    "ALL", "BREAKS", "BUILTIN_DATASOURCES", "Choice", "DASHBOARD_DIR", "Dashboard", "DashboardError",
    "DashboardView", "Finding", "GRID_COLUMNS", "GRID_UNIT_PX", "GridPos", "MAX_INDICATORS", "MIGRATED",
    "MIN_SCHEMA_VERSION", "POINTS", "Panel", "QUERY_WORKERS", "REFUSED", "REWRITTEN", "Row",
    "SINGLESTAT_REDUCERS", "SUPPORTED", "TIME_RANGES", "Target", "Threshold", "TimeRange", "UNITS", "Variable",
    "add_panel", "check_panel", "color", "duration_seconds", "figure", "format_value", "has_data", "interpolate",
    "legend", "load", "mapped", "panel_data", "panel_figure", "panels_from_rows", "parse", "reduce", "render",
    "resolve", "review", "shipped", "shipped_path", "table_frame", "threshold_color", "unit_scale", "validate",
]
