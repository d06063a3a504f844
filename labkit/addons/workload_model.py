"""The workload model: what simulated pods are doing (load from client pods through Services), as a process.

``labkit up`` starts it with the embedded cluster (it is what the containers would do), without waiting for it.

Runs ``python -m labkit.sim.workload``: writes KWOK ResourceUsages (so metrics-server and the HPA see the CPU) and
serves the pods' request metrics (``http_requests_total``, ``http_request_duration_seconds``) for Prometheus.
"""

from __future__ import annotations

from ..settings import WORKLOAD_MODEL_JOB
from .base import Context, PythonModuleAddon
from .jaeger import NAME as JAEGER
from .jaeger import OTLP_PORT_FILE


class WorkloadModel(PythonModuleAddon):
    name = "workload-model"
    summary = "load of simulated pods: client pods -> Services -> ready pods; CPU usage and request metrics"
    port_env = "LABKIT_WORKLOAD_MODEL_PORT"
    ready_path = "/healthz"
    metrics_job = WORKLOAD_MODEL_JOB
    # What the containers would do is part of the cluster: the documentation's HPA walkthrough (a busybox `wget`
    # loop at php-apache) loads its target on a plain `labkit up`, with no lesson involved.
    with_cluster_on = ("kwok",)

    module = "labkit.sim.workload"

    def arguments(self, ctx: Context) -> list[str]:
        return ["--kubeconfig", str(ctx.kubeconfig),
                "--port", str(ctx.port), "--state", str(ctx.folder),
                # Written by the Jaeger add-on when it starts; the model sends spans while it is there.
                "--traces-endpoint-file", str(ctx.folder.parent / JAEGER / OTLP_PORT_FILE)]

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/state"
