"""``dcgmi``: labkit's stand-in for NVIDIA's DCGM command line, reading the simulated GPUs.

Real dcgmi asks the DCGM host engine, which reads the GPUs through NVML. Here the verdicts come from
:mod:`labkit.sim.gpu.dcgm`'s model of DCGM applied to the GPU state the lab's exporter owns (``/nvml/<node>`` for the
node in ``LABKIT_FAKE_GPU_NODE``, as ``lk.lessons`` ``gpu_health`` reads it), or a private simulated node with
``LABKIT_FAKE_GPU_SOURCE=local``. Output follows dcgmi 3.x's box tables.

``python -m labkit.sim.gpu.dcgmi ARGS`` (or ``dcgmi ARGS`` on the gpu-env PATH) supports::

    dcgmi discovery -l
    dcgmi health -c [-g 0]            every system watched, as after `dcgmi health -s a`; group 0 = all GPUs
    dcgmi diag -r 1|2|3 [-i GPU[,GPU]] [-g 0]

Anything else exits 2 and names these. ``health`` and ``diag`` exit 1 when a GPU fails, so scripts can branch.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from dataclasses import asdict

from labkit.errors import LabkitError
from labkit.sim.gpu.cli_options import DeadlineExceeded, UsageError, deadline, parse_options
from labkit.sim.gpu.dcgm import DIAG_TESTS, DiagResult, diagnostics, health_checks
from labkit.sim.gpu.machine import FakeMachine

USAGE = textwrap.dedent("""\
    Supported by labkit's dcgmi (a stand-in reading the simulated GPUs):
      dcgmi discovery -l
      dcgmi health -c [-g 0]            (all systems watched; group 0 is every GPU)
      dcgmi diag -r 1|2|3 [-i GPU[,GPU...]] [-g 0]""")
EXIT_UNSUPPORTED = 2
EXIT_UNHEALTHY = 1
ALL_GPUS_GROUP = "0"  # DCGM's default group, every GPU
HEALTH_WORDS = {"PASS": "Healthy", "WARN": "Warning", "FAIL": "Failure"}
DIAG_WORDS = {"PASS": "Pass", "FAIL": "Fail", "SKIP": "Skip"}
RUN_LEVEL_NAMES = {"quick": 1, "short": 1, "medium": 2, "long": 3}
CATEGORY_ORDER = ("Deployment", "Integration", "Hardware", "Stress")


def node_machine() -> FakeMachine:
    """The GPUs of ``LABKIT_FAKE_GPU_NODE``: a mirror of the exporter's state, or a private node."""
    from labkit.sim.gpu.nvml import nvml, nvml_mode

    if nvml_mode().mode == "real":
        raise UsageError("this host has NVIDIA GPUs and a driver: run NVIDIA's dcgmi (this stand-in models DCGM "
                         "on simulated GPUs only)")
    return nvml().machine  # type: ignore[union-attr]  # simulated mode: a FakeNvml over the node's machine


def _box(widths: Sequence[int], fill: str = "-", edge: str = "+") -> str:
    return edge + "+".join(fill * w for w in widths) + edge


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "|" + "|".join(f" {c:<{w - 2}} " for c, w in zip(cells, widths, strict=True)) + "|"


def discovery(machine: FakeMachine) -> list[str]:
    """``dcgmi discovery -l``: each GPU's name, PCI bus id and UUID."""
    widths = (8, 70)
    count = len(machine.devices)
    lines = [f"{count} GPU{'s' if count != 1 else ''} found.", _box(widths), _row(("GPU ID", "Device Information"),
                                                                                 widths), _box(widths)]
    for device in machine.devices:
        lines += [_row((str(device.index), f"Name: {device.profile.name}"), widths),
                  _row(("", f"PCI Bus ID: {device.pci_bus_id}"), widths),
                  _row(("", f"Device UUID: {device.uuid}"), widths), _box(widths)]
    return [*lines, "0 NvSwitches found.", "+-----------+", "| Switch ID |", "+-----------+", "+-----------+"]


def health(machine: FakeMachine) -> tuple[list[str], int]:
    """``dcgmi health -c``: overall health, then each unhealthy GPU and system with DCGM's message."""
    widths = (27, 58)
    rank = {"PASS": 0, "WARN": 1, "FAIL": 2}
    tree: list[str] = []
    overall = "PASS"
    for device in machine.devices:
        incidents = [c for c in health_checks(asdict(device.faults)) if c.result != "PASS"]
        if not incidents:
            continue
        worst = max((c.result for c in incidents), key=rank.__getitem__)
        overall = max(overall, worst, key=rank.__getitem__)
        tree.append(_row((f"-> {device.index}", HEALTH_WORDS[worst]), widths))
        for check in incidents:
            tree.append(_row((f"      -> {check.system} system", HEALTH_WORDS[check.result]), widths))
            tree += [_row(("", part), widths) for part in textwrap.wrap(check.detail, widths[1] - 2)]
    lines = [_box(widths), f"| {'Health Monitor Report':<{sum(widths) - 1}} |", _box(widths, "="),
             _row(("Overall Health", HEALTH_WORDS[overall]), widths)]
    if tree:
        lines += [_row(("GPU", ""), widths), *tree]
    return [*lines, _box(widths)], EXIT_UNHEALTHY if overall == "FAIL" else 0


def diag(machine: FakeMachine, level: int, gpus: Sequence[int]) -> tuple[list[str], int]:
    """``dcgmi diag -r LEVEL``: each test's verdict over the chosen GPUs, grouped as dcgmi groups them."""
    widths = (27, 48)
    per_gpu = {gpu: diagnostics(asdict(machine.devices[gpu].faults), len(machine.devices[gpu].processes or []),
                                level=level) for gpu in gpus}
    # The PCI device id without its vendor half (0x233010DE -> 2330), as dcgmi lists it.
    device_ids = ",".join(f"{machine.devices[g].profile.pci_device_id >> 16:04x}" for g in gpus)
    lines = ["Successfully ran diagnostic for group.", _box(widths), _row(("Diagnostic", "Result"), widths),
             _box(widths, "="), _section("Metadata", first=True),
             _row(("Driver Version Detected", machine.driver_version), widths),
             _row(("GPU Device IDs Detected", device_ids), widths)]
    failed = False
    told: set[tuple[int, str]] = set()
    tests = [(category, test) for lvl in range(1, level + 1) for category, test in DIAG_TESTS[lvl]]
    for category in CATEGORY_ORDER:
        names = [test for cat, test in tests if cat == category]
        if not names:
            continue
        lines.append(_section(category, first=category == "Deployment"))
        for test in names:
            results = {gpu: next(r for r in per_gpu[gpu] if r.test == test) for gpu in gpus}
            failed |= any(r.result == "FAIL" for r in results.values())
            lines += _test_rows(test, results, per_gpu_verdict=category != "Deployment", told=told)
    return [*lines, _box(widths)], EXIT_UNHEALTHY if failed else 0


def _section(name: str, *, first: bool) -> str:
    # dcgmi opens the metadata and deployment groups with "|" and the plugin groups with "+".
    edge = "|" if first else "+"
    return f"{edge}{f'-----  {name}  ':-<27}+{'-' * 48}{edge}"


def _test_rows(test: str, results: dict[int, DiagResult], *, per_gpu_verdict: bool,
               told: set[tuple[int, str]]) -> list[str]:
    """One test's row (``Pass``, or ``Fail - GPU: 1`` for a plugin test) and its Error/Info rows; a skip's reason
    is told once per GPU (``told`` remembers), not under every test it skips."""
    widths = (27, 48)
    verdicts = {r.result for r in results.values()}
    worst = "FAIL" if "FAIL" in verdicts else ("SKIP" if verdicts == {"SKIP"} else "PASS")
    word = DIAG_WORDS[worst]
    if per_gpu_verdict:  # plugin tests say which GPUs: "Pass - All", "Fail - GPU: 0"
        named = [str(gpu) for gpu, r in results.items() if r.result == worst]
        word += " - All" if len(verdicts) == 1 and worst != "FAIL" else f" - GPU: {', '.join(named)}"
    rows = [_row((test, word), widths)]
    for gpu, r in results.items():
        if not r.detail or r.result == "PASS" or (gpu, r.detail) in told:
            continue
        if r.result == "SKIP":
            told.add((gpu, r.detail))
        parts = textwrap.wrap(f"GPU {gpu}: {r.detail}", widths[1] - 3)
        label = "Error" if r.result == "FAIL" else "Info"
        rows += [_row((label if i == 0 else "", part), widths) for i, part in enumerate(parts)]
    return rows


def _check_group(options: dict[str, str]) -> None:
    if options.get("group", ALL_GPUS_GROUP) != ALL_GPUS_GROUP:
        raise UsageError(f"group {options['group']}: the simulated DCGM has one group, 0 (every GPU of the node)")


def run(argv: Sequence[str]) -> tuple[list[str], int]:
    """What ``dcgmi ARGV`` prints and its exit status."""
    args = list(argv)
    command = args.pop(0) if args else ""
    if command in ("-h", "--help", ""):
        return USAGE.splitlines(), 0 if command else EXIT_UNSUPPORTED
    if command == "discovery":
        if parse_options(args, {}, {"-l": "list", "--list": "list"}) != {"list": ""}:
            raise UsageError("dcgmi discovery needs -l")
        return discovery(node_machine()), 0
    if command == "health":
        options = parse_options(args, {"-g": "group", "--group": "group"}, {"-c": "check", "--check": "check"})
        if "check" not in options:
            raise UsageError("dcgmi health: only -c (check) is supported; every system is always watched")
        _check_group(options)
        return health(node_machine())
    if command == "diag":
        options = parse_options(args, {"-r": "run", "--run": "run", "-i": "gpus", "--gpuList": "gpus",
                                  "--entity-id": "gpus", "-g": "group", "--group": "group"}, {})
        _check_group(options)
        run_level = options.get("run", "")
        level = RUN_LEVEL_NAMES.get(run_level) or (int(run_level) if run_level.isdigit() else 0)
        if level not in DIAG_TESTS:
            raise UsageError(f"-r {run_level or '?'}: the simulated diagnostic has run levels 1, 2 and 3")
        machine = node_machine()
        try:
            gpus = [int(g) for g in options.get("gpus", "").split(",") if g.strip()] or list(
                range(len(machine.devices)))
        except ValueError as exc:
            raise UsageError(f"-i {options['gpus']}: GPU ids are numbers, as dcgmi discovery -l lists them") from exc
        unknown = [g for g in gpus if not 0 <= g < len(machine.devices)]
        if unknown:
            raise UsageError(f"-i: no GPU {unknown[0]} on {machine.node} (dcgmi discovery -l lists them)")
        return diag(machine, level, gpus)
    raise UsageError(f"`dcgmi {command}` is not supported")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with deadline("dcgmi"):
            lines, status = run(sys.argv[1:] if argv is None else argv)
    except DeadlineExceeded as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNHEALTHY
    except UsageError as exc:
        print(f"dcgmi: {exc}.\n{USAGE}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except LabkitError as exc:  # e.g. the lab's GPU exporter does not answer
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
