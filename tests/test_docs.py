"""Run every ```python block of docs/*.md and README.md as a program of its own.

A documented example that no longer runs is a bug, so each block is written to a temporary
file and executed by this interpreter in a fresh process (outside the repository, so that
the installed ``asyncperf`` is what it imports). Blocks that are deliberately not runnable
are fenced as ``text`` or ``py-fragment``; only ``python``, ``py`` and ``python3`` fences
run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUNNABLE = frozenset({"python", "py", "python3"})
TIMEOUT = 60.0
# Signs of a broken example that still exits 0: an exception printed by a background task
# or a finaliser, or a coroutine that was never awaited.
STDERR_FAILURES = ("Traceback (most recent call last)", "was never awaited", "Exception ignored")

_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts and what it says."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """Return every fenced block of a Markdown file, indented ones (admonitions) included.

    Raises:
        ValueError: A fence is opened and never closed.
    """
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = _OPEN.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence = match["indent"], match["fence"]
        info = match["info"].strip()
        language = info.split()[0].lstrip("{.").rstrip("}").lower() if info else ""
        start = index
        body: list[str] = []
        index += 1
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while index < len(lines) and close.match(lines[index]) is None:
            body.append(lines[index])
            index += 1
        if index == len(lines):
            raise ValueError(f"{path.name}:{start + 1}: code fence {fence!r} is never closed")
        index += 1  # past the closing fence
        text = "\n".join(line.removeprefix(indent) for line in body)
        blocks.append(Block(path, start + 1, language, textwrap.dedent(text) + "\n"))
    return blocks


def markdown_sources() -> list[Path]:
    """Return the Markdown files whose examples must run (README.md may not exist yet)."""
    sources = sorted(DOCS.glob("*.md"))
    readme = ROOT / "README.md"
    if readme.is_file():
        sources.append(readme)
    return sources


def runnable_blocks() -> list[Block]:
    return [
        block
        for path in markdown_sources()
        for block in extract_blocks(path)
        if block.language in RUNNABLE
    ]


BLOCKS = runnable_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_example_runs(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    where = f"{block.path.relative_to(ROOT)}, line {block.line}"
    try:
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"example at {where} ran longer than {TIMEOUT:.0f} s")
    if result.returncode != 0:
        pytest.fail(
            f"example at {where} exited with {result.returncode}:\n{result.stderr}",
            pytrace=False,
        )
    for sign in STDERR_FAILURES:
        if sign in result.stderr:
            pytest.fail(
                f"example at {where} printed {sign!r} on stderr:\n{result.stderr}",
                pytrace=False,
            )


def test_examples_were_found() -> None:
    """Guard against a parser change that silently runs nothing."""
    assert BLOCKS, "no ```python blocks found in docs/*.md or README.md"


@pytest.mark.parametrize(
    "page", sorted(p.name for p in DOCS.glob("*.md") if p.name != "changelog.md")
)
def test_every_page_has_a_runnable_example(page: str) -> None:
    blocks = [b for b in extract_blocks(DOCS / page) if b.language in RUNNABLE]
    assert blocks, f"docs/{page} has no runnable ```python example"


def test_changelog_page_includes_changelog() -> None:
    page = (DOCS / "changelog.md").read_text(encoding="utf-8")
    assert '--8<-- "CHANGELOG.md"' in page
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog


def test_extract_blocks_handles_indented_and_unclosed_fences(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n"
        "!!! note\n\n"
        "    ```python\n"
        "    print('indented')\n"
        "    ```\n\n"
        "````text\n```python\nnot a block\n```\n````\n",
        encoding="utf-8",
    )
    blocks = extract_blocks(page)
    assert [(b.line, b.language, b.code) for b in blocks] == [
        (5, "python", "print('indented')\n"),
        (9, "text", "```python\nnot a block\n```\n"),
    ]
    page.write_text("```python\nprint(1)\n", encoding="utf-8")
    with pytest.raises(ValueError, match="never closed"):
        extract_blocks(page)
