"""The Karpenter add-on without a cluster: loopback-only build patches, the flavors file, its command line, and the
source-patch step of the Go build."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from labkit import addons, versions
from labkit.addons.base import Context
from labkit.addons.karpenter import LOOPBACK_PATCHES, Karpenter, component, crds_dir, instance_types_json
from labkit.cluster.binaries import apply_patch
from labkit.errors import BinariesUnavailable
from labkit.state import LabState

# What Karpenter v1.15.0's pkg/operator/operator.go says around its two listeners (copied from the module).
OPERATOR_EXCERPT = """\t\tMetrics: server.Options{
\t\t\tBindAddress: fmt.Sprintf(":%d", options.FromContext(ctx).MetricsPort),
\t\t},
\t\tHealthProbeBindAddress: fmt.Sprintf(":%d", options.FromContext(ctx).HealthProbePort),
"""


def test_component_is_pinned_and_built_with_the_toolchain_the_proxy_serves() -> None:
    comp = component()
    assert comp.version == versions.KARPENTER and comp.go_toolchain == versions.KARPENTER_GO_TOOLCHAIN
    assert comp.packages == ("sigs.k8s.io/karpenter/kwok",) and comp.patches == LOOPBACK_PATCHES
    assert f"operator.Version={versions.KARPENTER}" in comp.ldflags


def test_loopback_patches_leave_no_listener_on_every_interface() -> None:
    text = OPERATOR_EXCERPT
    for rel, old, new in LOOPBACK_PATCHES:
        assert rel == "pkg/operator/operator.go"
        text = apply_patch(text, old, new, where=rel)
    assert not re.search(r'Sprintf\(":%d"', text)
    assert text.count('Sprintf("127.0.0.1:%d"') == 2


def test_a_patch_whose_text_moved_upstream_refuses_to_build() -> None:
    with pytest.raises(BinariesUnavailable, match="exactly once, found it 0 times"):
        apply_patch("nothing to see", "BindAddress", "x", where="operator.go")
    with pytest.raises(BinariesUnavailable, match="found it 2 times"):
        apply_patch("a a", "a", "b", where="operator.go")


def test_flavors_file_is_what_karpenter_parses() -> None:
    flavors = json.loads(instance_types_json())
    assert [f["name"] for f in flavors] == ["c7.large.2", "c7.xlarge.2", "c7.2xlarge.2"]
    for f in flavors:
        # Karpenter's InstanceTypeOptions: these JSON keys, and offerings with Price/Available/Requirements.
        assert {"name", "architecture", "operatingSystems", "resources", "offerings"} <= set(f)
        cpu = int(f["resources"]["cpu"])
        assert f["resources"]["memory"] == f"{2 * cpu}Gi"  # c7.<size>.2: 2 GiB per vCPU
        for offer in f["offerings"]:
            keys = {r["key"] for r in offer["Requirements"]}
            assert keys == {"karpenter.sh/capacity-type", "topology.kubernetes.io/zone"} and offer["Available"]
    prices = [f["offerings"][0]["Price"] for f in flavors]
    assert prices == sorted(prices)  # bigger flavors cost more, so Karpenter picks the smallest that fits


def test_crds_come_from_the_pinned_module_into_the_cache() -> None:
    # Both CRD folders of the module (core ones and the KWOK provider's node class) land beside the binary.
    assert component().data == (("kwok/charts/crds", "crds"), ("kwok/apis/crds", "crds"))
    assert crds_dir() == component().dir / "crds"


def test_command_line_names_the_lab_folder_and_only_ports(tmp_path: Path) -> None:
    ctx = Context(kubeconfig=tmp_path / "kubeconfig", folder=tmp_path / "karpenter", targets=tmp_path / "t.json",
                  port=12345, ports={})
    ctx.folder.mkdir()
    (ctx.folder / "metrics-port").write_text("23456\n")
    karp = Karpenter()
    args = Karpenter._arguments(ctx)
    # The add-on folder on the command line is how labkit knows the process is this lab's (addons.supervisor._alive).
    assert str(ctx.folder) in " ".join(args)
    assert args[args.index("--health-probe-port") + 1] == "12345" and args[args.index("--metrics-port") + 1] == "23456"
    env = karp.env(ctx)
    assert env["KUBECONFIG"] == str(ctx.kubeconfig) and env["DISABLE_LEADER_ELECTION"] == "true"
    assert karp.scrape_targets(ctx) == [{"targets": ["127.0.0.1:23456"], "labels": {"job": "karpenter"}}]


def test_registry_has_karpenter_and_it_is_not_started_by_labkit_up() -> None:
    assert "karpenter" in addons.REGISTRY and "karpenter" not in addons.with_cluster("kwok")


def test_karpenter_refuses_a_backend_without_kwok(monkeypatch) -> None:
    monkeypatch.setattr("labkit.state.recorded", lambda: LabState(backend="kind"))
    assert "kwok" in (Karpenter().missing() or "")
    monkeypatch.setattr("labkit.state.recorded", lambda: LabState(backend="kwok"))
    assert Karpenter().missing() is None
