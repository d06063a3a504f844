"""The GPU exporter: dcgm-exporter's metrics for every simulated GPU node, pods attributed as pod-resources would.

Runs ``python -m labkit.sim.gpu.daemon``; it writes its own Prometheus targets (one per GPU node).
"""

from __future__ import annotations

from ..paths import gpu_nvml_endpoint
from ..settings import DCGM_EXPORTER_JOB
from .base import Context, PythonModuleAddon


class GpuExporter(PythonModuleAddon):
    name = "gpu-exporter"
    summary = "dcgm-exporter metrics of the simulated GPUs (one /metrics/<node> per GPU node)"
    port_env = "LABKIT_GPU_EXPORTER_PORT"
    ready_path = "/metrics"
    metrics_job = DCGM_EXPORTER_JOB

    module = "labkit.sim.gpu.daemon"

    def arguments(self, ctx: Context) -> list[str]:
        return ["--kubeconfig", str(ctx.kubeconfig),
                "--port", str(ctx.port), "--state", str(ctx.folder), "--targets", str(ctx.targets),
                "--endpoint-file", str(gpu_nvml_endpoint())]

    def env(self, ctx: Context) -> dict[str, str]:
        env = super().env(ctx)
        env.pop("LABKIT_FAKE_GPU", None)  # the cluster's GPUs are always simulated; no driver probe needed
        return env

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/metrics"

    def scrape_targets(self, ctx: Context) -> list[dict[str, object]]:
        return []  # the daemon writes targets.json itself, one group per GPU node it finds
