"""OpenPose ``--write_json`` reader: a folder of per-frame files (docs/FORMATS.md §1
"OpenPose").

Files are named ``<video>_<frame:012d>_keypoints.json`` with a 0-based frame number; a folder may
hold several videos, and each becomes one sequence. A missing frame file, or ``"people": []``, is an
empty (all-zero) frame. The layout follows the length of ``pose_keypoints_2d`` (75 -> body25,
54 -> coco18). Persons are not tracked (``person_id`` is -1): they are ranked per frame by summed
confidence and the top ``max_persons`` kept.

Coordinates stay in **pixels** unless ``image_size=(width, height)`` is given, in which case x is
divided by the width and y by the height (the Kinetics-skeleton convention of [0, 1]). Channels are
``(x, y, score)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._text import (
    as_float_array,
    check_dense_size,
    check_finite,
    check_frame_index,
    load_json,
    sample_name,
)
from codt_deploy.readers.kinetics import rank_persons
from codt_deploy.sequence import PoseSequence

LAYOUT_BY_LENGTH = {75: "body25", 54: "coco18"}
FRAME_FILE = re.compile(r"^(?P<video>.*?)_?(?P<frame>\d+)_keypoints\.json$")


def parse_frame(data: bytes, source: str) -> tuple[str | None, np.ndarray]:
    """One frame file -> (layout or None when nobody is in it, persons (P, V, 3))."""
    obj = load_json(data, source)
    if not isinstance(obj, dict) or not isinstance(obj.get("people"), list):
        raise PoseFormatError(source, 'wrong schema for an OpenPose frame; expected '
                                      '{"people": [{"pose_keypoints_2d": [x, y, c, ...]}]}')
    persons, layout = [], None
    for p, person in enumerate(obj["people"]):
        keypoints = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        values = as_float_array(keypoints, source, f"people[{p}].pose_keypoints_2d")
        if values.ndim != 1 or values.size not in LAYOUT_BY_LENGTH:
            raise PoseFormatError(source, f"people[{p}].pose_keypoints_2d has {values.size} "
                                          f"values; expected 75 (BODY_25) or 54 (COCO-18)")
        if layout is not None and LAYOUT_BY_LENGTH[values.size] != layout:
            raise PoseFormatError(source, "people in one frame use different layouts")
        layout = LAYOUT_BY_LENGTH[values.size]
        persons.append(values.reshape(-1, 3))  # (V, 3)
    if not persons:
        return None, np.zeros((0, 0, 3))
    stacked = np.stack(persons)  # (P, V, 3)
    check_finite(stacked, source, what="keypoints", locate=lambda ix: {})
    return layout, stacked


def _image_scale(image_size: Any, source: str) -> np.ndarray:
    # image_size is whatever the caller passed: anything but two numbers fails below
    try:
        width, height = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise PoseFormatError(source, f"image_size must be (width, height), got "
                                      f"{image_size!r}") from None
    if not (width > 0 and height > 0):
        raise PoseFormatError(source, f"image_size must be positive, got {image_size!r}")
    return np.array([width, height, 1.0])


def assemble(frames: dict[int, tuple[str | None, np.ndarray]], source: str, name: str, *,
             image_size: object = None, max_persons: int = 2,
             file_bytes: int = 0) -> PoseSequence:
    """Frames {0-based number: (layout, persons (P, V, 3))} -> one sequence of T = last + 1;
    ``file_bytes`` (the frame files' total size) bounds the dense array (``check_dense_size``)."""
    layouts = {layout for layout, _ in frames.values() if layout is not None}
    if not layouts:
        raise PoseFormatError(source, f"no person in any of the {len(frames)} frame files; cannot "
                                      f"tell the layout")
    if len(layouts) > 1:
        raise PoseFormatError(source, f"frames mix layouts {sorted(layouts)}")
    layout = layouts.pop()
    num_joints = {"body25": 25, "coco18": 18}[layout]
    most = max(persons.shape[0] for _, persons in frames.values())
    check_dense_size((max(frames) + 1, max(most, 1), num_joints, 3), 8, file_bytes, source,
                     f"frame numbers up to {max(frames)} with {most} persons in a frame")
    poses = np.zeros((max(frames) + 1, max(most, 1), num_joints, 3))  # (T, P, V, C)
    for t, (frame_layout, persons) in frames.items():
        if frame_layout is not None:
            poses[t, :persons.shape[0]] = persons
    if image_size is not None:
        poses = poses / _image_scale(image_size, source)  # x / width, y / height
    return PoseSequence(
        data=rank_persons(poses, max_persons).astype(np.float32),  # (T, M, V, C)
        layout=layout, source=source, channels=("x", "y", "score"), name=name,
        meta={"units": "pixels" if image_size is None else "normalised",
              "frame_files": len(frames), "missing_frames": poses.shape[0] - len(frames),
              "most_persons_in_a_frame": most})


def read_frames(files: Iterable[tuple[str, bytes]], source: str, *, image_size: object = None,
                max_persons: int = 2) -> list[PoseSequence]:
    """Per-frame files ``(file name, content)`` (e.g. members of an archive) -> one sequence per
    video name. Names not matching ``<video>_<frame>_keypoints.json`` are refused."""
    videos: dict[str, dict[int, tuple[str | None, np.ndarray]]] = {}
    file_bytes = 0
    for file_name, content in files:
        file_bytes += len(content)
        match = FRAME_FILE.match(sample_name(file_name))
        if match is None:
            raise PoseFormatError(file_name, "expected an OpenPose frame file named "
                                             "<video>_<frame>_keypoints.json")
        frame = int(match["frame"])
        check_frame_index(frame, file_name, "frame number")
        videos.setdefault(match["video"], {})[frame] = parse_frame(content, file_name)
    if not videos:
        raise PoseFormatError(source, "no OpenPose *_keypoints.json frame files")
    return [assemble(frames, source, video or sample_name(source), image_size=image_size,
                     max_persons=max_persons, file_bytes=file_bytes)
            for video, frames in sorted(videos.items())]


def frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and FRAME_FILE.match(p.name))


def read_path(path: Path, *, image_size: object = None,
              max_persons: int = 2) -> list[PoseSequence]:
    """A folder of frame files (one sequence per video), or a single frame file (T = 1)."""
    if path.is_dir():
        files = ((str(p), p.read_bytes()) for p in frame_files(path))
        return read_frames(files, str(path), image_size=image_size, max_persons=max_persons)
    return parse(path.read_bytes(), str(path), image_size=image_size, max_persons=max_persons)


def parse(data: bytes, source: str, *, image_size: object = None,
          max_persons: int = 2) -> list[PoseSequence]:
    """A single frame file: a one-frame sequence."""
    frame = parse_frame(data, source)
    return [assemble({0: frame}, source, sample_name(source, ("_keypoints.json", ".json")),
                     image_size=image_size, max_persons=max_persons, file_bytes=len(data))]
