"""Training-side clustering metrics on the target val split (METHOD.md §10 "Metrics", D11, D12).

ACC, NMI and ARI themselves live in :mod:`codt_deploy.metrics` (arguments ``labels_true,
labels_pred``, as in scikit-learn). This module adds what training needs on top: integer arrays or
tensors as input, ``cluster_metrics`` ×100 as the paper's tables, and ``kmeans_metrics`` (†).
Each reports :data:`METRICS`: the paper's three and the many-to-one ACC
(:func:`codt_deploy.metrics.many_to_one_acc`, which rises with K).
"""

from __future__ import annotations

import numpy as np
import torch

from codt_deploy.metrics import evaluate
from training.clustering import spherical_kmeans

ArrayLike = np.ndarray | torch.Tensor | list
# The scores of every training and benchmark table, in their column order.
METRICS = ("acc", "nmi", "ari", "acc_many_to_one")


def _as_labels(values: ArrayLike, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def cluster_metrics(labels: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """:data:`METRICS` ×100 for predicted clusters ``pred`` against true classes ``labels`` (1-D
    integer arrays or tensors of equal length; the number of clusters may differ from the number
    of classes)."""
    label_array, pred_array = _as_labels(labels, "labels"), _as_labels(pred, "pred")
    if pred_array.shape != label_array.shape:
        raise ValueError(f"pred and labels differ in length: "
                         f"{pred_array.size} vs {label_array.size}")
    scores = evaluate(label_array, pred_array)
    return {key: 100.0 * scores[key] for key in METRICS}


def kmeans_metrics(features: np.ndarray | torch.Tensor, labels: ArrayLike, k: int,
                   seeds: int = 10, n_iter: int = 100) -> dict[str, float]:
    """The † rows (D11): spherical k-means with K clusters on L2-normalised features (N, D),
    seeds 0..seeds−1; returns the mean of each of :data:`METRICS` ×100 and their ``*_std``."""
    points = torch.as_tensor(features, dtype=torch.float32)
    label_array = _as_labels(labels, "labels")
    if points.dim() != 2 or points.shape[0] != label_array.size:
        raise ValueError(f"features must be (N, D) with N = {label_array.size} labels, "
                         f"got {tuple(points.shape)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    runs = []
    for seed in range(seeds):
        _, pred = spherical_kmeans(points, k, generator=seed, n_iter=n_iter)
        runs.append(cluster_metrics(label_array, pred))
    summary = {}
    for key in METRICS:
        values = np.array([run[key] for run in runs])
        summary[key] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
    return summary

