"""Access to NVIDIA's genuine ``pynvml`` module, even while labkit's stand-in shadows the name.

The fake re-exports pynvml's own constants, ctypes structures and exception classes, so it
needs the genuine module; when a process was started with the shim first on ``sys.path``,
``import pynvml`` would find the shim itself, so the genuine file is loaded by path instead.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SHIM_MARKER = "__labkit_fake__"
SHIM_MARKER_FILE = "LABKIT_FAKE_PYNVML"
_PRIVATE_NAME = "labkit_genuine_pynvml"


def _is_shim_dir(entry: str) -> bool:
    return bool(entry) and Path(entry, SHIM_MARKER_FILE).exists()


def genuine_pynvml_path() -> str:
    """The file of the ``nvidia-ml-py`` package's ``pynvml.py``, skipping labkit's stand-in."""
    search_path = [entry for entry in sys.path if not _is_shim_dir(entry)]
    spec = importlib.machinery.PathFinder.find_spec("pynvml", search_path)
    if spec is None or spec.origin is None:
        raise ImportError("pynvml is not installed; run: pip install nvidia-ml-py")
    return spec.origin


def genuine_pynvml() -> ModuleType:
    """The module installed by the ``nvidia-ml-py`` package, never labkit's stand-in."""
    loaded = sys.modules.get("pynvml")
    if loaded is not None and not getattr(loaded, SHIM_MARKER, False):
        return loaded
    if _PRIVATE_NAME in sys.modules:
        return sys.modules[_PRIVATE_NAME]
    search_path = [entry for entry in sys.path if not _is_shim_dir(entry)]
    if loaded is None and search_path == sys.path:
        import pynvml  # nothing shadows it: a normal import shares the module with user code

        return pynvml
    # pynvml builds its exception classes from sys.modules[__name__], so register before exec.
    spec = importlib.util.spec_from_file_location(_PRIVATE_NAME, genuine_pynvml_path())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PRIVATE_NAME] = module
    spec.loader.exec_module(module)
    return module


pynvml = genuine_pynvml()
