"""labkit: the helper package behind the Kubernetes operations notebooks.

One import idiom in every notebook: ``import labkit as lk``. Names load on first use (PEP 562), so
``import labkit`` and the ``labkit`` command stay fast; pandas, plotly and the Kubernetes client load only when a
name that needs them is touched.

Layout, bottom to top (each layer imports only from layers below it; tests/unit/test_layers.py keeps it so):
``errors, paths, versions, settings`` -> ``state`` -> ``kube`` (client, apply, waits, tables, rollouts, events) ->
``cluster`` (provisioning) -> ``sim`` (the simulated kubelet, containers and GPUs) -> ``addons`` (Prometheus,
exporters) -> ``observability`` (PromQL, cgroups), ``operations`` (lab operations lessons share) -> ``course`` (the
lessons' record, exercises, classroom) -> ``insight`` -> ``display`` (figures, widgets) -> ``dashboards`` ->
``lessons`` (one module per notebook) -> ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> "module:attribute" (or "module" for a submodule).
_EXPORTS: dict[str, str] = {
    # submodules
    "addons": "labkit.addons", "cgroups": "labkit.observability.cgroups", "dashboards": "labkit.dashboards",
    "events": "labkit.kube.events", "exercises": "labkit.course.exercises", "figures": "labkit.display.figures",
    "gpu": "labkit.sim.gpu", "kube": "labkit.kube", "lessons": "labkit.lessons", "paths": "labkit.paths",
    "promql": "labkit.observability.promql",
    "rollouts": "labkit.kube.rollouts", "settings": "labkit.settings", "versions": "labkit.versions",
    "wait": "labkit.kube.wait", "widgets": "labkit.display.widgets",
    # connecting, applying, waiting (00_lab_tour)
    "Lab": "labkit.kube.client:Lab", "connect": "labkit.kube.client:connect",
    "apply": "labkit.kube.apply:apply", "delete": "labkit.kube.apply:delete",
    "load_manifests": "labkit.kube.apply:load_manifests",
    "lesson_namespace": "labkit.lessons:lesson_namespace", "wait_for": "labkit.kube.wait:wait_for",
    "wait_default_service_account": "labkit.kube.namespaces:wait_default_service_account",
    "wait_for_set": "labkit.kube.wait:wait_for_set",
    "wait_nodes_ready": "labkit.kube.nodes:wait_nodes_ready", "cordon": "labkit.kube.nodes:cordon",
    "drain": "labkit.kube.nodes:drain", "use_lab_kubectl": "labkit.kube.shell:use_lab_kubectl",
    "nodes_table": "labkit.kube.tables:nodes_table", "pods_table": "labkit.kube.tables:pods_table",
    "pod_usage_table": "labkit.kube.tables:pod_usage_table", "lab_parts": "labkit.lessons.lab_tour:lab_parts",
    # errors
    "ClusterUnreachable": "labkit.errors:ClusterUnreachable", "LabkitError": "labkit.errors:LabkitError",
    "ManifestError": "labkit.errors:ManifestError", "NotFound": "labkit.errors:NotFound",
    "PortInUse": "labkit.errors:PortInUse", "WaitFailed": "labkit.errors:WaitFailed",
    "WaitTimeout": "labkit.errors:WaitTimeout",
    # rollouts and events (01, 02, 03)
    "pods_by_revision": "labkit.kube.rollouts:pods_by_revision",
    "rollout_history": "labkit.kube.rollouts:rollout_history", "rollout_pause": "labkit.kube.rollouts:rollout_pause",
    "rollout_restart": "labkit.kube.rollouts:rollout_restart", "rollout_resume": "labkit.kube.rollouts:rollout_resume",
    "rollout_status": "labkit.kube.rollouts:rollout_status", "rollout_undo": "labkit.kube.rollouts:rollout_undo",
    "scale": "labkit.kube.rollouts:scale", "set_image": "labkit.kube.rollouts:set_image",
    "Recorder": "labkit.kube.events:Recorder", "min_ready_during": "labkit.kube.events:min_ready_during",
    "record_until": "labkit.kube.events:record_until",
    "probe_timeline": "labkit.display.figures:probe_timeline",
    "rollout_timeline": "labkit.display.figures:rollout_timeline",
    # troubleshooting (11)
    "diagnose": "labkit.insight:diagnose", "insight": "labkit.insight",
    # exercises, every lesson
    "check": "labkit.lessons:check", "progress": "labkit.lessons:progress", "solution": "labkit.lessons:solution",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value  # cache: the next access is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what editors and type checkers see
    from . import addons, dashboards, insight, kube, lessons, paths, settings, versions
    from .course import exercises
    from .display import figures, widgets
    from .display.figures import probe_timeline, rollout_timeline
    from .errors import (
        ClusterUnreachable,
        LabkitError,
        ManifestError,
        NotFound,
        PortInUse,
        WaitFailed,
        WaitTimeout,
    )
    from .insight import diagnose
    from .kube import events, rollouts, wait
    from .kube.apply import apply, delete, load_manifests
    from .kube.client import Lab, connect
    from .kube.events import Recorder, min_ready_during, record_until
    from .kube.namespaces import wait_default_service_account
    from .kube.nodes import wait_nodes_ready
    from .kube.rollouts import (
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
    from .kube.shell import use_lab_kubectl
    from .kube.tables import nodes_table, pod_usage_table, pods_table
    from .kube.wait import wait_for, wait_for_set
    from .lessons import check, lesson_namespace, progress, solution
    from .lessons.lab_tour import lab_parts
    from .observability import cgroups, promql
    from .sim import gpu
