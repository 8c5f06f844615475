"""The raw poses as the label-free method sees them, and their k-nearest-neighbour graphs.

Every function here is pure numpy / scipy / scikit-learn (no torch) and reads no label.

- :func:`flattened_poses`, :func:`pose_frames`, :func:`dtw_distances` (from
  ``codt_deploy.reference``, the runtime's, one implementation): unit-L2 rows (N, C·T·V·M), the
  clips as (N, T, D) frames with their velocities optionally beside them, and DTW under a
  Sakoe-Chiba band;
- :func:`dtw_knn_affinity`: the symmetrised 10-NN graph under DTW (neighbours searched among the
  Euclidean-nearest clips, or among all clips);
- :func:`knn_affinity`: the one kNN-graph builder (feature rows, or a graph passed through);
- :func:`raw_pose_graph`: the raw poses' graph under a :data:`RawGraphMetric`.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

# the raw-pose view and DTW kernel are the runtime's, so that training's graphs and the reference
# bank's vote (codt_deploy.reference) measure clips by one distance
from codt_deploy.reference import (  # noqa: F401  (re-exported: the views of this module)
    VELOCITY_WEIGHT,
    body_orders,
    dtw_band,
    dtw_distances,
    flattened_poses,
    pose_frames,
    reorder_bodies,
)

# How a raw-pose graph measures distance: flattened poses, dynamic time warping of their frames,
# or of the frames with their velocities beside them (docs/METHOD.md §15.2).
RawGraphMetric = Literal["euclidean", "dtw", "dtw_velocity"]
RAW_METRICS: tuple[str, ...] = get_args(RawGraphMetric)
SPECTRAL_NEIGHBOURS = 10  # k of every kNN graph
DTW_CANDIDATES = 100  # Euclidean nearest clips whose DTW distance is computed, per clip
DTW_CELLS_PER_CHUNK = 2**26  # pairs × T × T cells held at once (≈ 256 MiB of float32 per array)


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


def dtw_knn_affinity(sequences, n_neighbors: int = SPECTRAL_NEIGHBOURS, band: int | None = None,
                     candidates: int | None = DTW_CANDIDATES, persons: int = 1):
    """The symmetrised kNN connectivity graph (sparse (N, N), as :func:`knn_affinity`) of clips
    ``sequences`` (N, T, D) of ``persons`` bodies under the DTW distance of :func:`dtw_distances`
    (``band`` None: :func:`dtw_band` of T; the least over the orders of the bodies): each clip's
    ``n_neighbors`` nearest, itself included, found among its ``candidates`` Euclidean-nearest
    clips under each order of its bodies (all clips when N ≤ candidates + 1), so the cost is
    O(N · candidates · T · band) rather than O(N² · T · band). ``candidates`` None: every pair's
    distance (:func:`codt_deploy.batch.pairwise_dtw`, the graph the runtime's batch step builds;
    dense (N, N) memory)."""
    from scipy import sparse
    from sklearn.neighbors import NearestNeighbors

    frames = np.asarray(sequences, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"dtw_knn_affinity needs (N, T, D) sequences, got {frames.shape}")
    if candidates is None:
        from codt_deploy.batch import knn_graph, pairwise_dtw

        if band is not None and band != dtw_band(frames.shape[1]):
            raise ValueError("dtw_knn_affinity: the exact graph uses the default band")
        return sparse.csr_matrix(knn_graph(pairwise_dtw(frames, persons), n_neighbors))  # (N, N)
    n, t = frames.shape[:2]
    band = dtw_band(t) if band is None else band
    n_neighbors = min(n_neighbors, n)
    pool = min(n, max(candidates, n_neighbors) + 1)  # + 1: the clip itself
    index = NearestNeighbors(n_neighbors=pool).fit(frames.reshape(n, -1))  # rows (N, T·D)
    orders = body_orders(frames, frames, persons)
    near = np.concatenate([index.kneighbors(reorder_bodies(frames, o).reshape(n, -1))[1]
                           for o in orders], axis=1)  # (N, P): each order's candidates
    repeated = np.zeros(near.shape, dtype=bool)  # (N, P): a candidate already in the row
    if len(orders) > 1:
        near = np.sort(near, axis=1)
        repeated[:, 1:] = near[:, 1:] == near[:, :-1]
    first = np.repeat(np.arange(n), near.shape[1])  # (N·P,)
    second = near.reshape(-1)  # (N·P,)
    distance = np.full(first.shape[0], np.inf)
    once = ~repeated.reshape(-1)  # (N·P,): each pair once
    todo = np.flatnonzero(once)
    chunk = max(1, DTW_CELLS_PER_CHUNK // (t * t))
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        distance[part] = dtw_distances(frames[first[part]], frames[second[part]], band, persons)
    distance[(first == second) & once] = -1.0  # a clip is always its own nearest
    order = np.argsort(distance.reshape(near.shape), axis=1, kind="stable")[:, :n_neighbors]
    chosen = np.take_along_axis(near, order, axis=1)  # (N, n_neighbors)
    graph = sparse.csr_matrix((np.ones(n * n_neighbors), (np.repeat(np.arange(n), n_neighbors),
                                                          chosen.reshape(-1))), shape=(n, n))
    return 0.5 * (graph + graph.T)


def raw_pose_graph(poses: np.ndarray, metric: str = "euclidean", *, exact: bool = False,
                   coordinates: int | None = None):
    """The raw poses (N, C, T, V, M) as a view of :func:`training.labelfree.partition.spectral_labels`:
    ``euclidean``: the flattened rows (N, C·T·V·M) of :func:`flattened_poses` (their kNN graph is
    built there); ``dtw`` / ``dtw_velocity``: the sparse (N, N) 10-NN graph of the clips' frames
    (:func:`pose_frames`, without / with their velocities at :data:`VELOCITY_WEIGHT`) under
    dynamic time warping, neighbours searched among the Euclidean-nearest clips, or with
    ``exact`` among all clips (:func:`dtw_knn_affinity` with ``candidates=None``; up to
    :data:`codt_deploy.batch.MAX_BATCH_CLIPS` clips, the Euclidean-nearest beyond). Of the first
    ``coordinates`` channels only (the positions; None: all)."""
    if metric not in RAW_METRICS:
        raise ValueError(f"unknown raw-pose metric {metric!r} (one of {', '.join(RAW_METRICS)})")
    if metric == "euclidean":
        return flattened_poses(poses, coordinates)  # (N, C·T·V·M)
    weight = VELOCITY_WEIGHT if metric == "dtw_velocity" else 0.0
    from codt_deploy.batch import MAX_BATCH_CLIPS

    frames = pose_frames(poses, weight, coordinates)  # (N, T, D)
    exact = exact and len(frames) <= MAX_BATCH_CLIPS  # beyond: the (N, N) matrix is too large
    return dtw_knn_affinity(frames, candidates=None if exact else DTW_CANDIDATES,
                            persons=int(np.shape(poses)[-1]))  # sparse (N, N)
