"""Does CoDT beat scikit-learn? Label-free baselines and CoDT runs on one task, in one run.

    python -m benchmarks.harness [--task ucla2msr] [--seeds 0 1 2] [--jobs 2]
                                  [--variant NAME=KEY=VALUE,KEY=VALUE ...] [--paper] [--smoke]
    python -m benchmarks.harness --task benchmarks/tasks/ucla2utk.yaml   # the second check

Rows, each as mean ± std over the seeds:

- the label-free baselines on the preprocessed raw target poses (B1 layout, flattened,
  L2-normalised; ``training.baselines``): spherical k-means, Ward, spectral clustering, and
  spectral clustering of the dynamic-time-warping 10-NN graph without and with velocities
  (docs/METHOD.md §15.2);
- ``recipe cpu``: the exported head (CoDT-B1's cluster head; always B1, chosen without labels),
  the B0 head, and † spherical k-means on the B1 features (a label-free alternative, not what is
  exported);
- each ``--variant``: the same runs with extra ``--set`` overrides (the ablations);
- ``--paper``: the paper's method (dropout 0.5, no ``labelfree`` step) on the same CPU schedule.

Runs are separate ``python -m training.run --recipe cpu`` processes with one thread each,
``--jobs`` at a time. Writes ``benchmarks/results/<task>.json`` (every per-seed number, timings,
machine) and ``<task>.md`` (the table). Run folders go to ``runs/benchmark-<task>-<time>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.metrics import METRICS  # ACC, NMI, ARI, many-to-one ACC

REPO_ROOT = Path(__file__).resolve().parents[1]


RECIPE = "cpu"
# The paper's method on the same schedule: every METHOD §15 switch back to the paper's value.
PAPER = ["model.dropout=0.5", "labelfree.anchors=false", "loss.anchor=0", "labelfree.refit=false",
         "labelfree.recalibrate_bn=false"]
SMOKE = ["data.source_limit=64", "data.target_train_limit=64", "data.target_eval_limit=64",
         "optim.epochs_stage1=1", "optim.epochs_stage2=1", "optim.batch_source=16",
         "optim.batch_target=16", "eval.kmeans_seeds=2"]
BASELINE_NAMES = {"kmeans": "spherical k-means on raw poses", "ward": "Ward on raw poses",
                  "spectral": "spectral (10-NN graph) on raw poses",
                  "spectral_dtw": "spectral (10-NN DTW graph) on raw poses",
                  "spectral_dtw_velocity": "spectral (10-NN DTW graph, poses + velocities) on raw poses"}
RUN_ROWS = (("exported head (CoDT-B1)", "specific/head"), ("B0 head (CoDT-B0)", "shared/head"),
            ("† k-means on B1 features", "specific/kmeans"))
TRAINING_FREE = "no training: spectral DTW + velocity on the train clips, 10-NN vote"
EXACT_DTW = "spectral (exact 10-NN DTW graph, poses + velocities) on raw poses"
EXPORTED_ROWS = (("train", "train clips: the model (head)"),
                 ("held-out", "held-out: codt-cluster (the held-out clips together, the default)"),
                 ("held-out vote", "held-out: codt-cluster --assign reference (clip by clip)"),
                 ("held-out head", "held-out: codt-cluster --assign head"))


@dataclass
class Job:
    name: str
    run_dir: Path
    sets: list[str]
    after: str | None = None  # a job that must finish first
    init_from: Path | None = None
    process: subprocess.Popen | None = None
    started: float = 0.0
    wall_s: float = 0.0
    returncode: int | None = None
    log: Path = field(default=Path())
    recipe: str | None = None
    variant: str = ""


def _command(job: Job, task: str, extra: list[str]) -> list[str]:
    # not --quiet: each run's log gets its epoch lines (losses, time, ETA; no progress bars off a
    # terminal), which is how a long benchmark is watched
    command = [sys.executable, "-m", "training.run", "--task", task, "--run-dir", str(job.run_dir)]
    if job.recipe:
        command += ["--recipe", job.recipe]
    for item in ["runtime.threads=1", *extra, *job.sets]:
        command += ["--set", item]
    if job.init_from is not None:
        command += ["--init-from", str(job.init_from)]
    return command


def run_jobs(jobs: list[Job], task: str, extra: list[str], parallel: int) -> None:
    """Run jobs as subprocesses, at most ``parallel`` at once, stage-1 runs first."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending = list(jobs)
    running: list[Job] = []
    done: dict[str, Job] = {}
    while pending or running:
        for job in list(running):
            assert job.process is not None  # set when the job started
            if job.process.poll() is not None:
                job.returncode, job.wall_s = job.process.returncode, time.time() - job.started
                running.remove(job)
                done[job.name] = job
                print(f"[{time.strftime('%H:%M:%S')}] {job.name}: exit {job.returncode} after "
                      f"{job.wall_s / 60:.1f} min", flush=True)
        for job in list(pending):
            if len(running) >= parallel:
                break
            if job.after is not None and job.after not in done:
                continue
            pending.remove(job)
            if _finished(job.run_dir):  # a rerun of the same --runs folder keeps finished runs
                job.returncode, job.wall_s = 0, _epochs_seconds(job.run_dir)
                done[job.name] = job
                print(f"{job.name}: already finished in {job.run_dir}", flush=True)
                continue
            if job.after is not None and done[job.after].returncode != 0:
                job.returncode = -1
                done[job.name] = job
                print(f"{job.name}: skipped ({job.after} failed)", flush=True)
                continue
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
            job.log = job.run_dir.parent / f"{job.run_dir.name}.log"
            job.started = time.time()
            with open(job.log, "w") as log:
                job.process = subprocess.Popen(_command(job, task, extra), cwd=REPO_ROOT, env=env,
                                               stdout=log, stderr=subprocess.STDOUT)
            running.append(job)
            print(f"[{time.strftime('%H:%M:%S')}] started {job.name}", flush=True)
        time.sleep(2)


def _epochs_seconds(run_dir: Path) -> float:
    """The training time a finished run logged (its epochs' ``time_s``)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return float(sum(json.loads(line).get("time_s", 0.0) for line in lines))


def _finished(run_dir: Path) -> bool:
    """Whether a run folder holds a finished, exported run."""
    return (run_dir / "summary.json").is_file() and any((run_dir / "exported").glob("*.onnx"))


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def machine_info() -> dict:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return {"processor": model, "cpus": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "load_avg_start": list(os.getloadavg())}


def make_jobs(seeds: list[int], root: Path, variants: dict[str, list[str]]) -> list[Job]:
    """One job per (variant, seed); every variant uses the CPU recipe plus its overrides."""
    return [Job(f"{variant}/seed{seed}", root / variant / f"seed{seed}", [f"seed={seed}", *sets],
                recipe=RECIPE, variant=variant)
            for variant, sets in variants.items() for seed in seeds]


def _run_record(job: Job) -> dict:
    record = {"returncode": job.returncode, "wall_s": round(job.wall_s, 1),
              "run_dir": os.path.relpath(job.run_dir, REPO_ROOT), "sets": job.sets}
    summary = job.run_dir / "summary.json"
    if job.returncode == 0 and summary.is_file():
        record["metrics"] = json.loads(summary.read_text())
        lines = [json.loads(x) for x in (job.run_dir / "metrics.jsonl").read_text().splitlines()]
        record["epochs"] = len(lines)
        record["step_s"] = float(np.median([x["step_s"] for x in lines]))
    return record


def _row(method: str, per_seed: list[dict[str, float]], minutes=None) -> dict:
    """A table row: mean ± std over ``per_seed`` metric dicts (×100)."""
    return {"method": method, "n": len(per_seed), "minutes": minutes,
            **{m: _mean_std([x[m] for x in per_seed]) for m in METRICS}}


def target_clips(task_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (poses, labels), "held-out": (poses, labels)}`` of a prepared task's target
    (B1 layout): the clips a model is fitted to, with their withheld labels (read here only to
    score), and the held-out clips; for a ``target_split: all`` task both are the same clips."""
    from training.preparation.prepared import load_split, load_task, withheld_labels

    task = load_task(task_dir)
    train = load_split(task_dir, "target_train", task.specific)
    held_out = load_split(task_dir, "target_eval", task.specific)
    return {"train": (np.asarray(train.data), withheld_labels(task_dir)),
            "held-out": (np.asarray(held_out.data), held_out.labels)}


def baseline_rows(clips: dict, k: int, seeds: int, coordinates: int | None = None) -> list[dict]:
    """The label-free baselines run on the train clips and on the held-out clips by themselves,
    and the training-free pipeline: spectral clustering of the train clips' DTW + velocity graph,
    then each held-out clip takes the vote of its 10 DTW-nearest train clips (the reference bank
    of ``codt_deploy.reference``, without any training); every raw-pose view of the clips' first
    ``coordinates`` channels, as the model's."""
    from codt_deploy.batch import kmeans, spectral_embedding
    from codt_deploy.reference import make_bank
    from training.baselines import raw_pose_baselines
    from training.labelfree.partition import spectral_labels
    from training.labelfree.views import raw_pose_graph
    from training.metrics import cluster_metrics

    rows = []
    for part, (poses, labels) in clips.items():
        known = labels >= 0
        if not known.any():
            continue
        result = raw_pose_baselines(poses[known], labels[known], k, seeds=seeds,
                                    coordinates=coordinates)
        for name, values in result.items():
            rows.append({"method": f"{part}: {BASELINE_NAMES[name]}",
                         "n": seeds if name != "ward" else 1, "minutes": None,
                         **{m: (values[m], values[f"{m}_std"]) for m in METRICS}})
        # the DTW graph with every pair's distance (no Euclidean candidate pruning): what
        # codt-cluster's batch step clusters, here without any model
        graph = raw_pose_graph(poses[known], "dtw_velocity", exact=True,
                               coordinates=coordinates).toarray()  # (N, N)
        spectral = spectral_embedding(graph, k)  # (N, K), the seeds differ in k-means only
        rows.append(_row(f"{part}: {EXACT_DTW}", [cluster_metrics(labels[known],
                                                                  kmeans(spectral, k, seed))
                                                  for seed in range(seeds)]))
    (train, train_labels), (held_out, held_out_labels) = clips["train"], clips["held-out"]
    graph = raw_pose_graph(train, "dtw_velocity", coordinates=coordinates)
    partitions = [spectral_labels(graph, k, seed=seed) for seed in range(seeds)]
    if (train_labels >= 0).any():
        rows.append(_row(f"train: {TRAINING_FREE}", [cluster_metrics(train_labels, p)
                                                    for p in partitions]))
    votes = [make_bank(train, p, k, coordinates).assign(held_out)[0] for p in partitions]
    rows.append(_row(f"held-out: {TRAINING_FREE}", [cluster_metrics(held_out_labels, v)
                                                   for v in votes]))
    return rows


def exported_scores(run_dir: Path, clips: dict) -> dict[str, dict[str, float]]:
    """The exported model of a run scored through ``codt_deploy`` as ``codt-cluster`` runs it
    (the prepared arrays are what its preprocessing gives for the same files): ``train`` = the
    head on the clips it was fitted to (what its reference bank carries), ``held-out`` = the
    default assignment of the held-out clips as one run (``ClusterModel.cluster``: the batch
    step), ``held-out vote`` = the reference bank's vote clip by clip, ``held-out head`` = the
    head alone; ``cost``: seconds per clip of each, one thread."""
    from codt_deploy.infer import ClusterModel
    from training.metrics import cluster_metrics

    onnx = next(iter(sorted((run_dir / "exported").glob("*.onnx"))))
    models = {"held-out head": ClusterModel(onnx, threads=1, assignment="head"),
              "held-out vote": ClusterModel(onnx, threads=1, assignment="reference"),
              "held-out": ClusterModel(onnx, threads=1)}
    (train, train_labels), (held_out, held_out_labels) = clips["train"], clips["held-out"]
    every = held_out if np.array_equal(train, held_out) else np.concatenate([train, held_out])
    scores, seconds = {}, {}  # every: (N, C, T, V, M) all target clips once (the cost goal's)
    for key, model in models.items():
        for part, poses in (("", held_out), ("all ", every)):
            started = time.perf_counter()
            clusters = model.cluster(poses).clusters
            seconds[part + key] = time.perf_counter() - started
            if not part:
                scores[key] = cluster_metrics(held_out_labels, clusters)
    head_s = max(seconds["held-out head"], 1e-9)
    all_head_s = max(seconds["all held-out head"], 1e-9)
    scores["cost"] = {"head_ms_per_clip": 1000 * head_s / len(held_out),
                      "reference_ms_per_clip": 1000 * seconds["held-out vote"] / len(held_out),
                      "batch_ms_per_clip": 1000 * seconds["held-out"] / len(held_out),
                      "ratio": seconds["held-out vote"] / head_s,
                      "batch_ratio": seconds["held-out"] / head_s,
                      "all_clips": len(every),
                      "all_ratio": seconds["all held-out vote"] / all_head_s,
                      "all_batch_ratio": seconds["all held-out"] / all_head_s}
    if (train_labels >= 0).any():
        scores["train"] = cluster_metrics(train_labels,
                                          models["held-out head"].predict(train).clusters)
    return scores


def run_rows(runs: dict, variants: dict[str, list[str]], seeds: list[int]) -> list[dict]:
    rows = []
    for variant in variants:
        records = [runs[f"{variant}/seed{s}"] for s in seeds]
        done = [r for r in records if r.get("metrics")]
        minutes = _mean_std([r["wall_s"] / 60 for r in done]) if done else None
        for key, label in EXPORTED_ROWS:
            per_seed = [r["exported"][key] for r in done if key in r.get("exported", {})]
            if per_seed:
                rows.append(_row(f"{variant}: {label}", per_seed, minutes))
        for label, prefix in RUN_ROWS:
            per_seed = [r["metrics"] for r in done if f"{prefix}/acc" in r["metrics"]]
            if not per_seed:
                continue
            rows.append({"method": f"{variant}: {label} (torch, eval split)", "n": len(per_seed),
                         "minutes": minutes,
                         **{m: _mean_std([x.get(f"{prefix}/{m}", float("nan")) for x in per_seed])
                            for m in METRICS}})
    return rows


def markdown(results: dict, rows: list[dict]) -> str:
    lines = [f"# {results['task']}: CoDT against label-free baselines ({results['machine']['cpus']} "
             f"CPU cores)", "",
             f"Target: {results['n_train']} train clips (the model is fitted to them, without "
             f"labels) and {results['n_eval']} held-out clips (the same clips when the task has no "
             f"held-out split), K = {results['num_clusters']}. "
             f"Seeds {results['seeds']}, {results['jobs']} single-threaded runs at a time, "
             f"`--recipe {RECIPE}`; variants: "
             + "; ".join(f"`{v}` = {' '.join(s) or '(the recipe)'}" for v, s in results["variants"].items())
             + ". Mean ± std over seeds (baselines: over clustering seeds). ×100. `train:` rows are "
               "scored on the train clips, `held-out:` rows on the held-out clips; baselines run on "
               "those clips by themselves. The `codt-cluster` rows are the exported model through "
               "`codt_deploy`; `(torch, eval split)` rows are training's own evaluation. No row uses "
               "a label to choose. Many-to-one ACC maps each cluster to its majority class (it "
               "rises with K).", "",
             "| Method | ACC | NMI | ARI | many-to-one ACC | min/seed | n |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = " | ".join(f"{row[m][0]:.1f} ± {row[m][1]:.1f}" for m in METRICS)
        minutes = f"{row['minutes'][0]:.1f}" if row["minutes"] else "–"
        lines.append(f"| {row['method']} | {cells} | {minutes} | {row['n']} |")
    costs = [r["exported"]["cost"] for r in results["runs"].values() if "cost" in r.get("exported", {})]
    if costs:
        lines += ["", "Per-clip cost of `codt-cluster`'s assignment on the held-out clips, one thread: "
                      f"head {np.mean([c['head_ms_per_clip'] for c in costs]):.1f} ms, reference bank "
                      f"{np.mean([c['reference_ms_per_clip'] for c in costs]):.1f} ms (network and "
                      f"vote), {np.mean([c['ratio'] for c in costs]):.2f}× the head alone"
                  + (f"; the default (vote, then the held-out clips clustered together) "
                     f"{np.mean([c['batch_ms_per_clip'] for c in costs]):.1f} ms, "
                     f"{np.mean([c['batch_ratio'] for c in costs]):.2f}×"
                     if all("batch_ratio" in c for c in costs) else "")
                  + (f". On all {costs[0]['all_clips']} target clips: the vote "
                     f"{np.mean([c['all_ratio'] for c in costs]):.2f}×, the default "
                     f"{np.mean([c['all_batch_ratio'] for c in costs]):.2f}× the head alone"
                     if all("all_ratio" in c for c in costs) else "") + "."]
    lines += ["", f"Wall time {results['total_min']:.1f} min. Git {results['git_sha']}, torch "
                  f"{results['machine']['torch']}, {results['machine']['processor']}."]
    return "\n".join(lines) + "\n"


def _variant(text: str) -> tuple[str, list[str]]:
    name, sep, sets = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=KEY=VALUE[,KEY=VALUE]")
    return name, [s for s in sets.split(",") if s]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="ucla2msr", help="a built-in task or a task file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--variant", type=_variant, action="append", default=[],
                        help="an extra row: NAME=KEY=VALUE,KEY=VALUE on top of the recipe")
    parser.add_argument("--paper", action="store_true",
                        help="also run the paper's method on the same CPU schedule")
    parser.add_argument("--no-recipe", action="store_true", help="only the --variant rows")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (see training.run)")
    parser.add_argument("--raw", type=Path, help="raw datasets (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--runs", type=Path, help="run folders (default: runs/benchmark-<task>-<time>)")
    parser.add_argument("--smoke", action="store_true", help="64 samples, 1+1 epochs: checks the pipeline")
    args = parser.parse_args(argv)

    from training.config import resolve_config
    from training.preparation.prepared import load_task
    from training.provenance import git_sha
    from training.run import ensure_prepared

    trained_at = git_sha() or "unknown"  # the code the runs train with (commits may land meanwhile)
    overrides = (SMOKE if args.smoke else []) + args.overrides
    config = resolve_config(task=args.task, overrides=overrides)
    task_dir = ensure_prepared(config, args.raw)
    task = load_task(task_dir)
    name = task.name
    root = args.runs or REPO_ROOT / "runs" / f"benchmark-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.time()
    num_clusters = config.model.clusters_for(task.num_clusters)
    clips = target_clips(task_dir)
    n_eval = len(clips["held-out"][0])
    baselines = baseline_rows(clips, num_clusters, 2 if args.smoke else 5,
                              task.preprocess[task.specific].coordinate_channels)
    for row in baselines:
        print(f"{row['method']}: ACC {row['acc'][0]:.1f} NMI {row['nmi'][0]:.1f} "
              f"ARI {row['ari'][0]:.1f}", flush=True)
    variants: dict[str, list[str]] = {} if args.no_recipe else {"recipe": []}
    variants.update(dict(args.variant))
    if args.paper:
        variants["paper"] = PAPER
    jobs = make_jobs(args.seeds, root, variants)
    run_jobs(jobs, args.task, overrides, args.jobs)
    runs = {job.name: _run_record(job) for job in jobs}
    for job in jobs:
        if runs[job.name].get("metrics") and _finished(job.run_dir):
            runs[job.name]["exported"] = exported_scores(job.run_dir, clips)
    rows = baselines + run_rows(runs, variants, args.seeds)
    results = {"task": name, "task_arg": args.task, "recipe": RECIPE, "overrides": overrides,
               "variants": variants, "seeds": args.seeds, "jobs": args.jobs,
               "num_clusters": num_clusters, "n_eval": n_eval, "n_train": len(clips["train"][0]),
               "runs": runs,
               "git_sha": trained_at, "total_min": (time.time() - start) / 60,
               "machine": {**machine_info(), "load_avg_end": list(os.getloadavg())},
               "table": [{**r, **{m: {"mean": r[m][0], "std": r[m][1]} for m in METRICS}}
                         for r in rows]}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{name}{'-heldout' if task.held_out else ''}{'-smoke' if args.smoke else ''}"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results, rows))
    print(markdown(results, rows))
    failed = [job for job, r in runs.items() if r["returncode"] != 0]
    if failed:
        print(f"failed runs: {', '.join(failed)} (logs beside their run folders)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
