"""e2e: what is inside a simulated container, through kubectl as a learner types it: ``logs`` (and its flags),
``exec``, ``cp`` and ``port-forward`` (labkit/sim/runtime.py, labkit/sim/sandbox.py, labkit/sim/responder.py,
labkit/data/kubelet-server). The manifests are the Kubernetes documentation's where a page has one."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import labkit as lk
from labkit.cluster.binaries import binary_paths

pytestmark = pytest.mark.e2e

KUBECTL_TIMEOUT_S = 30


@pytest.fixture
def kubectl(lab: lk.Lab, namespace: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kubectl -n NAMESPACE ARGS`` against the lab; returns the finished process (checked unless told not to)."""
    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(binary_paths()["kubectl"]), "--kubeconfig", str(lab.kubeconfig), "-n", namespace,
                               *args], capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_S, input=stdin)
        if check and done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}", pytrace=False)
        return done
    return run


def running(lab: lk.Lab, namespace: str, name: str, *, timeout: float = 60) -> dict[str, Any]:
    return lk.wait_for(lab, "Pod", name, namespace=namespace, timeout=timeout,
                       condition="jsonpath={.status.phase}=Running")


def until(what: str, check: Callable[[], Any], *, timeout: float) -> Any:
    """Poll ``check`` until it returns something true; fail with the last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout:.0f}s (last: {value!r})", pytrace=False)
        time.sleep(0.3)


# https://kubernetes.io/docs/concepts/cluster-administration/logging/ (debug/counter-pod.yaml), as published.
COUNTER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "counter"},
           "spec": {"containers": [{"name": "count", "image": "busybox:1.28", "args": [
               "/bin/sh", "-c", 'i=0; while true; do echo "$i: $(date)"; i=$((i+1)); sleep 1; done']}]}}


def test_the_documentations_counter_pod_prints_a_numbered_line_each_second(lab, namespace, kubectl):
    lk.apply(lab, COUNTER, namespace=namespace)
    running(lab, namespace, "counter")
    lines = until("three lines from the counter",
                  lambda: out if len(out := kubectl("logs", "counter").stdout.splitlines()) >= 3 else None,
                  timeout=30)
    assert [int(line.split(":")[0]) for line in lines] == list(range(len(lines)))
    assert all(re.fullmatch(r"\d+: \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d UTC \d{4}", line) for line in lines), lines
    assert len(kubectl("logs", "counter", "--tail", "1").stdout.splitlines()) == 1
    stamped = kubectl("logs", "counter", "--timestamps", "--tail", "2").stdout.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \d+: ", line) for line in stamped), stamped
    first, second = (float(re.search(r":(\d\d\.\d+)Z", s).group(1)) for s in stamped)
    assert 0.5 < (second - first) % 60 < 1.5  # a second apart, as its sleep says
    assert kubectl("logs", "counter", "-c", "count", "--since", "1h").stdout.startswith("0: ")
    # -f goes on as the container writes.
    follow = subprocess.Popen([str(binary_paths()["kubectl"]), "--kubeconfig", str(lab.kubeconfig), "-n", namespace,
                               "logs", "-f", "--tail", "0", "counter"], stdout=subprocess.PIPE, text=True)
    try:
        assert re.fullmatch(r"\d+: .*\n", follow.stdout.readline())
    finally:
        follow.kill()
        follow.wait()


# The logging lesson's worker: two lines, then exit 1 (CrashLoopBackOff); its crash is what --previous shows.
WORKER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker", "labels": {"app": "worker"}},
          "spec": {"containers": [
              {"name": "worker", "image": "busybox:1.28",
               "command": ["sh", "-c", "echo connecting to postgres://db:5432; sleep 2; "
                                       "echo 'FATAL: database connection refused' >&2; exit 1"]}]}}
TWO = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two", "labels": {"app": "two"}},
       "spec": {"containers": [{"name": c, "image": "busybox:1.36", "command": ["sh", "-c", f"echo {c} up; sleep 3600"]}
                               for c in ("main", "sidecar")]}}


def test_a_crashed_containers_lines_are_its_previous_log(lab, namespace, kubectl):
    lk.apply(lab, WORKER, namespace=namespace)
    lk.apply(lab, TWO, namespace=namespace)
    lk.wait_for(lab, "Pod", "worker", namespace=namespace, timeout=60,
                condition="jsonpath={.status.containerStatuses[0].restartCount}=1")
    previous = kubectl("logs", "worker", "--previous").stdout
    assert previous == "connecting to postgres://db:5432\nFATAL: database connection refused\n"
    running(lab, namespace, "two")
    every = until("both containers' lines", lambda: (out := kubectl("logs", "two", "--all-containers").stdout)
                  .count(" up\n") == 2 and out, timeout=20)
    # kubectl asks for each container's log in turn, in no set order (it iterates a Go map of requests).
    assert sorted(every.splitlines()) == ["main up", "sidecar up"]
    assert kubectl("logs", "-l", "app=two", "-c", "sidecar").stdout == "sidecar up\n"
    # A container that has not restarted has no previous log.
    assert kubectl("logs", "two", "-c", "sidecar", "--previous", check=False).returncode != 0


CONFIG = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "game-demo"},
     "data": {"player_initial_lives": "3", "ui_properties_file_name": "user-interface.properties",
              "game.properties": "enemy.types=aliens,monsters\nplayer.maximum-lives=5\n"}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "s3cr3t"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis-primary"},
     "spec": {"selector": {"app": "redis"}, "ports": [{"port": 6379}]}},
    # https://kubernetes.io/docs/concepts/configuration/configmap/ (configmap/configure-pod.yaml), on busybox, with
    # an emptyDir the two containers share.
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "configmap-demo-pod"},
     "spec": {"containers": [
         {"name": "demo", "image": "alpine", "command": ["sleep", "3600"],
          "env": [{"name": "PLAYER_INITIAL_LIVES",
                   "valueFrom": {"configMapKeyRef": {"name": "game-demo", "key": "player_initial_lives"}}},
                  {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                  {"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
          "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": True},
                           {"name": "shared", "mountPath": "/shared"}]},
         {"name": "helper", "image": "busybox:1.36", "command": ["sleep", "3600"],
          "volumeMounts": [{"name": "shared", "mountPath": "/data"}]}],
         "volumes": [{"name": "config", "configMap": {"name": "game-demo", "items": [
             {"key": "game.properties", "path": "game.properties"}]}},
             {"name": "shared", "emptyDir": {}}]}},
]


def test_exec_shows_the_containers_world(lab, namespace, kubectl):
    for obj in CONFIG:
        lk.apply(lab, obj, namespace=namespace)
    pod = running(lab, namespace, "configmap-demo-pod")
    env = dict(line.split("=", 1) for line in kubectl("exec", "configmap-demo-pod", "-c", "demo", "--",
                                                      "env").stdout.splitlines())
    assert env["PLAYER_INITIAL_LIVES"] == "3" and env["DB_PASSWORD"] == "s3cr3t"
    assert env["MY_POD_IP"] == pod["status"]["podIP"] and env["HOSTNAME"] == "configmap-demo-pod"
    service_ip = lab.core.read_namespaced_service("redis-primary", namespace).spec.cluster_ip
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == service_ip and env["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert kubectl("exec", "configmap-demo-pod", "-c", "demo", "--", "cat", "/config/game.properties").stdout == (
        "enemy.types=aliens,monsters\nplayer.maximum-lives=5\n")
    assert kubectl("exec", "configmap-demo-pod", "-c", "demo", "--", "ls", "/config").stdout == "game.properties\n"
    assert kubectl("exec", "configmap-demo-pod", "-c", "demo", "--", "hostname").stdout == "configmap-demo-pod\n"
    hosts = kubectl("exec", "configmap-demo-pod", "-c", "demo", "--", "cat", "/etc/hosts").stdout
    assert hosts.startswith("# Kubernetes-managed hosts file.\n")
    assert f"{pod['status']['podIP']}\tconfigmap-demo-pod\n" in hosts
    resolv = kubectl("exec", "configmap-demo-pod", "-c", "demo", "--", "cat", "/etc/resolv.conf").stdout
    assert resolv.startswith(f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n")
    # The emptyDir is one folder for both containers; stdin reaches the command; its exit code comes back.
    kubectl("exec", "-i", "configmap-demo-pod", "-c", "demo", "--", "sh", "-c", "cat > /shared/note", stdin="hi\n")
    assert kubectl("exec", "configmap-demo-pod", "-c", "helper", "--", "cat", "/data/note").stdout == "hi\n"
    failed = kubectl("exec", "configmap-demo-pod", "-c", "demo", "--", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3 and "command terminated with exit code 3" in failed.stderr
    missing = kubectl("exec", "configmap-demo-pod", "-c", "demo", "--", "curl", check=False)
    assert 'exec: "curl": executable file not found in $PATH' in missing.stderr
    # kubectl cp is tar through exec.
    kubectl("cp", f"{namespace}/configmap-demo-pod:/config/game.properties", "-c", "demo", "/dev/stdout")
    # Nothing of the host: not its files, not its network (the API server listens on this machine's loopback).
    assert kubectl("exec", "configmap-demo-pod", "-c", "demo", "--", "ls", str(lab.kubeconfig), check=False
                   ).returncode != 0
    api_port = lab.server.rsplit(":", 1)[-1].rstrip("/")
    probe = kubectl("exec", "configmap-demo-pod", "-c", "demo", "--", "nc", "-z", "-w", "2", "127.0.0.1", api_port,
                    check=False)
    assert probe.returncode != 0


# https://kubernetes.io/docs/tasks/debug/debug-application/get-shell-running-container/ (application/shell-demo.yaml)
SHELL_DEMO = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell-demo"},
              "spec": {"volumes": [{"name": "shared-data", "emptyDir": {}}],
                       "containers": [{"name": "nginx", "image": "nginx", "volumeMounts": [
                           {"name": "shared-data", "mountPath": "/usr/share/nginx/html"}]}]}}


def test_the_get_a_shell_pages_session(lab, namespace, kubectl):
    lk.apply(lab, SHELL_DEMO, namespace=namespace)
    running(lab, namespace, "shell-demo")
    assert {"bin", "etc", "usr", "proc", "tmp"} <= set(kubectl("exec", "shell-demo", "--", "ls", "/").stdout.split())
    kubectl("exec", "shell-demo", "--", "/bin/bash", "-c",
            "echo 'Hello shell demo' > /usr/share/nginx/html/index.html")
    # curl to localhost is the pod's own nginx, which logs the request from 127.0.0.1.
    assert kubectl("exec", "shell-demo", "--", "curl", "-s", "http://localhost/").stdout == "Hello shell demo\n"
    assert until("the access log line", lambda: '127.0.0.1 - - [' in kubectl("logs", "shell-demo").stdout and
                 '"GET / HTTP/1.1" 200 17 "-" "curl/7.88.1"' in kubectl("logs", "shell-demo").stdout, timeout=10)
    # The lab has no route to the internet: apt answers as on such a cluster, and finds no package to install.
    update = kubectl("exec", "shell-demo", "--", "apt-get", "update")
    assert "Temporary failure resolving 'deb.debian.org'" in update.stdout
    assert "W: Some index files failed to download." in update.stderr
    install = kubectl("exec", "shell-demo", "--", "apt-get", "install", "-y", "procps", check=False)
    assert install.returncode == 100 and "E: Unable to locate package procps" in install.stderr
    assert kubectl("exec", "shell-demo", "--", "env").stdout.count("HOSTNAME=shell-demo\n") == 1


def test_the_probes_tutorials_file_is_there_and_then_gone(lab, namespace, kubectl):
    # https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/
    # (pods/probe/exec-liveness.yaml), as published; what the tutorial has the reader look at inside it.
    lk.apply(lab, {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"test": "liveness"},
                                                                   "name": "liveness-exec"},
                   "spec": {"containers": [{
                       "name": "liveness", "image": "registry.k8s.io/busybox:1.27.2",
                       "args": ["/bin/sh", "-c", "touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600"],
                       "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                                         "initialDelaySeconds": 5, "periodSeconds": 5}}]}}, namespace=namespace)
    running(lab, namespace, "liveness-exec")
    until("/tmp/healthy in the container",
          lambda: kubectl("exec", "liveness-exec", "--", "cat", "/tmp/healthy", check=False).returncode == 0,
          timeout=10)
    gone = until("/tmp/healthy gone", lambda: (p := kubectl("exec", "liveness-exec", "--", "cat", "/tmp/healthy",
                                                             check=False)).returncode and p, timeout=45)
    assert gone.stderr.startswith("cat: can't open '/tmp/healthy': No such file or directory\n")
    # ... and the kubelet's prober saw the same thing.
    def unhealthy() -> Any:
        events = lab.core.list_namespaced_event(namespace, field_selector="involvedObject.name=liveness-exec").items
        return next((e for e in events if e.reason == "Unhealthy"), None)
    event = until("the Unhealthy event", unhealthy, timeout=30)
    assert "cat: can't open '/tmp/healthy': No such file or directory" in event.message


@pytest.fixture
def forward(lab: lk.Lab, namespace: str) -> Iterator[Callable[[str, int], tuple[int, subprocess.Popen[str]]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(target: str, port: int) -> tuple[int, subprocess.Popen[str]]:
        proc = subprocess.Popen([str(binary_paths()["kubectl"]), "--kubeconfig", str(lab.kubeconfig), "-n", namespace,
                                 "port-forward", target, f":{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
        assert m, f"kubectl port-forward said {line!r}"
        return int(m.group(1)), proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def get(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_port_forward_reaches_nginx_and_its_log_counts_the_requests(lab, namespace, kubectl, forward):
    lk.apply(lab, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}},
             namespace=namespace)
    lk.apply(lab, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 80}]}},
             namespace=namespace)
    running(lab, namespace, "web")
    port, _ = forward("pod/web", 80)
    status, body, headers = get(f"http://127.0.0.1:{port}/")
    assert status == 200 and "<title>Welcome to nginx!</title>" in body and headers["Server"] == "nginx/1.27"
    status, body, _ = get(f"http://127.0.0.1:{port}/missing")
    assert status == 404 and "<center><h1>404 Not Found</h1></center>" in body
    # One world: what exec writes into the document root is what the server serves.
    kubectl("exec", "web", "--", "sh", "-c", "echo hello from exec > /usr/share/nginx/html/hello.html")
    assert get(f"http://127.0.0.1:{port}/hello.html")[1] == "hello from exec\n"
    log = kubectl("logs", "web").stdout.splitlines()
    assert log[0].startswith("/docker-entrypoint.sh: ")
    assert any(line.endswith("[notice] 1#1: start worker processes") for line in log)
    access = [line for line in log if line.startswith("127.0.0.1 - - [")]
    assert [line.split('"')[1] for line in access] == ["GET / HTTP/1.1", "GET /missing HTTP/1.1",
                                                       "GET /hello.html HTTP/1.1"]
    assert re.search(r'\] "GET /missing HTTP/1\.1" 404 \d+ "-" "Python-urllib/[\d.]+" "-"$', access[1])
    assert any('open() "/usr/share/nginx/html/missing" failed (2: No such file or directory)' in line for line in log)
    # Through the Service too: kubectl picks a pod behind it and its target port.
    port, _ = forward("service/web", 8080)
    assert get(f"http://127.0.0.1:{port}/")[0] == 200


def test_port_forward_to_a_port_nothing_listens_on(lab, namespace, forward):
    lk.apply(lab, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "quiet"},
                   "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}},
             namespace=namespace)
    running(lab, namespace, "quiet")
    port, proc = forward("pod/quiet", 80)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)  # noqa: S310 - loopback
    proc.kill()
    _, err = proc.communicate(timeout=10)
    assert "connect: connection refused" in err


def test_the_debug_services_page_from_inside_a_pod(lab, namespace, kubectl):
    # https://kubernetes.io/docs/tasks/debug/debug-application/debug-service/, its commands as the page gives them
    # (the page's `kubectl run -it --rm busybox ... sh` session as separate execs).
    kubectl("create", "deployment", "hostnames", "--image=registry.k8s.io/serve_hostname")
    kubectl("scale", "deployment", "hostnames", "--replicas=3")
    kubectl("expose", "deployment", "hostnames", "--port=80", "--target-port=9376")
    lk.apply(lab, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busybox"},
                   "spec": {"containers": [{"name": "busybox", "image": "busybox:1.28",
                                            "command": ["sleep", "3600"]}]}}, namespace=namespace)
    lk.wait_for(lab, "Deployment", "hostnames", namespace=namespace, timeout=60,
                condition="jsonpath={.status.readyReplicas}=3")
    running(lab, namespace, "busybox")
    backends = set(kubectl("get", "pods", "-l", "app=hostnames", "-o", "name").stdout.replace("pod/", "").split())
    answered = until("all 3 endpoints ready", lambda: kubectl("get", "endpointslices", "-l",
                     "kubernetes.io/service-name=hostnames", "-o", "jsonpath={..endpoints[*].conditions.ready}"
                     ).stdout.split() == ["true"] * 3, timeout=30)
    assert answered
    seen = {kubectl("exec", "busybox", "--", "wget", "-qO-", "hostnames").stdout for _ in range(20)}
    assert seen <= backends and len(seen) > 1  # kube-proxy spreads them: 20 tries all on one of 3 is ~1e-9
    fqdn = f"hostnames.{namespace}.svc.cluster.local"
    assert kubectl("exec", "busybox", "--", "sh", "-c", f"wget -qO- {fqdn}").stdout in backends
    ip = lab.core.read_namespaced_service("hostnames", namespace).spec.cluster_ip
    assert kubectl("exec", "busybox", "--", "nslookup", "hostnames").stdout.endswith(
        f"Name:\t{fqdn}\nAddress: {ip}\n\n")
    missing = kubectl("exec", "busybox", "--", "nslookup", "hostnamez", check=False)
    assert missing.returncode == 1 and f"** server can't find hostnamez.{namespace}.svc.cluster.local: NXDOMAIN" \
        in missing.stdout
    assert kubectl("exec", "busybox", "--", "wget", "-qO-", "hostnamez", check=False).stderr == (
        "wget: bad address 'hostnamez'\ncommand terminated with exit code 1\n")
    # The page's loop over the backends' pod IPs, as a pod's own script: it ends, so it runs for real (it is not a
    # client loop of the workload model) and its log is what each backend answered.
    ips = kubectl("get", "pods", "-l", "app=hostnames", "-o", "jsonpath={.items[*].status.podIP}").stdout.split()
    kubectl("run", "each-backend", "--image=busybox:1.28", "--restart=Never", "--command", "--", "sh", "-c",
            f"for ip in {' '.join(ips)}; do wget -qO- $ip:9376; echo; done")
    lk.wait_for(lab, "Pod", "each-backend", namespace=namespace, timeout=60,
                condition="jsonpath={.status.phase}=Succeeded")
    assert set(kubectl("logs", "each-backend").stdout.split()) == backends
    # No endpoints: kube-proxy rejects the connection.
    kubectl("scale", "deployment", "hostnames", "--replicas=0")
    refused = until("no endpoints", lambda: (p := kubectl("exec", "busybox", "--", "wget", "-qO-", "hostnames",
                                                          check=False)).returncode and p, timeout=60)
    assert refused.stderr.startswith(f"wget: can't connect to remote host ({ip}): Connection refused\n")


def test_kubectl_run_i_reaches_the_containers_stdin(lab, namespace, kubectl):
    # The Debug Services page's `kubectl run -it --rm --restart=Never busybox --image=... sh`, with a script for the
    # person typing: what is sent reaches the container's stdin, what it prints comes back, and --rm removes it.
    done = kubectl("run", "-i", "--rm", "--restart=Never", "reader", "--image=busybox:1.36", "--", "sh", "-c",
                   'read x; echo "got $x"', stdin="hello\n")
    assert "got hello\n" in done.stdout, (done.stdout, done.stderr)
    assert kubectl("get", "pod", "reader", check=False).returncode != 0  # deleted
    # A container without stdin has nothing to attach to, and kubectl says what to use instead.
    lk.apply(lab, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "quiet"},
                   "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}},
             namespace=namespace)
    running(lab, namespace, "quiet")
    refused = kubectl("attach", "quiet", check=False)
    assert refused.returncode != 0 and "kubectl exec -it POD -- sh" in refused.stderr


def test_the_debug_running_pods_pages_ephemeral_container(lab, namespace, kubectl):
    # https://kubernetes.io/docs/tasks/debug/debug-application/debug-running-pod/#ephemeral-container-example
    kubectl("run", "ephemeral-demo", "--image=registry.k8s.io/pause:3.1", "--restart=Never")
    running(lab, namespace, "ephemeral-demo")
    no_shell = kubectl("exec", "ephemeral-demo", "--", "sh", check=False)
    assert 'exec: "sh": executable file not found in $PATH' in no_shell.stderr
    debug = kubectl("debug", "-i", "ephemeral-demo", "--image=busybox:1.28", "--target=ephemeral-demo",
                    stdin="hostname\nexit 3\n", check=False)
    assert "ephemeral-demo\n" in debug.stdout, (debug.stdout, debug.stderr)
    name = lab.core.read_namespaced_pod("ephemeral-demo", namespace).spec.ephemeral_containers[0].name
    def terminated() -> Any:
        pod = lab.core.read_namespaced_pod("ephemeral-demo", namespace)
        return next((s.state.terminated for s in pod.status.ephemeral_container_statuses or [] if s.name == name),
                    None)

    ended = until("the debug container's end", terminated, timeout=30)
    assert (ended.exit_code, ended.reason) == (3, "Error")
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=ephemeral-demo", "-o",
                     "jsonpath={range .items[*]}{.involvedObject.fieldPath} {.reason}{'\\n'}{end}").stdout
    assert f"spec.ephemeralContainers{{{name}}} Started" in events
