"""e2e: the simulated kubelet reads like the real one: image pulls that fail only for images that do not exist, and
the events and statuses kubelet 1.36 writes (labkit/data/stages, labkit/data/images.yaml)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import labkit as lk
from labkit.kube import rollouts

pytestmark = pytest.mark.e2e


def deployment(name: str, image: str, *, replicas: int = 2, deadline: int = 600) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "progressDeadlineSeconds": deadline,
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}}


def pod(name: str, **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": container.pop("container_name", "app"), **container}]}}


def events_of(lab: lk.Lab, namespace: str, name: str) -> list[Any]:
    """The pod's events in `kubectl describe`'s order: by last timestamp, then as listed (by name)."""
    items = lab.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return sorted(items, key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp)


def wait_for_events(lab: lk.Lab, namespace: str, name: str, done: Any, *, timeout: float) -> list[Any]:
    """Poll the pod's events until ``done(events)`` holds; fail with what was there at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        events = events_of(lab, namespace, name)
        if done(events):
            return events
        if time.monotonic() > deadline:
            pytest.fail(f"events of {name} after {timeout:.0f}s: " +
                        "; ".join(f"{e.reason}: {e.message}" for e in events))
        time.sleep(0.5)


def reasons(events: list[Any]) -> list[str]:
    return [e.reason for e in events if e.source.component == "kubelet"]


def assert_no_simulator_wording(lab: lk.Lab, namespace: str) -> None:
    for e in lab.core.list_namespaced_event(namespace).items:
        assert "simulated" not in (e.message or "").lower(), e.message
        assert "kwok" not in (e.message or "").lower(), e.message


def test_rollout_to_a_tag_nginx_does_not_have_gets_stuck(lab, namespace):
    lk.apply(lab, deployment("web", "nginx:1.27", deadline=8), namespace=namespace)
    rollouts.rollout_status(lab, "web", namespace=namespace, timeout=60)
    rollouts.set_image(lab, "web", namespace=namespace, image="nginx:1.99")
    with pytest.raises(lk.WaitFailed, match="ProgressDeadlineExceeded"):
        rollouts.rollout_status(lab, "web", namespace=namespace, timeout=60)
    pods = rollouts.pods_by_revision(lab, "web", namespace=namespace)
    bad = pods[pods.image == "nginx:1.99"]
    assert len(bad) == 1 and not bad.ready.any()
    assert set(bad.status) <= {"ErrImagePull", "ImagePullBackOff"}
    assert pods[pods.image == "nginx:1.27"].ready.sum() == 2

    name = bad.pod.iloc[0]
    events = wait_for_events(lab, namespace, name, lambda ev: {"Failed", "BackOff"} <= set(reasons(ev)), timeout=30)
    messages = [e.message for e in events]
    not_found = ('Failed to pull image "nginx:1.99": rpc error: code = NotFound desc = failed to pull and unpack image '
                 '"docker.io/library/nginx:1.99": failed to resolve image: docker.io/library/nginx:1.99: not found')
    assert not_found in messages
    assert {'Pulling image "nginx:1.99"', "Error: ErrImagePull", 'Back-off pulling image "nginx:1.99"',
            "Error: ImagePullBackOff"} <= set(messages)
    assert {e.involved_object.field_path for e in events if e.source.component == "kubelet"} == {"spec.containers{web}"}

    def backing_off(obj: dict[str, Any] | None) -> bool:
        statuses = ((obj or {}).get("status") or {}).get("containerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting")
        return bool(waiting) and waiting.get("reason") == "ImagePullBackOff"

    p = lk.wait_for(lab, "Pod", name, namespace=namespace, condition=backing_off, timeout=20)
    waiting = p["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["message"].startswith('Back-off pulling image "nginx:1.99": ErrImagePull: ')
    assert waiting["message"].endswith("docker.io/library/nginx:1.99: not found")
    assert p["status"]["phase"] == "Pending"
    assert_no_simulator_wording(lab, namespace)


def test_a_good_pod_is_pulled_created_and_started_in_order(lab, namespace):
    lk.apply(lab, pod("web", image="nginx:1.27", container_name="web"), namespace=namespace)
    p = lk.wait_for(lab, "Pod", "web", namespace=namespace, condition="jsonpath={.status.phase}=Running", timeout=20)
    events = wait_for_events(lab, namespace, "web", lambda ev: "Started" in reasons(ev), timeout=10)
    assert reasons(events) == ["Pulling", "Pulled", "Created", "Started"]
    pulling, pulled, created, started = [e for e in events if e.source.component == "kubelet"]
    assert pulling.message == 'Pulling image "nginx:1.27"'
    assert pulled.message.startswith('Successfully pulled image "nginx:1.27" in ')
    assert "including waiting). Image size: " in pulled.message and pulled.message.endswith(" bytes.")
    assert (created.message, started.message) == ("Container created", "Container started")
    assert {e.involved_object.field_path for e in events if e.source.component == "kubelet"} == {"spec.containers{web}"}
    assert {e.source.host for e in events if e.source.component == "kubelet"} == {p["spec"]["nodeName"]}
    # The runtime reports the normalised reference and a digest, as containerd does.
    status = p["status"]["containerStatuses"][0]
    assert status["image"] == "docker.io/library/nginx:1.27"
    assert status["imageID"].startswith("docker.io/library/nginx@sha256:")
    # Deleted, the pod's container is stopped (event Killing), then the pod goes.
    lk.delete(lab, pod("web", image="nginx:1.27", container_name="web"), namespace=namespace)
    lk.wait_for(lab, "Pod", "web", namespace=namespace, condition="delete", timeout=20)
    events = wait_for_events(lab, namespace, "web", lambda ev: "Killing" in reasons(ev), timeout=10)
    assert next(e.message for e in events if e.reason == "Killing") == "Stopping container web"
    assert_no_simulator_wording(lab, namespace)


def test_the_documentations_exec_liveness_probe_fails_as_it_says(lab, namespace):
    # kubectl apply -f https://k8s.io/examples/pods/probe/exec-liveness.yaml, as published.
    lk.apply(lab, {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"labels": {"test": "liveness"}, "name": "liveness-exec"},
                   "spec": {"containers": [{
                       "name": "liveness", "image": "registry.k8s.io/busybox:1.27.2",
                       "args": ["/bin/sh", "-c", "touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600"],
                       "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                                         "initialDelaySeconds": 5, "periodSeconds": 5}}]}},
             namespace=namespace)
    # Probes fail from 30 s on (the file is gone); the third failure in a row, at 40 s, kills the container.
    events = wait_for_events(lab, namespace, "liveness-exec", lambda ev: "Killing" in reasons(ev), timeout=60)
    unhealthy = [e for e in events if e.reason == "Unhealthy"]
    assert len(unhealthy) == 1 and unhealthy[0].type == "Warning"
    # The prober's output ends with the newline cat prints; `kubectl describe` trims it.
    assert unhealthy[0].message == "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory\n"
    assert unhealthy[0].count == 3
    killing = next(e for e in events if e.reason == "Killing")
    assert killing.message == "Container liveness failed liveness probe, will be restarted"
    assert reasons(events).index("Unhealthy") < reasons(events).index("Killing")
    # Killed, the container waits out its back-off: not running, so not ready.
    status = lab.core.read_namespaced_pod("liveness-exec", namespace).status
    if status.container_statuses[0].state.waiting:
        assert status.container_statuses[0].ready is False
        assert any(c.type == "Ready" and c.status == "False" for c in status.conditions)
    # ... and the container starts again, with the restart counted and the kill recorded.
    p = lk.wait_for(lab, "Pod", "liveness-exec", namespace=namespace, timeout=30,
                    condition="jsonpath={.status.containerStatuses[0].restartCount}=1")
    status = p["status"]["containerStatuses"][0]
    assert "running" in status["state"]
    assert status["lastState"]["terminated"]["exitCode"] == 137
    events = wait_for_events(lab, namespace, "liveness-exec", lambda ev: any(
        e.reason == "Started" and e.count == 2 for e in ev), timeout=10)
    assert any(e.reason == "Pulled" and "already present on machine" in e.message for e in events)
    assert_no_simulator_wording(lab, namespace)


def test_probe_outputs_read_like_the_probers(lab, namespace):
    lk.apply(lab, pod("notfound", image="nginx:1.27",
                      readinessProbe={"httpGet": {"path": "/healthz", "port": 80}, "periodSeconds": 1}),
             namespace=namespace)
    lk.apply(lab, pod("wrongport", image="nginx:1.27",
                      readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1}), namespace=namespace)
    lk.apply(lab, pod("agnhost", image="registry.k8s.io/e2e-test-images/agnhost:2.40", args=["liveness"],
                      livenessProbe={"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1,
                                     "failureThreshold": 1}), namespace=namespace)

    def unhealthy(name: str) -> str:
        events = wait_for_events(lab, namespace, name, lambda ev: "Unhealthy" in reasons(ev), timeout=25)
        return next(e.message for e in events if e.reason == "Unhealthy")

    assert unhealthy("notfound") == "Readiness probe failed: HTTP probe failed with statuscode: 404"
    ip = lab.core.read_namespaced_pod("wrongport", namespace).status.pod_ip
    assert unhealthy("wrongport") == f"Readiness probe failed: dial tcp {ip}:8080: connect: connection refused"
    assert unhealthy("agnhost") == "Liveness probe failed: HTTP probe failed with statuscode: 500"
    assert_no_simulator_wording(lab, namespace)


def test_pull_policy_never_and_repositories_that_do_not_exist(lab, namespace):
    lk.apply(lab, pod("never", image="nginx:1.27", imagePullPolicy="Never"), namespace=namespace)
    lk.apply(lab, pod("present", image="registry.k8s.io/pause:3.10.1", imagePullPolicy="Never"), namespace=namespace)
    lk.apply(lab, pod("typo", image="ngnix:1.27"), namespace=namespace)
    lk.apply(lab, pod("elsewhere", image="ghcr.io/example/app:v1"), namespace=namespace)

    lk.wait_for(lab, "Pod", "never", namespace=namespace, timeout=20,
                condition="jsonpath={.status.containerStatuses[0].state.waiting.reason}=ErrImageNeverPull")
    events = wait_for_events(lab, namespace, "never", lambda ev: "ErrImageNeverPull" in reasons(ev), timeout=10)
    assert 'Container image "nginx:1.27" is not present with pull policy of Never' in [e.message for e in events]

    lk.wait_for(lab, "Pod", "present", namespace=namespace, condition="condition=Ready", timeout=20)
    events = wait_for_events(lab, namespace, "present", lambda ev: "Started" in reasons(ev), timeout=10)
    assert reasons(events) == ["Pulled", "Created", "Started"]
    assert ('Container image "registry.k8s.io/pause:3.10.1" already present on machine and can be accessed by the pod'
            in [e.message for e in events])

    events = wait_for_events(lab, namespace, "typo", lambda ev: "Failed" in reasons(ev), timeout=20)
    assert any("pull access denied, repository does not exist or may require authorization" in e.message
               for e in events)
    # A repository the catalog does not know is assumed to exist.
    lk.wait_for(lab, "Pod", "elsewhere", namespace=namespace, condition="condition=Ready", timeout=20)
    assert_no_simulator_wording(lab, namespace)


def test_a_crash_loop_backs_off_with_the_kubelets_words(lab, namespace):
    lk.apply(lab, pod("crash", image="busybox:1.36", command=["sh", "-c", "echo boom; exit 3"]), namespace=namespace)
    p = lk.wait_for(lab, "Pod", "crash", namespace=namespace, timeout=20,
                    condition="jsonpath={.status.containerStatuses[0].state.waiting.reason}=CrashLoopBackOff")
    status = p["status"]["containerStatuses"][0]
    uid = p["metadata"]["uid"]
    assert status["state"]["waiting"]["message"] == (
        f"back-off 10s restarting failed container=app pod=crash_{namespace}({uid})")
    assert status["lastState"]["terminated"]["exitCode"] == 3 and status["lastState"]["terminated"]["reason"] == "Error"
    events = wait_for_events(lab, namespace, "crash", lambda ev: "BackOff" in reasons(ev), timeout=10)
    backoff = next(e for e in events if e.reason == "BackOff")
    assert backoff.type == "Warning"
    assert backoff.message == f"Back-off restarting failed container app in pod crash_{namespace}({uid})"
    assert_no_simulator_wording(lab, namespace)
