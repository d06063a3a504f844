"""Running the lab's add-ons: start (with what they need, concurrently), reuse, wait until they answer, report,
stop. State lives in ``<state dir>/addons/``: ``addons.json`` (pid and port of each), ``<name>.pid``, ``<name>.log``,
one folder per add-on (config, data) and ``targets/`` (what Prometheus scrapes, one file per add-on).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import state
from ..cluster.ports import free_port, port_free
from ..errors import ClusterUnreachable, LabkitError, PortInUse
from ..i18n import _
from ..paths import state_dir, write_atomic
from ..settings import in_test
from .base import Addon, Context
from .registry import REGISTRY, Progress, ensure_binary, registered, with_needs

# A deadline, not a wait: on a loaded 2-core machine Karpenter's informers alone took over 90 s to report healthy
# (the loopback test starts every add-on at once).
START_TIMEOUT_S = 180.0
# One readiness probe while waiting for a start: longer than `labkit status`'s, since a supervisor's /healthz asks its
# per-node processes in turn.
READY_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class AddonStatus:
    """One add-on's health, for ``labkit status`` and the notebooks."""

    name: str
    state: str  # running | starting | stopped | missing
    pid: int | None
    url: str | None
    note: str = ""


def addons_dir() -> Path:
    return state_dir() / "addons"


def _targets_dir() -> Path:
    return addons_dir() / "targets"


def _record() -> dict[str, Any]:
    try:
        return json.loads((addons_dir() / "addons.json").read_text())
    except (OSError, ValueError):
        return {}


def _save(record: dict[str, Any]) -> None:
    write_atomic(addons_dir() / "addons.json", json.dumps(record, indent=1))
    for name, info in record.items():
        (addons_dir() / f"{name}.pid").write_text(f"{info['pid']}\n")


def _alive(pid: int | None) -> bool:
    """The process lives, is not a zombie, and is one we started (its command line names this lab's folder)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return str(addons_dir()) in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _exited(pid: int) -> bool:
    """The process we just spawned is gone (or a zombie). Unlike :func:`_alive` this does not read the command line,
    which is still the parent's (labkit's own) until the child has exec'd: on a busy machine, for a while."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _ready(addon: Addon, port: int | None, *, timeout: float = 0.5) -> bool:
    if not port:
        return False
    # An https add-on serves its own self-signed certificate on loopback: nothing to verify it against.
    context = None
    if addon.ready_scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{addon.ready_scheme}://127.0.0.1:{port}{addon.ready_path}",  # noqa: S310
                                    timeout=timeout, context=context) as resp:
            return 200 <= resp.status < 300
    except (OSError, urllib.error.URLError):
        return False


def _pick_port(addon: Addon, previous: int | None) -> int:
    if os.environ.get(addon.port_env):
        port = int(os.environ[addon.port_env])
        if not port_free(port):
            raise PortInUse(f"port {port} on 127.0.0.1 ({addon.port_env}) is taken, so the lab's {addon.name} "
                            "cannot listen there",
                            fix=f"free it (`ss -ltnp 'sport = :{port}'` shows who holds it) or "
                            f"`unset {addon.port_env}` to let labkit pick a free port")
        return port
    return previous if previous and port_free(previous) else free_port()


def _write_targets(addon: Addon, ctx: Context | None) -> None:
    """The add-on's Prometheus targets (file_sd); an empty list once it stops."""
    if addon.metrics_job is None:
        return
    _targets_dir().mkdir(parents=True, exist_ok=True)
    groups = addon.scrape_targets(ctx) if ctx else []
    if ctx and not groups:
        return  # the add-on writes its own targets (the GPU exporter: one per GPU node)
    write_atomic(_targets_dir() / f"{addon.name}.json", json.dumps(groups, indent=1))  # Prometheus reads it any time


def _spawn(addon: Addon, ctx: Context) -> int:
    ctx.folder.mkdir(parents=True, exist_ok=True)
    addon.prepare(ctx)
    log = (addons_dir() / f"{addon.name}.log").open("ab")
    # A new session: the add-on outlives the `labkit up` that started it and ignores its terminal's Ctrl-C.
    proc = subprocess.Popen(addon.command(ctx), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd=ctx.folder, env=addon.env(ctx), start_new_session=True)
    log.close()
    return proc.pid


def _lab_kubeconfig() -> Path:
    path = state.lab_kubeconfig()
    if path is None or not path.exists():
        raise ClusterUnreachable(_("add-ons need the lab cluster, and none is running"), fix="labkit up")
    return path


def start(names: Iterable[str], *, kubeconfig: Path | None = None, progress: Progress = print,
          timeout: float = START_TIMEOUT_S, wait: bool = True,
          build_progress: Progress | None = None) -> list[AddonStatus]:
    """Start the named add-ons (and what they need) that are not running; reuse the rest; wait until they answer.

    Same as ``labkit up --with NAME,...``. Raises when one is not installed or does not answer within ``timeout``.
    ``wait=False`` returns once the processes are spawned (``labkit up`` does not wait for its own add-ons).
    An add-on whose binary is a pinned Go component is built first when it is not cached (``build_progress``
    reports that, default ``progress``).
    """
    wanted = with_needs(names)
    for name in wanted:
        if why := registered(name).missing():
            raise LabkitError(_("add-on {name} cannot start: {why}").format(name=name, why=why),
                              fix=registered(name).install_hint or None)
    for name in wanted:
        if not _alive(_record().get(name, {}).get("pid")):
            ensure_binary(registered(name), build_progress or progress)
    kubeconfig = kubeconfig or _lab_kubeconfig()
    addons_dir().mkdir(parents=True, exist_ok=True)
    record = _record()
    started = []
    for name in wanted:
        info = record.get(name, {})
        if _alive(info.get("pid")):
            continue
        addon = REGISTRY[name]
        port = _pick_port(addon, info.get("port"))
        ports = {n: i["port"] for n, i in record.items() if n != name} | {name: port}
        ctx = Context(kubeconfig=kubeconfig, folder=addons_dir() / name, port=port, ports=ports,
                      targets=_targets_dir() / f"{name}.json")
        record[name] = {"pid": _spawn(addon, ctx), "port": port, "url": addon.url(port)}
        _write_targets(addon, ctx)
        started.append(name)
        _save(record)
    if not wait:
        return [s for s in status() if s.name in wanted]
    # Every process is already starting; wait for them together, so N add-ons cost the slowest one, not the sum.
    # Reused ones are waited for too: a running supervisor answers 503 for a moment while it starts a detector for a
    # node Karpenter just added, and that must not fail a lesson that finds it running.
    deadline = time.monotonic() + timeout
    pending = set(wanted)
    while pending and time.monotonic() < deadline:
        pending = {n for n in pending if not _ready(REGISTRY[n], record[n]["port"], timeout=READY_PROBE_TIMEOUT_S)
                   and not _exited(record[n]["pid"])}
        if pending:
            time.sleep(0.1)
    result = [s for s in status() if s.name in wanted]
    for s in result:
        verb = "started" if s.name in started else "reusing"
        progress(f"{s.name}: {verb if s.state == 'running' else s.state} {s.url or ''} {s.note}".rstrip())
    # Answered during the wait counts: a health page may flip to 503 for a moment afterwards (see above).
    failed = [s for s in result if s.state in ("stopped", "missing") or s.name in pending]
    if failed:
        raise LabkitError(_("add-on(s) did not come up: {addons}").format(
            addons="; ".join(f"{s.name} {s.state} {s.note}" for s in failed)),
            fix=_("read the log named above; `labkit down && labkit up --with NAME` starts afresh"))
    return result


def require(*names: str, progress: Progress | None = None) -> dict[str, str]:
    """Make sure the named add-ons run (starting them if needed); return name -> URL. For lessons and tests.

    Quiet unless ``progress`` is given: a notebook's output must not depend on whether an add-on was already up.
    A first-time build of an add-on's binary (minutes) is reported on stderr, so a long wait never looks hung.
    """
    start(names, progress=progress or (lambda _msg: None), build_progress=progress or _say_build)
    return {s.name: s.url or "" for s in status() if s.name in names}


def _say_build(message: str) -> None:
    """A build's progress line: on stderr for a learner; under test in ``<state dir>/addons/builds.log``, because
    a stored notebook output must not depend on whether the binary cache was warm (a cold CI builds beside the
    notebooks, and strict nbval would read the line as an unexpected stderr output)."""
    if not in_test():
        print(message, file=sys.stderr, flush=True)
        return
    addons_dir().mkdir(parents=True, exist_ok=True)
    with open(addons_dir() / "builds.log", "a", encoding="utf-8") as log:
        log.write(f"{time.strftime('%H:%M:%S')} {message}\n")


def status() -> list[AddonStatus]:
    """Each registered add-on's state; a missing binary says how to install it."""
    record = _record()
    out = []
    for name, addon in REGISTRY.items():
        info = record.get(name, {})
        pid, port, address = info.get("pid"), info.get("port"), info.get("url")
        if why := addon.missing():
            out.append(AddonStatus(name, "missing", None, None, why))
        elif not _alive(pid):
            log = addons_dir() / f"{name}.log"
            note = (_("(see {log})").format(log=log) if info and log.exists()
                    else _("(start it: labkit up --with {name})").format(name=name))
            out.append(AddonStatus(name, "stopped", None, None, note))
        elif _ready(addon, port):
            out.append(AddonStatus(name, "running", pid, address))
        else:
            out.append(AddonStatus(name, "starting", pid, address, _("(not answering yet)")))
    return out


def url(name: str) -> str | None:
    """The URL of a running add-on (the GPU exporter's is its /metrics), else None."""
    return next((s.url for s in status() if s.name == name and s.state in ("running", "starting")), None)


def url_variables() -> dict[str, str]:
    """Each running add-on's URL as a shell variable: ``PROMETHEUS_URL``, ``ALERTMANAGER_URL``, ``JAEGER_URL``...
    (the name upper-cased, ``-`` as ``_``), as ``labkit env`` prints them for a terminal."""
    return {f"{s.name.upper().replace('-', '_')}_URL": s.url for s in status()
            if s.url is not None and s.state in ("running", "starting")}


def export_urls() -> dict[str, str]:
    """Put :func:`url_variables` in this process's environment, so that a notebook's shell lines reach the add-ons
    as a terminal does after ``eval "$(labkit env)"``: ``!curl -s "$PROMETHEUS_URL/api/v1/query?query=up"``."""
    found = url_variables()
    os.environ.update(found)
    return found


def _stop_one(name: str, pid: int | None) -> bool:
    if not _alive(pid):
        return False
    assert pid is not None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the add-on is our own child (tests start it in-process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(*, progress: Progress = print) -> None:
    """Stop every add-on and remove their state (the TSDB belongs to the cluster that is going away)."""
    record = _record()
    signalled = {name: info["pid"] for name, info in record.items() if _stop_one(name, info.get("pid"))}
    # SIGTERM went to all of them at once; give them together a few seconds to exit, then SIGKILL the rest.
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in signalled.values()) and time.monotonic() < deadline:
        for pid in signalled.values():
            _reap(pid)
        time.sleep(0.05)
    for pid in signalled.values():
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    shutil.rmtree(addons_dir(), ignore_errors=True)
    if signalled:
        progress(f"stopped {', '.join(signalled)}")
