"""Lesson 12's evidence tables, computed from the simulated GPUs through NVML (no cluster needed)."""

from labkit.lessons import gpu_monitoring as g12
from labkit.sim.gpu import FakeMachine, FakeNvml, load_profile


def test_cuda_compatibility_follows_the_drivers_cuda_version():
    table = g12.cuda_compatibility(FakeNvml(FakeMachine(count=1))).set_index("CUDA toolkit (in the image)")
    assert set(table["driver supports CUDA"]) == {"12.4"}  # driver 550 -> CUDA 12.4, what nvidia-smi prints
    assert table.loc["12.4", "container"] == "starts" and table.loc["11.8", "container"] == "starts"
    assert table.loc["12.6", "container"] == "refused: unsatisfied condition: cuda>=12.6"


def test_time_sliced_pods_share_one_memory_pool_mig_pods_do_not():
    table = g12.sharing_memory((("a/first", 60_000), ("b/second", 30_000))).set_index(["sharing", "pod"])
    h100 = load_profile("H100-SXM")
    usable = h100.memory_total_mib - h100.memory_reserved_mib  # the driver keeps a reservation for itself
    assert table.loc[("time-slicing", "a/first"), "holds_mib"] == 60_000
    assert table.loc[("time-slicing", "b/second"), "holds_mib"] == usable - 60_000  # what the first one left
    assert table.loc[("MIG 3g.40gb", "a/first"), "holds_mib"] == 40_192  # its own instance's ceiling
    assert table.loc[("MIG 3g.40gb", "b/second"), "holds_mib"] == 30_000
    assert list(table["cudaMalloc"]) == ["ok", "out of memory", "out of memory", "ok"]


def test_power_limit_trades_speed_for_energy_with_a_sweet_spot():
    table = g12.power_limit_sweep(profile="H100-SXM", limits_w=(700, 500, 300, 200)).set_index("power_limit_w")
    assert list(table["gpu_power_w"]) == sorted(table["gpu_power_w"], reverse=True)
    assert table.loc[700, "reasons"] == "none" and (table.loc[[500, 300, 200], "reasons"] == "SwPowerCap").all()
    assert table.loc[500, "throughput"] > table.loc[500, "gpu_power_w"] / table.loc[700, "gpu_power_w"]
    assert table["server_kj_per_job"].idxmin() == 300  # the rest of the server makes very slow jobs cost again


def test_gpu_time_reads_allocated_and_busy_seconds_at_one_instant(monkeypatch):
    """A scrape landing between the two queries must not shift one window's edge and not the other's."""
    import pandas as pd

    from labkit.observability import promql

    scrapes = [1000.0 + 2 * i for i in range(6)]   # the trainer's samples, 95 % busy, every 2 s
    clock = iter([1010.9, 1012.1])                  # a slow machine: over a second between the two queries

    def query(expr, *, at=None, timeout=10.0):
        now = at if at is not None else next(clock)
        seen = [t for t in scrapes if now - 10 < t <= now]   # window "10s"
        value = len(seen) * 2.0 if "count_over_time" in expr else sum(95 for _ in seen) / 100 * 2.0
        return pd.DataFrame([{"namespace": "ns", "pod": "trainer", "value": value}])

    monkeypatch.setattr(promql, "query", query)
    monkeypatch.setattr(g12.time, "time", lambda: 1010.9)
    table = g12.gpu_time_by_pod(window="10s", namespace="ns").set_index("pod")
    assert table.loc["trainer", "efficiency"] == 0.95, table
