"""prometheus-operator: the real operator turns Prometheus, ServiceMonitor, PodMonitor and PrometheusRule objects
into Prometheus configuration.

Runs ``github.com/prometheus-operator/prometheus-operator`` (pinned in :mod:`labkit.versions`, built with Go on first
start) out of cluster with the lab's kubeconfig, its web server (``/metrics``, ``/healthz``) on 127.0.0.1. Its CRDs
come from the same module (``example/prometheus-operator-crd``), copied beside the binary at build time.
"""

from __future__ import annotations

from pathlib import Path

from .. import versions
from ..cluster.binaries import Component
from ..cluster.oci import Image
from .base import Addon, Context, kubectl_apply


def component() -> Component:
    """The pinned operator, built through a wrapper module (its go.mod replaces two of its own sub-modules)."""
    return Component(
        "prometheus-operator", versions.PROMETHEUS_OPERATOR, "github.com/prometheus-operator/prometheus-operator",
        ("github.com/prometheus-operator/prometheus-operator/cmd/operator",), ("operator",),
        ldflags=f"-s -w -X github.com/prometheus/common/version.Version={versions.PROMETHEUS_OPERATOR.lstrip('v')}",
        wrapper=True, staging_version=versions.PROMETHEUS_OPERATOR,
        data=(("example/prometheus-operator-crd", "crds"),),
        image=Image(f"quay.io/prometheus-operator/prometheus-operator:{versions.PROMETHEUS_OPERATOR}",
                    {"operator": "/bin/operator"}),
    )


def crds_dir() -> Path:
    """The CRDs the build copied next to the binary (``<cache>/bin/prometheus-operator-<version>/crds``)."""
    return component().dir / "crds"


class PrometheusOperator(Addon):
    name = "prometheus-operator"
    summary = "prometheus-operator: Prometheus, ServiceMonitor, PodMonitor, PrometheusRule -> Prometheus config"
    port_env = "LABKIT_PROMETHEUS_OPERATOR_PORT"
    ready_path = "/healthz"
    metrics_job = "prometheus-operator"
    binary_env = "LABKIT_PROMETHEUS_OPERATOR_BINARY"
    binary_name = "operator"

    def component(self) -> Component:
        return component()

    def prepare(self, ctx: Context) -> None:
        """Install the operator's CRDs (``kubectl apply --server-side -f crds/``) and wait until they are served."""
        kubectl_apply(ctx, crds_dir(), what="prometheus-operator's CRDs", established=True)

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # built by addons.start before the first spawn
        # Its one listener (metrics, /healthz, pprof) on loopback, plain HTTP (only the lab reaches it). TLS is off,
        # so the certificate paths are unused; they name this add-on's folder, which is how labkit's liveness check
        # knows the process as this lab's (the operator takes no other path on its command line).
        return [binary, f"--web.listen-address=127.0.0.1:{ctx.port}", "--web.enable-tls=false",
                f"--web.cert-file={ctx.folder / 'tls.crt'}", f"--web.key-file={ctx.folder / 'tls.key'}",
                "--log-level=info"]

    def env(self, ctx: Context) -> dict[str, str]:
        # Out of cluster: client-go reads the lab's kubeconfig (there is no service account token to mount).
        return {"PATH": "/usr/bin:/bin", "HOME": str(ctx.folder), "KUBECONFIG": str(ctx.kubeconfig)}
