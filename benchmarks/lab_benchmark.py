"""Print the lab's figures: cold build per component, warm `labkit up`, control-plane memory, 100-replica rollout.

Runs on a private lab (own state dir and API port), so a running lab is left alone.

    python benchmarks/lab_benchmark.py            # build figures as recorded in the cache
    python benchmarks/lab_benchmark.py --cold     # really rebuild every component with empty Go caches (minutes)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _machine() -> str:
    mem_kib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")).split()[1])
    return (f"{os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB RAM, {platform.machine()}, "
            f"Python {platform.python_version()}")


def cold_builds(work: Path) -> None:
    from labkit.cluster import binaries

    env_backup = dict(os.environ)
    os.environ.update(LABKIT_CACHE_DIR=str(work / "cache"), GOCACHE=str(work / "gocache"))
    try:
        for comp in binaries.components():
            start = time.monotonic()
            binaries._obtain(comp, progress=lambda _m: None)
            print(f"  cold build {comp.name:<15} {comp.version:<9} {time.monotonic() - start:7.1f} s")
    finally:
        os.environ.clear()
        os.environ.update(env_backup)


def recorded_builds() -> None:
    from labkit.cluster import binaries

    for comp in binaries.components():
        rec = binaries.build_record(comp)
        print(f"  {comp.name:<15} {comp.version:<9} {rec.get('how', 'cached' if rec else 'not cached'):<14} "
              f"{rec.get('seconds', '?')} s (recorded when it entered the cache)")


def _labkit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600, check=True)


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="rebuild all binaries with empty caches first")
    parser.add_argument("--runs", type=int, default=3, help="warm starts to time")
    args = parser.parse_args()

    from labkit.cluster.ports import free_port

    print(f"machine: {_machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.cold:
            print("cold builds (empty LABKIT_CACHE_DIR and GOCACHE; Go module downloads may be cached):")
            cold_builds(Path(tmp))
        else:
            print("builds:")
            recorded_builds()

        env = dict(os.environ, LABKIT_STATE_DIR=str(Path(tmp) / "state"), LABKIT_API_PORT=str(free_port()))
        os.environ.update(LABKIT_STATE_DIR=env["LABKIT_STATE_DIR"], LABKIT_API_PORT=env["LABKIT_API_PORT"])
        import labkit as lk
        from labkit.cluster import kwok_backend

        times = []
        try:
            for _ in range(args.runs):
                start = time.monotonic()
                _labkit(env, "up", "--backend", "kwok")
                times.append(time.monotonic() - start)
                _labkit(env, "down")
            print(f"warm `labkit up` until every node is Ready: median {statistics.median(times):.1f} s "
                  f"(runs: {', '.join(f'{t:.1f}' for t in times)})")

            _labkit(env, "up", "--backend", "kwok")
            lab = lk.connect()
            ns = lk.lesson_namespace(lab, "bench")
            start = time.monotonic()
            lk.apply(lab, {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hundred"},
                "spec": {"replicas": 100, "selector": {"matchLabels": {"app": "hundred"}},
                         "template": {"metadata": {"labels": {"app": "hundred"}},
                                      "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}},
            }, namespace=ns)
            lk.wait_for(lab, "Deployment", "hundred", namespace=ns,
                        condition="jsonpath={.status.availableReplicas}=100", timeout=300)
            print(f"100-replica Deployment fully available: {time.monotonic() - start:.1f} s")
            time.sleep(5)
            pids = kwok_backend.running_pids()
            print(f"control plane resident memory (RSS of {len(pids)} processes, 100 pods running): "
                  f"{_rss_mib(pids):.0f} MiB")
        finally:
            subprocess.run([sys.executable, "-m", "labkit.cli", "down"], env=env, capture_output=True, timeout=120)


if __name__ == "__main__":
    main()
