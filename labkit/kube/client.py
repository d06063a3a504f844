"""Connect to the lab's Kubernetes API and turn HTTP failures into errors a learner can act on.

Introduced in notebook 00_lab_tour: ``lab = lk.connect()``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from .. import state
from ..errors import ClusterUnreachable, LabkitError, ManifestError, NotFound
from ..i18n import _


def _kubeconfig(explicit: str | Path | None) -> tuple[Path | None, str]:
    """Which kubeconfig to use and which backend that means."""
    if explicit:
        return Path(explicit), "current"
    if os.environ.get("LABKIT_KUBECONFIG"):
        return Path(os.environ["LABKIT_KUBECONFIG"]), "current"
    if (lab := state.lab_kubeconfig()) is not None:
        return lab, state.backend() or "kwok"
    env = os.environ.get("KUBECONFIG")
    default = Path(env.split(os.pathsep)[0]) if env else Path.home() / ".kube" / "config"
    return (default if default.exists() else None), "current"


@contextlib.contextmanager
def api_errors(what: str, *, server: str | None = None) -> Iterator[None]:
    """Convert client exceptions raised inside the block into labkit errors (``what``: what the block does, as the
    start of their message; ``server``: whose API, by default the lab's)."""
    try:
        yield
    except ApiException as exc:
        raise from_api_exception(exc, what) from None
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        raise ClusterUnreachable(
            _("{server} stopped answering while {what} ({error})").format(
                server=server or _("the lab's API server"), what=what, error=type(exc).__name__),
            fix=_("`labkit status` tells whether the cluster is up; `labkit up` starts it again"),
        ) from None


def from_api_exception(exc: ApiException, what: str) -> LabkitError:
    """One place where HTTP status codes become labkit exceptions."""
    message = exc.reason or ""
    with contextlib.suppress(ValueError, TypeError):
        body = json.loads(exc.body or "{}")
        message = body.get("message", message)
    if exc.status == 404:
        return NotFound(_("{what}: not found ({message})").format(what=what, message=message))
    if exc.status in (400, 422):
        return ManifestError(_("{what}: the API server rejected it: {message}").format(what=what, message=message),
                             fix=_("fix the field named above in your manifest and apply it again"))
    if exc.status == 403:
        return LabkitError(_("{what}: forbidden: {message}").format(what=what, message=message),
                           fix=_("check your kubeconfig's user and RBAC"))
    return LabkitError(_("{what}: API error {status}: {message}").format(what=what, status=exc.status,
                                                                         message=message))


@dataclass
class Lab:
    """A connection to the lab cluster: typed clients, the dynamic client, and where they point."""

    api_client: k8s.ApiClient
    kubeconfig: Path | None
    backend: str
    server: str
    _dynamic: DynamicClient | None = field(default=None, repr=False)

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api_client)

    @property
    def dynamic(self) -> DynamicClient:
        if self._dynamic is None:
            with api_errors(_("reading the API's resource list")):
                self._dynamic = DynamicClient(self.api_client)
        return self._dynamic

    def version(self) -> dict[str, Any]:
        """The API server's version info, as `kubectl version` shows it."""
        with api_errors(_("asking the server for its version"), server=self.server):
            info = k8s.VersionApi(self.api_client).get_code(_request_timeout=5)
        return {"gitVersion": info.git_version, "platform": info.platform, "goVersion": info.go_version}


def api_client(kubeconfig: str | Path) -> k8s.ApiClient:
    """A client for a process that runs beside the lab (a simulator, an add-on): no check that the API answers now
    (it may be restarting: the caller's list-and-watch loop retries), and no silent urllib3 retries."""
    client = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    client.configuration.retries = 0
    return client


def connect(kubeconfig: str | Path | None = None, *, timeout: float = 5.0) -> Lab:
    """Connect to the lab (or the kubeconfig given) and check that an API server answers."""
    if kubeconfig is None:
        from ..state import wait_for_start

        wait_for_start()  # a hub's single-user server starts its own lab as it starts: wait for that, not fail
    path, backend = _kubeconfig(kubeconfig)
    if path is None or not path.exists():
        raise ClusterUnreachable(
            _("no lab cluster is running and no kubeconfig was found"),
            fix=_("start the lab with `labkit up` (or `make lab`), then run this cell again"),
        )
    try:
        api_client = k8s_config.new_client_from_config(config_file=str(path))
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        raise ClusterUnreachable(_("cannot read kubeconfig {path}: {error}").format(path=path, error=exc),
                                 fix=_("`labkit up` writes a fresh one; `labkit env` prints where")) from None
    # Fail fast instead of urllib3's three silent retries when nothing listens.
    api_client.configuration.retries = 0
    server = api_client.configuration.host
    try:
        k8s.VersionApi(api_client).get_code(_request_timeout=timeout)
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, ApiException) as exc:
        raise ClusterUnreachable(
            _("no Kubernetes API answers at {server} ({error})").format(server=server, error=type(exc).__name__),
            fix=_("start the lab with `labkit up`; `labkit status` shows what is running"),
        ) from None
    return Lab(api_client=api_client, kubeconfig=path, backend=backend, server=server)
