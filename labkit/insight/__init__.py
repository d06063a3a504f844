"""An insight engine for the lab, in the spirit of Huawei Cloud's CIE (容器洞察引擎): read the live cluster, correlate
what it says, and return ranked findings: the root cause, the evidence (each line naming its source and the
kubectl/PromQL command that shows it), and the command that fixes it. Introduced in notebook 11_troubleshooting.

``lk.diagnose(lab, namespace=ns)`` (this module is ``lk.insight``); in a shell ``labkit diagnose -n NS``. It
reads pods, events, Deployments and ReplicaSets, Jobs, Services and EndpointSlices, HPAs, PVCs and StorageClasses,
the names and keys of ConfigMaps and Secrets (never their values), ServiceAccounts, nodes and their conditions
through the Kubernetes API, the GPU exporter's XID counters where that add-on runs, and Prometheus where it runs.

Split in two so the ranking can be tested on recorded objects: :func:`snapshot` reads the cluster into plain dicts,
:func:`analyze` turns a :class:`Snapshot` into findings without touching the network. Log and trace evidence
(lessons 09 and 10) plug in through :func:`register_evidence_source`.
"""

from __future__ import annotations

from .containers import INIT_STUCK_S
from .engine import analyze, rank
from .evidence import EvidenceSource, collect_evidence, diagnose, register_evidence_source
from .findings import CAUSES, EXIT_CODES, NPD_STANDARD, SCORES, Diagnosis, Evidence, Finding
from .snapshot import XID_METRIC, Snapshot, gpu_metrics, snapshot

__all__ = [
    "CAUSES", "Diagnosis", "EXIT_CODES", "Evidence", "EvidenceSource", "Finding", "INIT_STUCK_S", "NPD_STANDARD",
    "SCORES", "Snapshot", "XID_METRIC", "analyze", "collect_evidence", "diagnose", "gpu_metrics", "rank",
    "register_evidence_source", "snapshot",
]
