"""Where ``codt-cluster`` inputs come from: files, folders, glob patterns and streamed archives.

:func:`iter_inputs` turns command-line arguments into a stream of :class:`InputItem` in a stable
order. Archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) are read member
by member into memory, never extracted to disk. Member names are only labels, but unsafe ones
(absolute, ``..``) are still refused, as are links and special files. :class:`ArchiveLimits` caps each
member's size, the archive's total uncompressed size and the compression ratio, so a decompression
bomb stops early with a clear error instead of filling memory.

An input that cannot even be opened becomes an item with ``error`` set (reported as a failure); an
item with ``skip`` set is something deliberately not read (a nested archive).
"""

from __future__ import annotations

import glob
import logging
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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

    @property
    def key(self) -> str:
        """Identifies this input in outputs and in resume journals."""
        return f"{self.source}::{self.member}" if self.member else self.source

    @property
    def name(self) -> str:
        """The file name readers see (decides the format)."""
        return self.member if self.member else (self.path.name if self.path else self.source)


class ArchiveLimitError(Exception):
    """An archive broke one of the :class:`ArchiveLimits` (internal; reported as an item error)."""


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


def _walk(folder: Path) -> Iterator[Path]:
    """Files below ``folder`` in sorted order, hidden ones left out; a frame folder as itself."""
    if is_frame_folder(folder):
        yield folder
        return
    for root, dirs, files in os.walk(folder):
        frame_dirs = [d for d in dirs if is_frame_folder(Path(root) / d)]
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in frame_dirs)
        entries = [Path(root) / d for d in frame_dirs]
        entries += [Path(root) / n for n in files if not n.startswith(".")]
        yield from sorted(entries)


def iter_inputs(args: list[str], limits: ArchiveLimits = ArchiveLimits()) -> Iterator[InputItem]:
    """Expand command-line inputs into items, in argument order, each folder walked sorted."""
    for arg in args:
        path = Path(arg)
        if path.exists():
            yield from _path_items(path, explicit=True, limits=limits)
        elif _has_glob(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                yield InputItem(source=arg, explicit=True, error="no files match this pattern")
            for match in matches:
                yield from _path_items(Path(match), explicit=False, limits=limits)
        else:
            yield InputItem(source=arg, explicit=True, error="no such file or directory")


def _path_items(path: Path, *, explicit: bool, limits: ArchiveLimits) -> Iterator[InputItem]:
    """A folder's files (found by a walk, so never explicit), or one file."""
    if path.is_dir():
        for file in _walk(path):
            yield from _file_items(file, explicit=False, limits=limits)
    elif path.is_file():
        yield from _file_items(path, explicit=explicit, limits=limits)
    elif explicit:
        yield InputItem(source=str(path), explicit=True, error="not a regular file or folder")


def _file_items(path: Path, *, explicit: bool, limits: ArchiveLimits) -> Iterator[InputItem]:
    if path.is_dir():  # an OpenPose frame folder: the reader takes the folder
        yield InputItem(source=str(path), path=path, explicit=True)
    elif is_archive(path):
        yield from iter_archive(path, limits)
    else:
        yield InputItem(source=str(path), path=path, explicit=explicit)


def iter_archive(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> Iterator[InputItem]:
    """Stream an archive's regular members as in-memory items (see :class:`ArchiveLimits`)."""
    try:
        if str(path).lower().endswith(".zip"):
            yield from _iter_zip(path, limits)
        else:
            yield from _iter_tar(path, limits)
    except ArchiveLimitError as exc:
        yield InputItem(source=str(path), explicit=True, error=f"archive refused: {exc}")
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        yield InputItem(source=str(path), explicit=True,
                        error=f"cannot read archive: {type(exc).__name__}: {exc}")


def _member_problem(name: str) -> tuple[str | None, str | None, str | None]:
    """(safe name, error, skip) for a member name."""
    safe = safe_member_name(name)
    if safe is None:
        return None, "unsafe member path (absolute or containing '..'); not read", None
    if is_archive(safe):
        return safe, None, "nested archive; not opened (extract it or pass it directly)"
    return safe, None, None


def _read_limited(stream, declared: int, limits: ArchiveLimits, total: list[int],
                  ratio: Callable[[int], tuple[float, bool]]) -> bytes:
    """Read one member, enforcing the per-member, total and compression-ratio limits.

    ``ratio(member_bytes_so_far)`` returns (current ratio, whether a breach stops the whole
    archive): per member for zip, over the whole compressed stream for tar.
    """
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
        current, whole_archive = ratio(size)
        if current > limits.max_ratio:
            message = f"compression ratio {current:.0f} above {limits.max_ratio:g} " \
                      f"(possible decompression bomb)"
            raise ArchiveLimitError(message) if whole_archive else _MemberTooBig(message)
        parts.append(block)
    return b"".join(parts)


class _MemberTooBig(Exception):
    """One member broke a per-member limit; the archive's other members are still read."""


def _iter_zip(path: Path, limits: ArchiveLimits) -> Iterator[InputItem]:
    total = [0]
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            safe, error, skip = _member_problem(info.filename)
            is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
            if is_link and error is None:
                error = "symbolic link member; not followed"
            if error or skip:
                yield InputItem(source=str(path), member=safe or info.filename, error=error,
                                skip=skip)
                continue
            try:
                with archive.open(info) as stream:
                    data = _read_limited(stream, info.file_size, limits, total,
                                         _zip_ratio(info.compress_size, limits))
            except _MemberTooBig as exc:
                yield InputItem(source=str(path), member=safe, error=f"refused: {exc}")
                continue
            yield InputItem(source=str(path), member=safe, data=data)


class _CountingReader:
    """A read-only file wrapper that counts the compressed bytes a tar stream consumes."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        block = self.handle.read(size)
        self.count += len(block)
        return block


def _iter_tar(path: Path, limits: ArchiveLimits) -> Iterator[InputItem]:
    total = [0]
    with open(path, "rb") as raw:
        counter = _CountingReader(raw)
        with tarfile.open(fileobj=counter, mode="r|*") as archive:  # streaming: no seeking back
            for member in archive:
                if member.isdir():
                    continue
                safe, error, skip = _member_problem(member.name)
                if error is None and not member.isfile():
                    error = "link or special file member; not read"
                if error or skip:
                    yield InputItem(source=str(path), member=safe or member.name, error=error,
                                    skip=skip)
                    continue
                if total[0] + member.size > limits.max_total_bytes:
                    raise ArchiveLimitError(f"total uncompressed size would exceed "
                                            f"{limits.max_total_bytes} bytes at {safe!r}")
                stream = archive.extractfile(member)
                try:
                    data = _read_limited(stream, member.size, limits, total,
                                         _stream_ratio(total, counter, limits))
                except _MemberTooBig as exc:
                    yield InputItem(source=str(path), member=safe, error=f"refused: {exc}")
                    continue
                yield InputItem(source=str(path), member=safe, data=data)


def _zip_ratio(compressed: int, limits: ArchiveLimits) -> Callable[[int], tuple[float, bool]]:
    def ratio(size: int) -> tuple[float, bool]:
        if size <= limits.ratio_floor_bytes:
            return 0.0, False
        return size / max(compressed, 1), False
    return ratio


def _stream_ratio(total: list[int], counter: _CountingReader,
                  limits: ArchiveLimits) -> Callable[[int], tuple[float, bool]]:
    def ratio(size: int) -> tuple[float, bool]:
        if total[0] <= limits.ratio_floor_bytes:
            return 0.0, True
        return total[0] / max(counter.count, 1), True
    return ratio
