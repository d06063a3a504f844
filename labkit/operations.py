"""Lab operations that lessons share: node problems (NPD's conditions, a node reboot) and GPU faults (inject,
reset, replace a board, restore every GPU node), each through the simulated lab's own channel.

Lesson 08 teaches the node problems and lesson 12 the GPU faults; lesson 11's scenarios set their faults up with both.
A node's kernel reporting a problem is :func:`labkit.sim.node_logs.inject`.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pandas as pd

from . import addons
from .errors import LabkitError, ManifestError, NotFound
from .i18n import _
from .kube.client import Lab, api_errors
from .kube.nodes import cordon
from .kube.objects import get
from .kube.wait import poll, wait_for, wait_for_set
from .sim import node_logs

# --- node problems -------------------------------------------------------------------------------------------

# NPD's default conditions, set False when it starts (from upstream's kernel- and readonly-monitor configs).
NPD_CONDITIONS = ("KernelDeadlock", "ReadonlyFilesystem")


def node_condition(node: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition ``kind`` of a Node object ({} when it has none)."""
    return next((c for c in ((node or {}).get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def node_conditions(lab: Lab, *, types: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per node and condition type (``kubectl describe nodes``' Conditions, all nodes at once)."""
    with api_errors(_("listing nodes"), server=lab.server):
        nodes = lab.core.list_node().items
    rows = [{"node": n.metadata.name, "type": c.type, "status": c.status, "reason": c.reason,
             "message": (c.message or "")[:90]}
            for n in nodes for c in n.status.conditions or [] if types is None or c.type in types]
    return pd.DataFrame(rows, columns=["node", "type", "status", "reason", "message"]).sort_values(
        ["node", "type"]).reset_index(drop=True)


def wait_condition(lab: Lab, node: str, kind: str, status: str = "True", *, reason: str | None = None,
                   timeout: float = 30.0) -> dict[str, Any]:
    """Block until ``node`` has condition ``kind`` with ``status`` (and ``reason``); return that condition.

    Same as ``kubectl wait node/NODE --for=condition=KIND=STATUS``.
    """
    def done(obj: dict[str, Any] | None) -> bool:
        cond = node_condition(obj, kind)
        return cond.get("status") == status and (reason is None or cond.get("reason") == reason)

    return node_condition(wait_for(lab, "Node", node, condition=done, timeout=timeout), kind)


def remove_condition(lab: Lab, node: str, cond_type: str, *, timeout: float = 30.0) -> None:
    """Delete every ``cond_type`` condition from ``node``'s status, and return once a fresh read shows none.

    The patch names each condition by its index and tests its type first, so it never deletes another one. Other
    writers (each node's NPD, KWOK's heartbeat) rewrite the list meanwhile; then the test fails (422), and the list is
    read again and the patch retried, as ``kubectl patch --subresource=status`` by hand would be.
    """
    def attempt() -> tuple[bool, str]:
        try:
            conditions = (get(lab, "Node", node).get("status") or {}).get("conditions") or []
        except NotFound:
            return True, "node gone"
        indices = [i for i, c in enumerate(conditions) if c.get("type") == cond_type]
        if not indices:
            return True, "removed"
        ops: list[dict[str, Any]] = []
        for index in reversed(indices):
            ops += [{"op": "test", "path": f"/status/conditions/{index}/type", "value": cond_type},
                    {"op": "remove", "path": f"/status/conditions/{index}"}]
        try:
            with api_errors(_("removing {condition} from {node}").format(condition=cond_type, node=node),
                            server=lab.server):
                lab.core.patch_node_status(node, ops)
        except ManifestError as exc:  # the list changed between our read and our patch
            return False, str(exc)
        return False, "patched; reading it again"

    poll(attempt, timeout=timeout,
         what=lambda seen: _("{condition} still on node {node} after {timeout:.0f}s: {seen}").format(
             condition=cond_type, node=node, timeout=timeout, seen=seen),
         fix=f"kubectl describe node {node}   # " + _("who keeps writing {condition}?").format(condition=cond_type),
         interval=0.2)


def wait_npd_ready(lab: Lab, *, timeout: float = 60.0) -> pd.DataFrame:
    """Block until every node carries NPD's default conditions (its NPD has started and reported); return them."""
    def done(nodes: list[dict[str, Any]]) -> bool:
        return bool(nodes) and all(node_condition(n, c) for n in nodes for c in NPD_CONDITIONS)

    wait_for_set(lab, "Node", namespace="", condition=done, timeout=timeout)
    return node_conditions(lab, types=NPD_CONDITIONS)


def reboot(lab: Lab, node: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Reboot ``node`` as far as NPD can tell: a fresh kernel log, and its NPD starts again (as its pod would
    after a reboot), resetting the permanent conditions to their defaults. Returns the KernelDeadlock condition.
    """
    node_logs.rotate_kernel_log(node)
    # Every permanent condition back to its default, not only KernelDeadlock: a read-only filesystem alone leaves
    # KernelDeadlock False throughout, and waiting on it would return before the NPD had started again.
    wait_for(lab, "Node", node, timeout=timeout, api_version="v1",
             condition=lambda n: all(node_condition(n, c).get("status") == "False" for c in NPD_CONDITIONS))
    return wait_condition(lab, node, "KernelDeadlock", "False", timeout=timeout)


# --- GPU faults, through the lab's GPU exporter (which owns the one GPU state) ------------------------------
# labkit.sim.gpu is imported where it is used: lesson 11 and lesson 08 load this module without needing it.

def exporter_url() -> str:
    """The lab's GPU exporter's ``/metrics`` URL; its other paths (``/nvml``, ``/faults``) sit beside it."""
    url = addons.url("gpu-exporter")
    if url is None:
        raise LabkitError(_("the lab's GPU exporter is not running"), fix="labkit up --with gpu-exporter,prometheus")
    return url


def _gpu_post(node: str, body: dict[str, Any]) -> dict[str, Any]:
    from .sim.gpu.shared import post_fault

    return post_fault(exporter_url().removesuffix("/metrics"), node, body)


def inject_fault(node: str, gpu: int, *, xid: int | None = None, ecc_uncorrected: int = 0) -> dict[str, Any]:
    """Make a GPU of the lab fail as firmware/driver would report it, in the ONE state the exporter owns.

    ``curl -d '{"gpu": 0, "xid": 79}' http://127.0.0.1:PORT/faults/NODE``. XID 48 is a double-bit ECC error (and
    a row remap pending), 64 a failed row remap, 79 the GPU fallen off the bus. Simulated: no board broke."""
    body: dict[str, Any] = {"gpu": gpu, "xid": xid} if xid is not None else {"gpu": gpu,
                                                                           "ecc_uncorrected": ecc_uncorrected}
    return _gpu_post(node, body)


def reset_gpu(node: str, gpu: int, *, wait_s: float = 0.0) -> dict[str, Any]:
    """``nvidia-smi -r -i GPU`` on ``node``: refused while a process uses the GPU (drain first), as the real one is;
    ``wait_s`` waits that long for the drained pod's process to leave first.

    A reset re-initialises the GPU: a lost GPU comes back, volatile ECC counters clear, a pending row remap takes
    effect. It does NOT clear aggregate ECC counts, remapped rows, or a row-remap failure (that board needs RMA)."""
    from .sim.gpu.shared import fetch_state

    deadline = time.monotonic() + wait_s
    while procs := fetch_state(exporter_url().removesuffix("/metrics"), node)["devices"][gpu]["processes"] or []:
        if time.monotonic() >= deadline:
            raise LabkitError(_("GPU {gpu} of {node} is in use by {processes}; nvidia-smi -r refuses").format(
                                  gpu=gpu, node=node, processes=[p["name"] for p in procs]),
                              fix=f"kubectl cordon {node}; kubectl drain {node} --ignore-daemonsets")
        time.sleep(0.5)
    return _gpu_post(node, {"gpu": gpu, "reset": True})


def replace_board(node: str, gpu: int) -> dict[str, Any]:
    """The simulated end of an RMA: a new board in the slot (``{"gpu": G, "replace": true}``), all counters zero."""
    return _gpu_post(node, {"gpu": gpu, "replace": True})


def restore_gpu_settings(node: str, gpu: int) -> dict[str, Any]:
    """A GPU's clocks and power limit back to the board's defaults (``nvidia-smi -rgc -i GPU``, ``-rac`` and ``-pl``
    with the default limit) in the one state the exporter owns; returns its settings."""
    from .sim.gpu.shared import post_settings

    return post_settings(exporter_url().removesuffix("/metrics"), node, {"gpu": gpu, "defaults": True})


def restore_gpu_nodes(lab: Any) -> list[str]:
    """Every simulated GPU gets a fresh board and its default clocks and power limit, and GPU nodes are uncordoned
    (``kubectl uncordon``) and lose a time-slicing label (``kubectl label node N nvidia.com/device-plugin.config-``),
    undoing the faults, ``nvidia-smi -lgc``/``-pl`` and sharing of an earlier run (lesson 12's fault, clock and
    sharing sections and exercise, lesson 11's GPU scenario). Returns the nodes uncordoned."""
    from .sim.gpu.device_plugin import CONFIG_LABEL
    from .sim.gpu.device_plugin import SHARING_STRATEGY as SHARING
    from .sim.gpu.faults import FaultState
    from .sim.gpu.shared import fetch_state

    base = exporter_url().removesuffix("/metrics")
    uncordoned = []
    for node in json.loads(urllib.request.urlopen(f"{base}/nvml", timeout=10).read()):  # noqa: S310 -- loopback
        for gpu, device in enumerate(fetch_state(base, node)["devices"]):
            if device["faults"] != FaultState().__dict__:
                replace_board(node, gpu)
            restore_gpu_settings(node, gpu)
        obj = get(lab, "Node", node, api_version="v1")
        if obj and obj["spec"].get("unschedulable"):
            cordon(lab, node, unschedulable=False)
            uncordoned.append(node)
        if obj and CONFIG_LABEL in (obj["metadata"].get("labels") or {}):
            with api_errors(_("labelling node {node}").format(node=node), server=lab.server):
                lab.core.patch_node(node, {"metadata": {"labels": {CONFIG_LABEL: None}}})
            # The lab's device plugin gives the node its own devices back within seconds: wait, so that the
            # lesson's pods are not placed on replicas that are about to go.
            wait_for(lab, "Node", node, api_version="v1", timeout=30,
                     condition=lambda n: n is not None and n["metadata"]["labels"].get(SHARING) != "time-slicing")
    return uncordoned


def pod_resources(*, namespace: str | None = None) -> pd.DataFrame:
    """Which pod holds which GPU or MIG instance, as the kubelet's pod-resources API reports it.

    Read from the lab's GPU exporter (``curl http://127.0.0.1:PORT/pod-resources``).
    """
    url = exporter_url()
    with urllib.request.urlopen(url.removesuffix("/metrics") + "/pod-resources", timeout=10) as resp:  # noqa: S310
        rows = json.loads(resp.read())
    cols = ["node", "namespace", "pod", "container", "resource", "gpu", "mig_instance", "device_id"]
    frame = pd.DataFrame(rows, columns=cols)
    return frame[frame["namespace"] == namespace].reset_index(drop=True) if namespace else frame
