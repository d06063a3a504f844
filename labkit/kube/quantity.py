"""Kubernetes quantities (``resource.Quantity``) as numbers, and back: the one parser the package uses.

``500m`` -> 0.5, ``1Gi`` -> 1073741824, ``120130n`` -> 0.00012013, ``1e3`` -> 1000. Pure and light: the simulators,
the insight engine and the lessons all read requests, limits and metrics with it.
"""

from __future__ import annotations

import re

# apimachinery's suffixes: decimal SI (n u m "" k M G T P E) and binary (Ki Mi Gi Ti Pi Ei).
UNITS = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
         "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}
_QUANTITY = re.compile(r"([+-]?[0-9]*\.?[0-9]+)(?:[eE]([+-]?[0-9]+))?([a-zA-Z]*)")


def quantity(text: str | int | float | None) -> float:
    """A quantity as a number (0.0 for None); ValueError for text that is not one."""
    if text is None:
        return 0.0
    if isinstance(text, int | float):
        return float(text)
    m = _QUANTITY.fullmatch(str(text).strip())
    if not m or m.group(3) not in UNITS or (m.group(2) and m.group(3)):
        raise ValueError(f"not a quantity: {text!r}")
    return float(m.group(1)) * 10.0 ** int(m.group(2) or 0) * UNITS[m.group(3)]


def optional_quantity(text: str | int | float | None) -> float | None:
    """Like :func:`quantity`, but None for a value that is absent (None or "")."""
    return None if text is None or text == "" else quantity(text)


def format_quantity(resource: str, value: float) -> str:
    """A number back as a quantity the way kubectl writes it for ``resource`` (cpu in millicores, memory in Mi)."""
    if resource.endswith("cpu"):
        milli = round(value * 1000)
        return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    if resource.endswith(("memory", "storage")):
        return f"{int(-(-value // 2**20))}Mi"
    return str(int(value))
