"""OpenPose per-frame JSON: a folder cut from a real Kinetics clip, and a synthetic BODY_25 one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import read_bytes, read_poses
from codt_deploy.readers.openpose import read_frames

from .conftest import OPENPOSE_DROPPED_FRAME


def test_folder_from_kinetics_matches_the_kinetics_reader(openpose_from_kinetics: Path,
                                                          kinetics_clip: Path) -> None:
    [seq] = read_poses(openpose_from_kinetics, image_size=(340, 256))
    [kinetics] = read_poses(kinetics_clip)
    assert (seq.layout, seq.channels, seq.name) == ("coco18", ("x", "y", "score"),
                                                    kinetics_clip.stem)
    assert seq.data.shape == kinetics.data.shape
    assert seq.meta["missing_frames"] == 1 and seq.meta["units"] == "normalised"
    assert not seq.data[OPENPOSE_DROPPED_FRAME].any()
    assert kinetics.data[OPENPOSE_DROPPED_FRAME].any()  # the dropped frame was not empty
    kept = [t for t in range(seq.num_frames) if t != OPENPOSE_DROPPED_FRAME]
    # Kinetics subtracts 0.5 from x, y where the score is non-zero; OpenPose keeps [0, 1]
    scored = kinetics.data[kept, ..., 2:] > 0
    expected_xy = np.where(scored, kinetics.data[kept, ..., :2] + 0.5, 0.0)
    np.testing.assert_allclose(seq.data[kept, ..., :2], expected_xy, atol=1e-5)
    np.testing.assert_allclose(seq.data[kept, ..., 2], kinetics.data[kept, ..., 2], atol=1e-6)


def test_pixels_are_kept_without_image_size(openpose_from_kinetics: Path) -> None:
    [pixels] = read_poses(openpose_from_kinetics)
    [normalised] = read_poses(openpose_from_kinetics, image_size=(340, 256))
    assert pixels.meta["units"] == "pixels"
    np.testing.assert_allclose(pixels.data[..., :2], normalised.data[..., :2] * [340, 256],
                               rtol=1e-5, atol=1e-3)
    assert pixels.data[..., 0].max() > 1.5  # really pixels


def test_synthetic_body25_folder(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "openpose" / "synthetic_body25"
    [seq] = read_poses(folder)
    assert seq.layout == "body25" and seq.data.shape == (6, 2, 25, 3)
    assert seq.data.any(axis=(1, 2, 3)).tolist() == [True, True, False, True, False, True]
    people = json.loads((folder / "clip_000000000001_keypoints.json").read_text())["people"]
    sums = sorted((sum(p["pose_keypoints_2d"][2::3]) for p in people), reverse=True)
    assert len(sums) == 3
    np.testing.assert_allclose(seq.data[1, :, :, 2].sum(axis=1), sums[:2], rtol=1e-5)
    assert seq.meta["most_persons_in_a_frame"] == 3
    [wide] = read_poses(folder, max_persons=3)
    assert wide.num_persons == 3


def test_single_frame_file_and_upload(fixtures_dir: Path) -> None:
    path = fixtures_dir / "openpose" / "synthetic_body25" / "clip_000000000000_keypoints.json"
    [from_path] = read_poses(path)
    [from_bytes] = read_bytes(path.name, path.read_bytes())
    assert from_path.data.shape == (1, 2, 25, 3)
    np.testing.assert_array_equal(from_path.data, from_bytes.data)


def test_several_videos_from_archive_members(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "openpose" / "synthetic_body25"
    members = [(f"a.zip::{p.name}", p.read_bytes()) for p in sorted(folder.iterdir())]
    members.append(("a.zip::other_000000000002_keypoints.json", members[0][1]))
    sequences = read_frames(members, "a.zip")
    assert [(s.name, s.num_frames) for s in sequences] == [("clip", 6), ("other", 3)]


@pytest.mark.parametrize("content, problem", [
    ({"people": [{"pose_keypoints_2d": [1.0] * 60}]}, "expected 75 .BODY_25. or 54"),
    ({"persons": []}, "wrong schema"),
    ({"people": [{"pose_keypoints_2d": "1 2 3"}]}, "expected a list of numbers"),
    ({"people": [{"pose_keypoints_2d": [1.0] * 75}, {"pose_keypoints_2d": [1.0] * 54}]},
     "different layouts"),
])
def test_bad_frames(content: dict, problem: str) -> None:
    with pytest.raises(PoseFormatError, match=problem) as info:
        read_bytes("v_000000000000_keypoints.json", json.dumps(content).encode())
    assert info.value.path == "v_000000000000_keypoints.json"


def test_empty_folder_and_nobody_and_bad_image_size(tmp_path: Path, fixtures_dir: Path) -> None:
    with pytest.raises(PoseFormatError, match="no OpenPose"):
        read_poses(tmp_path, format="openpose")
    (tmp_path / "v_000000000000_keypoints.json").write_text('{"people": []}')
    with pytest.raises(PoseFormatError, match="no person in any of the 1 frame"):
        read_poses(tmp_path)
    with pytest.raises(PoseFormatError, match="image_size must be"):
        read_poses(fixtures_dir / "openpose" / "synthetic_body25", image_size=(0, 10))
