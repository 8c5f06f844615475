"""Penn Action ``NNNN.mat`` reader (docs/FORMATS.md §1 "Penn Action").

Emits (x / W, y / H, visibility) on penn13 (a project decision), one person. ``nframes`` is uint8 in
most files and uint16 in some; it is cast to int and checked against the rows of ``x``. The label
is the index of ``action`` among the 15 classes. Files are parsed by the project's bounds-checked
MATLAB v5 reader (``_matv5``), not ``scipy.io.loadmat``, which can crash on corrupt uploads.
"""

from __future__ import annotations

import numpy as np

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._matv5 import read_mat_v5
from codt_deploy.readers._text import check_finite, require_frames, sample_name
from codt_deploy.sequence import PoseSequence

LAYOUT = "penn13"
NUM_JOINTS = 13
CLASSES = ("baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk",
           "golf_swing", "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat",
           "strum_guitar", "tennis_forehand", "tennis_serve")
_FIELDS = ("x", "y", "visibility", "dimensions", "nframes")


def _numeric(mat: dict, key: str, source: str) -> np.ndarray:
    value = mat[key]
    if isinstance(value, str):
        raise PoseFormatError(source, f"field {key!r} is text; expected numbers")
    return value


def _text(mat: dict, key: str) -> str | None:
    value = mat.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse(data: bytes, source: str) -> list[PoseSequence]:
    mat = read_mat_v5(data, source)
    missing = [k for k in _FIELDS if k not in mat]
    if missing:
        raise PoseFormatError(source, f"missing field(s) {', '.join(missing)}; expected a Penn "
                                      f"Action .mat with {', '.join(_FIELDS)}")
    nframes = _numeric(mat, "nframes", source).reshape(-1)  # (1, 1) -> (1,)
    num_frames = int(nframes[0]) if nframes.size else 0  # uint8 or uint16 in the dataset
    require_frames(num_frames, source)
    columns = [_numeric(mat, k, source).astype(np.float64) for k in ("x", "y", "visibility")]
    for key, column in zip(("x", "y", "visibility"), columns):
        if column.shape != (num_frames, NUM_JOINTS):
            raise PoseFormatError(source, f"{key} has shape {column.shape}; expected (nframes="
                                          f"{num_frames}, {NUM_JOINTS})")
    dims = _numeric(mat, "dimensions", source).reshape(-1).astype(np.float64)  # [H, W, T]
    if dims.size < 2 or not (dims[0] > 0 and dims[1] > 0):
        raise PoseFormatError(source, f"dimensions {dims.tolist()}; expected positive [H, W, T]")
    poses = np.stack([columns[0] / dims[1], columns[1] / dims[0], columns[2]], axis=-1)  # (T, V, 3)
    check_finite(poses, source)
    action = _text(mat, "action")
    train = mat.get("train")
    return [PoseSequence(
        data=poses.astype(np.float32)[:, None],  # (T, M=1, V, C)
        layout=LAYOUT, source=source, channels=("x", "y", "score"),
        name=sample_name(source, (".mat",)),
        label=CLASSES.index(action) if action in CLASSES else None, label_name=action,
        meta={"train": int(train.reshape(-1)[0]) if isinstance(train, np.ndarray) and train.size
              else None, "pose": _text(mat, "pose"),
              "image_size": (float(dims[1]), float(dims[0]))},
    )]
