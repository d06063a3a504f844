"""docs/outline.md: one row per item of the glossary's numbering key, each with a known "how", a reason where the lab
does not show it live, notebooks that exist, and counts that match the table."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTLINE = ROOT / "docs" / "outline.md"
GLOSSARY = ROOT / "docs" / "glossary.md"
HOWS = ("live", "model", "text", "not showable")
ITEM = re.compile(r"H\d+|\d+")


def glossary_key() -> list[str]:
    """The items of the glossary's numbering key, in its order: rows `| ITEM | LINE | text |` after its heading."""
    text = GLOSSARY.read_text(encoding="utf-8")
    key = text[text.index("Item numbering key"):]
    return re.findall(r"^\| (H\d+|\d+) \| \d+ \|", key, re.M)


def outline_rows() -> list[dict[str, str]]:
    """The table's rows: item, quote, where, how, note (a row is a line whose first cell is an item number)."""
    rows = []
    for line in OUTLINE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells and ITEM.fullmatch(cells[0]):
            assert len(cells) == 5, f"row {cells[0]} has {len(cells)} cells, not 5: {line}"
            rows.append(dict(zip(("item", "quote", "where", "how", "note"), cells, strict=True)))
    return rows


def test_every_key_item_has_exactly_one_row():
    key = glossary_key()
    assert len(key) == len(set(key)) > 0
    items = Counter(row["item"] for row in outline_rows())
    assert sorted(item for item, n in items.items() if n > 1) == []
    assert set(key) - set(items) == set(), "items of the key without a row"
    assert set(items) - set(key) == set(), "rows for items the key does not have"


def test_how_is_one_of_four_and_others_have_a_reason():
    for row in outline_rows():
        assert row["how"] in HOWS, row
        if row["how"] != "live":
            assert row["note"], f"item {row['item']} is {row['how']!r} but gives no reason"
        assert len(row["quote"]) <= 60, f"item {row['item']}: the quote is longer than 60 characters"


def test_notebooks_named_exist():
    named = {name for row in outline_rows() for name in re.findall(r"`(\d\d_\w+)`", row["where"])}
    assert named, "no notebook named in the where column"
    missing = sorted(name for name in named if not (ROOT / "notebooks" / f"{name}.ipynb").is_file())
    assert missing == []


def test_counts_in_the_paragraph_match_the_table():
    text = OUTLINE.read_text(encoding="utf-8")
    match = re.search(r"(\d+) live, (\d+) model, (\d+) text, (\d+) not showable; (\d+) items", text)
    assert match, "the paragraph above the table states no counts"
    stated = dict(zip((*HOWS, "items"), map(int, match.groups()), strict=True))
    rows = outline_rows()
    assert stated == {**{how: 0 for how in HOWS}, **Counter(row["how"] for row in rows), "items": len(rows)}
