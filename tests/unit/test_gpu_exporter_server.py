"""The exporter's HTTP server: loopback only, per-node paths, and a clear error for a busy port."""

import socket
import urllib.error
import urllib.request

import pytest

from labkit.errors import PortInUse
from labkit.sim.gpu import Workload, make_fleet, start_exporter, stop_all_exporters


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


@pytest.fixture
def server():
    exporter = start_exporter(make_fleet(), port=0)
    yield exporter
    exporter.stop()


def test_binds_loopback_only(server):
    assert server.host == "127.0.0.1"
    assert server._httpd.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/metrics"


def test_serves_all_nodes_and_each_node(server):
    status, content_type, body = _get(server.url)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert 'Hostname="gpu-node-1"' in body and 'Hostname="gpu-node-2"' in body
    _, _, one = _get(server.node_url("gpu-node-2"))
    assert 'Hostname="gpu-node-2"' in one and 'Hostname="gpu-node-1"' not in one
    with pytest.raises(urllib.error.HTTPError) as missing:
        _get(f"http://127.0.0.1:{server.port}/metrics/gpu-node-9")
    assert missing.value.code == 404


def test_update_feeds_attribution_and_declared_load(server):
    server.update(
        attribution={"gpu-node-2": {1: ("team-a", "bert-0", "train")}},
        workloads={"gpu-node-2": {1: Workload(88, 12_345, 0.4)}},
    )
    server.fleet["gpu-node-2"].step(10)
    _, _, body = _get(server.node_url("gpu-node-2"))
    used = [line for line in body.splitlines() if line.startswith("DCGM_FI_DEV_FB_USED{") and 'gpu="1"' in line]
    assert len(used) == 1
    assert 'namespace="team-a",pod="bert-0"' in used[0] and used[0].endswith(" 12345")
    with pytest.raises(KeyError, match="gpu-node-7"):
        server.update(workloads={"gpu-node-7": {}})


def test_busy_port_gives_a_clear_error():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(PortInUse) as err:
            start_exporter(make_fleet(), port=port)
    message = str(err.value)
    assert str(port) in message and "127.0.0.1" in message and "port=0" in message


def test_stop_frees_the_port():
    exporter = start_exporter(make_fleet(nodes=["solo"]), port=0)
    port = exporter.port
    assert stop_all_exporters() >= 1
    assert not exporter.running
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # would raise if the exporter still held it
