"""The NVML entry point: NVIDIA's pynvml when a driver answers, labkit's simulated GPUs otherwise.

Environment (read when the mode is first decided; pass ``refresh=True`` to re-read):

``LABKIT_FAKE_GPU``          ``1`` simulated GPUs, ``0`` real ones (error if no driver), unset/``auto`` try real first
``LABKIT_FAKE_GPU_PROFILE``  GPU model of the simulated node (default ``H100-SXM``; see ``available_profiles()``)
``LABKIT_FAKE_GPU_COUNT``    GPUs on the simulated node (default 2)
``LABKIT_FAKE_GPU_NODE``     node name of the simulated node (default ``gpu-node-1``)
``LABKIT_FAKE_GPU_SEED``     seed of the simulation noise (default 0)
``LABKIT_FAKE_GPU_CLOCK``    ``manual`` (time moves only when stepped, default) or ``wall`` (follows real time)
``LABKIT_FAKE_GPU_SOURCE``   ``auto`` (default): the lab's GPUs when its GPU exporter runs (``LABKIT_FAKE_GPU_NODE``,
                             mirrored, the same state Prometheus scrapes), else the private node above;
                             ``lab``, ``local``, or an exporter's URL (see :mod:`labkit.sim.gpu.shared`)"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

from labkit.errors import LabkitError
from labkit.sim.gpu.fake_nvml import FakeNvml
from labkit.sim.gpu.machine import DEFAULT_NODES, FakeMachine
from labkit.sim.gpu.profiles import DEFAULT_PROFILE
from labkit.sim.gpu.real_pynvml import pynvml
from labkit.sim.gpu.shared import machine_from_source

ENV_FAKE = "LABKIT_FAKE_GPU"
ENV_PROFILE = "LABKIT_FAKE_GPU_PROFILE"
ENV_COUNT = "LABKIT_FAKE_GPU_COUNT"
ENV_NODE = "LABKIT_FAKE_GPU_NODE"
ENV_SEED = "LABKIT_FAKE_GPU_SEED"
ENV_CLOCK = "LABKIT_FAKE_GPU_CLOCK"
_TRUE = {"1", "true", "yes", "on", "fake"}
_FALSE = {"0", "false", "no", "off", "real"}


class NvmlUnavailable(LabkitError):
    """Real GPUs were demanded but the NVIDIA driver does not answer."""


@dataclass(frozen=True)
class NvmlMode:
    """Which NVML :func:`nvml` hands out, and why."""

    mode: Literal["real", "fake"]
    reason: str


_lock = threading.Lock()
_chosen: tuple[NvmlMode, ModuleType | FakeNvml] | None = None


def fake_machine_from_env(env: dict[str, str] | None = None) -> FakeMachine:
    """The simulated node the ``LABKIT_FAKE_GPU_*`` variables describe."""
    env = dict(os.environ if env is None else env)
    clock = env.get(ENV_CLOCK, "manual")
    if clock not in ("manual", "wall"):
        raise ValueError(f"{ENV_CLOCK} must be 'manual' or 'wall', got {clock!r}")
    return FakeMachine(
        profile=env.get(ENV_PROFILE, DEFAULT_PROFILE),
        count=int(env.get(ENV_COUNT, "2")),
        node=env.get(ENV_NODE, DEFAULT_NODES[0]),
        seed=int(env.get(ENV_SEED, "0")),
        clock=clock,  # type: ignore[arg-type]
    )


def _probe_driver() -> str | None:
    """None when the NVIDIA driver answers, else why not."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"nvmlInit failed: {exc}"
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    return None if count > 0 else "the driver loaded but reports no GPUs"


def _decide() -> tuple[NvmlMode, ModuleType | FakeNvml]:
    wanted = os.environ.get(ENV_FAKE, "auto").strip().lower()
    if wanted in _TRUE:
        machine, source = machine_from_source()
        return NvmlMode("fake", f"{ENV_FAKE}={wanted} asks for simulated GPUs: {source}"), FakeNvml(machine)
    problem = _probe_driver()
    if wanted in _FALSE:
        if problem:
            raise NvmlUnavailable(
                f"{ENV_FAKE}={wanted} asks for real GPUs, but the NVIDIA driver does not answer ({problem}).",
                fix=f"run on a GPU host with the driver loaded, or unset {ENV_FAKE} to fall back to simulated GPUs",
            )
        return NvmlMode("real", f"{ENV_FAKE}={wanted} asks for real GPUs and the driver answers"), pynvml
    if problem is None:
        return NvmlMode("real", "the NVIDIA driver answers nvmlInit"), pynvml
    machine, source = machine_from_source()
    return NvmlMode("fake", f"no usable NVIDIA driver ({problem}); simulated GPUs: {source}"), FakeNvml(machine)


def _chosen_pair(refresh: bool) -> tuple[NvmlMode, ModuleType | FakeNvml]:
    global _chosen
    with _lock:
        if _chosen is None or refresh:
            _chosen = _decide()
        return _chosen


def nvml(*, refresh: bool = False) -> ModuleType | FakeNvml:
    """pynvml itself on a GPU host, else a :class:`FakeNvml` with the same functions and constants.

    Call ``nvmlInit()`` on the result as with pynvml. With simulated GPUs, ``nvml().machine``
    is the :class:`FakeMachine` to step, load and break (a mirror when it is the lab's: NVML's set calls go to
    the exporter that owns it, which alone steps it)."""
    return _chosen_pair(refresh)[1]


def nvml_mode(*, refresh: bool = False) -> NvmlMode:
    """Whether :func:`nvml` gives real or simulated GPUs, with the reason."""
    return _chosen_pair(refresh)[0]
