"""What answers ``kubectl port-forward`` on the embedded cluster: the pod's image, as the catalog describes it.

labkit's kubelet server (``labkit/data/kubelet-server/main.go``) hands each forwarded connection here, after one
line naming the pod and port (``{"namespace", "pod", "uid", "port"}``). This answers ``OK`` and then speaks HTTP as
the image would, or answers the runtime's error when nothing in the pod listens on that port (kubectl prints it and
curl gets an empty reply, as on a real cluster):

- ``nginx``: the files under ``/usr/share/nginx/html`` of the container's sandbox (what ``kubectl exec`` sees and
  may change), nginx's 404 page otherwise; each request writes nginx's access-log line (stdout) and, for a missing
  file, its error-log line (stderr) to the container's log;
- ``httpd``: ``/usr/local/apache2/htdocs`` likewise, Apache's common log format;
- ``hpa-example``: ``OK!`` (the HPA walkthrough's php-apache);
- ``agnhost``: ``netexec`` (``/hostname``, ``/echo?msg=``, ``/healthz``, ``/``) and ``serve-hostname``; the
  ``serve_hostname`` image of the Debug Services page: its pod's name.

Which port a container listens on: the image's (nginx, httpd and php-apache 80; agnhost's ``--http-port`` or
``--port``, 8080 and 9376 by default). A container the catalog says nothing about does not listen.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ..cluster.stages import Catalog, normalise
from . import pod_logs, sandbox

log = logging.getLogger("labkit.sim.responder")

Obj = dict[str, Any]

DOCROOTS = {"nginx": "/usr/share/nginx/html", "httpd": "/usr/local/apache2/htdocs"}
DEFAULT_PORTS = {"nginx": 80, "httpd": 80, "hpa-example": 80, "serve-hostname": 9376}
AGNHOST_PORTS = {"netexec": ("--http-port", 8080), "serve-hostname": ("--port", 9376)}
HELLO_MAX = 4096
# How long one forwarded connection may sit idle (a browser's keep-alive) before it is closed.
IDLE_S = 60.0


def listening_port(container: Obj, serves: str | None) -> int | None:
    """The port the container's image listens on, or None."""
    if serves in DEFAULT_PORTS:
        return DEFAULT_PORTS[serves]
    if serves == "agnhost":
        args = [*(container.get("command") or [])[1:], *(container.get("args") or [])]
        if not args or args[0] not in AGNHOST_PORTS:
            return None
        flag, port = AGNHOST_PORTS[args[0]]
        for i, arg in enumerate(args):
            if arg.startswith(flag + "="):
                return int(arg.split("=", 1)[1])
            if arg == flag and i + 1 < len(args):
                return int(args[i + 1])
        return port
    return None


def default_body(pod: Obj, catalog: Catalog) -> str | None:
    """What the pod answers to ``GET /`` as its image ships (the catalog's index page, php-apache's ``OK!``), or
    None when the catalog does not say (the workload model's clients print it: ``wget -q -O-``)."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        repo = catalog.repositories.get(normalise(c.get("image", "")).repo)
        serves = repo.serves if repo else None
        if serves in DOCROOTS:
            return repo.files.get(f"{DOCROOTS[serves]}/index.html") if repo else None
        if serves == "hpa-example":
            return "OK!"
    return None


def refused(port: int, pod_uid: str) -> str:
    """containerd's words when nothing listens on the port inside the pod's network namespace."""
    return (f'failed to execute portforward in network namespace "/var/run/netns/cni-{pod_uid[:36]}": failed to '
            f'connect to localhost:{port} inside namespace "{hashlib.sha256(pod_uid.encode()).hexdigest()[:64]}", '
            f"IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: "
            "connect: connection refused")


def not_modelled(pod: Obj, port: int) -> str | None:
    """Why nothing answers on a port a running container declares but whose program does not run here (mongod,
    redis): said plainly, rather than the ``connection refused`` that would claim it is not listening."""
    running = {cs["name"] for cs in (pod.get("status") or {}).get("containerStatuses") or []
               if (cs.get("state") or {}).get("running")}
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c["name"] in running and port in {p.get("containerPort") for p in c.get("ports") or []}:
            return (f"error forwarding port {port} to container {c['name']!r} ({c.get('image', '')}): its program "
                    "does not run on labkit's embedded cluster (no container engine); port-forward answers for the "
                    "images labkit models (nginx, httpd, php-apache, agnhost, serve_hostname: "
                    "labkit/data/stages/README.md). Use kind or a real cluster for this one")
    return None


class Responder:
    """A loopback server for the kubelet server's port-forward connections."""

    def __init__(self, catalog: Catalog, pod: Callable[[str, str], Obj | None], root: Path | None = None) -> None:
        self.catalog = catalog
        self.pod = pod
        self.root = root
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def serve_forever(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True, name="port-forward").start()

    def start(self) -> Responder:
        threading.Thread(target=self.serve_forever, daemon=True, name="responder").start()
        return self

    def target(self, namespace: str, name: str, port: int) -> Site | str:
        """The container listening on ``port`` in the pod, or the error to report."""
        pod = self.pod(namespace, name)
        if pod is None:
            return f'pod not found ("{name}_{namespace}")'
        return site_on(pod, port, self.catalog, self.root) or not_modelled(pod, port) \
            or refused(port, pod["metadata"]["uid"])

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(IDLE_S)
            hello = b""
            try:
                while not hello.endswith(b"\n") and len(hello) < HELLO_MAX:
                    byte = conn.recv(1)
                    if not byte:
                        return
                    hello += byte
                asked = json.loads(hello)
                found = self.target(str(asked["namespace"]), str(asked["pod"]), int(asked["port"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.info("port-forward: bad hello: %s", exc)
                return
            if isinstance(found, str):
                conn.sendall(found.encode() + b"\n")
                return
            conn.sendall(b"OK\n")
            try:
                _handler(found)(conn, ("127.0.0.1", 0), _NoServer())
            except OSError:
                pass


class _NoServer:
    """What BaseHTTPRequestHandler wants of its server when it serves one socket."""

    server_name, server_port = "localhost", 80


def _write_log(pod: Obj, container: Obj, stream: str, line: str) -> None:
    meta = pod["metadata"]
    cs = next((s for s in (pod.get("status") or {}).get("containerStatuses") or []
               if s["name"] == container["name"]), {})
    path = pod_logs.container_log(meta["namespace"], meta["name"], meta["uid"], container["name"],
                                  int(cs.get("restartCount") or 0))
    if path.parent.is_dir():
        with path.open("a") as f:
            f.write(pod_logs.cri_line(time.time(), stream, line))


class Site:
    """One container answering HTTP as its image does: its pages, status codes and log lines."""

    def __init__(self, pod: Obj, container: Obj, serves: str, root: Path | None = None) -> None:
        self.pod, self.container, self.serves, self.root = pod, container, serves, root
        image = normalise(container.get("image", ""))
        self.version = (image.tag or "latest").split("-")[0]
        self.hostname, _ = sandbox.pod_hostname(pod)
        self.server = {"nginx": f"nginx/{self.version}", "httpd": f"Apache/{self.version} (Unix)",
                       "hpa-example": "Apache/2.4.10 (Debian)"}.get(serves, "")
        self.requests = 0

    def content(self, target: str, *, request_line: str, client: str = "127.0.0.1",
                host: str = "localhost") -> tuple[int, bytes, str]:
        """``(status, body, content type)`` for ``GET target``; a missing file also writes nginx's error line."""
        self.requests += 1
        url = urllib.parse.urlsplit(target)
        serves = self.serves
        if serves in DOCROOTS:
            rel = PurePosixPath(urllib.parse.unquote(url.path))
            parts = [p for p in rel.parts if p not in ("/", "..", ".")]
            inside = "/".join([DOCROOTS[serves], *parts])
            found = sandbox.host_path(self.pod, self.container, inside, self.root)
            if found is not None and found.is_dir():
                found = sandbox.host_path(self.pod, self.container, inside + "/index.html", self.root)
            if found is not None and found.is_file():
                return 200, found.read_bytes(), "text/html"
            if serves == "nginx":
                stamp = datetime.now(UTC).strftime("%Y/%m/%d %H:%M:%S")
                _write_log(self.pod, self.container, "stderr",
                           f'{stamp} [error] 29#29: *{self.requests} open() "{DOCROOTS[serves]}{url.path}" failed '
                           f'(2: No such file or directory), client: {client}, server: localhost, request: '
                           f'"{request_line}", host: "{host}"')
                return 404, (f"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 "
                             f"Not Found</h1></center>\r\n<hr><center>nginx/{self.version}</center>\r\n</body>\r\n"
                             "</html>\r\n").encode(), "text/html"
            return 404, (b'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>404 Not Found'
                         b"</title>\n</head><body>\n<h1>Not Found</h1>\n<p>The requested URL was not found on this "
                         b"server.</p>\n</body></html>\n"), "text/html; charset=iso-8859-1"
        if serves == "hpa-example":
            return 200, b"OK!", "text/html; charset=UTF-8"
        query = urllib.parse.parse_qs(url.query)
        if serves == "serve-hostname" or url.path == "/hostname" or (
                self.container.get("args") or [""])[0] == "serve-hostname":
            return 200, self.hostname.encode(), "text/plain; charset=utf-8"
        if url.path == "/echo":
            return 200, (query.get("msg") or [""])[0].encode(), "text/plain; charset=utf-8"
        if url.path == "/healthz":
            return 200, b"", "text/plain; charset=utf-8"
        if url.path == "/":
            now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC")
            return 200, f"NOW: {now}".encode(), "text/plain; charset=utf-8"
        return 404, b"404 page not found\n", "text/plain; charset=utf-8"

    def access_log(self, request_line: str, status: int, size: int, *, client: str = "127.0.0.1",
                   agent: str = "-", referer: str = "-") -> None:
        """The image's access-log line for one request (nginx's combined format, Apache's common one)."""
        stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        if self.serves == "nginx":
            line = f'{client} - - [{stamp}] "{request_line}" {status} {size} "{referer}" "{agent}" "-"'
        elif self.serves in ("httpd", "hpa-example"):
            line = f'{client} - - [{stamp}] "{request_line}" {status} {size}'
        else:
            return  # agnhost logs no requests
        _write_log(self.pod, self.container, "stdout", line)


def site_on(pod: Obj, port: int, catalog: Catalog, root: Path | None = None) -> Site | None:
    """The running container of ``pod`` that listens on ``port``, as a :class:`Site`; None when none does."""
    running = {cs["name"] for cs in (pod.get("status") or {}).get("containerStatuses") or []
               if (cs.get("state") or {}).get("running")}
    for c in (pod.get("spec") or {}).get("containers") or []:
        repo = catalog.repositories.get(normalise(c.get("image", "")).repo)
        serves = repo.serves if repo else None
        if c["name"] in running and listening_port(c, serves) == port:
            return Site(pod, c, str(serves), root)
    return None


def _handler(site: Site) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = site.server
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's names
            self._answer(head=True)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(head=False)

        def _answer(self, *, head: bool) -> None:
            status, body, ctype = site.content(self.path, request_line=self.requestline,
                                               host=self.headers.get("Host", "localhost"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if site.serves == "nginx":
                self.send_header("Connection", "keep-alive")
            self.end_headers()
            if not head:
                self.wfile.write(body)
            site.access_log(self.requestline, status, len(body), agent=self.headers.get("User-Agent", "-"),
                            referer=self.headers.get("Referer", "-"))

        def version_string(self) -> str:
            return self.server_version

        def date_time_string(self, timestamp: float | None = None) -> str:
            return email.utils.formatdate(timestamp, usegmt=True)

    return Handler
