"""labkit: the helper package behind the Kubernetes operations notebooks.

One import idiom in every notebook: ``import labkit as lk``. Submodules hold the lesson-specific helpers
(``lk.rollouts``, ``lk.events``, ``lk.exercises``, ``lk.widgets``, ``lk.gpu``, ``lk.promql``, ...); the names
below are the ones notebooks call most.
"""

from __future__ import annotations

from . import (
    cgroups,
    events,
    exercises,
    gpu,
    gpu_dashboard,
    gpu_lessons,
    paths,
    promql,
    rollouts,
    versions,
    widgets,
)
from .apply import apply, delete, load_manifests
from .client import Lab, connect
from .errors import (
    ClusterUnreachable,
    LabkitError,
    ManifestError,
    NotFound,
    PortInUse,
    WaitFailed,
    WaitTimeout,
)
from .events import Recorder, min_ready_during, probe_timeline, record_until, rollout_timeline
from .exercises import check, progress, solution, solve_for_test
from .lab_parts import lab_parts
from .namespaces import lesson_namespace
from .nodes import wait_nodes_ready
from .rollouts import (
    pods_by_revision,
    rollout_history,
    rollout_pause,
    rollout_restart,
    rollout_resume,
    rollout_status,
    rollout_undo,
    scale,
    set_image,
)
from .shell import use_lab_kubectl
from .tables import nodes_table, pod_usage_table, pods_table
from .wait import wait_for

__all__ = [
    # modules
    "cgroups", "events", "exercises", "gpu", "gpu_dashboard", "gpu_lessons", "paths", "promql", "rollouts",
    "versions", "widgets",
    # connecting, applying, waiting (00_lab_tour)
    "Lab", "connect", "apply", "delete", "load_manifests", "lesson_namespace", "wait_for", "wait_nodes_ready",
    "use_lab_kubectl", "lab_parts", "nodes_table", "pods_table", "pod_usage_table",
    # errors
    "ClusterUnreachable", "LabkitError", "ManifestError", "NotFound", "PortInUse", "WaitFailed", "WaitTimeout",
    # rollouts and events (01_deployment_rollouts, 02_statefulset_canary, 03_health_probes)
    "pods_by_revision", "rollout_history", "rollout_pause", "rollout_restart", "rollout_resume", "rollout_status",
    "rollout_undo", "scale", "set_image", "Recorder", "min_ready_during", "probe_timeline", "record_until",
    "rollout_timeline",
    # exercises
    "check", "progress", "solution", "solve_for_test",
]
