"""The Service network as a sandboxed container sees it: ``wget``, ``curl`` and ``nslookup`` to Services and pods.

A sandbox (:mod:`labkit.sim.sandbox`) has its own network namespace with only loopback, so nothing inside reaches
the host's ports. Instead, where the image has these programs, its ``/bin`` holds :data:`CLIENT`: a busybox shell
script that hands the command line to labkit's kubelet process through the pod's spool folder (bound at
``/run/labkit/net``: a request file, then its token on a FIFO) and prints the answer. This module answers as the
cluster would:

- names resolve as cluster DNS resolves them (``web``, ``web.shop``, ``web.shop.svc``,
  ``web.shop.svc.cluster.local``, a Service's cluster IP, a pod's IP); an unknown name does not;
- a Service's request goes to one of its ready endpoints (as kube-proxy picks: at random), to the target port,
  where the pod's image answers (:class:`labkit.sim.responder.Site`: nginx's pages and access log, php-apache's
  ``OK!``, agnhost's ``/hostname``); no ready endpoint: ``Connection refused``;
- the programs' own words and exit codes (busybox wget and nslookup 1.36, curl 7.88).

The pod's spool folder is its own: one container cannot read another pod's requests.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import selectors
import shutil
import stat
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("labkit.sim.service_net")

Obj = dict[str, Any]

PROGRAMS = ("wget", "curl", "nslookup")
SPOOL = "/run/labkit/net"  # where the pod's spool folder is bound in every sandbox
RING = "ring"              # the FIFO a client writes its request's token to
REQUEST_MAX = 65536        # a command line longer than this is cut
# The client waits at most 30 s for its answer. It runs under busybox's own sh (its `read -t`); dash is /bin/sh.
CLIENT = r'''#!/bin/busybox sh
# labkit: this program through the lab's Service network (labkit/sim/service_net.py); the sandbox has no network.
d=/run/labkit/net; t=$(cat /proc/sys/kernel/random/uuid)
mkfifo "$d/$t.wait" && exec 3<>"$d/$t.wait" || exit 1
printf '%s\0' "${0##*/}" "$@" > "$d/$t.tmp" && mv "$d/$t.tmp" "$d/$t.req" && echo "$t" > "$d/ring" || exit 1
read -t 30 _ <&3
[ -e "$d/$t.done" ] || { echo "${0##*/}: no answer from the lab's Service network" >&2; rm -f "$d/$t".*; exit 1; }
f=$(cat "$d/$t.file")
if [ -n "$f" ]; then cat "$d/$t.out" > "$f"; else cat "$d/$t.out"; fi
cat "$d/$t.err" >&2
c=$(cat "$d/$t.code")
rm -f "$d/$t".*
exit "$c"
'''


@dataclass
class Reply:
    """What the program prints and returns; ``file``: where its output goes instead of stdout (wget without -O-)."""

    out: bytes = b""
    err: str = ""
    code: int = 0
    file: str = ""


@dataclass
class Target:
    """Where a name resolved: an IP, and the Service or pod behind it."""

    ip: str
    fqdn: str
    service: Obj | None = None
    pod: Obj | None = None
    also: list[str] = field(default_factory=list)  # a headless Service's other pods' addresses


# -- name resolution ------------------------------------------------------------------------------------------------

def search_names(name: str, namespace: str, domain: str = "cluster.local") -> list[str]:
    """The names resolv.conf's search list tries, in order (ndots:5: a short name is searched first)."""
    name = name.rstrip(".")
    if name.endswith(f".svc.{domain}"):
        return [name]
    return [f"{name}.{namespace}.svc.{domain}", f"{name}.svc.{domain}", f"{name}.{domain}", name]


def resolve(name: str, namespace: str, services: dict[str, dict[str, Obj]], pods: list[Obj]) -> Target | None:
    """``name`` as cluster DNS answers it from ``namespace``: a Service (by name or cluster IP) or a pod (by IP)."""
    try:
        ip = str(ipaddress.ip_address(name))
    except ValueError:
        ip = ""
    if ip:
        for ns, table in services.items():
            for svc_name, svc in table.items():
                if (svc.get("spec") or {}).get("clusterIP") == ip:
                    return Target(ip, f"{svc_name}.{ns}.svc.cluster.local", service=svc)
        for pod in pods:
            if (pod.get("status") or {}).get("podIP") == ip:
                return Target(ip, ip, pod=pod)
        return Target(ip, ip)
    for fqdn in search_names(name, namespace):
        parts = fqdn.split(".")
        if len(parts) == 5 and parts[2:] == ["svc", "cluster", "local"]:
            svc = services.get(parts[1], {}).get(parts[0])
            if not svc:
                continue
            if (svc.get("spec") or {}).get("clusterIP") not in (None, "", "None"):
                return Target(svc["spec"]["clusterIP"], fqdn, service=svc)
            # A headless Service: its ready pods' own addresses.
            selector = (svc.get("spec") or {}).get("selector") or {}
            backends = sorted((p for p in pods if p["metadata"].get("namespace") == parts[1] and selector
                               and selector.items() <= (p["metadata"].get("labels") or {}).items()
                               and (p.get("status") or {}).get("podIP")), key=lambda p: p["metadata"]["name"])
            if backends:
                return Target(backends[0]["status"]["podIP"], fqdn, pod=backends[0],
                              also=[p["status"]["podIP"] for p in backends[1:]])
        if len(parts) == 6 and parts[3:] == ["svc", "cluster", "local"]:
            # A pod's own name under its subdomain (a StatefulSet's `web-0.web`).
            for pod in pods:
                spec = pod.get("spec") or {}
                if (pod["metadata"].get("namespace"), spec.get("hostname") or pod["metadata"]["name"],
                        spec.get("subdomain")) == (parts[2], parts[0], parts[1]) and \
                        (pod.get("status") or {}).get("podIP"):
                    return Target(pod["status"]["podIP"], fqdn, pod=pod)
    return None


LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback", "127.0.0.1", "::1")


def from_hosts_file(name: str, pod: Obj) -> Target | None:
    """``name`` as the pod's ``/etc/hosts`` answers it (libc reads it before DNS, so wget and curl do; nslookup asks
    DNS only): loopback and the pod's own hostname are the pod itself."""
    spec = pod.get("spec") or {}
    hostname = spec.get("hostname") or pod["metadata"]["name"]
    own = {hostname, f"{hostname}.{spec['subdomain']}.{pod['metadata'].get('namespace', 'default')}.svc.cluster.local"
           } if spec.get("subdomain") else {hostname}
    if name in LOOPBACK_NAMES:
        return Target("127.0.0.1", name, pod=pod)
    ip = (pod.get("status") or {}).get("podIP")
    return Target(ip, name, pod=pod) if name in own and ip else None


# -- the programs ---------------------------------------------------------------------------------------------------

Fetch = Callable[[Target, int, str, str], tuple[int, bytes] | str]


def _url(raw: str) -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(raw if "://" in raw else f"http://{raw}")


def wget(args: list[str], namespace: str, resolve_name: Callable[[str], Target | None], fetch: Fetch) -> Reply:
    """busybox wget: ``-q``, ``-O FILE``/``-O-``, ``-T``, ``-S``, ``--spider``, ``-U``."""
    quiet = spider = False
    output = None
    url = ""
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-q", "--quiet"):
            quiet = True
        elif a == "--spider":
            spider = True
        elif a.startswith("-O") or a.startswith("-qO"):
            output = a.split("O", 1)[1] or (args[i + 1] if i + 1 < len(args) else "-")
            i += 0 if a.split("O", 1)[1] else 1
            quiet = quiet or a.startswith("-q")
        elif a in ("-T", "-U", "--header", "-Y", "-P", "-o", "--post-data", "--post-file"):
            i += 1
        elif a.startswith("-"):
            pass
        else:
            url = a
        i += 1
    if not url:
        return Reply(err="BusyBox v1.36.1 (2023-05-18 22:34:17 UTC) multi-call binary.\n\nUsage: wget [-cqS] "
                     "[--spider] [-O FILE] [-o LOGFILE] [--header STR]\n", code=1)
    parts = _url(url)
    host, port = parts.hostname or "", parts.port or 80
    target = resolve_name(host)
    if target is None:
        return Reply(err=f"wget: bad address '{host}'\n", code=1)
    say = "" if quiet else f"Connecting to {host} ({target.ip}:{port})\n"
    got = fetch(target, port, parts.path or "/", "Wget")
    if isinstance(got, str):
        return Reply(err=f"{say}wget: can't connect to remote host ({target.ip}): {got}\n", code=1)
    status, body = got
    if status >= 400:
        reason = {404: "Not Found", 500: "Internal Server Error", 403: "Forbidden"}.get(status, "Error")
        return Reply(err=f"{say}wget: server returned error: HTTP/1.1 {status} {reason}\n", code=1)
    if spider:
        return Reply(err=say + ("" if quiet else "remote file exists\n"))
    name = output if output not in (None, "-") else ""
    if output is None:
        name = (parts.path.rstrip("/").rsplit("/", 1)[-1] or "index.html") if parts.path else "index.html"
    if not quiet:
        shown = name or "-"
        say += ("writing to stdout\n" if not name else f"saving to '{name}'\n")
        say += f"{shown:<20} 100% |********************************| {len(body):>5}  0:00:00 ETA\n"
        say += "written to stdout\n" if not name else f"'{name}' saved\n"
    return Reply(out=body, err=say, file=name)


def curl(args: list[str], namespace: str, resolve_name: Callable[[str], Target | None], fetch: Fetch) -> Reply:
    """curl: ``-s``, ``-f``, ``-o FILE``, ``-I`` (headers only), ``-m``."""
    fail = False
    output = ""
    url = ""
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-o", "--output"):
            output = args[i + 1] if i + 1 < len(args) else ""
            i += 1
        elif a in ("-m", "--max-time", "-H", "--header", "-A", "-d", "--data", "-X", "--connect-timeout"):
            i += 1
        elif a.startswith("-") and not a.startswith("--"):
            fail = fail or "f" in a
        elif not a.startswith("-"):
            url = a
        i += 1
    if not url:
        return Reply(err="curl: try 'curl --help' or 'curl --manual' for more information\n", code=2)
    parts = _url(url)
    host, port = parts.hostname or "", parts.port or 80
    target = resolve_name(host)
    if target is None:
        return Reply(err=f"curl: (6) Could not resolve host: {host}\n", code=6)
    got = fetch(target, port, parts.path or "/", "curl/7.88.1")
    if isinstance(got, str):
        return Reply(err=f"curl: (7) Failed to connect to {host} port {port} after 0 ms: Couldn't connect to "
                         "server\n", code=7)
    status, body = got
    if fail and status >= 400:
        return Reply(err=f"curl: (22) The requested URL returned error: {status}\n", code=22)
    return Reply(out=body, file=output if output not in ("", "-") else "")


def nslookup(args: list[str], namespace: str, resolve_name: Callable[[str], Target | None], dns: str) -> Reply:
    """busybox nslookup: the name's address, or NXDOMAIN for each name of the search list."""
    names = [a for a in args if not a.startswith("-")]
    if not names:
        return Reply(err="BusyBox v1.36.1 multi-call binary.\n\nUsage: nslookup [-type=QUERY_TYPE] [-debug] "
                         "HOST [DNS_SERVER]\n", code=1)
    head = f"Server:\t\t{dns}\nAddress:\t{dns}:53\n\n"
    target = resolve_name(names[0])
    if target is None or (target.service is None and target.pod is None and target.fqdn == target.ip):
        tried = [names[0]] if "." in names[0].rstrip(".") and names[0].count(".") >= 5 else \
            search_names(names[0], namespace)
        text = "".join(f"** server can't find {n}: NXDOMAIN\n\n" for n in tried)
        return Reply(out=(head + text).encode(), code=1)
    answers = "".join(f"Name:\t{target.fqdn}\nAddress: {ip}\n" for ip in [target.ip, *target.also])
    return Reply(out=f"{head}{answers}\n".encode())


# -- the spool: requests from the sandboxes ---------------------------------------------------------------------------

class Spool:
    """Every pod's spool folder and FIFO, and one thread that answers what their clients ask."""

    def __init__(self, answer: Callable[[str, list[str]], Reply]) -> None:
        self.answer = answer                   # (pod uid, argv) -> Reply
        self.selector = selectors.DefaultSelector()
        self.rings: dict[str, tuple[int, Path]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, name="service-net", daemon=True).start()

    def add(self, uid: str, folder: Path) -> None:
        """Make the pod's spool folder and FIFO (idempotent) and listen on it."""
        with self._lock:
            if uid in self.rings:
                return
            folder.mkdir(parents=True, exist_ok=True)
            ring = folder / RING
            if not ring.exists():
                os.mkfifo(ring, 0o622)
            # read-write: no EOF when a client closes it; not through a link the sandbox may have put there
            fd = os.open(ring, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW)
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.close(fd)
                return
            self.rings[uid] = (fd, folder)
            self.selector.register(fd, selectors.EVENT_READ, uid)

    def remove(self, uid: str) -> None:
        with self._lock:
            entry = self.rings.pop(uid, None)
            if entry:
                self.selector.unregister(entry[0])
                os.close(entry[0])

    def _loop(self) -> None:
        while True:
            with self._lock:
                empty = not self.rings
            if empty:
                threading.Event().wait(0.2)
                continue
            for key, _ in self.selector.select(timeout=0.5):
                try:
                    tokens = os.read(key.fd, 65536).decode(errors="replace").split()
                except OSError:
                    continue
                folder = self.rings.get(key.data, (0, None))[1]
                for token in tokens:
                    if folder is not None and token.replace("-", "").isalnum():
                        threading.Thread(target=self._serve, args=(key.data, folder, token), daemon=True).start()

    def _serve(self, uid: str, folder: Path, token: str) -> None:
        # The folder is the sandbox's to write: never follow a link it left there, never write over a file.
        try:
            fd = os.open(folder / f"{token}.req", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return
                data = f.read(REQUEST_MAX)
        except OSError:
            return
        try:
            reply = self.answer(uid, [a.decode(errors="replace") for a in data.split(b"\0")[:-1]])
        except Exception as exc:  # noqa: BLE001 - a client must get an answer, not hang
            log.warning("service network request %s: %s", token, exc)
            reply = Reply(err=f"{exc}\n", code=1)
        try:
            for suffix, content in ((".out", reply.out), (".err", reply.err.encode()), (".file", reply.file.encode()),
                                    (".code", str(reply.code).encode()), (".done", b"")):
                fd = os.open(folder / f"{token}{suffix}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
            (folder / f"{token}.req").unlink(missing_ok=True)
            # Wake the client, which waits on its FIFO (opened read-write before it asked, so this open succeeds).
            fd = os.open(folder / f"{token}.wait", os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    os.write(fd, b"\n")
            finally:
                os.close(fd)
        except OSError as exc:
            log.info("service network reply %s not written: %s", token, exc)


def install_clients(layer: Path, programs: set[str] | None) -> None:
    """Put :data:`CLIENT` in a ``/bin`` layer for the network programs the image has (instead of busybox's)."""
    for name in PROGRAMS:
        if programs is None and name == "curl":
            continue  # busybox has no curl: an image the catalog does not describe gets busybox's programs
        if programs is not None and name not in programs:
            continue
        target = layer / name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_text(CLIENT)
        target.chmod(0o755)


def spool_dir(pod_dir: Path) -> Path:
    return pod_dir / "net"


def remove_spool(pod_dir: Path) -> None:
    shutil.rmtree(spool_dir(pod_dir), ignore_errors=True)


def pick(endpoints: list[str]) -> str:
    """One ready endpoint, as kube-proxy's random choice."""
    return random.choice(endpoints)  # noqa: S311 - load spreading, not security
