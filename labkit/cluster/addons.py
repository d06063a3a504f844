"""The lab's long-running extras: the GPU exporter process and a real Prometheus scraping it.

``labkit up`` starts them (or reuses running ones), ``labkit down`` stops them and leaves no process.
Both bind 127.0.0.1 on ports chosen free at start (or ``LABKIT_GPU_EXPORTER_PORT`` /
``LABKIT_PROMETHEUS_PORT``). State lives in ``<state dir>/addons/``: ``addons.json`` (pids, ports),
``*.pid``, ``*.log``, Prometheus' config, its file_sd targets and its TSDB.

Introduced in notebook 12_gpu_monitoring.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PortInUse
from ..paths import state_dir
from .ports import free_port, port_free

Progress = Callable[[str], None]
EXPORTER, PROMETHEUS = "gpu-exporter", "prometheus"
SCRAPE_INTERVAL = "2s"
INSTALL_PROMETHEUS = "sudo apt-get install -y prometheus   # Debian/Ubuntu; labkit runs its own, on 127.0.0.1"
_PORT_ENV = {EXPORTER: "LABKIT_GPU_EXPORTER_PORT", PROMETHEUS: "LABKIT_PROMETHEUS_PORT"}
_READY_BUDGET_S = 2.0


@dataclass(frozen=True)
class AddonStatus:
    """One addon's health, for ``labkit status`` and the notebooks."""

    name: str
    state: str  # running | starting | stopped | missing
    pid: int | None
    url: str | None
    note: str = ""


def addons_dir() -> Path:
    return state_dir() / "addons"


def _record() -> dict[str, Any]:
    path = addons_dir() / "addons.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save(record: dict[str, Any]) -> None:
    addons_dir().mkdir(parents=True, exist_ok=True)
    (addons_dir() / "addons.json").write_text(json.dumps(record, indent=1))
    for name, info in record.items():
        (addons_dir() / f"{name}.pid").write_text(f"{info['pid']}\n")


def prometheus_binary() -> str | None:
    """Debian's Prometheus (or one on PATH); ``LABKIT_PROMETHEUS_BINARY`` overrides."""
    explicit = os.environ.get("LABKIT_PROMETHEUS_BINARY")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("prometheus")


def _alive(pid: int | None, marker: str) -> bool:
    """The process lives, is not a zombie, and is the one we started (pids get reused)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return marker in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _answers(port: int | None, *, timeout: float = 0.3) -> bool:
    if not port:
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _pick_port(name: str, previous: int | None) -> int:
    env = _PORT_ENV[name]
    if os.environ.get(env):
        port = int(os.environ[env])
        if not port_free(port):
            raise PortInUse(f"port {port} on 127.0.0.1 ({env}) is taken, so the lab's {name} cannot listen there",
                            fix=f"free it (`ss -ltnp 'sport = :{port}'` shows who holds it) or `unset {env}` "
                            "to let labkit pick a free port")
        return port
    return previous if previous and port_free(previous) else free_port()


def _spawn(name: str, cmd: list[str], *, env: dict[str, str] | None = None) -> int:
    log = (addons_dir() / f"{name}.log").open("ab")
    # A new session: the addon outlives the `labkit up` that started it and ignores its terminal's Ctrl-C.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd=addons_dir(), env=env, start_new_session=True)
    log.close()
    return proc.pid


def _marker(name: str) -> str:
    # Both command lines name this lab's addons folder, which tells our process from a reused pid.
    return str(addons_dir())


def _start_exporter(kubeconfig: Path, record: dict[str, Any]) -> None:
    port = _pick_port(EXPORTER, record.get(EXPORTER, {}).get("port"))
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    env.pop("LABKIT_FAKE_GPU", None)  # the cluster's GPUs are always simulated; no driver probe needed
    cmd = [sys.executable, "-m", "labkit.gpu_daemon", "--kubeconfig", str(kubeconfig), "--port", str(port),
           "--state", str(addons_dir() / EXPORTER)]
    record[EXPORTER] = {"pid": _spawn(EXPORTER, cmd, env=env), "port": port,
                        "url": f"http://127.0.0.1:{port}/metrics"}


def prometheus_config(exporter_port: int) -> str:
    """Prometheus' config: scrape the GPU exporter's per-node endpoints, found through file_sd."""
    targets = addons_dir() / EXPORTER / "targets.json"
    return (f"# written by labkit; edits are replaced on the next `labkit up`\n"
            f"global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\n"
            f"scrape_configs:\n"
            f"  - job_name: dcgm-exporter   # one target per GPU node (exporter port {exporter_port})\n"
            f"    file_sd_configs:\n      - files: ['{targets}']\n        refresh_interval: 5s\n")


def _start_prometheus(binary: str, record: dict[str, Any]) -> None:
    port = _pick_port(PROMETHEUS, record.get(PROMETHEUS, {}).get("port"))
    config = addons_dir() / "prometheus.yml"
    targets = addons_dir() / EXPORTER / "targets.json"
    targets.parent.mkdir(parents=True, exist_ok=True)  # Prometheus watches the folder; it must exist first
    if not targets.exists():
        targets.write_text("[]\n")
    config.write_text(prometheus_config(record[EXPORTER]["port"]))
    data = addons_dir() / "prometheus-data"
    cmd = [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
           f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=1d", "--web.enable-lifecycle"]
    record[PROMETHEUS] = {"pid": _spawn(PROMETHEUS, cmd), "port": port, "url": f"http://127.0.0.1:{port}"}


def start(*, kubeconfig: Path, progress: Progress = print) -> list[AddonStatus]:
    """Start whatever addon is not running; reuse the rest. Waits at most ~2 s for them to answer."""
    addons_dir().mkdir(parents=True, exist_ok=True)
    record = _record()
    started = []
    if not _alive(record.get(EXPORTER, {}).get("pid"), _marker(EXPORTER)):
        _start_exporter(kubeconfig, record)
        started.append(EXPORTER)
        # Prometheus' targets name the exporter's port, so a new exporter means a new Prometheus config.
        _stop_one(PROMETHEUS, record.get(PROMETHEUS, {}).get("pid"))
    binary = prometheus_binary()
    if binary and not _alive(record.get(PROMETHEUS, {}).get("pid"), _marker(PROMETHEUS)):
        _start_prometheus(binary, record)
        started.append(PROMETHEUS)
    _save(record)
    deadline = time.monotonic() + _READY_BUDGET_S
    while time.monotonic() < deadline and not all(s.state == "running" for s in status() if s.name in started):
        time.sleep(0.1)
    result = status()
    for s in result:
        verb = "started" if s.name in started else "reusing"
        progress(f"{s.name}: {verb if s.state in ('running', 'starting') else s.state} "
                 f"{s.url or ''} {s.note}".rstrip())
    return result


def status() -> list[AddonStatus]:
    """Each addon's state; a missing Prometheus says how to install it.

    Introduced in notebook 12_gpu_monitoring.
    """
    record = _record()
    out = []
    for name in (EXPORTER, PROMETHEUS):
        info = record.get(name, {})
        pid, port, url = info.get("pid"), info.get("port"), info.get("url")
        if name == PROMETHEUS and not prometheus_binary():
            out.append(AddonStatus(name, "missing", None, None, f"not installed; fix: {INSTALL_PROMETHEUS}"))
        elif not _alive(pid, _marker(name)):
            log = addons_dir() / f"{name}.log"
            note = f"(see {log})" if info and log.exists() else "(labkit up starts it)"
            out.append(AddonStatus(name, "stopped", None, None, note))
        elif _answers(port):
            out.append(AddonStatus(name, "running", pid, url))
        else:
            out.append(AddonStatus(name, "starting", pid, url, "(not answering yet)"))
    return out


def url(name: str) -> str | None:
    """The base URL of a running addon (``gpu-exporter`` gives its /metrics), else None."""
    return next((s.url for s in status() if s.name == name and s.state in ("running", "starting")), None)


def _stop_one(name: str, pid: int | None) -> bool:
    if not _alive(pid, _marker(name)):
        return False
    assert pid is not None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 10
    while _alive(pid, _marker(name)) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if _alive(pid, _marker(name)):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the addon is our own child (tests start it in-process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(*, progress: Progress = print) -> None:
    """Stop both addons and remove their state (the TSDB belongs to the cluster that is going away)."""
    record = _record()
    stopped = [name for name in (PROMETHEUS, EXPORTER) if _stop_one(name, record.get(name, {}).get("pid"))]
    shutil.rmtree(addons_dir(), ignore_errors=True)
    if stopped:
        progress(f"stopped {', '.join(stopped)}")
