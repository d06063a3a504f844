"""e2e fixtures: a fresh uuid-named namespace per test (the live lab, ``lab``, comes from tests/conftest.py).

These tests never skip: without a cluster they fail and say how to start one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import labkit as lk


@pytest.fixture
def namespace(lab: lk.Lab) -> Iterator[str]:
    from kubernetes import client as k8s

    name = f"t-{uuid.uuid4().hex[:8]}"
    lab.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(
        name=name, labels={"app.kubernetes.io/managed-by": "labkit", "labkit.io/test": "e2e"})))
    lk.wait_default_service_account(lab, name)  # pods are refused until the controller has made it
    yield name
    lab.core.delete_namespace(name, propagation_policy="Background")
