"""Label-free baselines on the preprocessed raw poses: what a user gets without training.

Every benchmark table prints these beside CoDT, measured in the same run, so that it always says
whether training is worth it. The poses are prepared target clips in the B1 layout (exactly what
the exported model reads), flattened to (N, C·T·V·M) and L2-normalised. K is the task's number of
clusters. Built from ``training.labelfree`` (its views and spectral clustering):

- ``kmeans``: spherical k-means (the project's own kernel, :func:`training.metrics.kmeans_metrics`),
  mean over seeds;
- ``ward``: Ward agglomerative clustering (deterministic);
- ``spectral``: spectral clustering of the symmetrised 10-nearest-neighbour graph, mean over seeds;
- ``spectral_dtw``: the same on the 10-NN graph under dynamic time warping;
- ``spectral_dtw_velocity``: the same with each frame's velocity beside its positions.
"""

from __future__ import annotations

import numpy as np

from training.labelfree.partition import spectral_labels
from training.labelfree.views import RAW_METRICS, flattened_poses, raw_pose_graph
from training.metrics import METRICS, cluster_metrics, kmeans_metrics

WARPED_METRICS = tuple(m for m in RAW_METRICS if m != "euclidean")  # each a spectral_<m> baseline
BASELINES = ("kmeans", "ward", "spectral", *(f"spectral_{m}" for m in WARPED_METRICS))


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for key in METRICS:
        values = np.array([run[key] for run in runs])
        out[key], out[f"{key}_std"] = float(values.mean()), float(values.std())
    return out


def raw_pose_baselines(poses: np.ndarray, labels: np.ndarray, k: int, *, seeds: int = 5,
                       coordinates: int | None = None) -> dict[str, dict[str, float]]:
    """``{baseline: {metric, "<metric>_std"}}`` ×100 (:data:`training.metrics.METRICS`) for the
    baselines on ``poses`` (their first ``coordinates`` channels, the positions, as every
    raw-pose view)."""
    from sklearn.cluster import AgglomerativeClustering

    rows = flattened_poses(poses, coordinates)
    labels = np.asarray(labels)
    ward = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(rows)
    spectral = [cluster_metrics(labels, spectral_labels(rows, k, seed=seed)) for seed in range(seeds)]
    out = {"kmeans": kmeans_metrics(rows.astype(np.float32), labels, k, seeds=seeds),
           "ward": _summary([cluster_metrics(labels, ward)]),
           "spectral": _summary(spectral)}
    for metric in WARPED_METRICS:
        graph = raw_pose_graph(poses, metric, coordinates=coordinates)  # sparse (N, N)
        out[f"spectral_{metric}"] = _summary([cluster_metrics(labels, spectral_labels(graph, k, seed=seed))
                                              for seed in range(seeds)])
    return out
