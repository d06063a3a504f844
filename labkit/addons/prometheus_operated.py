"""The Prometheus that prometheus-operator manages (lesson 07), and labkit's stand-in for its config-reloader.

In a real cluster the operator runs the Prometheus object ``monitoring/lab`` as the StatefulSet ``prometheus-lab``
(containers ``prometheus`` and ``config-reloader``). On the embedded cluster that StatefulSet's pod is simulated, so:

- ``prometheus-operated`` is a second real Prometheus, configured by the operator only, on 127.0.0.1, with
  ``--web.enable-lifecycle`` for ``/-/reload``. It is Prometheus 3.5.0 built from its module (pinned in
  :mod:`labkit.versions`), not Debian's 2.42 that the lab's own ``prometheus`` add-on runs: Debian builds Prometheus
  without ``kubernetes_sd_configs``, and every job the operator generates for a ServiceMonitor or PodMonitor uses it.
  Its web UI is not built (an npm build of ``web/ui``); its HTTP API is all there, and the notebook reads that. It
  applies ``labkit/data/prometheus-operator/prometheus.yaml`` (namespace, ServiceAccount, RBAC, the Prometheus
  object);
- ``config-reloader`` (:mod:`labkit.sim.config_reloader`) copies the operator's Secret and rule ConfigMaps into
  that Prometheus' folder, rewritten only where out of cluster differs, and reloads it.
"""

from __future__ import annotations

from .. import state, versions
from ..cluster.binaries import Component
from ..paths import data_file
from ..settings import OPERATED_NAME, OPERATED_NAMESPACE
from .base import Addon, Context, PythonModuleAddon, kubectl_apply

# Service discovery mechanisms left out of the build: the lab needs kubernetes_sd (every ServiceMonitor/PodMonitor job)
# and file/http (always built in); the cloud SDKs behind the others would double the build time on two cores.
_PLUGINS = "plugins/plugins.go"
UNUSED_SD = ("aws", "azure", "consul", "digitalocean", "dns", "eureka", "gce", "hetzner", "ionos", "linode",
             "marathon", "moby", "nomad", "openstack", "ovhcloud", "puppetdb", "scaleway", "stackit", "triton",
             "uyuni", "vultr", "xds", "zookeeper")
SD_PATCHES = tuple((_PLUGINS, f'\t_ "github.com/prometheus/prometheus/discovery/{sd}"\n',
                    f"\t// {sd} SD: left out by labkit\n") for sd in UNUSED_SD)


def component() -> Component:
    """Prometheus (``prometheus`` and ``promtool``) at the version the operator defaults to, built from its module
    with only the service discovery the lab uses."""
    version = versions.OPERATED_PROMETHEUS.lstrip("v")
    return Component(
        "prometheus", versions.OPERATED_PROMETHEUS_MODULE, "github.com/prometheus/prometheus",
        ("github.com/prometheus/prometheus/cmd/prometheus", "github.com/prometheus/prometheus/cmd/promtool"),
        ("prometheus", "promtool"),
        ldflags=f"-s -w -X github.com/prometheus/common/version.Version={version} "
        "-X github.com/prometheus/common/version.Branch=labkit",
        patches=SD_PATCHES,
    )


def promtool() -> str:
    """The promtool of the operated Prometheus (Debian's rejects kubernetes_sd_configs)."""
    return str(component().dir / "promtool")


# What Prometheus runs with until the operator's config arrives (the real pod's first config is an empty one too).
PLACEHOLDER = "# waiting for labkit's config-reloader to copy the operator's generated config\nglobal: {}\n"


class PrometheusOperated(Addon):
    name = "prometheus-operated"
    summary = "the Prometheus object monitoring/lab, run by labkit: configured only by prometheus-operator"
    port_env = "LABKIT_PROMETHEUS_OPERATED_PORT"
    ready_path = "/-/ready"
    needs = ("prometheus-operator", "alertmanager")
    binary_env = "LABKIT_PROMETHEUS_OPERATED_BINARY"
    binary_name = "prometheus"
    metrics_job = "prometheus-operated"

    def component(self) -> Component:
        return component()

    def prepare(self, ctx: Context) -> None:
        """Apply the Prometheus object (``kubectl apply --server-side -f prometheus.yaml``); start from a placeholder
        config unless the reloader already wrote one."""
        kubectl_apply(ctx, data_file("prometheus-operator/prometheus.yaml"), what="the Prometheus object")
        config = ctx.folder / "prometheus.yaml"
        if not config.exists():
            config.write_text(PLACEHOLDER)

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # missing() is checked before start
        return [binary, f"--config.file={ctx.folder / 'prometheus.yaml'}",
                f"--web.listen-address=127.0.0.1:{ctx.port}", f"--storage.tsdb.path={ctx.folder / 'data'}",
                "--storage.tsdb.retention.time=1d", "--web.enable-lifecycle",
                # As the operator's StatefulSet sets it: links in the UI and in alerts point here.
                f"--web.external-url=http://127.0.0.1:{ctx.port}/"]


class ConfigReloader(PythonModuleAddon):
    name = "config-reloader"
    summary = "stand-in for the config-reloader sidecar: operator's Secret -> prometheus-operated, then /-/reload"
    port_env = "LABKIT_CONFIG_RELOADER_PORT"
    ready_path = "/healthz"
    needs = ("prometheus-operated", "workload-model")
    module = "labkit.sim.config_reloader"

    def arguments(self, ctx: Context) -> list[str]:
        args = ["--kubeconfig", str(ctx.kubeconfig), "--namespace", OPERATED_NAMESPACE, "--name", OPERATED_NAME,
                "--folder", str(ctx.folder.parent / "prometheus-operated"),
                "--prometheus-url", f"http://127.0.0.1:{ctx.ports['prometheus-operated']}",
                "--alertmanager", f"127.0.0.1:{ctx.ports['alertmanager']}", "--port", str(ctx.port)]
        if state.recorded().get("backend", "kwok") == "kwok":
            # Simulated pods: nothing answers on their IPs, so their scrapes go to the workload model's routes.
            args += ["--workload-port", str(ctx.ports["workload-model"])]
        return args

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/state"
