"""e2e: simulated pods' logs through plain kubectl (current, --previous after a crash, -c, -l, --since, --tail, -f),
every container's log shipped by one vlagent per node into VictoriaLogs with namespace/pod/container stream fields,
request lines agreeing with ``http_requests_total`` pod by pod, one request id across two services, and lesson 09's
exercise failing unsolved and passing solved.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

import labkit as lk
from labkit.cluster.binaries import binary_paths
from labkit.course import exercises
from labkit.lessons import cluster_logging as l09
from labkit.paths import kubeconfig_path

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shop(lab: lk.Lab) -> Iterator[str]:
    l09.start_logging()
    name = lk.lesson_namespace(lab, f"t-logs-{uuid.uuid4().hex[:6]}")
    l09.deploy_shop(lab, name)
    l09.wait_running(lab, name, timeout=90)
    yield name
    lab.core.delete_namespace(name, propagation_policy="Background")


def kubectl(*args: str, timeout: float = 20) -> str:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig_path()))
    done = subprocess.run([str(binary_paths()["kubectl"]), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def _pods(lab: lk.Lab, namespace: str, app: str) -> list[str]:
    return sorted(p.metadata.name for p in lab.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def test_kubectl_logs_shows_the_crash_in_the_previous_container(lab: lk.Lab, shop: str) -> None:
    previous = kubectl("logs", "-n", shop, "worker", "--previous")
    assert previous.splitlines() == ["connecting to postgres://db:5432", "FATAL: database connection refused"]
    # The current container prints the same lines as it runs (its first within a tick of the model, after its start).
    current = kubectl("logs", "-n", shop, "worker", "-c", "worker").splitlines()
    assert current == previous.splitlines()[:len(current)]
    status = lab.core.read_namespaced_pod("worker", shop).status.container_statuses[0]
    assert status.restart_count >= 1 and status.last_state.terminated.exit_code == 1


def test_kubectl_logs_selects_by_label_and_time(lab: lk.Lab, shop: str) -> None:
    by_label = kubectl("logs", "-n", shop, "-l", "app=orders", "--prefix", "--tail=2")
    prefixes = {line.split("]")[0].split("/")[1] for line in by_label.splitlines()}
    assert prefixes == set(_pods(lab, shop, "orders"))
    frontend = _pods(lab, shop, "frontend")[0]
    lines = [json.loads(line) for line in kubectl("logs", "-n", shop, frontend, "--since=5s").splitlines()]
    assert lines and all(r["service"] == "frontend" and r["level"] in ("info", "error") and r["request_id"]
                         for r in lines)
    everything = kubectl("logs", "-n", shop, frontend).splitlines()
    assert len(everything) > len(lines)


def test_kubectl_logs_follow_streams_new_lines(shop: str) -> None:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig_path()))
    proc = subprocess.Popen([str(binary_paths()["kubectl"]), "logs", "-f", "-n", shop, "deploy/frontend",
                             "--tail=0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        started = time.monotonic()
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the load generator's next request; --tail=0: nothing old
        assert json.loads(line)["msg"] == "request served" and time.monotonic() - started < 15
    finally:
        proc.kill()
        proc.wait()


def test_every_container_reaches_the_store_with_its_stream_fields(lab: lk.Lab, shop: str) -> None:
    pods = {p.metadata.name: p for p in lab.core.list_namespaced_pod(shop).items}
    where = l09.scope(lab, shop)
    streams = l09.wait_shipped(where, pods=len(pods), timeout=60)
    assert set(streams[l09.POD]) == set(pods)
    for _, row in streams.iterrows():
        assert row[l09.CONTAINER] == pods[row[l09.POD]].spec.containers[0].name
    record = l09.query(f"{where} {l09.POD}:=worker", limit=1).iloc[0]
    assert record["_stream"] == (f'{{{l09.CONTAINER}="worker",{l09.POD}="worker",{l09.NS}="{shop}"}}')
    assert record["kubernetes.pod_node_name"] == pods["worker"].spec.node_name


def test_a_request_id_is_logged_by_both_services(lab: lk.Lab, shop: str) -> None:
    where = l09.scope(lab, shop)
    request = l09.forwarded_request(where)
    path = l09.follow_request(where, request)
    assert set(path.service) == {"frontend", "orders"}
    assert path.set_index("service").pod["frontend"] in _pods(lab, shop, "frontend")


def test_the_exercises_fail_unsolved_and_pass_with_the_pod_and_the_query(lab: lk.Lab, shop: str) -> None:
    find, count = (lk.lessons.catalogue().get(i) for i in (l09.EXERCISE_ID, l09.QUERY_EXERCISE_ID))
    where = l09.scope(lab, shop)
    # the walkthrough's fault is not the exercise's: its pod is no answer, and the exercise has not started
    l09.inject_error(lab, shop, rate=0.5)
    assert l09.wait_errors(where, timeout=60) > 0
    walkthrough = l09.errors_by_pod(where).pod.iloc[0]
    assert find.check(exercises.Attempt(lab, shop, answer=walkthrough))

    l09.start_exercise(lab, shop, rate=0.5)   # waits until the store holds the exercise's error
    annotated = {p: (lab.core.read_namespaced_pod(p, shop).metadata.annotations or {}).get(
        l09.ERROR_MESSAGE_ANNOTATION) for p in _pods(lab, shop, "frontend") + _pods(lab, shop, "orders")}
    culprits = [p for p, message in annotated.items() if message == l09.EXERCISE_ERROR]
    assert len(culprits) == 1 and l09.INJECTED_ERROR not in annotated.values(), annotated
    wrong = next(p for p in annotated if p != culprits[0])
    assert find.check(exercises.Attempt(lab, shop, answer=None))
    assert find.check(exercises.Attempt(lab, shop, answer=wrong))
    assert find.check(exercises.Attempt(lab, shop, answer=culprits[0])) == []

    # the query: a count of every line, or of errors in no pod, is not the answer; the per-pod error count is
    ns_field, pod_field = l09.NS, l09.POD
    assert count.check(exercises.Attempt(lab, shop, answer=None))
    assert count.check(exercises.Attempt(lab, shop, answer=f"{ns_field}:{shop} | stats by ({pod_field}) count() n"))
    assert count.check(exercises.Attempt(lab, shop, answer=f"{ns_field}:{shop} level:error | stats count() n"))
    assert count.check(exercises.Attempt(lab, shop, answer="level:error | stats by (")), "a syntax error is reported"
    assert count.check(exercises.Attempt(
        lab, shop, answer=f"{ns_field}:{shop} level:error | stats by ({pod_field}) count() errors")) == []


def test_request_lines_agree_with_http_requests_total(lab: lk.Lab, shop: str) -> None:
    l09.stop_load(lab, shop)
    table = l09.logs_vs_metrics(lab, shop, timeout=30)
    assert len(table) == 5 and (table.http_requests_total > 0).all()
    assert (table.http_requests_total == table["request lines in the store"]).all()
    # errors: the model's http_request_errors_total equals the error lines stored, pod by pod
    url = (lk.addons.url("workload-model") or "").removesuffix("/state")
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    counted = {line.split('pod="')[1].split('"')[0]: int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("http_request_errors_total{") and f'namespace="{shop}"' in line}
    stored = l09.errors_by_pod(l09.scope(lab, shop)).groupby("pod").errors.sum().to_dict()
    assert {p: n for p, n in counted.items() if n} == stored and stored
