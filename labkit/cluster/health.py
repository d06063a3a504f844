"""Cheap checks and calls of an API server, with the standard library only (the CLI must not wait for a client).

Heavy modules (yaml, ssl, http.client) load inside the functions: ``labkit env`` imports this module and uses none.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WaitTimeout

if TYPE_CHECKING:
    import http.client
    import ssl


def _server_and_context(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
    """The kubeconfig's server URL and a TLS context with its credentials, built once per version of the files.

    `labkit status` opens three connections and `labkit up` several: parsing the file and loading the keys once
    saves most of their time. A new cluster rewrites the kubeconfig and its key files, which makes a new context.
    """
    stat = kubeconfig.stat()
    server, cluster, user = _parsed(str(kubeconfig), stat.st_mtime_ns, stat.st_size)
    files = [cluster.get("certificate-authority"), user.get("client-certificate"), user.get("client-key")]
    versions = tuple((f, Path(f).stat().st_mtime_ns) for f in files if f)
    return server, _context(json.dumps([cluster, user], sort_keys=True), versions)


@functools.lru_cache(maxsize=8)
def _parsed(kubeconfig: str, _mtime_ns: int, _size: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(server, cluster, user) of the kubeconfig's current context."""
    import yaml

    cfg = yaml.safe_load(Path(kubeconfig).read_text())
    current = cfg.get("current-context")
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    return cluster["server"], cluster, user


@functools.lru_cache(maxsize=8)
def _context(entries: str, _file_versions: tuple[tuple[str, int], ...]) -> ssl.SSLContext:
    """A TLS context for a kubeconfig's cluster and user entries (JSON, so that they can key the cache)."""
    import base64
    import ssl
    import tempfile

    cluster, user = json.loads(entries)
    # Not ssl.create_default_context(): it loads the system's CA bundle (some 50 ms), which a cluster with its
    # own CA never needs.
    sslctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cluster.get("insecure-skip-tls-verify"):
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
    elif "certificate-authority" in cluster:
        sslctx.load_verify_locations(cluster["certificate-authority"])
    elif "certificate-authority-data" in cluster:
        sslctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    else:  # a server with a publicly trusted certificate (the `current` backend may point at one)
        sslctx.load_default_certs()
    if "client-certificate" in user:
        sslctx.load_cert_chain(user["client-certificate"], user["client-key"])
    elif "client-certificate-data" in user:
        with tempfile.NamedTemporaryFile("w") as cert, tempfile.NamedTemporaryFile("w") as key:
            cert.write(base64.b64decode(user["client-certificate-data"]).decode())
            key.write(base64.b64decode(user["client-key-data"]).decode())
            cert.flush()
            key.flush()
            sslctx.load_cert_chain(cert.name, key.name)
    return sslctx


# Whether a lab found running is alive (``api_healthy``). Excluded: RBAC's default roles and bindings, which the API
# server keeps creating for 1-2 s after it starts serving on a busy machine; without the exclusion a lab another
# `labkit up` is just starting would look stale to this one, which would replace it.
READYZ = "/readyz?exclude=poststarthook/rbac/bootstrap-roles"
# What `labkit up` waits for before it says "lab ready" (``wait_nodes_ready``): every check, the default roles
# included, as a script or a classroom that binds a student to `edit` at once needs them.
READYZ_ALL = "/readyz?verbose"


class ApiError(OSError):
    """The API server answered with an error status (an OSError, as urllib's HTTPError is)."""

    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            message = body[:300].decode(errors="replace")
        super().__init__(f"HTTP {status}: {message}")


class ApiConnection:
    """One keep-alive HTTPS connection with a kubeconfig's credentials.

    One TLS handshake for many requests: applying labkit's objects and polling nodes cost milliseconds each.
    """

    def __init__(self, kubeconfig: Path | None, *, timeout: float = 5.0, _like: ApiConnection | None = None):
        from urllib.parse import urlsplit

        if _like is not None:  # a sibling connection: same server and credentials, no kubeconfig to read again
            self._host, self._port, self._prefix, self._ssl = _like._host, _like._port, _like._prefix, _like._ssl
        else:
            assert kubeconfig is not None
            server, self._ssl = _server_and_context(kubeconfig)
            url = urlsplit(server)
            self._host, self._port, self._prefix = url.hostname or "127.0.0.1", url.port or 443, url.path.rstrip("/")
        self._timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None

    def sibling(self) -> ApiConnection:
        """Another connection to the same server with the same credentials (one per thread)."""
        return ApiConnection(None, timeout=self._timeout, _like=self)

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json") -> tuple[int, bytes]:
        """Send one request; return (status, body). Raises OSError when the server cannot be reached."""
        import http.client

        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", **({"Content-Type": content_type} if data is not None else {})}
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(self._host, self._port, context=self._ssl,
                                                         timeout=self._timeout)
            try:
                self._conn.request(method, self._prefix + path, body=data, headers=headers)
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException) as exc:
                # A kept-alive connection the server closed fails once; a fresh one tells the truth.
                self.close()
                if attempt == 2:
                    raise OSError(f"{method} {path}: {exc}") from exc
        raise AssertionError("unreachable")

    def get(self, path: str) -> dict:
        """GET a path as JSON; raise ApiError on an error status."""
        status, data = self.request("GET", path)
        if status >= 400:
            raise ApiError(status, data)
        return json.loads(data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ApiConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def api_healthy(kubeconfig: Path, *, timeout: float = 3.0) -> bool:
    """True when the kubeconfig's API server answers /readyz with ok (see :data:`READYZ`)."""
    try:
        with ApiConnection(kubeconfig, timeout=timeout) as api:
            return api.request("GET", READYZ)[0] == 200
    except Exception:  # any failure (kubeconfig, YAML, TLS, network) means "not healthy"
        return False


def api_server(kubeconfig: Path) -> str:
    """The API server URL of the kubeconfig's current context (``kubectl config view --minify``'s server)."""
    return _server_and_context(kubeconfig)[0]


def api_get(kubeconfig: Path, path: str, *, timeout: float = 5.0) -> dict:
    """GET one API path as JSON with the kubeconfig's credentials."""
    with ApiConnection(kubeconfig, timeout=timeout) as api:
        return api.get(path)


def node_ready(node: dict) -> bool:
    """The node's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _readyz_failures(api: ApiConnection) -> list[str]:
    """The API server's failing readiness checks, every one of them ([] when /readyz answers ok)."""
    try:
        status, body = api.request("GET", READYZ_ALL)
    except OSError as exc:
        return [str(exc)]
    if status == 200:
        return []
    return [line[3:].split(" failed")[0] for line in body.decode(errors="replace").splitlines()
            if line.startswith("[-]")] or [f"/readyz answered HTTP {status}"]


def wait_nodes_ready(kubeconfig: Path, *, timeout: float = 60.0) -> int:
    """Block until every node is Ready and the API server is ready; return how many nodes.

    ``kubectl wait nodes --all --for=condition=Ready`` plus ``/readyz`` (:data:`READYZ_ALL`), polled together.
    """
    deadline = time.monotonic() + timeout
    not_ready: list[str] = []
    api_waiting: list[str] = ["not asked yet"]
    with ApiConnection(kubeconfig) as api:
        while True:
            if api_waiting:
                api_waiting = _readyz_failures(api)
            try:
                nodes = api.get("/api/v1/nodes").get("items") or []
            except (OSError, ValueError):
                nodes = []
            not_ready = [n["metadata"]["name"] for n in nodes if not node_ready(n)]
            if nodes and not not_ready and not api_waiting:
                return len(nodes)
            if time.monotonic() >= deadline:
                waiting = []
                if not nodes or not_ready:
                    waiting.append(f"nodes not Ready: {', '.join(not_ready) or 'no nodes registered'}")
                if api_waiting:
                    waiting.append(f"API server checks failing: {', '.join(api_waiting)}")
                raise WaitTimeout(f"lab not ready after {timeout:.0f}s: {'; '.join(waiting)}",
                                  last_seen=not_ready, fix="kubectl describe nodes; labkit status")
            # KWOK turns a node Ready within a fraction of a second; one kept-alive connection makes a
            # short poll cheap (a watch would need a streaming reader for no gain at six nodes).
            time.sleep(0.05)
