"""A small, bounds-checked reader for MATLAB v5 ``.mat`` files: numeric and char variables only.

Why not ``scipy.io.loadmat``: its v5 reader is not hardened against malformed files (scipy's own
documentation says so, and with scipy 1.17 a Penn file with a few corrupted bytes crashes the
interpreter with a segmentation fault), and ``.mat`` files arrive as uploads. This reader is pure
Python + numpy: every length is checked against the buffer, compressed elements are inflated under a
size limit, and any inconsistency becomes a PoseFormatError. Variables of other classes (cell,
struct, sparse, object) and complex arrays are skipped. Format: MathWorks, "MAT-File Format"
(the Level 5 layout: 128-byte header, then tagged data elements, 8-byte aligned).
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._text import DENSE_FLOOR_BYTES, MAX_AMPLIFICATION

_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8",
              13: "u8", 16: "u1", 17: "u2", 18: "u4"}  # 16-18: UTF-8/16/32 text
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_CLASS_DTYPES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
                 14: "i8", 15: "u8"}
_CHAR_CLASS = 4
_COMPLEX_FLAG = 0x800

Value = np.ndarray | str


class _Bad(Exception):
    """Internal: a structural problem; turned into PoseFormatError with the file name."""


def _tag(buf: bytes, pos: int, endian: str) -> tuple[int, int, int, int]:
    """-> (mdtype, nbytes, payload start, next element start) for the element at ``pos``."""
    if pos + 8 > len(buf):
        raise _Bad(f"element tag at byte {pos} runs past the end")
    word, second = struct.unpack_from(endian + "II", buf, pos)
    if word >> 16:  # small data element: type and size share the first word, data in 4 bytes
        nbytes, mdtype = word >> 16, word & 0xFFFF
        if nbytes > 4:
            raise _Bad(f"small data element at byte {pos} claims {nbytes} bytes")
        return mdtype, nbytes, pos + 4, pos + 8
    end = pos + 8 + second
    if end > len(buf):
        raise _Bad(f"element at byte {pos} claims {second} bytes; only {len(buf) - pos - 8} left")
    return word, second, pos + 8, pos + 8 + (second + 7) // 8 * 8


def _numbers(buf: bytes, pos: int, endian: str) -> tuple[np.ndarray, int]:
    mdtype, nbytes, start, following = _tag(buf, pos, endian)
    if mdtype not in _MI_DTYPES:
        raise _Bad(f"unknown data type code {mdtype} at byte {pos}")
    dtype = np.dtype(endian + _MI_DTYPES[mdtype])
    if nbytes % dtype.itemsize:
        raise _Bad(f"{nbytes} bytes is not a whole number of {dtype} values at byte {pos}")
    return np.frombuffer(buf, dtype, nbytes // dtype.itemsize, start), following


def _matrix(buf: bytes, endian: str, max_values: int) -> tuple[str, Value | None]:
    """One miMATRIX payload -> (name, value), value None for classes this reader skips."""
    flags, pos = _numbers(buf, 0, endian)
    dims, pos = _numbers(buf, pos, endian)
    raw_name, pos = _numbers(buf, pos, endian)
    if flags.size < 1 or dims.size < 2 or np.any(dims < 0) or flags.dtype.kind not in "iu" \
            or dims.dtype.kind not in "iu":
        raise _Bad("malformed array header (flags, dimensions)")
    name = raw_name.astype(np.uint8).tobytes().decode("ascii", "replace")
    array_class, count = int(flags[0]) & 0xFF, math.prod(int(d) for d in dims)
    if array_class not in _CLASS_DTYPES and array_class != _CHAR_CLASS or \
            int(flags[0]) & _COMPLEX_FLAG:
        return name, None
    if count > max_values:
        raise _Bad(f"variable {name!r} has {count} values, over the limit")
    values, _ = _numbers(buf, pos, endian)
    if values.size != count:
        raise _Bad(f"variable {name!r} holds {values.size} values; its dimensions say {count}")
    shape = tuple(int(d) for d in dims)
    if array_class == _CHAR_CLASS:
        if count == 0:
            return name, ""
        if values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 0x10FFFF:
            raise _Bad(f"variable {name!r} is text but holds values that are not characters")
        chars = values.reshape(shape, order="F")  # column-major, like every MATLAB array
        rows = chars.reshape(shape[0], -1)  # (rows, characters per row)
        return name, "\n".join("".join(map(chr, row)) for row in rows)
    return name, values.astype(_CLASS_DTYPES[array_class]).reshape(shape, order="F")  # (dims)


def _inflate(payload: bytes, budget: list[int]) -> bytes:
    """zlib-inflate under the remaining byte budget (shared by all compressed elements)."""
    out = zlib.decompressobj().decompress(payload, budget[0] + 1)
    if len(out) > budget[0]:
        raise _Bad("compressed elements inflate past the size limit")
    budget[0] -= len(out)
    return out


def _elements(buf: bytes, pos: int, endian: str, budget: list[int],
              depth: int = 0) -> dict[str, Value]:
    variables: dict[str, Value] = {}
    while pos + 8 <= len(buf):
        mdtype, nbytes, start, following = _tag(buf, pos, endian)
        payload = buf[start:start + nbytes]
        if mdtype == _MI_COMPRESSED and depth == 0:
            variables.update(_elements(_inflate(payload, budget), 0, endian, budget, depth + 1))
            following = start + nbytes  # compressed elements are not padded to 8 bytes
        elif mdtype == _MI_MATRIX:
            name, value = _matrix(payload, endian, budget[0])
            if value is not None:
                variables[name] = value
        else:
            raise _Bad(f"unexpected element type {mdtype} at byte {pos}")
        pos = following
    return variables


def read_mat_v5(data: bytes, source: str, *,
                max_bytes: int = 256 * 1024 * 1024) -> dict[str, Value]:
    """Numeric variables as numpy arrays (their MATLAB class's dtype), char variables as str.

    Compressed elements inflate to at most ``max_bytes`` in all, and to no more than a real file
    of this size can hold (``_text.check_dense_size``'s bound), so a small hostile file cannot
    claim hundreds of megabytes."""
    if data[:8] == b"\x89HDF\r\n\x1a\n" or data[128:136] == b"\x89HDF\r\n\x1a\n":
        raise PoseFormatError(source, "MATLAB v7.3 (HDF5) files are not supported; save as v7")
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        raise PoseFormatError(source, "not a MATLAB v5 .mat file (no 128-byte v5 header)")
    endian = "<" if data[126:128] == b"IM" else ">"
    budget = min(max_bytes, DENSE_FLOOR_BYTES + MAX_AMPLIFICATION * len(data))
    try:
        return _elements(data, 128, endian, [budget])
    except (_Bad, ValueError, zlib.error, struct.error) as exc:
        raise PoseFormatError(source, f"malformed MATLAB v5 file: {exc}") from None
