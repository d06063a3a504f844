"""Every rule the lab ships, as production checks rules: `promtool check rules`, then `promtool test rules` with
input series and the alerts or samples they must give (labkit/data/*/tests/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from labkit.paths import data_file

LAB_RULES = data_file("prometheus/rules")
OPERATOR_RULES = data_file("prometheus-operator/rules")


def _promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


@pytest.fixture
def operator_specs(tmp_path: Path) -> Path:
    """Each PrometheusRule's spec as the rule file prometheus-operator writes for it (NAME.rules.yaml), beside the
    operator's rule tests."""
    for path in sorted(OPERATOR_RULES.glob("*.yaml")):
        rule = yaml.safe_load(path.read_text())
        assert rule["kind"] == "PrometheusRule" and rule["metadata"]["name"] == path.stem
        (tmp_path / f"{path.stem}.rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    for test in data_file("prometheus-operator/tests").glob("*.yaml"):
        shutil.copy(test, tmp_path / test.name)
    return tmp_path


def test_every_rule_file_passes_promtool_check_rules(promtool: str, operator_specs: Path) -> None:
    files = [*sorted(LAB_RULES.glob("*.yaml")), *sorted(operator_specs.glob("*.rules.yaml"))]
    assert len(files) >= 5
    result = _promtool(promtool, "check", "rules", *map(str, files), cwd=operator_specs)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", sorted(p.name for p in data_file("prometheus/tests").glob("*.yaml")))
def test_the_lab_prometheus_rules_pass_their_unit_tests(promtool: str, test_file: str) -> None:
    folder = data_file("prometheus/tests")
    result = _promtool(promtool, "test", "rules", test_file, cwd=folder)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_lesson_07s_prometheusrules_pass_their_unit_tests(promtool: str, operator_specs: Path) -> None:
    for test in sorted(operator_specs.glob("*.yaml")):
        if test.name.endswith(".rules.yaml"):
            continue
        result = _promtool(promtool, "test", "rules", test.name, cwd=operator_specs)
        assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    """An alert nobody tested is one nobody knows fires: each shipped alert is named in a promtool test."""
    alerts = set()
    for path in [*LAB_RULES.glob("*.yaml"), *OPERATOR_RULES.glob("*.yaml")]:
        doc = yaml.safe_load(path.read_text())
        groups = doc.get("spec", doc)["groups"]
        alerts |= {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    tested = set()
    for path in [*data_file("prometheus/tests").glob("*.yaml"), *data_file("prometheus-operator/tests").glob("*.yaml")]:
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {t["alertname"] for t in case.get("alert_rule_test") or []}
    assert alerts and alerts <= tested, sorted(alerts - tested)
