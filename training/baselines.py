"""Label-free baselines on the preprocessed raw poses: what a user gets from scikit-learn alone.

Every benchmark table prints these beside CoDT, measured in the same run, so that it always says
whether training is worth it. The poses are the prepared target eval split (the B1 layout, exactly
what the exported model reads), flattened to (N, C·T·V·M) and L2-normalised, without per-dimension
standardisation (which lowers every baseline here). K is the task's number of clusters.

- ``kmeans``: spherical k-means (the project's own kernel, :func:`training.metrics.kmeans_metrics`),
  mean over seeds;
- ``ward``: Ward agglomerative clustering (deterministic);
- ``spectral``: spectral clustering of the symmetrised 10-nearest-neighbour graph, mean over seeds
  of its k-means label assignment;
- ``spectral_dtw``: the same on the 10-nearest-neighbour graph under dynamic time warping
  (:func:`training.clustering.dtw_knn_affinity`): a stronger label-free baseline (a clip matched
  to another performed faster or slower), beyond scikit-learn alone (docs/METHOD.md §15.11);
- ``spectral_dtw_velocity``: the same with each frame's velocity beside its positions
  (:func:`pose_frames`, docs/METHOD.md §15.12): strongest on MSR Action3D, not on UTKinect.
"""

from __future__ import annotations

from typing import get_args

import numpy as np

from training.clustering import dtw_knn_affinity, spectral_labels
from training.config import RawGraphMetric
from training.metrics import METRICS, cluster_metrics, kmeans_metrics

RAW_METRICS = get_args(RawGraphMetric)  # ("euclidean", "dtw", "dtw_velocity")
WARPED_METRICS = tuple(m for m in RAW_METRICS if m != "euclidean")  # each a spectral_<m> baseline
BASELINES = ("kmeans", "ward", "spectral", *(f"spectral_{m}" for m in WARPED_METRICS))
# §15.12: weight of the (unit-norm) velocity sequence beside the (unit-norm) position sequence
VELOCITY_WEIGHT = 0.5


def flattened_poses(poses: np.ndarray) -> np.ndarray:
    """(N, C, T, V, M) poses → (N, C·T·V·M) float64 rows of unit L2 norm (zero rows stay zero)."""
    array = np.asarray(poses, dtype=np.float64)
    rows = array.reshape(array.shape[0], -1)  # (N, C·T·V·M)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def pose_frames(poses: np.ndarray, velocity_weight: float = 0.0) -> np.ndarray:
    """(N, C, T, V, M) poses → (N, T, D) float32 frames for dynamic time warping: each frame's
    C·V·M values of the clip's unit-L2 rows (:func:`flattened_poses`), D = C·V·M; with
    ``velocity_weight`` > 0, followed by ``velocity_weight`` × the same of the clip's velocities
    (frame differences, the first frame given the second's so that T is kept), D = 2·C·V·M.
    docs/METHOD.md §15.11–§15.12."""
    array = np.asarray(poses, dtype=np.float64)
    if array.ndim != 5:
        raise ValueError(f"pose_frames needs (N, C, T, V, M) poses, got shape {array.shape}")
    n, c, t, v, m = array.shape

    def frames(x: np.ndarray) -> np.ndarray:  # (N, C, T, V, M) → (N, T, C·V·M), unit per clip
        return flattened_poses(x).reshape(n, c, t, v, m).transpose(0, 2, 1, 3, 4).reshape(n, t, -1)

    positions = frames(array)  # (N, T, C·V·M)
    if velocity_weight <= 0.0 or t < 2:
        return positions.astype(np.float32)
    velocity = np.diff(array, axis=2)  # (N, C, T−1, V, M)
    velocity = np.concatenate([velocity[:, :, :1], velocity], axis=2)  # (N, C, T, V, M)
    both = np.concatenate([positions, velocity_weight * frames(velocity)], axis=2)  # (N, T, 2·C·V·M)
    return both.astype(np.float32)


def raw_pose_view(poses: np.ndarray, metric: str = "euclidean"):
    """The raw poses (N, C, T, V, M) as a view of :func:`training.clustering.spectral_labels`:
    ``euclidean``: the flattened rows (N, C·T·V·M) of :func:`flattened_poses` (their kNN graph is
    built there); ``dtw`` / ``dtw_velocity``: the sparse (N, N) 10-NN graph of the clips' frames
    (:func:`pose_frames`, without / with their velocities at :data:`VELOCITY_WEIGHT`) under
    dynamic time warping (docs/METHOD.md §15.11–§15.12)."""
    if metric not in RAW_METRICS:
        raise ValueError(f"unknown raw-pose metric {metric!r} (one of {', '.join(RAW_METRICS)})")
    if metric == "euclidean":
        return flattened_poses(poses)  # (N, C·T·V·M)
    weight = VELOCITY_WEIGHT if metric == "dtw_velocity" else 0.0
    return dtw_knn_affinity(pose_frames(poses, weight))  # frames (N, T, D) → sparse (N, N)


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for key in METRICS:
        values = np.array([run[key] for run in runs])
        out[key], out[f"{key}_std"] = float(values.mean()), float(values.std())
    return out


def raw_pose_baselines(poses: np.ndarray, labels: np.ndarray, k: int, *, seeds: int = 5
                       ) -> dict[str, dict[str, float]]:
    """``{baseline: {metric, "<metric>_std"}}`` ×100 (:data:`training.metrics.METRICS`) for the
    baselines on ``poses``."""
    from sklearn.cluster import AgglomerativeClustering

    rows = flattened_poses(poses)
    labels = np.asarray(labels)
    ward = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(rows)
    spectral = [cluster_metrics(labels, spectral_labels(rows, k, seed=seed)) for seed in range(seeds)]
    out = {"kmeans": kmeans_metrics(rows.astype(np.float32), labels, k, seeds=seeds),
           "ward": _summary([cluster_metrics(labels, ward)]),
           "spectral": _summary(spectral)}
    for metric in WARPED_METRICS:
        graph = raw_pose_view(poses, metric)  # sparse (N, N)
        out[f"spectral_{metric}"] = _summary([cluster_metrics(labels, spectral_labels(graph, k, seed=seed))
                                              for seed in range(seeds)])
    return out
