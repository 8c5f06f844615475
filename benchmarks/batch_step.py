"""When does a run of new clips cluster better by its own graph than by the reference bank's vote?

    python -m benchmarks.batch_step --task benchmarks/tasks/ucla2msr-xsub.yaml --runs RUNS
    python -m benchmarks.batch_step --task benchmarks/tasks/ucla2utk-xsub.yaml --runs RUNS --per 2 4 8
    python -m benchmarks.batch_step --cost 1000 3000      # its CPU time and memory on random clips
    python -m benchmarks.batch_step --small-run-cost 300 1000 3000   # a small run's, by bank size

For each finished run under ``RUNS`` (``RUNS/<variant>/seed<s>/exported``, as the harness leaves
them) and each batch size of ``--per`` clips per cluster, ``--draws`` random sub-batches of the
task's held-out clips are assigned through ``codt_deploy``: the model's vote clip by clip
(``--assign reference``), the batch step's DTW graph alone (one spectral partition, no embedding,
no consensus), the batch step (:func:`codt_deploy.batch.batch_partition`, whatever the batch's
size) and the run clustered with the model's bank (:func:`codt_deploy.batch.bank_run_partition`,
what a run below :data:`codt_deploy.batch.MIN_CLIPS_PER_CLUSTER` clips per cluster gets, here
whatever its size); then once on all
held-out clips. It prints the mean ACC / NMI of each: the measurement behind the threshold, the
embedding's place in the batch step and the small runs' step (docs/METHOD.md §15.5). Labels are
read only to score. Writes ``benchmarks/results/<task>-batch-step.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
WAYS = ("vote", "DTW graph alone", "batch step", "with the bank")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", help="a task file with a held-out target split")
    parser.add_argument("--runs", type=Path, help="the harness's run folders")
    parser.add_argument("--cost", type=int, nargs="+", metavar="N",
                        help="instead: the batch step's CPU time and peak memory on N random clips "
                             "(T = 50, D = 120, a 256-d embedding, K = 20)")
    parser.add_argument("--small-run-cost", type=int, nargs="+", metavar="R",
                        help="instead: the CPU time of a small run (40 random clips) with a bank "
                             "of R random clips, the model's first run and each later one")
    parser.add_argument("--per", type=int, nargs="+", default=[2, 4, 6, 8, 10, 12],
                        help="batch sizes, in clips per cluster")
    parser.add_argument("--draws", type=int, default=6)
    parser.add_argument("--raw", type=Path, help="raw datasets (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.cost:
        return cost(args.cost)
    if args.small_run_cost:
        return small_run_cost(args.small_run_cost)
    if not (args.task and args.runs):
        parser.error("--task and --runs are needed (or --cost N ...)")

    from benchmarks.harness import target_clips
    from codt_deploy.batch import (
        bank_run_partition,
        batch_partition,
        knn_graph,
        pairwise_dtw,
        spectral_partition,
    )
    from codt_deploy.infer import ClusterModel
    from training.config import resolve_config
    from training.metrics import cluster_metrics
    from training.preparation.prepared import load_task
    from training.run import ensure_prepared

    task_dir = ensure_prepared(resolve_config(task=args.task), args.raw)
    name = load_task(task_dir).name
    poses, labels = target_clips(task_dir)["held-out"]
    models = sorted(args.runs.glob("*/seed*/exported/*.onnx"))
    if not models:
        print(f"no exported runs under {args.runs}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    rows = []
    for onnx in models:
        model = ClusterModel(onnx, threads=1, assignment="auto")
        step = model.batch_step
        if step is None:
            print(f"{onnx}: no reference bank, left out", file=sys.stderr)
            continue
        k = model.num_clusters
        voted = model.predict(poses)  # each clip's vote, independent of the batch
        vote = voted.clusters  # (N,)
        frames = step.frames(poses)  # (N, T, D) as codt-cluster's journal keeps them
        embedding = step.embedding(voted.embedding)  # (N, E)
        sizes = [(f"{per} per cluster", per * k) for per in args.per if per * k < len(poses)]
        for label, size in [*sizes, ("all held-out clips", len(poses))]:
            draws = 1 if size == len(poses) else args.draws
            scores: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
            for _ in range(draws):
                rows_drawn = np.sort(rng.choice(len(poses), size, replace=False))  # (size,)
                together, _ = batch_partition(frames[rows_drawn], embedding[rows_drawn],
                                              vote[rows_drawn], k)
                alone = spectral_partition(knn_graph(pairwise_dtw(frames[rows_drawn])), k)
                scores["vote"].append(cluster_metrics(labels[rows_drawn], vote[rows_drawn]))
                scores["DTW graph alone"].append(cluster_metrics(labels[rows_drawn], alone))
                scores["batch step"].append(cluster_metrics(labels[rows_drawn], together))
                if model.bank is not None:  # what a run below the threshold gets
                    joined, _ = bank_run_partition(model.bank, frames[rows_drawn])
                    scores["with the bank"].append(cluster_metrics(labels[rows_drawn], joined))
            run = str(onnx.parents[1].relative_to(args.runs))
            row = {"run": run, "batch": label, "clips": size, "draws": draws,
                   **{f"{way} {m}": float(np.mean([s[m] for s in per_draw])) if per_draw
                      else float("nan") for way, per_draw in scores.items() for m in ("acc", "nmi")}}
            rows.append(row)
            print(f"{run} {label} ({size} clips): " + " | ".join(
                f"{way} ACC {row[f'{way} acc']:.1f} NMI {row[f'{way} nmi']:.1f}" for way in scores),
                flush=True)
    lines = [f"# {name}: the reference bank's vote, the batch step and the run with the bank, "
             "by batch size", "",
             f"Random sub-batches of the {len(poses)} held-out clips ({args.draws} draws each; "
             "ACC / NMI ×100 of the draws' mean; ACC on a sub-batch is not comparable across "
             "sizes, only across the ways).", "",
             "| run | batch | clips | vote ACC / NMI | DTW graph alone | batch step | with the bank |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['batch']} | {r['clips']} | " + " | ".join(
        f"{r[f'{way} acc']:.1f} / {r[f'{way} nmi']:.1f}" for way in WAYS) + " |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}-batch-step.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{name}-batch-step.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def cost(sizes: list[int]) -> int:
    """Print the batch step's CPU seconds and the process's peak memory for each size (increasing
    sizes: the peak is the largest so far)."""
    import resource

    from codt_deploy.batch import batch_partition

    rng = np.random.default_rng(0)
    for n in sorted(sizes):
        frames = rng.normal(size=(n, 50, 120)).astype(np.float32)  # (N, T, D)
        embedding = rng.normal(size=(n, 256)).astype(np.float32)  # (N, E)
        started = time.process_time()
        batch_partition(frames, embedding, rng.integers(0, 20, n), 20)
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB on Linux
        print(f"{n} clips: {time.process_time() - started:.1f} s of CPU, peak memory {peak_gb:.2f} GB",
              flush=True)
    return 0


def small_run_cost(bank_sizes: list[int], run: int = 40) -> int:
    """Print the CPU seconds of a small run of ``run`` clips clustered with a bank of each size:
    the first run of a model (the bank's own nearest neighbours computed, R² / 2 DTW pairs, as
    every run cost before the table was kept) and each later one (the table kept by the model's
    :class:`codt_deploy.batch.BatchStep`), and their ratio, measured in the same run."""
    from codt_deploy.batch import bank_neighbours, bank_run_partition
    from codt_deploy.reference import ReferenceBank

    rng = np.random.default_rng(0)
    for r in sorted(bank_sizes):
        bank = ReferenceBank(rng.normal(size=(r, 50, 120)).astype(np.float32),  # (R, T, D)
                             rng.integers(0, 20, r), 20)
        frames = rng.normal(size=(run, 50, 120)).astype(np.float32)  # (N, T, D)
        started = time.process_time()
        table = bank_neighbours(bank)
        bank_run_partition(bank, frames, table)
        first = time.process_time() - started
        started = time.process_time()
        bank_run_partition(bank, frames, table)
        later = time.process_time() - started
        print(f"a bank of {r} clips, a run of {run}: the first run {first:.2f} s of CPU, each later "
              f"run {later:.2f} s ({first / later:.1f}x faster)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
