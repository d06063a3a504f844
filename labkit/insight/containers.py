"""Rules about containers: images, probes, configuration, the command, init containers, volumes (part of
:mod:`labkit.insight`)."""

from __future__ import annotations

import difflib
import json
import re
import shlex
from typing import Any

from ..i18n import _
from ..kube.quantity import format_quantity, quantity
from .findings import Evidence, Finding, exit_meaning
from .objects import (
    PATCHABLE,
    awaited_service,
    can_undo,
    condition_of,
    config_fix,
    env_refs,
    event_evidence,
    events_for,
    jsonpatch,
    pod_ready,
    seconds_since,
    subject_of,
    tail,
    template_command,
    template_spec,
    undo_command,
)
from .snapshot import Snapshot, meta


def _image_fix(snap: Snapshot, kind: str, ns: str, name: str, cname: str, image: str) -> str:
    if can_undo(snap, kind, ns, name):
        return undo_command(ns, name)
    running = {c.get("image") for p in snap.all_pods for c in (p.get("spec") or {}).get("containers") or []
               if (p.get("status") or {}).get("phase") == "Running"} - {image}
    close = difflib.get_close_matches(image, sorted(r for r in running if r), n=1, cutoff=0.6)
    new = close[0] if close else "IMAGE:TAG-THAT-EXISTS"
    return f"kubectl -n {ns} set image {kind.lower()}/{name} {cname}={new}"


def _probe_fix(snap: Snapshot, kind: str, ns: str, name: str, spec: dict[str, Any], probe_kind: str,
               output: str) -> tuple[str, str]:
    """(why, fix) for a failing probe: a port nothing listens on, a path that answers 404, or else undo."""
    for i, c in enumerate(spec.get("containers") or []):
        probe = c.get(probe_kind) or {}
        handler = next((k for k in ("httpGet", "tcpSocket", "grpc") if k in probe), None)
        if handler is None:
            continue
        port = probe[handler].get("port")
        declared = [p.get("containerPort") for p in c.get("ports") or []]
        names = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        number = names.get(port, port)
        base = f"/spec/template/spec/containers/{i}/{probe_kind}/{handler}"
        if declared and number not in declared and ("refused" in output or "dial tcp" in output):
            return (_("it checks port {port}, but the container listens on {declared} (connection refused)").format(
                port=port, declared=declared[0]),
                    jsonpatch(ns, kind, name, [{"op": "replace", "path": f"{base}/port", "value": declared[0]}]))
        if handler == "httpGet" and "statuscode: 404" in output:
            return (_("it asks for {path}, which the app answers with 404").format(
                path=probe[handler].get("path", "/")),
                    jsonpatch(ns, kind, name, [{"op": "replace", "path": f"{base}/path", "value": "/"}]))
    if can_undo(snap, kind, ns, name):
        return _("the probe started failing with the latest revision"), undo_command(ns, name)
    return (_("the app does not answer the probe"), f"kubectl -n {ns} edit {kind.lower()}/{name}   # "
            + _("fix the {probe} (what it checks, or initialDelaySeconds/failureThreshold)").format(probe=probe_kind))


_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName")
_MISSING_OBJECT = re.compile(r'(?P<kind>configmap|secret) "(?P<name>[^"]+)" not found')
# kubelet_pods.go: "couldn't find key %v in ConfigMap %v/%v" (and in Secret)
_MISSING_KEY = re.compile(r"couldn't find key (?P<key>\S+) in (?P<kind>ConfigMap|Secret) (?P<ns>[^/\s]+)/(?P<name>\S+)")
# runc's words, passed on by containerd: `exec: "curl": executable file not found in $PATH`
_EXEC = re.compile(r'exec: "(?P<exe>[^"]+)": (?P<why>[^:]+)')
# The NVIDIA container toolkit's hook, passed on by runc: `requirement error: unsatisfied condition: cuda>=12.6`
_REQUIREMENT = re.compile(r"requirement error: unsatisfied condition: (?P<condition>[^,\s]+)")
# GPU feature discovery's label: the newest CUDA the node's driver supports.
_NODE_CUDA = "nvidia.com/cuda.runtime-version.full"
# What a small image has instead (busybox and alpine have wget and sh, not curl and bash).
_INSTEAD = {"curl": "wget", "bash": "sh"}
INIT_STUCK_S = 300  # an init container still running after this long is stuck, not slow


def _container(init: bool, cname: Any) -> str:
    """"init container NAME" or "container NAME", in the learner's language."""
    return (_("init container {name}") if init else _("container {name}")).format(name=cname)


def _rolled_back(summary: str) -> str:
    return _("{summary}; it started with the latest revision: roll back, then fix it").format(summary=summary)


def _state_evidence(ns: str, pname: str, init: bool, line: str) -> Evidence:
    field_name = "initContainerStatuses" if init else "containerStatuses"
    return Evidence("pod status", line,
                    f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.{field_name}[*].state}}'")


def _last_state_command(ns: str, pname: str, init: bool) -> str:
    field_name = "initContainerStatuses" if init else "containerStatuses"
    return f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.{field_name}[*].lastState}}'"


def _image_finding(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, cs: dict[str, Any],
                   spec: dict[str, Any], events: list[dict[str, Any]], init: bool) -> Finding:
    ns, pname, cname = meta(pod)["namespace"], meta(pod)["name"], cs.get("name")
    waiting = (cs.get("state") or {}).get("waiting") or {}
    reason = f"{waiting.get('reason')}: {(waiting.get('message') or '')[:200]}".rstrip(": ")  # the kubelet's words
    ev = [_state_evidence(ns, pname, init, _("{container}: waiting {reason}").format(
        container=_container(init, cname), reason=reason))]
    ev += [event_evidence(e, ns) for e in events if e.get("reason") == "Failed"
           and "Failed to pull" in (e.get("message") or "")][-1:]
    image = next((c.get("image") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
                  if c.get("name") == cname), "")
    pulled = cs.get("image") or image
    summary = (_("image {image!r} cannot be pulled for init container {name} (Init:{reason}): the name or tag does not "
                 "exist in the registry (or needs credentials)").format(image=pulled, name=cname,
                                                                        reason=waiting.get("reason"))
               if init else _("image {image!r} cannot be pulled: the name or tag does not exist in the registry (or "
                              "needs credentials)").format(image=pulled))
    return Finding("ImagePullBackOff", subject_of(kind, name), ns, summary, ev,
                   _image_fix(snap, kind, ns, name, cname, image))


def _config_error(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, cs: dict[str, Any],
                  spec: dict[str, Any], events: list[dict[str, Any]], init: bool) -> Finding:
    """CreateContainerConfigError: the kubelet cannot build the container's environment from what it names."""
    ns, pname, cname = meta(pod)["namespace"], meta(pod)["name"], cs.get("name")
    message = ((cs.get("state") or {}).get("waiting") or {}).get("message") or ""
    ev = [_state_evidence(ns, pname, init, _("{container}: waiting {reason}").format(
        container=_container(init, cname), reason=f"CreateContainerConfigError: {message[:200]}"))]
    ev += [event_evidence(e, ns) for e in events if e.get("reason") == "Failed" and message
           and message in (e.get("message") or "")][-1:]
    subject = subject_of(kind, name)
    m = _MISSING_KEY.search(message) or _MISSING_OBJECT.search(message)
    if not m:
        return Finding("CreateContainerConfigError", subject, ns, _(
            "the kubelet cannot build {container}'s configuration: {message}").format(
                container=_container(init, cname), message=message[:160]), ev, f"kubectl -n {ns} describe pod {pname}")
    obj_kind, obj = m["kind"].lower(), m["name"]
    key = m.groupdict().get("key")
    refs = env_refs(spec, obj_kind, obj, key)
    for r in refs:
        ev.append(Evidence("pod spec", _("container {name}: {reference}").format(name=r["container"],
                                                                                   reference=r["text"]),
                           template_command(ns, kind, name, pname, r["field"])))
    why, fix = config_fix(snap, ns, kind, name, obj_kind, obj, key, refs, ev)
    users = list(dict.fromkeys(r["container"] for r in refs)) or [cname]
    summary = (_("containers {names} cannot start: their env {why}").format(names=", ".join(users), why=why)
               if len(users) > 1 else _("container {name} cannot start: its env {why}").format(name=users[0], why=why))
    return Finding("CreateContainerConfigError", subject, ns, summary, ev, fix)


def _start_failure(cs: dict[str, Any]) -> dict[str, Any]:
    """The StartError a container status records (now, or as its last state), or {}."""
    state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated") or {}
    for t in (state.get("terminated") or {}, last):
        if t.get("reason") == "StartError":
            return t
    waiting = state.get("waiting") or {}
    if waiting.get("reason") == "RunContainerError" and _EXEC.search(waiting.get("message") or ""):
        return {"reason": "RunContainerError", "exitCode": 128, "message": waiting["message"]}
    return {}


def _start_error(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, cs: dict[str, Any],
                 spec: dict[str, Any], events: list[dict[str, Any]], init: bool) -> Finding:
    """StartError, exit code 128: the runtime could not exec the command (not in the image, or not executable)."""
    ns, pname, cname = meta(pod)["namespace"], meta(pod)["name"], cs.get("name")
    failed = _start_failure(cs)
    message = failed.get("message") or ""
    waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
    where = _container(init, cname)
    group = "initContainers" if init else "containers"
    now = ((cs.get("state") or {}).get("terminated") or {}).get("reason") == "StartError"
    state = (_("terminated {reason}") if now else _("last terminated {reason}")).format(reason=failed.get("reason"))
    if waiting:
        state = _("waiting {reason}, {state}").format(reason=waiting, state=state)
    ev = [Evidence("pod status", _("{container}: {state}, exit code {code}, restartCount {restarts}: {message}").format(
        container=where, state=state, code=failed.get("exitCode"), restarts=cs.get("restartCount", 0),
        message=tail(message, 200)), _last_state_command(ns, pname, init))]
    if requirement := _REQUIREMENT.search(message):
        return _requirement_error(snap, pod, kind, name, cname, where, requirement["condition"], ev, events)
    m = _EXEC.search(message)
    exe = m["exe"] if m else ""
    ev += [event_evidence(e, ns) for e in events if e.get("reason") == "Failed"
           and exe and f'"{exe}"' in (e.get("message") or "")][-1:]
    i, container = next(((i, c) for i, c in enumerate(spec.get(group) or []) if c.get("name") == cname), (0, {}))
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    image = container.get("image") or cs.get("image") or ""
    if command or args:
        ev.append(Evidence("pod spec", _("{container} runs {command} in image {image}").format(
            container=where, command=json.dumps(command + args), image=image),
                           template_command(ns, kind, name, pname, f'{group}[?(@.name=="{cname}")].command')))
    why = m["why"].strip() if m else _("the runtime refused it")  # runc's words, else labkit's
    summary = (_("{container} cannot start: exec {exe!r}: {why}").format(container=where, exe=exe, why=why) if exe
               else _("{container} cannot start: {message}").format(container=where, message=tail(message, 120)))
    if image:
        summary = _("{summary} (image {image})").format(summary=summary, image=image)
    base = exe.rsplit("/", 1)[-1]
    instead = _INSTEAD.get(base) if "not found" in why else None
    urls = [a for a in command[1:] + args if "://" in a]
    if base == "curl" and not urls:  # wget can stand in for curl fetching a URL, not for the rest of curl
        instead = None
    fix = ""
    if instead and command and command[0] == exe:
        # curl -s URL -> wget -qO- URL (the URLs kept, curl's flags dropped); bash ... -> sh ...
        new = ["wget", "-qO-", *urls] if base == "curl" else [instead, *command[1:], *args]
        summary = _("{summary}; the image has {instead}: run {command} instead (or use an image that has "
                    "{missing})").format(summary=summary, instead=instead, command=shlex.join(new), missing=base)
        if kind in PATCHABLE:
            base_path = f"/spec/template/spec/{group}/{i}"
            fix = jsonpatch(ns, kind, name, [{"op": "replace", "path": f"{base_path}/command", "value": new}]
                             + ([{"op": "remove", "path": f"{base_path}/args"}] if args else []))
        elif kind == "Pod":
            edit_it = (_("in it, set {container}'s command to {command} and drop its args") if args else
                       _("in it, set {container}'s command to {command}")).format(container=where,
                                                                                  command=json.dumps(new))
            fix = (f"kubectl -n {ns} get pod {pname} -o yaml > {pname}.yaml   # {edit_it}"
                   f"\nkubectl -n {ns} replace --force -f {pname}.yaml   # "
                   + _("a pod's command cannot change: this deletes and re-creates it"))
    if not fix and can_undo(snap, kind, ns, name):
        summary = _rolled_back(summary)
        fix = undo_command(ns, name)
    if not fix:
        fix = (f"kubectl -n {ns} edit {kind.lower()}/{name}   # "
               + _("{container}: run an executable {image} has, or use an image that has {exe}").format(
                   container=where, image=image or _("the image"), exe=exe or _("it")))
    return Finding("StartError", subject_of(kind, name), ns, summary, ev, fix)


def _requirement_error(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, cname: str, where: str,
                       condition: str, ev: list[Evidence], events: list[dict[str, Any]]) -> Finding:
    """StartError from the NVIDIA runtime's hook: the image needs a newer CUDA than the node's driver supports.
    ``where`` names the container ("container NAME", in the learner's language)."""
    ns, node_name = meta(pod)["namespace"], (pod.get("spec") or {}).get("nodeName", "")
    node = next((n for n in snap.nodes if meta(n)["name"] == node_name), {})
    cuda = (meta(node).get("labels") or {}).get(_NODE_CUDA) if node else None
    # The hook's own words come last in runc's long message: the evidence keeps them, not containerd's prefix.
    ev += [event_evidence({**e, "message": "... " + e["message"][e["message"].find("nvidia-container-cli"):]}, ns)
           for e in events if e.get("reason") == "Failed" and condition in (e.get("message") or "")][-1:]
    if cuda:
        ev.append(Evidence("node labels", f"{node_name}: {_NODE_CUDA}={cuda}",
                           f"kubectl get node {node_name} -L {_NODE_CUDA}"))
    summary = _("{container} cannot start: its image requires {condition} and the NVIDIA driver on {node} supports "
                "CUDA {cuda}; the NVIDIA runtime refuses it").format(
                    container=where, condition=condition, node=node_name or _("its node"),
                    cuda=cuda or _("an older version"))
    fix = (f"kubectl -n {ns} set image {kind.lower()}/{name} {cname}=IMAGE   # "
           + _("an image built for CUDA {cuda} or older; or upgrade the node's driver ({command})").format(
               cuda=cuda or _("the driver supports"), command=f"kubectl get nodes -L {_NODE_CUDA}"))
    return Finding("StartError", subject_of(kind, name), ns, summary, ev, fix)


def _service_wait(snap: Snapshot, ns: str, kind: str, name: str, pname: str, i: int, container: dict[str, Any],
                  ev: list[Evidence]) -> tuple[str, str] | None:
    """(why, fix) when an init container's command waits for a Service the namespace does not have: point the
    command at the one it most likely meant, or create it. Adds the evidence to ``ev``."""
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    awaited = awaited_service(snap, ns, command + args)
    if awaited is None:
        return None
    svc, names = awaited
    cname = container.get("name")
    ev.append(Evidence("pod spec", _("init container {name} waits for {service}: {command}").format(
        name=cname, service=svc, command=tail(shlex.join(command + args), 200)),
                       template_command(ns, kind, name, pname, f'initContainers[?(@.name=="{cname}")].command')))
    ev.append(Evidence("services", _("no Service {service} in {namespace}, so its name never resolves; {namespace} "
                                     "has: {services}").format(service=svc, namespace=ns,
                                                               services=", ".join(names) or _("none")),
                       f"kubectl -n {ns} get services"))
    close = difflib.get_close_matches(svc, names, n=1, cutoff=0.6)
    if close and kind in PATCHABLE:
        word = re.compile(rf"\b{re.escape(svc)}\b")
        base = f"/spec/template/spec/initContainers/{i}"
        ops = [{"op": "replace", "path": f"{base}/{field_name}", "value": [word.sub(close[0], a) for a in values]}
               for field_name, values in (("command", command), ("args", args)) if any(word.search(a) for a in values)]
        return (_("it waits for Service {service}, which does not exist; {close} does: wait for that").format(
            service=svc, close=close[0]), jsonpatch(ns, kind, name, ops))
    why = (_("it waits for Service {service}, which does not exist in {namespace}: create it (or deploy what provides "
             "it); if it means {close}, fix its command (the pod must be re-created)").format(
                 service=svc, namespace=ns, close=close[0]) if close else
           _("it waits for Service {service}, which does not exist in {namespace}: create it (or deploy what provides "
             "it)").format(service=svc, namespace=ns))
    return (why, f"kubectl -n {ns} create service clusterip {svc} --tcp=80:80   # "
            + _("the ports and selector of the real one"))


def _init_findings(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, spec: dict[str, Any],
                   events: list[dict[str, Any]]) -> Finding | None:
    """The first init container that has not completed, when it fails or blocks: the app's containers wait for it
    (they show PodInitializing), so it is the cause."""
    ns, pname = meta(pod)["namespace"], meta(pod)["name"]
    inits = spec.get("initContainers") or (pod.get("spec") or {}).get("initContainers") or []
    sidecars = {c.get("name") for c in inits if c.get("restartPolicy") == "Always"}  # they run on by design
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
    subject = subject_of(kind, name)
    for cs in statuses:
        cname = cs.get("name")
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated") or {}, state.get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if cname in sidecars or (terminated and terminated.get("exitCode") == 0):
            continue
        reason = waiting.get("reason", "")
        if reason == "CreateContainerConfigError":
            return _config_error(snap, pod, kind, name, cs, spec, events, init=True)
        if reason in _PULL_REASONS:
            return _image_finding(snap, pod, kind, name, cs, spec, events, init=True)
        if _start_failure(cs):
            return _start_error(snap, pod, kind, name, cs, spec, events, init=True)
        i, container = next(((i, c) for i, c in enumerate(inits) if c.get("name") == cname), (0, {}))
        failed = terminated or (last if last.get("exitCode") else {})
        if reason == "CrashLoopBackOff" or terminated or failed:
            code = failed.get("exitCode")
            shown = ("Init:CrashLoopBackOff" if reason == "CrashLoopBackOff" else "Init:Error" if terminated else
                     _("Init:{index}/{count}, running again after a failure").format(index=statuses.index(cs),
                                                                                    count=len(statuses)))
            ev = [Evidence("pod status", _("init container {name}: {state}, restartCount {restarts}, last exit code "
                                           "{code} ({reason}: {meaning})").format(
                               name=cname, state=shown, restarts=cs.get("restartCount", 0), code=code,
                               reason=failed.get("reason", ""), meaning=exit_meaning(code, _("the process chose it"))),
                           _last_state_command(ns, pname, True)),
                  Evidence("logs", _("what the init container printed before it exited"),
                           f"kubectl -n {ns} logs {pname} -c {cname}" + (" --previous" if not terminated else ""))]
            ev += [event_evidence(e, ns) for e in events if e.get("reason") == "BackOff"][-1:]
            waits = _service_wait(snap, ns, kind, name, pname, i, container, ev)
            summary = _("init container {name} exits with code {code} ({meaning}), so the pod's containers never "
                        "start").format(name=cname, code=code, meaning=exit_meaning(code, _("its own choice")))
            if waits:
                why, fix = waits
                summary = _("{summary}: {why}").format(summary=summary, why=why)
            elif can_undo(snap, kind, ns, name):
                summary = _rolled_back(summary)
                fix = undo_command(ns, name)
            else:
                fix = (f"kubectl -n {ns} logs {pname} -c {cname}" + (" --previous" if not terminated else "")
                       + "   # " + _("read why, then fix its command or what it needs"))
            return Finding("InitContainerFailing", subject, ns, summary, ev, fix)
        if "running" in state and condition_of(pod, "Initialized").get("status") == "False":
            cond = condition_of(pod, "Initialized")
            started = (state.get("running") or {}).get("startedAt")
            lasted = seconds_since(snap, started)
            running = (_("init container {name} has been running since {started}").format(name=cname, started=started)
                       if lasted is None else
                       _("init container {name} has been running since {started} ({minutes:.0f} min)").format(
                           name=cname, started=started, minutes=lasted / 60))
            initialized = _("Initialized=False {reason}: {message} (kubectl shows Init:{index}/{count})").format(
                reason=cond.get("reason"), message=cond.get("message", ""), index=statuses.index(cs),
                count=len(statuses))
            ev = [Evidence("pod condition", initialized,
                           f"kubectl -n {ns} get pod {pname}"),
                  Evidence("pod status", running,
                           f"kubectl -n {ns} logs {pname} -c {cname}   # " + _("what it is waiting for"))]
            waits = _service_wait(snap, ns, kind, name, pname, i, container, ev)
            if waits:
                why, fix = waits
            elif lasted is not None and lasted > INIT_STUCK_S:
                why, fix = (_("it has not finished in time"), f"kubectl -n {ns} logs {pname} -c {cname}   # "
                            + _("what it waits for; then provide that, or fix its command"))
            else:
                return None
            return Finding("InitContainerBlocked", subject, ns, _("init container {name} keeps running, so the pod's "
                                                                  "containers never start: {why}").format(
                                                                      name=cname, why=why), ev, fix)
        return None  # init containers run one at a time: the later ones have not started
    return None


# operation_generator.go: `MountVolume.SetUp failed for volume "config" : configmap "app-config" not found`; the
# configmap and secret plugins: `configmap references non-existent config key: KEY`, `references non-existent secret
# key: KEY`.
_MOUNT = re.compile(r'MountVolume\.SetUp failed for volume "(?P<volume>[^"]+)"\s*:\s*(?P<error>.+)')
_MOUNT_KEY = re.compile(r"references non-existent (?:config|secret) key: (?P<key>\S+)")


def failed_mount(snap: Snapshot, pod: dict[str, Any], kind: str, name: str) -> Finding | None:
    """A pod held in ContainerCreating by a volume the kubelet cannot set up (its FailedMount events say which)."""
    status = pod.get("status") or {}
    states = [cs.get("state") or {} for cs in (status.get("initContainerStatuses") or [])
              + (status.get("containerStatuses") or [])]
    # Events outlive the problem: only a pod whose containers still wait for their volumes counts (not one that got
    # past them and now waits for something else, CreateContainerConfigError say).
    if status.get("phase") != "Pending" or any(set(st) - {"waiting"} or (st.get("waiting") or {}).get("reason") not in
                                               ("ContainerCreating", "PodInitializing") for st in states):
        return None
    ns, pname = meta(pod)["namespace"], meta(pod)["name"]
    mounts = [e for e in events_for(snap, "Pod", pname, ns) if e.get("reason") == "FailedMount"]
    if not mounts:
        return None
    event = ([e for e in mounts if _MOUNT.search(e.get("message") or "")] or mounts)[-1]
    waiting = sorted({((cs.get("state") or {}).get("waiting") or {}).get("reason", "")
                      for cs in status.get("containerStatuses") or []} - {""}) or ["ContainerCreating"]
    ev = [Evidence("pod status", _("pod {pod} is Pending, its containers waiting {reasons}").format(
        pod=pname, reasons=", ".join(waiting)),
                   f"kubectl -n {ns} get pod {pname}"), event_evidence(event, ns)]
    subject = subject_of(kind, name)
    m = _MOUNT.search(event.get("message") or "")
    spec = template_spec(snap, kind, ns, name, pod)
    i, volume = next(((i, v) for i, v in enumerate(spec.get("volumes") or []) if m and v.get("name") == m["volume"]),
                     (0, {}))
    source = "configMap" if "configMap" in volume else "secret" if "secret" in volume else ""
    if not m or not source:
        return Finding("FailedMount", subject, ns, _("a volume of the pod cannot be mounted: {message}").format(
            message=(event.get("message") or "")[:160]), ev, f"kubectl -n {ns} describe pod {pname}")
    vol, err = m["volume"], m["error"]
    src = volume[source]
    obj = src.get("name") if source == "configMap" else src.get("secretName")
    obj_kind = source.lower()
    users = [_("{container} at {path}").format(container=c.get("name"), path=vm.get("mountPath"))
             for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
             for vm in c.get("volumeMounts") or [] if vm.get("name") == vol]
    items = src.get("items") or []
    mounted = ", ".join(users) or _("no container")
    ev.append(Evidence("pod spec", _("volume {volume} is {source} {object} (items {keys}), mounted by {users}").format(
        volume=vol, source=source, object=obj, keys=", ".join(str(it.get("key")) for it in items), users=mounted)
                       if items else _("volume {volume} is {source} {object}, mounted by {users}").format(
        volume=vol, source=source, object=obj, users=mounted),
                       template_command(ns, kind, name, pname, f'volumes[?(@.name=="{vol}")]')))
    base = f"/spec/template/spec/volumes/{i}/{source}"
    key = (km := _MOUNT_KEY.search(err)) and km["key"]
    refs = [{"container": None, "volume": vol, "key": it.get("key"),
             "name_path": f"{base}/{'name' if source == 'configMap' else 'secretName'}",
             "key_path": f"{base}/items/{j}/key", "optional_path": f"{base}/optional"}
            for j, it in enumerate(items) if key is None or it.get("key") == key]
    if not refs and key is None:
        refs = [{"container": None, "volume": vol, "key": None, "key_path": None, "optional_path": f"{base}/optional",
                 "name_path": f"{base}/{'name' if source == 'configMap' else 'secretName'}"}]
    if key is None and not _MISSING_OBJECT.search(err):
        return Finding("FailedMount", subject, ns, _("volume {volume} ({source} {object}) cannot be mounted: {error}")
                       .format(volume=vol, source=source, object=obj, error=err[:160]),
                       ev, f"kubectl -n {ns} describe pod {pname}")
    why, fix = config_fix(snap, ns, kind, name, obj_kind, obj, key, refs, ev)
    return Finding("FailedMount", subject, ns, _("volume {volume} cannot be mounted, so the pod stays "
                                                 "ContainerCreating: it {why}").format(volume=vol, why=why), ev, fix)


def container_findings(snap: Snapshot, pod: dict[str, Any], kind: str, name: str) -> Finding | None:
    ns, pname = meta(pod)["namespace"], meta(pod)["name"]
    status = pod.get("status") or {}
    spec = template_spec(snap, kind, ns, name, pod)
    events = events_for(snap, "Pod", pname, ns)
    subject = subject_of(kind, name)
    init = _init_findings(snap, pod, kind, name, spec, events)
    if init is not None:
        return init
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        reason = waiting.get("reason", "")
        cname = cs.get("name")
        if reason == "CreateContainerConfigError":
            return _config_error(snap, pod, kind, name, cs, spec, events, init=False)
        if reason in _PULL_REASONS:
            return _image_finding(snap, pod, kind, name, cs, spec, events, init=False)
        if _start_failure(cs):  # before the crash loop it causes: exit code 128, the command never ran
            return _start_error(snap, pod, kind, name, cs, spec, events, init=False)
        killed_by_probe = [e for e in events if e.get("reason") == "Killing"
                           and "failed liveness probe" in (e.get("message") or "")]
        if killed_by_probe or (reason == "CrashLoopBackOff" and any(
                e.get("reason") == "Unhealthy" and "Liveness" in (e.get("message") or "") for e in events)):
            unhealthy = [e for e in events if e.get("reason") == "Unhealthy" and "Liveness" in (e.get("message") or "")]
            ev = [event_evidence(e, ns) for e in unhealthy[-1:] + killed_by_probe[-1:]]
            ev.append(Evidence("pod status", _("container {name}: restartCount {restarts}, last exit code {code} "
                                               "({reason})").format(name=cname, restarts=cs.get("restartCount", 0),
                                                                    code=last.get("exitCode", "?"),
                                                                    reason=last.get("reason", "")),
                               f"kubectl -n {ns} get pod {pname} -o "
                               f"jsonpath='{{.status.containerStatuses[*].lastState}}'"))
            output = " ".join(e.get("message") or "" for e in unhealthy)
            why, fix = _probe_fix(snap, kind, ns, name, spec, "livenessProbe", output)
            return Finding("LivenessProbeFailing", subject, ns, _("the liveness probe fails and the kubelet kills the "
                                                                  "container: {why}").format(why=why), ev, fix,
                           queries=[(_("restarts"), f'kube_pod_container_status_restarts_total{{namespace="{ns}",'
                                                 f'pod="{pname}"}}')])
        if last.get("reason") == "OOMKilled":
            limit = next(((c.get("resources") or {}).get("limits") or {}).get("memory") for c in
                         spec.get("containers") or [] if c.get("name") == cname)
            killed = _("container {name}: last terminated OOMKilled, exit code {code}, restartCount {restarts}, "
                       "memory limit {limit}").format(name=cname, code=last.get("exitCode"),
                                                      restarts=cs.get("restartCount", 0), limit=limit)
            ev = [Evidence("pod status", killed,
                           f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.containerStatuses[*].lastState}}'")]
            doubled = format_quantity("memory", 2 * quantity(limit)) if limit else "512Mi"
            summary = _("the container outgrew its memory limit ({limit}) and was killed by the kernel: raise the "
                        "limit (or fix the leak)").format(limit=limit)
            return Finding("OOMKilled", subject, ns, summary, ev,
                           f"kubectl -n {ns} set resources {kind.lower()}/{name} -c {cname} --limits=memory={doubled}",
                           queries=[(_("memory working set"), f'container_memory_working_set_bytes{{namespace="{ns}",'
                                                           f'pod="{pname}", container="{cname}"}}')])
        if reason == "CrashLoopBackOff" or (last.get("exitCode") and cs.get("restartCount")):
            code = last.get("exitCode")
            ev = [Evidence("pod status", _("container {name}: {state}, restartCount {restarts}, last exit code {code} "
                                           "({reason}: {meaning})").format(
                               name=cname, state=reason or _("restarted"), restarts=cs.get("restartCount", 0),
                               code=code, reason=last.get("reason", ""),
                               meaning=exit_meaning(code, _("the process chose it"))),
                           f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.containerStatuses[*].lastState}}'"),
                  Evidence("logs", _("what the process printed before it exited"),
                           f"kubectl -n {ns} logs {pname} -c {cname} --previous")]
            ev += [event_evidence(e, ns) for e in events if e.get("reason") == "BackOff"][-1:]
            undo = can_undo(snap, kind, ns, name)
            fix = undo_command(ns, name) if undo else (
                f"kubectl -n {ns} logs {pname} -c {cname} --previous   # "
                + _("read why, then fix the command or the config it needs"))
            summary = _("the process exits with code {code} ({meaning})").format(
                code=code, meaning=exit_meaning(code, _("its own choice")))
            return Finding("CrashLoopBackOff", subject, ns, _rolled_back(summary) if undo else summary, ev, fix,
                           queries=[(_("restarts"), f'kube_pod_container_status_restarts_total{{namespace="{ns}",'
                                                    f'pod="{pname}"}}')])
    if status.get("phase") == "Running" and not pod_ready(pod):
        unhealthy = [e for e in events if e.get("reason") == "Unhealthy" and "Readiness" in (e.get("message") or "")]
        if unhealthy:
            ev = [Evidence("pod condition", f"Ready=False: {condition_of(pod, 'Ready').get('message', '')}",
                           f"kubectl -n {ns} get pod {pname}")]
            ev += [event_evidence(e, ns) for e in unhealthy[-1:]]
            ev += _service_endpoints_evidence(snap, pod)
            output = " ".join(e.get("message") or "" for e in unhealthy)
            why, fix = _probe_fix(snap, kind, ns, name, spec, "readinessProbe", output)
            summary = _("the pods run but never turn Ready, so no Service sends them traffic: {why}").format(why=why)
            return Finding("ReadinessProbeFailing", subject, ns, summary, ev, fix)
    return None


def selected(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _service_endpoints_evidence(snap: Snapshot, pod: dict[str, Any]) -> list[Evidence]:
    out = []
    labels = meta(pod).get("labels") or {}
    for svc in snap.services:
        if meta(svc).get("namespace") != meta(pod).get("namespace"):
            continue
        if selected(labels, (svc.get("spec") or {}).get("selector") or {}):
            name, ns = meta(svc)["name"], meta(svc)["namespace"]
            ready = ready_endpoints(snap, ns, name)
            out.append(Evidence("endpoints", _("service {name} has {ready} ready endpoint(s)").format(name=name,
                                                                                                  ready=ready),
                                f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name}"))
    return out


def ready_endpoints(snap: Snapshot, ns: str, service: str) -> int:
    return sum(1 for s in snap.endpointslices if meta(s).get("namespace") == ns
               and (meta(s).get("labels") or {}).get("kubernetes.io/service-name") == service
               for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))

