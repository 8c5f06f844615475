"""Ground-truth labels from a CSV file, and the label of each sequence.

The one reader of a labels CSV: ``codt-cluster --labels``, the app's labels upload and a training
domain's ``labels`` all use :func:`read_labels` and :meth:`LabelTable.label_of`.

The file
    UTF-8 (a byte order mark is fine), comma-separated, with a header row. Header names are matched
    without regard to case or surrounding spaces:

    - the key column: the first of :data:`KEY_COLUMNS` present, ``file``, ``filename``, ``name``,
      ``sample``, ``path``, ``source``, ``member``;
    - ``label`` (:data:`LABEL_COLUMN`): the label, any text (training reads an integer as a class
      id);
    - ``label_name`` (:data:`LABEL_NAME_COLUMN`, optional): a label's display name.

    Other columns are ignored, and so are blank rows. Each of these is a :class:`LabelsError`
    naming the file and, for a row, its line: a file that cannot be read as UTF-8 CSV (a field over
    ``csv.field_size_limit()`` included), no ``label`` or no key column, no rows after the header,
    a row with an empty key or label, a key listed again with a different label.

What a key matches
    A key names a sequence by any of :func:`sequence_keys`, the most specific first: its sequence
    name (a segment of a longer recording is its own sequence, named ``A10N08-L#3`` by the PKU-MMD
    reader and ``s01_e01#walk`` by UTKinect's), ``archive.zip::member`` or the file path, the path
    inside the archive, the file name, its stem (``a.b.json``: ``a.b``, then ``a``), and last the
    archive itself, which labels all its members. A key that is a path also stands for its file name
    and stems (``clips/a.json`` labels ``a.json`` and ``a``), unless another row gives one of those
    a different label.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from codt_deploy.errors import LabelsError

KEY_COLUMNS = ("file", "filename", "name", "sample", "path", "source", "member")
LABEL_COLUMN = "label"
LABEL_NAME_COLUMN = "label_name"
NumberedRow = tuple[int, list[str]]  # (line number, cells)


@dataclass(frozen=True)
class LabelTable:
    """A labels CSV as read: key -> label, each label's display name, and the file's name.

    ``aliases`` holds the file name and stems of each path key (None where rows disagree); a key of
    the CSV itself wins over an alias. Each distinct label is one string object, shared by all its
    rows, so the table costs about a dict entry and a key string per key and alias.
    """

    by_key: dict[str, str]  # the CSV's keys -> label
    names: dict[str, str]  # label -> display name (its label_name, else the label itself)
    source: str  # the file, as messages name it
    aliases: dict[str, str | None] = field(default_factory=dict)  # file names and stems -> label

    def lookup(self, key: str) -> str | None:
        """The label of one key: the CSV's own row, else an alias all rows agree on, else None."""
        label = self.by_key.get(key)
        return label if label is not None else self.aliases.get(key)

    def label_of(self, source: str, member: str = "", name: str = "") -> str | None:
        """The label of the sequence ``name`` from ``source`` (and archive ``member``), or None."""
        labels = (self.lookup(key) for key in sequence_keys(source, member, name))
        return next((label for label in labels if label is not None), None)


def sequence_keys(source: str, member: str = "", name: str = "") -> list[str]:
    """The keys that may name a sequence in a labels CSV, most specific first.

    ``source`` is the file, or ``archive::member`` when ``member`` is not given separately.
    """
    archive, inner = (source, member) if member else _split_archive(source)
    full = f"{archive}::{inner}" if archive else inner
    return _distinct([name, full, inner, *file_name_forms(inner), archive])


def file_name_forms(path: str) -> list[str]:
    """The file name of ``path`` and its stems: ``clips/a.b.json`` -> a.b.json, a.b, a."""
    normal = path.replace("\\", "/").rstrip("/")
    base = normal.rsplit("/", 1)[-1]
    if base == ".":  # rare; PurePosixPath drops "." parts (it is ~5 times slower per key)
        base = PurePosixPath(normal).name
    return _distinct([base, base.rsplit(".", 1)[0], base.split(".", 1)[0]])


def read_labels(path: str | os.PathLike, *, shown_as: str | None = None) -> LabelTable:
    """Read a labels CSV (the format is in this module's docstring); raises :class:`LabelsError`.

    The file is streamed row by row into the table (no list of rows is kept). ``shown_as`` names
    the file in messages and in ``LabelTable.source`` (default: ``path``).
    """
    shown = str(path) if shown_as is None else shown_as
    table = LabelTable({}, {}, shown)
    rows = _iter_rows(path, shown)
    header = next(rows, (0, []))[1]
    key_col, label_col, name_col = _column_indices(header, shown)
    shared: dict[str, str] = {}  # each label's one string object
    for line, row in rows:
        key, label, label_name = (_cell(row, col) for col in (key_col, label_col, name_col))
        if not key or not label:
            raise LabelsError(shown, f"empty {header[key_col]!r} or {LABEL_COLUMN!r}", line=line)
        _add_row(table, key, shared.setdefault(label, label), label_name, line)
    if not table.by_key:
        raise LabelsError(shown, "no labels in this file, only a header")
    return table


def _add_row(table: LabelTable, key: str, label: str, label_name: str, line: int) -> None:
    """Record one row's key, label and display name, and the file-name aliases of its key."""
    known = table.by_key.get(key)
    if known is not None and known != label:
        raise LabelsError(table.source, f"{key!r} is listed twice, with labels {known!r} and "
                                        f"{label!r}", line=line)
    table.names.setdefault(label, label_name or label)
    table.by_key[key] = label
    for alias in file_name_forms(key):
        if alias != key:
            agreed = table.aliases.get(alias, label)
            table.aliases[alias] = label if agreed == label else None


def _iter_rows(path: str | os.PathLike, shown: str) -> Iterator[NumberedRow]:
    """The non-blank rows of the file, numbered by line, the header first (normalised: stripped,
    lower case)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header_seen = False
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                if not header_seen:
                    header_seen = True
                    row = [c.strip().lower() for c in row]
                yield reader.line_num, row
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(shown, f"cannot read the labels CSV: {exc}") from None
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (131,072 characters)
        raise LabelsError(shown, f"not a labels CSV: {exc}", line=reader.line_num) from None


def _column_indices(header: list[str], shown: str) -> tuple[int, int, int | None]:
    """(key, label, label_name) column indices; label_name is None when absent."""
    key = next((name for name in KEY_COLUMNS if name in header), None)
    if key is None or LABEL_COLUMN not in header:
        raise LabelsError(shown, f"a labels CSV needs a {LABEL_COLUMN!r} column and a key column "
                                 f"(one of {', '.join(KEY_COLUMNS)}); found columns {header}")
    label_name = header.index(LABEL_NAME_COLUMN) if LABEL_NAME_COLUMN in header else None
    return header.index(key), header.index(LABEL_COLUMN), label_name


def _cell(row: list[str], col: int | None) -> str:
    return row[col].strip() if col is not None and col < len(row) else ""


def _split_archive(source: str) -> tuple[str, str]:
    """("archive.zip", "clips/a.json") of ``archive.zip::clips/a.json``; ("", source) of a file."""
    archive, _, inner = source.rpartition("::")
    return archive, inner


def _distinct(keys: list[str]) -> list[str]:
    """The non-empty ``keys`` in order, each once."""
    return [key for key in dict.fromkeys(keys) if key]
