"""UTKinect-Action3D reader: ``joints_sXX_eYY.txt`` + ``actionLabel.txt``
(docs/FORMATS.md §1 "UTKinect-Action3D").

A joints file holds rows ``frame_id x1 y1 z1 ... x20 y20 z20`` (kinect20, metres); ``frame_id``
repeats and skips. The label file has a ``sXX_eYY`` header followed by ``action: start end`` lines
(inclusive frame ids, order by action, boundaries may touch). Each labelled segment becomes one
sequence of the rows whose ``frame_id`` lies in ``start..end``; a ``NaN NaN`` segment (s10_e02
carry) is skipped. Rows are kept as recorded (repeated frame ids included); ``fps`` is left unset
because the rows are not evenly spaced.
"""

from __future__ import annotations

import logging
import re
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

LAYOUT = "kinect20"
NUM_JOINTS = 20
CLASSES = ("walk", "sitDown", "standUp", "pickUp", "carry", "throw", "push", "pull",
           "waveHands", "clapHands")
LABEL_FILE = "actionLabel.txt"


def is_label_file(name: str) -> bool:
    """Whether a file name is one of the dataset's annotation files (``actionLabel.txt`` and its
    variants such as ``actionLabel_modified.txt``), not a joints file."""
    return name.startswith(LABEL_FILE.split(".")[0])
_KEY = re.compile(r"s\d+_e\d+")
_SEGMENT = re.compile(rb"^\s*(\w+)\s*:\s*(\S+)\s+(\S+)\s*$")

Segment = tuple[str, float, float, int]  # action, start, end (NaN when unknown), label-file line


def _bound(token: bytes, source: str, line: int) -> float:
    if token.lower() == b"nan":
        return float("nan")
    try:
        return float(int(token))
    except ValueError:
        raise PoseFormatError(source, f"expected an integer frame id or NaN, found "
                                      f"{token.decode('ascii', 'replace')!r}", line=line) from None


def parse_labels(data: bytes, source: str) -> dict[str, list[Segment]]:
    """``actionLabel.txt`` -> {"s01_e01": [(action, start, end, line), ...]}."""
    data = text_content(data, source)
    labels: dict[str, list[Segment]] = {}
    current: list[Segment] | None = None
    for number, line in enumerate(data.split(b"\n"), start=1):
        text = line.strip()
        if not text:
            continue
        if _KEY.fullmatch(text.decode("ascii")):
            current = labels.setdefault(text.decode("ascii"), [])
            continue
        match = _SEGMENT.match(line)
        if match is None or current is None:
            raise PoseFormatError(source, "expected a 'sXX_eYY' header or an 'action: start end' "
                                          "line after one", line=number)
        action = match[1].decode("ascii")
        if action not in CLASSES:
            raise PoseFormatError(source, f"unknown action {action!r}; expected one of "
                                          f"{', '.join(CLASSES)}", line=number)
        current.append((action, _bound(match[2], source, number),
                        _bound(match[3], source, number), number))
    return labels


def _read_joints(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """-> frame ids (R,), poses (R, 1, 20, 3) float32."""
    rows = fixed_width_rows(data, source, 1 + 3 * NUM_JOINTS, "frame_id then 20 x (x, y, z)")
    require_frames(rows.shape[0], source)
    check_finite(rows, source, locate=lambda ix: {"line": ix[0] + 1})
    require_pose(rows[:, 1:], source)
    poses = rows[:, 1:].astype(np.float32).reshape(-1, 1, NUM_JOINTS, 3)  # (R, M=1, V, C)
    return rows[:, 0], poses


def _segments(frame_ids: np.ndarray, poses: np.ndarray, segments: list[Segment], source: str,
              key: str, label_source: str) -> list[PoseSequence]:
    sequences = []
    for action, start, end, line in segments:
        if np.isnan(start) or np.isnan(end):
            logger.info("%s line %d: %s %s has no bounds (NaN); skipped", label_source, line,
                        key, action)
            continue
        rows = (frame_ids >= start) & (frame_ids <= end)
        if not rows.any():
            logger.warning("%s line %d: no joint rows with frame ids %d..%d in %s; skipped",
                           label_source, line, start, end, source)
            continue
        sequences.append(PoseSequence(
            data=poses[rows], layout=LAYOUT, source=source, channels=("x", "y", "z"),
            name=f"{key}#{action}", label=CLASSES.index(action), label_name=action,
            segment=(int(start), int(end)),
            meta={"frame_ids": frame_ids[rows].astype(np.int64), "label_file": label_source}))
    return sequences


def parse(data: bytes, source: str, *, label_file: object = None) -> list[PoseSequence]:
    """Read a joints file; with ``label_file`` (a path or its bytes), one sequence per segment."""
    frame_ids, poses = _read_joints(data, source)
    name = sample_name(source, (".txt",))
    match = _KEY.search(name)
    if label_file is None or label_file is False:
        return [PoseSequence(data=poses, layout=LAYOUT, source=source, channels=("x", "y", "z"),
                             name=name, meta={"frame_ids": frame_ids.astype(np.int64)})]
    label_data, label_source = side_file_bytes(label_file, "label file")
    labels = parse_labels(label_data, label_source)
    if match is None or match[0] not in labels:
        raise PoseFormatError(source, f"no entry for this sequence in {label_source} (expected a "
                                      f"'sXX_eYY' header matching the file name)")
    return _segments(frame_ids, poses, labels[match[0]], source, match[0], label_source)


def read_path(path: Path, *, label_file: object = None) -> list[PoseSequence]:
    """``label_file=None`` uses ``actionLabel.txt`` in the same folder when there is one;
    ``False`` turns the lookup off."""
    if label_file is None and (path.parent / LABEL_FILE).is_file():
        label_file = path.parent / LABEL_FILE
    return parse(path.read_bytes(), str(path), label_file=label_file)
