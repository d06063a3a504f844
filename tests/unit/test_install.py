"""Installing works on a fresh machine: no step leans on what this one happens to have.

The install steps (Makefile, .ci/run) use pip's build isolation and a new virtualenv, and every package that the
code imports is declared in pyproject.toml, so `pip install -e '.[test]'` alone brings it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"
CI_RUN = ROOT / ".ci" / "run"
# Where the code that runs under `make test` lives (notebooks: their code cells).
SCANNED = ("labkit", "tests", "benchmarks", "notebooks")

# Import names whose distribution on PyPI is spelled differently.
DISTRIBUTION = {"yaml": "pyyaml", "pynvml": "nvidia-ml-py", "IPython": "ipython", "jupyter": "jupyter-core",
                "websocket": "websocket-client"}
# Used but not declared, because a declared dependency requires it (checked against installed metadata):
# the widgets and the kernel are IPython's; the kubernetes client's errors are urllib3's; `jupyter` is JupyterLab's.
COMES_WITH = {"ipython": ("ipywidgets", "jupyterlab"), "urllib3": ("kubernetes",), "jupyter-core": ("jupyterlab",)}

# pip and venv flags that let an install use packages already on the machine instead of fetching them.
MACHINE_FLAGS = ("--no-build-isolation", "--system-site-packages", "--no-index", "--find-links", "--no-deps")


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip())


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("test", []))
    return {_req_name(r) for r in reqs}


def _code_lines(path: Path) -> list[str]:
    """A shell script's or Makefile's lines without whole-line comments."""
    return [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]


# ---- install steps --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [MAKEFILE, CI_RUN], ids=["Makefile", ".ci/run"])
def test_install_steps_do_not_use_what_the_machine_has(path: Path) -> None:
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for flag in MACHINE_FLAGS:
            assert flag not in line, f"{name}:{n} uses {flag}: a fresh machine lacks what it relies on\n{line}"


def _make_recipes() -> dict[str, list[str]]:
    """Makefile target -> its recipe lines (tab-indented lines after `target:`)."""
    recipes: dict[str, list[str]] = {}
    target = None
    continued = False
    for line in _code_lines(MAKEFILE):
        if continued and target:  # a recipe line that goes on after a backslash is one shell line
            recipes[target][-1] = recipes[target][-1][:-1] + " " + line.strip()
        elif line.startswith("\t") and target:
            recipes[target].append(line.strip())
        elif m := re.match(r"^([\w.$()/-]+)\s*:(?!=)", line):
            target = m.group(1)
            recipes[target] = []
        elif line.strip():
            target = None
        continued = line.rstrip().endswith("\\")
    return recipes


def _make_variables() -> dict[str, str]:
    """Plain Makefile variables (not PYTHON, nor those computed with make's functions), to expand recipes with."""
    return {m.group(1): m.group(2).strip() for line in _code_lines(MAKEFILE)
            if (m := re.match(r"^(\w+)\s*[:?]?=\s*(.*)$", line)) and m.group(1) != "PYTHON"
            and not re.search(r"\$\((if|shell|filter) ", m.group(2))}


def _expand(line: str, variables: dict[str, str]) -> str:
    for _ in range(5):  # nested variables, a few levels deep
        line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
    return line


def _commands(line: str) -> Iterator[list[str]]:
    """The simple commands of a shell line, each without its leading `NAME=value` and `env [-u NAME]` words."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    command: list[str] = []
    for word in [*lexer, ";"]:
        if word and set(word) <= set(";&|"):
            while command and (re.match(r"^\w+=", command[0]) or command[0] == "env"):
                command = command[3:] if command[:2] == ["env", "-u"] else command[1:]
            if command:
                yield command
            command = []
        else:
            command.append(word)


def test_makefile_runs_tools_with_its_own_python() -> None:
    """`labkit`, `pytest`, ... on PATH may belong to another install: the Makefile runs them as `$(PYTHON) -m`."""
    recipes = _make_recipes()
    variables = _make_variables()
    for target in ("install", "up", "down", "lab", "lint", "test", "test-unit"):
        assert target in recipes, f"Makefile has no `{target}` target"
    tools = {"labkit", "pytest", "ruff", "jupyter", "pip", "pip3", "python", "python3"}
    for target, lines in recipes.items():
        for line in lines:
            for command in _commands(_expand(line, variables).replace("$$", "$")):
                if target == "$(VENV_PYTHON)" and command[:3] == ["python3", "-m", "venv"]:
                    continue  # the one place a bare python3 belongs: making the venv that PYTHON then is
                assert command[0] not in tools, (
                    f"Makefile `{target}` runs `{command[0]}` from PATH; write `$(PYTHON) -m ...`\n{line}")


def test_make_test_runs_notebooks_strictly_and_beside_them_as_a_learner_in_a_browser() -> None:
    variables = _make_variables()
    recipes = _make_recipes()
    lines = [_expand(line, variables) for line in recipes["test"]]
    strict = next((i for i, line in enumerate(lines) if "LABKIT_IN_TEST=1" in line and "--nbval " in line), None)
    learner = next((i for i, line in enumerate(lines) if "test-browser" in line), None)
    assert strict is not None, "make test: no strict nbval pass (LABKIT_IN_TEST=1 ... --nbval)"
    assert "--ignore=tests/browser" in lines[strict], "make test: the strict pass must leave the browser tests out"
    assert learner is not None, "make test: no learner's pass (test-browser)"
    # Beside the strict pass, on a lab of its own, the notebooks shuffled; and make test fails when either pass fails.
    assert learner == strict and lines[strict].index("test-browser") < lines[strict].index("LABKIT_IN_TEST=1"), (
        "make test: the browser pass starts in the background before the strict pass")
    assert "LABKIT_STATE_DIR=" in lines[strict] and "LABKIT_NOTEBOOK_ORDER=shuffled" in lines[strict]
    # the browser pass runs the Chinese edition; the strict pass the English one, its notebooks first and shuffled
    assert "LABKIT_BROWSER_EDITION=zh-CN" in lines[strict] and "--ignore=notebooks/zh-CN" in lines[strict]
    assert lines[strict].count("LABKIT_NOTEBOOK_ORDER=shuffled") == 2, "both passes shuffle the notebooks"
    assert re.search(r"\[ \$\$strict -eq 0 \] && \[ \"\$\$\(cat build/browser-pass.rc\)\" = 0 \]$", lines[strict])
    browser = [_expand(line, variables) for line in recipes["test-browser"]]
    assert any("-u LABKIT_IN_TEST" in line and "pytest tests/browser" in line for line in browser), (
        "make test-browser: the learner's pass must run tests/browser without LABKIT_IN_TEST")
    up = next((i for i, line in enumerate(lines) if "-m labkit up" in line), None)
    assert up is not None and up < strict, "make test: `$(PYTHON) -m labkit up` must come before the tests"


def test_ci_makes_a_new_venv_and_tests_with_it() -> None:
    lines = _code_lines(CI_RUN)
    text = "\n".join(lines)
    m = re.search(r"^VENV=(\S+)$", text, re.M)
    assert m, ".ci/run: set VENV=<path of its virtualenv>"
    venv = m.group(1).strip("\"'")
    assert not Path(venv).is_absolute() and ".." not in Path(venv).parts, ".ci/run: keep its venv inside the checkout"
    ignored = [line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()]
    assert venv.strip("/") in ignored, f".gitignore lacks {venv}/ (the CI venv must never be committed)"

    def first(pattern: str, what: str) -> int:
        found = next((n for n, line in enumerate(lines) if re.search(pattern, line)), None)
        assert found is not None, f".ci/run does not {what}"
        return found

    remove = first(r'rm -rf "?\$VENV"?', "remove the previous venv (rm -rf \"$VENV\")")
    create = first(r'-m venv\b.*"?\$VENV"?', "create its venv (python3 -m venv \"$VENV\")")
    assert remove < create, ".ci/run must remove the previous venv before creating the new one"
    assert re.search(r'^PY="\$PWD/\$VENV/bin/python"$', text, re.M), ".ci/run: PY must be the venv's python"
    assert re.search(r'^export VIRTUAL_ENV="\$PWD/\$VENV"$', text, re.M), ".ci/run: export VIRTUAL_ENV=its venv"
    path = first(r'^export PATH="\$(VIRTUAL_ENV|PWD/\$VENV)/bin:\$PATH"', "put the venv's bin first on PATH")
    test = first(r'^make test PYTHON="\$PY"', 'run `make test PYTHON="$PY"` (the venv\'s python)')
    assert create < path < test
    assert re.search(r"^trap .*\$PY\"? -m labkit down", text, re.M), ".ci/run: stop the lab at exit with its python"


# ---- declared dependencies ------------------------------------------------------------------------------------


def _notebook_source(path: Path) -> str:
    """A notebook's code cells as Python: IPython's `!shell` and `%magic` lines become `pass`."""
    cells = json.loads(path.read_text())["cells"]
    code = ("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "\n".join(re.sub(r"^(\s*)[!%].*$", r"\1pass", cell, flags=re.M) for cell in code)


def _imports(tree: ast.AST) -> Iterator[str]:
    """Top-level names imported, including `importlib.import_module("x")` and `pytest.importorskip("x")`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in {"import_module", "importorskip"}):
            yield node.args[0].value.split(".")[0]


def _first_party(name: str, importer: Path) -> bool:
    """labkit itself, or a module beside the importer or at the root (pytest's rootdir-relative imports)."""
    return any((d / f"{name}.py").exists() or (d / name).is_dir() for d in (ROOT, importer.parent))


def _third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix == ".py":
                source = path.read_text()
            elif path.suffix == ".ipynb" and ".ipynb_checkpoints" not in path.parts:
                source = _notebook_source(path)
            else:
                continue
            for name in _imports(ast.parse(source, str(path))):
                if name not in sys.stdlib_module_names and name != "__future__" and not _first_party(name, path):
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def _requires(dist: str) -> set[str]:
    try:
        reqs = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{dist} is declared but not installed: pip install -e '.[test]'", pytrace=False)
    return {_req_name(r) for r in reqs}


def _undeclared(used: dict[str, set[str]]) -> list[str]:
    """One message per import name (or module run) whose distribution pyproject.toml does not bring."""
    declared = _declared()
    missing = []
    for name, where in sorted(used.items()):
        dist = _norm(DISTRIBUTION.get(name, name))
        if dist in declared:
            continue
        if not any(p in declared and dist in _requires(p) for p in COMES_WITH.get(dist, ())):
            missing.append(f"`{name}` ({', '.join(sorted(where)[:3])}) needs {dist!r} in pyproject.toml's "
                           "[project] dependencies (or the test extra for test-only needs)")
    return missing


def test_every_imported_package_is_declared() -> None:
    imports = _third_party_imports()
    assert "kubernetes" in imports and "pytest" in imports, "the import scan found nothing: is ROOT right?"
    missing = _undeclared(imports)
    assert not missing, "\n".join(missing)


def test_every_tool_make_runs_is_declared() -> None:
    """`$(PYTHON) -m ruff`, `-m jupyter`, ... and pytest's --nbval plugin come from pyproject.toml too."""
    used: dict[str, set[str]] = {}
    variables = _make_variables()
    for target, lines in _make_recipes().items():
        for line in lines:
            for command in _commands(_expand(line, variables).replace("$$", "$")):
                if command[:2] == ["$(PYTHON)", "-m"] and len(command) > 2:
                    used.setdefault(command[2].split(".")[0], set()).add(f"make {target}")
                if any(word.startswith("--nbval") for word in command):
                    used.setdefault("nbval", set()).add(f"make {target}")
    assert {"pytest", "ruff", "jupyter", "nbval"} <= set(used), f"Makefile runs only {sorted(used)}"
    # pip does the installing; venv is the standard library's; labkit is this project.
    used = {k: v for k, v in used.items() if k not in {"pip", "labkit"} and k not in sys.stdlib_module_names}
    missing = _undeclared(used)
    assert not missing, "\n".join(missing)


def test_dependency_table_maps_names_that_differ() -> None:
    """The name map above is right: each import name really is provided by the distribution it names."""
    top_level = importlib.metadata.packages_distributions()
    for name, dist in DISTRIBUTION.items():
        if name in top_level:
            assert dist in {_norm(d) for d in top_level[name]}, f"`import {name}` comes from {top_level[name]}"


@pytest.mark.parametrize(("env", "chinese"), [
    ({"LABKIT_LANG": "zh_CN"}, True), ({"LABKIT_LANG": "zh-CN", "LANG": "C.UTF-8"}, True),
    ({"LANG": "zh_CN.UTF-8"}, True), ({"LC_ALL": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}, True),
    ({"LABKIT_LANG": "en", "LANG": "zh_CN.UTF-8"}, False), ({"LANG": "C.UTF-8"}, False), ({}, False),
], ids=lambda v: str(v))
def test_make_lab_opens_jupyterlab_in_the_learners_language(env: dict[str, str], chinese: bool) -> None:
    """A Chinese LABKIT_LANG or locale (as labkit.i18n reads them) makes `make lab` install JupyterLab's zh-CN
    language pack with the project's constraints and start JupyterLab with it chosen by default (JupyterLab 4's
    labconfig/default_setting_overrides.json, in the lab's own config directory); any other language changes nothing.
    Read with `make -n`, which prints the recipes without running them."""
    import os
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    assert "lab-language" in (re.search(r"^lab:([^#\n]*)", MAKEFILE.read_text(), re.M) or ["", ""])[1].split()
    clean = {k: v for k, v in os.environ.items() if k not in ("LABKIT_LANG", "LC_ALL", "LC_MESSAGES", "LANG")}
    proc = subprocess.run(["make", "-n", "--no-print-directory", "lab", f"PYTHON={sys.executable}"], cwd=ROOT,
                          env=clean | env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    pack = [line for line in lines if "jupyterlab-language-pack-zh-CN" in line]
    start = next(line for line in lines if " -m jupyter lab " in line)
    if not chinese:
        assert not pack and "lab-zh_CN" not in proc.stdout and 'JUPYTER_CONFIG_PATH="$JUPYTER_CONFIG_PATH"' in start
        return
    assert pack and pack[0].split()[:4] == [sys.executable, "-m", "pip", "install"], pack
    assert "-c constraints.txt" in pack[0]  # as `make install` installs: the tested versions
    written = next(line for line in lines if "default_setting_overrides.json" in line)
    settings = json.loads(re.search(r"'(\{.*\})'", written).group(1))  # type: ignore[union-attr]
    assert settings == {"@jupyterlab/translation-extension:plugin": {"locale": "zh_CN"}}
    config_dir = re.search(r"> (\S+)/labconfig/default_setting_overrides\.json", written).group(1)  # type: ignore[union-attr]
    assert f'JUPYTER_CONFIG_PATH="{config_dir}' in start
