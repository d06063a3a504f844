"""Rules: Services and their endpoints (part of :mod:`labkit.insight`)."""

from __future__ import annotations

import difflib
from typing import Any

from ..i18n import _
from .containers import ready_endpoints, selected
from .findings import Evidence, Finding
from .objects import jsonpatch, live
from .snapshot import Snapshot, meta


def service_findings(snap: Snapshot) -> list[Finding]:
    found = []
    for svc in snap.services:
        selector = (svc.get("spec") or {}).get("selector") or {}
        ns, name = meta(svc)["namespace"], meta(svc)["name"]
        pods = [p for p in snap.pods if meta(p).get("namespace") == ns and live(p)]
        if not selector or any(selected(meta(p).get("labels") or {}, selector) for p in pods):
            continue
        # Which workload did it mean? The one whose pod labels are closest to the selector (or named like it).
        best, best_score = None, 0.0
        for p in pods:
            labels = {k: v for k, v in (meta(p).get("labels") or {}).items() if k != "pod-template-hash"}
            score = sum(difflib.SequenceMatcher(None, str(selector.get(k, "")), str(v)).ratio()
                        for k, v in labels.items() if k in selector) + (1 if name in labels.values() else 0)
            if score > best_score:
                best, best_score = labels, score
        sel_text = ",".join(f"{k}={v}" for k, v in selector.items())
        ev = [Evidence("service", _("service {name} selects {selector}").format(name=name, selector=sel_text),
                      f"kubectl -n {ns} get service {name} -o jsonpath='{{.spec.selector}}'"),
              Evidence("pods", _("no pod in {namespace} has labels {selector}").format(namespace=ns, selector=sel_text),
                       f"kubectl -n {ns} get pods -l {sel_text}"),
              Evidence("endpoints", _("service {name} has {ready} ready endpoint(s)").format(
                  name=name, ready=ready_endpoints(snap, ns, name)),
                       f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name}")]
        if best:
            ev.append(Evidence("pods", _("the pods it most likely means carry {labels}").format(
                labels=",".join(f"{k}={v}" for k, v in best.items())), f"kubectl -n {ns} get pods --show-labels"))
            fix = jsonpatch(ns, "Service", name, [{"op": "replace", "path": "/spec/selector", "value": best}])
        else:
            fix = (f"kubectl -n {ns} get pods --show-labels   # "
                   + _("then set the Service's selector to their labels"))
        found.append(Finding("ServiceSelectorMismatch", f"service/{name}", ns, _(
            "its selector {selector} matches no pod, so it has no endpoints and every request to it fails").format(
                selector=sel_text), ev, fix))
    return found + _service_ports(snap)


def _declared_ports(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The container ports the pods declare (name, containerPort), once each."""
    seen: dict[tuple[Any, Any], dict[str, Any]] = {}
    for p in pods:
        for c in (p.get("spec") or {}).get("containers") or []:
            for port in c.get("ports") or []:
                seen.setdefault((port.get("name"), port.get("containerPort")), port)
    return list(seen.values())


def _port_meant(wanted: int | str, service_port: int, declared: list[dict[str, Any]]) -> int | str:
    """The declared port a wrong targetPort most likely meant: the one with the Service's own number, else the
    closest name, else the first; named if it has a name (a name survives the container changing its number)."""
    def key(port: dict[str, Any]) -> tuple[bool, float]:
        return (port.get("containerPort") == service_port,
                difflib.SequenceMatcher(None, str(wanted), str(port.get("name") or "")).ratio())
    best = max(declared, key=key)
    return best.get("name") or best["containerPort"]


def _service_ports(snap: Snapshot) -> list[Finding]:
    """A targetPort no selected pod declares. A *named* one is certain: the EndpointSlice controller cannot resolve
    it, so the slices list the pods with no port and kube-proxy programs nothing (`kubectl get endpoints` says
    <none>). A *number* no container declares is likely wrong (declaring ports is optional, but these pods declare
    theirs), and the connection is refused on a cluster where the pods run."""
    found = []
    for svc in snap.services:
        spec = svc.get("spec") or {}
        selector = spec.get("selector") or {}
        ns, name = meta(svc)["namespace"], meta(svc)["name"]
        pods = [p for p in snap.pods if meta(p).get("namespace") == ns and live(p)
                and selected(meta(p).get("labels") or {}, selector)]
        declared = _declared_ports(pods)
        if not pods or not declared:
            continue
        for i, sp in enumerate(spec.get("ports") or []):
            target = sp.get("targetPort", sp.get("port"))
            named = isinstance(target, str) and not target.isdigit()
            if any((p.get("name") if named else p.get("containerPort")) == (target if named else int(target))
                   for p in declared):
                continue
            meant = _port_meant(target, sp.get("port"), declared)
            has = ", ".join(f"{p.get('name') or _('(unnamed)')}={p.get('containerPort')}" for p in declared)
            sel_text = ",".join(f"{k}={v}" for k, v in selector.items())
            ev = [Evidence("service", _("service {name} port {port} targets {target!s}").format(
                name=name, port=sp.get("port"), target=target),
                           f"kubectl -n {ns} get service {name} -o jsonpath='{{.spec.ports}}'"),
                  Evidence("pods", _("its {count} pod(s) ({selector}) declare the ports {ports}").format(
                      count=len(pods), selector=sel_text, ports=has),
                           f"kubectl -n {ns} get pods -l {sel_text} "
                           f"-o jsonpath='{{.items[0].spec.containers[*].ports}}'")]
            if named:
                listed = ready_endpoints(snap, ns, name)
                ev.append(Evidence("endpoints", _("service {name}'s EndpointSlices list {listed} ready pod(s) with no "
                                                  "port for {target!r}, so no traffic reaches them").format(
                    name=name, listed=listed, target=target),
                                   f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name} "
                                   f"-o jsonpath='{{.items[*].ports}}'; kubectl -n {ns} get endpoints {name}"))
            fix = jsonpatch(ns, "Service", name, [{"op": "replace", "path": f"/spec/ports/{i}/targetPort",
                                                    "value": meant}])
            summary = (_("its port {port} targets {target!s}, but no pod has a port named {target!s} (they declare "
                         "{ports}), so connections to it are refused") if named else
                       _("its port {port} targets {target!s}, but no container declares port {target!s} (they declare "
                         "{ports}), so connections to it are refused")).format(port=sp.get("port"), target=target,
                                                                               ports=has)
            found.append(Finding("ServicePortMismatch", f"service/{name}", ns, summary, ev, fix))
    return found


