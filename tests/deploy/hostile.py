"""Builders of hostile inputs for the isolation tests (issue 9): each returns the exact input class
a careless or hostile user produces, built from real files where a real file is needed."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Literal

_LOCAL_FLAGS, _LOCAL_METHOD = 6, 8  # byte offsets in a zip local file header
_CENTRAL_FLAGS, _CENTRAL_METHOD = 8, 10  # ... and in a central directory entry


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _headers(data: bytes, name: str) -> tuple[int, int]:
    """(local header offset, central directory entry offset) of member ``name``."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    local = archive.getinfo(name).header_offset
    pos = archive.start_dir
    while data[pos:pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + 46:pos + 46 + n].decode() == name:
            return local, pos
        pos += 46 + n + m + k
    raise KeyError(name)


def patch_member(data: bytes, name: str, *, flags: int | None = None,
                 method: int | None = None) -> bytes:
    """Set a member's flag bits (0x1: encrypted) or compression method in both its headers."""
    out = bytearray(data)
    local, central = _headers(data, name)
    if flags is not None:
        struct.pack_into("<H", out, local + _LOCAL_FLAGS, flags)
        struct.pack_into("<H", out, central + _CENTRAL_FLAGS, flags)
    if method is not None:
        struct.pack_into("<H", out, local + _LOCAL_METHOD, method)
        struct.pack_into("<H", out, central + _CENTRAL_METHOD, method)
    return bytes(out)


def corrupt_member_data(data: bytes, name: str) -> bytes:
    """Flip the bytes of a member's compressed data (its headers stay valid)."""
    out = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    n, m = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + n + m
    for i in range(start + 2, start + min(info.compress_size, 40)):
        out[i] ^= 0xA5
    return bytes(out)


def hostile_zip(good: dict[str, bytes]) -> bytes:
    """``good`` members plus an encrypted, a corrupt-deflate, an unsupported-method and a bad-LZMA
    member (named ``encrypted/…``, ``deflate/…``, ``method/…``, ``lzma/…``)."""
    payload = next(iter(good.values()))
    bad = {"encrypted/x.txt": payload, "deflate/x.txt": payload, "method/x.txt": payload}
    data = zip_bytes({**bad, **good})
    data = patch_member(data, "encrypted/x.txt", flags=0x1)
    data = corrupt_member_data(data, "deflate/x.txt")
    data = patch_member(data, "method/x.txt", method=99)
    lzma_zip = corrupt_member_data(zip_bytes({"lzma/x.txt": payload}, zipfile.ZIP_LZMA),
                                   "lzma/x.txt")
    return _concatenate_raw(data, lzma_zip)  # raw entries, so the corruptions survive


def _concatenate_raw(first: bytes, second: bytes) -> bytes:
    """One zip holding the raw (possibly corrupt) entries of two zips, headers rewritten."""
    entries, central, body = [], [], bytearray()
    for data in (first, second):
        archive = zipfile.ZipFile(io.BytesIO(data))
        pos = archive.start_dir
        for info in archive.infolist():
            n, m = struct.unpack_from("<HH", data, info.header_offset + 26)
            end = info.header_offset + 30 + n + m + info.compress_size
            entries.append((len(body), data[info.header_offset:end]))
            body += data[info.header_offset:end]
            n2, m2, k2 = struct.unpack_from("<HHH", data, pos + 28)
            record = bytearray(data[pos:pos + 46 + n2 + m2 + k2])
            struct.pack_into("<I", record, 42, entries[-1][0])
            central.append(bytes(record))
            pos += 46 + n2 + m2 + k2
    directory = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central),
                      len(directory), len(body), 0)
    return bytes(body) + directory + end


def tar_bytes(members: dict[str, bytes], mode: Literal["w", "w:gz", "w:bz2", "w:xz"] = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def deep_folder(root: Path, depth: int) -> Path:
    """``root/d/d/.../d`` ``depth`` levels deep, made level by level (no recursion)."""
    folder = root
    for _ in range(depth):
        folder = folder / "d"
        os.mkdir(folder)
    return folder
