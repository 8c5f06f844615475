"""Would a hand-made pose descriptor give better anchors than the flattened raw poses?

    python benchmarks/raw_descriptors.py [--task ucla2msr] [--seeds 3]

Spectral clustering (the 10-NN graph of ``training.clustering.spectral_labels``, the raw-pose
baseline's method) of several label-free descriptors of the prepared target eval clips, and of
sums of their kNN graphs; ACC / NMI / ARI against the eval labels, mean over clustering seeds.
An exploration of candidate anchor graphs (docs/METHOD.md §15.4), read with the labels, so it
informs the design only: nothing trained or exported is chosen by it. The task must be prepared.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from training.baselines import flattened_poses  # noqa: E402
from training.clustering import spectral_labels  # noqa: E402
from training.config import prepared_task_dir  # noqa: E402
from training.metrics import cluster_metrics  # noqa: E402
from training.preparation.prepared import load_split, load_task  # noqa: E402


def temporal_pyramid(poses: np.ndarray) -> np.ndarray:
    """(N, C, T, V, M) → (N, 7·C·V·M): means over the whole clip, its halves and its quarters."""
    parts = [poses.mean(axis=2)]
    for pieces in (2, 4):
        parts += [piece.mean(axis=2) for piece in np.array_split(poses, pieces, axis=2)]
    return np.concatenate([p.reshape(len(poses), -1) for p in parts], axis=1)


def joint_distances(poses: np.ndarray) -> np.ndarray:
    """(N, C, T, V, M) → (N, T·V(V−1)/2): per-frame distances between joint pairs, person 0."""
    first = poses[..., 0]  # (N, C, T, V)
    pairwise = np.linalg.norm(first[:, :, :, :, None] - first[:, :, :, None, :], axis=1)  # (N, T, V, V)
    upper = np.triu_indices(first.shape[3], 1)
    return pairwise[:, :, upper[0], upper[1]].reshape(len(poses), -1)


def descriptors(poses: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Name → views (each (N, D), unit rows); several views mean the sum of their kNN graphs."""
    velocity = np.diff(poses, axis=2)  # (N, C, T−1, V, M)
    raw, vel = flattened_poses(poses), flattened_poses(velocity)
    dist = flattened_poses(joint_distances(poses))
    moments = np.concatenate([poses.mean(axis=2).reshape(len(poses), -1),
                              poses.std(axis=2).reshape(len(poses), -1)], axis=1)
    return {"raw poses (the baseline)": [raw], "velocities": [vel],
            "raw ⊕ velocities (concatenated)": [np.concatenate([raw, vel], axis=1)],
            "temporal pyramid of means": [flattened_poses(temporal_pyramid(poses))],
            "mean and std over time": [flattened_poses(moments)], "joint distances": [dist],
            "graphs: raw + velocities": [raw, vel], "graphs: raw + distances": [raw, dist],
            "graphs: raw + velocities + distances": [raw, vel, dist]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="ucla2msr", help="a prepared task under data/prepared")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    folder = prepared_task_dir(args.task)
    split = load_split(folder, "target_eval", "specific")
    poses = np.asarray(split.data, dtype=np.float64)  # (N, C, T, V, M)
    labels, k = split.labels, load_task(folder).num_clusters
    print(f"{args.task}: {len(poses)} clips, K = {k}, spectral clustering, {args.seeds} seeds")
    print("| descriptor | ACC | NMI | ARI |\n|---|---|---|---|")
    warnings.filterwarnings("ignore", message="Graph is not fully connected")
    for name, views in descriptors(poses).items():
        runs = [cluster_metrics(spectral_labels(views, k, seed=seed), labels) for seed in range(args.seeds)]
        means = [np.mean([run[key] for run in runs]) for key in ("acc", "nmi", "ari")]
        print(f"| {name} | " + " | ".join(f"{m:.1f}" for m in means) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
