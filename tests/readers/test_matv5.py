"""The bounds-checked MATLAB v5 reader against scipy.io on valid files, and on corrupt ones where
scipy itself is not safe to call."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._matv5 import read_mat_v5

scipy_io = pytest.importorskip("scipy.io")

VARIABLES = {
    "x": np.arange(12, dtype=np.float64).reshape(3, 4) / 7, "f": np.ones((2, 5), np.float32),
    "u8": np.array([[1, 2, 255]], np.uint8), "u16": np.array([[300]], np.uint16),
    "i32": np.array([[-5, 7]], np.int32), "i64": np.array([[2**40]], np.int64),
    "word": "tennis_serve", "empty": "",
}


def _saved(compress: bool, **extra: object) -> bytes:
    buffer = io.BytesIO()
    scipy_io.savemat(buffer, {**VARIABLES, **extra}, do_compression=compress)
    return buffer.getvalue()


@pytest.mark.parametrize("compress", [False, True])
def test_matches_scipy_on_valid_files(compress: bool) -> None:
    data = _saved(compress, cell=np.array([1, "a"], dtype=object), record={"a": 1})
    ours = read_mat_v5(data, "v.mat")
    assert set(ours) == set(VARIABLES)  # the cell and the struct are skipped
    reference = scipy_io.loadmat(io.BytesIO(data))
    for key, value in VARIABLES.items():
        if isinstance(value, str):
            assert ours[key] == value
        else:
            array = ours[key]
            assert isinstance(array, np.ndarray) and array.dtype == reference[key].dtype
            np.testing.assert_array_equal(array, reference[key])


def _element(mdtype: int, payload: bytes) -> bytes:
    padded = payload + b"\0" * (-len(payload) % 8)
    return struct.pack("<II", mdtype, len(payload)) + padded


def _matlab_style_file(values: np.ndarray, storage: str, storage_code: int) -> bytes:
    """A double-class variable stored in a smaller integer type, as MATLAB writes it."""
    flags = _element(6, struct.pack("<II", 6, 0))  # miUINT32: class 6 = double
    dims = _element(5, struct.pack("<ii", *values.shape))
    name = struct.pack("<HH", 1, 1) + b"v\0\0\0"  # small data element: 1 byte of miINT8
    real = _element(storage_code, values.astype(storage).tobytes(order="F"))
    matrix = _element(14, flags + dims + name + real)
    header = b"MATLAB 5.0 MAT-file".ljust(116) + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    compressed = zlib.compress(matrix)
    return header + struct.pack("<II", 15, len(compressed)) + compressed  # not padded


def test_doubles_stored_as_small_integers() -> None:
    values = np.array([[1, 2, 3], [40, 50, 60]], np.float64)
    data = _matlab_style_file(values, "u1", 2)
    ours = read_mat_v5(data, "m.mat")["v"]
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float64
    np.testing.assert_array_equal(ours, values)
    np.testing.assert_array_equal(scipy_io.loadmat(io.BytesIO(data))["v"], values)


def test_decompression_is_bounded() -> None:
    data = _matlab_style_file(np.zeros((1000, 100)), "u1", 2)
    with pytest.raises(PoseFormatError, match="inflate past the size limit"):
        read_mat_v5(data, "bomb.mat", max_bytes=50_000)


@pytest.mark.parametrize("data, problem", [
    (b"MATLAB 5.0" + b"\0" * 50, "no 128-byte v5 header"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 200, "v7.3"),
])
def test_not_v5(data: bytes, problem: str) -> None:
    with pytest.raises(PoseFormatError, match=problem):
        read_mat_v5(data, "x.mat")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, 400))
def test_corrupt_fixture_bytes_never_crash(fixtures_dir: Path, edits: list, cut: int) -> None:
    """Byte edits and truncations of the Penn fixture (one such edit made scipy 1.17 segfault):
    the reader returns variables or raises PoseFormatError, nothing else."""
    data = bytearray((fixtures_dir / "penn" / "0001.mat").read_bytes())
    for position, value in edits:
        data[position % len(data)] = value
    try:
        read_mat_v5(bytes(data[:len(data) - cut]), "edited.mat")
    except PoseFormatError as exc:
        assert exc.path == "edited.mat"
