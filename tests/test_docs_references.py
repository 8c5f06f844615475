"""Every document reference in the code and docs resolves inside the repository.

Scanned: ``*.py`` and ``*.md`` under codt_deploy/, training/, app/, tests/, benchmarks/ and docs/,
plus README.md. Checked:

- a capitalised document name (``FORMATS.md``, ``METHOD.md``, ...) is a file in docs/ (README.md:
  at the root);
- a section number (``METHOD §13``, ``docs/FORMATS.md §2-3``, ``§15.3–15.4``; a bare ``§N`` means
  the document last named on its line, else METHOD.md, or the scanned document itself) is a
  numbered heading of that document, and a quoted name after it (``§1 "OpenPose"``,
  ``ARCHITECTURE.md, "Checkpoints"``) is a heading or bold run-in inside that section;
- a decision code ``D<n>`` (n >= 1; ``D0`` is the paper's decoder) is a decision of METHOD.md §11;
- ``convention N`` is an item of docs/ARCHITECTURE.md's Conventions list;
- committed benchmark results (``benchmarks/results/``) are records and are not scanned;
- nothing cites the style notes that are not part of the repository ("STYLE guideline N").
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCANNED_DIRS = ("codt_deploy", "training", "app", "tests", "benchmarks", "docs")
SKIPPED_PARTS = {"__pycache__", ".venv", ".git", "node_modules"}
# committed benchmark results are records of their day: they cite the sections of their day
RECORDS = ROOT / "benchmarks" / "results"

_DOC_NAME = re.compile(r"(?<![\w/.-])(?:docs/)?([A-Z][A-Z0-9_]+)\.md\b")
_BARE_DOC = re.compile(r"\b(METHOD|FORMATS)\b(?!\.md)")
_NUMBER = r"\d+(?:\.\d+)*"
_SECTION = re.compile(rf"§\s*({_NUMBER})(?:\s*[-–]\s*§?\s*({_NUMBER}))?")
_QUOTED = re.compile(r',?[ \t]*\n?[ \t]*"([^"\n]{2,80})"')
_NAMED_DOC = re.compile(r'(?<![\w/.-])(?:docs/)?([A-Z][A-Z0-9_]+)\.md,?[ \t]*"([^"\n]{2,80})"')
_DECISION = re.compile(r"(?<![\w/])D(\d+)\b")
_CONVENTION = re.compile(r"\bconventions?\s+(\d+)(?:\s*[-–]\s*(\d+))?", re.IGNORECASE)
_OUTSIDE_NOTES = re.compile(r"\bSTYLE\s+guidelines?\b")  # a .md name is checked on its own
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*$", re.MULTILINE)
_NUMBERED = re.compile(rf"^(?:§\s*)?({_NUMBER})\.?(?:\s|$)")
_BOLD = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)


def _plain(text: str) -> str:
    """Heading or bold text compared without markup, case or a trailing full stop."""
    return " ".join(text.replace("`", "").split()).rstrip(".:").lower()


class Doc:
    """A markdown document: its numbered sections and the names (headings, bold run-ins) in each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        text = path.read_text(encoding="utf-8")
        headings = [(m.start(), len(m[1]), m[2]) for m in _HEADING.finditer(text)]
        self.sections: dict[str, list[str]] = {}
        self.names = [_plain(h) for _, _, h in headings] + [_plain(b) for b in _BOLD.findall(text)]
        for i, (start, level, title) in enumerate(headings):
            number = _NUMBERED.match(title)
            if number is None:
                continue
            end = next((s for s, lvl, _ in headings[i + 1:] if lvl <= level), len(text))
            body = text[start:end]
            inner = [_plain(h) for s, _, h in headings if start <= s < end]
            self.sections[number[1]] = inner + [_plain(b) for b in _BOLD.findall(body)]

    def has_name(self, name: str, section: str | None = None) -> bool:
        names = self.names if section is None else self.sections.get(section, [])
        wanted = _plain(name)
        return any(wanted in candidate for candidate in names)


@cache
def document(name: str) -> Doc | None:
    for folder in (DOCS, ROOT):
        path = folder / f"{name}.md"
        if path.is_file():
            return Doc(path)
    return None


@cache
def decisions() -> frozenset[int]:
    text = (DOCS / "METHOD.md").read_text(encoding="utf-8")
    return frozenset(int(n) for n in re.findall(r"^\*\*D(\d+)\b", text, re.MULTILINE))


@cache
def conventions() -> frozenset[int]:
    text = (DOCS / "ARCHITECTURE.md").read_text(encoding="utf-8")
    match = re.search(r"^## Conventions\b(.*?)(?=^#{1,2} |\Z)", text, re.MULTILINE | re.DOTALL)
    if match is None:
        return frozenset()
    return frozenset(int(n) for n in re.findall(r"^(\d+)\. ", match[1], re.MULTILINE))


def _context_doc(text: str, position: int, default: str) -> str:
    """The document a bare § at ``position`` refers to: the last one named earlier on its line."""
    line = text[text.rfind("\n", 0, position) + 1:position]
    named = [(m.start(), m[1]) for m in _DOC_NAME.finditer(line)]
    named += [(m.start(), m[1]) for m in _BARE_DOC.finditer(line)]
    return max(named)[1] if named else default


def _default_doc(source: str) -> str:
    """Bare § references mean METHOD.md, except inside another numbered document of docs/."""
    path = Path(source)
    own = document(path.stem) if path.parent.name == "docs" and path.suffix == ".md" else None
    return path.stem if own is not None and own.sections else "METHOD"


def _section_problems(text: str, source: str) -> list[str]:
    problems = []
    default = _default_doc(source)
    for match in _SECTION.finditer(text):
        doc_name = _context_doc(text, match.start(), default)
        doc = document(doc_name)
        where = f"{source}: §{match[1]}"
        if doc is None:
            problems.append(f"{where} cites {doc_name}.md, which is not in docs/")
            continue
        for number in filter(None, (match[1], match[2])):
            if number not in doc.sections:
                problems.append(f"{where}: {doc_name}.md has no section {number}")
        quoted = _QUOTED.match(text, match.end())
        if quoted and not doc.has_name(quoted[1], None if match[2] else match[1]):
            problems.append(f'{where} "{quoted[1]}": no such heading in {doc_name}.md §{match[1]}')
    return problems


def problems_in(text: str, source: str) -> list[str]:
    """Every reference in ``text`` (from ``source``) that does not resolve."""
    problems = []
    for match in _DOC_NAME.finditer(text):
        if document(match[1]) is None:
            problems.append(f"{source}: cites {match[0]}, which is not in the repository")
    for match in _NAMED_DOC.finditer(text):
        doc = document(match[1])
        if doc is not None and not doc.has_name(match[2]):
            problems.append(f'{source}: {match[1]}.md has no heading "{match[2]}"')
    problems += _section_problems(text, source)
    for match in _DECISION.finditer(text):
        if int(match[1]) != 0 and int(match[1]) not in decisions():
            problems.append(f"{source}: decision D{match[1]} is not in METHOD.md §11")
    for match in _CONVENTION.finditer(text):
        for number in filter(None, (match[1], match[2])):
            if int(number) not in conventions():
                problems.append(f"{source}: convention {number} is not in docs/ARCHITECTURE.md")
    for match in _OUTSIDE_NOTES.finditer(text):
        problems.append(f"{source}: cites {match[0]!r}, notes this repository does not contain")
    return problems


def scanned_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in SCANNED_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md") and path.is_file() and \
                    not SKIPPED_PARTS & set(path.parts) and path != Path(__file__).resolve() and \
                    RECORDS not in path.parents:
                files.append(path)
    return files


def test_every_reference_resolves():
    problems = []
    for path in scanned_files():
        problems += problems_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not problems, "unresolved references:\n" + "\n".join(problems)


def test_the_scan_sees_the_cited_documents():
    files = {str(p.relative_to(ROOT)) for p in scanned_files()}
    assert {"README.md", "docs/METHOD.md", "docs/FORMATS.md", "codt_deploy/readers/ntu.py",
            "training/engine.py", "app/uploads.py", "benchmarks/README.md"} <= files
    assert set(document("METHOD").sections) >= {str(n) for n in range(1, 16)} | {"15.1", "15.7"}
    assert set(document("FORMATS").sections) >= {"1", "2", "3"}
    assert decisions() == frozenset(range(1, 21))
    assert conventions() == frozenset(range(1, len(conventions()) + 1)) and conventions()


@pytest.mark.parametrize("text", [
    "(METHOD.md §99)",
    "METHOD §15.42",
    "(METHOD §5–§77)",
    'docs/FORMATS.md §1 "No such format"',
    "docs/FORMATS.md §4",
    '(docs/ARCHITECTURE.md, "No such heading")',
    "the bank (D77)",
    "see docs/NOTES.md",
    "timings (PERFORMANCE.md)",
    "STYLE guideline 3",
    "docs/ARCHITECTURE.md, convention 99",
    "§2 of LAYOUTS.md: LAYOUTS.md §2",
])
def test_a_bogus_reference_is_caught(text):
    assert problems_in(text, "example.py")


@pytest.mark.parametrize("text", [
    'FORMATS = ("csv", "jsonl", "parquet")',
    "if explicit not in FORMATS:",
    "_LOCAL_METHOD = 6",
    '"BM-B0 w/o D0": no reconstruction',
    "(T, M, V, D) and 3D data",
    "METHOD.md §15.3–15.4, §5/§7/§10 and D3–D6",
    'docs/FORMATS.md §1 "VIBE / Skeletics-152 JSON"; docs/FORMATS.md §2-3',
    '(METHOD.md §10, "Inference"), §4 "Masking parts"',
    'docs/ARCHITECTURE.md, "Checkpoints" and conventions 1-2',
])
def test_a_good_reference_passes(text):
    assert problems_in(text, "example.py") == []
