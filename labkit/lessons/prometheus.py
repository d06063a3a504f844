"""Lesson 06, cloud-native observability (可观测性) with Prometheus: notebook 06_prometheus's helpers and exercises.

Everything is real except what the pods do: Prometheus 3.5 with its Kubernetes service discovery, the control plane it
scrapes, kube-state-metrics, the node exporter.
The pods' CPU, memory and request metrics come from KWOK and the workload model (:mod:`labkit.sim.workload`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.request
from datetime import UTC
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import yaml

from .. import addons
from ..addons.prometheus_operated import promtool
from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..errors import WaitTimeout
from ..i18n import _
from ..kube.client import Lab
from ..observability import promql
from ..paths import data_file
from ..settings import SCRAPE_INTERVAL_S

NAMESPACE = "lesson-06"


# What a full lab's Prometheus scrapes in this lesson, and how each job's targets are found.
JOBS: dict[str, str] = {
    "apiserver": "Kubernetes SD, role endpointslice (Service default/kubernetes)",
    "etcd": "Kubernetes SD, role endpointslice (Service kube-system/etcd)",
    "kube-scheduler": "Kubernetes SD, role endpointslice (Service kube-system/kube-scheduler)",
    "kube-controller-manager": "Kubernetes SD, role endpointslice (Service kube-system/kube-controller-manager)",
    "kubelet": "Kubernetes SD, role node (one target per node)",
    "kube-state-metrics": "file_sd (add-on)",
    "kube-state-metrics-telemetry": "file_sd (add-on)",
    "node-exporter": "file_sd (add-on)",
    "workload-model": "file_sd (add-on)",
    "local-path-provisioner": "file_sd (add-on)",
    "prometheus": "file_sd (add-on)",
}
ADDONS = ("prometheus", "kube-state-metrics", "node-exporter", "workload-model")

# Two services with load from client pods: a quick one and a slow one (a small CPU limit: each request waits longer).
APP = data_file("lessons/06/shop.yaml").read_text()

# A Deployment that cannot become available: no node has 64 CPUs, so its pods stay Pending.
TOO_BIG = data_file("lessons/06/too-big.yaml").read_text()


# --- the architecture, from the live lab ---------------------------------------------------------------------------

def architecture() -> pd.DataFrame:
    """Each part of the Prometheus architecture as it runs in this lab: what it is, where, real or simulated."""
    running = {s.name: s for s in addons.status()}

    def where(name: str) -> str:
        s = running.get(name)
        return s.url if s and s.url else (s.state if s else "")

    rows = [
        ("Prometheus server: retrieval (pull), TSDB, PromQL, rule evaluation, Kubernetes service discovery",
         "prometheus", "real (3.5.0)"),
        ("exporter: kube-state-metrics (objects -> metrics)", "kube-state-metrics", "real (upstream)"),
        ("exporter: node exporter (the host machine)", "node-exporter", "real (upstream)"),
        ("instrumented app: the pods' requests", "workload-model", "simulated (workload model)"),
    ]
    table = pd.DataFrame([{"part": part, "add-on": name, "where": where(name), "real?": real}
                          for part, name, real in rows])
    extra = pd.DataFrame([
        {"part": "control plane /metrics: apiserver, etcd, scheduler, controller-manager", "add-on": "(cluster)",
         "where": "127.0.0.1, ports from kwokctl", "real?": "real (upstream)"},
        {"part": "kubelet resource metrics (cAdvisor's names) for every node", "add-on": "(cluster)",
         "where": "the KWOK controller", "real?": "simulated pods, real endpoint"},
        {"part": "Alertmanager, Pushgateway, Grafana", "add-on": "-", "where": "not in this lesson",
         "real?": "alerts: lesson 07"},
    ])
    return pd.concat([table, extra], ignore_index=True)


def _ago(iso: str) -> float:
    """Seconds since an API timestamp (RFC 3339 with nanoseconds)."""
    return max(0.0, (pd.Timestamp.now(tz=UTC) - pd.Timestamp(iso)).total_seconds())


def targets_table() -> pd.DataFrame:
    """Status -> Targets: job, instance, health, seconds since the last scrape, scrape duration, how it was found.

    Same as ``curl http://127.0.0.1:PORT/api/v1/targets | jq '.data.activeTargets[]'``.
    """
    rows = [{"job": t["labels"].get("job"), "instance": t["labels"].get("instance"),
             "health": t["health"], "interval": t.get("scrapeInterval", ""),
             "last_scrape_s_ago": round(_ago(t["lastScrape"]), 1),
             "scrape_ms": round(1000 * t["lastScrapeDuration"], 1), "found_by": JOBS.get(t["labels"].get("job"), ""),
             "last_error": t["lastError"]} for t in promql.target_details()]
    frame = pd.DataFrame(rows, columns=["job", "instance", "health", "interval", "last_scrape_s_ago", "scrape_ms",
                                        "found_by", "last_error"])
    return frame.sort_values(["job", "instance"]).reset_index(drop=True)


def wait_for_targets(jobs: tuple[str, ...] = tuple(JOBS), *, timeout: float = 60.0) -> pd.DataFrame:
    """Wait until every named job has at least one target and all of its targets are up; return those jobs' targets
    (other lessons' add-ons, when they run, add jobs of their own: see them with :func:`targets_table`)."""
    deadline = time.monotonic() + timeout
    while True:
        table = targets_table()
        missing = [j for j in jobs if not (table.job == j).any()]
        down = table[table.job.isin(jobs) & (table.health != "up")]
        if not missing and down.empty:
            return table[table.job.isin(jobs)].reset_index(drop=True)
        if time.monotonic() > deadline:
            seen = down[["job", "instance", "last_error"]].to_dict("records")
            raise WaitTimeout(_("Prometheus targets not all up after {timeout:.0f}s: no target yet for "
                                "{missing}; down: {seen}").format(timeout=timeout, missing=missing or _("none"),
                                                                  seen=seen),
                              last_seen=table, fix=_("open {url}/targets, or `curl {url}/api/v1/targets`; "
                                                     "`labkit status` shows the add-ons").format(
                                                         url=promql.prometheus_url()))
        time.sleep(1.0)


def kubelet_targets(lab: Lab, *, timeout: float = 60.0) -> pd.DataFrame:
    """The ``kubelet`` job's targets once there is one per node, as ``kubectl get nodes`` lists them now.

    Nodes come and go (lesson 05's Karpenter); discovery follows a watch, and Prometheus applies new targets every few
    seconds, so a moment after a change the two differ. Waits up to ``timeout``, then returns what it has (the
    difference shows in the table)."""
    deadline = time.monotonic() + timeout
    while True:
        table = targets_table()
        kubelet = table[table.job == "kubelet"].reset_index(drop=True)
        nodes = {n.metadata.name for n in lab.core.list_node().items}
        if set(kubelet.instance) == nodes or time.monotonic() > deadline:
            return kubelet
        time.sleep(1.0)


def relabelling(job: str) -> pd.DataFrame:
    """One target of ``job``: the labels service discovery found (before) and what relabelling made of them (after).

    Both from ``curl .../api/v1/targets``: ``discoveredLabels`` (before) and ``labels`` (after).
    """
    targets = promql.target_details(job)
    if not targets:
        raise WaitTimeout(_("Prometheus has no target for job {job!r}").format(job=job), last_seen=None,
                          fix=f"curl {promql.prometheus_url()}/api/v1/targets")
    target = targets[0]
    after = target["labels"]
    before = target["discoveredLabels"]
    rows = [{"label": k, "discovered (before relabelling)": before.get(k, ""), "after relabelling": after.get(k, "")}
            for k in sorted(set(before) | set(after))]
    return pd.DataFrame(rows)


def discovery_configs() -> dict[str, list[dict[str, Any]]]:
    """Each job's ``kubernetes_sd_configs`` in the config Prometheus runs (``/api/v1/status/config``), with only the
    fields the lab sets (Prometheus prints every default too)."""
    config = yaml.safe_load(promql.api("/api/v1/status/config")["yaml"])
    shown = ("role", "kubeconfig_file", "namespaces", "selectors")
    return {j["job_name"]: [{k: sd[k] for k in shown if sd.get(k)} for sd in j["kubernetes_sd_configs"]]
            for j in config["scrape_configs"] if j.get("kubernetes_sd_configs")}


def relabel_rules(job: str) -> list[dict[str, Any]]:
    """The ``relabel_configs`` of ``job`` in the config Prometheus runs (``/api/v1/status/config``)."""
    config = yaml.safe_load(promql.api("/api/v1/status/config")["yaml"])
    return next(j.get("relabel_configs", []) for j in config["scrape_configs"] if j["job_name"] == job)


def scrape(url: str, *, lines: int = 12, match: str = "") -> str:
    """What Prometheus gets when it pulls a target: the exposition text (``curl URL``), a few lines of it."""
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 -- a loopback target of the lab
        text = resp.read().decode()
    kept = sorted(line for line in text.splitlines() if match in line)  # exporters need not keep an order
    return "\n".join(kept[:lines])


# --- the TSDB --------------------------------------------------------------------------------------------------------

def tsdb() -> pd.DataFrame:
    """The head block and retention, from the status API (``/api/v1/status/tsdb``, ``/flags``, ``/runtimeinfo``)."""
    head = promql.api("/api/v1/status/tsdb")["headStats"]
    flags = promql.api("/api/v1/status/flags")
    runtime = promql.api("/api/v1/status/runtimeinfo")
    ms = 1000.0
    rows = [
        ("head: series in memory", head["numSeries"]),
        ("head: chunks", head["chunkCount"]),
        ("head: covers (s)", round((head["maxTime"] - head["minTime"]) / ms)),
        ("retention (--storage.tsdb.retention.time)", flags.get("storage.tsdb.retention.time")),
        ("block length (--storage.tsdb.min-block-duration)", flags.get("storage.tsdb.min-block-duration")),
        ("runtime: storage retention", runtime.get("storageRetention")),
        ("WAL / blocks folder", Path(flags.get("storage.tsdb.path", "")).name),
    ]
    return pd.DataFrame(rows, columns=["what", "value"])


def top_series(n: int = 8) -> pd.DataFrame:
    """Which metric names hold the most series (the TSDB status page's first table)."""
    stats = promql.api("/api/v1/status/tsdb")["seriesCountByMetricName"][:n]
    return pd.DataFrame(stats).rename(columns={"name": "metric", "value": "series"})


def blocks() -> pd.DataFrame:
    """Persisted blocks on disk (``ls data/``; each ULID folder has a meta.json): none until the head is cut (2 h)."""
    flags = promql.api("/api/v1/status/flags")
    data = Path(flags["storage.tsdb.path"])
    rows = []
    for meta in sorted(data.glob("*/meta.json")):
        info = json.loads(meta.read_text())
        rows.append({"block": meta.parent.name, "from": pd.to_datetime(info["minTime"], unit="ms", utc=True),
                     "to": pd.to_datetime(info["maxTime"], unit="ms", utc=True),
                     "series": info["stats"]["numSeries"], "level": info["compaction"]["level"]})
    return pd.DataFrame(rows, columns=["block", "from", "to", "series", "level"])


def on_disk() -> list[str]:
    """What the TSDB folder holds now (``ls data/``)."""
    flags = promql.api("/api/v1/status/flags")
    return sorted(p.name for p in Path(flags["storage.tsdb.path"]).iterdir())


# --- figures -------------------------------------------------------------------------------------------------------

def line(frame: pd.DataFrame, *, color: str, title: str, y: str) -> go.Figure:
    """A range query's frame as lines, one per ``color`` label."""
    fig = px.line(frame, x="time", y="value", color=color, title=title, labels={"value": y})
    fig.update_layout(height=320, margin={"l": 40, "r": 10, "t": 40, "b": 30})
    return fig


def wait_for_value(expr: str, ok: Any, *, timeout: float = 60.0, what: str = "") -> pd.DataFrame:
    """Repeat an instant query until ``ok(frame)`` holds (a scrape or an evaluation away); the last frame."""
    deadline = time.monotonic() + timeout
    frame = promql.query(expr)
    while not ok(frame):
        if time.monotonic() > deadline:
            raise WaitTimeout(_("{what!r}: not there after {timeout:.0f}s").format(what=what or expr, timeout=timeout),
                              last_seen=frame,
                              fix=_("run the query in the Prometheus UI: {url}/graph").format(
                                  url=promql.prometheus_url()))
        time.sleep(SCRAPE_INTERVAL_S / 2)
        frame = promql.query(expr)
    return frame


def recorded_vs_query(record: str, expr: str, *, key: str, expect: set[str], tolerance: float = 0.1,
                      timeout: float = 60.0) -> pd.DataFrame:
    """A recording rule's series beside its expression evaluated at the same instant, once both agree.

    A rule stores ``expr``'s value at its evaluation time, so the honest comparison evaluates ``expr`` at that
    timestamp (``curl '.../api/v1/query?query=timestamp(RECORD)'``, then ``.../api/v1/query?query=EXPR&time=T``).
    Right after the lab starts the 1m window holds few samples and a late scrape can still move it, hence the wait."""
    deadline = time.monotonic() + timeout
    while True:
        recorded = promql.query(record)
        stamps = promql.query(f"timestamp({record})")
        table = pd.DataFrame()
        if not recorded.empty and key in recorded.columns and set(recorded[key]) == expect:
            at = float(stamps.value.max())
            direct = promql.query(expr, at=at)
            if not direct.empty and key in direct.columns:
                table = pd.DataFrame({"recorded": recorded.set_index(key).value,
                                      "query at the same instant": direct.set_index(key).value})
                table["agree"] = ((table.recorded - table["query at the same instant"]).abs()
                                  <= tolerance * table["query at the same instant"].abs())
                if len(table) == len(expect) and table.agree.all():
                    return table
        if time.monotonic() > deadline:
            raise WaitTimeout(_("{record!r} and {expr!r} did not agree within {tolerance:.0%} for {expect} "
                                "after {timeout:.0f}s").format(record=record, expr=expr, tolerance=tolerance,
                                                               expect=expect, timeout=timeout),
                              last_seen=table if not table.empty else recorded,
                              fix=_("compare both in the Prometheus UI: {url}/graph; "
                                    "`curl .../api/v1/rules` shows the rule's last evaluation and error").format(
                                  url=promql.prometheus_url()))
        time.sleep(SCRAPE_INTERVAL_S / 2)


# --- the exercises -------------------------------------------------------------------------------------------------

# container!="": cAdvisor also reports each pod's own cgroup (container=""), the sum of its containers; counted as
# well, it would double every pod's CPU (the classic mistake with cAdvisor's series).
CPU_REFERENCE = 'sum by (pod) (rate(container_cpu_usage_seconds_total{{namespace="{ns}", container!=""}}[1m]))'
P99_RECORD = "service:http_request_duration_seconds:p99_1m"
P99_REFERENCE = ('histogram_quantile(0.99, sum by (service, le) '
                 '(rate(http_request_duration_seconds_bucket{{namespace="{ns}"}}[1m])))')


def _compare(answer: pd.DataFrame, reference: pd.DataFrame, key: str, *, tolerance: float) -> list[str]:
    if answer.empty:
        return [_("the query returns no series")]
    if key not in answer.columns:
        return [_("the series have no `{key}` label (keep it with `by ({key})`): labels are {labels}")
                .format(key=key, labels=sorted(c for c in answer.columns if c not in ('time', 'value')))]
    extra = sorted(set(answer.columns) - {key, "time", "value"})
    if extra:
        return [_("one series per {key}, nothing else: aggregate the other labels away ({extra})")
                .format(key=key, extra=', '.join(extra))]
    want, got = reference.set_index(key)["value"], answer.groupby(key)["value"].sum()
    problems = []
    if set(want.index) != set(got.index):
        problems.append(_("{key}s differ: expected {expected}, got {got}")
                        .format(key=key, expected=sorted(want.index), got=sorted(got.index)))
    for k in sorted(set(want.index) & set(got.index)):
        if abs(got[k] - want[k]) > tolerance * max(abs(want[k]), 1e-9):
            problems.append(_("{key} {k}: {got:.4g}, expected about {want:.4g}")
                            .format(key=key, k=k, got=got[k], want=want[k]))
    return problems


def _check_cpu_query(attempt: Attempt) -> list[str]:
    if not attempt.answer or not str(attempt.answer).strip():
        return [_("no query yet: set `my_query` to your PromQL expression and run the check again")]
    try:
        at = time.time()  # the learner's query and the reference see the same samples
        answer = promql.query(str(attempt.answer), at=at)
    except promql.PromQLError as exc:
        return [str(exc).splitlines()[0]]
    reference = promql.query(CPU_REFERENCE.format(ns=attempt.namespace), at=at)
    return _compare(answer, reference, "pod", tolerance=0.1)


CPU_QUERY = Exercise(
    id="06-cpu-by-pod",
    task="Write a PromQL expression for the CPU (in cores, averaged over the last minute) that each pod in namespace "
         "lesson-06 uses: one series per pod, labelled `pod`.",
    hint="container_cpu_usage_seconds_total is a counter of CPU-seconds: rate() over [1m] turns it into cores; "
         "select the namespace with {namespace=\"lesson-06\"}, leave out each pod's own cgroup (container=\"\", "
         "the sum of its containers: counting it too doubles the answer) with container!=\"\", and keep only the "
         "pod label with sum by (pod) (...)",
    solution='sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="lesson-06", container!=""}[1m]))',
    check=_check_cpu_query,
    solve=lambda a: CPU_REFERENCE.format(ns=a.namespace),
)


def learner_rules_file() -> Path:
    """Where the learner's rule file goes: beside the lab's own rules, so Prometheus' ``rule_files`` glob finds it."""
    flags = promql.api("/api/v1/status/flags")
    return Path(flags["config.file"]).parent / "rules" / "lesson-06-learner.yaml"


def load_rules(text: str) -> list[str]:
    """Check a rule file with ``promtool check rules``, then load it into the lab's Prometheus and reload it.

    Same as copying the file next to the lab's rules and ``curl -X POST http://127.0.0.1:PORT/-/reload``.
    Returns promtool's complaints (nothing loaded then), or [] once Prometheus runs the rules.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
        tmp.write(text)
    try:
        result = subprocess.run([promtool(), "check", "rules", tmp.name], capture_output=True, text=True, timeout=30)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    if result.returncode != 0:
        lines = [ln.strip() for ln in (result.stdout + result.stderr).splitlines()
                 if ln.strip() and not ln.startswith("Checking")]
        return [f"promtool check rules: {' '.join(lines)[:400]}"]
    target = learner_rules_file()
    target.write_text(text)
    promql.reload()
    return []


def _loaded_rule(record: str) -> dict[str, Any] | None:
    groups = promql.api("/api/v1/rules", {"type": "record"})["groups"]
    return next((r for g in groups for r in g["rules"] if r.get("name") == record), None)


def _evaluated_since(record: str, since: pd.Timestamp) -> dict[str, Any] | None:
    """The loaded rule recording ``record`` once Prometheus has evaluated it after ``since`` (a few seconds at most)."""
    deadline = time.monotonic() + 5 * SCRAPE_INTERVAL_S
    rule = _loaded_rule(record)
    while rule is not None and time.monotonic() < deadline:
        last = rule.get("lastEvaluation") or ""
        if last and not last.startswith("0001") and pd.Timestamp(last) > since:
            return rule
        time.sleep(SCRAPE_INTERVAL_S / 4)
        rule = _loaded_rule(record)
    return rule


def _check_p99_rule(attempt: Attempt) -> list[str]:
    if not attempt.answer or not str(attempt.answer).strip():
        return [_("no rule file yet: set `my_rules` to your rule file (YAML) and run the check again")]
    problems = load_rules(str(attempt.answer))
    if problems:
        return problems
    # What it records from its first evaluation after the reload on. The reload returns once the new rules replace
    # the old, so the clock starts here, not before promtool: until then an earlier version (the notebook's solution,
    # say) still evaluated and wrote samples under the same name, and a busy machine gave it seconds to do so.
    loaded_at = pd.Timestamp.now(tz=UTC)
    rule = _evaluated_since(P99_RECORD, loaded_at)
    if rule is None:
        return [_("Prometheus loaded your file, but no rule records `{p99_record}`").format(p99_record=P99_RECORD)]
    if rule.get("health") == "err":
        return [_("the rule fails when Prometheus evaluates it: {last_error}")
                .format(last_error=rule.get('lastError'))]
    # Only samples written since the reload (an earlier version's series stay visible until marked stale), compared
    # with the answer at the moment the rule evaluated.
    recorded = promql.query(f"{P99_RECORD} and timestamp({P99_RECORD}) > {loaded_at.timestamp():.3f}")
    at = recorded["time"].max() if not recorded.empty else None
    reference = promql.query(P99_REFERENCE.format(ns=attempt.namespace), at=at)
    return _compare(recorded.drop(columns=["__name__"], errors="ignore"), reference, "service", tolerance=0.25)


P99_SOLUTION = f"""groups:
- name: lesson-06
  rules:
  - record: {P99_RECORD}
    expr: {P99_REFERENCE.format(ns=NAMESPACE)}
"""

P99_RULE = Exercise(
    id="06-p99-recording-rule",
    task=f"Write a rule file with a recording rule `{P99_RECORD}`: the 99th percentile request duration of each "
         "Service in namespace lesson-06 over the last minute, one series per `service`. labkit checks it with "
         "promtool, loads it into the lab's Prometheus, and compares what it records.",
    hint="histogram_quantile(0.99, ...) over rate(http_request_duration_seconds_bucket{namespace=\"lesson-06\"}[1m]) "
         "summed by (service, le): the `le` label must survive the sum, histogram_quantile needs it",
    solution=P99_SOLUTION,
    check=_check_p99_rule,
    solve=lambda a: P99_SOLUTION,
)

EXERCISES = [CPU_QUERY, P99_RULE]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "06_prometheus",
    "observability (可观测性): Prometheus' architecture from the live lab (targets, pull, service discovery "
    "and relabelling, TSDB), PromQL into pandas, recording rules, USE/RED/golden signals, control-plane "
    "and kube-state-metrics metrics",
    LessonRights("add-ons prometheus (its Kubernetes discovery lists nodes and pods in every namespace), "
                 "kube-state-metrics",
                 refused="its add-ons (Prometheus, kube-state-metrics, service discovery) read every "
                         "namespace with the admin kubeconfig, so its queries would show other students' "
                         "pods"),
    addons=tuple(ADDONS),
    exercises=tuple(EXERCISES),
)
