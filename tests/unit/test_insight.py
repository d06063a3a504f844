"""The insight engine's ranking on recorded objects (no cluster): what it names first, the evidence it gives, and the
fix it computes, for objects shaped exactly as the API server and kubelet 1.36 write them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from labkit import insight
from labkit.insight import Evidence, Snapshot, analyze
from labkit.kube.quantity import format_quantity, quantity

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
        scheduled: dict[str, str] | None = None, spec: dict[str, Any] | None = None,
        container: str = "c") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if not waiting else
                                                                   "False"}]}
    if scheduled:
        status["conditions"].append({"type": "PodScheduled", "status": "False", **scheduled})
    if waiting or last or phase == "Running":
        status["containerStatuses"] = [{"name": container, "restartCount": restarts, "image": "nginx:1.27",
                                        "state": {"waiting": waiting} if waiting else {"running": {}},
                                        "lastState": {"terminated": last} if last else {}}]
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": "web"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "controller": True}] if rs else []},
            "spec": {**({"nodeName": node_name} if node_name else {}),
                     **(spec or {"containers": [{"name": "c", "image": "nginx:1.27"}]})},
            "status": status}


def event(kind: str, name: str, reason: str, message: str, *, type_: str = "Warning", count: int = 1,
          field_path: str = "") -> dict[str, Any]:
    """A core/v1 Event as the kubelet's (or a controller's) recorder writes it."""
    return {"metadata": {"name": f"{name}.18a2b3c4d5e6f708", "namespace": NS},
            "involvedObject": {"kind": kind, "name": name, "namespace": NS,
                               **({"fieldPath": field_path} if field_path else {})},
            "type": type_, "reason": reason, "message": message, "count": count,
            "firstTimestamp": "2026-05-04T10:00:00Z", "lastTimestamp": "2026-05-04T10:02:00Z"}


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


# --- kubelet 1.36's failures: config, volumes, StartError, init containers; Jobs; HPA targets; refused pods ---

def _config_workload(env: list[dict[str, Any]] | None = None, env_from: list[dict[str, Any]] | None = None,
                     waiting: dict[str, str] | None = None) -> tuple[dict[str, Any], ...]:
    spec = {"containers": [{"name": "api", "image": "nginx:1.27", **({"env": env} if env else {}),
                            **({"envFrom": env_from} if env_from else {})}]}
    dep = deployment("api", spec=spec)
    rs = replicaset("api-1", dep, 1, "nginx:1.27", ready=0)
    p = pod("api-1-a", "api-1", phase="Pending", waiting=waiting, spec=spec, container="api")
    return dep, rs, p


LOG_LEVEL = [{"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "LOG_LEVEL"}}}]
PASSWORD = [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-pass", "key": "password"}}}]


def cm(name: str, *keys: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS}, "data": dict.fromkeys(keys, "")}


@pytest.mark.parametrize(("env", "env_from", "message", "objects", "evidence", "fix"), [
    (LOG_LEVEL, None, 'configmap "app-config" not found', {},
     "container api: env LOG_LEVEL from configMapKeyRef app-config/LOG_LEVEL",
     f"kubectl -n {NS} create configmap app-config --from-literal=LOG_LEVEL=VALUE"),
    (None, [{"secretRef": {"name": "db-pass"}}], 'secret "db-pass" not found', {},
     "container api: envFrom secretRef db-pass",
     f"kubectl -n {NS} create secret generic db-pass --from-literal=KEY=VALUE"),
    (LOG_LEVEL, None, f"couldn't find key LOG_LEVEL in ConfigMap {NS}/app-config",
     {"configmaps": [cm("app-config", "LOGLEVEL", "PORT")]}, "ConfigMap app-config has the key(s) LOGLEVEL, PORT",
     """/spec/template/spec/containers/0/env/0/valueFrom/configMapKeyRef/key", "value": "LOGLEVEL\""""),
    (PASSWORD, None, f"couldn't find key password in Secret {NS}/db-pass", {"secrets": [cm("db-pass", "username")]},
     "container api: env DB_PASSWORD from secretKeyRef db-pass/password",
     f"""kubectl -n {NS} patch secret db-pass --type=merge -p '{{"stringData": {{"password": "VALUE"}}}}'"""),
    ([{"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app-confg", "key": "LOG_LEVEL"}}}], None,
     'configmap "app-confg" not found', {"configmaps": [cm("app-config", "LOG_LEVEL")]},
     "no ConfigMap app-confg in shop; it has: app-config",
     """"path": "/spec/template/spec/containers/0/env/0/valueFrom/configMapKeyRef/name", "value": "app-config\""""),
])
def test_a_create_container_config_error_names_the_reference_and_creates_what_it_misses(
        env: list[dict[str, Any]] | None, env_from: list[dict[str, Any]] | None, message: str,
        objects: dict[str, list[dict[str, Any]]], evidence: str, fix: str) -> None:
    dep, rs, p = _config_workload(env, env_from, {"reason": "CreateContainerConfigError", "message": message})
    failed = event("Pod", "api-1-a", "Failed", f"Error: {message}", count=4, field_path="spec.containers{api}")
    first = analyze(snap(pods=[p], deployments=[dep], replicasets=[rs], events=[failed], **objects))[0]
    assert first.cause == "CreateContainerConfigError" and first.subject == "deployment/api"
    lines = [e.line for e in first.evidence]
    assert f"container api: waiting CreateContainerConfigError: {message}" in lines
    assert any(e.source == "event" and f"Failed (x4) Pod/api-1-a: Error: {message}" in e.line for e in first.evidence)
    assert any(evidence in line for line in lines), lines
    assert fix in first.fix, first.fix


def test_a_missing_configmap_can_also_be_marked_optional() -> None:
    dep, rs, p = _config_workload(LOG_LEVEL, waiting={"reason": "CreateContainerConfigError",
                                                       "message": 'configmap "app-config" not found'})
    first = analyze(snap(pods=[p], deployments=[dep], replicasets=[rs]))[0]
    create, alternative = first.fix.splitlines()
    assert create.startswith(f"kubectl -n {NS} create configmap app-config")
    assert alternative.startswith("# or, if the app can run without it: ")
    assert '"path": "/spec/template/spec/containers/0/env/0/valueFrom/configMapKeyRef/optional", "value": true' \
        in alternative


def _mounting(volume: dict[str, Any], message: str) -> tuple[dict[str, Any], ...]:
    spec = {"containers": [{"name": "web", "image": "nginx:1.27",
                            "volumeMounts": [{"name": volume["name"], "mountPath": "/etc/nginx/conf.d"}]}],
            "volumes": [volume]}
    dep = deployment("web", spec=spec)
    rs = replicaset("web-1", dep, 1, "nginx:1.27", ready=0)
    p = pod("web-1-a", "web-1", phase="Pending", waiting={"reason": "ContainerCreating"}, spec=spec, container="web")
    mount = event("Pod", "web-1-a", "FailedMount", message, count=6)
    return dep, rs, p, mount


@pytest.mark.parametrize(("volume", "error", "objects", "fix"), [
    ({"name": "config", "configMap": {"name": "web-conf"}}, 'configmap "web-conf" not found',
     {"configmaps": [cm("web-config", "default.conf")]},
     """[{"op": "replace", "path": "/spec/template/spec/volumes/0/configMap/name", "value": "web-config"}]"""),
    ({"name": "certs", "secret": {"secretName": "tls"}}, 'secret "tls" not found', {},
     f"kubectl -n {NS} create secret generic tls --from-file=PATH"),
    ({"name": "config", "configMap": {"name": "web-config", "items": [{"key": "nginx.conf", "path": "nginx.conf"}]}},
     "configmap references non-existent config key: nginx.conf", {"configmaps": [cm("web-config", "index.html")]},
     f"""kubectl -n {NS} patch configmap web-config --type=merge -p '{{"data": {{"nginx.conf": "VALUE"}}}}'"""),
])
def test_a_failed_mount_names_the_volume_and_its_missing_object(volume: dict[str, Any], error: str,
                                                                 objects: dict[str, Any], fix: str) -> None:
    message = f'MountVolume.SetUp failed for volume "{volume["name"]}" : {error}'
    dep, rs, p, mount = _mounting(volume, message)
    first = analyze(snap(pods=[p], deployments=[dep], replicasets=[rs], events=[mount], **objects))[0]
    assert first.cause == "FailedMount" and first.subject == "deployment/web"
    assert f"volume {volume['name']} cannot be mounted" in first.summary
    assert any(e.source == "event" and "FailedMount (x6) Pod/web-1-a" in e.line and error in e.line
               for e in first.evidence)
    assert any(e.line.startswith(f"volume {volume['name']} is ") and "mounted by web at /etc/nginx/conf.d" in e.line
               for e in first.evidence)
    assert fix in first.fix, first.fix
    # Once the pod runs, the events that linger (an hour) are no finding.
    p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "web", "state": {"running": {}}, "restartCount": 0}]}
    assert analyze(snap(pods=[p], deployments=[dep], replicasets=[rs], events=[mount], **objects)) == []


START_ERROR = ('failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create '
               'failed: unable to start container process: error during container init: exec: "curl": executable file '
               'not found in $PATH: unknown')


def test_a_command_the_image_lacks_is_a_start_error_before_its_crash_loop() -> None:
    spec = {"containers": [{"name": "probe", "image": "busybox:1.36", "command": ["curl", "-s", "http://web"]}]}
    dep = deployment("probe", spec=spec)
    rs = replicaset("probe-1", dep, 1, "busybox:1.36", ready=0)
    p = pod("probe-1-a", "probe-1", waiting={"reason": "CrashLoopBackOff", "message": "back-off 20s restarting"},
            last={"exitCode": 128, "reason": "StartError", "message": START_ERROR}, restarts=2, spec=spec,
            container="probe")
    failed = event("Pod", "probe-1-a", "Failed", f"Error: {START_ERROR}", count=3)
    first = analyze(snap(pods=[p], deployments=[dep], replicasets=[rs], events=[failed]))[0]
    assert first.cause == "StartError" and first.subject == "deployment/probe"
    assert insight.SCORES["StartError"] > insight.SCORES["CrashLoopBackOff"]
    status = first.evidence[0].line
    assert "exit code 128" in status and 'exec: "curl": executable file not found in $PATH' in status
    assert any('runs ["curl", "-s", "http://web"] in image busybox:1.36' in e.line for e in first.evidence)
    assert "cannot start: exec 'curl': executable file not found in $PATH (image busybox:1.36)" in first.summary
    assert "the image has wget: run wget -qO- http://web instead" in first.summary
    assert first.fix == (f"kubectl -n {NS} patch deployment/probe --type=json -p '[{{\"op\": \"replace\", \"path\": "
                         f"\"/spec/template/spec/containers/0/command\", \"value\": [\"wget\", \"-qO-\", "
                         f"\"http://web\"]}}]'")


def test_an_image_newer_than_the_nodes_cuda_is_named_with_the_drivers_version() -> None:
    from labkit.sim.kubelet import RUNC_PREFIX
    from labkit.sim.nvidia_toolkit import HOOK_FAILED

    message = RUNC_PREFIX + HOOK_FAILED.format(condition="cuda>=12.6")
    spec = {"containers": [{"name": "cuda", "image": "nvidia/cuda:12.6.3-base-ubuntu22.04",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    p = pod("cuda-12-6", None, node_name="gpu-node-1", spec=spec, container="cuda", restarts=2,
            waiting={"reason": "CrashLoopBackOff", "message": "back-off 20s restarting"},
            last={"exitCode": 128, "reason": "StartError", "message": message})
    gpu = node("gpu-node-1", gpus=2, labels={"nvidia.com/cuda.runtime-version.full": "12.4"})
    failed = event("Pod", "cuda-12-6", "Failed", f"Error: {message}", count=3)
    first = analyze(snap(pods=[p], events=[failed], nodes=[gpu]))[0]
    assert first.cause == "StartError" and first.subject == "pod/cuda-12-6"
    assert first.summary == ("container cuda cannot start: its image requires cuda>=12.6 and the NVIDIA driver on "
                             "gpu-node-1 supports CUDA 12.4; the NVIDIA runtime refuses it")
    assert any(e.line == "gpu-node-1: nvidia.com/cuda.runtime-version.full=12.4" for e in first.evidence)
    assert any(e.source == "event" and "unsatisfied condition: cuda>=12.6" in e.line for e in first.evidence)
    assert first.fix.startswith(f"kubectl -n {NS} set image pod/cuda-12-6 cuda=IMAGE   # an image built for CUDA 12.4")


def test_a_bare_pod_that_never_restarts_reports_its_start_error() -> None:
    spec = {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.36", "command": ["curl", "-s", "http://web"]}]}
    p = pod("fetch", None, phase="Failed", spec=spec)
    p["status"]["containerStatuses"] = [{"name": "c", "restartCount": 0, "state": {"terminated": {
        "exitCode": 128, "reason": "StartError", "message": START_ERROR}}}]
    first = analyze(snap(pods=[p]))[0]
    assert first.cause == "StartError" and first.subject == "pod/fetch"
    assert first.fix.startswith(f"kubectl -n {NS} get pod fetch -o yaml > fetch.yaml")
    assert f"\nkubectl -n {NS} replace --force -f fetch.yaml" in first.fix
    # An evicted pod is a leftover, not a symptom.
    p["status"]["reason"] = "Evicted"
    assert analyze(snap(pods=[p])) == []


def _initializing(init_statuses: list[dict[str, Any]], *, phase: str = "Pending", inits: list[dict[str, Any]],
                  name: str = "myapp-pod") -> dict[str, Any]:
    """A pod whose init containers have not all completed, as the kubelet reports it (its app container waits
    PodInitializing; kubectl shows Init:N/M, Init:Error or Init:CrashLoopBackOff)."""
    app = {"name": "myapp", "image": "busybox:1.36", "command": ["sh", "-c", "echo The app is running! && sleep 3600"]}
    p = pod(name, None, phase=phase, spec={"initContainers": inits, "containers": [app]})
    incomplete = " ".join(s["name"] for s in init_statuses
                          if (s["state"].get("terminated") or {}).get("exitCode") != 0)
    p["status"] = {"phase": phase, "conditions": [
        {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
         "message": f"containers with incomplete status: [{incomplete}]"},
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        "initContainerStatuses": init_statuses,
        "containerStatuses": [{"name": "myapp", "restartCount": 0,
                               "state": {"waiting": {"reason": "PodInitializing"}}}]}
    return p


DOCS_INITS = [  # the documentation's init containers (concepts/workloads/pods/init-containers)
    {"name": "init-myservice", "image": "busybox:1.36", "command": [
        "sh", "-c", "until nslookup myservice.$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
                    ".svc.cluster.local; do echo waiting for myservice; sleep 2; done"]},
    {"name": "init-mydb", "image": "busybox:1.36", "command": [
        "sh", "-c", "until nslookup mydb.$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
                    ".svc.cluster.local; do echo waiting for mydb; sleep 2; done"]}]


def _waiting_init(name: str, reason: str = "PodInitializing", **kw: Any) -> dict[str, Any]:
    return {"name": name, "restartCount": kw.pop("restarts", 0), "state": {"waiting": {"reason": reason}}, **kw}


def test_an_init_container_waiting_for_a_missing_service_names_the_service() -> None:
    p = _initializing([{"name": "init-myservice", "restartCount": 0,
                        "state": {"running": {"startedAt": "2026-05-04T10:00:00Z"}}},
                       _waiting_init("init-mydb")], inits=DOCS_INITS)
    first = analyze(snap(pods=[p]))[0]
    assert first.cause == "InitContainerBlocked" and first.subject == "pod/myapp-pod"
    lines = [e.line for e in first.evidence]
    assert any("Initialized=False ContainersNotInitialized" in line and "Init:0/2" in line for line in lines)
    assert any(line.startswith("init container init-myservice waits for myservice: sh -c 'until nslookup myservice.")
               for line in lines)
    assert f"no Service myservice in {NS}, so its name never resolves; {NS} has: none" in lines
    assert first.fix.startswith(f"kubectl -n {NS} create service clusterip myservice --tcp=80:80")
    # A Service named almost like it: the command is pointed at it (a Deployment's template can be patched).
    dep = deployment("myapp", spec={"initContainers": DOCS_INITS[:1], "containers": [{"name": "myapp"}]})
    rs = replicaset("myapp-1", dep, 1, "busybox:1.36", ready=0)
    owned = _initializing([{"name": "init-myservice", "restartCount": 0, "state": {"running": {}}}],
                          inits=DOCS_INITS[:1], name="myapp-1-a")
    owned["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "myapp-1", "controller": True}]
    svc = {"metadata": {"name": "my-service", "namespace": NS}, "spec": {"selector": {"app": "db"}}}
    first = analyze(snap(pods=[owned], deployments=[dep], replicasets=[rs], services=[svc]))[0]
    assert first.cause == "InitContainerBlocked" and first.subject == "deployment/myapp"
    assert '"path": "/spec/template/spec/initContainers/0/command"' in first.fix
    assert "until nslookup my-service.$(cat" in first.fix and "waiting for my-service" in first.fix


def test_a_running_init_container_is_judged_by_how_long_it_runs() -> None:
    inits = [{"name": "migrate", "image": "busybox:1.36", "command": ["sh", "-c", "./migrate.sh"]}]
    p = _initializing([{"name": "migrate", "restartCount": 0,
                        "state": {"running": {"startedAt": "2026-05-04T10:00:00Z"}}}], inits=inits)
    assert analyze(snap(pods=[p])) == []  # no time read: a migration may be slow, not stuck
    assert analyze(snap(pods=[p], taken_at="2026-05-04T10:02:00+00:00")) == []
    stuck = analyze(snap(pods=[p], taken_at="2026-05-04T10:12:00+00:00"))[0]
    assert stuck.cause == "InitContainerBlocked" and "(12 min)" in stuck.evidence[1].line
    assert stuck.fix.startswith(f"kubectl -n {NS} logs myapp-pod -c migrate")
    # A sidecar (an init container with restartPolicy Always) runs on by design.
    inits[0]["restartPolicy"] = "Always"
    assert analyze(snap(pods=[p], taken_at="2026-05-04T10:12:00+00:00")) == []


@pytest.mark.parametrize(("state", "last", "shown", "logs"), [
    ({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=init-db"}},
     {"exitCode": 1, "reason": "Error"}, "Init:CrashLoopBackOff", "--previous"),
    ({"terminated": {"exitCode": 2, "reason": "Error"}}, None, "Init:Error", ""),
])
def test_a_failing_init_container_is_the_cause_not_the_app_waiting_for_it(
        state: dict[str, Any], last: dict[str, Any] | None, shown: str, logs: str) -> None:
    inits = [{"name": "init-db", "image": "busybox:1.36", "command": ["sh", "-c", "./schema.sh"]}]
    status = {"name": "init-db", "restartCount": 3 if last else 0, "state": state,
              "lastState": {"terminated": last} if last else {}}
    p = _initializing([status], inits=inits, phase="Pending" if last else "Failed")
    if not last:  # restartPolicy Never: the pod failed for good
        p["spec"]["restartPolicy"] = "Never"
    first = analyze(snap(pods=[p]))[0]
    assert first.cause == "InitContainerFailing" and first.subject == "pod/myapp-pod"
    code = (last or state["terminated"])["exitCode"]
    assert first.evidence[0].line.startswith(f"init container init-db: {shown}, ")
    assert f"last exit code {code} (Error: {insight.EXIT_CODES[code]})" in first.evidence[0].line
    assert first.fix == f"kubectl -n {NS} logs myapp-pod -c init-db {logs}".rstrip() + (
        "   # read why, then fix its command or what it needs")


def test_init_image_pull_errors_are_image_pull_back_off() -> None:
    inits = [{"name": "init-tools", "image": TYPO, "command": ["sh", "-c", "true"]}]
    p = _initializing([_waiting_init("init-tools", "ImagePullBackOff", image=TYPO)], inits=inits)
    p["status"]["initContainerStatuses"][0]["state"]["waiting"]["message"] = f'Back-off pulling image "{TYPO}"'
    running = pod("home-a", None)
    first = analyze(snap(pods=[p, running]))[0]
    assert first.cause == "ImagePullBackOff" and "init container init-tools (Init:ImagePullBackOff)" in first.summary
    assert first.evidence[0].command.endswith("jsonpath='{.status.initContainerStatuses[*].state}'")
    assert first.fix == f"kubectl -n {NS} set image pod/myapp-pod init-tools=nginx:1.27"


def job(name: str, *, failed: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    conds = [{"type": "FailureTarget", "status": "True", **(failed or {})}, {"type": "Failed", "status": "True",
                                                                               **(failed or {})}] if failed else \
        [{"type": "Complete", "status": "True"}]
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
            "spec": {"backoffLimit": 2, "completions": 1, "parallelism": 1, **spec},
            "status": {"failed": 3, "conditions": conds} if failed else {"succeeded": 1, "conditions": conds}}


def job_pod(name: str, job_name: str, code: int, reason: str = "Error") -> dict[str, Any]:
    p = pod(name, None, phase="Failed", spec={"restartPolicy": "Never", "containers": [
        {"name": "report", "image": "busybox:1.36", "command": ["sh", "-c", "exit 3"]}]})
    p["metadata"]["labels"] = {"batch.kubernetes.io/job-name": job_name, "job-name": job_name}
    p["metadata"]["ownerReferences"] = [{"kind": "Job", "name": job_name, "uid": f"uid-{job_name}",
                                         "controller": True}]
    p["status"]["containerStatuses"] = [{"name": "report", "restartCount": 0,
                                         "state": {"terminated": {"exitCode": code, "reason": reason}}}]
    return p


def test_a_job_past_its_backoff_limit_names_its_pods_exit_codes() -> None:
    j = job("report", failed={"reason": "BackoffLimitExceeded",
                              "message": "Job has reached the specified backoff limit"})
    pods = [job_pod(f"report-{x}", "report", 3) for x in "abc"]
    gave_up = event("Job", "report", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    findings = analyze(snap(pods=pods, jobs=[j], events=[gave_up]))
    assert [f.cause for f in findings] == ["JobFailed"]  # its Failed pods are not findings of their own
    first = findings[0]
    assert first.subject == "job/report"
    assert first.evidence[0].line == "Failed=True BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert any(e.source == "event" and "BackoffLimitExceeded Job/report" in e.line for e in first.evidence)
    assert any(e.line.startswith("3 pod(s) failed: report-a/report exit 3 (Error)") for e in first.evidence)
    assert "after 3 failed pod(s) (backoffLimit 2)" in first.summary and "exit code 3" in first.summary
    logs, again = first.fix.splitlines()
    assert logs.startswith(f"kubectl -n {NS} logs job/report")
    assert again.startswith("# then run it anew") and f"kubectl -n {NS} delete job report" in again
    # A Job that completed is no finding.
    assert analyze(snap(pods=[], jobs=[job("report")])) == []


def test_a_job_past_its_deadline_is_told_to_take_less_time_or_get_more() -> None:
    j = job("etl", failed={"reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"},
            activeDeadlineSeconds=60)
    first = analyze(snap(jobs=[j]))[0]
    assert first.cause == "JobFailed" and "activeDeadlineSeconds (60 s)" in first.summary
    assert first.evidence[0].line == "Failed=True DeadlineExceeded: Job was active longer than specified deadline"
    assert first.fix.startswith(f"kubectl -n {NS} logs job/etl") and "activeDeadlineSeconds" in first.fix


def hpa(name: str, target: str, conditions: list[dict[str, str]], *, kind: str = "Deployment",
        metrics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target}, "minReplicas": 1,
                     "maxReplicas": 10, "metrics": metrics or [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {"currentReplicas": 0, "desiredReplicas": 0, "conditions": conditions}}


GET_SCALE = ("the HPA controller was unable to get the target's current scale: "
             'deployments.apps "php-apach" not found')


def test_an_hpa_whose_target_does_not_exist_is_pointed_at_the_closest_deployment() -> None:
    scaler = hpa("php-apache", "php-apach", [{"type": "AbleToScale", "status": "False", "reason": "FailedGetScale",
                                              "message": GET_SCALE}])
    deps = [deployment("php-apache", uid="d1"), deployment("frontend", uid="d2")]
    warned = event("HorizontalPodAutoscaler", "php-apache", "FailedGetScale", 'deployments.apps "php-apach" not found',
                   count=12)
    findings = analyze(snap(deployments=deps, hpas=[scaler], events=[warned]))
    assert [f.cause for f in findings] == ["HPATargetNotFound"]
    first = findings[0]
    assert first.subject == "horizontalpodautoscaler/php-apache" and "Deployment php-apach" in first.summary
    assert first.evidence[0].line == f"AbleToScale=False FailedGetScale: {GET_SCALE}"
    assert any("FailedGetScale (x12)" in e.line for e in first.evidence)
    assert f"no Deployment php-apach in {NS}; the closest: php-apache" in [e.line for e in first.evidence]
    assert first.fix == (f"kubectl -n {NS} patch horizontalpodautoscaler/php-apache --type=json -p "
                         """'[{"op": "replace", "path": "/spec/scaleTargetRef/name", "value": "php-apache"}]'""")


def test_an_hpa_metric_failure_gets_the_fix_of_its_own_kind() -> None:
    # One of two containers requests no cpu: only that one is given a request.
    dep = deployment("php-apache", spec={"containers": [
        {"name": "php-apache", "image": "registry.k8s.io/hpa-example"},
        {"name": "proxy", "image": "nginx:1.27", "resources": {"requests": {"cpu": "50m"}}}]})
    message = ("the HPA was unable to compute the replica count: failed to get cpu resource metric value: failed to "
               "get cpu utilization: missing request for cpu in container php-apache of Pod php-apache-7d4b9-x2x8q")
    active = [{"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
              {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric", "message": message}]
    first = analyze(snap(deployments=[dep], hpas=[hpa("php-apache", "php-apache", active)]))[0]
    assert first.cause == "HPAWithoutMetrics"
    assert first.fix == f"kubectl -n {NS} set resources deployment/php-apache -c php-apache --requests=cpu=100m"
    # A Pods metric no adapter serves: the custom metrics API is where to look.
    pods_metric = [{"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"},
                                             "target": {"type": "AverageValue", "averageValue": "10"}}}]
    custom = [{"type": "ScalingActive", "status": "False", "reason": "FailedGetPodsMetric",
               "message": "the HPA was unable to compute the replica count: unable to get metric "
                          "http_requests_per_second: unable to fetch metrics from custom metrics API"}]
    first = analyze(snap(deployments=[dep], hpas=[hpa("php-apache", "php-apache", custom, metrics=pods_metric)]))[0]
    assert first.cause == "HPAWithoutMetrics" and "custom metrics API returns no http_requests_per_second" in \
        first.summary
    assert any(e.command == f"kubectl get --raw '/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NS}/pods/*/"
                            "http_requests_per_second'" for e in first.evidence)
    assert first.fix.startswith("kubectl get apiservice v1beta1.custom.metrics.k8s.io")


NO_SA = (f'pods "web-1-" is forbidden: error looking up service account {NS}/web-robto: serviceaccount "web-robto" '
         'not found')


@pytest.mark.parametrize(("accounts", "fix"), [
    (["default", "web-robot"],
     f"""kubectl -n {NS} patch deployment/web --type=json -p '[{{"op": "replace", "path": """
     """"/spec/template/spec/serviceAccountName", "value": "web-robot"}]'"""),
    (["default"], f"kubectl -n {NS} create serviceaccount web-robto\nkubectl -n {NS} annotate replicaset web-1"),
])
def test_a_missing_service_account_is_named_or_created(accounts: list[str], fix: str) -> None:
    dep = deployment("web")
    rs = replicaset("web-1", dep, 1, "nginx:1.27", replicas=2, ready=0, failure=NO_SA)
    refused = event("ReplicaSet", "web-1", "FailedCreate", f"Error creating: {NO_SA}", count=7)
    sas = [{"metadata": {"name": a, "namespace": NS}, "data": {}} for a in accounts]
    first = analyze(snap(deployments=[dep], replicasets=[rs], events=[refused], serviceaccounts=sas))[0]
    assert first.cause == "ServiceAccountNotFound" and first.subject == "deployment/web"
    assert "ServiceAccount web-robto, which does not exist" in first.summary and "(2 missing)" in first.summary
    assert any("FailedCreate (x7) ReplicaSet/web-1: Error creating:" in e.line for e in first.evidence)
    assert f"no ServiceAccount web-robto in {NS}; it has: {', '.join(accounts)}" in [e.line for e in first.evidence]
    assert first.fix.startswith(fix), first.fix


def test_a_refusal_seen_only_in_events_counts_while_pods_are_missing() -> None:
    dep = deployment("web")
    rs = replicaset("web-1", dep, 1, "nginx:1.27", replicas=2, ready=0)  # no ReplicaFailure condition (yet)
    refused = event("ReplicaSet", "web-1", "FailedCreate", f"Error creating: {NO_SA}")
    assert analyze(snap(deployments=[dep], replicasets=[rs], events=[refused]))[0].cause == "ServiceAccountNotFound"
    rs["status"]["replicas"] = 2  # created since: the event is history
    assert analyze(snap(deployments=[dep], replicasets=[rs], events=[refused])) == []


def test_a_pod_security_refusal_is_fixed_in_the_pods_not_the_namespace() -> None:
    dep = deployment("web", spec={"hostNetwork": True, "containers": [
        {"name": "web", "image": "nginx:1.27", "securityContext": {"privileged": True}}]})
    message = ('pods "web-1-8xk2p" is forbidden: violates PodSecurity "baseline:latest": host namespaces '
               '(hostNetwork=true), privileged (container "web" must not set securityContext.privileged=true), '
               'hostPath volumes (volume "root")')
    rs = replicaset("web-1", dep, 1, "nginx:1.27", replicas=1, ready=0, failure=message)
    first = analyze(snap(deployments=[dep], replicasets=[rs]))[0]
    assert first.cause == "PodSecurityViolation" and first.subject == "deployment/web"
    assert "enforces Pod Security 'baseline'" in first.summary
    assert any(e.line.startswith(f"namespace {NS} enforces Pod Security level baseline (latest)")
               for e in first.evidence)
    patch, by_hand = first.fix.splitlines()
    assert patch == (f"kubectl -n {NS} patch deployment/web --type=strategic -p '{{\"spec\": {{\"template\": "
                     "{\"spec\": {\"hostNetwork\": null, \"hostPID\": null, \"hostIPC\": null, \"containers\": "
                     "[{\"name\": \"web\", \"securityContext\": {\"privileged\": null}}]}}}}'")
    assert by_hand.startswith("# by hand") and 'hostPath volumes (volume "root")' in by_hand


def test_two_faults_in_one_namespace_are_both_found_each_on_its_own_object() -> None:
    dep, rs, p = _config_workload(LOG_LEVEL, waiting={"reason": "CreateContainerConfigError",
                                                       "message": 'configmap "app-config" not found'})
    php = deployment("php-apache", uid="d2")
    scaler = hpa("php-apache", "php-apach", [{"type": "AbleToScale", "status": "False", "reason": "FailedGetScale",
                                              "message": GET_SCALE}])
    findings = analyze(snap(pods=[p], deployments=[dep, php], replicasets=[rs], hpas=[scaler]))
    assert [(f.cause, f.subject) for f in findings] == [
        ("CreateContainerConfigError", "deployment/api"), ("HPATargetNotFound", "horizontalpodautoscaler/php-apache")]
    config, target = findings
    assert "app-config" in config.fix and "php-apach" not in config.fix + " ".join(e.line for e in config.evidence)
    assert '"value": "php-apache"' in target.fix and "app-config" not in target.fix


def test_causes_that_explain_others_rank_first() -> None:
    order = list(insight.CAUSES)
    assert order.index("FailedMount") < order.index("CreateContainerConfigError") < order.index("ImagePullBackOff")
    for cause in ("StartError", "InitContainerFailing", "InitContainerBlocked", "JobFailed"):
        assert order.index(cause) < order.index("CrashLoopBackOff"), cause
    assert order.index("HPATargetNotFound") < order.index("HPAWithoutMetrics")
    assert order.index("QuotaExceeded") < order.index("ServiceAccountNotFound") < order.index("UnboundPVC")


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
    saved = dict(insight.evidence._EVIDENCE_SOURCES)
    try:
        insight.evidence._EVIDENCE_SOURCES.clear()  # Prometheus' source would look for the lab's Prometheus
        insight.register_evidence_source("logs", lambda _s, f: [Evidence("logs", "connection refused",
                                                                         "logsql: _stream:{pod=web-a}")])
        insight.register_evidence_source("traces", lambda _s, f: (_ for _ in ()).throw(OSError("jaeger down")))
        notes = insight.collect_evidence(s, findings)
    finally:
        insight.evidence._EVIDENCE_SOURCES.clear()
        insight.evidence._EVIDENCE_SOURCES.update(saved)
    assert findings[0].evidence[before].source == "logs"
    assert notes == ["evidence source 'traces' failed: jaeger down"]


@pytest.mark.parametrize(("text", "resource", "back"), [("500m", "cpu", "500m"), ("2", "cpu", "2"),
                                                         ("1Gi", "memory", "1024Mi"), ("3", "pods", "3")])
def test_quantities_read_and_write_as_kubectl_does(text: str, resource: str, back: str) -> None:
    assert format_quantity(resource, quantity(text)) == back


def test_every_scenario_names_a_known_cause_and_benchmark_ones_stay_out_of_the_drill() -> None:
    from labkit.lessons import troubleshooting as l11

    every = l11.all_scenarios(benchmark=True)
    assert {sc.cause for sc in every.values()} <= set(insight.CAUSES)
    drilled = l11.all_scenarios()  # what notebook 11's tickets and the e2e drill iterate over
    assert set(drilled) == {n for n, sc in every.items() if not sc.benchmark_only}
    assert all(sc.fixed for sc in drilled.values())  # the e2e test runs every fix
    assert l11.scenario("job-backoff").benchmark_only and not l11.scenario("job-backoff").fixed


def test_a_mount_fixed_since_is_no_finding_once_the_pod_waits_for_something_else() -> None:
    volume = {"name": "config", "configMap": {"name": "web-config"}}
    dep, rs, p, mount = _mounting(volume, 'MountVolume.SetUp failed for volume "config" : configmap "web-config" '
                                          "not found")
    p["status"]["containerStatuses"][0]["state"] = {"waiting": {
        "reason": "CreateContainerConfigError", "message": 'secret "db-pass" not found'}}
    first = analyze(snap(pods=[p], deployments=[dep], replicasets=[rs], events=[mount]))[0]
    assert first.cause == "CreateContainerConfigError"  # the ConfigMap came; the kubelet now waits for the Secret


def test_the_exit_code_meanings_shown_are_the_exit_codes_table() -> None:
    """exit_meaning() is EXIT_CODES in the learner's language (its msgids are written out for the catalogue)."""
    from labkit.insight.findings import exit_meaning

    assert {code: exit_meaning(code, "") for code in insight.EXIT_CODES} == insight.EXIT_CODES
    assert exit_meaning(42, "the process chose it") == "the process chose it"
