"""The embedded kubelet's checks (labkit.sim.kubelet), without a cluster: the kubelet's words for each fault, the
order it checks in, and how a held pod is walked (init containers, back-off, the hand-over to the Stages)."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.cluster import stages
from labkit.sim import kubelet as k


@pytest.fixture(scope="module")
def catalog() -> stages.Catalog:
    return stages.load_catalog()


def pod(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None,
        volumes: list[dict[str, Any]] | None = None, restart: str = "Always") -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": "node-1", "restartPolicy": restart,
                            "containers": [{"name": f"c{i}", "image": "nginx:1.27", **c}
                                           for i, c in enumerate(containers)]}
    if init:
        spec["initContainers"] = [{"name": f"init{i}", "image": "busybox:1.36", **c} for i, c in enumerate(init)]
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": spec, "status": {}}


def test_env_references_fail_in_the_kubelets_words_and_order() -> None:
    ns = k.Namespace(configmaps={"cfg": {"a"}}, secrets={"pw": {"password"}})
    c = {"envFrom": [{"configMapRef": {"name": "missing-from"}}],
         "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "k"}}}]}
    assert k.env_problem(c, "ns", ns) == 'configmap "missing-from" not found'  # envFrom comes first
    assert k.env_problem({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "b"}}}]},
                         "ns", ns) == "couldn't find key b in ConfigMap ns/cfg"
    assert k.env_problem({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "p"}}}]},
                         "ns", ns) == 'secret "db" not found'
    assert k.env_problem({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "user"}}}]},
                         "ns", ns) == "couldn't find key user in Secret ns/pw"
    optional = {"envFrom": [{"secretRef": {"name": "nope", "optional": True}}],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "z", "optional": True}}}]}
    assert k.env_problem(optional, "ns", ns) is None


def test_volumes_that_cannot_be_set_up(catalog: stages.Catalog) -> None:
    ns = k.Namespace(configmaps={"kube-root-ca.crt": {"ca.crt"}, "cfg": {"a"}})
    p = pod({}, volumes=[
        {"name": "config", "configMap": {"name": "cfg", "items": [{"key": "b", "path": "b"}]}},
        {"name": "tls", "secret": {"secretName": "tls"}},
        {"name": "opt", "secret": {"secretName": "maybe", "optional": True}},
        {"name": "kube-api-access-x", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}])
    assert k.mount_problems(p, ns) == [("config", "configmap references non-existent config key: b"),
                                       ("tls", 'secret "tls" not found')]
    assert k.pod_verdict(p, ns, catalog) == k.HELD


def test_a_program_the_image_lacks_fails_as_runc_does(catalog: stages.Catalog) -> None:
    assert k.start_problem({"image": "busybox:1.36", "command": ["curl", "x"]}, catalog) == (
        k.RUNC_PREFIX + 'exec: "curl": executable file not found in $PATH: unknown')
    assert "stat /bin/bash: no such file or directory" in k.start_problem(
        {"image": "nginx:1.27-alpine", "command": ["/bin/bash"]}, catalog)
    for ok in ({"image": "busybox:1.36", "command": ["sh", "-c", "wget -q -O- http://web"]},
               {"image": "nginx:1.27", "command": ["/bin/bash", "-c", "nginx -g 'daemon off;'"]},
               {"image": "nginx:1.27", "args": ["anything"]},                 # the image's own entrypoint
               {"image": "ghcr.io/someone/app:v1", "command": ["app"]},        # the catalog cannot say: it starts
               {"image": "busybox:1.36", "command": ["/scripts/run.sh"],       # a script from a mounted ConfigMap
                "volumeMounts": [{"name": "s", "mountPath": "/scripts"}]}):
        assert k.start_problem(ok, catalog) is None, ok


def test_init_containers_are_read_from_their_commands() -> None:
    docs_wait = "until nslookup myservice.$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace).svc." \
                "cluster.local; do echo waiting for myservice; sleep 2; done"
    assert k.init_run({"command": ["sh", "-c", docs_wait]}) == k.InitRun("waits", service="myservice")
    assert k.init_run({"command": ["sh", "-c", "echo migrating; sleep 3; exit 2"]}) == k.InitRun("runs", 3.0, 2)
    assert k.init_run({"command": ["sh", "-c", "echo hi"]}) == k.InitRun("runs", k.INIT_MIN_S, 0)
    assert k.init_run({"restartPolicy": "Always", "command": ["sh"]}).kind == "sidecar"


def test_a_pod_nothing_stops_is_passed_to_the_stages(catalog: stages.Catalog) -> None:
    ns = k.Namespace()
    assert k.pod_verdict(pod({}), ns, catalog) == k.PASSED
    assert k.pod_verdict(pod({"image": "nginx:1.99", "command": ["curl"]}), ns, catalog) == k.PASSED  # pull first
    assert k.pod_verdict(pod({}, init=[{"restartPolicy": "Always"}]), ns, catalog) == k.PASSED  # sidecars: Stages
    assert k.pod_verdict(pod({}, init=[{"command": ["sh", "-c", "true"]}]), ns, catalog) == k.HELD


def _walk(p: dict[str, Any]) -> k.Walk:
    return k.Walk(p["metadata"]["uid"], "ns", "p", seen=0.0)


def test_init_containers_run_in_order_then_the_pod_is_handed_over(catalog: stages.Catalog) -> None:
    kl, ns = k.Kubelet(catalog), k.Namespace()
    p = pod({}, init=[{"command": ["sh", "-c", "sleep 5"]},
                      {"command": ["sh", "-c", "until nslookup mydb; do :; done"]}])
    walk = _walk(p)
    step = kl.step(walk, p, ns, now=10.0)
    assert [s["state"] for s in step.status["initContainerStatuses"]][1] == {"waiting": {"reason": "PodInitializing"}}
    assert "running" in step.status["initContainerStatuses"][0]["state"] and step.again_in == 5.0
    assert step.status["phase"] == "Pending" and not step.release
    assert [e[1] for e in step.events] == ["Pulling", "Pulled", "Created", "Started"]
    step = kl.step(walk, p, ns, now=15.0)  # the first is done; the second waits for its Service
    assert step.status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert "running" in step.status["initContainerStatuses"][1]["state"] and step.again_in is None
    initialized = next(c for c in step.status["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False" and initialized["message"] == "containers with incomplete status: [init1]"
    ns.services.add("mydb")
    step = kl.step(walk, p, ns, now=16.0)
    assert step.release and step.status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_a_failing_init_container_backs_off_or_fails_the_pod(catalog: stages.Catalog) -> None:
    kl, ns = k.Kubelet(catalog), k.Namespace()
    p = pod({}, init=[{"command": ["sh", "-c", "exit 3"]}])
    walk = _walk(p)
    kl.step(walk, p, ns, now=0.0)
    step = kl.step(walk, p, ns, now=1.0)
    st = step.status["initContainerStatuses"][0]
    assert st["lastState"]["terminated"]["exitCode"] == 3 and st["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "back-off 10s restarting failed container=init0" in st["state"]["waiting"]["message"]
    assert step.again_in == 10.0 and step.status["phase"] == "Pending"
    never = pod({}, init=[{"command": ["sh", "-c", "exit 3"]}], restart="Never")
    walk = _walk(never)
    kl.step(walk, never, ns, now=0.0)
    step = kl.step(walk, never, ns, now=1.0)
    assert step.status["phase"] == "Failed"
    assert step.status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Error"


def test_a_config_error_clears_when_the_object_appears(catalog: stages.Catalog) -> None:
    kl, ns = k.Kubelet(catalog), k.Namespace()
    p = pod({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}]})
    walk = _walk(p)
    step = kl.step(walk, p, ns, now=0.0)
    assert step.status["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "CreateContainerConfigError", "message": 'configmap "cfg" not found'}
    assert ("Warning", "Failed", "c0", 'Error: configmap "cfg" not found') in step.events
    assert not kl.step(walk, p, ns, now=1.0).events  # looked at early (another object changed): no new event
    ns.configmaps["cfg"] = {"a"}
    assert kl.step(walk, p, ns, now=2.0).release


def test_a_start_error_restarts_with_back_off(catalog: stages.Catalog) -> None:
    kl, ns = k.Kubelet(catalog), k.Namespace()
    p = pod({"image": "busybox:1.36", "command": ["curl"]})
    walk = _walk(p)
    step = kl.step(walk, p, ns, now=0.0)
    st = step.status["containerStatuses"][0]
    assert st["lastState"]["terminated"]["exitCode"] == 128 and st["lastState"]["terminated"]["reason"] == "StartError"
    assert step.status["phase"] == "Running"  # the kubelet's getPhase: restarting under restartPolicy Always
    assert [e[1] for e in step.events] == ["Pulling", "Pulled", "Created", "Failed", "BackOff"]
    assert k.backoff(0) == 10 and k.backoff(5) == 300 and k.backoff_text(80) == "1m20s"


# --- what a program declares: the documentation's stress containers

def test_the_docs_stress_containers_declare_their_usage() -> None:
    from labkit.sim.declared import declared, oom_killed

    mem_ok = {"image": "polinux/stress", "command": ["stress"], "resources": {"limits": {"memory": "200Mi"}},
              "args": ["--vm", "1", "--vm-bytes", "150M", "--vm-hang", "1"]}
    mem_over = {**mem_ok, "resources": {"limits": {"memory": "100Mi"}},
                "args": ["--vm", "1", "--vm-bytes", "250M", "--vm-hang", "1"]}
    cpu = {"image": "vish/stress", "resources": {"limits": {"cpu": "1"}}, "args": ["-cpus", "2"]}
    assert declared(mem_ok).memory == 150 * 2**20 and declared(mem_ok).cpu is None
    assert not oom_killed(mem_ok) and oom_killed(mem_over)
    assert declared(cpu).cpu == 2 and not oom_killed(cpu)
    limited = {"image": "nginx:1.27", "resources": {"limits": {"memory": "64Mi"}}}
    assert oom_killed(limited, {"kwok.x-k8s.io/usage-memory": "128Mi"}) and not oom_killed(limited)
    assert declared({"image": "nginx:1.27"}).cpu is None
    assert declared({"image": "polinux/stress", "command": ["stress"], "args": ["--vm", "x"]}).memory is None


def test_the_workload_model_reports_declared_usage_capped_by_limits() -> None:
    from labkit.sim import workload as wm

    pod_ = {"metadata": {"namespace": "ns", "name": "cpu-demo", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "vish/stress", "args": ["-cpus", "2"],
                                     "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "500m"}}}]}}
    load = wm.declared_load(pod_, wm.server_from_pod(pod_))
    assert load is not None and load.cpu_m == 1000.0 and load.rps == 0.0  # about 1 CPU, as `kubectl top` shows
    plain = {"metadata": {"namespace": "ns", "name": "web", "uid": "v"},
             "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}
    assert wm.declared_load(plain, wm.server_from_pod(plain)) is None


def test_one_quantity_parser() -> None:
    from labkit.kube.quantity import format_quantity, optional_quantity, quantity

    assert quantity("500m") == 0.5 and quantity("1Gi") == 2**30 and quantity("120130n") == pytest.approx(0.00012013)
    assert quantity("1e3") == 1000 and quantity(2) == 2.0 and optional_quantity("") is None
    assert format_quantity("cpu", 0.25) == "250m" and format_quantity("memory", 64 * 2**20) == "64Mi"
    with pytest.raises(ValueError):
        quantity("12 apples")
