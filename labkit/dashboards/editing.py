"""Editing a dashboard: add a panel to its JSON model, and say what is wrong with one on the live lab (lesson 07's
exercise check uses it; part of :mod:`labkit.dashboards`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import LabkitError
from .data import has_data, panel_data
from .figures import figure
from .model import GRID_COLUMNS, SUPPORTED, DashboardError, load, read
from .review import validate


def add_panel(dashboard: str | Path | Mapping[str, Any], panel: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the dashboard's JSON model with ``panel`` added: the next free id, the ``$datasource`` variable as
    its datasource and, without a gridPos, half the width below the open part of the dashboard (above any collapsed
    rows at the end, which move down), where it shows without opening a row."""
    model = json.loads(json.dumps(read(dashboard)[0]))  # a deep copy that is plain JSON
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


