"""How many private labs fit on one machine: N embedded labs side by side (what `labkit hub` gives N students), each
running lessons with add-ons at the same time, with each lab's memory and CPU measured from /proc.

Each lab is a state directory and API port of its own, started with `labkit up`, then notebooks executed in it with
nbconvert (as a learner's Run All, exercises unsolved). A lab's processes are found by the LABKIT_STATE_DIR in their
environment (the lab, its add-ons, the notebook's kernel). Prints, per lab: start time, peak and idle resident
memory (sum of RSS, MiB), CPU seconds; and the machine's figures for the docs' sizing table.

    python benchmarks/lab_density.py [--labs 3] [--notebooks 04_hpa,06_prometheus]

Runs as the current user (the hub's per-student user changes who owns the processes, not what they cost; the
single-user Jupyter server a hub adds per student is measured separately: --server).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def processes_of(state: str) -> list[int]:
    """The pids whose environment names this lab's state directory."""
    needle = f"LABKIT_STATE_DIR={state}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def usage(pids: list[int]) -> tuple[float, float]:
    """(resident MiB, CPU seconds so far) of these processes together."""
    rss = cpu = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            cpu += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            continue
    return rss / 2**20, cpu


class Sampler(threading.Thread):
    """Samples a lab's memory every second; remembers the peak and the CPU of processes seen."""

    def __init__(self, state: str):
        super().__init__(daemon=True)
        self.state, self.peak, self.cpu, self.stop = state, 0.0, {}, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = processes_of(self.state)
            rss, _ = usage(pids)
            self.peak = max(self.peak, rss)
            for pid in pids:
                self.cpu[pid] = usage([pid])[1]
            time.sleep(1)


def lab(index: int, base: Path, notebooks: list[str], results: dict[int, dict[str, float]]) -> None:
    state = str(base / f"lab{index}")
    env = dict(os.environ, LABKIT_STATE_DIR=state, LABKIT_API_PORT=str(27000 + index))
    env.pop("LABKIT_IN_TEST", None)
    sampler = Sampler(state)
    sampler.start()
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "labkit", "up"], env=env, check=True, stdout=subprocess.DEVNULL)
    up_s = time.monotonic() - start
    idle = usage(processes_of(state))[0]
    failed = 0
    for name in notebooks:
        notebook = next((ROOT / "notebooks").glob(f"{name}*.ipynb"))
        run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                              "--ExecutePreprocessor.timeout=900", "--output-dir", str(base), "--output",
                              f"lab{index}-{notebook.name}", str(notebook)], env=env, capture_output=True, text=True)
        failed += run.returncode != 0
    total_s = time.monotonic() - start
    sampler.stop.set()
    sampler.join()
    results[index] = {"up_s": up_s, "idle_mib": idle, "peak_mib": sampler.peak, "cpu_s": sum(sampler.cpu.values()),
                      "wall_s": total_s, "failed": failed}
    subprocess.run([sys.executable, "-m", "labkit", "down"], env=env, check=False, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labs", type=int, default=3)
    parser.add_argument("--notebooks", default="04_hpa,06_prometheus")
    args = parser.parse_args()
    notebooks = args.notebooks.split(",")
    with tempfile.TemporaryDirectory(prefix="labkit-density-") as tmp:
        results: dict[int, dict[str, float]] = {}
        threads = [threading.Thread(target=lab, args=(i, Path(tmp), notebooks, results)) for i in range(args.labs)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
    cores = os.cpu_count() or 1
    memory = os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30
    print(f"{args.labs} labs at once on {cores} cores, {memory:.0f} GiB; each ran {', '.join(notebooks)}")
    print("lab  up_s  idle_MiB  peak_MiB  cpu_s  wall_s  notebooks_failed")
    for i, r in sorted(results.items()):
        print(f"{i:<4} {r['up_s']:5.1f} {r['idle_mib']:9.0f} {r['peak_mib']:9.0f} {r['cpu_s']:6.0f} "
              f"{r['wall_s']:7.0f}  {r['failed']:.0f}")
    peak = max(r["peak_mib"] for r in results.values())
    cpu = sum(r["cpu_s"] for r in results.values())
    print(f"all together: {wall:.0f} s wall, {cpu:.0f} CPU-s ({cpu / wall:.2f} cores busy on average); "
          f"peak per lab {peak:.0f} MiB -> memory allows about {memory * 1024 * 0.8 / peak:.0f} labs in 80% of "
          f"this machine's memory")


if __name__ == "__main__":
    main()
