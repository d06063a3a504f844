"""Lesson 05, node autoscaling (节点伸缩): notebook 05_node_autoscaling's helpers, tables and exercise.

The lab's autoscaler is Karpenter's KWOK provider (the ``karpenter`` add-on); the Cluster Autoscaler that CCE's
autoscaler add-on runs is explained beside it but does not run here. Lesson 05's NodePool taints and labels its
nodes, so only pods that ask for the pool (nodeSelector + toleration) make it grow; :func:`remove_node_pools` puts
the lab back to its topology nodes.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from .. import addons
from ..course import Lesson, LessonRights
from ..course.exercises import Attempt, Exercise
from ..errors import NotFound, WaitTimeout
from ..i18n import _
from ..kube.client import Lab, api_errors
from ..kube.objects import get, live_pods, patch
from ..kube.quantity import optional_quantity

NAMESPACE = "lesson-05"
POOL = "lesson-05"
# The NodePool labels and taints its nodes with this key; pods that want the pool select and tolerate it.
POOL_KEY = "labkit.io/node-pool"
NODEPOOL_LABEL = "karpenter.sh/nodepool"  # Karpenter's own label on every NodeClaim and Node of a pool
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
KARPENTER_API = "karpenter.sh/v1"
KWOK_CLASS_API = "karpenter.kwok.sh/v1alpha1"
ADDON = "karpenter"
BIG_FLAVOR = "c7.2xlarge.2"


def _list(lab: Lab, kind: str, api_version: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
    res = lab.dynamic.resources.get(api_version=api_version, kind=kind)
    with api_errors(_("listing {kind}s").format(kind=kind), server=lab.server):
        return [i.to_dict() for i in res.get(label_selector=label_selector).items]


def _ready(conditions: list[dict[str, Any]] | None, kind: str = "Ready") -> str:
    return next((c.get("status", "Unknown") for c in conditions or [] if c.get("type") == kind), "Unknown")


def nodeclaims_table(lab: Lab, *, pool: str = POOL) -> pd.DataFrame:
    """One row per NodeClaim of ``pool``: flavor, zone, node, ready. Same as ``kubectl get nodeclaims -o wide``."""
    rows = []
    for nc in _list(lab, "NodeClaim", KARPENTER_API, label_selector=f"{NODEPOOL_LABEL}={pool}"):
        labels = nc["metadata"].get("labels") or {}
        status = nc.get("status") or {}
        rows.append({"nodeclaim": nc["metadata"]["name"], "flavor": labels.get(INSTANCE_TYPE, ""),
                     "zone": labels.get("topology.kubernetes.io/zone", ""), "node": status.get("nodeName", ""),
                     "ready": _ready(status.get("conditions")),
                     "deleting": bool(nc["metadata"].get("deletionTimestamp"))})
    cols = ["nodeclaim", "flavor", "zone", "node", "ready", "deleting"]
    return pd.DataFrame(rows, columns=cols).sort_values("nodeclaim").reset_index(drop=True)


def pool_nodes(lab: Lab, *, pool: str = POOL) -> list[Any]:
    """The Nodes Karpenter created for ``pool`` (``kubectl get nodes -l karpenter.sh/nodepool=POOL``)."""
    with api_errors(_("listing nodes"), server=lab.server):
        return lab.core.list_node(label_selector=f"{NODEPOOL_LABEL}={pool}").items


def nodes_by_pool(lab: Lab) -> pd.DataFrame:
    """How many nodes the lab has, by node pool (``kubectl get nodes -L karpenter.sh/nodepool``)."""
    with api_errors(_("listing nodes"), server=lab.server):
        nodes = lab.core.list_node().items
    pools = [(n.metadata.labels or {}).get(NODEPOOL_LABEL, "(topology.yaml)") for n in nodes]
    return pd.Series(pools, name="pool").value_counts().rename("nodes").rename_axis("pool").reset_index()


def scheduling_events(lab: Lab, namespace: str) -> pd.DataFrame:
    """Scheduling events of the namespace's pods, oldest first: who said what about placing them.

    Same as ``kubectl get events -n NS --field-selector involvedObject.kind=Pod --sort-by=.lastTimestamp``.
    """
    with api_errors(_("listing events in {namespace}").format(namespace=namespace), server=lab.server):
        events = lab.core.list_namespaced_event(namespace, field_selector="involvedObject.kind=Pod").items
    rows = [{"reason": e.reason, "from": (e.source.component if e.source else None) or e.reporting_component or "",
             "pod": e.involved_object.name, "message": (e.message or "").split("\n")[0][:110],
             "time": e.last_timestamp or e.event_time or e.metadata.creation_timestamp}
            for e in events if e.reason in ("FailedScheduling", "Nominated", "Scheduled")]
    table = pd.DataFrame(rows, columns=["reason", "from", "pod", "message", "time"])
    return table.sort_values("time", kind="stable").reset_index(drop=True)


def unschedulable_pods(lab: Lab, namespace: str, *, app: str) -> pd.DataFrame:
    """Pods of ``app`` the scheduler marked unschedulable, with its message: what every node autoscaler watches.

    Same as ``kubectl get pods -n NS -l app=APP -o jsonpath='{..conditions[?(@.type=="PodScheduled")]}'``.
    """
    rows = []
    for pod in live_pods(lab, namespace, {"app": app}):
        for cond in pod.status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                rows.append({"pod": pod.metadata.name, "reason": cond.reason, "message": cond.message})
    return pd.DataFrame(rows, columns=["pod", "reason", "message"]).sort_values("pod").reset_index(drop=True)


def wait_unschedulable(lab: Lab, namespace: str, *, app: str, count: int, timeout: float = 30.0) -> pd.DataFrame:
    """Block until ``count`` pods of ``app`` are marked Unschedulable; return them (:func:`unschedulable_pods`)."""
    deadline = time.monotonic() + timeout
    while len(table := unschedulable_pods(lab, namespace, app=app)) < count:
        if time.monotonic() > deadline:
            raise WaitTimeout(_("{found} of {count} pods of {app} are Unschedulable after {timeout:.0f}s").format(
                                  found=len(table), count=count, app=app, timeout=timeout),
                              fix=f"kubectl get pods -n {namespace} -l app={app} -o wide")
        time.sleep(0.25)
    return table


def wait_pool_nodes(lab: Lab, count: int, *, pool: str = POOL, timeout: float = 90.0) -> float:
    """Block until ``pool`` has exactly ``count`` nodes, all Ready; return the seconds it took.

    Same as watching ``kubectl get nodes -l karpenter.sh/nodepool=POOL -w`` until it shows ``count`` Ready nodes.
    """
    start = time.monotonic()
    while True:
        nodes = pool_nodes(lab, pool=pool)
        ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])]
        if len(nodes) == count and len(ready) == count:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise WaitTimeout(_("node pool {pool} has {nodes} nodes ({ready} Ready), not {count}, after "
                                "{timeout:.0f}s").format(pool=pool, nodes=len(nodes), ready=len(ready), count=count,
                                                         timeout=timeout),
                              last_seen=[n.metadata.name for n in nodes],
                              fix=_("kubectl get nodeclaims,nodes -l {label}={pool}; kubectl describe nodepool {pool}; "
                                    "the add-on's log: labkit status").format(label=NODEPOOL_LABEL, pool=pool))
        time.sleep(0.5)


def wait_pool_claims(lab: Lab, count: int, *, pool: str = POOL, timeout: float = 60.0) -> pd.DataFrame:
    """Block until ``pool`` has at least ``count`` Ready NodeClaims and none still launching; return the table.

    Karpenter may open one claim more than the pods need and remove it once empty, and a claim gets its flavor
    label only when it launches, so a table read at once can show a claim with no flavor or not yet Ready.
    Same as watching ``kubectl get nodeclaims -l karpenter.sh/nodepool=POOL -w``.
    """
    deadline = time.monotonic() + timeout
    while True:
        table = nodeclaims_table(lab, pool=pool)
        live = table[~table.deleting]
        if (live.ready == "True").sum() >= count and (live.ready == "True").all():
            return table
        if time.monotonic() > deadline:
            raise WaitTimeout(_("node pool {pool} has {ready} Ready NodeClaims of {claims}, wanted {count} and none "
                                "launching, after {timeout:.0f}s").format(pool=pool, ready=(live.ready == "True").sum(),
                                                                          claims=len(live), count=count,
                                                                          timeout=timeout),
                              last_seen=table.to_dict("records"),
                              fix=f"kubectl get nodeclaims -l {NODEPOOL_LABEL}={pool} -o wide; "
                                  f"kubectl describe nodepool {pool}")
        time.sleep(0.5)


def remove_node_pools(lab: Lab, *, selector: str = f"labkit.io/lesson={NAMESPACE}", timeout: float = 90.0) -> int:
    """Delete lesson 05's NodePools and node classes and wait until their NodeClaims and Nodes are gone.

    Same as ``kubectl delete nodepools,kwoknodeclasses -l labkit.io/lesson=lesson-05 --wait`` followed by
    ``kubectl wait --for=delete nodeclaims,nodes -l karpenter.sh/nodepool``. Returns how many nodes went. While
    Karpenter runs it drains and removes them (its finalizers); when it does not, nobody else would, so the
    finalizers are cleared here and the Nodes deleted directly.
    """
    try:
        pools = [p["metadata"]["name"] for p in _list(lab, "NodePool", KARPENTER_API, label_selector=selector)]
    except (ResourceNotFoundError, NotFound):
        return 0  # Karpenter's CRDs are not installed yet (it never ran on this lab): no pool to remove
    nodes_before = sum(len(pool_nodes(lab, pool=p)) for p in pools)
    running = addons.url(ADDON) is not None
    for kind, api_version in (("NodePool", KARPENTER_API), ("KWOKNodeClass", KWOK_CLASS_API)):
        res = lab.dynamic.resources.get(api_version=api_version, kind=kind)
        with api_errors(_("deleting {kind}s").format(kind=kind), server=lab.server):
            res.delete(label_selector=selector)
    deadline = time.monotonic() + timeout
    for pool in pools:
        claims = lambda pool=pool: _list(lab, "NodeClaim", KARPENTER_API,  # noqa: E731
                                          label_selector=f"{NODEPOOL_LABEL}={pool}")
        res = lab.dynamic.resources.get(api_version=KARPENTER_API, kind="NodeClaim")
        with api_errors(_("deleting NodeClaims"), server=lab.server):
            res.delete(label_selector=f"{NODEPOOL_LABEL}={pool}")
        while claims() or pool_nodes(lab, pool=pool):
            if not running:
                _force_remove(lab, pool)
            if time.monotonic() > deadline:
                raise WaitTimeout(_("node pool {pool}'s NodeClaims or nodes are still there after {timeout:.0f}s")
                                  .format(pool=pool, timeout=timeout),
                                  fix=_("kubectl get nodeclaims,nodes -l {label}={pool}; "
                                        "labkit status (is the karpenter add-on running?)").format(
                                      label=NODEPOOL_LABEL, pool=pool))
            time.sleep(0.5)
    return nodes_before


def _force_remove(lab: Lab, pool: str) -> None:
    """Without Karpenter its finalizers never clear: clear them, so the NodeClaims and Nodes can go."""
    unfinalize = {"metadata": {"finalizers": None}}
    for nc in _list(lab, "NodeClaim", KARPENTER_API, label_selector=f"{NODEPOOL_LABEL}={pool}"):
        res = lab.dynamic.resources.get(api_version=KARPENTER_API, kind="NodeClaim")
        with api_errors(_("clearing NodeClaim finalizers"), server=lab.server):
            res.patch(name=nc["metadata"]["name"], body=unfinalize, content_type="application/merge-patch+json")
    for node in pool_nodes(lab, pool=pool):
        with api_errors(_("removing a pool node"), server=lab.server):
            lab.core.patch_node(node.metadata.name, unfinalize)
            lab.core.delete_node(node.metadata.name)


def _check_render_fits(attempt: Attempt) -> list[str]:
    lab, namespace = attempt.lab, attempt.namespace
    dep = attempt.require("Deployment", "render", api_version="apps/v1", why="run the cell above the exercise")
    spec = dep["spec"]["template"]["spec"]
    if (spec.get("nodeSelector") or {}).get(POOL_KEY) != POOL:
        return [_("keep `render`'s nodeSelector {pool_key}: {pool}: the task is to change the node pool, not to "
                  "move the workload onto other nodes").format(pool_key=POOL_KEY, pool=POOL)]
    pool = get(lab, "NodePool", POOL, api_version=KARPENTER_API)
    if pool is None:
        return [_("NodePool {pool} is gone: apply it again (the cell with `kind: NodePool` in section 2)")
                .format(pool=POOL)]
    problems = []
    pods = live_pods(lab, namespace, dep["spec"]["selector"].get("matchLabels") or {})
    pending = sorted(p.metadata.name for p in pods if not p.spec.node_name)
    if pending:
        flavors = [v for r in pool["spec"]["template"]["spec"].get("requirements", []) if r.get("key") == INSTANCE_TYPE
                   for v in r.get("values", [])]
        problems.append(_("pods still Pending: {pending}; each asks for 6 CPUs and NodePool {pool} may only create "
                          "{flavors}")
                        .format(pending=", ".join(pending), pool=POOL, flavors=", ".join(flavors) or _("any flavor")))
    pool_node_names = {n.metadata.name for n in pool_nodes(lab)}
    elsewhere = sorted(p.metadata.name for p in pods if p.spec.node_name and p.spec.node_name not in pool_node_names)
    if elsewhere:
        problems.append(_("pods placed outside node pool {pool}: {elsewhere}")
                        .format(pool=POOL, elsewhere=', '.join(elsewhere)))
    available = (dep.get("status") or {}).get("availableReplicas") or 0
    if not problems and available < dep["spec"].get("replicas", 1):
        problems.append(_("`render` has {available} of {replicas} replicas available yet")
                        .format(available=available, replicas=dep['spec'].get('replicas', 1)))
    return problems


def _grow_flavors(attempt: Attempt) -> None:
    """Add the 8-vCPU flavor to the pool's instance-type requirement (``kubectl patch nodepool --type=merge``)."""
    pool = get(attempt.lab, "NodePool", POOL, api_version=KARPENTER_API)
    assert pool is not None
    requirements = pool["spec"]["template"]["spec"]["requirements"]
    for req in requirements:
        if req["key"] == INSTANCE_TYPE and BIG_FLAVOR not in req["values"]:
            req["values"].append(BIG_FLAVOR)
    patch(attempt.lab, "NodePool", POOL, api_version=KARPENTER_API, patch_type="merge",
          body={"spec": {"template": {"spec": {"requirements": requirements}}}})


RENDER_FITS = Exercise(
    id="05-render-fits",
    task="Deployment `render` (2 pods, 6 CPUs each) stays Pending: no flavor NodePool `lesson-05` may create is big "
         "enough. Change the node pool (not the workload) so that Karpenter adds a node that fits, and the "
         "scheduler places both pods on nodes of pool `lesson-05`.",
    hint="`kubectl get nodepool lesson-05 -o yaml`: its requirement on node.kubernetes.io/instance-type lists the "
         "flavors it may create; the lab also offers c7.2xlarge.2 (8 vCPUs). Karpenter's own verdict is in "
         "`kubectl get events -n lesson-05 --field-selector reason=FailedScheduling`",
    solution="""kubectl patch nodepool lesson-05 --type=merge -p '{"spec":{"template":{"spec":{"requirements":[
  {"key":"node.kubernetes.io/instance-type","operator":"In","values":["c7.xlarge.2","c7.2xlarge.2"]}]}}}}'
kubectl get nodeclaims -w            # a c7.2xlarge.2 NodeClaim appears, then its node
kubectl -n lesson-05 rollout status deployment/render""",
    check=_check_render_fits,
    solve=_grow_flavors,
)

POOL_CPU_CAP = 8  # the budget the second exercise asks for, in vCPUs
UNDERUSED = "WhenEmptyOrUnderutilized"


def _check_pool_budget(attempt: Attempt) -> list[str]:
    pool = get(attempt.lab, "NodePool", POOL, api_version=KARPENTER_API)
    if pool is None:
        return [_("NodePool {pool} is gone: apply it again (the cell with `kind: NodePool` in section 2)")
                .format(pool=POOL)]
    problems = []
    cap = optional_quantity((pool["spec"].get("limits") or {}).get("cpu"))
    if cap is None or not 0 < cap <= POOL_CPU_CAP:
        problems.append(_("the pool's CPU limit is {cap}: cap it at {pool_cpu_cap} vCPUs (spec.limits)")
                        .format(cap=_("not set") if cap is None else f"{cap:g}", pool_cpu_cap=POOL_CPU_CAP))
    policy = (pool["spec"].get("disruption") or {}).get("consolidationPolicy")
    if policy != UNDERUSED:
        problems.append(_("consolidationPolicy is {policy!r}: Karpenter then removes only empty nodes; the task "
                          "wants under-used nodes consolidated too").format(policy=policy))
    return problems


def _set_budget(attempt: Attempt) -> None:
    patch(attempt.lab, "NodePool", POOL, api_version=KARPENTER_API, patch_type="merge",
          body={"spec": {"limits": {"cpu": str(POOL_CPU_CAP)}, "disruption": {"consolidationPolicy": UNDERUSED}}})


POOL_BUDGET = Exercise(
    id="05-pool-budget",
    task=f"Finance caps node pool `lesson-05`: it may never hold more than {POOL_CPU_CAP} vCPUs, and Karpenter should "
         "also consolidate nodes that are under-used, not only empty ones. Change the NodePool with kubectl.",
    hint="`kubectl explain nodepool.spec.limits` and `kubectl explain nodepool.spec.disruption.consolidationPolicy` "
         "(Karpenter's CRDs carry their documentation); then `kubectl patch nodepool lesson-05 --type=merge -p ...` "
         "or `kubectl edit nodepool lesson-05`",
    solution=f"""kubectl patch nodepool lesson-05 --type=merge -p \\
  '{{"spec":{{"limits":{{"cpu":"{POOL_CPU_CAP}"}},"disruption":{{"consolidationPolicy":"{UNDERUSED}"}}}}}}'
kubectl get nodepool lesson-05 -o jsonpath='{{.spec.limits}} {{.spec.disruption.consolidationPolicy}}'""",
    check=_check_pool_budget,
    solve=_set_budget,
)

EXERCISES = [RENDER_FITS, POOL_BUDGET]


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "05_node_autoscaling",
    "pods that fit no node (FailedScheduling), a node pool, scale-up and scale-down by a real node "
    "autoscaler (Karpenter; the Cluster Autoscaler's model beside it) (节点伸缩)",
    LessonRights("create/delete NodePools, KWOKNodeClasses (cluster-scoped); nodes; the Karpenter add-on",
                 refused="it creates NodePools and KWOKNodeClasses and watches Karpenter add and remove "
                         "Nodes: cluster-scoped objects every student shares"),
    exercises=tuple(EXERCISES),
)
