"""kube-state-metrics: the state of the lab's objects (Deployments, Pods, Nodes, ...) as Prometheus metrics.

A real upstream kube-state-metrics (``k8s.io/kube-state-metrics/v2``, pinned in :mod:`labkit.versions`, built with Go
on first start), out of cluster against the lab's kubeconfig, on 127.0.0.1: object metrics on its port
(``kube_deployment_status_replicas_unavailable``, ``kube_pod_status_phase``, ...), its own metrics on a second
telemetry port. Both are scraped by the lab's Prometheus (jobs ``kube-state-metrics`` and
``kube-state-metrics-telemetry``). Equals ``curl http://127.0.0.1:PORT/metrics``.
Introduced in notebook 06_prometheus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import versions
from ..cluster.ports import free_port
from ..settings import KSM_JOB
from .base import Addon, Context

if TYPE_CHECKING:
    from ..cluster.binaries import Component

_VERSION_PKG = "github.com/prometheus/common/version"
# The exporter-toolkit web config: plain HTTP (no tls_server_config) on loopback. Passing it puts the add-on's folder
# on the command line, which is how labkit recognises its own processes.
WEB_CONFIG = "# written by labkit: plain HTTP on 127.0.0.1 (no tls_server_config)\n"


def telemetry_port(ctx: Context) -> int:
    """Its self-metrics port on loopback: picked free on first start, kept in its folder."""
    record = ctx.folder / "telemetry-port"
    if record.exists():
        return int(record.read_text())
    ctx.folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    while port == ctx.port:
        port = free_port()
    record.write_text(f"{port}\n")
    return port


class KubeStateMetrics(Addon):
    name = "kube-state-metrics"
    summary = "object state of the lab (Deployments, Pods, Nodes, ...) as Prometheus metrics"
    port_env = "LABKIT_KUBE_STATE_METRICS_PORT"
    ready_path = "/healthz"
    binary_env = "LABKIT_KUBE_STATE_METRICS_BINARY"
    binary_name = "kube-state-metrics"
    metrics_job = KSM_JOB

    def component(self) -> Component:
        from ..cluster.binaries import Component
        from ..cluster.oci import Image

        v = versions.KUBE_STATE_METRICS
        # The Go proxy refuses this module's version list, which `go install module@version` asks for; the
        # wrapper module (require the exact version, then `go build`) does not need it.
        return Component("kube-state-metrics", v, "k8s.io/kube-state-metrics/v2", ("k8s.io/kube-state-metrics/v2",),
                         ("kube-state-metrics",), wrapper=True, image=Image(
                             f"registry.k8s.io/kube-state-metrics/kube-state-metrics:{v}",
                             {"kube-state-metrics": "/kube-state-metrics"}),
                         ldflags=f"-s -w -X {_VERSION_PKG}.Version={v.lstrip('v')} "
                         f"-X k8s.io/kube-state-metrics/v2/pkg/app.ClientGoVersion={versions.KUBERNETES_STAGING}")

    def prepare(self, ctx: Context) -> None:
        (ctx.folder / "telemetry-port").unlink(missing_ok=True)
        telemetry_port(ctx)
        (ctx.folder / "web-config.yml").write_text(WEB_CONFIG)

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # the component is built before the add-on starts
        return [binary, f"--kubeconfig={ctx.kubeconfig}", "--host=127.0.0.1", f"--port={ctx.port}",
                "--telemetry-host=127.0.0.1", f"--telemetry-port={telemetry_port(ctx)}",
                f"--tls-config={ctx.folder / 'web-config.yml'}"]

    def scrape_targets(self, ctx: Context) -> list[dict[str, object]]:
        return [{"targets": [f"127.0.0.1:{ctx.port}"], "labels": {"job": KSM_JOB}},
                {"targets": [f"127.0.0.1:{telemetry_port(ctx)}"], "labels": {"job": f"{KSM_JOB}-telemetry"}}]
