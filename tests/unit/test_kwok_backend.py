"""The embedded backend's logic that needs no cluster: what `labkit up` applies and where, kwok's gate, and how
`labkit down` finds the lab's processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.cluster import kwok_backend
from labkit.cluster.topology import load_topology
from labkit.errors import LabkitError, ManifestError


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_lab_objects_put_every_stage_before_the_first_node() -> None:
    objs = kwok_backend.lab_objects()
    kinds = [o["kind"] for o in objs]
    first_node = kinds.index("Node")
    assert "Stage" not in kinds[first_node:]
    assert {"Metric", "ClusterResourceUsage"} <= set(kinds[:first_node])
    # The node stage comes first: kwok's gate lets kwok start as soon as one Stage is served.
    assert objs[0]["kind"] == "Stage" and objs[0]["spec"]["resourceRef"]["kind"] == "Node"
    assert [o["metadata"]["name"] for o in objs[first_node:]] == [n["name"] for n in load_topology()]


def test_lab_objects_flatten_lists_into_their_stages() -> None:
    names = [o["metadata"]["name"] for o in kwok_backend.lab_objects() if o["kind"] == "Stage"]
    assert "labkit-pod-probe-ready" in names  # pod-probes.yaml is one `kind: List`
    assert len(names) == len(set(names))


def test_gpu_capacity_travels_with_the_node_objects() -> None:
    nodes = {o["metadata"]["name"]: o for o in kwok_backend.lab_objects() if o["kind"] == "Node"}
    assert nodes["gpu-node-1"]["status"]["capacity"]["nvidia.com/gpu"] == "2"
    assert nodes["gpu-node-3"]["status"]["capacity"]["nvidia.com/mig-1g.10gb"] == "7"


def test_every_lab_object_has_an_api_path() -> None:
    paths = {kwok_backend.api_path(o) for o in kwok_backend.lab_objects()}
    assert "/api/v1/nodes/gpu-node-1" in paths
    assert "/apis/kwok.x-k8s.io/v1alpha1/stages/labkit-node-initialize" in paths
    assert "/apis/kwok.x-k8s.io/v1alpha1/metrics/labkit-resource-metrics" in paths


def test_api_path_of_namespaced_and_unknown_kinds() -> None:
    logs = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs", "metadata": {"name": "x", "namespace": "ns"}}
    assert kwok_backend.api_path(logs) == "/apis/kwok.x-k8s.io/v1alpha1/namespaces/ns/logs/x"
    with pytest.raises(ManifestError, match="PLURALS"):
        kwok_backend.api_path({"apiVersion": "v1", "kind": "Policy", "metadata": {"name": "x"}})


def test_kwokctl_config_takes_the_gate_and_ports_only_when_given(tmp_path: Path) -> None:
    paths = {b: tmp_path / b for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
                                       "etcd", "kwok", "metrics-server")}
    plain = kwok_backend.kwokctl_config(paths)["options"]
    assert plain["kwokControllerBinary"] == str(tmp_path / "kwok") and "etcdPort" not in plain
    ports = kwok_backend.component_ports()
    gated = kwok_backend.kwokctl_config(paths, kwok_controller=tmp_path / "gate", ports=ports)["options"]
    assert gated["kwokControllerBinary"] == str(tmp_path / "gate")
    assert {k: gated[k] for k in kwok_backend.COMPONENT_PORTS} == ports
    assert "Stage" in gated["enableCRDs"]


def test_component_ports_are_distinct_and_from_the_kernels_range() -> None:
    ports = kwok_backend.component_ports()
    assert set(ports) == set(kwok_backend.COMPONENT_PORTS)
    assert len(set(ports.values())) == len(ports)
    # Not kwokctl's picks (counting down from 32765 for every cluster): two clusters created at once share those.
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(p >= low for p in ports.values())


def _fake_kwok(tmp_path: Path) -> Path:
    kwok = tmp_path / "kwok"
    kwok.write_text("#!/bin/sh\necho \"kwok argv0=$0 args=$*\"\n")
    kwok.chmod(0o755)
    return kwok


def test_gate_passes_version_straight_through(state: Path, tmp_path: Path) -> None:
    gate = kwok_backend.write_gate(_fake_kwok(tmp_path))
    out = subprocess.run([str(gate), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "args=--version" in out.stdout
    assert "labkit gate" not in out.stderr  # no waiting for an API server just to print a version


def test_gate_becomes_kwok_with_its_arguments_when_the_api_never_answers(tmp_path: Path) -> None:
    # "kwok" is a shell here, so that the exec'd process can show its own command line; a port nobody listens on
    # and a short wait: the gate gives up waiting and still starts kwok.
    shell = subprocess.run(["which", "sh"], capture_output=True, text=True, check=True).stdout.strip()
    text = kwok_backend.KWOK_GATE.format(python=sys.executable, kwok=shell, port=1, pki=str(tmp_path / "no-pki"),
                                         ready_path="/readyz", need_items=False, wait_s=0.2,
                                         component="kwok-controller")
    gate = tmp_path / "bin" / "kwok-controller"
    gate.parent.mkdir()
    gate.write_text(text)
    gate.chmod(0o755)
    out = subprocess.run([str(gate), "-c", "tr '\\0' ' ' </proc/$$/cmdline"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "labkit gate: starting kwok-controller" in out.stderr
    # Same arguments, and argv[0] stays the path kwokctl ran, so `labkit down` recognises the process as the lab's.
    assert out.stdout.startswith(f"{gate} -c ")


def test_started_from_matches_binaries_and_gated_scripts_not_readers() -> None:
    prefix = b"/s/kwok/clusters/labkit/bin/"
    assert kwok_backend._started_from(b"/s/kwok/clusters/labkit/bin/etcd\0--data-dir=x\0", prefix)
    assert kwok_backend._started_from(b"/usr/bin/python3\0-ES\0/s/kwok/clusters/labkit/bin/kwok-controller\0",
                                      prefix)
    assert not kwok_backend._started_from(b"tail\0-f\0/s/kwok/clusters/labkit/logs/etcd.log\0", prefix)
    assert not kwok_backend._started_from(b"less\0/s/kwok/clusters/labkit/bin/etcd\0", b"/other/")


def test_down_kills_a_component_whose_pid_file_is_lost(state: Path) -> None:
    bin_dir = kwok_backend.cluster_dir() / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "sleep").symlink_to(Path(subprocess.run(["which", "sleep"], capture_output=True, text=True,
                                                       check=True).stdout.strip()))
    (kwok_backend.cluster_dir() / "kwok.yaml").write_text("{}")
    proc = subprocess.Popen([str(bin_dir / "sleep"), "300"])
    try:
        deadline = time.monotonic() + 10
        while proc.pid not in kwok_backend.lab_processes() and time.monotonic() < deadline:
            time.sleep(0.05)  # the child may not have exec'd sleep yet
        assert proc.pid in kwok_backend.lab_processes()
        messages: list[str] = []
        kwok_backend.down(progress=messages.append)
        assert proc.wait(timeout=10) == -9
        assert messages == ["embedded lab cluster stopped; no process left"]
        assert not kwok_backend.cluster_dir().exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_down_spares_a_program_that_took_over_a_stale_pid_file(state: Path) -> None:
    # After a reboot, a pid file of the lab may name a pid that now belongs to something else.
    pids = kwok_backend.cluster_dir() / "pids"
    pids.mkdir(parents=True)
    (kwok_backend.cluster_dir() / "kwok.yaml").write_text("{}")
    other = subprocess.Popen(["sleep", "300"])
    try:
        (pids / "etcd.pid").write_text(str(other.pid))
        assert other.pid not in kwok_backend.lab_processes()
        kwok_backend.down(progress=lambda _m: None)
        assert other.poll() is None, "down() killed a process that is not the lab's"
    finally:
        other.kill()
        other.wait()


def test_down_without_a_cluster_says_so(state: Path) -> None:
    messages: list[str] = []
    kwok_backend.down(progress=messages.append)
    assert messages == ["no embedded lab cluster is running"]


def test_module_imports_stay_light() -> None:
    code = ("import sys\nimport labkit.cluster.kwok_backend\n"
            "print(sorted(m for m in ('yaml', 'labkit.cluster.binaries', 'labkit.cluster.topology') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"})
    assert out.stdout.strip() == "[]"


def test_single_scheduler_and_controller_manager_run_without_leader_election(tmp_path: Path) -> None:
    # With leader election on, a lease renewal missed on a loaded machine makes the process exit for good.
    paths = {b: tmp_path / b for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
                                       "etcd", "kwok", "metrics-server")}
    patches = {p["name"]: p["extraArgs"] for p in kwok_backend.kwokctl_config(paths)["componentsPatches"]}
    assert patches == {name: [{"key": "leader-elect", "value": "false"}]
                       for name in ("kube-scheduler", "kube-controller-manager")}


@pytest.mark.parametrize("component", ["kube-controller-manager", "metrics-server"])
def test_gates_wait_for_healthz_then_become_the_component(state: Path, tmp_path: Path, component: str) -> None:
    # Both give up on an API server that is not healthy soon enough at start, and exit for good.
    gate = kwok_backend.write_gate(_fake_kwok(tmp_path), component=component)
    assert gate == kwok_backend.gate_path(component) != kwok_backend.gate_path()
    text = gate.read_text()
    assert "READY_PATH, NEED_ITEMS = '/healthz', False" in text and f"in front of {component}" in text
    paths = {b: tmp_path / b for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
                                       "etcd", "kwok", "metrics-server")}
    config = kwok_backend.kwokctl_config(paths, controller_manager=tmp_path / "g1", metrics_server=tmp_path / "g2")
    assert config["options"]["kubeControllerManagerBinary"] == str(tmp_path / "g1")
    assert config["options"]["metricsServerBinary"] == str(tmp_path / "g2")


def test_check_components_starts_an_exited_one_again_once_then_names_it(state: Path, monkeypatch) -> None:
    pids, logs = kwok_backend.cluster_dir() / "pids", kwok_backend.cluster_dir() / "logs"
    pids.mkdir(parents=True)
    logs.mkdir()
    (pids / "kube-scheduler.pid").write_text(str(os.getpid()))
    (pids / "kube-controller-manager.pid").write_text("999999999")  # no such process
    (logs / "kube-controller-manager.log").write_text("starting\nfailed to wait for apiserver being healthy\n")
    calls: list[tuple[str, ...]] = []

    def kwokctl_that_cannot_help(*args: str, timeout: float = 0) -> None:
        calls.append(args)

    monkeypatch.setattr(kwok_backend, "_kwokctl", kwokctl_that_cannot_help)
    said: list[str] = []
    with pytest.raises(LabkitError, match="kube-controller-manager exited while the lab started, twice") as err:
        kwok_backend.check_components(progress=said.append)
    assert calls == [("start", "cluster")] and "starting it again" in said[0]
    assert "failed to wait for apiserver being healthy" in str(err.value)

    def kwokctl_that_restarts(*args: str, timeout: float = 0) -> None:
        (pids / "kube-controller-manager.pid").write_text(str(os.getpid()))  # what `kwokctl start cluster` does

    monkeypatch.setattr(kwok_backend, "_kwokctl", kwokctl_that_restarts)
    (pids / "kube-controller-manager.pid").write_text("999999999")
    kwok_backend.check_components(progress=said.append)  # started again and alive: no error
    kwok_backend.check_components(progress=said.append)  # every component alive: nothing to do


def test_the_control_plane_traces_only_sampled_requests_to_a_loopback_collector(tmp_path: Path) -> None:
    paths = {b: tmp_path / b for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
                                       "etcd", "kwok", "metrics-server")}
    config = kwok_backend.kwokctl_config(paths, tracing=(tmp_path / "tracing.yaml", 4317))
    patches = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in config["componentsPatches"]}
    assert patches["kube-apiserver"] == {"tracing-config-file": str(tmp_path / "tracing.yaml")}
    assert patches["etcd"] == {"enable-distributed-tracing": "true", "distributed-tracing-address": "127.0.0.1:4317",
                               "distributed-tracing-service-name": "etcd", "distributed-tracing-sampling-rate": "0"}
    assert kwok_backend.tracing_configuration(4317) == {
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "TracingConfiguration", "endpoint": "127.0.0.1:4317",
        "samplingRatePerMillion": 0}
