"""MSR Action3D reader on all 567 real files (incl. the all-zero and the 936-frame file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import read_poses


@pytest.fixture(scope="module")
def msr_dir(shared_data: Path) -> Path:
    return shared_data / "msr_action3d"


def test_every_real_file(msr_dir: Path) -> None:
    files = sorted(msr_dir.glob("*_skeleton3D.txt"))
    assert len(files) == 567
    frames, failed = {}, []
    for path in files:
        try:
            [seq] = read_poses(path)
        except PoseFormatError as exc:
            failed.append((path.name, exc.problem))
            continue
        assert seq.layout == "msr20" and seq.data.shape[1:] == (1, 20, 3)
        assert seq.label == int(path.name[1:3]) - 1 and 0 <= seq.label < 20
        frames[seq.name] = seq.num_frames
    assert failed == [("a13_s09_e02_skeleton3D.txt",
                       "all coordinates are zero: the file holds no skeleton")]
    assert frames["a13_s09_e03"] == 936 and min(frames.values()) == 13
    standard = (msr_dir / "files_used_in_cvpr12_paper.txt").read_text().split()
    assert len(standard) == 557 and set(standard) <= set(frames)


def test_values_and_confidence_column(msr_dir: Path) -> None:
    path = msr_dir / "a01_s01_e01_skeleton3D.txt"
    rows = np.loadtxt(path)  # (T * 20, 4)
    [seq] = read_poses(path)
    assert (seq.name, seq.fps) == ("a01_s01_e01", 15.0)
    np.testing.assert_allclose(seq.data.reshape(-1, 3), rows[:, :3], atol=1e-6)
    np.testing.assert_allclose(seq.meta["confidence"].reshape(-1), rows[:, 3], atol=1e-6)
