"""Clustering metrics (METHOD.md §10 "Metrics", D11, D12)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from training.metrics import ari, cluster_acc, cluster_metrics, kmeans_metrics, nmi


def _brute_force_acc(pred: np.ndarray, labels: np.ndarray) -> float:
    """Best one-to-one relabelling by trying every permutation (small K only)."""
    k = max(pred.max(), labels.max()) + 1
    return max(float(np.mean(np.array(perm)[pred] == labels))
               for perm in itertools.permutations(range(k)))


def test_acc_is_one_under_a_label_permutation():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=200)
    permutation = rng.permutation(6)
    assert cluster_acc(permutation[labels], labels) == 1.0
    assert cluster_metrics(permutation[labels], labels) == pytest.approx(
        {"acc": 100.0, "nmi": 100.0, "ari": 100.0})


def test_acc_by_hand_and_against_brute_force():
    assert cluster_acc([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.75)
    rng = np.random.default_rng(1)
    for _ in range(5):
        pred, labels = rng.integers(0, 5, size=40), rng.integers(0, 5, size=40)
        assert cluster_acc(pred, labels) == pytest.approx(_brute_force_acc(pred, labels))


def test_acc_with_more_clusters_than_classes_and_arbitrary_ids():
    # Clusters 7 and 9 both hold class 3; only one can be matched to it.
    assert cluster_acc([7, 7, 9, 9, 4], [3, 3, 3, 3, 1]) == pytest.approx(3 / 5)


def test_nmi_and_ari_match_scikit_learn():
    rng = np.random.default_rng(2)
    pred, labels = rng.integers(0, 4, size=100), rng.integers(0, 5, size=100)
    assert nmi(pred, labels) == pytest.approx(normalized_mutual_info_score(labels, pred))
    assert ari(pred, labels) == pytest.approx(adjusted_rand_score(labels, pred))
    metrics = cluster_metrics(torch.from_numpy(pred), torch.from_numpy(labels))
    assert metrics["nmi"] == pytest.approx(100 * normalized_mutual_info_score(labels, pred))
    assert metrics["ari"] == pytest.approx(100 * adjusted_rand_score(labels, pred))
    assert metrics["acc"] == pytest.approx(100 * cluster_acc(pred, labels))


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
        cluster_acc([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="integers"):
        nmi([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        ari([], [])
    with pytest.raises(ValueError, match=r"features must be \(N, D\)"):
        kmeans_metrics(np.zeros((3, 2), np.float32), [0, 1], k=2)
