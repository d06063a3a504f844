"""The Kubernetes documentation's examples, as published, on the embedded cluster (see README.md here).

Each case in cases.yaml applies a page's manifests, unchanged, in a namespace of its own, and waits for the outcome
the page describes: what ``kubectl get`` shows (STATUS, READY, RESTARTS), an event's reason and words, a condition,
a count of ready replicas. Every case is applied at the start, so their waits overlap and the module costs about its
slowest case. A case the lab cannot reproduce yet carries ``gap:``, the reason: it is then expected to fail (strict
xfail), so the day it passes the suite says so.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import labkit as lk

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
EXAMPLES = HERE / "examples"
CASES: list[dict[str, Any]] = yaml.safe_load((HERE / "cases.yaml").read_text())
# On top of the time a page's outcome takes on a real cluster: this machine may be busy (2 cores, a test beside).
MARGIN_S = 30.0
POLL_S = 1.0
KINDS = {"pod": "pods", "deployment": "deployments", "replicaset": "replicasets", "daemonset": "daemonsets",
         "job": "jobs", "statefulset": "statefulsets", "service": "services", "cronjob": "cronjobs"}


def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60, input=stdin)
    if check and proc.returncode:
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def into(path: Path, ns: str) -> str:
    """The file's objects with their namespace set to the case's own (some examples name theirs: qos-example,
    kube-system, default); nothing else changes."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc.setdefault("metadata", {})["namespace"] = ns
    return yaml.safe_dump_all(docs, sort_keys=False)


def touches_nodes(case: dict[str, Any]) -> bool:
    """A case whose setup labels a node changes what other cases see: it runs alone, in its turn."""
    return any(" nodes " in f" {command} " for command in case.get("setup", []))


def set_up(case: dict[str, Any], ns: str, node: str) -> None:
    """The page's own commands, verbatim, in the case's namespace: `kubectl create namespace X` is that namespace
    (already made), `<your-node-name>` is one of the lab's nodes."""
    for command in case.get("setup", []):
        words = shlex.split(command.replace("<your-node-name>", node))
        assert words[0] == "kubectl", f"{case['name']}: setup runs kubectl only, not {command!r}"
        if words[1:3] == ["create", "namespace"]:
            continue
        kubectl(*words[1:], *([] if "nodes" in words else ["-n", ns]))


def start(lab: lk.Lab, case: dict[str, Any], node: str) -> tuple[str, float]:
    ns = f"docs-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    kubectl("label", "namespace", ns, "labkit.io/test=conformance")
    lk.wait_default_service_account(lab, ns)
    set_up(case, ns, node)
    for path in case["apply"]:
        kubectl("apply", "-f", "-", stdin=into(EXAMPLES / path, ns))
    return ns, time.monotonic()


@pytest.fixture(scope="module")
def node(lab: lk.Lab) -> Iterator[str]:
    """The node a page's `kubectl label nodes <your-node-name> ...` labels; its labels are put back afterwards."""
    lk.use_lab_kubectl(lab)
    name = kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout
    before = kubectl("get", "node", name, "-o", "jsonpath={.metadata.labels}").stdout
    yield name
    added = {k for case in CASES for command in case.get("setup", []) if " nodes " in f" {command} "
             for k in [w.split("=", 1)[0] for w in shlex.split(command)[4:] if "=" in w] if k not in before}
    for key in added:
        kubectl("label", "node", name, f"{key}-", check=False)


@pytest.fixture(scope="module")
def applied(lab: lk.Lab, node: str) -> Iterator[dict[str, tuple[str, float]]]:
    """Every case applied at once, each in a fresh namespace (the ones that touch nodes later): name -> (ns, when)."""
    started = {case["name"]: start(lab, case, node) for case in CASES if not touches_nodes(case)}
    yield started
    for ns, _ in started.values():
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def pod_line(ns: str, name: str) -> dict[str, str]:
    """The pod's row of ``kubectl get pods``: NAME READY STATUS RESTARTS AGE (or what kubectl said instead)."""
    proc = kubectl("get", "pod", name, "-n", ns, "--no-headers", check=False)
    out = proc.stdout.split()
    if len(out) < 5:
        return {"error": (proc.stderr or proc.stdout).strip()}
    return {"ready": out[1], "status": out[2], "restarts": out[3]}


def observe(ns: str, expect: dict[str, Any]) -> tuple[bool, str]:
    """Whether everything ``expect`` names holds now, and what was seen."""
    kind, _, name = expect["object"].partition("/")
    seen: list[str] = []
    ok = True
    if kind == "pod" and name.endswith("*"):  # a controller's pod: the first whose name starts so
        names = kubectl("get", "pods", "-n", ns, "-o", "name").stdout.split()
        name = next((n.split("/", 1)[1] for n in names if n.split("/", 1)[1].startswith(name[:-1])), name)
    if kind == "pod" and {"status", "ready", "restarts_at_least"} & set(expect):
        row = pod_line(ns, name)
        seen.append(f"kubectl get pod: {row}")
        if "error" in row:
            return False, "; ".join(seen)
        if "status" in expect and row["status"] != expect["status"]:
            ok = False
        if "ready" in expect and row["ready"] != str(expect["ready"]):
            ok = False
        if "restarts_at_least" in expect and int(row["restarts"]) < int(expect["restarts_at_least"]):
            ok = False
    if "last_terminated" in expect:  # the first container's lastState (or state) .terminated, as -o yaml shows it
        got = kubectl("get", "pod", name, "-n", ns, "-o", "json", check=False).stdout
        st = ((yaml.safe_load(got) or {}).get("status") or {}).get("containerStatuses") or [{}] if got else [{}]
        term = (st[0].get("lastState") or {}).get("terminated") or (st[0].get("state") or {}).get("terminated") or {}
        seen.append(f"terminated: {term.get('reason')} {term.get('exitCode')}")
        ok = ok and all(term.get(k) == v for k, v in expect["last_terminated"].items())
    if "event" in expect:
        want = expect["event"]
        got = kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}",
                      "-o", "jsonpath={range .items[*]}{.reason}|{.message}{'\\n'}{end}").stdout.splitlines()
        hit = [line for line in got if line.startswith(want["reason"] + "|")
               and str(want.get("message", "")) in line.split("|", 1)[1]]
        seen.append(f"events: {got[-6:]}")
        ok = ok and bool(hit)
    if "condition" in expect or "available" in expect:
        got = kubectl("get", KINDS[kind], name, "-n", ns, "-o", "json", check=False).stdout
        obj = yaml.safe_load(got) if got else None
        status = (obj or {}).get("status") or {}
        if "condition" in expect:
            cond = next((c for c in status.get("conditions") or [] if c["type"] == expect["condition"]["type"]), {})
            seen.append(f"condition {expect['condition']['type']}: {cond.get('status')} {cond.get('reason', '')}")
            ok = ok and cond.get("status") == str(expect["condition"].get("status", "True"))
        if "available" in expect:
            ready = status.get("numberReady" if kind == "daemonset" else "readyReplicas") or 0
            seen.append(f"ready replicas: {ready}")
            ok = ok and ready >= int(expect["available"])
    return ok, "; ".join(seen)


def wait_for(ns: str, expect: dict[str, Any], deadline: float, what: str) -> None:
    while True:
        ok, seen = observe(ns, expect)
        if ok:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: expected {expect}, saw {seen}\n  look: kubectl -n {ns} get all,events", pytrace=False)
        time.sleep(POLL_S)


def _param(case: dict[str, Any]) -> Any:
    marks = [pytest.mark.xfail(reason=case["gap"], strict=True)] if case.get("gap") else []
    return pytest.param(case, id=case["name"], marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_the_page_outcome(lab: lk.Lab, applied: dict[str, tuple[str, float]], node: str,
                          case: dict[str, Any]) -> None:
    if touches_nodes(case):
        applied[case["name"]] = start(lab, case, node)
    ns, started = applied[case["name"]]
    within = float(case.get("within_s", 60)) + MARGIN_S
    # Timed from the case's start, but never less than a margin from now: applying fifty cases takes a while.
    deadline = max(started + within, time.monotonic() + MARGIN_S)
    wait_for(ns, case["expect"], deadline, f"{case['source']} ({case['page']})")
    if case.get("then"):
        for path in case["then"]:
            kubectl("apply", "-n", ns, "-f", str(EXAMPLES / path))
        wait_for(ns, case["then_expect"], time.monotonic() + within, f"{case['name']} after {case['then']}")


def test_every_case_names_its_source_and_files() -> None:
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 30
    for case in CASES:
        assert case["source"].startswith("content/en/") and case["page"].startswith("content/en/docs/"), case
        assert case["expect"].get("object"), case
        for path in [*case["apply"], *case.get("then", [])]:
            assert (EXAMPLES / path).is_file(), f"{case['name']}: {path} is missing"
    assert os.path.isdir(EXAMPLES)
