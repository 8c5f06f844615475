"""Pure clustering kernels: log-domain Sinkhorn (METHOD.md §7) and spherical k-means (§9).

Both read no globals, take their randomness explicitly and run a bounded number of iterations.
Orientation: samples are rows, ``(N, K)`` for scores and ``(N, D)`` for features.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F


@torch.no_grad()
def sinkhorn(logits: torch.Tensor, xi: float = 10.0, n_iter: int = 100, tol: float = 1e-2,
             check_every: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-size soft assignment of N samples to K clusters (METHOD §7, log domain, D15).

    ``logits`` (N, K) are the teacher's cluster scores Z over the whole bank. With
    ``H = xi · log_softmax(Z)`` the scaling vectors ``f`` (N,) and ``g`` (K,) are iterated as in
    §7; ``δ = Σ_n |exp(f_n − f'_n) − 1|`` is evaluated every ``check_every`` iterations (1 = every
    one; the reference code uses 10, at iterations 0, 10, 20, …) and the loop stops once
    ``δ < tol`` or after ``n_iter`` iterations.

    Returns ``Q`` (N, K) = N·exp(H + f + g), whose rows sum to 1 and columns to about N/K, and the
    pseudo-labels ``argmax_k (H + g)`` (N,). Sharply peaked scores cannot underflow; ``K = 1``
    gives Q = 1 and labels 0.
    """
    if logits.dim() != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"sinkhorn needs (N, K) scores with N, K >= 1, got {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ValueError("sinkhorn got non-finite scores (NaN or inf)")
    if n_iter < 1 or check_every < 1:
        raise ValueError(f"n_iter and check_every must be >= 1, got {n_iter} and {check_every}")
    n, k = logits.shape
    log_n, log_k = math.log(n), math.log(k)
    h = xi * torch.log_softmax(logits.float(), dim=1)  # (N, K)
    f = torch.full((n,), -log_n, dtype=h.dtype, device=h.device)  # log sample scaling
    g = torch.zeros(k, dtype=h.dtype, device=h.device)
    for iteration in range(n_iter):
        g = -log_k - torch.logsumexp(h + f[:, None], dim=0)  # (K,) cluster mass 1/K
        f_new = -log_n - torch.logsumexp(h + g[None, :], dim=1)  # (N,) sample mass 1/N
        converged = False
        if iteration % check_every == 0:
            delta = (torch.exp(f - f_new) - 1.0).abs().sum()
            converged = bool(delta < tol)
        f = f_new
        if converged:
            break
    q = n * torch.exp(h + f[:, None] + g[None, :])  # (N, K)
    labels = torch.argmax(h + g[None, :], dim=1)  # (N,)
    return q.to(logits.dtype), labels


def _uniform(generator: torch.Generator | None) -> float:
    """One U[0, 1) draw from ``generator`` (on whatever device it lives)."""
    device = generator.device if generator is not None else "cpu"
    return float(torch.rand((), generator=generator, device=device))


def _kmeans_pp_init(x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k-means++ seeding on unit vectors, distance² = ‖a − b‖² = 2 − 2·cos(a, b)."""
    n = x.shape[0]
    chosen = [min(int(_uniform(generator) * n), n - 1)]
    dist2 = (2.0 - 2.0 * (x @ x[chosen[0]])).clamp_min(0.0)  # (N,)
    for _ in range(1, k):
        total = float(dist2.sum())
        if total <= 0.0:  # every point coincides with a centre: fall back to uniform
            index = min(int(_uniform(generator) * n), n - 1)
        else:
            cumulative = torch.cumsum(dist2, dim=0)
            target = torch.tensor(_uniform(generator) * total, dtype=x.dtype, device=x.device)
            index = min(int(torch.searchsorted(cumulative, target, right=True)), n - 1)
        chosen.append(index)
        dist2 = torch.minimum(dist2, (2.0 - 2.0 * (x @ x[index])).clamp_min(0.0))
    return x[chosen].clone()  # (K, D)


def update_centroids(points: torch.Tensor, labels: torch.Tensor,
                     centroids: torch.Tensor) -> torch.Tensor:
    """One spherical k-means M-step: each centroid (K, D) becomes the normalised mean of its
    members among ``points`` (N, D); a cluster with no members (or members summing to ~0) keeps its
    previous centroid."""
    sums = torch.zeros_like(centroids).index_add_(0, labels, points)  # (K, D)
    norms = sums.norm(dim=1, keepdim=True)  # (K, 1)
    keep_old = norms <= 1e-12
    return torch.where(keep_old, centroids, sums / norms.clamp_min(1e-12))


def _as_generator(seed_or_generator: int | torch.Generator | None) -> torch.Generator | None:
    if isinstance(seed_or_generator, int):
        return torch.Generator().manual_seed(seed_or_generator)
    return seed_or_generator


@torch.no_grad()
def spherical_kmeans(x: torch.Tensor, k: int, generator: int | torch.Generator | None = None,
                     n_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means (METHOD §9): cosine assignment, centroid = normalised member mean.

    ``x`` (N, D) is L2-normalised here. Seeded k-means++ initialisation from ``generator`` (a
    ``torch.Generator`` or an int seed; ``None`` uses the global RNG). An empty cluster keeps its
    previous centroid. Stops when no label changes, or after ``n_iter`` iterations.
    Returns the unit-norm centroids (K, D) and labels (N,) from the last assignment.
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"spherical_kmeans needs (N, D) features with N >= 1, "
                         f"got {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"spherical_kmeans needs 1 <= k <= N = {x.shape[0]}, got k = {k}")
    if not torch.isfinite(x).all():
        raise ValueError("spherical_kmeans got non-finite features (NaN or inf)")
    points = F.normalize(x.float(), dim=1)  # (N, D)
    centroids = _kmeans_pp_init(points, k, _as_generator(generator))  # (K, D)
    labels = torch.argmax(points @ centroids.T, dim=1)  # (N,)
    for _ in range(n_iter):
        centroids = update_centroids(points, labels, centroids)
        new_labels = torch.argmax(points @ centroids.T, dim=1)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return centroids, labels


SPECTRAL_NEIGHBOURS = 10


def knn_affinity(points, n_neighbors: int = SPECTRAL_NEIGHBOURS):
    """The symmetrised kNN connectivity graph of ``points`` (N, D): a sparse (N, N) matrix with
    ½(A + Aᵀ), A_ij = 1 when j is among the ``n_neighbors`` nearest (Euclidean) of i, i itself
    included. A sparse (N, N) matrix is taken to be such a graph already and returned as it is."""
    import numpy as np
    from scipy import sparse
    from sklearn.neighbors import kneighbors_graph

    if sparse.issparse(points):  # already a graph, e.g. :func:`dtw_knn_affinity`
        return points
    points = np.asarray(points, dtype=np.float64)
    # include_self=True: what scikit-learn's SpectralClustering(affinity="nearest_neighbors") does
    graph = kneighbors_graph(points, min(n_neighbors, points.shape[0]), mode="connectivity",
                             include_self=True)
    return 0.5 * (graph + graph.T)


def spectral_labels(points, k: int, seed: int = 0, n_neighbors: int = SPECTRAL_NEIGHBOURS,
                    weights=None):
    """Spectral clustering (scikit-learn) into ``k`` clusters of the (``weights``-weighted) sum of
    the kNN graphs (:func:`knn_affinity`) of one feature matrix ``points`` (N, D) or of several
    views of the same N samples (a list of matrices; a sparse (N, N) view is a graph already, as
    :func:`dtw_knn_affinity` gives), METHOD §15.3–§15.4: labels (N,) int64."""
    import numpy as np
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


def consensus_labels(partitions, k: int, seed: int = 0):
    """Consensus (evidence accumulation) of several partitions of the same N samples into ``k``
    clusters, METHOD §15.15: spectral clustering of the co-association matrix C (N, N), C_ij = the
    share of the partitions that put i and j in one cluster. With H (N, L) the one-hot
    memberships of all m partitions side by side (L = their cluster counts summed), C = H Hᵀ / m,
    so the normalised affinity D^-½ C D^-½ (D = the row sums of C) is M Mᵀ with
    M = D^-½ H / √m, and its top-k eigenvectors are M's top-k left singular vectors (the
    bipartite view of a cluster ensemble), found from the (L, L) Gram matrix Mᵀ M: C is never
    formed, so N may be large. The rows of those
    vectors, L2-normalised, are clustered by k-means (Ng-Jordan-Weiss). ``partitions``: a list of
    (N,) label arrays (any integer ids). Returns labels (N,) int64."""
    import numpy as np
    from scipy import sparse
    from sklearn.cluster import KMeans

    parts = [np.asarray(p).reshape(-1) for p in partitions]
    if not parts:
        raise ValueError("consensus_labels needs at least one partition")
    n = len(parts[0])
    if any(len(p) != n for p in parts):
        raise ValueError("consensus_labels: every partition needs the same number of samples")
    if not 1 <= k <= n:
        raise ValueError(f"consensus_labels needs 1 <= k <= N = {n}, got k = {k}")
    blocks = []
    for labels in parts:
        codes = np.unique(labels, return_inverse=True)[1].reshape(-1)  # (N,) ids 0..K_p-1
        blocks.append(sparse.csr_matrix((np.ones(n), (np.arange(n), codes)),
                                        shape=(n, int(codes.max()) + 1)))
    memberships = sparse.hstack(blocks).tocsr()  # H (N, L)
    if memberships.shape[1] < k:
        raise ValueError(f"consensus_labels: the partitions have {memberships.shape[1]} clusters "
                         f"in all, fewer than k = {k}")
    degrees = memberships @ np.asarray(memberships.sum(axis=0)).reshape(-1) / len(parts)  # (N,)
    scaled = sparse.diags(1.0 / np.sqrt(degrees)) @ memberships / np.sqrt(len(parts))  # M (N, L)
    # M's left singular vectors from the eigenvectors V of the small Gram matrix Mᵀ M (L, L):
    # U = M V / σ. LAPACK's SVD of M itself failed to converge on a real target (msr2ucla, N =
    # 1,484); the symmetric eigensolver of an (L, L) matrix is robust and cheaper.
    gram = (scaled.T @ scaled).toarray()  # (L, L)
    values, vectors = np.linalg.eigh((gram + gram.T) / 2)  # ascending
    top = np.argsort(values)[::-1][:k]
    singular = np.sqrt(np.maximum(values[top], 1e-24))  # (k,)
    embedding = np.asarray(scaled @ vectors[:, top]) / singular  # (N, k)
    embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    return KMeans(k, n_init=10, random_state=seed).fit_predict(embedding).astype(np.int64)


DTW_BAND_FRACTION = 0.1  # Sakoe-Chiba band: a frame may be matched within ±10 % of T of its own time
DTW_CANDIDATES = 100  # Euclidean nearest clips whose DTW distance is computed, per clip
DTW_CELLS_PER_CHUNK = 2**26  # pairs × T × T cells held at once (≈ 256 MiB of float32 per array)


def dtw_distances(frames_a, frames_b, band: int):
    """Dynamic-time-warping distances (P,) between paired sequences ``frames_a[p]`` and
    ``frames_b[p]`` (both (P, T, D)): the least sum of squared frame distances along a monotone
    alignment path from (0, 0) to (T-1, T-1) whose frames differ in time by at most ``band``
    (Sakoe-Chiba). ``band`` 0 is the squared Euclidean distance of the sequences; a band of T - 1
    or more is unconstrained DTW. float64 (P,)."""
    import numpy as np

    a = np.asarray(frames_a, dtype=np.float32)
    b = np.asarray(frames_b, dtype=np.float32)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"dtw_distances needs two (P, T, D) arrays of one shape, got {a.shape} "
                         f"and {b.shape}")
    if band < 0:
        raise ValueError(f"dtw_distances needs band >= 0, got {band}")
    pairs, t = a.shape[:2]
    band = min(band, t - 1)
    cost = (np.einsum("ptd,ptd->pt", a, a)[:, :, None] + np.einsum("psd,psd->ps", b, b)[:, None, :]
            - 2.0 * np.einsum("ptd,psd->pts", a, b))  # (P, T, T) squared frame distances
    np.maximum(cost, 0.0, out=cost)
    previous = np.full((pairs, t), np.inf, dtype=np.float32)  # row i - 1 of the cumulative cost
    for i in range(t):
        current = np.full((pairs, t), np.inf, dtype=np.float32)  # (P, T)
        for j in range(max(0, i - band), min(t, i + band + 1)):
            if i == 0 and j == 0:
                best = np.zeros(pairs, dtype=np.float32)
            else:
                best = previous[:, j]
                if j > 0:
                    best = np.minimum(np.minimum(best, previous[:, j - 1]), current[:, j - 1])
            current[:, j] = cost[:, i, j] + best
        previous = current
    return previous[:, t - 1].astype(np.float64)


def dtw_knn_affinity(sequences, n_neighbors: int = SPECTRAL_NEIGHBOURS, band: int | None = None,
                     candidates: int = DTW_CANDIDATES):
    """The symmetrised kNN connectivity graph (sparse (N, N), as :func:`knn_affinity`) of clips
    ``sequences`` (N, T, D) under the DTW distance of :func:`dtw_distances` (``band`` None:
    ``DTW_BAND_FRACTION`` of T): each clip's ``n_neighbors`` nearest, itself included, found
    among its ``candidates`` Euclidean-nearest clips (all clips when N ≤ candidates + 1), so the
    cost is O(N · candidates · T · band) rather than O(N² · T · band)."""
    import numpy as np
    from scipy import sparse
    from sklearn.neighbors import NearestNeighbors

    frames = np.asarray(sequences, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"dtw_knn_affinity needs (N, T, D) sequences, got {frames.shape}")
    n, t = frames.shape[:2]
    band = max(1, round(DTW_BAND_FRACTION * t)) if band is None else band
    n_neighbors = min(n_neighbors, n)
    pool = min(n, max(candidates, n_neighbors) + 1)  # + 1: the clip itself
    rows = frames.reshape(n, -1)  # (N, T·D)
    _, near = NearestNeighbors(n_neighbors=pool).fit(rows).kneighbors(rows)  # (N, pool)
    first = np.repeat(np.arange(n), pool)  # (N·pool,)
    second = near.reshape(-1)  # (N·pool,)
    distance = np.empty(first.shape[0])
    chunk = max(1, DTW_CELLS_PER_CHUNK // (t * t))
    for start in range(0, first.shape[0], chunk):
        part = slice(start, start + chunk)
        distance[part] = dtw_distances(frames[first[part]], frames[second[part]], band)
    distance[first == second] = -1.0  # a clip is always its own nearest
    order = np.argsort(distance.reshape(n, pool), axis=1, kind="stable")[:, :n_neighbors]
    chosen = np.take_along_axis(near, order, axis=1)  # (N, n_neighbors)
    graph = sparse.csr_matrix((np.ones(n * n_neighbors), (np.repeat(np.arange(n), n_neighbors),
                                                          chosen.reshape(-1))), shape=(n, n))
    return 0.5 * (graph + graph.T)
