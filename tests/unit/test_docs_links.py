"""The docs stay navigable: decision records are cited by file name and every cited one
exists, each record has its header and sections, the index lists them all, nothing
points at the single decisions file or the brief outside the repository any more, and
every relative link in the markdown resolves (to a file, and to a heading when it names
one)."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "docs" / "decisions"
INDEX = RECORDS / "README.md"
# What the code, tests and docs may cite: docs/decisions/NNNN-slug.md (or a relative
# decisions/NNNN-slug.md from docs/).
CITED_RECORD = re.compile(r"decisions/(\d{4}-[a-z0-9-]+\.md)")
# The file the records replaced, and the brief that lived outside the repository.
RETIRED = re.compile(r"\bdecisions\.md\b|\bDESIGN\.md\b")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|^\[[^\]]+\]:\s*(\S+)", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".yaml",
    ".yml",
    ".toml",
    ".txt",
    ".json",
    ".cfg",
    ".ini",
    ".tpl",
    ".sh",
    ".xml",
}
TEXT_NAMES = {"Makefile", "Dockerfile", ".importlinter", ".gitignore", ".dockerignore"}


@cache
def repository_files() -> list[Path]:
    """Tracked and new (not ignored) text files; the working tree when git is absent."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        paths = [ROOT / p for p in listed.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        skip = {
            ".git",
            ".venv",
            ".run",
            ".artifacts",
            "__pycache__",
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
        }
        paths = [p for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in paths if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES))


def records() -> list[Path]:
    return sorted(p for p in RECORDS.glob("[0-9][0-9][0-9][0-9]-*.md"))


def markdown_files() -> list[Path]:
    return [p for p in repository_files() if p.suffix == ".md"]


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def test_every_cited_decision_record_exists() -> None:
    missing = sorted(
        f"{path.relative_to(ROOT)}: decisions/{name}"
        for path in repository_files()
        for name in CITED_RECORD.findall(text_of(path))
        if not (RECORDS / name).is_file()
    )
    assert not missing, "cited decision records that do not exist:\n" + "\n".join(missing)


def test_records_are_numbered_once_each_in_order() -> None:
    numbers = [int(p.name[:4]) for p in records()]
    assert numbers, "no decision records under docs/decisions/"
    assert numbers == list(range(1, len(numbers) + 1)), f"numbers skip or repeat: {numbers}"


@pytest.mark.parametrize("record", records(), ids=lambda p: p.name[:4])
def test_every_record_has_status_date_and_sections(record: Path) -> None:
    text = text_of(record)
    number = record.name[:4]
    assert re.match(rf"# {number}\. \S", text), f"{record.name}: the title is '# {number}. <title>'"
    status = re.search(r"^- Status: (.+)$", text, re.M)
    assert status, f"{record.name}: no '- Status:' line"
    assert re.match(r"(accepted\b|superseded by \[\d{4}\]\(\d{4}-[a-z0-9-]+\.md\))", status.group(1)), (
        f"{record.name}: status is 'accepted...' or 'superseded by [NNNN](NNNN-slug.md)', "
        f"not {status.group(1)!r}"
    )
    assert re.search(r"^- Date: \d{4}-\d{2}-\d{2}$", text, re.M), f"{record.name}: no '- Date: YYYY-MM-DD'"
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == ["Context", "Decision", "Consequences"], (
        f"{record.name}: sections are {headings}, want Context, Decision, Consequences"
    )


def test_a_superseded_record_names_a_later_one() -> None:
    for record in records():
        found = re.search(r"^- Status: superseded by \[(\d{4})\]", text_of(record), re.M)
        if found:
            later = int(found.group(1)) > int(record.name[:4])
            assert later, f"{record.name} is superseded by an earlier record"


def test_the_index_lists_every_record() -> None:
    index = text_of(INDEX)
    listed = set(re.findall(r"^\| \[\d{4}\]\((\d{4}-[a-z0-9-]+\.md)\)", index, re.M))
    names = {p.name for p in records()}
    assert names - listed == set(), f"records missing from the index: {sorted(names - listed)}"
    assert listed - names == set(), f"index rows without a record: {sorted(listed - names)}"


def test_nothing_cites_the_retired_decisions_file_or_the_outside_brief() -> None:
    found = sorted(
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in repository_files()
        for n, line in enumerate(text_of(path).splitlines(), start=1)
        if RETIRED.search(line)
    )
    assert not found, (
        "cite docs/decisions/NNNN-slug.md or docs/product.md (with the section) instead:\n" + "\n".join(found)
    )


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+?)#*\s*$", FENCE.sub("", text_of(path)), re.M):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return frozenset(found)


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_markdown_link_resolves(page: Path) -> None:
    text = CODE_SPAN.sub("", FENCE.sub("", text_of(page)))
    broken = []
    for inline, reference in LINK.findall(text):
        target = inline or reference
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            continue  # http(s), mailto: not ours to check here
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor.lower() not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)
