"""Findings: what the engine says (part of :mod:`labkit.insight`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..i18n import _

# Every cause the engine can name, with the kubectl-level symptom that goes with it.
CAUSES: dict[str, str] = {
    "ProgressDeadlineExceeded": "a rollout that stopped making progress (its new revision's pods never became ready)",
    "GPUXidError": "a GPU reported an XID error (79: fallen off the bus) on the node the pods run on",
    "NodeProblem": "node-problem-detector reports a permanent problem (a NodeCondition) on the pods' node",
    "NodeNotReady": "the pods' node is NotReady",
    "NodePressure": "the pods' node is under memory, disk or PID pressure",
    "QuotaExceeded": "a ResourceQuota refuses the pods (the ReplicaSet cannot create them)",
    "LimitRangeViolation": "a LimitRange refuses the pods (a request or limit outside its min/max)",
    "ServiceAccountNotFound": "the pods run as a ServiceAccount that does not exist (the ReplicaSet cannot create "
                              "them)",
    "PodSecurityViolation": "the namespace's Pod Security level refuses the pods (the ReplicaSet cannot create them)",
    "UnboundPVC": "the pod waits for a PersistentVolumeClaim that does not bind",
    "UntoleratedTaint": "the only nodes the pod may use carry a taint it does not tolerate",
    "InsufficientGPU": "no node has enough free GPUs for the pod's request",
    "InsufficientCPU": "no node has enough unrequested CPU for the pod's request",
    "InsufficientMemory": "no node has enough unrequested memory for the pod's request",
    "NodeAffinityMismatch": "the pod's node selector or affinity matches no node",
    "Unschedulable": "the scheduler cannot place the pod",
    "FailedMount": "a volume of the pod names a ConfigMap or Secret (or a key) that does not exist: ContainerCreating",
    "CreateContainerConfigError": "a container's env or envFrom names a ConfigMap or Secret (or a key) that does not "
                                  "exist",
    "ImagePullBackOff": "the container's image cannot be pulled (the name or tag does not exist, or access is denied)",
    "StartError": "the container's command cannot be started (not in the image's $PATH, or not executable): exit 128",
    "InitContainerFailing": "an init container exits with an error, so the app's containers never start (Init:Error, "
                            "Init:CrashLoopBackOff)",
    "InitContainerBlocked": "an init container keeps running (it waits for something, e.g. a Service that does not "
                            "exist), so the pod stays Init:0/N",
    "OOMKilled": "the container used more memory than its limit and the kernel killed it",
    "LivenessProbeFailing": "the liveness probe fails, so the kubelet keeps killing the container",
    "JobFailed": "a Job gave up: its pods failed backoffLimit times (BackoffLimitExceeded) or it ran past its deadline",
    "CrashLoopBackOff": "the container's process exits with an error and the kubelet restarts it with back-off",
    "ServiceSelectorMismatch": "the Service's selector matches no pod, so it has no endpoints",
    "ServicePortMismatch": "the Service's targetPort is not a port its pods declare, so connections are refused",
    "ReadinessProbeFailing": "the readiness probe fails, so the pods stay out of their Services' endpoints",
    "HPATargetNotFound": "the HorizontalPodAutoscaler's scaleTargetRef names a workload that does not exist",
    "HPAWithoutMetrics": "the HorizontalPodAutoscaler cannot read its metric, so it does not scale",
}
# Rank: a cause that explains others comes first (a stuck rollout explains its pods; a sick node its pods).
SCORES: dict[str, int] = {code: 100 - i for i, code in enumerate(CAUSES)}

NPD_STANDARD = {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"}
EXIT_CODES = {1: "a general application error", 2: "misuse of a shell builtin", 126: "the command is not executable",
              127: "the command was not found", 128: "the runtime could not start the command (StartError)",
              137: "killed by SIGKILL (the OOM killer, or the kubelet)",
              139: "a segmentation fault (SIGSEGV)", 143: "terminated by SIGTERM"}


def exit_meaning(code: Any, otherwise: str) -> str:
    """What exit code ``code`` means (:data:`EXIT_CODES`) in the learner's language; ``otherwise`` for a code of the
    process's own."""
    meanings = {1: _("a general application error"), 2: _("misuse of a shell builtin"),
                126: _("the command is not executable"), 127: _("the command was not found"),
                128: _("the runtime could not start the command (StartError)"),
                137: _("killed by SIGKILL (the OOM killer, or the kubelet)"),
                139: _("a segmentation fault (SIGSEGV)"), 143: _("terminated by SIGTERM")}
    return meanings.get(code, otherwise)


@dataclass(frozen=True)
class Evidence:
    """One fact behind a finding: where it comes from, what it says, and the command that shows it."""

    source: str
    line: str
    command: str

    def __str__(self) -> str:
        return f"[{self.source}] {self.line}\n      $ {self.command}"


@dataclass
class Finding:
    """A root cause the engine found: what, where, why (evidence), and the command that fixes it."""

    cause: str
    subject: str
    namespace: str
    summary: str
    evidence: list[Evidence]
    fix: str
    score: int = 0
    # PromQL whose answer supports the finding: (what it shows, expression); added as evidence where Prometheus runs.
    queries: list[tuple[str, str]] = field(default_factory=list)
    # Lower-ranked findings this one explains (folded in as evidence).
    explains: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.score:
            self.score = SCORES.get(self.cause, 10)

    def __str__(self) -> str:
        lines = [_("{cause} ({subject}, namespace {namespace}): {summary}").format(
            cause=self.cause, subject=self.subject, namespace=self.namespace or "-", summary=self.summary)]
        lines += [_("  evidence {evidence}").format(evidence=e) for e in self.evidence]
        lines.append(_("  fix: {fix}").format(fix=self.fix.replace("\n", "\n       ")))
        return "\n".join(lines)


@dataclass
class Diagnosis:
    """Ranked findings, most likely root cause first."""

    namespace: str | None
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def top(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def causes(self) -> list[str]:
        return [f.cause for f in self.findings]

    def table(self) -> pd.DataFrame:
        """One row per finding: rank, cause, subject, summary, evidence count, fix."""
        rows = [{"rank": i + 1, "cause": f.cause, "subject": f.subject, "namespace": f.namespace,
                 "summary": f.summary, "evidence": len(f.evidence), "fix": f.fix.splitlines()[0]}
                for i, f in enumerate(self.findings)]
        return pd.DataFrame(rows, columns=["rank", "cause", "subject", "namespace", "summary", "evidence", "fix"])

    def __str__(self) -> str:
        where = _("namespace {namespace}").format(namespace=self.namespace) if self.namespace else _(
            "the whole cluster")
        if not self.findings:
            return _("diagnose {where}: no problem found").format(where=where) + "".join(
                "\n  " + _("note: {note}").format(note=n) for n in self.notes)
        parts = [_("diagnose {where}: {count} finding(s), most likely root cause first").format(
            where=where, count=len(self.findings))]
        parts += [f"{i + 1}. {f}" for i, f in enumerate(self.findings)]
        parts += [_("note: {note}").format(note=n) for n in self.notes]
        return "\n".join(parts)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


