"""PromQL against the lab's own Prometheus, answers as pandas DataFrames.

Same as ``curl 'http://127.0.0.1:PORT/api/v1/query?query=...'``; the URL comes from ``labkit status``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from .. import addons
from ..errors import LabkitError
from ..i18n import _
from ..settings import SCRAPE_INTERVAL


class PrometheusUnavailable(LabkitError):
    """The lab's Prometheus is not installed, not running, or not answering."""


class PromQLError(LabkitError):
    """Prometheus rejected a query (bad syntax, unknown function, ...)."""


def prometheus_url() -> str:
    """Base URL of the lab's Prometheus; says how to get one when there is none."""
    state = next(s for s in addons.status() if s.name == "prometheus")
    if state.url is None:
        raise PrometheusUnavailable(_("the lab's Prometheus is not running"),
                                    fix="labkit up --with prometheus   # "
                                    + _("or {command}").format(command="lk.addons.require('prometheus')"))
    return state.url


def _get(path: str, params: dict[str, str], *, timeout: float) -> Any:
    url = f"{prometheus_url()}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 -- loopback URL we built
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        asked = params.get("query") or params.get("match[]") or path
        raise PromQLError(_("Prometheus rejected {query!r}: {error}").format(query=asked,
                                                                            error=body.get("error", exc.reason)),
                          fix=_("check the expression in the Prometheus UI (Graph tab) at {url}")
                          .format(url=prometheus_url())) from None
    except (urllib.error.URLError, OSError) as exc:
        raise PrometheusUnavailable(_("the lab's Prometheus at {url} does not answer ({error})")
                                    .format(url=prometheus_url(), error=exc),
                                    fix="labkit status   # "
                                    + _("then `labkit up --with prometheus` to restart it")) from None
    return body["data"]


def _frame(result: list[dict[str, Any]], *, matrix: bool) -> pd.DataFrame:
    rows = []
    for series in result:
        labels = {k: v for k, v in series["metric"].items()}
        points = series["values"] if matrix else [series["value"]]
        for ts, value in points:
            rows.append({**labels, "time": datetime.fromtimestamp(float(ts), tz=UTC), "value": float(value)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["time", "value"])
    label_cols = sorted(c for c in frame.columns if c not in ("time", "value"))
    frame = frame[label_cols + ["time", "value"]]
    return frame.sort_values(label_cols + ["time"]).reset_index(drop=True)


def query(expr: str, *, at: datetime | float | None = None, timeout: float = 10.0) -> pd.DataFrame:
    """An instant query: one row per series, its labels as columns, then ``time`` and ``value``."""
    params = {"query": expr}
    if at is not None:
        params["time"] = str(at.timestamp() if isinstance(at, datetime) else at)
    return _frame(_get("/api/v1/query", params, timeout=timeout)["result"], matrix=False)


def query_range(expr: str, *, minutes: float = 5.0, step: str = SCRAPE_INTERVAL, timeout: float = 20.0) -> pd.DataFrame:
    """A range query over the last ``minutes``: one row per series per step (long format, ready to plot)."""
    end = time.time()
    params = {"query": expr, "start": str(end - minutes * 60), "end": str(end), "step": step}
    return _frame(_get("/api/v1/query_range", params, timeout=timeout)["result"], matrix=True)


def label_values(label: str, *, match: str | None = None, timeout: float = 10.0) -> list[str]:
    """Values a label takes, optionally only on series matching ``match`` (a Grafana ``label_values(...)`` variable).

    Same as ``curl 'http://127.0.0.1:PORT/api/v1/label/LABEL/values?match[]=SELECTOR'``."""
    params = {"match[]": match} if match else {}
    return sorted(_get(f"/api/v1/label/{urllib.parse.quote(label)}/values", params, timeout=timeout))


def wait_for_series(expr: str, *, min_rows: int = 1, timeout: float = 60.0) -> pd.DataFrame:
    """Repeat an instant query until it returns ``min_rows`` series (scrapes take a few seconds)."""
    deadline = time.monotonic() + timeout
    frame = query(expr)
    while len(frame) < min_rows:
        if time.monotonic() > deadline:
            raise PrometheusUnavailable(
                _("{expr!r} returned {rows} series after {timeout:.0f}s, expected at least {min_rows}").format(
                    expr=expr, rows=len(frame), timeout=timeout, min_rows=min_rows),
                fix=_("open {url}/targets to see whether the scrape works; `labkit status` shows the exporter")
                .format(url=prometheus_url()))
        time.sleep(1.0)
        frame = query(expr)
    return frame


def targets() -> pd.DataFrame:
    """What Prometheus scrapes and whether the last scrape worked (its Status -> Targets page)."""
    data = _get("/api/v1/targets", {"state": "active"}, timeout=10)
    rows = [{"job": t["labels"].get("job"), "instance": t["labels"].get("instance"), "url": t["scrapeUrl"],
             "health": t["health"], "last_error": t["lastError"]} for t in data["activeTargets"]]
    return pd.DataFrame(rows, columns=["job", "instance", "url", "health", "last_error"])


def api(path: str, params: dict[str, str] | None = None, *, timeout: float = 10.0) -> Any:
    """Any read-only endpoint of Prometheus' HTTP API, its ``data`` (``curl http://127.0.0.1:PORT/api/v1/...``).

    E.g. ``api("/api/v1/targets")``, ``api("/api/v1/status/tsdb")``, ``api("/api/v1/rules")``.
    """
    return _get(path, params or {}, timeout=timeout)


def target_details(job: str | None = None) -> list[dict[str, Any]]:
    """The active targets as the API returns them (discovered labels before relabelling, labels after, last scrape).

    Same as ``curl 'http://127.0.0.1:PORT/api/v1/targets?state=active'``.
    """
    found = _get("/api/v1/targets", {"state": "active"}, timeout=10)["activeTargets"]
    return [t for t in found if job is None or t["labels"].get("job") == job]


def reload() -> None:
    """Make Prometheus read its config and rule files again (``curl -X POST http://127.0.0.1:PORT/-/reload``)."""
    request = urllib.request.Request(f"{prometheus_url()}/-/reload", method="POST")  # noqa: S310 -- loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 -- loopback URL we built
            resp.read()
    except urllib.error.HTTPError as exc:
        raise PromQLError(_("Prometheus refused to reload: {error}").format(
                              error=exc.read().decode(errors="replace").strip()),
                          fix=_("`promtool check config` and `promtool check rules` on the files say what is wrong")
                          ) from None
