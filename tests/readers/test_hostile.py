"""Hostile and odd input, one test per defect class of the readers (issue 9, classes 2, 4, 6, 13):
each fails as a PoseFormatError naming the file, before allocating more than a real file could
fill, or is read as the plain file it really is."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError, UnforeseenInputError
from codt_deploy.preprocess import PreprocessConfig, preprocess
from codt_deploy.readers import read_bytes, registry
from codt_deploy.sequence import PoseSequence

NTU = "ntu_rgbd_samples/S001C001P001R001A011.skeleton"
UCLA = "nw_ucla/a01_s01_e00_v01.json"
MSR = "msr_action3d/a01_s01_e01_skeleton3D.txt"
PKU = "pku_mmd_sample/A10N08-L.txt"
KINETICS = "kinetics_skeleton_samples/kinetics_val/__vOysOPoCY.json"


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy_header(header: bytes) -> bytes:
    header = header.ljust(117) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _zip_member(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def _corrupt_deflate_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, data=np.arange(3000, dtype=np.float32))
    data = bytearray(buffer.getvalue())
    for i in range(60, 160):  # inside the deflate stream of data.npy
        data[i] ^= 0xFF
    return bytes(data)


POSES = np.random.default_rng(0).normal(size=(1, 3, 10, 20, 1)).astype(np.float32)  # NCTVM

WRONG_TYPE_CASES = {  # name -> (file name, bytes, reader options, expected message)
    "3000-digit integer (OverflowError)": (
        "a.json", json.dumps({"skeletons": [[[10 ** 2999, 1, 1]] * 20]}).encode(), {}, "too large"),
    "inf labels (OverflowError)": (
        "a.npz", _npz(data=POSES, labels=np.array([np.inf])), {"skeleton": "msr20"},
        "whole numbers"),
    "npz member without .npy magic (AttributeError)": (
        "a.npz", _zip_member("data.npy", b"not an array at all"), {}, "magic string"),
    "0-d names for two samples (TypeError)": (
        "a.npz", _npz(data=np.concatenate([POSES, POSES]), names=np.array("x")),
        {"skeleton": "msr20"}, "names/labels have 1/2 entries"),
    "header claiming 240 GB (MemoryError)": (
        "a.npy", _npy_header(b"{'descr': '<f4', 'fortran_order': False, "
                             b"'shape': (60000000000,), }") + b"\0" * 64, {},
        "declares shape"),
    "malformed header (tokenize.TokenError)": (
        "a.npy", _npy_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,")
        + b"\0" * 12, {}, "bad header"),
    "corrupt deflate in an npz (zlib.error)": ("a.npz", _corrupt_deflate_npz(), {}, "unreadable"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPE_CASES))
def test_reader_failures_are_pose_format_errors_naming_the_file(case):
    name, data, options, message = WRONG_TYPE_CASES[case]
    with pytest.raises(PoseFormatError, match=message) as info:
        read_bytes(name, data, **options)
    assert not isinstance(info.value, UnforeseenInputError)  # foreseen: a reader check said why
    assert str(info.value).startswith(name)


def test_0d_names_name_the_one_sample():
    seqs = read_bytes("a.npz", _npz(data=POSES, names=np.array("x")), skeleton="msr20")
    assert [s.name for s in seqs] == ["x"]


def test_an_unforeseen_reader_failure_still_leaves_as_a_pose_format_error(monkeypatch):
    def broken(data, source):
        raise KeyError("a reader bug")

    reader = registry.READERS["msr"]
    monkeypatch.setitem(registry.READERS, "msr", dataclasses.replace(reader, parse_bytes=broken))
    with pytest.raises(UnforeseenInputError, match=r"a01_s01_e01_skeleton3D.txt: unreadable "
                                                   r"\(KeyError"):
        read_bytes("a01_s01_e01_skeleton3D.txt", b"1 2 3 4\n")


def _ntu_body_lines(shared_data: Path) -> list[bytes]:
    """The first body of the first frame of a real NTU file: the body line, 25, 25 joint lines."""
    lines = (shared_data / NTU).read_bytes().split(b"\r\n")
    return lines[2:2 + 27]


def test_many_distinct_ntu_bodies_are_refused_before_allocating(shared_data):
    body = _ntu_body_lines(shared_data)
    frames = []
    for i in range(1000):  # one body per frame, each with its own bodyID: (1000, 1000, 25, 3)
        body_id, rest = body[0].split(b" ", 1)
        frames += [b"1", b"%d %s" % (int(body_id) + i, rest), *body[1:]]
    data = b"\r\n".join([b"1000", *frames]) + b"\r\n"
    start = time.perf_counter()
    with pytest.raises(PoseFormatError, match="1000 distinct bodies over 1000 frames"):
        read_bytes("S001C001P001R001A011.skeleton", data)
    assert time.perf_counter() - start < 5


def test_a_huge_kinetics_frame_index_is_refused(shared_data):
    clip = json.loads((shared_data / KINETICS).read_bytes())
    clip["data"] = clip["data"][:1]
    clip["data"][0]["frame_index"] = 99999
    with pytest.raises(PoseFormatError, match="frame_index up to 99999"):
        read_bytes("clip.json", json.dumps(clip).encode())


def test_a_small_mat_file_cannot_inflate_to_hundreds_of_megabytes():
    payload = zlib.compress(b"\0" * (40 << 20), 9)  # 40 MB of zeros in ~40 KB
    header = b"MATLAB 5.0 MAT-file".ljust(124) + struct.pack("<H", 0x0100) + b"IM"
    data = header + struct.pack("<II", 15, len(payload)) + payload
    with pytest.raises(PoseFormatError, match="inflate past the size limit"):
        read_bytes("0001.mat", data)


@pytest.mark.parametrize("relative", [NTU, MSR, PKU, UCLA])
def test_a_utf8_bom_is_not_binary_content(shared_data, relative):
    data = (shared_data / relative).read_bytes()
    name = Path(relative).name
    plain = read_bytes(name, data)
    with_bom = read_bytes(name, b"\xef\xbb\xbf" + data)
    assert np.array_equal(plain[0].data, with_bom[0].data)


def test_ntu_cr_cr_lf_line_ends_read_like_crlf(shared_data):
    data = (shared_data / NTU).read_bytes()
    doubled = read_bytes("S001C001P001R001A011.skeleton", data.replace(b"\r\n", b"\r\r\n"))
    assert np.array_equal(doubled[0].data, read_bytes("S001C001P001R001A011.skeleton",
                                                      data)[0].data)


def test_all_zero_pku_and_ucla_files_hold_no_skeleton(shared_data):
    pku_rows = len((shared_data / PKU).read_bytes().splitlines())
    zeros = (b" ".join([b"0"] * 150) + b"\n") * min(pku_rows, 30)
    with pytest.raises(PoseFormatError, match="all coordinates are zero"):
        read_bytes("A10N08-L.txt", zeros)
    clip = json.loads((shared_data / UCLA).read_bytes())
    clip["skeletons"] = [[[0, 0, 0]] * 20] * len(clip["skeletons"])
    with pytest.raises(PoseFormatError, match="all coordinates are zero"):
        read_bytes("a01_s01_e00_v01.json", json.dumps(clip).encode())


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_coordinates(shared_data, value):
    clip = json.loads((shared_data / UCLA).read_bytes())
    clip["skeletons"][0][3][1] = value  # one true/false among real numbers
    with pytest.raises(PoseFormatError, match="found true/false"):
        read_bytes("a01_s01_e00_v01.json", json.dumps(clip).encode())


def test_huge_finite_coordinates_fail_the_file_not_the_batch(shared_data):
    seq = read_bytes("a01_s01_e00_v01.json", (shared_data / UCLA).read_bytes())[0]
    data = seq.data.copy()  # (T, M, V, C)
    data[5, 0, 3] = [3e38, -3e38, 3e38]  # finite in float32; centring would overflow
    hostile = PoseSequence(data=data, layout=seq.layout, source="huge.json")
    config = PreprocessConfig(layout="msr20")
    with pytest.raises(PoseFormatError, match=r"huge.json \(frame 5\): value 3e\+38 is beyond"):
        preprocess(hostile, config)
    data[5, 0, 3] = [1e6, -1e6, 1e6]  # the largest accepted values still give finite output
    bounded = PoseSequence(data=data, layout=seq.layout, source="bounded.json")
    assert np.isfinite(preprocess(bounded, config)).all()
