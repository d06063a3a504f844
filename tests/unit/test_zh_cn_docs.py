"""The Chinese README and classroom guide are the English ones in Chinese: the same headings at each level, the same
fenced code blocks byte for byte and in order, and every relative link resolves to a file in the repository.

A link into the Chinese notebooks (`notebooks/zh-CN/NN_x.ipynb`) may come before the notebook itself: it is accepted
while its English counterpart (`notebooks/NN_x.ipynb`) exists. The Chinese README's lesson table carries no
`<!-- lessons: -->` markers (the README test reads the English one), so it is checked here: the same notebooks, in
the lesson records' order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labkit import lessons

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [(ROOT / "README.md", ROOT / "README.zh-CN.md"),
         (ROOT / "docs" / "classroom.md", ROOT / "docs" / "classroom.zh-CN.md")]
IDS = [english.name for english, _ in PAIRS]
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def split(markdown: str) -> tuple[list[str], list[str]]:
    """The text outside fenced code blocks, line by line, and each fenced block whole (its fences included)."""
    prose, blocks, block = [], [], None
    for line in markdown.split("\n"):
        if block is None and FENCE.match(line):
            block = [line]
        elif block is not None:
            block.append(line)
            if FENCE.match(line) and line.strip() == line[:3]:
                blocks.append("\n".join(block))
                block = None
        else:
            prose.append(line)
    assert block is None, "an unclosed code fence"
    return prose, blocks


def heading_levels(markdown: str) -> list[int]:
    return [len(m.group(1)) for line in split(markdown)[0] if (m := re.match(r"^(#{1,6}) \S", line))]


def relative_links(markdown: str) -> list[str]:
    targets = []
    for line in split(markdown)[0]:
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#"):
                targets.append(target.split("#", 1)[0])
    return targets


def resolves(doc: Path, target: str) -> bool:
    path = (doc.parent / target).resolve()
    if path.is_file():
        return True
    parts = path.relative_to(ROOT).parts if path.is_relative_to(ROOT) else ()
    if parts[:2] == ("notebooks", "zh-CN") and path.suffix == ".ipynb":
        return (ROOT / "notebooks" / Path(*parts[2:])).is_file()
    return False


def test_the_parsers_see_what_a_reader_sees() -> None:
    doc = "# A\n\n```bash\n# not a heading\n[x](nowhere.md)\n```\n\n## B `c`\nsee [d](d.md#top), `[e](e.md)`, [f](https://f)"
    assert heading_levels(doc) == [1, 2]
    assert split(doc)[1] == ["```bash\n# not a heading\n[x](nowhere.md)\n```"]
    assert relative_links(doc) == ["d.md"]
    assert resolves(ROOT / "README.md", "notebooks/zh-CN/00_lab_tour.ipynb")
    assert not resolves(ROOT / "README.md", "notebooks/zh-CN/99_nothing.ipynb")
    assert not resolves(ROOT / "README.md", "docs/nothing.md")


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=IDS)
def test_the_same_headings_at_each_level(english: Path, chinese: Path) -> None:
    assert heading_levels(chinese.read_text()) == heading_levels(english.read_text())


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=IDS)
def test_the_same_code_blocks_byte_for_byte(english: Path, chinese: Path) -> None:
    en_blocks, zh_blocks = split(english.read_text())[1], split(chinese.read_text())[1]
    assert len(zh_blocks) == len(en_blocks)
    for i, (en, zh) in enumerate(zip(en_blocks, zh_blocks, strict=True)):
        assert zh == en, f"{chinese.name}: code block {i + 1} differs from {english.name}'s"


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=IDS)
def test_every_relative_link_resolves(english: Path, chinese: Path) -> None:
    links = relative_links(chinese.read_text())
    assert links, f"{chinese.name} has no relative link"
    assert [t for t in links if not resolves(chinese, t)] == []


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=IDS)
def test_each_language_links_the_other_and_chinese_links_chinese(english: Path, chinese: Path) -> None:
    assert chinese.name in relative_links(english.read_text())
    zh_links = relative_links(chinese.read_text())
    assert english.name in zh_links
    for target in zh_links:
        path = (chinese.parent / target).resolve()
        twin = path.with_name(path.stem + ".zh-CN" + path.suffix)
        assert path == english or not twin.is_file(), f"{chinese.name} links {target}; its Chinese {twin.name} exists"


def test_the_chinese_readme_lists_the_lessons_without_the_english_markers() -> None:
    readme = (ROOT / "README.zh-CN.md").read_text()
    assert "<!-- lessons:" not in readme and "<!-- end lessons -->" not in readme
    rows = re.findall(r"^\| `(\d\d_\w+)` \| .+ \|$", readme, re.M)
    assert rows == [record.notebook for record in lessons.records()]
