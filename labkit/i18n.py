"""labkit speaks the learner's language: ``_(message)`` is the message in Chinese or English.

gettext's way: the English text is the message id, and the Chinese is looked up in
``labkit/locale/zh_CN/LC_MESSAGES/labkit.po`` (read by the small reader below; no compiled ``.mo``). A message with
values keeps named placeholders in its id and is formatted after the lookup::

    _("{pod} is not Ready yet").format(pod=name)

The language is read from the environment at each call, since a notebook sets ``%env LABKIT_LANG=zh_CN`` after
labkit may already be imported: ``LABKIT_LANG`` first, else the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``: the
first one set decides, as in POSIX), else English. Each catalogue is read once.
"""

from __future__ import annotations

import os
import re
from functools import cache
from importlib import resources

CHINESE = "zh_CN"
ENGLISH = "en"
DOMAIN = "labkit"
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


def _normalise(value: str) -> str:
    """``zh_CN``, ``zh-CN``, ``zh``, ``zh_CN.UTF-8`` (any ``zh...``) -> ``zh_CN``; anything else -> ``en``."""
    return CHINESE if value.strip().lower().startswith("zh") else ENGLISH


def language() -> str:
    """The learner's language, ``"zh_CN"`` or ``"en"``: ``LABKIT_LANG``, else the locale, else English."""
    chosen = os.environ.get("LABKIT_LANG", "").strip()
    if chosen:
        return _normalise(chosen)
    for variable in LOCALE_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value:
            return _normalise(value)
    return ENGLISH


def catalogue_path(lang: str = CHINESE) -> resources.abc.Traversable:
    """Where a language's catalogue lives inside the package (package data: an installed wheel has it too)."""
    return resources.files("labkit").joinpath("locale", lang, "LC_MESSAGES", f"{DOMAIN}.po")


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


def _unquote(token: str) -> str:
    """One quoted .po string (``"a\\"b\\n"``) as text."""
    token = token.strip()
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise ValueError(f"not a quoted .po string: {token!r}")
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), token[1:-1])


def parse_po(text: str) -> dict[str, str]:
    """A .po file's translations, msgid -> msgstr: the header (msgid ""), fuzzy entries and empty msgstrs left out.

    Handles ``#`` comments (``#:`` references, ``#,`` flags), ``msgctxt`` (ignored), strings continued over several
    quoted lines. Plural forms are not used by labkit and are refused.
    """
    entries: dict[str, str] = {}
    fields: dict[str, str] = {}
    flags: set[str] = set()
    current: str | None = None

    def finish() -> None:
        msgid, msgstr = fields.get("msgid"), fields.get("msgstr")
        if msgid and msgstr and "fuzzy" not in flags:
            entries[msgid] = msgstr

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if fields and current == "msgstr":  # a comment after a msgstr starts the next entry
                finish()
                fields, flags, current = {}, set(), None
            if line.startswith("#,"):
                flags.update(f.strip() for f in line[2:].split(","))
            continue
        if line.startswith('"'):
            if current is None:
                raise ValueError(f"line {number}: a string continues no keyword")
            fields[current] += _unquote(line)
            continue
        keyword, _sep, rest = line.partition(" ")
        if keyword == "msgid_plural" or keyword.startswith("msgstr["):
            raise ValueError(f"line {number}: plural forms are not supported in labkit's catalogue")
        if keyword not in ("msgctxt", "msgid", "msgstr"):
            raise ValueError(f"line {number}: unexpected {keyword!r}")
        if keyword in ("msgctxt", "msgid") and current == "msgstr":
            finish()
            fields, flags = {}, set()
        current = keyword
        fields[keyword] = _unquote(rest)
    if fields:
        finish()
    return entries


@cache
def catalogue(lang: str = CHINESE) -> dict[str, str]:
    """A language's translations (read once); English and a language without a catalogue have none."""
    if lang == ENGLISH:
        return {}
    path = catalogue_path(lang)
    return parse_po(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _(message: str) -> str:
    """``message`` in the learner's language (itself where no translation exists)."""
    lang = language()
    if lang == ENGLISH:
        return message
    return catalogue(lang).get(message) or message
