"""The lab's readiness (labkit.cluster.health): `labkit up` says "lab ready" only when every API server check passes,
the default RBAC roles included, and every node is Ready."""

from __future__ import annotations

import pytest

from labkit.cluster import health
from labkit.errors import WaitTimeout

READY_NODE = {"metadata": {"name": "cpu-node-1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


class FakeApi:
    """An API server whose /readyz fails the RBAC bootstrap check ``failing`` times, as one just started does."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.asked: list[str] = []

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def request(self, method: str, path: str) -> tuple[int, bytes]:
        self.asked.append(path)
        if self.failing:
            self.failing -= 1
            return 500, b"[+]ping ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n"
        return 200, b"ok"

    def get(self, path: str) -> dict:
        return {"items": [READY_NODE]}


def test_lab_ready_waits_for_the_default_roles(monkeypatch, tmp_path) -> None:
    api = FakeApi(failing=3)
    monkeypatch.setattr(health, "ApiConnection", lambda *_a, **_k: api)
    assert health.wait_nodes_ready(tmp_path / "kubeconfig", timeout=10) == 1
    assert api.asked == [health.READYZ_ALL] * 4 and "exclude" not in health.READYZ_ALL


def test_a_lab_that_never_gets_its_roles_says_which_check_fails(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(health, "ApiConnection", lambda *_a, **_k: FakeApi(failing=10**6))
    with pytest.raises(WaitTimeout, match="API server checks failing: poststarthook/rbac/bootstrap-roles"):
        health.wait_nodes_ready(tmp_path / "kubeconfig", timeout=0.3)


def test_the_labs_record_is_typed_and_names_one_kubeconfig(monkeypatch, tmp_path) -> None:
    from labkit import state

    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    assert state.recorded() == state.LabState() and state.lab_kubeconfig() is None
    state.record("kwok", api_port=6443, kubelet_port=10250, pki=tmp_path / "pki", unknown="kept out")
    info = state.recorded()
    assert (info.backend, info.api_port, info.pki) == ("kwok", 6443, tmp_path / "pki")
    (tmp_path / "kubeconfig").write_text("{}")
    assert state.lab_kubeconfig() == tmp_path / "kubeconfig"
    state.record("current", kubeconfig=tmp_path / "theirs.yaml")
    assert state.lab_kubeconfig() == tmp_path / "theirs.yaml"
    (tmp_path / "backend.json").write_text("{damaged")
    assert state.recorded().backend is None
