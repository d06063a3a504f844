"""CLI decisions that need no cluster: backend choice, `env` without a lab, error exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import cli
from labkit.cluster import backends, kind_backend


def test_auto_prefers_kind_when_docker_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kind_backend, "docker_usable", lambda: (True, "kind and Docker 28.2 are available"))
    assert backends.choose("auto") == ("kind", "kind and Docker 28.2 are available")


def test_auto_falls_back_to_embedded_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kind_backend, "docker_usable", lambda: (False, "no Docker daemon answers"))
    backend, why = backends.choose("auto")
    assert backend == "kwok" and why.startswith("no Docker daemon answers")


def test_explicit_backend_is_kept() -> None:
    assert backends.choose("current")[0] == "current"


def test_env_without_a_lab_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    assert cli.main(["env"]) == 2
    err = capsys.readouterr().err
    assert "no lab is running" in err and "fix: labkit up" in err and "Traceback" not in err


def test_kind_backend_refuses_without_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(kind_backend, "docker_usable", lambda: (False, "`kind` is not on PATH"))
    assert cli.main(["up", "--backend", "kind"]) == 2
    err = capsys.readouterr().err
    assert "the kind backend cannot run: `kind` is not on PATH" in err and "--backend kwok" in err
