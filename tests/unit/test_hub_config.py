"""labkit hub's decisions that need no hub: what students must be able to reach, each lab's environment."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from labkit.course import hub
from labkit.errors import LabkitError


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user may enter (pytest's own tmp_path sits in a folder only its user may)."""
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_a_folder_closed_to_other_users_is_named(open_folder: Path) -> None:
    closed = open_folder / "home"
    (closed / "venv" / "bin").mkdir(parents=True)
    python = closed / "venv" / "bin" / "python"
    python.write_text("")
    closed.chmod(0o700)
    try:
        assert hub.closed_to_others(python) == closed
        closed.chmod(0o711)
        assert hub.closed_to_others(python) is None
    finally:
        closed.chmod(0o755)


def test_the_hub_refuses_a_python_students_cannot_run(open_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = open_folder / "root-home"
    closed.mkdir(mode=0o700)
    (closed / "python").write_text("")
    monkeypatch.setattr(sys, "executable", str(closed / "python"))
    with pytest.raises(LabkitError, match=f"inside {closed}, which other users cannot enter") as refused:
        hub.check_reachable()
    assert "/opt/labkit" in (refused.value.fix or "")


def test_each_students_lab_gets_its_own_port_and_the_shared_cache() -> None:
    env = hub.lab_environment()
    ports = {env["LABKIT_API_PORT"](SimpleNamespace(user=SimpleNamespace(id=i))) for i in (1, 2, 3)}
    assert ports == {str(hub.API_PORT_BASE + i) for i in (1, 2, 3)}
    assert env["LABKIT_SHARED_CACHE"] == hub.DEFAULT_SHARED_CACHE and env["LABKIT_LAB_PER_SERVER"] == "1"
