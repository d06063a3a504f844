"""e2e: the rollout helpers and the simulated pod behaviours that lessons 01-03 teach (labkit/data/stages)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import labkit as lk
from labkit.kube import events, rollouts

pytestmark = pytest.mark.e2e


def deployment(name: str, image: str, *, replicas: int = 3, container: dict[str, Any] | None = None,
               strategy: dict[str, Any] | None = None, deadline: int = 600) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "progressDeadlineSeconds": deadline,
                     "strategy": strategy or {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image, **(container or {})}]}}}}


def pod(name: str, **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", **container}]}}


def container_status(lab: lk.Lab, name: str, namespace: str) -> Any:
    p = lab.core.read_namespaced_pod(name, namespace)
    return (p.status.container_statuses or [None])[0]


def test_rolling_update_with_max_unavailable_zero_never_drops_below_replicas(lab, namespace):
    lk.apply(lab, deployment("web", "nginx:1.25", replicas=4, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}), namespace=namespace)
    rollouts.rollout_status(lab, "web", namespace=namespace)
    with events.Recorder(lab, namespace) as rec:
        rollouts.set_image(lab, "web", namespace=namespace, image="nginx:1.26")
        assert "successfully rolled out" in rollouts.rollout_status(lab, "web", namespace=namespace, timeout=90)
    table = rec.table()
    per = events.ready_by_revision(table)
    assert set(per.revision) == {"1", "2"}, per.revision.unique()
    assert events.min_ready_during(table) >= 4
    # The new revision really ended with every pod, the old with none.
    last = per[per.t == per.t.max()].set_index("revision").ready.to_dict()
    assert last == {"1": 0, "2": 4}


def test_recreate_drops_to_zero(lab, namespace):
    lk.apply(lab, deployment("legacy", "nginx:1.25", strategy={"type": "Recreate"}), namespace=namespace)
    rollouts.rollout_status(lab, "legacy", namespace=namespace)
    with events.Recorder(lab, namespace) as rec:
        rollouts.set_image(lab, "legacy", namespace=namespace, image="nginx:1.26")
        rollouts.rollout_status(lab, "legacy", namespace=namespace, timeout=90)
    assert events.min_ready_during(rec.table()) == 0


def test_history_pause_resume_and_undo_to_revision(lab, namespace):
    lk.apply(lab, deployment("web", "nginx:1.25", replicas=2), namespace=namespace)
    rollouts.rollout_status(lab, "web", namespace=namespace)
    rollouts.set_image(lab, "web", namespace=namespace, image="nginx:1.26", change_cause="v2")
    rollouts.rollout_status(lab, "web", namespace=namespace)
    rollouts.rollout_pause(lab, "web", namespace=namespace)
    rollouts.set_image(lab, "web", namespace=namespace, image="nginx:1.27")
    time.sleep(1)
    assert list(rollouts.rollout_history(lab, "web", namespace=namespace).revision) == [1, 2]
    with pytest.raises(lk.LabkitError, match="paused"):
        rollouts.rollout_undo(lab, "web", namespace=namespace)
    rollouts.rollout_resume(lab, "web", namespace=namespace)
    rollouts.rollout_status(lab, "web", namespace=namespace)
    history = rollouts.rollout_history(lab, "web", namespace=namespace)
    assert list(history.image) == ["nginx:1.25", "nginx:1.26", "nginx:1.27"]
    assert history.change_cause.iloc[1] == "v2"
    rollouts.rollout_undo(lab, "web", namespace=namespace, to_revision=1)
    rollouts.rollout_status(lab, "web", namespace=namespace)
    history = rollouts.rollout_history(lab, "web", namespace=namespace)
    # Undo reuses revision 1's ReplicaSet as the newest revision, as kubectl rollout undo does.
    assert list(history.revision) == [2, 3, 4]
    assert history.image.iloc[-1] == "nginx:1.25"
    with pytest.raises(lk.NotFound, match="revision 9"):
        rollouts.rollout_undo(lab, "web", namespace=namespace, to_revision=9)


def test_bad_image_stalls_rollout_with_progress_deadline_exceeded(lab, namespace):
    lk.apply(lab, deployment("web", "nginx:1.25", replicas=2, deadline=8), namespace=namespace)
    rollouts.rollout_status(lab, "web", namespace=namespace)
    rollouts.set_image(lab, "web", namespace=namespace, image="nginx:does-not-exist")
    with pytest.raises(lk.WaitFailed, match="ProgressDeadlineExceeded"):
        rollouts.rollout_status(lab, "web", namespace=namespace, timeout=60)
    pods = rollouts.pods_by_revision(lab, "web", namespace=namespace)
    bad = pods[pods.image == "nginx:does-not-exist"]
    assert len(bad) == 1 and not bad.ready.any()
    assert set(bad.status) <= {"ErrImagePull", "ImagePullBackOff"}
    assert pods[pods.image == "nginx:1.25"].ready.sum() == 2
    rollouts.rollout_undo(lab, "web", namespace=namespace)
    assert "successfully" in rollouts.rollout_status(lab, "web", namespace=namespace, timeout=60)


def test_rollout_status_times_out_with_last_status(lab, namespace):
    lk.apply(lab, deployment("web", "nginx:does-not-exist", replicas=1), namespace=namespace)
    with pytest.raises(lk.WaitTimeout, match="did not reach"):
        rollouts.rollout_status(lab, "web", namespace=namespace, timeout=3)


def test_image_that_does_not_exist_goes_err_image_pull_then_back_off(lab, namespace):
    lk.apply(lab, pod("bad", image="nginx:does-not-exist"), namespace=namespace)
    seen: set[str] = set()

    def reason(obj: dict[str, Any] | None) -> bool:
        for s in ((obj or {}).get("status") or {}).get("containerStatuses") or []:
            seen.add(((s.get("state") or {}).get("waiting") or {}).get("reason", ""))
        return "ImagePullBackOff" in seen

    lk.wait_for(lab, "Pod", "bad", namespace=namespace, condition=reason, timeout=20)
    assert "ErrImagePull" in seen
    p = lab.core.read_namespaced_pod("bad", namespace)
    assert p.status.phase == "Pending"
    assert not any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)


def test_command_that_exits_with_error_crash_loops_with_rising_restarts(lab, namespace):
    lk.apply(lab, pod("crash", image="busybox:1.36", command=["sh", "-c", "echo boom; exit 3"]), namespace=namespace)
    lk.wait_for(lab, "Pod", "crash", namespace=namespace, timeout=20, condition=lambda o: any(
        ((s.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
        for s in ((o or {}).get("status") or {}).get("containerStatuses") or []))
    s = container_status(lab, "crash", namespace)
    assert s.last_state.terminated.exit_code == 3
    # The first back-off is 10 s, then the container starts again with restartCount 1.
    lk.wait_for(lab, "Pod", "crash", namespace=namespace, timeout=25,
                condition="jsonpath={.status.containerStatuses[0].restartCount}=1")


def test_failing_readiness_probe_keeps_pod_out_of_endpointslice(lab, namespace):
    from kubernetes import client as k8s

    lk.apply(lab, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"selector": {"tier": "web"}, "ports": [{"port": 80}]}}, namespace=namespace)
    good = pod("good", image="nginx:1.27", readinessProbe={"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1})
    bad = pod("bad", image="nginx:1.27", readinessProbe={"httpGet": {"path": "/healthz", "port": 80},
                                                         "periodSeconds": 1})
    for p in (good, bad):
        p["metadata"]["labels"]["tier"] = "web"
        lk.apply(lab, p, namespace=namespace)
    lk.wait_for(lab, "Pod", "good", namespace=namespace, condition="condition=Ready", timeout=20)
    # The bad pod has an IP (and so an endpoint) while still Pending; judge it once it runs.
    lk.wait_for(lab, "Pod", "bad", namespace=namespace, condition="jsonpath={.status.phase}=Running", timeout=20)
    discovery = k8s.DiscoveryV1Api(lab.api_client)

    def endpoints() -> dict[str, bool]:
        out = {}
        for es in discovery.list_namespaced_endpoint_slice(
                namespace, label_selector="kubernetes.io/service-name=web").items:
            for ep in es.endpoints or []:
                out[ep.target_ref.name] = bool(ep.conditions.ready)
        return out

    deadline = time.monotonic() + 20
    # The EndpointSlice controller batches updates: wait for the state, then assert it (the loop has a deadline).
    while time.monotonic() < deadline and endpoints() != {"good": True, "bad": False}:
        time.sleep(0.5)
    eps = endpoints()
    assert eps == {"good": True, "bad": False}, eps
    bad_pod = lab.core.read_namespaced_pod("bad", namespace)
    assert bad_pod.status.phase == "Running"


def test_failing_liveness_probe_restarts_container_on_probe_timing(lab, namespace):
    lk.apply(lab, pod("live", image="registry.k8s.io/e2e-test-images/agnhost:2.40", args=["liveness"],
                      livenessProbe={"httpGet": {"path": "/healthz", "port": 8080},
                                     "initialDelaySeconds": 1, "periodSeconds": 1, "failureThreshold": 2}),
             namespace=namespace)
    lk.wait_for(lab, "Pod", "live", namespace=namespace, condition="condition=Ready", timeout=20)
    start = time.monotonic()
    # /healthz fails from 10 s on; probes every 1 s, 2 failures: killed at about 11 s after start ...
    lk.wait_for(lab, "Pod", "live", namespace=namespace, timeout=25,
                condition="jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode}=137")
    assert 5 < time.monotonic() - start < 16
    assert container_status(lab, "live", namespace).state.waiting.reason == "CrashLoopBackOff"
    # ... and started again after the 10 s back-off, with the restart counted.
    lk.wait_for(lab, "Pod", "live", namespace=namespace, timeout=20,
                condition="jsonpath={.status.containerStatuses[0].restartCount}=1")
    assert container_status(lab, "live", namespace).state.running is not None


def test_startup_probe_holds_readiness_until_it_succeeds(lab, namespace):
    lk.apply(lab, pod("slow", image="busybox:1.36", command=["sh", "-c", "sleep 4; touch /tmp/started; sleep 3600"],
                      startupProbe={"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1,
                                    "failureThreshold": 10}), namespace=namespace)
    lk.wait_for(lab, "Pod", "slow", namespace=namespace, condition="jsonpath={.status.phase}=Running", timeout=20)
    assert container_status(lab, "slow", namespace).started is False
    assert not any(c.type == "Ready" and c.status == "True"
                   for c in lab.core.read_namespaced_pod("slow", namespace).status.conditions)
    lk.wait_for(lab, "Pod", "slow", namespace=namespace, condition="condition=Ready", timeout=20)
    s = container_status(lab, "slow", namespace)
    assert s.started is True and s.restart_count == 0


def test_partitioned_statefulset_update_leaves_lower_ordinals_on_old_revision(lab, namespace):
    lk.apply(lab, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                   "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel",
                            "selector": {"matchLabels": {"app": "db"}},
                            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
                            "template": {"metadata": {"labels": {"app": "db"}},
                                         "spec": {"containers": [{"name": "db", "image": "nginx:1.25"}]}}}},
             namespace=namespace)
    rollouts.rollout_status(lab, "db", namespace=namespace, kind="statefulset")
    rollouts.set_image(lab, "db", namespace=namespace, image="nginx:1.26", kind="statefulset")
    assert "partitioned roll out complete" in rollouts.rollout_status(lab, "db", namespace=namespace,
                                                                      kind="statefulset", timeout=60)
    images = {p.metadata.name: p.spec.containers[0].image
              for p in lab.core.list_namespaced_pod(namespace, label_selector="app=db").items}
    assert images == {"db-0": "nginx:1.25", "db-1": "nginx:1.25", "db-2": "nginx:1.26"}
    history = rollouts.rollout_history(lab, "db", namespace=namespace, kind="statefulset")
    assert list(history.image) == ["nginx:1.25", "nginx:1.26"]
    by_revision = rollouts.pods_by_revision(lab, "db", namespace=namespace, kind="statefulset")
    assert list(by_revision.pod) == ["db-0", "db-1", "db-2"]  # ordinal order
    assert list(by_revision.revision) == [1, 1, 2]
