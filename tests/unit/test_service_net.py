"""The Service network as sandboxed programs see it (labkit.sim.service_net): names, and wget, curl and nslookup's
own words and exit codes, without a cluster."""

from __future__ import annotations

from labkit.sim import service_net
from labkit.sim.service_net import Target

SERVICES = {"shop": {"web": {"metadata": {"name": "web", "namespace": "shop"},
                             "spec": {"clusterIP": "10.0.0.12", "ports": [{"port": 80}]}},
                     "headless": {"metadata": {"name": "headless", "namespace": "shop"},
                                  "spec": {"clusterIP": "None"}}},
            "default": {"kubernetes": {"metadata": {"name": "kubernetes", "namespace": "default"},
                                       "spec": {"clusterIP": "10.0.0.1"}}}}
PODS = [{"metadata": {"name": "db-0", "namespace": "shop"}, "status": {"podIP": "10.244.1.5"}}]


def _resolve(name: str) -> Target | None:
    return service_net.resolve(name, "shop", SERVICES, PODS)


def test_names_resolve_as_cluster_dns() -> None:
    for name in ("web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local", "10.0.0.12"):
        target = _resolve(name)
        assert target is not None and (target.ip, target.fqdn) == ("10.0.0.12", "web.shop.svc.cluster.local"), name
    assert _resolve("kubernetes.default").ip == "10.0.0.1"
    assert _resolve("kubernetes") is None  # another namespace's Service needs its namespace
    assert _resolve("headless") is None and _resolve("nosuch") is None
    assert _resolve("10.244.1.5").pod is PODS[0]


def _fetch(status: int = 200, body: bytes = b"hello\n") -> service_net.Fetch:
    return lambda target, port, path, agent: (status, body) if port == 80 else "Connection refused"


def test_wget_as_busybox_says_it() -> None:
    quiet = service_net.wget(["-qO-", "http://web"], "shop", _resolve, _fetch())
    assert (quiet.out, quiet.err, quiet.code, quiet.file) == (b"hello\n", "", 0, "")
    saved = service_net.wget(["web/page.html"], "shop", _resolve, _fetch())
    assert saved.file == "page.html" and saved.err.startswith("Connecting to web (10.0.0.12:80)\nsaving to")
    assert service_net.wget(["-q", "-O", "out.txt", "web"], "shop", _resolve, _fetch()).file == "out.txt"
    missing = service_net.wget(["-qO-", "web/x"], "shop", _resolve, _fetch(404))
    assert (missing.err, missing.code) == ("wget: server returned error: HTTP/1.1 404 Not Found\n", 1)
    refused = service_net.wget(["-qO-", "web:8080"], "shop", _resolve, _fetch())
    assert refused.err == "wget: can't connect to remote host (10.0.0.12): Connection refused\n"
    assert service_net.wget(["-qO-", "nosuch"], "shop", _resolve, _fetch()).err == "wget: bad address 'nosuch'\n"


def test_curl_and_nslookup_as_they_say_it() -> None:
    assert service_net.curl(["-s", "http://web"], "shop", _resolve, _fetch()).out == b"hello\n"
    assert service_net.curl(["-sf", "web"], "shop", _resolve, _fetch(500)).code == 22
    assert service_net.curl(["nosuch"], "shop", _resolve, _fetch()).err == "curl: (6) Could not resolve host: nosuch\n"
    found = service_net.nslookup(["web"], "shop", _resolve, "10.0.0.10")
    assert found.out.decode() == ("Server:\t\t10.0.0.10\nAddress:\t10.0.0.10:53\n\n"
                                  "Name:\tweb.shop.svc.cluster.local\nAddress: 10.0.0.12\n\n")
    lost = service_net.nslookup(["nosuch"], "shop", _resolve, "10.0.0.10")
    assert lost.code == 1 and "** server can't find nosuch.shop.svc.cluster.local: NXDOMAIN\n" in lost.out.decode()


def test_a_statefulset_pods_own_name_and_its_headless_service() -> None:
    services = {"shop": {"web": {"metadata": {"name": "web", "namespace": "shop"},
                                 "spec": {"clusterIP": "None", "selector": {"app": "web"}}}}}
    pods = [{"metadata": {"name": f"web-{i}", "namespace": "shop", "labels": {"app": "web"}},
             "spec": {"hostname": f"web-{i}", "subdomain": "web"}, "status": {"podIP": f"10.244.{i}.4"}}
            for i in range(2)]
    one = service_net.resolve("web-1.web", "shop", services, pods)
    assert (one.ip, one.fqdn) == ("10.244.1.4", "web-1.web.shop.svc.cluster.local")
    every = service_net.nslookup(["web"], "shop", lambda n: service_net.resolve(n, "shop", services, pods),
                                 "10.0.0.10").out.decode()
    assert every.endswith("Name:\tweb.shop.svc.cluster.local\nAddress: 10.244.0.4\n"
                          "Name:\tweb.shop.svc.cluster.local\nAddress: 10.244.1.4\n\n")


def test_the_pods_hosts_file_before_dns() -> None:
    pod = {"metadata": {"name": "web-0", "namespace": "shop"}, "spec": {"hostname": "web-0", "subdomain": "web"},
           "status": {"podIP": "10.244.1.9"}}
    for name in ("localhost", "127.0.0.1", "::1"):
        target = service_net.from_hosts_file(name, pod)
        assert target is not None and (target.ip, target.pod) == ("127.0.0.1", pod), name
    assert service_net.from_hosts_file("web-0", pod).ip == "10.244.1.9"
    assert service_net.from_hosts_file("web-0.web.shop.svc.cluster.local", pod).ip == "10.244.1.9"
    assert service_net.from_hosts_file("web", pod) is None  # not in /etc/hosts: cluster DNS answers it
