"""Helpers every reader shares: text and JSON decoding, fast number parsing, one finiteness check.

Error positions follow one convention: ``line`` is the 1-based line of the file, ``frame`` the
0-based frame index of the returned sequence; messages quote a dataset's own numbering (e.g. NTU's
1-based frames) in their text where it differs.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path, PurePosixPath

import numpy as np

from codt_deploy.datafiles import DataError, parse_data
from codt_deploy.errors import PoseFormatError

#: Formats whose frame count comes from indices in the file (Kinetics ``frame_index``, VIBE
#: ``frame_ids``, OpenPose file numbers) refuse indices at or above this, so that one bad number
#: cannot allocate gigabytes. 100,000 frames is about 55 minutes at 30 FPS.
MAX_FRAMES = 100_000

#: A reader refuses to allocate a dense pose array larger than this floor plus
#: ``MAX_AMPLIFICATION`` times the size of the file: a real file holds its poses (an NTU body-frame
#: takes ~2 KB of text for 300 bytes of float32), so only a hostile one asks for more, e.g. an NTU
#: file with 1,000 one-frame bodies or a Kinetics ``frame_index`` of 99999 in a 1.5 KB file.
DENSE_FLOOR_BYTES = 32 << 20
MAX_AMPLIFICATION = 16

#: Compressed containers inside one pose file (an ``.npz``) inflate to at most this many bytes,
#: the size limit of a plain file (``readers.MAX_FILE_BYTES``).
MAX_INFLATED_BYTES = 256 << 20

UTF8_BOM = b"\xef\xbb\xbf"

_TEXT_CONTROL = bytes(set(range(32)) - {9, 10, 11, 12, 13}) + b"\x7f"
_SNIFF_BYTES = 4096
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def sample_name(source: str, suffixes: Sequence[str] = ()) -> str:
    """The file name without folder (or archive prefix) and without the first matching suffix."""
    name = PurePosixPath(source.rsplit("::", 1)[-1].replace("\\", "/")).name
    for suffix in suffixes:
        if name.lower().endswith(suffix.lower()):
            return name[: len(name) - len(suffix)]
    return name


def strip_bom(data: bytes) -> bytes:
    """``data`` without a leading UTF-8 byte order mark (editors on Windows add one)."""
    return data[len(UTF8_BOM):] if data.startswith(UTF8_BOM) else data


def text_content(data: bytes, source: str, *, allow_utf8: bool = False) -> bytes:
    """The text of a numeric text file, a leading UTF-8 BOM removed; binary content (NUL or
    other control bytes, or non-ASCII) is refused."""
    data = strip_bom(data)
    head = data[:_SNIFF_BYTES]
    if head.translate(None, _TEXT_CONTROL) != head or (not allow_utf8 and not head.isascii()):
        raise PoseFormatError(source, "binary content where a text pose file was expected "
                                      "(is the file corrupt or of another format?)")
    return data


def load_json(data: bytes, source: str) -> object:
    """Decode UTF-8 JSON (:func:`codt_deploy.datafiles.parse_data`); a decoding error names the
    line, and a document beyond the parser's limits is "unreadable JSON"."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PoseFormatError(source, "not UTF-8 text: binary content where JSON was "
                                      "expected") from None
    if not text.strip():
        raise PoseFormatError(source, "empty file; expected a JSON document")
    try:
        return parse_data(text)
    except DataError as exc:
        raise PoseFormatError(source, exc.problem, line=exc.line) from None


def fast_floats(text: bytes) -> np.ndarray | None:
    """All whitespace-separated numbers of ``text`` as float64, or None if a token is not a number.

    Parsing runs in C (``np.fromstring``); ``nan`` and ``inf`` parse, so callers check finiteness.
    """
    if not text.strip():
        return np.empty(0)  # np.fromstring turns a blank string into [-1.0]
    try:
        return np.fromstring(text, sep=" ")
    except ValueError:
        return None


def line_problem(line: bytes, expected: int | None) -> str | None:
    """What is wrong with one line of numbers (a bad token or the wrong count), or None."""
    tokens = line.split()
    for token in tokens:
        if fast_floats(token) is None:
            return f"expected a number, found {token[:40].decode('ascii', 'replace')!r}"
    if expected is not None and len(tokens) != expected:
        return f"expected {expected} values, found {len(tokens)}"
    return None


def parse_table(text: bytes, usecols: tuple[int, ...] | None = None) -> np.ndarray | None:
    """Whitespace-separated rows (blank lines skipped) as a 2-D float64 array, parsed by numpy's C
    text reader; None when a row does not parse, so that the caller can diagnose line by line."""
    if not text.strip():
        return np.empty((0, 0 if usecols is None else len(usecols)))
    if b"\r" in text:  # numpy's reader refuses a CR that does not end a line (CR CR LF ends)
        text = text.replace(b"\r", b" ")
    try:
        return np.loadtxt(io.BytesIO(text), dtype=np.float64, comments=None, ndmin=2,
                          usecols=usecols)
    except ValueError:
        return None


def fixed_width_rows(data: bytes, source: str, width: int, what: str) -> np.ndarray:
    """Parse a text file of ``width`` numbers per line into a ``(lines, width)`` float64 array.

    Blank lines are skipped. The fast path parses everything in one C call; only when that fails
    does a line-by-line pass look for the first bad line to report.
    """
    data = text_content(data, source)
    rows = parse_table(data)
    if rows is not None and rows.shape[1] == width:
        return rows
    if rows is not None and rows.shape[0] == 0:
        return np.empty((0, width))
    parsed = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        problem = line_problem(line, width)
        if problem is not None:
            raise PoseFormatError(source, f"{problem} ({what})", line=number)
        parsed.append(np.fromstring(line, sep=" "))
    return np.array(parsed, dtype=np.float64).reshape(len(parsed), width)  # (lines, width)


def check_finite(array: np.ndarray, source: str, *, what: str = "coordinates",
                 locate: Callable[[tuple[int, ...]], dict] | None = None) -> None:
    """Raise PoseFormatError at the first NaN, infinite or float32-overflowing value of ``array``.

    ``locate`` maps the offending index to ``{"line": ...}`` or ``{"frame": ...}``; by default the
    first axis is the frame.
    """
    finite = np.isfinite(array) & (np.abs(array) <= _FLOAT32_MAX)  # NaN compares False
    if finite.all():
        return
    index = tuple(int(i) for i in np.argwhere(~finite)[0])
    where = locate(index) if locate is not None else {"frame": index[0]}
    value = float(array[index])
    kind = "non-finite value" if not np.isfinite(value) else "value out of float32 range,"
    raise PoseFormatError(source, f"{kind} {value} in the {what}; expected finite numbers",
                          **where)


def check_frame_index(index: int, source: str, what: str) -> None:
    """Refuse a frame number from the file that is negative or implausibly large."""
    if not 0 <= index < MAX_FRAMES:
        raise PoseFormatError(source, f"{what} {index} is out of range; expected 0 <= frame < "
                                      f"{MAX_FRAMES} (readers.MAX_FRAMES)")


def check_dense_size(shape: tuple[int, ...], itemsize: int, file_bytes: int, source: str,
                     what: str) -> None:
    """Refuse to allocate ``shape`` when it is far larger than a file of ``file_bytes`` can fill
    (see ``DENSE_FLOOR_BYTES``): the bound is checked before the array exists."""
    size = itemsize
    for extent in shape:
        size *= int(extent)
    limit = DENSE_FLOOR_BYTES + MAX_AMPLIFICATION * file_bytes
    if size > limit:
        raise PoseFormatError(source, f"{what} would take {size:,} bytes for a {file_bytes:,}-byte "
                                      f"file (shape {tuple(shape)}); a real file holds its poses, "
                                      f"so this is refused (limit {limit:,} bytes)")


def require_pose(values: np.ndarray, source: str) -> None:
    """Refuse a file whose coordinates are all zero: it holds no skeleton."""
    if not np.any(values):
        raise PoseFormatError(source, "all coordinates are zero: the file holds no skeleton")


def require_frames(num_frames: int, source: str) -> None:
    if num_frames <= 0:
        raise PoseFormatError(source, "zero frames; expected at least one frame of poses")


def as_float_array(value: object, source: str, what: str, **where) -> np.ndarray:
    """``np.asarray(value, float64)`` with a PoseFormatError for ragged or non-numeric content,
    booleans (JSON ``true``), and integers too large for a float (a 3,000-digit number)."""
    if isinstance(value, (str, bytes, dict, bool)):
        raise PoseFormatError(source, f"{what}: expected a list of numbers, found "
                                      f"{type(value).__name__}", **where)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise PoseFormatError(source, f"{what}: expected a regular array of numbers (ragged "
                                      f"nesting, a non-number inside, or a number too large)",
                              **where) from None
    if _holds_bool(value):
        raise PoseFormatError(source, f"{what}: expected numbers, found true/false", **where)
    return array


def _holds_bool(value: object) -> bool:
    """Whether a nested list (already known to be a regular numeric array) holds a bool."""
    if type(value) is bool:
        return True
    if not isinstance(value, list) or not value:
        return False
    if isinstance(value[0], list):
        return any(_holds_bool(item) for item in value)
    return any(type(item) is bool for item in value)


def label_from_name(pattern: re.Pattern[str], name: str) -> int | None:
    """The 0-based label from a dataset's 1-based class number in a file name (A011 -> 10)."""
    match = pattern.search(name)
    if match is None:
        return None
    number = int(match.group(1))
    return number - 1 if number >= 1 else None


def trailing_zero_trim(sample: np.ndarray) -> int:
    """Number of frames up to and including the last frame with any non-zero value. (T, ...) in."""
    nonzero = np.flatnonzero(sample.reshape(sample.shape[0], -1).any(axis=1))  # (T, rest) -> (T,)
    return int(nonzero[-1]) + 1 if nonzero.size else 0


def side_file_bytes(value: object, what: str) -> tuple[bytes, str]:
    """Content and display name of a side file option (a label file): bytes are the content
    itself, anything else is a path."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), f"<{what}>"
    if not isinstance(value, (str, PathLike)):
        raise PoseFormatError(f"<{what}>", f"expected a path or bytes, got {type(value).__name__}")
    path = Path(value)
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise PoseFormatError(path, f"cannot read the {what}: {exc.strerror or exc}") from None
