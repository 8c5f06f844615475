"""Clustering metrics for ``codt-cluster --labels``: ACC (Hungarian), NMI and ARI (METHOD.md §10),
and the many-to-one ACC beside them.

numpy only. ACC uses ``scipy.optimize.linear_sum_assignment`` when scipy is importable and a small
Kuhn-Munkres implementation otherwise, so the lean runtime install needs neither scipy nor
scikit-learn. NMI is the arithmetic-mean normalisation of scikit-learn's
``normalized_mutual_info_score``; ARI is ``adjusted_rand_score``. Labels may be any hashable values
(ints or strings); the results are fractions in [0, 1] (ARI can be negative).

K (the number of clusters) need not equal the number of classes. ACC is a one-to-one matching
(a rectangular assignment): with more clusters than classes the unmatched clusters count as
errors, with fewer the unmatched classes do. ``acc_many_to_one`` maps each cluster to its
majority class (several clusters may share one); it never falls below ACC and rises with K (K = N
gives 1.0), so it compares clusterings of one K only and is reported beside ACC, never instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeAlias

import numpy as np

# One label per sample: a list, a tuple or a 1-D numpy array.
Labels: TypeAlias = "Sequence | np.ndarray"


def contingency(labels_true: Labels, labels_pred: Labels) -> np.ndarray:
    """The (n_classes, n_clusters) count matrix; raises ValueError on length mismatch or no data."""
    true = np.asarray(labels_true)
    pred = np.asarray(labels_pred)
    if true.shape != pred.shape or true.ndim != 1:
        raise ValueError(f"labels_true and labels_pred must be 1-D of equal length, got "
                         f"{true.shape} and {pred.shape}")
    if true.size == 0:
        raise ValueError("no labelled samples to score")
    _, true_ids = np.unique(true, return_inverse=True)
    _, pred_ids = np.unique(pred, return_inverse=True)
    table = np.zeros((true_ids.max() + 1, pred_ids.max() + 1), np.int64)
    np.add.at(table, (true_ids, pred_ids), 1)
    return table


def _assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment of rows to columns (rectangular allowed)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return hungarian(cost)
    return linear_sum_assignment(cost)


def hungarian(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kuhn-Munkres with potentials, O(n^3): rows, cols of a minimum-cost assignment.

    Works on an (R, C) matrix by padding to square with zeros; only real pairs are returned,
    sorted by row, like scipy's ``linear_sum_assignment``.
    """
    rows, cols = cost.shape
    n = max(rows, cols)
    square = np.zeros((n + 1, n + 1), np.float64)  # 1-based with a dummy row/column 0
    square[1:rows + 1, 1:cols + 1] = cost
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    match = np.zeros(n + 1, np.int64)  # match[col] = row
    for row in range(1, n + 1):
        match[0] = row
        col0 = 0
        min_slack = np.full(n + 1, np.inf)
        way = np.zeros(n + 1, np.int64)
        used = np.zeros(n + 1, bool)
        while True:
            used[col0] = True
            row0 = match[col0]
            free = ~used[1:]
            slack = square[row0, 1:] - u[row0] - v[1:]
            better = free & (slack < min_slack[1:])
            min_slack[1:][better] = slack[better]
            way[1:][better] = col0
            candidates = np.where(free, min_slack[1:], np.inf)
            col1 = int(np.argmin(candidates)) + 1
            delta = candidates[col1 - 1]
            u[match[used]] += delta
            v[used] -= delta
            min_slack[1:][free] -= delta
            col0 = col1
            if match[col0] == 0:
                break
        while col0:
            prev = way[col0]
            match[col0] = match[prev]
            col0 = prev
    pairs = sorted((match[c] - 1, c - 1) for c in range(1, n + 1)
                   if match[c] - 1 < rows and c - 1 < cols)
    return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))


def cluster_acc(labels_true: Labels, labels_pred: Labels) -> float:
    """Best one-to-one cluster-to-class matching accuracy (Hungarian on the contingency matrix)."""
    table = contingency(labels_true, labels_pred)
    rows, cols = _assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def many_to_one_acc(labels_true: Labels, labels_pred: Labels) -> float:
    """Accuracy when each cluster is mapped to its majority class (several clusters may map to
    one class; a.k.a. purity). Rises with the number of clusters: compare at equal K only."""
    table = contingency(labels_true, labels_pred)  # (n_classes, n_clusters)
    return float(table.max(axis=0).sum() / table.sum())


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_true: Labels, labels_pred: Labels) -> float:
    """Normalised mutual information, arithmetic mean of the two entropies (sklearn's default)."""
    table = contingency(labels_true, labels_pred).astype(np.float64)
    total = table.sum()
    h_true, h_pred = _entropy(table.sum(1)), _entropy(table.sum(0))
    if h_true == 0.0 and h_pred == 0.0:
        return 1.0  # both partitions trivial and identical, as scikit-learn defines it
    joint = table / total
    outer = np.outer(table.sum(1), table.sum(0)) / total**2
    nz = joint > 0
    mutual = float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())
    denom = (h_true + h_pred) / 2
    return 0.0 if denom == 0.0 else max(mutual, 0.0) / denom


def ari(labels_true: Labels, labels_pred: Labels) -> float:
    """Adjusted Rand index (Hubert and Arabie), as scikit-learn's ``adjusted_rand_score``."""
    table = contingency(labels_true, labels_pred).astype(np.float64)
    n = table.sum()

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    sum_cells, sum_rows, sum_cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    total_pairs = n * (n - 1) / 2
    expected = sum_rows * sum_cols / total_pairs if total_pairs else 0.0
    maximum = (sum_rows + sum_cols) / 2
    if maximum == expected:
        return 1.0  # degenerate: both partitions trivial
    return float((sum_cells - expected) / (maximum - expected))


def evaluate(labels_true: Labels, labels_pred: Labels) -> dict[str, float]:
    """``{"acc", "nmi", "ari", "acc_many_to_one", "n"}``: the three METHOD.md §10 metrics and the
    many-to-one ACC (:func:`many_to_one_acc`) as fractions."""
    return {"acc": cluster_acc(labels_true, labels_pred), "nmi": nmi(labels_true, labels_pred),
            "ari": ari(labels_true, labels_pred),
            "acc_many_to_one": many_to_one_acc(labels_true, labels_pred),
            "n": int(len(labels_true))}


# A head that puts more than this share of its inputs into one cluster, or uses fewer than this
# share of its K clusters, is reported as (nearly) collapsed.
COLLAPSE_LARGEST_SHARE = 0.5
COLLAPSE_MIN_USED_SHARE = 0.5


def cluster_balance(labels_pred: Labels, num_clusters: int) -> dict[str, float]:
    """Label-free health of a clustering: ``clusters_used`` (of K), ``largest_share`` (fraction in
    the biggest cluster) and ``collapsed`` (1.0 past the thresholds above, else 0.0)."""
    _, counts = np.unique(np.asarray(labels_pred), return_counts=True)
    return balance_of_counts(counts, num_clusters)


def balance_of_counts(counts: Iterable[int], num_clusters: int) -> dict[str, float]:
    """:func:`cluster_balance` from the member counts of the non-empty clusters."""
    sizes = np.asarray([c for c in counts if c > 0], dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        return {"clusters_used": 0.0, "largest_share": 0.0, "collapsed": 0.0}
    used, largest = float(len(sizes)), float(sizes.max() / total)
    too_few = used < COLLAPSE_MIN_USED_SHARE * min(num_clusters, total)
    collapsed = largest > COLLAPSE_LARGEST_SHARE or too_few
    return {"clusters_used": used, "largest_share": largest, "collapsed": float(collapsed)}


def collapse_warning(balance: dict[str, float], num_clusters: int, what: str) -> str | None:
    """A one-line warning for a collapsed clustering (see :func:`cluster_balance`), else None."""
    if not balance["collapsed"]:
        return None
    return (f"{what} looks collapsed: {int(balance['clusters_used'])} of {num_clusters} clusters "
            f"used, the largest holds {100 * balance['largest_share']:.0f} % of the sequences")
