"""labkit in the role of a DaemonSet controller: one upstream agent process per node of the lab.

In a real cluster node-problem-detector and vlagent run as DaemonSets, one pod per node. On the embedded cluster no
pod runs, so an add-on's process (:class:`PerNode`) keeps one process per Node object instead: started when a node
appears (Karpenter's too), stopped when it goes, started again when it exits or when the subclass says it must
(:meth:`PerNode.must_restart`). Each process gets SIGKILL if the supervisor dies (no agent outlives it). The
supervisor answers ``/healthz`` (every node's agent answers its own health check) and ``/nodes`` (one entry per
node) on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import signal
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ..cluster.health import ApiConnection
from ..sim.loopback_http import JSON, OK, Answer, LoopbackServer

NODE_POLL_S = 2.0
# How long one agent's health check may take: the supervisor asks them all side by side.
HEALTH_TIMEOUT_S = 1.0
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Children get SIGKILL when this process dies, even by SIGKILL: no agent outlives its supervisor."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class NodeAgent:
    """One node's agent process, the port of its health check and what the subclass keeps about it."""

    def __init__(self, node: str, proc: subprocess.Popen[bytes], port: int, health_path: str,
                 **extra: Any) -> None:
        self.node, self.proc, self.port, self.health_path = node, proc, port, health_path
        self.extra = extra

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            url = f"http://127.0.0.1:{self.port}{self.health_path}"
            with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as resp:  # noqa: S310 - loopback
                return resp.status == 200
        except OSError:
            return False


def spawn(cmd: list[str], *, home: Path, log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start one agent in ``home``, its output appended to ``home/log_name``."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / log_name).open("ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=home,
                                env=env, preexec_fn=die_with_parent)  # noqa: PLW1509 (no threads touch the fork)


class PerNode:
    """Keeps one :class:`NodeAgent` per node; subclasses say how to start one (:meth:`start`)."""

    what = "agent"  # in messages: "node-problem-detector", "vlagent"
    log_name = "agent.log"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.folder = Path(args.folder)
        self.agents: dict[str, NodeAgent] = {}
        self.lock = threading.Lock()

    def start(self, node: str) -> NodeAgent:
        raise NotImplementedError

    def must_restart(self, agent: NodeAgent) -> bool:
        """Whether a running agent must start again (its configuration changed); it has not exited."""
        return False

    def reconciled(self) -> None:
        """Called after each reconcile, under the lock (write what other processes read about the agents)."""

    def describe(self, agent: NodeAgent) -> dict[str, Any]:
        """What ``/nodes`` says about one agent besides pid, port, health and log."""
        return {}

    def nodes(self) -> list[str]:
        with ApiConnection(Path(self.args.kubeconfig)) as api:
            return sorted(n["metadata"]["name"] for n in api.get("/api/v1/nodes").get("items") or [])

    def stop(self, agent: NodeAgent) -> None:
        agent.proc.terminate()
        try:
            agent.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            agent.proc.kill()
            agent.proc.wait()

    def before_reconcile(self) -> None:
        """Called before each reconcile, under the lock (read what decides :meth:`must_restart`)."""

    def reconcile(self) -> None:
        """Nodes without an agent get one; agents of deleted nodes stop; one that exited or must restart starts
        again."""
        nodes = set(self.nodes())
        with self.lock:
            self.before_reconcile()
            for node, agent in list(self.agents.items()):
                if node not in nodes or agent.proc.poll() is not None or self.must_restart(agent):
                    self.stop(agent)
                    del self.agents[node]
            for node in sorted(nodes - set(self.agents)):
                self.agents[node] = self.start(node)
            self.reconciled()

    def stop_all(self) -> None:
        with self.lock:
            for agent in self.agents.values():
                self.stop(agent)
            self.agents.clear()

    def state(self) -> dict[str, Any]:
        with self.lock:
            agents = list(self.agents.values())
        # Side by side: one at a time, six slow answers on a busy machine add up past a client's timeout.
        with ThreadPoolExecutor(max_workers=max(1, len(agents))) as pool:
            healthy = list(pool.map(NodeAgent.healthy, agents))
        return {a.node: {"pid": a.proc.pid, "port": a.port, "healthy": ok, **self.describe(a),
                         "log": str(self.folder / a.node / self.log_name)}
                for a, ok in zip(agents, healthy, strict=True)}

    def answer(self, path: str) -> Answer | None:
        """``/healthz`` (every node's agent healthy) and ``/nodes`` (one entry per node)."""
        state = self.state()
        if path == "/healthz":
            if state and all(s["healthy"] for s in state.values()):
                return OK
            return Answer(f"{self.what}s not all healthy\n", status=HTTPStatus.SERVICE_UNAVAILABLE)
        if path == "/nodes":
            return Answer(json.dumps(state, indent=1), JSON)
        return None

    def run(self, port: int) -> None:
        """Reconcile now and every :data:`NODE_POLL_S` until SIGTERM or SIGINT, answering on ``port``; then stop
        every agent."""
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        self.reconcile()
        server = LoopbackServer(port, functools.partial(PerNode.answer, self)).start()
        while not stopping.wait(NODE_POLL_S):
            try:
                self.reconcile()
            except OSError as exc:  # the API server restarting: try again at the next poll
                print(f"{self.what} daemonset: {exc}", file=sys.stderr, flush=True)
        server.shutdown()
        self.stop_all()


def main(supervisor: type[PerNode], flags: tuple[str, ...], description: str, argv: list[str] | None = None) -> None:
    """The add-on's command: ``--port`` and the required string ``flags`` (``--kubeconfig``, ``--folder``, the
    agent's own), then ``supervisor(args).run(port)``."""
    parser = argparse.ArgumentParser(description=description)
    for flag in ("--kubeconfig", "--folder", *flags):
        parser.add_argument(flag, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    supervisor(args).run(args.port)
