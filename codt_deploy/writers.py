"""Result writers for ``codt-cluster``: CSV, JSON lines and Parquet, written atomically, resumable.

Rows go first into a journal beside the output (``<output>.part``, JSON lines): a header naming the
model and the row schema, then each input file's rows followed by a ``done`` line, flushed as they
come and fsynced every few seconds. An interrupted run leaves the journal; ``--resume`` keeps the
files marked done (dropping half-written ones) and appends to it. When the run ends the journal is
converted, streaming, into the requested format in a temporary file that is renamed over the output,
so the output is either the old file or the complete new one, never a torn one.

Columns: ``source, member, name, segment, cluster[, nearest_source_class][, eval_cluster_name],
confidence[, embedding]``; in CSV
the embedding is spread over ``embedding_0 ... embedding_{D-1}``, in JSON lines and Parquet it is one
list column.

Safe outputs: a file name that is not valid UTF-8 is written with its undecodable bytes escaped
(``\\xff``), never lost; in CSV a text cell that a spreadsheet would run as a formula (``=``, ``+``,
``-``, ``@``, tab, CR first) gets a leading ``'``. Each ``done`` line carries its file's row count,
so a corrupted journal line costs that file a re-read on ``--resume``, never a silent lost row.
:func:`check_output` refuses, before any work, an output that is a folder, a device, a FIFO or a
symbolic link, in a folder that cannot be written, one of the inputs (a glob pattern's matches
included), or another file the run reads (the labels, the layout file, the model).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from codt_deploy.datafiles import DataError, parse_data
from codt_deploy.errors import CodtError
from codt_deploy.sources import canonical_path, input_paths

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl", "parquet")
JOURNAL_SUFFIX = ".part"
_SUFFIX_FORMAT = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

Row = dict[str, Any]
FRAMES_FIELD = "_frames"  # a row's DTW frames for the run's batch step: journal only, never output


class Finisher(Protocol):
    """What a sink calls at the end of a run to re-cluster all its rows together
    (``codt_deploy.pipeline.BatchFinisher``)."""

    def applies(self, rows: int) -> bool: ...

    def overrides(self, frame_texts: list[str], clusters: list[int]) -> list[Row] | None: ...


def batch_overrides(frame_texts: list[str | None], clusters: list[int],
                    finisher: Finisher | None) -> list[Row] | None:
    """The finisher's per-row overrides of a whole run, from each row's journal frames
    (``frame_texts``, None where a row has none) and vote ``clusters``; None when the run keeps
    its votes (no finisher, a run it does not take, or a row without its frames)."""
    if finisher is None or not finisher.applies(len(frame_texts)):
        return None
    if any(text is None for text in frame_texts):
        log.warning("a row without its frames: the run's clips keep their own votes")
        return None
    return finisher.overrides(frame_texts, clusters)  # type: ignore[arg-type]


TEXT_COLUMNS = ("source", "member", "name", "segment", "nearest_source_class", "eval_cluster_name")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TERMINAL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    c: f"\\u{c:04x}" for c in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def printable_text(text: str) -> str:
    """``text`` encodable as UTF-8: bytes a file name held that are not UTF-8 (Python keeps them as
    lone surrogates) become ``\\xNN`` escapes; any other lone surrogate a ``\\udNNN`` escape."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def terminal_safe(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (which can move the cursor, erase
    lines or recolour the screen) and bidirectional overrides become visible escapes
    (``\\x1b``, ``\\u202e``), as do bytes that were not UTF-8 (:func:`printable_text`)."""
    return printable_text(text).translate(_TERMINAL_ESCAPES)


def spreadsheet_safe(text: str) -> str:
    """A CSV cell a spreadsheet will show rather than run: ``=HYPERLINK(...)`` -> ``'=HYPERLINK(...)``."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def output_row(row: Row, *, csv_cells: bool = False, terminal: bool = False) -> Row:
    """``row`` with its text columns made safe to write (see the module docstring); ``terminal``:
    for a terminal (:func:`terminal_safe`)."""
    safe = dict(row)
    for column in TEXT_COLUMNS:
        value = safe.get(column)
        if isinstance(value, str):
            value = terminal_safe(value) if terminal else printable_text(value)
            safe[column] = spreadsheet_safe(value) if csv_cells else value
    return safe


def format_for(path: str | None, explicit: str | None = None) -> str:
    """The output format: ``explicit`` if given, else from the suffix, else CSV."""
    if explicit:
        if explicit not in FORMATS:
            raise CodtError(f"unknown output format {explicit!r}; choose from {', '.join(FORMATS)}")
        return explicit
    if path:
        return _SUFFIX_FORMAT.get(Path(path).suffix.lower(), "csv")
    return "csv"


NAME_COLUMNS = ("nearest_source_class", "eval_cluster_name")


def columns(name_columns: Sequence[str] = ()) -> list[str]:
    """The output's columns: ``name_columns`` (of :data:`NAME_COLUMNS`) after the cluster."""
    base = ["source", "member", "name", "segment", "cluster"]
    return base + [c for c in NAME_COLUMNS if c in name_columns] + ["confidence"]


def cluster_name_columns(manifest, eval_names: bool = False) -> dict[str, tuple[str, ...]]:
    """The per-cluster name columns a model's rows get: ``nearest_source_class`` (label-free)
    when the manifest has one, and ``eval_cluster_name`` (from the evaluation labels at export; an
    oracle reading, not what the model knows) only with ``eval_names``."""
    found = {"nearest_source_class": manifest.nearest_source_classes,
             "eval_cluster_name": manifest.eval_cluster_names if eval_names else None}
    return {column: tuple(names) for column, names in found.items() if names}


# --------------------------------------------------------------------------- format writers


class CsvRowWriter:
    """CSV rows; an embedding list becomes ``embedding_0..embedding_{D-1}`` columns. ``terminal``:
    the rows go to a terminal, so text cells are :func:`terminal_safe` too."""

    def __init__(self, handle: IO[str], fieldnames: list[str], embedding_dim: int | None,
                 terminal: bool = False) -> None:
        self.embedding_dim, self.terminal = embedding_dim, terminal
        emb = [f"embedding_{i}" for i in range(embedding_dim)] if embedding_dim else []
        self.writer = csv.writer(handle, lineterminator="\n")
        self.fieldnames = fieldnames
        self.writer.writerow(fieldnames + emb)

    def write(self, row: Row) -> None:
        row = output_row(row, csv_cells=True, terminal=self.terminal)
        values = ["" if row.get(f) is None else row[f] for f in self.fieldnames]
        if self.embedding_dim:
            values += [f"{x:.6g}" for x in row["embedding"]]
        self.writer.writerow(values)

    def close(self) -> None:
        pass


class JsonlRowWriter:
    def __init__(self, handle: IO[str], fieldnames: list[str], embedding_dim: int | None) -> None:
        self.handle = handle
        self.fieldnames = fieldnames + (["embedding"] if embedding_dim else [])

    def write(self, row: Row) -> None:
        row = output_row(row)
        self.handle.write(json.dumps({f: row.get(f) for f in self.fieldnames}) + "\n")

    def close(self) -> None:
        pass


def require_pyarrow() -> None:
    """Fail before a long run, not after it, when Parquet output cannot be written."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise CodtError("Parquet output needs pyarrow: pip install 'codt[parquet]'") from None


class ParquetRowWriter:
    """Parquet via pyarrow (imported here only), written in row groups of ``group_rows``."""

    def __init__(self, path: Path, fieldnames: list[str], embedding_dim: int | None,
                 group_rows: int = 8192) -> None:
        require_pyarrow()
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        types = {"source": pa.string(), "member": pa.string(), "name": pa.string(),
                 "segment": pa.string(), "cluster": pa.int64(), "cluster_name": pa.string(),
                 "confidence": pa.float32()}
        fields = [pa.field(f, types[f]) for f in fieldnames]
        if embedding_dim:
            fields.append(pa.field("embedding", pa.list_(pa.float32(), embedding_dim)))
        self.schema = pa.schema(fields)
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.group_rows = group_rows
        self.buffer: list[Row] = []

    def write(self, row: Row) -> None:
        self.buffer.append(output_row(row))
        if len(self.buffer) >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            table = self.pa.Table.from_pylist(self.buffer, schema=self.schema)
            self.writer.write_table(table)
            self.buffer = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write into: renamed over ``path`` (mode 0644) when the
    block ends without error, deleted otherwise, so ``path`` is never a torn file."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be read by others
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, fsynced before the rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_rows(rows: Iterable[Row], path: str | os.PathLike, fmt: str, fieldnames: list[str],
               embedding_dim: int | None) -> int:
    """Write ``rows`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            return _write_parquet(rows, tmp, fieldnames, embedding_dim)
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            cls = CsvRowWriter if fmt == "csv" else JsonlRowWriter
            count = _write_all(cls(handle, fieldnames, embedding_dim), rows)
            handle.flush()
            os.fsync(handle.fileno())
        return count


def _write_all(writer: Any, rows: Iterable[Row]) -> int:
    count = 0
    for row in rows:
        writer.write(row)
        count += 1
    return count


def _write_parquet(rows: Iterable[Row], path: Path, fieldnames: list[str],
                   embedding_dim: int | None) -> int:
    writer = ParquetRowWriter(path, fieldnames, embedding_dim)
    count = _write_all(writer, rows)
    writer.close()
    return count


# --------------------------------------------------------------------------- sinks


class StreamSink:
    """Rows straight to a text stream (stdout), in order; no journal, no resume."""

    def __init__(self, fmt: str, fieldnames: list[str], embedding_dim: int | None,
                 observer: Callable[[Row], None], stream: IO[str] | None = None,
                 finisher: Finisher | None = None) -> None:
        if fmt == "parquet":
            raise CodtError("Parquet cannot be written to standard output; pass -o FILE.parquet")
        self.stream = stream or sys.stdout
        self.writer: CsvRowWriter | JsonlRowWriter
        if fmt == "jsonl":  # JSON escapes control characters itself
            self.writer = JsonlRowWriter(self.stream, fieldnames, embedding_dim)
        else:
            self.writer = CsvRowWriter(self.stream, fieldnames, embedding_dim,
                                       terminal=self.stream.isatty())
        self.observer = observer
        self.done_keys: set[str] = set()  # never resumes
        self.finisher = finisher
        self.held: list[Row] = []  # with a finisher, every row waits for the end of the run

    def write_file(self, key: str, rows: list[Row]) -> None:
        if self.finisher is not None:
            self.held.extend(rows)
            return
        self._write(rows)

    def _write(self, rows: list[Row]) -> None:
        for row in rows:
            row.pop(FRAMES_FIELD, None)
            self.writer.write(row)
            self.observer(row)
        self.stream.flush()

    def close(self) -> None:
        if self.held:
            texts = [row.pop(FRAMES_FIELD, None) for row in self.held]
            overrides = batch_overrides(texts, [int(row["cluster"]) for row in self.held],
                                        self.finisher)
            self._write(self.held if overrides is None else
                        [{**row, **change} for row, change in zip(self.held, overrides)])
            self.held = []
        self.stream.flush()


class JournalSink:
    """Rows into ``<output>.part`` (resumable), converted into ``output`` on :meth:`close`."""

    def __init__(self, output: str | os.PathLike, fmt: str, fieldnames: list[str],
                 embedding_dim: int | None, header: dict[str, Any],
                 observer: Callable[[Row], None], resume: bool = False,
                 fsync_every_s: float = 5.0, finisher: Finisher | None = None) -> None:
        self.output = Path(output)
        self.journal = self.output.with_name(self.output.name + JOURNAL_SUFFIX)
        self.fmt, self.fieldnames, self.embedding_dim = fmt, fieldnames, embedding_dim
        self.header = {"type": "header", **header}
        self.observer = observer
        self.fsync_every_s = fsync_every_s
        self.finisher = finisher
        self.done_keys: set[str] = set()  # written by the interrupted run being resumed
        if fmt == "parquet":
            require_pyarrow()
        self.output.parent.mkdir(parents=True, exist_ok=True)
        if self.journal.exists() and not resume:
            raise CodtError(f"{self.journal} exists: an earlier run was interrupted; pass --resume "
                            f"to continue it, or delete the file to start over")
        remove_stale_temporaries(self.output)
        if resume and self.journal.exists():
            self.done_keys = self._compact()
            self.handle = open(self.journal, "a", encoding="utf-8")
        else:
            self.handle = open(self.journal, "w", encoding="utf-8")
            self._write_line(self.header)
        self.last_sync = time.monotonic()

    def _write_line(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record) + "\n")

    def _compact(self) -> set[str]:
        """Rewrite the journal keeping only complete files; check it matches this run.

        A file is complete when its ``done`` line is there and the rows before it add up to the
        count that line records; a file that lost a line to corruption is read again. Streaming
        passes (counts, then the kept records), so memory stays flat.
        """
        first = next(_iter_journal(self.journal), None)
        if first is None or first.get("type") != "header":
            raise CodtError(f"{self.journal}: not a codt-cluster journal (no header line)")
        old = {k: v for k, v in first.items() if k != "type"}
        new = {k: v for k, v in self.header.items() if k != "type"}
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise CodtError(f"{self.journal}: cannot resume: the interrupted run used different "
                            f"settings ({', '.join(diff)}); delete the file to start over")
        done = self._complete_keys()
        tmp = self.journal.with_name(self.journal.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(self.header) + "\n")
            for record in _iter_journal(self.journal, quiet=True):
                if record.get("type") != "header" and record.get("key") in done:
                    handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.journal)
        log.info("resuming: %d files already done in %s", len(done), self.journal)
        return done

    def _complete_keys(self) -> set[str]:
        """The keys whose ``done`` line matches the number of rows written before it."""
        rows: Counter[str] = Counter()
        done: set[str] = set()
        unreadable = [0]
        for record in _iter_journal(self.journal, unreadable=unreadable):
            key = record.get("key")
            if key is None:  # the header (_iter_journal lets only string keys through)
                continue
            if record.get("type") == "row":
                rows[key] += 1
            elif record.get("type") == "done" and record.get("rows") == rows[key]:
                done.add(key)
        if unreadable[0]:
            log.warning("%s: %d unreadable line(s); the files they belonged to are read again",
                        self.journal, unreadable[0])
        return done

    def write_file(self, key: str, rows: list[Row]) -> None:
        for row in rows:
            self._write_line({"type": "row", "key": key, **row})
        self._write_line({"type": "done", "key": key, "rows": len(rows)})
        self.handle.flush()
        if time.monotonic() - self.last_sync > self.fsync_every_s:
            os.fsync(self.handle.fileno())
            self.last_sync = time.monotonic()

    def abort(self) -> None:
        """Leave the journal (flushed) for ``--resume``; write no output."""
        if self.handle.closed:  # interrupted during close(): the journal is already complete
            return
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def close(self) -> None:
        """Convert the journal into the output file atomically, then delete the journal."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        write_rows(self._observed_rows(), self.output, self.fmt, self.fieldnames,
                   self.embedding_dim)
        self.journal.unlink()

    def _overrides(self) -> list[Row] | None:
        """The finisher's per-row overrides for the whole journal (:func:`batch_overrides`), read
        in one pass."""
        if self.finisher is None:
            return None
        texts: list[str | None] = []
        clusters: list[int] = []
        for record in _iter_journal(self.journal, quiet=True):
            if record.get("type") == "row":
                text = record.get(FRAMES_FIELD)
                texts.append(text if isinstance(text, str) else None)
                clusters.append(int(record.get("cluster", 0)))
        return batch_overrides(texts, clusters, self.finisher)

    def _observed_rows(self) -> Iterator[Row]:
        overrides = self._overrides()
        index = 0
        for record in _iter_journal(self.journal):
            if record.get("type") == "row":
                row = {k: v for k, v in record.items() if k not in ("type", "key", FRAMES_FIELD)}
                if overrides is not None:
                    row.update(overrides[index])
                index += 1
                self.observer(row)
                yield row


def _iter_journal(path: Path, *, unreadable: list[int] | None = None,
                  quiet: bool = False) -> Iterator[dict[str, Any]]:
    """Journal records (JSON objects whose ``key``, if any, is a string); a torn last line (the
    run died mid-write) is ignored, other unreadable lines are counted in ``unreadable``."""
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            if not line.endswith("\n"):
                if not quiet:
                    log.warning("%s: ignoring a torn last line", path)
                return
            try:
                record = parse_data(line)
            except DataError:  # garbled, or beyond the parser's limits
                record = None
            if isinstance(record, dict) and isinstance(record.get("key", ""), str):
                yield record
            elif unreadable is not None:
                unreadable[0] += 1


def remove_stale_temporaries(output: Path) -> None:
    """Delete the temporary files a killed run left beside ``output`` (``.<name>.*.tmp`` from
    :func:`write_rows`, ``<name>.part.tmp`` from a resume)."""
    stale = list(output.parent.glob(f".{glob.escape(output.name)}.*.tmp"))
    stale.append(output.with_name(output.name + JOURNAL_SUFFIX + ".tmp"))
    for path in stale:
        if path.is_file() and not path.is_symlink():
            log.info("removing %s, left by an earlier run that was killed", path)
            with contextlib.suppress(OSError):
                path.unlink()


def check_output(output: str | os.PathLike, inputs: Iterable[str],
                 others: Iterable[tuple[str, str | os.PathLike]] = (), *, flag: str = "-o") -> None:
    """Refuse, before any work, an output that cannot or must not be written (CodtError): see the
    module docstring. ``others`` are the other files the run reads or writes, as (what it is,
    path); ``flag`` is the option that named ``output``, for the message."""
    path = Path(output)
    try:
        _check_output_kind(path)
        _check_output_folder(path.parent)
    except OSError as exc:  # e.g. a name too long
        raise CodtError(f"{path}: cannot write the output here: {exc.strerror or exc}") from None
    target = canonical_path(str(path))
    if _is_input(target, inputs, path.suffix.lower()):
        raise CodtError(f"{path}: is one of the inputs; refusing to overwrite it (choose "
                        f"another {flag})")
    for what, other in others:
        if canonical_path(str(other)) == target:
            raise CodtError(f"{path}: is {what}; refusing to overwrite it (choose another {flag})")


def _is_input(target: str, inputs: Iterable[str], suffix: str) -> bool:
    """Whether ``target`` is an input: named itself or matched by a glob pattern, or inside an
    input folder without an output suffix (so ``data/clusters.csv`` beside the poses it clusters
    can still be rewritten)."""
    for arg in map(canonical_path, input_paths(inputs)):
        if target == arg:
            return True
        if suffix not in _SUFFIX_FORMAT and target.startswith(arg.rstrip(os.sep) + os.sep):
            return True
    return False


def _check_output_kind(path: Path) -> None:
    if path.is_symlink():
        raise CodtError(f"{path}: is a symbolic link; refusing to replace it with a regular file "
                        f"(name its target, or another path)")
    if path.is_dir():
        raise CodtError(f"{path}: is a folder; -o needs a file name")
    if path.exists() and not path.is_file():
        raise CodtError(f"{path}: is not a regular file (a device, FIFO or socket); refusing to "
                        f"replace it")


def _check_output_folder(folder: Path) -> None:
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise CodtError(f"{parent}: is not a folder, so the output cannot be written "
                                f"below it")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CodtError(f"{folder}: cannot write the output in this folder: "
                        f"{exc.strerror or exc}") from None


def format_table(rows: list[Row], fieldnames: list[str]) -> str:
    """A plain fixed-width text table (for ``--show``)."""
    shown = [{f: _cell(r.get(f)) for f in fieldnames} for r in rows]
    widths = {f: max([len(f)] + [len(r[f]) for r in shown]) for f in fieldnames}
    out = io.StringIO()
    out.write("  ".join(f.ljust(widths[f]) for f in fieldnames).rstrip() + "\n")
    for r in shown:
        out.write("  ".join(r[f].ljust(widths[f]) for f in fieldnames).rstrip() + "\n")
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return terminal_safe(str(value))
