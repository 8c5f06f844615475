"""Clustering a batch of new clips together: their own graphs, cluster ids named by the bank.

A model's reference bank (:mod:`codt_deploy.reference`) assigns each new clip by itself, from the
training clips nearest to it. A batch of new clips holds more than that: its own structure.
Measured on three held-out target splits (docs/METHOD.md §15.5), clustering the new clips by their
own DTW + velocity graph beat the bank's vote by 8 to 16 ACC on whole held-out splits and from
about eight clips per cluster on, and lost to it on smaller batches, which cannot fill a
10-neighbour graph per cluster; the network's embedding graph, a quarter-weight beside the DTW
graph in half the members of a consensus, added to it on every split. So a batch of at least
:data:`MIN_CLIPS_PER_CLUSTER` × K clips is clustered by its own graphs, and each of its clusters
takes the model's cluster id it overlaps most with under the bank's vote (a one-to-one
matching), so that ids mean the same thing across batches. A smaller run is clustered together
with the bank's clips by their joint DTW graph, each cluster named by the bank cluster it overlaps
most with: on the same splits, from 2 to 6 clips per cluster, that beat the vote on every task
(:func:`bank_run_partition`).

Pure numpy, no label read; the same raw-pose view and DTW kernel as training's graphs.

- :func:`pairwise_dtw`: the (N, N) DTW distances of a batch's frames;
- :func:`knn_graph`: the symmetrised kNN graph of a distance matrix;
- :func:`spectral_embedding`, :func:`spectral_partition`: spectral clustering (normalised
  affinity, k-means of the embedding);
- :func:`coassociation_embedding`: the consensus of partitions (training's refit uses it too);
- :func:`aligned_labels`: a partition's ids renamed to match another's (training's anchors too);
- :func:`batch_partition`: the whole step, from frames, embedding and vote to clusters and
  confidence; :func:`bank_run_partition`: a smaller run's, with the bank (:func:`bank_neighbours`:
  what it needs of the bank's own pairs, computed once per model);
- :class:`BatchStep`: that step as a model carries it (``ClusterModel.batch_step``), with
  :func:`encode_clips` / :func:`decode_clips` for the frames and embeddings a run's journal keeps.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from codt_deploy.metrics import hungarian
from codt_deploy.reference import (
    QUERY_CELLS_PER_CHUNK,
    ReferenceBank,
    dtw_band,
    dtw_cross_distances,
    pose_frames,
)

MIN_CLIPS_PER_CLUSTER = 8  # a batch of fewer than this × K clips keeps the bank's vote
MAX_BATCH_CLIPS = 5000  # above this the (N, N) graph costs too much memory: the vote is kept
GRAPH_NEIGHBOURS = 10  # k of the batch's kNN graph, as training's graphs
KMEANS_RESTARTS = 10
EMBEDDING_WEIGHT = 0.25  # the network's embedding graph beside the DTW graph in half the members
CONSENSUS_SEEDS = 3  # spectral seeds per graph in the batch step's consensus
ROWS_PER_CHUNK = 64  # rows of the pairwise matrix at once (smaller blocks skip more of the lower
# triangle: 0.52 s of CPU for 557 clips against 0.85 s in one block)


def pairwise_dtw(frames: np.ndarray, persons: int = 1) -> np.ndarray:
    """The (N, N) float64 DTW distances (:func:`codt_deploy.reference.dtw_cross_distances`, over
    the orders of ``persons`` bodies) of clips ``frames`` (N, T, D), symmetric, with a zero
    diagonal: each block of rows against the clips from its first row on (the upper triangle,
    about half the pairs), mirrored (the orders of the bodies include each one's inverse)."""
    n, t = frames.shape[:2]
    matrix = np.zeros((n, n))
    step = max(1, min(ROWS_PER_CHUNK, QUERY_CELLS_PER_CHUNK // max(n, 1)))  # rows at once
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        matrix[rows, start:] = dtw_cross_distances(frames[rows], frames[start:], dtw_band(t),
                                                   persons)
    upper = np.triu(matrix, 1)  # (N, N): each pair once, from the row of its lower index
    matrix = upper + upper.T
    return matrix


def knn_graph(distances: np.ndarray, neighbours: int = GRAPH_NEIGHBOURS) -> np.ndarray:
    """The symmetrised kNN connectivity graph (N, N) of a distance matrix: ½(A + Aᵀ), A_ij = 1
    when j is among the ``neighbours`` nearest of i, i itself included (as training's graphs)."""
    n = distances.shape[0]
    neighbours = min(neighbours, n)
    ranked = distances + np.diag(np.full(n, -np.inf))  # (N, N): each clip its own nearest
    nearest = np.argsort(ranked, axis=1, kind="stable")[:, :neighbours]  # (N, neighbours)
    adjacency = np.zeros((n, n))
    np.put_along_axis(adjacency, nearest, 1.0, axis=1)
    return 0.5 * (adjacency + adjacency.T)


def kmeans(points: np.ndarray, k: int, seed: int = 0, restarts: int = KMEANS_RESTARTS,
           iterations: int = 300) -> np.ndarray:
    """Lloyd's k-means of ``points`` (N, D) from greedy k-means++ seeds (as scikit-learn's), the
    best of ``restarts`` runs by inertia: labels (N,) int64."""
    rng = np.random.default_rng(seed)
    n = points.shape[0]
    best, best_inertia = np.zeros(n, np.int64), np.inf
    trials = 2 + int(np.log(k))
    for _ in range(restarts):
        centre = np.empty((k, points.shape[1]))  # (k, D)
        centre[0] = points[rng.integers(n)]
        gap = ((points - centre[0]) ** 2).sum(-1)  # (N,) squared distance to the nearest centre
        for c in range(1, k):  # greedy k-means++: of 2 + ln k draws ∝ gap, the one that helps most
            total = gap.sum()
            draws = (rng.choice(n, size=trials, p=gap / total) if total > 0
                     else rng.integers(n, size=trials))  # (trials,)
            candidate_gaps = np.minimum(gap[None], ((points[None] - points[draws][:, None]) ** 2
                                                    ).sum(-1))  # (trials, N)
            best_draw = int(candidate_gaps.sum(axis=1).argmin())
            centre[c], gap = points[draws[best_draw]], candidate_gaps[best_draw]
        labels = np.full(n, -1, np.int64)
        for _ in range(iterations):
            squared = ((points[:, None, :] - centre[None]) ** 2).sum(-1)  # (N, k)
            new = squared.argmin(axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = points[labels == c]
                if len(members):
                    centre[c] = members.mean(axis=0)
        inertia = float(((points - centre[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels.copy(), inertia
    return best


def spectral_embedding(affinity: np.ndarray, k: int) -> np.ndarray:
    """The spectral embedding (N, k) of a symmetric non-negative ``affinity`` (N, N), as
    scikit-learn's ``SpectralClustering(affinity="precomputed")`` computes it: the top-k
    eigenvectors of D^-½ W D^-½ (W without its diagonal), each row divided by √degree."""
    n = affinity.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"spectral clustering needs 1 <= k <= N = {n}, got k = {k}")
    links = affinity - np.diag(np.diag(affinity))  # (N, N) without self-loops, as the Laplacian
    degree = np.maximum(links.sum(axis=1), 1e-12)  # (N,)
    scale = 1.0 / np.sqrt(degree)
    normalised = links * scale[:, None] * scale[None, :]  # (N, N)
    _, vectors = np.linalg.eigh((normalised + normalised.T) / 2)  # ascending eigenvalues
    return vectors[:, ::-1][:, :k] * scale[:, None]  # (N, k)


def spectral_partition(affinity: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Spectral clustering of a symmetric non-negative ``affinity`` (N, N) into ``k`` clusters:
    :func:`spectral_embedding` clustered by :func:`kmeans`. Labels (N,) int64."""
    return kmeans(spectral_embedding(affinity, k), k, seed)


def coassociation_embedding(partitions: Sequence[np.ndarray], k: int) -> np.ndarray:
    """The spectral embedding (N, k) of the co-association matrix of ``partitions`` (m label
    arrays (N,), any integer ids): C_ij = the share of the partitions that put i and j together.
    With H (N, L) the one-hot memberships side by side, C = H Hᵀ / m, so the top-k eigenvectors of
    D^-½ C D^-½ (D = the row sums of C) are the top-k left singular vectors of M = D^-½ H / √m,
    found from the (L, L) Gram matrix Mᵀ M; neither C nor H is formed (the Gram matrix is summed
    from each pair of partitions' weighted contingency tables), so N may be large. Rows
    L2-normalised (Ng, Jordan and Weiss)."""
    codes = [np.unique(np.asarray(p).reshape(-1), return_inverse=True)[1].reshape(-1)
             for p in partitions]  # each (N,) ids 0..K_p-1
    if not codes:
        raise ValueError("coassociation_embedding needs at least one partition")
    n, m = len(codes[0]), len(codes)
    if any(len(c) != n for c in codes):
        raise ValueError("coassociation_embedding: every partition needs the same number of samples")
    sizes = [np.bincount(c) for c in codes]  # cluster sizes per partition
    offsets = np.cumsum([0] + [len(z) for z in sizes])  # partition p's columns: offsets[p]:[p+1]
    if offsets[-1] < k:
        raise ValueError(f"coassociation_embedding: the partitions have {offsets[-1]} clusters in "
                         f"all, fewer than k = {k}")
    degrees = sum(z[c] for z, c in zip(sizes, codes)) / m  # (N,) row sums of C
    weight = 1.0 / (degrees * m)  # (N,) each clip's weight in Mᵀ M
    gram = np.zeros((offsets[-1], offsets[-1]))  # (L, L)
    for p, cp in enumerate(codes):
        for q, cq in enumerate(codes):
            block = np.zeros((len(sizes[p]), len(sizes[q])))
            np.add.at(block, (cp, cq), weight)
            gram[offsets[p]:offsets[p + 1], offsets[q]:offsets[q + 1]] = block
    values, vectors = np.linalg.eigh((gram + gram.T) / 2)  # ascending
    top = np.argsort(values)[::-1][:k]
    singular = np.sqrt(np.maximum(values[top], 1e-24))  # (k,)
    scale = 1.0 / np.sqrt(degrees * m)  # (N,) the rows of M = D^-½ H / √m
    embedding = sum(vectors[offsets[p] + c][:, top] for p, c in enumerate(codes))  # (N, k) = H V
    embedding = embedding * scale[:, None] / singular  # (N, k) = M V / σ
    return embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)


def batch_partition(frames: np.ndarray, embedding: np.ndarray, vote_clusters: np.ndarray,
                    num_clusters: int, persons: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cluster a batch of new clips by their own graphs into ``num_clusters`` clusters: the
    consensus (:func:`coassociation_embedding`, then k-means) of :data:`CONSENSUS_SEEDS` spectral
    partitions of their exact DTW graph W (``frames`` (N, T, D) of ``persons`` bodies) and as many of
    W + :data:`EMBEDDING_WEIGHT` · A, A the kNN graph of the network's ``embedding`` (N, E)
    under cosine distance. Each cluster is renamed to the model cluster it overlaps most with
    under ``vote_clusters`` (N,) (one-to-one, Hungarian). Returns the clusters (N,) int64 and a
    confidence (N,) float32 per clip: the share of its DTW-graph neighbours in its own cluster."""
    n = frames.shape[0]
    graph = knn_graph(pairwise_dtw(frames, persons))  # (N, N)
    unit = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    joined = graph + EMBEDDING_WEIGHT * knn_graph(1.0 - unit @ unit.T)  # (N, N)
    labels = _consensus([graph, joined], num_clusters)  # (N,)
    clusters = aligned_labels(labels, vote_clusters, num_clusters)  # (N,)
    return clusters, _graph_confidence(graph, clusters) if n else np.zeros(0, np.float32)


def bank_neighbours(bank: ReferenceBank, neighbours: int = GRAPH_NEIGHBOURS
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Each bank clip's ``neighbours`` - 1 nearest other bank clips under DTW (ties to the lower
    row, as :func:`knn_graph`): rows (R, n) int64 and distances (R, n) float64, n = min(neighbours
    - 1, R - 1). All a small run's joint graph needs of the bank's own pairs: a run's clips can
    only push a bank clip's farther bank neighbours out (:func:`bank_run_partition`). Costs the
    bank's R² / 2 DTW pairs, so a model computes it once (:class:`BatchStep`)."""
    r = len(bank)
    distances = pairwise_dtw(bank.frames, bank.persons)  # (R, R)
    ranked = distances + np.diag(np.full(r, np.inf))  # (R, R): itself last
    nearest = np.argsort(ranked, axis=1, kind="stable")[:, :max(0, min(neighbours - 1, r - 1))]
    return nearest, np.take_along_axis(distances, nearest, axis=1)  # (R, n) each


def bank_run_partition(bank: ReferenceBank, frames: np.ndarray,
                       neighbours: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Cluster a run too small for its own graph (``frames`` (N, T, D), fewer than
    :data:`MIN_CLIPS_PER_CLUSTER` per cluster) together with the model's reference ``bank``: the
    consensus of :data:`CONSENSUS_SEEDS` spectral partitions of the exact DTW graph of the bank's
    and the run's clips together, each cluster named by the bank cluster it overlaps most with
    (one-to-one, Hungarian). ``neighbours``: :func:`bank_neighbours` of the bank, computed here
    when not given. Returns the run's clips' clusters (N,) int64 and confidences (N,) float32 (the
    share of a clip's DTW-graph neighbours in its cluster)."""
    r, k = len(bank), bank.num_clusters
    frames = np.asarray(frames, np.float32)
    rows, nearest = bank_neighbours(bank) if neighbours is None else neighbours  # (R, n) each
    # The joint distances (R + N, R + N): of the bank's own pairs only each clip's nearest (the
    # others, infinite, are never among a bank clip's kNN in the joint graph), every pair with or
    # within the run.
    distances = np.full((r + len(frames),) * 2, np.inf)
    np.put_along_axis(distances[:r, :r], rows, nearest, axis=1)
    distances[np.arange(r), np.arange(r)] = 0.0
    across = bank.distances(frames)  # (N, R)
    distances[r:, :r], distances[:r, r:] = across, across.T
    distances[r:, r:] = pairwise_dtw(frames, bank.persons)  # (N, N)
    graph = knn_graph(distances)  # (R + N, R + N)
    labels = _consensus([graph], k)  # (R + N,)
    clusters = aligned_labels(labels, np.concatenate([bank.clusters, np.full(len(frames), -1)]), k)
    return clusters[r:], _graph_confidence(graph, clusters)[r:]


def _consensus(graphs: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Labels (N,): k-means of the :func:`coassociation_embedding` of :data:`CONSENSUS_SEEDS`
    k-means partitions of each graph's :func:`spectral_embedding` (computed once per graph; the
    seeds differ in k-means only)."""
    embeddings = [spectral_embedding(graph, k) for graph in graphs]  # each (N, K)
    members = [kmeans(spectral, k, seed) for spectral in embeddings for seed in range(CONSENSUS_SEEDS)]
    return kmeans(coassociation_embedding(members, k), k)


def aligned_labels(labels: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """``labels`` (N,) in [0, ``k``) renamed to the ``reference`` cluster (N,; rows of -1 count for
    none) each overlaps most with, one-to-one (Hungarian on the K × K overlap), so that a new
    partition keeps the ids a model already uses (the batch step, the small-run step, and
    training's anchors against the heads). int64 (N,)."""
    reference = np.asarray(reference, np.int64)
    known = reference >= 0
    overlap = np.zeros((k, k), np.int64)  # (new cluster, reference cluster)
    np.add.at(overlap, (labels[known], reference[known]), 1)
    rows, cols = hungarian(-overlap.astype(np.float64))
    rename = np.arange(k)
    rename[rows] = cols
    return rename[labels].astype(np.int64)  # (N,)


def _graph_confidence(graph: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """The share (N,) float32 of each clip's ``graph`` neighbours (either way, itself included)
    in its own cluster."""
    adjacency = graph > 0  # (N, N)
    same = adjacency & (clusters[:, None] == clusters[None, :])
    return (same.sum(axis=1) / np.maximum(adjacency.sum(axis=1), 1)).astype(np.float32)


def batch_applies(clips: int, num_clusters: int) -> bool:
    """Whether a batch of ``clips`` new clips is clustered by its own graph (else the vote)."""
    return MIN_CLIPS_PER_CLUSTER * num_clusters <= clips <= MAX_BATCH_CLIPS


def encode_clips(frames: np.ndarray, embedding: np.ndarray) -> list[str]:
    """Each clip's DTW frames (N, T, D) and embedding (N, E) as float16 bytes in base64 text (what
    a run's journal keeps, so that a resumed run can still cluster the whole batch together)."""
    return [base64.b64encode(np.concatenate([np.ravel(f), np.ravel(e)]).astype("<f2").tobytes()
                             ).decode("ascii") for f, e in zip(frames, embedding)]


def decode_clips(texts: Sequence[str], frame_shape: tuple[int, int], embedding_dim: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`encode_clips`: frames (N, T, D) and embedding (N, E), float32;
    ValueError when a text does not hold one clip of those shapes."""
    frame_values = int(np.prod(frame_shape))
    size = 2 * (frame_values + embedding_dim)
    clips = []
    for text in texts:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        if len(raw) != size:
            raise ValueError(f"journal frames of {len(raw)} bytes, expected {size}")
        clips.append(np.frombuffer(raw, dtype="<f2"))
    values = np.stack(clips).astype(np.float32) if clips else np.zeros((0, size // 2), np.float32)
    return (values[:, :frame_values].reshape(-1, *frame_shape),  # (N, T, D)
            values[:, frame_values:])  # (N, E)


@dataclass(frozen=True)
class BatchStep:
    """The batch step of a model with a reference bank: what a whole run's clips need to be
    clustered together at its end (:func:`batch_partition`)."""

    num_clusters: int
    velocity_weight: float
    frame_shape: tuple[int, int]  # (T, D) of one clip's DTW frames
    embedding_dim: int
    persons: int = 1  # M, the bodies in each clip's frames
    coordinates: int | None = None  # the coordinate channels the frames are made of
    bank: ReferenceBank | None = field(default=None, compare=False, repr=False)  # for small runs

    @classmethod
    def of_bank(cls, bank: ReferenceBank, embedding_dim: int) -> BatchStep:
        """The batch step of a model whose reference bank is ``bank`` and whose network embeds a
        clip in ``embedding_dim`` values: the bank's clusters, frames and bodies."""
        return cls(bank.num_clusters, bank.velocity_weight, bank.frames.shape[1:], embedding_dim,
                   bank.persons, bank.coordinates, bank)

    def frames(self, poses: np.ndarray) -> np.ndarray:
        """Preprocessed ``poses`` (N, C, T, V, M) → DTW frames (N, T, D) float32, rounded to
        float16 as a run's journal keeps them (so a run and ``ClusterModel.cluster`` agree)."""
        frames = pose_frames(poses, self.velocity_weight, self.coordinates)  # (N, T, D)
        return frames.astype(np.float16).astype(np.float32)

    def embedding(self, embedding: np.ndarray) -> np.ndarray:
        """The network's embedding (N, E) rounded to float16 as the journal keeps it."""
        return np.asarray(embedding).astype(np.float16).astype(np.float32)

    def applies(self, clips: int) -> bool:
        """Whether a run of ``clips`` clips is clustered together: by its own graphs
        (:func:`batch_applies`), or, smaller, with the bank (:func:`bank_run_partition`) while the
        bank and the run together hold at most :data:`MAX_BATCH_CLIPS` clips (the (N, N) graph's
        memory; a larger bank's small runs keep their votes)."""
        return self.declines(clips) is None

    def declines(self, clips: int) -> str | None:
        """Why a run of ``clips`` clips keeps its votes instead (a sentence), or None when it is
        clustered together (:meth:`applies`)."""
        if clips < 1 or batch_applies(clips, self.num_clusters):
            return None if clips else "no clips"
        if clips > MAX_BATCH_CLIPS:
            return (f"{clips} clips, more than the {MAX_BATCH_CLIPS} that are clustered together "
                    "(run them in smaller parts to have them clustered together)")
        if self.bank is None:
            return (f"{clips} clips, fewer than {MIN_CLIPS_PER_CLUSTER} per cluster, and the model "
                    "has no reference bank to cluster them with")
        if len(self.bank) + clips > MAX_BATCH_CLIPS:
            return (f"{clips} clips, fewer than {MIN_CLIPS_PER_CLUSTER} per cluster, and the "
                    f"model's reference bank of {len(self.bank)} clips is too large to cluster "
                    f"them with (at most {MAX_BATCH_CLIPS} clips together)")
        return None

    def cluster(self, frames: np.ndarray, embedding: np.ndarray, vote_clusters: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray] | None:
        """Clusters and confidences (N,) of the whole run: :func:`batch_partition` from
        :data:`MIN_CLIPS_PER_CLUSTER` clips per cluster, :func:`bank_run_partition` below it;
        None when the run is too large (or, without a bank, too small): the vote stands."""
        if not self.applies(len(frames)):
            return None
        if batch_applies(len(frames), self.num_clusters):
            return batch_partition(frames, embedding, vote_clusters, self.num_clusters,
                                   self.persons)
        assert self.bank is not None  # a small run applies only with a bank (declines)
        return bank_run_partition(self.bank, frames, self.bank_neighbour_table)

    @cached_property
    def bank_neighbour_table(self) -> tuple[np.ndarray, np.ndarray]:
        """:func:`bank_neighbours` of the bank, computed at the first small run (the bank's own
        DTW pairs, the larger part of a small run's cost), kept for the next."""
        assert self.bank is not None
        return bank_neighbours(self.bank)

    def cluster_poses(self, poses: np.ndarray, embedding: np.ndarray, vote_clusters: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`cluster` of preprocessed ``poses`` (N, C, T, V, M) and the network's
        ``embedding`` (N, E), rounded as a run's journal keeps them."""
        return self.cluster(self.frames(poses), self.embedding(embedding), vote_clusters)
