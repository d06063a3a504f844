"""Read and patch single objects by kind and name, as ``kubectl get -o json`` and ``kubectl patch`` do."""

from __future__ import annotations

from typing import Any

from ..errors import NotFound
from ..i18n import _
from .client import Lab, api_errors


def _resource(lab: Lab, kind: str, api_version: str | None) -> Any:
    return (lab.dynamic.resources.get(api_version=api_version, kind=kind) if api_version
            else lab.dynamic.resources.get(kind=kind))


def get(lab: Lab, kind: str, name: str, *, namespace: str | None = None,
        api_version: str | None = None) -> dict[str, Any] | None:
    """The object as a dict, or None when it does not exist (``kubectl get KIND NAME -o json --ignore-not-found``)."""
    res = _resource(lab, kind, api_version)
    try:
        with api_errors(_("reading {kind}/{name}").format(kind=kind.lower(), name=name), server=lab.server):
            return res.get(name=name, namespace=namespace if res.namespaced else None).to_dict()
    except NotFound:
        return None


PATCH_TYPES = {"strategic": "application/strategic-merge-patch+json", "merge": "application/merge-patch+json"}


def patch(lab: Lab, kind: str, name: str, body: dict[str, Any], *, namespace: str | None = None,
          api_version: str | None = None, patch_type: str = "strategic") -> None:
    """Patch one object (``kubectl patch KIND NAME --type=strategic|merge -p '{...}'``).

    Custom resources (a NodePool, say) take only ``merge``: strategic merge needs the built-in types' schemas.
    """
    res = _resource(lab, kind, api_version)
    with api_errors(_("patching {kind}/{name}").format(kind=kind.lower(), name=name), server=lab.server):
        res.patch(name=name, namespace=namespace if res.namespaced else None, body=body,
                  content_type=PATCH_TYPES[patch_type])


def live_pods(lab: Lab, namespace: str, selector: dict[str, str]) -> list[Any]:
    """Pods matching the labels that are not being deleted (``kubectl get pods -l k=v``)."""
    sel = ",".join(f"{k}={v}" for k, v in selector.items())
    with api_errors(_("listing pods in {namespace}").format(namespace=namespace), server=lab.server):
        return [p for p in lab.core.list_namespaced_pod(namespace, label_selector=sel).items
                if not p.metadata.deletion_timestamp]
