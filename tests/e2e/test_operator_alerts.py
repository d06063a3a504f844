"""e2e for lesson 07: a ServiceMonitor becomes config through the real prometheus-operator and is scraped by the
real Prometheus it configures; a PrometheusRule's alert reaches the webhook through the real Alertmanager; promtool
accepts what the lab ships and what the operator generates; the exercise's checker both ways.

Every wait has a deadline and says what it last saw; nothing sleeps a fixed time.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

import labkit as lk
from labkit import addons
from labkit.addons.alertmanager import amtool
from labkit.addons.prometheus_operated import promtool
from labkit.course import exercises
from labkit.course.exercises import Attempt
from labkit.errors import WaitTimeout
from labkit.lessons import dashboards as lesson
from labkit.paths import data_file

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def operator_stack(lab: lk.Lab) -> dict[str, str]:
    return lesson.start(lab)


@pytest.fixture(autouse=True)
def private_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(exercises, "progress_file", lambda: tmp_path / "progress.json")
    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)


def _shop(lab: lk.Lab, namespace: str) -> str:
    lk.apply(lab, lesson.SHOP_APP, namespace=namespace)
    lk.apply(lab, lesson.SERVICE_MONITOR, namespace=namespace)
    return f"serviceMonitor/{namespace}/shop/0"


def test_a_servicemonitor_becomes_config_and_its_pods_are_scraped(lab: lk.Lab, namespace: str) -> None:
    job = _shop(lab, namespace)
    lesson.wait_for_job(job, timeout=60)
    generated = lesson.job_of(lesson.generated_config(lab), job)
    assert generated["kubernetes_sd_configs"][0]["namespaces"]["names"] == [namespace]
    assert "kubeconfig_file" not in generated["kubernetes_sd_configs"][0]  # the operator writes in-cluster config
    loaded = lesson.job_of(lesson.loaded_config(), job)
    assert loaded["kubernetes_sd_configs"][0]["kubeconfig_file"]  # the reloader's out-of-cluster rewrite
    up = lesson.wait_targets_up(job, 2, timeout=60)
    pods = {p.metadata.name for p in lab.core.list_namespaced_pod(namespace, label_selector="app=shop").items}
    assert set(up.pod) == pods and set(up.namespace) == {namespace}
    assert all("/pods/" + namespace + "/" in url for url in up.scrape_url)
    # The instance label keeps the pod's address (IP:port), as in a cluster.
    ips = {p.status.pod_ip for p in lab.core.list_namespaced_pod(namespace, label_selector="app=shop").items}
    assert {i.rsplit(":", 1)[0] for i in up.instance} == ips
    series = lesson.wait_query(f'rate(http_requests_total{{namespace="{namespace}",service="shop"}}[10s]) > 0',
                               lambda t: len(t) == 2, timeout=60)
    assert set(series.pod) == pods and set(series.job) == {"shop"}


def test_an_alert_reaches_the_webhook_grouped(lab: lk.Lab, namespace: str) -> None:
    job = _shop(lab, namespace)
    lesson.wait_targets_up(job, 2, timeout=90)  # both pods scraped before the rule's clock starts
    after = lesson.last_seq()
    rule = yaml.safe_load(lesson.SHOP_RULES)
    lk.apply(lab, rule, namespace=namespace)
    pods = {p.metadata.name for p in lab.core.list_namespaced_pod(namespace, label_selector="app=shop").items}
    assert len(pods) == 2
    # One notification carries both pods' alerts: grouped by alertname and namespace (a first one may carry only
    # the alert that fired first, when the two fire more than group_wait apart).
    try:
        got = lesson.wait_notification(namespace, "ShopPodBusy", after=after, pods=pods, timeout=150)  # loaded CI
    except WaitTimeout as timeout:  # once in CI, with nothing else to go on: say where the alerts stood too
        timeout.last_seen = {"notifications": timeout.last_seen,
                             "prometheus": lesson.alerts("ShopPodBusy").to_dict("records"),
                             "targets": lesson.targets(job).to_dict("records")}
        raise
    busy = got[(got.status == "firing") & got.group.str.contains("alertname=ShopPodBusy")]
    assert pods in [set(listed.split(",")) for listed in busy.pods], busy
    assert busy.group.nunique() == 1, busy  # one group: alertname and namespace, not one per pod


def test_promtool_accepts_what_the_lab_ships_and_what_the_operator_generates(lab: lk.Lab, namespace: str,
                                                                             tmp_path: Path) -> None:
    job = _shop(lab, namespace)
    lk.apply(lab, yaml.safe_load(lesson.SHOP_RULES), namespace=namespace)
    lesson.wait_for_job(job, timeout=60)
    folder = Path(addons.addons_dir()) / "prometheus-operated"
    proc = subprocess.run([promtool(), "check", "config", str(folder / "prometheus.yaml")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in (lesson.SHOP_RULES, lesson.SOLUTION_RULE):
        assert "SUCCESS" in lesson.promtool_check_rules(yaml.safe_load(text))
    generated = tmp_path / "generated.yaml"  # the operator's own output, before labkit's rewrite
    generated.write_text(lesson.generated_config(lab))
    proc = subprocess.run([promtool(), "check", "config", "--syntax-only", str(generated)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    am = subprocess.run([amtool(), "check-config", str(Path(addons.addons_dir()) / "alertmanager" /
                                                         "alertmanager.yml")], capture_output=True, text=True)
    assert am.returncode == 0, am.stdout + am.stderr
    assert data_file("prometheus-operator/prometheus.yaml").exists()


def test_unavailable_alert_exercise_both_ways(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, lesson.APPS, namespace=namespace)
    attempt = Attempt(lab, namespace)
    assert lesson.check_unavailable_alert(attempt)  # nothing written yet: NOT YET
    lesson.solve_unavailable_alert(attempt)
    problems = lesson.wait_exercise(attempt, timeout=90)
    assert problems == [], problems
    states = lesson.alerts("DeploymentReplicasUnavailable")
    mine = [s for labels, s in zip(states.labels, states.state, strict=True) if labels.get("namespace") == namespace]
    assert set(mine) <= {"pending", "firing"} and mine


def test_unavailable_alert_exercise_names_what_is_wrong(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, lesson.APPS, namespace=namespace)
    attempt = Attempt(lab, namespace)
    slow = yaml.safe_load(lesson.SOLUTION_RULE)
    slow["spec"]["groups"][0]["rules"][0]["for"] = "5m"
    lk.apply(lab, slow, namespace=namespace)
    assert any("for: 5m" in p for p in lesson.check_unavailable_alert(attempt))
    loose = yaml.safe_load(lesson.SOLUTION_RULE)
    loose["spec"]["groups"][0]["rules"][0]["expr"] = "kube_deployment_status_replicas_unavailable >= 0"
    lk.apply(lab, loose, namespace=namespace)  # fires for every Deployment, healthy ones too
    deadline = time.monotonic() + 90
    problems = lesson.check_unavailable_alert(attempt)
    while not any("also active" in p for p in problems) and time.monotonic() < deadline:
        time.sleep(1)  # the loose rule needs an evaluation (every 2 s) after the reload
        problems = lesson.check_unavailable_alert(attempt)
    assert any(f"{namespace}/shop" in p for p in problems), problems


def test_dashboard_panel_exercise_both_ways(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, lesson.APPS, namespace=namespace)
    attempt = Attempt(lab, namespace)
    assert lesson.check_dashboard_panel(attempt)  # no answer given
    wrong = lk.dashboards.add_panel("workloads", {**lesson.PANEL, "title": "Something else"})
    assert any("no panel titled" in p for p in lesson.check_dashboard_panel(Attempt(lab, namespace, wrong)))
    right = lesson.solve_dashboard_panel(attempt)
    deadline = time.monotonic() + 90  # kube-state-metrics -> the lab's Prometheus: a few scrapes
    problems = lesson.check_dashboard_panel(Attempt(lab, namespace, right))
    while problems and time.monotonic() < deadline:
        time.sleep(1)  # the next scrape of kube-state-metrics
        problems = lesson.check_dashboard_panel(Attempt(lab, namespace, right))
    assert problems == [], problems


def test_the_operated_prometheus_has_its_web_ui(operator_stack: dict[str, str]) -> None:
    """Prometheus' own UI (web/ui/mantine-ui of the same module, built with npm): its page and the script it loads."""
    import re
    import urllib.request

    base = (addons.url("prometheus-operated") or "").removesuffix("/-/ready").rstrip("/")
    with urllib.request.urlopen(f"{base}/query", timeout=30) as resp:  # noqa: S310 - the lab's loopback Prometheus
        page = resp.read().decode()
    assert '<div id="root"></div>' in page, page[:300]
    script = re.search(r'src="\.?/?(assets/[^"]+\.js)"', page)
    assert script, page[:600]
    with urllib.request.urlopen(f"{base}/{script.group(1)}", timeout=30) as resp:  # noqa: S310
        assert resp.status == 200 and len(resp.read()) > 100_000  # the app itself, not an error page
