"""Label-free partitions of the target clips: spectral clustering of summed kNN graphs, the
consensus of several partitions, and the two partitions the CPU recipe uses.

Pure numpy / scipy / scikit-learn (no torch); no label is read.

- :func:`spectral_labels`: spectral clustering of the weighted sum of the kNN graphs of one or
  more views of the same clips;
- :func:`consensus_labels`: evidence-accumulation consensus of several partitions;
- :func:`anchor_partition`: the partition the heads learn during training (the raw poses' DTW
  graph alone);
- :func:`refit_partition`: the partition the exported heads are fitted to after training (the
  consensus of partitions of the learnt-feature and raw-velocity graphs, the features leading
  only where :func:`graph_agreement` finds them agreeing with the raw poses);
- :func:`aligned_labels` (:func:`codt_deploy.batch.aligned_labels`, re-exported): renames a
  partition's cluster ids to best match another partition.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from codt_deploy.batch import (  # aligned_labels re-exported: the anchors' renaming
    EMBEDDING_WEIGHT,
    aligned_labels,  # noqa: F401
    coassociation_embedding,
)
from training.labelfree.views import SPECTRAL_NEIGHBOURS, knn_affinity

# The consensus refit (docs/METHOD.md §15.4): each graph under this many spectral seeds, and the
# feature graph at these multiples of REFIT_FEATURE_WEIGHT beside the raw graph's 1.
REFIT_FEATURE_WEIGHT = 0.5
CONSENSUS_SEEDS = 3
CONSENSUS_WEIGHT_FACTORS = (0.5, 1.0, 2.0)
# The features lead the refit only where they agree with the raw poses: when at least this share
# of the feature graph's links are links of the raw graph too; below, the raw graph leads, the
# features at a quarter weight in half the members, as the runtime's batch step (§15.4).
FEATURE_AGREEMENT_FLOOR = 0.5


def spectral_labels(points, k: int, seed: int = 0, n_neighbors: int = SPECTRAL_NEIGHBOURS,
                    weights=None) -> np.ndarray:
    """Spectral clustering (scikit-learn) into ``k`` clusters of the (``weights``-weighted) sum of
    the kNN graphs (:func:`knn_affinity`) of one feature matrix ``points`` (N, D) or of several
    views of the same N samples (a list of matrices; a sparse (N, N) view is a graph already, as
    :func:`training.labelfree.views.dtw_knn_affinity` gives): labels (N,) int64."""
    from scipy import sparse
    from sklearn.cluster import SpectralClustering

    views = points if isinstance(points, (list, tuple)) else [points]
    views = [v if sparse.issparse(v) else np.asarray(v) for v in views]
    n = int(views[0].shape[0])
    if not 1 <= k <= n:
        raise ValueError(f"spectral_labels needs 1 <= k <= N = {n}, got k = {k}")
    if any(v.shape[0] != n for v in views):
        raise ValueError("spectral_labels: every view needs the same number of samples")
    weights = [1.0] * len(views) if weights is None else list(weights)
    if len(weights) != len(views) or not any(w > 0 for w in weights):
        raise ValueError("spectral_labels: one non-negative weight per view, not all zero")
    affinity = sum(w * knn_affinity(view, n_neighbors) for view, w in zip(views, weights) if w > 0)
    model = SpectralClustering(k, affinity="precomputed", assign_labels="kmeans", random_state=seed)
    with warnings.catch_warnings():
        # a kNN graph of separated groups may have several components; the embedding then gives
        # each its own eigenvectors, which is what clustering wants, not a fault to warn about
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return model.fit_predict(affinity).astype(np.int64)


def consensus_labels(partitions, k: int, seed: int = 0) -> np.ndarray:
    """Consensus (evidence accumulation) of several partitions of the same N samples into ``k``
    clusters: the spectral embedding of their co-association matrix
    (:func:`codt_deploy.batch.coassociation_embedding`, the runtime's batch step uses the same;
    C is never formed, so N may be large) clustered by scikit-learn's k-means (10 restarts).
    ``partitions``: a list of (N,) label arrays (any integer ids). Returns labels (N,) int64."""
    from sklearn.cluster import KMeans

    parts = [np.asarray(p).reshape(-1) for p in partitions]
    if not parts:
        raise ValueError("consensus_labels needs at least one partition")
    if not 1 <= k <= len(parts[0]):
        raise ValueError(f"consensus_labels needs 1 <= k <= N = {len(parts[0])}, got k = {k}")
    embedding = coassociation_embedding(parts, k)  # (N, k); checks the partitions' sizes
    return KMeans(k, n_init=10, random_state=seed).fit_predict(embedding).astype(np.int64)


def graph_partition(graphs: Sequence, weights: Sequence[float], k: int, seed: int) -> np.ndarray:
    """Spectral labels (N,) of the weighted sum of kNN ``graphs`` (sparse (N, N)); a graph of
    weight 0 is left out."""
    kept = [(graph, weight) for graph, weight in zip(graphs, weights) if weight > 0]
    return spectral_labels([g for g, _ in kept], k, seed=seed % 2**31, weights=[w for _, w in kept])


def anchor_partition(raw_graph, k: int, seed: int) -> np.ndarray:
    """The anchors (N,): spectral clustering of the raw poses' graph alone (the DTW graph of
    :func:`training.labelfree.views.raw_pose_graph` in the recipe)."""
    return graph_partition([knn_affinity(raw_graph)], [1.0], k, seed)


def graph_agreement(feature_graph, raw_graph) -> float:
    """The share of ``feature_graph``'s links (pairs i ≠ j it joins; sparse (N, N) kNN graphs as
    :func:`knn_affinity` builds them) that ``raw_graph`` joins too: 1 when the learnt features
    find the raw poses' neighbours, near k / N when they find others."""
    from scipy import sparse

    def links(graph):
        linked = sparse.csr_matrix(graph, copy=True)
        linked.setdiag(0)
        linked.eliminate_zeros()
        return linked.astype(bool)

    feature_links = links(feature_graph)
    total = feature_links.nnz
    return float(feature_links.multiply(links(raw_graph)).nnz / total) if total else 0.0


def refit_members(unit_features: np.ndarray, raw_graph, k: int, seed: int,
                  feature_weight: float = REFIT_FEATURE_WEIGHT) -> tuple[list[np.ndarray], float]:
    """The partitions the refit's consensus is taken over (docs/METHOD.md §15.4) and the
    :func:`graph_agreement` of the feature graph (``unit_features`` (N, D), L2-normalised rows)
    with the raw graph (``raw_graph``: rows or a sparse (N, N) graph). From an agreement of
    :data:`FEATURE_AGREEMENT_FLOOR` on, 15: for each of :data:`CONSENSUS_SEEDS` spectral seeds,
    the feature graph alone, the raw graph alone, and the joined graph with the features at
    :data:`CONSENSUS_WEIGHT_FACTORS` × ``feature_weight`` beside the raw graph's 1. Below it, 6:
    for each seed the raw graph alone and with the features at
    :data:`codt_deploy.batch.EMBEDDING_WEIGHT` (the batch step's members). Without a raw graph:
    the feature graph's seeds only (agreement NaN)."""
    feature_graph = knn_affinity(unit_features)  # built once for all members
    if raw_graph is None:
        return [graph_partition([feature_graph], [1.0], k, seed + offset)
                for offset in range(CONSENSUS_SEEDS)], float("nan")
    raw = knn_affinity(raw_graph)
    agreement = graph_agreement(feature_graph, raw)
    members = []
    for offset in range(CONSENSUS_SEEDS):
        member_seed = seed + offset
        if agreement < FEATURE_AGREEMENT_FLOOR:  # the raw poses lead
            members += [graph_partition([raw], [1.0], k, member_seed),
                        graph_partition([feature_graph, raw], [EMBEDDING_WEIGHT, 1.0], k,
                                        member_seed)]
            continue
        members.append(graph_partition([feature_graph], [1.0], k, member_seed))
        members.append(graph_partition([raw], [1.0], k, member_seed))
        members += [graph_partition([feature_graph, raw], [factor * feature_weight, 1.0], k,
                                    member_seed) for factor in CONSENSUS_WEIGHT_FACTORS]
    return members, agreement


def refit_partition(unit_features: np.ndarray, raw_graph, k: int, seed: int,
                    feature_weight: float = REFIT_FEATURE_WEIGHT) -> tuple[np.ndarray, float]:
    """The partition (N,) the exported heads are fitted to, the consensus
    (:func:`consensus_labels`) of :func:`refit_members`, and the features' agreement with the raw
    graph that chose the members."""
    members, agreement = refit_members(unit_features, raw_graph, k, seed, feature_weight)
    return consensus_labels(members, k, seed % 2**31), agreement
