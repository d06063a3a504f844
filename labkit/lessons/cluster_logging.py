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
from ..course.exercises import Attempt, Exercise
from ..errors import LabkitError
from ..i18n import _
from ..kube.apply import apply
from ..kube.client import Lab, api_errors
from ..kube.objects import patch
from ..kube.wait import poll, wait_for_set
from ..settings import LOCAL_HTTP_TIMEOUT_S
from ..sim.pod_logs import ERROR_MESSAGE_ANNOTATION, ERROR_RATE_ANNOTATION

STORE, AGENT = "victoria-logs", "log-agent"
# Fields vlagent gives every record (vector's kubernetes_logs names); the first three are its stream fields.
NS, POD, CONTAINER = "kubernetes.pod_namespace", "kubernetes.pod_name", "kubernetes.container_name"
INJECTED_ERROR = "payment gateway timeout after 3000ms"  # the walkthrough's fault, in one orders pod
EXERCISE_ERROR = "inventory lookup failed: upstream returned 503"  # the exercise's, in a pod the learner must find
EXERCISE_ID = "09-find-error-pod"
QUERY_EXERCISE_ID = "09-errors-query"
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
        raise LabkitError(_("the log agents are not running"), fix="l09.start_logging()  # labkit up --with log-agent")
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
    with api_errors(_("reading the log of pod {namespace}/{pod}").format(namespace=namespace, pod=pod),
                    server=lab.server):
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
        raise LabkitError(_("VictoriaLogs is not running"), fix="lk.addons.require('victoria-logs')  # "
                          + _("or: {command}").format(command="labkit up --with log-agent"))
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
        raise LabkitError(_("VictoriaLogs refused the query {logsql!r}: {error}").format(
                              logsql=logsql, error=exc.read().decode()[:300]),
                          fix=_("check the syntax: https://docs.victoriametrics.com/victorialogs/logsql/")) from None
    frame = pd.DataFrame([json.loads(line) for line in text.splitlines() if line.strip()])
    for column in frame.columns:
        if column in ("n", "errors", "lines") or column.startswith("count"):
            frame[column] = pd.to_numeric(frame[column])
    return frame


def scope(lab: Lab, namespace: str) -> str:
    """The LogsQL filter for this run of the lesson: its namespace, since that namespace was created (the store
    keeps the logs of an earlier run's pods, of the same namespace name, as it should)."""
    with api_errors(_("reading namespace {namespace}").format(namespace=namespace), server=lab.server):
        created = lab.core.read_namespace(namespace).metadata.creation_timestamp
    return f"{NS}:{namespace} _time:>={created.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def wait_shipped(where: str, *, pods: int, timeout: float = 60.0) -> pd.DataFrame:
    """Block until the store holds logs of ``pods`` pods matching ``where`` (:func:`scope`); return lines per stream."""
    logsql = f"{where} | stats by ({NS}, {POD}, {CONTAINER}) count() lines"

    def check() -> tuple[bool, pd.DataFrame]:
        frame = query(logsql)
        return len(frame) >= pods, frame

    frame = poll(check, timeout=timeout,
                 what=_("logs of {pods} pods ({where}) not in VictoriaLogs").format(pods=pods, where=where),
                 fix=f"curl {_store()}/select/logsql/query -d 'query={logsql}'; "
                     f"curl {addons.url(AGENT)}   # " + _("each node's vlagent and its log"))
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
        raise LabkitError(_("no request id ({where}) logged by two services yet").format(where=where),
                          fix=_("wait a few seconds for the load generator's requests to be shipped, then run again"))
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

    return poll(check, timeout=timeout, what=_("request lines in the store and http_requests_total do not agree"),
                 fix=f"curl {_store()}/select/logsql/query -d 'query={NS}:{namespace} status:* | stats by ({POD}) "
                     "count()'")


def stop_load(lab: Lab, namespace: str) -> None:
    """Delete the load generator; same as ``kubectl delete pod load-generator -n NAMESPACE --wait``."""
    with api_errors(_("deleting the load generator"), server=lab.server):
        lab.core.delete_namespaced_pod("load-generator", namespace, grace_period_seconds=0)
    wait_for_set(lab, "Pod", namespace=namespace, label_selector="app=load-generator",
                 condition=lambda pods: not pods, timeout=30)


def _serving_pods(lab: Lab, namespace: str, app: str) -> list[str]:
    with api_errors(_("listing the {app} pods").format(app=app), server=lab.server):
        return sorted(p.metadata.name for p in lab.core.list_namespaced_pod(namespace, label_selector=f"app={app}")
                      .items if not p.metadata.deletion_timestamp)


def _fail(lab: Lab, namespace: str, pod: str, message: str | None, rate: float) -> None:
    """The workload model's fault knob on one pod (``message`` None: take it off)."""
    annotations = {ERROR_RATE_ANNOTATION: str(rate) if message else None, ERROR_MESSAGE_ANNOTATION: message}
    patch(lab, "Pod", pod, {"metadata": {"annotations": annotations}}, namespace=namespace)


def inject_error(lab: Lab, namespace: str, *, rate: float = 0.3) -> None:
    """Make ONE orders pod (chosen at random, not shown) fail ``rate`` of its requests with :data:`INJECTED_ERROR`.

    Same as ``kubectl annotate pod ORDERS_POD workload.labkit.io/error-rate=0.3
    workload.labkit.io/error-message='...'`` (the workload model's fault knob).
    """
    victim = random.choice(_serving_pods(lab, namespace, "orders"))  # noqa: S311 - an exercise, not cryptography
    _fail(lab, namespace, victim, INJECTED_ERROR, rate)


def start_exercise(lab: Lab, namespace: str, *, rate: float = 0.3) -> None:
    """The exercises' fault: the walkthrough's fault taken off, the load generator back (section 6 deleted it), and
    one serving pod, frontend or orders, chosen at random and not shown, failing ``rate`` of its requests with an
    error the walkthrough never showed. Same as ``kubectl annotate pod POD workload.labkit.io/error-...-``, then
    ``kubectl apply -n NAMESPACE -f shop.yaml``, then the annotation on a pod you are not told."""
    serving = _serving_pods(lab, namespace, "frontend") + _serving_pods(lab, namespace, "orders")
    for pod in serving:
        _fail(lab, namespace, pod, None, 0)
    deploy_shop(lab, namespace)
    _fail(lab, namespace, random.choice(serving), EXERCISE_ERROR, rate)  # noqa: S311 - an exercise
    wait_errors(scope(lab, namespace), message=EXERCISE_ERROR, timeout=90)


def wait_errors(where: str, *, message: str = INJECTED_ERROR, timeout: float = 60.0) -> int:
    """Block until the store holds an error line with ``message``; return how many there are."""
    logsql = f'{where} level:error "{message}" | stats count() n'

    def check() -> tuple[bool, int]:
        frame = query(logsql)
        n = int(frame.n.iloc[0]) if not frame.empty else 0
        return n > 0, n

    return poll(check, timeout=timeout, what=_("no {message!r} line in VictoriaLogs").format(message=message),
                 fix=f"curl {_store()}/select/logsql/query -d 'query={logsql}'")


def _pods_with_error(where: str, message: str = EXERCISE_ERROR) -> list[str]:
    frame = query(f'{where} level:error "{message}" | stats by ({POD}) count() n')
    return sorted(frame[POD]) if not frame.empty else []


def _check_error_pod(attempt: Attempt) -> list[str]:
    culprits = _pods_with_error(scope(attempt.lab, attempt.namespace))
    if not culprits:
        return [_("no pod of {namespace} has logged the exercise's error yet: run l09.start_exercise(lab, ns), and "
                  "give the load generator a few seconds").format(namespace=attempt.namespace)]
    if not attempt.answer:
        return [_("give the pod's name: answer = \"frontend-...\" or \"orders-...\"")]
    if attempt.answer not in culprits:
        return [_("{answer!r} has logged no error since the exercise started").format(answer=attempt.answer)]
    return []


def _errors_per_pod(frame: pd.DataFrame) -> dict[str, float]:
    """A stats answer's pods and counts: the pod column, and the one numeric column beside it."""
    if frame.empty or POD not in frame.columns:
        return {}
    numbers = [c for c in frame.columns if c != POD and pd.to_numeric(frame[c], errors="coerce").notna().all()]
    if len(numbers) != 1:
        return {}
    return dict(zip(frame[POD], pd.to_numeric(frame[numbers[0]]), strict=True))


def _check_errors_query(attempt: Attempt) -> list[str]:
    if not isinstance(attempt.answer, str) or not attempt.answer.strip():
        return [_("give your LogsQL query as a string: my_query = '...'")]
    try:
        answered = _errors_per_pod(query(attempt.answer))
    except LabkitError as exc:
        return [str(exc)]
    # the store's own count, read after the learner's: lines only arrive, so theirs can be lower, never higher
    where = scope(attempt.lab, attempt.namespace)
    expected = _errors_per_pod(query(f"{where} level:error | stats by ({POD}) count() errors"))
    if not expected:
        return [_("no pod of this run has logged an error yet: run l09.start_exercise(lab, ns) first")]
    if not answered:
        return [_("the answer should be one row per pod: a column {pod} and one count beside it (`| stats by (...) "
                  "count() errors`)").format(pod=POD)]
    current = set(_serving_pods(attempt.lab, attempt.namespace, "frontend")
                  + _serving_pods(attempt.lab, attempt.namespace, "orders"))
    counted = {pod: n for pod, n in answered.items() if pod in current}
    problems = []
    if extra := sorted(set(counted) - set(expected)):
        problems.append(_("your query counts pods that logged no error line: {extra} (filter on the level field)")
                        .format(extra=', '.join(extra)))
    if missing := sorted(set(expected) - set(counted)):
        problems.append(_("pods that logged errors are missing from your answer: {missing} (filter on this "
                          "lesson's namespace, field {ns})").format(missing=', '.join(missing), ns=NS))
    if not problems and any(counted[pod] > expected[pod] for pod in counted):
        problems.append(_("your counts are higher than the error lines the store holds for this run: count only "
                          "lines at level error"))
    return problems


EXERCISES = [
    Exercise(
        id=EXERCISE_ID,
        task="After l09.start_exercise(lab, ns), one serving pod of lesson-09 (frontend or orders: you are not "
             "told which) fails some of its requests with an error the walkthrough never showed. Find which pod, "
             "from the logs in VictoriaLogs (not from its annotations), and give its name as the answer.",
        hint="a LogsQL query on this lesson's namespace and level:error, grouped by pod and message: "
             "`| stats by (kubernetes.pod_name, _msg) count()`; the walkthrough's own fault is gone. Or open the "
             "store's UI at $VICTORIA_LOGS_URL/select/vmui.",
        solution="l09.query(f'{l09.scope(lab, ns)} level:error | stats by (kubernetes.pod_name, _msg) count() n')\n"
                 f"# the pod whose _msg is {EXERCISE_ERROR!r}",
        check=_check_error_pod,
        solve=lambda a: (_pods_with_error(scope(a.lab, a.namespace)) or [None])[0],
    ),
    Exercise(
        id=QUERY_EXERCISE_ID,
        task="Write the LogsQL query an alert on logs would run: per pod of namespace lesson-09, the number of "
             "lines at level error. Give the query as a string; the check runs it against VictoriaLogs and "
             "compares its answer with the store's.",
        hint="filter on the namespace field (kubernetes.pod_namespace:lesson-09) and on level:error, then "
             "`| stats by (kubernetes.pod_name) count() errors`; try it first with l09.query(my_query)",
        solution="my_query = 'kubernetes.pod_namespace:lesson-09 level:error "
                 "| stats by (kubernetes.pod_name) count() errors'",
        check=_check_errors_query,
        solve=lambda a: f"{NS}:{a.namespace} level:error | stats by ({POD}) count() errors",
    ),
]


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
