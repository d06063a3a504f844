"""Node readiness for notebooks, through the lab's client (``labkit up`` uses the lighter ``cluster.health``)."""

from __future__ import annotations

import time

from ..errors import WaitTimeout
from .client import Lab, api_errors


def _is_ready(node: object) -> bool:
    conds = getattr(node.status, "conditions", None) or []  # type: ignore[attr-defined]
    return any(c.type == "Ready" and c.status == "True" for c in conds)


def wait_nodes_ready(lab: Lab, *, timeout: float = 60.0) -> int:
    """Block until every node reports Ready; return how many there are.

    Same as ``kubectl wait nodes --all --for=condition=Ready``.
    """
    deadline = time.monotonic() + timeout
    while True:
        with api_errors("listing nodes", server=lab.server):
            nodes = lab.core.list_node().items
        not_ready = [n.metadata.name for n in nodes if not _is_ready(n)]
        if nodes and not not_ready:
            return len(nodes)
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"nodes not Ready after {timeout:.0f}s: {', '.join(not_ready) or 'no nodes registered'}",
                              last_seen=not_ready, fix="kubectl describe nodes; labkit status")
        # Node status flips within a second on KWOK; polling keeps this simple and bounded.
        time.sleep(0.25)
