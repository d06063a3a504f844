"""`labkit up/down` on a private second cluster (own state dir and API port), so the shared lab stays up.

Covers: up twice reuses, down leaves no process, a stale cluster from a killed run, a busy port,
and a wait that is running when the cluster stops.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import labkit as lk
from labkit.cluster import kwok_backend
from labkit.cluster.ports import free_port
from labkit.cluster.topology import load_topology

NODES_READY = f"{len(load_topology())} nodes Ready"


def _labkit(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _pids(state: Path) -> list[int]:
    pids = []
    for f in (state / "kwok" / "clusters" / "labkit" / "pids").glob("*.pid"):
        pids.append(int(f.read_text().strip()))
    return pids


@pytest.fixture
def private_lab(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = dict(os.environ, LABKIT_STATE_DIR=str(tmp_path / "state"), LABKIT_API_PORT=str(free_port()))
    yield env
    _labkit(env, "down", timeout=120)


def test_up_twice_reuses_and_down_leaves_no_process(private_lab: dict[str, str]) -> None:
    first = _labkit(private_lab, "up", "--backend", "kwok")
    assert first.returncode == 0, first.stderr
    assert NODES_READY in first.stdout
    state = Path(private_lab["LABKIT_STATE_DIR"])
    pids = _pids(state)
    # etcd, apiserver, controller-manager, scheduler, kwok, metrics-server
    assert len(pids) >= 6 and all(kwok_backend.process_alive(p) for p in pids)

    second = _labkit(private_lab, "up", "--backend", "kwok")
    assert second.returncode == 0, second.stderr
    assert "reusing the running embedded lab cluster" in second.stdout
    assert _pids(state) == pids

    # A component that died (here metrics-server) is started again by the next `labkit up`, which reuses the rest.
    metrics_server = int((state / "kwok/clusters/labkit/pids/metrics-server.pid").read_text())
    os.kill(metrics_server, signal.SIGKILL)
    third = _labkit(private_lab, "up", "--backend", "kwok")
    assert third.returncode == 0, third.stderr
    assert "metrics-server not running" in third.stdout and "starting it again" in third.stdout
    status = _labkit(private_lab, "status")
    assert status.returncode == 0 and "NOT RUNNING" not in status.stdout, status.stdout
    pids = _pids(state)

    down = _labkit(private_lab, "down")
    assert down.returncode == 0 and "no process left" in down.stdout
    assert [p for p in pids if kwok_backend.process_alive(p)] == []


def test_stale_cluster_from_killed_run_is_replaced(private_lab: dict[str, str]) -> None:
    assert _labkit(private_lab, "up", "--backend", "kwok").returncode == 0
    state = Path(private_lab["LABKIT_STATE_DIR"])
    for pid in _pids(state):  # what a crash or `kill -9` of the whole session leaves behind
        os.kill(pid, signal.SIGKILL)
    status = _labkit(private_lab, "status")
    assert status.returncode == 1 and "NOT RUNNING" in status.stdout

    again = _labkit(private_lab, "up", "--backend", "kwok")
    assert again.returncode == 0, again.stderr
    assert "stale lab cluster" in again.stdout and NODES_READY in again.stdout


def test_busy_port_gives_clear_error(private_lab: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(private_lab["LABKIT_API_PORT"])))
        squatter.listen()
        result = _labkit(private_lab, "up", "--backend", "kwok")
    assert result.returncode == 2
    assert f"port {private_lab['LABKIT_API_PORT']} on 127.0.0.1 is already in use" in result.stderr
    assert "LABKIT_API_PORT=" in result.stderr and "Traceback" not in result.stderr


def test_wait_ends_with_clear_error_when_cluster_stops(private_lab: dict[str, str], monkeypatch) -> None:
    assert _labkit(private_lab, "up", "--backend", "kwok").returncode == 0
    state = Path(private_lab["LABKIT_STATE_DIR"])
    lab = lk.connect(state / "kubeconfig")
    lk.apply(lab, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "never"}}, namespace="default")
    outcome: dict[str, object] = {}

    def waiter() -> None:
        started = time.monotonic()
        try:
            lk.wait_for(lab, "ConfigMap", "never", namespace="default",
                        condition="jsonpath={.data.done}=yes", timeout=120)
        except lk.LabkitError as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(2)
    assert _labkit(private_lab, "down").returncode == 0
    thread.join(timeout=60)
    assert not thread.is_alive(), "the wait hung after the cluster stopped"
    assert isinstance(outcome.get("error"), lk.ClusterUnreachable), outcome
    assert "labkit up" in str(outcome["error"])
    assert outcome["seconds"] < 60


def test_connect_without_cluster_says_what_to_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with pytest.raises(lk.ClusterUnreachable, match="labkit up"):
        lk.connect()


def test_env_status_and_doctor_describe_the_running_lab(private_lab: dict[str, str]) -> None:
    assert _labkit(private_lab, "up", "--backend", "kwok").returncode == 0
    env_lines = _labkit(private_lab, "env").stdout
    assert "export KUBECONFIG=" in env_lines and "export PATH=" in env_lines
    shell = subprocess.run(["bash", "-c", f'{env_lines}\nkubectl get nodes -o name'], capture_output=True,
                           text=True, timeout=60, env=private_lab)
    assert shell.returncode == 0, shell.stderr
    assert len(shell.stdout.split()) == len(load_topology())

    status = _labkit(private_lab, "status")
    assert status.returncode == 0, status.stdout
    assert "backend:    kwok" in status.stdout and "v1.36.3" in status.stdout
    assert "kube-apiserver" in status.stdout and "NOT RUNNING" not in status.stdout
    assert "gpu-node-1" in status.stdout

    doctor = _labkit(private_lab, "doctor")
    assert "[ok] cluster binaries cached" in doctor.stdout
    assert "MISSING" not in doctor.stdout.split("Prometheus")[0], doctor.stdout
