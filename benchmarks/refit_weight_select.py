"""Can the refit graph's feature weight be chosen without labels? (a diagnostic)

    python benchmarks/refit_weight_select.py RUN_DIR [RUN_DIR ...] [--weights 0 0.25 0.5 1]
                                             [--out DIR]

For each finished run: the B1 student features of the target train clips and the raw poses'
refit view (docs/METHOD.md §15.14: ``training.refit.refit_raw_view`` under the run's config),
then, for each feature weight w, the refit partition P_w (``training.refit.refit_partition``, the
function training calls) and label-free scores of it:

- ``agree``: NMI(P_w, P_raw) + NMI(P_w, P_feat), where P_raw and P_feat are the spectral
  partitions of each graph alone: how much of both views the partition keeps;
- ``purity``: per view graph A, the share of A's edge weight inside P_w's clusters, divided by
  the share inside that view's own partition; the mean over the two views;
- ``gap``: the eigengap λ_{K+1} − λ_K of the normalised Laplacian of the combined graph;
- a weight below 0 stands for the feature graph alone;
- ``stable``: mean ARI between P_w and the partitions of 4 random 80 % subsamples of the clips
  (on the clips they share).

The oracle ACC / NMI / ARI of each P_w (×100, scored with the labels, which choose nothing) sit
beside them, so the table says which score, if any, picks the best weight on every task.
Writes ``DIR/refit-weight-select.{json,md}`` (the JSON after each run, so a long call keeps what
it has measured).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def target_features(run_dir: Path):
    """(config, model, data, unit B1 student features (N, 256) of the target train clips, their
    oracle labels (N,) or None) of a finished run; the labels are the target eval split's when its
    clips are the train clips (as in the internal tasks), else None. Shared by the refit
    diagnostics here and in ``refit_graph_combos.py``."""
    import torch
    import torch.nn.functional as F

    from training.config import task_dir
    from training.data import load_task_data
    from training.engine import embed_split
    from training.export import load_run

    config, _, model, _ = load_run(run_dir)
    data = load_task_data(task_dir(config), config)
    split, held_out = data.target_train_specific, data.target_eval_specific
    features = embed_split(model, "specific", split, config, torch.device("cpu"))[0]  # (N, 256)
    same_clips = len(held_out) == len(split) and np.array_equal(held_out.data, split.data)
    return (config, model, data, F.normalize(features, dim=1).numpy(),
            held_out.labels if same_clips else None)


def _intra(graph, labels: np.ndarray) -> float:
    coo = graph.tocoo()
    same = labels[coo.row] == labels[coo.col]
    return float(coo.data[same].sum() / coo.data.sum())


def _eigengap(graph, k: int) -> float:
    from scipy.sparse.csgraph import laplacian

    lap = laplacian(graph.tocsr().astype(np.float64), normed=True).toarray()
    values = np.linalg.eigvalsh(lap)
    return float(values[k] - values[k - 1])


def _spectral(graph, k: int, seed: int) -> np.ndarray:
    from training.clustering import spectral_labels

    return spectral_labels([graph], k, seed=seed)


def scores_for_run(run_dir: Path, weights: list[float]) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from training.clustering import knn_affinity
    from training.data import derive_seed
    from training.metrics import cluster_metrics
    from training.refit import refit_partition, refit_raw_view

    config, model, data, features, labels = target_features(run_dir)
    raw_view = refit_raw_view(data, config)
    k, seed = model.num_clusters, derive_seed(config.seed, 15) % 2**31
    feat_graph, raw_graph = knn_affinity(features), knn_affinity(raw_view)
    p_feat, p_raw = _spectral(feat_graph, k, seed), _spectral(raw_graph, k, seed)
    own = {"feat": _intra(feat_graph, p_feat), "raw": _intra(raw_graph, p_raw)}
    rng = np.random.default_rng(0)
    n = len(features)
    subsets = [np.sort(rng.choice(n, int(0.8 * n), replace=False)) for _ in range(4)]
    rows = []
    for w in weights:  # w < 0: the feature graph alone
        partition = p_feat if w < 0 else refit_partition(features, raw_view, k, seed,
                                                         feature_weight=w)
        combined = (feat_graph if w < 0 else w * feat_graph + raw_graph if w > 0
                    else raw_graph).tocsr()
        stable = [adjusted_rand_score(partition[subset],
                                      _spectral(combined[subset][:, subset], k, seed))
                  for subset in subsets]
        row = {"run": str(run_dir), "weight": w,
               "agree": float(normalized_mutual_info_score(partition, p_raw)
                              + normalized_mutual_info_score(partition, p_feat)),
               "purity": 0.5 * (_intra(feat_graph, partition) / own["feat"]
                                + _intra(raw_graph, partition) / own["raw"]),
               "gap": _eigengap(combined, k), "stable": float(np.mean(stable))}
        if labels is not None:
            row.update({m: v for m, v in cluster_metrics(labels, partition).items()
                        if m in ("acc", "nmi", "ari")})
        rows.append(row)
        print(f"{run_dir}  w {w:<5} agree {row['agree']:.3f} purity {row['purity']:.3f} "
              f"gap {row['gap']:.4f} stable {row['stable']:.3f}  oracle "
              f"{row.get('acc', float('nan')):.1f} / {row.get('nmi', float('nan')):.1f} / "
              f"{row.get('ari', float('nan')):.1f}", flush=True)
    return rows


SCORES = ("agree", "purity", "gap", "stable")


def markdown(rows: list[dict]) -> str:
    """The table of :func:`scores_for_run` rows; bold marks the weight each score would pick."""
    lines = ["| run | w | agree | purity | gap | stable | oracle ACC / NMI / ARI |",
             "|---|---|---|---|---|---|---|"]
    for run in dict.fromkeys(r["run"] for r in rows):
        group = [r for r in rows if r["run"] == run]
        picked = {s: max(group, key=lambda r: r[s])["weight"] for s in SCORES}
        for r in group:
            cells = [f"{r[s]:.4f}" if s == "gap" else f"{r[s]:.3f}" for s in SCORES]
            cells = [f"**{c}**" if picked[s] == r["weight"] else c for s, c in zip(SCORES, cells)]
            oracle = " / ".join(f"{r[m]:.1f}" for m in ("acc", "nmi", "ari")) if "acc" in r else "–"
            lines.append(f"| {run} | {r['weight']:g} | {' | '.join(cells)} | {oracle} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    parser.add_argument("--out", type=Path, help="folder of refit-weight-select.{json,md}")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    for run in args.run_dirs:
        rows += scores_for_run(run, args.weights)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "refit-weight-select.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown(rows))
    if args.out:
        (args.out / "refit-weight-select.md").write_text(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
