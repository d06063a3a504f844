"""Make ``!kubectl`` in a notebook cell talk to the lab, as ``eval "$(labkit env)"`` does in a terminal.

Introduced in notebook 00_lab_tour: ``lk.use_lab_kubectl(lab)``.
"""

from __future__ import annotations

import os
import shutil

from ..paths import bin_dir
from .client import Lab


def use_lab_kubectl(lab: Lab) -> str:
    """Point this kernel's KUBECONFIG at the lab and put the lab's pinned kubectl first on PATH.

    Returns the kubectl that ``!kubectl`` will now run.
    """
    if lab.kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(lab.kubeconfig)
    lab_bin = str(bin_dir())
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != lab_bin]
    if (bin_dir() / "kubectl").exists():
        parts.insert(0, lab_bin)
    os.environ["PATH"] = os.pathsep.join(parts)
    return shutil.which("kubectl") or "kubectl (not found: run `labkit up`)"
