"""Every setting and shared constant of the lab, in one place: environment variables and their defaults."""

from __future__ import annotations

import os

from .i18n import _

# --- the embedded cluster
API_PORT_ENV = "LABKIT_API_PORT"
DEFAULT_API_PORT = 16443


def unsupported_platform() -> str:
    """Where the lab runs instead, in the learner's language: the embedded cluster runs Linux binaries, Linux
    sandboxes (bubblewrap) and /proc; elsewhere, a Linux container."""
    return _("the embedded lab runs on Linux only (its cluster binaries, the containers' sandboxes and "
             "the kubelet's /proc readings are Linux's): open this repository in its dev container "
             "(.devcontainer/: VS Code's \"Reopen in Container\", or GitHub Codespaces), or on a Linux "
             "machine or VM; a cluster of your own works from anywhere with `labkit up --backend current`")


def linux() -> bool:
    """Whether the embedded lab can run here."""
    import sys

    return sys.platform.startswith("linux")

# --- add-ons
# How often the lab's Prometheus scrapes and evaluates rules; PromQL windows and GPU-time sums depend on it.
SCRAPE_INTERVAL_S = 2
SCRAPE_INTERVAL = f"{SCRAPE_INTERVAL_S}s"
# The control plane's own /metrics (apiserver, etcd, scheduler, controller-manager): tens of thousands of series that
# change slowly; rendering the API server's alone costs it a good part of a core every 2 s on a 2-core machine.
CONTROL_PLANE_SCRAPE_INTERVAL_S = 10
# The "scrape interval" a Grafana datasource for the lab's Prometheus is set to: the slowest job's, so that
# $__rate_interval (4 x this) always spans enough samples of every job for rate() (the control plane's too).
DATASOURCE_SCRAPE_INTERVAL_S = max(SCRAPE_INTERVAL_S, CONTROL_PLANE_SCRAPE_INTERVAL_S)
# The Prometheus job of the GPU exporter's targets: what dcgm-exporter's ServiceMonitor is called in the GPU Operator.
DCGM_EXPORTER_JOB = "dcgm-exporter"
# The Prometheus job of the workload model's per-pod request metrics (what a PodMonitor on the app would be called).
WORKLOAD_MODEL_JOB = "workload-model"
# The Prometheus object prometheus-operator manages in the lab (lesson 07): its namespace and name.
OPERATED_NAMESPACE = "monitoring"
OPERATED_NAME = "lab"
# The Prometheus job of kube-state-metrics (what its Service is called in kube-prometheus).
KSM_JOB = "kube-state-metrics"
# The Prometheus job of the host's node exporter (kube-prometheus' name for it).
NODE_EXPORTER_JOB = "node-exporter"

# --- simulated GPUs
DEFAULT_GPU_PROFILE = "H100-SXM"
# Extended resources the NVIDIA device plugin advertises.
GPU_RESOURCE = "nvidia.com/gpu"
SHARED_GPU_RESOURCE = "nvidia.com/gpu.shared"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

# How long a read from one of the lab's own loopback servers may take: generous, because a 2-core machine running
# the whole lab and a test suite can stall a process for seconds; still a deadline, never a hang.
LOCAL_HTTP_TIMEOUT_S = 30.0

# --- notebooks under test
IN_TEST_ENV = "LABKIT_IN_TEST"


def api_port() -> int:
    """The embedded API server's port on 127.0.0.1 (``LABKIT_API_PORT``)."""
    return int(os.environ.get(API_PORT_ENV, DEFAULT_API_PORT))


def in_test() -> bool:
    """True when notebooks run under test (``LABKIT_IN_TEST=1``): exercises apply their solution before checking, and
    a binary's first build reports to a log, not to the cell."""
    return os.environ.get(IN_TEST_ENV) == "1"
