"""Turning uploaded files into pose sequences, safely: limits, archives, and no pickle ever.

Uploads are untrusted. Pickle-based files (``.pkl``, ``.pickle``, ``.joblib``) can run code when
loaded, so they are refused by name before anything reads them (docs/FORMATS.md §1,
"Pickle policy"); every other file goes through :func:`codt_deploy.readers.read_bytes`, which
never unpickles. Zip and tar archives are streamed by :func:`codt_deploy.sources.iter_archive`
under the upload's size limits (and its compression-ratio check), so a decompression bomb stops
early. A bad file or member, whatever
goes wrong with it (an encrypted or corrupt member, a second member of the same name, an unsafe
name, a reader failure), becomes a :class:`FileProblem`; the rest of the batch carries on, exactly
as in ``codt-cluster``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath

from codt_deploy.errors import CodtError, PoseFormatError
from codt_deploy.readers.openpose import FRAME_FILE, read_frames
from codt_deploy.sequence import PoseSequence
from codt_deploy.sources import ArchiveLimits, is_archive, iter_archive

log = logging.getLogger(__name__)

MiB = 1 << 20
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
PICKLE_REFUSAL = ("refused: pickle-based files can run code when loaded, so the app never opens "
                  "them; convert the file to .npz (see the README) and upload that")

Reader = Callable[[str, bytes], list[PoseSequence]]  # (file name, content) -> sequences
FramesReader = Callable[[list[tuple[str, bytes]], str], list[PoseSequence]]  # (files, source)


class UploadLimitError(CodtError, ValueError):
    """A whole upload is over the app's count or size limits; the message says which and by how much."""


@dataclass(frozen=True)
class UploadLimits:
    """Per-batch limits. Files inside archives count as files."""

    max_files: int = 500
    max_file_bytes: int = 50 * MiB
    max_total_bytes: int = 200 * MiB
    max_sequences: int = 2000
    # a labels CSV costs ~13x its size in memory and ~5 s per 25 MB to read (codt_deploy.labels);
    # 16 MB holds ~600,000 rows, a whole dataset's labels
    max_labels_bytes: int = 16 * MiB

    def describe(self) -> str:
        return (f"up to {self.max_files} files, {self.max_file_bytes // MiB} MB each, "
                f"{self.max_total_bytes // MiB} MB in all, {self.max_sequences} sequences")


def check_labels_size(path: str | os.PathLike, limits: UploadLimits) -> None:
    """Refuse a labels CSV over ``limits.max_labels_bytes`` (UploadLimitError saying the limit)."""
    size = os.path.getsize(path)
    if size > limits.max_labels_bytes:
        raise UploadLimitError(f"the labels CSV is {size / MiB:.1f} MB; the app reads labels files "
                               f"of up to {limits.max_labels_bytes // MiB} MB")


@dataclass(frozen=True)
class FileProblem:
    """A file (or archive member) that gave no sequence, and why."""

    file: str
    reason: str


@dataclass
class ParsedUploads:
    """The sequences read from an upload and the files that failed."""

    sequences: list[PoseSequence] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)


@dataclass(frozen=True)
class _Member:
    """One file to read: its display name, size, and either a path or bytes already in memory."""

    name: str
    size: int
    path: Path | None = None
    data: bytes | None = None

    def read(self, limit: int) -> bytes:
        """At most ``limit + 1`` bytes, so an over-size file is seen without reading it all."""
        if self.data is not None:
            return self.data[:limit + 1]
        assert self.path is not None  # a member holds either bytes or a path
        with open(self.path, "rb") as handle:
            return handle.read(limit + 1)


def _is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def _is_hidden(member: str) -> bool:
    """Metadata that archivers add (``__MACOSX/``, ``.DS_Store``): not pose files, not problems."""
    parts = PurePosixPath(member).parts
    return not parts or parts[0] == "__MACOSX" or parts[-1].startswith(".")


def _archive_members(path: Path, limits: UploadLimits, problems: list[FileProblem]
                     ) -> Iterator[_Member]:
    """The members of a zip or tar archive, read into memory under the upload limits."""
    caps = ArchiveLimits(max_member_bytes=limits.max_file_bytes,
                         max_total_bytes=limits.max_total_bytes)
    for item in iter_archive(path, caps):
        name = f"{path.name}::{item.member}" if item.member else path.name
        if item.error:  # unsafe names (a backslash '..' too), duplicates, unreadable members
            problems.append(FileProblem(name, item.error))
        elif item.member and _is_hidden(item.member):
            continue
        elif item.skip:
            problems.append(FileProblem(name, item.skip))
        elif _is_pickle(item.member):
            problems.append(FileProblem(name, PICKLE_REFUSAL))
        else:
            assert item.data is not None  # iter_archive reads every member it does not refuse
            yield _Member(name, len(item.data), data=item.data)


def _expand(paths: Iterable[str | os.PathLike], limits: UploadLimits,
            problems: list[FileProblem]) -> list[_Member]:
    """Every uploaded file, archives expanded; refused ones go to ``problems``.

    Raises :class:`UploadLimitError` as soon as the count or the total size is over the limits.
    """
    members: list[_Member] = []
    total = 0
    for path in map(Path, paths):
        if _is_pickle(path.name):
            problems.append(FileProblem(path.name, PICKLE_REFUSAL))
            continue
        try:
            found = (_archive_members(path, limits, problems) if is_archive(path)
                     else [_Member(path.name, path.stat().st_size, path=path)])
        except OSError as exc:
            problems.append(FileProblem(path.name, f"cannot read this file: {exc.strerror}"))
            continue
        for member in found:
            members.append(member)
            total += member.size
            if len(members) > limits.max_files:
                raise UploadLimitError(f"more than {limits.max_files} files uploaded (archive "
                                       f"members included); that is the limit per batch. Split "
                                       f"the upload.")
            if total > limits.max_total_bytes:
                raise UploadLimitError(f"the upload holds more than "
                                       f"{limits.max_total_bytes // MiB} MB of pose files; that "
                                       f"is the limit per batch. Split the upload.")
    return members


def _member_bytes(member: _Member, limits: UploadLimits) -> bytes:
    """A member's content; raises CodtError when it is over the per-file limit or unreadable."""
    if member.size > limits.max_file_bytes:
        raise CodtError(f"{member.size / MiB:.1f} MB is over the limit of "
                        f"{limits.max_file_bytes // MiB} MB per file")
    try:
        data = member.read(limits.max_file_bytes)
    except OSError as exc:
        raise CodtError(f"cannot read this file: {exc}") from exc
    if len(data) > limits.max_file_bytes:  # the file grew after it was measured
        raise CodtError(f"over the limit of {limits.max_file_bytes // MiB} MB per file")
    return data


def _frame_group(member: _Member) -> str | None:
    """For an OpenPose per-frame file, the folder (or archive) it belongs to; else None.

    OpenPose writes one JSON file per frame (docs/FORMATS.md §1 "OpenPose"), so those files are
    read together, one group per folder, and each video in a group becomes one sequence.
    """
    container, _, inner = member.name.rpartition("::")
    folder, _, base = inner.rpartition("/")
    if not FRAME_FILE.match(base):
        return None
    return f"{container}::{folder}" if container and folder else container or folder


def error_reason(source: str, exc: Exception) -> str:
    """An error's message for a row that already names ``source``: without a repeated file name.

    :class:`PoseFormatError` keeps its line or frame (``"line 2: expected a number"``), and the
    file it names when that is not ``source`` itself (a frame file of an OpenPose group).
    """
    if isinstance(exc, PoseFormatError):
        where = (f"line {exc.line}: " if exc.line is not None else
                 f"frame {exc.frame}: " if exc.frame is not None else "")
        if exc.path not in (source, source.rsplit("::", 1)[-1]):
            where = f"{exc.path.rsplit('/', 1)[-1].rsplit('::', 1)[-1]}: {where}"
        return where + exc.problem
    text = str(exc)
    for prefix in (source, source.rsplit("::", 1)[-1]):
        if text.startswith(prefix + ":"):
            return text[len(prefix) + 1:].strip()
    return text


def default_reader(name: str, data: bytes) -> list[PoseSequence]:
    """:func:`codt_deploy.readers.read_bytes` with the format detected from the name and content."""
    from codt_deploy.readers import read_bytes

    return read_bytes(name, data)


def _read_member(reader: Reader, member: _Member, limits: UploadLimits) -> list[PoseSequence]:
    return reader(member.name, _member_bytes(member, limits))


def _read_frame_group(frames_reader: FramesReader, frames: list[_Member], source: str,
                      limits: UploadLimits) -> list[PoseSequence]:
    return frames_reader([(f.name, _member_bytes(f, limits)) for f in frames], source)


def _add(parsed: ParsedUploads, source: str, read: Callable[[], list[PoseSequence]],
         limits: UploadLimits) -> None:
    """Run one read; its sequences join the batch, its failure becomes a problem row."""
    try:
        sequences = read()
    except (CodtError, ValueError) as exc:  # PoseFormatError, LayoutError, bad shapes
        parsed.problems.append(FileProblem(source, error_reason(source, exc)))
        return
    except Exception as exc:  # noqa: BLE001 - the per-file boundary: one file, one problem
        log.debug("unexpected error reading %s", source, exc_info=True)
        parsed.problems.append(FileProblem(source, f"unexpected {type(exc).__name__}: {exc}"))
        return
    if not sequences:
        parsed.problems.append(FileProblem(source, "no skeleton sequence in this file"))
        return
    parsed.sequences.extend(sequences)
    if len(parsed.sequences) > limits.max_sequences:
        raise UploadLimitError(f"the upload holds more than {limits.max_sequences} "
                               f"sequences (limit per batch); split the upload.")


def parse_uploads(paths: Iterable[str | os.PathLike], *, limits: UploadLimits = UploadLimits(),
                  reader: Reader = default_reader,
                  frames_reader: FramesReader = read_frames) -> ParsedUploads:
    """Read every uploaded pose file (zip and tar archives expanded) into sequences.

    Raises :class:`UploadLimitError` when the batch is over ``limits.max_files``,
    ``limits.max_total_bytes`` or ``limits.max_sequences``. Everything else that goes wrong is
    per file: a pickle, an over-size file or a malformed one is listed in ``problems`` with its
    reason. OpenPose per-frame files are read together per folder by ``frames_reader``.
    """
    parsed = ParsedUploads()
    members = _expand(paths, limits, parsed.problems)
    frame_groups: dict[str, list[_Member]] = {}
    for member in members:
        group = _frame_group(member)
        if group is not None:
            frame_groups.setdefault(group, []).append(member)
            continue
        _add(parsed, member.name, partial(_read_member, reader, member, limits), limits)
    for group, frames in frame_groups.items():
        source = group or "uploaded OpenPose frames"
        _add(parsed, source, partial(_read_frame_group, frames_reader, frames, source, limits),
             limits)
    log.info("read %d sequences from %d files, %d problems", len(parsed.sequences),
             len(members), len(parsed.problems))
    return parsed
