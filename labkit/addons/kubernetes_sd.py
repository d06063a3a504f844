"""Prometheus' Kubernetes service discovery, for the lab's Prometheus (Debian's 2.42 is built without it).

Debian's ``prometheus`` package drops ``kubernetes_sd_configs`` (no client-go in its build). This add-on runs the
upstream code instead: ``github.com/prometheus/prometheus/discovery/kubernetes`` (pinned in :mod:`labkit.versions`)
through Prometheus' documented custom-SD adapter, in a small program built with Go on first start
(``labkit/data/kubernetes-sd/main.go``). Its config is a set of ``kubernetes_sd_config`` blocks in Prometheus' own
YAML, against the lab's API server through its kubeconfig (Prometheus runs outside the cluster); it writes what each
one discovers as a file_sd file, with the same ``__meta_kubernetes_*`` labels, which the lab's Prometheus reads and
relabels exactly as it would a ``kubernetes_sd_configs`` job. Equals ``curl http://127.0.0.1:PORT/metrics``.
Introduced in notebook 06_prometheus.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import versions
from .base import Addon, Context

if TYPE_CHECKING:
    from ..cluster.binaries import Component

# One kubernetes_sd_config per output file: role, and the namespaces it watches.
ROLES: dict[str, dict[str, Any]] = {
    "endpointslice": {"role": "endpointslice", "namespaces": {"names": ["default", "kube-system"]}},
    "node": {"role": "node"},
}


def output_dir(addons_folder: Path) -> Path:
    """Where the discovered targets land: ``<addons>/kubernetes-sd/discovered/<role>.json``."""
    return addons_folder / "kubernetes-sd" / "discovered"


def sd_config(kubeconfig: Path) -> dict[str, dict[str, Any]]:
    """The ``kubernetes_sd_config`` blocks, as a ``kubernetes_sd_configs`` entry in prometheus.yml would say them."""
    return {name: {**conf, "kubeconfig_file": str(kubeconfig)} for name, conf in ROLES.items()}


class KubernetesSD(Addon):
    name = "kubernetes-sd"
    summary = "Prometheus' Kubernetes service discovery (upstream code) for the lab's Prometheus, as file_sd"
    port_env = "LABKIT_KUBERNETES_SD_PORT"
    ready_path = "/healthz"
    binary_env = "LABKIT_KUBERNETES_SD_BINARY"
    binary_name = "kubernetes-sd"
    metrics_job = "kubernetes-sd"

    def component(self) -> Component:
        from ..cluster.binaries import Component

        return Component("kubernetes-sd", versions.PROMETHEUS_MODULE, "github.com/prometheus/prometheus",
                         ("github.com/prometheus/prometheus/discovery/kubernetes",), ("kubernetes-sd",),
                         wrapper=True, main_go="kubernetes-sd/main.go")

    def prepare(self, ctx: Context) -> None:
        output_dir(ctx.folder.parent).mkdir(parents=True, exist_ok=True)
        (ctx.folder / "kubernetes-sd.yml").write_text(
            "# written by labkit: output file name -> Prometheus kubernetes_sd_config\n"
            + yaml.safe_dump(sd_config(ctx.kubeconfig), sort_keys=False))

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # the component is built before the add-on starts
        return [binary, f"--config.file={ctx.folder / 'kubernetes-sd.yml'}",
                f"--output.dir={output_dir(ctx.folder.parent)}", f"--listen=127.0.0.1:{ctx.port}"]
