"""The package's layers point one way: a module imports only from its own layer package or from layers below.

Read from the source with ast, so the test needs no imports of its own and names the offending line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "labkit"

# Bottom to top. A module's layer is the first entry that matches its dotted name (a package covers its modules).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths", "versions", "settings", "state"),
    ("cluster",),
    ("sim",),
    ("addons",),
    ("kube",),
    ("promql", "cgroups", "exercises", "operations"),
    ("classroom",),
    ("insight",),
    ("figures",),
    ("widgets", "dashboards"),
    ("lessons",),
    ("cli", "__init__"),
    ("__main__",),
]


def layer_of(dotted: str) -> tuple[int, str]:
    """(rank, layer unit) of a module named relative to the package: ``kube.client`` -> (4, "kube")."""
    head = dotted.split(".")[0]
    for rank, names in enumerate(LAYERS):
        if head in names:
            return rank, head
    raise AssertionError(f"labkit.{dotted} belongs to no layer: add it to LAYERS in {__file__}")


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module relative to labkit) for every labkit import in the file."""
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package != "__init__" else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
                if not node.module:  # from . import a, b
                    found += [(node.lineno, ".".join([*base, a.name]).lstrip(".")) for a in node.names]
                    continue
            elif node.module and node.module.startswith("labkit."):
                target = node.module.removeprefix("labkit.")
            else:
                continue
            found.append((node.lineno, target.lstrip(".")))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.removeprefix("labkit.")) for a in node.names if a.name.startswith("labkit.")]
    return found


def violations(root: Path) -> list[str]:
    """One line per import that points up or sideways, naming file, line and both layers."""
    wrong = []
    for path in sorted(root.rglob("*.py")):
        source = ".".join(path.relative_to(root).with_suffix("").parts)
        rank, unit = layer_of(source)
        for line, target in imports_of(path, root):
            if not target or target == "__init__":
                continue
            target_rank, target_unit = layer_of(target)
            if target_unit != unit and target_rank >= rank:
                wrong.append(f"{path.relative_to(root.parent)}:{line} ({unit}) imports labkit.{target} "
                             f"({target_unit}), which is not below it")
    return wrong


def test_every_import_points_down_or_stays_in_its_layer_unit() -> None:
    wrong = violations(PACKAGE)
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_checker_reports_an_upward_and_a_sideways_import(tmp_path: Path) -> None:
    root = tmp_path / "labkit"
    (root / "kube").mkdir(parents=True)
    (root / "kube" / "client.py").write_text("from ..lessons import gpu_monitoring\nfrom .. import errors\n")
    (root / "figures.py").write_text("import labkit.widgets\n")
    wrong = violations(root)
    assert len(wrong) == 2, wrong
    assert "kube/client.py:1 (kube) imports labkit.lessons (lessons)" in wrong[1]
    assert "figures.py:1 (figures) imports labkit.widgets" in wrong[0]
