"""Lesson 08, node-problem-detector (节点问题检测器): notebook 08_node_problem_detector's helpers and exercise.

Every simulated node has a real node-problem-detector (the ``node-problem-detector`` add-on) reading that node's
kernel log; :func:`inject` makes the node's kernel report a problem (:mod:`labkit.sim.node_logs`). NPD reports a
temporary problem as an Event and a permanent one as a NodeCondition; nothing in NPD acts on them:
``lk.cordon``, ``lk.drain`` and :func:`reboot` are what a remediation controller (or the operator) would do.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd

from .. import addons
from ..addons.node_problem_detector import CUSTOM_DIR, PLUGINS_DIR, component, custom_stamp
from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..errors import NotFound, WaitTimeout
from ..i18n import _
from ..kube.client import Lab, api_errors
from ..kube.nodes import cordon
from ..kube.objects import get
from ..kube.wait import wait_for_set
from ..operations import NPD_CONDITIONS, node_condition, reboot, remove_condition, wait_condition

# Lab operations this lesson teaches, reached from its notebook as l08.wait_npd_ready and so on.
from ..operations import node_conditions as node_conditions
from ..operations import wait_npd_ready as wait_npd_ready
from ..paths import data_file, write_atomic
from ..settings import LOCAL_HTTP_TIMEOUT_S
from ..sim import node_logs

ADDON = "node-problem-detector"
MONITORS = ("kernel-monitor-filelog.json", "readonly-monitor.json")
MONITOR_SOURCES = ("kernel-monitor", "readonly-monitor", "clock-monitor")  # the `source` of each monitor's events
EVENT_NAMESPACE = "default"  # NPD records events about a Node (a cluster-scoped object) in "default"
# As a monitor config names the lab's clock check: {plugins} becomes labkit's script folder on each node's NPD.
CLOCK_CHECK = "{plugins}/check_clock.sh"
CLOCK_CHECK_FILE = data_file(PLUGINS_DIR) / "check_clock.sh"
CLOCK_CONDITION = "ClockSkew"


def inject(node: str, problem: str, **values: Any) -> list[str]:
    """Make ``node``'s kernel report ``problem`` (see :func:`problems`); return the kern.log lines written.

    On a real node: the kernel writes them; ``echo '<msg>' > /dev/kmsg`` as root fakes one for a drill.
    """
    return node_logs.inject(node, problem, **values)


def problems() -> pd.DataFrame:
    """The problems :func:`inject` knows (``labkit/data/node-problems.yaml``) and what NPD makes of each."""
    rows = [{"problem": name, "summary": p["summary"], "monitor": p["monitor"], "npd reports": p["effect"]}
            for name, p in node_logs.problems().items()]
    return pd.DataFrame(rows)


def rules() -> pd.DataFrame:
    """Upstream's rules the lab's NPDs run: monitor, type, condition, reason, pattern (the config files' ``rules``)."""
    rows = []
    for name in MONITORS:
        config = json.loads((component().dir / "config" / name).read_text())
        for rule in config["rules"]:
            rows.append({"monitor": config["source"], "type": rule["type"], "condition": rule.get("condition", ""),
                         "reason": rule["reason"], "pattern": rule["pattern"]})
    return pd.DataFrame(rows)


def node_events(lab: Lab, *, node: str | None = None, source: str | None = None) -> pd.DataFrame:
    """Events about nodes, oldest first (``kubectl get events --field-selector involvedObject.kind=Node``)."""
    selector = "involvedObject.kind=Node" + (f",involvedObject.name={node}" if node else "")
    with api_errors(_("listing node events"), server=lab.server):
        events = lab.core.list_event_for_all_namespaces(field_selector=selector).items
    rows = [{"node": e.involved_object.name, "type": e.type, "reason": e.reason,
             "source": e.source.component if e.source else "", "message": (e.message or "")[:100],
             "count": e.count or 1, "time": e.last_timestamp or e.event_time or e.metadata.creation_timestamp}
            for e in events if source is None or (e.source and e.source.component == source)]
    table = pd.DataFrame(rows, columns=["node", "type", "reason", "source", "message", "count", "time"])
    return table.sort_values("time", kind="stable").reset_index(drop=True)


def wait_event(lab: Lab, node: str, reason: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """Block until an Event ``reason`` about ``node`` exists; return it.

    Same as ``kubectl get events -n default --field-selector involvedObject.name=NODE,reason=REASON -w``.
    """
    found = wait_for_set(lab, "Event", namespace=EVENT_NAMESPACE, timeout=timeout, condition=bool, api_version="v1",
                         field_selector=f"involvedObject.kind=Node,involvedObject.name={node},reason={reason}")
    return max(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")  # the latest, if several


def custom_monitors_dir() -> Path:
    """Where custom plugin monitor configs go; every node's NPD runs each ``*.json`` there."""
    return addons.addons_dir() / ADDON / CUSTOM_DIR


def install_custom_monitor(name: str, config: dict[str, Any] | str) -> Path:
    """Install a custom plugin monitor for every node's NPD (restarted with it within seconds); return its file.

    ``{node}`` and ``{node_root}`` in a rule's ``args`` become each node's name and filesystem root. On a real
    cluster: add the file to NPD's ConfigMap and ``--config.custom-plugin-monitor`` in its DaemonSet.
    """
    text = config if isinstance(config, str) else json.dumps(config, indent=1)
    json.loads(text)  # a typo fails here, with the line and column, not inside eight NPDs
    folder = custom_monitors_dir()
    path = write_atomic(folder / f"{name}.json", text)
    wait_detectors_reloaded()
    return path


def remove_custom_monitors() -> None:
    """Remove every custom plugin monitor; return once every NPD runs without them."""
    for path in custom_monitors_dir().glob("*.json"):
        path.unlink()
    if addons.url(ADDON):
        wait_detectors_reloaded()


def wait_detectors_reloaded(*, timeout: float = 30.0) -> None:
    """Block until every node's NPD runs the custom monitors now in :func:`custom_monitors_dir` and is healthy.

    On a real cluster: ``kubectl rollout status daemonset/node-problem-detector -n kube-system`` after the ConfigMap
    changed and the DaemonSet was restarted.
    """
    want = custom_stamp(custom_monitors_dir().parent)
    deadline = time.monotonic() + timeout
    while True:
        table = detectors()
        stale = [] if table.empty else [r.node for r in table.itertuples() if r.custom != want or not r.healthy]
        if not table.empty and not stale:
            return
        if time.monotonic() > deadline:
            raise WaitTimeout(_("node-problem-detectors not restarted with the custom monitors within "
                                "{timeout:.0f}s: {stale}").format(timeout=timeout,
                                                                  stale=", ".join(stale) or _("none running")),
                              last_seen=stale,
                              fix="labkit status   # " + _("and the add-on's log named there"))
        time.sleep(0.2)  # the add-on's state is a plain HTTP page: nothing to watch


def set_clock_offset(node: str, seconds: float) -> None:
    """Make ``node``'s clock drift ``seconds`` from NTP time (``chronyc tracking`` on it would say so)."""
    node_logs.set_clock_offset(node, seconds)


def clear_nodes(lab: Lab, nodes: list[str]) -> None:
    """Undo what an earlier run of the notebook left: clocks in sync, nodes schedulable, permanent problems gone,
    and the NPD events about nodes deleted (``kubectl delete events -n default --field-selector
    involvedObject.kind=Node,source=kernel-monitor``, and so on for each monitor)."""
    remove_custom_monitors()
    for monitor in MONITOR_SOURCES:
        with api_errors(_("deleting old node-problem events"), server=lab.server):
            lab.core.delete_collection_namespaced_event(
                EVENT_NAMESPACE, field_selector=f"involvedObject.kind=Node,source={monitor}")
    for node in nodes:
        node_logs.set_clock_offset(node, 0.001)
        try:
            node_obj = get(lab, "Node", node)
        except NotFound:
            continue
        if (node_obj.get("spec") or {}).get("unschedulable"):
            cordon(lab, node, unschedulable=False)
        # A custom monitor's condition outlives the monitor (NPD does not delete what it no longer watches, on a
        # real cluster either): remove it, as an operator would with kubectl patch --subresource=status.
        remove_condition(lab, node, CLOCK_CONDITION)
        if any(node_condition(node_obj, c).get("status") == "True" for c in NPD_CONDITIONS):
            reboot(lab, node)


CLOCK_MONITOR = {
    "plugin": "custom",
    "pluginConfig": {"invoke_interval": "5s", "timeout": "5s", "max_output_length": 80, "concurrency": 1},
    "source": "clock-monitor",
    "metricsReporting": True,
    "conditions": [{"type": CLOCK_CONDITION, "reason": "ClockInSync", "message": "clock is within 0.5s of NTP"}],
    "rules": [{"type": "permanent", "condition": CLOCK_CONDITION, "reason": "ClockOutOfSync",
               "path": "/bin/sh", "args": [CLOCK_CHECK, "{node_root}", "0.5"], "timeout": "3s"}],
}


def _check_clock_monitor(attempt: Attempt) -> list[str]:
    installed = [json.loads(p.read_text()) for p in custom_monitors_dir().glob("*.json")]
    mine = [c for c in installed if any(r.get("condition") == CLOCK_CONDITION and r.get("type") == "permanent"
                                        for r in c.get("rules") or [])]
    if not mine:
        return [_("no custom plugin monitor in {custom_monitors_dir} has a permanent rule for condition "
                  "{clock_condition}")
                .format(custom_monitors_dir=custom_monitors_dir(), clock_condition=CLOCK_CONDITION)]
    # Checked live: one node's clock drifts on purpose; its NPD must say so, a node in sync must not.
    lab = attempt.lab
    with api_errors(_("listing nodes"), server=lab.server):
        names = sorted(n.metadata.name for n in lab.core.list_node().items)
    drifting, in_sync = names[0], names[1]
    node_logs.set_clock_offset(drifting, 0.9)
    node_logs.set_clock_offset(in_sync, 0.01)
    try:
        try:
            wait_condition(lab, drifting, CLOCK_CONDITION, "True", timeout=25)
        except WaitTimeout:
            return [_("{drifting}'s clock is 0.9 s off, but its condition {clock_condition} did not turn True "
                      "within 25 s (invoke_interval short enough? the script's exit status 1 for 'problem'?)")
                    .format(drifting=drifting, clock_condition=CLOCK_CONDITION)]
        other = node_condition(get(lab, "Node", in_sync), CLOCK_CONDITION)
        if other.get("status") == "True":
            return [_("{in_sync}'s clock is in sync, yet its {clock_condition} is True: the rule fires for every "
                      "node").format(in_sync=in_sync, clock_condition=CLOCK_CONDITION)]
    finally:
        node_logs.set_clock_offset(drifting, 0.001)
    return []


CLOCK_EXERCISE = Exercise(
    id="08-clock-monitor",
    task=f"Write a custom plugin monitor that sets the node condition `{CLOCK_CONDITION}` (permanent) when a node's "
         f"clock is more than 0.5 s off NTP time, using the lab's check script ({CLOCK_CHECK}, run with "
         f"/bin/sh; its args: the script, the node's root and the limit), invoked every 5 s; install it with "
         f"l08.install_custom_monitor('clock', config).",
    hint="Start from upstream's config/custom-plugin-monitor.json: plugin custom, pluginConfig.invoke_interval, "
         "conditions (the default, False), rules: [{type: permanent, condition: ClockSkew, reason: ..., path: "
         "/bin/sh, args: ['{plugins}/check_clock.sh', '{node_root}', '0.5']}]. Exit 0 = OK, 1 = problem, 2 = unknown.",
    solution=json.dumps(CLOCK_MONITOR, indent=1),
    check=_check_clock_monitor,
    solve=lambda a: install_custom_monitor("clock", CLOCK_MONITOR),
)

# Exercise 08-event-or-condition: two problems on one node, not named; the learner tells them apart with kubectl.
MYSTERY_NODE = "cpu-node-3"
MYSTERY_PROBLEMS = ("task-hung", "readonly-filesystem")


def start_mystery(lab: Lab, *, timeout: float = 60.0) -> str:
    """Make ``MYSTERY_NODE``'s kernel report two problems (which ones, the learner finds out), and return once NPD has
    reported both: one as an Event, one as a NodeCondition."""
    for problem in MYSTERY_PROBLEMS:
        inject(MYSTERY_NODE, problem)
    wait_event(lab, MYSTERY_NODE, "TaskHung", timeout=timeout)
    wait_condition(lab, MYSTERY_NODE, "ReadonlyFilesystem", "True", timeout=timeout)
    return MYSTERY_NODE


def _mystery_truth(lab: Lab) -> dict[str, list[str]]:
    events = node_events(lab, node=MYSTERY_NODE, source="kernel-monitor")
    node = get(lab, "Node", MYSTERY_NODE) or {}
    return {"event": sorted(set(events.reason)),
            "condition": sorted(c for c in NPD_CONDITIONS if node_condition(node, c).get("status") == "True")}


def _check_event_or_condition(attempt: Attempt) -> list[str]:
    truth = _mystery_truth(attempt.lab)
    if not truth["event"] or not truth["condition"]:
        return [_("{mystery_node} shows no problem yet: run the cell that starts this exercise")
                .format(mystery_node=MYSTERY_NODE)]
    answer = attempt.answer if isinstance(attempt.answer, dict) else {}
    problems = []
    if answer.get("event") not in truth["event"]:
        problems.append(_("the Event's reason is not {event!r}: kubectl get events -n default --field-selector "
                          "involvedObject.name={mystery_node}")
                        .format(event=answer.get('event'), mystery_node=MYSTERY_NODE))
    if answer.get("condition") not in truth["condition"]:
        problems.append(_("the NodeCondition that is True is not {condition!r}: kubectl describe node "
                          "{mystery_node} (Conditions)")
                        .format(condition=answer.get('condition'), mystery_node=MYSTERY_NODE))
    return problems


EVENT_OR_CONDITION = Exercise(
    id="08-event-or-condition",
    task=f"The cell above made {MYSTERY_NODE}'s kernel report two problems. NPD reported one as an Event and one as "
         "a NodeCondition. With kubectl only, find the Event's reason and the condition's type, and give them as "
         "answer={'event': ..., 'condition': ...}.",
    hint="an Event about a node lives in namespace default (kubectl get events -n default --field-selector "
         f"involvedObject.name={MYSTERY_NODE}); a condition is in kubectl describe node {MYSTERY_NODE}, among the "
         "ones that are True and not Ready",
    solution=f"""kubectl get events -n default --field-selector involvedObject.name={MYSTERY_NODE},source=kernel-monitor
kubectl describe node {MYSTERY_NODE} | sed -n '/Conditions/,/Addresses/p'
answer = {{"event": "TaskHung", "condition": "ReadonlyFilesystem"}}""",
    check=_check_event_or_condition,
    solve=lambda a: {"event": "TaskHung", "condition": "ReadonlyFilesystem"},
)

EXERCISES = [CLOCK_EXERCISE, EVENT_OR_CONDITION]



def detectors() -> pd.DataFrame:
    """The lab's NPDs, one per node: pid, ports, health (the add-on's ``/nodes``; ``kubectl get pods -n
    kube-system -l app=node-problem-detector -o wide`` on a real cluster)."""
    url = addons.url(ADDON)
    if url is None:
        return pd.DataFrame(columns=["node", "pid", "port", "metrics_port", "healthy", "custom"])
    with urllib.request.urlopen(url, timeout=LOCAL_HTTP_TIMEOUT_S) as resp:  # noqa: S310 (loopback)
        state = json.loads(resp.read())
    return pd.DataFrame([{"node": node, **{k: v for k, v in s.items() if k != "log"}}
                         for node, s in sorted(state.items())])


def problem_metrics(node: str) -> pd.DataFrame:
    """NPD's own Prometheus metrics for ``node``: ``problem_counter`` (per reason) and ``problem_gauge`` (per
    condition). Same as ``curl http://127.0.0.1:PORT/metrics | grep ^problem_`` against that node's NPD."""
    row = detectors().set_index("node").loc[node]
    with urllib.request.urlopen(f"http://127.0.0.1:{row.metrics_port}/metrics", timeout=LOCAL_HTTP_TIMEOUT_S) as resp:  # noqa: S310
        text = resp.read().decode()
    rows = []
    for line in text.splitlines():
        if line.startswith(("problem_counter{", "problem_gauge{")):
            name, _, rest = line.partition("{")
            labels, _, value = rest.rpartition("} ")
            parsed = dict(part.split("=", 1) for part in labels.split(",") if "=" in part)
            rows.append({"metric": name, **{k: v.strip('"') for k, v in parsed.items()}, "value": float(value)})
    return pd.DataFrame(rows)


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "08_node_problem_detector",
    "node-problem-detector (节点问题检测器): temporary problems as Events, permanent ones as NodeConditions, "
    "upstream's rules, cordon/drain/reboot as a remediation controller would, a custom plugin monitor",
    LessonRights("nodes/status (node conditions); node-problem-detector add-on; the nodes' kernel logs",
                 refused="it makes nodes report problems (node conditions, cluster-scoped) that every "
                         "student's pods see"),
    exercises=tuple(EXERCISES),
)
