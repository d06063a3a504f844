"""A simulated container's world (labkit.sim.sandbox) and what runs in it (labkit.sim.runtime), without a cluster.

bubblewrap and busybox are declared dependencies (Debian's bubblewrap, busybox-static; .ci/run installs them): the
tests that run a sandbox fail, never skip, without them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pytest

from labkit.cluster.stages import load_catalog
from labkit.sim import pod_logs, responder, runtime, sandbox
from labkit.sim.sandbox import Objects
from labkit.sim.workload import request_loop


def _pod(**spec: object) -> dict:
    containers = spec.pop("containers", [{"name": "app", "image": "busybox:1.36"}])
    return {"metadata": {"namespace": "shop", "name": "web-0", "uid": "0f0e0d0c-aaaa-bbbb-cccc-000000000001",
                         "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "kwok-node-1", "containers": containers, **spec},
            "status": {"podIP": "10.244.1.7", "hostIP": "10.89.0.2", "podIPs": [{"ip": "10.244.1.7"}]}}


def _objects() -> Objects:
    secret = {"type": "Opaque", "data": {"password": base64.b64encode(b"s3cr3t").decode()}}
    svc = {"spec": {"clusterIP": "10.0.0.42", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
    return Objects(configmaps={"game": sandbox.object_data({"data": {"lives": "3", "ui.properties": "color=red\n"}},
                                                           secret=False)},
                   secrets={"db": sandbox.object_data(secret, secret=True)},
                   services={"redis-primary": svc},
                   master={"spec": {"clusterIP": "10.0.0.1", "ports": [{"name": "https", "port": 443}]}})


def test_etc_hosts_and_resolv_conf_read_as_the_kubelet_writes_them() -> None:
    pod = _pod(hostname="db", subdomain="dbs", hostAliases=[{"ip": "127.0.0.1", "hostnames": ["foo.local"]}])
    hosts = sandbox.etc_hosts(pod)
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.244.1.7\tdb.dbs.shop.svc.cluster.local\tdb\n" in hosts
    assert hosts.endswith("# Entries added by HostAliases.\n127.0.0.1\tfoo.local\n")
    assert sandbox.resolv_conf(_pod()) == ("search shop.svc.cluster.local svc.cluster.local cluster.local\n"
                                           "nameserver 10.0.0.10\noptions ndots:5\n")


def test_the_environment_in_the_kubelets_order() -> None:
    container = {"name": "app", "image": "busybox",
                 "envFrom": [{"configMapRef": {"name": "game"}, "prefix": "GAME_"}],
                 "env": [{"name": "GREETING", "value": "hello"},
                         {"name": "MESSAGE", "value": "$(GREETING) world, $(NOPE), $$(GREETING)"},
                         {"name": "LIVES", "valueFrom": {"configMapKeyRef": {"name": "game", "key": "lives"}}},
                         {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                         {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                         {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                            "divisor": "1Mi"}}}],
                 "resources": {"limits": {"memory": "64Mi"}}}
    env = sandbox.container_env(_pod(), container, _objects())
    assert env["MESSAGE"] == "hello world, $(NOPE), $(GREETING)"
    assert (env["LIVES"], env["DB_PASSWORD"], env["POD"], env["IP"], env["TIER"], env["MEM"]) == (
        "3", "s3cr3t", "web-0", "10.244.1.7", "front", "64")
    assert env["GAME_lives"] == "3" and env["HOSTNAME"] == "web-0"
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == "10.0.0.42" and env["REDIS_PRIMARY_SERVICE_PORT_HTTP"] == "80"
    assert env["REDIS_PRIMARY_PORT_80_TCP_ADDR"] == "10.0.0.42"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.0.0.1" and env["KUBERNETES_PORT"] == "tcp://10.0.0.1:443"
    assert "REDIS_PRIMARY_SERVICE_HOST" not in sandbox.container_env(_pod(enableServiceLinks=False), container,
                                                                     _objects())


def test_volumes_hold_the_objects_keys() -> None:
    objects = _objects()
    pod = _pod()
    assert sandbox.volume_files(pod, {"configMap": {"name": "game"}}, objects) == {"lives": b"3",
                                                                                   "ui.properties": b"color=red\n"}
    assert sandbox.volume_files(pod, {"secret": {"secretName": "db", "items": [{"key": "password", "path": "pw"}]}},
                                objects) == {"pw": b"s3cr3t"}
    labels = sandbox.volume_files(pod, {"downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}, objects)
    assert labels == {"labels": b'app="web"\ntier="front"'}
    assert sandbox.volume_files(pod, {"emptyDir": {}}, objects) is None


def test_which_commands_run_for_real() -> None:
    assert sandbox.real_command({"command": ["/bin/sh", "-c", "echo hi"]}) == ["sh", "-c", "echo hi"]
    assert sandbox.real_command({"command": ["bash", "-c", "echo hi"]}) == ["sh", "-c", "echo hi"]
    assert sandbox.real_command({"args": ["sh", "-c", "echo hi"]}) is None  # the image's entrypoint gets them
    assert sandbox.real_command({"args": ["sh", "-c", "echo hi"]}, no_entrypoint=True) == ["sh", "-c", "echo hi"]
    assert sandbox.real_command({"command": ["/agnhost", "netexec"]}) is None
    assert sandbox.real_command({}) is None
    assert request_loop(["sh", "-c", "while sleep 0.2; do wget -q -O- http://frontend; done"]) == ("frontend", 0.2)
    assert request_loop(["nslookup", "web-0.web"]) is None  # one request: for real, through the Service network
    assert request_loop(["sh", "-c", "touch /tmp/healthy; sleep 30"]) is None
    # The Debug Services page's loop over the backends' IPs ends: it runs for real, not as a modelled client.
    assert request_loop(["sh", "-c", "for ip in 10.244.1.2 10.244.2.2; do wget -qO- $ip:9376; done"]) is None


def _run(argv: list[str], *command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv, *command], capture_output=True, text=True, timeout=30, input=stdin)


def test_a_sandbox_shows_the_containers_world_and_not_the_hosts(tmp_path: Path) -> None:
    assert sandbox.tools() is not None, sandbox.MISSING_TOOLS
    container = {"name": "app", "image": "busybox:1.36", "workingDir": "/work",
                 "env": [{"name": "LIVES", "valueFrom": {"configMapKeyRef": {"name": "game", "key": "lives"}}}],
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/game"},
                                  {"name": "scratch", "mountPath": "/scratch"},
                                  {"name": "host", "mountPath": "/host-etc"}]}
    pod = _pod(containers=[container], volumes=[{"name": "config", "configMap": {"name": "game"}},
                                                {"name": "scratch", "emptyDir": {}},
                                                {"name": "host", "hostPath": {"path": "/etc"}}])
    argv = sandbox.prepare(pod, container, _objects(), root=tmp_path)
    out = _run(argv, "sh", "-c", "hostname; pwd; echo $LIVES; cat /etc/game/lives; echo; ls /host-etc | wc -l; "
                                 "echo x > /scratch/f; id -u; cat /etc/hosts | tail -1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["web-0", "/work", "3", "3", "0", "0", "10.244.1.7\tweb-0"]
    # The mounted ConfigMap is read-only, as the kubelet mounts it; the emptyDir is the pod's folder on the host.
    denied = _run(argv, "sh", "-c", "echo 4 > /etc/game/lives")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert (sandbox.pod_dir(pod, tmp_path) / "volumes" / "scratch" / "f").read_text() == "x\n"
    # Nothing of the host's: its files, processes and network.
    assert Path(sandbox.__file__).exists() and _run(argv, "ls", sandbox.__file__).returncode != 0
    processes = _run(argv, "ps", "-o", "pid,comm").stdout.splitlines()[1:]
    assert [p.split()[1] for p in processes] == ["bwrap", "ps"]  # its own PID namespace: bwrap is its PID 1
    net = _run(argv, "sh", "-c", "ip -o link | cut -d: -f2")
    assert net.stdout.split() == ["lo"]
    # Files written in one exec are there for the next, as in one container.
    assert _run(argv, "touch", "/tmp/healthy").returncode == 0
    assert _run(argv, "cat", "/tmp/healthy").returncode == 0


def test_exec_of_a_missing_program_fails_as_runc_says(tmp_path: Path) -> None:
    nginx = {"name": "web", "image": "nginx:1.27"}
    catalog = load_catalog()
    argv = sandbox.prepare(_pod(containers=[nginx]), nginx, _objects(), root=tmp_path,
                           programs=catalog.programs("nginx:1.27"))
    spec = sandbox.write_exec_spec("shop", "web-0", "web", argv, tmp_path)
    exec_argv = json.loads(spec.read_text())["argv"]
    missing = _run(exec_argv, "wget", "-q", "http://example")  # busybox has it, the nginx image does not
    assert missing.returncode == 126
    assert missing.stderr == ('OCI runtime exec failed: exec failed: unable to start container process: exec: "wget": '
                              "executable file not found in $PATH: unknown\n")  # runc's \r\n, as text
    assert _run(exec_argv, "bash", "-c", "echo from bash").stdout == "from bash\n"
    assert _run(exec_argv, "sh", "-c", "exit 3").returncode == 3


def test_a_script_runs_for_real_and_its_output_is_the_log(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pod_logs, "log_root", lambda: tmp_path / "logs")
    written: list[dict] = []
    rt = runtime.Runtime(load_catalog(), apply_logs=written.append, root=tmp_path / "runtime")
    container = {"name": "count", "image": "busybox:1.28",
                 "args": ["/bin/sh", "-c", 'i=0; while true; do echo "$i: tick"; i=$((i+1)); sleep 0.2; done']}
    pod = _pod(containers=[container])
    pod["status"]["containerStatuses"] = [{"name": "count", "restartCount": 0, "containerID": "containerd://c1",
                                           "state": {"running": {"startedAt": "2026-12-06T00:00:00Z"}}}]
    try:
        rt.sync(pod, _objects())
        assert written and written[0]["spec"]["logs"][0]["containers"] == ["count"]
        path = Path(written[0]["spec"]["logs"][0]["logsFile"])
        deadline = time.monotonic() + 20
        while len(path.read_text().splitlines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = [pod_logs.parse_cri(x) for x in path.read_text().splitlines()]
        assert [msg for _, _, msg in lines[:3]] == ["0: tick", "1: tick", "2: tick"]
        assert {stream for _, stream, _ in lines} == {"stdout"}
        assert rt.report()["running_for_real"] == 1
        # The Stages say it ended: the process goes, and `kubectl exec` finds no container.
        pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 137}}
        rt.sync(pod, _objects())
        assert rt.report()["running_for_real"] == 0
        assert not (tmp_path / "runtime" / "exec" / "shop" / "web-0" / "count.json").exists()
    finally:
        rt.stop_all()


def test_an_image_prints_its_start_up_lines() -> None:
    lines = runtime.start_lines(load_catalog(), "nginx:1.27", 1_796_515_200.0)
    assert lines[0] == (1_796_515_200.0, "stdout",
                        "/docker-entrypoint.sh: /docker-entrypoint.d/ is not empty, will attempt to perform "
                        "configuration")
    assert (1_796_515_200.0, "stderr", "2026/12/06 00:00:00 [notice] 1#1: nginx/1.27") in lines
    assert runtime.start_lines(load_catalog(), "busybox", 0.0) == []


@pytest.mark.parametrize(("container", "serves", "port"), [
    ({"image": "nginx"}, "nginx", 80),
    ({"args": ["netexec", "--http-port=8081"]}, "agnhost", 8081),
    ({"args": ["netexec"]}, "agnhost", 8080),
    ({"args": ["serve-hostname"]}, "agnhost", 9376),
    ({"args": ["pause"]}, "agnhost", None),
    ({"image": "busybox"}, None, None),
])
def test_the_port_an_image_listens_on(container: dict, serves: str | None, port: int | None) -> None:
    from labkit.sim.responder import listening_port

    assert listening_port(container, serves) == port


def test_port_forward_serves_what_the_other_container_wrote(tmp_path: Path, monkeypatch) -> None:
    """The documentation's two-container pod: debian writes index.html into the emptyDir nginx serves."""
    import socket

    from labkit.sim.responder import Responder

    monkeypatch.setattr(pod_logs, "log_root", lambda: tmp_path / "logs")
    nginx = {"name": "nginx-container", "image": "nginx",
             "volumeMounts": [{"name": "shared-data", "mountPath": "/usr/share/nginx/html"}]}
    debian = {"name": "debian-container", "image": "debian", "command": ["/bin/sh"],
              "args": ["-c", "echo Hello from the debian container > /pod-data/index.html"],
              "volumeMounts": [{"name": "shared-data", "mountPath": "/pod-data"}]}
    pod = _pod(containers=[nginx, debian], volumes=[{"name": "shared-data", "emptyDir": {}}])
    pod["status"]["containerStatuses"] = [{"name": c["name"], "restartCount": 0,
                                           "state": {"running": {"startedAt": "2026-12-06T00:00:00Z"}}}
                                          for c in (nginx, debian)]
    catalog = load_catalog()
    argv = sandbox.prepare(pod, debian, _objects(), root=tmp_path, programs=catalog.programs("debian"))
    assert _run(argv, *debian["command"], *debian["args"]).returncode == 0
    assert sandbox.host_path(pod, nginx, "/usr/share/nginx/html/index.html", tmp_path).read_text() == (
        "Hello from the debian container\n")

    responder = Responder(catalog, lambda ns, name: pod if (ns, name) == ("shop", "web-0") else None, tmp_path)
    responder.start()

    def forward(hello: bytes, request: bytes = b"") -> bytes:
        with socket.create_connection(("127.0.0.1", responder.port), timeout=10) as conn:
            conn.sendall(hello + request)
            conn.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            return data

    answer = forward(b'{"namespace": "shop", "pod": "web-0", "uid": "u", "port": 80}\n',
                     b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"OK\nHTTP/1.1 200 OK\r\nServer: nginx/latest\r\n")
    assert answer.endswith(b"\r\n\r\nHello from the debian container\n")
    refused = forward(b'{"namespace": "shop", "pod": "web-0", "uid": "u", "port": 8080}\n')
    assert b"dial tcp4 127.0.0.1:8080: connect: connection refused" in refused and not refused.startswith(b"OK")
    assert forward(b'{"namespace": "shop", "pod": "gone", "uid": "u", "port": 80}\n') == (
        b'pod not found ("gone_shop")\n')


def test_the_host_never_follows_a_link_a_container_made(tmp_path: Path, monkeypatch) -> None:
    from labkit.sim.responder import Site
    from labkit.sim.service_net import Reply, Spool

    monkeypatch.setattr(pod_logs, "log_root", lambda: tmp_path / "logs")
    catalog = load_catalog()
    nginx = {"name": "web", "image": "nginx:1.27"}
    pod = _pod(containers=[nginx])
    repo = catalog.repositories["docker.io/library/nginx"]
    argv = sandbox.prepare(pod, nginx, _objects(), root=tmp_path, image_files=repo.files,
                           programs=catalog.programs("nginx:1.27"))
    # The document root replaced by a link to the sandbox's / (which, followed on the host, is the host's /).
    assert _run(argv, "sh", "-c", "rm -rf /usr/share/nginx/html && ln -s / /usr/share/nginx/html").returncode == 0
    site = Site(pod, nginx, "nginx", tmp_path)
    assert site.content("/etc/hostname", request_line="GET /etc/hostname HTTP/1.1")[0] == 404
    assert sandbox.host_path(pod, nginx, "/usr/share/nginx/html/etc/hostname", tmp_path) is None
    # A new start of the container begins from the image again.
    sandbox.prepare(pod, nginx, _objects(), root=tmp_path, image_files=repo.files,
                    programs=catalog.programs("nginx:1.27"))
    assert site.content("/", request_line="GET / HTTP/1.1")[0] == 200
    # The Service network's spool: a reply file the sandbox planted as a link is not written through.
    victim = tmp_path / "host-file"
    victim.write_text("untouched")
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "t1.req").write_bytes(b"wget\0-qO-\0web\0")
    (spool / "t1.out").symlink_to(victim)
    Spool(lambda uid, argv: Reply(out=b"answer"))._serve("uid", spool, "t1")
    assert victim.read_text() == "untouched"
    (spool / "t2.req").symlink_to(victim)  # nor is a request read through one
    asked: list[list[str]] = []
    Spool(lambda uid, argv: asked.append(argv) or Reply())._serve("uid", spool, "t2")
    assert asked == [] and not (spool / "t2.done").exists()


def test_a_new_kubelet_process_sweeps_what_gone_pods_left(tmp_path: Path) -> None:
    rt = runtime.Runtime(load_catalog(), apply_logs=lambda body: None, root=tmp_path)
    for uid in ("uid-alive", "uid-gone"):
        (tmp_path / "pods" / f"ns_web_{uid}" / "containers").mkdir(parents=True)
    (tmp_path / "exec" / "ns" / "web").mkdir(parents=True)
    rt.sweep({"uid-alive"})
    assert [p.name for p in (tmp_path / "pods").iterdir()] == ["ns_web_uid-alive"]
    assert not (tmp_path / "exec").exists()


def test_apt_answers_as_on_a_cluster_with_no_internet(tmp_path) -> None:
    script = tmp_path / "apt-get"
    script.write_text(sandbox.APT_SCRIPT)
    update = subprocess.run(["sh", str(script), "update"], capture_output=True, text=True)
    assert update.returncode == 0 and "Temporary failure resolving 'deb.debian.org'" in update.stdout
    install = subprocess.run(["sh", str(script), "install", "-y", "no-such-tool"], capture_output=True, text=True)
    assert install.returncode == 100 and install.stderr == "E: Unable to locate package no-such-tool\n"
    present = subprocess.run(["sh", str(script), "install", "sh"], capture_output=True, text=True)
    assert present.returncode == 0 and "sh is already the newest version." in present.stdout


def test_a_debian_images_bin_has_apt(tmp_path) -> None:
    layer = sandbox.programs_layer(tmp_path, {"sh", "ls", "apt-get", "apt"})
    assert (layer / "apt-get").read_text() == sandbox.APT_SCRIPT
    assert not (sandbox.programs_layer(tmp_path, {"sh", "ls"}) / "apt-get").exists()


def test_port_forward_says_which_programs_do_not_run_here() -> None:
    # The Port Forwarding page's mongo: it declares 27017, but mongod does not run in the lab; refusing the
    # connection would say nothing listens there.
    pod = {"metadata": {"name": "mongo-1", "uid": "u1"},
           "spec": {"containers": [{"name": "mongo", "image": "mongo:4.2", "ports": [{"containerPort": 27017}]}]},
           "status": {"containerStatuses": [{"name": "mongo",
                                             "state": {"running": {"startedAt": "2026-12-06T10:00:00Z"}}}]}}
    said = responder.not_modelled(pod, 27017)
    assert said is not None and "'mongo' (mongo:4.2): its program does not run on labkit's embedded cluster" in said
    assert responder.not_modelled(pod, 8080) is None  # nothing declared there: containerd's connection refused
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": {}}
    assert responder.not_modelled(pod, 27017) is None
