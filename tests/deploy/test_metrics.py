"""codt_deploy.metrics against scikit-learn and scipy (NMI/ARI/ACC, METHOD.md §10)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codt_deploy import metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")
scipy_optimize = pytest.importorskip("scipy.optimize")

labelings = st.integers(min_value=1, max_value=60).flatmap(
    lambda n: st.tuples(st.lists(st.integers(0, 6), min_size=n, max_size=n),
                        st.lists(st.integers(0, 8), min_size=n, max_size=n)))


@settings(max_examples=150, deadline=None)
@given(labelings)
def test_nmi_and_ari_match_scikit_learn(pair):
    true, pred = pair
    assert metrics.nmi(true, pred) == pytest.approx(
        sklearn_metrics.normalized_mutual_info_score(true, pred), abs=1e-9)
    assert metrics.ari(true, pred) == pytest.approx(
        sklearn_metrics.adjusted_rand_score(true, pred), abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_numpy_hungarian_matches_scipy(rows, cols, seed):
    cost = np.random.default_rng(seed).integers(-20, 20, size=(rows, cols)).astype(float)
    r, c = metrics.hungarian(cost)
    r_ref, c_ref = scipy_optimize.linear_sum_assignment(cost)
    assert len(r) == min(rows, cols) and len(set(c.tolist())) == len(c)
    assert cost[r, c].sum() == pytest.approx(cost[r_ref, c_ref].sum())


def test_acc_is_invariant_to_cluster_permutation_and_string_labels():
    true = ["walk", "walk", "sit", "sit", "wave", "wave", "wave"]
    pred = [2, 2, 0, 0, 1, 1, 0]
    assert metrics.cluster_acc(true, pred) == pytest.approx(6 / 7)
    permuted = [{0: 5, 1: 3, 2: 9}[p] for p in pred]
    assert metrics.cluster_acc(true, permuted) == pytest.approx(6 / 7)
    assert metrics.evaluate(true, pred)["n"] == 7


def _brute_force_acc(true: np.ndarray, pred: np.ndarray) -> float:
    """Best one-to-one relabelling by trying every permutation (small K only)."""
    k = max(pred.max(), true.max()) + 1
    return max(float(np.mean(np.array(perm)[pred] == true))
               for perm in itertools.permutations(range(k)))


def test_acc_by_hand_and_against_brute_force():
    assert metrics.cluster_acc([0, 1, 1, 1], [0, 0, 1, 1]) == pytest.approx(0.75)
    rng = np.random.default_rng(1)
    for _ in range(5):
        true, pred = rng.integers(0, 5, size=40), rng.integers(0, 5, size=40)
        assert metrics.cluster_acc(true, pred) == pytest.approx(_brute_force_acc(true, pred))


def test_acc_with_more_clusters_than_classes_and_arbitrary_ids():
    # Clusters 7 and 9 both hold class 3; only one can be matched to it.
    assert metrics.cluster_acc([3, 3, 3, 3, 1], [7, 7, 9, 9, 4]) == pytest.approx(3 / 5)


def test_acc_without_scipy_uses_the_numpy_hungarian(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError("scipy hidden for this test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    rng = np.random.default_rng(3)
    true, pred = rng.integers(0, 5, 200), rng.integers(0, 7, 200)
    table = metrics.contingency(true, pred)
    r, c = scipy_optimize.linear_sum_assignment(-table)  # imported before the patch
    assert metrics.cluster_acc(true, pred) == pytest.approx(table[r, c].sum() / 200)


def test_bad_label_arrays_raise():
    with pytest.raises(ValueError, match="equal length"):
        metrics.evaluate([0, 1], [0])
    with pytest.raises(ValueError, match="no labelled samples"):
        metrics.evaluate([], [])


def test_acc_and_many_to_one_acc_with_more_clusters_than_classes():
    # Two classes, four clusters: class a is split over clusters 0 and 1, class b over 2 and 3.
    true = ["a", "a", "a", "a", "b", "b", "b", "b"]
    pred = [0, 0, 0, 1, 2, 2, 3, 3]
    # one-to-one: cluster 0 -> a (3), cluster 2 or 3 -> b (2); clusters 1 and the other are errors
    assert metrics.cluster_acc(true, pred) == pytest.approx(5 / 8)
    # many-to-one: every cluster takes its majority class, so nothing is lost
    assert metrics.many_to_one_acc(true, pred) == pytest.approx(1.0)
    assert metrics.many_to_one_acc(true, list(range(8))) == pytest.approx(1.0)  # K = N: always 1
    scores = metrics.evaluate(true, pred)
    assert scores["acc_many_to_one"] == pytest.approx(1.0) and scores["acc"] == pytest.approx(5 / 8)


def test_acc_and_many_to_one_acc_with_fewer_clusters_than_classes():
    # Three classes, two clusters: cluster 0 holds a a a b, cluster 1 holds b c c.
    true = ["a", "a", "a", "b", "b", "c", "c"]
    pred = [0, 0, 0, 0, 1, 1, 1]
    assert metrics.cluster_acc(true, pred) == pytest.approx(5 / 7)  # 0 -> a (3), 1 -> c (2)
    assert metrics.many_to_one_acc(true, pred) == pytest.approx(5 / 7)  # the same majorities
    # many-to-one never falls below the one-to-one ACC
    rng = np.random.default_rng(4)
    for k in (2, 5, 9):
        t, p = rng.integers(0, 5, 60), rng.integers(0, k, 60)
        assert metrics.many_to_one_acc(t, p) >= metrics.cluster_acc(t, p) - 1e-12
