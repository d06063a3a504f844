"""The embedded backend: upstream control-plane binaries run by kwokctl, nodes and pods simulated by KWOK.

Everything binds 127.0.0.1. Introduced by ``labkit up`` (notebook 00_lab_tour).

Imports stay light (``labkit env`` and ``labkit status`` import this module): yaml, the topology and the binary
cache load inside the functions that need them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import settings, state, versions
from ..errors import LabkitError, ManifestError, PortInUse
from ..i18n import _
from ..paths import bin_dir, data_file, kubeconfig_path, state_dir, write_atomic
from ..state import process_alive
from .health import ApiConnection, ApiError, api_healthy
from .ports import free_port, port_free

CLUSTER = "labkit"
# KWOK CRDs the lab uses: simulated kubelet metrics and usage (metrics-server, HPA) and logs.
KWOK_CRDS = ["Metric", "ClusterResourceUsage", "ResourceUsage", "ClusterLogs", "Logs"]
KWOK_API = "kwok.x-k8s.io/v1alpha1"
# REST names of the kinds labkit applies itself (its Stages, KWOK's metric objects, the topology's Nodes).
PLURALS = {"Stage": "stages", "Metric": "metrics", "ClusterResourceUsage": "clusterresourceusages",
           "ResourceUsage": "resourceusages", "ClusterLogs": "clusterlogs", "Logs": "logs", "Node": "nodes"}
# How long `labkit up` waits for the API server to serve labkit's CRDs (kwok's gate waits twice as long).
API_WAIT_S = 60.0

Progress = Callable[[str], None]


def stage_files() -> list[Path]:
    """labkit's KWOK Stages (labkit/data/stages): how simulated nodes and pods behave. See that folder's README."""
    return sorted(data_file("stages").glob("*.yaml"))


def api_port() -> int:
    return settings.api_port()


def kwok_workdir() -> Path:
    return state_dir() / "kwok"


def cluster_dir() -> Path:
    return kwok_workdir() / "clusters" / CLUSTER


def gate_path(component: str = "kwok-controller") -> Path:
    """The script kwokctl starts as ``component`` (see :data:`KWOK_GATE`)."""
    return state_dir() / f"{component}-gate"


def _env() -> dict[str, str]:
    env = dict(os.environ, KWOK_WORKDIR=str(kwok_workdir()))
    # kwokctl runs `kubectl` from PATH; make it the lab's pinned one.
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env


def _kwokctl(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    cmd = [str(bin_dir() / "kwokctl"), "--name", CLUSTER, *args]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabkitError(
            f"`kwokctl {' '.join(args)}` failed:\n{(proc.stderr or proc.stdout)[-3000:]}",
            fix=f"look at the component logs in {cluster_dir() / 'logs'}, then `labkit down && labkit up`",
        )
    return proc


def link_binaries(paths: dict[str, Path]) -> None:
    """Put the pinned binaries on the lab's PATH (``labkit env`` exports it)."""
    bin_dir().mkdir(parents=True, exist_ok=True)
    for name, target in paths.items():
        link = bin_dir() / name
        if link.is_symlink() and os.readlink(link) == str(target):
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)


# kwokctl options for the ports of the components (the API server's is LABKIT_API_PORT).
COMPONENT_PORTS = ("etcdPort", "etcdPeerPort", "kubeControllerManagerPort", "kubeSchedulerPort",
                   "kwokControllerPort", "metricsServerPort")


def component_ports() -> dict[str, int]:
    """A free loopback port for each of :data:`COMPONENT_PORTS`, as the kernel hands them out.

    kwokctl would pick them itself, counting down from 32765 for every cluster and only checking that nothing
    listens there yet, and the components bind them up to seconds later (kwok after its gate). Two clusters
    created at the same time (a second lab, a test, a benchmark) then get the same ports, and one API server ends
    up with the other cluster's etcd. The kernel's ports are random, and above the ones kwokctl picks.
    """
    ports: dict[str, int] = {}
    while len(ports) < len(COMPONENT_PORTS):
        port = free_port()
        if port not in ports.values():
            ports[COMPONENT_PORTS[len(ports)]] = port
    return ports


def component_metrics() -> dict[str, dict[str, Any]]:
    """Where each control-plane process serves ``/metrics``, as kwokctl recorded it in its ``kwok.yaml``.

    Component name (``etcd``, ``kube-apiserver``, ``kube-scheduler``, ...) -> kwokctl's ``metric`` block:
    ``host`` (127.0.0.1:PORT), ``scheme``, ``path``, ``certPath``/``keyPath`` (the client certificate to present) and
    ``insecureSkipVerify``. Empty when no embedded cluster is there. Equals ``kwokctl get components``.
    """
    import yaml

    try:
        config = yaml.safe_load((cluster_dir() / "kwok.yaml").read_text()) or {}
    except OSError:
        return {}
    return {c["name"]: dict(c["metric"]) for c in config.get("components") or [] if c.get("metric")}


# The control plane's own traces (lesson 10): the API server and etcd export spans over OTLP/gRPC to one loopback
# port, where the Jaeger add-on listens once it runs. At 0 per million both sample only what arrives with a sampled
# W3C `traceparent` (they sample parent-based), so nothing is exported until a lesson sends one; and the API server
# continues a caller's trace only for system:masters or system:monitoring (others' become a link, not a parent).
TRACING_SAMPLING_PER_MILLION = 0
TRACING_CONFIG_FILE = "apiserver-tracing.yaml"


def tracing_configuration(otlp_port: int) -> dict[str, Any]:
    """The API server's ``--tracing-config-file`` (``apiserver.config.k8s.io/v1`` TracingConfiguration)."""
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "TracingConfiguration",
            "endpoint": f"127.0.0.1:{otlp_port}", "samplingRatePerMillion": TRACING_SAMPLING_PER_MILLION}


def _tracing_patches(config_file: Path, otlp_port: int) -> list[dict[str, Any]]:
    def args(**flags: str) -> list[dict[str, str]]:
        return [{"key": k.replace("_", "-"), "value": v} for k, v in flags.items()]

    return [{"name": "kube-apiserver", "extraArgs": args(tracing_config_file=str(config_file))},
            {"name": "etcd", "extraArgs": args(enable_distributed_tracing="true",
                                               distributed_tracing_address=f"127.0.0.1:{otlp_port}",
                                               distributed_tracing_service_name="etcd",
                                               distributed_tracing_sampling_rate=str(TRACING_SAMPLING_PER_MILLION))}]


def kwokctl_config(paths: dict[str, Path], *, kwok_controller: Path | None = None,
                   controller_manager: Path | None = None, metrics_server: Path | None = None,
                   kwok_server_port: int | None = None,
                   ports: dict[str, int] | None = None, tracing: tuple[Path, int] | None = None) -> dict[str, Any]:
    """kwokctl's configuration: local binaries for every component, loopback only.

    ``kwok_controller``, ``controller_manager`` and ``metrics_server`` replace the binaries kwokctl starts
    (``labkit up`` passes their gates, :data:`KWOK_GATE`);
    ``ports`` (:func:`component_ports`) fixes the components' ports, which kwokctl picks otherwise;
    ``tracing`` (the API server's tracing config file, the OTLP/gRPC port) turns on the control plane's traces.
    """
    manifests = data_file("metrics-server")
    config: dict[str, Any] = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "bindAddress": "127.0.0.1",
            "kubeApiserverPort": api_port(),
            "kubeVersion": versions.KUBERNETES,
            "etcdVersion": versions.ETCD,
            "kwokVersion": versions.KWOK,
            "metricsServerVersion": versions.METRICS_SERVER,
            "kubeApiserverBinary": str(paths["kube-apiserver"]),
            "kubeControllerManagerBinary": str(controller_manager or paths["kube-controller-manager"]),
            "kubeSchedulerBinary": str(paths["kube-scheduler"]),
            "kubectlBinary": str(paths["kubectl"]),
            "etcdBinary": str(paths["etcd"]),
            "kwokControllerBinary": str(kwok_controller or paths["kwok"]),
            "metricsServerBinary": str(metrics_server or paths["metrics-server"]),
            # kwokctl would otherwise fetch metrics-server's manifest from the internet.
            "metricsServerManifests": [str(manifests)],
            "enableMetricsServer": True,
            # With the Stage CRD on, KWOK takes its stages only from the API: labkit applies its own set.
            "enableCRDs": KWOK_CRDS + (["Stage"] if stage_files() else []),
            "kubeAuthorization": True,
            "nodeLeaseDurationSeconds": 40,
        },
    }
    config["options"].update(ports or {})
    # One scheduler and one controller-manager: leader election has nobody to elect between, and a lease renewal
    # that misses its 10 s deadline on a loaded machine makes either process exit ("leaderelection lost").
    config["componentsPatches"] = [{"name": name, "extraArgs": [{"key": "leader-elect", "value": "false"}]}
                                   for name in ("kube-scheduler", "kube-controller-manager")]
    if tracing:
        config["componentsPatches"] += _tracing_patches(*tracing)
    if kwok_server_port:
        # The nodes' kubelet port (kwokControllerPort) is then labkit's kubelet server's (exec, port-forward:
        # labkit/sim/kubelet.py), which passes logs and metrics on to KWOK's own server here.
        config["componentsPatches"].append({"name": "kwok-controller", "extraArgs": [
            {"key": "server-address", "value": f"127.0.0.1:{kwok_server_port}"}]})
    return config


# kwok-controller polls the API server at 0, 1, 3, 7 and 15 s after it starts (exponential back-off) and then
# lists its Stage CRs, again with back-off if the CRD is not served yet. kwokctl starts it together with the API
# server, so it used to sleep for seconds after everything was there (most of the old 14 s `labkit up`).
# labkit therefore gives kwokctl this gate as the kwok binary: it waits, polling cheaply on one connection, until
# the API server serves labkit's Stages, then becomes kwok-controller (exec: same pid, same log, same arguments),
# whose first attempts then all succeed. Standard library only; `--version` (kwokctl asks) passes straight through.
# kube-controller-manager gets the same gate, waiting for /healthz: it waits only about 10 s for a healthy API
# server and then exits for good ("failed to wait for apiserver being healthy"), which on a loaded machine, while
# the API server still runs its post-start hooks, left a lab without controllers (`labkit status`: NOT RUNNING).
# metrics-server too: on a loaded machine it panicked at start on a TLS handshake timeout to the busy API server.
KWOK_GATE = '''#!{python} -ES
"""labkit's gate in front of {component} (written by labkit/cluster/kwok_backend.py; see KWOK_GATE there)."""
import http.client, json, os, ssl, sys, time

KWOK, PORT, PKI, WAIT_S = {kwok!r}, {port!r}, {pki!r}, {wait_s!r}
READY_PATH, NEED_ITEMS = {ready_path!r}, {need_items!r}


def ready(conn):
    conn.request("GET", READY_PATH, headers={{"Accept": "application/json"}})
    resp = conn.getresponse()
    body = resp.read()
    return resp.status == 200 and (not NEED_ITEMS or bool(json.loads(body).get("items")))


if sys.argv[1:2] not in (["--version"], ["version"]):
    start = time.monotonic()
    ctx = conn = None
    while time.monotonic() - start < WAIT_S:
        try:
            if ctx is None:
                ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.crt"))
                ctx.load_cert_chain(os.path.join(PKI, "admin.crt"), os.path.join(PKI, "admin.key"))
            if conn is None:
                conn = http.client.HTTPSConnection("127.0.0.1", PORT, context=ctx, timeout=2)
            if ready(conn):
                break
        except (OSError, ValueError, http.client.HTTPException):
            conn = None
        time.sleep(0.05)
    print(f"labkit gate: starting {component} after {{time.monotonic() - start:.2f}}s", file=sys.stderr,
          flush=True)
# argv[0] stays the path kwokctl ran (under the cluster's bin/), which `labkit down` looks for.
os.execv(KWOK, [sys.argv[0], *sys.argv[1:]])
'''


def gate_usable() -> bool:
    """The gate's ``#!`` line can name this Python: a path without blanks, short enough for every kernel."""
    return bool(sys.executable) and not any(c.isspace() for c in sys.executable) and len(sys.executable) < 120


def write_gate(binary: Path, *, component: str = "kwok-controller") -> Path:
    """Write :data:`KWOK_GATE` in front of ``binary`` for this lab (port, PKI, ready condition); return its path."""
    if component in ("kube-controller-manager", "metrics-server"):
        ready_path, need_items = "/healthz", False  # every post-start hook done: what it waits for itself
    else:
        # With labkit's Stages in the API, kwok can start when the first one is there (the node stage comes
        # first); without them (an empty stages folder), the API answering is enough.
        need_items = bool(stage_files())
        ready_path = f"/apis/{KWOK_API}/stages?limit=1" if need_items else "/api/v1/nodes?limit=1"
    text = KWOK_GATE.format(python=sys.executable, kwok=str(binary), port=api_port(), pki=str(cluster_dir() / "pki"),
                            ready_path=ready_path, need_items=need_items, wait_s=API_WAIT_S * 2, component=component)
    path = gate_path(component)
    write_atomic(path, text, mode=0o755)
    return path


def _pids() -> list[int]:
    pids = []
    for pidfile in (cluster_dir() / "pids").glob("*.pid"):
        try:
            pids.append(int(pidfile.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def running_pids() -> list[int]:
    """Control-plane processes of the lab that are still alive."""
    return [p for p in _pids() if process_alive(p)]


def _started_from(cmdline: bytes, bin_prefix: bytes) -> bool:
    """True when one of a command line's first three words is a binary under ``bin_prefix``.

    kwokctl runs every component through links in the cluster's bin/ folder (argv[0]); a script run through such
    a link (labkit's kwok gate) has it as argv[1] or argv[2], after the interpreter and its flags.
    """
    return any(word.startswith(bin_prefix) for word in cmdline.split(b"\0")[:3])


def lab_processes() -> set[int]:
    """Live processes of the lab: every process started from the cluster's bin/ folder (read from /proc).

    Not only kwokctl's pid files: a component whose pid file was lost (a crash in the middle of ``labkit up``) is
    found too, and a pid file left from before a reboot, whose number now belongs to an unrelated program, is not
    trusted. Programs that merely read the lab's files (``tail -f`` of a log) are not matched. Without /proc
    (not Linux), the pid files are all there is.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return set(running_pids())
    prefix = f"{cluster_dir()}/bin/".encode()
    pids = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if _started_from((entry / "cmdline").read_bytes(), prefix) and process_alive(int(entry.name)):
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def exists() -> bool:
    return (cluster_dir() / "kwok.yaml").exists() or (cluster_dir() / "kubeconfig.yaml").exists()


def healthy() -> bool:
    return exists() and kubeconfig_path().exists() and api_healthy(kubeconfig_path())


def _stop_processes(pids: set[int], *, timeout: float = 10.0) -> list[int]:
    """SIGKILL every pid at once and wait until all are gone; return any that survived.

    SIGKILL, as ``kwokctl delete cluster`` sends it too: the cluster's state is deleted right after, so there is
    nothing to shut down gracefully, and the API server's graceful shutdown alone would take seconds.
    """
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if process_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if process_alive(p)]
    return alive


def down(*, progress: Progress = print) -> None:
    """Delete the embedded cluster and make sure none of its processes survive.

    What ``kwokctl delete cluster`` does for the binary runtime (SIGKILL every component, remove the cluster's
    folder), without starting kwokctl, and with every component killed at once.
    """
    pids = lab_processes()
    if not exists() and not pids:
        progress("no embedded lab cluster is running")
        return
    survivors = _stop_processes(pids)
    shutil.rmtree(cluster_dir(), ignore_errors=True)
    kubeconfig_path().unlink(missing_ok=True)
    if survivors:
        raise LabkitError(f"lab processes {survivors} did not stop after SIGKILL",
                          fix=f"look at them with `ps -o pid,stat,cmd -p {','.join(map(str, survivors))}`")
    progress("embedded lab cluster stopped; no process left")


def up(*, progress: Progress = print) -> Path:
    """Start the embedded cluster (or reuse a healthy one) and return its kubeconfig path."""
    if not settings.linux():
        raise LabkitError(f"cannot start the embedded lab on {sys.platform}", fix=settings.unsupported_platform())
    if healthy():
        progress(f"reusing the running embedded lab cluster (API on 127.0.0.1:{api_port()})")
        return kubeconfig_path()
    if exists() or lab_processes():
        progress("found a stale lab cluster from a run that did not stop cleanly; removing it")
        down(progress=lambda _msg: None)
    if not port_free(api_port()):
        raise PortInUse(
            f"port {api_port()} on 127.0.0.1 is already in use by another program, "
            "so the lab's API server cannot listen there",
            fix=f"free it (`ss -ltnp 'sport = :{api_port()}'` shows who holds it) "
            f"or pick another port: `LABKIT_API_PORT=16444 labkit up`",
        )
    import yaml

    from . import binaries

    paths = binaries.ensure_binaries(progress=progress)
    link_binaries(paths)
    start = time.monotonic()
    state_dir().mkdir(parents=True, exist_ok=True)
    config_file = state_dir() / "kwokctl.yaml"
    ports = component_ports()
    otlp_port = free_port()
    while otlp_port in ports.values():
        otlp_port = free_port()
    kwok_server_port = free_port()
    while kwok_server_port in (*ports.values(), otlp_port):
        kwok_server_port = free_port()
    tracing_file = state_dir() / TRACING_CONFIG_FILE
    tracing_file.write_text(yaml.safe_dump(tracing_configuration(otlp_port), sort_keys=False))
    # Without the gates (an odd Python path) kwok and the controller-manager start as kwokctl starts them.
    gated = gate_usable()
    config = kwokctl_config(paths, kwok_controller=write_gate(paths["kwok"]) if gated else None,
                            controller_manager=write_gate(paths["kube-controller-manager"],
                                                          component="kube-controller-manager") if gated else None,
                            metrics_server=write_gate(paths["metrics-server"], component="metrics-server")
                            if gated else None,
                            ports=ports, tracing=(tracing_file, otlp_port), kwok_server_port=kwok_server_port)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    progress(f"starting etcd, kube-apiserver, controller-manager, scheduler, metrics-server, kwok "
             f"(Kubernetes {versions.KUBERNETES}) on 127.0.0.1")
    # No --wait (a kubectl run per second until /healthz): kwokctl returns once the API server serves requests and
    # its CRDs are created; labkit applies its objects as soon as the CRDs are served, and `labkit up` then waits
    # for the nodes and /readyz together (health.wait_nodes_ready). Overlapping the two gains nothing: both
    # keep the starting API server busy, and the machine's cores are what they wait for.
    _kwokctl("create", "cluster", "--config", str(config_file), "--kubeconfig", "", timeout=240)
    shutil.copyfile(cluster_dir() / "kubeconfig.yaml", kubeconfig_path())
    _write_state(control_plane_otlp_port=otlp_port, kubelet_port=ports["kwokControllerPort"],
                 kwok_server_port=kwok_server_port, pki=str(cluster_dir() / "pki"))
    with ApiConnection(kubeconfig_path(), timeout=10) as api:
        install_lab_objects(api)
    progress(f"control plane up in {time.monotonic() - start:.1f}s; nodes registering")
    return kubeconfig_path()


def lab_objects() -> list[dict[str, Any]]:
    """labkit's Stages, KWOK's metric objects and the topology's Nodes, in the order they are applied.

    Stages first: a node without its stages would never turn Ready. The Stages are rendered with the image
    catalog (:func:`labkit.cluster.stages.stage_documents`): the files alone are not applicable.
    """
    import yaml

    from .stages import stage_documents
    from .topology import load_topology, node_manifest

    # libyaml's loader when present: `labkit up` waits for this.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs: list[dict[str, Any]] = stage_documents(files=stage_files())
    for doc in yaml.load_all(data_file("kwok-metrics.yaml").read_text(), Loader=loader):
        if doc:
            docs += (doc.get("items") or []) if doc.get("kind") == "List" else [doc]
    docs += [node_manifest(n, kubelet_version=versions.KUBERNETES, index=i) for i, n in enumerate(load_topology())]
    return docs


def api_path(obj: dict[str, Any]) -> str:
    """The REST path of one object labkit applies (kinds in :data:`PLURALS`)."""
    kind, api_version = obj.get("kind"), obj.get("apiVersion", "")
    name = (obj.get("metadata") or {}).get("name")
    if kind not in PLURALS or not name or not api_version:
        raise ManifestError(f"labkit cannot apply {kind} {name!r} ({api_version}) through the API directly",
                            fix=f"add its kind to PLURALS in {__name__}")
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    namespace = obj["metadata"].get("namespace")
    return f"{base}{f'/namespaces/{namespace}' if namespace else ''}/{PLURALS[kind]}/{name}"


def apply_object(api: ApiConnection, obj: dict[str, Any], *, deadline: float) -> None:
    """Server-side apply one object (``kubectl apply --server-side --force-conflicts --field-manager=labkit``).

    Apply, not create: on a new cluster the API server answers the first create of a custom resource after some
    2 s, an apply at once. While the cluster starts, a CRD may be created but not served yet (404) and the API
    server may be busy (429, 500, 503): all are retried until ``deadline``.
    """
    path = api_path(obj) + "?fieldManager=labkit&force=true"
    while True:
        try:
            status, body = api.request("PATCH", path, obj, content_type="application/apply-patch+yaml")
        except OSError as exc:
            status, body = 0, str(exc).encode()
        if 200 <= status < 300:
            return
        if status not in (0, 404, 429, 500, 503) or time.monotonic() > deadline:
            raise ManifestError(f"applying {obj['kind']} {obj['metadata']['name']} failed: {ApiError(status, body)}",
                                fix="`labkit status` shows which component is unhealthy; then "
                                    "`labkit down && labkit up`")
        time.sleep(0.02)


def install_lab_objects(api: ApiConnection, *, workers: int = 4) -> None:
    """Apply :func:`lab_objects`: the Stages, then the Nodes and KWOK's metric objects, on parallel connections.

    Kept-alive connections instead of a kubectl run (whose start-up and discovery cost more than all the objects);
    parallel because each write waits for etcd, and concurrent writes share its commits. The first Stage goes
    alone: it waits until the API server serves the Stage CRD.
    """
    from concurrent.futures import ThreadPoolExecutor

    objs = lab_objects()
    stages = [o for o in objs if o["kind"] == "Stage"]
    others = [o for o in objs if o["kind"] != "Stage"]
    deadline = time.monotonic() + API_WAIT_S
    if stages:
        apply_object(api, stages[0], deadline=deadline)

    def apply_all(conn: ApiConnection, chunk: list[dict[str, Any]]) -> None:
        for obj in chunk:
            apply_object(conn, obj, deadline=deadline)

    conns = [api, *(api.sibling() for _ in range(workers - 1))]
    try:
        with ThreadPoolExecutor(len(conns)) as pool:
            for group in (stages[1:], others):
                # Connection i applies objects i, i+n, ...: a connection is never used by two threads at once.
                list(pool.map(apply_all, conns, [group[i::len(conns)] for i in range(len(conns))]))
    finally:
        for conn in conns[1:]:
            conn.close()


def kubectl(args: list[str], *, input_text: str | None = None, timeout: float = 60) -> str:
    """Run the lab's kubectl against the lab; raise with its stderr when it fails."""
    cmd = [str(bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig_path()), *args]
    proc = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabkitError(f"`kubectl {' '.join(args)}` failed: {proc.stderr.strip()}",
                          fix="`labkit status` shows which component is unhealthy")
    return proc.stdout


def _write_state(**details: Any) -> None:
    state.record("kwok", api_port=api_port(), **details)


def check_components(*, progress: Progress = print) -> None:
    """After ``labkit up``: a control-plane component that exited while the cluster started is started once more
    (``kwokctl start cluster`` starts only the components that are not running); one that exits again is an error
    that names it and quotes its log. On a loaded machine a component can give up on a busy API server at start
    (metrics-server on a TLS handshake timeout) when a second start, against a settled API server, works.
    """
    dead = [name for name, pid in component_pids().items() if pid is None]
    if not dead:
        return
    progress(f"{', '.join(dead)} not running (its log ends: {(_log_tail(dead[0], 1) or ['-'])[0][:160]}); "
             f"starting {'it' if len(dead) == 1 else 'them'} again")
    # kwokctl skips a component whose pid file names a live process, and a killed one that nobody has reaped yet
    # (a zombie) still counts as live to it: the pid files of the dead go first.
    for name in dead:
        (cluster_dir() / "pids" / f"{name}.pid").unlink(missing_ok=True)
    _kwokctl("start", "cluster", timeout=120)
    alive = component_pids()
    dead = [name for name in dead if alive.get(name) is None]
    if dead:
        log = cluster_dir() / "logs" / f"{dead[0]}.log"
        raise LabkitError(f"{', '.join(dead)} exited while the lab started, twice; last lines of its log ({log}):\n"
                          + "\n".join(_log_tail(dead[0])),
                          fix="labkit down && labkit up   # " + _("and `labkit doctor` if it happens again"))


def _log_tail(component: str, lines: int = 3) -> list[str]:
    log = cluster_dir() / "logs" / f"{component}.log"
    return [line[:300] for line in log.read_text(errors="replace").splitlines()[-lines:]] if log.exists() else []


def component_pids() -> dict[str, int | None]:
    """Component name -> pid if its process is alive (for ``labkit status``)."""
    result: dict[str, int | None] = {}
    for pidfile in sorted((cluster_dir() / "pids").glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = None
        result[pidfile.stem] = pid if pid and process_alive(pid) else None
    return result
