"""codt_deploy.preprocess: METHOD.md §2 (the CrosSCLR pipeline), pinned by hand-computed cases,
a loop-based re-implementation of the reference code, and hypothesis properties."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from codt_deploy.errors import PoseFormatError
from codt_deploy.layouts import get_layout
from codt_deploy.preprocess import (
    PreprocessConfig,
    align_shoulders,
    preprocess,
    preprocess_batch,
    resample_linear,
    select_persons,
)
from codt_deploy.sequence import PoseSequence

NTU = get_layout("ntu25")


def make_seq(data, layout="ntu25", channels=("x", "y", "z"), source="sample.skeleton"):
    return PoseSequence(np.asarray(data, dtype=np.float32), layout, source, channels=channels)


def random_skeleton(rng, frames=40, persons=2, layout="ntu25", channels=3):
    """(T, M, V, C) poses with every joint non-zero, about 3 m in front of the camera."""
    v = get_layout(layout).num_joints
    data = rng.normal(0.0, 0.3, size=(frames, persons, v, channels))
    data[..., 2 % channels] += 3.0
    return data.astype(np.float32)


# ----------------------------------------------------------------------------------- config

def test_config_is_frozen_and_rejects_unknown_keys():
    cfg = PreprocessConfig(layout="ntu")
    assert cfg.layout == "ntu25"  # aliases resolve to the canonical name
    assert cfg.output_shape == (3, 50, 25, 2)
    with pytest.raises(ValidationError):
        PreprocessConfig(layout="ntu25", frame=50)  # typo of "frames"
    with pytest.raises(ValidationError):
        cfg.frames = 10
    with pytest.raises(ValidationError, match="unknown skeleton layout"):
        PreprocessConfig(layout="kinect99")
    assert PreprocessConfig.model_validate(cfg.model_dump()) == cfg


# ------------------------------------------------------------------------------- resampling

def test_resample_matches_hand_computed_inter_linear():
    # Upsampling 3 -> 5: sources clamp(-0.2)=0, 0.4, 1.0, 1.6, clamp(2.2)=2.
    x = np.array([0.0, 10.0, 20.0], dtype=np.float32).reshape(3, 1, 1, 1)
    np.testing.assert_allclose(resample_linear(x, 5).ravel(), [0, 4, 10, 16, 20], atol=1e-5)
    # Downsampling 4 -> 2: sources 0.5 and 2.5, so the end frames are blended, as in OpenCV.
    y = np.array([0.0, 10.0, 20.0, 30.0], dtype=np.float32).reshape(4, 1, 1, 1)
    np.testing.assert_allclose(resample_linear(y, 2).ravel(), [5, 25], atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 120), frames=st.integers(1, 60), seed=st.integers(0, 2**16))
def test_resample_properties(length, frames, seed):
    x = np.random.default_rng(seed).normal(size=(length, 2, 3, 3)).astype(np.float32)
    out = resample_linear(x, frames)
    assert out.shape == (frames, 2, 3, 3) and out.dtype == np.float32
    # Linear interpolation stays inside the per-coordinate range of the input.
    assert np.all(out >= x.min(axis=0) - 1e-5) and np.all(out <= x.max(axis=0) + 1e-5)
    if length <= frames:  # growing (or same length) keeps both end frames exactly
        np.testing.assert_allclose(out[0], x[0], atol=1e-6)
        np.testing.assert_allclose(out[-1], x[-1], atol=1e-6)
    if length == frames:
        np.testing.assert_allclose(out, x, atol=1e-6)


def test_one_frame_clip_becomes_copies():
    rng = np.random.default_rng(0)
    data = random_skeleton(rng, frames=1, persons=1)
    out = preprocess(make_seq(data), PreprocessConfig(layout="ntu25"))
    assert out.shape == (3, 50, 25, 2)
    np.testing.assert_allclose(out[:, 1:, :, 0], np.repeat(out[:, :1, :, 0], 49, axis=1))
    assert np.all(out[..., 1] == 0)


# ----------------------------------------------------------------- against the reference code

def _reference_crossclr(data_tmvc: np.ndarray, frames: int = 50) -> np.ndarray:
    """A loop-by-loop transcription of CrosSCLR's feeder (centre on joint 21, INTER_LINEAR resize
    of the first L frames, ``parallel_skeleton`` per person) for (T, M, 25, 3) input."""
    x = np.transpose(data_tmvc, (3, 0, 2, 1)).astype(np.float64)  # (C, T, V, M)
    c, t, v, m = x.shape
    length = int((np.abs(x[:, :, 0, 0]).sum(axis=0) != 0).sum())
    x = x - x[:, :, 20:21, :]
    out = np.zeros((c, frames, v, m))
    for n in range(m):
        for f in range(frames):
            s = min(max((f + 0.5) * length / frames - 0.5, 0.0), length - 1)
            lo = int(np.floor(s))
            hi = min(lo + 1, length - 1)
            out[:, f, :, n] = (1 - (s - lo)) * x[:, lo, :, n] + (s - lo) * x[:, hi, :, n]
    for n in range(m):
        vec = out[:, :, 8, n] - out[:, :, 4, n]
        vec[1] = 0
        thetas = np.arccos(vec[0] / (np.sqrt((vec ** 2).sum(axis=0)) + 0.0001))
        if vec[2].sum() >= 0:
            thetas = -thetas
        for f in range(frames):
            co, si = np.cos(thetas[f]), np.sin(thetas[f])
            rot = np.array([[co, 0, -si], [0, 1, 0], [si, 0, co]])
            out[:, f, :, n] = rot @ out[:, f, :, n]
    return out


@pytest.mark.parametrize("length", [1, 13, 50, 97, 300])
def test_matches_a_transcription_of_the_reference_code(length):
    rng = np.random.default_rng(length)
    data = random_skeleton(rng, frames=length, persons=2)
    ours = preprocess(make_seq(data), PreprocessConfig(layout="ntu25"))
    np.testing.assert_allclose(ours, _reference_crossclr(data), atol=2e-5)


# ------------------------------------------------------------------------- centre and align

@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), length=st.integers(1, 80), align=st.booleans())
def test_centre_joint_is_at_origin(seed, length, align):
    data = random_skeleton(np.random.default_rng(seed), frames=length, persons=2)
    out = preprocess(make_seq(data), PreprocessConfig(layout="ntu25", align=align))
    np.testing.assert_allclose(out[:, :, NTU.center[0], :], 0.0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), length=st.integers(1, 120),
       side=st.sampled_from([1.0, -1.0]))
def test_alignment_makes_shoulders_parallel_to_x(seed, length, side):
    """Yaw each frame so R - L shoulder has v_z of one sign; afterwards v ∥ +x (z ≈ 0)."""
    rng = np.random.default_rng(seed)
    data = random_skeleton(rng, frames=length, persons=1)
    yaw = side * rng.uniform(0.05, np.pi - 0.05, size=length)  # sin(yaw) has one sign
    width = rng.uniform(0.2, 0.5, size=length)
    right, left = NTU.shoulders
    mid = data[:, 0, 20, :].copy()
    offset = np.stack([width * np.cos(yaw), np.zeros(length), -width * np.sin(yaw)], axis=1)
    data[:, 0, right, :] = mid + offset / 2
    data[:, 0, left, :] = mid - offset / 2
    out = preprocess(make_seq(data), PreprocessConfig(layout="ntu25"))
    v = out[:, :, right, 0] - out[:, :, left, 0]  # (3, T)
    # The 1e-4 of θ = arccos(v_x / (‖v‖ + 1e-4)) leaves |v_z| ≈ 1e-4·cot(yaw) ≤ 2e-3 here.
    np.testing.assert_allclose(v[2], 0.0, atol=2.5e-3)
    assert np.all(v[0] > 0)
    np.testing.assert_allclose(v[1], 0.0, atol=1e-5)


def test_alignment_sign_is_chosen_once_per_person():
    """A frame whose v_z opposes the sequence's sum turns the other way (reference behaviour)."""
    right, left = NTU.shoulders
    data = np.zeros((3, 1, 25, 3))
    data[:, 0, :, 1] = 1.0  # every joint present
    for t, vz in enumerate([0.3, 0.2, -0.1]):
        data[t, 0, right] = [0.5, 1.0, vz / 2]
        data[t, 0, left] = [-0.5, 1.0, -vz / 2]
    out = align_shoulders(data, right, left)
    v = out[:, 0, right] - out[:, 0, left]
    np.testing.assert_allclose(v[:2, 2], 0.0, atol=1e-3)
    assert abs(v[2, 2]) > 0.1


def test_alignment_is_a_rotation():
    rng = np.random.default_rng(3)
    data = random_skeleton(rng, frames=50, persons=2).astype(np.float64)
    out = align_shoulders(data, *NTU.shoulders)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(data, axis=-1),
                               rtol=1e-9)
    np.testing.assert_allclose(out[..., 1], data[..., 1])


# ----------------------------------------------------------------------- degenerate inputs

def test_all_zero_sequence_gives_zeros():
    out = preprocess(make_seq(np.zeros((30, 2, 25, 3))), PreprocessConfig(layout="ntu25"))
    assert np.all(np.isfinite(out)) and np.all(out == 0)


def test_zero_length_sequence_gives_zeros():
    out = preprocess(make_seq(np.zeros((0, 1, 25, 3))), PreprocessConfig(layout="ntu25"))
    assert out.shape == (3, 50, 25, 2) and np.all(out == 0)


def test_empty_frames_are_dropped_wherever_they_are():
    rng = np.random.default_rng(1)
    data = random_skeleton(rng, frames=20, persons=1)
    gappy = np.concatenate([np.zeros((3, 1, 25, 3)), data[:8], np.zeros((5, 1, 25, 3)),
                            data[8:], np.zeros((4, 1, 25, 3))])
    cfg = PreprocessConfig(layout="ntu25")
    np.testing.assert_allclose(preprocess(make_seq(gappy), cfg), preprocess(make_seq(data), cfg),
                               atol=1e-6)


def test_missing_second_person_stays_zero_and_output_is_finite():
    rng = np.random.default_rng(2)
    data = random_skeleton(rng, frames=30, persons=2)
    data[10:, 1] = 0.0  # person 2 leaves after frame 10
    out = preprocess(make_seq(data), PreprocessConfig(layout="ntu25"))
    assert np.all(np.isfinite(out))
    single = preprocess(make_seq(data[:, :1]), PreprocessConfig(layout="ntu25"))
    assert single.shape == (3, 50, 25, 2)
    assert np.all(single[..., 1] == 0)
    # Person 2's frames 0-9 map to output frames 0-16 (source position < 9.5 ... clamped).
    assert np.all(out[:, 20:, :, 1] == 0)


def test_degenerate_shoulders_stay_finite():
    data = np.zeros((5, 1, 25, 3), np.float32)
    data[:, 0, :, 1] = np.linspace(0.1, 1.0, 25)  # every joint on the y axis: v = 0
    out = preprocess(make_seq(data), PreprocessConfig(layout="ntu25"))
    assert np.all(np.isfinite(out))


# ------------------------------------------------------------------------------- persons

def test_most_active_persons_are_kept_in_original_order():
    rng = np.random.default_rng(4)
    data = random_skeleton(rng, frames=30, persons=3)
    data[:, 1] = data[0, 1]  # person 1 stands still: zero motion energy
    kept = select_persons(data, 2, 3)
    np.testing.assert_array_equal(kept, data[:, [0, 2]])
    padded = select_persons(data[:, :1], 2, 3)
    assert padded.shape == (30, 2, 25, 3) and np.all(padded[:, 1] == 0)


def test_absent_person_ranks_last():
    rng = np.random.default_rng(5)
    data = random_skeleton(rng, frames=10, persons=3)
    data[:, 0] = 0.0
    np.testing.assert_array_equal(select_persons(data, 2, 3), data[:, [1, 2]])


# --------------------------------------------------------------------------------- joints

def test_joints_are_reordered_by_name_into_another_layout():
    rng = np.random.default_rng(6)
    src, dst = get_layout("kinect20"), get_layout("msr20")
    data = random_skeleton(rng, frames=50, persons=2, layout="kinect20")
    cfg = PreprocessConfig(layout="msr20", center=False, align=False)
    out = preprocess(make_seq(data, layout="kinect20"), cfg)  # (C, T, V, M); T = L: identity
    for j, name in enumerate(dst.joints):
        expected = data[:, :, src.index(name), :].transpose(2, 0, 1)  # (T, M, C) -> (C, T, M)
        np.testing.assert_allclose(out[:, :, j, :], expected, atol=1e-6)


@pytest.mark.parametrize("neck, ntu_index", [("spine_shoulder", 20), ("neck", 2)])
def test_ntu_to_shared15_picks_the_configured_neck(neck, ntu_index):
    rng = np.random.default_rng(7)
    data = random_skeleton(rng, frames=50, persons=1)
    cfg = PreprocessConfig(layout="shared15", center=False, align=False, neck=neck)
    out = preprocess(make_seq(data), cfg)
    np.testing.assert_allclose(out[:, :, 1, 0], data[:, 0, ntu_index, :].T, atol=1e-6)


def test_missing_joints_name_the_file():
    data = np.ones((4, 1, 17, 3), np.float32)
    with pytest.raises(PoseFormatError, match=r"clip\.npz.*coco17.*ntu25"):
        preprocess(make_seq(data, layout="coco17", source="clip.npz"),
                   PreprocessConfig(layout="ntu25"))


def test_wrong_channels_and_nan_name_the_file():
    data = np.ones((4, 1, 25, 3), np.float32)
    with pytest.raises(PoseFormatError, match=r"a\.json.*channels"):
        preprocess(make_seq(data, channels=("x", "y", "score"), source="a.json"),
                   PreprocessConfig(layout="ntu25"))
    data[2, 0, 5, 1] = np.nan
    with pytest.raises(PoseFormatError, match=r"b\.skeleton \(frame 2\).*NaN"):
        preprocess(make_seq(data, source="b.skeleton"), PreprocessConfig(layout="ntu25"))


# ------------------------------------------------------------------------------------ 2-D

def test_two_d_centres_xy_keeps_score_and_does_not_rotate():
    rng = np.random.default_rng(8)
    data = rng.uniform(0.1, 0.9, size=(50, 1, 18, 3)).astype(np.float32)
    data[..., 2] = rng.uniform(0.2, 1.0, size=(50, 1, 18))
    data[:, 0, 4, :] = 0.0  # right wrist never detected: x = y = score = 0
    seq = make_seq(data, layout="coco18", channels=("x", "y", "score"))
    out = preprocess(seq, PreprocessConfig(layout="coco18", channels="xy_score"))
    assert out.shape == (3, 50, 18, 2)
    expected_xy = data[:, 0, :, :2] - data[:, 0, 1:2, :2]  # centre = neck (joint 1)
    expected_xy[:, 4] = 0.0
    np.testing.assert_allclose(out[:2, :, :, 0], expected_xy.transpose(2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(out[2, :, :, 0], data[:, 0, :, 2], atol=1e-6)


def test_missing_centre_joint_falls_back_to_the_mean_of_present_joints():
    data = np.zeros((50, 1, 18, 3), np.float32)
    data[:, 0, [2, 5], 0] = [[0.4, 0.6]]  # only the shoulders, at x 0.4 and 0.6
    data[:, 0, [2, 5], 1] = 0.5
    data[:, 0, [2, 5], 2] = 1.0
    seq = make_seq(data, layout="coco18", channels=("x", "y", "score"))
    out = preprocess(seq, PreprocessConfig(layout="coco18", channels="xy_score"))
    np.testing.assert_allclose(out[0, 0, [2, 5], 0], [-0.1, 0.1], atol=1e-6)
    assert np.all(out[:2, :, 1] == 0)  # the neck is missing and stays zero


# ---------------------------------------------------------------------------------- batch

def test_batch_stacks_samples_and_handles_empty_lists():
    rng = np.random.default_rng(9)
    cfg = PreprocessConfig(layout="ntu25")
    seqs = [make_seq(random_skeleton(rng, frames=n, persons=1)) for n in (5, 60, 300)]
    batch = preprocess_batch(seqs, cfg)
    assert batch.shape == (3, 3, 50, 25, 2) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], preprocess(seqs[1], cfg))
    assert preprocess_batch([], cfg).shape == (0, 3, 50, 25, 2)


def test_speed_is_that_of_vectorised_code():
    """A 300-frame, 2-person NTU sequence; ~0.3 ms here. A per-joint Python loop would be ~10x."""
    rng = np.random.default_rng(10)
    seq = make_seq(random_skeleton(rng, frames=300, persons=2))
    cfg = PreprocessConfig(layout="ntu25")
    preprocess(seq, cfg)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        preprocess(seq, cfg)
        times.append(time.perf_counter() - start)
    assert np.median(times) < 5e-3, f"median {np.median(times) * 1e3:.2f} ms per sequence"
