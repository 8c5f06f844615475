"""Malformed input: each case raises PoseFormatError naming the file, the place and the problem;
random bytes never escape as another exception type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import available_formats, read_bytes, read_poses
from codt_deploy.readers._text import check_finite, fast_floats, fixed_width_rows

MALFORMED = [  # (fixture, problem, line, frame)
    ("truncated.skeleton", "file ends early", 70, None),
    ("wrong_joint_count.skeleton", "expected 25 joints per body .ntu25., found 20", 6, None),
    ("nan_values.skeleton", "non-finite value nan", 41, None),
    ("zero_frames.skeleton", "declares 0 frames", 1, None),
    ("binary_garbage.skeleton", "binary content", None, None),
    ("a01_s01_e01_skeleton3D.txt", "30 joint lines is not a multiple of 20", None, 1),
    ("a02_s01_e01_skeleton3D.txt", "non-finite value inf", 26, None),
    ("bad_json.json", "invalid JSON", 1, None),
    ("wrong_schema_kinetics.json", "expected 36 pose values", None, 0),
    ("wrong_joint_count_ucla.json", "expected 20 joints .kinect20., found 19", None, 1),
    ("zero_frames_ucla.json", "zero frames", None, None),
    ("corrupt_penn.mat", "malformed MATLAB v5 file", None, None),
]


@pytest.mark.parametrize("name, problem, line, frame", MALFORMED)
def test_malformed_fixture(fixtures_dir: Path, name: str, problem: str, line: int | None,
                           frame: int | None) -> None:
    path = fixtures_dir / "malformed" / name
    with pytest.raises(PoseFormatError, match=problem) as info:
        read_poses(path)
    assert (info.value.line, info.value.frame) == (line, frame)
    assert str(info.value).startswith(str(path))
    with pytest.raises(PoseFormatError, match=problem):  # the upload path says the same
        read_bytes(name, path.read_bytes())


@pytest.mark.parametrize("name", ["x.skeleton", "a01_s01_e01_skeleton3D.txt", "A01N01-L.txt",
                                  "joints_s01_e01.txt", "clip.json", "0001.mat", "p.npy",
                                  "p.npz", "val_data.npy"])
def test_binary_garbage_with_each_pose_extension(name: str) -> None:
    garbage = np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes()
    with pytest.raises(PoseFormatError) as info:
        read_bytes(name, garbage)
    assert info.value.path == name


@pytest.mark.parametrize("name, content, fmt", [
    ("x.skeleton", b"", "ntu"), ("a01_s01_e01_skeleton3D.txt", b"", "msr"),
    ("A01N01-L.txt", b"\n\n", "pku"), ("joints_s01_e01.txt", b" ", "utkinect"),
    ("k.json", b'{"data": []}', "kinetics"), ("u.json", b'{"skeletons": []}', "ucla"),
])
def test_zero_frames_in_every_text_format(name: str, content: bytes, fmt: str) -> None:
    with pytest.raises(PoseFormatError, match="zero frames|declares|ends early|expected the "
                                              "frame count"):
        read_bytes(name, content, format=fmt)


def test_one_frame_inputs_are_valid(fixtures_dir: Path) -> None:
    """A 1-frame clip is valid input wherever a dataset has them (NW-UCLA); preprocessing
    resamples it. Checked for every text format that can express one frame."""
    msr = b"0.1 0.2 2.5 1\n" * 20
    pku = (" ".join(["0.5"] * 75 + ["0"] * 75) + "\n").encode()
    utk = (" ".join(["7"] + ["0.5"] * 60) + "\n").encode()
    ucla = json.dumps({"file_name": "a", "skeletons": [[[0.1, 0.2, 3.0]] * 20], "label": 1})
    lines = (fixtures_dir / "ntu" / "S999C001P001R001A005.skeleton").read_bytes().split(b"\r\n")
    ntu = b"\r\n".join([b"1", b"1", *lines[4:4 + 27]])
    for name, data in [("a01_s01_e01_skeleton3D.txt", msr), ("A01N01-L.txt", pku),
                       ("joints_s01_e01.txt", utk), ("u.json", ucla.encode()),
                       ("x.skeleton", ntu)]:
        [seq] = read_bytes(name, data)
        assert seq.num_frames == 1, name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([f for f in available_formats() if f != "pyskl"]),
       st.binary(min_size=0, max_size=600))
def test_random_bytes_raise_only_pose_format_errors(fmt: str, data: bytes) -> None:
    try:
        read_bytes("fuzz.input", data, format=fmt)
    except PoseFormatError as exc:
        assert exc.path == "fuzz.input"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32),
                          st.integers(-10**6, 10**6)), max_size=30),
       st.sampled_from([b" ", b"\t", b"  ", b"\r\n", b"\n"]))
def test_fast_float_parsing_matches_python(values: list, separator: bytes) -> None:
    text = separator.join(repr(v).encode() for v in values)
    parsed = fast_floats(text)
    np.testing.assert_array_equal(parsed, np.array([float(v) for v in values], dtype=np.float64))


def test_fixed_width_rows_names_the_bad_token() -> None:
    with pytest.raises(PoseFormatError, match="expected a number, found '0.3x'") as info:
        fixed_width_rows(b"1 2 3 4\n\n0.1 0.2 0.3x 1\n", "f.txt", 4, "x y z c")
    assert info.value.line == 3
    rows = fixed_width_rows(b"1 2 3 4\n\n5 6 7 8\n", "f.txt", 4, "x y z c")  # blank line skipped
    assert rows.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_check_finite_reports_the_first_bad_frame() -> None:
    data = np.zeros((5, 1, 2, 3))
    data[3, 0, 1, 2] = -np.inf
    with pytest.raises(PoseFormatError, match="-inf") as info:
        check_finite(data, "f")
    assert info.value.frame == 3


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 400) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["data", "frame_index", "skeleton", "pose", "score", "people", "pose_keypoints_2d",
         "joints3d", "frame_ids", "skeletons", "label", "file_name", "1"]), inner, max_size=4),
    max_leaves=30)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["kinetics", "openpose", "vibe", "ucla"]), _JSON_VALUES)
def test_arbitrary_json_raises_only_pose_format_errors(fmt: str, value: object) -> None:
    try:
        read_bytes("fuzz.json", json.dumps(value).encode(), format=fmt)
    except PoseFormatError as exc:
        assert exc.path == "fuzz.json"


def test_json_limits() -> None:
    with pytest.raises(PoseFormatError, match="unreadable JSON"):
        read_bytes("deep.json", b"[" * 100_000 + b"]" * 100_000, format="ucla")
    with pytest.raises(PoseFormatError, match="unreadable JSON"):
        read_bytes("big.json", b'{"label": ' + b"9" * 5000 + b"}", format="ucla")
