"""The embedded cluster's container runtime: what runs inside a simulated container, and what it prints.

KWOK's Stages say *when* a container starts, restarts and stops. This module, run by labkit's kubelet process
(:mod:`labkit.sim.kubelet`), follows those starts and makes each one real where it can:

- every running container gets its sandbox (:mod:`labkit.sim.sandbox`) and an exec spec, so ``kubectl exec`` and
  ``kubectl cp`` reach it through labkit's kubelet server; a container that is not running has none
  (``container not found``), as on a node;
- a container whose command is a busybox program (``sh -c "..."``, ``sleep``, ``echo``: the documentation's
  counters, ``touch``/``rm`` of probe files) runs for real in that sandbox: its output is the container's log, its
  files are what ``kubectl exec`` sees. The Stages stop it when they say the container ended (and start a new one on
  a restart). A command that requests a URL over and over (``while sleep 1; do wget ...; done``) stays modelled:
  it is a client of the workload model (:func:`labkit.sim.workload.request_loop`); any other use of the network
  (``nslookup web-0.web``, a ``for`` loop over pod IPs) runs for real through the Service network
  (:mod:`.service_net`);
- a container the catalog knows how the image logs (nginx's entrypoint) prints those start-up lines;
- the log files are where a kubelet keeps them (:mod:`labkit.sim.pod_logs`: CRI format, ``/var/log/pods`` and
  ``/var/log/containers``), and each pod gets KWOK's ``Logs`` object, so ``kubectl logs`` (``-c``, ``-f``,
  ``--previous``, ``--since``, ``--tail``, ``--timestamps``) and the log agent read the same lines.

The workload model (lesson add-on) appends the request lines of the traffic it routes to the same files.
"""

from __future__ import annotations

import logging
import os
import pty
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..cluster.stages import RUNTIME_ANNOTATION, Catalog, normalise
from . import pod_logs, sandbox, service_net
from .workload import request_loop

log = logging.getLogger("labkit.sim.runtime")

Obj = dict[str, Any]

# At most this many containers run for real at once (a 1,000-pod benchmark must not fork 1,000 shells); the rest
# are modelled, and `labkit status` says so through the log line below.
MAX_REAL = 150
# How long a stopped container gets between SIGTERM and SIGKILL (the Stages already waited its grace period).
STOP_GRACE_S = 1.0
READ_CHUNK = 65536


def start_lines(catalog: Catalog, image: str, at: float, ip: str = "") -> list[tuple[float, str, str]]:
    """What the image prints when it starts (``start_log`` in the catalog): ``(time, stream, text)``."""
    ref = normalise(image)
    repo = catalog.repositories.get(ref.repo)
    lines = repo.start_log if repo else []
    stamp = datetime.fromtimestamp(at, UTC)
    values = {"date": stamp.strftime("%Y/%m/%d %H:%M:%S"), "tag": (ref.tag or "latest").split("-")[0], "ip": ip,
              "apache_date": stamp.strftime("%a %b %d %H:%M:%S.%f %Y")}
    out = []
    for stream, text in lines:
        try:
            out.append((at, stream, text.format(**values)))
        except (KeyError, IndexError, ValueError):
            out.append((at, stream, text))
    return out


@dataclass
class Process:
    """One container start that runs for real."""

    key: tuple[str, str]     # (pod uid, container)
    popen: subprocess.Popen[bytes]
    log_file: Path
    buffers: dict[str, bytes]
    started_at: str          # the container status's startedAt: which start of the container this is
    reports_exit: bool       # the pod's first container: its exit ends the container (sim.labkit.io/exit)
    stopped: bool = False    # the Stages ended it first (a liveness kill, the pod's deletion): no exit to report
    stdin_fd: int | None = None  # `stdin: true`: where what `kubectl attach` sends goes (a pipe, or the terminal)
    attach: Attach | None = None


class Attach:
    """`kubectl attach` to one process (a container with ``stdin: true``): a unix socket that labkit's kubelet server
    dials; what a client sends goes to the process's stdin, what the process prints goes to every client."""

    def __init__(self, path: Path, stdin_fd: int, *, once: bool, tty: bool) -> None:
        self.path, self.stdin_fd, self.once, self.tty = path, stdin_fd, once, tty
        self.clients: list[socket.socket] = []
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        threading.Thread(target=self._accept, daemon=True, name="attach").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.clients.append(conn)
            threading.Thread(target=self._input, args=(conn,), daemon=True, name="attach-in").start()

    def _input(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(READ_CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            try:
                os.write(self.stdin_fd, data)
            except OSError:
                break
        if self.once:  # stdinOnce: the first attach's end is the end of the container's stdin
            self.end_of_input()

    def end_of_input(self) -> None:
        try:
            if self.tty:
                os.write(self.stdin_fd, b"\x04")  # the terminal's end of file
            else:
                os.close(self.stdin_fd)
        except OSError:
            pass

    def send(self, chunk: bytes) -> None:
        with self.lock:
            for conn in list(self.clients):
                try:
                    conn.sendall(chunk)
                except OSError:
                    self.clients.remove(conn)

    def close(self) -> None:
        with self.lock:
            for conn in self.clients:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self.clients.clear()
        self.sock.close()
        self.path.unlink(missing_ok=True)


class Runtime:
    """Follows the Stages' container starts; runs, logs and tears down what is inside them."""

    def __init__(self, catalog: Catalog, *, apply_logs: Callable[[Obj], None],
                 claim_dir: Callable[[str, str], Path | None] = lambda ns, claim: None,
                 on_exit: Callable[[str, str, str, int], None] = lambda uid, container, started, code: None,
                 spool: service_net.Spool | None = None, root: Path | None = None) -> None:
        self.catalog = catalog
        self.apply_logs = apply_logs
        self.on_exit = on_exit
        self.spool = spool
        self.claim_dir = claim_dir
        self.root = root or sandbox.runtime_dir()
        self.usable = sandbox.tools() is not None
        self.starts: dict[tuple[str, str], str] = {}    # (uid, container) -> container ID it last set up
        self.runs: dict[str, dict[str, pod_logs.Run]] = {}  # uid -> container -> its current start (Logs object)
        self.procs: dict[tuple[str, str], Process] = {}
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._io = threading.Thread(target=self._pump, name="runtime-io", daemon=True)
        self._io.start()
        if not self.usable:
            log.warning(sandbox.MISSING_TOOLS)

    def command_of(self, c: Obj) -> list[str] | None:
        """The argv this container runs for real, or None when it is modelled."""
        repo = self.catalog.repositories.get(normalise(c.get("image", "")).repo)
        command = sandbox.real_command(c, no_entrypoint=repo is not None and repo.base == "busybox")
        # A loop of requests to a Service is the workload model's client, which is the truth for its requests.
        return command if command is not None and request_loop(command) is None else None

    def will_run(self, pod: Obj) -> bool:
        """Whether the pod's first container will run for real (decided once, before it starts: the Stages then
        leave its end to its process)."""
        first = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        real_pods = {uid for uid, _ in self.procs}
        return self.usable and self.command_of(first) is not None and len(real_pods) < MAX_REAL

    # -- following the Stages
    def sync(self, pod: Obj, objects: sandbox.Objects) -> None:
        """Bring the pod's containers in line with what its status says (called on every pod change)."""
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        uid = meta["uid"]
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            self.forget(pod, remove=False)
            return
        containers = {c["name"]: c for c in [*(spec.get("containers") or []), *(spec.get("ephemeralContainers") or [])]}
        changed = False
        for cs in [*(status.get("containerStatuses") or []), *(status.get("ephemeralContainerStatuses") or [])]:
            c = containers.get(cs["name"])
            if c is None:
                continue
            key = (uid, cs["name"])
            cid = pod_logs.container_id(cs)
            running = (cs.get("state") or {}).get("running")
            if not running or not cid:
                if key in self.starts:
                    self._stop(key)
                    self.starts.pop(key, None)
                    spec_file = self.root / "exec" / meta["namespace"] / meta["name"] / f"{cs['name']}.json"
                    spec_file.unlink(missing_ok=True)
                continue
            if self.starts.get(key) == cid:
                continue
            self._stop(key)
            self.starts[key] = cid
            self._start(pod, c, cs, cid, objects)
            changed = True
        if changed:
            self.apply_logs(pod_logs.logs_object(pod, self.runs.get(uid, {})))

    def forget(self, pod: Obj, *, remove: bool) -> None:
        """Stop the pod's processes; with ``remove`` (the pod is gone), delete its sandboxes too."""
        uid = pod["metadata"]["uid"]
        for key in [k for k in self.starts if k[0] == uid]:
            self._stop(key)
            self.starts.pop(key, None)
        sandbox.remove_exec_specs(pod["metadata"]["namespace"], pod["metadata"]["name"], self.root)
        if remove:
            self.runs.pop(uid, None)
            if self.spool is not None:
                self.spool.remove(uid)
            sandbox.remove_pod(pod, self.root)

    def _start(self, pod: Obj, c: Obj, cs: Obj, cid: str, objects: sandbox.Objects) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        restart = int(cs.get("restartCount") or 0)
        started = pod_logs.status_time((cs.get("state") or {}).get("running", {}).get("startedAt")) or time.time()
        path = pod_logs.link_container_log(pod_logs.log_root(), ns, name, uid, c["name"], restart, cid)
        pod_logs.point_current(ns, name, uid, c["name"], restart)
        run = pod_logs.Run(ns, name, uid, c["name"], restart, cid, started)
        self.runs.setdefault(uid, {})[c["name"]] = run
        fresh = path.stat().st_size == 0
        if not self.usable:
            return
        claims = {}
        for v in (pod.get("spec") or {}).get("volumes") or []:
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and (folder := self.claim_dir(ns, claim)) is not None:
                claims[claim] = folder
        repo = self.catalog.repositories.get(normalise(c.get("image", "")).repo)
        try:
            argv = sandbox.prepare(pod, c, objects, root=self.root, claim_dirs=claims,
                                   image_files=repo.files if repo else None,
                                   programs=self.catalog.programs(c.get("image", "")))
        except OSError as exc:
            log.warning("%s/%s %s: no sandbox: %s", ns, name, c["name"], exc)
            return
        sandbox.write_exec_spec(ns, name, c["name"], argv, self.root)
        if self.spool is not None:
            self.spool.add(uid, service_net.spool_dir(sandbox.pod_dir(pod, self.root)))
        command = self.command_of(c)
        ephemeral = c["name"] in {e["name"] for e in pod["spec"].get("ephemeralContainers") or []}
        if ephemeral and command is None and not c.get("command") and not c.get("args") and \
                repo is not None and repo.base == "busybox":
            command = ["sh"]  # `kubectl debug`'s busybox: its image's CMD
        first = c["name"] == pod["spec"]["containers"][0]["name"]
        # The kubelet process ends an ephemeral container itself (the Stages do not know them).
        real = ephemeral or (meta.get("annotations") or {}).get(RUNTIME_ANNOTATION) == "real"
        started_at = str((cs.get("state") or {}).get("running", {}).get("startedAt") or "")
        if not fresh:
            return  # this start's output is written already (the kubelet process restarted)
        if command is None:
            run.write(start_lines(self.catalog, c.get("image", ""), started,
                                  str((pod.get("status") or {}).get("podIP") or "")))
            return
        if len(self.procs) >= MAX_REAL and not ((first or ephemeral) and real):
            log.warning("%s/%s %s: %d containers run already; this one is modelled", ns, name, c["name"], MAX_REAL)
            return
        stdin, tty = bool(c.get("stdin")), bool(c.get("stdin")) and bool(c.get("tty"))
        try:
            if tty:  # `kubectl run -it`: the process's terminal, whose other end `kubectl attach` reaches
                master, slave = pty.openpty()
                # Its own session without a controlling terminal: the shell says "job control turned off" (made
                # the terminal's, dash failed to set its process group across the sandbox's PID namespace).
                popen = subprocess.Popen([*argv, *command], stdin=slave, stdout=slave, stderr=slave,
                                         start_new_session=True)
                os.close(slave)
            else:
                popen = subprocess.Popen([*argv, *command], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            log.warning("%s/%s %s: could not start: %s", ns, name, c["name"], exc)
            if (first or ephemeral) and real:
                self.on_exit(uid, c["name"], started_at, 128)
            return
        proc = Process((uid, c["name"]), popen, path, {"stdout": b"", "stderr": b""}, started_at,
                       (first or ephemeral) and real)
        if stdin:
            if tty:
                proc.stdin_fd = master
            else:  # its own descriptor, so that closing it is the process's end of input, whatever Popen closes
                proc.stdin_fd = os.dup(popen.stdin.fileno())  # type: ignore[union-attr]
                popen.stdin.close()  # type: ignore[union-attr]
            proc.attach = Attach(self.root / "attach" / ns / name / f"{c['name']}.sock", proc.stdin_fd,
                                 once=bool(c.get("stdinOnce")), tty=tty)
        with self._lock:
            self.procs[proc.key] = proc
            if tty:
                self._selector.register(master, selectors.EVENT_READ, (proc, "stdout"))
            else:
                assert popen.stdout is not None and popen.stderr is not None
                self._selector.register(popen.stdout, selectors.EVENT_READ, (proc, "stdout"))
                self._selector.register(popen.stderr, selectors.EVENT_READ, (proc, "stderr"))
        os.write(self._wake_w, b"x")
        log.info("%s/%s %s: running %s", ns, name, c["name"], " ".join(command)[:120])

    def _stop(self, key: tuple[str, str]) -> None:
        with self._lock:
            proc = self.procs.pop(key, None)
        if proc is None or proc.popen.poll() is not None:
            return
        proc.stopped = True
        if proc.attach is not None:
            proc.attach.close()
        try:
            os.killpg(proc.popen.pid, signal.SIGTERM)
            proc.popen.wait(STOP_GRACE_S)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def sweep(self, alive: set[str]) -> None:
        """Remove what pods that went while no kubelet process ran left: their sandboxes, exec specs and attach
        sockets (``alive``: the pod UIDs that exist now)."""
        for folder in (self.root / "pods").glob("*_*_*"):
            if folder.name.rsplit("_", 1)[-1] not in alive:
                shutil.rmtree(folder, ignore_errors=True)
        for kind in ("exec", "attach"):
            shutil.rmtree(self.root / kind, ignore_errors=True)  # every running container's is made again

    def stop_all(self) -> None:
        for key in list(self.procs):
            self._stop(key)

    # -- output: one thread for every process's pipes
    def _pump(self) -> None:
        while True:
            for selkey, _ in self._selector.select(timeout=1.0):
                if selkey.data is None:
                    os.read(self._wake_r, 4096)
                    continue
                proc, stream = selkey.data
                try:
                    chunk = os.read(selkey.fd, READ_CHUNK)
                except OSError:
                    chunk = b""
                if chunk:
                    self._write(proc, stream, chunk)
                    continue
                with self._lock:
                    try:
                        self._selector.unregister(selkey.fileobj)
                    except (KeyError, ValueError):
                        pass
                if isinstance(selkey.fileobj, int):
                    os.close(selkey.fileobj)  # a terminal's master side: EIO once the process has gone
                else:
                    selkey.fileobj.close()
                self._write(proc, stream, b"", final=True)
                if proc.popen.poll() is None and not any(
                        isinstance(k.data, tuple) and k.data[0] is proc for k in self._selector.get_map().values()):
                    try:
                        proc.popen.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
                if proc.popen.poll() is not None:
                    if proc.attach is not None:
                        proc.attach.close()
                    with self._lock:
                        if self.procs.get(proc.key) is proc:
                            del self.procs[proc.key]
                    if proc.reports_exit and not proc.stopped:
                        code = proc.popen.returncode
                        # bwrap passes the program's exit code on; a signal's is 128 + its number, as runc's.
                        threading.Thread(target=self.on_exit, args=(*proc.key, proc.started_at,
                                                                    code if code >= 0 else 128 - code),
                                         daemon=True, name="exit-report").start()

    @staticmethod
    def _write(proc: Process, stream: str, chunk: bytes, *, final: bool = False) -> None:
        if chunk and proc.attach is not None:
            proc.attach.send(chunk)
        data = proc.buffers[stream] + chunk
        *lines, rest = data.split(b"\n")
        if final and rest:
            lines, rest = [*lines, rest], b""
        proc.buffers[stream] = rest
        if not lines:
            return
        now = time.time()
        text = "".join(pod_logs.cri_line(now, stream, line.decode(errors="replace").rstrip("\r")) for line in lines)
        with proc.log_file.open("a") as f:
            f.write(text)

    def report(self) -> Mapping[str, int]:
        return {"running_for_real": len(self.procs), "sandboxes": len(self.starts)}

