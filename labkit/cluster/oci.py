"""Files out of a container image through the OCI distribution API, for components that publish images only.

kube-state-metrics, prometheus-adapter and prometheus-operator ship their binaries in registry images, not release
archives. This client does what ``crane export`` would for one file: it resolves the tag (an anonymous bearer token
when the registry asks for one), picks the ``linux/ARCH`` manifest from an index, then reads the layers from the
top down until every wanted file is found. Each manifest and blob is checked against its sha256 digest (the
registry's ``Docker-Content-Digest`` for the tag, the parent manifest's digest for the rest); nothing is kept but
the files asked for. No container engine and no image store are involved.

:func:`write_image` does the reverse for ``labkit prefetch --export``: a one-layer image as static files under
``v2/``, which any HTTP server serves to this client.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from ..errors import BinariesUnavailable

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
IMAGE_TYPES = ("application/vnd.oci.image.manifest.v1+json",
               "application/vnd.docker.distribution.manifest.v2+json")
OCI_MANIFEST, OCI_CONFIG, OCI_LAYER = (IMAGE_TYPES[0], "application/vnd.oci.image.config.v1+json",
                                       "application/vnd.oci.image.layer.v1.tar+gzip")
# Reads the whole body of a URL or request (the caller's download with its progress bar and timeout).
Reader = Callable[[urllib.request.Request], tuple[bytes, Message]]


@dataclass(frozen=True)
class Image:
    """Where a component's binaries live in a published image: ``reference`` is ``HOST/REPOSITORY:TAG``,
    ``files`` binary name -> its path inside the image's filesystem."""

    reference: str
    files: dict[str, str]

    @property
    def host(self) -> str:
        return self.reference.split("/", 1)[0]

    @property
    def repository(self) -> str:
        return self.reference.split("/", 1)[1].rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]

    def url(self, kind: str, ref: str) -> str:
        """``https://HOST/v2/REPOSITORY/{manifests,blobs}/REF``: the distribution API's paths."""
        return f"https://{self.host}/v2/{self.repository}/{kind}/{ref}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Session:
    """One image's requests, with the bearer token a 401 asks for (fetched once; the reader drops it on a redirect
    to another host, such as a blob store's signed URL)."""

    def __init__(self, read: Reader) -> None:
        self.read, self.token = read, ""

    def get(self, url: str, accept: tuple[str, ...] = ()) -> tuple[bytes, Message]:
        try:
            return self.read(self._request(url, accept))
        except urllib.error.HTTPError as exc:
            if exc.code != 401 or self.token:
                raise
            self.token = self._token(exc.headers.get("WWW-Authenticate", ""), url)
            return self.read(self._request(url, accept))

    def _request(self, url: str, accept: tuple[str, ...]) -> urllib.request.Request:
        headers = {"Accept": ", ".join(accept)} if accept else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return urllib.request.Request(url, headers=headers)  # noqa: S310 - the reader takes http(s) only

    def _token(self, challenge: str, url: str) -> str:
        """The anonymous pull token of a ``Bearer realm=...,service=...,scope=...`` challenge."""
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() != "bearer":
            raise BinariesUnavailable(f"{url}: the registry asks for {scheme or 'an unknown'} authentication")
        fields = dict(part.split("=", 1) for part in params.replace('"', "").split(",") if "=" in part)
        realm = fields.pop("realm", "")
        if not realm:
            raise BinariesUnavailable(f"{url}: a bearer challenge without a realm: {challenge!r}")
        body, _ = self.read(urllib.request.Request(f"{realm}?{urllib.parse.urlencode(fields)}"))  # noqa: S310
        answer = json.loads(body)
        return str(answer.get("token") or answer.get("access_token") or "")


def extract(image: Image, base: str, out_dir: Path, read: Reader, *, arch: str,
            folders: dict[str, Path] | None = None) -> set[str]:
    """Write ``image.files`` from the ``linux/arch`` image into ``out_dir`` (mode 755); ``base`` replaces
    ``https://HOST`` (a mirror keeps the registry's paths). The files of each of ``folders`` (folder in the image ->
    local folder) that the layers read hold are written too; returns the folders found. Raises
    BinariesUnavailable, or the network's errors."""
    folders = {posixpath.normpath(k).strip("/"): v for k, v in (folders or {}).items()}
    found: set[str] = set()
    session = _Session(read)
    url = f"{base}/v2/{image.repository}/manifests/{image.tag}"
    body, headers = session.get(url, INDEX_TYPES + IMAGE_TYPES)
    claimed = headers.get("Docker-Content-Digest")
    if claimed and claimed != _digest(body):
        raise BinariesUnavailable(f"{url}: the manifest's digest is {_digest(body)}, the registry says {claimed}")
    manifest = json.loads(body)
    if _media_type(manifest, headers) in INDEX_TYPES:
        chosen = next((m for m in manifest.get("manifests", []) if m.get("platform", {}).get("os") == "linux"
                       and m["platform"].get("architecture") == arch), None)
        if chosen is None:
            raise BinariesUnavailable(f"{image.reference} has no linux/{arch} image")
        manifest = json.loads(_verified(session, f"{base}/v2/{image.repository}/manifests/{chosen['digest']}",
                                        chosen["digest"], IMAGE_TYPES))
    wanted = {posixpath.normpath(path).lstrip("/"): name for name, path in image.files.items()}
    for layer in reversed(manifest.get("layers", [])):  # the top layer first: the binary is usually copied last
        blob = _verified(session, f"{base}/v2/{image.repository}/blobs/{layer['digest']}", layer["digest"], ())
        for path, data in _files_in_layer(blob, set(wanted), set(folders), image.reference).items():
            if path in wanted:
                target = out_dir / wanted.pop(path)
                target.write_bytes(data)
                target.chmod(0o755)
                continue
            folder, name = posixpath.split(path)
            folders[folder].mkdir(parents=True, exist_ok=True)
            (folders[folder] / name).write_bytes(data)
            found.add(folder)
        if not wanted:
            return found
    raise BinariesUnavailable(f"{image.reference} has no {', '.join('/' + p for p in sorted(wanted))}")


def _media_type(manifest: dict[str, object], headers: Message) -> str:
    """The manifest's own mediaType, else the response's (a static mirror's Content-Type is not to be trusted)."""
    if isinstance(manifest.get("mediaType"), str):
        return str(manifest["mediaType"])
    return INDEX_TYPES[0] if "manifests" in manifest else headers.get_content_type()


def _verified(session: _Session, url: str, digest: str, accept: tuple[str, ...]) -> bytes:
    body, _ = session.get(url, accept)
    if _digest(body) != digest:
        raise BinariesUnavailable(f"{url}: content digest {_digest(body)}, expected {digest}")
    return body


def _files_in_layer(blob: bytes, wanted: set[str], folders: set[str], reference: str) -> dict[str, bytes]:
    """The wanted regular files this layer holds, and those right inside ``folders``; a whiteout of a wanted file
    (``.wh.NAME``) means a lower layer's is gone."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            for member in tar:
                path = posixpath.normpath(member.name).lstrip("/")
                folder, base = posixpath.split(path)
                if base.startswith(".wh.") and posixpath.join(folder, base[4:]) in wanted:
                    raise BinariesUnavailable(f"{reference} deletes /{posixpath.join(folder, base[4:])}")
                if (path in wanted or folder in folders) and member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None  # a regular file always has content
                    found[path] = extracted.read()
    except tarfile.ReadError as exc:  # zstd layers: Python 3.11 cannot read them; the Go build can stand in
        raise BinariesUnavailable(f"{reference}: a layer labkit cannot unpack ({exc})") from exc
    return found


def write_image(image: Image, binaries: dict[str, Path], root: Path, *, arch: str,
                folders: dict[str, Path] | None = None) -> list[Path]:
    """Lay ``binaries`` out under ``root`` as a one-layer ``linux/arch`` image tagged ``image.tag``, with the
    distribution API's paths (``v2/REPO/manifests/TAG``, ``v2/REPO/blobs/DIGEST``); the files of ``folders``
    (folder in the image -> local folder) go in too. Returns the files written."""
    entries = [(posixpath.normpath(path).lstrip("/"), binaries[name]) for name, path in sorted(image.files.items())]
    for inside, local in sorted((folders or {}).items()):
        entries += [(f"{inside.strip('/')}/{f.name}", f) for f in sorted(local.iterdir()) if f.is_file()]
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for arcname, local_file in entries:
            info = tar.gettarinfo(str(local_file), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(local_file, "rb") as handle:
                tar.addfile(info, handle)
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [_digest(tar_bytes.getvalue())]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
    }).encode()
    repo = root / "v2" / image.repository
    written = []
    for path, data in ((repo / "blobs" / _digest(config), config), (repo / "blobs" / _digest(layer), layer),
                       (repo / "manifests" / image.tag, manifest), (repo / "manifests" / _digest(manifest), manifest)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written
