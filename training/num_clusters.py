"""Label-free estimate of K, the number of target actions (``num_clusters: auto``, METHOD.md §16).

One pure function, :func:`estimate_num_clusters`, on rows of features (N, D): for the target it is
given the prepared target-train poses flattened and L2-normalised
(:func:`training.labelfree.views.flattened_poses`), never a label. Candidates are ``k_min = 2`` …
``k_max = min(50, N // 5)`` (clusters of five clips at least, on average). Two criteria score
every candidate, each scaled to [0, 1] over the candidates, and the estimate is the K with the
highest sum (ties: the smaller K):

- **eigengap** (:func:`eigengap_scores`): for the symmetrised 5-, 10- and 15-NN graphs
  (:func:`training.labelfree.views.knn_affinity`), the gap λ_{K+1} − λ_K of the eigenvalues of the
  normalised Laplacian, divided by the graph's largest gap over the candidates; mean over the
  three graphs. A large gap means K nearly disconnected groups.
- **stability** (:func:`stability_scores`): ``subsamples`` random subsets of ``fraction`` · N rows
  are each clustered for every K with the spectral clustering the baselines use (10-NN graph,
  spectral embedding, row-normalised k-means); stability(K) = the mean adjusted Rand index of the
  partitions of every pair of subsets on the rows they share. Any cloud of points splits stably
  in two or three along its widest directions, so the stability of a reference without clusters
  (a Gaussian with the rows' mean and covariance, normalised alike) is subtracted; the result is
  min-max scaled over the candidates.

Alone, each criterion missed badly on some real targets (the eigengap favours few clusters on MSR
Action3D, the stability favours coarse splits almost everywhere); the measured table
(``benchmarks/estimate_k.py``) is in README.md, "Unknown number of actions: `num_clusters:
auto`". Deterministic for a seed. Targets above ``max_rows`` clips are estimated on a seeded
random subset of that many (the cost is dominated by the eigendecompositions, O(rows³)).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from codt_deploy.metrics import ari

K_MIN = 2
K_MAX = 50
MIN_CLIPS_PER_CLUSTER = 5  # the largest candidate is N // 5
EIGENGAP_NEIGHBOURS = (5, 10, 15)
STABILITY_NEIGHBOURS = 10
SUBSAMPLES = 6
FRACTION = 0.8
MAX_ROWS = 2000


@dataclass(frozen=True)
class KEstimate:
    """The outcome of :func:`estimate_num_clusters`: ``k`` and the evidence behind it."""

    k: int
    n: int  # rows the estimate saw (after the ``max_rows`` subset)
    k_range: tuple[int, int]  # the candidates, inclusive
    scores: dict[int, float] = field(default_factory=dict)  # K -> eigengap + stability, in [0, 2]
    eigengap: dict[int, float] = field(default_factory=dict)  # K -> scaled eigengap, in [0, 1]
    stability: dict[int, float] = field(default_factory=dict)  # K -> scaled stability, in [0, 1]
    method: str = "eigengap+stability"  # or why no choice was needed: "degenerate", "range"

    def to_json(self) -> dict:
        """What the prepared task's ``task.json`` records under ``num_clusters_estimate``."""
        def rounded(scores: dict[int, float]) -> dict[str, float]:
            return {str(k): round(v, 4) for k, v in scores.items()}

        return {"k": self.k, "method": self.method, "n": self.n, "k_range": list(self.k_range),
                "scores": rounded(self.scores), "eigengap": rounded(self.eigengap),
                "stability": rounded(self.stability)}

    def summary(self, top: int = 5) -> str:
        """One line: the estimate and the best-scoring candidates."""
        low, high = self.k_range
        if not self.scores:
            return f"K = {self.k} ({self.method}: candidates {low}..{high} on {self.n} clips)"
        best = sorted(self.scores, key=lambda k: (-self.scores[k], k))[:top]
        shown = ", ".join(f"K={k}: {self.scores[k]:.2f} ({self.eigengap[k]:.2f} + "
                          f"{self.stability[k]:.2f})" for k in best)
        return (f"K = {self.k} by eigengap + stability (K in {low}..{high}, {self.n} clips); "
                f"best: {shown}")


def candidate_range(n: int) -> tuple[int, int]:
    """The candidate K of ``n`` rows: 2 … min(50, n // 5), never empty (2 … 2 for tiny n)."""
    return K_MIN, max(K_MIN, min(K_MAX, n // MIN_CLIPS_PER_CLUSTER))


def _scaled(values: dict[int, float]) -> dict[int, float]:
    """``values`` min-max scaled to [0, 1] (all zeros when they are all equal)."""
    low, high = min(values.values()), max(values.values())
    span = high - low
    return {k: (v - low) / span if span > 0 else 0.0 for k, v in values.items()}


def eigengap_scores(points: np.ndarray, ks: list[int],
                    neighbours: tuple[int, ...] = EIGENGAP_NEIGHBOURS) -> dict[int, dict[int, float]]:
    """``{n_neighbors: {K: (λ_{K+1} − λ_K) / max over ks}}``: the eigengaps of the normalised
    Laplacian of the symmetrised kNN graph of ``points`` (n, D), one scale per graph."""
    from scipy.linalg import eigh
    from scipy.sparse import csgraph

    from training.labelfree.views import knn_affinity

    out = {}
    for n_neighbors in neighbours:
        laplacian = csgraph.laplacian(knn_affinity(points, n_neighbors).toarray(),
                                      normed=True)  # (n, n)
        eigenvalues = eigh(laplacian, eigvals_only=True,
                           subset_by_index=[0, max(ks)])  # λ_1 ≤ … ≤ λ_{k_max+1}
        gaps = {k: float(eigenvalues[k] - eigenvalues[k - 1]) for k in ks}  # λ_{K+1} − λ_K
        largest = max(gaps.values())
        out[n_neighbors] = {k: g / largest if largest > 0 else 0.0 for k, g in gaps.items()}
    return out


def _subset_partitions(rows: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
    """Spectral partitions of ``rows`` (m, D) for every K in ``ks`` from one embedding."""
    from sklearn.cluster import KMeans
    from sklearn.manifold import spectral_embedding

    from training.labelfree.views import knn_affinity

    partitions = {}
    with warnings.catch_warnings():  # a disconnected graph, duplicate points: scored as they are
        warnings.simplefilter("ignore")
        embedding = spectral_embedding(knn_affinity(rows, STABILITY_NEIGHBOURS),
                                       n_components=max(ks), random_state=seed,
                                       drop_first=False)  # (m, k_max)
        for k in ks:
            head = embedding[:, :k]  # (m, K)
            head = head / np.maximum(np.linalg.norm(head, axis=1, keepdims=True), 1e-12)
            partitions[k] = KMeans(k, n_init=2, random_state=seed).fit_predict(head)
    return partitions


def _stability(points: np.ndarray, ks: list[int], subsamples: int, fraction: float,
               rng: np.random.Generator, seed: int) -> dict[int, float]:
    """K -> mean pairwise ARI of the spectral partitions of random subsets of ``points``."""
    n = len(points)
    size = min(n, max(max(ks) + 1, int(round(fraction * n))))
    subsets, partitions = [], []
    for index in range(subsamples):
        subset = np.sort(rng.choice(n, size, replace=False))  # (m,)
        subsets.append(subset)
        partitions.append(_subset_partitions(points[subset], ks, seed + index))
    scores = {k: 0.0 for k in ks}
    pairs = list(combinations(range(subsamples), 2))
    for a, b in pairs:
        _, in_a, in_b = np.intersect1d(subsets[a], subsets[b], assume_unique=True,
                                       return_indices=True)
        for k in ks:
            scores[k] += ari(partitions[a][k][in_a], partitions[b][k][in_b]) / len(pairs)
    return scores


def _structureless_like(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows without clusters but with the mean and covariance of ``points`` (n, D): a Gaussian
    drawn through the rows' SVD, L2-normalised as the rows are."""
    mean = points.mean(axis=0)  # (D,)
    _, singular, vt = np.linalg.svd(points - mean, full_matrices=False)  # (r,), (r, D)
    draws = rng.standard_normal((len(points), len(singular)))  # (n, r)
    rows = mean + (draws * singular / np.sqrt(len(points))) @ vt  # (n, D)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def stability_scores(points: np.ndarray, ks: list[int], *, subsamples: int = SUBSAMPLES,
                     fraction: float = FRACTION, seed: int = 0) -> dict[int, float]:
    """K -> stability of ``points`` (n, D) minus that of a structureless reference (module
    docstring), unscaled."""
    rng = np.random.default_rng(seed)
    real = _stability(points, ks, subsamples, fraction, rng, seed)
    reference = _stability(_structureless_like(points, rng), ks, subsamples, fraction, rng, seed)
    return {k: real[k] - reference[k] for k in ks}


def estimate_num_clusters(rows: np.ndarray, *, subsamples: int = SUBSAMPLES,
                          fraction: float = FRACTION, max_rows: int = MAX_ROWS,
                          seed: int = 0) -> KEstimate:
    """Estimate K from unlabelled ``rows`` (N, D) by eigengap + stability (module docstring).

    Returns a :class:`KEstimate` whose ``k`` lies in :func:`candidate_range` of the rows used.
    Rows that are all equal (or too few to form two candidates) return the smallest candidate
    with ``method`` saying so. Raises ValueError for anything but a finite 2-D array of at least
    two rows.
    """
    points = np.asarray(rows, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2:
        raise ValueError(f"estimate_num_clusters needs (N, D) rows with N >= 2, "
                         f"got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("estimate_num_clusters got non-finite values (NaN or inf)")
    if subsamples < 2 or not 0.0 < fraction <= 1.0:
        raise ValueError(f"need subsamples >= 2 and 0 < fraction <= 1, got {subsamples} and "
                         f"{fraction}")
    if len(points) > max_rows:
        keep = np.random.default_rng(seed).choice(len(points), max_rows, replace=False)
        points = points[np.sort(keep)]
    n = len(points)
    k_min, k_max = candidate_range(n)
    if len(np.unique(points, axis=0)) < 2:
        return KEstimate(k=k_min, n=n, k_range=(k_min, k_max), method="degenerate")
    if k_min == k_max:
        return KEstimate(k=k_min, n=n, k_range=(k_min, k_max), method="range")
    ks = list(range(k_min, k_max + 1))
    graphs = eigengap_scores(points, ks)
    stability = _scaled(stability_scores(points, ks, subsamples=subsamples, fraction=fraction,
                                         seed=seed))
    eigengap = {k: float(np.mean([graph[k] for graph in graphs.values()])) for k in ks}
    scores = {k: eigengap[k] + stability[k] for k in ks}
    best = max(ks, key=lambda k: (scores[k], -k))
    return KEstimate(k=best, n=n, k_range=(k_min, k_max), scores=scores, eigengap=eigengap,
                     stability=stability)
