"""Label-free neighbour structure of the target set (docs/METHOD.md §15, switch ``neighbours``).

Spectral clustering of the preprocessed raw poses is a strong label-free baseline because the
nearest neighbours of a clip in pose space usually show the same action (on MSR Action3D the
first neighbour shares the class 84 % of the time). These kernels compute that k-nearest-neighbour
table once, from the flattened, L2-normalised preprocessed poses (or any features), so that the
training losses can use it: as extra positives of the contrastive loss
(:func:`training.losses.neighbour_contrastive_loss`) and as the neighbour-consistency clustering
loss (:func:`training.losses.neighbour_consistency_loss`). Never reads a label.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_table(features: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """The ``k`` nearest other rows of each row of ``features`` (N, D) by cosine similarity.

    Returns (N, k) int64 indices, nearest first, never the row itself. Computed in chunks of
    ``chunk`` rows, so memory is O(chunk · N). Ties break towards the lower index.
    """
    if features.dim() != 2:
        raise ValueError(f"knn_table needs (N, D) features, got {tuple(features.shape)}")
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"knn_table needs 1 <= k < N = {n}, got k = {k}")
    if not torch.isfinite(features).all():
        raise ValueError("knn_table got non-finite features (NaN or inf)")
    points = F.normalize(features.float(), dim=1)  # (N, D)
    rows = []
    for start in range(0, n, chunk):
        block = points[start:start + chunk]  # (c, D)
        similarity = block @ points.T  # (c, N)
        own = torch.arange(start, start + block.shape[0])
        similarity[torch.arange(block.shape[0]), own] = -float("inf")
        rows.append(torch.topk(similarity, k, dim=1).indices)  # (c, k)
    return torch.cat(rows)


def pose_features(poses: np.ndarray) -> torch.Tensor:
    """Preprocessed poses (N, C, T, V, M) → flattened rows (N, C·T·V·M) for :func:`knn_table`."""
    array = np.array(poses, dtype=np.float32)  # a writable copy (the splits are memory-mapped)
    return torch.from_numpy(array.reshape(array.shape[0], -1))  # (N, C·T·V·M)
