"""`import labkit` and the CLI's commands load no heavy library: that is what lets `labkit env` and `labkit status`
answer at once (their speed is measured by benchmarks/lab_benchmark.py, not here)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "plotly", "ipywidgets", "kubernetes", "pynvml", "IPython")


def _loaded_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_labkit_loads_nothing_heavy() -> None:
    loaded = _loaded_after("import labkit")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_env_and_status_load_nothing_heavy(tmp_path) -> None:
    import os

    env = dict(os.environ, LABKIT_STATE_DIR=str(tmp_path))
    for command in ("env", "status"):
        loaded = _loaded_after(f"from labkit import cli\ntry:\n    cli.main([{command!r}])\nexcept SystemExit:\n"
                               "    pass", env=env)
        assert not loaded & set(HEAVY), (command, loaded & set(HEAVY))


def test_names_load_on_first_use() -> None:
    loaded = _loaded_after("import labkit as lk\nlk.connect")
    assert "kubernetes" in loaded and "plotly" not in loaded
