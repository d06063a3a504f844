"""GPU model specifications, read from the JSON files in ``labkit/sim/gpu/profiles/``."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

from labkit.settings import DEFAULT_GPU_PROFILE

PROFILE_DIR = Path(__file__).with_name("profiles")
DEFAULT_PROFILE = DEFAULT_GPU_PROFILE


@dataclass(frozen=True)
class MigProfile:
    """One MIG GPU-instance shape, e.g. ``1g.10gb`` (slices of compute, memory)."""

    name: str
    slices: int
    memory_mib: int
    max_count: int


@dataclass(frozen=True)
class GpuProfile:
    """Spec sheet of one GPU model; field names carry their units."""

    key: str
    name: str
    architecture: str
    brand: str
    memory_total_mib: int
    memory_reserved_mib: int
    memory_type: str
    memory_bandwidth_gbps: int
    bar1_total_mib: int
    cuda_compute_capability: tuple[int, int]
    memory_clocks_mhz: tuple[int, ...]
    power_default_limit_w: float
    power_min_limit_w: float
    power_max_limit_w: float
    power_idle_w: float
    power_peak_demand_w: float
    sm_clock_max_mhz: int
    sm_clock_base_mhz: int
    sm_clock_min_mhz: int
    video_clock_max_mhz: int
    clock_step_mhz: int
    ambient_c: float
    thermal_resistance_c_per_w: float
    thermal_time_constant_s: float
    temp_max_operating_c: int
    temp_slowdown_c: int
    temp_shutdown_c: int
    temp_memory_max_c: int | None
    pcie_generation: int
    pcie_width: int
    pci_device_id: int
    pci_subsystem_id: int
    pci_bus_numbers: tuple[int, ...]
    nvlink_links: int
    nvlink_bandwidth_gbps: int
    has_fan: bool
    has_ecc: bool
    has_row_remapping: bool
    has_memory_temperature: bool
    vbios_version: str
    inforom_image_version: str
    inforom_oem_version: str
    inforom_ecc_version: str
    mig_max_instances: int
    mig_profiles: tuple[MigProfile, ...]

    @property
    def supports_mig(self) -> bool:
        return self.mig_max_instances > 0

    def supported_graphics_clocks_mhz(self) -> list[int]:
        """Clock steps from max down to min, as nvmlDeviceGetSupportedGraphicsClocks lists them."""
        return list(range(self.sm_clock_max_mhz, self.sm_clock_min_mhz - 1, -self.clock_step_mhz))

    def mig_profile(self, name: str) -> MigProfile:
        for profile in self.mig_profiles:
            if profile.name == name:
                return profile
        known = ", ".join(p.name for p in self.mig_profiles) or "none (no MIG on this model)"
        raise ValueError(f"{self.key} has no MIG profile {name!r}; known: {known}")


def _from_json(data: dict) -> GpuProfile:
    names = {f.name for f in fields(GpuProfile)}
    values = {k: v for k, v in data.items() if k in names}
    missing = names - values.keys()
    if missing:
        raise ValueError(f"profile {data.get('key')!r} lacks fields: {sorted(missing)}")
    # Hex strings keep the JSON readable next to lspci output.
    values["pci_device_id"] = int(str(values["pci_device_id"]), 0)
    values["pci_subsystem_id"] = int(str(values["pci_subsystem_id"]), 0)
    values["memory_clocks_mhz"] = tuple(values["memory_clocks_mhz"])
    values["pci_bus_numbers"] = tuple(values["pci_bus_numbers"])
    values["cuda_compute_capability"] = tuple(values["cuda_compute_capability"])
    values["mig_profiles"] = tuple(MigProfile(**p) for p in values["mig_profiles"])
    return GpuProfile(**values)


@cache
def _all_profiles() -> dict[str, GpuProfile]:
    profiles = (_from_json(json.loads(p.read_text())) for p in sorted(PROFILE_DIR.glob("*.json")))
    return {p.key.upper(): p for p in profiles}


def available_profiles() -> list[str]:
    """Keys accepted by :func:`load_profile` (and by ``LABKIT_FAKE_GPU_PROFILE``)."""
    return sorted(p.key for p in _all_profiles().values())


def load_profile(key: str = DEFAULT_PROFILE) -> GpuProfile:
    """The spec of one GPU model, e.g. ``load_profile("H200")`` (case-insensitive)."""
    try:
        return _all_profiles()[key.upper()]
    except KeyError:
        raise ValueError(f"unknown GPU profile {key!r}; choose one of {available_profiles()}") from None
