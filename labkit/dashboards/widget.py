"""The widget (part of :mod:`labkit.dashboards`)."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd
import plotly.graph_objects as go

from ..errors import LabkitError
from ..i18n import _
from ..observability import promql
from .data import panel_data
from .figures import figure, since
from .model import (
    ALL,
    GRID_COLUMNS,
    GRID_UNIT_PX,
    SUPPORTED,
    Dashboard,
    Panel,
    Row,
    load,
)
from .variables import Choice, TimeRange, duration_seconds, resolve

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
                                description=_("time range"), layout=w.Layout(width="200px"))
        self._refresh = w.Button(description=_("refresh"), icon="refresh", layout=w.Layout(width="100px"))
        self._refresh.on_click(lambda _b: self.draw())
        self._time.observe(lambda _c: self.draw(), names="value")
        self._dropdowns: dict[str, w.Dropdown] = {}
        self._outputs: dict[int | str, w.Output] = {}  # by panel id (titles may repeat)
        self._sections: list[tuple[Row, w.Widget]] = []
        self._opened: set[int] = set()
        self._pick(variables or {})
        note = ""
        if self.unsupported:
            panels = ", ".join(f"<b>{html.escape(t)}</b> ({html.escape(k)})" for t, k in self.unsupported)
            note = ("<div style='color:#8a6d3b'>" + _("not drawn by labkit's renderer (it draws {types}): {panels}")
                    .format(types=", ".join(SUPPORTED), panels=panels) + "</div>")
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
            return w.HTML(f"<i>{_('empty row')}</i>")
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
    return DashboardView(board, variables=variables, time_range=time_range or since(board))
