"""The engine: every rule, ranked (part of :mod:`labkit.insight`)."""

from __future__ import annotations

from ..i18n import _
from .admission import replicaset_findings
from .containers import container_findings, failed_mount
from .controllers import deployment_findings, hpa_findings, job_findings
from .findings import Finding
from .nodes import node_findings
from .objects import failed_alone, live, owner
from .scheduling import unschedulable
from .services import service_findings
from .snapshot import Snapshot, meta


def analyze(snap: Snapshot) -> list[Finding]:
    """Every finding in ``snap``, ranked (most likely root cause first); pure: reads no cluster."""
    findings: list[Finding] = []
    per_workload: dict[tuple[str, str, str], Finding] = {}
    for pod in snap.pods:
        if not (live(pod) or failed_alone(pod)):
            continue
        kind, name = owner(snap, pod)
        finding = (unschedulable(snap, pod, kind, name) or failed_mount(snap, pod, kind, name)
                   or container_findings(snap, pod, kind, name))
        if finding is None:
            continue
        key = (finding.namespace, finding.subject, finding.cause)
        if key in per_workload:  # one finding per workload and cause; count the pods
            per_workload[key].explains.append(f"pod/{meta(pod)['name']}")
            continue
        per_workload[key] = finding
        findings.append(finding)
    findings += (service_findings(snap) + replicaset_findings(snap) + job_findings(snap) + hpa_findings(snap)
                 + deployment_findings(snap) + node_findings(snap))
    return rank(findings)


def rank(findings: list[Finding]) -> list[Finding]:
    """Order by how much a cause explains; a stuck rollout absorbs the findings about its own pods."""
    by_subject: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        by_subject.setdefault((f.namespace, f.subject), []).append(f)
    kept = []
    for f in findings:
        if f.cause != "ProgressDeadlineExceeded":
            continue
        for other in by_subject.get((f.namespace, f.subject), []):
            if other is not f:
                f.explains.append(other.cause)
                f.evidence += other.evidence[:2]
                f.summary = _("{summary} (the new pods: {cause})").format(summary=f.summary, cause=other.cause)
    for f in findings:
        absorbed = any(g.cause == "ProgressDeadlineExceeded" and f is not g and f.cause in g.explains
                       and (g.namespace, g.subject) == (f.namespace, f.subject) for g in findings)
        if not absorbed:
            kept.append(f)
    return sorted(kept, key=lambda f: (-f.score, f.namespace, f.subject))


