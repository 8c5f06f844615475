"""The raw poses as the label-free method sees them, and their k-nearest-neighbour graphs.

Every function here is pure numpy / scipy / scikit-learn (no torch) and reads no label.

- :func:`flattened_poses`: (N, C, T, V, M) → unit-L2 rows (N, C·T·V·M); what k-means, Ward and
  the Euclidean kNN graph read;
- :func:`pose_frames`: the same clips as (N, T, D) frame sequences, optionally with each frame's
  velocity beside it, for dynamic time warping;
- :func:`dtw_distances`, :func:`dtw_knn_affinity`: DTW under a Sakoe-Chiba band, and the
  symmetrised 10-NN graph it gives (neighbours searched among the Euclidean-nearest clips);
- :func:`knn_affinity`: the one kNN-graph builder (feature rows, or a graph passed through);
- :func:`raw_pose_graph`: the raw poses' graph under a :data:`RawGraphMetric`.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

# How a raw-pose graph measures distance: flattened poses, dynamic time warping of their frames,
# or of the frames with their velocities beside them (docs/METHOD.md §15.2).
RawGraphMetric = Literal["euclidean", "dtw", "dtw_velocity"]
RAW_METRICS: tuple[str, ...] = get_args(RawGraphMetric)
VELOCITY_WEIGHT = 0.5  # weight of the (unit-norm) velocity sequence beside the positions
SPECTRAL_NEIGHBOURS = 10  # k of every kNN graph
DTW_BAND_FRACTION = 0.1  # Sakoe-Chiba band: a frame may be matched within ±10 % of T of its own time
DTW_CANDIDATES = 100  # Euclidean nearest clips whose DTW distance is computed, per clip
DTW_CELLS_PER_CHUNK = 2**26  # pairs × T × T cells held at once (≈ 256 MiB of float32 per array)


def flattened_poses(poses: np.ndarray) -> np.ndarray:
    """(N, C, T, V, M) poses → (N, C·T·V·M) float64 rows of unit L2 norm (zero rows stay zero)."""
    array = np.asarray(poses, dtype=np.float64)
    rows = array.reshape(array.shape[0], -1)  # (N, C·T·V·M)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def pose_frames(poses: np.ndarray, velocity_weight: float = 0.0) -> np.ndarray:
    """(N, C, T, V, M) poses → (N, T, D) float32 frames for dynamic time warping: each frame's
    C·V·M values of the clip's unit-L2 rows (:func:`flattened_poses`), D = C·V·M; with
    ``velocity_weight`` > 0, followed by ``velocity_weight`` × the same of the clip's velocities
    (frame differences, the first frame given the second's so that T is kept), D = 2·C·V·M."""
    array = np.asarray(poses, dtype=np.float64)
    if array.ndim != 5:
        raise ValueError(f"pose_frames needs (N, C, T, V, M) poses, got shape {array.shape}")
    n, c, t, v, m = array.shape

    def frames(x: np.ndarray) -> np.ndarray:  # (N, C, T, V, M) → (N, T, C·V·M), unit per clip
        return flattened_poses(x).reshape(n, c, t, v, m).transpose(0, 2, 1, 3, 4).reshape(n, t, -1)

    positions = frames(array)  # (N, T, C·V·M)
    if velocity_weight <= 0.0 or t < 2:
        return positions.astype(np.float32)
    velocity = np.diff(array, axis=2)  # (N, C, T−1, V, M)
    velocity = np.concatenate([velocity[:, :, :1], velocity], axis=2)  # (N, C, T, V, M)
    both = np.concatenate([positions, velocity_weight * frames(velocity)], axis=2)  # (N, T, 2·C·V·M)
    return both.astype(np.float32)


def knn_affinity(points, n_neighbors: int = SPECTRAL_NEIGHBOURS):
    """The symmetrised kNN connectivity graph of ``points`` (N, D): a sparse (N, N) matrix with
    ½(A + Aᵀ), A_ij = 1 when j is among the ``n_neighbors`` nearest (Euclidean) of i, i itself
    included. A sparse (N, N) matrix is taken to be such a graph already and returned as it is."""
    from scipy import sparse
    from sklearn.neighbors import kneighbors_graph

    if sparse.issparse(points):  # already a graph, e.g. :func:`dtw_knn_affinity`
        return points
    points = np.asarray(points, dtype=np.float64)
    # include_self=True: what scikit-learn's SpectralClustering(affinity="nearest_neighbors") does
    graph = kneighbors_graph(points, min(n_neighbors, points.shape[0]), mode="connectivity",
                             include_self=True)
    return 0.5 * (graph + graph.T)


def dtw_distances(frames_a, frames_b, band: int):
    """Dynamic-time-warping distances (P,) between paired sequences ``frames_a[p]`` and
    ``frames_b[p]`` (both (P, T, D)): the least sum of squared frame distances along a monotone
    alignment path from (0, 0) to (T-1, T-1) whose frames differ in time by at most ``band``
    (Sakoe-Chiba). ``band`` 0 is the squared Euclidean distance of the sequences; a band of T - 1
    or more is unconstrained DTW. float64 (P,)."""
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


def raw_pose_graph(poses: np.ndarray, metric: str = "euclidean"):
    """The raw poses (N, C, T, V, M) as a view of :func:`training.labelfree.partition.spectral_labels`:
    ``euclidean``: the flattened rows (N, C·T·V·M) of :func:`flattened_poses` (their kNN graph is
    built there); ``dtw`` / ``dtw_velocity``: the sparse (N, N) 10-NN graph of the clips' frames
    (:func:`pose_frames`, without / with their velocities at :data:`VELOCITY_WEIGHT`) under
    dynamic time warping."""
    if metric not in RAW_METRICS:
        raise ValueError(f"unknown raw-pose metric {metric!r} (one of {', '.join(RAW_METRICS)})")
    if metric == "euclidean":
        return flattened_poses(poses)  # (N, C·T·V·M)
    weight = VELOCITY_WEIGHT if metric == "dtw_velocity" else 0.0
    return dtw_knn_affinity(pose_frames(poses, weight))  # frames (N, T, D) → sparse (N, N)
