"""The running lab's record (``<state dir>/backend.json``): which backend runs, where its kubeconfig is, and the
ports the embedded cluster's helpers use (:class:`LabState`).

The only module that reads or writes that file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .paths import kubeconfig_path, state_dir, write_atomic


def _file() -> Path:
    return state_dir() / "backend.json"


@dataclass(frozen=True)
class LabState:
    """What ``labkit up`` recorded: the backend, and for the embedded (kwok) one the ports and files its helpers use.
    An empty record (no lab, or a damaged file) has ``backend`` None."""

    backend: str | None = None
    created: float = 0.0
    kubeconfig: Path | None = None     # the "current" backend's own kubeconfig (kwok and kind: paths.kubeconfig_path)
    api_port: int | None = None
    kubelet_port: int | None = None
    kwok_server_port: int | None = None
    pki: Path | None = None
    control_plane_otlp_port: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("kubeconfig", "pki"):
            if values.get(key):
                values[key] = Path(values[key])
        return cls(**values)


def recorded() -> LabState:
    """What ``labkit up`` recorded (an empty :class:`LabState` when no lab is recorded or the file is damaged)."""
    try:
        return LabState.from_json(json.loads(_file().read_text()))
    except (OSError, ValueError, TypeError):
        return LabState()


def lab_kubeconfig() -> Path | None:
    """The running lab's kubeconfig, whatever the backend (None when no lab is recorded and none was started here).
    The one place that decides it: the CLI, the add-ons and the Python client all ask here."""
    info = recorded()
    if info.backend == "current":
        return info.kubeconfig
    return kubeconfig_path() if kubeconfig_path().exists() else None


def record(backend: str, **details: Any) -> None:
    """Record the backend that now runs (``labkit up``)."""
    write_atomic(_file(), json.dumps({"backend": backend, "created": time.time(),
                                      **{k: str(v) if isinstance(v, Path) else v for k, v in details.items()}}))


def forget() -> None:
    """Remove the record (``labkit down``)."""
    _file().unlink(missing_ok=True)


def backend() -> str | None:
    """The recorded backend's name, or None."""
    return recorded().backend


# How long lk.connect() waits for a lab the keeper is starting: a cold cache builds for minutes, a warm one starts
# in seconds.
START_WAIT_S = 900.0


def starting_file() -> Path:
    """Holds the pid of a process starting this lab while it runs ``labkit up``: a hub server's keeper
    (labkit.course.jupyter)."""
    return state_dir() / "starting.pid"


def process_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (someone else's counts): `labkit status`, `labkit down`, a
    keeper's watch."""
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


def wait_for_start(timeout: float = START_WAIT_S) -> bool:
    """Wait while a keeper starts this user's lab; True when one was starting (and has finished or given up)."""
    marker = starting_file()
    try:
        pid = int(marker.read_text())
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + timeout
    while marker.exists() and process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    return True
