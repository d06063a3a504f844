"""labkit: the helper package behind the Kubernetes operations notebooks.

One import idiom in every notebook: ``import labkit as lk``.
"""

from __future__ import annotations

from . import gpu, versions
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
from .lab_parts import lab_parts
from .namespaces import lesson_namespace
from .nodes import wait_nodes_ready
from .shell import use_lab_kubectl
from .tables import nodes_table, pod_usage_table, pods_table
from .wait import wait_for

__all__ = [
    "ClusterUnreachable", "Lab", "LabkitError", "ManifestError", "NotFound", "PortInUse", "WaitFailed",
    "WaitTimeout", "apply", "connect", "delete", "lab_parts", "lesson_namespace", "load_manifests", "nodes_table",
    "gpu", "pod_usage_table", "pods_table", "use_lab_kubectl", "versions", "wait_for", "wait_nodes_ready",
]
