"""MSR Action3D ``aXX_sYY_eZZ_skeleton3D.txt`` reader (docs/FORMATS.md §1 "MSR Action3D").

No header; every line is ``x y z c`` and 20 lines make a frame (msr20). The confidence column ``c``
is dropped from the coordinates and kept in ``meta["confidence"]`` (T, 20). The label is XX - 1.
An all-zero file (``a13_s09_e02``) holds no skeleton and is refused.
"""

from __future__ import annotations

import re

import numpy as np

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._text import (
    check_finite,
    fixed_width_rows,
    label_from_name,
    require_frames,
    require_pose,
    sample_name,
)
from codt_deploy.sequence import PoseSequence

LAYOUT = "msr20"
FPS = 15.0
NUM_JOINTS = 20
_ACTION = re.compile(r"^a(\d{2})_s\d{2}_e\d{2}")


def parse(data: bytes, source: str) -> list[PoseSequence]:
    rows = fixed_width_rows(data, source, 4, "x y z confidence")  # (lines, 4)
    require_frames(rows.shape[0], source)
    if rows.shape[0] % NUM_JOINTS:
        complete = rows.shape[0] // NUM_JOINTS
        raise PoseFormatError(source, f"{rows.shape[0]} joint lines is not a multiple of "
                                      f"{NUM_JOINTS} (msr20): frame {complete} is incomplete "
                                      f"(truncated file or wrong joint count?)", frame=complete)
    check_finite(rows, source, locate=lambda ix: {"line": ix[0] + 1})
    require_pose(rows[:, :3], source)
    frames = rows.astype(np.float32).reshape(-1, NUM_JOINTS, 4)  # (T, V, 4)
    name = sample_name(source, ("_skeleton3D.txt", ".txt"))
    return [PoseSequence(
        data=np.ascontiguousarray(frames[:, None, :, :3]),  # (T, M=1, V, C)
        layout=LAYOUT, source=source, channels=("x", "y", "z"), fps=FPS, name=name,
        label=label_from_name(_ACTION, name), meta={"confidence": frames[:, :, 3]},
    )]
