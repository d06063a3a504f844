"""Shared test configuration: tiers are folders (unit needs nothing; e2e, conformance and notebooks need the live
lab, which the ``lab`` fixture below connects to once per session)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import labkit as lk


@pytest.fixture(scope="session")
def lab() -> lk.Lab:
    """The live lab. Tests that need it never skip: without a cluster they fail and say how to start one."""
    import labkit as lk

    try:
        return lk.connect()
    except lk.ClusterUnreachable as exc:
        pytest.fail(f"these tests need the live lab cluster and found none: {exc}\n"
                    "start it with `labkit up --backend kwok` (make test does this)", pytrace=False)


@pytest.fixture(scope="session")
def promtool() -> str:
    """The lab's own promtool (the Prometheus build the lab runs): cached, else got now. A declared dependency: it is
    downloaded or built, never skipped."""
    from labkit.addons.prometheus_operated import component
    from labkit.cluster.binaries import ensure_component

    return str(ensure_component(component(), progress=lambda _m: None)["promtool"])
