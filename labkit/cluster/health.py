"""Cheap checks and calls of an API server, with the standard library only (the CLI must not wait for a client).

Heavy modules (yaml, ssl, http.client) load inside the functions: ``labkit env`` imports this module and uses none.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WaitTimeout

if TYPE_CHECKING:
    import http.client
    import ssl


def _server_and_context(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
    import base64
    import ssl
    import tempfile

    import yaml

    cfg = yaml.safe_load(kubeconfig.read_text())
    current = cfg.get("current-context")
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    sslctx = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
    elif "certificate-authority" in cluster:
        sslctx.load_verify_locations(cluster["certificate-authority"])
    elif "certificate-authority-data" in cluster:
        sslctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    if "client-certificate" in user:
        sslctx.load_cert_chain(user["client-certificate"], user["client-key"])
    elif "client-certificate-data" in user:
        with tempfile.NamedTemporaryFile("w") as cert, tempfile.NamedTemporaryFile("w") as key:
            cert.write(base64.b64decode(user["client-certificate-data"]).decode())
            key.write(base64.b64decode(user["client-key-data"]).decode())
            cert.flush()
            key.flush()
            sslctx.load_cert_chain(cert.name, key.name)
    return cluster["server"], sslctx


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

    def __init__(self, kubeconfig: Path, *, timeout: float = 5.0):
        from urllib.parse import urlsplit

        server, self._ssl = _server_and_context(kubeconfig)
        url = urlsplit(server)
        self._host, self._port, self._prefix = url.hostname or "127.0.0.1", url.port or 443, url.path.rstrip("/")
        self._timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None

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
    """True when the kubeconfig's API server answers /readyz with ok."""
    try:
        with ApiConnection(kubeconfig, timeout=timeout) as api:
            return api.request("GET", "/readyz")[0] == 200
    except Exception:  # any failure (kubeconfig, YAML, TLS, network) means "not healthy"
        return False


def api_get(kubeconfig: Path, path: str, *, timeout: float = 5.0) -> dict:
    """GET one API path as JSON with the kubeconfig's credentials."""
    with ApiConnection(kubeconfig, timeout=timeout) as api:
        return api.get(path)


def node_ready(node: dict) -> bool:
    """The node's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def wait_nodes_ready(kubeconfig: Path, *, timeout: float = 60.0) -> int:
    """Block until every node is Ready; return how many (``kubectl wait nodes --all --for=condition=Ready``)."""
    deadline = time.monotonic() + timeout
    not_ready: list[str] = []
    with ApiConnection(kubeconfig) as api:
        while True:
            try:
                nodes = api.get("/api/v1/nodes").get("items") or []
            except (OSError, ValueError):
                nodes = []
            not_ready = [n["metadata"]["name"] for n in nodes if not node_ready(n)]
            if nodes and not not_ready:
                return len(nodes)
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"nodes not Ready after {timeout:.0f}s: {', '.join(not_ready) or 'no nodes registered'}",
                    last_seen=not_ready, fix="kubectl describe nodes; labkit status")
            # KWOK turns a node Ready within a fraction of a second; one kept-alive connection makes a
            # short poll cheap (a watch would need a streaming reader for no gain at six nodes).
            time.sleep(0.05)
