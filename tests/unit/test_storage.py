"""The storage provisioner's logic without a cluster: the class, the PV built for a claim, paths, reclaim decisions,
node choice for Immediate classes, events, metrics, and the daemon's idempotence against a fake API."""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from labkit.addons import REGISTRY
from labkit.addons.base import Context
from labkit.cluster.ports import free_port
from labkit.sim import storage
from labkit.sim.loopback_http import serve_synced
from labkit.sim.storage import (
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    PROVISIONER,
    Metrics,
    Provisioner,
    ProvisioningError,
)

UID = "0b6f7a1e-3c1d-4d2a-9a57-0e8b1f0f6c11"


def claim(*, node: str | None = "cpu-node-2", marked: bool = True, **spec: Any) -> dict[str, Any]:
    annotations = {}
    if marked:
        annotations[ANN_STORAGE_PROVISIONER] = PROVISIONER
    if node:
        annotations[ANN_SELECTED_NODE] = node
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "www-web-0", "namespace": "lesson-02", "uid": UID, "resourceVersion": "42",
                         "annotations": annotations},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "standard", "volumeMode": "Filesystem", **spec}}


def node(name: str, *, ready: bool = True, taints: list | None = None, unschedulable: bool = False,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def sc(**fields: Any) -> dict[str, Any]:
    return {**storage.default_storage_class(), **fields}


def test_default_class_reads_as_kinds() -> None:
    cls = storage.default_storage_class()
    assert cls["metadata"] == {"name": "standard",
                               "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}
    assert (cls["provisioner"], cls["reclaimPolicy"], cls["volumeBindingMode"]) == \
        ("rancher.io/local-path", "Delete", "WaitForFirstConsumer")


def test_volume_name_and_directory_follow_local_path(tmp_path: Path) -> None:
    assert storage.volume_name(claim()) == f"pvc-{UID}"
    assert storage.volume_dir(tmp_path, "cpu-node-2", claim()) == \
        tmp_path / "cpu-node-2" / f"pvc-{UID}_lesson-02_www-web-0"


def test_pv_built_from_claim_class_and_node(tmp_path: Path) -> None:
    cls = sc(reclaimPolicy="Retain", mountOptions=["noatime"])
    pv = storage.build_volume(claim(accessModes=["ReadWriteOncePod"]), cls, node("cpu-node-2"), tmp_path)
    assert pv["metadata"]["name"] == f"pvc-{UID}"
    assert pv["metadata"]["annotations"][ANN_PROVISIONED_BY] == "rancher.io/local-path"
    spec = pv["spec"]
    assert spec["capacity"] == {"storage": "1Gi"} and spec["accessModes"] == ["ReadWriteOncePod"]
    assert spec["volumeMode"] == "Filesystem" and spec["storageClassName"] == "standard"
    assert spec["persistentVolumeReclaimPolicy"] == "Retain" and spec["mountOptions"] == ["noatime"]
    assert spec["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "lesson-02",
                                "name": "www-web-0", "uid": UID, "resourceVersion": "42"}
    assert spec["hostPath"] == {"path": str(tmp_path / "cpu-node-2" / f"pvc-{UID}_lesson-02_www-web-0"),
                                "type": "DirectoryOrCreate"}
    assert spec["nodeAffinity"]["required"]["nodeSelectorTerms"] == [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["cpu-node-2"]}]}]
    assert storage.volume_node(pv) == "cpu-node-2"
    assert "mountOptions" not in storage.build_volume(claim(), sc(), node("n"), tmp_path)["spec"]


def test_should_provision_waits_for_a_selected_node_only_with_wait_for_first_consumer() -> None:
    assert storage.should_provision(claim(), sc())
    assert not storage.should_provision(claim(node=None), sc())
    assert storage.should_provision(claim(node=None), sc(volumeBindingMode="Immediate"))
    assert not storage.should_provision(claim(marked=False), sc())  # the PV controller has not asked yet
    assert not storage.should_provision(claim(), sc(provisioner="example.com/other"))
    assert not storage.should_provision(claim(), None)
    assert not storage.should_provision(claim(volumeName="pv-static"), sc())  # bound or pre-bound: not ours
    deleting = claim()
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not storage.should_provision(deleting, sc())


@pytest.mark.parametrize(("spec", "message"), [
    ({"accessModes": ["ReadWriteMany"]}, "only supports ReadWriteOnce and ReadWriteOncePod"),
    ({"selector": {"matchLabels": {"a": "b"}}}, "claim.Spec.Selector is not supported"),
    ({"volumeMode": "Block"}, "rancher.io/local-path does not support block volume provisioning"),
])
def test_claims_local_path_cannot_serve_fail_with_upstreams_message(spec: dict, message: str) -> None:
    with pytest.raises(ProvisioningError, match=message):
        storage.check_claim(claim(**spec))
    storage.check_claim(claim())


def test_immediate_classes_get_a_ready_schedulable_untainted_node_with_fewest_volumes() -> None:
    nodes = [node("a", ready=False), node("b", unschedulable=True),
             node("c", taints=[{"key": "k", "effect": "NoSchedule"}]), node("d"), node("e"),
             node("f", taints=[{"key": "k", "effect": "PreferNoSchedule"}])]
    assert storage.pick_node(nodes, sc()) == "d"
    assert storage.pick_node(nodes, sc(), {"d": 2, "e": 1}) == "f"
    zoned = sc(allowedTopologies=[{"matchLabelExpressions": [{"key": "kubernetes.io/hostname", "values": ["e"]}]}])
    assert storage.pick_node(nodes, zoned) == "e"
    assert storage.pick_node([node("a", ready=False)], sc()) is None


def _pv(phase: str, policy: str = "Delete", *, ours: bool = True, path: str = "/nowhere") -> dict[str, Any]:
    return {"metadata": {"name": f"pvc-{UID}", "annotations": {ANN_PROVISIONED_BY: PROVISIONER} if ours else {}},
            "spec": {"persistentVolumeReclaimPolicy": policy, "hostPath": {"path": path}, "storageClassName": "x"},
            "status": {"phase": phase}}


def test_reclaim_decisions() -> None:
    assert storage.reclaim_action(_pv("Released")) == "delete"
    assert storage.reclaim_action(_pv("Released", "Retain")) == "retain"
    assert storage.reclaim_action(_pv("Bound")) is None
    assert storage.reclaim_action(_pv("Available")) is None
    assert storage.reclaim_action(_pv("Released", ours=False)) is None  # a static PV is never ours to delete
    deleting = _pv("Released")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert storage.reclaim_action(deleting) is None


def test_only_directories_inside_the_root_are_ever_removed(tmp_path: Path) -> None:
    inside = tmp_path / "n" / "pvc-x_ns_c"
    assert storage.volume_path(_pv("Released", path=str(inside)), tmp_path) == inside.resolve()
    assert storage.volume_path(_pv("Released", path=str(tmp_path / ".." / "elsewhere")), tmp_path) is None
    assert storage.volume_path(_pv("Released", path=str(tmp_path)), tmp_path) is None
    assert storage.volume_path(_pv("Released", path="/etc"), tmp_path) is None


def test_events_are_shaped_as_client_gos_recorder_writes_them() -> None:
    event = storage.claim_event(claim(), "Normal", "Provisioning", storage.provisioning_message(claim()), "comp")
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "lesson-02",
                                       "name": "www-web-0", "uid": UID, "resourceVersion": "42"}
    assert event["metadata"]["name"].startswith("www-web-0.") and event["metadata"]["namespace"] == "lesson-02"
    assert event["message"] == 'External provisioner is provisioning volume for claim "lesson-02/www-web-0"'
    assert (event["type"], event["reason"], event["source"], event["count"]) == \
        ("Normal", "Provisioning", {"component": "comp"}, 1)
    assert storage.component_name().startswith("rancher.io/local-path_")


def test_metrics_render_prometheus_counters_by_class() -> None:
    metrics = Metrics()
    metrics.inc("provisioned", "standard")
    metrics.inc("provisioned", "standard")
    metrics.inc("deleted", "fast")
    text = metrics.render()
    assert 'controller_persistentvolumeclaim_provision_total{class="standard"} 2' in text
    assert 'controller_persistentvolume_delete_total{class="fast"} 1' in text
    assert "# TYPE controller_persistentvolume_delete_failed_total counter" in text


# --- the daemon's work against a fake API: idempotent, reclaim order ---------------------------------------------


class FakeCore:
    """The CoreV1Api calls the provisioner makes, on dicts."""

    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes = {n["metadata"]["name"]: n for n in nodes}
        self.pvs: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.created = 0

    def read_persistent_volume(self, name: str, **_: Any) -> dict[str, Any]:
        if name not in self.pvs:
            raise ApiException(status=404, reason="Not Found")
        return self.pvs[name]

    def create_persistent_volume(self, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        if body["metadata"]["name"] in self.pvs:
            raise ApiException(status=409, reason="AlreadyExists")
        self.created += 1
        self.pvs[body["metadata"]["name"]] = copy.deepcopy(body)
        return body

    def delete_persistent_volume(self, name: str, **_: Any) -> None:
        self.read_persistent_volume(name)
        del self.pvs[name]

    def read_node(self, name: str, **_: Any) -> dict[str, Any]:
        if name not in self.nodes:
            raise ApiException(status=404, reason="Not Found")
        return self.nodes[name]

    def list_node(self, **_: Any) -> Any:
        return type("NodeList", (), {"items": list(self.nodes.values())})()

    def create_namespaced_event(self, namespace: str, body: dict[str, Any], **_: Any) -> None:
        self.events.append(body)


class FakeStorage:
    def __init__(self, classes: list[dict[str, Any]]) -> None:
        self.classes = {c["metadata"]["name"]: c for c in classes}

    def read_storage_class(self, name: str, **_: Any) -> dict[str, Any]:
        if name not in self.classes:
            raise ApiException(status=404, reason="Not Found")
        return self.classes[name]


def _provisioner(tmp_path: Path, classes: list[dict[str, Any]]) -> tuple[Provisioner, FakeCore]:
    """A Provisioner whose API is the fakes above (no kubeconfig, no threads)."""
    prov = Provisioner.__new__(Provisioner)
    core = FakeCore([node("cpu-node-1"), node("cpu-node-2")])
    prov.core, prov.storage = core, FakeStorage(classes)  # type: ignore[assignment]
    prov.api_client = type("Plain", (), {"sanitize_for_serialization": staticmethod(lambda o: o)})()
    prov.root, prov.provisioner, prov.component = tmp_path, PROVISIONER, "test"
    prov.metrics = Metrics()
    prov.claims, prov.volumes = {}, {}
    prov._lock, prov.synced = threading.Lock(), threading.Event()
    return prov, core


def test_provisioning_makes_the_directory_and_one_pv_even_when_run_again(tmp_path: Path) -> None:
    prov, core = _provisioner(tmp_path, [sc()])
    prov.claims["lesson-02/www-web-0"] = claim()
    assert prov.sync_claim("lesson-02/www-web-0")
    assert prov.sync_claim("lesson-02/www-web-0")  # a resync, or a restarted provisioner: nothing new
    assert core.created == 1 and list(core.pvs) == [f"pvc-{UID}"]
    assert (tmp_path / "cpu-node-2" / f"pvc-{UID}_lesson-02_www-web-0").is_dir()
    assert [e["reason"] for e in core.events] == ["Provisioning", "ProvisioningSucceeded"]
    assert core.events[1]["message"] == f"Successfully provisioned volume pvc-{UID}"
    assert prov.metrics.get("provisioned") == 1


def test_a_failed_claim_gets_a_warning_event_and_is_retried(tmp_path: Path) -> None:
    prov, core = _provisioner(tmp_path, [sc()])
    prov.claims["lesson-02/www-web-0"] = claim(accessModes=["ReadWriteMany"])
    assert not prov.sync_claim("lesson-02/www-web-0")
    assert [(e["type"], e["reason"]) for e in core.events] == [("Normal", "Provisioning"),
                                                              ("Warning", "ProvisioningFailed")]
    assert not core.pvs and prov.metrics.get("provision_failed") == 1


def test_immediate_claim_is_placed_by_the_provisioner(tmp_path: Path) -> None:
    prov, core = _provisioner(tmp_path, [sc(metadata={"name": "fast"}, volumeBindingMode="Immediate")])
    prov.claims["lesson-02/www-web-0"] = claim(node=None, storageClassName="fast")
    assert prov.sync_claim("lesson-02/www-web-0")
    assert storage.volume_node(core.pvs[f"pvc-{UID}"]) == "cpu-node-1"


def test_released_volume_with_delete_loses_directory_then_pv_and_retain_keeps_both(tmp_path: Path) -> None:
    prov, core = _provisioner(tmp_path, [sc()])
    for policy in ("Delete", "Retain"):
        directory = tmp_path / "cpu-node-1" / f"pvc-{policy}_ns_c"
        (directory / "data").mkdir(parents=True)
        pv = _pv("Released", policy, path=str(directory))
        pv["metadata"]["name"] = policy
        core.pvs[policy] = prov.volumes[policy] = pv
        assert prov.sync_volume(policy)
    assert list(core.pvs) == ["Retain"]
    assert not (tmp_path / "cpu-node-1" / "pvc-Delete_ns_c").exists()
    assert (tmp_path / "cpu-node-1" / "pvc-Retain_ns_c" / "data").is_dir()
    assert prov.metrics.get("deleted", "x") == 1


def test_module_imports_without_the_kubernetes_client() -> None:
    code = "import sys, labkit.sim.storage, labkit.addons; print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_addon_is_registered_started_with_the_embedded_cluster_and_keeps_volumes_in_its_folder(tmp_path: Path) -> None:
    addon = REGISTRY["local-path-provisioner"]
    assert addon.with_cluster_on == ("kwok",) and addon.ready_path == "/healthz"
    ctx = Context(kubeconfig=tmp_path / "kubeconfig", folder=tmp_path / "addons" / addon.name, targets=tmp_path / "t",
                  port=1234, ports={})
    cmd = addon.command(ctx)
    assert cmd[1:3] == ["-m", "labkit.sim.storage"]
    assert cmd[cmd.index("--root") + 1] == str(ctx.folder / "volumes")  # `labkit down` removes the add-on folder
    assert cmd[cmd.index("--port") + 1] == "1234"


def test_healthz_answers_503_until_synced_then_200(tmp_path: Path) -> None:
    prov, _core = _provisioner(tmp_path, [])
    port = free_port()
    server = serve_synced(port, prov.synced, storage.pages(prov))
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert info.value.code == 503
        prov.synced.set()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            assert b"controller_persistentvolumeclaim_provision_total" in resp.read()
    finally:
        server.shutdown()
        server.server_close()
