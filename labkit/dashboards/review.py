"""Would Grafana import it? (part of :mod:`labkit.dashboards`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import BUILTIN_DATASOURCES, GRID_COLUMNS, MIN_SCHEMA_VERSION, Dashboard, panels_from_rows, read
from .variables import VAR

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
    model = dict(dashboard.raw) if isinstance(dashboard, Dashboard) else read(dashboard)[0]
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
        for m in VAR.finditer(str(t.get("expr", ""))):
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


