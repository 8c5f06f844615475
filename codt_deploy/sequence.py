"""The one in-memory type every pose reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codt_deploy.layouts import get_layout


@dataclass(frozen=True, eq=False)
class PoseSequence:
    """One skeleton sequence as read from a file, before preprocessing.

    ``data`` is float32 ``(T, M, V, C)``: frames x persons x joints x channels. Channels are
    ``("x", "y", "z")`` for 3-D data or ``("x", "y", "score")`` for 2-D data with a confidence;
    an absent person or joint is all zeros.
    """

    data: np.ndarray  # (T, M, V, C) float32
    layout: str  # a name known to codt_deploy.layouts
    source: str  # the file (or "archive.zip::member") it came from
    channels: tuple[str, ...] = ("x", "y", "z")
    fps: float | None = None
    name: str = ""  # sample name, e.g. "S001C001P001R001A011" or "A10N08-L#3"
    label: int | None = None  # 0-based class index if the format carries one
    label_name: str | None = None
    segment: tuple[int, int] | None = None  # (first, last) frame in the source file, inclusive
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 4:
            raise ValueError(f"{self.source}: PoseSequence.data must be (T, M, V, C), "
                             f"got shape {self.data.shape}")
        t, m, v, c = self.data.shape
        if v != get_layout(self.layout).num_joints:
            raise ValueError(f"{self.source}: layout {self.layout!r} has "
                             f"{get_layout(self.layout).num_joints} joints, data has {v}")
        if c != len(self.channels):
            raise ValueError(f"{self.source}: {c} channels but channels={self.channels}")

    @property
    def num_frames(self) -> int:
        return self.data.shape[0]

    @property
    def num_persons(self) -> int:
        return self.data.shape[1]

    @property
    def is_3d(self) -> bool:
        return self.channels[:3] == ("x", "y", "z")
