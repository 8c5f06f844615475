"""Label-free baselines on the preprocessed raw poses: what a user gets from scikit-learn alone.

Every benchmark table prints these beside CoDT, measured in the same run, so that it always says
whether training is worth it. The poses are the prepared target eval split (the B1 layout, exactly
what the exported model reads), flattened to (N, C·T·V·M) and L2-normalised, without per-dimension
standardisation (which lowers every baseline here). K is the task's number of clusters.

- ``kmeans``: spherical k-means (the project's own kernel, :func:`training.metrics.kmeans_metrics`),
  mean over seeds;
- ``ward``: Ward agglomerative clustering (deterministic);
- ``spectral``: spectral clustering of the symmetrised 10-nearest-neighbour graph, mean over seeds
  of its k-means label assignment.
"""

from __future__ import annotations

import numpy as np

from training.clustering import spectral_labels
from training.metrics import METRICS, cluster_metrics, kmeans_metrics

BASELINES = ("kmeans", "ward", "spectral")


def flattened_poses(poses: np.ndarray) -> np.ndarray:
    """(N, C, T, V, M) poses → (N, C·T·V·M) float64 rows of unit L2 norm (zero rows stay zero)."""
    array = np.asarray(poses, dtype=np.float64)
    rows = array.reshape(array.shape[0], -1)  # (N, C·T·V·M)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for key in METRICS:
        values = np.array([run[key] for run in runs])
        out[key], out[f"{key}_std"] = float(values.mean()), float(values.std())
    return out


def raw_pose_baselines(poses: np.ndarray, labels: np.ndarray, k: int, *, seeds: int = 5
                       ) -> dict[str, dict[str, float]]:
    """``{baseline: {metric, "<metric>_std"}}`` ×100 (:data:`training.metrics.METRICS`) for the
    three baselines on ``poses``."""
    from sklearn.cluster import AgglomerativeClustering

    rows = flattened_poses(poses)
    labels = np.asarray(labels)
    ward = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(rows)
    spectral = [cluster_metrics(labels, spectral_labels(rows, k, seed=seed)) for seed in range(seeds)]
    return {"kmeans": kmeans_metrics(rows.astype(np.float32), labels, k, seeds=seeds),
            "ward": _summary([cluster_metrics(labels, ward)]),
            "spectral": _summary(spectral)}
