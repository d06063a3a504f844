"""Read a local process's cgroup files: the same counters cAdvisor (in the kubelet) reads for each container.

runc puts every container in its own cgroup; cAdvisor reads that cgroup's files (cgroup v2:
``cpu.stat``, ``memory.current``, ``memory.max``, ``pids.current``; v1: ``cpuacct.usage``,
``memory.usage_in_bytes``, ...) and the kubelet serves them as ``container_*`` metrics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

ROOT = Path("/sys/fs/cgroup")
# What cAdvisor turns each file into (the metric a learner will query in Prometheus).
V2_FILES = {"cpu.stat": "", "memory.current": "container_memory_usage_bytes",
            "memory.max": "container_spec_memory_limit_bytes",
            "memory.stat": "subtracted from usage: container_memory_working_set_bytes",
            "pids.current": "container_processes"}
V1_FILES = {"cpuacct/cpuacct.usage": "container_cpu_usage_seconds_total (nanoseconds)",
            "cpu/cpu.stat": "", "memory/memory.usage_in_bytes": "container_memory_usage_bytes",
            "memory/memory.limit_in_bytes": "container_spec_memory_limit_bytes",
            "memory/memory.stat": "subtracted from usage: container_memory_working_set_bytes",
            "pids/pids.current": "container_processes"}
# The keys of the key-value files that cAdvisor reads, and what each becomes (cpu.stat's keys are different metrics).
STAT_METRICS = {"usage_usec": "container_cpu_usage_seconds_total (microseconds)",
                "user_usec": "container_cpu_user_seconds_total", "system_usec": "container_cpu_system_seconds_total",
                "nr_periods": "container_cpu_cfs_periods_total (CFS periods with a quota)",
                "nr_throttled": "container_cpu_cfs_throttled_periods_total",
                "throttled_usec": "container_cpu_cfs_throttled_seconds_total (microseconds)",
                "throttled_time": "container_cpu_cfs_throttled_seconds_total (nanoseconds)",
                "rss": "container_memory_rss", "anon": "container_memory_rss", "cache": "container_memory_cache",
                "file": "container_memory_cache", "inactive_file": "", "total_inactive_file": ""}


def cgroup_paths(pid: int | str = "self") -> dict[str, str]:
    """Controller -> cgroup path of a process, from ``/proc/<pid>/cgroup`` (``""`` is the v2 unified tree)."""
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller.removeprefix("name=")] = path
    return paths


def cgroup_version() -> int:
    """2 when /sys/fs/cgroup is the unified hierarchy, else 1 (v1 or hybrid)."""
    return 2 if (ROOT / "cgroup.controllers").exists() else 1


def _locate(controller_dir: Path, path: str) -> Path:
    # Inside a container the cgroup namespace may hide the outer path: fall back to the mount root.
    candidate = controller_dir / path.lstrip("/")
    return candidate if candidate.exists() else controller_dir


def cgroup_stats(pid: int | str = "self") -> pd.DataFrame:
    """One row per counter: the cgroup it was read in, file, key, value and the cAdvisor metric it becomes. Missing
    files are skipped. A cgroup of ``/`` is the root cgroup: the whole machine's counters, not one process's (a
    process that no runtime or systemd put in a cgroup of its own is there, as this lab's are)."""
    paths = cgroup_paths(pid)
    rows = []
    if cgroup_version() == 2:
        base = _locate(ROOT, paths.get("", "/"))
        files = {base / name: (name, metric, paths.get("", "/")) for name, metric in V2_FILES.items()}
    else:
        files = {}
        for name, metric in V1_FILES.items():
            controller, filename = name.split("/")
            key = "cpu" if controller == "cpuacct" and "cpuacct" not in paths else controller
            path = paths.get(key, paths.get(controller, "/"))
            files[_locate(ROOT / controller, path) / filename] = (name, metric, path)
    for file, (name, metric, path) in files.items():
        try:
            text = file.read_text().strip()
        except OSError:
            continue
        if text and " " in text.splitlines()[0]:  # key-value files (cpu.stat, memory.stat)
            for line in text.splitlines():
                key, value = line.split()[:2]
                if key in STAT_METRICS:
                    rows.append({"cgroup": path, "file": name, "key": key, "value": value,
                                 "cadvisor_metric": STAT_METRICS[key] or metric})
        else:
            rows.append({"cgroup": path, "file": name, "key": "", "value": text, "cadvisor_metric": metric})
    return pd.DataFrame(rows, columns=["cgroup", "file", "key", "value", "cadvisor_metric"])


def proc_cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds from ``/proc/<pid>/stat`` (what ``ps`` shows; the cgroup sums it per container)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
