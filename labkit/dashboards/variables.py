"""Variables and the time range (part of :mod:`labkit.dashboards`)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from ..errors import LabkitError
from ..i18n import _
from ..observability import promql
from ..settings import DATASOURCE_SCRAPE_INTERVAL_S, SCRAPE_INTERVAL_S
from .model import ALL, POINTS, Dashboard, DashboardError, Variable, number


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
        raise DashboardError(_("{text!r} is not a duration").format(text=text),
                             fix=_('write it as Prometheus does: "30s", "5m", "1h"'))
    return sum(float(n) * _DURATION_S[u] for n, u in parts)


def duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{int(seconds * 1000)}ms"


VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


def _regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(r"\\\\\1", value)  # doubled: the value lands inside a PromQL string


def interpolate(text: str, choices: Mapping[str, Choice], window: TimeRange) -> str:
    """``text`` with ``$var``, ``${var}``, ``${var:fmt}``, ``[[var]]`` and Grafana's ``$__`` built-ins replaced."""
    builtins = {"__interval": duration(window.step_s), "__interval_ms": str(int(window.step_s * 1000)),
                "__rate_interval": duration(window.rate_interval_s), "__range": duration(window.seconds),
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

    return VAR.sub(one, text)


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
        raise DashboardError(_("variable ${name}: labkit reads query variables written as label_values(...), "
                               "metrics(...) or query_result(...), not {query!r}").format(name=variable.name,
                                                                                          query=variable.query),
                             fix=_("write it as label_values(metric{selector}, label)"))
    if variable.regex:
        body, _slash, flags = variable.regex.strip().removeprefix("/").rpartition("/")  # Grafana writes /re/flags
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
        found.sort(key=lambda v: number(re.sub(r"[^\d.]", "", v) or None) or 0.0, reverse=variable.sort == 4)
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


