"""Can K (the number of target actions) be estimated without labels? An exploration for
``num_clusters: auto`` (not built yet).

    python benchmarks/estimate_k.py [--task ucla2msr] [--max-k 40]

On the prepared target *train* clips (labels withheld; the B1 layout, flattened and L2-normalised
as for the raw-pose baselines), three label-free estimates of K over 2..max-k:

- eigengap: the largest gap λ_{k+1} − λ_k of the normalised Laplacian of the symmetrised kNN graph
  (``training.clustering.knn_affinity``), for 5, 10 and 15 neighbours;
- Ward silhouette: the K whose Ward partition of the pose rows has the best silhouette;
- embedding silhouette: the K whose k-means partition of the K-dimensional spectral embedding
  (row-normalised, as spectral clustering assigns it) has the best silhouette.

The true class count comes from the task (it is printed, never used by an estimate). The task must
be prepared (``python -m training.prepare TASK``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from training.baselines import flattened_poses  # noqa: E402
from training.clustering import knn_affinity  # noqa: E402
from training.config import prepared_task_dir  # noqa: E402
from training.preparation.prepared import load_split, load_task  # noqa: E402

NEIGHBOURS = (5, 10, 15)


def eigengap_k(rows: np.ndarray, n_neighbors: int, max_k: int) -> int:
    """argmax over k in 2..max_k of λ_{k+1} − λ_k (ascending eigenvalues of the normalised
    Laplacian of the kNN graph of ``rows`` (N, D))."""
    from scipy.linalg import eigvalsh
    from scipy.sparse import csgraph

    laplacian = csgraph.laplacian(knn_affinity(rows, n_neighbors).toarray(), normed=True)  # (N, N)
    eigenvalues = np.sort(eigvalsh(laplacian))[:max_k + 1]  # λ_1 ≤ … ≤ λ_{max_k+1}
    gaps = np.diff(eigenvalues)  # gaps[k−1] = λ_{k+1} − λ_k
    return int(np.argmax(gaps[1:max_k]) + 2)


def silhouette_ks(rows: np.ndarray, max_k: int) -> tuple[int, int]:
    """(best K by the silhouette of Ward partitions, best K by the silhouette of k-means on the
    row-normalised spectral embedding)."""
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.manifold import spectral_embedding
    from sklearn.metrics import silhouette_score

    embedding = spectral_embedding(knn_affinity(rows), n_components=max_k, random_state=0,
                                   drop_first=False)  # (N, max_k)
    ward, spectral = {}, {}
    for k in range(2, max_k + 1):
        ward[k] = silhouette_score(rows, AgglomerativeClustering(k, linkage="ward").fit_predict(rows))
        head = embedding[:, :k] / np.maximum(np.linalg.norm(embedding[:, :k], axis=1,
                                                            keepdims=True), 1e-12)  # (N, k)
        spectral[k] = silhouette_score(head, KMeans(k, n_init=5, random_state=0).fit_predict(head))
    return max(ward, key=ward.__getitem__), max(spectral, key=spectral.__getitem__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="ucla2msr", help="a prepared task under data/prepared")
    parser.add_argument("--max-k", type=int, default=40)
    args = parser.parse_args(argv)
    folder = prepared_task_dir(args.task)
    rows = flattened_poses(load_split(folder, "target_train", "specific").data)  # (N, C·T·V·M)
    max_k = min(args.max_k, len(rows) // 5)
    print(f"{args.task}: {len(rows)} unlabelled clips, true K = {load_task(folder).num_clusters}")
    print("| estimate | K |\n|---|---|")
    for n_neighbors in NEIGHBOURS:
        print(f"| eigengap, {n_neighbors}-NN graph | {eigengap_k(rows, n_neighbors, max_k)} |")
    ward_k, spectral_k = silhouette_ks(rows, max_k)
    print(f"| Ward silhouette | {ward_k} |\n| spectral-embedding silhouette | {spectral_k} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
