"""Pose pre-processing shared by training and deployment (METHOD.md §2, the CrosSCLR pipeline).

``preprocess(seq, cfg)`` turns one :class:`~codt_deploy.sequence.PoseSequence`
(``(T, M, V, C)``, any supported layout, any length) into the model input ``(C, T, V, M)``
float32 with T = ``cfg.frames`` (50), M = ``cfg.persons`` (2) and V the joints of ``cfg.layout``.
Steps, in order:

1. **Joints** are mapped onto ``cfg.layout`` by name (:func:`codt_deploy.layouts.joint_map`); §2
   "cross-skeleton tasks": select the joints before anything else.
2. **Persons**: with more than ``cfg.persons`` bodies, keep the most active ones (motion energy:
   each joint's squared deviation from its own mean position, summed over the frames the body is
   present, over joints and coordinates; a variant of the NTU RGB+D authors' main-actor variance
   heuristic that ignores the spread of a still body), in their original order; pad with zeros.
3. **Length** (§2 step 1): drop the frames where every person is all zeros. On zero-padded arrays
   (the ST-GCN ``(3, 300, V, 2)`` files CrosSCLR reads) this equals L = the non-zero frames of
   person 0; on raw files it also removes empty frames in the middle (e.g. Kinetics, MSR zeros).
4. **Centre** (§2 step 2): subtract the layout's centre joint per frame and per person. An absent
   person-frame stays zero. If the centre joint itself is missing while other joints are present,
   the mean of the present joints stands in for it (project decision; never happens on Kinect data).
5. **Resample** (§2 step 3) frames 0..L-1 to T exactly as OpenCV ``INTER_LINEAR``: output frame t
   reads source position (t + 0.5)·L/T − 0.5, clamped to [0, L − 1]. A 1-frame clip becomes T
   copies. Note that this keeps the end frames only when L ≤ T; when shrinking, the first output
   frame blends source frames 0 and 1 (as OpenCV does).
6. **Shoulder alignment** (§2 step 4, 3-D data only): per frame and person, v = R-shoulder −
   L-shoulder with v_y := 0, θ_t = arccos(v_x / (‖v‖ + 1e-4)), θ negated once per person and
   sequence if Σ_t v_z ≥ 0, then every joint is rotated by R_y(θ) = [[cos, 0, −sin], [0, 1, 0],
   [sin, 0, cos]]. Frames whose v_z has the sign of the sum end with v parallel to +x.

**2-D data** (channels x, y, score): steps 1-5 apply to x and y only; the score channel is kept
(and resampled); a joint whose score is 0 keeps x = y = 0 after centring; there is no rotation, as
a 2-D pose has no depth to rotate about the vertical axis.

The output is always finite: an all-zero sequence gives zeros. Non-finite input, and values beyond
±``MAX_ABS_VALUE`` (1e6: no metres, millimetres, pixels or scores come near it, while ±3e38, finite
in float32, would overflow centring and rotation), are rejected with a
:class:`~codt_deploy.errors.PoseFormatError` naming the file and the frame, so the file fails alone.
Everything here is numpy, vectorised over frames, persons and joints.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from codt_deploy.errors import LayoutError, PoseFormatError
from codt_deploy.layouts import JointMap, NeckSource, get_layout, joint_map
from codt_deploy.sequence import PoseSequence

ChannelMode = Literal["xyz", "xy_score"]
CHANNEL_NAMES: dict[ChannelMode, tuple[str, ...]] = {"xyz": ("x", "y", "z"),
                                                      "xy_score": ("x", "y", "score")}
_ALIGN_EPS = 1e-4  # METHOD §2 step 4: θ = arccos(v_x / (‖v‖ + 1e-4))
MAX_ABS_VALUE = 1e6  # larger input values are refused (see the module docstring)


def mode_of_channels(channels: Sequence[str]) -> ChannelMode | None:
    """The channel mode whose names are ``channels`` (e.g. ``("x", "y", "z")`` is "xyz"), else None."""
    for mode, names in CHANNEL_NAMES.items():
        if tuple(channels) == names:
            return mode
    return None


class PreprocessConfig(BaseModel):
    """How raw poses become model input (METHOD §2); saved in every prepared task and manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    layout: str  # the model's joint layout (a name known to codt_deploy.layouts)
    frames: int = Field(50, ge=1)  # T
    persons: int = Field(2, ge=1)  # M
    center: bool = True  # §2 step 2
    align: bool = True  # §2 step 4 (3-D data only)
    neck: NeckSource = "spine_shoulder"  # which NTU joint plays the neck when mapping (METHOD §4)
    channels: ChannelMode = "xyz"  # "xyz" (3-D) or "xy_score" (2-D with a confidence)

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        return get_layout(value).name  # raises LayoutError (a ValueError) listing the layouts

    @property
    def channel_names(self) -> tuple[str, ...]:
        return CHANNEL_NAMES[self.channels]

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def num_joints(self) -> int:
        return get_layout(self.layout).num_joints

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """The ``(C, T, V, M)`` shape of one preprocessed sample."""
        return (self.num_channels, self.frames, self.num_joints, self.persons)


# ---------------------------------------------------------------------------------------------
# Pure kernels on (T, M, V, C) arrays
# ---------------------------------------------------------------------------------------------

def present_mask(data: np.ndarray) -> np.ndarray:
    """(T, M, V, C) → (T, M) bool: the person has at least one non-zero value in that frame."""
    return np.any(data != 0, axis=(2, 3))


def select_persons(data: np.ndarray, persons: int, coord_channels: int) -> np.ndarray:
    """Keep the ``persons`` most active bodies, in their original order; pad with zero bodies.

    (T, M_in, V, C) → (T, persons, V, C). Activity = motion energy: Σ over joints and the first
    ``coord_channels`` channels of Σ_t (x_t − x̄)², over the frames where the body is present (so a
    still object, such as a chair detected as a body, scores 0, and a longer presence counts more).
    Ties go to the body present in more frames, then to the earlier one; a body never present
    ranks last.
    """
    t, m_in, v, c = data.shape
    if m_in > persons:
        present = present_mask(data)  # (T, M_in)
        count = present.sum(axis=0)  # (M_in,)
        coords = data[..., :coord_channels].astype(np.float64)  # (T, M_in, V, Cc)
        weight = present[:, :, None, None]  # (T, M_in, 1, 1)
        mean = ((coords * weight).sum(axis=0, keepdims=True)
                / np.maximum(count, 1)[None, :, None, None])  # (1, M_in, V, Cc)
        energy = (((coords - mean) ** 2) * weight).sum(axis=(0, 2, 3))  # (M_in,)
        energy = np.where(count > 0, energy, -1.0)
        order = np.lexsort((np.arange(m_in), -count, -energy))  # most active first
        keep = np.sort(order[:persons])
        data = data[:, keep]  # (T, persons, V, C)
    elif m_in < persons:
        pad = np.zeros((t, persons - m_in, v, c), dtype=data.dtype)
        data = np.concatenate([data, pad], axis=1)  # (T, persons, V, C)
    return data


def drop_empty_frames(data: np.ndarray) -> np.ndarray:
    """(T, M, V, C) → (L, M, V, C): drop frames where every person is all zeros (§2 step 1)."""
    return data[present_mask(data).any(axis=1)]


def center_on_joint(data: np.ndarray, center: Sequence[int], coord_channels: int,
                    joint_present: np.ndarray) -> np.ndarray:
    """Subtract the centre joint per frame and person (METHOD §2 step 2).

    ``data`` (T, M, V, C); ``center`` the joint indices whose mean is the centre; only the first
    ``coord_channels`` channels move. ``joint_present`` (T, M, V) bool marks the joints that exist:
    absent joints stay zero, and where a centre joint is absent the mean of the present joints of
    that person-frame is used instead.
    """
    coords = data[..., :coord_channels]  # (T, M, V, Cc)
    idx = list(center)
    origin = coords[:, :, idx].mean(axis=2)  # (T, M, Cc)
    center_ok = np.all(joint_present[:, :, idx], axis=2)  # (T, M)
    if not center_ok.all():
        n_present = joint_present.sum(axis=2)  # (T, M)
        present_mean = ((coords * joint_present[..., None]).sum(axis=2)
                        / np.maximum(n_present, 1)[..., None])  # (T, M, Cc)
        origin = np.where(center_ok[..., None], origin, present_mean)  # (T, M, Cc)
    centred = coords - origin[:, :, None, :]  # (T, M, V, Cc)
    if not joint_present.all():
        centred *= joint_present[..., None]
    if coord_channels == data.shape[-1]:
        return centred
    return np.concatenate([centred, data[..., coord_channels:]], axis=-1)  # (T, M, V, C)


def resample_linear(data: np.ndarray, frames: int) -> np.ndarray:
    """Resample axis 0 from L to ``frames`` frames exactly like OpenCV ``INTER_LINEAR``.

    Output frame t reads source position s = (t + 0.5)·L/frames − 0.5 clamped to [0, L − 1]:
    (1 − w)·x[⌊s⌋] + w·x[⌊s⌋ + 1] with w = s − ⌊s⌋ (METHOD §2 step 3). L = 0 gives zeros.
    """
    length = data.shape[0]
    if length == 0:
        return np.zeros((frames, *data.shape[1:]), dtype=data.dtype)
    src = (np.arange(frames, dtype=np.float64) + 0.5) * (length / frames) - 0.5  # (frames,)
    src = np.clip(src, 0.0, length - 1)
    lo = np.floor(src).astype(np.intp)  # (frames,)
    hi = np.minimum(lo + 1, length - 1)
    w = (src - lo).reshape(-1, *([1] * (data.ndim - 1)))  # (frames, 1, 1, 1)
    out = data[lo] * (1.0 - w) + data[hi] * w  # (frames, M, V, C)
    return out.astype(data.dtype, copy=False)


def shoulder_angles(data: np.ndarray, right: int, left: int) -> np.ndarray:
    """θ (T, M) of METHOD §2 step 4 for 3-D ``data`` (T, M, V, 3): sign fixed per person."""
    v = data[:, :, right, :] - data[:, :, left, :]  # (T, M, 3)
    vx, vz = v[..., 0], v[..., 2]  # v_y := 0
    norm = np.sqrt(vx * vx + vz * vz)  # (T, M)
    theta = np.arccos(np.clip(vx / (norm + _ALIGN_EPS), -1.0, 1.0))  # (T, M) in [0, π]
    negate = vz.sum(axis=0) >= 0  # (M,): one sign per person and sequence
    return np.where(negate[None, :], -theta, theta)


def rotate_y(data: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Rotate (T, M, V, 3) points by R_y(θ) = [[c, 0, −s], [0, 1, 0], [s, 0, c]], θ (T, M)."""
    cos = np.cos(theta)[:, :, None]  # (T, M, 1)
    sin = np.sin(theta)[:, :, None]
    x, y, z = data[..., 0], data[..., 1], data[..., 2]  # each (T, M, V)
    return np.stack([cos * x - sin * z, y, sin * x + cos * z], axis=-1)  # (T, M, V, 3)


def align_shoulders(data: np.ndarray, right: int, left: int) -> np.ndarray:
    """METHOD §2 step 4 on (T, M, V, 3): rotate about y so R − L shoulder lies along +x."""
    return rotate_y(data, shoulder_angles(data, right, left))


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------

def _check_input(seq: PoseSequence, cfg: PreprocessConfig) -> None:
    wanted = cfg.channel_names
    if tuple(seq.channels) != wanted:
        raise PoseFormatError(seq.source, f"has channels {tuple(seq.channels)} but the model "
                                          f"expects {wanted} (channels={cfg.channels!r})")
    if not np.all(np.isfinite(seq.data)):
        bad = np.argwhere(~np.isfinite(seq.data))[0]
        raise PoseFormatError(seq.source, "contains NaN or infinite coordinates", frame=int(bad[0]))
    too_large = np.abs(seq.data) > MAX_ABS_VALUE  # (T, M, V, C)
    if too_large.any():
        bad = tuple(np.argwhere(too_large)[0])
        raise PoseFormatError(seq.source, f"value {float(seq.data[bad]):g} is beyond "
                                          f"±{MAX_ABS_VALUE:g}; expected metres, millimetres, "
                                          f"pixels or normalised coordinates",
                              frame=int(bad[0]))


@lru_cache(maxsize=256)
def _cached_joint_map(src: str, dst: str, neck: NeckSource) -> JointMap:
    return joint_map(src, dst, neck=neck)


def _map_joints(seq: PoseSequence, cfg: PreprocessConfig) -> np.ndarray:
    """(T, M, V_src, C) → (T, M, V_cfg, C) by joint name; a missing joint is a PoseFormatError."""
    try:
        mapping = _cached_joint_map(seq.layout, cfg.layout, cfg.neck)
    except LayoutError as err:
        raise PoseFormatError(seq.source, f"cannot use its {seq.layout!r} skeleton for a "
                                          f"{cfg.layout!r} model: {err}") from None
    return mapping.apply(np.asarray(seq.data, dtype=np.float32), axis=2)


def preprocess(seq: PoseSequence, cfg: PreprocessConfig) -> np.ndarray:
    """One sequence → float32 ``(C, T, V, M)`` = ``cfg.output_shape`` (METHOD §2; see above)."""
    _check_input(seq, cfg)
    layout = get_layout(cfg.layout)
    is_3d = cfg.channels == "xyz"
    coord_channels = 3 if is_3d else 2
    data = _map_joints(seq, cfg)  # (T, M_in, V, C)
    data = select_persons(data, cfg.persons, coord_channels)  # (T, M, V, C)
    data = drop_empty_frames(data)  # (L, M, V, C)
    if cfg.center:
        if is_3d:
            joint_present = np.any(data != 0, axis=-1)  # (L, M, V)
        else:
            joint_present = data[..., 2] > 0  # (L, M, V): score 0 = undetected joint
        data = center_on_joint(data, layout.center, coord_channels, joint_present)  # (L, M, V, C)
    data = resample_linear(data, cfg.frames)  # (T, M, V, C)
    if cfg.align and is_3d:
        right, left = layout.shoulders
        data = align_shoulders(data.astype(np.float64), right, left)  # (T, M, V, 3)
    out = np.transpose(data, (3, 0, 2, 1))  # (T, M, V, C) -> (C, T, V, M)
    return np.ascontiguousarray(out, dtype=np.float32)


def preprocess_batch(seqs: Sequence[PoseSequence], cfg: PreprocessConfig) -> np.ndarray:
    """Many sequences → float32 ``(N, C, T, V, M)``; an empty list gives N = 0."""
    out = np.zeros((len(seqs), *cfg.output_shape), dtype=np.float32)  # (N, C, T, V, M)
    for i, seq in enumerate(seqs):
        out[i] = preprocess(seq, cfg)
    return out
