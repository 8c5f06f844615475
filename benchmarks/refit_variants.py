"""Which label-free refit partition (docs/METHOD.md §15.10) is best? (a diagnostic, oracle-scored)

    python benchmarks/refit_variants.py RUN_DIR [RUN_DIR ...] [--seeds 3]

For each run (a task whose target train and eval splits are the same clips, as in ``ucla2msr`` and
``ucla2utk``), embeds the target clips with the final checkpoint's B1 student and teacher (and the
stage-1 checkpoint's B1 student) and scores, with the eval labels, candidate partitions the refit
could fit the heads to: the recipe's (spectral on the 10-NN graphs of B1 + raw poses) and
variations of its graph (neighbour count, teacher features, stage-1 features, graph weights, a
B0 at half weight, the raw poses' DTW graph of docs/METHOD.md §15.11 in place of or beside their
Euclidean one). Reporting only: the labels choose nothing here, and a variant is adopted only if
it wins on both internal tasks for every run measured. Prints one table per run and the mean over
runs; writes ``refit-variants.json`` into each run folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.baselines import flattened_poses, raw_pose_view  # noqa: E402
from training.clustering import spectral_labels  # noqa: E402
from training.config import task_dir  # noqa: E402
from training.data import load_task_data  # noqa: E402
from training.engine import embed_split  # noqa: E402
from training.export import load_run  # noqa: E402
from training.metrics import cluster_metrics  # noqa: E402


def partition(views: list[tuple[np.ndarray, float]], k: int, seed: int, neighbours: int = 10
              ) -> np.ndarray:
    """Spectral labels (N,) of the weighted sum of the views' kNN graphs (rows (N, D), weight)."""
    return spectral_labels([rows for rows, _ in views], k, seed=seed, n_neighbors=neighbours,
                           weights=[w for _, w in views])


def unit(x: torch.Tensor) -> np.ndarray:
    return F.normalize(x.float(), dim=1).numpy()


def run_variants(run_dir: Path, seeds: int, only: list[str] | None = None) -> dict[str, list[float]]:
    torch.set_num_threads(1)
    config, _, model, _ = load_run(run_dir)
    data = load_task_data(task_dir(config), config)
    split = data.target_eval_specific
    if not np.array_equal(split.data, data.target_train_specific.data):
        raise SystemExit(f"{run_dir}: target train and eval differ; this diagnostic needs them equal")
    labels, k = split.labels, data.num_clusters
    device = torch.device("cpu")
    raw = flattened_poses(split.data)  # (N, C·T·V·M)
    dtw = raw_pose_view(split.data, "dtw")  # sparse (N, N) DTW 10-NN graph (§15.11)
    dtwv = raw_pose_view(split.data, "dtw_velocity")  # the same with velocities (§15.12)
    b1 = unit(embed_split(model, "specific", split, config, device)[0])  # (N, 256)
    b0 = unit(embed_split(model, "shared", data.target_eval_shared, config, device)[0])
    teacher = model.teachers()["specific"]
    with torch.no_grad():
        t1 = unit(torch.cat([teacher.embed(split.take(np.arange(i, min(i + 64, len(split)))))
                             for i in range(0, len(split), 64)]))  # (N, 256)
    _, _, stage1_model, _ = load_run(run_dir, "stage1.pt")
    s1 = unit(embed_split(stage1_model, "specific", split, config, device)[0])
    variants: dict[str, Callable[[int], np.ndarray]] = {
        "raw only (baseline)": lambda s: partition([(raw, 1)], k, s),
        "B1 + raw (recipe)": lambda s: partition([(b1, 1), (raw, 1)], k, s),
        "B1 + raw, 15-NN": lambda s: partition([(b1, 1), (raw, 1)], k, s, 15),
        "B1 + raw, 5-NN": lambda s: partition([(b1, 1), (raw, 1)], k, s, 5),
        "teacher B1 + raw": lambda s: partition([(t1, 1), (raw, 1)], k, s),
        "B1 + teacher B1 + raw": lambda s: partition([(b1, 0.5), (t1, 0.5), (raw, 1)], k, s),
        "stage-1 B1 + B1 + raw": lambda s: partition([(s1, 0.5), (b1, 0.5), (raw, 1)], k, s),
        "B1 + raw ×2": lambda s: partition([(b1, 1), (raw, 2)], k, s),
        "B0 ×0.5 + B1 + raw": lambda s: partition([(b0, 0.5), (b1, 1), (raw, 1)], k, s),
        "stage-1 B1 + raw": lambda s: partition([(s1, 1), (raw, 1)], k, s),
        "stage-1 B1 + teacher B1 + raw": lambda s: partition([(s1, 0.5), (t1, 0.5), (raw, 1)], k, s),
        "stage-1 B1 + B1 + raw, 15-NN": lambda s: partition([(s1, 0.5), (b1, 0.5), (raw, 1)], k, s, 15),
        "stage-1 B1 + B1 + raw ×2": lambda s: partition([(s1, 0.5), (b1, 0.5), (raw, 2)], k, s),
        "DTW raw only (baseline)": lambda s: partition([(dtw, 1)], k, s),
        "B1 + DTW raw": lambda s: partition([(b1, 1), (dtw, 1)], k, s),
        "B1 + raw + DTW raw": lambda s: partition([(b1, 1), (raw, 0.5), (dtw, 0.5)], k, s),
        "stage-1 B1 + B1 + DTW raw": lambda s: partition([(s1, 0.5), (b1, 0.5), (dtw, 1)], k, s),
        "stage-1 B1 + DTW raw": lambda s: partition([(s1, 1), (dtw, 1)], k, s),
        "DTW+velocity raw only (baseline)": lambda s: partition([(dtwv, 1)], k, s),
        "B1 + DTW+velocity raw": lambda s: partition([(b1, 1), (dtwv, 1)], k, s),
        "B1 ×0.5 + DTW+velocity raw": lambda s: partition([(b1, 0.5), (dtwv, 1)], k, s),
        "stage-1 B1 + B1 + DTW+velocity raw": lambda s: partition([(s1, 0.5), (b1, 0.5), (dtwv, 1)], k, s),
        "stage-1 B1 + DTW+velocity raw": lambda s: partition([(s1, 1), (dtwv, 1)], k, s),
        "DTW + DTW+velocity raw (both graphs)": lambda s: partition([(dtw, 0.5), (dtwv, 0.5)], k, s),
        "B1 + DTW + DTW+velocity raw": lambda s: partition([(b1, 1), (dtw, 0.5), (dtwv, 0.5)], k, s),
        "B1 ×0.5 + DTW + DTW+velocity raw": lambda s: partition([(b1, 0.5), (dtw, 0.5), (dtwv, 0.5)],
                                                                k, s),
        "B1 ×0.5 + DTW+velocity raw, 15-NN": lambda s: partition([(b1, 0.5), (dtwv, 1)], k, s, 15),
    }
    variants = {name: f for name, f in variants.items() if not only or any(o in name for o in only)}
    table: dict[str, list[float]] = {}
    for name, cluster in variants.items():
        scores = [cluster_metrics(labels, cluster(s)) for s in range(seeds)]
        table[name] = [float(np.mean([r[m] for r in scores])) for m in ("acc", "nmi", "ari")]
        print(f"{run_dir.name:>8s}  {name:30s} " + " / ".join(f"{v:.1f}" for v in table[name]),
              flush=True)
    name = "refit-variants.json" if not only else "refit-variants-some.json"
    (run_dir / name).write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--seeds", type=int, default=3, help="spectral seeds per variant")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="only the variants whose name contains TEXT (repeatable)")
    args = parser.parse_args(argv)
    tables = [run_variants(run_dir, args.seeds, args.only) for run_dir in args.run_dirs]
    print(f"# mean over {len(tables)} run(s), ACC / NMI / ARI (oracle-scored)")
    for name in tables[0]:
        mean = np.mean([t[name] for t in tables], axis=0)
        print(f"{name:30s} " + " / ".join(f"{v:.1f}" for v in mean))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
