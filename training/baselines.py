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
  to another performed faster or slower), beyond scikit-learn alone (docs/METHOD.md §15.11).
"""

from __future__ import annotations

from typing import get_args

import numpy as np

from training.clustering import dtw_knn_affinity, spectral_labels
from training.config import RawGraphMetric
from training.metrics import METRICS, cluster_metrics, kmeans_metrics

BASELINES = ("kmeans", "ward", "spectral", "spectral_dtw")
RAW_METRICS = get_args(RawGraphMetric)  # ("euclidean", "dtw")


def flattened_poses(poses: np.ndarray) -> np.ndarray:
    """(N, C, T, V, M) poses → (N, C·T·V·M) float64 rows of unit L2 norm (zero rows stay zero)."""
    array = np.asarray(poses, dtype=np.float64)
    rows = array.reshape(array.shape[0], -1)  # (N, C·T·V·M)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def raw_pose_view(poses: np.ndarray, metric: str = "euclidean"):
    """The raw poses (N, C, T, V, M) as a view of :func:`training.clustering.spectral_labels`:
    ``euclidean``: the flattened rows (N, C·T·V·M) of :func:`flattened_poses` (their kNN graph is
    built there); ``dtw``: the sparse (N, N) 10-NN graph of those rows read as sequences of T
    frames under dynamic time warping (docs/METHOD.md §15.11)."""
    if metric not in RAW_METRICS:
        raise ValueError(f"unknown raw-pose metric {metric!r} (one of {', '.join(RAW_METRICS)})")
    rows = flattened_poses(poses)  # (N, C·T·V·M)
    if metric == "euclidean":
        return rows
    n, c, t, v, m = np.shape(poses)
    frames = rows.reshape(n, c, t, v, m).transpose(0, 2, 1, 3, 4).reshape(n, t, c * v * m)  # (N, T, C·V·M)
    return dtw_knn_affinity(frames)


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
    dtw_graph = raw_pose_view(poses, "dtw")  # sparse (N, N)
    spectral_dtw = [cluster_metrics(labels, spectral_labels(dtw_graph, k, seed=seed))
                    for seed in range(seeds)]
    return {"kmeans": kmeans_metrics(rows.astype(np.float32), labels, k, seeds=seeds),
            "ward": _summary([cluster_metrics(labels, ward)]),
            "spectral": _summary(spectral),
            "spectral_dtw": _summary(spectral_dtw)}
