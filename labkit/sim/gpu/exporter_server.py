"""A loopback-only HTTP server that serves dcgm-exporter-style metrics of simulated GPU nodes.

One server serves every node: ``/metrics`` has all nodes (told apart by the ``Hostname``
label, as when Prometheus scrapes one dcgm-exporter per node and merges them), and
``/metrics/<node>`` has one node, the way a per-node DaemonSet pod would answer.
``/nvml/<node>`` is a node's whole state, which NVML mirrors in other processes read; ``POST /faults/<node>`` and
``POST /settings/<node>`` change it (a fault, a reset; locked clocks, a power limit).
It binds 127.0.0.1 only, never all interfaces."""

from __future__ import annotations

import errno
import functools
import json
import threading
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from labkit.errors import PortInUse
from labkit.sim.gpu.dcgm_exporter import HOSTNAME_LABEL, PodRef, fleet_metrics
from labkit.sim.gpu.faults import inject_ecc_errors, inject_xid, replace_board, reset_gpu
from labkit.sim.gpu.machine import FakeMachine
from labkit.sim.gpu.physics import Workload
from labkit.sim.gpu.real_pynvml import pynvml
from labkit.sim.gpu.shared import machine_state
from labkit.sim.loopback_http import JSON, Answer, LoopbackServer

LOOPBACK = "127.0.0.1"
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Attribution = Mapping[str, Mapping[int, PodRef | tuple[str, str, str] | Mapping[str, str]]]
Workloads = Mapping[str, Mapping[int, Workload | dict | tuple | None]]


class ExporterServer:
    """A running exporter. Use :func:`start_exporter` to create one; ``with`` stops it on exit."""

    def __init__(self, fleet: Mapping[str, FakeMachine], *, port: int, hostname_label: str) -> None:
        self.fleet = dict(fleet)
        self.hostname_label = hostname_label
        self._attribution: dict[str, dict[int, Any]] = {}
        self._lock = threading.Lock()
        self._httpd = _bind(port, self)
        self.host, self.port = LOOPBACK, int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"gpu-exporter:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"ExporterServer({self.url}, nodes={list(self.fleet)})"

    def __enter__(self) -> ExporterServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``/metrics`` of all nodes."""
        return f"http://{self.host}:{self.port}/metrics"

    def node_url(self, node: str) -> str:
        """``/metrics/<node>``: one node only."""
        if node not in self.fleet:
            raise KeyError(f"no GPU node {node!r}; nodes: {list(self.fleet)}")
        return f"{self.url}/{node}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def update(self, *, attribution: Attribution | None = None, workloads: Workloads | None = None) -> None:
        """Replace pod attribution (node -> GPU -> (namespace, pod, container)) and/or apply declared loads.

        ``workloads`` maps node -> GPU index -> workload; GPUs of a listed node that are missing
        from its mapping go idle, nodes not listed keep their load."""
        if attribution is not None:
            unknown = set(attribution) - set(self.fleet)
            if unknown:
                raise KeyError(f"attribution names unknown nodes {sorted(unknown)}; nodes: {list(self.fleet)}")
            with self._lock:
                self._attribution = {node: dict(gpus) for node, gpus in attribution.items()}
        for node, loads in (workloads or {}).items():
            if node not in self.fleet:
                raise KeyError(f"workloads name unknown node {node!r}; nodes: {list(self.fleet)}")
            self.fleet[node].set_workloads(loads)

    def serve_extra(self, path: str) -> str | None:
        """The body for a path beyond ``/metrics`` (subclasses add endpoints), or None for 404.

        ``/nvml`` lists the nodes; ``/nvml/<node>`` is that node's full simulated state, which other
        processes' NVML mirrors read (:mod:`labkit.sim.gpu.shared`)."""
        if path == "/nvml":
            return json.dumps(sorted(self.fleet)) + "\n"
        node = path.removeprefix("/nvml/")
        if path.startswith("/nvml/") and node in self.fleet:
            return json.dumps(machine_state(self.fleet[node])) + "\n"
        return None

    def fault(self, node: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Act on one GPU of the ONE simulated state: ``{"gpu": 0, "xid": 79}``, ``{"gpu": 0, "ecc_uncorrected": 1,
        "ecc_corrected": 0}``, ``{"gpu": 0, "reset": true}`` or ``{"gpu": 0, "replace": true}`` (a new board after
        an RMA); returns that GPU's fault record.

        Served as ``POST /faults/<node>`` (``curl -d '{"gpu": 0, "xid": 79}' http://127.0.0.1:PORT/faults/NODE``):
        what firmware and driver would raise on a real board, done by hand because these GPUs are simulated."""
        machine = self.fleet[node]
        gpu = int(request["gpu"])
        if request.get("replace"):
            replace_board(machine, gpu)
        elif request.get("reset"):
            reset_gpu(machine, gpu)
        elif "xid" in request:
            inject_xid(machine, gpu, int(request["xid"]))
        else:
            inject_ecc_errors(machine, gpu, corrected=int(request.get("ecc_corrected", 0)),
                              uncorrected=int(request.get("ecc_uncorrected", 0)))
        return machine_state(machine)["devices"][gpu]["faults"]

    def settings(self, node: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Turn an operator's knob on one GPU of the ONE simulated state: ``{"gpu": 0, "locked_clocks_mhz": [1200,
        1200]}``, ``{"gpu": 0, "reset_locked_clocks": true}``, ``{"gpu": 0, "power_limit_w": 400}`` (see
        :meth:`FakeMachine.apply_settings`); returns that GPU's settings.

        Served as ``POST /settings/<node>``; NVML's set calls in every process that mirrors this node send them here,
        so ``nvidia-smi -lgc``/``-pl`` change what ``/metrics`` and every mirror show. A refusal is answered 400 with
        ``{"nvml_error": CODE, "message": ...}``, the NVML error the set call returns."""
        return self.fleet[node].apply_settings(int(request["gpu"]), request)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: what a :class:`~labkit.sim.gpu.shared.MirrorMachine` is given."""
        return f"http://{self.host}:{self.port}"

    def render(self, node: str | None = None) -> str:
        """The text a scrape of ``/metrics`` (or ``/metrics/<node>``) returns now."""
        with self._lock:
            attribution = dict(self._attribution)
        fleet = self.fleet if node is None else {node: self.fleet[node]}
        return fleet_metrics(fleet, attribution=attribution, hostname_label=self.hostname_label)

    def stop(self) -> None:
        """Stop serving and free the port (safe to call twice)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        with _registry_lock:
            if self in _running:
                _running.remove(self)


def _answer(exporter: ExporterServer, path: str) -> Answer:
    path = path.split("?", 1)[0].rstrip("/")
    if path == "/metrics":
        return Answer(exporter.render(), _CONTENT_TYPE)
    if path.startswith("/metrics/") and path.removeprefix("/metrics/") in exporter.fleet:
        return Answer(exporter.render(path.removeprefix("/metrics/")), _CONTENT_TYPE)
    if path == "":
        return Answer("\n".join(["/metrics"] + [f"/metrics/{node}" for node in exporter.fleet]) + "\n", _CONTENT_TYPE)
    if (extra := exporter.serve_extra(path)) is not None:
        return Answer(extra, _CONTENT_TYPE)
    return Answer(f"not found: {path}; try /metrics\n", _CONTENT_TYPE, HTTPStatus.NOT_FOUND)


def _post(exporter: ExporterServer, path: str, body: bytes) -> Answer:
    path = path.split("?", 1)[0].rstrip("/")
    action, _, node = path.removeprefix("/").partition("/")
    if action not in ("faults", "settings") or node not in exporter.fleet:
        return Answer(f"not found: {path}; POST /faults/<node> or /settings/<node> (nodes: "
                      f"{', '.join(exporter.fleet)})\n", _CONTENT_TYPE, HTTPStatus.NOT_FOUND)
    if action == "settings":
        try:
            return Answer(json.dumps(exporter.settings(node, json.loads(body or b"{}"))) + "\n", JSON)
        except (KeyError, ValueError, TypeError, IndexError) as exc:  # SettingRefused is a ValueError
            code = getattr(exc, "code", pynvml.NVML_ERROR_INVALID_ARGUMENT)
            return Answer(json.dumps({"nvml_error": code, "message": f"{type(exc).__name__}: {exc}"}) + "\n", JSON,
                          HTTPStatus.BAD_REQUEST)
    try:
        return Answer(json.dumps(exporter.fault(node, json.loads(body or b"{}"))) + "\n", _CONTENT_TYPE)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        return Answer(f"bad fault request ({type(exc).__name__}: {exc}); send JSON such as "
                      '{"gpu": 0, "xid": 79}\n', _CONTENT_TYPE, HTTPStatus.BAD_REQUEST)


def _bind(port: int, exporter: ExporterServer) -> LoopbackServer:
    try:
        return LoopbackServer(port, functools.partial(_answer, exporter), functools.partial(_post, exporter))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {LOOPBACK} is already in use, so the GPU exporter cannot listen there.",
                fix=f"pass port=0 to pick a free port, or stop what holds it (see: ss -ltnp 'sport = :{port}'); "
                "an exporter started earlier in this kernel stops with labkit.sim.gpu.stop_all_exporters()",
            ) from exc
        raise


_registry_lock = threading.Lock()
_running: list[ExporterServer] = []


def start_exporter(
    fleet: Mapping[str, FakeMachine] | FakeMachine,
    *,
    port: int = 0,
    attribution: Attribution | None = None,
    workloads: Workloads | None = None,
    hostname_label: str = HOSTNAME_LABEL,
) -> ExporterServer:
    """Serve the fleet's metrics on ``http://127.0.0.1:<port>/metrics`` (port 0 = any free port)."""
    if isinstance(fleet, FakeMachine):
        fleet = {fleet.node: fleet}
    if not fleet:
        raise ValueError("the exporter needs at least one GPU node")
    server = ExporterServer(fleet, port=port, hostname_label=hostname_label)
    try:
        server.update(attribution=attribution, workloads=workloads)
    except Exception:
        server.stop()
        raise
    with _registry_lock:
        _running.append(server)
    return server


def stop_exporter(server: ExporterServer) -> None:
    """Stop one exporter."""
    server.stop()


def stop_all_exporters() -> int:
    """Stop every exporter this process started (handy when a notebook cell is re-run); returns how many."""
    with _registry_lock:
        servers = list(_running)
    for server in servers:
        server.stop()
    return len(servers)
