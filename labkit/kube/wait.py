"""Wait for an object to reach a condition: list, then watch from its resourceVersion, under a deadline.

Conditions are spelled like ``kubectl wait --for``: ``condition=Available``, ``jsonpath={.status.readyReplicas}=3``,
``delete``; or pass a Python predicate. Introduced in notebook 00_lab_tour.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from ..errors import NotFound, WaitFailed, WaitTimeout
from ..i18n import _
from .client import Lab, api_errors

Predicate = Callable[[dict[str, Any] | None], bool]


T = TypeVar("T")
POLL_INTERVAL_S = 0.5


def poll(check: Callable[[], tuple[bool, T]], *, timeout: float, what: str | Callable[[T], str], fix: str,
         interval: float = POLL_INTERVAL_S) -> T:
    """Ask ``check`` (returns done, what it saw) every ``interval`` until it says done; return what it saw. For state
    that only an HTTP page or several objects together hold (Jaeger, the log store, a scenario's symptom): nothing
    to watch. At the deadline: :class:`WaitTimeout` with ``what`` (or ``what(seen)``) and ``fix``."""
    deadline = time.monotonic() + timeout
    while True:
        done, seen = check()
        if done:
            return seen
        if time.monotonic() > deadline:
            message = what(seen) if callable(what) else _("{what} within {timeout:.0f}s").format(what=what,
                                                                                                   timeout=timeout)
            raise WaitTimeout(message, last_seen=seen, fix=fix)
        time.sleep(interval)


def _jsonpath(obj: dict[str, Any] | None, path: str) -> Any:
    """The tiny subset of kubectl's JSONPath that waits need: {.a.b[0].c}."""
    value: Any = obj
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path.strip("{}").lstrip(".")):
        if value is None:
            return None
        if part.startswith("["):
            idx = int(part[1:-1])
            value = value[idx] if isinstance(value, list) and len(value) > idx else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


def has_condition(obj: dict[str, Any] | None, cond_type: str, status: str = "True") -> bool:
    """True when status.conditions has ``cond_type`` with ``status`` (as ``kubectl wait --for=condition=``)."""
    for cond in (obj or {}).get("status", {}).get("conditions") or []:
        if cond.get("type", "").lower() == cond_type.lower():
            return str(cond.get("status")) == status
    return False


def parse_condition(spec: str | Predicate) -> Predicate:
    """Turn a kubectl-style ``--for`` spec into a predicate over the object (None = deleted)."""
    if callable(spec):
        return spec
    if spec == "delete":
        return lambda obj: obj is None
    if spec.startswith("condition="):
        body = spec[len("condition="):]
        cond_type, _eq, status = body.partition("=")
        return lambda obj: obj is not None and has_condition(obj, cond_type, status or "True")
    if spec.startswith("jsonpath="):
        path, _eq, expected = spec[len("jsonpath="):].rpartition("=")
        return lambda obj: obj is not None and str(_jsonpath(obj, path)) == expected
    raise ValueError(f"unknown wait condition {spec!r}: use condition=X, jsonpath={{.path}}=value, or delete")


def deployment_failed(obj: dict[str, Any] | None, *, since: float | None = None) -> str | None:
    """ProgressDeadlineExceeded in a status that describes the current spec: waiting longer will not help.

    With ``since`` (when a wait began), a condition that began before the wait counts only once it has lasted a
    further progressDeadlineSeconds into the wait: right after an undo the controller keeps the old condition
    until the new rollout makes progress.
    """
    status = (obj or {}).get("status") or {}
    if not obj or status.get("observedGeneration", 0) < (obj.get("metadata") or {}).get("generation", 0):
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            # The controller refreshes lastUpdateTime while it stays timed out; the transition says when it began.
            began = cond.get("lastTransitionTime")
            when = dt.datetime.fromisoformat(began.replace("Z", "+00:00")).timestamp() if began else None
            deadline = (obj.get("spec") or {}).get("progressDeadlineSeconds", 600)
            if since is None or when is None or when >= since or time.time() - since > deadline:
                return f"ProgressDeadlineExceeded: {cond.get('message', '')}"
    return None


def _summary(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return "the object does not exist"
    status = obj.get("status") or {}
    keep = {k: v for k, v in status.items() if k not in ("conditions", "containerStatuses")}
    conds = [f"{c.get('type')}={c.get('status')}" + (f" ({c.get('reason')})" if c.get("reason") else "")
             for c in status.get("conditions") or []]
    return f"status {keep}" + (f"; conditions {', '.join(conds)}" if conds else "")


def wait_for(lab: Lab, kind: str, name: str, *, namespace: str | None = None,
             condition: str | Predicate = "condition=Ready", timeout: float = 60.0,
             fail_when: Callable[[dict[str, Any] | None], str | None] | None = None,
             api_version: str | None = None) -> dict[str, Any] | None:
    """Block until ``kind/name`` satisfies ``condition``; return the object (None when waiting for delete).

    Introduced in notebook 00_lab_tour. Same as ``kubectl wait KIND/NAME --for=CONDITION --timeout=Ns``.
    Raises WaitTimeout with the last status seen, or WaitFailed when ``fail_when`` names a failure.
    """
    predicate = parse_condition(condition)
    if fail_when is None and kind.lower() == "deployment":
        started = time.time()
        fail_when = lambda obj: deployment_failed(obj, since=started)  # noqa: E731
    res = lab.dynamic.resources.get(api_version=api_version, kind=kind) if api_version else \
        lab.dynamic.resources.get(kind=kind)
    ns = namespace if res.namespaced else None
    deadline = time.monotonic() + timeout
    ns_flag = f" -n {namespace}" if ns else ""
    cond_text = condition if isinstance(condition, str) else _("the condition")

    def check(obj: dict[str, Any] | None) -> bool:
        if fail_when and (reason := fail_when(obj)):
            raise WaitFailed(_("{kind}/{name} will not become {condition}: {reason}").format(
                kind=kind, name=name, condition=cond_text, reason=reason),
                             fix=f"kubectl describe {kind.lower()}/{name}{ns_flag}")
        return predicate(obj)

    box: dict[str, dict[str, Any] | None] = {"obj": None}

    def relist() -> str | None:
        # NotFound is raised by api_errors as it converts the 404, so it is caught outside the block.
        try:
            with api_errors(_("waiting for {kind}/{name}").format(kind=kind, name=name), server=lab.server):
                box["obj"] = res.get(name=name, namespace=ns).to_dict()
        except NotFound:
            box["obj"] = None
        return (box["obj"] or {}).get("metadata", {}).get("resourceVersion")

    def on_event(event: dict[str, Any]) -> None:
        box["obj"] = None if event["type"] == "DELETED" else event["raw_object"]

    if _list_then_watch(lab, res, f"{kind}/{name}", deadline, relist, on_event, lambda: check(box["obj"]),
                        namespace=ns, name=name):
        return box["obj"]
    raise WaitTimeout(
        _("{kind}/{name} did not reach {condition} within {timeout:.0f}s; last seen: {last_seen}").format(
            kind=kind, name=name, condition=cond_text, timeout=timeout, last_seen=_summary(box["obj"])),
        last_seen=box["obj"],
        fix=f"kubectl describe {kind.lower()}/{name}{ns_flag}   # "
            + _("and: {command}").format(command=f"kubectl get events{ns_flag}"),
    )


def wait_for_set(lab: Lab, kind: str, *, namespace: str, label_selector: str = "",
                 condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0,
                 api_version: str | None = None, field_selector: str = "") -> list[dict[str, Any]]:
    """Block until the objects matching the selectors together satisfy ``condition``; return them.

    For what no single object says (the ready endpoints of a Service across its EndpointSlices, the pods left after
    a scale-down, the events about a node): list, then watch from the list's resourceVersion, re-judging the whole
    set on every change. Same as watching ``kubectl get KIND -l SELECTOR --field-selector F -w`` until it looks right.
    """
    selectors = {k: v for k, v in (("label_selector", label_selector), ("field_selector", field_selector)) if v}
    shown = " ".join(filter(None, [f"-l {label_selector}" if label_selector else "",
                                   f"--field-selector {field_selector}" if field_selector else ""]))
    res = lab.dynamic.resources.get(api_version=api_version, kind=kind) if api_version else \
        lab.dynamic.resources.get(kind=kind)
    deadline = time.monotonic() + timeout
    objects: dict[str, dict[str, Any]] = {}

    def relist() -> str | None:
        with api_errors(_("listing {kind} {shown}").format(kind=kind, shown=shown), server=lab.server):
            listing = res.get(namespace=namespace, **selectors).to_dict()
        objects.clear()
        objects.update({o["metadata"]["name"]: o for o in listing.get("items") or []})
        return listing["metadata"].get("resourceVersion")

    def on_event(event: dict[str, Any]) -> None:
        obj = event["raw_object"]
        if event["type"] == "DELETED":
            objects.pop(obj["metadata"]["name"], None)
        else:
            objects[obj["metadata"]["name"]] = obj

    if _list_then_watch(lab, res, f"{kind} {shown}", deadline, relist, on_event,
                        lambda: condition(list(objects.values())), namespace=namespace, **selectors):
        return list(objects.values())
    names = ", ".join(sorted(objects)) or _("none")
    raise WaitTimeout(_("{kind} objects {shown} did not reach the condition within {timeout:.0f}s; last seen: {names}")
                      .format(kind=kind, shown=shown, timeout=timeout, names=names), last_seen=list(objects.values()),
                      fix=f"kubectl -n {namespace} get {kind.lower()} {shown} -o yaml")


def _list_then_watch(lab: Lab, res: Any, what: str, deadline: float, relist: Callable[[], str | None],
                     on_event: Callable[[dict[str, Any]], None], done: Callable[[], bool], **selectors: Any) -> bool:
    """The one wait loop: ``relist`` (returns the resourceVersion), judge, watch from there feeding ``on_event``
    and judging after each event; a 410 Gone or a watch that ends re-lists. True when ``done``, False at deadline.
    """
    while True:
        rv = relist()
        if done():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        w = watch.Watch()
        try:
            with api_errors(_("watching {what}").format(what=what), server=lab.server):
                for event in _watch(lab, res, w, remaining, resource_version=rv, **selectors):
                    if event["type"] == "ERROR":
                        break  # e.g. 410 Gone: the resourceVersion is too old; re-list, then watch again
                    on_event(event)
                    if done():
                        return True
                    if time.monotonic() >= deadline:
                        break
        finally:
            w.stop()
        if time.monotonic() >= deadline:
            return False


def _watch(lab: Lab, res: Any, w: watch.Watch, remaining: float, **selectors: Any) -> Any:
    """The dynamic client's watch until ``remaining`` seconds; a 410 Gone ends it quietly (the caller re-lists)."""
    try:
        yield from lab.dynamic.watch(res, timeout=max(1, int(remaining)), watcher=w, **selectors)
    except ApiException as exc:
        if exc.status != 410:
            raise
