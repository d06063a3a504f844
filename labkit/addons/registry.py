"""Which add-ons exist (:data:`REGISTRY`), what each needs, and getting their binaries (``labkit prefetch``).

Adding an add-on is one module with one :class:`~labkit.addons.base.Addon` subclass, listed here. Running them
is :mod:`labkit.addons.supervisor`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..cluster.binaries import Component, ensure_component
from ..errors import LabkitError
from .alertmanager import Alertmanager, AlertWebhook
from .base import Addon
from .gpu_exporter import GpuExporter
from .jaeger import Jaeger
from .karpenter import Karpenter
from .kube_state_metrics import KubeStateMetrics
from .kubelet_checks import KubeletChecks
from .local_path import LocalPathProvisioner
from .node_exporter import NodeExporter
from .node_problem_detector import NodeProblemDetector
from .prometheus import Prometheus
from .prometheus_adapter import PrometheusAdapter
from .prometheus_operated import ConfigReloader, PrometheusOperated
from .prometheus_operator import PrometheusOperator
from .victorialogs import LogAgent, VictoriaLogs
from .workload_model import WorkloadModel

Progress = Callable[[str], None]

REGISTRY: dict[str, Addon] = {a.name: a for a in (
    AlertWebhook(), Alertmanager(), ConfigReloader(), GpuExporter(), Karpenter(), KubeStateMetrics(), KubeletChecks(),
    Jaeger(), LocalPathProvisioner(), NodeExporter(), NodeProblemDetector(), Prometheus(),
    PrometheusAdapter(), PrometheusOperated(), PrometheusOperator(), WorkloadModel(), VictoriaLogs(), LogAgent())}


def registered(name: str) -> Addon:
    if name not in REGISTRY:
        raise LabkitError(f"no add-on named {name!r}", fix=f"pick from: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def with_needs(names: Iterable[str]) -> list[str]:
    """The add-ons asked for plus what they need, needs first."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        for dep in registered(name).needs:
            visit(dep)
        if name not in ordered:
            ordered.append(name)

    for name in names:
        visit(name)
    return ordered


def with_cluster(backend: str) -> list[str]:
    """The add-ons that stand in for part of a real cluster on ``backend``; ``labkit up`` starts them."""
    return [name for name, addon in REGISTRY.items() if backend in addon.with_cluster_on]


def ensure_binary(addon: Addon, progress: Progress) -> None:
    """Build (or fetch) the add-on's pinned component and its other assets on first start; cached afterwards."""
    comp = addon.component()
    # The component, not addon.binary(): a Python add-on that runs a component (node-problem-detector's supervisor)
    # has no binary of its own, and a cached component must say nothing to the learner (notebook outputs).
    if comp is not None and not comp.cached() and addon.binary() is None:
        from ..cluster.binaries import ensure_component, expected_seconds  # imported here: `labkit status` needs none

        progress(f"add-on {addon.name} needs {comp.name} {comp.version}, which is not in the cache yet: it is "
                 f"downloaded, or built with Go (about {max(1, round(expected_seconds(comp) / 60))} min here), once. "
                 "`labkit prefetch` gets every add-on's binaries ahead of the lessons.")
        ensure_component(comp, progress=progress)
    addon.ensure_assets(progress)


# The order the course (and the e2e suite) first needs each add-on's binary in, so a background prefetch stays ahead.
PREFETCH_ORDER = ("prometheus", "kube-state-metrics", "prometheus-adapter", "node-exporter", "victoria-logs",
                  "karpenter", "node-problem-detector", "prometheus-operator", "alertmanager", "jaeger")


def all_components() -> list[Component]:
    """Every component the lab and its add-ons use: the core cluster's, then each add-on's (once each)."""
    from ..cluster.binaries import components

    found = {c.dir: c for c in components()}
    for addon in REGISTRY.values():
        comp = addon.component()
        if comp is not None:
            found.setdefault(comp.dir, comp)
    return list(found.values())


def prefetch(*, progress: Progress = print, jobs: int | None = None) -> list[str]:
    """Get every binary the lab and its add-ons use into the cache now (``labkit prefetch``): the core cluster's
    first, then each add-on's in the order the lessons need them, ``jobs`` at a time. Safe beside a running lab or
    lesson (they share each build through a lock). Returns one line per component: how this run got it."""
    from concurrent.futures import ThreadPoolExecutor

    from ..cluster.binaries import BUILD_JOBS, components

    work: dict[Path, tuple[Component, Addon | None]] = {c.dir: (c, None) for c in components()}
    for name in [*PREFETCH_ORDER, *(n for n in REGISTRY if n not in PREFETCH_ORDER)]:
        comp = REGISTRY[name].component()
        if comp is not None and comp.dir not in work:  # not a Python add-on, nor a component two add-ons share
            work[comp.dir] = (comp, REGISTRY[name])

    def get(comp: Component, addon: Addon | None) -> str:
        start_s = time.monotonic()
        ensure_component(comp, progress=progress)
        if addon is not None:
            addon.ensure_assets(progress)
        return f"{comp.name} {comp.version}{f' (for {addon.name})' if addon else ''}: ready in " \
               f"{time.monotonic() - start_s:.0f} s"

    with ThreadPoolExecutor(max_workers=max(1, jobs or BUILD_JOBS), thread_name_prefix="prefetch") as pool:
        futures = [pool.submit(get, comp, addon) for comp, addon in work.values()]
        return [f.result() for f in futures]


