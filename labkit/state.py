"""The running lab's record (``<state dir>/backend.json``): which backend runs and where its kubeconfig is.

The only module that reads or writes that file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .paths import state_dir


def _file() -> Path:
    return state_dir() / "backend.json"


def recorded() -> dict[str, Any]:
    """What ``labkit up`` recorded ({} when no lab is recorded or the file is damaged)."""
    try:
        return json.loads(_file().read_text())
    except (OSError, ValueError):
        return {}


def record(backend: str, **details: Any) -> None:
    """Record the backend that now runs (``labkit up``)."""
    state_dir().mkdir(parents=True, exist_ok=True)
    tmp = _file().with_suffix(".tmp")
    tmp.write_text(json.dumps({"backend": backend, "created": time.time(), **details}))
    tmp.replace(_file())  # atomic: a reader never sees half a record


def forget() -> None:
    """Remove the record (``labkit down``)."""
    _file().unlink(missing_ok=True)


def backend() -> str | None:
    """The recorded backend's name, or None."""
    return recorded().get("backend")
