"""training.num_clusters: the label-free estimate of K behind ``num_clusters: auto``."""

from __future__ import annotations

import numpy as np
import pytest

from training.baselines import flattened_poses
from training.num_clusters import (
    KEstimate,
    candidate_range,
    eigengap_scores,
    estimate_num_clusters,
    stability_scores,
)


def _blobs(k: int, per_cluster: int, dim: int = 12, spread: float = 0.05,
           seed: int = 0) -> np.ndarray:
    """``k`` well-separated Gaussian blobs, rows L2-normalised like the flattened poses."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))  # (K, D)
    rows = np.repeat(centres, per_cluster, axis=0) + spread * rng.normal(size=(k * per_cluster, dim))
    return flattened_poses(rows[:, :, None, None, None])  # (N, D): (N, C=D, T=1, V=1, M=1)


@pytest.mark.parametrize("k", [3, 5])
def test_well_separated_clusters_give_their_number(k):
    estimate = estimate_num_clusters(_blobs(k, 15, seed=k), subsamples=4)
    assert estimate.k == k and estimate.method == "eigengap+stability"
    assert estimate.k_range == candidate_range(15 * k)
    assert set(estimate.scores) == set(range(2, 3 * k + 1))  # 2 .. N // 5
    # the largest eigengap, and far more stable than a cluster-free cloud of the same spread
    assert estimate.eigengap[k] == pytest.approx(1.0) and estimate.stability[k] > 0.5
    assert estimate.scores[k] == max(estimate.scores.values())


def test_the_criteria_on_separated_clusters():
    rows, ks = _blobs(4, 15, seed=7), list(range(2, 13))
    graphs = eigengap_scores(rows, ks)
    assert set(graphs) == {5, 10, 15}
    for gaps in graphs.values():  # four blobs: the gap after the fourth eigenvalue is the largest
        assert max(gaps, key=gaps.__getitem__) == 4 and gaps[4] == pytest.approx(1.0)
    stability = stability_scores(rows, ks, subsamples=3)
    # four blobs split the same way in every subset; a Gaussian of the same spread does not
    assert max(stability, key=stability.__getitem__) == 4 and stability[4] > 0.1


def test_the_estimate_is_deterministic_for_a_seed():
    rows = _blobs(3, 12, spread=0.6, seed=3)  # overlapping: the scores are not all 1
    first = estimate_num_clusters(rows, seed=5, subsamples=2)
    assert first == estimate_num_clusters(rows, seed=5, subsamples=2)


def test_identical_rows_return_the_smallest_candidate():
    estimate = estimate_num_clusters(np.ones((40, 6)))
    assert estimate == KEstimate(k=2, n=40, k_range=(2, 8), method="degenerate")
    assert "degenerate" in estimate.summary()


def test_few_rows_leave_one_candidate():
    estimate = estimate_num_clusters(np.random.default_rng(0).normal(size=(7, 3)))
    assert (estimate.k, estimate.k_range, estimate.method) == (2, (2, 2), "range")


def test_large_inputs_are_estimated_on_a_subset_and_stay_in_range():
    rows = _blobs(3, 30, seed=1)
    estimate = estimate_num_clusters(rows, max_rows=60, subsamples=2)
    assert estimate.n == 60 and estimate.k_range == (2, 12) and 2 <= estimate.k <= 12


def test_the_json_record_and_summary_carry_the_evidence():
    estimate = estimate_num_clusters(_blobs(3, 20, seed=2), subsamples=3)
    record = estimate.to_json()
    assert record["k"] == 3 and record["k_range"] == [2, 12]
    assert record["method"] == "eigengap+stability"
    assert len(record["scores"]) == 11 and record["scores"]["3"] == round(estimate.scores[3], 4)
    assert set(record["eigengap"]) == set(record["stability"]) == set(record["scores"])
    summary = estimate.summary()
    assert summary.startswith("K = 3 by eigengap + stability (K in 2..12, 60 clips)")
    assert f"K=3: {estimate.scores[3]:.2f} (1.00 + {estimate.stability[3]:.2f})" in summary


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match=r"\(N, D\) rows with N >= 2"):
        estimate_num_clusters(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"\(N, D\) rows"):
        estimate_num_clusters(np.zeros(10))
    with pytest.raises(ValueError, match="non-finite"):
        estimate_num_clusters(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="subsamples >= 2"):
        estimate_num_clusters(np.zeros((10, 2)), subsamples=1)
