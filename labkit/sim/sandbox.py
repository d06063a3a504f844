"""A simulated container's world, as a real one would see it, built on the host for a bubblewrap sandbox.

No container engine runs on the embedded cluster. What a learner reaches *inside* a container (``kubectl exec``, a
busybox pod's shell script, an exec probe's ``cat /tmp/healthy``) runs for real, in an unprivileged sandbox made
with Debian's ``bwrap`` (user, mount, PID, network, IPC and UTS namespaces; no capabilities) around Debian's
static ``busybox``. This module makes that world from the pod's spec, as the kubelet and the runtime would:

- a writable root file system per container (``<runtime>/pods/<ns>_<pod>_<uid>/<container>/rootfs``), kept across
  ``kubectl exec`` calls so that every exec and the container's own script see the same files, under a read-only
  ``/bin`` shared by the containers whose images have the same programs (busybox's applets the catalog gives the
  image);
- ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname`` as the kubelet writes them;
- the environment: ``env`` (with ``$(VAR)`` references), ``valueFrom`` ConfigMap and Secret keys, the downward API
  (``fieldRef``, ``resourceFieldRef``), ``envFrom``, and the Service variables (``enableServiceLinks``);
- the volumes, as directories bound at their ``mountPath`` (``subPath``, ``readOnly``): ``emptyDir`` shared by the
  pod's containers, ConfigMap and Secret keys as files, ``downwardAPI`` and ``projected`` (the service account's
  ``namespace`` and ``ca.crt``), a claim's local-path directory; a ``hostPath`` is a folder of the simulated node,
  never the host's.

The sandbox has its own network namespace with only loopback: nothing inside reaches the host's ports (the API
server, etcd). It is not a security boundary against a hostile root on this machine, but it keeps a learner's
commands away from the host's files, processes and network. The pure functions take plain dicts; the unit tests use
them without a cluster.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..i18n import _
from ..kube.quantity import quantity
from ..paths import state_dir, write_atomic
from . import service_net

Obj = dict[str, Any]

# The kubelet's defaults (pkg/kubelet/kubelet_pods.go, kind's cluster DNS).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLUSTER_DOMAIN = "cluster.local"
# In the embedded API server's Service range (10.0.0.0/24), as kube-dns's 10.96.0.10 is in kind's.
CLUSTER_DNS = "10.0.0.10"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# Programs a container's command may name that run for real: Debian's busybox applets, and bash as busybox's sh.
SHELL_ALIASES = {"bash": "sh"}
# Raised when what a /bin layer holds changes, so that layers made by an older labkit are not reused.
LAYER_VERSION = 4


def runtime_dir() -> Path:
    """The simulated container runtime's folder: sandboxes, exec specs, the responder's address."""
    return state_dir() / "runtime"


def tools() -> tuple[str, str] | None:
    """``(bwrap, busybox)`` on this machine, or None when either is missing (Debian: bubblewrap, busybox-static)."""
    bwrap, busybox = shutil.which("bwrap"), shutil.which("busybox")
    return (bwrap, busybox) if bwrap and busybox else None


_shell: list[tuple[str, str]] | None = None


def shell_binds() -> list[tuple[str, str]]:
    """``(host path, sandbox path)`` of Debian's ``dash`` as ``/bin/sh`` and the libraries it loads; [] without dash
    (busybox's sh then). Debian's static busybox runs its own applets ahead of ``PATH``, so its sh would bypass the
    Service network's ``wget`` and ``nslookup`` (:mod:`labkit.sim.service_net`); dash looks in ``PATH``."""
    global _shell
    if _shell is None:
        _shell = []
        dash = shutil.which("dash")
        if dash:
            out = subprocess.run(["ldd", dash], capture_output=True, text=True, timeout=10, check=False).stdout
            libs = re.findall(r"(?:=> )?(/\S+) \(0x", out)
            if out and libs:
                _shell = [(os.path.realpath(dash), "/bin/sh"), *((os.path.realpath(lib), lib) for lib in libs)]
    return _shell


MISSING_TOOLS = ("containers cannot run for real here: install Debian's `bubblewrap` and `busybox-static` "
                 "(apt-get install bubblewrap busybox-static), then `labkit down && labkit up`")


def missing_tools_fix() -> str:
    """MISSING_TOOLS's fix (after its colon), in the learner's language: `labkit doctor` prints it."""
    return _("install Debian's `bubblewrap` and `busybox-static` (apt-get install bubblewrap busybox-static), "
             "then `labkit down && labkit up`")


_applets: set[str] | None = None


def applets() -> set[str]:
    """The programs busybox provides (``busybox --list``); empty without busybox."""
    global _applets
    if _applets is None:
        found = tools()
        _applets = set()
        if found:
            out = subprocess.run([found[1], "--list"], capture_output=True, text=True, timeout=10, check=False)
            _applets = set(out.stdout.split())
    return _applets


def real_command(container: Obj, *, no_entrypoint: bool = False) -> list[str] | None:
    """The argv a container runs for real, or None when its program is not a busybox applet (the image's own
    entrypoint, a server): then the Stages' model alone says what it does. ``no_entrypoint``: the image has no
    ENTRYPOINT (busybox, alpine), so ``args`` alone are the command."""
    argv = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    if not argv or not (container.get("command") or no_entrypoint):
        return None  # the image's ENTRYPOINT runs, which the catalog does not have
    program = PurePosixPath(argv[0]).name
    program = SHELL_ALIASES.get(program, program)
    if program not in applets():
        return None
    return [program, *argv[1:]]


# -- names and files the kubelet writes ---------------------------------------------------------------------------

def pod_hostname(pod: Obj) -> tuple[str, str]:
    """``(hostname, FQDN or "")``: ``spec.hostname`` or the pod's name; with ``spec.subdomain``, the FQDN."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    hostname = (spec.get("hostname") or meta["name"])[:63].rstrip("-.")
    sub = spec.get("subdomain")
    fqdn = f"{hostname}.{sub}.{meta['namespace']}.svc.{CLUSTER_DOMAIN}" if sub else ""
    return hostname, fqdn


def etc_hosts(pod: Obj) -> str:
    """``/etc/hosts`` as the kubelet writes it (``managedHostsFileContent``)."""
    hostname, fqdn = pod_hostname(pod)
    ip = (pod.get("status") or {}).get("podIP") or ""
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    if ip:
        lines.append(f"{ip}\t{fqdn}\t{hostname}" if fqdn else f"{ip}\t{hostname}")
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    if aliases:
        lines += ["", "# Entries added by HostAliases."]
        lines += [f"{a.get('ip')}\t" + "\t".join(a.get("hostnames") or []) for a in aliases]
    return "\n".join(lines) + "\n"


def resolv_conf(pod: Obj) -> str:
    """``/etc/resolv.conf`` for ``dnsPolicy: ClusterFirst`` (the default), or the pod's ``dnsConfig``."""
    ns = pod["metadata"]["namespace"]
    spec = pod.get("spec") or {}
    dns = spec.get("dnsConfig") or {}
    if spec.get("dnsPolicy") == "None":
        servers, searches = dns.get("nameservers") or [], dns.get("searches") or []
    else:
        servers = [CLUSTER_DNS, *(dns.get("nameservers") or [])]
        searches = [f"{ns}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN, *(dns.get("searches") or [])]
    options = {"ndots": "5"}
    for opt in dns.get("options") or []:
        options[opt.get("name")] = opt.get("value")
    lines = [f"search {' '.join(searches)}"] if searches else []
    lines += [f"nameserver {s}" for s in servers]
    lines.append("options " + " ".join(k if v in (None, "") else f"{k}:{v}" for k, v in options.items()))
    return "\n".join(lines) + "\n"


# -- the environment ------------------------------------------------------------------------------------------------

@dataclass
class Objects:
    """What the kubelet reads to make a container's world: one namespace's ConfigMaps, Secrets and Services."""

    configmaps: dict[str, dict[str, bytes]] = field(default_factory=dict)
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    services: dict[str, Obj] = field(default_factory=dict)
    master: Obj | None = None  # default/kubernetes, the API server's Service


def object_data(obj: Obj, *, secret: bool) -> dict[str, bytes]:
    """A ConfigMap's or Secret's keys and their bytes (a Secret's ``data`` and any ``binaryData`` are base64)."""
    out: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items():
        out[key] = base64.b64decode(value or "") if secret else str(value).encode()
    for key, value in (obj.get("binaryData") or {}).items():
        out[key] = base64.b64decode(value or "")
    for key, value in (obj.get("stringData") or {}).items():
        out[key] = str(value).encode()
    return out


def service_env(services: Mapping[str, Obj]) -> dict[str, str]:
    """The Docker-links-style variables of every Service with a cluster IP (``FOO_SERVICE_HOST``, ...)."""
    env: dict[str, str] = {}
    for name, svc in sorted(services.items()):
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or not spec.get("ports"):
            continue
        prefix = name.upper().replace("-", "_")
        first = spec["ports"][0]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
        for p in spec["ports"]:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        proto = (first.get("protocol") or "TCP").lower()
        env[f"{prefix}_PORT"] = f"{proto}://{ip}:{first['port']}"
        for p in spec["ports"]:
            proto_l = (p.get("protocol") or "TCP").lower()
            key = f"{prefix}_PORT_{p['port']}_{proto_l.upper()}"
            env[key] = f"{proto_l}://{ip}:{p['port']}"
            env[f"{key}_PROTO"] = proto_l
            env[f"{key}_PORT"] = str(p["port"])
            env[f"{key}_ADDR"] = ip
    return env


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` references as the kubelet expands them (``$$`` is a literal ``$``; unknown ones stay)."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(sub, value)


def field_value(pod: Obj, path: str) -> str:
    """A downward API ``fieldRef`` (``metadata.name``, ``metadata.labels['app']``, ``status.podIP``, ...)."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    if m := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
              "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP"),
              "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
              "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or [])}
    return str(simple.get(path) or "")


def resource_value(container: Obj, ref: Obj) -> str:
    """A ``resourceFieldRef`` (``limits.memory``, ``requests.cpu`` with its ``divisor``), rounded up as the kubelet
    does; an unset limit is the node's allocatable, which the sandbox does not know: the request or 0."""
    res = container.get("resources") or {}
    kind, _, name = str(ref.get("resource", "")).partition(".")
    raw = (res.get(kind) or {}).get(name) or (res.get("requests") or {}).get(name) or "0"
    value = quantity(str(raw))
    divisor = quantity(str(ref.get("divisor") or "1")) or 1.0
    return str(max(math.ceil(value / divisor - 1e-9), 1 if value else 0))


def container_env(pod: Obj, container: Obj, objects: Objects) -> dict[str, str]:
    """The container's environment, in the kubelet's order: Service variables, ``envFrom``, ``env``."""
    spec = pod.get("spec") or {}
    hostname, _ = pod_hostname(pod)
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root"}
    if spec.get("enableServiceLinks", True):
        env.update(service_env(objects.services))
    # The API server's variables are set in every namespace (the `kubernetes` Service lives in `default`).
    env.update({k: v for k, v in service_env({"kubernetes": objects.master}).items()} if objects.master else {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, table in (("configMapRef", objects.configmaps), ("secretRef", objects.secrets)):
            ref = source.get(kind)
            if ref:
                for key, value in (table.get(ref.get("name")) or {}).items():
                    env[prefix + key] = value.decode(errors="replace")
    for item in container.get("env") or []:
        name, value_from = item["name"], item.get("valueFrom") or {}
        if "value" in item or not value_from:
            env[name] = expand(str(item.get("value") or ""), env)
        elif ref := value_from.get("configMapKeyRef"):
            data = objects.configmaps.get(ref.get("name")) or {}
            if ref.get("key") in data:
                env[name] = data[ref["key"]].decode(errors="replace")
        elif ref := value_from.get("secretKeyRef"):
            data = objects.secrets.get(ref.get("name")) or {}
            if ref.get("key") in data:
                env[name] = data[ref["key"]].decode(errors="replace")
        elif ref := value_from.get("fieldRef"):
            env[name] = field_value(pod, ref.get("fieldPath", ""))
        elif ref := value_from.get("resourceFieldRef"):
            env[name] = resource_value(container, ref)
    return env


# -- volumes --------------------------------------------------------------------------------------------------------

def _key_files(data: Mapping[str, bytes], items: list[Obj] | None) -> dict[str, bytes]:
    if not items:
        return dict(data)
    return {i["path"]: data[i["key"]] for i in items if i.get("key") in data}


def volume_files(pod: Obj, volume: Obj, objects: Objects) -> dict[str, bytes] | None:
    """The files a ConfigMap, Secret, downwardAPI or projected volume holds (relative path -> bytes); None for a
    volume that is a plain directory (emptyDir, a claim, hostPath)."""
    if cm := volume.get("configMap"):
        return _key_files(objects.configmaps.get(cm.get("name")) or {}, cm.get("items"))
    if sec := volume.get("secret"):
        return _key_files(objects.secrets.get(sec.get("secretName")) or {}, sec.get("items"))
    if dapi := volume.get("downwardAPI"):
        return {i["path"]: field_value(pod, (i.get("fieldRef") or {}).get("fieldPath", "")).encode()
                for i in dapi.get("items") or [] if i.get("fieldRef")}
    if proj := volume.get("projected"):
        files: dict[str, bytes] = {}
        for source in proj.get("sources") or []:
            if "serviceAccountToken" in source:
                continue  # a bound token is the API server's to sign; the sandbox cannot reach the API anyway
            if cm := source.get("configMap"):
                files.update(_key_files(objects.configmaps.get(cm.get("name")) or {}, cm.get("items")))
            elif sec := source.get("secret"):
                files.update(_key_files(objects.secrets.get(sec.get("name")) or {}, sec.get("items")))
            elif dapi := source.get("downwardAPI"):
                files.update({i["path"]: field_value(pod, (i.get("fieldRef") or {}).get("fieldPath", "")).encode()
                              for i in dapi.get("items") or [] if i.get("fieldRef")})
        return files
    return None


def write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write a volume's files into its folder, replacing what was there; paths may not leave the folder."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    root = folder.resolve()
    for rel, data in files.items():
        target = (folder / rel).resolve()
        if root not in target.parents:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


@dataclass
class Sandbox:
    """One container's sandbox: where its files live on the host, and the argv that enters it."""

    pod_dir: Path
    container: str

    @property
    def rootfs(self) -> Path:
        return self.pod_dir / "containers" / self.container / "rootfs"


def pod_dir(pod: Obj, root: Path | None = None) -> Path:
    meta = pod["metadata"]
    return (root or runtime_dir()) / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"


def programs_layer(root: Path, programs: set[str] | None) -> Path:
    """A read-only ``/bin`` shared by every container with the same programs: busybox's applets the image has, as
    links to ``/bin/busybox`` (made once, not once per container), and ``bash`` as busybox's ``sh``."""
    names = sorted((applets() if programs is None else applets() & programs) - {"busybox"}
                   - ({"sh"} if shell_binds() else set()))
    with_bash = "bash" not in applets() and (programs is None or "bash" in programs)
    apt = [name for name in APT_PROGRAMS if programs is not None and name in programs]
    key = hashlib.sha256(("\n".join(names) + f"\nbash={with_bash}\napt={apt}\nv={LAYER_VERSION}").encode()
                         ).hexdigest()[:16]
    layer = root / "layers" / key
    if (layer / ".complete").exists():
        return layer
    tmp = layer.with_name(f"{key}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in names:
        (tmp / name).symlink_to("/bin/busybox")
    (tmp / "busybox").touch()  # where busybox itself is bound
    if shell_binds() and (programs is None or "sh" in programs):
        (tmp / "sh").touch()  # where dash is bound
    if with_bash:
        (tmp / "bash").write_text(BASH_SCRIPT)
        (tmp / "bash").chmod(0o755)
    for name in apt:
        (tmp / name).write_text(APT_SCRIPT)
        (tmp / name).chmod(0o755)
    service_net.install_clients(tmp, programs)
    (tmp / ".complete").touch()
    try:
        tmp.rename(layer)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return layer


def contained(base: Path, rel: str) -> Path | None:
    """``base / rel`` with its symlinks resolved, or None when it resolves outside ``base`` (a container's symlink
    to a host path must not be followed by the host)."""
    root = base.resolve()
    real = (base / _safe_rel(rel)).resolve()
    return real if real == root or root in real.parents else None


def _safe_rel(path: str) -> str:
    """A subPath inside its volume (``..`` parts dropped: the kubelet refuses them)."""
    return "/".join(p for p in PurePosixPath(path).parts if p not in ("..", "/", "."))


def prepare(pod: Obj, container: Obj, objects: Objects, *, root: Path | None = None, claim_dirs: Mapping[str, Path]
            | None = None, image_files: Mapping[str, str] | None = None,
            programs: set[str] | None = None) -> list[str]:
    """Make the container's world on the host and return the ``bwrap`` argv that enters it (a command follows).

    ``claim_dirs``: claim name -> its local-path folder (under the lab's state); ``image_files``: files the image
    ships (path -> text), written once into a new root file system; ``programs``: the image's programs as the
    catalog knows them (only those busybox applets are linked; None: all of them)."""
    found = tools()
    if found is None:
        raise RuntimeError(MISSING_TOOLS)
    bwrap, busybox = found
    pdir = pod_dir(pod, root)
    box = Sandbox(pdir, container["name"])
    etc = pdir / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    hostname, _ = pod_hostname(pod)
    (etc / "hosts").write_text(etc_hosts(pod))
    (etc / "resolv.conf").write_text(resolv_conf(pod))
    (etc / "hostname").write_text(hostname + "\n")
    # Each start begins from the image, as a runtime's writable layer does (and nothing the last start left, a
    # symlink to a host path, is ever written through).
    shutil.rmtree(box.rootfs, ignore_errors=True)
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "tmp", "root", "etc", "var/log", "proc", "dev"):
        (box.rootfs / sub).mkdir(parents=True, exist_ok=True)
    (box.rootfs / "tmp").chmod(0o1777)
    (box.rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                               "nobody:x:65534:65534:nobody:/:/bin/false\n")
    (box.rootfs / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
    for path, text in (image_files or {}).items():
        target = box.rootfs / _safe_rel(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    layer = programs_layer(pdir.parent.parent, programs)
    spec = pod.get("spec") or {}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    env = container_env(pod, container, objects)
    sc = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
    argv = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--cap-drop", "ALL",
            "--uid", str(int(sc.get("runAsUser") or 0)), "--gid", str(int(sc.get("runAsGroup") or 0)),
            "--hostname", hostname, "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--bind", str(box.rootfs), "/", "--ro-bind", str(layer), "/bin", "--ro-bind", busybox, "/bin/busybox"]
    for host, inside in shell_binds() if programs is None or "sh" in programs else []:
        argv += ["--ro-bind", host, inside]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for name in ("hosts", "resolv.conf", "hostname"):
        argv += ["--ro-bind", str(etc / name), f"/etc/{name}"]
    spool = service_net.spool_dir(pdir)
    spool.mkdir(parents=True, exist_ok=True)
    argv += ["--bind", str(spool), service_net.SPOOL]
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount.get("name"))
        if volume is None:
            continue
        vdir = pdir / "volumes" / volume["name"]
        files = volume_files(pod, volume, objects)
        if files is not None:
            write_files(vdir, files)
        else:
            elsewhere = None
            if claim := volume.get("persistentVolumeClaim"):
                elsewhere = (claim_dirs or {}).get(claim.get("claimName"))
            elif host := volume.get("hostPath"):  # the simulated node's folder, never the host's
                elsewhere = pdir.parent.parent / "nodes" / str(spec.get("nodeName")) / _safe_rel(host.get("path", ""))
            if elsewhere is not None:  # the pod's volume folder names it (host_path follows it)
                elsewhere.mkdir(parents=True, exist_ok=True)
                vdir.parent.mkdir(parents=True, exist_ok=True)
                if not vdir.is_symlink():
                    vdir.symlink_to(elsewhere, target_is_directory=True)
                vdir = elsewhere
        vdir.mkdir(parents=True, exist_ok=True)
        source = contained(vdir, mount["subPath"]) if mount.get("subPath") else vdir
        if source is None:  # a symlink a container left in the volume: the kubelet refuses it too
            raise OSError(f"subPath {mount['subPath']!r} of volume {volume['name']!r} leaves the volume")
        if not source.exists():
            source.mkdir(parents=True)
        ro = mount.get("readOnly") or files is not None and not volume.get("emptyDir")
        argv += ["--ro-bind" if ro else "--bind", str(source), str(PurePosixPath("/") / _safe_rel(mount["mountPath"]))]
    workdir = container.get("workingDir") or "/"
    (box.rootfs / _safe_rel(workdir)).mkdir(parents=True, exist_ok=True)  # runc makes a missing workingDir
    argv += ["--chdir", workdir, "--"]
    return argv


# `kubectl exec` of a program the container lacks fails as runc fails it (exit code 126), not as a shell would.
EXEC_SHIM = ('p=$1; shift; case $p in */*) [ -x "$p" ] && exec "$p" "$@";; *) IFS=:; for d in $PATH; do '
             '[ -x "$d/$p" ] && exec "$d/$p" "$@"; done;; esac; printf \'OCI runtime exec failed: exec failed: '
             'unable to start container process: exec: "%s": executable file not found in $PATH: unknown\\r\\n\' "$p" '
             '>&2; exit 126')
# (by its path: busybox's sh would run its own applet of that name, not the image's program in PATH.)
# Debian's busybox has no bash applet: an image with bash gets this script, so `kubectl exec -it POD -- bash` works.
BASH_SCRIPT = '#!/bin/sh\n# labkit: busybox sh stands in for bash in the simulated container\nexec /bin/sh "$@"\n'
# A Debian-based image's apt and apt-get, as they answer on a cluster with no route to the internet (the lab has
# none): `apt-get update` cannot resolve the mirrors and keeps going; `install` finds no package, since the image's
# package lists were removed when it was built (as nginx's and most images' are).
APT_PROGRAMS = ("apt-get", "apt")
APT_SCRIPT = r"""#!/bin/sh
# labkit: apt on a simulated cluster that has no route to the internet
op=; pkgs=; for a in "$@"; do case $a in -*) ;; *) if [ -z "$op" ]; then op=$a; else pkgs="$pkgs $a"; fi;; esac; done
case $op in
update)
  n=1
  for s in "debian bookworm" "debian bookworm-updates" "debian-security bookworm-security"; do
    echo "Ign:$n http://deb.debian.org/${s% *} ${s#* } InRelease"; n=$((n+1)); done
  n=1
  for s in "debian bookworm" "debian bookworm-updates" "debian-security bookworm-security"; do
    echo "Err:$n http://deb.debian.org/${s% *} ${s#* } InRelease"
    echo "  Temporary failure resolving 'deb.debian.org'"; n=$((n+1)); done
  echo "Reading package lists... Done"
  for s in "debian bookworm" "debian bookworm-updates" "debian-security bookworm-security"; do
    echo "W: Failed to fetch http://deb.debian.org/${s% *}/dists/${s#* }/InRelease  Temporary failure resolving" \
      "'deb.debian.org'" >&2; done
  echo "W: Some index files failed to download. They have been ignored, or old ones used instead." >&2
  exit 0;;
install|reinstall|upgrade|dist-upgrade|full-upgrade)
  echo "Reading package lists... Done"; echo "Building dependency tree... Done"
  echo "Reading state information... Done"; missing=0
  for p in $pkgs; do
    if command -v "$p" >/dev/null; then echo "$p is already the newest version."
    else echo "E: Unable to locate package $p" >&2; missing=1; fi; done
  [ $missing = 0 ] && echo "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded."
  [ $missing = 0 ] || exit 100; exit 0;;
clean|autoclean) exit 0;;
"")
  echo "apt 2.6.1 (amd64)"; echo "Usage: ${0##*/} [options] command" >&2; exit 1;;
*)
  echo "E: Invalid operation $op" >&2; exit 100;;
esac
"""


def host_path(pod: Obj, container: Obj, path: str, root: Path | None = None) -> Path | None:
    """Where a path inside the container lies on the host: under the volume mounted over it (the longest
    ``mountPath``), else in the container's root file system; None when a symlink the container made takes it
    outside those (the host never follows one out)."""
    pdir = pod_dir(pod, root)
    inside = PurePosixPath("/") / _safe_rel(path)
    best: tuple[int, Path, str] | None = None
    for mount in container.get("volumeMounts") or []:
        mpath = PurePosixPath("/") / _safe_rel(mount.get("mountPath", ""))
        if inside == mpath or mpath in inside.parents:
            folder = pdir / "volumes" / mount["name"]
            if mount.get("subPath"):
                folder = folder / _safe_rel(mount["subPath"])
            if best is None or len(mpath.parts) > best[0]:
                best = (len(mpath.parts), folder, str(inside.relative_to(mpath)))
    if best is None:
        return contained(Sandbox(pdir, container["name"]).rootfs, path)
    return contained(best[1], best[2])


def write_exec_spec(namespace: str, pod: str, container: str, argv: list[str], root: Path | None = None) -> Path:
    """What labkit's kubelet server reads to run ``kubectl exec`` in this container (``exec/<ns>/<pod>/<c>.json``):
    the sandbox's argv, then the shim above; the server appends the command."""
    return write_atomic((root or runtime_dir()) / "exec" / namespace / pod / f"{container}.json",
                        json.dumps({"argv": [*argv, "/bin/busybox", "sh", "-c", EXEC_SHIM, "exec"]}))


def remove_exec_specs(namespace: str, pod: str, root: Path | None = None) -> None:
    shutil.rmtree((root or runtime_dir()) / "exec" / namespace / pod, ignore_errors=True)


def remove_pod(pod: Obj, root: Path | None = None) -> None:
    """Delete the pod's sandboxes (its emptyDirs go with it, as on a node)."""
    shutil.rmtree(pod_dir(pod, root), ignore_errors=True)
    remove_exec_specs(pod["metadata"]["namespace"], pod["metadata"]["name"], root)

