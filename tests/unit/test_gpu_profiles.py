"""GPU model profiles: the data files load and carry the real spec-sheet values."""

import pytest

from labkit.sim.gpu import available_profiles, load_profile


def test_required_profiles_exist():
    assert {"H100-SXM", "H200", "A100-SXM-80GB", "T4"} <= set(available_profiles())


@pytest.mark.parametrize(
    ("key", "memory_gib", "tdp_w", "has_mig"),
    [("H100-SXM", 80, 700, True), ("H200", 141, 700, True), ("A100-SXM-80GB", 80, 400, True), ("T4", 16, 70, False)],
)
def test_spec_values(key, memory_gib, tdp_w, has_mig):
    profile = load_profile(key)
    # nvidia-smi shows a little less than the marketed size (ECC and firmware carve-outs).
    assert profile.memory_total_mib / 1024 == pytest.approx(memory_gib, rel=0.08)
    assert profile.power_max_limit_w == tdp_w
    assert profile.supports_mig is has_mig
    assert profile.power_min_limit_w < profile.power_default_limit_w <= profile.power_max_limit_w
    assert profile.temp_max_operating_c < profile.temp_slowdown_c < profile.temp_shutdown_c
    assert profile.sm_clock_min_mhz < profile.sm_clock_base_mhz < profile.sm_clock_max_mhz
    assert profile.has_fan is False  # SXM modules and the passive T4 report fan speed as not supported


def test_mig_profiles_fit_the_card():
    profile = load_profile("h100-sxm")  # keys are case-insensitive
    names = [p.name for p in profile.mig_profiles]
    assert names[0] == "1g.10gb" and "7g.80gb" in names
    for mig in profile.mig_profiles:
        assert mig.slices * mig.max_count <= profile.mig_max_instances
        assert mig.memory_mib <= profile.memory_total_mib


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match="H100-SXM"):
        load_profile("GTX-480")
