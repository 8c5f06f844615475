"""Pose file readers: every format of FORMATS.md §1 into ``list[PoseSequence]``.

>>> from codt_deploy.readers import read_poses
>>> sequences = read_poses("S001C001P001R001A011.skeleton")      # doctest: +SKIP
>>> sequences[0].data.shape                                       # doctest: +SKIP
(82, 1, 25, 3)

``read_poses`` reads local files (and OpenPose folders); ``read_bytes`` reads uploads and archive
members with the same parsers and never unpickles. Every problem with the input raises
``PoseFormatError`` naming the file, the line or frame where known, and what was expected.
"""

from __future__ import annotations

from pathlib import Path

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers.arrays import save_npz
from codt_deploy.readers.registry import Reader, available_formats, detect_format, get_reader
from codt_deploy.sequence import PoseSequence

__all__ = ["MAX_FILE_BYTES", "PoseFormatError", "PoseSequence", "available_formats",
           "detect_format", "read_bytes", "read_poses", "save_npz"]

#: Larger inputs are refused (a folder counts its frame files together). Change it here, or pass
#: ``max_bytes=`` to one call.
MAX_FILE_BYTES = 256 * 1024 * 1024
_HEAD_BYTES = 64 * 1024


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
    source = str(path)
    if path.is_dir():
        reader = _folder_reader(path, format, max_bytes)
    elif path.is_file():
        _check_size(path.stat().st_size, max_bytes, source)
        if format is None:
            with path.open("rb") as stream:
                format = detect_format(path.name, stream.read(_HEAD_BYTES))
        reader = get_reader(format)
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
    return reader.parse_bytes(path.read_bytes(), source, **options)


def read_bytes(name: str, data: bytes, *, format: str | None = None,
               max_bytes: int | None = None, **options: object) -> list[PoseSequence]:
    """Read an upload or archive member held in memory; ``name`` (e.g. ``"clips.zip::a.json"``)
    is used for detection, naming and messages. Never unpickles: pickle formats are refused."""
    _check_size(len(data), max_bytes, name)
    reader = get_reader(format or detect_format(name, bytes(data[:_HEAD_BYTES])))
    _check_options(reader, options, name)
    if reader.parse_bytes is None:
        raise PoseFormatError(name, f"format {reader.name!r} is a pickle and uploads are never "
                                    f"unpickled; convert it to .npz (readers.save_npz) or read "
                                    f"the local file with --trust-pickle")
    return reader.parse_bytes(bytes(data), name, **options)
