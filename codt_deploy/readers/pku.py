"""PKU-MMD skeleton ``.txt`` reader with optional label file (docs/FORMATS.md §1
"PKU-MMD").

A skeleton file holds one line of 150 numbers per frame: person 1's 25 joints (x, y, z) then person
2's, zeros when person 2 is absent. A label file of the same base name holds rows
``action_id,start_frame,end_frame,confidence``; each row becomes one clip with label
``action_id - 1``. The frame base is undocumented: this project reads start..end as 1-based and
inclusive, clamped to the file (a test pins it). ``segment`` keeps those 1-based bounds. A file
whose coordinates are all zero holds no skeleton and is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._text import (
    check_finite,
    fixed_width_rows,
    require_frames,
    require_pose,
    sample_name,
    side_file_bytes,
    text_content,
)
from codt_deploy.sequence import PoseSequence

logger = logging.getLogger(__name__)

LAYOUT = "ntu25"
FPS = 30.0
_PERSONS, _JOINTS = 2, 25
_LABEL_DIRS = ("Label", "label", "Labels", "labels")

LabelRow = tuple[int, int, int, float, int]  # action_id, start, end, confidence, line


def find_label_file(skeleton: Path) -> Path | None:
    """A label file for ``skeleton``: same base name in a ``Label``/``label`` folder beside it or
    one level up, or ``<stem>_label.txt`` in the same folder."""
    folder, name = skeleton.parent, skeleton.name
    candidates = [folder / d / name for d in _LABEL_DIRS]
    candidates += [folder.parent / d / name for d in _LABEL_DIRS]
    candidates.append(folder / f"{skeleton.stem}_label.txt")
    return next((c for c in candidates if c.is_file() and c != skeleton), None)


def parse_labels(data: bytes, source: str) -> list[LabelRow]:
    """Rows ``action_id,start_frame,end_frame[,confidence]`` (commas or spaces)."""
    data = text_content(data, source)
    rows: list[LabelRow] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        fields = line.replace(b",", b" ").split()
        if not fields:
            continue
        if len(fields) not in (3, 4):
            raise PoseFormatError(source, f"expected 'action_id,start_frame,end_frame,"
                                          f"confidence', found {len(fields)} fields", line=number)
        try:
            action, start, end = (int(f) for f in fields[:3])
            confidence = float(fields[3]) if len(fields) == 4 else float("nan")
        except ValueError:
            raise PoseFormatError(source, "expected integer action_id, start_frame and "
                                          "end_frame", line=number) from None
        if action < 1 or start < 1 or end < start:
            raise PoseFormatError(source, f"expected action_id >= 1 and 1 <= start_frame <= "
                                          f"end_frame, found {action},{start},{end}", line=number)
        rows.append((action, start, end, confidence, number))
    if not rows:
        raise PoseFormatError(source, "the label file has no rows")
    return rows


def _whole(poses: np.ndarray, source: str, name: str) -> PoseSequence:
    return PoseSequence(data=poses, layout=LAYOUT, source=source, channels=("x", "y", "z"),
                        fps=FPS, name=name)


def _clips(poses: np.ndarray, rows: list[LabelRow], source: str, name: str,
           label_source: str) -> list[PoseSequence]:
    clips = []
    num_frames = poses.shape[0]
    for index, (action, start, end, confidence, line) in enumerate(rows):
        first, last = start, min(end, num_frames)  # 1-based inclusive, clamped to the file
        if first > last:
            logger.warning("%s line %d: segment %d..%d lies past the %d frames of %s; skipped",
                           label_source, line, start, end, num_frames, source)
            continue
        clips.append(PoseSequence(
            data=poses[first - 1:last], layout=LAYOUT, source=source, channels=("x", "y", "z"),
            fps=FPS, name=f"{name}#{index}", label=action - 1, segment=(first, last),
            meta={"confidence": confidence, "label_file": label_source, "label_line": line}))
    return clips


def parse(data: bytes, source: str, *, label_file: object = None) -> list[PoseSequence]:
    """Read a skeleton file; ``label_file`` (a path, or the label file's bytes) splits it into
    labelled clips. Without one the whole sequence is returned unlabelled."""
    rows = fixed_width_rows(data, source, _PERSONS * _JOINTS * 3, "150 per frame: 2 persons x "
                                                                  "25 joints x (x, y, z)")
    require_frames(rows.shape[0], source)
    check_finite(rows, source, locate=lambda ix: {"line": ix[0] + 1})
    require_pose(rows, source)
    poses = rows.astype(np.float32).reshape(-1, _PERSONS, _JOINTS, 3)  # (T, M, V, C)
    name = sample_name(source, (".txt",))
    if label_file is None or label_file is False:
        return [_whole(poses, source, name)]
    label_data, label_source = side_file_bytes(label_file, "label file")
    return _clips(poses, parse_labels(label_data, label_source), source, name, label_source)


def read_path(path: Path, *, label_file: object = None) -> list[PoseSequence]:
    """Read a skeleton file; ``label_file=None`` looks for one (``find_label_file``), ``False``
    turns the lookup off."""
    if label_file is None:
        label_file = find_label_file(path)
        if label_file is not None:
            logger.info("%s: using label file %s", path, label_file)
    return parse(path.read_bytes(), str(path), label_file=label_file)
