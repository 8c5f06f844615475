"""Fixtures derived from the real samples at test time (never committed: the datasets may not be
redistributed). Each skips when the real data is absent, through ``shared_data``."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

NTU_NAMES = ("S001C001P001R001A011", "S001C003P008R002A058", "S002C001P003R001A003",
             "S003C001P015R001A034", "S004C002P003R001A017")
KINETICS_CLIP = "kinetics_val/__vOysOPoCY.json"  # 3 persons at most, 82 empty frames
OPENPOSE_DROPPED_FRAME = 12  # 0-based frame whose file is left out (a non-empty one)


@pytest.fixture(scope="session")
def ntu_dir(shared_data: Path) -> Path:
    return shared_data / "ntu_rgbd_samples"


@pytest.fixture(scope="session")
def ntu_with_empty_frames(ntu_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 10 frames of a real 1-body NTU file with 0-body frames inserted at 0, 4 and 11
    (13 frames in all); CRLF kept."""
    lines = (ntu_dir / f"{NTU_NAMES[0]}.skeleton").read_bytes().split(b"\r\n")
    frames, i = [], 1
    for _ in range(10):
        count = int(lines[i])
        size = 1 + count * 27
        frames.append(lines[i:i + size])
        i += size
    empty = [b"0"]
    out = [empty, *frames[:3], empty, *frames[3:9], empty, frames[9]]
    text = b"\r\n".join([b"13"] + [line for frame in out for line in frame]) + b"\r\n"
    path = tmp_path_factory.mktemp("ntu_trimmed") / f"{NTU_NAMES[0]}.skeleton"
    path.write_bytes(text)
    return path


@pytest.fixture(scope="session")
def kinetics_clip(shared_data: Path) -> Path:
    return shared_data / "kinetics_skeleton_samples" / KINETICS_CLIP


@pytest.fixture(scope="session")
def openpose_from_kinetics(kinetics_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Kinetics clip as OpenPose COCO-18 frame files in 340x256 pixels, one file dropped."""
    folder = tmp_path_factory.mktemp("openpose") / kinetics_clip.stem
    folder.mkdir()
    clip = json.loads(kinetics_clip.read_text())
    for frame in clip["data"]:
        number = frame["frame_index"] - 1
        if number == OPENPOSE_DROPPED_FRAME:
            continue
        people = []
        for person in frame["skeleton"]:
            xy = np.array(person["pose"]).reshape(18, 2) * [340.0, 256.0]
            keypoints = np.hstack([xy, np.array(person["score"])[:, None]])  # (18, 3)
            people.append({"person_id": [-1], "pose_keypoints_2d": keypoints.ravel().tolist()})
        name = f"{kinetics_clip.stem}_{number:012d}_keypoints.json"
        (folder / name).write_text(json.dumps({"version": 1.3, "people": people}))
    return folder


def _pyskl_annotation(name: str, label: int | None, keypoint: np.ndarray,
                      score: np.ndarray | None, img_shape: tuple[int, int]) -> dict:
    ann = {"frame_dir": name, "label": label, "img_shape": img_shape,
           "original_shape": img_shape, "total_frames": keypoint.shape[1],
           "keypoint": keypoint.astype(np.float32)}
    if score is not None:
        ann["keypoint_score"] = score.astype(np.float32)
    return ann


@pytest.fixture(scope="session")
def pyskl_pickles(ntu_dir: Path, shared_data: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """pyskl-schema pickles made with the project's readers: 3-D from the 5 NTU files, 2-D (with
    keypoint_score, pixels) from the 7 Kinetics validation clips."""
    from codt_deploy.readers import read_poses

    folder = tmp_path_factory.mktemp("pyskl")
    ntu = [read_poses(ntu_dir / f"{n}.skeleton")[0] for n in NTU_NAMES]
    ntu_ann = [_pyskl_annotation(s.name, s.label, s.data.transpose(1, 0, 2, 3), None, (1080, 1920))
               for s in ntu]  # (T, M, V, C) -> (M, T, V, C)
    kinetics = [read_poses(p)[0] for p in
                sorted((shared_data / "kinetics_skeleton_samples" / "kinetics_val").glob("*.json"))]
    kin_ann = []
    for s in kinetics:
        xy = (s.data[..., :2] + 0.5) * [340.0, 256.0] * (s.data[..., 2:] > 0)  # (T, M, V, 2)
        kin_ann.append(_pyskl_annotation(s.name, s.label, xy.transpose(1, 0, 2, 3),
                                         s.data[..., 2].transpose(1, 0, 2), (256, 340)))
    paths = {}
    for key, annotated in (("ntu", ntu_ann), ("kinetics", kin_ann)):
        content = {"split": {"xsub_val": [a["frame_dir"] for a in annotated[:2]]},
                   "annotations": annotated}
        paths[key] = folder / f"{key}_pyskl.pkl"
        paths[key].write_bytes(pickle.dumps(content, protocol=4))
    return paths


@pytest.fixture(scope="session")
def crossclr_arrays(ntu_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CrosSCLR generator output for the 5 NTU files: ``val_data.npy`` (5, 3, 300, 25, 2) with
    ``val_label.pkl`` (names with .skeleton, labels) in one folder, ``val_label.npy`` in another."""
    from codt_deploy.readers import read_poses

    sequences = [read_poses(ntu_dir / f"{n}.skeleton")[0] for n in NTU_NAMES]
    data = np.zeros((len(sequences), 3, 300, 25, 2), np.float32)  # (N, C, T, V, M)
    for i, s in enumerate(sequences):
        data[i, :, :s.num_frames, :, :s.num_persons] = s.data[:, :2].transpose(3, 0, 2, 1)
    labels = [s.label for s in sequences]
    with_pkl = tmp_path_factory.mktemp("crossclr_pkl")
    np.save(with_pkl / "val_data.npy", data)
    (with_pkl / "val_label.pkl").write_bytes(
        pickle.dumps(([f"{n}.skeleton" for n in NTU_NAMES], labels)))
    with_npy = tmp_path_factory.mktemp("crossclr_npy")
    np.save(with_npy / "val_position.npy", data[:, :, :50])
    np.save(with_npy / "val_label.npy", np.array(labels, np.int64)[:, None])
    return {"pkl": with_pkl / "val_data.npy", "npy": with_npy / "val_position.npy"}
