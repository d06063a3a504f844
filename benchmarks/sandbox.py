"""What a simulated container's inside costs: making its sandbox, one `kubectl exec`, one request through the Service
network, against a plain fork and exec of the same busybox program measured in the same run.

Prints medians (milliseconds) and ratios for the README. Needs no cluster: it drives labkit.sim.sandbox and
labkit.sim.service_net directly, in a temporary folder.

    python benchmarks/sandbox.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from labkit.cluster.stages import load_catalog
from labkit.sim import sandbox, service_net
from labkit.sim.sandbox import Objects


def timed(fn, runs: int) -> float:
    """Median wall-clock milliseconds of ``fn()`` over ``runs`` calls."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    tools = sandbox.tools()
    if tools is None:
        raise SystemExit(sandbox.MISSING_TOOLS)
    catalog = load_catalog()
    root = Path(tempfile.mkdtemp(prefix="labkit-sandbox-bench-"))
    container = {"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
                 "env": [{"name": "GREETING", "value": "hello"}],
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/config"},
                                  {"name": "data", "mountPath": "/data"}]}
    pod = {"metadata": {"namespace": "bench", "name": "app-0", "uid": "00000000-0000-0000-0000-000000000001"},
           "spec": {"nodeName": "cpu-node-1", "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": "cfg"}}, {"name": "data", "emptyDir": {}}]},
           "status": {"podIP": "10.244.0.9"}}
    objects = Objects(configmaps={"cfg": {f"key{i}": b"value" for i in range(10)}})
    programs = catalog.programs("busybox:1.36")

    def prepare() -> list[str]:
        return sandbox.prepare(pod, container, objects, root=root, programs=programs)

    argv = prepare()
    spec = json.loads(sandbox.write_exec_spec("bench", "app-0", "app", argv, root).read_text())["argv"]
    fork = timed(lambda: subprocess.run([tools[1], "true"], check=True), args.runs)
    made = timed(prepare, args.runs)
    execd = timed(lambda: subprocess.run([*spec, "true"], check=True), args.runs)
    scripted = timed(lambda: subprocess.run([*spec, "sh", "-c", "cat /etc/config/key1 > /dev/null"], check=True),
                     args.runs)
    answers = {"n": 0}
    spool = service_net.Spool(lambda uid, argv: answers.__setitem__("n", answers["n"] + 1)
                              or service_net.Reply(out=b"hello\n"))
    spool.add(pod["metadata"]["uid"], service_net.spool_dir(sandbox.pod_dir(pod, root)))
    fetched = timed(lambda: subprocess.run([*spec, "wget", "-qO-", "http://web"], check=True, capture_output=True),
                    args.runs)
    assert answers["n"] >= args.runs
    print(f"{args.runs} runs each, medians (this machine, same run):")
    print(f"  {'baseline: fork and exec busybox true':<52} {fork:7.1f} ms")
    print(f"  {'make a container sandbox (rootfs, /etc, 2 volumes)':<52} {made:7.1f} ms")
    for what, ms in (("kubectl exec's part: true in the sandbox", execd),
                     ("sh -c 'cat a mounted ConfigMap key' in it", scripted),
                     ("wget -qO- through the Service network", fetched)):
        print(f"  {what:<52} {ms:7.1f} ms  ({ms / fork:.1f} x baseline)")


if __name__ == "__main__":
    main()
