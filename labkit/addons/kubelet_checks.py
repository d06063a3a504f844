"""The embedded kubelet: its checks KWOK cannot make, the containers' insides, and the kubelet port's exec.

Runs ``python -m labkit.sim.kubelet``; ``labkit up`` starts it with the embedded cluster, whose KWOK Stages act only
on pods it has looked at (see that module). It runs what is inside the containers (:mod:`labkit.sim.runtime`) and
labkit's kubelet server (``labkit/data/kubelet-server/main.go``, built with Go on first start) on the nodes'
kubelet port, for ``kubectl exec`` and ``kubectl port-forward``. kind and other clusters have a real kubelet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import state, versions
from ..sim.kubelet import HELD_FILE
from .base import Context, PythonModuleAddon

if TYPE_CHECKING:
    from ..cluster.binaries import Component


class KubeletChecks(PythonModuleAddon):
    name = "kubelet-checks"
    summary = ("the kubelet KWOK cannot play: volumes, init containers, config references, the program; "
               "containers' logs and files; kubectl exec and port-forward")
    port_env = "LABKIT_KUBELET_CHECKS_PORT"
    ready_path = "/healthz"
    with_cluster_on = ("kwok",)

    module = "labkit.sim.kubelet"
    binary_name = "kubelet-server"

    def component(self) -> Component:
        from ..cluster.binaries import Component

        return Component("kubelet-server", versions.KUBERNETES_STAGING, "k8s.io/cri-streaming",
                         ("k8s.io/cri-streaming/pkg/streaming/remotecommand",), ("kubelet-server",),
                         wrapper=True, main_go="kubelet-server/main.go")

    def arguments(self, ctx: Context) -> list[str]:
        args = ["--kubeconfig", str(ctx.kubeconfig), "--port", str(ctx.port), "--state", str(ctx.folder)]
        cluster = state.recorded()
        binary = self.binary()
        if binary and cluster.kubelet_port and cluster.kwok_server_port and cluster.pki:
            args += ["--server-binary", binary, "--kubelet-port", str(cluster.kubelet_port),
                     "--kwok-server", f"127.0.0.1:{cluster.kwok_server_port}", "--pki", str(cluster.pki)]
        return args

    @staticmethod
    def held(folder: Path) -> list[dict[str, Any]]:
        """The pods the kubelet's checks hold now, and why (what the process last wrote; [] when it never did)."""
        try:
            return json.loads((folder / HELD_FILE).read_text())
        except (OSError, ValueError):
            return []

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/pods"
