"""Which label-free partition of a trained run's features is best? (a diagnostic, oracle-scored)

    python benchmarks/feature_partitions.py RUN_DIR [--checkpoint stage1|final] [--seeds 3]

Loads a run's checkpoint (after the run's own BatchNorm recalibration), embeds the target eval
clips with both students and scores, with the eval labels (reporting only: nothing here chooses
anything for training or export), the partitions a label-free final step could use:
k-means / Ward / spectral on the B1 features, on the B0 features, spectral on the sum of the
feature and raw-pose kNN graphs, and the raw-pose baselines of the same run. It also prints the
10-NN label purity of each space (the share of a clip's neighbours with its label), the figure
that says whether a kNN graph is worth building on that space.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.baselines import flattened_poses  # noqa: E402
from training.clustering import spectral_labels, spherical_kmeans  # noqa: E402
from training.config import from_dict, task_dir, to_dict  # noqa: E402
from training.data import load_task_data  # noqa: E402
from training.engine import embed_split  # noqa: E402
from training.export import load_run  # noqa: E402
from training.metrics import cluster_metrics  # noqa: E402
from training.refit import refit_heads  # noqa: E402


def knn_purity(rows: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Share of each row's k nearest neighbours (cosine, self excluded) that share its label."""
    x = torch.from_numpy(np.asarray(rows, dtype=np.float32))
    x = F.normalize(x, dim=1)
    sim = x @ x.T  # (N, N)
    sim.fill_diagonal_(-2.0)
    idx = sim.topk(k, dim=1).indices.numpy()  # (N, k)
    return float((labels[idx] == labels[:, None]).mean() * 100)


def _mean(runs: list[dict[str, float]]) -> str:
    return " / ".join(f"{np.mean([r[m] for r in runs]):.1f}" for m in ("acc", "nmi", "ari"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", default="final", choices=("stage1", "final", "last"))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    from sklearn.cluster import AgglomerativeClustering

    torch.set_num_threads(1)
    config, _, model, _ = load_run(args.run_dir, f"{args.checkpoint}.pt")
    trained = {name: value.clone() for name, value in model.state_dict().items()}
    data = load_task_data(task_dir(config), config)
    device = torch.device("cpu")
    labels = data.target_eval_specific.labels
    k = data.num_clusters
    raw = flattened_poses(data.target_eval_specific.data)  # (N, C·T·V·M)
    embedded = {b: embed_split(model, b, getattr(data, f"target_eval_{b}"), config, device)
                for b in ("shared", "specific")}  # (features (N, 256), logits (N, K)) per branch
    feats = {b: F.normalize(features, dim=1).numpy() for b, (features, _) in embedded.items()}
    rows: list[tuple[str, str]] = []
    for name, space in (("raw", raw), ("B1", feats["specific"]), ("B0", feats["shared"])):
        rows.append((f"10-NN purity {name}", f"{knn_purity(space, labels):.1f}"))
    for name, space in (("raw", raw), ("B1", feats["specific"]), ("B0", feats["shared"])):
        km = [cluster_metrics(labels, spherical_kmeans(torch.from_numpy(space).float(), k,
                                                       generator=s)[1].numpy()) for s in range(args.seeds)]
        ward = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(space)
        sp = [cluster_metrics(labels, spectral_labels(space, k, seed=s)) for s in range(args.seeds)]
        rows += [(f"k-means {name}", _mean(km)), (f"Ward {name}", _mean([cluster_metrics(labels, ward)])),
                 (f"spectral {name}", _mean(sp))]
    for name, views in (("B1 + raw", [feats["specific"], raw]),
                        ("B0 + B1 + raw", [feats["shared"], feats["specific"], raw]),
                        ("B0 + B1", [feats["shared"], feats["specific"]])):
        sp = [cluster_metrics(labels, spectral_labels(views, k, seed=s)) for s in range(args.seeds)]
        rows.append((f"spectral {name}", _mean(sp)))
    head = embedded["specific"][1].argmax(1).numpy()
    rows.append(("B1 head", _mean([cluster_metrics(labels, head)])))
    train_rows = flattened_poses(data.target_train_specific.data)  # (N_train, C·T·V·M)
    values = to_dict(config)
    for raw_graph in (True, False):  # §15.10 as training.run applies it after the last epoch
        refit_config = from_dict({**values, "decisions": {
            **values["decisions"], "refit_heads": True, "refit_raw_graph": raw_graph}})
        model.load_state_dict(trained)  # each refit starts from the trained heads
        record = refit_heads(model, data, refit_config, device, train_rows)
        for branch, name in (("specific", "B1"), ("shared", "B0")):
            pred = embed_split(model, branch, getattr(data, f"target_eval_{branch}"), config,
                               device)[1].argmax(1).numpy()
            rows.append((f"refit {name} head{' (+raw)' if raw_graph else ''}",
                         f"{_mean([cluster_metrics(labels, pred)])}  agreement "
                         f"{record[f'refit/{branch}/agreement']:.3f}"))
    print(f"# {args.run_dir} ({args.checkpoint}), N = {len(labels)}, K = {k} (oracle-scored)")
    for name, value in rows:
        print(f"{name:28s} {value}")
    out = args.run_dir / f"partitions-{args.checkpoint}.json"
    out.write_text(json.dumps(dict(rows), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
