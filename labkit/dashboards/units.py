"""Units and thresholds (part of :mod:`labkit.dashboards`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .model import Panel, Threshold, color, number

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


def auto_decimals(value: float) -> int:
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
    text = f"{shown:.{auto_decimals(shown) if decimals is None else decimals}f}"
    if unit.startswith("prefix:"):
        return unit.removeprefix("prefix:") + text
    return text + suffix






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
            result = next((r for k, r in options.items() if number(k) == value), None)
        elif kind == "range" and value is not None and math.isfinite(value):
            low, high = number(options.get("from")), number(options.get("to"))
            if (low is None or value >= low) and (high is None or value <= high):
                result = options.get("result")
        elif kind == "special" and (value is None or math.isnan(value)) and options.get("match") in ("null", "nan",
                                                                                                    "null+nan"):
            result = options.get("result")
        if result and result.get("text") is not None:
            return str(result["text"]), color(result["color"]) if result.get("color") else None
    return None


