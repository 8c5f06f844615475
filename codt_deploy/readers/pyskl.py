"""pyskl / mmaction2 pose pickle (docs/FORMATS.md §1 "pyskl / mmaction2 pickle").

Only for local files and only with ``trust_pickle=True``; even then an unpickler that resolves only
numpy's array reconstructors is used. Schema: ``{"split": {...}, "annotations": [{"frame_dir",
"label", "keypoint" (M, T, V, C), "keypoint_score" (M, T, V), "img_shape" (h, w), ...}]}`` (a bare
list of annotations is accepted too). 2-D keypoints get ``keypoint_score`` as a third ``score``
channel; coordinates stay in pixels (``img_shape`` is kept in ``meta``). The K400 variant that keeps
keypoints in separate kpfiles is not supported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._pickle import load_numpy
from codt_deploy.readers._text import check_finite
from codt_deploy.readers.arrays import resolve_layout
from codt_deploy.sequence import PoseSequence

_LAYOUT_BY_JOINTS = {25: "ntu25", 17: "coco17", 18: "coco18"}


def _annotations(content: object, source: str) -> tuple[list, dict]:
    if isinstance(content, dict) and isinstance(content.get("annotations"), list):
        split = content.get("split")
        return content["annotations"], (split if isinstance(split, dict) else {})
    if isinstance(content, list):
        return content, {}
    raise PoseFormatError(source, "wrong schema for a pyskl pickle; expected {'split': ..., "
                                  "'annotations': [...]} or a list of annotations")


def _keypoints(ann: dict, source: str, i: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """-> (T, M, V, C) float32 and its channel names."""
    keypoint = ann.get("keypoint")
    if not isinstance(keypoint, np.ndarray) or keypoint.ndim != 4 or keypoint.dtype.kind not in \
            "fiu" or keypoint.shape[-1] not in (2, 3):
        shape = getattr(keypoint, "shape", None)
        raise PoseFormatError(source, f"annotation {i}: 'keypoint' must be a numeric (M, T, V, C) "
                                      f"array with C in (2, 3), found {shape} (kpfile-based "
                                      f"annotations are not supported)")
    poses = keypoint.transpose(1, 0, 2, 3).astype(np.float32)  # (M, T, V, C) -> (T, M, V, C)
    score = ann.get("keypoint_score")
    if poses.shape[-1] == 3 or score is None:
        return poses, ("x", "y", "z") if poses.shape[-1] == 3 else ("x", "y")
    if not isinstance(score, np.ndarray) or score.shape != keypoint.shape[:3]:
        found = getattr(score, "shape", None)
        raise PoseFormatError(source, f"annotation {i}: keypoint_score must be (M, T, V) = "
                                      f"{keypoint.shape[:3]}, found {found}")
    score_tmv = score.transpose(1, 0, 2)[..., None].astype(np.float32)  # (M,T,V) -> (T,M,V,1)
    return np.concatenate([poses, score_tmv], axis=-1), ("x", "y", "score")


def read_path(path: Path, *, trust_pickle: bool = False,
              skeleton: str | None = None) -> list[PoseSequence]:
    source = str(path)
    if not trust_pickle:
        raise PoseFormatError(source, "refusing to unpickle: pickles can run code. Convert it to "
                                      ".npz once, or pass trust_pickle=True (--trust-pickle) for "
                                      "a file you trust")
    annotations, split = _annotations(load_numpy(path), source)
    sequences = []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise PoseFormatError(source, f"annotation {i} is not a dict")
        poses, channels = _keypoints(ann, source, i)
        if poses.shape[0] == 0:
            raise PoseFormatError(source, f"annotation {i}: zero frames")
        check_finite(poses, source, what=f"keypoints of annotation {i}")
        name = str(ann.get("frame_dir", f"{path.stem}[{i}]"))
        label = ann.get("label")
        sequences.append(PoseSequence(
            data=poses, layout=resolve_layout(skeleton or _LAYOUT_BY_JOINTS.get(poses.shape[2]),
                                              poses.shape[2], source),
            source=source, channels=channels, name=name,
            label=int(label) if isinstance(label, (int, np.integer)) else None,
            meta={"img_shape": ann.get("img_shape"),
                  "splits": sorted(k for k, v in split.items() if name in v)}))
    if not sequences:
        raise PoseFormatError(source, "no annotations")
    return sequences
