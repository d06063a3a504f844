"""Lesson 09, cluster logging (集群日志): notebook 09_logging's helpers and exercise.

``kubectl logs`` reads one container's log from its node; the simulated pods' logs are written by the workload
model (:mod:`labkit.sim.pod_logs`: one JSON line per request its metrics count, the echo output and crash of a
shell container) and served by KWOK. Cluster logging keeps them after the pod is gone: a node-level agent
(vlagent, the ``log-agent`` add-on, one per node) ships every container's log, labelled with its namespace, pod and
container, to a log store (VictoriaLogs, the ``victoria-logs`` add-on) that answers LogsQL.
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pandas as pd

from .. import addons
from ..course import Lesson, LessonRights
from ..errors import LabkitError
from ..exercises import Attempt, Exercise
from ..kube.apply import apply
from ..kube.client import Lab, api_errors
from ..kube.objects import patch
from ..kube.wait import poll, wait_for_set
from ..settings import LOCAL_HTTP_TIMEOUT_S
from ..sim.pod_logs import ERROR_MESSAGE_ANNOTATION, ERROR_RATE_ANNOTATION

STORE, AGENT = "victoria-logs", "log-agent"
# Fields vlagent gives every record (vector's kubernetes_logs names); the first three are its stream fields.
NS, POD, CONTAINER = "kubernetes.pod_namespace", "kubernetes.pod_name", "kubernetes.container_name"
INJECTED_ERROR = "payment gateway timeout after 3000ms"
EXERCISE_ID = "09-find-error-pod"
SHOP_PODS = 7  # frontend x2, orders x3, load-generator, worker

SHOP = """\
# frontend -> orders: the frontend calls http://orders for every request it serves (its ORDERS_URL)
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, labels: {app: frontend}}
spec:
  replicas: 2
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec:
      containers:
      - name: frontend
        image: nginx:1.27
        env: [{name: ORDERS_URL, value: "http://orders"}]
        resources: {requests: {cpu: 100m}, limits: {cpu: 500m}}
---
apiVersion: v1
kind: Service
metadata: {name: frontend}
spec: {selector: {app: frontend}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, labels: {app: orders}}
spec:
  replicas: 3
  selector: {matchLabels: {app: orders}}
  template:
    metadata: {labels: {app: orders}}
    spec:
      containers:
      - name: orders
        image: nginx:1.27
        resources: {requests: {cpu: 100m}, limits: {cpu: 500m}}
---
apiVersion: v1
kind: Service
metadata: {name: orders}
spec: {selector: {app: orders}, ports: [{port: 80}]}
---
# the load generator of the HPA walkthrough, against the frontend
apiVersion: v1
kind: Pod
metadata: {name: load-generator, labels: {app: load-generator}}
spec:
  containers:
  - name: load
    image: busybox:1.28
    command: ["/bin/sh", "-c", "while sleep 0.2; do wget -q -O- http://frontend; done"]
---
# a worker that cannot reach its database: it prints two lines and exits 1 (CrashLoopBackOff)
apiVersion: v1
kind: Pod
metadata: {name: worker, labels: {app: worker}}
spec:
  containers:
  - name: worker
    image: busybox:1.28
    command: ["sh", "-c",
              "echo connecting to postgres://db:5432; sleep 2; echo 'FATAL: database connection refused' >&2; exit 1"]
"""


def start_logging() -> dict[str, str]:
    """The workload model (which writes the pods' logs), VictoriaLogs and one vlagent per node; name -> URL.

    Same as ``labkit up --with workload-model,log-agent`` (on a real cluster: vlagent's DaemonSet from its Helm chart).
    """
    return addons.require("workload-model", STORE, AGENT)


def agents() -> pd.DataFrame:
    """One vlagent per node (on a real cluster: ``kubectl get pods -n logging -l app=vlagent -o wide``)."""
    url = addons.url(AGENT)
    if url is None:
        raise LabkitError("the log agents are not running", fix="l09.start_logging()  # labkit up --with log-agent")
    with urllib.request.urlopen(url, timeout=LOCAL_HTTP_TIMEOUT_S) as resp:  # noqa: S310 - loopback
        state = json.loads(resp.read())
    return pd.DataFrame([{"node": node, "healthy": s["healthy"], "pid": s["pid"], "port": s["port"]}
                         for node, s in sorted(state.items())])


def deploy_shop(lab: Lab, namespace: str) -> list[str]:
    """The lesson's workload (:data:`SHOP`); same as ``kubectl apply -n NAMESPACE -f shop.yaml``."""
    return apply(lab, SHOP, namespace=namespace)


def wait_running(lab: Lab, namespace: str, *, timeout: float = 60.0) -> pd.DataFrame:
    """Block until the shop's frontend and orders pods run and the worker has restarted once; return the pods.

    Same as ``kubectl get pods -n NAMESPACE -w``.
    """
    def done(pods: list[dict[str, Any]]) -> bool:
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        worker = next((p for p in pods if p["metadata"]["name"] == "worker"), {})
        restarts = sum(int(cs.get("restartCount") or 0)
                       for cs in (worker.get("status") or {}).get("containerStatuses") or [])
        return len(running) == len(pods) == SHOP_PODS and restarts >= 1

    pods = wait_for_set(lab, "Pod", namespace=namespace, condition=done, timeout=timeout)
    return pd.DataFrame([{"pod": p["metadata"]["name"], "phase": p["status"].get("phase"),
                          "restarts": sum(int(cs.get("restartCount") or 0)
                                          for cs in p["status"].get("containerStatuses") or [])}
                         for p in pods]).sort_values("pod").reset_index(drop=True)


def logs(lab: Lab, namespace: str, pod: str, *, container: str | None = None, previous: bool = False,
         since_seconds: int | None = None, tail: int | None = None) -> str:
    """One container's log, as its node serves it; same as
    ``kubectl logs -n NAMESPACE POD [-c CONTAINER] [--previous] [--since=Ns] [--tail=N]``."""
    options: dict[str, Any] = {"previous": previous}
    if container:
        options["container"] = container
    if since_seconds:
        options["since_seconds"] = since_seconds
    if tail is not None:
        options["tail_lines"] = tail
    with api_errors(f"reading the log of pod {namespace}/{pod}", server=lab.server):
        return str(lab.core.read_namespaced_pod_log(pod, namespace, **options))


def parse_json_lines(text: str) -> pd.DataFrame:
    """A log of JSON lines as a table (lines that are not JSON go into ``msg``)."""
    rows = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = {"msg": line}
        rows.append(record if isinstance(record, dict) else {"msg": line})
    return pd.DataFrame(rows)


def _store() -> str:
    url = addons.url(STORE)
    if url is None:
        raise LabkitError("VictoriaLogs is not running", fix="lk.addons.require('victoria-logs')  # or: labkit up "
                          "--with log-agent")
    return url


def query(logsql: str, *, limit: int | None = None) -> pd.DataFrame:
    """Run a LogsQL query against the lab's VictoriaLogs; one row per record (or per stats group).

    Same as ``curl http://127.0.0.1:PORT/select/logsql/query -d 'query=LOGSQL' [-d limit=N]``.
    """
    data = {"query": logsql, **({"limit": str(limit)} if limit else {})}
    request = urllib.request.Request(f"{_store()}/select/logsql/query",  # noqa: S310 - loopback
                                     data=urllib.parse.urlencode(data).encode())
    try:
        with urllib.request.urlopen(request, timeout=LOCAL_HTTP_TIMEOUT_S) as resp:  # noqa: S310 - loopback
            text = resp.read().decode()
    except urllib.error.HTTPError as exc:
        raise LabkitError(f"VictoriaLogs refused the query {logsql!r}: {exc.read().decode()[:300]}",
                          fix="check the syntax: https://docs.victoriametrics.com/victorialogs/logsql/") from None
    frame = pd.DataFrame([json.loads(line) for line in text.splitlines() if line.strip()])
    for column in frame.columns:
        if column in ("n", "errors", "lines") or column.startswith("count"):
            frame[column] = pd.to_numeric(frame[column])
    return frame


def scope(lab: Lab, namespace: str) -> str:
    """The LogsQL filter for this run of the lesson: its namespace, since that namespace was created (the store
    keeps the logs of an earlier run's pods, of the same namespace name, as it should)."""
    with api_errors(f"reading namespace {namespace}", server=lab.server):
        created = lab.core.read_namespace(namespace).metadata.creation_timestamp
    return f"{NS}:{namespace} _time:>={created.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def wait_shipped(where: str, *, pods: int, timeout: float = 60.0) -> pd.DataFrame:
    """Block until the store holds logs of ``pods`` pods matching ``where`` (:func:`scope`); return lines per stream."""
    logsql = f"{where} | stats by ({NS}, {POD}, {CONTAINER}) count() lines"

    def check() -> tuple[bool, pd.DataFrame]:
        frame = query(logsql)
        return len(frame) >= pods, frame

    frame = poll(check, timeout=timeout, what=f"logs of {pods} pods ({where}) not in VictoriaLogs",
                  fix=f"curl {_store()}/select/logsql/query -d 'query={logsql}'; "
                      f"curl {addons.url(AGENT)}   # each node's vlagent and its log")
    return frame.sort_values(POD).reset_index(drop=True)


def errors_by_pod(where: str) -> pd.DataFrame:
    """Error lines per pod in the store (LogsQL: ``level:error``, counted by pod)."""
    frame = query(f"{where} level:error | stats by ({POD}, _msg) count() errors")
    if frame.empty:
        return pd.DataFrame(columns=["pod", "_msg", "errors"])
    return (frame.rename(columns={POD: "pod"})[["pod", "_msg", "errors"]]
            .sort_values("errors", ascending=False).reset_index(drop=True))


def follow_request(where: str, request_id: str) -> pd.DataFrame:
    """Every line that carries ``request_id``, oldest first: one request followed across services."""
    frame = query(f"{where} request_id:={request_id} | sort by (_time)")
    return frame.rename(columns={POD: "pod"})[["_time", "pod", "service", "level", "_msg", "status", "request_id"]]


def forwarded_request(where: str) -> str:
    """A request id the frontend logged and passed on to orders (one that both services logged)."""
    frame = query(f"{where} request_id:* | stats by (request_id) count_uniq(service) services "
                  "| filter services:=2 | limit 1")
    if frame.empty:
        raise LabkitError(f"no request id ({where}) logged by two services yet",
                          fix="wait a few seconds for the load generator's requests to be shipped, then run again")
    return str(frame.request_id.iloc[0])


def _model_metrics() -> dict[tuple[str, str], float]:
    url = (addons.url("workload-model") or "").removesuffix("/state")
    with urllib.request.urlopen(f"{url}/metrics", timeout=LOCAL_HTTP_TIMEOUT_S) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("http_requests_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            out[(labels["namespace"].strip('"'), labels["pod"].strip('"'))] = float(line.rsplit(" ", 1)[1])
    return out


def logs_vs_metrics(lab: Lab, namespace: str, *, timeout: float = 30.0) -> pd.DataFrame:
    """Per serving pod: ``http_requests_total`` (the workload model's metric) beside the request lines the store
    holds; waits until they agree (the agent ships within a second or two). Stop the load first: then both stand still.

    Same as ``curl .../metrics | grep http_requests_total`` beside LogsQL ``msg:* status:* | stats by (pod) count()``.
    """
    def check() -> tuple[bool, pd.DataFrame]:
        metrics = {pod: v for (ns, pod), v in _model_metrics().items() if ns == namespace}
        frame = query(f"{scope(lab, namespace)} status:* | stats by ({POD}) count() lines")
        shipped = dict(zip(frame[POD], frame.lines, strict=True)) if not frame.empty else {}
        table = pd.DataFrame([{"pod": p, "http_requests_total": int(v), "request lines in the store":
                               int(shipped.get(p, 0))} for p, v in sorted(metrics.items())])
        return (not table.empty and (table.http_requests_total == table["request lines in the store"]).all(),
                table)

    return poll(check, timeout=timeout, what="request lines in the store and http_requests_total do not agree",
                 fix=f"curl {_store()}/select/logsql/query -d 'query={NS}:{namespace} status:* | stats by ({POD}) "
                     "count()'")


def stop_load(lab: Lab, namespace: str) -> None:
    """Delete the load generator; same as ``kubectl delete pod load-generator -n NAMESPACE --wait``."""
    with api_errors("deleting the load generator", server=lab.server):
        lab.core.delete_namespaced_pod("load-generator", namespace, grace_period_seconds=0)
    wait_for_set(lab, "Pod", namespace=namespace, label_selector="app=load-generator",
                 condition=lambda pods: not pods, timeout=30)


def inject_error(lab: Lab, namespace: str, *, rate: float = 0.3) -> None:
    """Make ONE orders pod (chosen at random, not shown) fail ``rate`` of its requests with :data:`INJECTED_ERROR`.

    Same as ``kubectl annotate pod ORDERS_POD workload.labkit.io/error-rate=0.3
    workload.labkit.io/error-message='...'`` (the workload model's fault knob).
    """
    with api_errors("listing the orders pods", server=lab.server):
        pods = sorted(p.metadata.name for p in lab.core.list_namespaced_pod(namespace, label_selector="app=orders")
                      .items if not p.metadata.deletion_timestamp)
    victim = random.choice(pods)  # noqa: S311 - an exercise, not cryptography
    patch(lab, "Pod", victim, {"metadata": {"annotations": {ERROR_RATE_ANNOTATION: str(rate),
                                                            ERROR_MESSAGE_ANNOTATION: INJECTED_ERROR}}},
          namespace=namespace)


def wait_errors(where: str, *, timeout: float = 60.0) -> int:
    """Block until the store holds an error line of the injected fault; return how many there are."""
    logsql = f'{where} level:error "{INJECTED_ERROR}" | stats count() n'

    def check() -> tuple[bool, int]:
        frame = query(logsql)
        n = int(frame.n.iloc[0]) if not frame.empty else 0
        return n > 0, n

    return poll(check, timeout=timeout, what=f"no {INJECTED_ERROR!r} line in VictoriaLogs",
                 fix=f"curl {_store()}/select/logsql/query -d 'query={logsql}'")


def _pods_with_error(where: str) -> list[str]:
    frame = query(f'{where} level:error "{INJECTED_ERROR}" | stats by ({POD}) count() n')
    return sorted(frame[POD]) if not frame.empty else []


def _check_error_pod(attempt: Attempt) -> list[str]:
    culprits = _pods_with_error(scope(attempt.lab, attempt.namespace))
    if not culprits:
        return [f"no pod of {attempt.namespace} has logged {INJECTED_ERROR!r} yet: run the cell that injects it, "
                "and let the load generator run"]
    if not attempt.answer:
        return ["give the pod's name: lk.check('09-find-error-pod', answer='orders-...')"]
    if attempt.answer not in culprits:
        return [f"{attempt.answer!r} did not log {INJECTED_ERROR!r}"]
    return []


EXERCISES = [Exercise(
    id=EXERCISE_ID,
    task=f"One orders pod has started to fail requests with {INJECTED_ERROR!r}. Find which pod, from the logs in "
         "VictoriaLogs (not from its annotations), and give its name as the answer.",
    hint="l09.query(...) with a LogsQL filter on the namespace, level:error and the phrase in quotes, then "
         "`| stats by (kubernetes.pod_name) count()`; or open the store's UI at /select/vmui.",
    solution=f'l09.query(f\'{{l09.scope(lab, ns)}} level:error "{INJECTED_ERROR}" '
             "| stats by (kubernetes.pod_name) count() n')",
    check=_check_error_pod,
    solve=lambda a: (_pods_with_error(scope(a.lab, a.namespace)) or [None])[0],
)]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "09_logging",
    "cluster logging (集群日志): `kubectl logs` (`--previous`, `-l`, `--since`, `-f`), structured logs, "
    "node-level agent vs sidecar vs direct shipping, vlagent -> VictoriaLogs, LogsQL into pandas (errors "
    "by pod, one request id across services), logs agreeing with metrics",
    LessonRights("add-ons victoria-logs, log-agent (read every namespace's pods and their log files)",
                 refused="its log agents ship every namespace's logs into one store with the admin "
                         "kubeconfig, so its queries would show other students' logs"),
    exercises=tuple(EXERCISES),
)
