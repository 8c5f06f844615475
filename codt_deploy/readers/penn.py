"""Penn Action ``NNNN.mat`` reader (FORMATS.md §1 "Penn Action"); needs scipy (extra ``mat``).

Emits (x / W, y / H, visibility) on penn13 (a project decision), one person. ``nframes`` is uint8 in
most files and uint16 in some; it is cast to int and checked against the rows of ``x``. The label
is the index of ``action`` among the 15 classes.
"""

from __future__ import annotations

import io

import numpy as np

from codt_deploy.errors import CodtError, PoseFormatError
from codt_deploy.readers._text import check_finite, require_frames, sample_name
from codt_deploy.sequence import PoseSequence

LAYOUT = "penn13"
NUM_JOINTS = 13
CLASSES = ("baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk",
           "golf_swing", "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat",
           "strum_guitar", "tennis_forehand", "tennis_serve")
_FIELDS = ("x", "y", "visibility", "dimensions", "nframes")


def _loadmat(data: bytes, source: str) -> dict:
    try:
        from scipy.io import loadmat  # lazy: scipy is an optional extra
    except ImportError:
        raise CodtError("reading Penn Action .mat files needs scipy: pip install 'codt[mat]'") \
            from None
    if data[:8] == b"\x89HDF\r\n\x1a\n" or b"MATLAB 7.3" in data[:128]:
        raise PoseFormatError(source, "MATLAB v7.3 (HDF5) files are not supported; save as "
                                      "v5 (-v7)")
    try:
        return loadmat(io.BytesIO(data))
    except (ValueError, TypeError, OSError, NotImplementedError, EOFError) as exc:
        raise PoseFormatError(source, f"not a readable MATLAB v5 file ({str(exc)[:160]})") \
            from None


def _scalar(mat: dict, key: str, source: str) -> np.ndarray:
    return np.asarray(mat[key]).reshape(-1)


def parse(data: bytes, source: str) -> list[PoseSequence]:
    mat = _loadmat(data, source)
    missing = [k for k in _FIELDS if k not in mat]
    if missing:
        raise PoseFormatError(source, f"missing field(s) {', '.join(missing)}; expected a Penn "
                                      f"Action .mat with {', '.join(_FIELDS)}")
    num_frames = int(_scalar(mat, "nframes", source)[0])  # uint8 or uint16 in the dataset
    require_frames(num_frames, source)
    columns = [np.asarray(mat[k], dtype=np.float64) for k in ("x", "y", "visibility")]
    for key, column in zip(("x", "y", "visibility"), columns):
        if column.shape != (num_frames, NUM_JOINTS):
            raise PoseFormatError(source, f"{key} has shape {column.shape}; expected (nframes="
                                          f"{num_frames}, {NUM_JOINTS})")
    dims = _scalar(mat, "dimensions", source).astype(np.float64)  # [H, W, T]
    if dims.size < 2 or not (dims[0] > 0 and dims[1] > 0):
        raise PoseFormatError(source, f"dimensions {dims.tolist()}; expected positive [H, W, T]")
    poses = np.stack([columns[0] / dims[1], columns[1] / dims[0], columns[2]], axis=-1)  # (T, V, 3)
    check_finite(poses, source)
    action = str(np.asarray(mat["action"]).reshape(-1)[0]) if "action" in mat and \
        np.asarray(mat["action"]).size else None
    train = int(_scalar(mat, "train", source)[0]) if "train" in mat else None
    return [PoseSequence(
        data=poses.astype(np.float32)[:, None],  # (T, M=1, V, C)
        layout=LAYOUT, source=source, channels=("x", "y", "score"),
        name=sample_name(source, (".mat",)),
        label=CLASSES.index(action) if action in CLASSES else None, label_name=action,
        meta={"train": train, "pose": str(np.asarray(mat["pose"]).reshape(-1)[0])
              if "pose" in mat and np.asarray(mat["pose"]).size else None,
              "image_size": (float(dims[1]), float(dims[0]))},
    )]
