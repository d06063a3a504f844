"""The embedded kubelet's checks (volumes, init containers, config references, the command's program), as a process.

Runs ``python -m labkit.sim.kubelet``; ``labkit up`` starts it with the embedded cluster, whose KWOK Stages act only
on pods it has looked at (see that module). kind and other clusters have a real kubelet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..sim.kubelet import HELD_FILE
from .base import Context, PythonModuleAddon


class KubeletChecks(PythonModuleAddon):
    name = "kubelet-checks"
    summary = "the kubelet's checks KWOK cannot make: volumes, init containers, config references, the program"
    port_env = "LABKIT_KUBELET_CHECKS_PORT"
    ready_path = "/healthz"
    with_cluster_on = ("kwok",)

    module = "labkit.sim.kubelet"

    def arguments(self, ctx: Context) -> list[str]:
        return ["--kubeconfig", str(ctx.kubeconfig), "--port", str(ctx.port), "--state", str(ctx.folder)]

    @staticmethod
    def held(folder: Path) -> list[dict[str, Any]]:
        """The pods the kubelet's checks hold now, and why (what the process last wrote; [] when it never did)."""
        try:
            return json.loads((folder / HELD_FILE).read_text())
        except (OSError, ValueError):
            return []

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/pods"
