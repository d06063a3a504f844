"""Jaeger: a real trace store and query API (链路追踪) on loopback, for lesson 10.

Runs Jaeger v2 (``github.com/jaegertracing/jaeger`` ``cmd/jaeger``, pinned in :mod:`labkit.versions`; the release
archive, else built with Go on first start): an OpenTelemetry Collector distribution with an OTLP/HTTP receiver,
in-memory storage and Jaeger's query service. The release embeds the web UI; the Go module lacks its assets (npm
builds them), so a Go build serves none, and the lesson reads traces through the query service's HTTP API (``curl
127.0.0.1:PORT/api/services``, ``/api/traces``, ``/api/dependencies``). Every listener (query HTTP and gRPC,
OTLP/HTTP, the health check) is written into its config on 127.0.0.1; the collector's own telemetry has no listener
(metrics level ``none``). The OTLP port is kept in ``<folder>/otlp-port`` for the workload model, which sends the
spans (:mod:`labkit.sim.traces`). On the embedded cluster it also receives OTLP/gRPC on the port ``labkit up`` gave
the API server and etcd for their own spans (``control_plane_otlp_port`` in the lab's record;
:data:`labkit.cluster.kwok_backend.TRACING_SAMPLING_PER_MILLION` says what they send).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import state, versions
from ..cluster.binaries import GITHUB, Component, arch
from ..cluster.ports import free_port, port_free
from ..errors import LabkitError
from .base import Addon, Context

NAME = "jaeger"
OTLP_PORT_FILE = "otlp-port"


def component() -> Component:
    """Jaeger v2: the release archive, else built through a wrapper module (its go.mod has a ``replace``, which
    ``go install`` refuses)."""
    v2 = versions.JAEGER_V2.removeprefix("v")
    return Component(NAME, versions.JAEGER, "github.com/jaegertracing/jaeger",
                     ("github.com/jaegertracing/jaeger/cmd/jaeger",), ("jaeger",),
                     ldflags=f"-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion="
                             f"{versions.JAEGER}",
                     wrapper=True, staging_version=versions.JAEGER,
                     # Jaeger's release tooling (scripts/build/package-deploy.sh) attaches the v2 archive to the v1
                     # tag's release, with one checksum file for every archive.
                     downloads={"jaeger": f"{GITHUB}/jaegertracing/jaeger/releases/download/{versions.JAEGER}/"
                                f"jaeger-{v2}-linux-{arch()}.tar.gz#jaeger"},
                     checksum=f"jaeger-{v2}.sha256sum.txt")


def config(*, query_port: int, grpc_port: int, otlp_port: int, health_port: int,
           health_grpc_port: int, control_plane_port: int | None = None) -> dict[str, object]:
    """The collector config: OTLP/HTTP in (and OTLP/gRPC on ``control_plane_port`` for the API server's and etcd's
    spans), memory storage, query API out; every endpoint on 127.0.0.1."""
    protocols: dict[str, object] = {"http": {"endpoint": f"127.0.0.1:{otlp_port}"}}
    if control_plane_port:
        protocols["grpc"] = {"endpoint": f"127.0.0.1:{control_plane_port}"}
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                     "exporters": ["jaeger_storage_exporter"]}},
            "telemetry": {"resource": {"service.name": "jaeger"}, "metrics": {"level": "none"},
                          "logs": {"level": "info"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 20000}}}},
            "jaeger_query": {"storage": {"traces": "memstore"},
                             "http": {"endpoint": f"127.0.0.1:{query_port}"},
                             "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}},
            # Its gRPC health service would otherwise take localhost:13132, a fixed port every lab shares.
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"127.0.0.1:{health_port}"},
                              "grpc": {"endpoint": f"127.0.0.1:{health_grpc_port}", "transport": "tcp"}},
        },
        "receivers": {"otlp": {"protocols": protocols}},
        # Short batches: a span reaches the query API within a second of being sent.
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def control_plane_port() -> int | None:
    """The OTLP/gRPC port the lab's API server and etcd send their spans to, or None (kind, a kubeconfig, or a lab
    started before labkit traced its control plane: ``labkit down && labkit up`` turns it on)."""
    port = state.recorded().control_plane_otlp_port
    return int(port) if port else None


def otlp_endpoint(folder: Path) -> str | None:
    """``http://127.0.0.1:PORT`` of the running Jaeger's OTLP/HTTP receiver, or None when it has not started."""
    try:
        return f"http://127.0.0.1:{int((folder / OTLP_PORT_FILE).read_text())}"
    except (OSError, ValueError):
        return None


class Jaeger(Addon):
    name = NAME
    summary = "Jaeger v2: OTLP/HTTP in, in-memory trace store, query API (/api/traces, /api/dependencies)"
    port_env = "LABKIT_JAEGER_PORT"
    ready_path = "/api/services"
    binary_name = "jaeger"
    binary_env = "LABKIT_JAEGER_BINARY"

    def component(self) -> Component:
        return component()

    def prepare(self, ctx: Context) -> None:
        """Pick the other four ports and write ``config.yaml`` (JSON is YAML) and the OTLP port file."""
        control_plane = control_plane_port()
        if control_plane is not None and (control_plane == ctx.port or not port_free(control_plane)):
            raise LabkitError(f"port {control_plane}, where the lab's API server sends its traces, is taken by "
                              "another program, so Jaeger cannot receive them",
                              fix=f"free it (`ss -ltnp 'sport = :{control_plane}'` shows who holds it), or "
                                  "`labkit down && labkit up` to give the control plane another port")
        taken = {ctx.port, control_plane} - {None}
        ports = [free_port() for _ in range(4)]
        while len({*taken, *ports}) < len(taken) + 4:
            ports = [free_port() for _ in range(4)]
        grpc_port, otlp_port, health_port, health_grpc_port = ports
        ctx.folder.mkdir(parents=True, exist_ok=True)
        (ctx.folder / "config.yaml").write_text(json.dumps(
            config(query_port=ctx.port, grpc_port=grpc_port, otlp_port=otlp_port, health_port=health_port,
                   health_grpc_port=health_grpc_port, control_plane_port=control_plane),
            indent=2))
        (ctx.folder / OTLP_PORT_FILE).write_text(str(otlp_port))

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # built by addons.start before the first spawn
        return [binary, "--config", str(ctx.folder / "config.yaml")]

    def env(self, ctx: Context) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "HOME": str(ctx.folder)}

    def scrape_targets(self, ctx: Context) -> list[dict[str, object]]:
        return []  # its own metrics are off: nothing listens for them
