"""DCGM's health watches and active diagnostic, modelled from one GPU's fault record: the verdicts behind
``dcgmi health -c`` and ``dcgmi diag -r LEVEL``.

A model of what DCGM would conclude from the simulated GPU state (``/nvml/<node>`` ``devices[i].faults``), not
DCGM. Plain records here; :mod:`labkit.sim.gpu.dcgmi` prints them as dcgmi does, lesson 12 tabulates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from labkit.errors import LabkitError

HEALTH_SYSTEMS = ("PCIe", "Memory", "SM")
PCIE_REPLAY_WARN = 100

# `dcgmi diag -r LEVEL`: the active diagnostic's tests per run level (each level adds to the one before), and about
# how long the level takes on real hardware (DCGM's documentation: quick, medium, long).
_DEPLOYMENT = ("Denylist", "NVML Library", "Permissions and OS Blocks", "Persistence Mode", "Environment Variables",
               "Page Retirement/Row Remap", "Compute Processes", "Inforom")
DIAG_TESTS = {1: tuple(("Deployment", t) for t in _DEPLOYMENT),
              2: (("Integration", "PCIe"), ("Hardware", "GPU Memory")),
              3: (("Stress", "Targeted Stress"), ("Stress", "Targeted Power"), ("Stress", "Memory Bandwidth"),
                  ("Hardware", "Diagnostic"))}
DIAG_DURATION = {1: "seconds", 2: "about 2 minutes", 3: "about 30 minutes"}

Health = Literal["PASS", "WARN", "FAIL"]
Verdict = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class HealthCheck:
    """One health-watched system of one GPU: PASS, WARN or FAIL, and what to do."""

    system: str
    result: Health
    detail: str = ""


@dataclass(frozen=True)
class DiagResult:
    """One test of the active diagnostic on one GPU: PASS, FAIL or SKIP, and why."""

    level: int
    category: str
    test: str
    result: Verdict
    detail: str = ""


def _health_of(system: str, faults: Mapping[str, Any]) -> tuple[Health, str]:
    if system == "PCIe":
        if faults["lost"]:
            return "FAIL", "GPU has fallen off the bus (XID 79): drain, then reset the GPU or power-cycle the node"
        if faults["pcie_replays"] > PCIE_REPLAY_WARN:
            return "WARN", f"{faults['pcie_replays']} PCIe replays: reseat the board or check the riser"
    if system == "Memory":
        if faults["remap_failure"]:
            return "FAIL", "row remapping failed (no spare rows): the board needs RMA; a reset does not fix it"
        if faults["volatile_uncorrected"]:
            return "FAIL", f"{faults['volatile_uncorrected']} uncorrectable (double-bit) ECC errors: drain, reset"
        if faults["remap_pending"]:
            return "WARN", "a row remap is pending: it takes effect at the next GPU reset"
    if system == "SM" and faults["last_xid"] in (13, 43) and not faults["lost"]:
        return "WARN", f"XID {faults['last_xid']}: an application fault; look at the job before the GPU"
    return "PASS", ""


def health_checks(faults: Mapping[str, Any]) -> list[HealthCheck]:
    """``dcgmi health -c`` for one GPU from its fault record: per system PASS, WARN or FAIL with what to do.

    A model of DCGM's background health watches (every system watched, as after ``dcgmi health -s a``)."""
    return [HealthCheck(system, *_health_of(system, faults)) for system in HEALTH_SYSTEMS]


def diagnostics(faults: Mapping[str, Any], processes: int, *, level: int = 1) -> list[DiagResult]:
    """``dcgmi diag -r LEVEL`` for one GPU from its fault record and how many processes use it.

    A model of DCGM's active diagnostic (which takes the GPU for itself): a lost GPU fails the deployment checks
    and skips the rest; a GPU in use fails "Compute Processes" and is not stressed."""
    if level not in DIAG_TESTS:
        raise LabkitError(f"dcgmi diag has run levels 1, 2 and 3, not {level!r}", fix="dcgmi diag -r 2")
    results = []
    blocked = ""
    for lvl in range(1, level + 1):
        for category, test in DIAG_TESTS[lvl]:
            result: Verdict = "PASS"
            why = ""
            if blocked:
                result, why = "SKIP", blocked
            elif test == "NVML Library" and faults["lost"]:
                result, why = "FAIL", "GPU is lost (XID 79: fallen off the bus): reset it or power-cycle the node"
                blocked = "an earlier test failed"
            elif test == "Page Retirement/Row Remap" and faults["remap_failure"]:
                result, why = "FAIL", "row remapping failed: no spare rows left (RMA)"
            elif test == "Page Retirement/Row Remap" and faults["remap_pending"]:
                result, why = "FAIL", "a row remap is pending: reset the GPU, then run the diagnostic again"
            elif test == "Compute Processes" and processes:
                result, why = "FAIL", f"{processes} process(es) use the GPU: drain the node first"
                blocked = "the GPU is in use"
            elif test == "PCIe" and faults["pcie_replays"] > PCIE_REPLAY_WARN:
                result, why = "FAIL", f"{faults['pcie_replays']} PCIe replays: reseat the board or check the riser"
            elif test == "GPU Memory" and faults["volatile_uncorrected"]:
                result, why = "FAIL", f"{faults['volatile_uncorrected']} uncorrectable ECC errors in the memory test"
            results.append(DiagResult(lvl, category, test, result, why))
    return results
