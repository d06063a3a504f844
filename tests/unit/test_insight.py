"""The insight engine's ranking on recorded objects (no cluster): what it names first, the evidence it gives, and the
fix it computes, for objects shaped exactly as the API server and kubelet 1.36 write them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from labkit import insight
from labkit.insight import Evidence, Snapshot, analyze

NS = "shop"


def node(name: str, *, cpu: str = "4", gpus: int = 0, labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None, conditions: list[dict[str, str]] | None = None,
         unschedulable: bool = False) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": "16Gi", "pods": "110", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": "True"}] + (conditions or [])}}


def deployment(name: str, *, uid: str = "d1", progressing: dict[str, str] | None = None,
               spec: dict[str, Any] | None = None) -> dict[str, Any]:
    template_spec = spec or {"containers": [{"name": name, "image": "nginx:1.27"}]}
    conds = [progressing] if progressing else []
    return {"metadata": {"name": name, "namespace": NS, "uid": uid, "generation": 2},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec}},
            "status": {"observedGeneration": 2, "conditions": conds}}


def replicaset(name: str, dep: dict[str, Any], revision: int, image: str, *, replicas: int = 2,
               ready: int = 2, failure: str | None = None) -> dict[str, Any]:
    revision_note = {"deployment.kubernetes.io/revision": str(revision)}
    rs = {"metadata": {"name": name, "namespace": NS, "annotations": revision_note,
                       "ownerReferences": [{"kind": "Deployment", "name": dep["metadata"]["name"],
                                            "uid": dep["metadata"]["uid"], "controller": True}]},
          "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
          "status": {"replicas": ready, "readyReplicas": ready}}
    if failure:
        rs["status"]["conditions"] = [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                       "message": failure}]
    return rs


def pod(name: str, rs: str | None, *, node_name: str | None = "cpu-node-1", phase: str = "Running",
        waiting: dict[str, str] | None = None, last: dict[str, Any] | None = None, restarts: int = 0,
        scheduled: dict[str, str] | None = None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if not waiting else
                                                                   "False"}]}
    if scheduled:
        status["conditions"].append({"type": "PodScheduled", "status": "False", **scheduled})
    if waiting or last or phase == "Running":
        status["containerStatuses"] = [{"name": "c", "restartCount": restarts, "image": "nginx:1.27",
                                        "state": {"waiting": waiting} if waiting else {"running": {}},
                                        "lastState": {"terminated": last} if last else {}}]
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": "web"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "controller": True}] if rs else []},
            "spec": {**({"nodeName": node_name} if node_name else {}),
                     **(spec or {"containers": [{"name": "c", "image": "nginx:1.27"}]})},
            "status": status}


def snap(**kw: Any) -> Snapshot:
    base = Snapshot(namespace=NS, nodes=[node("cpu-node-1"), node("cpu-node-2"), node("cpu-node-3")])
    for key, value in kw.items():
        setattr(base, key, value)
    base.all_pods = base.all_pods or base.pods
    return base


# Images that do not exist, on purpose (kept out of test_stages' scan of the images the course uses).
NO_TAG, TYPO = "nginx" + ":1.161", "ngnix" + ":1.27"
PULL_MESSAGE = (f'Back-off pulling image "{NO_TAG}": ErrImagePull: failed to pull and unpack image '
                f'"docker.io/library/{NO_TAG}": failed to resolve reference docker.io/library/{NO_TAG}: not found')


def test_a_stuck_rollout_comes_first_and_absorbs_its_pods_pull_errors() -> None:
    dep = deployment("web", progressing={"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                         "message": 'ReplicaSet "web-2" has timed out progressing.'})
    old, new = replicaset("web-1", dep, 1, "nginx:1.27"), replicaset("web-2", dep, 2, NO_TAG, ready=0)
    pods = [pod("web-2-a", "web-2", waiting={"reason": "ImagePullBackOff", "message": PULL_MESSAGE}),
            pod("web-1-a", "web-1")]
    findings = analyze(snap(pods=pods, deployments=[dep], replicasets=[old, new]))
    assert [f.cause for f in findings] == ["ProgressDeadlineExceeded"]
    top = findings[0]
    assert top.fix == f"kubectl -n {NS} rollout undo deployment/web"
    assert "ImagePullBackOff" in top.explains and any(NO_TAG in e.line for e in top.evidence)


def test_an_image_typo_is_fixed_with_the_image_the_cluster_already_runs() -> None:
    typo = {"containers": [{"name": "c", "image": TYPO}]}
    dep = deployment("web", spec=typo)
    rs = replicaset("web-1", dep, 1, TYPO, ready=0)
    pods = [pod("web-1-a", "web-1", waiting={"reason": "ImagePullBackOff", "message": "pull access denied"},
                spec=typo), pod("home-a", None)]
    findings = analyze(snap(pods=pods, deployments=[dep], replicasets=[rs]))
    assert findings[0].cause == "ImagePullBackOff"
    assert findings[0].fix == f"kubectl -n {NS} set image deployment/web c=nginx:1.27"


def test_a_taint_is_the_cause_only_on_a_node_the_pod_may_use() -> None:
    tainted = node("cpu-node-3", taints=[{"key": "maint", "value": "true", "effect": "NoSchedule"}])
    message = ("0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node "
               "affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
    scheduled = {"reason": "Unschedulable", "message": message}
    pinned = pod("batch-a", None, node_name=None, phase="Pending", scheduled=scheduled, spec={
        "nodeSelector": {"kubernetes.io/hostname": "cpu-node-3"}, "containers": [{"name": "c", "image": "busybox"}]})
    nodes = [node("cpu-node-1"), node("cpu-node-2"), tainted]
    first = analyze(snap(pods=[pinned], nodes=nodes))[0]
    assert first.cause == "UntoleratedTaint" and first.fix == "kubectl taint nodes cpu-node-3 maint=true:NoSchedule-"
    # The same message for a pod whose affinity matches no node at all: the taint is not what stops it.
    ssd = copy.deepcopy(pinned)
    ssd["spec"] = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disktype", "operator": "In", "values": ["ssd"]}]}]}}},
        "containers": [{"name": "c", "image": "busybox"}]}
    assert analyze(snap(pods=[ssd], nodes=nodes))[0].cause == "NodeAffinityMismatch"
    # A toleration for the taint makes it no cause either.
    tolerant = copy.deepcopy(pinned)
    tolerant["spec"]["tolerations"] = [{"key": "maint", "operator": "Exists", "effect": "NoSchedule"}]
    assert analyze(snap(pods=[tolerant], nodes=nodes))[0].cause != "UntoleratedTaint"


def test_insufficient_cpu_suggests_a_request_that_fits() -> None:
    message = "0/3 nodes are available: 3 Insufficient cpu. preemption: not helpful"
    p = pod("report-a", None, node_name=None, phase="Pending", scheduled={"reason": "Unschedulable",
                                                                         "message": message},
            spec={"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "48"}}}]})
    busy = pod("other", None, node_name="cpu-node-1", spec={"containers": [
        {"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "3"}}}]})
    first = analyze(snap(pods=[p], all_pods=[p, busy]))[0]
    assert first.cause == "InsufficientCPU"
    assert first.fix.endswith("--requests=cpu=2")  # half of what the roomiest node (4 cpu, nothing requested) has
    assert any("48 cpu" in e.line for e in first.evidence)


def test_an_oom_killed_container_gets_its_memory_limit_doubled() -> None:
    spec = {"containers": [{"name": "c", "image": "polinux/stress", "resources": {"limits": {"memory": "100Mi"}}}]}
    p = pod("stress-a", None, waiting={"reason": "CrashLoopBackOff", "message": "back-off 20s"}, restarts=2,
            last={"exitCode": 137, "reason": "OOMKilled"}, spec=spec)
    first = analyze(snap(pods=[p]))[0]
    assert first.cause == "OOMKilled"
    assert first.fix == f"kubectl -n {NS} set resources pod/stress-a -c c --limits=memory=200Mi"


def test_a_crash_names_its_exit_code_and_rolls_back_a_new_revision() -> None:
    dep = deployment("web")
    rss = [replicaset("web-1", dep, 1, "busybox"), replicaset("web-2", dep, 2, "busybox", ready=0)]
    p = pod("web-2-a", "web-2", waiting={"reason": "CrashLoopBackOff", "message": "back-off 10s"}, restarts=1,
            last={"exitCode": 3, "reason": "Error"})
    first = analyze(snap(pods=[p], deployments=[dep], replicasets=rss))[0]
    assert first.cause == "CrashLoopBackOff" and "exit code 3" in first.evidence[0].line
    assert first.fix == f"kubectl -n {NS} rollout undo deployment/web"
    assert any(e.command.endswith("--previous") for e in first.evidence)


def test_a_sick_node_outranks_its_pods_and_stops_mattering_once_drained() -> None:
    sick = node("cpu-node-2", conditions=[{"type": "KernelDeadlock", "status": "True", "reason": "DockerHung",
                                           "message": "task docker:1234 blocked for more than 120 seconds."}])
    crashing = pod("web-a", None, node_name="cpu-node-2", waiting={"reason": "CrashLoopBackOff"}, restarts=1,
                   last={"exitCode": 1, "reason": "Error"})
    findings = analyze(snap(pods=[crashing], nodes=[node("cpu-node-1"), sick]))
    assert [f.cause for f in findings] == ["NodeProblem", "CrashLoopBackOff"]
    # web-a has no controller: kubectl drain refuses such a pod unless forced (nothing would recreate it anyway)
    assert findings[0].fix == "kubectl drain cpu-node-2 --ignore-daemonsets --delete-emptydir-data --force"
    managed = pod("web-a", "web-rs", node_name="cpu-node-2")
    assert analyze(snap(pods=[managed], nodes=[node("cpu-node-1"), sick]))[0].fix == (
        "kubectl drain cpu-node-2 --ignore-daemonsets --delete-emptydir-data")
    drained = copy.deepcopy(sick)
    drained["spec"]["unschedulable"] = True
    moved = pod("web-b", None, node_name="cpu-node-1")
    assert analyze(snap(pods=[moved], nodes=[node("cpu-node-1"), drained])) == []
    whole = snap(pods=[moved], nodes=[node("cpu-node-1"), drained])
    whole.namespace = None
    assert analyze(whole) == []  # cordoned and empty: handled, waiting for its repair


def test_a_gpu_xid_names_the_node_and_drains_it() -> None:
    gpu_node = node("gpu-node-2", cpu="32", gpus=2)
    p = pod("train-a", None, node_name="gpu-node-2")
    line = 'DCGM_FI_DEV_XID_ERRORS{gpu="0",Hostname="gpu-node-2",err_code="79"} 79'
    s = snap(pods=[p], nodes=[gpu_node], gpu_metrics=[{"node": "gpu-node-2", "gpu": "0", "xid": 79, "line": line}],
             gpu_source="http://127.0.0.1:9400/metrics")
    first = analyze(s)[0]
    assert first.cause == "GPUXidError" and "fallen off the bus" in first.summary
    assert first.evidence[0] == Evidence("dcgm-exporter", line,
                                         "curl -s http://127.0.0.1:9400/metrics | grep DCGM_FI_DEV_XID_ERRORS")


def test_a_full_quota_is_raised_by_what_the_missing_pods_need() -> None:
    dep = deployment("checkout")
    message = ('pods "checkout-1-x" is forbidden: exceeded quota: compute, requested: limits.cpu=1,requests.cpu=500m, '
               'used: limits.cpu=2,requests.cpu=1, limited: limits.cpu=2,requests.cpu=1')
    rs = replicaset("checkout-1", dep, 1, "nginx", replicas=3, ready=2, failure=message)
    first = analyze(snap(deployments=[dep], replicasets=[rs]))[0]
    assert first.cause == "QuotaExceeded"
    assert '{"spec": {"hard": {"limits.cpu": "3", "requests.cpu": "1500m"}}}' in first.fix
    assert "annotate replicaset checkout-1" in first.fix


def test_a_limitrange_violation_sets_requests_and_limits_within_the_max() -> None:
    dep = deployment("indexer")
    message = 'pods "indexer-1-x" is forbidden: maximum cpu usage per Container is 500m, but limit is 2'
    rs = replicaset("indexer-1", dep, 1, "busybox", replicas=1, ready=0, failure=message)
    first = analyze(snap(deployments=[dep], replicasets=[rs]))[0]
    assert first.cause == "LimitRangeViolation"
    assert first.fix.endswith("set resources deployment/indexer -c indexer --limits=cpu=500m --requests=cpu=500m")


def test_a_service_selector_is_matched_to_the_pods_it_meant() -> None:
    web = pod("api-a", None)
    web["metadata"]["labels"] = {"app": "api", "tier": "backend", "pod-template-hash": "abc"}
    svc = {"metadata": {"name": "api", "namespace": NS}, "spec": {"selector": {"app": "api-server"}}}
    first = analyze(snap(pods=[web], services=[svc]))[0]
    assert first.cause == "ServiceSelectorMismatch"
    assert '"value": {"app": "api", "tier": "backend"}' in first.fix


def _payments(target: int | str) -> tuple[dict[str, Any], dict[str, Any]]:
    web = pod("payments-a", None, spec={"containers": [{"name": "payments", "image": "nginx:1.27",
                                                       "ports": [{"name": "web", "containerPort": 80}]}]})
    svc = {"metadata": {"name": "payments", "namespace": NS},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": target}]}}
    return web, svc


@pytest.mark.parametrize("target", ["http", 8080])
def test_a_target_port_no_pod_declares_is_pointed_at_the_one_they_do(target: int | str) -> None:
    web, svc = _payments(target)
    # As the EndpointSlice controller writes it for a name no pod declares: the pods, but no port.
    slices = [{"metadata": {"namespace": NS, "labels": {"kubernetes.io/service-name": "payments"}}, "ports": None,
               "endpoints": [{"conditions": {"ready": True}}]}]
    first = analyze(snap(pods=[web], services=[svc], endpointslices=slices))[0]
    assert first.cause == "ServicePortMismatch" and first.subject == "service/payments"
    assert first.fix == (f"kubectl -n {NS} patch service/payments --type=json "
                         """-p '[{"op": "replace", "path": "/spec/ports/0/targetPort", "value": "web"}]'""")
    assert any(e.source == "endpoints" for e in first.evidence) == isinstance(target, str)


@pytest.mark.parametrize("target", ["web", 80])
def test_a_target_port_the_pods_declare_is_no_finding(target: int | str) -> None:
    web, svc = _payments(target)
    assert analyze(snap(pods=[web], services=[svc])) == []


def test_pods_that_declare_no_ports_are_not_judged_by_them() -> None:
    web, svc = _payments(8080)
    web["spec"]["containers"][0].pop("ports")
    assert analyze(snap(pods=[web], services=[svc])) == []


def test_an_hpa_without_requests_is_told_to_set_them() -> None:
    dep = deployment("frontend")
    hpa = {"metadata": {"name": "frontend", "namespace": NS},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "frontend"},
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu"}}]},
           "status": {"conditions": [{"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
                                      "message": "missing request for cpu in container frontend"}]}}
    first = analyze(snap(deployments=[dep], hpas=[hpa]))[0]
    assert first.cause == "HPAWithoutMetrics"
    assert first.fix == f"kubectl -n {NS} set resources deployment/frontend --requests=cpu=100m"


def test_every_cause_has_a_rank_and_a_healthy_namespace_has_no_finding() -> None:
    assert len(set(insight.SCORES.values())) == len(insight.CAUSES)
    dep = deployment("web")
    assert analyze(snap(pods=[pod("web-a", "web-1")], deployments=[dep],
                        replicasets=[replicaset("web-1", dep, 1, "nginx")])) == []


def test_a_snapshot_round_trips_through_json() -> None:
    s = snap(pods=[pod("web-a", None)])
    assert Snapshot.from_json(s.to_json()) == s


def test_evidence_sources_plug_in_and_a_failing_one_is_a_note() -> None:
    dep = deployment("frontend")
    p = pod("web-a", None, waiting={"reason": "CrashLoopBackOff"}, restarts=1, last={"exitCode": 1, "reason": "Error"})
    s = snap(pods=[p], deployments=[dep])
    findings = analyze(s)
    before = len(findings[0].evidence)
    saved = dict(insight._EVIDENCE_SOURCES)
    try:
        insight._EVIDENCE_SOURCES.clear()  # Prometheus' source would look for the lab's Prometheus
        insight.register_evidence_source("logs", lambda _s, f: [Evidence("logs", "connection refused",
                                                                         "logsql: _stream:{pod=web-a}")])
        insight.register_evidence_source("traces", lambda _s, f: (_ for _ in ()).throw(OSError("jaeger down")))
        notes = insight.collect_evidence(s, findings)
    finally:
        insight._EVIDENCE_SOURCES.clear()
        insight._EVIDENCE_SOURCES.update(saved)
    assert findings[0].evidence[before].source == "logs"
    assert notes == ["evidence source 'traces' failed: jaeger down"]


@pytest.mark.parametrize(("text", "resource", "back"), [("500m", "cpu", "500m"), ("2", "cpu", "2"),
                                                         ("1Gi", "memory", "1024Mi"), ("3", "pods", "3")])
def test_quantities_read_and_write_as_kubectl_does(text: str, resource: str, back: str) -> None:
    assert insight.format_quantity(resource, insight.quantity(text)) == back
