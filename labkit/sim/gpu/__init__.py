"""Simulated (or real) NVIDIA GPUs for the GPU-operations notebooks.

Layer 1: :func:`nvml` answers pynvml's API from real GPUs or from a simulated node.
Layer 2: the simulation itself (profiles, physics, faults) and a dcgm-exporter-compatible
``/metrics`` endpoint."""

from labkit.sim.gpu.dcgm_exporter import (
    HOSTNAME_LABEL,
    PodRef,
    collect_samples,
    default_counters,
    fleet_metrics,
    lab_counters,
    node_metrics,
    render_samples,
)
from labkit.sim.gpu.exporter_server import (
    ExporterServer,
    start_exporter,
    stop_all_exporters,
    stop_exporter,
)
from labkit.sim.gpu.fake_nvml import FakeNvml
from labkit.sim.gpu.faults import (
    XID_CATALOGUE,
    degrade_cooling,
    inject_ecc_errors,
    inject_pcie_replays,
    inject_xid,
    reset_gpu,
    xid_message,
)
from labkit.sim.gpu.machine import DEFAULT_NODES, FakeMachine, GpuSample, make_fleet
from labkit.sim.gpu.nvml import NvmlMode, NvmlUnavailable, fake_machine_from_env, nvml, nvml_mode
from labkit.sim.gpu.physics import Workload, reason_names, relative_throughput
from labkit.sim.gpu.profiles import GpuProfile, available_profiles, load_profile
from labkit.sim.gpu.shim import fake_pynvml_env, install_fake_pynvml

__all__ = [
    "DEFAULT_NODES",
    "HOSTNAME_LABEL",
    "XID_CATALOGUE",
    "ExporterServer",
    "FakeMachine",
    "FakeNvml",
    "GpuProfile",
    "GpuSample",
    "NvmlMode",
    "NvmlUnavailable",
    "PodRef",
    "Workload",
    "available_profiles",
    "collect_samples",
    "default_counters",
    "degrade_cooling",
    "fake_machine_from_env",
    "fake_pynvml_env",
    "fleet_metrics",
    "inject_ecc_errors",
    "inject_pcie_replays",
    "inject_xid",
    "install_fake_pynvml",
    "lab_counters",
    "load_profile",
    "make_fleet",
    "node_metrics",
    "nvml",
    "nvml_mode",
    "reason_names",
    "relative_throughput",
    "render_samples",
    "reset_gpu",
    "start_exporter",
    "stop_all_exporters",
    "stop_exporter",
    "xid_message",
]
