"""Pose file readers: every format of docs/FORMATS.md §1 into ``list[PoseSequence]``.

>>> from codt_deploy.readers import read_poses
>>> sequences = read_poses("S001C001P001R001A011.skeleton")      # doctest: +SKIP
>>> sequences[0].data.shape                                       # doctest: +SKIP
(82, 1, 25, 3)

``read_poses`` reads local files (and OpenPose folders); ``read_bytes`` reads uploads and archive
members with the same parsers and never unpickles. Every problem with the input raises
``PoseFormatError`` naming the file, the line or frame where known, and what was expected; a failure
a reader did not foresee still leaves as a PoseFormatError (``UnforeseenInputError``, a bug to fix).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from codt_deploy.errors import CodtError, PoseFormatError, UnforeseenInputError
from codt_deploy.readers.arrays import save_npz
from codt_deploy.readers.registry import Reader, available_formats, detect_format, get_reader
from codt_deploy.sequence import PoseSequence

__all__ = ["MAX_FILE_BYTES", "PoseFormatError", "PoseSequence", "available_formats",
           "detect_format", "read_bytes", "read_poses", "save_npz"]

#: Larger inputs are refused (a folder counts its frame files together). Change it here, or pass
#: ``max_bytes=`` to one call.
MAX_FILE_BYTES = 256 * 1024 * 1024
_HEAD_BYTES = 64 * 1024
log = logging.getLogger(__name__)


def _guarded(source: str, read: Callable[[], list[PoseSequence]]) -> list[PoseSequence]:
    """Run one read so that every failure is a PoseFormatError naming ``source``: an OSError
    says why the file cannot be read; anything else a reader did not foresee becomes an
    :class:`UnforeseenInputError` with the original type (a bug to fix, logged with its traceback
    at debug level)."""
    try:
        return read()
    except CodtError:
        raise
    except OSError as exc:
        raise PoseFormatError(source, f"cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - the readers' contract: only PoseFormatError leaves
        log.debug("unforeseen reader failure on %s", source, exc_info=True)
        raise UnforeseenInputError(source, f"unreadable ({type(exc).__name__}: "
                                           f"{str(exc)[:160]})") from exc


def _check_options(reader: Reader, options: dict, source: str) -> None:
    unknown = sorted(set(options) - reader.options)
    if unknown:
        accepted = ", ".join(sorted(reader.options)) or "none"
        raise PoseFormatError(source, f"unknown option(s) {', '.join(unknown)} for format "
                                      f"{reader.name!r}; it accepts: {accepted}")


def _check_size(size: int, limit: int | None, source: str) -> None:
    limit = MAX_FILE_BYTES if limit is None else limit
    if size > limit:
        raise PoseFormatError(source, f"{size:,} bytes is over the {limit:,}-byte limit "
                                      f"(readers.MAX_FILE_BYTES, or max_bytes=)")


def _folder_reader(path: Path, format: str | None, limit: int | None) -> Reader:
    from codt_deploy.readers.openpose import frame_files

    reader = get_reader(format or "openpose")
    if not reader.reads_folders:
        raise PoseFormatError(path, f"is a folder; format {reader.name!r} reads files (only "
                                    f"'openpose' reads a folder of frame files)")
    _check_size(sum(p.stat().st_size for p in frame_files(path)), limit, str(path))
    return reader


def read_poses(path: str | Path, *, format: str | None = None, trust_pickle: bool = False,
               max_bytes: int | None = None, **options: object) -> list[PoseSequence]:
    """Read a local pose file (or an OpenPose folder) into sequences.

    ``format`` forces a reader (see ``available_formats()``); otherwise it is detected from the
    name and the first bytes. ``trust_pickle=True`` allows pickle inputs (pyskl pickles, CrosSCLR
    ``label.pkl``) for files you trust. Other keyword options go to the reader, e.g.
    ``label_file=`` (pku, utkinect), ``image_size=`` (openpose), ``axes=``/``skeleton=`` (array).
    """
    path = Path(path)
    return _guarded(str(path), lambda: _read_path(path, format, trust_pickle, max_bytes, options))


def _read_path(path: Path, format: str | None, trust_pickle: bool, max_bytes: int | None,
               options: dict) -> list[PoseSequence]:
    source = str(path)
    if path.is_dir():
        reader = _folder_reader(path, format, max_bytes)
    elif path.is_file():
        _check_size(path.stat().st_size, max_bytes, source)
        if format is None:
            with path.open("rb") as stream:
                format = detect_format(path.name, stream.read(_HEAD_BYTES))
        reader = get_reader(format)
    elif path.exists():
        raise PoseFormatError(source, "not a regular file (a FIFO, socket or device); not read")
    else:
        raise PoseFormatError(source, "no such file or folder")
    _check_options(reader, options, source)
    if reader.pickle_only and not trust_pickle:
        raise PoseFormatError(source, "refusing to unpickle: pickles can run code. Convert it "
                                      "to .npz once, or pass trust_pickle=True (CLI: "
                                      "--trust-pickle) for a local file you trust")
    if reader.read_path is not None:
        if reader.takes_trust:
            options = {**options, "trust_pickle": trust_pickle}
        return reader.read_path(path, **options)
    assert reader.parse_bytes is not None  # every reader without read_path parses bytes
    return reader.parse_bytes(path.read_bytes(), source, **options)


def read_bytes(name: str, data: bytes, *, format: str | None = None,
               max_bytes: int | None = None, **options: object) -> list[PoseSequence]:
    """Read an upload or archive member held in memory; ``name`` (e.g. ``"clips.zip::a.json"``)
    is used for detection, naming and messages. Never unpickles: pickle formats are refused."""
    return _guarded(name, lambda: _read_bytes(name, data, format, max_bytes, options))


def _read_bytes(name: str, data: bytes, format: str | None, max_bytes: int | None,
                options: dict) -> list[PoseSequence]:
    _check_size(len(data), max_bytes, name)
    reader = get_reader(format or detect_format(name, bytes(data[:_HEAD_BYTES])))
    _check_options(reader, options, name)
    if reader.parse_bytes is None:
        raise PoseFormatError(name, f"format {reader.name!r} is a pickle and uploads are never "
                                    f"unpickled; convert it to .npz (readers.save_npz) or read "
                                    f"the local file with --trust-pickle")
    return reader.parse_bytes(bytes(data), name, **options)
