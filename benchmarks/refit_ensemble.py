"""Does the refit partition gain from the features of several trained seeds? (a diagnostic, oracle-scored)

    python benchmarks/refit_ensemble.py RUN_DIR RUN_DIR [RUN_DIR ...] [--seeds 3] [--out FILE]

The runs are trainings of one task that differ only in their seed. For each run alone this prints
the §15.14 refit partition (spectral clustering of w · A_B1 + A_raw, w = the run's
``decisions.refit_feature_weight``, A_raw its refit raw-pose graph; ``training.refit.refit_partition``,
the function training calls) and, for the whole group, the partition of the same graph with the
feature graph averaged over the runs' B1 features (each at w / n), oracle-scored with the target
labels (they choose nothing). If the averaged graph beats the runs alone, an ensemble of seeds
within the per-seed time budget is a lever worth building.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--seeds", type=int, default=3, help="spectral seeds per partition")
    parser.add_argument("--out", type=Path, help="a JSON file of the table")
    args = parser.parse_args(argv)
    import torch

    from training.clustering import spectral_labels
    from training.metrics import cluster_metrics
    from training.refit import refit_raw_view

    torch.set_num_threads(1)
    loaded = [target_features(run_dir) for run_dir in args.run_dirs]
    config, model, data, _, labels = loaded[0]
    if labels is None:
        raise SystemExit("needs a task whose eval clips are its train clips")
    raw = refit_raw_view(data, config)  # the refit's raw view: a sparse (N, N) graph or rows
    weight, k = config.decisions.refit_feature_weight, model.num_clusters

    def scored(views, weights):
        scores = [cluster_metrics(labels, spectral_labels(views, k, seed=s, weights=weights))
                  for s in range(args.seeds)]
        return [float(np.mean([r[m] for r in scores])) for m in ("acc", "nmi", "ari")]

    table = {}
    for run_dir, (_, _, _, features, _) in zip(args.run_dirs, loaded):
        table[f"alone: {run_dir}"] = scored([features, raw], [weight, 1.0])
    features = [f for _, _, _, f, _ in loaded]
    n = len(features)
    table["alone: mean"] = list(np.mean(list(table.values()), axis=0))
    table[f"averaged graph of {n} runs (each w/{n})"] = scored([*features, raw], [weight / n] * n + [1.0])
    table[f"averaged graph of {n} runs (each w)"] = scored([*features, raw], [weight] * n + [1.0])
    table[f"averaged graph of {n} runs, features alone"] = scored(features, [1.0] * n)
    for name, values in table.items():
        print(f"{name:60s} " + " / ".join(f"{v:.1f}" for v in values), flush=True)
    if args.out:
        args.out.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
