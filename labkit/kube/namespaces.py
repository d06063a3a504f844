"""One namespace per notebook, reset at the top so a notebook can run twice in a row.

Introduced in notebook 00_lab_tour: ``ns = lk.lesson_namespace(lab, "lesson-00")``.
"""

from __future__ import annotations

import time

from kubernetes import client as k8s

from ..errors import NotFound, WaitTimeout
from .client import Lab, api_errors

MANAGED_BY = {"app.kubernetes.io/managed-by": "labkit"}


def lesson_namespace(lab: Lab, name: str, *, timeout: float = 90.0) -> str:
    """Delete ``name`` if it exists (and everything in it), wait until it is gone, create it again.

    Same as ``kubectl delete namespace NAME --wait; kubectl create namespace NAME``.
    """
    try:
        with api_errors(f"resetting namespace {name}", server=lab.server):
            lab.core.delete_namespace(name, propagation_policy="Background")
    except NotFound:
        pass
    _wait_gone(lab, name, timeout=timeout)
    body = k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={**MANAGED_BY, "labkit.io/lesson": name}))
    with api_errors(f"creating namespace {name}", server=lab.server):
        lab.core.create_namespace(body)
    return name


def _wait_gone(lab: Lab, name: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    phase = None
    while time.monotonic() < deadline:
        try:
            with api_errors(f"waiting for namespace {name} to go", server=lab.server):
                ns = lab.core.read_namespace(name)
            phase = ns.status.phase if ns.status else None
        except NotFound:
            return
        # Namespace deletion has no watchable end state short of 404; poll briefly.
        time.sleep(0.5)
    raise WaitTimeout(f"namespace {name} is still {phase} after {timeout:.0f}s",
                      fix=f"kubectl get all -n {name}   # what is left; "
                      f"kubectl get namespace {name} -o yaml   # its finalizers")
