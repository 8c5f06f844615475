"""PKU-MMD reader: the real A10N08-L sequence, the declared-synthetic label file, label lookup."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import read_bytes, read_poses
from codt_deploy.readers.pku import find_label_file, parse_labels


@pytest.fixture(scope="module")
def pku_file(shared_data: Path) -> Path:
    return shared_data / "pku_mmd_sample" / "A10N08-L.txt"


@pytest.fixture(scope="module")
def label_fixture(fixtures_dir: Path) -> Path:
    return fixtures_dir / "pku_mmd" / "A10N08-L_label.txt"


def test_whole_sequence_without_labels(pku_file: Path) -> None:
    [seq] = read_poses(pku_file)
    assert seq.data.shape == (1040, 2, 25, 3)
    assert (seq.layout, seq.fps, seq.name, seq.label, seq.segment) == \
        ("ntu25", 30.0, "A10N08-L", None, None)
    second_present = seq.data[:, 1].any(axis=(1, 2))
    assert int(second_present.sum()) == 728 and int((~second_present).sum()) == 312
    assert seq.data[:, 0].any(axis=(1, 2)).all()
    first_line = [float(v) for v in pku_file.read_text().split("\n", 1)[0].split()]
    np.testing.assert_allclose(seq.data[0].reshape(-1), first_line, atol=1e-6)


def test_label_rows_are_one_based_inclusive_and_clamped(pku_file: Path,
                                                        label_fixture: Path) -> None:
    [whole] = read_poses(pku_file, label_file=False)
    clips = read_poses(pku_file, label_file=label_fixture)
    # fixture rows: 3,1,150  17,200,410  41,480,700  8,760,1100 (past the 1,040 frames)
    assert [c.segment for c in clips] == [(1, 150), (200, 410), (480, 700), (760, 1040)]
    assert [c.label for c in clips] == [2, 16, 40, 7]
    assert [c.name for c in clips] == [f"A10N08-L#{i}" for i in range(4)]
    for clip in clips:
        assert clip.segment is not None
        first, last = clip.segment
        assert clip.num_frames == last - first + 1
        np.testing.assert_array_equal(clip.data, whole.data[first - 1:last])
    assert clips[1].meta["confidence"] == 2.0


def test_label_file_found_beside_the_skeleton(pku_file: Path, label_fixture: Path,
                                              tmp_path: Path) -> None:
    (tmp_path / "Label").mkdir()
    skeleton = tmp_path / pku_file.name
    shutil.copy(pku_file, skeleton)
    assert find_label_file(skeleton) is None
    shutil.copy(label_fixture, tmp_path / "Label" / pku_file.name)
    assert find_label_file(skeleton) == tmp_path / "Label" / pku_file.name
    assert len(read_poses(skeleton)) == 4
    assert len(read_poses(skeleton, label_file=False)) == 1


def test_label_file_as_bytes_for_uploads(pku_file: Path, label_fixture: Path) -> None:
    clips = read_bytes("A10N08-L.txt", pku_file.read_bytes(), label_file=label_fixture.read_bytes())
    assert [c.label for c in clips] == [2, 16, 40, 7]
    assert clips[0].meta["label_file"] == "<label file>"


def test_segment_entirely_past_the_end_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    rows = np.zeros((10, 150))
    rows[:, :75] = 1.0
    text = "\n".join(" ".join("1.0" if v else "0" for v in row) for row in rows).encode()
    clips = read_bytes("0002-L.txt", text, label_file=b"1,2,4,1\n5,20,30,1\n")
    assert [c.segment for c in clips] == [(2, 4)]
    assert "past the 10 frames" in caplog.text


@pytest.mark.parametrize("content, problem, line", [
    (b"1,2,3,1\nx,2,3,1\n", "integer", 2),
    (b"1,2\n", "found 2 fields", 1),
    (b"1,30,20,1\n", "start_frame <= end_frame", 1),
    (b"0,1,20,1\n", "action_id >= 1", 1),
    (b"\n\n", "no rows", None),
])
def test_bad_label_files(content: bytes, problem: str, line: int | None) -> None:
    with pytest.raises(PoseFormatError, match=problem) as info:
        parse_labels(content, "labels.txt")
    assert info.value.line == line and info.value.path == "labels.txt"


def test_wrong_value_count_names_the_line() -> None:
    good = " ".join(["0.5"] * 150)
    text = "\n".join([good, good, " ".join(["0.5"] * 75), good]).encode()
    with pytest.raises(PoseFormatError, match="expected 150 values, found 75") as info:
        read_bytes("A01N01-L.txt", text, format="pku")
    assert info.value.line == 3
