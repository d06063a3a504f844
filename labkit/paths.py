"""Where labkit keeps its binary cache and the running lab's state."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Built or downloaded binaries, keyed by version (survives ``labkit down``)."""
    base = os.environ.get("LABKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "labkit"
    )
    return Path(base)


def cached_folder(name: str) -> Path:
    """Where the cached binaries ``bin/NAME`` are: in the read-only cache a machine's admin prepared for every user
    (``LABKIT_SHARED_CACHE``, e.g. a hub's ``LABKIT_CACHE_DIR=/var/cache/labkit labkit prefetch``) when complete
    there, else in the user's own cache, where they are got."""
    shared = os.environ.get("LABKIT_SHARED_CACHE")
    if shared and (Path(shared) / "bin" / name / ".complete").is_file():
        return Path(shared) / "bin" / name
    return cache_dir() / "bin" / name


def state_dir() -> Path:
    """The running lab: kubeconfig, kwokctl workdir, pid files, logs."""
    base = os.environ.get("LABKIT_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "labkit"
    )
    return Path(base)


def bin_dir() -> Path:
    """The lab's PATH entry: links to the cached binaries of the pinned versions."""
    return state_dir() / "bin"


def kubeconfig_path() -> Path:
    return state_dir() / "kubeconfig"


def gpu_nvml_endpoint() -> Path:
    """Where the lab's GPU exporter writes the URL that serves its simulated GPUs' state to other processes."""
    return state_dir() / "gpu-nvml.url"


def progress_file() -> Path:
    """Exercise progress a learner has made, across notebooks."""
    return state_dir() / "progress.json"


def data_file(name: str) -> Path:
    """A file shipped inside the package (labkit/data/...)."""
    return Path(__file__).parent / "data" / name


def write_atomic(path: Path, text: str, *, mode: int | None = None) -> Path:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half of one (Prometheus
    reading its targets, a check reading a node's clock, the next ``labkit`` reading the lab's record). The parent
    folder is made; concurrent writers each use their own temporary name."""
    import threading

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    if mode is not None:
        tmp.chmod(mode)
    os.replace(tmp, path)
    return path
