"""Lesson 04, workload autoscaling (弹性伸缩, HPA): notebook 04_hpa's algorithm, timeline, figure and exercises.

The HorizontalPodAutoscaler controller (in kube-controller-manager) is real; so are metrics-server, Prometheus and
prometheus-adapter. What the pods do under load comes from the workload model (:mod:`labkit.sim.workload`).
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import yaml
from kubernetes import watch

from ..addons import url as addon_url
from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..errors import NotFound
from ..i18n import _
from ..kube.client import Lab, api_errors
from ..kube.objects import get, live_pods, patch
from ..kube.quantity import optional_quantity
from ..kube.rollouts import rollout_state
from ..kube.tables import pod_usage_table, pods_table
from ..paths import data_file
from ..settings import LOCAL_HTTP_TIMEOUT_S

TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance: no scaling while metric/target is within 10 % of 1


# --- the algorithm, as the docs write it ---------------------------------------------------------------------------

def proposal(current_replicas: int, current_value: float, target_value: float, *,
             tolerance: float = TOLERANCE) -> int:
    """desiredReplicas = ceil(currentReplicas x currentMetricValue / desiredMetricValue), unless within tolerance."""
    if current_replicas <= 0 or target_value <= 0:
        return current_replicas
    ratio = current_value / target_value
    if abs(1.0 - ratio) <= tolerance:
        return current_replicas
    return math.ceil(ratio * current_replicas)


@dataclass(frozen=True)
class Policy:
    """One ``behavior.scaleUp/scaleDown.policies`` entry: at most ``value`` Pods (or Percent) per ``period_s``."""

    type: str  # "Pods" | "Percent"
    value: int
    period_s: int


@dataclass(frozen=True)
class Rules:
    """``behavior.scaleUp`` or ``behavior.scaleDown``."""

    stabilization_s: int
    policies: tuple[Policy, ...]
    select: str = "Max"  # "Max" | "Min" | "Disabled"

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None, default: Rules) -> Rules:
        if not spec:
            return default
        policies = tuple(Policy(p["type"], int(p["value"]), int(p["periodSeconds"]))
                         for p in spec.get("policies") or []) or default.policies
        return cls(int(spec.get("stabilizationWindowSeconds", default.stabilization_s)), policies,
                   spec.get("selectPolicy", default.select))


# The defaults the docs list under "Default Behavior".
DEFAULT_SCALE_UP = Rules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15)), "Max")
DEFAULT_SCALE_DOWN = Rules(300, (Policy("Percent", 100, 15),), "Max")


def scale_up_limit(current: int, added_in_period: Callable[[int], int], rules: Rules) -> int:
    """The most replicas the scale-up policies allow now (``added_in_period(p)``: replicas added in the last p s)."""
    if rules.select == "Disabled":
        return current
    limits = []
    for p in rules.policies:
        start = current - added_in_period(p.period_s)
        limits.append(start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100)))
    return max(limits) if rules.select == "Max" else min(limits)


def scale_down_limit(current: int, removed_in_period: Callable[[int], int], rules: Rules) -> int:
    """The fewest replicas the scale-down policies allow now."""
    if rules.select == "Disabled":
        return current
    limits = []
    for p in rules.policies:
        start = current + removed_in_period(p.period_s)
        limits.append(start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100)))
    return min(limits) if rules.select == "Max" else max(limits)


@dataclass
class Autoscaler:
    """The HPA's decision, step by step: proposal, min/max, stabilization window, behavior policies.

    Pure: time is given, nothing is read from a cluster. ``step`` is one controller sync.
    """

    min_replicas: int
    max_replicas: int
    scale_up: Rules = DEFAULT_SCALE_UP
    scale_down: Rules = DEFAULT_SCALE_DOWN
    tolerance: float = TOLERANCE
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (t, replicas added; negative removed)

    def step(self, t: float, current_replicas: int, current_value: float, target_value: float) -> int:
        desired = proposal(current_replicas, current_value, target_value, tolerance=self.tolerance)
        desired = max(self.min_replicas, min(self.max_replicas, desired))
        self.recommendations.append((t, desired))
        # Stabilization: scale up to the lowest, down to the highest recommendation inside each window.
        up = min([r for s, r in self.recommendations if s >= t - self.scale_up.stabilization_s] + [desired])
        down = max([r for s, r in self.recommendations if s >= t - self.scale_down.stabilization_s] + [desired])
        stable = min(max(current_replicas, up), down)

        def added(period: int) -> int:
            return sum(n for s, n in self.events if n > 0 and s > t - period)

        def removed(period: int) -> int:
            return -sum(n for s, n in self.events if n < 0 and s > t - period)

        if stable > current_replicas:
            final = min(stable, scale_up_limit(current_replicas, added, self.scale_up), self.max_replicas)
        elif stable < current_replicas:
            final = max(stable, scale_down_limit(current_replicas, removed, self.scale_down), self.min_replicas)
        else:
            final = current_replicas
        if final != current_replicas:
            self.events.append((t, final - current_replicas))
        return final

    @classmethod
    def for_hpa(cls, hpa: dict[str, Any]) -> Autoscaler:
        """The autoscaler an HPA object describes (its min/max and behavior, defaults filled in)."""
        spec = hpa["spec"]
        behavior = spec.get("behavior") or {}
        return cls(spec.get("minReplicas", 1), spec["maxReplicas"],
                   Rules.from_spec(behavior.get("scaleUp"), DEFAULT_SCALE_UP),
                   Rules.from_spec(behavior.get("scaleDown"), DEFAULT_SCALE_DOWN))


# --- watching the real controller ----------------------------------------------------------------------------------

def hpa_row(hpa: dict[str, Any], t: float) -> dict[str, Any]:
    """One line of ``kubectl get hpa -w``: replicas, desired, and the first metric (current / target)."""
    spec, status = hpa["spec"], hpa.get("status") or {}
    metric = (spec.get("metrics") or [{}])[0]
    kind = metric.get("type", "Resource")
    current = next(iter(status.get("currentMetrics") or []), None)
    if kind == "Resource":
        name, target = metric["resource"]["name"], metric["resource"]["target"]
        value = (current or {}).get("resource", {}).get("current", {}).get("averageUtilization")
        target_value = target.get("averageUtilization")
        unit = "%"
    else:
        name = metric.get(kind[0].lower() + kind[1:], {}).get("metric", {}).get("name")
        target = metric.get(kind[0].lower() + kind[1:], {}).get("target", {})
        cur = (current or {}).get(kind[0].lower() + kind[1:], {}).get("current", {})
        value = optional_quantity(cur.get("averageValue", cur.get("value")))
        target_value = optional_quantity(target.get("averageValue", target.get("value")))
        unit = "/pod"
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    return {"t": round(t, 1), "hpa": hpa["metadata"]["name"], "metric": name, "current": value,
            "target": target_value, "unit": unit, "replicas": status.get("currentReplicas", 0),
            "desired": status.get("desiredReplicas", 0),
            "scaling_active": conditions.get("ScalingActive", {}).get("status"),
            "reason": conditions.get("ScalingActive", {}).get("reason")}


class HpaWatch:
    """``kubectl get hpa -w`` in the background: one row per status change of every HPA in the namespace."""

    def __init__(self, lab: Lab, namespace: str) -> None:
        self.lab, self.namespace = lab, namespace
        self.rows: list[dict[str, Any]] = []
        self.latest: dict[str, dict[str, Any]] = {}
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"hpa-watch {namespace}", daemon=True)

    def start(self) -> HpaWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> HpaWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        api = self.lab.api_client
        from kubernetes import client as k8s

        autoscaling = k8s.AutoscalingV2Api(api)
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(autoscaling.list_namespaced_horizontal_pod_autoscaler, self.namespace,
                                      timeout_seconds=2):
                    self._add(event["raw_object"])
                    if self._stop.is_set():
                        break
            except Exception:  # a dropped watch is re-opened (this is a display helper, the waits have deadlines)
                time.sleep(0.2)
            finally:
                w.stop()

    def _add(self, hpa: dict[str, Any]) -> None:
        row = hpa_row(hpa, time.monotonic() - self.t0)
        key = {k: v for k, v in row.items() if k != "t"}
        with self._lock:
            if self.latest.get(row["hpa"]) == key:
                return  # the watch re-lists every few seconds: keep a row per change, as `kubectl get hpa -w`
            self.latest[row["hpa"]] = key
            self.rows.append(row)

    def wait(self, done: Callable[[dict[str, dict[str, Any]]], bool], *, timeout: float) -> bool:
        """Until ``done(latest rows by HPA name)`` or ``timeout`` seconds; True when done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                latest = dict(self.latest)
            if done(latest):
                return True
            self._stop.wait(0.25)
        return False

    def table(self) -> pd.DataFrame:
        with self._lock:
            return pd.DataFrame(self.rows, columns=["t", "hpa", "metric", "current", "target", "unit", "replicas",
                                                    "desired", "scaling_active", "reason"])


def compare_with_formula(table: pd.DataFrame, hpa: dict[str, Any]) -> pd.DataFrame:
    """Each controller decision of one HPA next to :class:`Autoscaler`'s, fed the same metric and replicas."""
    model = Autoscaler.for_hpa(hpa)
    rows = []
    for r in table[(table.hpa == hpa["metadata"]["name"]) & table.current.notna()].itertuples():
        if not r.replicas:
            continue
        ours = model.step(r.t, int(r.replicas), float(r.current), float(r.target))
        rows.append({"t": r.t, "replicas": r.replicas, "current": r.current, "target": r.target,
                     "controller": r.desired, "formula": ours, "agree": int(r.desired) == ours})
    return pd.DataFrame(rows, columns=["t", "replicas", "current", "target", "controller", "formula", "agree"])


def hpa_timeline(table: pd.DataFrame, *, title: str = "kubectl get hpa -w") -> go.Figure:
    """Replicas (steps) and the metric in percent of its target (dots) over time, one colour per HPA."""
    fig = go.Figure()
    for name, part in table.groupby("hpa", sort=True):
        fig.add_trace(go.Scatter(x=part.t, y=part.replicas, mode="lines+markers", line_shape="hv",
                                 name=f"{name}: replicas"))
        pct = 100 * part.current / part.target
        fig.add_trace(go.Scatter(x=part.t, y=pct, mode="markers", yaxis="y2", marker={"symbol": "circle-open"},
                                 name=f"{name}: metric, % of target"))
    fig.add_hline(y=100, yref="y2", line={"dash": "dot", "color": "gray"})
    fig.update_layout(title=title, xaxis_title="seconds since the watch started", yaxis_title="replicas",
                      yaxis2={"title": "metric / target (%)", "overlaying": "y", "side": "right"},
                      template="plotly_white", height=380)
    return fig


def hpa_events(lab: Lab, namespace: str, name: str) -> pd.DataFrame:
    """The HPA's events, oldest first (the Events section of ``kubectl describe hpa NAME``)."""
    with api_errors(_("listing events of hpa/{name}").format(name=name), server=lab.server):
        items = lab.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={name}").items
    rows = [{"type": e.type, "reason": e.reason, "count": e.count or 1, "message": e.message,
             "last": e.last_timestamp or e.event_time} for e in items]
    table = pd.DataFrame(rows, columns=["type", "reason", "count", "message", "last"])
    return table.sort_values("last", kind="stable").drop(columns="last").reset_index(drop=True)


def model_state() -> pd.DataFrame:
    """What the workload model says each busy pod does now: requests/s, latency, CPU (its ``/state``)."""
    address = addon_url("workload-model")
    if address is None:
        return pd.DataFrame(columns=["namespace", "pod", "service", "rps", "latency_s", "cpu_m"])
    with urllib.request.urlopen(address, timeout=LOCAL_HTTP_TIMEOUT_S) as resp:  # noqa: S310 - the lab's own add-on on 127.0.0.1
        pods = json.loads(resp.read())["pods"]
    table = pd.DataFrame(pods, columns=["namespace", "pod", "service", "rps", "latency_s", "inflight", "cpu_m",
                                        "memory"])
    return table[["namespace", "pod", "service", "rps", "latency_s", "cpu_m"]].round(3)


def shared_load(lab: Lab, namespace: str, service: str, selector: str, *,
                timeout: float = 60.0) -> tuple[pd.DataFrame, set[str]]:
    """The model's state for ``service`` and its Ready pods, once every pod under load is a Ready endpoint and the
    requests are shared evenly: a moment after the HPA adds a pod the two differ (its endpoint is not Ready yet).
    Waits up to ``timeout``, then returns what it has (the difference shows)."""
    deadline = time.monotonic() + timeout
    while True:
        state = model_state().query(f"service == '{service}'")
        ready = set(pods_table(lab, namespace, label_selector=selector).query("ready == '1/1'").pod)
        if (set(state.pod) <= ready and state.rps.round(3).nunique() == 1) or time.monotonic() > deadline:
            return state, ready
        time.sleep(1.0)


def wait_until_top_lists(lab: Lab, namespace: str, selector: str, *, timeout: float = 90.0) -> pd.DataFrame:
    """``kubectl top pods -l SELECTOR``'s data once metrics-server lists every Running pod the selector names: it lists
    a new pod only after two scrapes of it (15 s apart), so right after a scale-out it shows fewer pods than run.
    Waits up to ``timeout``, then returns what it has (the difference shows)."""
    deadline = time.monotonic() + timeout
    while True:
        running = set(pods_table(lab, namespace, label_selector=selector).query("phase == 'Running'").pod)
        usage = pod_usage_table(lab, namespace)
        usage = usage[usage.pod.isin(running)]
        if (running and running <= set(usage.pod)) or time.monotonic() > deadline:
            return usage.reset_index(drop=True)
        time.sleep(2.0)


def settled_metric(lab: Lab, namespace: str, metric: str, *, pods: str, at_least: int, below: float,
                   timeout: float = 60.0) -> pd.DataFrame:
    """The custom metric of the pods whose names start with ``pods``, once at least ``at_least`` of them have a value
    and every value is under ``below``: just after a scale-out the new pods' rates are still ramping and the old ones
    still carry the load of the moment before. Waits up to ``timeout``, then returns what it has."""
    deadline = time.monotonic() + timeout
    while True:
        values = custom_metric(lab, namespace, metric)
        values = values[values.pod.str.startswith(pods)]
        if (len(values) >= at_least and (values.value < below).all()) or time.monotonic() > deadline:
            return values
        time.sleep(2.0)


def custom_metric(lab: Lab, namespace: str, metric: str) -> pd.DataFrame:
    """Every pod's value of a custom metric, through the API server and prometheus-adapter.

    Same as ``kubectl get --raw /apis/custom.metrics.k8s.io/v1beta1/namespaces/NS/pods/*/METRIC``.
    """
    path = f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/*/{metric}"
    with api_errors(_("reading {metric} from custom.metrics.k8s.io").format(metric=metric), server=lab.server):
        body = lab.dynamic.request("GET", path).to_dict()
    rows = [{"pod": i["describedObject"]["name"], "metric": i["metricName"], "value": optional_quantity(i["value"])}
            for i in body.get("items", [])]
    return pd.DataFrame(rows, columns=["pod", "metric", "value"]).sort_values("pod").reset_index(drop=True)


def read_hpa(lab: Lab, namespace: str, name: str) -> dict[str, Any]:
    """The HPA as the API serves it (``kubectl get hpa NAME -o json``)."""
    obj = get(lab, "HorizontalPodAutoscaler", name, namespace=namespace, api_version="autoscaling/v2")
    if obj is None:
        raise NotFound(_("there is no HorizontalPodAutoscaler {name} in namespace {namespace}").format(
                           name=name, namespace=namespace),
                       fix=f"kubectl -n {namespace} get hpa")
    return obj


# --- exercises ---------------------------------------------------------------------------------------------------

# The exercises' apps. The notebook applies them at its top, so that by the time a learner reaches the exercises
# their pods have metrics (metrics-server needs two 15 s scrapes of a new pod) and `billing` shows its problem.
SHOP_APP = data_file("lessons/04/shop.yaml").read_text()

BILLING_APP = data_file("lessons/04/billing.yaml").read_text()

EXERCISE_APPS = SHOP_APP + "---\n" + BILLING_APP


def _condition(hpa: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (hpa.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def _check_rps_hpa(attempt: Attempt) -> list[str]:
    lab, namespace = attempt.lab, attempt.namespace
    hpa = attempt.require("HorizontalPodAutoscaler", "shop", api_version="autoscaling/v2")
    spec, problems = hpa["spec"], []
    ref = spec.get("scaleTargetRef") or {}
    if (ref.get("kind"), ref.get("name")) != ("Deployment", "shop"):
        problems.append(_("it scales {kind}/{name}, not Deployment/shop")
                        .format(kind=ref.get('kind'), name=ref.get('name')))
    pods_metrics = [m["pods"] for m in spec.get("metrics") or [] if m.get("type") == "Pods"
                    and m["pods"]["metric"]["name"] == "http_requests_per_second"]
    if not pods_metrics:
        problems.append(_("no `type: Pods` metric named http_requests_per_second (a per-pod average)"))
    else:
        target = pods_metrics[0]["target"]
        value = optional_quantity(target.get("averageValue"))
        if target.get("type") != "AverageValue" or value is None:
            problems.append(_("the target should be `type: AverageValue` with an `averageValue`"))
        elif value > 5:
            problems.append(_("the target is {average_value} requests/s per pod; keep it at 5 or less")
                            .format(average_value=target['averageValue']))
    if spec.get("maxReplicas", 0) < 4:
        problems.append(_("maxReplicas is {max_replicas}: give it room to grow (at least 4)")
                        .format(max_replicas=spec.get('maxReplicas')))
    if problems:
        return problems
    active = _condition(hpa, "ScalingActive")
    if active.get("status") == "False":
        return [_("the HPA cannot read its metric: {reason}: {message}")
                .format(reason=active.get('reason'), message=active.get('message'))]
    if not active:
        # Not synced yet (a new HPA waits up to 15 s): ask the API the controller will ask.
        values = custom_metric(lab, namespace, "http_requests_per_second")
        if not values.pod.str.startswith("shop-").any():
            return [_("custom.metrics.k8s.io has no http_requests_per_second for shop's pods yet: is shop-client "
                      "running?")]
    return problems


RPS_HPA = Exercise(
    id="04-rps-hpa",
    task="Deployment `shop` gets load from `shop-client`. Create an HPA `shop` (min 1, max 6) that keeps the "
         "requests per second per pod (custom metric http_requests_per_second) at 5 or less.",
    hint="autoscaling/v2, metrics: [{type: Pods, pods: {metric: {name: http_requests_per_second}, target: "
         "{type: AverageValue, averageValue: \"5\"}}}]; `kubectl get --raw "
         "/apis/custom.metrics.k8s.io/v1beta1/namespaces/lesson-04/pods/*/http_requests_per_second` shows the values",
    solution="""apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: shop}
  minReplicas: 1
  maxReplicas: 6
  metrics:
  - type: Pods
    pods:
      metric: {name: http_requests_per_second}
      target: {type: AverageValue, averageValue: "5"}
# kubectl -n lesson-04 apply -f shop-hpa.yaml""",
    check=_check_rps_hpa,
    solve=lambda a: _apply_doc(a, {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "shop"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop"},
                 "minReplicas": 1, "maxReplicas": 6,
                 "metrics": [{"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"},
                                                       "target": {"type": "AverageValue", "averageValue": "5"}}}]}}),
)


def _apply_doc(attempt: Attempt, doc: dict[str, Any]) -> None:
    from ..kube.apply import apply

    apply(attempt.lab, doc, namespace=attempt.namespace)


def _check_missing_request(attempt: Attempt) -> list[str]:
    lab, namespace = attempt.lab, attempt.namespace
    dep = get(lab, "Deployment", "billing", namespace=namespace, api_version="apps/v1")
    hpa = get(lab, "HorizontalPodAutoscaler", "billing", namespace=namespace, api_version="autoscaling/v2")
    if dep is None or hpa is None:
        return [_("Deployment `billing` and its HPA `billing` must both exist (run the cell above)")]
    problems = []
    targets = [m for m in hpa["spec"].get("metrics") or [] if m.get("type") == "Resource"
               and m["resource"]["name"] == "cpu" and m["resource"]["target"].get("type") == "Utilization"]
    if not targets:
        problems.append(_("keep the HPA on CPU utilization: the point is to make it work, not to replace it"))
    for c in dep["spec"]["template"]["spec"]["containers"]:
        if not ((c.get("resources") or {}).get("requests") or {}).get("cpu"):
            problems.append(_("container `{name}` has no CPU request, so there is nothing to take a utilization "
                              "percentage of").format(name=c['name']))
    if problems:
        return problems
    done, message = rollout_state(dep)
    if not done:
        return [_("`billing` is still rolling out: {message}").format(message=message)]
    # What the HPA divides by: the CPU requests of the pods it selects. Once every pod has one, its next sync (every
    # 15 s) computes utilization; `kubectl describe hpa billing` then no longer says "missing request".
    pods = live_pods(lab, namespace, dep["spec"]["selector"].get("matchLabels") or {})
    without = sorted(p.metadata.name for p in pods if any(
        not ((c.resources and c.resources.requests) or {}).get("cpu") for c in p.spec.containers))
    if without:
        return [_("pods still without a CPU request: {without}").format(without=', '.join(without))]
    return []


MISSING_REQUEST = Exercise(
    id="04-missing-request",
    task="HPA `billing` never scales: `kubectl describe hpa billing` says `failed to get cpu utilization: missing "
         "request for cpu`. Fix the Deployment (not the HPA) so that the HPA can compute CPU utilization.",
    hint="utilization is usage / request: give the container `resources.requests.cpu` (e.g. 100m), then wait for "
         "the HPA's next sync (15 s) and `kubectl describe hpa billing` again",
    solution="""kubectl -n lesson-04 set resources deployment billing --requests=cpu=100m
kubectl -n lesson-04 rollout status deployment billing
kubectl -n lesson-04 describe hpa billing     # ScalingActive True: ValidMetricFound""",
    check=_check_missing_request,
    solve=lambda a: patch(a.lab, "Deployment", "billing", namespace=a.namespace, api_version="apps/v1", body={
        "spec": {"template": {"spec": {"containers": [{"name": "billing",
                                                        "resources": {"requests": {"cpu": "100m"}}}]}}}}),
)

# Section 4 and its exercise: memory as the HPA's metric.
CACHE_APP = data_file("lessons/04/cache.yaml").read_text()
SESSIONS_APP = data_file("lessons/04/sessions.yaml").read_text()
MEMORY_HPA_SOLUTION = """apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: sessions}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: sessions}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource:
      name: memory
      target: {type: Utilization, averageUtilization: 80}
"""


def _check_memory_hpa(attempt: Attempt) -> list[str]:
    hpa = attempt.require("HorizontalPodAutoscaler", "sessions", api_version="autoscaling/v2")
    spec, problems = hpa["spec"], []
    ref = spec.get("scaleTargetRef") or {}
    if (ref.get("kind"), ref.get("name")) != ("Deployment", "sessions"):
        problems.append(_("it scales {kind}/{name}, not Deployment/sessions")
                        .format(kind=ref.get('kind'), name=ref.get('name')))
    memory = [m["resource"]["target"] for m in spec.get("metrics") or []
              if m.get("type") == "Resource" and m["resource"].get("name") == "memory"]
    if not memory:
        problems.append(_("it has no Resource metric on memory"))
    elif memory[0].get("type") != "Utilization" or memory[0].get("averageUtilization") != 80:
        problems.append(_("its memory target is {memory}; the task asks for Utilization, averageUtilization 80")
                        .format(memory=memory[0]))
    if (spec.get("minReplicas", 1), spec.get("maxReplicas")) != (1, 3):
        problems.append(_("it scales between {min_replicas} and {max_replicas}; the task asks for 1 to 3")
                        .format(min_replicas=spec.get('minReplicas', 1), max_replicas=spec.get('maxReplicas')))
    if problems:
        return problems
    # Its first sync (15 s at most) reads the pods' memory from metrics-server: 60 % of the request, under 80 %.
    current = [m["resource"]["current"] for m in (hpa.get("status") or {}).get("currentMetrics") or []
               if m.get("type") == "Resource" and m["resource"].get("name") == "memory"]
    if not current:
        return [_("the HPA has not read the pods' memory yet: its next sync is at most 15 s away (kubectl describe "
                  "hpa sessions)")]
    return []


MEMORY_HPA = Exercise(
    id="04-memory-hpa",
    task="Deployment `sessions` holds 60 MiB per pod against a 100 MiB memory request. Write an HPA `sessions` that "
         "scales it on memory: average utilization 80 %, between 1 and 3 replicas.",
    hint="kubectl autoscale only knows CPU: write the autoscaling/v2 YAML (metrics: type Resource, resource name "
         "memory, target type Utilization) and apply it; then `kubectl get hpa sessions` shows `memory: 60%/80%`",
    solution=MEMORY_HPA_SOLUTION + "# kubectl -n lesson-04 apply -f this file; kubectl -n lesson-04 get hpa sessions",
    check=_check_memory_hpa,
    solve=lambda a: _apply_doc(a, yaml.safe_load(MEMORY_HPA_SOLUTION)),
)

EXERCISES = [RPS_HPA, MISSING_REQUEST, MEMORY_HPA]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "04_hpa",
    "HorizontalPodAutoscaler (弹性伸缩): the docs' walkthrough on CPU, scale-down via `behavior`, the "
    "algorithm, custom metrics through prometheus-adapter",
    LessonRights("add-ons workload-model, prometheus, prometheus-adapter; the APIService "
                 "v1beta1.custom.metrics.k8s.io",
                 refused="its add-ons run beside the cluster with the admin kubeconfig and register the "
                         "cluster-scoped APIService v1beta1.custom.metrics.k8s.io"),
    exercises=tuple(EXERCISES),
)
