"""e2e: a real node-problem-detector per simulated node turns kernel log lines into Events (temporary problems) and
NodeConditions (permanent ones) with upstream's rules; a reboot resets them; a custom plugin monitor's exit status
sets a condition on the node whose check fails and no other; lesson 08's exercise fails unsolved and passes solved.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

import labkit as lk
from labkit import addons, operations
from labkit.cluster.topology import load_topology
from labkit.course import exercises
from labkit.kube.objects import get
from labkit.lessons import node_problems as l08

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def npd(lab: lk.Lab) -> Iterator[list[str]]:
    lk.addons.require(l08.ADDON)
    # The topology's nodes: a node pool of another test (Karpenter's) may come and go meanwhile, NPD and all.
    nodes = sorted(n["name"] for n in load_topology())
    l08.clear_nodes(lab, nodes)
    l08.wait_npd_ready(lab)
    yield nodes
    l08.clear_nodes(lab, nodes)


def test_every_node_gets_its_own_detector_with_upstreams_default_conditions(lab: lk.Lab, npd: list[str]) -> None:
    running = json.loads(_get(addons.url(l08.ADDON)))
    assert set(npd) <= set(running) and all(running[n]["healthy"] for n in npd)
    table = l08.wait_npd_ready(lab)
    assert set(npd) <= set(table.node)
    defaults = table.groupby("type").reason.agg(set).to_dict()
    assert defaults == {"KernelDeadlock": {"KernelHasNoDeadlock"}, "ReadonlyFilesystem": {"FilesystemIsNotReadOnly"}}


def test_a_temporary_problem_is_an_event_about_the_node(lab: lk.Lab, npd: list[str]) -> None:
    node = npd[0]
    l08.inject(node, "oom-kill", comm="e2e-oom")
    event = l08.wait_event(lab, node, "OOMKilling", timeout=30)
    assert event["source"]["component"] == "kernel-monitor" and event["type"] == "Warning"
    assert "Killed process 4242 (e2e-oom)" in event["message"]
    # Temporary: the node's conditions do not change.
    assert l08.node_conditions(lab, types=("KernelDeadlock",)).set_index("node").status[node] == "False"


def test_a_permanent_problem_sets_a_condition_until_the_node_reboots(lab: lk.Lab, npd: list[str]) -> None:
    node, other = npd[1], npd[2]
    l08.inject(node, "kernel-deadlock")
    cond = l08.wait_condition(lab, node, "KernelDeadlock", "True", reason="DockerHung", timeout=30)
    assert "task docker:1234 blocked for more than 120 seconds" in cond["message"]
    assert l08.node_conditions(lab, types=("KernelDeadlock",)).set_index("node").status[other] == "False"
    l08.inject(node, "readonly-filesystem")
    l08.wait_condition(lab, node, "ReadonlyFilesystem", "True", reason="FilesystemIsReadOnly", timeout=30)
    after = l08.reboot(lab, node)
    assert after["reason"] == "KernelHasNoDeadlock"
    l08.wait_condition(lab, node, "ReadonlyFilesystem", "False", timeout=30)


def test_cordon_and_drain_move_pods_off_a_sick_node(lab: lk.Lab, npd: list[str], namespace: str) -> None:
    node = "cpu-node-1"
    lk.apply(lab, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
        "replicas": 6, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}, namespace=namespace)
    lk.wait_for(lab, "Deployment", "web", namespace=namespace, condition="condition=Available", timeout=60)
    try:
        lk.cordon(lab, node)
        lk.drain(lab, node)
        pods = lk.wait_for_set(lab, "Pod", namespace=namespace, label_selector="app=web", timeout=60,
                               condition=lambda ps: len(ps) == 6 and all(
                                   p["spec"].get("nodeName") not in (None, node)
                                   and p["status"].get("phase") == "Running" for p in ps))
        assert node not in {p["spec"]["nodeName"] for p in pods}
    finally:
        lk.cordon(lab, node, unschedulable=False)
    assert not get(lab, "Node", node)["spec"].get("unschedulable")


def test_custom_plugin_monitor_sets_a_condition_only_where_its_check_fails(lab: lk.Lab, npd: list[str]) -> None:
    l08.install_custom_monitor("clock", l08.CLOCK_MONITOR)
    try:
        for node in npd:
            l08.set_clock_offset(node, 0.01)
        l08.set_clock_offset(npd[3], 2.5)
        cond = l08.wait_condition(lab, npd[3], l08.CLOCK_CONDITION, "True", timeout=40)
        assert cond["reason"] == "ClockOutOfSync" and "2.500000000s off NTP time" in cond["message"]
        l08.wait_condition(lab, npd[4], l08.CLOCK_CONDITION, "False", timeout=20)
    finally:
        l08.remove_custom_monitors()


def test_clock_exercise_fails_unsolved_and_passes_solved(lab: lk.Lab, npd: list[str], namespace: str) -> None:
    l08.remove_custom_monitors()
    attempt = exercises.Attempt(lab, namespace)
    unsolved = l08.CLOCK_EXERCISE.check(attempt)
    assert unsolved and "no custom plugin monitor" in unsolved[0]
    broken = dict(l08.CLOCK_MONITOR, rules=[dict(l08.CLOCK_MONITOR["rules"][0], args=[l08.CLOCK_CHECK, "{node_root}",
                                                                                      "5"])])
    l08.install_custom_monitor("clock", broken)  # a limit of 5 s never fires for a 0.9 s drift
    try:
        wrong = l08.CLOCK_EXERCISE.check(attempt)
        assert wrong and "did not turn True" in wrong[0]
        l08.install_custom_monitor("clock", l08.CLOCK_MONITOR)
        assert l08.CLOCK_EXERCISE.check(attempt) == []
    finally:
        l08.remove_custom_monitors()


def test_a_stale_condition_is_removed_while_others_rewrite_the_list(lab: lk.Lab) -> None:
    """clear_nodes' removal names conditions by index; a writer that shifts the list meanwhile must not make it fail
    (CI once stopped here with a 422 and left ClockSkew behind) nor make it delete another condition."""
    node = sorted(n["name"] for n in load_topology())[0]
    stale, churn = "LabkitTestStale", "LabkitTestChurn"
    lab.core.patch_node_status(node, {"status": {"conditions": [
        {"type": stale, "status": "True", "reason": "Test", "message": "left behind"}]}})
    before = {c["type"] for c in get(lab, "Node", node)["status"]["conditions"]} - {stale}
    stop = threading.Event()
    shifts = 0

    def shift_the_list() -> None:  # insert a condition at the front, then take it out: every index moves, twice
        nonlocal shifts
        while not stop.is_set():
            lab.core.patch_node_status(node, [{"op": "add", "path": "/status/conditions/0", "value": {
                "type": churn, "status": "False", "reason": "Test", "message": "moves the others"}}])
            lab.core.patch_node_status(node, [{"op": "test", "path": "/status/conditions/0/type", "value": churn},
                                              {"op": "remove", "path": "/status/conditions/0"}])
            shifts += 1

    writer = threading.Thread(target=shift_the_list, daemon=True)
    writer.start()
    try:
        operations.remove_condition(lab, node, stale)
    finally:
        stop.set()
        writer.join(timeout=10)
    after = {c["type"] for c in get(lab, "Node", node)["status"]["conditions"]}
    assert shifts > 0, "the writer never moved the list, so this tested nothing"
    assert stale not in after and churn not in after
    assert after == before, f"removing {stale} also changed {sorted(after ^ before)}"


def _get(url: str | None) -> str:
    import urllib.request

    assert url, "the node-problem-detector add-on is not running"
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback)
        return resp.read().decode()


def test_the_event_or_condition_exercise_needs_both_right(lab: lk.Lab, npd: list[str]) -> None:
    ex = l08.EVENT_OR_CONDITION
    assert l08.start_mystery(lab, timeout=60) == l08.MYSTERY_NODE
    try:
        assert ex.check(exercises.Attempt(lab, "default")) != []  # no answer
        swapped = ex.check(exercises.Attempt(lab, "default", answer={"event": "ReadonlyFilesystem",
                                                                      "condition": "TaskHung"}))
        assert len(swapped) == 2 and "kubectl describe node" in swapped[1]
        right = ex.solve(exercises.Attempt(lab, "default"))
        assert ex.check(exercises.Attempt(lab, "default", answer=right)) == []
    finally:
        l08.reboot(lab, l08.MYSTERY_NODE)
