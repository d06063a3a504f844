"""Everything the lab runs listens on loopback only (read from /proc, not from configuration)."""

from __future__ import annotations

import os
from pathlib import Path

import labkit as lk
from labkit import addons
from labkit.cluster import kwok_backend

LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net prints them


def _listening_addresses() -> dict[str, str]:
    """Socket inode -> hex local address, for every listening TCP socket on the machine."""
    result = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                result[fields[9]] = fields[1].split(":")[0]
    return result


def test_every_lab_process_listens_on_loopback_only(lab: lk.Lab) -> None:
    pids = kwok_backend.running_pids()
    assert len(pids) >= 6, "expected the embedded lab's processes (etcd, apiserver, kcm, scheduler, kwok, metrics)"
    addons.require(*addons.REGISTRY)  # every registered add-on, started as a lesson would start it
    pids += [s.pid for s in addons.status() if s.pid]
    assert len(pids) >= 6 + len(addons.REGISTRY)
    listening = _listening_addresses()
    seen = 0
    for pid in pids:
        proc = Path(f"/proc/{pid}")
        assert proc.exists(), f"lab process {pid} exited during the test (`labkit status` names the component)"
        name = (proc / "comm").read_text().strip()
        for fd in (proc / "fd").iterdir():
            try:
                target = os.readlink(fd)
            except FileNotFoundError:  # a file the process closed between listing and reading; not a listener
                continue
            if target.startswith("socket:["):
                inode = target[len("socket:["):-1]
                if inode in listening:
                    seen += 1
                    assert listening[inode] in LOOPBACK, f"{name} (pid {pid}) listens on {listening[inode]}"
    assert seen >= 6 + len(addons.REGISTRY), f"found only {seen} listening sockets among the lab's processes"
