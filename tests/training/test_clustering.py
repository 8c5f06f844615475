"""Log-domain Sinkhorn (METHOD.md §7, D15) and spherical k-means (§9)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from training.clustering import sinkhorn, spherical_kmeans, update_centroids


def _scaling_form(logits: torch.Tensor, xi: float, n_iter: int) -> torch.Tensor:
    """The reference code's exp-domain iteration (float64, no early stop) for comparison."""
    scores = torch.softmax(logits.double(), dim=1).T ** xi  # (K, N)
    k, n = scores.shape
    c = torch.full((n, 1), 1.0 / n, dtype=torch.float64)
    for _ in range(n_iter):
        r = (1.0 / k) / (scores @ c)  # (K, 1)
        c = (1.0 / n) / (r.T @ scores).T  # (N, 1)
    return (scores * c.T * r).T * n  # (N, K)


def test_marginals_rows_one_columns_n_over_k():
    logits = torch.randn(300, 6, generator=torch.Generator().manual_seed(0)) * 3
    q, labels = sinkhorn(logits)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(300), rtol=0, atol=1e-4)
    columns = q.sum(dim=0)
    assert ((columns - 50).abs() / 50).max() < 0.05  # within the tol = 1e-2 stopping rule
    assert labels.shape == (300,) and labels.dtype == torch.int64
    tight, _ = sinkhorn(logits, n_iter=1000, tol=1e-7)
    torch.testing.assert_close(tight.sum(dim=0), torch.full((6,), 50.0), rtol=1e-3, atol=0)


def test_matches_the_exp_domain_iteration_on_mild_scores():
    logits = torch.randn(40, 5, generator=torch.Generator().manual_seed(1)) * 0.3
    q, labels = sinkhorn(logits, n_iter=50, tol=0.0)
    reference = _scaling_form(logits, 10.0, 50)
    torch.testing.assert_close(q.double(), reference, rtol=1e-3, atol=1e-5)
    assert torch.equal(labels, reference.argmax(dim=1))


def test_peaked_scores_do_not_underflow():
    generator = torch.Generator().manual_seed(2)
    # Every sample is confidently in cluster 0 or 1; clusters 2..9 get almost no mass.
    logits = torch.full((500, 10), -40.0)
    logits[torch.arange(500), torch.randint(0, 2, (500,), generator=generator)] = 40.0
    logits += torch.randn(500, 10, generator=generator)
    naive = (torch.softmax(logits, dim=1) ** 10).sum(dim=0)  # the underflow this guards against
    assert (naive == 0).any()
    q, labels = sinkhorn(logits)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(500), rtol=0, atol=1e-4)
    # The equal-size constraint spreads the samples over all 10 clusters.
    counts = torch.bincount(labels, minlength=10)
    assert (counts > 0).all() and counts.max() < 100


def test_uninformative_scores_give_balanced_labels():
    logits = 1e-3 * torch.randn(1000, 8, generator=torch.Generator().manual_seed(3))
    _, labels = sinkhorn(logits)
    counts = torch.bincount(labels, minlength=8).float()
    assert (counts - 125).abs().max() < 25


def test_permuting_samples_permutes_the_result():
    logits = torch.randn(50, 4, generator=torch.Generator().manual_seed(4)) * 2
    order = torch.randperm(50, generator=torch.Generator().manual_seed(5))
    q, labels = sinkhorn(logits, tol=0.0, n_iter=30)
    q_perm, labels_perm = sinkhorn(logits[order], tol=0.0, n_iter=30)
    torch.testing.assert_close(q_perm, q[order], rtol=1e-4, atol=1e-6)
    assert torch.equal(labels_perm, labels[order])


def test_check_every_ten_like_the_reference_code():
    logits = torch.randn(100, 5, generator=torch.Generator().manual_seed(6))
    q, _ = sinkhorn(logits, check_every=10)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(100), rtol=0, atol=1e-4)


def test_single_cluster_and_bad_input():
    q, labels = sinkhorn(torch.randn(7, 1))
    torch.testing.assert_close(q, torch.ones(7, 1))
    assert (labels == 0).all()
    with pytest.raises(ValueError, match="non-finite"):
        sinkhorn(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        sinkhorn(torch.zeros(0, 3))


def _blobs(n_per: int, k: int, dim: int,
           seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(k, dim, generator=generator), dim=1)
    labels = torch.arange(k).repeat_interleave(n_per)
    points = centres[labels] + 0.05 * torch.randn(k * n_per, dim, generator=generator)
    return points, labels, centres


def _best_match_accuracy(pred: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    return max(float((torch.tensor(perm)[pred] == labels).float().mean())
               for perm in itertools.permutations(range(k)))


def test_kmeans_recovers_separated_clusters():
    points, labels, centres = _blobs(30, 4, 16, seed=0)
    centroids, pred = spherical_kmeans(points * 7.0, 4, generator=0)  # scale does not matter
    assert _best_match_accuracy(pred, labels, 4) == 1.0
    torch.testing.assert_close(centroids.norm(dim=1), torch.ones(4))
    assert (centroids @ centres.T).max(dim=1).values.min() > 0.99


def test_kmeans_is_seeded():
    points, _, _ = _blobs(20, 5, 8, seed=1)
    points = points + 0.5 * torch.randn(points.shape, generator=torch.Generator().manual_seed(9))
    first = spherical_kmeans(points, 5, generator=3)
    second = spherical_kmeans(points, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_empty_cluster_keeps_its_centroid():
    points = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]), dim=1)
    centroids = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1])  # cluster 2 is empty
    updated = update_centroids(points, labels, centroids)
    torch.testing.assert_close(updated[2], centroids[2])
    torch.testing.assert_close(updated[1], points[2])
    torch.testing.assert_close(updated[0], F.normalize(points[0] + points[1], dim=0))


def test_kmeans_with_more_clusters_than_distinct_points():
    # Two distinct directions, k = 3: one centroid duplicates another and ends up empty.
    points = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    centroids, labels = spherical_kmeans(points, 3, generator=0)
    assert torch.isfinite(centroids).all()
    torch.testing.assert_close(centroids.norm(dim=1), torch.ones(3))
    assert labels.min() >= 0 and labels.max() < 3
    assert torch.bincount(labels, minlength=3).min() == 0
    assert len(set(labels[:5].tolist())) == 1 and len(set(labels[5:].tolist())) == 1


def test_kmeans_bad_input():
    with pytest.raises(ValueError, match="1 <= k <= N"):
        spherical_kmeans(torch.randn(3, 2), 4)
    with pytest.raises(ValueError, match="non-finite"):
        spherical_kmeans(torch.tensor([[float("inf"), 0.0], [0.0, 1.0]]), 1)
