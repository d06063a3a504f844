"""The simulated nodes' own logs: what each node's kernel would write to ``/var/log/kern.log``.

KWOK nodes have no kernel. This module gives each one a ``var/log`` folder under the lab's state and writes to it
the lines a Linux kernel writes when something goes wrong (an OOM kill, a hung task, a filesystem remounted
read-only), in the kernel's own wording and the syslog format of ``/var/log/kern.log``. The real
node-problem-detector of that node (the ``node-problem-detector`` add-on) reads the file with its upstream rules,
exactly as it reads a real node's log. The problems are data: ``labkit/data/node-problems.yaml``.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import LabkitError
from ..paths import data_file, state_dir, write_atomic

KERNEL_LOG = "kern.log"


def node_root(node: str) -> Path:
    """The folder that stands for ``node``'s filesystem root (``<state>/nodes/NODE``)."""
    return state_dir() / "nodes" / node


def kernel_log(node: str) -> Path:
    """``node``'s ``/var/log/kern.log``."""
    return node_root(node) / "var" / "log" / KERNEL_LOG


def problems() -> dict[str, dict[str, Any]]:
    """Every problem a lesson can inject: name -> {lines, monitor, effect} (``labkit/data/node-problems.yaml``)."""
    return yaml.safe_load(data_file("node-problems.yaml").read_text())["problems"]


def uptime_s() -> float:
    """The kernel timestamp in brackets: seconds since this machine booted, as the real kernel prints it."""
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return time.monotonic()


def kernel_line(node: str, message: str, *, now: datetime | None = None) -> str:
    """One line as rsyslog writes the kernel's messages: ``Nov 29 07:58:01 NODE kernel: [  123.456789] MSG``."""
    stamp = (now or datetime.now()).strftime("%b %e %H:%M:%S")  # local time, as syslog writes it
    return f"{stamp} {node} kernel: [{uptime_s():12.6f}] {message}"


def write_kernel_lines(node: str, messages: list[str]) -> list[str]:
    """Append kernel messages to ``node``'s kern.log (``logger -p kern.err`` would, on a real node); return lines."""
    log = kernel_log(node)
    log.parent.mkdir(parents=True, exist_ok=True)
    lines = [kernel_line(node, m) for m in messages]
    with log.open("a") as f:
        f.write("".join(f"{line}\n" for line in lines))
    return lines


def inject(node: str, problem: str, **values: Any) -> list[str]:
    """Make ``node``'s kernel report ``problem`` (a name in node-problems.yaml); return the lines written."""
    catalog = problems()
    if problem not in catalog:
        raise LabkitError(f"no node problem named {problem!r}", fix=f"pick from: {', '.join(catalog)}")
    spec = catalog[problem]
    fields = {"pid": 4242, "comm": "stress", **spec.get("defaults", {}), **values}
    return write_kernel_lines(node, [line.format(**fields) for line in spec["lines"]])


def chrony_tracking(node: str) -> Path:
    """Where ``node``'s ``chronyc tracking`` output is kept (the simulated node has no chronyd to ask)."""
    return node_root(node) / "run" / "chrony" / "tracking"


def set_clock_offset(node: str, seconds: float) -> Path:
    """Make ``node``'s clock ``seconds`` off NTP time, as ``chronyc tracking`` on that node would report it."""
    path = chrony_tracking(node)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = "slow" if seconds >= 0 else "fast"
    text = ("Reference ID    : C0A80001 (ntp.lab)\nStratum         : 3\n"
            f"System time     : {abs(seconds):.9f} seconds {side} of NTP time\n"
            "Leap status     : Normal\n")
    return write_atomic(path, text)  # a check running at this moment reads the old file or the new one


def rotate_kernel_log(node: str) -> Path:
    """A fresh, empty kern.log for ``node`` (what a reboot and logrotate leave); the old one becomes kern.log.1.

    The node's node-problem-detector notices the new file and starts again, as its pod would after a reboot.
    """
    log = kernel_log(node)
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists():
        log.replace(log.with_name(f"{KERNEL_LOG}.1"))
    log.touch()
    return log
