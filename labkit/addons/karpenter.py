"""Karpenter with its KWOK provider: a real upstream node autoscaler that creates and removes KWOK nodes.

Runs ``sigs.k8s.io/karpenter/kwok`` (kubernetes-sigs; version pinned in :mod:`labkit.versions`) out of cluster against
the lab's kubeconfig. It watches for pods the scheduler could not place, creates a NodeClaim from a NodePool, and
registers a Node for it; the lab's KWOK controller then makes that Node Ready (the Node carries the annotation
``kwok.x-k8s.io/node: fake`` that kwokctl's KWOK manages). Empty or under-used nodes are removed again
(consolidation). Built with Go on first start (minutes; cached afterwards).

The Cluster Autoscaler, which CCE's autoscaler add-on runs, is not reachable here (its module is not served by the
Go proxy), so the lab runs Karpenter; lesson 05 compares the two models.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .. import state, versions
from ..cluster.binaries import Component
from ..cluster.ports import free_port
from ..i18n import _
from ..paths import data_file
from .base import Addon, Context, kubectl_apply

# Karpenter's operator binds its metrics and health servers to ":<port>" (every interface) and offers no flag or
# environment variable for the address, only the ports. The lab listens on 127.0.0.1 only, so the build swaps those
# two format strings for loopback ones (a patched copy of the module's source; nothing else differs from upstream).
_OPERATOR = "pkg/operator/operator.go"
LOOPBACK_PATCHES = (
    (_OPERATOR, 'BindAddress: fmt.Sprintf(":%d", options.FromContext(ctx).MetricsPort)',
     'BindAddress: fmt.Sprintf("127.0.0.1:%d", options.FromContext(ctx).MetricsPort)'),
    (_OPERATOR, 'HealthProbeBindAddress: fmt.Sprintf(":%d", options.FromContext(ctx).HealthProbePort)',
     'HealthProbeBindAddress: fmt.Sprintf("127.0.0.1:%d", options.FromContext(ctx).HealthProbePort)'),
)
# Shorter than Karpenter's defaults (10 s / 1 s): how long it gathers pending pods into one batch before it
# provisions. A real cluster wants bigger batches (fewer, larger nodes); the lab wants a quick answer.
BATCH_MAX_DURATION = "3s"
BATCH_IDLE_DURATION = "500ms"


def component() -> Component:
    """The pinned Karpenter KWOK provider, built from its module with :data:`LOOPBACK_PATCHES` applied."""
    return Component(
        "karpenter", versions.KARPENTER, "sigs.k8s.io/karpenter", ("sigs.k8s.io/karpenter/kwok",), ("kwok",),
        ldflags=f"-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version={versions.KARPENTER}",
        go_toolchain=versions.KARPENTER_GO_TOOLCHAIN, patches=LOOPBACK_PATCHES,
        # NodePool, NodeClaim, NodeOverlay, KWOKNodeClass, ...: the CRDs of this very version, from its module.
        data=(("kwok/charts/crds", "crds"), ("kwok/apis/crds", "crds")),
    )


def crds_dir() -> Path:
    """The CRDs the build copied next to the binary (``<cache>/bin/karpenter-<version>/crds``)."""
    return component().dir / "crds"


def instance_types_json() -> str:
    """The lab's node flavors (``labkit/data/karpenter/instance_types.yaml``) as the JSON Karpenter reads."""
    return json.dumps(yaml.safe_load((data_file("karpenter") / "instance_types.yaml").read_text()), indent=1)


class Karpenter(Addon):
    name = "karpenter"
    summary = "node autoscaler: Karpenter's KWOK provider adds and removes simulated nodes (NodePool, NodeClaim)"
    port_env = "LABKIT_KARPENTER_PORT"  # its health-probe port; metrics get a second free loopback port
    ready_path = "/readyz"
    metrics_job = "karpenter"
    binary_name = "kwok"

    def component(self) -> Component:
        return component()

    def missing(self) -> str | None:
        backend = state.recorded().backend
        if backend and backend != "kwok":
            return _("Karpenter's KWOK provider needs the embedded (kwok) backend, whose KWOK controller makes its "
                     "nodes Ready; this lab runs {backend}").format(backend=backend)
        return super().missing()

    def prepare(self, ctx: Context) -> None:
        """Install the CRDs (NodePool, NodeClaim, KWOKNodeClass, ...), the flavors file and a metrics port."""
        (ctx.folder / "instance_types.json").write_text(instance_types_json())
        (ctx.folder / "metrics-port").write_text(f"{free_port()}\n")
        kubectl_apply(ctx, crds_dir(), what="Karpenter's CRDs", established=True)

    @staticmethod
    def _metrics_port(ctx: Context) -> int:
        return int((ctx.folder / "metrics-port").read_text())

    @staticmethod
    def _arguments(ctx: Context) -> list[str]:
        # The flavors file lies in this add-on's folder, so the command line names the lab (labkit's liveness check).
        return ["--instance-types-file-path", str(ctx.folder / "instance_types.json"),
                "--health-probe-port", str(ctx.port), "--metrics-port", str(Karpenter._metrics_port(ctx))]

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # built by addons.start before the first spawn
        return [binary, *self._arguments(ctx)]

    def env(self, ctx: Context) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(ctx.folder),
            "KUBECONFIG": str(ctx.kubeconfig),
            # One replica, out of cluster: nothing to elect, and no namespace of its own for a Lease.
            "DISABLE_LEADER_ELECTION": "true",
            "BATCH_MAX_DURATION": BATCH_MAX_DURATION,
            "BATCH_IDLE_DURATION": BATCH_IDLE_DURATION,
            "LOG_LEVEL": "info",
        }

    def scrape_targets(self, ctx: Context) -> list[dict[str, object]]:
        return [{"targets": [f"127.0.0.1:{self._metrics_port(ctx)}"], "labels": {"job": self.metrics_job}}]

