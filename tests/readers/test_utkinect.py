"""UTKinect-Action3D: segments by inclusive frame ids, the NaN segment, 199 of 200 segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import read_bytes, read_poses
from codt_deploy.readers.utkinect import CLASSES, parse_labels


@pytest.fixture(scope="module")
def utk_dir(shared_data: Path) -> Path:
    return shared_data / "utkinect_action3d"


def test_all_segments_of_the_20_sequences(utk_dir: Path) -> None:
    files = sorted(utk_dir.glob("joints_s*_e*.txt"))
    assert len(files) == 20
    segments = [seg for path in files for seg in read_poses(path)]
    assert len(segments) == 199  # s10_e02 carry is NaN NaN
    assert "s10_e02#carry" not in {s.name for s in segments}
    labels = []
    for seg in segments:
        assert seg.segment is not None and seg.label is not None
        first, last = seg.segment
        ids = seg.meta["frame_ids"]
        assert seg.layout == "kinect20" and seg.data.shape[1:] == (1, 20, 3)
        assert first <= ids.min() and ids.max() <= last and len(ids) == seg.num_frames
        assert CLASSES[seg.label] == seg.label_name == seg.name.split("#")[1]
        labels.append(seg.label)
    counts = np.bincount(labels, minlength=10)
    assert counts.tolist() == [20, 20, 20, 20, 19, 20, 20, 20, 20, 20]


def test_segments_select_rows_by_inclusive_frame_id(utk_dir: Path) -> None:
    path = utk_dir / "joints_s01_e01.txt"
    rows = np.loadtxt(path)  # (R, 61)
    by_name = {s.name: s for s in read_poses(path)}
    pull, push = by_name["s01_e01#pull"], by_name["s01_e01#push"]  # 1640-1686, 1686-1748
    assert (pull.segment, push.segment) == ((1640, 1686), (1686, 1748))
    selected = rows[(rows[:, 0] >= 1640) & (rows[:, 0] <= 1686)]
    np.testing.assert_allclose(pull.data.reshape(len(selected), -1), selected[:, 1:], atol=1e-6)
    assert 1686 in pull.meta["frame_ids"] and 1686 in push.meta["frame_ids"]  # touching bounds


def test_frame_ids_repeat_and_skip(utk_dir: Path) -> None:
    [whole] = read_poses(utk_dir / "joints_s01_e01.txt", label_file=False)
    steps = set(np.diff(whole.meta["frame_ids"]).tolist())
    assert 0 in steps and 2 in steps and whole.label is None


def test_modified_label_file(utk_dir: Path) -> None:
    path = utk_dir / "joints_s01_e02.txt"
    original = {s.name: s.segment for s in read_poses(path)}
    modified = {s.name: s.segment for s in
                read_poses(path, label_file=utk_dir / "actionLabel_modified.txt")}
    assert original["s01_e02#walk"] == (154, 192) and modified["s01_e02#walk"] == (154, 270)


def test_label_file_as_bytes(utk_dir: Path) -> None:
    path = utk_dir / "joints_s02_e01.txt"
    labels = (utk_dir / "actionLabel.txt").read_bytes()
    segments = read_bytes("joints_s02_e01.txt", path.read_bytes(), label_file=labels)
    assert len(segments) == 10


@pytest.mark.parametrize("content, problem, line", [
    (b"s01_e01\nwalk: 1 x\n", "integer frame id or NaN", 2),
    (b"s01_e01\nrun: 1 5\n", "unknown action 'run'", 2),
    (b"walk: 1 5\n", "sXX_eYY", 1),
])
def test_bad_label_files(content: bytes, problem: str, line: int) -> None:
    with pytest.raises(PoseFormatError, match=problem) as info:
        parse_labels(content, "actionLabel.txt")
    assert info.value.line == line


def test_sequence_missing_from_the_label_file(utk_dir: Path) -> None:
    path = utk_dir / "joints_s01_e01.txt"
    with pytest.raises(PoseFormatError, match="no entry for this sequence"):
        read_poses(path, label_file=b"s02_e01\nwalk: 1 5\n")
