"""Node exporter: the host's own metrics (CPU, memory, disk, network, pressure), from a real Prometheus exporter.

The Prometheus project's node_exporter (its release, or built from its module) on 127.0.0.1, scraped by the lab's
Prometheus as job ``node-exporter``. On the embedded backend the simulated nodes have no host of their own, so this is
the machine that runs the whole lab: one real node, the USE method's data for it. Only the collectors that describe
that machine's resources run (no systemd, hardware sensors, NFS, ...). Equals ``curl http://127.0.0.1:PORT/metrics``.
Introduced in notebook 06_prometheus.
"""

from __future__ import annotations

from .. import versions
from ..cluster.binaries import Component, prometheus_project
from ..settings import NODE_EXPORTER_JOB
from .base import Addon, Context
from .kube_state_metrics import WEB_CONFIG

# The USE method's resources of one machine: CPU, memory, disk, filesystem, network, load, pressure (PSI).
COLLECTORS = ("cpu", "meminfo", "loadavg", "pressure", "diskstats", "filesystem", "netdev", "stat", "vmstat",
              "uname", "time")


class NodeExporter(Addon):
    name = "node-exporter"
    summary = "the host's CPU, memory, disk and network metrics (Prometheus node exporter)"
    port_env = "LABKIT_NODE_EXPORTER_PORT"
    ready_path = "/metrics"
    binary_env = "LABKIT_NODE_EXPORTER_BINARY"
    binary_name = "node_exporter"
    metrics_job = NODE_EXPORTER_JOB

    def component(self) -> Component:
        return prometheus_project("node_exporter", versions.NODE_EXPORTER, {"node_exporter": ""})

    def prepare(self, ctx: Context) -> None:
        (ctx.folder / "web-config.yml").write_text(WEB_CONFIG)

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # missing() is checked before start
        return [binary, f"--web.listen-address=127.0.0.1:{ctx.port}",
                f"--web.config.file={ctx.folder / 'web-config.yml'}",
                "--collector.disable-defaults",
                *(f"--collector.{c}" for c in COLLECTORS),
                # Pseudo and container filesystems say nothing about the machine's disks.
                "--collector.filesystem.fs-types-exclude=^(autofs|binfmt_misc|cgroup2?|configfs|debugfs|devpts|devtmpfs"
                "|fusectl|hugetlbfs|mqueue|nsfs|overlay|proc|pstore|securityfs|sysfs|tmpfs|tracefs)$"]

    def scrape_targets(self, ctx: Context) -> list[dict[str, object]]:
        return [{"targets": [f"127.0.0.1:{ctx.port}"], "labels": {"job": NODE_EXPORTER_JOB}}]
