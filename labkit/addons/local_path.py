"""The local-path provisioner: the embedded cluster's default StorageClass ``standard``, as kind's.

Runs ``python -m labkit.sim.storage``; ``labkit up`` starts it with the embedded cluster (kind has the real
rancher local-path-provisioner already). Volumes are directories under this add-on's folder
(``<state dir>/addons/local-path-provisioner/volumes/<node>/pvc-<uid>_<namespace>_<name>``), so they outlive pods,
rollbacks and the provisioner's own restarts, and ``labkit down`` removes them with the cluster they belong to.
"""

from __future__ import annotations

from pathlib import Path

from .base import Context, PythonModuleAddon


class LocalPathProvisioner(PythonModuleAddon):
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

    module = "labkit.sim.storage"

    def arguments(self, ctx: Context) -> list[str]:
        return ["--kubeconfig", str(ctx.kubeconfig),
                "--root", str(self.volumes_root(ctx)), "--port", str(ctx.port)]

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/metrics"
