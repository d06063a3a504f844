"""The embedded kubelet's checks: what KWOK's Stages cannot see, decided from the other objects and the image catalog.

KWOK's Stages (``labkit/data/stages``) play the kubelet from the pod alone. Whether a ConfigMap exists, whether the
image has the program a ``command`` names, when an init container's ``until nslookup myservice`` loop ends: those
need other objects. This process watches pods, ConfigMaps, Secrets and Services and walks each pod bound to a node
the way kubelet 1.36's ``SyncPod`` does, in its order:

1. volumes (``configMap``, ``secret``, ``projected``): one that cannot be set up -> ``FailedMount`` events, the pod
   stays ``ContainerCreating``;
2. init containers, one at a time, each to completion: ``Init:0/2`` while one runs (its ``sleep`` seconds, or until
   the Service its ``until nslookup NAME`` loop waits for exists), ``Init:Error`` / ``Init:CrashLoopBackOff`` when
   its command exits non-zero, ``Init:ErrImagePull`` when its image does not exist; native sidecars
   (``restartPolicy: Always``) start and keep running;
3. each container: its environment (``env[].valueFrom``, ``envFrom``) -> ``CreateContainerConfigError``; its
   program (``command[0]``) in the image, and on a GPU node the NVIDIA runtime's check of the image's
   ``NVIDIA_REQUIRE_CUDA`` against the node's driver (:mod:`labkit.sim.nvidia_toolkit`) -> ``StartError``
   (exit code 128), then ``CrashLoopBackOff``.

For every pod it writes the annotation ``sim.labkit.io/kubelet``: ``passed`` when nothing stands in the way (the
Stages then pull and start the containers, as before), ``held`` while one of the above holds it; then this process
writes the pod's status and the kubelet's events itself, retrying as the kubelet does, and hands the pod to the
Stages (``passed``, containers ``ContainerCreating``) once the fault clears: create the missing ConfigMap and the
pod starts by itself. The Stages act only on pods that carry the annotation (``labkit.cluster.stages``), so a pod
waits for this process as a real pod waits for its node's kubelet.

The same process plays the container runtime (:mod:`labkit.sim.runtime`): it follows the starts the Stages report,
gives each container its sandbox, runs busybox programs for real (their exit then ends the container:
``sim.labkit.io/runtime`` and ``sim.labkit.io/exit``), writes what they print, and runs labkit's kubelet server on
the nodes' kubelet port for ``kubectl exec`` and ``port-forward`` (:func:`start_kubelet_server`,
:mod:`labkit.sim.responder`).

Run as ``python -m labkit.sim.kubelet --kubeconfig K --port P`` (the add-on ``kubelet-checks``, started with the
embedded cluster); ``/healthz``, ``/pods`` (what it holds, and why) and ``/runtime`` on 127.0.0.1:P. The functions
above the daemon are pure; the unit tests use them without a cluster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import heapq
import json
import logging
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cluster.stages import (
    EXIT_ANNOTATION,
    KUBELET_ANNOTATION,
    OOM_ANNOTATION,
    RUNTIME_ANNOTATION,
    Catalog,
    load_catalog,
    normalise,
    pull_error,
)
from ..kube.watch import list_and_watch
from ..paths import state_dir, write_atomic
from . import nvidia_toolkit, service_net
from .declared import oom_killed
from .loopback_http import JSON, Answer, run_daemon
from .responder import Responder, site_on
from .runtime import Runtime
from .sandbox import CLUSTER_DNS, Objects, object_data, runtime_dir

log = logging.getLogger("labkit.sim.kubelet")

HELD_FILE = "held.json"  # in the process's folder: the pods it holds, for `labkit status`

Obj = dict[str, Any]

PASSED, HELD = "passed", "held"
# The kubelet retries what failed at its next sync of the pod; a config error every 10 s here.
CONFIG_RETRY_S = 10.0
# The volume manager's back-off: 0.5 s doubling to 2m2s (exponentialbackoff.maxDurationBeforeRetry).
MOUNT_FIRST_S, MOUNT_MAX_S = 0.5, 122.0
# A missing object is reported only when it is still missing this long after the pod was seen: the kubelet's caches
# and ours lag the API by a moment, and a namespace's kube-root-ca.crt appears just after the namespace.
GRACE_S = 1.0
# Crash-loop and image-pull back-off: 10 s doubling, at most 5 minutes (the kubelet's).
BACKOFF_FIRST_S, BACKOFF_MAX_S = 10.0, 300.0
# An init container whose command runs for no stated time still takes a moment (and shows Init:0/N meanwhile).
INIT_MIN_S = 1.0
API_TIMEOUT_S = 10
# Pods last: the other caches are filled before the first pod is decided.
WATCHED = ("nodes", "configmaps", "secrets", "services", "pods")
RUNC_PREFIX = ("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
               "failed: unable to start container process: error during container init: ")


# --- what the kubelet checks (pure)


@dataclass
class Namespace:
    """What the kubelet can read in one namespace: ConfigMaps and Secrets (name -> keys) and Service names."""

    configmaps: dict[str, set[str]] = field(default_factory=dict)
    secrets: dict[str, set[str]] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    # The same objects' contents, for the containers' environment and volumes (labkit.sim.sandbox).
    objects: Objects = field(default_factory=Objects)


def object_keys(obj: Obj) -> set[str]:
    return set(obj.get("data") or {}) | set(obj.get("binaryData") or {}) | set(obj.get("stringData") or {})


def env_problem(container: Obj, namespace: str, ns: Namespace) -> str | None:
    """Why the kubelet cannot make this container's environment, in its words (``makeEnvironmentVariables``:
    ``envFrom`` first, then ``env``, in order); None when it can."""
    for source in container.get("envFrom") or []:
        for kind, objects in (("configMapRef", ns.configmaps), ("secretRef", ns.secrets)):
            ref = source.get(kind)
            if ref and ref.get("name") not in objects and not ref.get("optional"):
                return f'{"configmap" if kind == "configMapRef" else "secret"} "{ref.get("name")}" not found'
    for env in container.get("env") or []:
        value_from = env.get("valueFrom") or {}
        for kind, objects, title in (("configMapKeyRef", ns.configmaps, "ConfigMap"),
                                     ("secretKeyRef", ns.secrets, "Secret")):
            ref = value_from.get(kind)
            if not ref or ref.get("optional"):
                continue
            keys = objects.get(ref.get("name"))
            if keys is None:
                return f'{title.lower()} "{ref.get("name")}" not found'
            if ref.get("key") not in keys:
                return f"couldn't find key {ref.get('key')} in {title} {namespace}/{ref.get('name')}"
    return None


def _source_problem(kind: str, name: str, items: list[Obj] | None, optional: bool, objects: dict[str, set[str]],
                    ) -> str | None:
    keys = objects.get(name)
    if keys is None:
        return None if optional else f'{kind} "{name}" not found'
    for item in items or []:
        if item.get("key") not in keys and not optional:
            return (f"configmap references non-existent config key: {item.get('key')}" if kind == "configmap"
                    else f"references non-existent secret key: {item.get('key')}")
    return None


def mount_problems(pod: Obj, ns: Namespace) -> list[tuple[str, str]]:
    """(volume, why) for each volume the kubelet cannot set up: a missing ConfigMap, Secret or key."""
    found = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        sources = []
        if cm := volume.get("configMap"):
            sources.append(("configmap", cm))
        if secret := volume.get("secret"):
            sources.append(("secret", {**secret, "name": secret.get("secretName")}))
        for projected in (volume.get("projected") or {}).get("sources") or []:
            if projected.get("configMap"):
                sources.append(("configmap", projected["configMap"]))
            if projected.get("secret"):
                sources.append(("secret", projected["secret"]))
        for kind, src in sources:
            why = _source_problem(kind, src.get("name"), src.get("items"), bool(src.get("optional")),
                                  ns.configmaps if kind == "configmap" else ns.secrets)
            if why:
                found.append((volume["name"], why))
                break
    return found


def start_problem(container: Obj, catalog: Catalog, node_labels: Mapping[str, str] | None = None) -> str | None:
    """What runc says when the container cannot start (StartError): the NVIDIA runtime hook refuses it on that node
    (``node_labels``: the node's, GPU feature discovery's among them), or its program is not in the image; None when
    it starts."""
    if hook := nvidia_toolkit.start_problem(container, catalog.image_env(container.get("image", "")), node_labels):
        return f"{RUNC_PREFIX}{hook}"
    command = container.get("command") or []
    if not command:
        return None  # the image's own entrypoint
    program = str(command[0])
    mounts = [m.get("mountPath", "") for m in container.get("volumeMounts") or []]
    if catalog.has_program(container.get("image", ""), program, mounts) is not False:
        return None
    detail = (f'exec: "{program}": stat {program}: no such file or directory' if program.startswith("/")
              else f'exec: "{program}": executable file not found in $PATH')
    return f"{RUNC_PREFIX}{detail}: unknown"


def command_line(container: Obj) -> str:
    return " ".join(str(w) for w in [*(container.get("command") or []), *(container.get("args") or [])])


def exit_code(line: str) -> int | None:
    """The stages' crash rule: a command with ``exit N`` (N >= 1) exits N; one that is just ``false`` exits 1."""
    if m := re.search(r"\bexit +([1-9][0-9]*)", line):
        return int(m.group(1))
    return 1 if line.strip() == "false" else None


def seconds_of_sleep(line: str) -> float:
    return sum(float(s) for s in re.findall(r"\bsleep +([0-9]+(?:\.[0-9]+)?)\b", line))


@dataclass(frozen=True)
class InitRun:
    """What an init container does once started: ``runs`` for ``seconds``, then exits ``code``; or ``waits`` until
    the Service ``service`` exists; or is a native ``sidecar``."""

    kind: str
    seconds: float = 0.0
    code: int = 0
    service: str = ""


def init_run(container: Obj) -> InitRun:
    if container.get("restartPolicy") == "Always":
        return InitRun("sidecar")
    line = command_line(container)
    # The documentation's `until nslookup myservice.$(cat .../namespace).svc.cluster.local; do ...; done`.
    if m := re.search(r"\buntil +nslookup +([a-z0-9][a-z0-9-]*)", line):
        return InitRun("waits", service=m.group(1))
    code = exit_code(line)
    before_exit = line.split("exit", 1)[0] if code is not None else line
    return InitRun("runs", max(INIT_MIN_S, seconds_of_sleep(before_exit)), code or 0)


def backoff(restarts: int) -> float:
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** restarts)


def backoff_text(seconds: float) -> str:
    """As Go prints a duration: 10s, 1m20s, 5m0s."""
    s = int(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_verdict(pod: Obj, ns: Namespace, catalog: Catalog, node_labels: Mapping[str, str] | None = None) -> str:
    """``passed`` when the Stages can run the pod as it is; ``held`` when this process must walk it."""
    spec = pod.get("spec") or {}
    if mount_problems(pod, ns):
        return HELD
    if any(init_run(c).kind != "sidecar" for c in spec.get("initContainers") or []):
        return HELD
    for c in spec.get("containers") or []:
        if not catalog.exists(c.get("image", "")):
            return PASSED  # the pull fails first: the Stages' ErrImagePull
        if env_problem(c, pod["metadata"]["namespace"], ns) or start_problem(c, catalog, node_labels):
            return HELD
    return PASSED


# --- one held pod, walked step by step


@dataclass
class Walk:
    """Where the kubelet is with one held pod: its phase, the init container it runs, restart counts, event counts."""

    uid: str
    namespace: str
    name: str
    seen: float
    stage: str = "mount"            # mount -> init -> main -> done
    init: int = 0                   # index of the init container being handled
    started: float | None = None    # when that init container started (monotonic), None before
    restarts: dict[str, int] = field(default_factory=dict)
    # (container, reason, message) -> (Event name, count, first timestamp): repeats raise the count, as the recorder.
    events: dict[tuple[str, str, str], tuple[str, int, str]] = field(default_factory=dict)
    mount_failures: int = 0
    due: float = 0.0                # the next volume set-up attempt (monotonic)
    why: str = ""                   # for /pods and the log
    # container name -> the status last written; its key `_due` (not written) says when to try again (monotonic).
    statuses: dict[str, Obj] = field(default_factory=dict)
    init_statuses: dict[str, Obj] = field(default_factory=dict)

    def pulled(self, container: str) -> bool:
        """Whether this container's image was pulled already (events are keyed container, reason, message)."""
        return any(k[0] == container and k[1] == "Pulled" for k in self.events)


@dataclass
class Step:
    """What one step writes: the status fields, the events (type, reason, container, message), when to look again."""

    status: Obj
    events: list[tuple[str, str, str, str]]
    again_in: float | None
    release: bool = False


def _waiting(c: Obj, reason: str, message: str | None = None, restarts: int = 0, last: Obj | None = None) -> Obj:
    state: Obj = {"reason": reason, **({"message": message} if message else {})}
    status = {"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False,
              "restartCount": restarts, "state": {"waiting": state}}
    if last:
        status["lastState"] = {"terminated": last}
    return status


def _image_id(image: str) -> str:
    ref = normalise(image)
    return f"{ref.repo}@sha256:{hashlib.sha256(ref.ref.encode()).hexdigest()}"


def _container_id(uid: str, container: str, restarts: int) -> str:
    """One container start's ID, made as the Stages make theirs (a hash of pod, container and start)."""
    return "kwok://" + hashlib.sha256(f"{uid}/{container}/{restarts}".encode()).hexdigest()


def _running(c: Obj, uid: str, restarts: int, since: str, *, ready: bool) -> Obj:
    return {"name": c["name"], "image": normalise(c["image"]).ref, "imageID": _image_id(c["image"]),
            "containerID": _container_id(uid, c["name"], restarts), "ready": ready, "started": True,
            "restartCount": restarts, "state": {"running": {"startedAt": since}}}


def _terminated(c: Obj, uid: str, restarts: int, code: int, reason: str, started: str, message: str = "") -> Obj:
    term = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now_iso(),
            "containerID": _container_id(uid, c["name"], restarts)}
    if message:
        term["message"] = message
    return term


def _pull_events(c: Obj, catalog: Catalog, first: bool) -> list[tuple[str, str, str, str]]:
    """The kubelet's pull events: a pull the first time (the image is then on the node), `already present` after."""
    image = c["image"]
    policy = c.get("imagePullPolicy") or ("Always" if normalise(image).tag == "latest" else "IfNotPresent")
    if first or policy == "Always":
        ms = catalog.pull_ms(image)
        took = f"{ms}ms" if ms < 1000 else f"{ms / 1000:g}s"
        return [("Normal", "Pulling", c["name"], f'Pulling image "{image}"'),
                ("Normal", "Pulled", c["name"], f'Successfully pulled image "{image}" in {took} ({took} including '
                                                f'waiting). Image size: {catalog.size(image)} bytes.')]
    return [("Normal", "Pulled", c["name"],
             f'Container image "{image}" already present on machine and can be accessed by the pod')]


class Kubelet:
    """Walks held pods: decides each step from the pod, its namespace's objects, its node's labels and the catalog
    (no API calls)."""

    def __init__(self, catalog: Catalog, node_labels: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.catalog = catalog
        self.node_labels = node_labels if node_labels is not None else {}

    def _start_problem(self, pod: Obj, c: Obj) -> str | None:
        return start_problem(c, self.catalog, self.node_labels.get(pod["spec"].get("nodeName", "")))

    def step(self, walk: Walk, pod: Obj, ns: Namespace, now: float) -> Step:
        spec = pod["spec"]
        events: list[tuple[str, str, str, str]] = []
        if walk.stage == "mount":
            problems = mount_problems(pod, ns)
            if problems:
                walk.why = "; ".join(f"volume {v}: {w}" for v, w in problems)
                wait = max(walk.seen + GRACE_S, walk.due) - now
                if wait > 0.05:  # not yet time to report (or looked at early because another object changed)
                    return self._status(walk, pod, mounting=True, events=[], again_in=wait)
                walk.mount_failures += 1
                events = [("Warning", "FailedMount", "", f'MountVolume.SetUp failed for volume "{v}" : {w}')
                          for v, w in problems]
                delay = min(MOUNT_MAX_S, MOUNT_FIRST_S * 2 ** walk.mount_failures)
                walk.due = now + delay
                return self._status(walk, pod, mounting=True, events=events, again_in=delay)
            walk.stage = "init"
        if walk.stage == "init":
            inits = spec.get("initContainers") or []
            while walk.init < len(inits):
                c = inits[walk.init]
                result = self._init_step(walk, pod, c, ns, now, events)
                if result is not None:
                    return result
                walk.init += 1
                walk.started = None
            walk.stage = "main"
        return self._main_step(walk, pod, ns, now, events)

    # -- init containers
    def _init_step(self, walk: Walk, pod: Obj, c: Obj, ns: Namespace, now: float,
                   events: list[tuple[str, str, str, str]]) -> Step | None:
        """One init container: None once it is done (completed, or a sidecar started); else the step to write."""
        name, uid = c["name"], pod["metadata"]["uid"]
        restarts = walk.restarts.get(name, 0)
        run = init_run(c)
        if walk.started is None:  # not started yet: pull, config, program
            prev = walk.init_statuses.get(name) or {}
            if now < prev.get("_due", 0.0) - 0.05:  # looked at early (another object changed): wait, unless fixed
                reason = prev["state"].get("waiting", {}).get("reason")
                if not (reason == "CreateContainerConfigError" and not env_problem(c, walk.namespace, ns)):
                    return self._status(walk, pod, events=events, again_in=prev["_due"] - now)
            if not self.catalog.exists(c["image"]):
                return self._pull_failed(walk, pod, c, events, init=True)
            if why := env_problem(c, walk.namespace, ns):
                walk.why = f"init container {name}: {why}"
                events += [*_pull_events(c, self.catalog, not walk.pulled(name)),
                           ("Warning", "Failed", name, f"Error: {why}")]
                walk.init_statuses[name] = {**_waiting(c, "CreateContainerConfigError", why, restarts),
                                            "_due": now + CONFIG_RETRY_S}
                return self._status(walk, pod, events=events, again_in=CONFIG_RETRY_S)
            events += _pull_events(c, self.catalog, restarts == 0)
            events.append(("Normal", "Created", name, "Container created"))
            if why := self._start_problem(pod, c):
                walk.why = f"init container {name}: {why}"
                events.append(("Warning", "Failed", name, f"Error: {why}"))
                return self._crashed(walk, pod, c, 128, "StartError", "1970-01-01T00:00:00Z", why, events,
                                     init=True)
            events.append(("Normal", "Started", name, "Container started"))
            walk.started = now
            walk.init_statuses[name] = _running(c, uid, restarts, now_iso(), ready=run.kind == "sidecar")
            if run.kind == "sidecar":
                return None
            walk.why = (f"init container {name} waits for Service {run.service}" if run.kind == "waits"
                        else f"init container {name} runs")
            return self._status(walk, pod, events=events, again_in=run.seconds if run.kind == "runs" else None)
        if run.kind == "sidecar":
            return None
        started_at = walk.init_statuses[name]["state"].get("running", {}).get("startedAt", now_iso())
        if run.kind == "waits":
            if run.service not in ns.services:
                return self._status(walk, pod, events=events, again_in=None)
            code = 0
        else:
            if now - walk.started < run.seconds - 0.05:
                return self._status(walk, pod, events=events, again_in=run.seconds - (now - walk.started))
            code = run.code
        if code == 0:
            walk.init_statuses[name] = {**walk.init_statuses[name], "ready": False, "started": False,
                                        "state": {"terminated": _terminated(c, uid, restarts, 0, "Completed",
                                                                            started_at)}}
            return None
        walk.why = f"init container {name} exited with code {code}"
        return self._crashed(walk, pod, c, code, "Error", started_at, "", events, init=True)

    # -- containers
    def _main_step(self, walk: Walk, pod: Obj, ns: Namespace, now: float,
                   events: list[tuple[str, str, str, str]]) -> Step:
        containers = pod["spec"]["containers"]
        blocked = False
        whys = []
        for c in containers:
            name, restarts = c["name"], walk.restarts.get(c["name"], 0)
            if not self.catalog.exists(c["image"]):
                continue  # the Stages' pull machinery reports it once the pod is handed over
            status = walk.statuses.get(name)
            if status and status["state"].get("running"):
                continue
            if status and "terminated" in status["state"] and pod["spec"].get("restartPolicy") == "Never":
                blocked = True
                continue
            due = status.get("_due", 0.0) if status else 0.0
            why = env_problem(c, walk.namespace, ns)
            waits_config = bool(status) and status["state"].get("waiting", {}).get("reason") == \
                "CreateContainerConfigError"
            if now < due - 0.05 and not (waits_config and not why):
                blocked = True
                continue
            first_pull = not walk.pulled(name)
            if why:
                blocked = True
                whys.append(f"container {name}: {why}")
                events += [*_pull_events(c, self.catalog, first_pull), ("Warning", "Failed", name, f"Error: {why}")]
                walk.statuses[name] = {**_waiting(c, "CreateContainerConfigError", why, restarts),
                                       "_due": now + CONFIG_RETRY_S}
                continue
            if why := self._start_problem(pod, c):
                blocked = True
                whys.append(f"container {name}: {why}")
                events += [*_pull_events(c, self.catalog, first_pull),
                           ("Normal", "Created", name, "Container created"), ("Warning", "Failed", name,
                                                                             f"Error: {why}")]
                self._crashed(walk, pod, c, 128, "StartError", "1970-01-01T00:00:00Z", why, events, init=False)
                continue
            walk.statuses.pop(name, None)
        if not blocked:
            walk.stage = "done"
            return self._status(walk, pod, events=events, again_in=None, release=True)
        # The other containers start as the kubelet starts them (SyncPod goes on past one container's error).
        for c in containers:
            if c["name"] not in walk.statuses and self.catalog.exists(c["image"]):
                events += [*_pull_events(c, self.catalog, True), ("Normal", "Created", c["name"], "Container created"),
                           ("Normal", "Started", c["name"], "Container started")]
                walk.statuses[c["name"]] = _running(c, walk.uid, 0, now_iso(), ready=not c.get("readinessProbe"))
        walk.why = "; ".join(whys) or walk.why
        dues = [s["_due"] for s in walk.statuses.values() if s.get("_due")]
        return self._status(walk, pod, events=events, again_in=max(0.1, min(dues) - now) if dues else None)

    # -- shared pieces
    def _crashed(self, walk: Walk, pod: Obj, c: Obj, code: int, reason: str, started: str, message: str,
                 events: list[tuple[str, str, str, str]], *, init: bool) -> Step:
        """A container that exited (or never started): terminated, then CrashLoopBackOff unless it is not restarted."""
        name, uid = c["name"], pod["metadata"]["uid"]
        restarts = walk.restarts.get(name, 0)
        policy = pod["spec"].get("restartPolicy", "Always")
        term = _terminated(c, uid, restarts, code, reason, started, message)
        table = walk.init_statuses if init else walk.statuses
        if policy == "Never":
            table[name] = {**_waiting(c, reason, None, restarts), "state": {"terminated": term}}
            return self._status(walk, pod, events=events, again_in=None, failed=True)
        wait = backoff(restarts)
        pod_ref = f"{walk.name}_{walk.namespace}({uid})"
        message_wait = f"back-off {backoff_text(wait)} restarting failed container={name} pod={pod_ref}"
        table[name] = {**_waiting(c, "CrashLoopBackOff", message_wait, restarts, last=term),
                       "_due": time.monotonic() + wait}
        events.append(("Warning", "BackOff", name, f"Back-off restarting failed container {name} in pod {pod_ref}"))
        walk.restarts[name] = restarts + 1
        if init:
            walk.started = None
        return self._status(walk, pod, events=events, again_in=wait)

    def _pull_failed(self, walk: Walk, pod: Obj, c: Obj, events: list[tuple[str, str, str, str]], *,
                     init: bool) -> Step:
        name = c["name"]
        attempt = walk.restarts.get(f"pull:{name}", 0)
        err = pull_error(self.catalog, c["image"])
        walk.why = f"init container {name}: image {c['image']}: {err}"
        events += [("Normal", "Pulling", name, f'Pulling image "{c["image"]}"'),
                   ("Warning", "Failed", name, f'Failed to pull image "{c["image"]}": {err}'),
                   ("Warning", "Failed", name, "Error: ErrImagePull"),
                   ("Normal", "BackOff", name, f'Back-off pulling image "{c["image"]}"'),
                   ("Warning", "Failed", name, "Error: ImagePullBackOff")]
        walk.restarts[f"pull:{name}"] = attempt + 1
        waiting = f'Back-off pulling image "{c["image"]}": ErrImagePull: {err}'
        (walk.init_statuses if init else walk.statuses)[name] = {**_waiting(c, "ImagePullBackOff", waiting),
                                                                 "_due": time.monotonic() + backoff(attempt)}
        return self._status(walk, pod, events=events, again_in=backoff(attempt))

    def _status(self, walk: Walk, pod: Obj, *, events: list[tuple[str, str, str, str]], again_in: float | None,
                mounting: bool = False, release: bool = False, failed: bool = False) -> Step:
        spec = pod["spec"]
        inits = spec.get("initContainers") or []
        init_statuses = []
        for c in inits:
            st = walk.init_statuses.get(c["name"])
            if st is None or mounting:
                st = _waiting(c, "PodInitializing")
            init_statuses.append({k: v for k, v in st.items() if not k.startswith("_")})
        initialized = walk.stage in ("main", "done") or not any(init_run(c).kind != "sidecar" for c in inits)
        statuses = []
        for c in spec["containers"]:
            st = walk.statuses.get(c["name"])
            if release or st is None:
                reason = "ContainerCreating" if (initialized or release) else "PodInitializing"
                st = _waiting(c, reason, restarts=walk.restarts.get(c["name"], 0) if not release else 0)
            statuses.append({k: v for k, v in st.items() if not k.startswith("_")})
        now = now_iso()
        unready = [s["name"] for s in statuses if not s.get("ready")]
        incomplete = [s["name"] for s, c in zip(init_statuses, inits, strict=True)
                      if not s["state"].get("terminated", {}).get("exitCode") == 0 and init_run(c).kind != "sidecar"]
        conditions = [
            {"type": "PodReadyToStartContainers", "status": "False" if mounting else "True"},
            {"type": "Initialized", "status": "True" if initialized or release else "False",
             **({} if initialized or release else {"reason": "ContainersNotInitialized",
                                                   "message": f"containers with incomplete status: "
                                                              f"[{' '.join(incomplete)}]"})},
            {"type": "Ready", "status": "False" if unready else "True",
             **({"reason": "ContainersNotReady", "message": f"containers with unready status: [{' '.join(unready)}]"}
                if unready else {})},
            {"type": "ContainersReady", "status": "False" if unready else "True",
             **({"reason": "ContainersNotReady", "message": f"containers with unready status: [{' '.join(unready)}]"}
                if unready else {})},
        ]
        status: Obj = {"conditions": conditions, "containerStatuses": statuses, "phase": self._phase(pod, statuses,
                                                                                                     failed)}
        if inits:
            status["initContainerStatuses"] = init_statuses
        for cond in conditions:
            cond["lastTransitionTime"] = now
        return Step(status, events, again_in, release)

    @staticmethod
    def _phase(pod: Obj, statuses: list[Obj], failed: bool) -> str:
        """The kubelet's getPhase, for what this process writes."""
        if failed:
            return "Failed"
        running = sum(1 for s in statuses if s["state"].get("running"))
        restarting = sum(1 for s in statuses if s["state"].get("waiting") and s.get("lastState"))
        waiting = sum(1 for s in statuses if s["state"].get("waiting") and not s.get("lastState"))
        if waiting:
            return "Pending"
        if running or (restarting and pod["spec"].get("restartPolicy", "Always") != "Never"):
            return "Running"
        return "Pending"


# --- the daemon: list+watch, one worker, the API writes


def event_name(pod_name: str) -> str:
    """The pod's name and 16 hex digits of the time, as the recorder names Events: the API lists Events of the same
    second (its timestamps' precision) by name, so names that grow keep the kubelet's order (the Stages' do too)."""
    return f"{pod_name}.{time.time_ns():016x}"


class Daemon:
    """Watches pods, ConfigMaps, Secrets and Services; decides each new pod's verdict and walks the held ones."""

    def __init__(self, *, kubeconfig: str, catalog: Catalog, held_file: Path | None = None) -> None:
        from kubernetes import client

        from ..kube.client import api_client  # here: importing this module stays light (`labkit status`)

        self.api_client = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.node_labels: dict[str, dict[str, str]] = {}  # node name -> labels (the NVIDIA runtime's check reads them)
        self.kubelet = Kubelet(catalog, self.node_labels)
        self.catalog = catalog
        self.namespaces: dict[str, Namespace] = {}
        self.pods: dict[str, Obj] = {}          # uid -> latest pod
        self.walks: dict[str, Walk] = {}        # uid -> held pod's walk
        # Pods handed to the Stages (at once, or after a walk): a watch event older than the hand-over still says
        # `held` (or nothing), and must not start a new walk (uid -> True until the pod goes).
        self.released: dict[str, bool] = {}
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self._kinds_synced: set[str] = set()
        self._lock = threading.Condition()
        self._due: list[tuple[float, str]] = []
        self._now: set[str] = set()
        self.held_file = held_file
        self._held_written: list[Obj] | None = None
        self.gone: list[Obj] = []               # pods deleted since the worker last looked
        self._master: Obj | None = None         # default/kubernetes: every container's KUBERNETES_* variables
        self.runtime: Runtime | None = None     # what runs inside the containers (attach_runtime)
        self._runtime_todo: dict[str, tuple[Obj, bool]] = {}  # uid -> (latest pod, deleted?), for the runtime
        self._runtime_ready = threading.Condition()

    def attach_runtime(self) -> Runtime:
        """Run what is inside the containers too (:mod:`labkit.sim.runtime`), with the ``Logs`` objects it makes."""
        from kubernetes import client

        self.custom = client.CustomObjectsApi(self.api_client)
        self.discovery = client.DiscoveryV1Api(self.api_client)
        self.runtime = Runtime(self.catalog, apply_logs=self._apply_logs, claim_dir=self._claim_dir,
                               on_exit=self._exited, spool=service_net.Spool(self._network_request))
        threading.Thread(target=self._runtime_loop, name="runtime", daemon=True).start()
        return self.runtime

    # -- ephemeral containers (`kubectl debug`): the Stages do not know them, so the kubelet process runs them whole
    def _start_ephemeral(self, pod: Obj) -> None:
        """Start the ephemeral containers that have no status yet: pull, create, start, as the kubelet does."""
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        statuses = list(status.get("ephemeralContainerStatuses") or [])
        new = [c for c in spec.get("ephemeralContainers") or [] if c["name"] not in {s["name"] for s in statuses}]
        if not new or status.get("phase") != "Running":
            return
        walk = self.walks.get(meta["uid"]) or Walk(meta["uid"], meta["namespace"], meta["name"], seen=time.monotonic())
        events: list[tuple[str, str, str, str]] = []
        for c in new:
            if not self.catalog.exists(c["image"]):
                message = pull_error(self.catalog, c["image"])
                statuses.append({"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                                 "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull",
                                                                          "message": message}}})
                events += [("Normal", "Pulling", c["name"], f'Pulling image "{c["image"]}"'),
                           ("Warning", "Failed", c["name"], f'Failed to pull image "{c["image"]}": {message}')]
                continue
            running = _running(c, meta["uid"], 0, now_iso(), ready=False)
            running["started"] = False  # what the kubelet reports for an ephemeral container
            statuses.append(running)
            events += [*_pull_events(c, self.catalog, True),
                       ("Normal", "Created", c["name"], "Container created"),
                       ("Normal", "Started", c["name"], "Container started")]
        self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], [
            {"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
            {"op": "add", "path": "/status/ephemeralContainerStatuses", "value": statuses}],
            _request_timeout=API_TIMEOUT_S)
        for etype, reason, container, message in events:
            self._event(pod, walk, etype, reason, container, message, init=False, ephemeral=True)

    def _ephemeral_ended(self, pod: Obj, container: str, started_at: str, code: int) -> None:
        meta = pod["metadata"]
        statuses = (pod.get("status") or {}).get("ephemeralContainerStatuses") or []
        index = next((i for i, s in enumerate(statuses) if s["name"] == container), None)
        if index is None:
            return
        term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started_at,
                "finishedAt": now_iso(), "containerID": statuses[index].get("containerID", "")}
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], [
                {"op": "test", "path": f"/status/ephemeralContainerStatuses/{index}/name", "value": container},
                {"op": "replace", "path": f"/status/ephemeralContainerStatuses/{index}/state",
                 "value": {"terminated": term}}], _request_timeout=API_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the pod went meanwhile
            log.info("%s/%s %s: end not recorded: %s", meta["namespace"], meta["name"], container, exc)

    # -- the Service network, as the sandboxes' wget, curl and nslookup reach it (labkit.sim.service_net)
    def _network_request(self, uid: str, argv: list[str]) -> service_net.Reply:
        pod = self.pods.get(uid)
        if pod is None or not argv:
            return service_net.Reply(err="the pod is gone\n", code=1)
        namespace = pod["metadata"]["namespace"]
        with self._lock:
            services = {ns: dict(each.objects.services) for ns, each in self.namespaces.items()}
            pods = list(self.pods.values())
        if self._master is not None:
            services.setdefault("default", {}).setdefault("kubernetes", self._master)

        def resolve_name(name: str) -> service_net.Target | None:
            return service_net.resolve(name, namespace, services, pods)

        def resolve_host(name: str) -> service_net.Target | None:  # /etc/hosts first, as libc resolves
            return service_net.from_hosts_file(name, pod) or resolve_name(name)

        def fetch(target: service_net.Target, port: int, path: str, agent: str) -> tuple[int, bytes] | str:
            return self._fetch(pod, target, port, path, agent)

        program, args = argv[0], argv[1:]
        if program == "nslookup":
            return service_net.nslookup(args, namespace, resolve_name, CLUSTER_DNS)
        if program == "curl":
            return service_net.curl(args, namespace, resolve_host, fetch)
        return service_net.wget(args, namespace, resolve_host, fetch)

    def _fetch(self, client_pod: Obj, target: service_net.Target, port: int, path: str,
               agent: str) -> tuple[int, bytes] | str:
        """One GET through the Service network: to a ready endpoint of the Service, or to the pod; or why not."""
        server, server_port = target.pod, port
        if target.service is not None:
            svc = target.service
            sport = next((p for p in (svc.get("spec") or {}).get("ports") or [] if p.get("port") == port), None)
            if sport is None:
                return "Connection timed out"
            slices = self.discovery.list_namespaced_endpoint_slice(
                svc["metadata"]["namespace"], label_selector=f"kubernetes.io/service-name={svc['metadata']['name']}",
                _request_timeout=API_TIMEOUT_S).items
            ready = [e.target_ref.name for s in slices for e in s.endpoints or []
                     if e.target_ref is not None and (e.conditions is None or e.conditions.ready is not False)]
            if not ready:
                return "Connection refused"
            server = self.pod_named(svc["metadata"]["namespace"], service_net.pick(ready))
            target_port = sport.get("targetPort", port)
            if isinstance(target_port, str) and not target_port.isdigit() and server is not None:
                target_port = next((cp.get("containerPort") for c in server["spec"]["containers"]
                                    for cp in c.get("ports") or [] if cp.get("name") == target_port), 0)
            server_port = int(target_port)
        if server is None:
            return "Connection timed out"
        site = site_on(server, server_port, self.catalog, self.runtime.root if self.runtime else None)
        if site is None:
            return "Connection refused"
        line = f"GET {path} HTTP/1.1"
        client_ip = "127.0.0.1" if target.ip == "127.0.0.1" else (client_pod.get("status") or {}).get("podIP") \
            or "127.0.0.1"
        status, body, _ = site.content(path, request_line=line, client=client_ip, host=target.fqdn)
        site.access_log(line, status, len(body), client=client_ip, agent=agent)
        return status, body

    def _exited(self, uid: str, container: str, started_at: str, code: int) -> None:
        """A process that ran for real ended: say so on the pod, and the Stages end the container (crash,
        complete or fail, with this exit code)."""
        pod = self.pods.get(uid)
        if pod is None:
            return
        meta = pod["metadata"]
        if container in {e["name"] for e in (pod.get("spec") or {}).get("ephemeralContainers") or []}:
            self._ephemeral_ended(pod, container, started_at, code)
            return
        try:
            self.core.patch_namespaced_pod(meta["name"], meta["namespace"], [
                {"op": "test", "path": "/metadata/uid", "value": uid},
                {"op": "add", "path": "/metadata/annotations/" + EXIT_ANNOTATION.replace("/", "~1"),
                 "value": f"{started_at} {code}"}], _request_timeout=API_TIMEOUT_S)
            log.info("%s/%s %s: exited with %d", meta["namespace"], meta["name"], container, code)
        except Exception as exc:  # noqa: BLE001 - the pod went meanwhile
            log.info("%s/%s: exit not recorded: %s", meta["namespace"], meta["name"], exc)

    def _apply_logs(self, body: Obj) -> None:
        from kubernetes.client.exceptions import ApiException

        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            self.custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", ns, "logs", body,
                                                        _request_timeout=API_TIMEOUT_S)
        except ApiException as exc:
            if exc.status != 409:
                log.info("Logs %s/%s not written: %s", ns, name, exc.reason)
                return
            self.custom.patch_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", ns, "logs", name,
                                                       {"spec": body["spec"]}, _request_timeout=API_TIMEOUT_S)

    def _claim_dir(self, namespace: str, claim: str) -> Path | None:
        """The local-path folder of a bound claim, when it lies under the lab's state (never another host path)."""
        try:
            pvc = self.core.read_namespaced_persistent_volume_claim(claim, namespace, _request_timeout=API_TIMEOUT_S)
            if not pvc.spec.volume_name:
                return None
            pv = self.core.read_persistent_volume(pvc.spec.volume_name, _request_timeout=API_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - no claim, no volume: the sandbox gets an empty folder
            return None
        path = pv.spec.host_path.path if pv.spec.host_path else (pv.spec.local.path if pv.spec.local else None)
        if not path:
            return None
        folder = Path(path).resolve()
        return folder if state_dir().resolve() in folder.parents else None

    def stop(self, *_: Any) -> None:
        self.stopping.set()
        with self._lock:
            self._lock.notify_all()

    # -- caches
    def _ns(self, name: str) -> Namespace:
        if name not in self.namespaces:
            self.namespaces[name] = Namespace(objects=Objects(master=self._master))
        return self.namespaces[name]

    def _on_object(self, kind: str, kind_event: str, obj: Obj) -> None:
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        table = {"configmaps": self._ns(ns).configmaps, "secrets": self._ns(ns).secrets}.get(kind)
        contents: dict[str, Any] = {"configmaps": self._ns(ns).objects.configmaps,
                                    "secrets": self._ns(ns).objects.secrets,
                                    "services": self._ns(ns).objects.services}[kind]
        if kind_event == "DELETED":
            contents.pop(name, None)
        else:
            contents[name] = obj if kind == "services" else object_data(obj, secret=kind == "secrets")
        if kind == "services" and (ns, name) == ("default", "kubernetes"):
            master = None if kind_event == "DELETED" else obj
            for each in self.namespaces.values():
                each.objects.master = master
            self._master = master
        if kind == "services":
            (self._ns(ns).services.discard if kind_event == "DELETED" else self._ns(ns).services.add)(name)
        elif table is not None:
            if kind_event == "DELETED":
                table.pop(name, None)
            else:
                table[name] = object_keys(obj)
        with self._lock:  # every pod this namespace holds looks again now
            self._now |= {uid for uid, w in self.walks.items() if w.namespace == ns}
            self._lock.notify_all()

    def _on_node(self, kind_event: str, node: Obj) -> None:
        name = node["metadata"]["name"]
        if kind_event == "DELETED":
            self.node_labels.pop(name, None)
        else:
            self.node_labels[name] = dict(node["metadata"].get("labels") or {})

    def _on_pod(self, kind_event: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            if kind_event == "DELETED":
                self.pods.pop(uid, None)
                self.walks.pop(uid, None)
                self.released.pop(uid, None)
                self.gone.append(pod)
                self._lock.notify_all()
                return
            self.pods[uid] = pod
            self._now.add(uid)
            self._lock.notify_all()

    def _watch(self, kind: str) -> None:
        """Keep the caches in step with the API (:func:`labkit.kube.watch.list_and_watch`)."""
        lister = {"pods": self.core.list_pod_for_all_namespaces,
                  "configmaps": self.core.list_config_map_for_all_namespaces,
                  "secrets": self.core.list_secret_for_all_namespaces,
                  "services": self.core.list_service_for_all_namespaces,
                  "nodes": self.core.list_node}[kind]
        on = {"pods": self._on_pod, "nodes": self._on_node}.get(kind) or (
            lambda event, obj: self._on_object(kind, event, obj))
        for change in list_and_watch(lister, plain=self.api_client.sanitize_for_serialization,
                                     stopping=self.stopping, what=kind):
            if change.type == "LISTED":
                for obj in change.objects:
                    on("ADDED", obj)
                self._kinds_synced.add(kind)
                if self._kinds_synced >= set(WATCHED):
                    self.synced.set()
            elif change.obj is not None:
                on(change.type, change.obj)

    # -- the worker
    def run(self) -> None:
        for kind in WATCHED:
            threading.Thread(target=self._watch, args=(kind,), name=f"watch-{kind}", daemon=True).start()
        self.synced.wait()
        if self.runtime is not None:
            with self._lock:
                alive = set(self.pods)
            self.runtime.sweep(alive)
        while not self.stopping.is_set():
            with self._lock:
                while not self._now and not self.gone and not self.stopping.is_set():
                    wait = self._due[0][0] - time.monotonic() if self._due else 5.0
                    if wait <= 0:
                        self._now.add(heapq.heappop(self._due)[1])
                        break
                    self._lock.wait(min(wait, 5.0))
                todo, self._now = self._now, set()
                gone, self.gone = self.gone, []
            self._write_held()
            for pod in gone:
                self._to_runtime(pod, gone=True)
            for uid in todo:
                pod = self.pods.get(uid)
                if pod is not None:
                    try:
                        self._handle(pod)
                    except Exception as exc:  # noqa: BLE001 - one pod's failure must not stop the kubelet
                        log.warning("pod %s/%s: %s", pod["metadata"]["namespace"], pod["metadata"]["name"], exc)
                        self._again(uid, 2.0)
                    self._to_runtime(pod)

    # -- the runtime's own worker: a container's sandbox and log must not hold up the next pod's checks
    def _to_runtime(self, pod: Obj, *, gone: bool = False) -> None:
        if self.runtime is None:
            return
        with self._runtime_ready:
            self._runtime_todo[pod["metadata"]["uid"]] = (pod, gone)
            self._runtime_ready.notify()

    def _runtime_loop(self) -> None:
        while not self.stopping.is_set():
            with self._runtime_ready:
                while not self._runtime_todo and not self.stopping.is_set():
                    self._runtime_ready.wait(1.0)
                todo, self._runtime_todo = self._runtime_todo, {}
            for pod, gone in todo.values():
                meta = pod["metadata"]
                try:
                    if gone:
                        self.runtime.forget(pod, remove=True)  # type: ignore[union-attr]
                    else:
                        self.runtime.sync(pod, self._ns(meta["namespace"]).objects)  # type: ignore[union-attr]
                except Exception as exc:  # noqa: BLE001 - one sandbox's failure must not stop the others
                    log.warning("runtime, pod %s/%s: %s", meta["namespace"], meta["name"], exc)

    def _again(self, uid: str, seconds: float) -> None:
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + seconds, uid))

    def _handle(self, pod: Obj) -> None:
        from kubernetes.client.exceptions import ApiException

        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        if not spec.get("nodeName") or meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            self.walks.pop(uid, None)
            return
        if spec.get("ephemeralContainers"):
            self._start_ephemeral(pod)
        verdict = (meta.get("annotations") or {}).get(KUBELET_ANNOTATION)
        if verdict is None:
            if uid in self.walks or uid in self.released:
                return  # decided already: this event is older than the annotation written then
            verdict = pod_verdict(pod, self._ns(ns), self.catalog, self.node_labels.get(spec["nodeName"]))
            marks = {KUBELET_ANNOTATION: verdict}
            first = (spec.get("containers") or [{}])[0]
            # The Stages' crash rule then ends it with exit 137, OOMKilled.
            if oom_killed(first, meta.get("annotations")):
                marks[OOM_ANNOTATION] = first["name"]
            elif self.runtime is not None and self.runtime.will_run(pod):
                marks[RUNTIME_ANNOTATION] = "real"  # its process, not the Stages' model, says when it ends
            try:
                self.core.patch_namespaced_pod(name, ns, [
                    {"op": "test", "path": "/metadata/uid", "value": uid},
                    {"op": "add", "path": "/metadata/annotations", "value": meta.get("annotations") or {}},
                    *({"op": "add", "path": "/metadata/annotations/" + key.replace("/", "~1"), "value": value}
                      for key, value in marks.items())], _request_timeout=API_TIMEOUT_S)
            except ApiException as exc:
                if exc.status not in (404, 409, 422):
                    raise
                return
            if verdict == HELD:
                self.walks[uid] = Walk(uid, ns, name, seen=time.monotonic())
            else:
                self.released[uid] = True
            return
        if verdict != HELD or uid in self.released:
            self.walks.pop(uid, None)
            return
        if not status.get("containerStatuses"):
            return  # the create Stage has not given it its sandbox and IPs yet: its status update comes back here
        walk = self.walks.setdefault(uid, Walk(uid, ns, name, seen=time.monotonic()))
        step = self.kubelet.step(walk, pod, self._ns(ns), time.monotonic())
        self._write(pod, walk, step)
        if step.release:
            self.walks.pop(uid, None)
            self.released[uid] = True
            self.core.patch_namespaced_pod(name, ns, [
                {"op": "test", "path": "/metadata/uid", "value": uid},
                {"op": "replace", "path": "/metadata/annotations/" + KUBELET_ANNOTATION.replace("/", "~1"),
                 "value": PASSED}], _request_timeout=API_TIMEOUT_S)
            log.info("%s/%s: handed to the Stages", ns, name)
        elif step.again_in is not None:
            self._again(uid, step.again_in)

    def _write(self, pod: Obj, walk: Walk, step: Step) -> None:
        meta = pod["metadata"]
        kept = [c for c in (pod.get("status") or {}).get("conditions") or []
                if c["type"] not in {s["type"] for s in step.status["conditions"]}]
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        for cond in step.status["conditions"]:  # a condition's transition time moves only when its status does
            if old.get(cond["type"], {}).get("status") == cond["status"]:
                cond["lastTransitionTime"] = old[cond["type"]].get("lastTransitionTime", cond["lastTransitionTime"])
        ops = [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]}]
        for key, value in {**step.status, "conditions": [*kept, *step.status["conditions"]]}.items():
            ops.append({"op": "add", "path": f"/status/{key}", "value": value})
        self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], ops, _request_timeout=API_TIMEOUT_S)
        inits = {c["name"] for c in pod["spec"].get("initContainers") or []}
        for etype, reason, container, message in step.events:
            self._event(pod, walk, etype, reason, container, message, init=container in inits)

    def _event(self, pod: Obj, walk: Walk, etype: str, reason: str, container: str, message: str, *,
               init: bool, ephemeral: bool = False) -> None:
        """Best effort, as the kubelet's recorder: a repeat raises the count of the same Event."""
        meta = pod["metadata"]
        key = (container, reason, message)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        name, count, first = walk.events.get(key, (event_name(meta["name"]), 0, stamp))
        walk.events[key] = (name, count + 1, first)
        involved: Obj = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": meta["namespace"],
                         "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion", "")}
        if container:
            kind = "ephemeralContainers" if ephemeral else "initContainers" if init else "containers"
            involved["fieldPath"] = f"spec.{kind}{{{container}}}"
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": meta["namespace"]},
                "involvedObject": involved, "type": etype, "reason": reason, "message": message,
                "source": {"component": "kubelet", "host": pod["spec"]["nodeName"]},
                "reportingComponent": "kubelet", "reportingInstance": pod["spec"]["nodeName"],
                "count": count + 1, "firstTimestamp": first, "lastTimestamp": stamp}
        try:
            if count:
                self.core.patch_namespaced_event(name, meta["namespace"],
                                                 {"count": count + 1, "lastTimestamp": stamp},
                                                 _request_timeout=API_TIMEOUT_S)
            else:
                self.core.create_namespaced_event(meta["namespace"], body, _request_timeout=API_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            log.info("event %s on %s/%s not recorded: %s", reason, meta["namespace"], meta["name"], exc)

    def pod_named(self, namespace: str, name: str) -> Obj | None:
        """The latest copy of a pod, by name (the responder's lookup)."""
        with self._lock:
            return next((p for p in self.pods.values() if p["metadata"]["namespace"] == namespace
                         and p["metadata"]["name"] == name), None)

    def held(self) -> list[Obj]:
        return [{"namespace": w.namespace, "pod": w.name, "stage": w.stage, "why": w.why}
                for w in list(self.walks.values())]

    def _write_held(self) -> None:
        """The held pods as a file too, for `labkit status` (written when they change)."""
        held = self.held()
        if self.held_file is None or held == self._held_written:
            return
        write_atomic(self.held_file, json.dumps(held, indent=1) + "\n")
        self._held_written = held


def start_kubelet_server(binary: str, *, port: int, kwok_server: str, pki: Path, responder: int) -> subprocess.Popen:
    """labkit's kubelet server (``labkit/data/kubelet-server``) on the nodes' kubelet port: exec and port-forward
    here, everything else on to KWOK's server. It ends with this process (PR_SET_PDEATHSIG)."""
    folder = runtime_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kwok-server").write_text(kwok_server + "\n")
    (folder / "responder").write_text(f"127.0.0.1:{responder}\n")

    def die_with_parent() -> None:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    log_file = (folder / "kubelet-server.log").open("ab")
    return subprocess.Popen([binary, f"--listen=127.0.0.1:{port}", f"--upstream-file={folder / 'kwok-server'}",
                             f"--tls-cert-file={pki / 'admin.crt'}", f"--tls-private-key-file={pki / 'admin.key'}",
                             f"--runtime={folder}"], stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl, before exec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.sim.kubelet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, required=True, help="/healthz and /pods on 127.0.0.1")
    parser.add_argument("--state", type=Path, required=True, help=f"folder for {HELD_FILE} (what /pods serves)")
    parser.add_argument("--server-binary", help="labkit's kubelet server (exec, port-forward); none: not served")
    parser.add_argument("--kubelet-port", type=int, help="the nodes' kubelet port, where the API server calls")
    parser.add_argument("--kwok-server", help="KWOK's own server (host:port): logs and metrics")
    parser.add_argument("--pki", type=Path, help="the cluster's PKI folder (the kubelet port's certificate)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    daemon = Daemon(kubeconfig=args.kubeconfig, catalog=load_catalog(), held_file=args.state / HELD_FILE)
    runtime = daemon.attach_runtime()
    responder = Responder(daemon.catalog, daemon.pod_named, runtime.root).start()
    server = None
    if args.server_binary and args.kubelet_port and args.kwok_server and args.pki:
        server = start_kubelet_server(args.server_binary, port=args.kubelet_port, kwok_server=args.kwok_server,
                                      pki=args.pki, responder=responder.port)
        log.info("kubelet server (exec, port-forward) on 127.0.0.1:%d, pid %d", args.kubelet_port, server.pid)
    log.info("kubelet checks: /healthz and /pods on 127.0.0.1:%d", args.port)
    try:
        return run_daemon(args.port, daemon.synced, daemon.stopping, daemon.run,
                          {"/pods": lambda: Answer(json.dumps(daemon.held(), indent=1) + "\n", JSON),
                           "/runtime": lambda: Answer(json.dumps(runtime.report()) + "\n", JSON)})
    finally:
        runtime.stop_all()
        if server is not None:
            server.terminate()

if __name__ == "__main__":
    raise SystemExit(main())
