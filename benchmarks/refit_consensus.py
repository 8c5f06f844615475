"""Does a consensus of refit partitions beat the single refit partition? (a diagnostic, oracle-scored)

    python benchmarks/refit_consensus.py RUN_DIR [RUN_DIR ...] [--seeds 5] [--out FILE]

The §15.14 refit fits the heads to one spectral partition of w · A_B1 + A_raw (the run's
``refit_feature_weight`` and refit raw graph: ½ and the DTW graph with velocities in the recipe).
Its ACC varies by several points from seed to seed of training, and
the two internal tasks want different w. Consensus (evidence-accumulation) clustering is the
textbook answer to both: cluster the co-association matrix C_ij = share of the member partitions
that put i and j together. For each finished run this prints, oracle-scored (the labels choose
nothing), the recipe's partition and consensus partitions of:

- ``seeds``: the recipe's graph under ``--seeds`` spectral seeds (does the spectral step's own
  randomness matter?);
- ``weights``: w ∈ {¼, ½, ¾, 1} × the seeds;
- ``views``: the raw graph alone, the features alone and the joined graph at
  ``training.refit.CONSENSUS_WEIGHT_FACTORS`` × the run's w (¼, ½, 1 in the recipe) × the seeds;
- ``graphs``: both DTW graphs (positions; with velocities) each alone and beside the features at ½.

Each consensus is ``training.clustering.consensus_labels`` (spectral clustering of the
co-association matrix, K clusters), the function ``decisions.refit_consensus`` uses (METHOD
§15.15); "views" is that switch's member set at w = ½.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.refit_weight_select import target_features  # noqa: E402
from training.clustering import consensus_labels  # noqa: E402


def run(run_dir: Path, seeds: int) -> dict[str, list[float]]:
    from training.baselines import raw_pose_view
    from training.clustering import knn_affinity, spectral_labels
    from training.metrics import cluster_metrics
    from training.refit import CONSENSUS_WEIGHT_FACTORS, refit_raw_view

    config, model, data, b1, labels = target_features(run_dir)
    if labels is None:
        raise SystemExit(f"{run_dir}: needs a task whose eval clips are its train clips")
    k, w = model.num_clusters, config.decisions.refit_feature_weight
    feat = knn_affinity(b1)  # sparse (N, N): the B1 graph, built once
    raw = knn_affinity(refit_raw_view(data, config))  # sparse (N, N): the run's refit raw graph
    dtw = raw_pose_view(data.target_train_specific.data, "dtw")  # sparse (N, N)

    def part(graphs, weights, seed):
        return spectral_labels(graphs, k, seed=seed, weights=weights)

    switch_weights = [w * factor for factor in CONSENSUS_WEIGHT_FACTORS]  # the switch's joined graphs
    by_weight = {v: [part([feat, raw], [v, 1.0], s) for s in range(seeds)]
                 for v in sorted({0.25, 0.5, 0.75, 1.0, w, *switch_weights})}
    recipe = by_weight[w]
    raw_alone = [part([raw], [1.0], s) for s in range(seeds)]
    feat_alone = [part([feat], [1.0], s) for s in range(seeds)]
    dtw_alone = [part([dtw], [1.0], s) for s in range(seeds)]
    dtw_half = [part([feat, dtw], [0.5, 1.0], s) for s in range(seeds)]
    members = {
        "recipe (one partition, mean over seeds)": None,
        "consensus: seeds": recipe,
        "consensus: weights ¼ ½ ¾ 1": sum((by_weight[v] for v in (0.25, 0.75, 1.0, 0.5)), []),
        "consensus: views raw, feat, ¼ ½ 1": raw_alone + feat_alone
        + sum((by_weight[v] for v in switch_weights), []),
        "consensus: graphs dtw, dtwv, each + ½ B1": raw_alone + dtw_alone + recipe + dtw_half,
        "consensus: dtwv + ½ B1, dtw + ½ B1": recipe + dtw_half,
    }
    table: dict[str, list[float]] = {}
    for name, parts in members.items():
        if parts is None:
            scores = [cluster_metrics(labels, p) for p in recipe]
        else:
            scores = [cluster_metrics(labels, consensus_labels(parts, k, s)) for s in range(2)]
        table[name] = [float(np.mean([r[m] for r in scores])) for m in ("acc", "nmi", "ari")]
        print(f"{run_dir.parent.name}/{run_dir.name}  {name:45s} "
              + " / ".join(f"{v:.1f}" for v in table[name]), flush=True)
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="a JSON file of every run's table")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    tables = {}
    for run_dir in args.run_dirs:
        tables[str(run_dir)] = run(run_dir, args.seeds)
        if args.out:
            args.out.write_text(json.dumps(tables, indent=1) + "\n", encoding="utf-8")
    names = next(iter(tables.values())).keys()
    print("\nmean over runs")
    for name in names:
        values = np.mean([t[name] for t in tables.values()], axis=0)
        print(f"  {name:45s} " + " / ".join(f"{v:.1f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
