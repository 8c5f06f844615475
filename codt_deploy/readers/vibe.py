"""VIBE / Skeletics-152 JSON reader (docs/FORMATS.md §1 "VIBE / Skeletics-152 JSON").

One JSON object per clip, keyed by track id; each track has ``joints3d`` (F, 49, 3) and
``frame_ids`` (F,), 0-based and possibly non-contiguous. Other keys are ignored. Joints 0-24 of
VIBE's 49 are OpenPose BODY_25 (the project default, as in skelemoa/quovadis' Skeletics-152
README).

Tracks are persons: the 2 longest are kept (ties keep file order), each placed at its ``frame_ids``;
gaps between two observed frames a < t < b are filled by linear interpolation with the correct
weights, ``x_t = x_a + (t - a) / (b - a) * (x_b - x_a)`` (quovadis' ``parse_vibe_data.py`` swaps
them).
Frames outside a track's first..last observation stay zero (absent). T = last frame id + 1.
"""

from __future__ import annotations

import logging

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
from codt_deploy.sequence import PoseSequence

logger = logging.getLogger(__name__)

LAYOUT = "body25"
VIBE_JOINTS = 49
BODY25 = slice(0, 25)  # the OpenPose BODY_25 joints among VIBE's 49
MAX_PERSONS = 2

Track = tuple[str, np.ndarray, np.ndarray]  # (track id, frame ids (F,), joints (F, 25, 3))


def _track(track_id: str, value: object, source: str) -> Track | None:
    """Validate one track; None for an empty one (no frames)."""
    if not isinstance(value, dict) or "joints3d" not in value or "frame_ids" not in value:
        raise PoseFormatError(source, f"track {track_id!r}: expected an object with 'joints3d' "
                                      f"(F, 49, 3) and 'frame_ids' (F,)")
    frame_ids = as_float_array(value["frame_ids"], source, f"track {track_id!r} frame_ids")
    if frame_ids.size == 0:
        return None
    joints = as_float_array(value["joints3d"], source, f"track {track_id!r} joints3d")
    if joints.ndim != 3 or joints.shape[1:] != (VIBE_JOINTS, 3):
        raise PoseFormatError(source, f"track {track_id!r}: joints3d has shape {joints.shape}; "
                                      f"expected (F, {VIBE_JOINTS}, 3)")
    if frame_ids.ndim != 1 or frame_ids.size != joints.shape[0] or \
            not np.array_equal(frame_ids, np.round(frame_ids)):
        raise PoseFormatError(source, f"track {track_id!r}: frame_ids must be {joints.shape[0]} "
                                      f"integers, one per joints3d row")
    check_finite(joints, source, what=f"joints3d of track {track_id!r}", locate=lambda ix: {})
    frame_ids = frame_ids.astype(np.int64)
    for bound in (frame_ids.min(), frame_ids.max()):
        check_frame_index(int(bound), source, f"track {track_id!r} frame id")
    order = np.argsort(frame_ids, kind="stable")
    frame_ids, joints = frame_ids[order], joints[order][:, BODY25]  # (F, 25, 3)
    repeated = np.flatnonzero(np.diff(frame_ids) == 0)
    if repeated.size:
        raise PoseFormatError(source, f"track {track_id!r}: duplicate frame id "
                                      f"{int(frame_ids[repeated[0]])}")
    return track_id, frame_ids, joints


def interpolate_track(frame_ids: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Rows of a track on every frame from its first to its last id, gaps linearly interpolated.

    frame_ids (F,) sorted unique ints, joints (F, V, C) -> (last - first + 1, V, C)
    """
    if frame_ids.size == 1:
        return joints.copy()
    frames = np.arange(frame_ids[0], frame_ids[-1] + 1)  # (T_track,)
    left = np.clip(np.searchsorted(frame_ids, frames, side="right") - 1, 0, frame_ids.size - 2)
    a, b = frame_ids[left], frame_ids[left + 1]
    weight = ((frames - a) / (b - a))[:, None, None]  # (T_track, 1, 1): 0 at a, 1 at b
    return joints[left] * (1.0 - weight) + joints[left + 1] * weight  # (T_track, V, C)


def parse(data: bytes, source: str) -> list[PoseSequence]:
    obj = load_json(data, source)
    if not isinstance(obj, dict):
        raise PoseFormatError(source, "wrong schema for VIBE JSON; expected an object mapping "
                                      "track ids to {joints3d, frame_ids}")
    if not obj:
        raise PoseFormatError(source, "no person: the file has no tracks (an empty JSON object)")
    tracks = [t for t in (_track(str(k), v, source) for k, v in obj.items()) if t is not None]
    if not tracks:
        raise PoseFormatError(source, "no person: every track is empty")
    kept = sorted(tracks, key=lambda t: -t[1].size)[:MAX_PERSONS]  # stable: ties keep file order
    num_frames = int(max(t[1][-1] for t in tracks)) + 1
    check_dense_size((num_frames, len(kept), 25, 3), 4, len(data), source,
                     f"frame ids up to {num_frames - 1}")
    poses = np.zeros((num_frames, len(kept), 25, 3), np.float32)  # (T, M, V, C)
    for m, (_, frame_ids, joints) in enumerate(kept):
        poses[frame_ids[0]:frame_ids[-1] + 1, m] = interpolate_track(frame_ids, joints)
    if len(tracks) > len(kept):
        logger.debug("%s: kept the %d longest of %d tracks", source, len(kept), len(tracks))
    return [PoseSequence(
        data=poses, layout=LAYOUT, source=source, channels=("x", "y", "z"),
        name=sample_name(source, (".json",)),
        meta={"track_ids": [t[0] for t in kept], "tracks_in_file": len(obj),
              "observed_frames": [int(t[1].size) for t in kept]},
    )]
