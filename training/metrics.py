"""Clustering metrics on the target val split (METHOD.md §10 "Metrics", D11, D12).

``cluster_acc``, ``nmi`` and ``ari`` take (pred, labels) as 1-D integer arrays or tensors and return
fractions in [0, 1]; ``cluster_metrics`` and ``kmeans_metrics`` report ×100, as the paper's tables.
"""

from __future__ import annotations

import numpy as np
import torch

from training.clustering import spherical_kmeans

ArrayLike = np.ndarray | torch.Tensor | list


def _as_labels(values: ArrayLike, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _pair(pred: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pred_array, label_array = _as_labels(pred, "pred"), _as_labels(labels, "labels")
    if pred_array.shape != label_array.shape:
        raise ValueError(f"pred and labels differ in length: "
                         f"{pred_array.size} vs {label_array.size}")
    return pred_array, label_array


def cluster_acc(pred: ArrayLike, labels: ArrayLike) -> float:
    """ACC (D12): the best one-to-one cluster→class matching (Hungarian), as a fraction.

    Works for any label values and for #clusters ≠ #classes (unmatched clusters count as wrong).
    """
    from scipy.optimize import linear_sum_assignment

    pred_array, label_array = _pair(pred, labels)
    _, pred_index = np.unique(pred_array, return_inverse=True)
    _, label_index = np.unique(label_array, return_inverse=True)
    contingency = np.zeros((pred_index.max() + 1, label_index.max() + 1), dtype=np.int64)
    np.add.at(contingency, (pred_index, label_index), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    return float(contingency[rows, cols].sum() / pred_array.size)


def nmi(pred: ArrayLike, labels: ArrayLike) -> float:
    """NMI: scikit-learn ``normalized_mutual_info_score`` (arithmetic mean normalisation)."""
    from sklearn.metrics import normalized_mutual_info_score

    pred_array, label_array = _pair(pred, labels)
    return float(normalized_mutual_info_score(label_array, pred_array))


def ari(pred: ArrayLike, labels: ArrayLike) -> float:
    """ARI: scikit-learn ``adjusted_rand_score``."""
    from sklearn.metrics import adjusted_rand_score

    pred_array, label_array = _pair(pred, labels)
    return float(adjusted_rand_score(label_array, pred_array))


def cluster_metrics(pred: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """``{"acc", "nmi", "ari"}`` ×100 for predicted clusters against true classes."""
    return {"acc": 100.0 * cluster_acc(pred, labels), "nmi": 100.0 * nmi(pred, labels),
            "ari": 100.0 * ari(pred, labels)}


def kmeans_metrics(features: np.ndarray | torch.Tensor, labels: ArrayLike, k: int,
                   seeds: int = 10, n_iter: int = 100) -> dict[str, float]:
    """The † rows (D11): spherical k-means with K clusters on L2-normalised features (N, D),
    seeds 0..seeds−1; returns the mean ``acc``, ``nmi``, ``ari`` ×100 and their ``*_std``."""
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
        runs.append(cluster_metrics(pred, label_array))
    summary = {}
    for key in ("acc", "nmi", "ari"):
        values = np.array([run[key] for run in runs])
        summary[key] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
    return summary


evaluate_features = kmeans_metrics  # the name docs/ARCHITECTURE.md uses
