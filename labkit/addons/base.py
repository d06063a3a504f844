"""What an add-on is: one long-running process beside the cluster, on a loopback port, with a readiness URL.

An add-on is one small subclass of :class:`Addon`: its binary, its command line, its readiness path and, when it
serves metrics, the Prometheus targets it contributes. :mod:`labkit.addons` starts, watches and stops them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..errors import LabkitError
from ..i18n import _

if TYPE_CHECKING:
    from ..cluster.binaries import Component


@dataclass(frozen=True)
class Context:
    """What an add-on's command line may refer to: the cluster and where the other add-ons listen."""

    kubeconfig: Path
    folder: Path  # this add-on's own folder under the lab's state: config, data
    targets: Path  # its Prometheus file_sd file, when it serves metrics
    port: int
    ports: dict[str, int]  # every add-on that runs or is starting now -> its port


# Deadlines for kubectl against the lab: prometheus-operator's CRDs are megabytes, and on a 2-core machine running a
# test suite the API server took over a minute to apply them. A kubectl killed half-way leaves CRDs that were sent
# but not yet established, so the deadline is long rather than tight.
KUBECTL_APPLY_TIMEOUT_S = 300
CRD_ESTABLISHED_TIMEOUT_S = 180


def kubectl_apply(ctx: Context, target: Path | str, *, what: str, established: bool = False) -> None:
    """``kubectl apply --server-side --force-conflicts --field-manager=labkit -f TARGET`` against the lab (CRDs are
    too big for client-side apply's annotation); with ``established``, then ``kubectl wait
    --for=condition=Established -f TARGET``, so the CRDs are served before the add-on's controller starts."""
    from ..cluster.binaries import binary_paths

    path = binary_paths()["kubectl"]
    base = [str(path) if path.exists() else (shutil.which("kubectl") or "kubectl"), "--kubeconfig", str(ctx.kubeconfig)]
    steps = [(["apply", "--server-side", "--force-conflicts", "--field-manager=labkit", "-f", str(target)],
              f"installing {what} failed")]
    if established:
        steps.append((["wait", "--for=condition=Established", f"--timeout={CRD_ESTABLISHED_TIMEOUT_S}s",
                       "-f", str(target)], f"{what} were not established"))
    for args, failed in steps:
        try:
            proc = subprocess.run([*base, *args], capture_output=True, text=True,
                                  timeout=KUBECTL_APPLY_TIMEOUT_S + CRD_ESTABLISHED_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise LabkitError(f"{failed}: kubectl {args[0]} did not finish in {exc.timeout:.0f}s",
                              fix="`labkit status` shows whether the API server is healthy; retry with "
                              f"kubectl {' '.join(args)}") from None
        if proc.returncode != 0:
            conditions = ""
            if args[0] == "wait":  # say what the API server reports, so a stuck CRD can be told from a slow one
                shown = subprocess.run([*base, "get", "-f", str(target), "-o", "custom-columns=NAME:.metadata.name,"
                                        "CONDITIONS:.status.conditions[*].type,STATUS:.status.conditions[*].status"],
                                       capture_output=True, text=True, timeout=60)
                conditions = "\n" + shown.stdout.strip()
            raise LabkitError(f"{failed}: {proc.stderr.strip()}{conditions}",
                              fix="`labkit status` shows whether the API server is healthy; retry with "
                              f"kubectl {' '.join(args)}")


class Addon:
    """One add-on. Subclasses set the class attributes and implement :meth:`command`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    # ``LABKIT_<NAME>_PORT`` fixes the port; otherwise one is picked free at start (and reused when still free).
    port_env: ClassVar[str]
    ready_path: ClassVar[str] = "/"
    # "https" for an add-on that serves only TLS with its own self-signed certificate (an aggregated API server).
    ready_scheme: ClassVar[str] = "http"
    needs: ClassVar[tuple[str, ...]] = ()
    # A Prometheus job name when the add-on serves /metrics; the Prometheus add-on scrapes it.
    metrics_job: ClassVar[str | None] = None
    binary_env: ClassVar[str | None] = None
    binary_name: ClassVar[str | None] = None
    install_hint: ClassVar[str] = ""
    # Backends on which `labkit up` starts this add-on with the cluster (it stands in for part of a real cluster).
    with_cluster_on: ClassVar[tuple[str, ...]] = ()

    def component(self) -> Component | None:
        """The pinned Go component that provides the binary (cached, downloaded or built on first start), if any."""
        return None

    def binary(self) -> str | None:
        """The executable to run, or None when it is not there (``LABKIT_<NAME>_BINARY`` overrides)."""
        explicit = os.environ.get(self.binary_env) if self.binary_env else None
        if explicit:
            return explicit if os.access(explicit, os.X_OK) else None
        comp = self.component()
        if comp is not None and self.binary_name:
            path = comp.dir / self.binary_name
            return str(path) if comp.cached() else None
        return shutil.which(self.binary_name) if self.binary_name else None

    def missing(self) -> str | None:
        """Why the add-on cannot start here (with the fix), or None when it can (a component can be built)."""
        explicit = os.environ.get(self.binary_env) if self.binary_env else None
        if explicit and not os.access(explicit, os.X_OK):
            return _("{variable}={value} is not an executable program; fix: point it at one, or unset it to run "
                     "labkit's own").format(variable=self.binary_env, value=explicit)
        if self.binary_name and self.component() is None and self.binary() is None:
            return _("not installed; fix: {hint}").format(hint=self.install_hint)
        return None

    def command(self, ctx: Context) -> list[str]:
        raise NotImplementedError

    def env(self, ctx: Context) -> dict[str, str] | None:
        """Environment for the process (None: labkit's own)."""
        return None

    def ensure_assets(self, progress: Callable[[str], None]) -> None:
        """Build or fetch what the add-on needs besides its binary (a web UI) on first start; cached afterwards."""

    def prepare(self, ctx: Context) -> None:
        """Write config files before the process starts."""

    def url(self, port: int) -> str:
        """Where a person or a client reaches it."""
        return f"http://127.0.0.1:{port}"

    def scrape_targets(self, ctx: Context) -> list[dict[str, object]]:
        """Prometheus file_sd target groups for this add-on's metrics (default: its port, /metrics)."""
        return [{"targets": [f"127.0.0.1:{ctx.port}"], "labels": {"job": self.metrics_job or self.name}}]


class PythonModuleAddon(Addon):
    """An add-on that is one of labkit's own modules (a simulator), run by this Python: ``python -m MODULE ARGS``."""

    module: ClassVar[str]

    def arguments(self, ctx: Context) -> list[str]:
        raise NotImplementedError

    def command(self, ctx: Context) -> list[str]:
        return [sys.executable, "-m", self.module, *self.arguments(ctx)]

    def env(self, ctx: Context) -> dict[str, str]:
        # The labkit this process imported, whatever the add-on's working directory or how labkit was installed.
        package_root = str(Path(__file__).resolve().parents[2])
        return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))

