"""The Chinese edition (notebooks/zh-CN/) is the English one in Chinese: the same cells in the same order, the same
code (only its comments translated), a heading for every heading, and outputs stored from its own run.

Code is compared token by token without comments: shell (`!`) and magic (`%`) lines must match as they are, trailing
comments included, since the shell reads them; Python comments may be translated. The first code cell of a Chinese
notebook begins with `%env LABKIT_LANG=zh_CN`, which labkit reads to speak Chinese, and whose printed `env:` line
shows that the stored outputs come from the Chinese notebook's own run.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

from labkit import lessons

ROOT = Path(__file__).resolve().parents[2]
ENGLISH, CHINESE = ROOT / "notebooks", ROOT / "notebooks" / "zh-CN"
LANGUAGE_LINE = "%env LABKIT_LANG=zh_CN"
NBVAL = re.compile(r"^# NBVAL_\w+$", re.M)  # read by nbval, so never translated
NOTEBOOKS = [record.notebook for record in lessons.records()]


def code_tokens(source: str) -> list[tuple[int, str]]:
    """A cell's code as tokens, comments and blank lines left out; `!` and `%` lines kept whole."""
    masked = []
    for line in source.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(("!", "%")):
            line = line[: len(line) - len(stripped)] + f"__line__({stripped!r})"
        masked.append(line)
    tokens = tokenize.generate_tokens(io.StringIO("\n".join(masked) + "\n").readline)
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER}
    return [(t.type, t.string) for t in tokens if t.type not in skip]


def headings(markdown: str) -> list[str]:
    """Each heading's level and what stays the same in both languages: its numbers and `code`."""
    found = []
    for line in markdown.split("\n"):
        m = re.match(r"^(#{1,6}) (.*)", line)
        if m:
            found.append(m.group(1) + " " + " ".join(re.findall(r"`[^`]+`|\b\d+(?:\.\d+)*\b", m.group(2))))
    return found


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_the_comparison_ignores_comments_and_nothing_else() -> None:
    english, chinese = "x = 1   # set x\n!kubectl get pods  # all", "x = 1   # 设置 x\n!kubectl get pods  # all"
    assert code_tokens(english) == code_tokens(chinese)
    assert code_tokens("!kubectl get pods  # all") != code_tokens("!kubectl get pods  # 全部")
    assert code_tokens("x = 1") != code_tokens("x = 2")
    assert code_tokens('s = "a # b"') != code_tokens('s = "a # 乙"')   # inside a string it is no comment
    assert headings("## 3. Probes: `tcpSocket` (TCP 探针)\ntext") == ["## 3 `tcpSocket`"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_chinese_notebook_is_its_english_one_cell_for_cell(name: str) -> None:
    english, chinese = cells(ENGLISH / f"{name}.ipynb"), cells(CHINESE / f"{name}.ipynb")
    assert [c["cell_type"] for c in chinese] == [c["cell_type"] for c in english], f"{name}: cells differ"
    first = True
    for i, (en, zh) in enumerate(zip(english, chinese, strict=True)):
        en_src, zh_src = "".join(en["source"]), "".join(zh["source"])
        assert en.get("metadata", {}).get("tags") == zh.get("metadata", {}).get("tags"), f"{name} cell {i}: tags"
        if en["cell_type"] == "code":
            if first:
                assert zh_src.startswith(LANGUAGE_LINE + "\n"), f"{name}: the first code cell sets {LANGUAGE_LINE}"
                zh_src, first = zh_src[len(LANGUAGE_LINE) + 1:], False
            assert code_tokens(zh_src) == code_tokens(en_src), f"{name} cell {i}: the code differs\n{zh_src}"
            assert NBVAL.findall(zh_src) == NBVAL.findall(en_src), f"{name} cell {i}: nbval's markers are not comments"
        else:
            assert headings(zh_src) == headings(en_src), f"{name} cell {i}: headings differ"
            if re.search(r"[A-Za-z]{4}", en_src):
                assert re.search(r"[\u4e00-\u9fff]", zh_src), f"{name} cell {i}: not translated"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_chinese_notebook_stores_the_outputs_of_its_own_run(name: str) -> None:
    chinese = cells(CHINESE / f"{name}.ipynb")
    code = [c for c in chinese if c["cell_type"] == "code"]
    printed = "".join("".join(o.get("text", "")) for o in code[0].get("outputs", []))
    assert "env: LABKIT_LANG=zh_CN" in printed, f"{name}: its outputs are not from a run of the Chinese notebook"
    assert all(c.get("execution_count") for c in code), f"{name}: cells never run in the stored run"
