"""Whom a simulated pod calls for each request it serves: the one call graph behind the workload model's load and
request metrics, its containers' logs and its traces.

Two ways to declare a call, both counted, in this order:

- the first container's env names a URL ``http://SERVICE[.NAMESPACE][...]``, as an app's configuration does
  (``ORDERS_URL=http://orders``; lesson 09's shop);
- the pod annotation ``workload.labkit.io/calls: "checkout, catalog.shop"``: Service names, ``svc`` or
  ``svc.namespace`` (lesson 10's shop, where the calls are the point).

Each request a pod serves calls every Service it names once, one after the other; a Service already on the
request's path (a cycle) and calls deeper than :data:`MAX_DEPTH` are cut, the same for load, logs and spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

CALLS_ANNOTATION = "workload.labkit.io/calls"
# A latency fault: every request a pod of the annotated Service serves takes this much longer
# (`kubectl annotate service checkout workload.labkit.io/added-latency=300ms`).
LATENCY_FAULT_ANNOTATION = "workload.labkit.io/added-latency"
MAX_DEPTH = 6
Key = tuple[str, str]  # (namespace, name)

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|us|µs)?\s*$")
_ENV_URL = re.compile(r"^https?://([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.([a-z0-9-]+))?(\.svc[.a-z]*)?(:\d+)?(/\S*)?$")


def parse_calls(value: str | None, namespace: str) -> list[Key]:
    """``"checkout, catalog.shop"`` -> [(namespace, "checkout"), ("shop", "catalog")]."""
    calls = []
    for word in (value or "").replace(",", " ").split():
        parts = word.lower().split(".")
        calls.append((parts[1] if len(parts) > 1 and parts[1] != "svc" else namespace, parts[0]))
    return calls


def env_calls(pod: Mapping[str, Any]) -> list[Key]:
    """The Services the first container's env values name as ``http://SERVICE[.NAMESPACE]``."""
    namespace = pod.get("metadata", {}).get("namespace", "default")
    containers = pod.get("spec", {}).get("containers") or []
    found = []
    for env in (containers[0].get("env") or []) if containers else []:
        if m := _ENV_URL.match(str(env.get("value") or "")):
            found.append((m.group(4) or namespace, m.group(1)))
    return found


def calls_of(pod: Mapping[str, Any]) -> list[Key]:
    """Every Service ``pod`` calls per request it serves: its env URLs, then its calls annotation, each once."""
    meta = pod.get("metadata", {})
    annotated = parse_calls((meta.get("annotations") or {}).get(CALLS_ANNOTATION), meta.get("namespace", "default"))
    return list(dict.fromkeys([*env_calls(pod), *annotated]))


def parse_duration(text: str | None) -> float:
    """``"300ms"`` -> 0.3, ``"1.5s"`` or ``"1.5"`` -> 1.5; 0.0 when absent or unreadable."""
    match = _DURATION.match(text or "")
    if not match:
        return 0.0
    scale = {"ms": 1e-3, "us": 1e-6, "µs": 1e-6}.get(match.group(2) or "s", 1.0)
    return float(match.group(1)) * scale


def latency_faults(services: Iterable[Mapping[str, Any]]) -> dict[Key, float]:
    """(namespace, Service) -> seconds its :data:`LATENCY_FAULT_ANNOTATION` adds to each request, where set."""
    faults = {}
    for svc in services:
        meta = svc.get("metadata", {})
        added = parse_duration((meta.get("annotations") or {}).get(LATENCY_FAULT_ANNOTATION))
        if added > 0:
            faults[(meta.get("namespace", "default"), meta.get("name", ""))] = added
    return faults
