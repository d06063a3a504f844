"""The lab's addons without starting a cluster: config, status wording, port errors."""

from __future__ import annotations

import pytest

from labkit.cluster import addons
from labkit.cluster.ports import free_port
from labkit.errors import PortInUse


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))


def test_prometheus_config_scrapes_file_sd_targets_every_two_seconds() -> None:
    text = addons.prometheus_config(9400)
    assert "scrape_interval: 2s" in text and "job_name: dcgm-exporter" in text
    assert str(addons.addons_dir() / "gpu-exporter" / "targets.json") in text


def test_missing_prometheus_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setenv("LABKIT_PROMETHEUS_BINARY", "/nonexistent/prometheus")
    prom = next(s for s in addons.status() if s.name == "prometheus")
    assert prom.state == "missing" and "apt-get install -y prometheus" in prom.note


def test_nothing_running_reads_stopped() -> None:
    assert {s.name: s.state for s in addons.status() if s.name == "gpu-exporter"} == {"gpu-exporter": "stopped"}


def test_busy_fixed_port_raises_port_in_use_with_the_fix(monkeypatch) -> None:
    import socket

    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        monkeypatch.setenv("LABKIT_PROMETHEUS_PORT", str(port))
        with pytest.raises(PortInUse, match="unset LABKIT_PROMETHEUS_PORT"):
            addons._pick_port(addons.PROMETHEUS, None)
