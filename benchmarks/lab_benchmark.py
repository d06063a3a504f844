"""Print the lab's figures: warm `labkit up`/`labkit down` against bare kwokctl, builds, memory, 100-replica rollout.

Runs on private clusters (own state dir, KWOK workdir and API ports), so a running lab is left alone.

    python benchmarks/lab_benchmark.py               # median of 5 warm starts, side by side with bare kwokctl
    python benchmarks/lab_benchmark.py --runs 9 --no-extras
    python benchmarks/lab_benchmark.py --cold        # really rebuild every component with empty Go caches (minutes)

The floor is bare kwokctl with the same cached binaries and configuration: `kwokctl create cluster`, `kwokctl scale
node` to as many nodes as labkit's topology has, `kubectl wait` until they are Ready and `/readyz` passes (what
`labkit up` waits for), `kwokctl delete cluster`.
The two are measured alternately in one run, so both see the same machine load, and the ratios compare them.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

BARE_CLUSTER = "bench-bare"


def _machine() -> str:
    mem_kib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")).split()[1])
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB RAM, {platform.machine()}, "
            f"Python {platform.python_version()}, load average {load:.1f} at start")


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


def _run(cmd: list[str], env: dict[str, str], what: str, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _timed_cli(env: dict[str, str], *args: str) -> tuple[float, list[tuple[float, str]]]:
    """Run the labkit CLI as a learner does; return its wall time and each output line with its time."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = [(time.monotonic() - start, line.rstrip()) for line in proc.stdout]
    rc = proc.wait(timeout=600)
    elapsed = time.monotonic() - start
    if rc != 0:
        raise SystemExit(f"`labkit {' '.join(args)}` failed ({rc}):\n" + "\n".join(t for _, t in lines[-30:]))
    return elapsed, lines


class Bare:
    """Bare kwokctl on its own workdir and port, with labkit's cached binaries and kwokctl configuration."""

    def __init__(self, work: Path, port: int, nodes: int):
        from labkit.cluster import binaries
        from labkit.paths import bin_dir

        self.nodes = nodes
        self.port = port
        self.bin = bin_dir()
        self.paths = binaries.binary_paths()
        self.workdir = work / "bare-kwok"
        self.env = dict(os.environ, KWOK_WORKDIR=str(self.workdir), PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        self.config = work / "bare-kwokctl.yaml"
        self.kubeconfig = self.workdir / "clusters" / BARE_CLUSTER / "kubeconfig.yaml"
        self.scratch_kubeconfig = work / "bare-scratch-kubeconfig"

    def _write_config(self) -> None:
        """labkit's kwokctl configuration, with the real kwok binary and kwokctl's default Stages."""
        import yaml

        from labkit.cluster import kwok_backend

        # Component ports as labkit picks them: kwokctl's own picks collide when other clusters start meanwhile.
        config = kwok_backend.kwokctl_config(self.paths, ports=kwok_backend.component_ports())
        opts = config["options"]
        opts["kubeApiserverPort"] = self.port
        # No labkit Stages here: kwokctl's default stages make the scaled-in nodes Ready, as in any bare setup.
        opts["enableCRDs"] = [c for c in opts["enableCRDs"] if c != "Stage"]
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))

    def _kwokctl(self, *args: str) -> None:
        _run([str(self.bin / "kwokctl"), "--name", BARE_CLUSTER, *args], self.env, f"kwokctl {args[0]} {args[1]}")

    def cycle(self) -> dict[str, float]:
        """create, scale in the nodes, wait until Ready, delete; seconds per step."""
        self._write_config()
        steps: dict[str, float] = {}
        marks = [time.monotonic()]

        def mark(name: str) -> None:
            marks.append(time.monotonic())
            steps[name] = marks[-1] - marks[-2]

        self._kwokctl("create", "cluster", "--config", str(self.config), "--kubeconfig", "")
        mark("create")
        self._kwokctl("scale", "node", "--replicas", str(self.nodes))
        mark("scale")
        _run([str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), "wait", "--for=condition=Ready",
              "nodes", "--all", "--timeout=120s"], self.env, "kubectl wait nodes")
        mark("ready")
        # The same condition `labkit up` waits for: every /readyz check, the RBAC bootstrap roles included.
        deadline = time.monotonic() + 60
        while subprocess.run([str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), "get", "--raw=/readyz"],
                             env=self.env, capture_output=True, timeout=30).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("bare kwokctl: /readyz did not pass within 60 s")
            time.sleep(0.05)
        mark("readyz")
        # kwokctl delete rejects an empty --kubeconfig; a scratch file keeps it away from ~/.kube/config.
        self._kwokctl("delete", "cluster", "--kubeconfig", str(self.scratch_kubeconfig))
        mark("delete")
        steps["up"] = steps["create"] + steps["scale"] + steps["ready"] + steps["readyz"]
        steps["cycle"] = steps["up"] + steps["delete"]
        return steps

    def clean(self) -> None:
        subprocess.run([str(self.bin / "kwokctl"), "--name", BARE_CLUSTER, "delete", "cluster", "--kubeconfig",
                        str(self.scratch_kubeconfig)], env=self.env, capture_output=True, timeout=120)


def _med(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})"


def _progress_marks(lines: list[tuple[float, str]]) -> str:
    """When `labkit up` printed its milestones, relative to the command's start."""
    wanted = {"backend:": "CLI started", "starting etcd": "kwokctl create", "control plane up": "objects applied",
              "lab ready": "nodes Ready"}
    marks = [f"{label} {t:.2f}" for key, label in wanted.items() for t, text in lines if text.startswith(key)][:4]
    return ", ".join(marks)


def warm_start(env: dict[str, str], bare: Bare, runs: int) -> None:
    from labkit.cluster.topology import load_topology

    nodes = len(load_topology())
    print(f"warm start, {runs} runs alternating bare kwokctl and labkit ({nodes} nodes each); one untimed warm-up")
    bare.cycle()
    _timed_cli(env, "up", "--backend", "kwok")
    _timed_cli(env, "down")
    rows: dict[str, list[float]] = {k: [] for k in ("create", "scale", "ready", "readyz", "delete", "up", "cycle")}
    ups: list[float] = []
    downs: list[float] = []
    milestones: list[str] = []
    for _ in range(runs):
        for key, value in bare.cycle().items():
            rows[key].append(value)
        elapsed, lines = _timed_cli(env, "up", "--backend", "kwok")
        if not any(f"{nodes} nodes Ready" in text for _, text in lines):
            raise SystemExit("`labkit up` did not report every node Ready:\n" + "\n".join(t for _, t in lines))
        ups.append(elapsed)
        milestones.append(_progress_marks(lines))
        downs.append(_timed_cli(env, "down")[0])
    print(f"  bare kwokctl create cluster          {_med(rows['create'])}")
    print(f"  bare kwokctl scale node              {_med(rows['scale'])}")
    print(f"  bare kubectl wait nodes Ready        {_med(rows['ready'])}")
    print(f"  bare then /readyz passes             {_med(rows['readyz'])}")
    print(f"  bare kwokctl delete cluster          {_med(rows['delete'])}")
    print(f"  bare create..Ready and /readyz       {_med(rows['up'])}")
    print(f"  bare whole cycle (the floor)         {_med(rows['cycle'])}")
    print(f"  labkit up (CLI, nodes Ready, /readyz) {_med(ups)}")
    print(f"  labkit down                          {_med(downs)}")
    floor, up, bare_up = (statistics.median(v) for v in (rows["cycle"], ups, rows["up"]))
    print(f"  ratio labkit up / bare cycle         {up / floor:5.2f}   (goal: at most 1.5)")
    print(f"  ratio labkit up / bare create..ready {up / bare_up:5.2f}")
    print(f"  ratio labkit down / bare delete      {statistics.median(downs) / statistics.median(rows['delete']):5.2f}"
          f"   (goal: labkit down under 2 s)")
    print(f"  labkit up milestones, seconds (run 1): {milestones[0]}")


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def extras(env: dict[str, str]) -> None:
    """A 100-replica Deployment's rollout and the control plane's memory with 100 pods."""
    import labkit as lk
    from labkit.cluster import kwok_backend

    _timed_cli(env, "up", "--backend", "kwok")
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
    print(f"control plane resident memory (RSS of {len(pids)} processes, 100 pods running): {_rss_mib(pids):.0f} MiB")


def _guarded(what: str, fun: Callable[[], Any]) -> None:
    try:
        fun()
    except Exception as exc:  # the warm-start figures above stay valid when an extra fails
        print(f"{what} failed: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="rebuild all binaries with empty caches first")
    parser.add_argument("--runs", type=int, default=5, help="warm starts to time (median reported)")
    parser.add_argument("--no-extras", action="store_true", help="skip the 100-replica rollout and memory figures")
    args = parser.parse_args()

    from labkit.cluster.ports import free_port
    from labkit.cluster.topology import load_topology

    print(f"machine: {_machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.cold:
            print("cold builds (empty LABKIT_CACHE_DIR and GOCACHE; Go module downloads may be cached):")
            cold_builds(work)
        else:
            print("builds:")
            recorded_builds()

        env = dict(os.environ, LABKIT_STATE_DIR=str(work / "state"), LABKIT_API_PORT=str(free_port()))
        os.environ.update(LABKIT_STATE_DIR=env["LABKIT_STATE_DIR"], LABKIT_API_PORT=env["LABKIT_API_PORT"])
        from labkit.cluster import binaries, kwok_backend

        # Cached binaries and the lab's bin/ links (kubectl, kwokctl) for both sides, outside the timings.
        kwok_backend.link_binaries(binaries.ensure_binaries(progress=print))
        bare = Bare(work, free_port(), len(load_topology()))
        try:
            warm_start(env, bare, args.runs)
            if not args.no_extras:
                _guarded("100-replica rollout and memory", lambda: extras(env))
        finally:
            bare.clean()
            subprocess.run([sys.executable, "-m", "labkit.cli", "down"], env=env, capture_output=True, timeout=120)


if __name__ == "__main__":
    main()
