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

**2-D data** (channel modes ``xy_score``: x, y, score, and ``xy``: x, y): steps 1-5 apply to x and
y only; the score channel is kept (and resampled); a joint whose score is 0 (``xy``: whose x and y
are both 0) keeps x = y = 0 after centring; there is no rotation, as a 2-D pose has no depth to
rotate about the vertical axis.

:func:`preprocess` takes only sequences whose channels are the model's; a mismatch is refused with a
message saying what the file has, what the model expects and what to do. Training converts a
domain that holds more than the model reads (:func:`preprocess_converted`, METHOD.md §2 "2-D
models"): a 3-D sequence for a 2-D model goes through steps 1-6 in 3-D and is then projected
(:func:`project_depth`: an optional rotation about the vertical axis, then depth dropped), with
score 1 for present joints and 0 for missing ones when the model reads ``xy_score``;
:func:`reduce_channels` drops depth or the score of raw data as recorded (a 3-D target used as a
2-D one).

The output is always finite: an all-zero sequence gives zeros. Non-finite input, and values beyond
±``MAX_ABS_VALUE`` (1e6: no metres, millimetres, pixels or scores come near it, while ±3e38, finite
in float32, would overflow centring and rotation), are rejected with a
:class:`~codt_deploy.errors.PoseFormatError` naming the file and the frame, so the file fails alone.
Everything here is numpy, vectorised over frames, persons and joints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from codt_deploy.errors import LayoutError, PoseFormatError
from codt_deploy.layouts import JointMap, NeckSource, get_layout, joint_map
from codt_deploy.sequence import PoseSequence

ChannelMode = Literal["xyz", "xy", "xy_score"]
CHANNEL_NAMES: dict[ChannelMode, tuple[str, ...]] = {"xyz": ("x", "y", "z"),
                                                      "xy": ("x", "y"),
                                                      "xy_score": ("x", "y", "score")}
CHANNEL_MODES: tuple[ChannelMode, ...] = tuple(CHANNEL_NAMES)
_ALIGN_EPS = 1e-4  # METHOD §2 step 4: θ = arccos(v_x / (‖v‖ + 1e-4))
MAX_ABS_VALUE = 1e6  # larger input values are refused (see the module docstring)


def mode_of_channels(channels: Sequence[str]) -> ChannelMode | None:
    """The channel mode whose names are ``channels`` (e.g. ``("x", "y", "z")`` is "xyz"), else None."""
    for mode, names in CHANNEL_NAMES.items():
        if tuple(channels) == names:
            return mode
    return None


def describe_mode(mode: ChannelMode | None) -> str:
    """Words for a channel mode, for messages: "3-D poses (x, y, z)"."""
    if mode is None:
        return "unsupported channels"
    kind = "3-D poses" if mode == "xyz" else "2-D poses"
    return f"{kind} ({', '.join(CHANNEL_NAMES[mode])})"


def conversion_problem(have: ChannelMode, want: ChannelMode) -> str | None:
    """Why data in channel mode ``have`` cannot be turned into ``want``; None when it can.

    Data holding more than a model reads can be reduced: 3-D to 2-D (depth dropped), x, y, score to
    x, y (score dropped), and x, y to x, y, score (score 1 for present joints). 2-D data cannot
    become 3-D: depth is not recoverable.
    """
    if have == want or want != "xyz":
        return None
    return (f"{describe_mode(have)} cannot feed a 3-D model: depth cannot be recovered from 2-D "
            f"poses")


def mismatch_hint(have: ChannelMode | None, want: ChannelMode) -> str:
    """What to do when a file's channels are not the model's (for the refusal message)."""
    if have is None:
        return f"give {describe_mode(want)}"
    if want == "xyz":
        return ("use a model trained for 2-D input (a task whose target has channels: xy or "
                "xy_score), or give 3-D poses")
    if have == "xyz":
        hint = ("drop the depth (z) before clustering (e.g. save x, y as plain .npy arrays), or use "
                "a model trained on 3-D poses (channels: xyz)")
        if want == "xy_score":
            hint += "; plain arrays that hold x, y, score are read as such with --channels xy_score"
        return hint
    if have == "xy_score":
        return "drop the score channel, or use a model trained with channels: xy_score"
    return ("this model needs a confidence score per joint: use a model trained with channels: xy, "
            "or give x, y, score poses")


class PreprocessConfig(BaseModel):
    """How raw poses become model input (METHOD §2); saved in every prepared task and manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    layout: str  # the model's joint layout (a name known to codt_deploy.layouts)
    frames: int = Field(50, ge=1)  # T
    persons: int = Field(2, ge=1)  # M
    center: bool = True  # §2 step 2
    align: bool = True  # §2 step 4 (3-D data only)
    neck: NeckSource = "spine_shoulder"  # which NTU joint plays the neck when mapping (METHOD §4)
    channels: ChannelMode = "xyz"  # "xyz" (3-D), "xy" (2-D) or "xy_score" (2-D + confidence)

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        return get_layout(value).name  # raises LayoutError (a ValueError) listing the layouts

    @property
    def channel_names(self) -> tuple[str, ...]:
        return CHANNEL_NAMES[self.channels]

    @property
    def coordinate_channels(self) -> int:
        """How many leading channels are coordinates (3: x, y, z; 2: x, y, then a score if any)."""
        return 3 if self.channels == "xyz" else 2

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


def presence(data: np.ndarray, mode: ChannelMode) -> np.ndarray:
    """(T, M, V, C) → (T, M, V) float32: 1 where a joint is present, else 0.

    ``xy_score``: its score is above 0; ``xyz`` and ``xy``: any coordinate is non-zero.
    """
    if mode == "xy_score":
        return (data[..., 2] > 0).astype(np.float32)
    return np.any(data != 0, axis=-1).astype(np.float32)


def reduce_channels(data: np.ndarray, have: ChannelMode, want: ChannelMode) -> np.ndarray:
    """Raw ``(T, M, V, C_have)`` → ``(T, M, V, C_want)`` as recorded (no alignment first).

    ``xyz`` → ``xy``: depth dropped; → ``xy_score``: depth dropped, score = :func:`presence`;
    ``xy_score`` → ``xy``: score dropped, joints with score 0 zeroed (absent, as in ``xy`` data);
    ``xy`` → ``xy_score``: score = presence. Refuses what :func:`conversion_problem` refuses.
    """
    problem = conversion_problem(have, want)
    if problem is not None:
        raise ValueError(problem)
    if have == want:
        return data
    xy = data[..., :2]  # (T, M, V, 2)
    if have == "xy_score":
        xy = xy * (data[..., 2:3] > 0)
    if want == "xy":
        return np.ascontiguousarray(xy, dtype=data.dtype)
    score = presence(data, have)[..., None].astype(data.dtype)  # (T, M, V, 1)
    return np.concatenate([xy, score], axis=-1)  # (T, M, V, 3)


def project_depth(data: np.ndarray, angle: float = 0.0) -> np.ndarray:
    """Project 3-D points ``(T, M, V, 3)`` onto the x-y plane → ``(T, M, V, 2)``.

    The points are first rotated by ``angle`` radians about the vertical (y) axis with
    :func:`rotate_y` (the view the camera would have from there; 0 keeps the view), then the depth
    z is dropped. Absent joints (zeros) stay zero.
    """
    if angle:
        theta = np.full(data.shape[:2], angle, dtype=np.float64)  # (T, M)
        data = rotate_y(data.astype(np.float64), theta)  # (T, M, V, 3)
    return np.ascontiguousarray(data[..., :2])  # (T, M, V, 2)


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------

def _check_input(seq: PoseSequence, cfg: PreprocessConfig) -> None:
    wanted = cfg.channel_names
    if tuple(seq.channels) != wanted:
        have = mode_of_channels(seq.channels)
        raise PoseFormatError(seq.source, f"has channels {tuple(seq.channels)} "
                                          f"({describe_mode(have)}) but the model expects "
                                          f"{wanted} ({describe_mode(cfg.channels)}, "
                                          f"channels={cfg.channels!r}): "
                                          f"{mismatch_hint(have, cfg.channels)}")
    _check_values(seq)


def _check_values(seq: PoseSequence) -> None:
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


def _standardise(data: np.ndarray, cfg: PreprocessConfig, coord_channels: int) -> np.ndarray:
    """Steps 2-6 on mapped ``(T, M_in, V, C)`` → ``(T, M, V, C)``; the first ``coord_channels``
    channels are coordinates (3: 3-D, aligned), a channel after them is a score / presence (> 0:
    the joint is present; without one, a joint is present where a coordinate is non-zero)."""
    layout = get_layout(cfg.layout)
    data = select_persons(data, cfg.persons, coord_channels)  # (T, M, V, C)
    data = drop_empty_frames(data)  # (L, M, V, C)
    if cfg.center:
        if data.shape[-1] > coord_channels:
            joint_present = data[..., coord_channels] > 0  # (L, M, V): score 0 = undetected
        else:
            joint_present = np.any(data != 0, axis=-1)  # (L, M, V)
        data = center_on_joint(data, layout.center, coord_channels, joint_present)  # (L, M, V, C)
    data = resample_linear(data, cfg.frames)  # (T, M, V, C)
    if cfg.align and coord_channels == 3:
        right, left = layout.shoulders
        aligned = align_shoulders(data[..., :3].astype(np.float64), right, left)  # (T, M, V, 3)
        data = aligned if data.shape[-1] == 3 else np.concatenate(
            [aligned, data[..., 3:].astype(np.float64)], axis=-1)  # (T, M, V, C)
    return data


def _to_model_input(data: np.ndarray) -> np.ndarray:
    out = np.transpose(data, (3, 0, 2, 1))  # (T, M, V, C) -> (C, T, V, M)
    return np.ascontiguousarray(out, dtype=np.float32)


def preprocess(seq: PoseSequence, cfg: PreprocessConfig) -> np.ndarray:
    """One sequence → float32 ``(C, T, V, M)`` = ``cfg.output_shape`` (METHOD §2; see above)."""
    _check_input(seq, cfg)
    data = _map_joints(seq, cfg)  # (T, M_in, V, C)
    return _to_model_input(_standardise(data, cfg, cfg.coordinate_channels))


def reduce_sequence(seq: PoseSequence, mode: ChannelMode) -> PoseSequence:
    """``seq`` with its channels reduced to ``mode`` as recorded (:func:`reduce_channels`: a 3-D
    recording used as a 2-D one keeps its camera's x and y); unchanged when they are already
    ``mode``. A conversion that cannot be made is a :class:`PoseFormatError` naming the file."""
    have = mode_of_channels(seq.channels)
    if have == mode:
        return seq
    problem = f"unsupported channels {tuple(seq.channels)}" if have is None else \
        conversion_problem(have, mode)
    if problem is not None or have is None:
        raise PoseFormatError(seq.source, f"{problem}; expected {describe_mode(mode)}")
    data = reduce_channels(np.asarray(seq.data, np.float32), have, mode)  # (T, M, V, C')
    return dataclasses.replace(seq, data=data, channels=CHANNEL_NAMES[mode])


def preprocess_converted(seq: PoseSequence, cfg: PreprocessConfig, *,
                         view_angle: float = 0.0) -> np.ndarray:
    """Like :func:`preprocess`, converting a sequence that holds more than ``cfg.channels``.

    A 3-D sequence for a 2-D model is mapped, centred, resampled and shoulder-aligned in 3-D
    (steps 1-6), then :func:`project_depth` rotates it by ``view_angle`` radians about the vertical
    axis and drops the depth; an ``xy_score`` model gets score 1 for present joints and 0 for
    missing ones (resampled like a score). Other 2-D conversions reduce the raw channels first
    (:func:`reduce_channels`). A conversion :func:`conversion_problem` refuses, or a
    ``view_angle`` without a 3-D → 2-D projection, is a :class:`PoseFormatError`.
    """
    have = mode_of_channels(seq.channels)
    projects = have == "xyz" and cfg.channels != "xyz"
    if view_angle and not projects:
        raise PoseFormatError(seq.source, f"a view rotation applies only to 3-D poses projected "
                                          f"for a 2-D model, not to {describe_mode(have)} for a "
                                          f"{cfg.channels!r} model")
    if have is None or have == cfg.channels:
        return preprocess(seq, cfg)  # the usual checks and messages
    problem = conversion_problem(have, cfg.channels)
    if problem is not None:
        raise PoseFormatError(seq.source, problem)
    _check_values(seq)
    if not projects:
        return preprocess(reduce_sequence(seq, cfg.channels), cfg)
    data = _map_joints(seq, cfg)  # (T, M_in, V, 3)
    present = presence(data, "xyz")[..., None]  # (T, M_in, V, 1)
    data = np.concatenate([data, present], axis=-1)  # (T, M_in, V, 4): x, y, z, presence
    data = _standardise(data, cfg, coord_channels=3)  # (T, M, V, 4), aligned in 3-D
    out = project_depth(data[..., :3], view_angle)  # (T, M, V, 2)
    if cfg.channels == "xy_score":
        out = np.concatenate([out, data[..., 3:4]], axis=-1)  # (T, M, V, 3)
    return _to_model_input(out)


def preprocess_batch(seqs: Sequence[PoseSequence], cfg: PreprocessConfig) -> np.ndarray:
    """Many sequences → float32 ``(N, C, T, V, M)``; an empty list gives N = 0."""
    out = np.zeros((len(seqs), *cfg.output_shape), dtype=np.float32)  # (N, C, T, V, M)
    for i, seq in enumerate(seqs):
        out[i] = preprocess(seq, cfg)
    return out
