"""The embedded backend: upstream control-plane binaries run by kwokctl, nodes and pods simulated by KWOK.

Everything binds 127.0.0.1. Introduced by ``labkit up`` (notebook 00_lab_tour).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .. import settings, state, versions
from ..errors import LabkitError, PortInUse
from ..paths import bin_dir, data_file, kubeconfig_path, state_dir
from . import binaries
from .health import api_healthy
from .ports import port_free
from .topology import load_topology, node_manifest

CLUSTER = "labkit"
# KWOK CRDs the lab uses: simulated kubelet metrics and usage (metrics-server, HPA) and logs.
KWOK_CRDS = ["Metric", "ClusterResourceUsage", "ResourceUsage", "ClusterLogs", "Logs"]

Progress = Callable[[str], None]


def stage_files() -> list[Path]:
    """labkit's KWOK Stages (labkit/data/stages): how simulated nodes and pods behave. See that folder's README."""
    return sorted(data_file("stages").glob("*.yaml"))


def api_port() -> int:
    return settings.api_port()


def kwok_workdir() -> Path:
    return state_dir() / "kwok"


def cluster_dir() -> Path:
    return kwok_workdir() / "clusters" / CLUSTER


def _env() -> dict[str, str]:
    env = dict(os.environ, KWOK_WORKDIR=str(kwok_workdir()))
    # kwokctl runs `kubectl` from PATH; make it the lab's pinned one.
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env


def _kwokctl(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    cmd = [str(bin_dir() / "kwokctl"), "--name", CLUSTER, *args]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabkitError(
            f"`kwokctl {' '.join(args)}` failed:\n{(proc.stderr or proc.stdout)[-3000:]}",
            fix=f"look at the component logs in {cluster_dir() / 'logs'}, then `labkit down && labkit up`",
        )
    return proc


def link_binaries(paths: dict[str, Path]) -> None:
    """Put the pinned binaries on the lab's PATH (``labkit env`` exports it)."""
    bin_dir().mkdir(parents=True, exist_ok=True)
    for name, target in paths.items():
        link = bin_dir() / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)


def kwokctl_config(paths: dict[str, Path]) -> dict[str, Any]:
    """kwokctl's configuration: local binaries for every component, loopback only."""
    manifests = data_file("metrics-server")
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "bindAddress": "127.0.0.1",
            "kubeApiserverPort": api_port(),
            "kubeVersion": versions.KUBERNETES,
            "etcdVersion": versions.ETCD,
            "kwokVersion": versions.KWOK,
            "metricsServerVersion": versions.METRICS_SERVER,
            "kubeApiserverBinary": str(paths["kube-apiserver"]),
            "kubeControllerManagerBinary": str(paths["kube-controller-manager"]),
            "kubeSchedulerBinary": str(paths["kube-scheduler"]),
            "kubectlBinary": str(paths["kubectl"]),
            "etcdBinary": str(paths["etcd"]),
            "kwokControllerBinary": str(paths["kwok"]),
            "metricsServerBinary": str(paths["metrics-server"]),
            # kwokctl would otherwise fetch metrics-server's manifest from the internet.
            "metricsServerManifests": [str(manifests)],
            "enableMetricsServer": True,
            # With the Stage CRD on, KWOK takes its stages only from the API: labkit applies its own set.
            "enableCRDs": KWOK_CRDS + (["Stage"] if stage_files() else []),
            "kubeAuthorization": True,
            "nodeLeaseDurationSeconds": 40,
        },
    }


def _pids() -> list[int]:
    pids = []
    for pidfile in (cluster_dir() / "pids").glob("*.pid"):
        try:
            pids.append(int(pidfile.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def process_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (`labkit status`, `labkit down`)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed component whose parent has not reaped it yet is a zombie: dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running_pids() -> list[int]:
    """Control-plane processes of the lab that are still alive."""
    return [p for p in _pids() if process_alive(p)]


def exists() -> bool:
    return (cluster_dir() / "kwok.yaml").exists() or (cluster_dir() / "kubeconfig.yaml").exists()


def healthy() -> bool:
    return exists() and kubeconfig_path().exists() and api_healthy(kubeconfig_path())


def _kill_leftovers() -> None:
    for pid in running_pids():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 10
    while running_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in running_pids():
        os.kill(pid, signal.SIGKILL)


def down(*, progress: Progress = print) -> None:
    """Delete the embedded cluster and make sure none of its processes survive."""
    if not exists() and not running_pids():
        progress("no embedded lab cluster is running")
        return
    if (bin_dir() / "kwokctl").exists():
        _kwokctl("delete", "cluster", "--kubeconfig", "", check=False, timeout=60)
    _kill_leftovers()
    shutil.rmtree(cluster_dir(), ignore_errors=True)
    kubeconfig_path().unlink(missing_ok=True)
    progress("embedded lab cluster stopped; no process left")


def up(*, progress: Progress = print) -> Path:
    """Start the embedded cluster (or reuse a healthy one) and return its kubeconfig path."""
    if healthy():
        progress(f"reusing the running embedded lab cluster (API on 127.0.0.1:{api_port()})")
        return kubeconfig_path()
    if exists() or running_pids():
        progress("found a stale lab cluster from a run that did not stop cleanly; removing it")
        down(progress=lambda _msg: None)
    if not port_free(api_port()):
        raise PortInUse(
            f"port {api_port()} on 127.0.0.1 is already in use by another program, "
            "so the lab's API server cannot listen there",
            fix=f"free it (`ss -ltnp 'sport = :{api_port()}'` shows who holds it) "
            f"or pick another port: `LABKIT_API_PORT=16444 labkit up`",
        )
    paths = binaries.ensure_binaries(progress=progress)
    link_binaries(paths)
    start = time.monotonic()
    state_dir().mkdir(parents=True, exist_ok=True)
    config_file = state_dir() / "kwokctl.yaml"
    config_file.write_text(yaml.safe_dump(kwokctl_config(paths), sort_keys=False))
    progress(f"starting etcd, kube-apiserver, controller-manager, scheduler, metrics-server, kwok "
             f"(Kubernetes {versions.KUBERNETES}) on 127.0.0.1")
    _kwokctl("create", "cluster", "--config", str(config_file), "--kubeconfig", "", "--wait", "60s", timeout=240)
    shutil.copyfile(cluster_dir() / "kubeconfig.yaml", kubeconfig_path())
    _write_state()
    _install_lab_objects()
    progress(f"control plane up in {time.monotonic() - start:.1f}s; nodes registering")
    return kubeconfig_path()


def _install_lab_objects() -> None:
    """Nodes from the topology plus KWOK's metric and usage objects, applied with the lab's kubectl."""
    docs: list[dict[str, Any]] = []
    # Stages first: a node without its stages would never turn Ready.
    for path in [*stage_files(), data_file("kwok-metrics.yaml")]:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    docs += [node_manifest(n, kubelet_version=versions.KUBERNETES) for n in load_topology()]
    kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager=labkit", "-f", "-"],
            input_text=yaml.safe_dump_all(docs))


def kubectl(args: list[str], *, input_text: str | None = None, timeout: float = 60) -> str:
    """Run the lab's kubectl against the lab; raise with its stderr when it fails."""
    cmd = [str(bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig_path()), *args]
    proc = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabkitError(f"`kubectl {' '.join(args)}` failed: {proc.stderr.strip()}",
                          fix="`labkit status` shows which component is unhealthy")
    return proc.stdout


def _write_state() -> None:
    state.record("kwok", api_port=api_port())


def component_pids() -> dict[str, int | None]:
    """Component name -> pid if its process is alive (for ``labkit status``)."""
    result: dict[str, int | None] = {}
    for pidfile in sorted((cluster_dir() / "pids").glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = None
        result[pidfile.stem] = pid if pid and process_alive(pid) else None
    return result
