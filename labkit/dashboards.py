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

import html
import json
import math
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd
import plotly.graph_objects as go

from . import promql
from .errors import LabkitError
from .settings import DATASOURCE_SCRAPE_INTERVAL_S, SCRAPE_INTERVAL_S

SUPPORTED = ("timeseries", "stat", "gauge", "bargauge", "table", "heatmap")
# Older panel types drawn as the type Grafana itself migrates them to when it loads a dashboard (Grafana 11 turns
# the Angular panels into their React successors; a singlestat that shows a gauge becomes a gauge).
MIGRATED = {"graph": "timeseries", "singlestat": "stat", "table-old": "table"}
# A singlestat's valueName as the stat panel's reducer Grafana's migration gives it.
SINGLESTAT_REDUCERS = {"current": "lastNotNull", "avg": "mean", "total": "sum", "first": "firstNotNull",
                       "max": "max", "min": "min", "delta": "delta", "diff": "diff", "range": "range"}
# Grafana's built-in datasources: they name no Prometheus and work on any Grafana.
BUILTIN_DATASOURCES = ("-- Mixed --", "-- Grafana --", "-- Dashboard --", "grafana", "datasource")
DASHBOARD_DIR = Path(__file__).parent / "data" / "dashboards"
GRID_COLUMNS = 24  # gridPos.w is in 24ths of the dashboard's width
GRID_UNIT_PX = 30  # one gridPos.h unit, as Grafana draws it
ALL = "$__all"  # Grafana's value for a variable's "All" option
# The oldest schemaVersion the shipped dashboards may carry: Grafana 10.4 writes 39 and later ones migrate it.
MIN_SCHEMA_VERSION = 36
# Points per range query. Grafana asks for about one per pixel of panel width; the lab's Prometheus shares two cores,
# and the control plane's latency histograms cost it seconds per query at 200 points.
POINTS = 120
MAX_INDICATORS = 12  # stat and gauge panels draw this many series; a note says how many more there are


class DashboardError(LabkitError):
    """A dashboard JSON file that cannot be read or drawn."""


# --- the JSON model ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridPos:
    """Where a panel sits: ``x``/``w`` in 24ths of the width, ``y``/``h`` in 30 px units."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Threshold:
    """One colour step: from ``value`` upwards (``None`` is the base step, minus infinity)."""

    value: float | None
    color: str


@dataclass(frozen=True)
class Target:
    """One query of a panel: PromQL ``expr``, series named by ``legend_format`` (``{{pod}}``)."""

    ref_id: str
    expr: str
    legend_format: str = ""
    instant: bool = False
    format: str = "time_series"  # time_series | table | heatmap
    interval: str = ""  # the smallest step this query may use ("1m"); "" = the dashboard's


@dataclass(frozen=True)
class Panel:
    """One panel of the dashboard as the JSON describes it (``raw`` keeps everything else)."""

    id: int | None
    title: str
    type: str
    grid: GridPos
    targets: tuple[Target, ...]
    unit: str = ""
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    thresholds: tuple[Threshold, ...] = ()
    threshold_mode: str = "absolute"  # absolute | percentage
    row: str | None = None  # title of the row the panel sits in
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """The type it is drawn as (``graph`` -> ``timeseries``, as Grafana migrates it)."""
        if self.type == "singlestat" and (self.raw.get("gauge") or {}).get("show"):
            return "gauge"
        return MIGRATED.get(self.type, self.type)

    @property
    def supported(self) -> bool:
        return self.kind in SUPPORTED

    @property
    def options(self) -> Mapping[str, Any]:
        if self.type == "singlestat":
            calc = SINGLESTAT_REDUCERS.get(str(self.raw.get("valueName") or "avg"), "mean")
            return {"reduceOptions": {"calcs": [calc]}}
        return self.raw.get("options") or {}

    @property
    def custom(self) -> Mapping[str, Any]:
        if self.type == "graph":  # the old panel's own fields, in the time series' terms
            return {"stacking": {"mode": "normal" if self.raw.get("stack") else "none"},
                    "fillOpacity": 10 * float(self.raw.get("fill") or 0),
                    "drawStyle": "bars" if self.raw.get("bars") else "line"}
        return ((self.raw.get("fieldConfig") or {}).get("defaults") or {}).get("custom") or {}


@dataclass(frozen=True)
class Row:
    """A row of panels; the first one is untitled when panels come before any row panel."""

    title: str | None
    collapsed: bool
    y: int
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """One templating variable: ``$name`` in queries, a dropdown in the rendered dashboard."""

    name: str
    type: str  # query | custom | interval | constant | textbox | datasource | adhoc
    label: str
    query: str
    options: tuple[str, ...] = ()  # fixed options (custom, interval)
    current: tuple[str, ...] = ()  # the saved selection
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    regex: str = ""
    sort: int = 0
    hide: int = 0


@dataclass(frozen=True)
class Dashboard:
    """A dashboard read from Grafana's JSON model."""

    title: str
    uid: str | None
    schema_version: int | None
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    time_from: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    source: str = ""

    @property
    def panels(self) -> list[Panel]:
        """Every panel, rows flattened, in reading order."""
        return [p for r in self.rows for p in r.panels]

    @property
    def unsupported(self) -> list[tuple[str, str]]:
        """(title, type) of each panel this renderer does not draw: shown, never dropped silently."""
        return [(p.title, p.type) for p in self.panels if not p.supported]

    def panel(self, title: str) -> Panel:
        """The panel with this title."""
        for p in self.panels:
            if p.title == title:
                return p
        raise DashboardError(f"dashboard {self.title!r} has no panel titled {title!r}",
                             fix="its panels: " + ", ".join(repr(p.title) for p in self.panels))


def shipped() -> list[str]:
    """Names of the dashboards the lab ships (``labkit/data/dashboards/*.json``)."""
    return sorted(p.stem for p in DASHBOARD_DIR.glob("*.json"))


def shipped_path(name: str) -> Path:
    """The file of one shipped dashboard (what you would import into Grafana)."""
    return DASHBOARD_DIR / f"{name}.json"


def _read(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(source, Mapping):
        return dict(source), "<dict>"
    path = Path(source)
    if isinstance(source, str) and source in shipped():
        path = shipped_path(source)
    if not path.is_file():
        raise DashboardError(f"no dashboard {str(source)!r}: not a shipped one and no such file",
                             fix="lk.dashboards.shipped() lists the lab's; or give the path of a JSON file")
    try:
        return json.loads(path.read_text()), str(path)
    except ValueError as exc:
        raise DashboardError(f"{path} is not valid JSON: {exc}",
                             fix=f"python -m json.tool {path}   # shows where") from None


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _panel(raw: Mapping[str, Any], row: str | None) -> Panel:
    defaults = (raw.get("fieldConfig") or {}).get("defaults") or {}
    thresholds = defaults.get("thresholds") or {}
    targets = tuple(
        Target(ref_id=str(t.get("refId", chr(ord("A") + i))), expr=str(t.get("expr", "")),
               legend_format=str(t.get("legendFormat") or ""), instant=bool(t.get("instant")),
               format=str(t.get("format") or "time_series"), interval=str(t.get("interval") or ""))
        for i, t in enumerate(raw.get("targets") or []) if not t.get("hide"))
    grid = raw.get("gridPos") or {}
    if raw.get("type") == "graph":  # the old graph panel keeps unit and range on its left y axis
        axis = (raw.get("yaxes") or [{}])[0] or {}
        defaults = {**defaults, "unit": axis.get("format"), "min": axis.get("min"), "max": axis.get("max"),
                    "decimals": axis.get("decimals", raw.get("decimals"))}
    elif raw.get("type") == "singlestat":  # unit in "format", thresholds as "80,90" with one colour more
        gauge = raw.get("gauge") or {}
        colors = list(raw.get("colors") or ["green", "orange", "red"])
        levels = [None, *(_number(v) for v in str(raw.get("thresholds") or "").split(",") if v.strip())]
        steps = [{"value": v, "color": colors[min(i, len(colors) - 1)]} for i, v in enumerate(levels)]
        defaults = {**defaults, "unit": raw.get("format"), "decimals": raw.get("decimals"),
                    "min": gauge.get("minValue"), "max": gauge.get("maxValue"),
                    "thresholds": {"mode": "absolute", "steps": steps}}
        thresholds = defaults["thresholds"]
    decimals = defaults.get("decimals")
    return Panel(
        id=raw.get("id"), title=str(raw.get("title") or f"(untitled {raw.get('type')} panel {raw.get('id')})"),
        type=str(raw.get("type") or "(no type)"),
        grid=GridPos(int(grid.get("x", 0)), int(grid.get("y", 0)), int(grid.get("w", 12)), int(grid.get("h", 8))),
        targets=targets, unit=str(defaults.get("unit") or ((raw.get("options") or {}).get("yAxis") or {}).get("unit")
                                  or ""),  # a heatmap keeps its unit in options.yAxis
        decimals=int(decimals) if decimals is not None else None,
        min=_number(defaults.get("min")), max=_number(defaults.get("max")),
        thresholds=tuple(Threshold(_number(s.get("value")), str(s.get("color", "green")))
                         for s in thresholds.get("steps") or []),
        threshold_mode=str(thresholds.get("mode") or "absolute"), row=row, raw=raw)


def _values(current: Any) -> tuple[str, ...]:
    value = (current or {}).get("value") if isinstance(current, Mapping) else current
    if value is None:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


def _variable(raw: Mapping[str, Any]) -> Variable:
    query = raw.get("query", "")
    if isinstance(query, Mapping):  # newer Grafana: {"query": "label_values(...)", "refId": ...}
        query = query.get("query", "")
    kind = str(raw.get("type", "query"))
    options: tuple[str, ...] = ()
    if kind in ("custom", "interval"):
        # "a,b,c" or "text : value" pairs, as Grafana's custom variable editor writes them
        options = tuple(part.split(" : ")[-1].strip() for part in re.split(r"(?<!\\),", str(query)) if part.strip())
        options = tuple(o for o in options if o != "auto")
    return Variable(
        name=str(raw["name"]), type=kind, label=str(raw.get("label") or raw["name"]), query=str(query),
        options=options, current=_values(raw.get("current")), multi=bool(raw.get("multi")),
        include_all=bool(raw.get("includeAll")), all_value=raw.get("allValue") or None,
        regex=str(raw.get("regex") or ""), sort=int(raw.get("sort") or 0), hide=int(raw.get("hide") or 0))


def parse(model: Mapping[str, Any], *, source: str = "<dict>") -> Dashboard:
    """A :class:`Dashboard` from Grafana's JSON model (a dict, as ``json.load`` gives it)."""
    if "spec" in model and "panels" not in model:  # a Kubernetes-style resource (dashboard.grafana.app/v1)
        model = model["spec"]
    if "rows" in model and "panels" not in model:  # Grafana before 5.0: migrated on load, as Grafana does
        model = {**model, "panels": panels_from_rows(model.get("rows") or [])}
    rows: list[Row] = []
    loose: list[Panel] = []
    current: dict[str, Any] | None = None
    members: list[Panel] = []

    def close() -> None:
        if current is not None:
            rows.append(Row(str(current.get("title") or ""), bool(current.get("collapsed")),
                            int((current.get("gridPos") or {}).get("y", 0)), tuple(members)))

    for raw in model.get("panels") or []:
        if raw.get("type") == "row":
            close()
            current, members = raw, []
            # A collapsed row keeps its panels inside itself; an open one is followed by them.
            members.extend(_panel(p, str(raw.get("title") or "")) for p in raw.get("panels") or [])
        elif current is None:
            loose.append(_panel(raw, None))
        else:
            members.append(_panel(raw, str(current.get("title") or "")))
    close()
    if loose:
        rows.insert(0, Row(None, False, 0, tuple(loose)))
    templating = (model.get("templating") or {}).get("list") or []
    return Dashboard(
        title=str(model.get("title") or "(untitled dashboard)"), uid=model.get("uid"),
        schema_version=model.get("schemaVersion"), variables=tuple(_variable(v) for v in templating),
        rows=tuple(rows), time_from=str((model.get("time") or {}).get("from") or "now-15m"), raw=model,
        source=source)


# Grafana's grid: a cell is 30 px high with 8 px between cells (what a pre-5.0 row's pixel height becomes).
_OLD_CELL_PX = 30 + 8


def _grid_height(px: Any) -> int:
    try:
        return max(1, math.ceil(float(str(px).removesuffix("px")) / _OLD_CELL_PX))
    except ValueError:
        return 8


def panels_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Grafana's migration of the pre-5.0 ``rows`` layout (schemaVersion 16): each row's panels flow left to right on
    the 24-column grid (``span`` of 12 -> ``w`` of 24), wrapping; a row panel heads each row when there are several
    or one shows its title; a collapsed row keeps its panels inside."""
    ids = [p.get("id") for r in rows for p in r.get("panels") or [] if isinstance(p.get("id"), int)]
    next_id = max(ids, default=0) + 1
    show_rows = len(rows) > 1 or any(r.get("showTitle") or r.get("collapse") for r in rows)
    panels: list[dict[str, Any]] = []
    y = 0
    for row in rows:
        row_height = _grid_height(row.get("height") or 250)
        holder = None
        if show_rows:
            holder = {"id": next_id, "type": "row", "title": str(row.get("title") or ""), "panels": [],
                      "collapsed": bool(row.get("collapse")), "gridPos": {"x": 0, "y": y, "w": GRID_COLUMNS, "h": 1}}
            next_id += 1
            panels.append(holder)
            y += 1
        x = tallest = 0
        for old in row.get("panels") or []:
            w = min(GRID_COLUMNS, max(1, round(float(old.get("span") or 12) * GRID_COLUMNS / 12)))
            h = _grid_height(old["height"]) if old.get("height") else row_height
            if x + w > GRID_COLUMNS:
                x, y, tallest = 0, y + tallest, 0
            new = {k: v for k, v in old.items() if k not in ("span", "height")}
            new["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
            (holder["panels"] if holder is not None and holder["collapsed"] else panels).append(new)
            x, tallest = x + w, max(tallest, h)
        y += tallest
    return panels


def load(name_or_path: str | Path | Mapping[str, Any]) -> Dashboard:
    """A shipped dashboard by name (``"gpu"``), any dashboard JSON file by path, or a dict of the JSON model."""
    model, source = _read(name_or_path)
    return parse(model, source=source)


# --- units and thresholds ------------------------------------------------------------------------------------------

_SI = ("", " k", " M", " G", " T", " P")
_TIME_S = ((1e-9, " ns"), (1e-6, " µs"), (1e-3, " ms"), (1.0, " s"), (60.0, " min"), (3600.0, " hour"),
           (86400.0, " day"))


def _steps(base: float, names: Sequence[str], start: int = 0) -> tuple[tuple[float, str], ...]:
    return tuple((base ** (i - start), n) for i, n in enumerate(names) if i >= start)


def _time_steps(unit_seconds: float) -> tuple[tuple[float, str], ...]:
    return tuple((f / unit_seconds, n) for f, n in _TIME_S)


def _si(suffix: str, start: int = 0) -> tuple[tuple[float, str], ...]:
    return tuple((1000.0 ** (i - start), f"{p}{suffix}" if p else f" {suffix}") for i, p in enumerate(_SI)
                 if i >= start)


_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_DEC = ("B", "kB", "MB", "GB", "TB", "PB")
# Grafana's unit ids -> (multiplier applied first, ladder of (factor, suffix)); the best rung is the largest factor
# not above the value. Ids as Grafana's unit picker writes them (packages/grafana-data/src/valueFormats/categories).
UNITS: dict[str, tuple[float, tuple[tuple[float, str], ...]]] = {
    "none": (1.0, ((1.0, ""),)),
    "short": (1.0, ((1.0, ""), (1e3, " K"), (1e6, " Mil"), (1e9, " Bil"), (1e12, " Tri"))),
    "percent": (1.0, ((1.0, "%"),)),
    "percentunit": (100.0, ((1.0, "%"),)),
    "bytes": (1.0, _steps(1024.0, [f" {n}" for n in _IEC])),
    "kbytes": (1.0, _steps(1024.0, [f" {n}" for n in _IEC], 1)),
    "mbytes": (1.0, _steps(1024.0, [f" {n}" for n in _IEC], 2)),
    "gbytes": (1.0, _steps(1024.0, [f" {n}" for n in _IEC], 3)),
    "decbytes": (1.0, _steps(1000.0, [f" {n}" for n in _DEC])),
    "deckbytes": (1.0, _steps(1000.0, [f" {n}" for n in _DEC], 1)),
    "decmbytes": (1.0, _steps(1000.0, [f" {n}" for n in _DEC], 2)),
    "decgbytes": (1.0, _steps(1000.0, [f" {n}" for n in _DEC], 3)),
    "binBps": (1.0, _steps(1024.0, [f" {n}/s" for n in _IEC])),
    "Bps": (1.0, _steps(1000.0, [f" {n}/s" for n in _DEC])),
    "bps": (1.0, _si("b/s")),
    "ns": (1.0, _time_steps(1e-9)),
    "µs": (1.0, _time_steps(1e-6)),
    "ms": (1.0, _time_steps(1e-3)),
    "s": (1.0, _time_steps(1.0)),
    "m": (1.0, _time_steps(60.0)),
    "h": (1.0, _time_steps(3600.0)),
    "d": (1.0, _time_steps(86400.0)),
    "reqps": (1.0, ((1.0, " req/s"), (1e3, "K req/s"), (1e6, "M req/s"))),
    "rps": (1.0, ((1.0, " rps"), (1e3, "K rps"))),
    "ops": (1.0, ((1.0, " ops/s"), (1e3, "K ops/s"))),
    "iops": (1.0, ((1.0, " io/s"), (1e3, "K io/s"))),
    "cps": (1.0, ((1.0, " c/s"), (1e3, "K c/s"))),
    "watt": (1.0, _si("W")),
    "kwatt": (1.0, _si("W", 1)),
    "mwatt": (1.0, ((1.0, " mW"), (1e3, " W"), (1e6, " kW"))),
    "joule": (1.0, _si("J")),
    "celsius": (1.0, ((1.0, "°C"),)),
    "fahrenheit": (1.0, ((1.0, "°F"),)),
    "kelvin": (1.0, ((1.0, " K"),)),
    "hertz": (1.0, _si("Hz")),
    "volt": (1.0, _si("V")),
    "amp": (1.0, _si("A")),
}


def unit_scale(unit: str, magnitude: float) -> tuple[float, str]:
    """(divide by, suffix) to show values of about ``magnitude`` in ``unit``: ``("bytes", 3e9)`` -> (2**30, " GiB").

    Values are first multiplied by the unit's own multiplier (percentunit: 100), so the divisor returned already
    includes it: ``value / divisor`` is the number to print."""
    unit = unit or "short"
    if unit.startswith("suffix:"):
        return 1.0, unit.removeprefix("suffix:")
    if unit.startswith("prefix:"):
        return 1.0, ""  # prefixes are added by format_value
    multiplier, ladder = UNITS.get(unit, (1.0, ((1.0, f" {unit}"),)))  # unknown ids: Grafana's custom suffix
    value = abs(magnitude) * multiplier
    factor, suffix = ladder[0]
    for f, s in ladder:
        if value >= f:
            factor, suffix = f, s
    return factor / multiplier, suffix


def _auto_decimals(value: float) -> int:
    size = abs(value)
    if size == 0 or size >= 100 or size == int(size):
        return 0
    return 1 if size >= 10 else 2


def format_value(value: float | None, unit: str = "", decimals: int | None = None) -> str:
    """A number as Grafana would print it in ``unit``: ``format_value(0.425, "percentunit")`` -> ``'42.5%'``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "No data"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    divisor, suffix = unit_scale(unit, value)
    shown = value / divisor
    text = f"{shown:.{_auto_decimals(shown) if decimals is None else decimals}f}"
    if unit.startswith("prefix:"):
        return unit.removeprefix("prefix:") + text
    return text + suffix


_PALETTE = {"green": "#73BF69", "yellow": "#FADE2A", "orange": "#FF9830", "red": "#F2495C", "blue": "#5794F2",
            "purple": "#B877D9"}
_SHADES = {"dark-": {"green": "#37872D", "yellow": "#E0B400", "orange": "#FA6400", "red": "#C4162A",
                     "blue": "#1F60C4", "purple": "#8F3BB8"},
           "semi-dark-": {"green": "#56A64B", "yellow": "#F2CC0C", "orange": "#FF780A", "red": "#E02F44",
                          "blue": "#3274D9", "purple": "#A352CC"},
           "light-": {"green": "#96D98D", "yellow": "#FFEE52", "orange": "#FFB357", "red": "#FF7383",
                      "blue": "#8AB8FF", "purple": "#CA95E5"},
           "super-light-": {"green": "#C8F2C2", "yellow": "#FFF899", "orange": "#FFCB7D", "red": "#FFA6B0",
                            "blue": "#C0D8FF", "purple": "#DEB6F2"}}


def color(name: str) -> str:
    """A Grafana colour name (``"semi-dark-red"``, ``"green"``) as a CSS colour plotly draws; others pass through."""
    for prefix, shades in _SHADES.items():
        if name.startswith(prefix) and name[len(prefix):] in shades:
            return shades[name[len(prefix):]]
    return _PALETTE.get(name, name)


def threshold_color(panel: Panel, value: float | None, *, low: float = 0.0, high: float = 100.0) -> str:
    """The colour of the threshold step ``value`` falls in (``percentage`` mode: steps in % of ``low``..``high``)."""
    steps = panel.thresholds or (Threshold(None, "green"),)
    chosen = steps[0].color
    if value is None or math.isnan(value):
        return color(chosen)
    for step in steps:
        if step.value is None:
            chosen = step.color
            continue
        edge = step.value if panel.threshold_mode != "percentage" else low + (high - low) * step.value / 100
        if value >= edge:
            chosen = step.color
    return color(chosen)


def mapped(panel: Panel, value: float | None) -> tuple[str, str | None] | None:
    """(text, colour or None) of the value mapping that matches ``value`` (``fieldConfig.defaults.mappings``: value,
    range and special null/NaN mappings, as Grafana applies them), or None when none does."""
    for mapping in ((panel.raw.get("fieldConfig") or {}).get("defaults") or {}).get("mappings") or []:
        kind, options = mapping.get("type"), mapping.get("options") or {}
        result: Mapping[str, Any] | None = None
        if kind == "value" and value is not None and math.isfinite(value):
            result = next((r for k, r in options.items() if _number(k) == value), None)
        elif kind == "range" and value is not None and math.isfinite(value):
            low, high = _number(options.get("from")), _number(options.get("to"))
            if (low is None or value >= low) and (high is None or value <= high):
                result = options.get("result")
        elif kind == "special" and (value is None or math.isnan(value)) and options.get("match") in ("null", "nan",
                                                                                                    "null+nan"):
            result = options.get("result")
        if result and result.get("text") is not None:
            return str(result["text"]), color(result["color"]) if result.get("color") else None
    return None


# --- variables and the time range ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Choice:
    """A variable's options on the live lab and what is selected (``[ALL]`` for All)."""

    variable: Variable
    options: tuple[str, ...]
    selected: tuple[str, ...]
    error: str = ""  # why the options could not be read (the rendered dashboard shows it)

    @property
    def is_all(self) -> bool:
        return ALL in self.selected

    def values(self) -> tuple[str, ...]:
        return self.options if self.is_all else self.selected


@dataclass(frozen=True)
class TimeRange:
    """The range a dashboard is drawn over and the step of its range queries (Grafana's ``$__interval``)."""

    seconds: float
    step_s: float
    end: float

    @classmethod
    def parse(cls, spec: str | float, *, points: int = POINTS, end: float | None = None) -> TimeRange:
        """``"15m"``, ``"now-1h"``, ``"90s"`` or minutes as a number; about ``points`` steps over the range."""
        seconds = float(spec) * 60 if isinstance(spec, int | float) else duration_seconds(spec.removeprefix("now-"))
        step = max(float(SCRAPE_INTERVAL_S), math.ceil(seconds / points))
        return cls(seconds, step, time.time() if end is None else end)

    @property
    def rate_interval_s(self) -> float:
        """Grafana's ``$__rate_interval``: max($__interval + scrape interval, 4 x scrape interval), with the
        datasource's scrape interval (:data:`~labkit.settings.DATASOURCE_SCRAPE_INTERVAL_S`)."""
        return max(self.step_s + DATASOURCE_SCRAPE_INTERVAL_S, 4 * DATASOURCE_SCRAPE_INTERVAL_S)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DURATION_S = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(text: str) -> float:
    """A Prometheus/Grafana duration in seconds: ``"1m30s"`` -> 90."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise DashboardError(f"{text!r} is not a duration", fix='write it as Prometheus does: "30s", "5m", "1h"')
    return sum(float(n) * _DURATION_S[u] for n, u in parts)


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{int(seconds * 1000)}ms"


_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


def _regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(r"\\\\\1", value)  # doubled: the value lands inside a PromQL string


def interpolate(text: str, choices: Mapping[str, Choice], window: TimeRange) -> str:
    """``text`` with ``$var``, ``${var}``, ``${var:fmt}``, ``[[var]]`` and Grafana's ``$__`` built-ins replaced."""
    builtins = {"__interval": _duration(window.step_s), "__interval_ms": str(int(window.step_s * 1000)),
                "__rate_interval": _duration(window.rate_interval_s), "__range": _duration(window.seconds),
                "__range_s": str(int(window.seconds)), "__range_ms": str(int(window.seconds * 1000))}

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        fmt = match.group(2)
        if name in builtins:
            return builtins[name]
        choice = choices.get(name)
        if choice is None:
            return match.group(0)
        if choice.variable.type == "datasource":
            return "prometheus"
        if choice.is_all and choice.variable.all_value:
            return choice.variable.all_value
        values = choice.values()
        if fmt in ("raw", "csv", "pipe"):
            return ("|" if fmt == "pipe" else ",").join(values)
        if choice.variable.multi or choice.variable.include_all or fmt == "regex":
            escaped = [_regex_escape(v) for v in values]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        return values[0] if values else ""

    return _VAR.sub(one, text)


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.+)\)\s*$", re.S)
_METRICS = re.compile(r"^\s*metrics\((?P<regex>.*)\)\s*$", re.S)


def _variable_options(variable: Variable, choices: Mapping[str, Choice], window: TimeRange) -> list[str]:
    if variable.type in ("custom", "interval"):
        return list(variable.options)
    if variable.type == "datasource":
        return ["prometheus"]
    if variable.type in ("constant", "textbox"):
        return [variable.current[0] if variable.current else variable.query]
    if variable.type != "query":
        return list(variable.current)
    query = interpolate(variable.query, choices, window)
    if m := _LABEL_VALUES.match(query):
        found = promql.label_values(m.group("label"), match=m.group("match"))
    elif m := _METRICS.match(query):
        found = [n for n in promql.label_values("__name__") if re.search(m.group("regex").strip() or ".", n)]
    elif m := _QUERY_RESULT.match(query):
        frame = promql.query(m.group("expr"))
        found = [("{" + ", ".join(f'{k}="{v}"' for k, v in row.items() if k not in ("time", "value") and
                                  isinstance(v, str)) + "} " + f"{row['value']:g}") for row in
                 frame.to_dict("records")]
    else:
        raise DashboardError(f"variable ${variable.name}: labkit reads query variables written as "
                             f"label_values(...), metrics(...) or query_result(...), not {variable.query!r}",
                             fix="write it as label_values(metric{selector}, label)")
    if variable.regex:
        body, _, flags = variable.regex.strip().removeprefix("/").rpartition("/")  # Grafana writes /re/flags
        pattern = re.compile(body or flags, re.I if "i" in flags and body else 0)
        kept = []
        for value in found:
            hit = pattern.search(value)
            if hit:
                kept.append(hit.group(1) if hit.groups() else value)
        found = kept
    found = list(dict.fromkeys(found))
    if variable.sort in (1, 2, 5, 6):
        found.sort(key=str.lower if variable.sort in (5, 6) else None, reverse=variable.sort in (2, 6))
    elif variable.sort in (3, 4):
        found.sort(key=lambda v: _number(re.sub(r"[^\d.]", "", v) or None) or 0.0, reverse=variable.sort == 4)
    return found


def resolve(dashboard: Dashboard, selected: Mapping[str, str | Sequence[str]] | None = None, *,
            window: TimeRange | None = None, offered_only: Collection[str] = (),
            strict: bool = True) -> dict[str, Choice]:
    """Each variable's options on the live lab, in order (later variables may use earlier ones), and the selection:
    ``selected[name]`` when given (a value, a list, or ``"$__all"``; for names in ``offered_only`` only while still
    offered), else the JSON's saved one if still offered, else All when the variable has it, else the first option.
    A variable whose options cannot be read raises, or with ``strict=False`` gets none and says why (``error``)."""
    window = window or TimeRange.parse("15m")
    selected = selected or {}
    choices: dict[str, Choice] = {}
    for variable in dashboard.variables:
        if variable.type == "adhoc":
            continue
        error = ""
        try:
            options = tuple(_variable_options(variable, choices, window))
        except LabkitError as exc:
            if strict:
                raise
            options, error = (), str(exc)
        wanted = selected.get(variable.name)
        if wanted is not None:
            wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
            if variable.name in offered_only and not set(wanted) <= {*options, ALL}:
                wanted = None  # e.g. a pod of the namespace chosen before: fall back, as Grafana does
        if wanted is not None:
            picked = wanted
        elif variable.current and (set(variable.current) <= set(options) or ALL in variable.current):
            picked = variable.current
        elif variable.include_all:
            picked = (ALL,)
        else:
            picked = options[:1]
        if ALL in picked:
            picked = (ALL,)
        choices[variable.name] = Choice(variable, options, picked, error)
    return choices


# --- data: one panel's queries into a table ------------------------------------------------------------------------

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
            frame = promql.query_range(expr, minutes=window.seconds / 60, step=_duration(step))
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


# --- figures: one per panel type -----------------------------------------------------------------------------------

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
    decimals = panel.decimals if panel.decimals is not None else _auto_decimals(
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
    time_range = time_range or _since(board)
    panel = board.panel(title)
    if not panel.supported:
        raise DashboardError(f"panel {title!r} is of type {panel.type!r}, which labkit's renderer does not draw",
                             fix="supported types: " + ", ".join(SUPPORTED))
    fig = figure(panel, panel_data(board, panel, variables=variables, time_range=time_range))
    return fig


# --- would Grafana import it? --------------------------------------------------------------------------------------

_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# What Grafana does with a finding on import.
REFUSED = "refused"  # the import fails: fix it first
BREAKS = "breaks"  # it imports, but a panel or query does not work as written
REWRITTEN = "rewritten"  # Grafana fixes it itself on import (migrates, re-flows, renumbers): nothing to do


@dataclass(frozen=True)
class Finding:
    """One thing Grafana's import would refuse, leave broken, or rewrite; ``verdict`` says which."""

    verdict: str
    message: str

    def __str__(self) -> str:
        return f"{self.message} ({self.verdict})" if self.verdict == REWRITTEN else self.message


def review(dashboard: Dashboard | str | Path | Mapping[str, Any]) -> list[Finding]:
    """Everything Grafana's import would say about the dashboard, each with what it does about it.

    Refused: no title, a uid that is not 1-40 letters, digits, '-' or '_', ``panels`` not a list. Breaks once
    imported: a datasource named by a uid or name that only the exporting Grafana had (not a datasource variable,
    an ``__inputs`` entry, the default, or a built-in such as ``-- Mixed --``), a ``$variable`` nothing defines, a
    variable defined twice, a refId shared by two queries, a panel without a type. Rewritten by Grafana (nothing to
    do): an older schemaVersion or the pre-5.0 rows layout (migrated), an ``id`` (import assigns one), panel ids used
    twice (renumbered), targets without a refId (lettered), panels overlapping or past the 24 columns (re-flowed)."""
    model = dict(dashboard.raw) if isinstance(dashboard, Dashboard) else _read(dashboard)[0]
    if "spec" in model and "panels" not in model:
        model = dict(model["spec"])
    found: list[Finding] = []

    def say(verdict: str, message: str) -> None:
        found.append(Finding(verdict, message))

    if not isinstance(model.get("title"), str) or not model["title"].strip():
        say(REFUSED, "'title' is missing: Grafana's import asks for one")
    if model.get("uid") is not None and not _UID.match(str(model["uid"])):
        say(REFUSED, f"uid {model['uid']!r} must be 1-40 letters, digits, '-' or '_'")
    if "rows" in model and "panels" not in model:
        say(REWRITTEN, f"the pre-5.0 rows layout (schemaVersion {model.get('schemaVersion')}): Grafana migrates it "
                       "to panels on the grid")
        model["panels"] = panels_from_rows(model.get("rows") or [])
    if not isinstance(model.get("panels"), list):
        say(REFUSED, "'panels' is missing or not a list")
    version = model.get("schemaVersion")
    if isinstance(version, int) and version < MIN_SCHEMA_VERSION:
        say(REWRITTEN, f"schemaVersion {version} is older than {MIN_SCHEMA_VERSION}: Grafana migrates it on import")
    if model.get("id") is not None:
        say(REWRITTEN, "'id' is set: the import assigns its own")
    templating = ((model.get("templating") or {}).get("list") or []) if isinstance(model.get("templating"), dict) \
        else []
    names = [v.get("name") for v in templating]
    for name in sorted({str(n) for n in names if names.count(n) > 1}):
        say(BREAKS, f"variable ${name} is defined twice: the second hides the first")
    # A datasource is named by a datasource variable, or by an input that Grafana's import dialog asks for
    # (``__inputs``, written by "Export for sharing externally").
    ds_vars = {v.get("name") for v in templating if v.get("type") == "datasource"} | {
        i.get("name") for i in model.get("__inputs") or [] if i.get("type") == "datasource"}
    defined = set(names) | {"__interval", "__interval_ms", "__rate_interval", "__range", "__range_s", "__range_ms",
                            "__dashboard", "__from", "__to", "__org", "__user"}
    panels = model.get("panels") if isinstance(model.get("panels"), list) else []
    flat = [p for top in panels for p in [top, *(top.get("panels") or [] if top.get("type") == "row" else [])]]
    ids = [p.get("id") for p in flat if p.get("id") is not None]
    for pid in sorted({i for i in ids if ids.count(i) > 1}, key=str):
        say(REWRITTEN, f"panel id {pid} is used by more than one panel: Grafana renumbers them")
    for p in flat:
        _review_panel(p, ds_vars, defined, say)
    for message in _overlaps(panels):
        say(REWRITTEN, message + ": Grafana's grid moves it down")
    return found


def _review_panel(p: Mapping[str, Any], ds_vars: set[Any], defined: set[Any],
                  say: Callable[[str, str], None]) -> None:
    where = f"panel {p.get('id')} {p.get('title')!r}"
    if not p.get("type"):
        say(BREAKS, f"{where} has no type: Grafana shows 'panel plugin not found'")
    g = p.get("gridPos")
    if not isinstance(g, dict) or not all(isinstance(g.get(k), int) for k in "xywh"):
        say(REWRITTEN, f"{where}: no integer gridPos x, y, w, h: Grafana places it")
    elif not (0 <= g["x"] < GRID_COLUMNS and 1 <= g["w"] <= GRID_COLUMNS and g["x"] + g["w"] <= GRID_COLUMNS
              and g["y"] >= 0 and g["h"] >= 1):
        say(REWRITTEN, f"{where}: gridPos {g} is outside the 24-column grid: Grafana fits it in")
    if p.get("type") == "row":
        return
    targets = [t for t in p.get("targets") or [] if isinstance(t, dict)]
    panel_ds = p.get("datasource")
    mixed = _datasource_uid(panel_ds) == "-- Mixed --"
    for ds in ([] if mixed else [panel_ds] if targets else []) + [t.get("datasource") for t in targets
                                                                   if t.get("datasource") is not None]:
        if not _portable_datasource(ds, ds_vars):
            say(BREAKS, f"{where}: datasource {ds!r} exists only on the Grafana it came from; use "
                        '{"type": "prometheus", "uid": "${datasource}"} with a datasource variable (or an __inputs '
                        "entry)")
            break
    if mixed and any(t.get("datasource") is None for t in targets):
        say(BREAKS, f"{where}: a '-- Mixed --' panel needs a datasource on each target")
    refs = [t.get("refId") for t in targets if t.get("refId")]
    if len(refs) != len(set(refs)):
        say(BREAKS, f"{where}: two targets share a refId: expressions and transformations can name only one")
    if len(refs) < len(targets):
        say(REWRITTEN, f"{where}: a target has no refId: Grafana letters it")
    for t in targets:
        for m in _VAR.finditer(str(t.get("expr", ""))):
            name = m.group(1) or m.group(3) or m.group(4)
            if name not in defined:
                say(BREAKS, f"{where}: query uses ${name}, which no variable defines")


def _datasource_uid(ds: Any) -> Any:
    return ds.get("uid") if isinstance(ds, dict) else ds


def _portable_datasource(ds: Any, ds_vars: set[Any]) -> bool:
    """True for a datasource that works on any Grafana: none (the default), a built-in, a variable or an input."""
    uid = _datasource_uid(ds)
    if uid is None or uid in BUILTIN_DATASOURCES:
        return True
    return isinstance(uid, str) and uid.startswith("$") and uid.strip("${}").split(":")[0] in ds_vars


def validate(dashboard: Dashboard | str | Path | Mapping[str, Any]) -> list[str]:
    """What keeps the dashboard from working once imported into Grafana, one line each (empty: it works as it is):
    the findings of :func:`review` that Grafana refuses or leaves broken, not those it rewrites itself."""
    return [str(f) for f in review(dashboard) if f.verdict != REWRITTEN]


def _overlaps(panels: list[dict[str, Any]]) -> list[str]:
    cells: dict[tuple[int, int], str] = {}
    found = []

    def place(p: dict[str, Any]) -> None:
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "xywh"):
            return
        for y in range(g["y"], g["y"] + g["h"]):
            for x in range(g["x"], g["x"] + g["w"]):
                other = cells.get((x, y))
                if other is not None:
                    found.append(f"panel {p.get('title')!r} overlaps {other!r} at x={x}, y={y}")
                    return
                cells[(x, y)] = str(p.get("title"))

    for p in panels:  # a collapsed row's panels are laid out only when it opens: check them on their own grid
        place(p)
        if p.get("type") == "row" and p.get("panels"):
            found += _overlaps(p["panels"])
    return found


# --- the exercise check --------------------------------------------------------------------------------------------

def add_panel(dashboard: str | Path | Mapping[str, Any], panel: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the dashboard's JSON model with ``panel`` added: the next free id, the ``$datasource`` variable as
    its datasource and, without a gridPos, half the width below the open part of the dashboard (above any collapsed
    rows at the end, which move down), where it shows without opening a row."""
    model = json.loads(json.dumps(_read(dashboard)[0]))  # a deep copy that is plain JSON
    panels: list[dict[str, Any]] = model.setdefault("panels", [])
    flat = [p for top in panels for p in [top, *(top.get("panels") or [])]]
    new = {"datasource": {"type": "prometheus", "uid": "${datasource}"}, **json.loads(json.dumps(panel))}
    new["id"] = max([p.get("id") or 0 for p in flat], default=0) + 1
    for t in new.get("targets") or []:
        t.setdefault("datasource", new["datasource"])
    at = len(panels)
    while at > 0 and panels[at - 1].get("type") == "row" and panels[at - 1].get("collapsed"):
        at -= 1
    open_part = [p for p in panels[:at] for p in [p, *(p.get("panels") or [])]]
    y = max([p["gridPos"]["y"] + p["gridPos"]["h"] for p in open_part if "gridPos" in p], default=0)
    new.setdefault("gridPos", {"x": 0, "y": y, "w": GRID_COLUMNS // 2, "h": 8})
    for row in panels[at:]:  # the collapsed rows at the end move below the new panel
        for p in [row, *(row.get("panels") or [])]:
            p["gridPos"]["y"] += new["gridPos"]["h"]
    panels.insert(at, new)
    return model


def check_panel(dashboard: str | Path | Mapping[str, Any], title: str, *,
                variables: Mapping[str, str | Sequence[str]] | None = None,
                time_range: str | float = "15m") -> str | None:
    """What is wrong with panel ``title`` of a dashboard JSON (file, shipped name or dict), or None when it imports
    into Grafana, is a type labkit draws, and its queries return data on the live lab."""
    try:
        board = load(dashboard)
    except DashboardError as exc:
        return str(exc)
    problems = validate(board)
    if problems:
        return "Grafana would refuse it, or import it broken: " + "; ".join(problems)
    try:
        panel = board.panel(title)
    except DashboardError as exc:
        return str(exc)
    if (count := [p.title for p in board.panels].count(title)) > 1:
        return f"{count} panels are titled {title!r}: give the new one a title of its own"
    if not panel.supported:
        return f"panel {title!r} has type {panel.type!r}; labkit draws " + ", ".join(SUPPORTED)
    if not any(t.expr.strip() for t in panel.targets):
        return f"panel {title!r} has no query: add a target with an 'expr' (PromQL) and a 'refId'"
    try:
        data = panel_data(board, panel, variables=variables, time_range=time_range)
    except LabkitError as exc:
        return f"panel {title!r} does not render: {exc}"
    if not has_data(data):
        sent = "; ".join(data.attrs.get("queries", []))
        return (f"panel {title!r} renders, but its queries return no data on the lab: {sent}. "
                "Try the expression in Prometheus' Graph tab (lk.promql.prometheus_url())")
    figure(panel, data)
    return None


# --- the widget ----------------------------------------------------------------------------------------------------

TIME_RANGES = ("5m", "15m", "30m", "1h", "3h", "6h")
QUERY_WORKERS = 6  # panels queried at once


def _key(panel: Panel) -> int | str:
    return panel.id if panel.id is not None else panel.title


def _figure_bundle(fig: go.Figure) -> dict[str, Any]:
    # The plotly mimetype (JupyterLab draws it offline); never plotly.js embedded in the notebook.
    return {"output_type": "display_data", "metadata": {},
            # plotly's own encoder: arrays, NaN and timestamps become the JSON a kernel message may carry
            "data": {"application/vnd.plotly.v1+json": json.loads(fig.to_json()),
                     "text/plain": f"<{fig.layout.meta['type'] if fig.layout.meta else 'panel'} panel "
                                   f"{fig.layout.title.text!r}>"}}


class DashboardView(w.VBox):
    """A rendered dashboard: variable dropdowns and a time range on top, rows of panels in Grafana's grid below.

    After each draw, ``figures`` (title -> plotly Figure), ``data`` (title -> DataFrame) and ``errors``
    (title -> message) hold what every drawn panel shows; ``unsupported`` lists the panels not drawn."""

    def __init__(self, dashboard: Dashboard, *, variables: Mapping[str, str | Sequence[str]] | None = None,
                 time_range: str = "15m") -> None:
        super().__init__()
        self.dashboard = dashboard
        self.unsupported = dashboard.unsupported
        self.figures: dict[str, go.Figure] = {}
        self.data: dict[str, pd.DataFrame] = {}
        self.errors: dict[str, str] = {}
        self.choices: dict[str, Choice] = {}
        self._busy = False
        self._status = w.HTML()
        self._time = w.Dropdown(options=sorted({*TIME_RANGES, time_range}, key=duration_seconds), value=time_range,
                                description="time range", layout=w.Layout(width="200px"))
        self._refresh = w.Button(description="refresh", icon="refresh", layout=w.Layout(width="100px"))
        self._refresh.on_click(lambda _b: self.draw())
        self._time.observe(lambda _c: self.draw(), names="value")
        self._dropdowns: dict[str, w.Dropdown] = {}
        self._outputs: dict[int | str, w.Output] = {}  # by panel id (titles may repeat)
        self._sections: list[tuple[Row, w.Widget]] = []
        self._opened: set[int] = set()
        self._pick(variables or {})
        note = ""
        if self.unsupported:
            note = ("<div style='color:#8a6d3b'>not drawn by labkit's renderer (it draws "
                    + ", ".join(SUPPORTED) + "): " + ", ".join(f"<b>{html.escape(t)}</b> ({html.escape(k)})"
                                                      for t, k in self.unsupported) + "</div>")
        header = w.HTML(f"<h3 style='margin:4px 0'>{html.escape(dashboard.title)}</h3>{note}")
        controls = w.HBox([*self._dropdowns.values(), self._time, self._refresh])
        body = [self._section(i, row) for i, row in enumerate(dashboard.rows)]
        self.children = [header, controls, self._status, *body]
        self.draw()

    # variables
    def _pick(self, selected: Mapping[str, str | Sequence[str]], *, offered_only: Collection[str] = ()) -> None:
        self.choices = resolve(self.dashboard, selected, window=self.window, offered_only=offered_only, strict=False)
        self._busy = True
        try:
            for name, choice in self.choices.items():
                if choice.variable.hide == 2 or choice.variable.type == "datasource":
                    continue
                options: list[tuple[str, str | tuple[str, ...]]] = (
                    [("All", ALL)] if choice.variable.include_all else []) + [(o, o) for o in choice.options]
                value = choice.selected[0] if len(choice.selected) == 1 else choice.selected
                if value and value not in [v for _, v in options]:  # chosen in code: several, or not offered
                    options.insert(0, (" + ".join(choice.selected), value))
                if name not in self._dropdowns:
                    dropdown = w.Dropdown(description=choice.variable.label, layout=w.Layout(width="260px"))
                    dropdown.observe(self._changed, names="value")
                    self._dropdowns[name] = dropdown
                dropdown = self._dropdowns[name]
                dropdown.options = options
                if value:
                    dropdown.value = value
        finally:
            self._busy = False

    def _changed(self, change: dict[str, Any]) -> None:
        if self._busy:
            return
        changed = next(n for n, d in self._dropdowns.items() if d is change["owner"])
        self._pick({n: d.value for n, d in self._dropdowns.items() if d.value is not None},
                   offered_only=set(self._dropdowns) - {changed})
        self.draw()

    @property
    def window(self) -> TimeRange:
        return TimeRange.parse(self._time.value if hasattr(self, "_time") else "15m")

    # layout
    def _section(self, index: int, row: Row) -> w.Widget:
        grid = self._grid(row)
        if row.title is None:
            self._opened.add(index)
            return grid
        accordion = w.Accordion(children=[grid], titles=(row.title,),
                                selected_index=None if row.collapsed else 0)
        if not row.collapsed:
            self._opened.add(index)

        def toggled(change: dict[str, Any]) -> None:
            if change["new"] == 0 and index not in self._opened:
                self._opened.add(index)  # Grafana queries a collapsed row's panels only once it opens
                self._draw_row(row)

        accordion.observe(toggled, names="selected_index")
        self._sections.append((row, accordion))
        return accordion

    def _grid(self, row: Row) -> w.Widget:
        if not row.panels:
            return w.HTML("<i>empty row</i>")
        top = min(p.grid.y for p in row.panels)
        height = max(p.grid.y + p.grid.h for p in row.panels) - top
        grid = w.GridspecLayout(height, GRID_COLUMNS, height=f"{height * GRID_UNIT_PX + 8}px",
                                grid_gap="4px")
        for p in row.panels:
            out = w.Output(layout=w.Layout(border="1px solid #e3e3e3", overflow="hidden"))
            if not p.supported:
                out.outputs = ({"output_type": "display_data", "metadata": {}, "data": {
                    "text/html": f"<div style='padding:8px'><b>{html.escape(p.title)}</b><br>panel type "
                                 f"<code>{html.escape(p.type)}</code> is not supported by labkit's renderer</div>",
                    "text/plain": f"{p.title}: panel type {p.type} not supported"}},)
            self._outputs[_key(p)] = out
            y = p.grid.y - top
            grid[y:y + p.grid.h, p.grid.x:min(GRID_COLUMNS, p.grid.x + p.grid.w)] = out
        return grid

    # drawing
    def _draw_panels(self, panels: Sequence[Panel]) -> None:
        window = self.window
        panels = [p for p in panels if p.supported]

        def fetch(panel: Panel) -> pd.DataFrame | LabkitError:
            try:
                return panel_data(self.dashboard, panel, choices=self.choices, time_range=window)
            except LabkitError as exc:
                return exc

        # Queries go out together (as Grafana sends them); the widgets are then updated from this thread.
        with ThreadPoolExecutor(max_workers=QUERY_WORKERS) as pool:
            answers = list(pool.map(fetch, panels))
        for panel, answer in zip(panels, answers, strict=True):
            out = self._outputs[_key(panel)]
            if isinstance(answer, LabkitError):
                self.errors[panel.title] = str(answer)
                self.figures.pop(panel.title, None)
                out.outputs = ({"output_type": "display_data", "metadata": {}, "data": {
                    "text/html": f"<div style='padding:8px;color:#b00'><b>{html.escape(panel.title)}</b><pre>"
                                 f"{html.escape(str(answer))}</pre></div>", "text/plain": str(answer)}},)
                continue
            fig = figure(panel, answer)
            self.errors.pop(panel.title, None)
            self.data[panel.title], self.figures[panel.title] = answer, fig
            out.outputs = (_figure_bundle(fig),)

    def _draw_row(self, row: Row) -> None:
        self._draw_panels(row.panels)

    def draw(self) -> None:
        """Query and redraw every panel of the open rows (the refresh button; dropdowns and time range call it)."""
        started = time.monotonic()
        self._draw_panels([p for i, row in enumerate(self.dashboard.rows) if i in self._opened for p in row.panels])
        picked = ", ".join(f"${n}={'All' if c.is_all else ','.join(c.selected)}" for n, c in self.choices.items()
                           if c.variable.type not in ("datasource",))
        self._status.value = (f"<small>{len(self.figures)} panels drawn from {html.escape(promql.prometheus_url())} "
                              f"in {time.monotonic() - started:.1f}s, last {self._time.value}"
                              f"{'; ' + html.escape(picked) if picked else ''}"
                              f"{'; errors in ' + str(len(self.errors)) if self.errors else ''}</small>"
                              + "".join(f"<div style='color:#b00'>${html.escape(n)}: {html.escape(c.error)}</div>"
                                        for n, c in self.choices.items() if c.error))

    def __repr__(self) -> str:  # the text/plain beside the widget: stable, readable where widgets do not run
        picked = ", ".join(f"${n}={'All' if c.is_all else '+'.join(c.selected)}" for n, c in self.choices.items()
                           if c.variable.type != "datasource")
        rows = "; ".join(f"{r.title or '(top)'}{' (collapsed)' if r.collapsed else ''}: "
                         + ", ".join(p.title for p in r.panels) for r in self.dashboard.rows)
        missing = f"; not drawn: {', '.join(f'{t} ({k})' for t, k in self.unsupported)}" if self.unsupported else ""
        return (f"<dashboard {self.dashboard.title!r}{' ' + picked if picked else ''}: "
                f"{len(self.dashboard.panels)} panels; {rows}{missing}>")

    def expand_all(self) -> DashboardView:
        """Open every collapsed row (which queries its panels), as clicking each row title does."""
        for _row, accordion in self._sections:
            accordion.selected_index = 0
        return self


def render(dashboard: Dashboard | str | Path | Mapping[str, Any], *,
           variables: Mapping[str, str | Sequence[str]] | None = None, time_range: str | None = None) -> DashboardView:
    """The dashboard as a live widget: ``lk.dashboards.render("workloads", variables={"namespace": ns})``.

    ``time_range`` ("15m", "1h") defaults to the dashboard's own (its ``time.from``). Variables resolve as Grafana
    resolves them (``label_values(...)`` is ``curl 'http://127.0.0.1:PORT/api/v1/label/NAME/values?match[]=...'``),
    then each open row's panels are queried (see :func:`panel_data`); collapsed rows are queried when opened."""
    board = dashboard if isinstance(dashboard, Dashboard) else load(dashboard)
    return DashboardView(board, variables=variables, time_range=time_range or _since(board))


def _since(board: Dashboard) -> str:
    span = board.time_from.removeprefix("now-")
    try:
        duration_seconds(span)
    except DashboardError:
        return "15m"  # an absolute time range: the lab's Prometheus keeps recent data, show the last 15 minutes
    return span


__all__ = ["MIGRATED", "SUPPORTED", "Dashboard", "DashboardError", "DashboardView", "Finding", "Panel", "Variable",
           "add_panel", "check_panel", "figure", "format_value", "load", "panel_data", "panel_figure", "parse",
           "render", "review", "shipped", "validate"]
