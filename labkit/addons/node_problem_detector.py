"""node-problem-detector: one real NPD per simulated node, reporting node problems as Events and NodeConditions.

In a real cluster NPD is a DaemonSet: one pod per node reads that node's kernel log and runs its check scripts.
Here the add-on's process plays the DaemonSet controller: for every node of the lab it runs the upstream binary
(``k8s.io/node-problem-detector``, pinned in :mod:`labkit.versions`, built with Go on first start) out of cluster,
as that node (``--hostname-override``), talking to the lab's API server with the lab's kubeconfig, reading the
node's ``/var/log/kern.log`` that :mod:`labkit.sim.node_logs` writes. The monitor rules are upstream's own files
from the same module (``config/kernel-monitor-filelog.json``, ``config/readonly-monitor.json``); only their log
path changes, and readonly-monitor reads that file instead of ``/dev/kmsg`` (no kernel ring buffer per simulated
node). Custom plugin monitors a learner writes go in ``<state>/addons/node-problem-detector/custom/``; every NPD
restarts with them when that folder changes. Nodes that join later (Karpenter) get their NPD within seconds.

Run as ``python -m labkit.addons.node_problem_detector ...`` (the add-on's command); everything on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import versions
from ..cluster.binaries import GITHUB, Component, arch
from ..cluster.health import api_server
from ..cluster.ports import free_port
from ..paths import data_file, write_atomic
from ..sim.node_logs import kernel_log, node_root
from . import per_node
from .base import Context, PythonModuleAddon
from .per_node import NodeAgent, PerNode, spawn

JOB = "node-problem-detector"
# Upstream monitor configs (folder `config/` of the module, copied beside the binary) that labkit runs per node.
SYSTEM_LOG_MONITORS = ("kernel-monitor-filelog.json", "readonly-monitor.json")
CUSTOM_DIR = "custom"
PLUGINS_DIR = "npd-plugins"  # labkit's custom plugin scripts, under labkit/data


def component() -> Component:
    """The pinned NPD, with its upstream monitor configs copied beside it at build time.

    The Go proxy refuses this module's version list (which ``go install module@version`` asks for); a wrapper module
    that requires the exact version does not need it.
    """
    v = versions.NODE_PROBLEM_DETECTOR
    return Component("node-problem-detector", v, "k8s.io/node-problem-detector",
                     ("k8s.io/node-problem-detector/cmd/nodeproblemdetector",), ("node-problem-detector",),
                     ldflags=f"-s -w -X k8s.io/node-problem-detector/pkg/version.version="
                             f"{versions.NODE_PROBLEM_DETECTOR}",
                     wrapper=True, data=(("config", "config"),), tags=("disable_stackdriver_exporter",),
                     # The Makefile's release tarball: bin/ and config/ at its root; its only published checksum
                     # is the asset digest of GitHub's release API.
                     downloads={"node-problem-detector": f"{GITHUB}/kubernetes/node-problem-detector/releases/"
                                f"download/{v}/node-problem-detector-{v}-linux_{arch()}.tar.gz"})


class NodeProblemDetector(PythonModuleAddon):
    name = "node-problem-detector"
    summary = "node-problem-detector, one per simulated node: kernel log -> Events and NodeConditions"
    port_env = "LABKIT_NODE_PROBLEM_DETECTOR_PORT"
    ready_path = "/healthz"
    metrics_job = JOB
    module = "labkit.addons.node_problem_detector"

    def component(self) -> Component:
        return component()

    def arguments(self, ctx: Context) -> list[str]:
        return ["--kubeconfig", str(ctx.kubeconfig), "--folder", str(ctx.folder), "--port", str(ctx.port),
                "--targets", str(ctx.targets), "--binary", str(component().dir / "node-problem-detector"),
                "--upstream-config", str(component().dir / "config")]

    def scrape_targets(self, ctx: Context) -> list[dict[str, object]]:
        return []  # one target per node's NPD, written by the process as nodes come and go

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/nodes"


def custom_dir(folder: Path) -> Path:
    """Where custom plugin monitor configs go (``--config.custom-plugin-monitor`` of every node's NPD)."""
    return folder / CUSTOM_DIR


def node_monitor_configs(upstream: Path, node: str) -> list[dict[str, Any]]:
    """Upstream's system log monitors for ``node``: same rules, the node's kern.log as their log."""
    kernel = json.loads((upstream / "kernel-monitor-filelog.json").read_text())
    configs = []
    for name in SYSTEM_LOG_MONITORS:
        config = json.loads((upstream / name).read_text())
        if config.get("plugin") == "kmsg":  # no /dev/kmsg per simulated node: the same lines, from kern.log
            config["plugin"], config["pluginConfig"] = "filelog", kernel["pluginConfig"]
        config["logPath"] = str(kernel_log(node))
        configs.append(config)
    return configs


def custom_stamp(folder: Path) -> list[str]:
    """What the custom plugin monitors folder holds now (``name@mtime``): each NPD reports the one it started with."""
    custom = custom_dir(folder)
    return sorted(f"{p.name}@{p.stat().st_mtime_ns}" for p in custom.glob("*.json")) if custom.is_dir() else []


def render_custom(config: dict[str, Any], node: str) -> dict[str, Any]:
    """A custom plugin monitor for ``node``: ``{node}`` and ``{node_root}`` name that node, ``{plugins}`` the folder
    of labkit's check scripts (``labkit/data/npd-plugins``), wherever labkit is installed."""
    text = (json.dumps(config).replace("{node_root}", str(node_root(node))).replace("{node}", node)
            .replace("{plugins}", str(data_file(PLUGINS_DIR))))
    return json.loads(text)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


class DaemonSet(PerNode):
    """labkit in the role of NPD's DaemonSet controller: one NPD per node, restarted when the custom monitors change
    (all of them) or its node's kernel log was replaced (the node rebooted)."""

    what = "node-problem-detector"
    log_name = "node-problem-detector.log"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.custom_stamp = custom_stamp(self.folder)
        self.restart_all = False
        self.server = api_server(Path(args.kubeconfig))

    def before_reconcile(self) -> None:
        stamp = custom_stamp(self.folder)
        self.restart_all, self.custom_stamp = stamp != self.custom_stamp, stamp

    def must_restart(self, agent: NodeAgent) -> bool:
        return self.restart_all or _inode(kernel_log(agent.node)) != agent.extra["log_inode"]

    def start(self, node: str) -> NodeAgent:
        upstream = Path(self.args.upstream_config)
        home = self.folder / node
        home.mkdir(parents=True, exist_ok=True)
        kernel_log(node).parent.mkdir(parents=True, exist_ok=True)
        kernel_log(node).touch()
        system = []
        for config in node_monitor_configs(upstream, node):
            path = home / f"{config['source']}.json"
            path.write_text(json.dumps(config, indent=1))
            system.append(str(path))
        custom = []
        for i, src in enumerate(sorted(custom_dir(self.folder).glob("*.json")) if custom_dir(self.folder).is_dir()
                                else []):
            path = home / f"custom-{i}-{src.name}"
            path.write_text(json.dumps(render_custom(json.loads(src.read_text()), node), indent=1))
            custom.append(str(path))
        port, metrics_port = free_port(), free_port()
        cmd = [self.args.binary, f"--hostname-override={node}",
               f"--apiserver-override={self.server}?inClusterConfig=false&auth={self.args.kubeconfig}",
               f"--config.system-log-monitor={','.join(system)}",
               "--address=127.0.0.1", f"--port={port}",
               "--prometheus-address=127.0.0.1", f"--prometheus-port={metrics_port}"]
        if custom:
            cmd.append(f"--config.custom-plugin-monitor={','.join(custom)}")
        proc = spawn(cmd, home=home, log_name=self.log_name)
        return NodeAgent(node, proc, port, "/healthz", metrics_port=metrics_port, custom=self.custom_stamp,
                         log_inode=_inode(kernel_log(node)))

    def describe(self, agent: NodeAgent) -> dict[str, Any]:
        return {"metrics_port": agent.extra["metrics_port"], "custom": agent.extra["custom"]}

    def reconciled(self) -> None:
        """Prometheus' file_sd targets: each node's NPD metrics port."""
        groups = [{"targets": [f"127.0.0.1:{a.extra['metrics_port']}"], "labels": {"job": JOB, "node": a.node}}
                  for a in self.agents.values()]
        write_atomic(Path(self.args.targets), json.dumps(groups, indent=1))


def main(argv: list[str] | None = None) -> None:
    per_node.main(DaemonSet, ("--targets", "--binary", "--upstream-config"), __doc__.split("\n")[0], argv)


if __name__ == "__main__":
    main()
