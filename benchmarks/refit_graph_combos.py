"""Other ways to join the refit's two graphs (a diagnostic; docs/METHOD.md §15.14)

    python benchmarks/refit_graph_combos.py RUN_DIR [RUN_DIR ...]

For each finished run: the B1 student features' 10-NN graph A_f (and 30-NN graph A_f30) of the
target train clips and the raw poses' DTW-with-velocities 10-NN graph A_r, then the spectral
partition of each joined graph, scored against the labels (×100, oracle: the labels choose
nothing; the target eval clips must be the train clips, as in the internal tasks):

- ``sum ½``: A_r + ½ A_f (what ``--recipe cpu`` refits to);
- ``raw``: A_r alone (the velocity-graph baseline);
- ``raw + c·raw∘feat``: the raw graph's edges, reinforced by c where the features agree (the
  features cannot add an edge);
- ``raw∘feat30``: only the raw edges that the features' 30-NN graph also has (plus 10⁻³ A_r to keep
  the graph connected).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def combos(raw_graph, feat_graph, feat_graph30) -> dict:
    """The joined (N, N) sparse graphs, by name."""
    reinforced, reinforced30 = raw_graph.multiply(feat_graph), raw_graph.multiply(feat_graph30)
    return {"sum ½ (recipe)": raw_graph + 0.5 * feat_graph, "raw": raw_graph,
            "raw + raw∘feat": raw_graph + reinforced, "raw + 2·raw∘feat": raw_graph + 2 * reinforced,
            "raw + raw∘feat30": raw_graph + reinforced30,
            "raw + 2·raw∘feat30": raw_graph + 2 * reinforced30,
            "raw∘feat30": reinforced30 + 1e-3 * raw_graph}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.refit_weight_select import target_features
    from training.baselines import raw_pose_view
    from training.clustering import knn_affinity, spectral_labels
    from training.data import derive_seed
    from training.metrics import cluster_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    means: dict[str, list[list[float]]] = {}
    for run in args.run_dirs:
        config, model, data, points, labels = target_features(run)  # points: unit (N, 256)
        if labels is None:
            raise SystemExit(f"{run}: its target eval clips are not its train clips")
        graphs = combos(knn_affinity(raw_pose_view(data.target_train_specific.data, "dtw_velocity")),
                        knn_affinity(points), knn_affinity(points, 30))
        seed = derive_seed(config.seed, 15) % 2**31
        for name, graph in graphs.items():
            scores = cluster_metrics(labels, spectral_labels([graph], model.num_clusters, seed=seed))
            means.setdefault(name, []).append([scores[m] for m in ("acc", "nmi", "ari")])
            print(f"{run}  {name:20s} {scores['acc']:.1f} / {scores['nmi']:.1f} / "
                  f"{scores['ari']:.1f}", flush=True)
    print("# mean over runs, ACC / NMI / ARI (oracle-scored)")
    for name, rows in means.items():
        print(f"{name:20s} " + " / ".join(f"{v:.1f}" for v in np.mean(rows, axis=0)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
