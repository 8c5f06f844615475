"""Northwestern-UCLA JSON reader, CTR-GCN form (docs/FORMATS.md §1 "NW-UCLA").

``{"file_name": "a01_s01_e00_v01", "skeletons": [T][20][3], "label": 1..10}``, layout kinect20.
One-frame clips (``a02_s09_e04_v02``/``_v03``) are valid input; preprocessing resamples them.
A file whose coordinates are all zero holds no skeleton and is refused; so are booleans.
"""

from __future__ import annotations

import numpy as np

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._text import (
    as_float_array,
    check_finite,
    load_json,
    require_frames,
    require_pose,
    sample_name,
)
from codt_deploy.sequence import PoseSequence

LAYOUT = "kinect20"
NUM_JOINTS = 20
#: Label 1..10 -> name (actions a01-a06, a08, a09, a11, a12).
CLASSES = ("pick up with one hand", "pick up with two hands", "drop trash", "walk around",
           "sit down", "stand up", "donning", "doffing", "throw", "carry")


def _skeletons(value: object, source: str) -> np.ndarray:
    if isinstance(value, list):
        for frame, joints in enumerate(value):  # find a ragged frame before numpy does
            if not isinstance(joints, list) or len(joints) != NUM_JOINTS:
                found = len(joints) if isinstance(joints, list) else type(joints).__name__
                raise PoseFormatError(source, f"expected {NUM_JOINTS} joints (kinect20), found "
                                              f"{found}", frame=frame)
    poses = as_float_array(value, source, "skeletons")
    if poses.ndim != 3 or poses.shape[1:] != (NUM_JOINTS, 3):
        raise PoseFormatError(source, f"skeletons has shape {poses.shape}; expected "
                                      f"[T][{NUM_JOINTS}][3]")
    return poses


def parse(data: bytes, source: str) -> list[PoseSequence]:
    obj = load_json(data, source)
    if not isinstance(obj, dict) or "skeletons" not in obj:
        raise PoseFormatError(source, 'wrong schema for NW-UCLA JSON; expected {"file_name": '
                                      '..., "skeletons": [T][20][3], "label": 1..10}')
    raw = obj["skeletons"]
    require_frames(len(raw) if isinstance(raw, list) else 0, source)
    poses = _skeletons(raw, source)
    check_finite(poses, source)
    require_pose(poses, source)
    label = obj.get("label")
    if label is not None and (not isinstance(label, int) or isinstance(label, bool)
                              or not 1 <= label <= len(CLASSES)):
        raise PoseFormatError(source, f"label {label!r}; expected an integer 1..{len(CLASSES)}")
    name = obj.get("file_name")
    return [PoseSequence(
        data=poses.astype(np.float32)[:, None],  # (T, M=1, V, C)
        layout=LAYOUT, source=source, channels=("x", "y", "z"),
        name=name if isinstance(name, str) and name else sample_name(source, (".json",)),
        label=None if label is None else label - 1,
        label_name=None if label is None else CLASSES[label - 1],
    )]
