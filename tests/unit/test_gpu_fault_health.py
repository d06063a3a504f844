"""Lesson 12's fault path without a cluster: faults in the one state, dcgmi-style health, per-job statistics."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import asdict
from datetime import UTC, datetime

import pandas as pd
import pytest

from labkit.lessons.gpu_monitoring import diagnostics, fault_rules, fault_rules_yaml, health_checks, process_stats
from labkit.sim.gpu import FakeMachine, FakeNvml, inject_xid, node_metrics, reset_gpu, start_exporter
from labkit.sim.gpu.faults import replace_board
from labkit.sim.gpu.real_pynvml import pynvml as N


def _health(machine: FakeMachine, gpu: int = 0) -> dict[str, str]:
    frame = health_checks(asdict(machine.devices[gpu].faults))
    return dict(zip(frame["system"], frame["result"], strict=True))


def test_health_turns_from_pass_to_fail_and_only_a_new_board_clears_a_remap_failure() -> None:
    machine = FakeMachine(profile="H100-SXM", count=2, node="n", clock="manual")
    assert set(_health(machine).values()) == {"PASS"}
    inject_xid(machine, 0, 48)  # double-bit ECC: uncorrectable, a row remap pending
    assert _health(machine)["Memory"] == "FAIL"
    inject_xid(machine, 0, 79)
    assert _health(machine)["PCIe"] == "FAIL"
    reset_gpu(machine, 0)  # volatile ECC cleared, the pending remap applied, the GPU back
    assert set(_health(machine).values()) == {"PASS"}
    faults = machine.devices[0].faults
    assert (faults.aggregate_uncorrected, faults.remapped_rows_uncorrectable, faults.remap_pending) == (1, 1, False)
    inject_xid(machine, 0, 64)  # no spare row left
    reset_gpu(machine, 0)
    health = health_checks(asdict(machine.devices[0].faults)).set_index("system")
    assert health.loc["Memory", "result"] == "FAIL" and "RMA" in health.loc["Memory", "detail"]
    replace_board(machine, 0)
    assert set(_health(machine).values()) == {"PASS"} and machine.devices[0].faults.aggregate_uncorrected == 0
    assert set(_health(machine, 1).values()) == {"PASS"}  # the other GPU never noticed


def _diag(machine: FakeMachine, *, processes: int = 0, level: int = 3) -> dict[str, str]:
    frame = diagnostics(asdict(machine.devices[0].faults), processes, level=level)
    return {test: f"{result} {detail}".strip() for test, result, detail in zip(frame["test"], frame["result"],
                                                                            frame["detail"], strict=True)}


def test_the_active_diagnostic_needs_an_idle_gpu_and_names_what_a_reset_does_not_fix() -> None:
    machine = FakeMachine(profile="H100-SXM", count=1, node="n", clock="manual")
    assert set(_diag(machine).values()) == {"PASS"} and len(_diag(machine, level=1)) == 8
    busy = _diag(machine, processes=2)
    assert busy["Compute Processes"].startswith("FAIL 2 process(es)") and busy["PCIe"].startswith("SKIP")
    inject_xid(machine, 0, 79)
    lost = _diag(machine)
    assert lost["Denylist"] == "PASS" and lost["NVML Library"].startswith("FAIL GPU is lost")
    assert lost["GPU Memory"] == "SKIP an earlier test failed"
    reset_gpu(machine, 0)
    inject_xid(machine, 0, 48)  # double-bit ECC: a row remap pending
    ecc = _diag(machine)
    assert "pending" in ecc["Page Retirement/Row Remap"] and ecc["GPU Memory"].startswith("FAIL 1 uncorrectable")
    reset_gpu(machine, 0)
    assert set(_diag(machine).values()) == {"PASS"}  # the remap took effect at the reset
    inject_xid(machine, 0, 64)
    reset_gpu(machine, 0)
    assert "RMA" in _diag(machine)["Page Retirement/Row Remap"]
    with pytest.raises(Exception, match="run levels 1, 2 and 3"):
        diagnostics(asdict(machine.devices[0].faults), 0, level=4)


def test_nvml_and_exporter_report_the_injected_faults() -> None:
    machine = FakeMachine(profile="H100-SXM", count=1, node="n", clock="manual")
    inject_xid(machine, 0, 48)
    inject_xid(machine, 0, 64)
    api = FakeNvml(machine)
    api.nvmlInit()
    h = api.nvmlDeviceGetHandleByIndex(0)
    assert api.nvmlDeviceGetTotalEccErrors(h, N.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, N.NVML_VOLATILE_ECC) == 1
    assert tuple(api.nvmlDeviceGetRemappedRows(h)) == (0, 1, 1, 1)
    text = node_metrics(machine)
    values = {line.split("{")[0]: line.rsplit(" ", 1)[1] for line in text.splitlines() if not line.startswith("#")}
    assert values["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"] == "1" and values["DCGM_FI_DEV_ROW_REMAP_FAILURE"] == "1"
    assert values["DCGM_FI_DEV_XID_ERRORS"] == "64"
    inject_xid(machine, 0, 79)
    with pytest.raises(N.NVMLError_GpuIsLost):
        api.nvmlDeviceGetHandleByIndex(0)
    assert "DCGM_FI_DEV_XID_ERRORS" in node_metrics(machine) and " 79" in node_metrics(machine)
    api.nvmlShutdown()


def _post(url: str, body: dict) -> tuple[int, dict | str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 -- loopback
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_exporter_fault_endpoint_acts_on_its_own_state() -> None:
    machine = FakeMachine(profile="H100-SXM", count=2, node="gpu-node-1", clock="manual")
    with start_exporter(machine) as server:
        status, faults = _post(f"{server.base_url}/faults/gpu-node-1", {"gpu": 1, "xid": 79})
        assert status == 200 and faults["lost"] and machine.devices[1].faults.lost
        status, faults = _post(f"{server.base_url}/faults/gpu-node-1", {"gpu": 1, "reset": True})
        assert status == 200 and not faults["lost"] and faults["last_xid"] == 79  # the last XID stays
        status, _ = _post(f"{server.base_url}/faults/no-such-node", {"gpu": 0, "xid": 79})
        assert status == 404
        status, text = _post(f"{server.base_url}/faults/gpu-node-1", {"xid": 79})
        assert status == 400 and '"gpu": 0' in text


def test_process_stats_integrates_power_over_the_job() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    samples = pd.DataFrame({"time": [datetime.fromtimestamp(t0 + s, tz=UTC) for s in (0, 10, 20)],
                            "power_w": [100.0, 300.0, 300.0], "fb_used_mib": [1000, 5000, 3000],
                            "gpu_util": [50, 100, 90]})
    stats = process_stats(samples.sample(frac=1, random_state=0))  # order does not matter
    assert stats["energy_j"] == (100 + 300) / 2 * 10 + 300 * 10 == 5000 and stats["avg_power_w"] == 250
    assert (stats["duration_s"], stats["max_memory_mib"], stats["sm_util_max_pct"]) == (20, 5000, 100)
    assert stats["sm_util_avg_pct"] == 80.0 and stats["sm_util_min_pct"] == 50


def test_rule_file_names_dcgm_exporter_metrics() -> None:
    text = fault_rules_yaml()
    for name, (expr, _, _) in fault_rules().items():
        assert f"alert: {name}" in text and f"expr: {expr}" in text
    assert {"DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ROW_REMAP_FAILURE"} <= {
        expr.split()[0] for expr, _, _ in fault_rules().values()}


def test_promtool_accepts_the_rule_file(tmp_path, promtool: str) -> None:
    (tmp_path / "gpu-faults.yml").write_text(fault_rules_yaml())
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "gpu-faults.yml")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and "SUCCESS: 3 rules found" in result.stdout, result.stdout + result.stderr


def test_nvml_versions_and_a_function_the_driver_lacks() -> None:
    from labkit.lessons.gpu_monitoring import nvml_versions

    table = nvml_versions(FakeNvml(FakeMachine(profile="H100-SXM", count=1, node="n", clock="manual")),
                          ["nvmlDeviceGetRemappedRows", "nvmlDeviceGetSomethingFromTheFuture"])
    answers = table.set_index("query")["answer"]
    assert answers["nvmlSystemGetNVMLVersion"].endswith(answers["nvmlSystemGetDriverVersion"])
    assert answers["nvmlDeviceGetRemappedRows"] == "exported"
    assert answers["nvmlDeviceGetSomethingFromTheFuture"].endswith("(NVML_ERROR_FUNCTION_NOT_FOUND)")
