"""labkit speaks the learner's language: which language, the catalogue's syntax and placeholders, and a catalogue
that has every message the package wraps and nothing else.

The package's messages are found with ast: every ``_("literal")`` call, every ``Exercise(task=..., hint=...)``
literal (and, for the few written as f-strings, the exercise's value at run time) and every ``require(why=...)``.
"""

from __future__ import annotations

import ast
import importlib.resources
import re
import string
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import i18n
from labkit.i18n import _

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "labkit"
PO = PACKAGE / "locale" / "zh_CN" / "LC_MESSAGES" / "labkit.po"
# Exercise fields shown to the learner through _() where they are handed over (labkit.course.exercises).
EXERCISE_FIELDS = ("task", "hint")


@pytest.fixture(autouse=True)
def no_language_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("LABKIT_LANG", "LANGUAGE", *i18n.LOCALE_VARIABLES):
        monkeypatch.delenv(variable, raising=False)


# --- which language


@pytest.mark.parametrize("value", ["zh_CN", "zh-CN", "zh", "zh_CN.UTF-8", " zh_CN "])
def test_labkit_lang_chooses_chinese(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LABKIT_LANG", value)
    assert i18n.language() == "zh_CN"


@pytest.mark.parametrize("value", ["en", "en_US.UTF-8", "C"])
def test_labkit_lang_chooses_english_over_a_chinese_locale(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    monkeypatch.setenv("LABKIT_LANG", value)
    assert i18n.language() == "en"


def test_the_locale_decides_when_labkit_lang_is_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert i18n.language() == "en"  # nothing set
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert i18n.language() == "zh_CN"
    monkeypatch.setenv("LC_MESSAGES", "en_GB.UTF-8")  # more specific than LANG
    assert i18n.language() == "en"
    monkeypatch.setenv("LC_ALL", "zh_TW.UTF-8")  # overrides both
    assert i18n.language() == "zh_CN"
    monkeypatch.setenv("LC_ALL", "")  # empty counts as not set
    assert i18n.language() == "en"


def test_the_language_is_read_at_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook's `%env LABKIT_LANG=zh_CN` comes after labkit is imported."""
    message = "NOT YET"
    assert _(message) == message
    monkeypatch.setenv("LABKIT_LANG", "zh_CN")
    assert _(message) != message and re.search(r"[\u4e00-\u9fff]", _(message))
    monkeypatch.setenv("LABKIT_LANG", "en")
    assert _(message) == message


def test_a_translated_and_an_untranslated_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_LANG", "zh_CN")
    assert _("there is no {kind} `{name}` in this namespace").format(kind="Pod", name="web") == (
        "此命名空间中没有 Pod `web`")
    assert _("a message nobody wrapped") == "a message nobody wrapped"


def test_a_result_reads_in_chinese(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.course import exercises

    monkeypatch.setenv("LABKIT_LANG", "zh_CN")
    text = str(exercises.Result("01-recover", passed=False, problems=["x"], hint="y"))
    assert text.startswith("尚未通过 01-recover") and "提示" in text
    assert "通过" in str(exercises.Result("01-recover", passed=True))


# --- the catalogue file


PO_SAMPLE = r'''# a header comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"

#: labkit/a.py:1
msgid "one"
msgstr "一"

#, fuzzy
msgid "guessed"
msgstr "猜的"

msgid ""
"two lines\n"
"and a \"quote\""
msgstr ""
"两行\n"
"和一个\"引号\""

msgid "not yet translated"
msgstr ""
'''


def test_the_po_reader() -> None:
    assert i18n.parse_po(PO_SAMPLE) == {"one": "一", 'two lines\nand a "quote"': '两行\n和一个"引号"'}
    with pytest.raises(ValueError, match="plural"):
        i18n.parse_po('msgid "a"\nmsgid_plural "as"\nmsgstr[0] "x"\n')


def test_the_catalogue_is_package_data() -> None:
    """Read as an installed package reads it, and named by pyproject's package-data, so the wheel carries it."""
    text = importlib.resources.files("labkit").joinpath("locale/zh_CN/LC_MESSAGES/labkit.po").read_text("utf-8")
    assert i18n.parse_po(text) == i18n.catalogue("zh_CN") and len(i18n.catalogue("zh_CN")) > 100
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["labkit"]
    assert any(PO in PACKAGE.glob(p) for p in patterns), f"no package-data pattern in pyproject.toml matches {PO}"
    assert not list(PACKAGE.glob("locale/**/*.mo")), "the .po file is read as it is: no compiled .mo in the repo"


def _placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"\{[^{}]*\}", text))


def test_each_translation_keeps_exactly_the_placeholders_of_its_msgid() -> None:
    wrong = [f"{msgid!r}: {_placeholders(msgid)} vs {_placeholders(msgstr)}"
             for msgid, msgstr in i18n.catalogue("zh_CN").items() if _placeholders(msgid) != _placeholders(msgstr)]
    assert not wrong, "translations whose placeholders differ from their msgid's:\n" + "\n".join(wrong)


def test_each_translation_keeps_the_msgids_edges() -> None:
    """Leading blanks (indentation in a result) and a trailing newline matter where the message is printed."""
    wrong = [repr(msgid) for msgid, msgstr in i18n.catalogue("zh_CN").items()
             if re.match(r"\s*", msgid).group() != re.match(r"\s*", msgstr).group()  # type: ignore[union-attr]
             or msgid.endswith("\n") != msgstr.endswith("\n")]
    assert not wrong, "translations that change their msgid's leading blanks or final newline:\n" + "\n".join(wrong)


# --- the package's messages, found with ast


def _literal(node: ast.expr) -> str | None:
    """A string literal (implicitly concatenated ones are one Constant already), else None."""
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def wrapped(root: Path = PACKAGE) -> Iterator[tuple[str, str, ast.Call]]:
    """(message, "file:line", call) for each message the package shows through _()."""
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = str(path.relative_to(root.parent))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            callee = _callee(node)
            if callee == "_" and isinstance(node.func, ast.Name) and node.args:
                if (text := _literal(node.args[0])) is not None:
                    yield text, f"{where}:{node.lineno}", node
            elif callee == "Exercise":
                for kw in node.keywords:
                    if kw.arg in EXERCISE_FIELDS and (text := _literal(kw.value)) is not None:
                        yield text, f"{where}:{kw.value.lineno}", node
            elif callee == "require":
                for kw in node.keywords:
                    if kw.arg == "why" and (text := _literal(kw.value)) is not None:
                        yield text, f"{where}:{kw.value.lineno}", node


def used_messages() -> dict[str, list[str]]:
    """Every message labkit shows through _(), with where it is written."""
    from labkit import lessons

    found: dict[str, list[str]] = {}
    for text, where, _call in wrapped():
        found.setdefault(text, []).append(where)
    for ex in lessons.catalogue().exercises.values():  # tasks and hints written as f-strings
        for name in EXERCISE_FIELDS:
            found.setdefault(getattr(ex, name), []).append(f"exercise {ex.id} ({name})")
    return found


def po_entry(msgid: str) -> str:
    """A .po entry to paste, for a message missing from the catalogue."""
    def quoted(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return f"msgid {quoted(msgid)}\nmsgstr \"\"\n"


def test_every_message_has_a_chinese_translation() -> None:
    translated = i18n.catalogue("zh_CN")
    missing = {text: where for text, where in used_messages().items() if not translated.get(text, "").strip()}
    assert not missing, (f"{len(missing)} messages have no msgstr in {PO.relative_to(ROOT)}:\n"
                         + "\n".join(f"#: {' '.join(where)}\n{po_entry(text)}" for text, where in missing.items()))


def test_no_msgid_in_the_catalogue_is_unused() -> None:
    used = used_messages()
    stale = [msgid for msgid in i18n.catalogue("zh_CN") if msgid not in used]
    assert not stale, "msgids no code uses (delete them from the catalogue):\n" + "\n".join(map(repr, stale))


def test_no_message_is_built_before_it_is_translated() -> None:
    """_() takes the msgid itself: an f-string or a `+` would look up a text that no catalogue has."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_"
                    and node.args and isinstance(node.args[0], ast.JoinedStr | ast.BinOp)):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong, "_() of an f-string or a concatenation:\n" + "\n".join(wrong)


def test_format_gives_each_placeholder_of_the_msgid() -> None:
    """``_("... {pod} ...").format(pod=...)``: the names given are the msgid's names."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
                    and isinstance(inner := node.func.value, ast.Call) and isinstance(inner.func, ast.Name)
                    and inner.func.id == "_" and inner.args and (text := _literal(inner.args[0])) is not None):
                continue
            names = {f[1].split(".")[0].split("[")[0] for f in string.Formatter().parse(text)
                     if f[1] is not None}
            given = {kw.arg for kw in node.keywords}
            if None in given or node.args:
                continue  # **mapping or positional: not checked
            if names != given:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} {text!r} needs {sorted(names)}, "
                             f"gets {sorted(given)}")
    assert not wrong, "\n".join(wrong)


def test_no_module_that_uses_gettext_rebinds_its_name() -> None:
    """`for _ in ...` or `x, _ = ...` at module level, or in a function that also calls _(), would make _ a tuple
    item there (or a local not yet bound)."""
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    comprehensions = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)  # their own scope

    def stores(node: ast.AST) -> list[int]:
        """Lines binding `_` in ``node``'s own scope (not in a function, lambda or comprehension inside it)."""
        found, todo = [], list(ast.iter_child_nodes(node))
        while todo:
            n = todo.pop()
            if isinstance(n, ast.Name) and n.id == "_" and isinstance(n.ctx, ast.Store):
                found.append(n.lineno)
            if not isinstance(n, scopes + comprehensions):
                todo.extend(ast.iter_child_nodes(n))
        return found

    def calls(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "_"
                   for n in ast.walk(node))

    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if not any(isinstance(n, ast.ImportFrom) and any(a.name == "_" for a in n.names) for n in ast.walk(tree)):
            continue
        where = path.relative_to(ROOT)
        wrong += [f"{where}:{line}" for line in stores(tree)]
        wrong += [f"{where}:{line}" for fn in ast.walk(tree) if isinstance(fn, scopes) and calls(fn)
                  for line in stores(fn)]
    assert not wrong, "`_` rebound where it translates:\n" + "\n".join(wrong)
