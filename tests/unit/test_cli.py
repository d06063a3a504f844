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


def test_version_names_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"labkit {version('labkit')}"


def test_status_and_doctor_as_json_without_a_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import json

    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    assert cli.main(["status", "--json"]) == 1  # no lab: exit 1, as the text form
    status = json.loads(capsys.readouterr().out)
    assert status["backend"] is None and status["api_server"] is None and status["nodes"] == []
    assert status["pinned"]["kubernetes"].startswith("v1.")
    cli.main(["doctor", "--json"])
    doctor = json.loads(capsys.readouterr().out)  # nothing but the JSON document on stdout
    assert doctor["checks"][0]["what"].startswith("Linux") and all({"what", "ok", "fix"} <= set(c)
                                                                   for c in doctor["checks"])
    assert all(isinstance(c["fix"], str) and c["fix"] for c in doctor["checks"] if not c["ok"])  # each says how


def test_the_embedded_lab_refuses_other_systems_and_names_the_dev_container(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cli.main(["up", "--backend", "kwok"]) == 2
    err = capsys.readouterr().err
    assert "Linux only" in err and ".devcontainer" in err and "Traceback" not in err
