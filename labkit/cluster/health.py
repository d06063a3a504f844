"""Cheap liveness checks of an API server, without a Python client round of imports."""

from __future__ import annotations

import base64
import ssl
import tempfile
import urllib.request
from pathlib import Path

import yaml


def _server_and_context(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
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


def api_healthy(kubeconfig: Path, *, timeout: float = 3.0) -> bool:
    """True when the kubeconfig's API server answers /readyz with ok."""
    try:
        server, sslctx = _server_and_context(kubeconfig)
        with urllib.request.urlopen(f"{server}/readyz", timeout=timeout, context=sslctx) as resp:  # noqa: S310
            return resp.status == 200
    except (OSError, ValueError, KeyError, StopIteration, yaml.YAMLError, ssl.SSLError):
        return False
