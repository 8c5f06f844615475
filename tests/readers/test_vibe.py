"""VIBE / Skeletics JSON: track selection, placement at frame_ids, correct interpolation weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import read_bytes, read_poses
from codt_deploy.readers.vibe import interpolate_track


@pytest.fixture(scope="module")
def gappy(fixtures_dir: Path) -> tuple[Path, dict]:
    path = fixtures_dir / "vibe" / "gappy_tracks.json"
    return path, json.loads(path.read_text())


def test_two_longest_tracks_placed_at_their_frame_ids(gappy: tuple[Path, dict]) -> None:
    path, raw = gappy
    [seq] = read_poses(path)
    assert (seq.layout, seq.channels) == ("body25", ("x", "y", "z"))
    assert seq.meta["track_ids"] == ["7", "3"]  # 6 and 4 frames; "12" (2) and "20" (0) dropped
    assert seq.data.shape == (11, 2, 25, 3)  # last frame id 10
    for m, track in enumerate(("7", "3")):
        joints = np.array(raw[track]["joints3d"])[:, :25]
        np.testing.assert_allclose(seq.data[raw[track]["frame_ids"], m], joints, atol=1e-6)
    present = np.any(seq.data, axis=(2, 3))  # (T, M)
    assert present[:, 0].tolist() == [True] * 10 + [False]  # 0..9, gaps filled
    assert present[:, 1].tolist() == [False, False] + [True] * 9  # 2..10


def test_gap_interpolation_uses_the_correct_weights(gappy: tuple[Path, dict]) -> None:
    path, raw = gappy
    [seq] = read_poses(path)
    joints = np.array(raw["7"]["joints3d"])[:, :25]
    at_2, at_5 = joints[2], joints[3]  # frame ids 2 and 5
    np.testing.assert_allclose(seq.data[3, 0], at_2 + (at_5 - at_2) / 3, atol=1e-5)
    np.testing.assert_allclose(seq.data[4, 0], at_2 + 2 * (at_5 - at_2) / 3, atol=1e-5)
    swapped = at_2 * (1 / 3) + at_5 * (2 / 3)  # the reference script's weights at frame 3
    assert not np.allclose(seq.data[3, 0], swapped, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=2, max_size=8, unique=True),
       st.floats(-3, 3), st.floats(-3, 3))
def test_interpolation_reproduces_linear_motion(ids: list[int], slope: float,
                                                offset: float) -> None:
    frame_ids = np.array(sorted(ids))
    joints = (offset + slope * frame_ids)[:, None, None] * np.ones((1, 2, 3))  # (F, V, C)
    filled = interpolate_track(frame_ids, joints)
    frames = np.arange(frame_ids[0], frame_ids[-1] + 1)
    np.testing.assert_allclose(filled[:, 0, 0], offset + slope * frames, atol=1e-9)


def test_empty_file_means_no_person(fixtures_dir: Path) -> None:
    with pytest.raises(PoseFormatError, match="no person") as info:
        read_poses(fixtures_dir / "vibe" / "no_person.json")
    assert info.value.path.endswith("no_person.json")
    with pytest.raises(PoseFormatError, match="every track is empty"):
        read_bytes("v.json", b'{"1": {"joints3d": [], "frame_ids": []}}', format="vibe")


def _one_track(frame_ids: list, joints: np.ndarray) -> bytes:
    return json.dumps({"5": {"joints3d": joints.tolist(), "frame_ids": frame_ids}}).encode()


@pytest.mark.parametrize("content, problem", [
    (_one_track([0, 1], np.zeros((2, 24, 3))), r"expected \(F, 49, 3\)"),
    (_one_track([0, 1, 2], np.zeros((2, 49, 3))), "one per joints3d row"),
    (_one_track([0, 0], np.zeros((2, 49, 3))), "duplicate frame id 0"),
    (_one_track([0, -4], np.zeros((2, 49, 3))), "out of range"),
    (_one_track([0, 1.5], np.zeros((2, 49, 3))), "integers"),
    (json.dumps({"5": {"joints3d": [[[1, 2]]]}}).encode(), "'frame_ids'"),
    (json.dumps([1, 2]).encode(), "wrong schema"),
    (_one_track([0, 1], np.full((2, 49, 3), np.nan)), "non-finite"),
])
def test_bad_tracks(content: bytes, problem: str) -> None:
    with pytest.raises(PoseFormatError, match=problem):
        read_bytes("clip.json", content, format="vibe")


def test_unsorted_frame_ids_are_sorted() -> None:
    joints = np.arange(3 * 49 * 3, dtype=float).reshape(3, 49, 3)
    [seq] = read_bytes("clip.json", _one_track([4, 0, 2], joints), format="vibe")
    np.testing.assert_allclose(seq.data[[4, 0, 2], 0], joints[:, :25], atol=1e-3)
    np.testing.assert_allclose(seq.data[1, 0], (joints[1] + joints[2])[:25] / 2, atol=1e-3)
