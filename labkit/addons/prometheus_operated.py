"""The Prometheus that prometheus-operator manages (lesson 07), and labkit's stand-in for its config-reloader.

In a real cluster the operator runs the Prometheus object ``monitoring/lab`` as the StatefulSet ``prometheus-lab``
(containers ``prometheus`` and ``config-reloader``). On the embedded cluster that StatefulSet's pod is simulated, so:

- ``prometheus-operated`` is a second real Prometheus, configured by the operator only, on 127.0.0.1, with
  ``--web.enable-lifecycle`` for ``/-/reload``. It is the same Prometheus 3.5.0 as the lab's own ``prometheus``
  add-on (pinned in :mod:`labkit.versions`; :func:`component` is defined here and used by both). The release
  archive's binary serves its own web UI; a build from the module serves (``/query``, ``/targets``, ``/alerts``)
  the same module's ``web/ui/mantine-ui``, built once with npm
  (:func:`ensure_ui`): a Prometheus built without ``builtinassets`` serves ``static/mantine-ui`` from its working
  folder, so the binary stays unmodified. Without npm, or offline with an empty npm cache, only the UI is missing. It
  applies ``labkit/data/prometheus-operator/prometheus.yaml`` (namespace, ServiceAccount, RBAC, the Prometheus
  object);
- ``config-reloader`` (:mod:`labkit.sim.config_reloader`) copies the operator's Secret and rule ConfigMaps into
  that Prometheus' folder, rewritten only where out of cluster differs, and reloads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .. import state, versions
from ..cluster import binaries
from ..cluster.binaries import Component
from ..errors import BinariesUnavailable
from ..paths import cache_dir, cached_folder, data_file
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
        # The release archive (tag v3.5.0; the module's tag is v0.305.0): every SD, and the web UI built in.
        downloads=binaries.prometheus_project("prometheus", versions.OPERATED_PROMETHEUS,
                                              {"prometheus": "", "promtool": ""}).downloads,
        checksum="sha256sums.txt",
    )


def promtool() -> str:
    """The lab's promtool (the same build as its Prometheus; there once either Prometheus add-on has started, or
    `labkit prefetch` ran)."""
    return str(component().dir / "promtool")


# Prometheus' UI workspaces, in build order (web/ui/build_ui.sh builds the old react-app too; Prometheus 3 serves it
# only with --enable-feature=old-ui, so it is left out).
UI_WORKSPACES = ("@prometheus-io/lezer-promql", "@prometheus-io/codemirror-promql", "@prometheus-io/mantine-ui")
NPM_TIMEOUT_S = 900


def ui_dir() -> Path:
    """Where the built UI is cached: ``<cache>/bin/prometheus-ui-VERSION/static/mantine-ui``."""
    return cached_folder(f"prometheus-ui-{versions.OPERATED_PROMETHEUS_MODULE}")


def ensure_ui(progress: binaries.Progress = print) -> Path | None:
    """Build the operated Prometheus' web UI from its module's ``web/ui`` once (``npm ci``, then ``npm run build``
    for each of :data:`UI_WORKSPACES`; npm's cache first, so a machine that built it once builds it offline) and
    return its folder, or None after saying why it could not be built (the HTTP API works without it)."""
    out = ui_dir()
    if (out / ".complete").exists():
        return out
    if str(binaries.build_record(component()).get("how", "")).startswith("downloaded"):
        return None  # the release's binary serves its own UI (built with `builtinassets`)
    npm = shutil.which("npm")
    if npm is None:
        progress("the operated Prometheus' web UI needs npm (Node.js) to build; its HTTP API works without it")
        return None
    version = versions.OPERATED_PROMETHEUS_MODULE
    with binaries.only_one_getter("prometheus-ui", version, progress):
        if (out / ".complete").exists():
            return out
        work = cache_dir() / "build" / out.name
        partial = out.with_name(out.name + ".partial")
        try:
            source = binaries.module_folder("github.com/prometheus/prometheus", version, progress=progress)
            progress(f"building Prometheus' web UI {version} with npm (once, about 4 minutes; cached afterwards)")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(source / "web" / "ui", work, ignore=shutil.ignore_patterns("react-app"))
            for folder in [work, *work.rglob("*")]:  # the module cache is read-only
                folder.chmod(folder.stat().st_mode | 0o200)
            env = dict(os.environ, npm_config_update_notifier="false")
            workspaces = [arg for ws in UI_WORKSPACES for arg in ("-w", ws)]
            binaries.run_step([npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts",
                               *workspaces, "--include-workspace-root"], cwd=work, env=env,
                              what="Prometheus UI: npm ci", progress=progress)
            for ws in UI_WORKSPACES:
                binaries.run_step([npm, "run", "build", "-w", ws], cwd=work, env=env,
                                  what=f"Prometheus UI: build {ws}", progress=progress)
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(work / "mantine-ui" / "dist", partial / "static" / "mantine-ui")
            (partial / ".complete").write_text(version)
            shutil.rmtree(out, ignore_errors=True)
            partial.rename(out)
        except (BinariesUnavailable, OSError, subprocess.SubprocessError) as exc:
            progress(f"the operated Prometheus' web UI could not be built ({str(exc)[:300]}); its HTTP API works "
                     "without it")
            return None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    progress(f"Prometheus' web UI {version}: built")
    return out


def link_ui(folder: Path) -> None:
    """Put the built web UI where a Prometheus run in ``folder`` looks for it (``static``, its working folder)."""
    static = folder / "static"
    if static.is_symlink() or static.exists():
        static.unlink()
    if (ui_dir() / ".complete").exists():
        static.symlink_to(ui_dir() / "static")


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

    def ensure_assets(self, progress: binaries.Progress) -> None:
        ensure_ui(progress)

    def prepare(self, ctx: Context) -> None:
        """Apply the Prometheus object (``kubectl apply --server-side -f prometheus.yaml``); start from a placeholder
        config unless the reloader already wrote one; put the web UI where Prometheus looks for it (``static`` in
        its working folder)."""
        kubectl_apply(ctx, data_file("prometheus-operator/prometheus.yaml"), what="the Prometheus object")
        config = ctx.folder / "prometheus.yaml"
        if not config.exists():
            config.write_text(PLACEHOLDER)
        link_ui(ctx.folder)

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
        if (state.recorded().backend or "kwok") == "kwok":
            # Simulated pods: nothing answers on their IPs, so their scrapes go to the workload model's routes.
            args += ["--workload-port", str(ctx.ports["workload-model"])]
        return args

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/state"
