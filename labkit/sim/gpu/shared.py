"""One GPU state for the whole lab: the GPU exporter owns the simulation, every other process mirrors it.

The lab's exporter process (``labkit.sim.gpu.daemon``) steps every GPU node's model on the wall clock and
serves each node's full state as JSON on loopback (``GET /nvml/<node>``), beside the ``/metrics`` that
Prometheus scrapes. It writes its address to ``$LABKIT_STATE_DIR/gpu-nvml.url``. A terminal tool
(nvitop, gpustat, a pynvml script) gets a :class:`MirrorMachine` of one node: it re-reads that state at
most every :data:`MAX_AGE_S` seconds and never steps the model itself, so it shows the same devices,
pods' processes, MIG layout, faults and live values as Prometheus. A mirror changes nothing itself: NVML's set
calls (locked clocks, application clocks, power limit) go to the exporter (``POST /settings/<node>``), which
applies them to the one state or answers the NVML error the board would, and the mirror re-reads that state.

``LABKIT_FAKE_GPU_SOURCE`` picks where a process's simulated GPUs come from:
``auto`` (default) the lab's exporter when it answers, else a private node from ``LABKIT_FAKE_GPU_*``;
``lab`` the lab's exporter (error when it is not running); ``local`` always the private node;
or a URL ``http://127.0.0.1:PORT`` of an exporter."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict
from http import HTTPStatus
from typing import Any

from labkit.errors import LabkitError
from labkit.paths import gpu_nvml_endpoint
from labkit.sim.gpu.faults import FaultState, XidEvent
from labkit.sim.gpu.machine import DEFAULT_NODES, FakeMachine, FakeProcess, SettingRefused
from labkit.sim.gpu.physics import GpuState, Workload

ENV_SOURCE = "LABKIT_FAKE_GPU_SOURCE"
MAX_AGE_S = 0.5
_TIMEOUT_S = 2.0


class GpuStateUnavailable(LabkitError):
    """The lab's GPU state was asked for, but its exporter does not answer."""


class NoSuchGpuNode(GpuStateUnavailable):
    """The exporter answers but simulates no node of that name."""


def machine_state(machine: FakeMachine) -> dict[str, Any]:
    """Everything a mirror needs to answer NVML for one node, as JSON-ready data."""
    with machine.lock:
        machine.sync()
        return {
            "node": machine.node,
            "profile": machine.profile.key,
            "driver_version": machine.driver_version,
            "cuda_version": machine.cuda_version,
            "sim_time_s": machine.sim_time_s,
            "devices": [
                {
                    "uuid": d.uuid,
                    "serial": d.serial,
                    "pci_bus": d.pci_bus,
                    "state": asdict(d.state),
                    "faults": asdict(d.faults),
                    "mig": [p.name for p in d.mig_instances] if d.mig_enabled else None,
                    "processes": None if d.processes is None else [asdict(p) for p in d.processes],
                }
                for d in machine.devices
            ],
        }


def apply_state(machine: FakeMachine, data: dict[str, Any]) -> None:
    """Make ``machine`` (same model and device count) match a :func:`machine_state` snapshot."""
    with machine.lock:
        machine.sim_time_s = data["sim_time_s"]
        machine.driver_version, machine.cuda_version = data["driver_version"], data["cuda_version"]
        for device, d in zip(machine.devices, data["devices"], strict=True):
            device.uuid, device.serial, device.pci_bus = d["uuid"], d["serial"], d["pci_bus"]
            state = dict(d["state"])
            state["workload"] = Workload(**state["workload"])
            if state["locked_clocks_mhz"] is not None:
                state["locked_clocks_mhz"] = tuple(state["locked_clocks_mhz"])
            device.state = GpuState(**state)
            faults = dict(d["faults"])
            faults["history"] = [XidEvent(**e) for e in faults["history"]]
            device.faults = FaultState(**faults)
            device.mig_enabled = d["mig"] is not None
            device.mig_instances = [machine.profile.mig_profile(n) for n in d["mig"] or []]
            device.processes = None if d["processes"] is None else [FakeProcess(**p) for p in d["processes"]]


def fetch_state(base_url: str, node: str) -> dict[str, Any]:
    """``GET <exporter>/nvml/<node>``: one node's state from the process that owns the simulation."""
    url = f"{base_url.rstrip('/')}/nvml/{node}"
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:  # noqa: S310 -- loopback
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            try:
                with urllib.request.urlopen(f"{base_url.rstrip('/')}/nvml", timeout=_TIMEOUT_S) as resp:  # noqa: S310
                    known = ", ".join(json.loads(resp.read()))
            except (OSError, ValueError):
                known = f"see curl {base_url.rstrip('/')}/nvml"
            raise NoSuchGpuNode(f"the lab's GPU exporter has no GPU node {node!r} (it has: {known})",
                                fix="set LABKIT_FAKE_GPU_NODE to one of them") from exc
        raise
    except OSError as exc:
        raise GpuStateUnavailable(f"the lab's GPU exporter at {base_url} does not answer ({exc})",
                                  fix="labkit up --with gpu-exporter, or LABKIT_FAKE_GPU_SOURCE=local for a "
                                      "private simulated node") from exc


def post_fault(base_url: str, node: str, request: dict[str, Any]) -> dict[str, Any]:
    """``POST <exporter>/faults/<node>``: act on one GPU of the one state (inject, ``{"gpu": G, "reset": true}``,
    replace); returns that GPU's fault record. Lab operations and ``nvidia-smi -r`` both send it here."""
    url = f"{base_url.rstrip('/')}/faults/{node}"
    http_request = urllib.request.Request(url, data=json.dumps(request).encode(), method="POST",  # noqa: S310
                                          headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(http_request, timeout=10) as resp:  # noqa: S310 -- loopback
        return json.loads(resp.read())


def post_settings(base_url: str, node: str, request: dict[str, Any]) -> dict[str, Any]:
    """``POST <exporter>/settings/<node>``: turn an operator's knob on one GPU of the one state (``{"gpu": G,
    "locked_clocks_mhz": [min, max]}``, ``"reset_locked_clocks": true``, ``"power_limit_w": W``; see
    :meth:`FakeMachine.apply_settings`); returns that GPU's settings. Raises :class:`SettingRefused` with the NVML
    error the exporter answers. NVML's set calls on a :class:`MirrorMachine` send it here."""
    url = f"{base_url.rstrip('/')}/settings/{node}"
    http_request = urllib.request.Request(url, data=json.dumps(request).encode(), method="POST",  # noqa: S310
                                          headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(http_request, timeout=10) as resp:  # noqa: S310 -- loopback
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == HTTPStatus.NOT_FOUND:  # an exporter started by an older labkit, which knows only /faults
            raise GpuStateUnavailable(f"the lab's GPU exporter at {base_url} has no settings endpoint: it was "
                                      "started by an older labkit", fix="labkit down && labkit up") from None
        try:
            refusal = json.loads(exc.read())
            message, code = refusal["message"], int(refusal["nvml_error"])
        except (ValueError, KeyError, TypeError):
            raise exc from None
        raise SettingRefused(message, code=code) from None
    except OSError as exc:
        raise GpuStateUnavailable(f"the lab's GPU exporter at {base_url} does not answer ({exc})",
                                  fix="labkit up --with gpu-exporter") from exc


class MirrorMachine(FakeMachine):
    """A copy of one node of the lab's GPUs, refreshed from the exporter when older than MAX_AGE_S; its settings
    changes go to the exporter."""

    def __init__(self, base_url: str, node: str) -> None:
        data = fetch_state(base_url, node)
        super().__init__(profile=data["profile"], count=len(data["devices"]), node=node, clock="manual")
        self.base_url = base_url
        apply_state(self, data)
        self._fetched = time.monotonic()

    def __repr__(self) -> str:
        return f"MirrorMachine({self.base_url}/nvml/{self.node}, {len(self.devices)}x {self.profile.key})"

    def sync(self) -> None:
        if time.monotonic() - self._fetched < MAX_AGE_S:
            return
        with self.lock:
            apply_state(self, fetch_state(self.base_url, self.node))
            self._fetched = time.monotonic()

    def apply_settings(self, gpu: int, request: Mapping[str, Any]) -> dict[str, Any]:
        """Sent to the exporter that owns the state (:func:`post_settings`); the next read sees the result."""
        settings = post_settings(self.base_url, self.node, {**request, "gpu": gpu})
        with self.lock:
            self._fetched = float("-inf")
            self.sync()
        return settings

    def step(self, seconds: float = 1.0, *, dt_s: float = 1.0) -> None:
        raise GpuStateUnavailable("a mirror of the lab's GPUs cannot step time: the GPU exporter owns the model",
                                  fix="watch it change instead (the exporter follows the wall clock)")


def lab_endpoint() -> str | None:
    """The base URL the running lab's GPU exporter wrote, or None when there is none."""
    try:
        url = gpu_nvml_endpoint().read_text().strip()
    except OSError:
        return None
    return url or None


def state_owner(env: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(exporter base URL, node) owning the GPUs ``LABKIT_FAKE_GPU_SOURCE`` points this process at; None for a
    private simulated node, whose state lives (and dies) in the process that reads it."""
    from labkit.sim.gpu.nvml import ENV_NODE  # nvml.py builds on this module

    env = dict(os.environ if env is None else env)
    source = env.get(ENV_SOURCE, "auto").strip()
    node = env.get(ENV_NODE, DEFAULT_NODES[0])
    if source == "local":
        return None
    if source.startswith("http://"):
        return source, node
    url = lab_endpoint()
    return (url, node) if url is not None else None


def machine_from_source(env: dict[str, str] | None = None) -> tuple[FakeMachine, str]:
    """The simulated node this process should see, and why (see the module docstring)."""
    from labkit.sim.gpu.nvml import ENV_NODE, fake_machine_from_env  # nvml.py builds on this module

    env = dict(os.environ if env is None else env)
    source = env.get(ENV_SOURCE, "auto").strip()
    node = env.get(ENV_NODE, DEFAULT_NODES[0])
    if source == "local":
        return fake_machine_from_env(env), f"{ENV_SOURCE}=local: a private simulated node"
    if source.startswith("http://"):
        return MirrorMachine(source, node), f"{ENV_SOURCE}={source}: node {node} of that exporter"
    url = lab_endpoint()
    if source == "lab":
        if url is None:
            raise GpuStateUnavailable(f"{ENV_SOURCE}=lab, but the lab's GPU exporter is not running "
                                      f"(no {gpu_nvml_endpoint()})", fix="labkit up --with gpu-exporter")
        return MirrorMachine(url, node), f"node {node} of the lab's GPU exporter ({url})"
    if source != "auto":
        raise ValueError(f"{ENV_SOURCE} must be auto, lab, local or an http:// URL, got {source!r}")
    if url is not None:
        try:
            return MirrorMachine(url, node), f"node {node} of the lab's GPU exporter ({url})"
        except NoSuchGpuNode:
            raise
        except GpuStateUnavailable:
            pass  # a stale address from a lab that was not stopped cleanly
    return fake_machine_from_env(env), "a private simulated node (the lab's GPU exporter is not running)"
