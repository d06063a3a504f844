"""e2e: lesson 11's insight engine on the live lab. Every scenario is injected (each in its own namespace; the
namespaced ones concurrently, the node-level ones after them, one at a time, since their fix drains a node); the
engine must rank the injected cause first, give evidence for every finding, and the top finding's fix command, run
in bash with the lab's kubectl, must fix it (the lab's own check says so, and the engine no longer names the cause).
The CLI prints the same diagnosis; where Prometheus runs it adds its evidence; lesson 11's exercises fail unsolved and
pass once fixed with kubectl.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import labkit as lk
from labkit.course import exercises
from labkit.lessons import troubleshooting as l11

pytestmark = pytest.mark.e2e

SCENARIOS = list(l11.all_scenarios())


@pytest.fixture(scope="module")
def drilled(lab: lk.Lab) -> Iterator[dict[str, l11.DrillResult]]:
    l11.clean_up(lab)
    results = l11.drill(lab, SCENARIOS, timeout=120, workers=len(SCENARIOS))  # the waits overlap
    yield {r.scenario: r for r in results}
    l11.clean_up(lab)


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_engine_names_the_injected_cause_first(drilled: dict[str, l11.DrillResult], name: str) -> None:
    result = drilled[name]
    assert result.before is not None, f"{name} was not set up: {result.error}"
    assert result.top == result.expected, f"{name}: expected {result.expected} first, got\n{result.before}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_finding_has_evidence_with_a_command(drilled: dict[str, l11.DrillResult], name: str) -> None:
    diagnosis = drilled[name].before
    assert diagnosis is not None and diagnosis.findings, drilled[name].error
    for finding in diagnosis.findings:
        assert finding.evidence, f"{finding.cause} on {finding.subject} has no evidence"
        assert all(e.source and e.line and e.command for e in finding.evidence), finding
        assert finding.fix.strip(), finding


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_suggested_fix_fixes_it_on_the_live_lab(drilled: dict[str, l11.DrillResult], name: str) -> None:
    result = drilled[name]
    assert result.fixed, f"{name}: the fix `{result.before.top.fix if result.before and result.before.top else '?'}` " \
                         f"did not fix it: {result.error}"
    assert result.after is not None and result.expected not in result.after.causes(), str(result.after)


def test_the_cli_prints_the_same_diagnosis(lab: lk.Lab) -> None:
    ns = l11.inject(lab, "service-selector")
    try:
        done = subprocess.run([sys.executable, "-m", "labkit", "diagnose", "-n", ns], capture_output=True, text=True,
                              timeout=120, check=False, env=os.environ)
        assert done.returncode == 1, done.stderr
        assert "1. ServiceSelectorMismatch (service/api" in done.stdout
        assert f"kubectl -n {ns} patch service/api --type=json" in done.stdout
    finally:
        lab.core.delete_namespace(ns, propagation_policy="Background")


@pytest.mark.parametrize("exercise", [e.id for e in l11.EXERCISES])
def test_each_exercise_fails_unsolved_and_passes_fixed(lab: lk.Lab, exercise: str) -> None:
    ex = next(e for e in l11.EXERCISES if e.id == exercise)
    name = {"11-fix-image": "image-pull", "11-fix-service": "service-selector", "11-fix-quota": "quota",
            "11-fix-crash": "crash-loop"}[exercise]
    ns = l11.inject(lab, name)
    try:
        attempt = exercises.Attempt(lab, l11.NAMESPACE)
        assert ex.check(attempt), "the check passed on the broken lab"
        ex.solve(attempt)  # type: ignore[misc]
        l11.wait_state(lab, ns, l11.scenario(name).fixed, timeout=90)
        assert ex.check(attempt) == []
    finally:
        lab.core.delete_namespace(ns, propagation_policy="Background")


def test_prometheus_adds_its_evidence_where_it_runs(lab: lk.Lab) -> None:
    lk.addons.require("prometheus", "gpu-exporter")
    ns = l11.inject(lab, "gpu-xid")
    try:
        lk.promql.wait_for_series('DCGM_FI_DEV_XID_ERRORS{Hostname="gpu-node-2"} > 0', timeout=60)  # scraped
        lines = [e.line for f in lk.diagnose(lab, ns).findings for e in f.evidence if e.source == "prometheus"]
        assert any('DCGM_FI_DEV_XID_ERRORS{Hostname="gpu-node-2"} > 0 = 79' in line for line in lines), lines
    finally:
        l11.clean_up(lab, ["gpu-xid"])
        lab.core.delete_namespace(ns, propagation_policy="Background")
