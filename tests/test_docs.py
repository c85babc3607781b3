"""The user docs hold what they promise: README.md stays short and opens with the two
commands, every relative link between README.md and docs/ resolves (file and heading),
and the Python API page's examples run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
FIRST_COMMANDS = [
    'python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/clipfind demo',
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]" && .venv/bin/python -m pytest',
]
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The page without its fenced code blocks (a link inside code is not a link)."""
    return FENCE.sub("", text)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_anchor(h) for h in HEADING.findall(_prose(page.read_text(encoding="utf-8")))}


def _relative_links(page: Path) -> list[str]:
    links = LINK.findall(_prose(page.read_text(encoding="utf-8")))
    return [t for t in links if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_opens_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```[a-z]*\n(.*?)```", text, re.S)
    assert first_block is not None, "README.md has no code block"
    assert first_block.start() < 40, "the two commands must come first"
    assert first_block.group(1).strip().splitlines() == FIRST_COMMANDS


def test_docs_pages_exist() -> None:
    names = {p.name for p in DOCS.glob("*.md")}
    for name in ("indexing.md", "classification.md", "http-api.md", "detection.md",
                 "training.md", "architecture.md", "python-api.md", "performance.md"):
        assert name in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _relative_links(page):
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    """The checker itself: a missing file and a missing heading are both reported."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[a](missing.md) [b](#title) [c](#nope) [d](https://x.org/y)\n"
                    "```\n[not a link](nowhere.md)\n```\n", encoding="utf-8")
    assert _relative_links(page) == ["missing.md", "#title", "#nope"]
    assert _anchors(page) == {"title"}
    assert _anchor("`clipfind eval`") == "clipfind-eval"
    assert _anchor("Text precision: int8 text tower on CPU") == "text-precision-int8-text-tower-on-cpu"


def test_no_lab_notebook_in_user_docs() -> None:
    """History lives in docs/performance.md's dated rows, not in prose."""
    banned = ("../shared", "previous machine", "load average", "not investigated")
    for page in PAGES:
        text = page.read_text(encoding="utf-8").lower()
        found = [b for b in banned if b in text]
        assert not found, f"{page.name} mentions {found}"


def _cells(row: str) -> int:
    """Cells in a table row: pipes outside inline code split it."""
    return len(re.sub(r"`[^`]*`", "x", row).strip().strip("|").split("|"))


def _table_problems(text: str) -> list[str]:
    """Every run of table lines starts with a header and a |---| line, and its rows have
    the header's number of cells (a stray row renders as text, not as a row)."""
    problems, run = [], []
    for line in [*_prose(text).splitlines(), ""]:
        if line.startswith("|"):
            run.append(line)
            continue
        if run:
            if len(run) < 2 or not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", run[1].strip()):
                problems.append(f"table without a header: {run[0][:60]}")
            else:
                problems += [f"{_cells(r)} cells, header has {_cells(run[0])}: {r[:60]}"
                             for r in run if _cells(r) != _cells(run[0])]
            run = []
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_tables_are_well_formed(page: Path) -> None:
    problems = _table_problems(page.read_text(encoding="utf-8"))
    assert not problems, f"{page.name}: " + "; ".join(problems)


def test_table_checker_sees_a_stray_row() -> None:
    good = "| a | b |\n|---|---|\n| `x|y` | 2 |\n"
    assert _table_problems(good) == []
    assert _table_problems(good + "\ntext\n\n| 3 | 4 |\n")  # a row after a paragraph
    assert _table_problems("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n")


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a fresh interpreter imports torch; slow on a contended machine
def test_python_api_page_runs(tmp_path: Path) -> None:
    """Every ```python block of docs/python-api.md, in order, as one script in a fresh
    interpreter, from a folder outside the source tree, as a reader would paste them."""
    blocks = _python_blocks(DOCS / "python-api.md")
    assert blocks, "docs/python-api.md has no python examples"
    script = tmp_path / "examples.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPFIND_")}
    env.update(HF_HUB_OFFLINE="1", CLIPFIND_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
