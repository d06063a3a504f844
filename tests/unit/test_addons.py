"""The lab's add-ons without starting a cluster: the registry, config, status wording, port errors, start/stop of a
real loopback process standing in for an add-on."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from labkit import addons
from labkit.addons import supervisor
from labkit.addons.base import Addon, Context
from labkit.addons.prometheus import prometheus_config
from labkit.cluster.ports import free_port
from labkit.errors import LabkitError, PortInUse


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    (tmp_path / "kubeconfig").write_text("{}")  # start() needs a lab kubeconfig to hand to the add-ons


def test_prometheus_config_scrapes_every_addon_target_file_every_two_seconds(tmp_path: Path) -> None:
    text = prometheus_config(tmp_path / "targets")
    assert "scrape_interval: 2s" in text and f"{tmp_path / 'targets'}/*.json" in text


def test_registry_entries_are_complete() -> None:
    assert {"prometheus", "gpu-exporter"} <= set(addons.REGISTRY)
    for name, addon in addons.REGISTRY.items():
        assert addon.name == name and addon.summary and addon.port_env.startswith("LABKIT_")


def test_a_wrong_binary_override_says_what_to_do(monkeypatch) -> None:
    monkeypatch.setenv("LABKIT_PROMETHEUS_BINARY", "/nonexistent/prometheus")
    prom = next(s for s in addons.status() if s.name == "prometheus")
    assert prom.state == "missing" and "unset it to run labkit's own" in prom.note
    with pytest.raises(LabkitError, match="LABKIT_PROMETHEUS_BINARY=/nonexistent/prometheus is not an executable"):
        addons.start(["prometheus"], progress=lambda _m: None)


def test_no_addon_needs_a_system_package() -> None:
    """Every add-on with a program runs a labkit component (downloaded or built), none a distribution's package."""
    assert not [a.name for a in addons.REGISTRY.values() if a.binary_name and a.component() is None]


def test_nothing_running_reads_stopped() -> None:
    assert {s.name: s.state for s in addons.status() if s.name == "gpu-exporter"} == {"gpu-exporter": "stopped"}


def test_unknown_addon_names_the_known_ones() -> None:
    with pytest.raises(LabkitError, match="gpu-exporter"):
        addons.start(["jaeger-typo"], progress=lambda _m: None)


def test_busy_fixed_port_raises_port_in_use_with_the_fix(monkeypatch) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        monkeypatch.setenv("LABKIT_PROMETHEUS_PORT", str(port))
        with pytest.raises(PortInUse, match="unset LABKIT_PROMETHEUS_PORT"):
            supervisor._pick_port(addons.REGISTRY["prometheus"], None)


class _HttpServer(Addon):
    """A real process on a loopback port: Python's http.server, serving the add-on's own folder."""

    name = "test-http"
    summary = "a stand-in add-on for the manager's tests"
    port_env = "LABKIT_TEST_HTTP_PORT"
    metrics_job = "test-http"
    needs: ClassVar[tuple[str, ...]] = ()

    def command(self, ctx: Context) -> list[str]:
        return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(ctx.folder),
                str(ctx.port)]


class _Dependent(_HttpServer):
    name = "test-dependent"
    port_env = "LABKIT_TEST_DEP_PORT"
    metrics_job = None
    needs = ("test-http",)


def test_start_reuse_and_stop_real_processes(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(addons.REGISTRY, "test-http", _HttpServer())
    monkeypatch.setitem(addons.REGISTRY, "test-dependent", _Dependent())
    said: list[str] = []
    first = addons.start(["test-dependent"], progress=said.append)  # brings its need along
    assert [s.name for s in first] == ["test-http", "test-dependent"] and all(s.state == "running" for s in first)
    assert all(m.split(":")[1].strip().startswith("started") for m in said), said
    targets = (tmp_path / "addons" / "targets" / "test-http.json").read_text()
    assert f"127.0.0.1:{supervisor._record()['test-http']['port']}" in targets and '"job": "test-http"' in targets

    pids = {n: i["pid"] for n, i in supervisor._record().items()}
    said.clear()
    addons.start(["test-http"], progress=said.append)
    assert said and "reusing" in said[0] and supervisor._record()["test-http"]["pid"] == pids["test-http"]
    assert addons.require("test-http") == {"test-http": first[0].url}

    addons.stop(progress=said.append)
    deadline = time.monotonic() + 5
    while any(supervisor._alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(supervisor._alive(p) for p in pids.values()), "an add-on process survived stop()"
    assert not (tmp_path / "addons").exists()


def test_running_addons_urls_become_shell_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "status", lambda: [
        supervisor.AddonStatus("prometheus-operated", "running", 1, "http://127.0.0.1:9090"),
        supervisor.AddonStatus("jaeger", "stopped", None, None),
        supervisor.AddonStatus("gpu-exporter", "starting", 2, "http://127.0.0.1:9400/metrics"),
    ])
    for name in ("PROMETHEUS_OPERATED_URL", "GPU_EXPORTER_URL"):
        monkeypatch.setenv(name, "unset")  # restored after the test, whatever export_urls writes
    assert supervisor.url_variables() == {"PROMETHEUS_OPERATED_URL": "http://127.0.0.1:9090",
                                          "GPU_EXPORTER_URL": "http://127.0.0.1:9400/metrics"}
    supervisor.export_urls()
    assert os.environ["PROMETHEUS_OPERATED_URL"] == "http://127.0.0.1:9090"


def test_a_build_is_reported_on_stderr_to_a_learner_and_in_a_log_under_test(tmp_path, monkeypatch, capsys) -> None:
    """A cold cache builds while notebooks run: under test the line must not become a cell's stderr output."""
    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)
    supervisor._say_build("jaeger v1: building with go")
    assert capsys.readouterr().err == "jaeger v1: building with go\n"
    monkeypatch.setenv("LABKIT_IN_TEST", "1")
    supervisor._say_build("jaeger v1: another labkit process is getting it; waiting for that")
    assert capsys.readouterr().err == ""
    assert (tmp_path / "addons" / "builds.log").read_text().endswith(
        " jaeger v1: another labkit process is getting it; waiting for that\n")
