"""Apply YAML manifests the way ``kubectl apply --server-side`` does.

Introduced in notebook 00_lab_tour: ``lk.apply(lab, manifest, namespace=ns)``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from ..errors import ManifestError, NotFound
from ..i18n import _
from .client import Lab, api_errors

FIELD_MANAGER = "labkit"


def load_manifests(source: str | Path | dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parse a YAML string, a file path, a dict or a list of dicts into objects (several documents allowed)."""
    if isinstance(source, dict):
        return [source]
    if isinstance(source, list):
        return list(source)
    text = str(source)
    where = "the manifest"
    if isinstance(source, Path) or ("\n" not in text and text.endswith((".yaml", ".yml"))):
        path = Path(text)
        if not path.exists():
            raise ManifestError(_("no such manifest file: {path}").format(path=path),
                                fix=_("check the path (it is relative to the notebook)"))
        text, where = path.read_text(), str(path)
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise ManifestError(_("{where} is not valid YAML: {error}").format(where=where, error=exc),
                            fix=_("check indentation (spaces, not tabs) around the line shown")) from None
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise ManifestError(_("{where}: every document needs `apiVersion` and `kind`; got {doc!r}")
                                .format(where=where, doc=str(doc)[:80]))
        if not doc.get("metadata", {}).get("name"):
            raise ManifestError(_("{where}: {kind} has no metadata.name").format(where=where, kind=doc["kind"]),
                                fix=_("add `metadata: {name: ...}`"))
    return docs


def _resource(lab: Lab, doc: dict[str, Any]) -> Any:
    try:
        return lab.dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    except ResourceNotFoundError:
        known = sorted({r.kind for r in lab.dynamic.resources.search() if getattr(r, "kind", None)})
        close = difflib.get_close_matches(doc["kind"], known, n=1)
        hint = (_("did you mean `kind: {kind}`?").format(kind=close[0]) if close
                else _("`kubectl api-resources` lists the kinds served"))
        raise ManifestError(_("this cluster serves no kind {kind!r} in apiVersion {api_version!r}")
                            .format(kind=doc["kind"], api_version=doc["apiVersion"]), fix=hint) from None


def apply(lab: Lab, source: str | Path | dict[str, Any] | list[dict[str, Any]], *,
          namespace: str | None = None) -> list[str]:
    """Server-side apply every object in ``source``; return ``kind/name`` of each, as kubectl prints them.

    Introduced in notebook 00_lab_tour. Same as ``kubectl apply --server-side -n NAMESPACE -f FILE``.
    """
    applied = []
    for doc in load_manifests(source):
        res = _resource(lab, doc)
        ns = None
        if res.namespaced:
            ns = doc.get("metadata", {}).get("namespace") or namespace or "default"
            doc = {**doc, "metadata": {**doc["metadata"], "namespace": ns}}
        name = doc["metadata"]["name"]
        with api_errors(_("applying {kind}/{name}").format(kind=doc['kind'], name=name), server=lab.server):
            res.server_side_apply(body=doc, name=name, namespace=ns, field_manager=FIELD_MANAGER,
                                  force_conflicts=True)
        applied.append(f"{doc['kind'].lower()}/{name}")
    return applied


def delete(lab: Lab, source: str | Path | dict[str, Any] | list[dict[str, Any]], *,
           namespace: str | None = None) -> list[str]:
    """Delete every object in ``source`` that exists (``kubectl delete --ignore-not-found -f FILE``)."""
    deleted = []
    for doc in load_manifests(source):
        res = _resource(lab, doc)
        ns = (doc.get("metadata", {}).get("namespace") or namespace or "default") if res.namespaced else None
        name = doc["metadata"]["name"]
        try:
            with api_errors(_("deleting {kind}/{name}").format(kind=doc['kind'], name=name), server=lab.server):
                res.delete(name=name, namespace=ns)
            deleted.append(f"{doc['kind'].lower()}/{name}")
        except NotFound:
            continue
    return deleted
