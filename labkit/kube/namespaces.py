"""One namespace per notebook, reset at the top so a notebook can run twice in a row.

Introduced in notebook 00_lab_tour: ``ns = lk.lesson_namespace(lab, "lesson-00")``.
"""

from __future__ import annotations

from kubernetes import client as k8s

from ..errors import NotFound, WaitTimeout
from ..i18n import _
from .client import Lab, api_errors
from .wait import wait_for

MANAGED_BY = {"app.kubernetes.io/managed-by": "labkit"}


def lesson_namespace(lab: Lab, name: str, *, timeout: float = 90.0) -> str:
    """Delete ``name`` if it exists (and everything in it), wait until it is gone, create it again.

    Same as ``kubectl delete namespace NAME --wait; kubectl create namespace NAME``.
    """
    try:
        with api_errors(_("resetting namespace {name}").format(name=name), server=lab.server):
            lab.core.delete_namespace(name, propagation_policy="Background")
    except NotFound:
        pass
    try:
        wait_for(lab, "Namespace", name, condition="delete", timeout=timeout)
    except WaitTimeout as exc:
        raise WaitTimeout(_("namespace {name} is still there after {timeout:.0f}s").format(name=name, timeout=timeout),
                          last_seen=exc.last_seen,
                          fix=f"kubectl get all -n {name}   # " + _("what is left; {command}").format(
                              command=f"kubectl get namespace {name} -o yaml   # " + _("its finalizers"))) from None
    body = k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={**MANAGED_BY, "labkit.io/lesson": name}))
    with api_errors(_("creating namespace {name}").format(name=name), server=lab.server):
        lab.core.create_namespace(body)
    wait_default_service_account(lab, name)
    return name


def wait_default_service_account(lab: Lab, namespace: str, *, timeout: float = 30.0) -> None:
    """Block until the namespace's ``default`` ServiceAccount exists: until then the API server rejects every pod
    (``serviceaccount "default" not found``), and on a busy machine the controller that makes it can lag seconds.

    Same as ``kubectl wait -n NS serviceaccount/default --for=create``.
    """
    wait_for(lab, "ServiceAccount", "default", namespace=namespace, condition=lambda obj: obj is not None,
             timeout=timeout)
