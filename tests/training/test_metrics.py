"""Training-side clustering metrics: the ×100 wrapper and the † k-means rows (METHOD.md §10, D11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from codt_deploy.metrics import cluster_acc
from training.metrics import cluster_metrics, kmeans_metrics


def test_metrics_are_one_hundred_under_a_label_permutation():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=200)
    permutation = rng.permutation(6)
    assert cluster_metrics(labels, permutation[labels]) == pytest.approx(
        {"acc": 100.0, "nmi": 100.0, "ari": 100.0, "acc_many_to_one": 100.0})


def test_cluster_metrics_match_scikit_learn_on_tensors():
    rng = np.random.default_rng(2)
    pred, labels = rng.integers(0, 4, size=100), rng.integers(0, 5, size=100)
    metrics = cluster_metrics(torch.from_numpy(labels), torch.from_numpy(pred))
    assert metrics["nmi"] == pytest.approx(100 * normalized_mutual_info_score(labels, pred))
    assert metrics["ari"] == pytest.approx(100 * adjusted_rand_score(labels, pred))
    assert metrics["acc"] == pytest.approx(100 * cluster_acc(labels, pred))


def test_kmeans_metrics_on_separable_features():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 8))
    labels = np.repeat(np.arange(3), 20)
    features = centres[labels] + 0.01 * rng.normal(size=(60, 8))
    result = kmeans_metrics(features.astype(np.float32), labels, k=3, seeds=3)
    assert result["acc"] == pytest.approx(100.0) and result["nmi"] == pytest.approx(100.0)
    assert result["acc_std"] == pytest.approx(0.0)
    noisy = kmeans_metrics(rng.normal(size=(60, 8)).astype(np.float32), labels, k=3, seeds=3)
    assert noisy["acc"] < 80.0


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        cluster_metrics([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="integers"):
        cluster_metrics([0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        cluster_metrics([], [])
    with pytest.raises(ValueError, match=r"features must be \(N, D\)"):
        kmeans_metrics(np.zeros((3, 2), np.float32), [0, 1], k=2)


def test_cluster_metrics_with_k_unequal_to_the_classes():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    split = cluster_metrics(labels, np.array([0, 0, 1, 1, 2, 2, 3, 3]))  # K = 4 > 2 classes
    assert split["acc"] == pytest.approx(50.0) and split["acc_many_to_one"] == pytest.approx(100.0)
    merged = cluster_metrics(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 0, 0, 1, 1]))  # K = 2 < 3
    assert merged["acc"] == pytest.approx(100 * 4 / 6)
    assert merged["acc_many_to_one"] == pytest.approx(100 * 4 / 6)
    rows = kmeans_metrics(np.eye(8, dtype=np.float32), labels, k=6, seeds=2)  # K = 6 > 2 classes
    assert set(rows) == {f"{m}{s}" for m in ("acc", "nmi", "ari", "acc_many_to_one")
                         for s in ("", "_std")}
    assert rows["acc_many_to_one"] >= rows["acc"]
