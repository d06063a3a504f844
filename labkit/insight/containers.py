"""Rules about containers: images, probes, configuration, the command, init containers, volumes (part of
:mod:`labkit.insight`)."""

from __future__ import annotations

import difflib
import json
import re
import shlex
from typing import Any

from ..kube.quantity import format_quantity, quantity
from .findings import EXIT_CODES, Evidence, Finding
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
            return (f"it checks port {port}, but the container listens on {declared[0]} (connection refused)",
                    jsonpatch(ns, kind, name, [{"op": "replace", "path": f"{base}/port", "value": declared[0]}]))
        if handler == "httpGet" and "statuscode: 404" in output:
            return (f"it asks for {probe[handler].get('path', '/')}, which the app answers with 404",
                    jsonpatch(ns, kind, name, [{"op": "replace", "path": f"{base}/path", "value": "/"}]))
    if can_undo(snap, kind, ns, name):
        return "the probe started failing with the latest revision", undo_command(ns, name)
    return ("the app does not answer the probe", f"kubectl -n {ns} edit {kind.lower()}/{name}   # fix the {probe_kind}"
            " (what it checks, or initialDelaySeconds/failureThreshold)")


_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName")
_MISSING_OBJECT = re.compile(r'(?P<kind>configmap|secret) "(?P<name>[^"]+)" not found')
# kubelet_pods.go: "couldn't find key %v in ConfigMap %v/%v" (and in Secret)
_MISSING_KEY = re.compile(r"couldn't find key (?P<key>\S+) in (?P<kind>ConfigMap|Secret) (?P<ns>[^/\s]+)/(?P<name>\S+)")
# runc's words, passed on by containerd: `exec: "curl": executable file not found in $PATH`
_EXEC = re.compile(r'exec: "(?P<exe>[^"]+)": (?P<why>[^:]+)')
# What a small image has instead (busybox and alpine have wget and sh, not curl and bash).
_INSTEAD = {"curl": "wget", "bash": "sh"}
INIT_STUCK_S = 300  # an init container still running after this long is stuck, not slow


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
    where = "init container" if init else "container"
    ev = [_state_evidence(ns, pname, init, f"{where} {cname}: waiting {waiting.get('reason')}: "
                          f"{(waiting.get('message') or '')[:200]}".rstrip(": "))]
    ev += [event_evidence(e, ns) for e in events if e.get("reason") == "Failed"
           and "Failed to pull" in (e.get("message") or "")][-1:]
    image = next((c.get("image") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
                  if c.get("name") == cname), "")
    return Finding("ImagePullBackOff", subject_of(kind, name), ns,
                   f"image {cs.get('image') or image!r} cannot be pulled"
                   + (f" for init container {cname} (Init:{waiting.get('reason')})" if init else "")
                   + ": the name or tag does not exist in the registry (or needs credentials)", ev,
                   _image_fix(snap, kind, ns, name, cname, image))


def _config_error(snap: Snapshot, pod: dict[str, Any], kind: str, name: str, cs: dict[str, Any],
                  spec: dict[str, Any], events: list[dict[str, Any]], init: bool) -> Finding:
    """CreateContainerConfigError: the kubelet cannot build the container's environment from what it names."""
    ns, pname, cname = meta(pod)["namespace"], meta(pod)["name"], cs.get("name")
    message = ((cs.get("state") or {}).get("waiting") or {}).get("message") or ""
    where = "init container" if init else "container"
    ev = [_state_evidence(ns, pname, init, f"{where} {cname}: waiting CreateContainerConfigError: {message[:200]}")]
    ev += [event_evidence(e, ns) for e in events if e.get("reason") == "Failed" and message
           and message in (e.get("message") or "")][-1:]
    subject = subject_of(kind, name)
    m = _MISSING_KEY.search(message) or _MISSING_OBJECT.search(message)
    if not m:
        return Finding("CreateContainerConfigError", subject, ns, f"the kubelet cannot build {where} {cname}'s "
                       f"configuration: {message[:160]}", ev, f"kubectl -n {ns} describe pod {pname}")
    obj_kind, obj = m["kind"].lower(), m["name"]
    key = m.groupdict().get("key")
    refs = env_refs(spec, obj_kind, obj, key)
    for r in refs:
        ev.append(Evidence("pod spec", f"container {r['container']}: {r['text']}",
                           template_command(ns, kind, name, pname, r["field"])))
    why, fix = config_fix(snap, ns, kind, name, obj_kind, obj, key, refs, ev)
    users = list(dict.fromkeys(r["container"] for r in refs)) or [cname]
    return Finding("CreateContainerConfigError", subject, ns, f"{'containers' if len(users) > 1 else 'container'} "
                   f"{', '.join(users)} cannot start: {'their' if len(users) > 1 else 'its'} env {why}", ev, fix)


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
    where = "init container" if init else "container"
    group = "initContainers" if init else "containers"
    now = ((cs.get("state") or {}).get("terminated") or {}).get("reason") == "StartError"
    ev = [Evidence("pod status", f"{where} {cname}: {('waiting ' + waiting + ', ') if waiting else ''}"
                   f"{'' if now else 'last '}terminated {failed.get('reason')}, exit code {failed.get('exitCode')}, "
                   f"restartCount {cs.get('restartCount', 0)}: {tail(message, 200)}",
                   _last_state_command(ns, pname, init))]
    m = _EXEC.search(message)
    exe = m["exe"] if m else ""
    ev += [event_evidence(e, ns) for e in events if e.get("reason") == "Failed"
           and exe and f'"{exe}"' in (e.get("message") or "")][-1:]
    i, container = next(((i, c) for i, c in enumerate(spec.get(group) or []) if c.get("name") == cname), (0, {}))
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    image = container.get("image") or cs.get("image") or ""
    if command or args:
        ev.append(Evidence("pod spec", f"{where} {cname} runs {json.dumps(command + args)} in image {image}",
                           template_command(ns, kind, name, pname, f'{group}[?(@.name=="{cname}")].command')))
    why = (m["why"] if m else "the runtime refused it").strip()
    summary = (f"{where} {cname} cannot start: exec {exe!r}: {why}" if exe else f"{where} {cname} cannot start: "
               f"{tail(message, 120)}") + (f" (image {image})" if image else "")
    base = exe.rsplit("/", 1)[-1]
    instead = _INSTEAD.get(base) if "not found" in why else None
    urls = [a for a in command[1:] + args if "://" in a]
    if base == "curl" and not urls:  # wget can stand in for curl fetching a URL, not for the rest of curl
        instead = None
    fix = ""
    if instead and command and command[0] == exe:
        # curl -s URL -> wget -qO- URL (the URLs kept, curl's flags dropped); bash ... -> sh ...
        new = ["wget", "-qO-", *urls] if base == "curl" else [instead, *command[1:], *args]
        summary += f"; the image has {instead}: run {shlex.join(new)} instead (or use an image that has {base})"
        if kind in PATCHABLE:
            base_path = f"/spec/template/spec/{group}/{i}"
            fix = jsonpatch(ns, kind, name, [{"op": "replace", "path": f"{base_path}/command", "value": new}]
                             + ([{"op": "remove", "path": f"{base_path}/args"}] if args else []))
        elif kind == "Pod":
            fix = (f"kubectl -n {ns} get pod {pname} -o yaml > {pname}.yaml   # in it, set {where} {cname}'s command "
                   f"to {json.dumps(new)}" + (" and drop its args" if args else "")
                   + f"\nkubectl -n {ns} replace --force -f {pname}.yaml   # a pod's command cannot change: this "
                   "deletes and re-creates it")
    if not fix and can_undo(snap, kind, ns, name):
        summary += "; it started with the latest revision: roll back, then fix it"
        fix = undo_command(ns, name)
    if not fix:
        fix = (f"kubectl -n {ns} edit {kind.lower()}/{name}   # {where} {cname}: run an executable "
               f"{image or 'the image'} has, or use an image that has {exe or 'it'}")
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
    ev.append(Evidence("pod spec", f"init container {cname} waits for {svc}: {tail(shlex.join(command + args), 200)}",
                       template_command(ns, kind, name, pname, f'initContainers[?(@.name=="{cname}")].command')))
    ev.append(Evidence("services", f"no Service {svc} in {ns}, so its name never resolves; {ns} has: "
                       f"{', '.join(names) or 'none'}", f"kubectl -n {ns} get services"))
    close = difflib.get_close_matches(svc, names, n=1, cutoff=0.6)
    if close and kind in PATCHABLE:
        word = re.compile(rf"\b{re.escape(svc)}\b")
        base = f"/spec/template/spec/initContainers/{i}"
        ops = [{"op": "replace", "path": f"{base}/{field_name}", "value": [word.sub(close[0], a) for a in values]}
               for field_name, values in (("command", command), ("args", args)) if any(word.search(a) for a in values)]
        return (f"it waits for Service {svc}, which does not exist; {close[0]} does: wait for that",
                jsonpatch(ns, kind, name, ops))
    meant = f"; if it means {close[0]}, fix its command (the pod must be re-created)" if close else ""
    return (f"it waits for Service {svc}, which does not exist in {ns}: create it (or deploy what provides it){meant}",
            f"kubectl -n {ns} create service clusterip {svc} --tcp=80:80   # the ports and selector of the real one")


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
                     f"Init:{statuses.index(cs)}/{len(statuses)}, running again after a failure")
            ev = [Evidence("pod status", f"init container {cname}: {shown}, restartCount {cs.get('restartCount', 0)}, "
                           f"last exit code {code} ({failed.get('reason', '')}: "
                           f"{EXIT_CODES.get(code, 'the process chose it')})",
                           _last_state_command(ns, pname, True)),
                  Evidence("logs", "what the init container printed before it exited",
                           f"kubectl -n {ns} logs {pname} -c {cname}" + (" --previous" if not terminated else ""))]
            ev += [event_evidence(e, ns) for e in events if e.get("reason") == "BackOff"][-1:]
            waits = _service_wait(snap, ns, kind, name, pname, i, container, ev)
            summary = (f"init container {cname} exits with code {code} ({EXIT_CODES.get(code, 'its own choice')}), so "
                       f"the pod's containers never start")
            if waits:
                why, fix = waits
                summary += f": {why}"
            elif can_undo(snap, kind, ns, name):
                summary += "; it started with the latest revision: roll back, then fix it"
                fix = undo_command(ns, name)
            else:
                fix = (f"kubectl -n {ns} logs {pname} -c {cname}" + (" --previous" if not terminated else "")
                       + "   # read why, then fix its command or what it needs")
            return Finding("InitContainerFailing", subject, ns, summary, ev, fix)
        if "running" in state and condition_of(pod, "Initialized").get("status") == "False":
            cond = condition_of(pod, "Initialized")
            started = (state.get("running") or {}).get("startedAt")
            lasted = seconds_since(snap, started)
            ev = [Evidence("pod condition", f"Initialized=False {cond.get('reason')}: {cond.get('message', '')} "
                           f"(kubectl shows Init:{statuses.index(cs)}/{len(statuses)})",
                           f"kubectl -n {ns} get pod {pname}"),
                  Evidence("pod status", f"init container {cname} has been running since {started}"
                           + (f" ({lasted / 60:.0f} min)" if lasted is not None else ""),
                           f"kubectl -n {ns} logs {pname} -c {cname}   # what it is waiting for")]
            waits = _service_wait(snap, ns, kind, name, pname, i, container, ev)
            if waits:
                why, fix = waits
            elif lasted is not None and lasted > INIT_STUCK_S:
                why, fix = ("it has not finished in time", f"kubectl -n {ns} logs {pname} -c {cname}   # what it "
                            "waits for; then provide that, or fix its command")
            else:
                return None
            return Finding("InitContainerBlocked", subject, ns, f"init container {cname} keeps running, so the pod's "
                           f"containers never start: {why}", ev, fix)
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
    ev = [Evidence("pod status", f"pod {pname} is Pending, its containers waiting {', '.join(waiting)}",
                   f"kubectl -n {ns} get pod {pname}"), event_evidence(event, ns)]
    subject = subject_of(kind, name)
    m = _MOUNT.search(event.get("message") or "")
    spec = template_spec(snap, kind, ns, name, pod)
    i, volume = next(((i, v) for i, v in enumerate(spec.get("volumes") or []) if m and v.get("name") == m["volume"]),
                     (0, {}))
    source = "configMap" if "configMap" in volume else "secret" if "secret" in volume else ""
    if not m or not source:
        return Finding("FailedMount", subject, ns, f"a volume of the pod cannot be mounted: "
                       f"{(event.get('message') or '')[:160]}", ev, f"kubectl -n {ns} describe pod {pname}")
    vol, err = m["volume"], m["error"]
    src = volume[source]
    obj = src.get("name") if source == "configMap" else src.get("secretName")
    obj_kind = source.lower()
    users = [f"{c.get('name')} at {vm.get('mountPath')}" for c in (spec.get("initContainers") or [])
             + (spec.get("containers") or []) for vm in c.get("volumeMounts") or [] if vm.get("name") == vol]
    items = src.get("items") or []
    ev.append(Evidence("pod spec", f"volume {vol} is {source} {obj}"
                       + (f" (items {', '.join(str(it.get('key')) for it in items)})" if items else "")
                       + f", mounted by {', '.join(users) or 'no container'}",
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
        return Finding("FailedMount", subject, ns, f"volume {vol} ({source} {obj}) cannot be mounted: {err[:160]}",
                       ev, f"kubectl -n {ns} describe pod {pname}")
    why, fix = config_fix(snap, ns, kind, name, obj_kind, obj, key, refs, ev)
    return Finding("FailedMount", subject, ns, f"volume {vol} cannot be mounted, so the pod stays ContainerCreating: "
                   f"it {why}", ev, fix)


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
            ev.append(Evidence("pod status", f"container {cname}: restartCount {cs.get('restartCount', 0)}, last exit "
                               f"code {last.get('exitCode', '?')} ({last.get('reason', '')})",
                               f"kubectl -n {ns} get pod {pname} -o "
                               f"jsonpath='{{.status.containerStatuses[*].lastState}}'"))
            output = " ".join(e.get("message") or "" for e in unhealthy)
            why, fix = _probe_fix(snap, kind, ns, name, spec, "livenessProbe", output)
            return Finding("LivenessProbeFailing", subject, ns, f"the liveness probe fails and the kubelet kills the "
                           f"container: {why}", ev, fix,
                           queries=[("restarts", f'kube_pod_container_status_restarts_total{{namespace="{ns}",'
                                                 f'pod="{pname}"}}')])
        if last.get("reason") == "OOMKilled":
            limit = next(((c.get("resources") or {}).get("limits") or {}).get("memory") for c in
                         spec.get("containers") or [] if c.get("name") == cname)
            ev = [Evidence("pod status", f"container {cname}: last terminated OOMKilled, exit code "
                           f"{last.get('exitCode')}, restartCount {cs.get('restartCount', 0)}, memory limit {limit}",
                           f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.containerStatuses[*].lastState}}'")]
            doubled = format_quantity("memory", 2 * quantity(limit)) if limit else "512Mi"
            return Finding("OOMKilled", subject, ns, f"the container outgrew its memory limit ({limit}) and was killed "
                           f"by the kernel: raise the limit (or fix the leak)", ev,
                           f"kubectl -n {ns} set resources {kind.lower()}/{name} -c {cname} --limits=memory={doubled}",
                           queries=[("memory working set", f'container_memory_working_set_bytes{{namespace="{ns}",'
                                                           f'pod="{pname}", container="{cname}"}}')])
        if reason == "CrashLoopBackOff" or (last.get("exitCode") and cs.get("restartCount")):
            code = last.get("exitCode")
            ev = [Evidence("pod status", f"container {cname}: {reason or 'restarted'}, restartCount "
                           f"{cs.get('restartCount', 0)}, last exit code {code} ({last.get('reason', '')}: "
                           f"{EXIT_CODES.get(code, 'the process chose it')})",
                           f"kubectl -n {ns} get pod {pname} -o jsonpath='{{.status.containerStatuses[*].lastState}}'"),
                  Evidence("logs", "what the process printed before it exited",
                           f"kubectl -n {ns} logs {pname} -c {cname} --previous")]
            ev += [event_evidence(e, ns) for e in events if e.get("reason") == "BackOff"][-1:]
            undo = can_undo(snap, kind, ns, name)
            fix = undo_command(ns, name) if undo else (
                f"kubectl -n {ns} logs {pname} -c {cname} --previous   # read why, then fix the command or the config "
                "it needs")
            return Finding("CrashLoopBackOff", subject, ns, f"the process exits with code {code} "
                           f"({EXIT_CODES.get(code, 'its own choice')})" + (
                               "; it started with the latest revision: roll back, then fix it" if undo else ""),
                           ev, fix, queries=[("restarts", f'kube_pod_container_status_restarts_total{{namespace="{ns}",'
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
            return Finding("ReadinessProbeFailing", subject, ns, f"the pods run but never turn Ready, so no Service "
                           f"sends them traffic: {why}", ev, fix)
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
            out.append(Evidence("endpoints", f"service {name} has {ready} ready endpoint(s)",
                                f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name}"))
    return out


def ready_endpoints(snap: Snapshot, ns: str, service: str) -> int:
    return sum(1 for s in snap.endpointslices if meta(s).get("namespace") == ns
               and (meta(s).get("labels") or {}).get("kubernetes.io/service-name") == service
               for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))

