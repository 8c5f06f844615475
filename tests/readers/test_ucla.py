"""NW-UCLA JSON reader on all 1,484 real clips, including the two 1-frame clips."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import read_bytes, read_poses
from codt_deploy.readers.ucla import CLASSES


@pytest.fixture(scope="module")
def ucla_dir(shared_data: Path) -> Path:
    return shared_data / "nw_ucla"


def test_every_real_clip(ucla_dir: Path) -> None:
    files = sorted(ucla_dir.glob("*.json"))
    assert len(files) == 1484
    views: Counter[str] = Counter()
    one_frame: list[str] = []
    for path in files:
        [seq] = read_poses(path)
        assert seq.layout == "kinect20" and seq.data.shape[1:] == (1, 20, 3)
        assert seq.label is not None
        assert seq.name == path.stem and seq.label_name == CLASSES[seq.label]
        views[seq.name[-3:]] += 1
        if seq.num_frames == 1:
            one_frame.append(seq.name)
    assert views["v01"] + views["v02"] == 1020 and views["v03"] == 464
    assert one_frame == ["a02_s09_e04_v02", "a02_s09_e04_v03"]


def test_labels_and_values(ucla_dir: Path) -> None:
    path = ucla_dir / "a12_s01_e00_v01.json"
    raw = json.loads(path.read_text())
    [seq] = read_poses(path)
    assert (raw["label"], seq.label, seq.label_name) == (10, 9, "carry")
    np.testing.assert_allclose(seq.data[:, 0], np.array(raw["skeletons"]), atol=1e-6)


def test_one_frame_clip_is_valid(ucla_dir: Path) -> None:
    [seq] = read_poses(ucla_dir / "a02_s09_e04_v02.json")
    assert seq.data.shape == (1, 1, 20, 3) and seq.data.any()


@pytest.mark.parametrize("clip, problem", [
    ({"file_name": "x", "skeletons": [[[0, 0, 1]] * 20], "label": 11}, "expected an integer 1..10"),
    ({"file_name": "x", "skeletons": [[[0, 0]] * 20]}, r"expected \[T\]\[20\]\[3\]"),
    ({"file_name": "x", "skeleton": []}, "wrong schema"),
    ({"file_name": "x", "skeletons": "none"}, "zero frames"),
])
def test_bad_clips(clip: dict, problem: str) -> None:
    with pytest.raises(PoseFormatError, match=problem):
        read_bytes("a01_s01_e00_v01.json", json.dumps(clip).encode(), format="ucla")


def test_missing_label_is_none() -> None:
    clip = {"file_name": "", "skeletons": [[[0.1, 0.2, 3.0]] * 20] * 2}
    [seq] = read_bytes("mine.json", json.dumps(clip).encode(), format="ucla")
    assert (seq.label, seq.label_name, seq.name) == (None, None, "mine")
