"""The local-path provisioner: the embedded cluster's default StorageClass ``standard``, as kind's.

Runs ``python -m labkit.sim.storage``; ``labkit up`` starts it with the embedded cluster (kind has the real
rancher local-path-provisioner already). Volumes are directories under this add-on's folder
(``<state dir>/addons/local-path-provisioner/volumes/<node>/pvc-<uid>_<namespace>_<name>``), so they outlive pods,
rollbacks and the provisioner's own restarts, and ``labkit down`` removes them with the cluster they belong to.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .base import Addon, Context


class LocalPathProvisioner(Addon):
    name = "local-path-provisioner"
    summary = "default StorageClass `standard` (rancher.io/local-path): PVs as directories, one folder per node"
    port_env = "LABKIT_LOCAL_PATH_PROVISIONER_PORT"
    ready_path = "/healthz"
    metrics_job = "local-path-provisioner"
    with_cluster_on = ("kwok",)

    @staticmethod
    def volumes_root(ctx: Context) -> Path:
        """Where the volumes live: inside the add-on's folder, which ``labkit down`` removes."""
        return ctx.folder / "volumes"

    def command(self, ctx: Context) -> list[str]:
        return [sys.executable, "-m", "labkit.sim.storage", "--kubeconfig", str(ctx.kubeconfig),
                "--root", str(self.volumes_root(ctx)), "--port", str(ctx.port)]

    def env(self, ctx: Context) -> dict[str, str]:
        # The package this labkit was imported from, whatever the add-on's working directory.
        package_root = str(Path(__file__).resolve().parents[2])
        return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/metrics"
