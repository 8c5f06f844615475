"""Kinetics-skeleton JSON reader (ST-GCN's OpenPose COCO-18 clips; docs/FORMATS.md §1
"Kinetics-skeleton JSON").

Follows the reference feeder (yysijie/st-gcn ``feeder/feeder_kinetics.py``) with one fix: frames are
placed at ``frame_index - 1`` (the reference uses ``frame_index`` itself, a one-frame shift). Per
frame it takes at most 5 persons in file order, subtracts 0.5 from x and y, zeroes x and y where the
score is 0, ranks persons by summed score (stable for ties) and keeps the top 2. Persons are not
tracked across frames.
"""

from __future__ import annotations

import numpy as np

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._text import (
    as_float_array,
    check_dense_size,
    check_finite,
    check_frame_index,
    load_json,
    require_frames,
    sample_name,
)
from codt_deploy.sequence import PoseSequence

LAYOUT = "coco18"
FPS = 30.0
NUM_JOINTS = 18
PERSONS_IN = 5  # persons read per frame, in file order
PERSONS_OUT = 2  # persons kept per frame after ranking by summed score
_SCHEMA = ('{"data": [{"frame_index": 1, "skeleton": [{"pose": [x0, y0, ...], "score": [...]}]}], '
           '"label": ..., "label_index": ...}')


def _frames(obj: object, source: str) -> list[dict]:
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise PoseFormatError(source, f"wrong schema for Kinetics-skeleton JSON; expected "
                                      f"{_SCHEMA}")
    frames = obj["data"]
    require_frames(len(frames), source)
    for position, frame in enumerate(frames):
        index = frame.get("frame_index") if isinstance(frame, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or \
                not isinstance(frame.get("skeleton"), list):
            raise PoseFormatError(source, f"data[{position}] needs an integer 'frame_index' and a "
                                          f"'skeleton' list; expected {_SCHEMA}")
        check_frame_index(index - 1, source, f"data[{position}].frame_index - 1")
    return frames


def _person(skeleton: object, source: str, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """One person's ``pose`` (18, 2) and ``score`` (18,)."""
    if not isinstance(skeleton, dict) or "pose" not in skeleton or "score" not in skeleton:
        raise PoseFormatError(source, "a skeleton entry needs 'pose' and 'score'", frame=frame)
    pose = as_float_array(skeleton["pose"], source, "pose", frame=frame)
    score = as_float_array(skeleton["score"], source, "score", frame=frame)
    if pose.shape != (2 * NUM_JOINTS,) or score.shape != (NUM_JOINTS,):
        raise PoseFormatError(source, f"expected {2 * NUM_JOINTS} pose values and {NUM_JOINTS} "
                                      f"scores (coco18), found shapes {pose.shape} and "
                                      f"{score.shape}", frame=frame)
    return pose.reshape(NUM_JOINTS, 2), score  # (36,) x0 y0 x1 ... -> (V, 2)


def rank_persons(poses: np.ndarray, keep: int) -> np.ndarray:
    """Per frame, order persons by summed score (channel 2), highest first; keep ``keep``.

    (T, P, V, 3) -> (T, keep, V, 3); pads with zero persons when P < keep.
    """
    if poses.shape[1] < keep:
        pad = np.zeros((poses.shape[0], keep - poses.shape[1], *poses.shape[2:]), poses.dtype)
        poses = np.concatenate([poses, pad], axis=1)  # (T, keep, V, 3)
    order = np.argsort(-poses[..., 2].sum(axis=2), axis=1, kind="stable")  # (T, P)
    ranked = np.take_along_axis(poses, order[:, :, None, None], axis=1)  # (T, P, V, 3)
    return ranked[:, :keep]


def parse(data: bytes, source: str) -> list[PoseSequence]:
    obj = load_json(data, source)
    frames = _frames(obj, source)
    assert isinstance(obj, dict)  # _frames checked the schema
    num_frames = max(frame["frame_index"] for frame in frames)
    check_dense_size((num_frames, PERSONS_IN, NUM_JOINTS, 3), 8, len(data), source,
                     f"frame_index up to {num_frames}")
    poses = np.zeros((num_frames, PERSONS_IN, NUM_JOINTS, 3))  # (T, 5, V, C=(x, y, score))
    most_persons = 0
    for frame in frames:
        t = frame["frame_index"] - 1
        most_persons = max(most_persons, len(frame["skeleton"]))
        for m, skeleton in enumerate(frame["skeleton"][:PERSONS_IN]):
            pose, score = _person(skeleton, source, t)
            poses[t, m, :, :2] = pose
            poses[t, m, :, 2] = score
    check_finite(poses, source, what="poses or scores")
    poses[..., :2] -= 0.5
    poses[..., :2][poses[..., 2] == 0] = 0.0
    label_index, label = obj.get("label_index"), obj.get("label")
    return [PoseSequence(
        data=rank_persons(poses, PERSONS_OUT).astype(np.float32),  # (T, 2, V, C)
        layout=LAYOUT, source=source, channels=("x", "y", "score"), fps=FPS,
        name=sample_name(source, (".json",)),
        label=label_index if isinstance(label_index, int) and not isinstance(label_index, bool)
        else None,
        label_name=label if isinstance(label, str) else None,
        meta={"most_persons_in_a_frame": most_persons,
              "empty_frames": int((~poses[..., 2].any(axis=(1, 2))).sum())},
    )]
