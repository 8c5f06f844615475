"""Where ``codt-cluster`` inputs come from: files, folders, glob patterns and streamed archives.

:func:`iter_inputs` turns command-line arguments into a stream of :class:`InputItem` in a stable
order. Archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) are read member
by member into memory, never extracted to disk. Member names are only labels, but unsafe ones
(absolute, ``..``) are still refused, as are links and special files. :class:`ArchiveLimits` caps each
member's size, the archive's total uncompressed size and the compression ratio, so a decompression
bomb stops early with a clear error instead of filling memory.

An input that cannot even be opened becomes an item with ``error`` set (reported as a failure); an
item with ``skip`` set is something deliberately not read (a nested archive, a FIFO or device found
in a folder). Nothing here raises on a hostile input: an unreadable folder, a path too long for the
system, a corrupt, encrypted or unsupported archive member, or a second member of the same name is
an error item, and the rest of the inputs are still read. Only regular files are opened, so a FIFO
cannot hang a run. Every byte a compressed tar stream inflates counts against the limits, including
the bytes of members that are skipped. Items are keyed by the canonical path (:func:`canonical_path`),
so one file spelled two ways is one input.
"""

from __future__ import annotations

import bz2
import functools
import glob
import gzip
import logging
import lzma
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from codt_deploy.errors import ARCHIVE_READ_ERRORS

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CHUNK = 1 << 20
FRAME_FILE_SUFFIX = "_keypoints.json"  # OpenPose --write_json, one file per frame


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits that keep a hostile archive from exhausting memory or CPU.

    ``max_ratio`` (uncompressed / compressed) is judged once more than ``ratio_floor_bytes`` have
    come out, per member for zip and over the whole stream for compressed tar files.
    """

    max_member_bytes: int = 256 << 20
    max_total_bytes: int = 4 << 30
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 1 << 20


@dataclass(frozen=True)
class InputItem:
    """One thing to read: a file on disk (``path``) or an archive member held in memory (``data``)."""

    source: str  # the file or archive as found on disk
    member: str = ""  # the archive member name, "" for plain files
    path: Path | None = None
    data: bytes | None = None
    explicit: bool = False  # named directly on the command line (vs. found by a walk or a glob)
    error: str | None = None
    skip: str | None = None
    origin: str = ""  # the command-line argument it came from (see iter_inputs)

    @property
    def key(self) -> str:
        """Identifies this input in resume journals and duplicate checks (canonical path)."""
        source = canonical_path(self.source)
        return f"{source}::{self.member}" if self.member else source

    @property
    def label(self) -> str:
        """This input as the user spelled it, for messages."""
        return f"{self.source}::{self.member}" if self.member else self.source

    @property
    def name(self) -> str:
        """The file name readers see (decides the format)."""
        return self.member if self.member else (self.path.name if self.path else self.source)


class ArchiveLimitError(Exception):
    """An archive broke one of the :class:`ArchiveLimits` (internal; reported as an item error)."""


def canonical_path(source: str) -> str:
    """The absolute, symlink-free spelling of an input path, so that ``nw_ucla``, ``./nw_ucla/``
    and its absolute path key the same files (in ``--resume`` journals, for instance)."""
    return _canonical_in(os.getcwd(), source)


@functools.lru_cache(maxsize=4096)
def _canonical_in(folder: str, source: str) -> str:
    """``source`` made canonical relative to the working folder ``folder`` (cached per both)."""
    path = os.path.join(folder, source)
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return os.path.abspath(path)


def is_archive(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def safe_member_name(name: str) -> str | None:
    """The member name with ``/`` separators, or None if it is absolute or climbs out with ``..``."""
    normal = name.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        return None
    if any(part == ".." for part in PurePosixPath(normal).parts):
        return None
    return normal


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def is_frame_folder(folder: Path) -> bool:
    """A folder of OpenPose per-frame files (``*_keypoints.json``) is one sequence, read whole."""
    return any(folder.glob(f"*{FRAME_FILE_SUFFIX}"))


def _walk(folder: Path) -> Iterator[Path | InputItem]:
    """Files below ``folder`` in sorted depth-first order, hidden ones left out; a frame folder as
    itself; an unreadable folder as an error item. Iterative (any depth), links to folders are
    not followed (only a frame folder behind one is read)."""
    if is_frame_folder(folder):
        yield folder
        return
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as scan:
                entries = [e for e in scan if not e.name.startswith(".")]
        except OSError as exc:
            yield InputItem(source=str(current), explicit=True,
                            error=f"cannot read this folder: {exc.strerror or exc}")
            continue
        found, subfolders = [], []
        for entry in entries:
            path = Path(current) / entry.name
            if _is_folder(entry) and is_frame_folder(path):
                found.append(path)
            elif _is_folder(entry):
                if not entry.is_symlink():
                    subfolders.append(path)
            else:
                found.append(path)
        yield from sorted(found)
        stack.extend(sorted(subfolders, reverse=True))  # popped in sorted order


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def iter_inputs(args: list[str], limits: ArchiveLimits = ArchiveLimits()) -> Iterator[InputItem]:
    """Expand command-line inputs into items, in argument order, each folder walked sorted; each
    item's ``origin`` is its argument. An empty folder or archive gives no item."""
    for arg in args:
        for item in _argument_items(arg, limits):
            yield replace(item, origin=arg)


def _argument_items(arg: str, limits: ArchiveLimits) -> Iterator[InputItem]:
    """The items of one command-line argument: a path, or the matches of a glob pattern."""
    try:
        exists = Path(arg).exists()
    except (OSError, ValueError) as exc:  # a name too long, an embedded NUL
        yield InputItem(source=arg, explicit=True, error=f"cannot use this path: {_why(exc)}")
        return
    if exists:
        yield from _path_items(Path(arg), explicit=True, limits=limits)
    elif _has_glob(arg):
        matches = pattern_matches(arg)
        if not matches:
            yield InputItem(source=arg, explicit=True, error="no files match this pattern")
        for match in matches:
            yield from _path_items(Path(match), explicit=False, limits=limits)
    else:
        yield InputItem(source=arg, explicit=True, error="no such file or directory")


def pattern_matches(pattern: str) -> list[str]:
    """The paths a glob pattern (``**`` recursive) matches, sorted; none for a bad pattern."""
    try:
        return sorted(glob.glob(pattern, recursive=True))
    except (OSError, ValueError):  # an embedded NUL, a name too long
        return []


def input_paths(args: Iterable[str]) -> Iterator[str]:
    """Every path the command-line inputs name before any folder walk: each argument, and the
    matches of each one that is a glob pattern (as :func:`iter_inputs` expands it)."""
    for arg in args:
        yield arg
        if _has_glob(arg):
            yield from pattern_matches(arg)


def _why(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _path_items(path: Path, *, explicit: bool, limits: ArchiveLimits) -> Iterator[InputItem]:
    """A folder's files (found by a walk, so never explicit), or one file."""
    if path.is_dir():
        for found in _walk(path):
            if isinstance(found, InputItem):
                yield found
            else:
                yield from _file_items(found, explicit=False, limits=limits)
    else:
        yield from _file_items(path, explicit=explicit, limits=limits)


def _file_items(path: Path, *, explicit: bool, limits: ArchiveLimits) -> Iterator[InputItem]:
    """One file's items; anything but a regular file (a FIFO, socket or device, or a link to
    one) is never opened: an error when named, a skip with the reason when found by a walk."""
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError as exc:
        yield InputItem(source=str(path), explicit=True, error=f"cannot use this path: {_why(exc)}")
        return
    if is_dir:  # an OpenPose frame folder: the reader takes the folder
        yield InputItem(source=str(path), path=path, explicit=True)
    elif not is_file:
        reason = "not a regular file (a FIFO, socket or device); not read"
        yield InputItem(source=str(path), explicit=True, error=reason if explicit else None,
                        skip=None if explicit else reason)
    elif is_archive(path):
        yield from iter_archive(path, limits)
    else:
        yield InputItem(source=str(path), path=path, explicit=explicit)


def iter_archive(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> Iterator[InputItem]:
    """Stream an archive's regular members as in-memory items (see :class:`ArchiveLimits`).

    Never raises on the archive's content: a bad member is that member's error item; a stream
    that cannot go on (a corrupt tar stream, a broken limit) ends with one error item for the
    archive, after the members already read."""
    try:
        if str(path).lower().endswith(".zip"):
            yield from _iter_zip(path, limits)
        else:
            yield from _iter_tar(path, limits)
    except ArchiveLimitError as exc:
        yield InputItem(source=str(path), explicit=True, error=f"archive refused: {exc}")
    except Exception as exc:  # noqa: BLE001 - the archive layer's boundary (ARCHIVE_READ_ERRORS+)
        yield InputItem(source=str(path), explicit=True,
                        error=f"cannot read archive: {type(exc).__name__}: {exc}")


def _member_problem(name: str, seen: set[str]) -> tuple[str | None, str | None, str | None]:
    """(safe name, error, skip) for a member name; ``seen`` collects the names met so far."""
    safe = safe_member_name(name)
    if safe is None:
        return None, "unsafe member path (absolute or containing '..'); not read", None
    if safe in seen:
        return safe, ("a second member of this name in the archive; not read (only the first "
                      "one is)"), None
    seen.add(safe)
    if is_archive(safe):
        return safe, None, "nested archive; not opened (extract it or pass it directly)"
    return safe, None, None


def _read_limited(stream, declared: int, limits: ArchiveLimits, total: list[int],
                  ratio: Callable[[int], float]) -> bytes:
    """Read one member, enforcing the per-member and total sizes and ``ratio(bytes so far)``
    (the member's compression ratio; 0 where the stream reader judges it)."""
    if declared > limits.max_member_bytes:
        raise _MemberTooBig(f"member is {declared} bytes; the limit is {limits.max_member_bytes}")
    parts, size = [], 0
    while block := stream.read(_CHUNK):
        size += len(block)
        total[0] += len(block)
        if size > limits.max_member_bytes:
            raise _MemberTooBig(f"member exceeds the {limits.max_member_bytes}-byte limit")
        if total[0] > limits.max_total_bytes:
            raise ArchiveLimitError(f"total uncompressed size exceeds {limits.max_total_bytes} "
                                    f"bytes")
        current = ratio(size)
        if current > limits.max_ratio:
            raise _MemberTooBig(f"compression ratio {current:.0f} above {limits.max_ratio:g} "
                                f"(possible decompression bomb)")
        parts.append(block)
    return b"".join(parts)


class _MemberTooBig(Exception):
    """One member broke a per-member limit; the archive's other members are still read."""


def _iter_zip(path: Path, limits: ArchiveLimits) -> Iterator[InputItem]:
    total = [0]
    seen: set[str] = set()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            safe, error, skip = _member_problem(info.filename, seen)
            is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
            if is_link and error is None:
                error = "symbolic link member; not followed"
            if error or skip:
                yield InputItem(source=str(path), member=safe or info.filename, error=error,
                                skip=skip)
                continue
            assert safe is not None  # _member_problem gives an error for every unsafe name
            yield _zip_member(archive, info, safe, path, limits, total)


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, safe: str, path: Path,
                limits: ArchiveLimits, total: list[int]) -> InputItem:
    """One zip member read into memory, or its error (encrypted, unsupported method, corrupt)."""
    try:
        with archive.open(info) as stream:
            data = _read_limited(stream, info.file_size, limits, total,
                                 _zip_ratio(info.compress_size, limits))
    except _MemberTooBig as exc:
        return InputItem(source=str(path), member=safe, error=f"refused: {exc}")
    except ARCHIVE_READ_ERRORS as exc:
        return InputItem(source=str(path), member=safe,
                         error=f"cannot read this member: {type(exc).__name__}: {exc}")
    return InputItem(source=str(path), member=safe, data=data)


class _CountingReader:
    """A read-only file wrapper that counts the bytes read through it; with ``limits`` it is the
    inflated side of a compressed tar and refuses to go past the total size or the compression
    ratio against ``compressed`` (the counter of the raw file)."""

    def __init__(self, handle, limits: ArchiveLimits | None = None,
                 compressed: _CountingReader | None = None) -> None:
        self.handle, self.limits, self.compressed = handle, limits, compressed
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        block = self.handle.read(size)
        self.count += len(block)
        if self.limits is not None:
            self._check()
        return block

    def _check(self) -> None:
        limits, compressed = self.limits, self.compressed
        assert limits is not None and compressed is not None  # limits come with the raw counter
        if self.count > limits.max_total_bytes:
            raise ArchiveLimitError(f"the stream inflates past {limits.max_total_bytes} bytes "
                                    f"(skipped members included)")
        ratio = self.count / max(compressed.count, 1)
        if self.count > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise ArchiveLimitError(f"compression ratio {ratio:.0f} above {limits.max_ratio:g} "
                                    f"(possible decompression bomb)")


_DECOMPRESSORS = ((b"\x1f\x8b", gzip.GzipFile), (b"BZh", bz2.BZ2File),
                  (b"\xfd7zXZ\x00", lzma.LZMAFile))


def _inflated(raw) -> object:
    """The decompressed side of a (possibly) compressed tar file, chosen by its magic bytes."""
    head = raw.handle.peek(8)[:8] if hasattr(raw.handle, "peek") else b""
    for magic, opener in _DECOMPRESSORS:
        if head.startswith(magic):
            return opener(fileobj=raw, mode="rb") if opener is gzip.GzipFile else opener(raw)
    return raw


def _iter_tar(path: Path, limits: ArchiveLimits) -> Iterator[InputItem]:
    total = [0]
    seen: set[str] = set()
    with open(path, "rb") as handle:
        raw = _CountingReader(handle)
        inflated = _CountingReader(_inflated(raw), limits, raw)
        # streaming ("r|"): no seeking back. typeshed wants a seekable, writable fileobj even so
        with tarfile.open(fileobj=inflated, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                if member.isdir():
                    continue
                safe, error, skip = _member_problem(member.name, seen)
                if error is None and not member.isfile():
                    error = "link or special file member; not read"
                if error or skip:
                    yield InputItem(source=str(path), member=safe or member.name, error=error,
                                    skip=skip)
                    continue
                assert safe is not None  # _member_problem gives an error for every unsafe name
                if total[0] + member.size > limits.max_total_bytes:
                    raise ArchiveLimitError(f"total uncompressed size would exceed "
                                            f"{limits.max_total_bytes} bytes at {safe!r}")
                try:
                    data = _read_limited(archive.extractfile(member), member.size, limits, total,
                                         lambda size: 0.0)  # the stream's ratio: see above
                except _MemberTooBig as exc:
                    yield InputItem(source=str(path), member=safe, error=f"refused: {exc}")
                    continue
                yield InputItem(source=str(path), member=safe, data=data)


def _zip_ratio(compressed: int, limits: ArchiveLimits) -> Callable[[int], float]:
    def ratio(size: int) -> float:
        return 0.0 if size <= limits.ratio_floor_bytes else size / max(compressed, 1)
    return ratio
