"""The JSON model (part of :mod:`labkit.dashboards`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LabkitError
from ..i18n import _

SUPPORTED = ("timeseries", "stat", "gauge", "bargauge", "table", "heatmap")
# Older panel types drawn as the type Grafana itself migrates them to when it loads a dashboard (Grafana 11 turns
# the Angular panels into their React successors; a singlestat that shows a gauge becomes a gauge).
MIGRATED = {"graph": "timeseries", "singlestat": "stat", "table-old": "table"}
# A singlestat's valueName as the stat panel's reducer Grafana's migration gives it.
SINGLESTAT_REDUCERS = {"current": "lastNotNull", "avg": "mean", "total": "sum", "first": "firstNotNull",
                       "max": "max", "min": "min", "delta": "delta", "diff": "diff", "range": "range"}
# Grafana's built-in datasources: they name no Prometheus and work on any Grafana.
BUILTIN_DATASOURCES = ("-- Mixed --", "-- Grafana --", "-- Dashboard --", "grafana", "datasource")
DASHBOARD_DIR = Path(__file__).parents[1] / "data" / "dashboards"
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
        raise DashboardError(_("dashboard {dashboard!r} has no panel titled {title!r}").format(dashboard=self.title,
                                                                                               title=title),
                             fix=_("its panels: {panels}").format(panels=", ".join(repr(p.title) for p in self.panels)))


def shipped() -> list[str]:
    """Names of the dashboards the lab ships (``labkit/data/dashboards/*.json``)."""
    return sorted(p.stem for p in DASHBOARD_DIR.glob("*.json"))


def shipped_path(name: str) -> Path:
    """The file of one shipped dashboard (what you would import into Grafana)."""
    return DASHBOARD_DIR / f"{name}.json"


def read(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(source, Mapping):
        return dict(source), "<dict>"
    path = Path(source)
    if isinstance(source, str) and source in shipped():
        path = shipped_path(source)
    if not path.is_file():
        raise DashboardError(_("no dashboard {source!r}: not a shipped one and no such file").format(
                                 source=str(source)),
                             fix=_("lk.dashboards.shipped() lists the lab's; or give the path of a JSON file"))
    try:
        return json.loads(path.read_text()), str(path)
    except ValueError as exc:
        raise DashboardError(_("{path} is not valid JSON: {error}").format(path=path, error=exc),
                             fix=f"python -m json.tool {path}   # " + _("shows where")) from None


def number(value: Any) -> float | None:
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
        levels = [None, *(number(v) for v in str(raw.get("thresholds") or "").split(",") if v.strip())]
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
        min=number(defaults.get("min")), max=number(defaults.get("max")),
        thresholds=tuple(Threshold(number(s.get("value")), str(s.get("color", "green")))
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
    model, source = read(name_or_path)
    return parse(model, source=source)


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

