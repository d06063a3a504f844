"""Lesson 07, Grafana 可视化 and alerting: notebook 07_dashboards' operator, alerting and exercise helpers.

Real: prometheus-operator (its CRDs, its generated config), the operated Prometheus (3.5.0 built from its module,
the ``prometheus-operated`` add-on), Alertmanager 0.25, kube-state-metrics. Stand-ins, each said where it acts: the
config-reloader sidecar and pod networking (:mod:`labkit.sim.config_reloader`), the apps' ``/metrics``
(:mod:`labkit.sim.workload`), the alert receiver (:mod:`labkit.sim.alert_webhook`).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .. import addons
from ..addons.prometheus_operated import promtool as operated_promtool
from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..errors import LabkitError, NotFound, WaitTimeout
from ..i18n import _
from ..kube.apply import apply
from ..kube.client import Lab, api_errors
from ..kube.wait import wait_for
from ..paths import data_file
from ..settings import OPERATED_NAME, OPERATED_NAMESPACE

# What lesson 07 runs: the operator, its Prometheus with the reloader stand-in, Alertmanager and the receiver;
# kube-state-metrics; the lab's own Prometheus, which the dashboards (section 6) read.
ADDONS = ("config-reloader", "kube-state-metrics", "prometheus")
MONITORING = OPERATED_NAMESPACE
PROMETHEUS = OPERATED_NAME
SECRET = f"prometheus-{OPERATED_NAME}"
GROUP, VERSION = "monitoring.coreos.com", "v1"
# The lesson's PrometheusRules (checked by `promtool check rules` and `promtool test rules` in the unit tests).
RULES_DIR = "prometheus-operator/rules"


def start(lab: Lab, namespace: str | None = None) -> dict[str, str]:
    """Start what the lesson needs (``labkit up --with config-reloader,kube-state-metrics,prometheus``), tell the
    operated Prometheus to scrape kube-state-metrics (a ScrapeConfig: it runs out of cluster, on 127.0.0.1), and clear
    what an earlier run left in Alertmanager for ``namespace`` (see :func:`reset_alertmanager`)."""
    urls = addons.require(*[a for a in ADDONS if a in addons.REGISTRY])
    if "kube-state-metrics" in urls:
        apply(lab, scrape_config_for_addons())
    # On a lab just started, the operator is still reconciling: wait until its Prometheus runs and says so
    # (kubectl -n monitoring wait prometheus/lab --for=condition=Available), so the first tables show it running.
    wait_for(lab, "Prometheus", PROMETHEUS, namespace=MONITORING, api_version=f"{GROUP}/{VERSION}",
             condition="condition=Available", timeout=120)
    wait_for(lab, "StatefulSet", f"prometheus-{PROMETHEUS}", namespace=MONITORING, api_version="apps/v1",
             condition="jsonpath={.status.readyReplicas}=1", timeout=120)
    if namespace:
        reset_alertmanager(namespace)
    return urls


def reset_alertmanager(namespace: str) -> None:
    """Expire the silences and resolve the alerts of ``namespace`` that an earlier run left in Alertmanager.

    Prometheus stops sending an alert whose rule went with the namespace, but Alertmanager keeps it until its
    ``endsAt`` (minutes). Same as ``amtool silence expire $(amtool silence query -q namespace=NS)`` and posting the
    alerts back with ``endsAt`` now (``POST /api/v2/alerts``), which is how a Prometheus resolves an alert.
    """
    expire_silences(namespace)
    now = _iso(time.time())
    stale = [{"labels": a["labels"], "annotations": a.get("annotations", {}), "startsAt": a["startsAt"],
              "endsAt": now} for a in _get(alertmanager_url(), "/api/v2/alerts")
             if a["labels"].get("namespace") == namespace]
    if stale:
        request = urllib.request.Request(alertmanager_url() + "/api/v2/alerts", data=json.dumps(stale).encode(),  # noqa: S310
                                         headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - the lab's Alertmanager on loopback


def scrape_config_for_addons() -> dict[str, Any]:
    """A ScrapeConfig (``monitoring.coreos.com/v1alpha1``) for kube-state-metrics on 127.0.0.1: the operator's way to
    scrape a target outside the cluster, where no Service or pod IP leads (``kubectl apply -f`` it)."""
    port = urllib.parse.urlsplit(addons.url("kube-state-metrics") or "").port
    return {"apiVersion": "monitoring.coreos.com/v1alpha1", "kind": "ScrapeConfig",
            "metadata": {"name": "kube-state-metrics", "namespace": MONITORING,
                         "labels": {"app.kubernetes.io/managed-by": "labkit"}},
            "spec": {"staticConfigs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"job": "kube-state-metrics"}}],
                     # kube-state-metrics' own namespace/pod labels describe the objects: keep them.
                     "honorLabels": True, "scrapeInterval": "2s"}}


# --- what the operator made --------------------------------------------------------------------------------------

def generated_config(lab: Lab) -> str:
    """The config the operator generated, as it sits in the Secret.

    Same as ``kubectl -n monitoring get secret prometheus-lab -o jsonpath='{.data.prometheus\\.yaml\\.gz}' |
    base64 -d | gunzip``.
    """
    with api_errors(_("reading Secret {namespace}/{name}").format(namespace=MONITORING, name=SECRET),
                    server=lab.server):
        secret = lab.core.read_namespaced_secret(SECRET, MONITORING)
    return gzip.decompress(base64.b64decode((secret.data or {})["prometheus.yaml.gz"])).decode()


def crds(lab: Lab) -> pd.DataFrame:
    """The operator's CustomResourceDefinitions, name and kind (``kubectl get crd | grep monitoring.coreos.com``)."""
    with api_errors(_("listing CRDs"), server=lab.server):
        res = lab.dynamic.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
        items = res.get().items
    rows = [{"name": c.metadata.name, "kind": c.spec.names.kind, "version": c.spec.versions[0].name}
            for c in items if c.spec.group == GROUP]
    return pd.DataFrame(rows, columns=["name", "kind", "version"]).sort_values("name").reset_index(drop=True)


def statefulset_story(lab: Lab) -> pd.DataFrame:
    """The pods of the operator's StatefulSet ``prometheus-lab``, container by container: what runs them here.

    Same as ``kubectl -n monitoring get pods -l operator.prometheus.io/name=lab -o wide`` plus each container's image.
    """
    with api_errors(_("listing the operated Prometheus' pods"), server=lab.server):
        pods = lab.core.list_namespaced_pod(MONITORING, label_selector=f"operator.prometheus.io/name={PROMETHEUS}")
    simulated = lab.backend == "kwok"
    rows = []
    for pod in pods.items:
        for c in pod.spec.containers:
            rows.append({"pod": pod.metadata.name, "node": pod.spec.node_name, "phase": pod.status.phase,
                         "container": c.name, "image": c.image.rsplit("/", 1)[-1],
                         "what runs it here": (("add-on prometheus-operated" if c.name == "prometheus" else
                                                "add-on config-reloader" if c.name == "config-reloader"
                                                else "nothing") if simulated else "the node's container runtime")})
    return pd.DataFrame(rows, columns=["pod", "node", "phase", "container", "image", "what runs it here"])


def pod_metrics(namespace: str, pod: str) -> str:
    """What one simulated pod's ``/metrics`` answers (the workload model's route for it, where the operated
    Prometheus scrapes it): ``curl http://127.0.0.1:PORT/pods/NAMESPACE/POD/metrics``."""
    base = addons.url("workload-model")
    if base is None:
        raise LabkitError(_("the workload model is not running"), fix="labkit up --with workload-model")
    url = base.rsplit("/", 1)[0] + f"/pods/{namespace}/{pod}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the lab's own add-on on loopback
        return resp.read().decode()


def job_of(config: str | dict[str, Any], name: str) -> dict[str, Any]:
    """One ``scrape_configs`` entry by job name (a ServiceMonitor's is ``serviceMonitor/NS/NAME/INDEX``)."""
    doc = yaml.safe_load(config) if isinstance(config, str) else config
    for job in doc.get("scrape_configs") or []:
        if job["job_name"] == name:
            return job
    raise NotFound(_("no scrape job {name!r}; jobs: {jobs}").format(
                       name=name, jobs=[j["job_name"] for j in doc.get("scrape_configs") or []]),
                   fix=_("kubectl get servicemonitors,podmonitors -A; the operator says why it skipped one in its "
                         "log, {log}").format(log=addons.addons_dir() / "prometheus-operator.log"))


def jobs(config: str) -> list[str]:
    """The job names of a Prometheus config."""
    return [j["job_name"] for j in yaml.safe_load(config).get("scrape_configs") or []]


def operated_url() -> str:
    url = addons.url("prometheus-operated")
    if url is None:
        raise LabkitError(_("the operated Prometheus is not running"), fix="labkit up --with config-reloader")
    return url


def _get(base: str, path: str, params: dict[str, str] | None = None, *, timeout: float = 10.0) -> Any:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - the lab's own add-ons on loopback
        return json.loads(resp.read())


def loaded_config() -> str:
    """What the operated Prometheus runs now (``curl http://127.0.0.1:PORT/api/v1/status/config``)."""
    return _get(operated_url(), "/api/v1/status/config")["data"]["yaml"]


def written_config() -> str:
    """The config labkit's config-reloader wrote for the operated Prometheus (``<addons>/prometheus-operated/
    prometheus.yaml``; ``cat`` it): the operator's, rewritten only where out of cluster differs."""
    return (addons.addons_dir() / "prometheus-operated" / "prometheus.yaml").read_text()


def reloader_changes(generated: str, written: str, job: str) -> pd.DataFrame:
    """What labkit's config-reloader changed in one job: what it added to the operator's job."""
    before, after = job_of(generated, job), job_of(written, job)
    rows = []
    for key in ("kubernetes_sd_configs", "relabel_configs"):
        b, a = before.get(key) or [], after.get(key) or []
        if key == "kubernetes_sd_configs":
            for x, y in zip(b, a, strict=False):
                for k in sorted(set(y) - set(x)):
                    value = "the lab's kubeconfig ($KUBECONFIG)" if k == "kubeconfig_file" else y[k]
                    rows.append({"where": f"{key}[].{k}", "operator wrote": None, "reloader wrote": value})
        else:
            for step in a[len(b):]:
                rows.append({"where": f"{key}[+]", "operator wrote": None,
                             "reloader wrote": f"{','.join(step.get('source_labels', []))} -> "
                                               f"{step.get('target_label')} = {step.get('replacement')}"})
    return pd.DataFrame(rows, columns=["where", "operator wrote", "reloader wrote"])


def wait_for_job(job: str, *, timeout: float = 60.0) -> None:
    """Until the operated Prometheus has loaded a config with ``job`` (operator -> Secret -> reloader -> reload)."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = jobs(loaded_config())
        if job in seen:
            return
        time.sleep(0.5)
    raise WaitTimeout(_("the operated Prometheus has not loaded job {job!r} within {timeout:.0f}s; it runs {seen}")
                      .format(job=job, timeout=timeout, seen=seen),
                      last_seen=seen,
                      fix=f"curl {addons.url('config-reloader')}  # "
                      + _("the reloader's last error; {command}").format(
                          command="kubectl -n monitoring get secret prometheus-lab; kubectl get servicemonitors -A"))


# --- targets, queries, rules, alerts of the operated Prometheus ----------------------------------------------------

def targets(job_prefix: str = "") -> pd.DataFrame:
    """Active targets (the Targets page; ``curl http://127.0.0.1:PORT/api/v1/targets``), one row each."""
    body = _get(operated_url(), "/api/v1/targets", {"state": "active"})
    rows = [{"job": t["labels"].get("job"), "namespace": t["labels"].get("namespace"),
             "pod": t["labels"].get("pod"), "instance": t["labels"].get("instance"), "health": t["health"],
             "scrape_url": t["scrapeUrl"], "error": t["lastError"]}
            for t in body["data"]["activeTargets"] if t["scrapePool"].startswith(job_prefix)]
    table = pd.DataFrame(rows, columns=["job", "namespace", "pod", "instance", "health", "scrape_url", "error"])
    return table.sort_values(["job", "pod"]).reset_index(drop=True)


def wait_targets_up(job_prefix: str, count: int, *, timeout: float = 60.0) -> pd.DataFrame:
    """Until ``count`` targets of jobs starting with ``job_prefix`` are up; returns them."""
    deadline = time.monotonic() + timeout
    table = pd.DataFrame()
    while time.monotonic() < deadline:
        table = targets(job_prefix)
        if len(table) >= count and (table.health == "up").sum() >= count:
            return table
        time.sleep(0.5)
    raise WaitTimeout(_("fewer than {count} targets of {job_prefix!r} up within {timeout:.0f}s").format(
                          count=count, job_prefix=job_prefix, timeout=timeout),
                      last_seen=table.to_dict("records"), fix=_("open {url}/targets").format(url=operated_url()))


def query(expr: str) -> pd.DataFrame:
    """An instant PromQL query on the operated Prometheus, one row per series (labels and value).

    Same as ``curl 'http://127.0.0.1:PORT/api/v1/query?query=EXPR'``."""
    body = _get(operated_url(), "/api/v1/query", {"query": expr})
    rows = [{**s["metric"], "value": float(s["value"][1])} for s in body["data"]["result"]]
    return pd.DataFrame(rows)


def wait_query(expr: str, done: Callable[[pd.DataFrame], bool], *, timeout: float = 60.0) -> pd.DataFrame:
    """Until ``done(query(expr))``; returns the last answer."""
    deadline = time.monotonic() + timeout
    table = pd.DataFrame()
    while time.monotonic() < deadline:
        table = query(expr)
        if done(table):
            return table
        time.sleep(0.5)
    raise WaitTimeout(_("{expr!r} did not reach the expected answer within {timeout:.0f}s").format(
                          expr=expr, timeout=timeout),
                      last_seen=table.to_dict("records"), fix=_("run it at {url}/graph").format(url=operated_url()))


def rules() -> pd.DataFrame:
    """The rules the operated Prometheus evaluates (``curl .../api/v1/rules``): file, group, rule, health, state."""
    body = _get(operated_url(), "/api/v1/rules")
    rows = [{"file": Path(g["file"]).name, "group": g["name"], "rule": r["name"], "type": r["type"],
             "for_s": r.get("duration"), "health": r["health"], "state": r.get("state"), "error": r.get("lastError")}
            for g in body["data"]["groups"] for r in g["rules"]]
    return pd.DataFrame(rows, columns=["file", "group", "rule", "type", "for_s", "health", "state", "error"])


def alerts(alertname: str | None = None) -> pd.DataFrame:
    """Alerts the operated Prometheus holds, pending or firing (``curl .../api/v1/alerts``)."""
    body = _get(operated_url(), "/api/v1/alerts")
    rows = [{"alertname": a["labels"].get("alertname"), "state": a["state"], "labels": a["labels"],
             "active_at": a.get("activeAt")}
            for a in body["data"]["alerts"] if alertname is None or a["labels"].get("alertname") == alertname]
    return pd.DataFrame(rows, columns=["alertname", "state", "labels", "active_at"])


def alertmanager_url() -> str:
    url = addons.url("alertmanager")
    if url is None:
        raise LabkitError(_("Alertmanager is not running"), fix="labkit up --with alertmanager")
    return url


def alertmanager_alerts(namespace: str | None = None) -> pd.DataFrame:
    """Alertmanager's view (``amtool alert query --alertmanager.url=URL``; ``curl URL/api/v2/alerts``): each alert's
    state (active, suppressed) and what suppresses it (a silence, or an inhibiting alert)."""
    body = _get(alertmanager_url(), "/api/v2/alerts")
    rows = [{"alertname": a["labels"].get("alertname"), "severity": a["labels"].get("severity"),
             "pod": a["labels"].get("pod"), "state": a["status"]["state"],
             "silenced_by": len(a["status"]["silencedBy"]), "inhibited_by": len(a["status"]["inhibitedBy"])}
            for a in body if namespace is None or a["labels"].get("namespace") == namespace]
    table = pd.DataFrame(rows, columns=["alertname", "severity", "pod", "state", "silenced_by", "inhibited_by"])
    return table.sort_values(["alertname", "pod"], na_position="first").reset_index(drop=True)


def wait_alertmanager(namespace: str, done: Callable[[pd.DataFrame], bool], *,
                      timeout: float = 60.0) -> pd.DataFrame:
    """Until ``done(alertmanager_alerts(namespace))``; returns that table."""
    deadline = time.monotonic() + timeout
    table = pd.DataFrame()
    while time.monotonic() < deadline:
        table = alertmanager_alerts(namespace)
        if len(table) and done(table):
            return table
        time.sleep(0.5)
    raise WaitTimeout(_("Alertmanager's alerts in {namespace} did not reach the expected state within "
                        "{timeout:.0f}s").format(namespace=namespace, timeout=timeout),
                      last_seen=table.to_dict("records"),
                      fix=f"amtool alert query --alertmanager.url={alertmanager_url()}")


def silence(matchers: dict[str, str], *, minutes: int = 30, comment: str = "lesson 07") -> str:
    """Create a silence; returns its id. Same as ``amtool silence add alertname=X namespace=Y --duration=30m
    --comment=... --alertmanager.url=URL`` (or ``POST /api/v2/silences``)."""
    now = time.time()
    body = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()],
            "startsAt": _iso(now), "endsAt": _iso(now + 60 * minutes), "createdBy": "labkit", "comment": comment}
    request = urllib.request.Request(alertmanager_url() + "/api/v2/silences", data=json.dumps(body).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - the lab's Alertmanager on loopback
        return json.loads(resp.read())["silenceID"]


def expire_silences(namespace: str) -> int:
    """Expire every silence that matches ``namespace`` (``amtool silence expire ...``); how many."""
    count = 0
    for s in _get(alertmanager_url(), "/api/v2/silences"):
        if s["status"]["state"] != "expired" and any(m["name"] == "namespace" and m["value"] == namespace
                                                     for m in s["matchers"]):
            request = urllib.request.Request(f"{alertmanager_url()}/api/v2/silence/{s['id']}", method="DELETE")  # noqa: S310
            urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - the lab's Alertmanager on loopback
            count += 1
    return count


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def notifications(namespace: str | None = None, *, after: int = 0) -> pd.DataFrame:
    """What the webhook receiver got from Alertmanager (``curl http://127.0.0.1:PORT/notifications``): one row per
    notification after sequence number ``after``, with the alerts it carried."""
    url = addons.url("alert-webhook")
    if url is None:
        raise LabkitError(_("the webhook receiver is not running"), fix="labkit up --with alert-webhook")
    rows = []
    for record in _get(url.rsplit("/", 1)[0], "/notifications"):
        n = record["notification"]
        if record["seq"] <= after or (namespace and n.get("groupLabels", {}).get("namespace") != namespace):
            continue
        rows.append({"seq": record["seq"], "status": n.get("status"), "receiver": n.get("receiver"),
                     "alertname": (n.get("groupLabels") or {}).get("alertname"),
                     "group": ",".join(f"{k}={v}" for k, v in sorted((n.get("groupLabels") or {}).items())),
                     "alerts": len(n.get("alerts") or []),
                     "pods": ",".join(sorted(a["labels"].get("pod", "") for a in n.get("alerts") or []))})
    return pd.DataFrame(rows, columns=["seq", "status", "receiver", "alertname", "group", "alerts", "pods"])


def last_seq() -> int:
    """The receiver's newest sequence number (0 when nothing arrived): read notifications after it."""
    table = notifications()
    return int(table.seq.max()) if len(table) else 0


def wait_notification(namespace: str, alertname: str, *, after: int, status: str = "firing",
                      pods: set[str] | None = None, timeout: float = 60.0) -> pd.DataFrame:
    """Until a notification of ``alertname`` in ``namespace`` arrives at the receiver (with ``pods``: one that
    carries the alerts of exactly those pods); returns them all.

    Alerts that start firing more than ``group_wait`` apart reach the receiver in two notifications of one group:
    the second, a ``group_interval`` later, carries both."""
    deadline = time.monotonic() + timeout
    table = pd.DataFrame()
    while time.monotonic() < deadline:
        table = notifications(namespace, after=after)
        match = table.group.str.contains(f"alertname={alertname}") & (table.status == status)
        if pods is not None:
            match &= table.pods.map(lambda listed: set(listed.split(",")) == pods)
        if match.any():
            return table
        time.sleep(0.5)
    if pods:
        message = _("no {status} notification of {alertname} in {namespace} carrying {pods} within "
                    "{timeout:.0f}s").format(status=status, alertname=alertname, namespace=namespace,
                                             pods=sorted(pods), timeout=timeout)
    else:
        message = _("no {status} notification of {alertname} in {namespace} within {timeout:.0f}s").format(
            status=status, alertname=alertname, namespace=namespace, timeout=timeout)
    raise WaitTimeout(message, last_seen=table.to_dict("records"),
                      fix=_("look at the alert in Prometheus ({prometheus}/alerts) and Alertmanager "
                            "({alertmanager}); amtool alert query --alertmanager.url={alertmanager}").format(
                          prometheus=operated_url(), alertmanager=alertmanager_url()))


def promtool_check_rules(rule: dict[str, Any]) -> str:
    """``promtool check rules`` on a PrometheusRule's groups (what the operator puts in the rule ConfigMap), with
    the lab's promtool (the operated Prometheus' build, there since that add-on runs)."""
    tool = operated_promtool()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)
    proc = subprocess.run([tool, "check", "rules", f.name], capture_output=True, text=True, timeout=30)
    Path(f.name).unlink()
    return (proc.stdout + proc.stderr).replace(f.name, "rules.yaml").strip()


# --- the lesson's apps ---------------------------------------------------------------------------------------------

# An instrumented app (its pods' /metrics: http_requests_total, http_request_duration_seconds), its Service with a
# named port, and a client that loops requests against it (load, as in lesson 04).
SHOP_APP = data_file("lessons/07/shop.yaml").read_text()

SERVICE_MONITOR = data_file("lessons/07/service-monitor.yaml").read_text()

# Alerts on the shop's traffic: one per busy pod (warning), and one for the whole Service (critical), which
# Alertmanager's inhibition rule lets silence the warnings about the same Service. PrometheusRules, as files.
SHOP_RULES = data_file(f"{RULES_DIR}/shop-alerts.yaml").read_text()
SHOP_CRITICAL_RULE = data_file(f"{RULES_DIR}/shop-critical.yaml").read_text()

# The exercise's broken Deployment: its image does not exist, so its pod never becomes available.
PAYMENTS_APP = data_file("lessons/07/payments.yaml").read_text()
# Both apps, as the notebook applies them at its top.
APPS = SHOP_APP + "---\n" + PAYMENTS_APP


# --- exercise: an alert for Deployments with unavailable replicas --------------------------------------------------

METRIC = "kube_deployment_status_replicas_unavailable"
SOLUTION_RULE = data_file(f"{RULES_DIR}/deployment-alerts.yaml").read_text()


def _duration_s(text: str | None) -> float:
    """A Prometheus duration (``1m``, ``60s``, ``1m30s``) in seconds; 0 when absent."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text or ""))


def _prometheus_rules(lab: Lab, namespace: str) -> list[dict[str, Any]]:
    with api_errors(_("listing PrometheusRules in {namespace}").format(namespace=namespace), server=lab.server):
        res = lab.dynamic.resources.get(api_version=f"{GROUP}/{VERSION}", kind="PrometheusRule")
        return [r.to_dict() for r in res.get(namespace=namespace).items]


def check_unavailable_alert(attempt: Attempt) -> list[str]:
    """The learner's PrometheusRule: an alert on kube_deployment_status_replicas_unavailable with ``for: 1m``,
    loaded by the operated Prometheus, active (pending or firing) for the broken Deployment ``payments`` and for no
    healthy one."""
    lab, ns = attempt.lab, attempt.namespace
    candidates = [(pr["metadata"]["name"], g["name"], r) for pr in _prometheus_rules(lab, ns)
                  for g in pr["spec"].get("groups") or [] for r in g.get("rules") or []
                  if "alert" in r and METRIC in str(r.get("expr", ""))]
    if not candidates:
        return [_("no PrometheusRule in namespace {ns} has an alerting rule on {metric} (kubectl -n {ns} get "
                  "prometheusrules -o yaml)").format(ns=ns, metric=METRIC)]
    timed = [c for c in candidates if _duration_s(c[2].get("for")) == 60]
    if not timed:
        return [_("alert {alert} has for: {duration}; the task asks that the replicas stay unavailable for 1 minute "
                  "before it fires").format(alert=c[2]["alert"], duration=c[2].get("for", _("(none)")))
                for c in candidates]
    name = timed[0][2]["alert"]
    loaded = rules()
    mine = loaded[(loaded.rule == name) & loaded.file.str.startswith(f"{ns}-")]
    if mine.empty:
        return [_("the operated Prometheus has not loaded alert {name} yet (operator -> rule ConfigMap -> "
                  "config-reloader -> /-/reload takes a few seconds; check again)").format(name=name)]
    if (mine.health == "err").any():
        return [_("Prometheus cannot evaluate {name}: {error}").format(name=name, error=mine.error.iloc[0])]
    active = alerts(name)
    found = {(a.get("namespace"), a.get("deployment")): state for a, state in zip(active.labels, active.state,
                                                                                   strict=True)}
    problems = []
    if found.get((ns, "payments")) not in ("pending", "firing"):
        seen = query(METRIC + '{namespace="' + ns + '"}').to_dict("records")
        problems.append(_("{name} is not active for Deployment {ns}/payments, whose replica is unavailable "
                          "(Prometheus sees: {seen})").format(name=name, ns=ns, seen=seen))
    if found.get((ns, "shop")):
        problems.append(_("{name} is also active for {ns}/shop, whose replicas are all available: compare with > 0")
                        .format(name=name, ns=ns))
    return problems


def wait_exercise(attempt: Attempt, *, timeout: float = 90.0) -> list[str]:
    """Re-check the exercise until it passes or ``timeout`` (for tests); the problems left (empty: PASS)."""
    deadline = time.monotonic() + timeout
    problems = check_unavailable_alert(attempt)
    while problems and time.monotonic() < deadline:
        time.sleep(1)
        problems = check_unavailable_alert(attempt)
    return problems


def solve_unavailable_alert(attempt: Attempt) -> None:
    apply(attempt.lab, SOLUTION_RULE, namespace=attempt.namespace)


# --- exercise: a panel of your own, in Grafana's dashboard JSON model ---------------------------------------------

PANEL_TITLE = "Unavailable replicas"
PANEL = {
    "type": "timeseries",
    "title": PANEL_TITLE,
    "targets": [{"refId": "A", "expr": 'kube_deployment_status_replicas_unavailable{namespace="$namespace"}',
                 "legendFormat": "{{deployment}}"}],
}
PANEL_SOLUTION = """panel = {
    "type": "timeseries",
    "title": "Unavailable replicas",
    "targets": [{"refId": "A", "expr": 'kube_deployment_status_replicas_unavailable{namespace="$namespace"}',
                 "legendFormat": "{{deployment}}"}],
}
my_dashboard = lk.dashboards.add_panel("workloads", panel)   # a copy of the shipped JSON with the panel added
# Path("my-workloads.json").write_text(json.dumps(my_dashboard, indent=2)) saves it for Grafana's Import.
lk.check(lab, "07-dashboard-panel", namespace=ns, answer=my_dashboard)
"""


def check_dashboard_panel(attempt: Attempt) -> list[str]:
    """The learner's dashboard (a JSON model as a dict, or a file's path) has a panel titled
    :data:`PANEL_TITLE` on ``kube_deployment_status_replicas_unavailable`` that Grafana would import and labkit renders
    with data for the lesson's namespace."""
    from .. import dashboards

    if attempt.answer is None:
        return [_("pass your dashboard as answer=: its JSON model (a dict) or the path of your .json file")]
    try:
        board = dashboards.load(attempt.answer)
        panel = board.panel(PANEL_TITLE)
    except LabkitError as exc:
        return [str(exc)]
    if not any(METRIC in t.expr for t in panel.targets):
        return [_("panel {panel_title!r} does not query {metric}").format(panel_title=PANEL_TITLE, metric=METRIC)]
    problem = dashboards.check_panel(attempt.answer, PANEL_TITLE, variables={"namespace": attempt.namespace},
                                     time_range="5m")
    return [problem] if problem else []


def solve_dashboard_panel(attempt: Attempt) -> dict[str, Any]:
    from .. import dashboards

    return dashboards.add_panel("workloads", PANEL)


EXERCISES = [
    Exercise(
        id="07-unavailable-alert",
        task="Write a PrometheusRule in your namespace with an alert that fires when a Deployment has unavailable "
             "replicas for 1 minute (kube-state-metrics' kube_deployment_status_replicas_unavailable).",
        hint="an alerting rule: `alert: NAME`, `expr:` a comparison that keeps only Deployments with unavailable "
             "replicas, and `for: 1m`; kubectl apply -f it into your namespace",
        solution=SOLUTION_RULE,
        check=check_unavailable_alert,
        solve=solve_unavailable_alert,
    ),
    Exercise(
        id="07-dashboard-panel",
        task=f"Add a panel titled {PANEL_TITLE!r} to the shipped workloads dashboard's JSON that shows "
             f"{METRIC} for $namespace, and check it with answer=your dashboard.",
        hint="a panel is a dict: type (timeseries, stat, ...), title, and targets with refId and expr (PromQL, "
             "$namespace allowed); lk.dashboards.add_panel(\"workloads\", panel) returns the dashboard with it added",
        solution=PANEL_SOLUTION,
        check=check_dashboard_panel,
        solve=solve_dashboard_panel,
    ),
]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "07_dashboards",
    "prometheus-operator (ServiceMonitor -> generated config -> scraped by the Prometheus it runs), "
    "PrometheusRule -> alert -> Alertmanager (grouping, inhibition, silences) -> a webhook receiver (告警), "
    "and Grafana-model dashboards rendered live (Grafana 可视化)",
    LessonRights("prometheus-operator CRDs; the namespace monitoring; add-ons",
                 refused="it installs prometheus-operator's CustomResourceDefinitions and works in the "
                         "shared namespace `monitoring`"),
    addons=tuple(ADDONS),
    exercises=tuple(EXERCISES),
)
