"""Kinetics-skeleton reader against the ST-GCN rules, on all 12 real clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import read_bytes, read_poses

VAL = ("__NrybzYzUg", "__PYrzYbzKE", "__U_scuxNlQ", "__lt03EF4ao", "__u6odV5hrI", "__vOysOPoCY",
       "__vzEs2wzdQ")
TRAIN_LABELS = {"___dTOdxzXY": (0, "jumping into pool"), "___qijXy2f0": (1, "playing harp"),
                "__0muxHV-Uw": (2, "folding napkins"), "__4frZhaVDs": (3, "braiding hair"),
                "__6LvmReo3Y": (4, "pushing cart")}


@pytest.fixture(scope="module")
def kinetics_dir(shared_data: Path) -> Path:
    return shared_data / "kinetics_skeleton_samples"


def reference_feeder(clip: dict) -> np.ndarray:
    """st-gcn feeder_kinetics.py, loop for loop, except frames at frame_index - 1.
    Returns (C=3, T, V=18, M=2)."""
    num_frames = max(f["frame_index"] for f in clip["data"])
    data = np.zeros((3, num_frames, 18, 5))
    for frame in clip["data"]:
        for m, skeleton in enumerate(frame["skeleton"]):
            if m >= 5:
                break
            data[0, frame["frame_index"] - 1, :, m] = skeleton["pose"][0::2]
            data[1, frame["frame_index"] - 1, :, m] = skeleton["pose"][1::2]
            data[2, frame["frame_index"] - 1, :, m] = skeleton["score"]
    data[0:2] = data[0:2] - 0.5
    data[0][data[2] == 0] = 0
    data[1][data[2] == 0] = 0
    sort_index = (-data[2, :, :, :].sum(axis=1)).argsort(axis=1, kind="stable")
    for t, order in enumerate(sort_index):
        data[:, t, :, :] = data[:, t, :, order].transpose((1, 2, 0))
    return data[:, :, :, :2]


@pytest.mark.parametrize("clip", VAL)
def test_val_clips_match_the_reference_feeder(kinetics_dir: Path, clip: str) -> None:
    path = kinetics_dir / "kinetics_val" / f"{clip}.json"
    raw = json.loads(path.read_text())
    [seq] = read_poses(path)
    assert (seq.layout, seq.channels, seq.fps) == ("coco18", ("x", "y", "score"), 30.0)
    assert (seq.label, seq.label_name, seq.name) == (raw["label_index"], raw["label"], clip)
    expected = reference_feeder(raw).transpose(1, 3, 2, 0)  # (C, T, V, M) -> (T, M, V, C)
    np.testing.assert_allclose(seq.data, expected, atol=1e-6)


def test_label_indices_match_the_original_index(kinetics_dir: Path) -> None:
    index = json.loads((kinetics_dir / "kinetics_val_label-old.json").read_text())
    assert len(index) == 19906
    for clip in VAL:
        [seq] = read_poses(kinetics_dir / "kinetics_val" / f"{clip}.json")
        assert (seq.label, seq.label_name) == (index[clip]["label_index"], index[clip]["label"])
    assert index["__PYrzYbzKE"]["label_index"] == 173


def test_rewritten_train_labels_keep_their_label_strings(kinetics_dir: Path) -> None:
    paths = sorted((kinetics_dir / "kinetics_train_labelidx_modified").glob("*.json"))
    assert len(paths) == len(TRAIN_LABELS)  # an empty folder must fail, not pass
    for path in paths:
        [seq] = read_poses(path)
        assert (seq.label, seq.label_name) == TRAIN_LABELS[seq.name]


def test_clip_with_269_empty_frames(kinetics_dir: Path) -> None:
    [seq] = read_poses(kinetics_dir / "kinetics_val" / "__u6odV5hrI.json")
    assert seq.data.shape == (299, 2, 18, 3)
    assert int((~seq.data.any(axis=(1, 2, 3))).sum()) == 269
    assert seq.meta["empty_frames"] == 269


def test_clip_with_11_persons_keeps_the_two_highest_scores(kinetics_dir: Path) -> None:
    path = kinetics_dir / "kinetics_val" / "__PYrzYbzKE.json"
    raw = json.loads(path.read_text())
    [seq] = read_poses(path)
    assert seq.meta["most_persons_in_a_frame"] == 11
    crowded = next(f for f in raw["data"] if len(f["skeleton"]) == 11)
    t = crowded["frame_index"] - 1
    first_five = sorted((sum(s["score"]) for s in crowded["skeleton"][:5]), reverse=True)
    np.testing.assert_allclose(seq.data[t, :, :, 2].sum(axis=1), first_five[:2], atol=1e-4)


def test_frames_are_placed_by_frame_index_not_position() -> None:
    person = {"pose": [0.6] * 36, "score": [1.0] * 18}
    clip = {"data": [{"frame_index": 3, "skeleton": [person]},
                     {"frame_index": 1, "skeleton": [person]}], "label": "x", "label_index": 7}
    [seq] = read_bytes("clip.json", json.dumps(clip).encode())
    assert seq.data.shape == (3, 2, 18, 3)
    assert seq.data[:, 0].any(axis=(1, 2)).tolist() == [True, False, True]
    np.testing.assert_allclose(seq.data[0, 0, 0], [0.1, 0.1, 1.0], atol=1e-6)


@pytest.mark.parametrize("clip, problem", [
    ({"data": []}, "zero frames"),
    ({"frames": []}, "wrong schema"),
    ({"data": [{"frame_index": 0, "skeleton": []}]}, "out of range"),
    ({"data": [{"frame_index": 1}]}, "'skeleton' list"),
    ({"data": [{"frame_index": 1, "skeleton": [{"pose": ["a"] * 36, "score": [1] * 18}]}]},
     "non-number"),
    ({"data": [{"frame_index": 10**9, "skeleton": []}]}, "out of range"),
])
def test_schema_errors(clip: dict, problem: str) -> None:
    with pytest.raises(PoseFormatError, match=problem) as info:
        read_bytes("bad.json", json.dumps(clip).encode(), format="kinetics")
    assert info.value.path == "bad.json"
