"""prometheus-adapter: Prometheus series as the Kubernetes custom metrics API (``custom.metrics.k8s.io``).

A real upstream adapter (``sigs.k8s.io/prometheus-adapter``, pinned in :mod:`labkit.versions`, built with Go on
first start), out of cluster on 127.0.0.1 with its own self-signed serving certificate, reading the lab's
Prometheus. It is registered as the APIService ``v1beta1.custom.metrics.k8s.io`` the way kwokctl registers
metrics-server in binary mode (``labkit/data/prometheus-adapter/apiservice.yaml``), so the HPA controller in
kube-controller-manager reads ``http_requests_per_second`` through the API server like any custom metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from .. import versions
from ..cluster.health import ApiConnection, ApiError
from ..paths import data_file
from .base import Addon, Context

if TYPE_CHECKING:
    from ..cluster.binaries import Component

APISERVICE = "v1beta1.custom.metrics.k8s.io"
_PATHS = {"Service": "/api/v1/namespaces/{namespace}/services/{name}",
          "APIService": "/apis/apiregistration.k8s.io/v1/apiservices/{name}"}


def registration(port: int) -> list[dict[str, object]]:
    """The Service (ExternalName 127.0.0.1) and APIService that route custom.metrics.k8s.io to ``port``."""
    docs = list(yaml.safe_load_all(data_file("prometheus-adapter/apiservice.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "APIService":
            doc["spec"]["service"]["port"] = port
    return docs


def register(ctx: Context) -> None:
    """Server-side apply the registration (``kubectl apply --server-side -f apiservice.yaml``)."""
    with ApiConnection(ctx.kubeconfig) as api:
        for doc in registration(ctx.port):
            meta = doc["metadata"]
            path = _PATHS[str(doc["kind"])].format(**meta)  # type: ignore[arg-type]
            status, body = api.request("PATCH", path + "?fieldManager=labkit&force=true", doc,
                                       content_type="application/apply-patch+yaml")
            if status >= 400:
                raise ApiError(status, body)


class PrometheusAdapter(Addon):
    name = "prometheus-adapter"
    summary = "custom.metrics.k8s.io from the lab's Prometheus (http_requests_per_second for the HPA)"
    port_env = "LABKIT_PROMETHEUS_ADAPTER_PORT"
    ready_path = "/healthz"
    ready_scheme = "https"
    needs = ("prometheus",)
    binary_env = "LABKIT_PROMETHEUS_ADAPTER_BINARY"
    binary_name = "adapter"

    def component(self) -> Component:
        from ..cluster.binaries import Component
        from ..cluster.oci import Image

        # The Go proxy refuses this module's version list, which `go install module@version` asks for; the
        # wrapper module (require the exact version, then `go build`) does not need it.
        return Component("prometheus-adapter", versions.PROMETHEUS_ADAPTER, "sigs.k8s.io/prometheus-adapter",
                         ("sigs.k8s.io/prometheus-adapter/cmd/adapter",), ("adapter",), wrapper=True,
                         image=Image(f"registry.k8s.io/prometheus-adapter/prometheus-adapter:"
                                     f"{versions.PROMETHEUS_ADAPTER}", {"adapter": "/adapter"}))

    def prepare(self, ctx: Context) -> None:
        (ctx.folder / "rules.yaml").write_text(data_file("prometheus-adapter/rules.yaml").read_text())
        (ctx.folder / "certs").mkdir(exist_ok=True)
        register(ctx)

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # the component is built before the add-on starts
        kubeconfig = str(ctx.kubeconfig)
        return [binary, f"--secure-port={ctx.port}", "--bind-address=127.0.0.1",
                f"--cert-dir={ctx.folder / 'certs'}",  # no certificate given: it makes its own, self-signed
                f"--lister-kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--prometheus-url=http://127.0.0.1:{ctx.ports['prometheus']}/",
                f"--config={ctx.folder / 'rules.yaml'}",
                # Series of a fresh namespace show up within seconds, not the default 10 minutes.
                "--metrics-relist-interval=5s", "--v=1"]

    def url(self, port: int) -> str:
        return f"https://127.0.0.1:{port}"
