"""Fault injection for simulated GPUs: XID events, ECC errors, failing cooling, and the reset that clears them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labkit.sim.gpu.physics import IDLE

if TYPE_CHECKING:
    from labkit.sim.gpu.machine import FakeMachine


@dataclass(frozen=True)
class XidSpec:
    """What an XID code means and what it does to the simulated GPU."""

    code: int
    message: str
    kills_workload: bool = False
    gpu_lost: bool = False
    uncorrected_ecc: int = 0
    corrected_ecc: int = 0
    remaps_row: bool = False
    remap_fails: bool = False


# Messages use the wording dcgm-exporter puts in its err_msg label, so dashboards match.
XID_CATALOGUE: dict[int, XidSpec] = {
    spec.code: spec
    for spec in (
        XidSpec(13, "Graphics Engine Exception", kills_workload=True),
        XidSpec(31, "GPU memory page fault", kills_workload=True),
        XidSpec(43, "GPU stopped processing", kills_workload=True),
        XidSpec(48, "Double Bit ECC Error", kills_workload=True, uncorrected_ecc=1, remaps_row=True),
        XidSpec(63, "ECC page retirement or row remapping recording event", remaps_row=True),
        XidSpec(64, "ECC page retirement or row remapper recording failure", remap_fails=True),
        XidSpec(74, "NVLINK Error", kills_workload=True),
        XidSpec(79, "GPU has fallen off the bus", kills_workload=True, gpu_lost=True),
        XidSpec(92, "High single-bit ECC error rate", corrected_ecc=100),
        XidSpec(94, "Contained ECC error", kills_workload=True, uncorrected_ecc=1, remaps_row=True),
        XidSpec(95, "Uncontained ECC error", kills_workload=True, uncorrected_ecc=1, remaps_row=True),
    )
}
UNKNOWN_XID_MESSAGE = "Unknown Error"


def xid_message(code: int) -> str:
    """The short text for an XID code ("No Error" for 0)."""
    if code == 0:
        return "No Error"
    spec = XID_CATALOGUE.get(code)
    return spec.message if spec else UNKNOWN_XID_MESSAGE


@dataclass(frozen=True)
class XidEvent:
    """One XID as the kernel log would show it (``NVRM: Xid (PCI:...): 79, ...``)."""

    time_s: float
    gpu: int
    code: int
    message: str


@dataclass
class FaultState:
    """Per-GPU error bookkeeping. Volatile counters clear on reset; aggregate ones persist in the InfoROM."""

    volatile_corrected: int = 0
    volatile_uncorrected: int = 0
    aggregate_corrected: int = 0
    aggregate_uncorrected: int = 0
    remapped_rows_correctable: int = 0
    remapped_rows_uncorrectable: int = 0
    remap_pending: bool = False
    remap_failure: bool = False
    pcie_replays: int = 0
    last_xid: int = 0
    lost: bool = False
    history: list[XidEvent] = field(default_factory=list)

    def add_ecc(self, *, corrected: int = 0, uncorrected: int = 0) -> None:
        self.volatile_corrected += corrected
        self.aggregate_corrected += corrected
        self.volatile_uncorrected += uncorrected
        self.aggregate_uncorrected += uncorrected


def inject_xid(machine: FakeMachine, gpu: int, code: int) -> XidEvent:
    """Raise XID ``code`` on one GPU, with that XID's side effects (79: the GPU is lost)."""
    spec = XID_CATALOGUE.get(code, XidSpec(code, UNKNOWN_XID_MESSAGE))
    with machine.lock:
        device = machine.device(gpu)
        faults = device.faults
        faults.add_ecc(corrected=spec.corrected_ecc, uncorrected=spec.uncorrected_ecc)
        if spec.remaps_row and device.profile.has_row_remapping:
            if spec.uncorrected_ecc:
                faults.remapped_rows_uncorrectable += 1
            else:
                faults.remapped_rows_correctable += 1
            faults.remap_pending = True
        faults.remap_failure |= spec.remap_fails and device.profile.has_row_remapping
        if spec.kills_workload:
            device.state.workload = IDLE
        faults.lost |= spec.gpu_lost
        faults.last_xid = code
        event = XidEvent(machine.sim_time_s, gpu, code, spec.message)
        faults.history.append(event)
        return event


def inject_ecc_errors(machine: FakeMachine, gpu: int, *, corrected: int = 0, uncorrected: int = 0) -> None:
    """Add ECC errors without an XID (corrected ones never raise one)."""
    with machine.lock:
        device = machine.device(gpu)
        if not device.profile.has_ecc:
            raise ValueError(f"{device.profile.name} has no ECC memory")
        device.faults.add_ecc(corrected=corrected, uncorrected=uncorrected)


def inject_pcie_replays(machine: FakeMachine, gpu: int, *, count: int) -> None:
    """Add PCIe link-level retries, the early sign of a marginal riser or slot."""
    with machine.lock:
        machine.device(gpu).faults.pcie_replays += count


def degrade_cooling(machine: FakeMachine, gpu: int, *, factor: float) -> None:
    """Multiply the GPU's thermal resistance (2.0 = half the airflow); 1.0 restores it."""
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    with machine.lock:
        machine.device(gpu).state.cooling_factor = factor


def reset_gpu(machine: FakeMachine, gpu: int) -> None:
    """What ``nvidia-smi --gpu-reset`` does: bring a lost GPU back, clear volatile ECC and pending remaps.

    Processes on the GPU are gone afterwards; aggregate ECC counters and the last XID remain."""
    with machine.lock:
        device = machine.device(gpu)
        faults = device.faults
        faults.lost = False
        faults.volatile_corrected = faults.volatile_uncorrected = 0
        faults.remap_pending = False
        device.state.workload = IDLE
        device.state.locked_clocks_mhz = None
        device.state.app_clock_mhz = device.state.app_mem_clock_mhz = None


def replace_board(machine: FakeMachine, gpu: int) -> None:
    """The end of an RMA: a new board in the slot, so every counter (aggregate ECC, remapped rows, XID history)
    starts from zero. A reset cannot do this: a row-remap failure stays until the board is replaced."""
    reset_gpu(machine, gpu)
    with machine.lock:
        machine.device(gpu).faults = FaultState()
