"""Evidence from elsewhere: Prometheus here; logs (lesson 09) and traces (lesson 10) plug in (part of
:mod:`labkit.insight`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import addons
from ..errors import LabkitError
from ..i18n import _
from ..kube.client import Lab
from ..observability import promql
from .engine import analyze
from .findings import Diagnosis, Evidence, Finding
from .snapshot import Snapshot, snapshot

EvidenceSource = Callable[[Snapshot, Finding], Iterable[Evidence]]
_EVIDENCE_SOURCES: dict[str, EvidenceSource] = {}


def register_evidence_source(name: str, source: EvidenceSource) -> None:
    """Add evidence to every finding from another signal (logs, traces): ``source(snapshot, finding)`` returns
    Evidence lines, each naming its query (a LogsQL query, a Jaeger search). Registering a name again replaces it.
    A source that fails is named in the diagnosis' notes; the diagnosis still stands."""
    _EVIDENCE_SOURCES[name] = source


def _prometheus_evidence(snap: Snapshot, finding: Finding) -> Iterable[Evidence]:
    if not finding.queries or not addons.url("prometheus"):
        return []
    out = []
    for what, expr in finding.queries:
        frame = promql.query(expr)
        if not frame.empty:
            out.append(Evidence("prometheus", f"{what}: {expr} = {frame['value'].max():g}",
                                f"curl -s '{promql.prometheus_url()}/api/v1/query' --data-urlencode 'query={expr}'"))
    return out


register_evidence_source("prometheus", _prometheus_evidence)


def collect_evidence(snap: Snapshot, findings: list[Finding]) -> list[str]:
    """Ask every registered evidence source about every finding; return notes naming the sources that failed."""
    notes = []
    for name, source in _EVIDENCE_SOURCES.items():
        for finding in findings:
            try:
                finding.evidence += list(source(snap, finding))
            except (LabkitError, OSError, ValueError, KeyError) as exc:
                notes.append(_("evidence source {name!r} failed: {error}").format(name=name, error=exc))
                break
    return notes


def diagnose(lab: Lab | None = None, namespace: str | None = None) -> Diagnosis:
    """Ranked findings for ``namespace`` (``None``: the whole cluster), each with evidence and a fix command.

    Introduced in notebook 11_troubleshooting. What it reads is what ``kubectl get pods,events,deploy,rs,svc,
    endpointslices,hpa,pvc -n NS -o yaml``, ``kubectl get nodes,storageclasses -o yaml`` and the add-ons' metrics
    show; ``labkit diagnose -n NS`` prints the same.
    """
    if lab is None:
        from .kube.client import connect

        lab = connect()
    snap = snapshot(lab, namespace)
    findings = analyze(snap)
    notes = collect_evidence(snap, findings)
    if not snap.gpu_source:
        notes.append(_("GPU exporter not running: XID errors not checked (labkit up --with gpu-exporter)"))
    return Diagnosis(namespace, findings, notes)
