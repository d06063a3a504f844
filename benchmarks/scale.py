"""Print the embedded cluster's figures at scale: 1,000 nodes, 10,000 pods, a 1,000-replica rollout, memory.

Runs on a private lab (own state dir and API port), so a running lab is left alone; nothing else runs there (no
add-ons). The reference machine is the project's: 2 cores, 24 GiB.

    python benchmarks/scale.py                         # 1,000 nodes, 10,000 pods in 10 Deployments
    python benchmarks/scale.py --nodes 200 --pods 2000 # a quicker look

What it measures, each with its own deadline:
- the extra nodes (KWOK nodes as `labkit up` registers them, 32 CPUs and 110 pods each) until all are Ready;
- Deployments of 1,000 replicas each (nginx:1.27, 10m CPU requested) until every replica is available;
- a rollout of one of them to another image until it is complete (`kubectl rollout status`);
- the resident memory of etcd, kube-apiserver and the other control-plane processes, and etcd's database size.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPLICAS_PER_DEPLOYMENT = 1000
PROGRESS_DEADLINE_S = 3600
ROLLOUT_IMAGE = "nginx:1.27.1"


def _rss_mib(pid: int | None) -> float:
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _timed(what: str, fun) -> float:  # noqa: ANN001 - a callable that blocks until its condition holds
    start = time.monotonic()
    fun()
    took = time.monotonic() - start
    print(f"{what}: {took:.1f} s", flush=True)
    return took


def _deployment(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            # 1,000 pods on two cores take minutes: the default 600 s deadline would call a slow rollout failed
            "spec": {"replicas": replicas, "progressDeadlineSeconds": PROGRESS_DEADLINE_S,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                                           "resources": {"requests": {"cpu": "10m"}}}]}}}}


def run(nodes: int, pods: int) -> None:
    import labkit as lk
    from labkit import versions
    from labkit.cluster import backends, kwok_backend
    from labkit.cluster.topology import load_topology, node_manifest
    from labkit.kube.rollouts import rollout_status

    start = time.monotonic()
    backends.up("kwok", progress=lambda _m: None)
    lab = lk.connect()
    print(f"private lab up: {time.monotonic() - start:.1f} s", flush=True)
    have = len(load_topology())
    extra = [node_manifest({"name": f"scale-{i:04d}", "cpu": 32, "memory": "128Gi", "pods": 110},
                           kubelet_version=versions.KUBERNETES) for i in range(max(0, nodes - have))]

    def ready_count(items: list[dict]) -> int:
        return sum(any(c["type"] == "Ready" and c["status"] == "True" for c in (n.get("status") or {}).get(
            "conditions") or []) for n in items)

    def add_nodes() -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda node: lk.apply(lab, node), extra))  # kubectl apply -f node.yaml
        lk.wait_for_set(lab, "Node", namespace="", api_version="v1", condition=lambda items: ready_count(items)
                        >= nodes, timeout=1800)

    _timed(f"{nodes - have} more nodes created and all {nodes} Ready", add_nodes)

    ns = lk.lesson_namespace(lab, "scale")
    replicas = min(REPLICAS_PER_DEPLOYMENT, pods)
    count = max(1, pods // replicas)

    def deploy() -> None:
        # One Deployment after another: created all at once, they share the controllers' rate limits and each
        # progresses so slowly that the figures say little; one at a time, each line is a pods/s figure.
        started = time.monotonic()
        for i in range(count):
            lk.apply(lab, _deployment(f"web-{i}", replicas), namespace=ns)
            lk.wait_for(lab, "Deployment", f"web-{i}", namespace=ns, timeout=PROGRESS_DEADLINE_S,
                        condition=f"jsonpath={{.status.availableReplicas}}={replicas}")
            took = time.monotonic() - started
            print(f"  {(i + 1) * replicas:6d} pods available after {took:6.1f} s "
                  f"({(i + 1) * replicas / took:.1f} pods/s); load average {os.getloadavg()[0]:.1f}", flush=True)

    _timed(f"{count} Deployments x {replicas} replicas ({count * replicas} pods) "
           "all available", deploy)

    def rollout() -> None:
        lk.apply(lab, {**_deployment("web-0", replicas), "spec": {
            **_deployment("web-0", replicas)["spec"],
            "template": {"metadata": {"labels": {"app": "web-0"}},
                         "spec": {"containers": [{"name": "web", "image": ROLLOUT_IMAGE,
                                                  "resources": {"requests": {"cpu": "10m"}}}]}}}}, namespace=ns)
        rollout_status(lab, "web-0", namespace=ns, timeout=3600)  # kubectl rollout status deployment/web-0

    _timed(f"rollout of {replicas} replicas to {ROLLOUT_IMAGE} (maxSurge/maxUnavailable 25 %)",
           rollout)

    pids = kwok_backend.component_pids()
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller",
                 "metrics-server"):
        print(f"  RSS {name:<24} {_rss_mib(pids.get(name)):7.0f} MiB")
    print(f"  RSS control plane, all    {sum(_rss_mib(p) for p in pids.values()):7.0f} MiB")
    db = kwok_backend.cluster_dir() / "etcd" / "member" / "snap" / "db"
    if db.exists():
        print(f"  etcd database file        {db.stat().st_size / 2**20:7.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10_000, help=f"in Deployments of {REPLICAS_PER_DEPLOYMENT}")
    args = parser.parse_args()
    from labkit.cluster.ports import free_port

    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.1f} at start; {args.nodes} nodes, {args.pods} pods")
    with tempfile.TemporaryDirectory(prefix="labkit-scale-") as work:
        os.environ.update(LABKIT_STATE_DIR=str(Path(work) / "state"), LABKIT_API_PORT=str(free_port()))
        from labkit.cluster import backends

        signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped (SIGTERM)"))  # so the private lab goes down too
        try:
            run(args.nodes, args.pods)
        finally:
            backends.down(progress=lambda _m: None)


if __name__ == "__main__":
    main()
