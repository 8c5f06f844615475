"""Reproduce the component table (METHOD §12 Table 2) on NW-UCLA → MSR Action3D on a 2-core CPU.

    python benchmarks/ucla2msr.py [--seeds 0 1 2] [--jobs 2] [--set KEY=VALUE ...] [--smoke]

Rows, each as mean ± std over the seeds (the raw-pose row over 10 k-means seeds):

- k-means on the preprocessed raw poses (target eval split, B1 layout), spherical, K = 20;
- BM-B0 †, BM-B1 †: spherical k-means on each branch's features after stage 1;
- BM+OCM (B0, B1) and full CoDT = BM+OCM+CCM (B0, B1): each branch's cluster head after stage 2.

Each seed's stage-1 run is shared by its two stage-2 variants (``training.run --init-from
stage1.pt``). Runs are separate ``python -m training.run`` processes with one thread each, ``--jobs``
at a time (two single-threaded processes use both cores and suffer far less from other load than
one two-threaded process). The schedule is the ``ucla2msr-cpu`` preset (benchmarks/README.md).
Writes ``benchmarks/results/ucla2msr.json`` (every per-seed number, timings, machine) and
``ucla2msr.md`` (the table). Run folders go to ``runs/benchmark-ucla2msr-<time>/``.
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

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET = "ucla2msr-cpu"
VARIANTS = {"bm+ocm": "BM+OCM", "bm+ocm+ccm": "CoDT (BM+OCM+CCM)"}
SMOKE = ["data.source_limit=64", "data.target_train_limit=64", "data.target_eval_limit=64",
         "optim.epochs_stage1=1", "optim.epochs_stage2=1", "optim.batch_source=16",
         "optim.batch_target=16", "eval.kmeans_seeds=2"]


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


def _command(job: Job, preset: str, extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "training.run", "--task", preset, "--run-dir", str(job.run_dir),
               "--no-export", "-q"]
    for item in ["runtime.threads=1", *extra, *job.sets]:
        command += ["--set", item]
    if job.init_from is not None:
        command += ["--init-from", str(job.init_from)]
    return command


def make_jobs(seeds: list[int], root: Path) -> list[Job]:
    """Stage-1 runs first (each unblocks two stage-2 runs), then the stage-2 variants."""
    stage1 = [Job(f"seed{seed}/stage1", root / f"seed{seed}" / "stage1",
                  [f"seed={seed}", "optim.epochs_stage2=0"]) for seed in seeds]
    stage2 = [Job(f"seed{seed}/{variant}", root / f"seed{seed}" / variant,
                  [f"seed={seed}", f"ablation.components={variant}"], after=f"seed{seed}/stage1",
                  init_from=root / f"seed{seed}" / "stage1" / "checkpoints" / "stage1.pt")
              for seed in seeds for variant in VARIANTS]
    return stage1 + stage2


def run_jobs(jobs: list[Job], preset: str, extra: list[str], parallel: int) -> None:
    """Run jobs as subprocesses, at most ``parallel`` at once, stage-1 runs first."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending, running = list(jobs), []
    done: dict[str, Job] = {}
    while pending or running:
        for job in list(running):
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
            if job.after is not None and done[job.after].returncode != 0:
                job.returncode = -1
                done[job.name] = job
                print(f"{job.name}: skipped ({job.after} failed)", flush=True)
                continue
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
            job.log = job.run_dir.parent / f"{job.run_dir.name}.log"
            job.started = time.time()
            with open(job.log, "w") as log:
                job.process = subprocess.Popen(_command(job, preset, extra), cwd=REPO_ROOT, env=env,
                                               stdout=log, stderr=subprocess.STDOUT)
            running.append(job)
            print(f"[{time.strftime('%H:%M:%S')}] started {job.name}", flush=True)
        time.sleep(2)


def raw_pose_kmeans(task_dir: Path, k: int, seeds: int) -> dict[str, float]:
    """Spherical k-means on the flattened preprocessed target eval poses (B1 layout)."""
    from training.datasets import load_split, load_task
    from training.metrics import kmeans_metrics

    task = load_task(task_dir)
    split = load_split(task_dir, "target_eval", task.specific)
    features = np.asarray(split.data, dtype=np.float32).reshape(len(split), -1)  # (N, C·T·V·M)
    return kmeans_metrics(features, split.labels, k, seeds=seeds)


def _run_record(job: Job) -> dict:
    record = {"returncode": job.returncode, "wall_s": round(job.wall_s, 1),
              "run_dir": os.path.relpath(job.run_dir, REPO_ROOT)}
    summary = job.run_dir / "summary.json"
    if job.returncode == 0 and summary.is_file():
        record["metrics"] = json.loads(summary.read_text())
        lines = [json.loads(x) for x in (job.run_dir / "metrics.jsonl").read_text().splitlines()]
        record["epochs"] = len(lines)
        record["step_s"] = float(np.median([x["step_s"] for x in lines]))
        record["target_samples_per_s"] = float(np.median([x["target_samples_per_s"] for x in lines]))
        record["epoch_s"] = float(np.median([x["time_s"] for x in lines]))
        phases = sorted({k for x in lines for k in x if k.startswith("time/")})
        record["phase_s_per_epoch"] = {k[5:]: float(np.mean([x.get(k, 0.0) for x in lines])) for k in phases}
    return record


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def table_rows(results: dict, seeds: list[int]) -> list[dict]:
    """Rows of the issue's table; each metric as (mean, std) over the seeds that finished."""
    specs = [("BM †", "B0", "stage1", "shared/kmeans"), ("BM †", "B1", "stage1", "specific/kmeans")]
    for variant, label in VARIANTS.items():
        specs += [(label, "B0", variant, "shared/head"), (label, "B1", variant, "specific/head")]
    for variant, label in VARIANTS.items():
        specs += [(f"{label} †", "B0", variant, "shared/kmeans"), (f"{label} †", "B1", variant, "specific/kmeans")]
    raw = results["raw_pose_kmeans"]
    rows = [{"method": "k-means on preprocessed raw poses", "branch": "–", "n": results["raw_kmeans_seeds"],
             **{m: (raw[m], raw[f"{m}_std"]) for m in ("acc", "nmi", "ari")}}]
    for method, branch, run, prefix in specs:
        per_seed = [results["runs"][f"seed{s}/{run}"].get("metrics") for s in seeds]
        per_seed = [m for m in per_seed if m and f"{prefix}/acc" in m]
        if not per_seed:
            continue
        rows.append({"method": method, "branch": branch, "n": len(per_seed),
                     **{m: _mean_std([x[f"{prefix}/{m}"] for x in per_seed]) for m in ("acc", "nmi", "ari")}})
    return rows


def markdown(results: dict, rows: list[dict]) -> str:
    cfg = results["schedule"]
    lines = [f"# NW-UCLA → MSR Action3D (ucla2msr) on {results['machine']['cpus']} CPU cores", "",
             f"Schedule (`{PRESET}` preset{' + overrides' if results['overrides'] else ''}): stage 1 "
             f"{cfg['epochs_stage1']} epochs at lr {cfg['lr_stage1']}, stage 2 {cfg['epochs_stage2']} epochs "
             f"at lr {cfg['lr_stage2']}, batch {cfg['batch_source']} source + {cfg['batch_target']} target, "
             f"bf16 autocast {cfg['amp']}; K = {results['num_clusters']}; seeds {results['seeds']}; "
             f"{results['jobs']} single-threaded runs at a time. Mean ± sample std over seeds "
             f"(raw poses: over {results['raw_kmeans_seeds']} k-means seeds). † = spherical k-means on "
             f"the branch's features; other rows use the branch's cluster head. ×100.", "",
             "| Method | Branch | ACC | NMI | ARI | runs |", "|---|---|---|---|---|---|"]
    for row in rows:
        cells = " | ".join(f"{row[m][0]:.1f} ± {row[m][1]:.1f}" for m in ("acc", "nmi", "ari"))
        lines.append(f"| {row['method']} | {row['branch']} | {cells} | {row['n']} |")
    t = results["timing"]
    lines += ["", f"Wall time {t['total_min']:.1f} min. Median step {t['median_step_s']:.2f} s "
                  f"({t['median_target_samples_per_s']:.1f} target samples/s per single-threaded run). "
                  f"Git {results['git_sha']}, torch {results['machine']['torch']}, "
                  f"{results['machine']['processor']}."]
    return "\n".join(lines) + "\n"


def _machine() -> dict:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return {"processor": model, "cpus": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "load_avg_start": list(os.getloadavg())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (see training.run)")
    parser.add_argument("--raw", type=Path, help="raw datasets (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--runs", type=Path, help="run folders (default: runs/benchmark-ucla2msr-<time>)")
    parser.add_argument("--smoke", action="store_true", help="64 samples, 1+1 epochs: checks the pipeline")
    args = parser.parse_args(argv)

    from training.checkpoint import git_sha
    from training.config import resolve_config
    from training.run import ensure_prepared

    overrides = (SMOKE if args.smoke else []) + args.overrides
    config = resolve_config(task=PRESET, overrides=overrides)
    task_dir = ensure_prepared(config, args.raw)
    root = args.runs or REPO_ROOT / "runs" / f"benchmark-ucla2msr-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.time()
    from training.datasets import load_task

    num_clusters = config.model.num_clusters or load_task(task_dir).num_clusters
    raw_seeds = config.eval.kmeans_seeds
    raw = raw_pose_kmeans(task_dir, num_clusters, raw_seeds)
    print(f"k-means on raw poses: ACC {raw['acc']:.1f} NMI {raw['nmi']:.1f} ARI {raw['ari']:.1f}", flush=True)
    jobs = make_jobs(args.seeds, root)
    run_jobs(jobs, PRESET, overrides, args.jobs)
    runs = {job.name: _run_record(job) for job in jobs}
    finished = [r for r in runs.values() if "step_s" in r]
    results = {
        "task": "ucla2msr", "preset": PRESET, "overrides": overrides, "seeds": args.seeds, "jobs": args.jobs,
        "schedule": {**config.optim.model_dump(), "amp": config.runtime.amp},
        "num_clusters": num_clusters, "raw_kmeans_seeds": raw_seeds, "raw_pose_kmeans": raw,
        "runs": runs, "git_sha": git_sha(), "machine": {**_machine(), "load_avg_end": list(os.getloadavg())},
        "timing": {"total_min": (time.time() - start) / 60,
                   "median_step_s": float(np.median([r["step_s"] for r in finished])) if finished else float("nan"),
                   "median_target_samples_per_s": float(np.median([r["target_samples_per_s"] for r in finished]))
                   if finished else float("nan")},
    }
    rows = table_rows(results, args.seeds)
    results["table"] = [{**r, **{m: {"mean": r[m][0], "std": r[m][1]} for m in ("acc", "nmi", "ari")}} for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "ucla2msr-smoke" if args.smoke else "ucla2msr"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results, rows))
    print(markdown(results, rows))
    failed = [name for name, r in runs.items() if r["returncode"] != 0]
    if failed:
        print(f"failed runs: {', '.join(failed)} (logs beside their run folders)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
