"""VictoriaLogs: the lab's log store (日志存储), and vlagent, its node-level log agent, one per simulated node.

Both come from one module, ``github.com/VictoriaMetrics/VictoriaLogs`` (Apache-2.0; pinned in :mod:`labkit.versions`,
built with Go on first start, UI embedded):

- ``victoria-logs``: the store, on 127.0.0.1; LogsQL at ``/select/logsql/query``
  (``curl http://127.0.0.1:PORT/select/logsql/query -d 'query=error'``), its web UI at ``/select/vmui``;
- ``log-agent``: in a real cluster vlagent runs as a DaemonSet, one pod per node, reading that node's
  ``/var/log/containers`` and asking the API server which pods run there (namespace, pod, container become the
  log stream's fields). Here this add-on's process plays the DaemonSet controller (:mod:`labkit.addons.per_node`,
  as for node-problem-detector): one upstream vlagent per simulated node, out of cluster with the lab's
  kubeconfig, reading the files :mod:`labkit.sim.pod_logs` writes, shipping to the store
  (``-remoteWrite.url .../insert/native``).

Run as ``python -m labkit.addons.victorialogs ...`` (the log-agent add-on's command); everything on 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import versions
from ..cluster.binaries import Component
from ..cluster.ports import free_port
from ..sim.pod_logs import containers_dir
from . import per_node
from .base import Addon, Context, PythonModuleAddon
from .per_node import NodeAgent, PerNode, spawn

STORE = "victoria-logs"
AGENT = "log-agent"
# Stream fields: what identifies one container's log (vlagent's default, stated so the lesson can rely on it).
STREAM_FIELDS = ("kubernetes.pod_namespace", "kubernetes.pod_name", "kubernetes.container_name")

MODULE = "github.com/VictoriaMetrics/VictoriaLogs"
# vlagent run outside the cluster (kubeconfig, not a service account) collects the logs of the FIRST node the API
# lists; a DaemonSet pod would use its own node. This one edit lets each vlagent be told its node, as the DaemonSet's
# pod would know it: VLAGENT_NODE_NAME, when set, names the node (unset: upstream behaviour).
NODE_NAME_ENV = "VLAGENT_NODE_NAME"
_NODE_PATCH = ("app/vlagent/kubernetescollector/kubernetes.go", "\tfirstNode := nodes[0]\n",
               f'\tfirstNode := nodes[0]\n\tif n := os.Getenv("{NODE_NAME_ENV}"); n != "" {{\n'
               "\t\tfirstNode = n\n\t}\n")


def component() -> Component:
    """victoria-logs and vlagent at the pinned version, vlagent with the one-line node-name edit above."""
    return Component("victorialogs", versions.VICTORIALOGS, MODULE,
                     (f"{MODULE}/app/victoria-logs", f"{MODULE}/app/vlagent"), ("victoria-logs", "vlagent"),
                     ldflags=f"-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version="
                             f"victoria-logs-{versions.VICTORIALOGS}",
                     patches=(_NODE_PATCH,))


class VictoriaLogs(Addon):
    name = STORE
    summary = "VictoriaLogs, the log store: LogsQL over every pod's logs (UI at /select/vmui)"
    port_env = "LABKIT_VICTORIA_LOGS_PORT"
    ready_path = "/health"
    binary_env = "LABKIT_VICTORIA_LOGS_BINARY"
    binary_name = "victoria-logs"
    metrics_job = STORE

    def component(self) -> Component:
        return component()

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # the component is built before the add-on starts
        return [binary, f"-httpListenAddr=127.0.0.1:{ctx.port}", f"-storageDataPath={ctx.folder / 'data'}",
                "-retentionPeriod=1d", "-loggerLevel=WARN"]

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"


class LogAgent(PythonModuleAddon):
    name = AGENT
    summary = "vlagent, one per simulated node: /var/log/containers -> VictoriaLogs, with pod metadata"
    port_env = "LABKIT_LOG_AGENT_PORT"
    ready_path = "/healthz"
    needs = (STORE,)
    module = "labkit.addons.victorialogs"

    def component(self) -> Component:
        return component()

    def arguments(self, ctx: Context) -> list[str]:
        return ["--kubeconfig", str(ctx.kubeconfig), "--folder", str(ctx.folder), "--port", str(ctx.port),
                "--binary", str(component().dir / "vlagent"), "--logs", str(containers_dir()),
                "--store", f"http://127.0.0.1:{ctx.ports[STORE]}"]

    def scrape_targets(self, ctx: Context) -> list[dict[str, object]]:
        return []

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/nodes"


class DaemonSet(PerNode):
    """labkit in the role of vlagent's DaemonSet controller: one vlagent per node, restarted when it exits."""

    what = "vlagent"
    log_name = "vlagent.log"

    def start(self, node: str) -> NodeAgent:
        home = self.folder / node
        Path(self.args.logs).mkdir(parents=True, exist_ok=True)
        port = free_port()
        cmd = [self.args.binary, f"-httpListenAddr=127.0.0.1:{port}", f"-tmpDataPath={home / 'tmp'}",
               f"-remoteWrite.url={self.args.store}/insert/native", "-remoteWrite.flushInterval=1s",
               "-kubernetesCollector", f"-kubernetesCollector.logsPath={self.args.logs}",
               f"-kubernetesCollector.streamFields={','.join(STREAM_FIELDS)}", "-loggerLevel=WARN"]
        env = dict(os.environ, KUBECONFIG=self.args.kubeconfig, **{NODE_NAME_ENV: node})
        return NodeAgent(node, spawn(cmd, home=home, log_name=self.log_name, env=env), port, "/health")


def main(argv: list[str] | None = None) -> None:
    per_node.main(DaemonSet, ("--binary", "--logs", "--store"), __doc__.split("\n")[0], argv)


if __name__ == "__main__":
    main()
