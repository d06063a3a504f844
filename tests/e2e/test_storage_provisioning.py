"""Storage behaves as on kind: a default class `standard` (rancher.io/local-path), PVs made by the provisioner and
bound by the real PV controller, WaitForFirstConsumer and Immediate, reclaim policies, data that outlives pods,
static PVs. On the embedded backend the provisioner is labkit's add-on and volumes are directories under the lab's
state; every wait has a deadline."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch

import labkit as lk
from labkit.kube.wait import has_condition
from labkit.paths import bin_dir, state_dir

# The Kubernetes docs' StatefulSet basics tutorial (web.yaml): no storageClassName, so the default class applies.
WEB = """
apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector:
    app: nginx
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: "nginx"
  replicas: 2
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.21
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      resources:
        requests:
          storage: 1Gi
"""
PROVISIONER = "rancher.io/local-path"
TIMEOUT = 60


@pytest.fixture(scope="module", autouse=True)
def provisioner(lab: lk.Lab) -> None:
    """`labkit up` starts it on the embedded backend; a lab started before the add-on existed gets it now."""
    if lab.backend == "kwok":
        lk.addons.require("local-path-provisioner")


def volumes_root() -> Path:
    return state_dir() / "addons" / "local-path-provisioner" / "volumes"


def claim(name: str, *, storage_class: str | None = None, size: str = "1Gi", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec}
    if storage_class is not None:
        body["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": body}


def consumer(name: str, claim_name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
                                     "command": ["sleep", "3600"],   # busybox's own `sh` would end at once
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]}}


def bound(lab: lk.Lab, namespace: str, name: str) -> dict[str, Any]:
    pvc = lk.wait_for(lab, "PersistentVolumeClaim", name, namespace=namespace,
                      condition="jsonpath={.status.phase}=Bound", timeout=TIMEOUT)
    assert pvc is not None
    return pvc


def volume(lab: lk.Lab, name: str) -> dict[str, Any]:
    return lab.api_client.sanitize_for_serialization(lab.core.read_persistent_volume(name))


def pv_node(pv: dict[str, Any]) -> str:
    return pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]


def kubectl(lab: lk.Lab, *args: str) -> str:
    cmd = [str(bin_dir() / "kubectl"), "--kubeconfig", str(lab.kubeconfig), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout


def wait_event(lab: lk.Lab, namespace: str, claim_name: str, reason: str, *, timeout: float = TIMEOUT) -> Any:
    """The first event ``reason`` on the claim, watched under a deadline (``kubectl get events --watch``)."""
    selector = f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={claim_name},reason={reason}"
    listed = lab.core.list_namespaced_event(namespace, field_selector=selector)
    if listed.items:
        return listed.items[0]
    stream = watch.Watch()
    for event in stream.stream(lab.core.list_namespaced_event, namespace, field_selector=selector,
                               resource_version=listed.metadata.resource_version, timeout_seconds=int(timeout)):
        if event["type"] in ("ADDED", "MODIFIED"):
            stream.stop()
            return event["object"]
    raise AssertionError(f"no {reason} event on PersistentVolumeClaim {namespace}/{claim_name} within {timeout}s")


@pytest.fixture
def storage_class(lab: lk.Lab) -> Iterator[Any]:
    """A factory of StorageClasses for one test (cluster-scoped, so named uniquely and deleted afterwards)."""
    made: list[str] = []

    def make(binding: str = "Immediate", reclaim: str = "Delete", provisioner: str = PROVISIONER) -> str:
        name = f"t-{binding.lower()}-{reclaim.lower()}-{uuid.uuid4().hex[:6]}"
        k8s.StorageV1Api(lab.api_client).create_storage_class({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "volumeBindingMode": binding, "reclaimPolicy": reclaim})
        made.append(name)
        return name

    yield make
    for name in made:
        k8s.StorageV1Api(lab.api_client).delete_storage_class(name)


@pytest.fixture
def cleanup_pvs(lab: lk.Lab) -> Iterator[list[str]]:
    """PVs a test leaves behind on purpose (Retain, static): deleted, with their directories, afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            pv = volume(lab, name)
        except Exception:  # noqa: BLE001 -- already gone
            continue
        lab.core.delete_persistent_volume(name)
        path = Path(pv["spec"].get("hostPath", {}).get("path", "/nonexistent"))
        if path.is_relative_to(volumes_root()):
            shutil.rmtree(path, ignore_errors=True)


def test_default_class_reads_as_on_kind(lab: lk.Lab) -> None:
    line = next(x for x in kubectl(lab, "get", "storageclass").splitlines() if x.startswith("standard "))
    assert line.split()[:5] == ["standard", "(default)", PROVISIONER, "Delete", "WaitForFirstConsumer"], line


def test_statefulset_tutorial_runs_with_default_class_volumes(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, WEB, namespace=namespace)
    lk.wait_for(lab, "StatefulSet", "web", namespace=namespace, condition="jsonpath={.status.readyReplicas}=2",
                timeout=TIMEOUT)
    # A pod may run once its claim is bound in spec; the claim's status turns Bound a moment later.
    claims = [bound(lab, namespace, f"www-web-{ordinal}") for ordinal in (0, 1)]
    out = kubectl(lab, "get", "pv,pvc", "-n", namespace)
    volumes = []
    for ordinal, pvc in enumerate(claims):
        assert pvc["spec"]["storageClassName"] == "standard"
        pv = volume(lab, pvc["spec"]["volumeName"])
        volumes.append(pv["metadata"]["name"])
        assert pv["metadata"]["name"] == f"pvc-{pvc['metadata']['uid']}"
        assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == PROVISIONER
        assert pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
        pod = lab.core.read_namespaced_pod(f"web-{ordinal}", namespace)
        assert pv_node(pv) == pod.spec.node_name  # provisioned on the node the scheduler chose
        if lab.backend == "kwok":
            assert Path(pv["spec"]["hostPath"]["path"]) == (
                volumes_root() / pod.spec.node_name / f"pvc-{pvc['metadata']['uid']}_{namespace}_www-web-{ordinal}")
            assert Path(pv["spec"]["hostPath"]["path"]).is_dir()
        # `kubectl get pv,pvc`: the PV line (CLAIM ns/name) and the PVC line, each Bound with class standard.
        pv_line = next(x.split() for x in out.splitlines() if f"{namespace}/www-web-{ordinal}" in x)
        pvc_line = next(x.split() for x in out.splitlines() if x.startswith(f"persistentvolumeclaim/www-web-{ordinal}"))
        assert pv_line[1:6] == ["1Gi", "RWO", "Delete", "Bound", f"{namespace}/www-web-{ordinal}"], pv_line
        assert pv_line[6] == "standard" and pvc_line[1:3] == ["Bound", pv["metadata"]["name"]], pvc_line
        assert pvc_line[5] == "standard", pvc_line
    events = {e.reason: e for e in lab.core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=www-web-0").items}
    assert events["ProvisioningSucceeded"].message == f"Successfully provisioned volume {volumes[0]}"
    assert events["Provisioning"].source.component.startswith(f"{PROVISIONER}_")
    assert events["Provisioning"].message == \
        f'External provisioner is provisioning volume for claim "{namespace}/www-web-0"'


def test_data_outlives_the_pod(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, WEB.replace("replicas: 2", "replicas: 1"), namespace=namespace)
    first = lk.wait_for(lab, "Pod", "web-0", namespace=namespace, timeout=TIMEOUT)
    assert first is not None
    pvc = bound(lab, namespace, "www-web-0")
    path = Path(volume(lab, pvc["spec"]["volumeName"])["spec"]["hostPath"]["path"])
    (path / "index.html").write_text("written before the pod was deleted\n")

    lab.core.delete_namespaced_pod("web-0", namespace)
    second = lk.wait_for(lab, "Pod", "web-0", namespace=namespace, timeout=TIMEOUT,
                         condition=lambda o: bool(o) and o["metadata"]["uid"] != first["metadata"]["uid"]
                         and has_condition(o, "Ready"))
    assert second is not None
    again = bound(lab, namespace, "www-web-0")
    assert again["metadata"]["uid"] == pvc["metadata"]["uid"]  # the same claim, so the same PV and directory
    assert again["spec"]["volumeName"] == pvc["spec"]["volumeName"]
    assert second["spec"]["nodeName"] == first["spec"]["nodeName"]  # the PV's node affinity brings it back
    assert (path / "index.html").read_text() == "written before the pod was deleted\n"


def test_lone_claim_waits_for_its_first_consumer(lab: lk.Lab, namespace: str) -> None:
    lk.apply(lab, claim("lone"), namespace=namespace)
    event = wait_event(lab, namespace, "lone", "WaitForFirstConsumer")
    assert event.source.component == "persistentvolume-controller"
    assert event.message == "waiting for first consumer to be created before binding"
    pvc = lab.core.read_namespaced_persistent_volume_claim("lone", namespace)
    assert pvc.spec.storage_class_name == "standard" and pvc.status.phase == "Pending"
    assert not [e for e in lab.core.list_namespaced_event(namespace, field_selector="involvedObject.name=lone").items
                if e.reason.startswith("Provisioning")]

    lk.apply(lab, consumer("user", "lone"), namespace=namespace)
    pod = lk.wait_for(lab, "Pod", "user", namespace=namespace, timeout=TIMEOUT)
    assert pod is not None
    pvc_obj = bound(lab, namespace, "lone")
    assert pvc_obj["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == pod["spec"]["nodeName"]
    assert wait_event(lab, namespace, "lone", "ProvisioningSucceeded").type == "Normal"
    assert pv_node(volume(lab, pvc_obj["spec"]["volumeName"])) == pod["spec"]["nodeName"]


def test_immediate_class_binds_at_once(lab: lk.Lab, namespace: str, storage_class: Any) -> None:
    name = storage_class("Immediate")
    lk.apply(lab, claim("now", storage_class=name), namespace=namespace)
    pvc = bound(lab, namespace, "now")  # no pod asked for it
    node = pv_node(volume(lab, pvc["spec"]["volumeName"]))
    lk.apply(lab, consumer("user", "now"), namespace=namespace)
    pod = lk.wait_for(lab, "Pod", "user", namespace=namespace, timeout=TIMEOUT)
    assert pod is not None and pod["spec"]["nodeName"] == node  # the scheduler follows the volume


def test_reclaim_policy_delete_removes_pv_and_directory_retain_keeps_both(
        lab: lk.Lab, namespace: str, storage_class: Any, cleanup_pvs: list[str]) -> None:
    keep, drop = storage_class("Immediate", "Retain"), storage_class("Immediate", "Delete")
    lk.apply(lab, [claim("keep", storage_class=keep), claim("drop", storage_class=drop)], namespace=namespace)
    kept_pv, dropped_pv = (volume(lab, bound(lab, namespace, n)["spec"]["volumeName"]) for n in ("keep", "drop"))
    cleanup_pvs.append(kept_pv["metadata"]["name"])
    kept_dir, dropped_dir = (Path(pv["spec"]["hostPath"]["path"]) for pv in (kept_pv, dropped_pv))
    assert kept_dir.is_dir() and dropped_dir.is_dir()
    (kept_dir / "data").write_text("keep me\n")

    lab.core.delete_namespaced_persistent_volume_claim("keep", namespace)
    lk.wait_for(lab, "PersistentVolume", kept_pv["metadata"]["name"], condition="jsonpath={.status.phase}=Released",
                timeout=TIMEOUT)
    lab.core.delete_namespaced_persistent_volume_claim("drop", namespace)
    lk.wait_for(lab, "PersistentVolume", dropped_pv["metadata"]["name"], condition="delete", timeout=TIMEOUT)
    assert not dropped_dir.exists()  # removed before the PV was
    # The provisioner handled `keep` (Released first) before `drop`: Retain left both the PV and its data.
    assert volume(lab, kept_pv["metadata"]["name"])["status"]["phase"] == "Released"
    assert (kept_dir / "data").read_text() == "keep me\n"


def test_static_pv_without_a_provisioner_still_binds(lab: lk.Lab, namespace: str, cleanup_pvs: list[str],
                                                     tmp_path: Path) -> None:
    name = f"static-{namespace}"
    cleanup_pvs.append(name)
    lab.core.create_persistent_volume({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": {"owner": namespace}},
        "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(tmp_path)}}})
    lk.apply(lab, claim("static", storage_class="", size="1Gi", selector={"matchLabels": {"owner": namespace}}),
             namespace=namespace)
    pvc = bound(lab, namespace, "static")
    assert pvc["spec"]["volumeName"] == name and pvc["spec"]["storageClassName"] == ""
    pv = volume(lab, name)
    assert "pv.kubernetes.io/provisioned-by" not in (pv["metadata"].get("annotations") or {})
    assert pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
