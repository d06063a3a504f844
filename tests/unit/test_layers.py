"""The package's import graph keeps its shape: layers point one way, lessons stand alone, private names stay home,
and no package's modules import each other in a circle when loaded.

Read from the source with ast, so the test needs no imports of its own and names the offending line.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "labkit"

# Bottom to top. A module's layer is the first entry that matches its dotted name (a package covers its modules).
LAYERS: list[tuple[str, ...]] = [
    ("i18n",),  # the learner's language: below errors, whose framing ("fix: ...") it translates
    ("errors", "paths", "versions", "settings"),
    ("state",),  # the lab's record, kept under paths.state_dir()
    ("kube",),  # the Kubernetes verbs: the simulators, add-ons and backends use them too
    ("cluster",),
    ("sim",),
    ("addons",),
    ("observability", "operations"),
    ("course",),  # the lessons' record, their exercises, and the classroom (namespaces, the hub, its extension)
    ("insight",),
    ("display",),  # figures and widgets
    ("dashboards",),
    ("lessons",),
    ("cli", "__init__", "data"),  # data: JupyterHub's config file (labkit/data/hub), which uses labkit.course.hub
    ("__main__",),
]


# Violations whose fix is in a file being changed on another branch, written without their line number (lines move).
KNOWN_PRIVATE: set[str] = set()


def layer_of(dotted: str) -> tuple[int, str]:
    """(rank, layer unit) of a module named relative to the package: ``kube.client`` -> (5, "kube").

    The package's own ``__init__`` is named ``""``.
    """
    head = dotted.split(".")[0] or "__init__"
    for rank, names in enumerate(LAYERS):
        if head in names:
            return rank, head
    raise AssertionError(f"labkit.{dotted} belongs to no layer: add it to LAYERS in {__file__}")


def module_of(path: Path, root: Path = PACKAGE) -> str:
    """Dotted name relative to the package: ``kube/client.py`` -> ``kube.client``, ``kube/__init__.py`` -> ``kube``,
    the package's own ``__init__.py`` -> ``""``."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_in(root: Path = PACKAGE) -> set[str]:
    return {module_of(path, root) for path in root.rglob("*.py")}


def resolve(name: str, importer: str, *, is_package: bool) -> str:
    """The absolute module that ``from <name> import ...`` means inside module ``importer``, as Python resolves it.

    ``importer`` is absolute (``labkit.insight``); ``is_package`` says it is a package's ``__init__``, which resolves
    relative names against itself instead of against its parent. Raises ImportError for a level past the top.
    """
    package = importer if is_package else importer.rpartition(".")[0]
    return importlib.util.resolve_name(name, package)


@dataclass(frozen=True)
class Import:
    """One name an import statement brings in."""

    line: int
    target: str  # the labkit module imported from, relative to the package ("" for the package itself)
    name: str | None  # for ``from target import name`` where name is not a submodule; None when target is the module
    binds: tuple[str, str] | None  # (local name, module relative to the package) when a module gets a local name
    at_load: bool  # runs when the module is loaded: not inside a function, not under ``if TYPE_CHECKING:``


@cache
def _parse(source: str) -> ast.Module:
    """Each source parsed once for all the rules (the tree is only read)."""
    return ast.parse(source)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _at_load(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        child, node = node, parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return False
        if (isinstance(node, ast.If) and child in node.body and isinstance(node.test, ast.Name | ast.Attribute)
                and ast.unparse(node.test).endswith("TYPE_CHECKING")):
            return False
    return True


def imports_in(path: Path, root: Path = PACKAGE, modules: set[str] | None = None) -> list[Import]:
    """Every labkit import in the file, relative ones resolved as Python resolves them."""
    modules = modules_in(root) if modules is None else modules
    module = module_of(path, root)
    importer = ".".join(filter(None, [root.name, module]))
    tree = _parse(path.read_text())
    parents = _parents(tree)

    def ours(absolute: str) -> str | None:
        if absolute == root.name:
            return ""
        return absolute.removeprefix(root.name + ".") if absolute.startswith(root.name + ".") else None

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        at_load = _at_load(node, parents)
        if isinstance(node, ast.ImportFrom):
            name = "." * node.level + (node.module or "")
            try:
                base = ours(resolve(name, importer, is_package=path.name == "__init__.py") if node.level else name)
            except ImportError as exc:
                raise AssertionError(f"{_where(path, root, node.lineno)}: from {name} import ...: {exc}") from exc
            if base is None:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}".lstrip(".")
                local = alias.asname or alias.name
                if submodule in modules:  # from . import addons: the module labkit.addons
                    found.append(Import(node.lineno, submodule, None, (local, submodule), at_load))
                else:
                    found.append(Import(node.lineno, base, alias.name, None, at_load))
        else:
            for alias in node.names:
                target = ours(alias.name)
                if target is None:
                    continue
                # import labkit.kube.client binds "labkit"; import labkit.kube.client as c binds c to the submodule
                binds = (alias.asname, target) if alias.asname else (alias.name.split(".")[0], "")
                found.append(Import(node.lineno, target, None, binds, at_load))
    return sorted(found, key=lambda i: i.line)


def attribute_uses(path: Path, root: Path = PACKAGE, modules: set[str] | None = None) -> Iterator[tuple[int, str, str]]:
    """(line, module, attribute) for each ``module.attribute`` read through a name an import bound to a labkit module.

    ``kube.client._helper`` after ``from . import kube`` gives (line, "kube.client", "_helper"); every submodule passed
    on the way is given too (``kube``, "client"). Names are tracked file-wide, not per scope: a local that reuses the
    name of an imported labkit module would be mistaken for it (none does; the message names the line if one ever does).
    """
    modules = modules_in(root) if modules is None else modules
    bound = dict(i.binds for i in imports_in(path, root, modules) if i.binds)
    seen = set()
    for node in ast.walk(_parse(path.read_text())):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if not (isinstance(node, ast.Name) and node.id in bound):
            continue
        module = bound[node.id]
        for attr in reversed(chain):
            if (node.lineno, module, attr) not in seen:
                seen.add((node.lineno, module, attr))
                yield node.lineno, module, attr
            module = f"{module}.{attr}".lstrip(".")
            if module not in modules:
                break


def _dotted(module: str) -> str:
    return f"labkit.{module}" if module else "labkit"


def _where(path: Path, root: Path, line: int) -> str:
    return f"{path.relative_to(root.parent)}:{line}"


def _by_place(report: str) -> tuple[str, int]:
    """Sort key of a report line: its file, then its line number."""
    where = report.split(" ", 1)[0]
    path, _, line = where.rpartition(":")
    return path, int(line)


def _unplaced(report: str) -> str:
    """A report line without its line number, as the allowlists hold it."""
    where, _, rest = report.partition(" ")
    return f"{where.rpartition(':')[0]} {rest}"


def _beyond(known: set[str], wrong: list[str]) -> tuple[list[str], list[str]]:
    """(reports that ``known`` does not allow, entries of ``known`` that no report matches any more)."""
    found = {_unplaced(w) for w in wrong}
    return [w for w in wrong if _unplaced(w) not in known], sorted(known - found)


def violations(root: Path) -> list[str]:
    """One line per import that points up or sideways, naming file, line and both layers."""
    wrong = []
    modules = modules_in(root)
    for path in sorted(root.rglob("*.py")):
        rank, unit = layer_of(module_of(path, root))
        for imp in imports_in(path, root, modules):
            if not imp.target:  # the package itself: loaded before any of its modules anyway, and lazy
                continue
            target_rank, target_unit = layer_of(imp.target)
            if target_unit != unit and target_rank >= rank:
                wrong.append(f"{_where(path, root, imp.line)} ({unit}) imports labkit.{imp.target} "
                             f"({target_unit}), which is not below it")
    return wrong


def lesson_cross_imports(root: Path) -> list[str]:
    """One line per lesson module that imports (or reaches through an import) another lesson's module.

    Code two lessons share lives below them (lab operations in ``labkit.operations``, say). The package itself,
    ``lessons/__init__`` (the course's order and its exercise catalogue), is no lesson: a lesson may import it.
    """
    wrong = []
    modules = modules_in(root)
    for path in sorted((root / "lessons").glob("*.py")):
        if path.name == "__init__.py":
            continue
        lesson = module_of(path, root)
        used = [(i.line, i.target) for i in imports_in(path, root, modules)]
        used += [(line, f"{m}.{a}".lstrip(".")) for line, m, a in attribute_uses(path, root, modules)]
        others = {(line, ".".join(target.split(".")[:2])) for line, target in used if target.startswith("lessons.")}
        for line, other in sorted(others):
            if other != lesson and other in modules:
                wrong.append(f"{_where(path, root, line)} lesson labkit.{lesson} imports labkit.{other}, "
                             "another lesson")
    return wrong


def _private(name: str) -> bool:
    # `_` alone is gettext's public name (labkit.i18n._), imported wherever a message is translated.
    return name.startswith("_") and name != "_" and not (name.startswith("__") and name.endswith("__"))


def _inside(module: str, owner: str) -> bool:
    return not owner or module == owner or module.startswith(owner + ".")


def private_crossings(root: Path) -> list[str]:
    """One line per private name (``_name``, not ``__dunder__``) that one module takes from another.

    By import (``from .x import _name``, ``import labkit._x``) or by attribute on an imported module
    (``client._helper``, ``lk.lessons.node_problems._private``).
    """
    wrong = []
    modules = modules_in(root)
    for path in sorted(root.rglob("*.py")):
        module = module_of(path, root)
        for imp in imports_in(path, root, modules):
            if imp.name is not None and _private(imp.name) and imp.target != module:
                wrong.append(f"{_where(path, root, imp.line)} {_dotted(module)} imports {imp.name}, private to "
                             f"{_dotted(imp.target)}")
            parts = imp.target.split(".") if imp.target else []
            for i, part in enumerate(parts):  # a private submodule belongs to its package
                owner = ".".join(parts[:i])
                if _private(part) and not _inside(module, owner):
                    wrong.append(f"{_where(path, root, imp.line)} {_dotted(module)} imports {_dotted(imp.target)}, "
                                 f"private to {_dotted(owner)}")
                    break
        for line, owner, attr in attribute_uses(path, root, modules):
            submodule = f"{owner}.{attr}".lstrip(".")
            if _private(attr) and not (owner == module or (submodule in modules and _inside(module, owner))):
                wrong.append(f"{_where(path, root, line)} {_dotted(module)} uses {attr}, private to {_dotted(owner)}")
    return sorted(wrong, key=_by_place)


def load_cycles(root: Path) -> list[str]:
    """One line per import made at load time inside a cycle of modules that import each other at load time.

    Only module-level imports count (and not those under ``if TYPE_CHECKING:``, which never run): an import inside
    a function is the project's deliberate way to break a load-time cycle and to keep the CLI's imports light, so it
    is no cycle. A cycle across layer units needs an import that points up, which the layer test already reports, so
    every cycle found here lies inside one package.
    """
    modules = modules_in(root)
    edges: dict[str, dict[str, tuple[Path, int]]] = {m: {} for m in modules}
    for path in sorted(root.rglob("*.py")):
        module = module_of(path, root)
        for imp in imports_in(path, root, modules):
            if imp.at_load and imp.target != module and imp.target in modules:
                edges[module].setdefault(imp.target, (path, imp.line))

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in edges[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    reach = {m: reachable(m) for m in modules}
    wrong = []
    for module in sorted(modules):
        for target, (path, line) in sorted(edges[module].items()):
            if module in reach[target]:  # the edge closes a cycle: its target leads back to it
                cycle = ", ".join(_dotted(m) for m in sorted(m for m in reach[module] if module in reach[m]))
                wrong.append(f"{_where(path, root, line)} {_dotted(module)} imports {_dotted(target)} at load time, "
                             f"in the cycle {{{cycle}}}")
    return sorted(wrong, key=_by_place)


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "labkit"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    return root


# --- the resolver


@pytest.mark.parametrize(("name", "importer", "is_package", "expected"), [
    (".", "labkit.insight", False, "labkit"),  # a top-level module resolves against the package
    (".kube.client", "labkit.insight", False, "labkit.kube.client"),
    (".wait", "labkit.kube.rollouts", False, "labkit.kube.wait"),
    ("..errors", "labkit.kube.rollouts", False, "labkit.errors"),
    ("..", "labkit.kube.rollouts", False, "labkit"),
    ("..machine", "labkit.sim.gpu.faults", False, "labkit.sim.machine"),  # level 2 from a sub-subpackage
    ("...errors", "labkit.sim.gpu.faults", False, "labkit.errors"),
    (".wait", "labkit.kube", True, "labkit.kube.wait"),  # a package's __init__ resolves against itself
    ("..errors", "labkit.kube", True, "labkit.errors"),
    (".", "labkit", True, "labkit"),
    (".kube", "labkit", True, "labkit.kube"),
    ("labkit.kube", "labkit.insight", False, "labkit.kube"),  # absolute names stay as they are
])
def test_relative_imports_resolve_as_python_resolves_them(name: str, importer: str, is_package: bool,
                                                          expected: str) -> None:
    assert resolve(name, importer, is_package=is_package) == expected


def test_a_relative_import_past_the_package_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImportError):
        resolve("..errors", "labkit.insight", is_package=False)
    root = _fake_package(tmp_path, {"insight.py": "import os\nfrom ..errors import NotFound\n"})
    with pytest.raises(AssertionError, match="labkit/insight.py:2: from ..errors import"):
        imports_in(root / "insight.py", root)


def test_imports_in_top_level_modules_packages_and_submodules(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "insight.py": "from . import addons, errors as e\nfrom .kube.client import Lab\nfrom .errors import NotFound\n",
        "kube/client.py": "from .. import errors\nfrom . import wait\nimport labkit.sim.gpu as gpu\n",
        "kube/wait.py": "from labkit import errors\ndef f():\n    from ..sim.gpu import machine\n",
        "kube/__init__.py": "from .client import Lab\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from .. import addons\n",
        "addons.py": "", "errors.py": "", "sim/gpu/machine.py": "",
    })
    got = {p.name: [(i.line, i.target, i.name, i.binds, i.at_load) for i in imports_in(p, root)]
           for p in [root / "insight.py", root / "kube/client.py", root / "kube/wait.py", root / "kube/__init__.py"]}
    assert got["insight.py"] == [(1, "addons", None, ("addons", "addons"), True),
                                 (1, "errors", None, ("e", "errors"), True),
                                 (2, "kube.client", "Lab", None, True), (3, "errors", "NotFound", None, True)]
    assert got["client.py"] == [(1, "errors", None, ("errors", "errors"), True),
                                (2, "kube.wait", None, ("wait", "kube.wait"), True),
                                (3, "sim.gpu", None, ("gpu", "sim.gpu"), True)]
    assert got["wait.py"] == [(1, "errors", None, ("errors", "errors"), True),
                              (3, "sim.gpu.machine", None, ("machine", "sim.gpu.machine"), False)]
    assert got["__init__.py"] == [(1, "kube.client", "Lab", None, True),
                                  (4, "addons", None, ("addons", "addons"), False)]


# --- the layers


def test_every_import_points_down_or_stays_in_its_layer_unit() -> None:
    wrong = violations(PACKAGE)
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_checker_reports_an_upward_and_a_sideways_import(tmp_path: Path) -> None:
    root = tmp_path / "labkit"
    (root / "kube").mkdir(parents=True)
    (root / "kube" / "client.py").write_text("from ..lessons import gpu_monitoring\nfrom .. import errors\n")
    (root / "observability").mkdir()
    (root / "observability" / "promql.py").write_text("import labkit.display.widgets\n")
    wrong = violations(root)
    assert len(wrong) == 2, wrong
    assert any("kube/client.py:1 (kube) imports labkit.lessons (lessons)" in line for line in wrong), wrong
    assert any("observability/promql.py:1 (observability) imports labkit.display.widgets" in line
               for line in wrong), wrong


def test_the_checker_sees_relative_imports_between_top_level_modules(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "insight.py": "from . import addons\nfrom .display.widgets import show\nfrom . import errors\n",
        "addons/base.py": "", "display/widgets.py": "", "errors.py": "",
    })
    assert violations(root) == [
        "labkit/insight.py:2 (insight) imports labkit.display.widgets (display), which is not below it"]


# --- lessons stand alone


def test_no_lesson_imports_another_lesson() -> None:
    wrong = lesson_cross_imports(PACKAGE)
    assert not wrong, "lessons that import another lesson:\n" + "\n".join(wrong)


def test_the_checker_reports_a_lesson_importing_another(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "lessons/hpa.py": "from . import prometheus\nfrom .. import lessons\nx = lessons.tracing.y\n",
        "lessons/prometheus.py": "from .hpa import helper\nfrom . import check\nfrom .prometheus import z\n",
        "lessons/tracing.py": "import labkit.lessons.hpa as h\n",
        "lessons/__init__.py": "def check(): ...\n",
    })
    assert lesson_cross_imports(root) == [
        "labkit/lessons/hpa.py:1 lesson labkit.lessons.hpa imports labkit.lessons.prometheus, another lesson",
        "labkit/lessons/hpa.py:3 lesson labkit.lessons.hpa imports labkit.lessons.tracing, another lesson",
        "labkit/lessons/prometheus.py:1 lesson labkit.lessons.prometheus imports labkit.lessons.hpa, another lesson",
        "labkit/lessons/tracing.py:1 lesson labkit.lessons.tracing imports labkit.lessons.hpa, another lesson",
    ]


# --- private names stay in their module


def test_no_private_name_crosses_a_module() -> None:
    wrong, stale = _beyond(KNOWN_PRIVATE, private_crossings(PACKAGE))
    assert not wrong, "private names used outside their module:\n" + "\n".join(wrong)
    assert not stale, "fixed, so remove them from KNOWN_PRIVATE:\n" + "\n".join(stale)


def test_an_allowlist_entry_matches_its_report_on_any_line_and_goes_stale_when_fixed() -> None:
    known = {"labkit/a.py labkit.a imports _x, private to labkit.b",
             "labkit/c.py labkit.c uses _y, private to labkit.d"}
    wrong = ["labkit/a.py:7 labkit.a imports _x, private to labkit.b",
             "labkit/a.py:9 labkit.a imports _z, private to labkit.b"]
    assert _beyond(known, wrong) == ([wrong[1]], ["labkit/c.py labkit.c uses _y, private to labkit.d"])


def test_the_checker_reports_private_names_taken_across_modules(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "kube/client.py": "from .wait import _poll\nfrom .wait import poll\nfrom . import wait\nwait._poll()\n"
                          "from .client import _own\n_own()\n",
        "kube/wait.py": "def _poll(): ...\npoll = _poll\n",
        "insight.py": "from . import kube\nimport labkit as lk\nkube.client._helper()\nlk.__version__\n"
                      "lk.lessons.node_problems._private\nfrom .kube import _state\nimport labkit.kube._impl\n",
        "lessons/node_problems.py": "",
        "kube/_impl.py": "",
        "kube/__init__.py": "from . import _impl\n_impl._x\n",
    })
    assert private_crossings(root) == [
        "labkit/insight.py:3 labkit.insight uses _helper, private to labkit.kube.client",
        "labkit/insight.py:5 labkit.insight uses _private, private to labkit.lessons.node_problems",
        "labkit/insight.py:6 labkit.insight imports _state, private to labkit.kube",
        "labkit/insight.py:7 labkit.insight imports labkit.kube._impl, private to labkit.kube",
        "labkit/kube/__init__.py:2 labkit.kube uses _x, private to labkit.kube._impl",
        "labkit/kube/client.py:1 labkit.kube.client imports _poll, private to labkit.kube.wait",
        "labkit/kube/client.py:4 labkit.kube.client uses _poll, private to labkit.kube.wait",
    ]


# --- no load-time cycles


def test_no_package_imports_itself_in_a_circle_at_load_time() -> None:
    wrong = load_cycles(PACKAGE)
    assert not wrong, "module-level imports in a cycle:\n" + "\n".join(wrong)


def test_the_checker_reports_a_load_time_cycle_and_not_a_function_level_import(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "kube/a.py": "from . import b\n",
        "kube/b.py": "from .c import x\n",
        "kube/c.py": "from .a import y\n",
        "kube/d.py": "from . import e\n",
        "kube/e.py": "def f():\n    from . import d\n",  # a function-level import: d and e are no cycle
        "kube/f.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n",
        "kube/__init__.py": "from .f import z\n",
        "sim/gpu/__init__.py": "from .attribution import collect\n",  # a package and its own module
        "sim/gpu/attribution.py": "from labkit.sim.gpu import FakeMachine\n",
    })
    cycle = "in the cycle {labkit.kube.a, labkit.kube.b, labkit.kube.c}"
    assert load_cycles(root) == [
        f"labkit/kube/a.py:1 labkit.kube.a imports labkit.kube.b at load time, {cycle}",
        f"labkit/kube/b.py:1 labkit.kube.b imports labkit.kube.c at load time, {cycle}",
        f"labkit/kube/c.py:1 labkit.kube.c imports labkit.kube.a at load time, {cycle}",
        "labkit/sim/gpu/__init__.py:1 labkit.sim.gpu imports labkit.sim.gpu.attribution at load time, "
        "in the cycle {labkit.sim.gpu, labkit.sim.gpu.attribution}",
        "labkit/sim/gpu/attribution.py:1 labkit.sim.gpu.attribution imports labkit.sim.gpu at load time, "
        "in the cycle {labkit.sim.gpu, labkit.sim.gpu.attribution}",
    ]


def test_every_name_taken_from_the_package_root_exists() -> None:
    """``from labkit import X`` anywhere in the package or its tests names a submodule or a public name of the root
    (a module moved into a subpackage leaves no stale import behind, JupyterHub's config file included)."""
    import labkit

    wrong = []
    for path in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "labkit":
                for alias in node.names:
                    if alias.name not in labkit.__all__ and importlib.util.find_spec(f"labkit.{alias.name}") is None:
                        where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                        wrong.append(f"{where} from labkit import {alias.name}")
    assert not wrong, "names the package root does not have:\n" + "\n".join(wrong)
