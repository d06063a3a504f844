"""Alertmanager (the Prometheus project's release, or built from its module) and the webhook receiver its
notifications go to (lesson 07).

Alertmanager runs alone on 127.0.0.1 (``--cluster.listen-address=`` empty: no gossip port), configured from
``labkit/data/alertmanager/alertmanager.yml`` (grouping, an inhibition rule, one webhook receiver); silences go
through its v2 API or ``amtool``. The receiver is :mod:`labkit.sim.alert_webhook`.
"""

from __future__ import annotations

from .. import versions
from ..cluster.binaries import Component, prometheus_project
from ..paths import data_file
from .base import Addon, Context, PythonModuleAddon


def component() -> Component:
    """alertmanager and amtool, at the pinned version."""
    return prometheus_project("alertmanager", versions.ALERTMANAGER,
                              {"alertmanager": "cmd/alertmanager", "amtool": "cmd/amtool"})


def amtool() -> str:
    """amtool's path in the cache (there once the add-on has started or `labkit prefetch` ran)."""
    return str(component().dir / "amtool")


def alertmanager_config(webhook_url: str) -> str:
    """The shipped config with the receiver's address filled in."""
    return data_file("alertmanager/alertmanager.yml").read_text().replace("WEBHOOK_URL", webhook_url)


class AlertWebhook(PythonModuleAddon):
    name = "alert-webhook"
    summary = "webhook receiver: records each notification Alertmanager sends (GET /notifications)"
    port_env = "LABKIT_ALERT_WEBHOOK_PORT"
    ready_path = "/healthz"
    module = "labkit.sim.alert_webhook"

    def arguments(self, ctx: Context) -> list[str]:
        return ["--port", str(ctx.port), "--state", str(ctx.folder)]

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/notifications"


class Alertmanager(Addon):
    name = "alertmanager"
    summary = "Alertmanager: groups, inhibits, silences and routes alerts to the webhook receiver"
    port_env = "LABKIT_ALERTMANAGER_PORT"
    ready_path = "/-/ready"
    needs = ("alert-webhook",)
    binary_env = "LABKIT_ALERTMANAGER_BINARY"
    binary_name = "alertmanager"
    metrics_job = "alertmanager"

    def component(self) -> Component:
        return component()

    def prepare(self, ctx: Context) -> None:
        webhook = f"http://127.0.0.1:{ctx.ports['alert-webhook']}/alerts"
        (ctx.folder / "alertmanager.yml").write_text(alertmanager_config(webhook))

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # missing() is checked before start
        return [binary, f"--config.file={ctx.folder / 'alertmanager.yml'}", f"--storage.path={ctx.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{ctx.port}", f"--web.external-url=http://127.0.0.1:{ctx.port}/",
                "--cluster.listen-address="]  # empty: a single Alertmanager, no gossip listener
