"""The simulated nodes' kernel logs (labkit/sim/node_logs.py) read as a real kern.log and match upstream NPD's rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from labkit.paths import data_file
from labkit.sim import node_logs

# Upstream node-problem-detector v1.36.0's patterns (config/kernel-monitor-filelog.json, readonly-monitor.json),
# quoted here so this test needs no build; the e2e tests run the real NPD against the same lines.
UPSTREAM = {
    "oom-kill": r"Killed process \d+ (.+) total-vm:\d+kB, anon-rss:\d+kB, file-rss:\d+kB.*",
    "task-hung": r"task \S+:\w+ blocked for more than \w+ seconds\.",
    "kernel-deadlock": r"task docker:\w+ blocked for more than \w+ seconds\.",
    "readonly-filesystem": r"Remounting filesystem read-only",
    "kernel-oops": r"BUG: unable to handle kernel NULL pointer dereference at .*",
}
# kernel-monitor-filelog.json's pluginConfig: how NPD cuts a kern.log line into timestamp and message.
TIMESTAMP, MESSAGE = r"^.{15}", r"kernel: \[.*\] (.*)"


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("problem", sorted(UPSTREAM))
def test_each_problem_writes_lines_that_upstreams_rule_matches_at_the_end(problem: str) -> None:
    lines = node_logs.inject("cpu-node-1", problem)
    assert node_logs.kernel_log("cpu-node-1").read_text().splitlines() == lines
    messages = [re.search(MESSAGE, line).group(1) for line in lines]  # type: ignore[union-attr]
    # NPD joins its buffered messages with newlines and anchors the rule at the end (`\z`).
    assert re.search(UPSTREAM[problem] + r"\Z", "\n".join(messages))
    assert all(re.match(TIMESTAMP, line) and " cpu-node-1 kernel: [" in line for line in lines)


def test_catalog_covers_the_upstream_rules_it_claims() -> None:
    catalog = yaml.safe_load(data_file("node-problems.yaml").read_text())["problems"]
    assert set(catalog) == set(UPSTREAM)


def test_unknown_problem_names_the_known_ones() -> None:
    with pytest.raises(Exception, match="pick from: oom-kill"):
        node_logs.inject("cpu-node-1", "oom")


def test_reboot_rotates_the_log_to_a_fresh_file() -> None:
    node_logs.inject("gpu-node-2", "kernel-deadlock")
    before = node_logs.kernel_log("gpu-node-2").stat().st_ino
    fresh = node_logs.rotate_kernel_log("gpu-node-2")
    assert fresh.read_text() == "" and fresh.stat().st_ino != before
    assert "task docker" in fresh.with_name("kern.log.1").read_text()


def test_clock_offset_reads_as_chronyc_tracking() -> None:
    path = node_logs.set_clock_offset("cpu-node-2", 0.9)
    assert "System time     : 0.900000000 seconds slow of NTP time" in path.read_text()


def test_node_heartbeat_stage_keeps_every_condition_it_finds() -> None:
    # NPD's conditions live on the same Node status KWOK's heartbeat rewrites: the Stage must copy them all.
    stages = {d["metadata"]["name"]: d for d in yaml.safe_load_all(data_file("stages/node.yaml").read_text()) if d}
    template = stages["labkit-node-heartbeat"]["spec"]["next"]["statusTemplate"]
    assert "range .status.conditions" in template and "lastTransitionTime: {{ .lastTransitionTime" in template
