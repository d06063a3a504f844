"""dcgm-exporter-compatible metrics: names, types, units and labels of the default counter set."""

import re
import subprocess

import pytest

from labkit.sim.gpu import (
    FakeMachine,
    Workload,
    default_counters,
    fleet_metrics,
    inject_xid,
    lab_counters,
    make_fleet,
    node_metrics,
)

LINE = re.compile(r"^(?P<name>[A-Z_]+)\{(?P<labels>.*)\} (?P<value>\S+)$")
BASE_LABELS = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"]


def _parse(text):
    helps, types, samples = {}, {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            types[name] = kind
        else:
            match = LINE.match(line)
            assert match, line
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            keys = re.findall(r'(\w+)="', match["labels"])
            samples.append((match["name"], keys, labels, float(match["value"])))
    return helps, types, samples


@pytest.fixture
def loaded_fleet():
    fleet = make_fleet()
    fleet["gpu-node-1"].set_workloads({0: Workload(95, 40_000, 0.2)})
    fleet["gpu-node-2"].set_workloads({1: (60, 20_000, 0.8)})
    for machine in fleet.values():
        machine.step(120)
    return fleet


def test_names_and_types_match_the_vendored_default_counters(loaded_fleet):
    helps, types, samples = _parse(fleet_metrics(loaded_fleet))
    expected = {c.name: c for c in lab_counters() if c.prom_type != "label"}
    assert set(types) == set(expected)  # every default counter an H100 supports, the lab's ECC extras, nothing else
    for name, kind in types.items():
        assert kind == expected[name].prom_type
        assert helps[name] == expected[name].help
    assert {s[0] for s in samples} == set(expected)


def test_vendored_counter_list_is_the_upstream_default_set():
    names = [c.name for c in default_counters()]
    assert len(names) == len(set(names)) == 26
    assert names[:2] == ["DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK"]
    assert {"DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_FB_USED", "DCGM_FI_PROF_PCIE_RX_BYTES"} <= set(names)
    assert {c.name: c.prom_type for c in default_counters()}["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "counter"


def test_labels_units_and_pod_attribution(loaded_fleet):
    text = fleet_metrics(loaded_fleet, attribution={"gpu-node-1": {0: ("ml", "trainer-0", "main")}})
    _, _, samples = _parse(text)
    by_key = {(s[2]["Hostname"], s[2]["gpu"], s[0]): s for s in samples}

    name, keys, labels, value = by_key[("gpu-node-1", "0", "DCGM_FI_DEV_FB_USED")]
    assert keys == [*BASE_LABELS, "container", "namespace", "pod"]
    assert (labels["namespace"], labels["pod"], labels["container"]) == ("ml", "trainer-0", "main")
    assert labels["device"] == "nvidia0" and labels["pci_bus_id"] == "00000000:18:00.0"
    assert labels["modelName"] == "NVIDIA H100 80GB HBM3" and labels["UUID"].startswith("GPU-")
    assert value == 40_000  # MiB

    _, keys, _, _ = by_key[("gpu-node-1", "1", "DCGM_FI_DEV_FB_USED")]
    assert keys == BASE_LABELS  # an unallocated GPU carries no pod labels

    fb_free = by_key[("gpu-node-1", "0", "DCGM_FI_DEV_FB_FREE")][3]
    fb_reserved = by_key[("gpu-node-1", "0", "DCGM_FI_DEV_FB_RESERVED")][3]
    assert value + fb_free + fb_reserved == 81559
    assert 300 < by_key[("gpu-node-1", "0", "DCGM_FI_DEV_POWER_USAGE")][3] <= 700 * 1.02  # W
    assert by_key[("gpu-node-1", "0", "DCGM_FI_DEV_SM_CLOCK")][3] <= 1980  # MHz
    assert 30 < by_key[("gpu-node-1", "0", "DCGM_FI_DEV_GPU_TEMP")][3] < 90  # C
    energy_mj = by_key[("gpu-node-1", "0", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")][3]
    assert energy_mj == pytest.approx(loaded_fleet["gpu-node-1"].sample(0).energy_j * 1000, abs=1)
    assert 0 < by_key[("gpu-node-1", "0", "DCGM_FI_PROF_GR_ENGINE_ACTIVE")][3] <= 1  # a ratio


def test_xid_value_and_labels(loaded_fleet):
    inject_xid(loaded_fleet["gpu-node-2"], 0, 79)
    _, _, samples = _parse(fleet_metrics(loaded_fleet))
    lost = [s for s in samples if s[2]["Hostname"] == "gpu-node-2" and s[2]["gpu"] == "0"]
    assert [s[0] for s in lost] == ["DCGM_FI_DEV_XID_ERRORS"]  # a lost GPU reports nothing else
    _, keys, labels, value = lost[0]
    assert value == 79 and labels["err_code"] == "79" and labels["err_msg"] == "GPU has fallen off the bus"
    assert keys == [*BASE_LABELS, "err_code", "err_msg"]
    healthy = [s for s in samples if s[0] == "DCGM_FI_DEV_XID_ERRORS" and s[3] == 0]
    assert healthy and all(s[2]["err_msg"] == "No Error" for s in healthy)


def test_t4_leaves_out_what_it_lacks():
    text = node_metrics(FakeMachine(profile="T4", count=1), hostname="t4-node")
    _, types, _ = _parse(text)
    assert "DCGM_FI_DEV_MEMORY_TEMP" not in types  # GDDR6 has no memory sensor
    assert "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL" not in types
    assert "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS" not in types  # Turing retires pages instead
    assert 'Hostname="t4-node"' in text and 'modelName="Tesla T4"' in text


def test_hostname_label_spelling_is_selectable():
    text = node_metrics(FakeMachine(count=1), hostname_label="hostname")
    assert 'hostname="gpu-node-1"' in text and "Hostname=" not in text


# dcgm-exporter's own naming breaks these Prometheus style lints (camelCase labels such as
# modelName, counters without _total); real dcgm-exporter output draws the same warnings.
UPSTREAM_STYLE_LINTS = re.compile(
    r"^DCGM_\w+ (label names should be written in 'snake_case' not 'camelCase'"
    r"|counter metrics should have \"_total\" suffix"
    r"|metric name should not include type 'counter')$"
)


def test_promtool_accepts_the_exposition(loaded_fleet, tmp_path, promtool: str):
    inject_xid(loaded_fleet["gpu-node-1"], 1, 48)
    text = fleet_metrics(loaded_fleet, attribution={"gpu-node-1": {0: ("ml", "trainer-0", "main")}})
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode in (0, 3), output  # 1 would mean the text does not parse
    unexpected = [line for line in output if not UPSTREAM_STYLE_LINTS.match(line)]
    assert not unexpected, unexpected
