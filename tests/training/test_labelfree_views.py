"""training.labelfree.views: the raw-pose views, dynamic time warping and the kNN graphs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from training.labelfree.partition import spectral_labels
from training.labelfree.views import (
    VELOCITY_WEIGHT,
    dtw_distances,
    dtw_knn_affinity,
    flattened_poses,
    knn_affinity,
    pose_frames,
    raw_pose_graph,
)


def _reference_dtw(a: np.ndarray, b: np.ndarray, band: int) -> float:
    """Textbook O(T²) dynamic programme for one pair (T, D), (T, D)."""
    t = len(a)
    acc = np.full((t + 1, t + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, t + 1):
        for j in range(1, t + 1):
            if abs(i - j) <= band:
                cost = float(((a[i - 1] - b[j - 1]) ** 2).sum())
                acc[i, j] = cost + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(acc[t, t])


def test_dtw_matches_the_textbook_programme():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 9, 4))  # two batches of 5 pairs, T = 9, D = 4
    for band in (0, 1, 3, 8, 20):
        got = dtw_distances(a, b, band)
        want = [_reference_dtw(a[p], b[p], band) for p in range(5)]
        assert got == pytest.approx(want, rel=1e-4)


def test_band_zero_is_the_squared_euclidean_distance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 3, 6, 2))
    assert dtw_distances(a, b, 0) == pytest.approx(((a - b) ** 2).sum(axis=(1, 2)), rel=1e-5)


def test_a_slower_copy_is_near_under_dtw_only():
    t = np.linspace(0, 1, 40)
    fast = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)], axis=1)  # (T, 2)
    warped = np.clip(t ** 1.6, 0, 1)  # the same motion, started slowly and finished fast
    slow = np.stack([np.sin(2 * np.pi * warped), np.cos(2 * np.pi * warped)], axis=1)
    euclidean = dtw_distances(fast[None], slow[None], 0)[0]
    warping = dtw_distances(fast[None], slow[None], 8)[0]
    assert warping < 0.2 * euclidean


def test_rejects_mismatched_shapes_and_a_negative_band():
    with pytest.raises(ValueError, match="one shape"):
        dtw_distances(np.zeros((2, 5, 3)), np.zeros((2, 4, 3)), 1)
    with pytest.raises(ValueError, match="band"):
        dtw_distances(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), -1)


def _two_motions(n_per: int = 8, t: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clips (N, T, 2) of two motions (a circle, a line), each performed at random speeds."""
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    base = np.linspace(0, 1, t)
    for label in (0, 1):
        for _ in range(n_per):
            phase = np.clip(base ** rng.uniform(0.6, 1.7), 0, 1)  # a random speed profile
            if label == 0:
                clip = np.stack([np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)], axis=1)
            else:
                clip = np.stack([phase * 2 - 1, -(phase * 2 - 1)], axis=1)
            clips.append(clip + rng.normal(scale=0.02, size=clip.shape))
            labels.append(label)
    return np.asarray(clips), np.asarray(labels)


def test_knn_graph_is_symmetric_contains_each_clip_and_matches_the_exhaustive_search():
    clips, _ = _two_motions()
    n = len(clips)
    graph = dtw_knn_affinity(clips, n_neighbors=4, band=5, candidates=n)  # exhaustive
    dense = graph.toarray()
    assert sparse.issparse(graph) and np.allclose(dense, dense.T)
    assert np.all(np.diag(dense) == 1.0)
    # exhaustive reference: each clip's 4 nearest under the DTW distance (itself included)
    first, second = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    full = dtw_distances(clips[first.ravel()], clips[second.ravel()], 5).reshape(n, n)
    np.fill_diagonal(full, -1.0)
    nearest = np.argsort(full, axis=1, kind="stable")[:, :4]
    one_sided = np.zeros((n, n))
    one_sided[np.repeat(np.arange(n), 4), nearest.ravel()] = 1.0
    assert np.allclose(dense, 0.5 * (one_sided + one_sided.T))
    # a candidate pool smaller than N still gives each clip 4 neighbours, itself among them
    pooled = dtw_knn_affinity(clips, n_neighbors=4, band=5, candidates=6).toarray()
    assert np.all(np.diag(pooled) == 1.0) and np.all((pooled > 0).sum(axis=1) >= 4)


def test_dtw_graph_separates_motions_performed_at_different_speeds():
    clips, labels = _two_motions(n_per=10)
    graph = dtw_knn_affinity(clips, n_neighbors=5)
    within = graph.toarray()[labels[:, None] == labels[None, :]].sum()
    assert within == pytest.approx(graph.sum())  # no edge joins the two motions
    found = spectral_labels(graph, 2, seed=0)  # a sparse view is taken as the graph
    assert len(set(zip(found, labels))) == 2


def test_raw_pose_graph_rows_or_dtw_graph():
    rng = np.random.default_rng(2)
    poses = rng.normal(size=(12, 3, 10, 4, 1))  # (N, C, T, V, M)
    rows = raw_pose_graph(poses, "euclidean")
    assert np.allclose(rows, flattened_poses(poses))
    graph = raw_pose_graph(poses, "dtw")
    assert graph.shape == (12, 12) and sparse.issparse(graph)
    assert knn_affinity(graph) is graph
    with pytest.raises(ValueError, match="unknown raw-pose metric"):
        raw_pose_graph(poses, "cosine")


def test_pose_frames_are_unit_positions_then_weighted_unit_velocities():
    rng = np.random.default_rng(3)
    poses = rng.normal(size=(5, 3, 8, 4, 2))  # (N, C, T, V, M)
    positions = pose_frames(poses)  # (N, T, C·V·M)
    assert positions.shape == (5, 8, 24) and positions.dtype == np.float32
    want = flattened_poses(poses).reshape(5, 3, 8, 4, 2).transpose(0, 2, 1, 3, 4).reshape(5, 8, 24)
    assert np.allclose(positions, want, atol=1e-6)
    both = pose_frames(poses, 0.5)  # (N, T, 2·C·V·M)
    assert both.shape == (5, 8, 48)
    assert np.allclose(both[:, :, :24], positions)
    velocity = both[:, :, 24:] / 0.5  # unit-norm clip velocities
    assert np.allclose(np.linalg.norm(velocity.reshape(5, -1), axis=1), 1.0, atol=1e-5)
    step = poses[:, :, 2] - poses[:, :, 1]  # (N, C, V, M): frame 2 − frame 1
    steps = np.diff(poses, axis=2)  # (N, C, T − 1, V, M); frame 0 repeats step 0
    scale = np.linalg.norm(np.concatenate([steps[:, :, :1], steps], axis=2).reshape(5, -1), axis=1)
    assert np.allclose(velocity[:, 2], (step.reshape(5, -1) / scale[:, None]), atol=1e-5)
    assert np.allclose(velocity[:, 0], velocity[:, 1])  # the first frame takes the second's
    still = np.ones((2, 3, 6, 4, 1))  # a clip that does not move has no velocity part
    assert np.allclose(pose_frames(still, 0.5)[:, :, 12:], 0.0)
    with pytest.raises(ValueError, match="N, C, T, V, M"):
        pose_frames(np.zeros((5, 3, 8, 4)))


def _reach_or_reach_with_tremor(n_per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clips (2·n_per, C, T, V, M): a reach of random length; the second kind adds a small fast
    tremor of another joint, a difference in motion more than in where the joints are."""
    rng = np.random.default_rng(seed)
    time_ = np.linspace(0, 1, 30)
    body = rng.normal(size=(3, 1, 4, 1))  # (C, 1, V, M)
    clips, labels = [], []
    for label in (0, 1):
        for _ in range(n_per):
            clip = np.repeat(body, 30, axis=1)  # (C, T, V, M)
            clip[0, :, 0, 0] += rng.uniform(0.5, 1.5) * time_
            if label:
                clip[1, :, 1, 0] += 0.05 * np.sin(2 * np.pi * 6 * time_)
            clips.append(clip)
            labels.append(label)
    return np.stack(clips), np.array(labels)


def test_velocities_separate_motions_that_positions_mix():
    poses, labels = _reach_or_reach_with_tremor(n_per=10)
    same = labels[:, None] == labels[None, :]
    positions = raw_pose_graph(poses, "dtw").toarray()
    with_velocity = raw_pose_graph(poses, "dtw_velocity").toarray()
    assert positions[same].sum() < 0.8 * positions.sum()  # many edges join the two kinds
    assert with_velocity[same].sum() == pytest.approx(with_velocity.sum())  # none do
    assert VELOCITY_WEIGHT == 0.5


def test_the_exact_dtw_graph_searches_every_clip_and_pruning_may_miss_some():
    clips, _ = _two_motions(n_per=10)  # (20, T, D)
    exact = dtw_knn_affinity(clips, n_neighbors=5, candidates=None)
    every = dtw_knn_affinity(clips, n_neighbors=5, candidates=19)  # all 19 others are candidates
    assert sparse.issparse(exact) and np.allclose(exact.toarray(), every.toarray())
    pruned = dtw_knn_affinity(clips, n_neighbors=5, candidates=5)  # only the 5 Euclidean-nearest
    assert not np.allclose(pruned.toarray(), exact.toarray())  # some DTW-nearest were not among them
    rng = np.random.default_rng(4)
    poses = rng.normal(size=(12, 3, 10, 4, 1))  # (N, C, T, V, M)
    frames = pose_frames(poses, VELOCITY_WEIGHT)
    assert np.allclose(raw_pose_graph(poses, "dtw_velocity", exact=True).toarray(),
                       dtw_knn_affinity(frames, candidates=None).toarray())


def test_two_person_graphs_link_each_clip_to_its_copy_with_the_bodies_swapped():
    rng = np.random.default_rng(5)
    poses = rng.normal(size=(8, 3, 10, 4, 2))  # (N, C, T, V, M=2), both bodies moving
    both = np.concatenate([poses, poses[..., ::-1]])  # (16, ...): clip i and i + 8 the same
    for exact in (True, False):
        graph = raw_pose_graph(both, "dtw_velocity", exact=exact).toarray()  # (16, 16)
        assert all(graph[i, i + 8] > 0 for i in range(8))
    frames = pose_frames(both, VELOCITY_WEIGHT)
    pruned = dtw_knn_affinity(frames, n_neighbors=2, candidates=3, persons=2).toarray()
    assert all(pruned[i, i + 8] > 0 for i in range(8))


def test_raw_pose_graphs_of_2d_scored_clips_read_the_coordinates_only():
    rng = np.random.default_rng(6)
    poses = rng.normal(size=(12, 3, 10, 4, 1))  # (N, C, T, V, M): x, y, score
    xy = poses[:, :2]
    for metric in ("dtw", "dtw_velocity"):
        assert np.array_equal(raw_pose_graph(poses, metric, coordinates=2).toarray(),
                              raw_pose_graph(xy, metric).toarray())
    assert np.array_equal(raw_pose_graph(poses, coordinates=2), raw_pose_graph(xy))
