"""Making third-party tools (gpustat, nvitop, scripts) see the simulated GPUs through ``import pynvml``.

Two ways: :func:`fake_pynvml_env` gives a subprocess an environment whose ``PYTHONPATH``
starts with a directory holding a stand-in ``pynvml.py`` (the honest test: the tool is a
separate, unmodified program); :func:`install_fake_pynvml` swaps ``sys.modules['pynvml']``
inside this process. Beside the stand-in, ``bin/`` holds ``nvidia-smi`` and ``dcgmi`` launchers
(labkit's stand-ins for NVIDIA's tools), which that environment puts first on ``PATH``."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType

from labkit.sim.gpu.fake_nvml import FakeNvml
from labkit.sim.gpu.nvml import ENV_CLOCK, ENV_COUNT, ENV_FAKE, ENV_NODE, ENV_PROFILE, ENV_SEED, fake_machine_from_env
from labkit.sim.gpu.real_pynvml import SHIM_MARKER, SHIM_MARKER_FILE
from labkit.sim.gpu.shared import ENV_SOURCE, machine_from_source

_SHIM_SOURCE = f'''"""Stand-in for pynvml answering from labkit's simulated GPUs (written by labkit.sim.gpu.shim)."""

{SHIM_MARKER} = True

import sys

from labkit.sim.gpu.shim import facade_from_env

sys.modules[__name__] = facade_from_env()
'''


def facade_from_env() -> ModuleType:
    """The module the stand-in ``pynvml.py`` becomes: NVIDIA's pynvml over the simulated C library.

    Its GPUs are the lab's (mirrored from the GPU exporter) or a private node; see :mod:`labkit.sim.gpu.shared`."""
    machine, _why = machine_from_source()
    return FakeNvml(machine).as_module()


@cache
def pynvml_shim_dir() -> Path:
    """A private directory holding the stand-in ``pynvml.py``; removed when this process exits."""
    # mkdtemp is private to this user, so nobody else can plant a pynvml.py in it.
    directory = Path(tempfile.mkdtemp(prefix="labkit-pynvml-shim-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return write_shim(directory)


# Commands a GPU node has that read the simulated GPUs here: name -> the module that stands in for it.
STAND_IN_COMMANDS = {"nvidia-smi": "labkit.sim.gpu.smi", "dcgmi": "labkit.sim.gpu.dcgmi"}


def write_shim(directory: Path) -> Path:
    """Put the stand-in ``pynvml.py`` (and the marker that tells labkit it is not NVIDIA's) into ``directory``,
    and the ``nvidia-smi`` and ``dcgmi`` launchers into ``directory/bin``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pynvml.py").write_text(_SHIM_SOURCE)
    (directory / SHIM_MARKER_FILE).write_text("pynvml.py here is labkit's simulated NVML\n")
    bin_dir = launcher_dir(directory)
    bin_dir.mkdir(exist_ok=True)
    for command, module in STAND_IN_COMMANDS.items():
        launcher = bin_dir / command
        # This Python: the one with labkit and NVIDIA's pynvml installed, whatever `python` means in the shell.
        launcher.write_text(f"#!/bin/sh\nexec '{sys.executable}' -m {module} \"$@\"\n")
        launcher.chmod(0o755)
    return directory


def launcher_dir(shim_dir: Path) -> Path:
    """Where :func:`write_shim` puts the ``nvidia-smi`` and ``dcgmi`` launchers."""
    return shim_dir / "bin"


def _path_with(first: str, path: str) -> str:
    """``first`` at the head of a PATH-style list, once."""
    return os.pathsep.join([first, *(p for p in path.split(os.pathsep) if p and p != first)])


def terminal_env_lines(directory: Path) -> list[str]:
    """Shell lines after which ``nvitop``, ``gpustat`` or a pynvml script in that shell see the lab's GPUs."""
    package_root = Path(__file__).resolve().parents[3]
    write_shim(directory)
    path = os.pathsep.join([str(directory), str(package_root)])
    return [f"export PYTHONPATH='{path}'${{PYTHONPATH:+:$PYTHONPATH}}", f"export {ENV_FAKE}=1",
            f"export {ENV_SOURCE}=${{{ENV_SOURCE}:-auto}}", f"export PATH='{launcher_dir(directory)}':$PATH",
            f"# then: nvidia-smi ; dcgmi health -c ; nvitop --once ; gpustat ; "
            f"{ENV_NODE}=gpu-node-3 nvidia-smi -L (the MIG node)"]


def fake_pynvml_env(
    *,
    profile: str | None = None,
    count: int | None = None,
    node: str | None = None,
    seed: int | None = None,
    clock: str | None = None,
    source: str | None = None,
    base_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a subprocess (``python -m gpustat``, ``nvidia-smi``) in which ``import pynvml`` gets
    simulated GPUs and ``nvidia-smi`` and ``dcgmi`` are labkit's stand-ins.

    ``source`` is ``LABKIT_FAKE_GPU_SOURCE`` (``auto``, ``lab``, ``local`` or an exporter's URL); it defaults
    to ``local`` when a profile, count or seed describes a private node, else to the environment's."""
    env = dict(os.environ if base_env is None else base_env)
    package_root = Path(__file__).resolve().parents[3]  # the directory that contains labkit/
    env["PYTHONPATH"] = _path_with(str(pynvml_shim_dir()), _path_with(str(package_root), env.get("PYTHONPATH", "")))
    env["PATH"] = _path_with(str(launcher_dir(pynvml_shim_dir())), env.get("PATH", os.defpath))
    env[ENV_FAKE] = "1"
    for name, value in (
        (ENV_PROFILE, profile),
        (ENV_COUNT, count),
        (ENV_NODE, node),
        (ENV_SEED, seed),
        (ENV_CLOCK, clock),
        (ENV_SOURCE, source or ("local" if (profile, count, seed) != (None, None, None) else None)),
    ):
        if value is not None:
            env[name] = str(value)
    return env


@contextmanager
def install_fake_pynvml(fake: FakeNvml | None = None) -> Iterator[ModuleType]:
    """Within the block, ``import pynvml`` yields the fake (modules imported earlier keep their reference)."""
    module = (fake or FakeNvml(fake_machine_from_env())).as_module()
    previous = sys.modules.get("pynvml")
    sys.modules["pynvml"] = module
    try:
        yield module
    finally:
        if previous is None:
            sys.modules.pop("pynvml", None)
        else:
            sys.modules["pynvml"] = previous
