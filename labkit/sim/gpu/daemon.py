"""The lab's GPU exporter process: watches pods, simulates every GPU node, serves dcgm-exporter metrics.

Started by ``labkit up`` (see ``labkit/cluster/addons.py``) as
``python -m labkit.sim.gpu.daemon --kubeconfig K --port P --state S --targets T``; binds 127.0.0.1 only.
``/metrics`` serves all GPU nodes, ``/metrics/<node>`` one node (what a per-node dcgm-exporter
DaemonSet pod would answer); ``/pod-resources`` is the allocation as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from labkit.cluster.topology import load_topology
from labkit.errors import PortInUse
from labkit.paths import write_atomic
from labkit.settings import DCGM_EXPORTER_JOB, DEFAULT_GPU_PROFILE
from labkit.sim.gpu import FakeMachine, available_profiles
from labkit.sim.gpu.attribution import Allocator, GpuNode, GpuPod, cluster_metrics, configure_machine
from labkit.sim.gpu.device_plugin import CONFIG_NAME, CONFIG_NAMESPACE, desired, node_patches
from labkit.sim.gpu.exporter_server import ExporterServer

log = logging.getLogger("labkit.sim.gpu.daemon")
# GPU feature discovery's product label -> the simulated profile that matches it.
_PRODUCT_PROFILES = (("H200", "H200"), ("H100", "H100-SXM"), ("A100", "A100-SXM-80GB"), ("T4", "T4"))
_WATCH_SECONDS = 20
_DEVICE_PLUGIN_SECONDS = 2.0


def profile_for(product: str) -> str:
    """The simulated GPU model for a node's ``nvidia.com/gpu.product`` label (H100 when unknown)."""
    for needle, key in _PRODUCT_PROFILES:
        if needle in product.upper() and key in available_profiles():
            return key
    return DEFAULT_GPU_PROFILE


class ClusterExporter(ExporterServer):
    """An exporter whose attribution comes from an :class:`Allocator` instead of a fixed mapping."""

    def __init__(self, allocator: Allocator, *, port: int) -> None:
        self.allocator = allocator
        super().__init__({}, port=port, hostname_label="Hostname")

    def render(self, node: str | None = None) -> str:
        return cluster_metrics(self.fleet, self.allocator, node=node, hostname_label=self.hostname_label)

    def serve_extra(self, path: str) -> str | None:
        """``/pod-resources``: the allocation as JSON, what the kubelet's pod-resources API would list."""
        if path == "/pod-resources":
            return json.dumps(self.allocator.rows(), indent=1) + "\n"
        return super().serve_extra(path)

    def add_node(self, node: GpuNode, *, seed: int) -> None:
        machine = FakeMachine(profile=profile_for(node.product), count=min(node.count, 8), node=node.name,
                              seed=seed, clock="wall")
        configure_machine(machine, node)
        self.fleet[node.name] = machine


class Daemon:
    """List-then-watch loop over pods and nodes, keeping the exporter's fleet and attribution current."""

    def __init__(self, *, kubeconfig: str, port: int, state: Path, targets: Path, seed: int) -> None:
        from kubernetes import client

        from ...kube.client import api_client  # here: importing this module stays light

        self.api_client = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.allocator = Allocator(checkpoint=state / "kubelet_internal_checkpoint.json")
        self.exporter = ClusterExporter(self.allocator, port=port)
        self.state, self.targets, self.seed = state, targets, seed
        self.pods: dict[str, dict[str, Any]] = {}
        self.stopping = threading.Event()
        self.lock = threading.RLock()  # the pod watch and the device plugin's loop both rebuild the allocation

    def _relist(self) -> str:
        nodes = [GpuNode.from_node(self.api_client.sanitize_for_serialization(n)) for n in self.core.list_node().items]
        gpu_nodes = [n for n in nodes if n is not None]
        for node in gpu_nodes:
            if node.name not in self.exporter.fleet:
                self.exporter.add_node(node, seed=self.seed)
        self._write_targets()
        pods = self.core.list_pod_for_all_namespaces()
        self.pods = {p.metadata.uid: self.api_client.sanitize_for_serialization(p) for p in pods.items}
        self._apply(gpu_nodes)
        return str(pods.metadata.resource_version)

    def _write_targets(self) -> None:
        """Prometheus file_sd targets: one per GPU node, as Kubernetes SD would find one exporter pod per node."""
        port = self.exporter.port
        groups = [{"targets": [f"127.0.0.1:{port}"],
                   "labels": {"job": DCGM_EXPORTER_JOB, "__metrics_path__": f"/metrics/{name}", "instance": name,
                              "node": name}}
                  for name in sorted(self.exporter.fleet)]
        write_atomic(self.targets, json.dumps(groups, indent=1))  # Prometheus reads it any time

    def _apply(self, nodes: list[GpuNode] | None = None) -> None:
        gpu_pods = []
        for obj in self.pods.values():
            try:
                pod = GpuPod.from_pod(obj)
            except ValueError as exc:
                log.warning("%s", exc)  # a typo in one pod's annotation must not stop the exporter
                continue
            if pod:
                gpu_pods.append(pod)
        with self.allocator.lock:  # a scrape must not see a new pod's labels on its GPU before the pod's load
            self.allocator.reconcile(gpu_pods, nodes)
            for name, machine in self.exporter.fleet.items():
                machine.set_workloads(self.allocator.gpu_workloads(name))
                machine.set_processes(self.allocator.gpu_processes(name, machine.profile))

    def _device_plugin_loop(self) -> None:
        """Every couple of seconds, make each GPU node advertise what its device-plugin configuration says
        (:mod:`labkit.sim.gpu.device_plugin`: time-slicing by the node's label); relist when one changed."""
        from kubernetes.client.exceptions import ApiException

        topology = load_topology()
        complained: dict[str, str] = {}  # node -> the configuration error logged last (said once, not every loop)
        while not self.stopping.wait(_DEVICE_PLUGIN_SECONDS):
            try:
                try:
                    configs = self.core.read_namespaced_config_map(CONFIG_NAME, CONFIG_NAMESPACE).data or {}
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    configs = None
                changed = False
                for node in self.core.list_node().items:
                    node = self.api_client.sanitize_for_serialization(node)
                    try:
                        want = desired(node, configs, topology)
                    except ValueError as exc:  # the plugin keeps its devices and logs the bad configuration
                        if complained.get(node["metadata"]["name"]) != str(exc):
                            log.warning("node %s: %s", node["metadata"]["name"], exc)
                        complained[node["metadata"]["name"]] = str(exc)
                        continue
                    if want is None:
                        continue
                    meta_patch, status_patch = node_patches(node, *want)
                    if meta_patch:
                        self.core.patch_node(node["metadata"]["name"], meta_patch)
                    if status_patch:
                        self.core.patch_node_status(node["metadata"]["name"], status_patch)
                    changed = changed or bool(meta_patch or status_patch)
                if changed:
                    with self.lock:
                        self._relist()
            except Exception as exc:  # noqa: BLE001 -- an API restart must not end the loop
                log.warning("device plugin configuration: %s: %s", type(exc).__name__, exc)

    def run(self) -> None:
        from kubernetes import watch

        threading.Thread(target=self._device_plugin_loop, name="device-plugin", daemon=True).start()
        while not self.stopping.is_set():
            try:
                with self.lock:
                    rv = self._relist()
                stream = watch.Watch()
                for event in stream.stream(self.core.list_pod_for_all_namespaces, resource_version=rv,
                                           timeout_seconds=_WATCH_SECONDS, _request_timeout=_WATCH_SECONDS + 5):
                    obj = self.api_client.sanitize_for_serialization(event["object"])
                    uid = obj.get("metadata", {}).get("uid")
                    if event["type"] == "DELETED":
                        self.pods.pop(uid, None)
                    elif uid:
                        self.pods[uid] = obj
                    with self.lock:
                        self._apply()
                    if self.stopping.is_set():
                        stream.stop()
            except Exception as exc:  # noqa: BLE001 -- API restarts, 410 Gone: relist after a pause
                log.warning("pod watch interrupted (%s: %s); relisting", type(exc).__name__, exc)
                self.stopping.wait(1.0)

    def stop(self, *_args: object) -> None:
        self.stopping.set()
        self.exporter.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.sim.gpu.daemon", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="folder for the device checkpoint")
    parser.add_argument("--targets", type=Path, required=True, help="Prometheus file_sd file to keep current")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--endpoint-file", type=Path, default=None,
                        help="write the URL other processes read the GPUs' state from (LABKIT_STATE_DIR/gpu-nvml.url)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.state.mkdir(parents=True, exist_ok=True)
    try:
        daemon = Daemon(kubeconfig=args.kubeconfig, port=args.port, state=args.state, targets=args.targets,
                        seed=args.seed)
    except PortInUse as exc:
        print(exc, file=sys.stderr)
        return 3
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    log.info("serving dcgm-exporter metrics on %s", daemon.exporter.url)
    worker = threading.Thread(target=daemon.run, daemon=True)
    worker.start()
    if args.endpoint_file:
        # Written once the port is bound; nvitop or gpustat beside the lab read the same GPUs through it.
        args.endpoint_file.write_text(daemon.exporter.base_url + "\n")
    try:
        while not daemon.stopping.is_set():
            time.sleep(0.2)
    finally:
        if args.endpoint_file and args.endpoint_file.exists():
            args.endpoint_file.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
