"""Does the raw-pose distance need to ignore which body a file lists first? A constructed check.

    python -m benchmarks.body_order                                   # MSR Action3D cross-subject
    python -m benchmarks.body_order --task benchmarks/tasks/ucla2utk-xsub.yaml

None of the local datasets holds enough two-person clips to measure this on real interactions, so
the check builds them from a task's real single-person target clips (train and held-out together).
The classes are split in two halves: each clip of a class c of the first half is the *actor* of a
two-person clip of class c, and a random clip of class c + K/2 its *partner* (a reaction of its
own kind). The two bodies are stored in a random order per clip, as a dataset does whose files
list the subjects rather than the roles. Spectral clustering of the exact DTW + velocity 10-NN
graph (the batch step's graph; 5 k-means seeds of one spectral embedding) is scored with one body
order (the file's) and with the least distance over both orders (``persons=2``, what every
raw-pose graph now uses), beside the same clips with the actor always first and the actors alone.
It also prints the cost of the all-pairs DTW with both orders against one. Labels are read only
to score. Writes ``benchmarks/results/body-order.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SEEDS = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default=str(REPO_ROOT / "benchmarks" / "tasks" / "ucla2msr-xsub.yaml"))
    parser.add_argument("--raw", type=Path, help="raw datasets (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    from benchmarks.harness import machine_info, target_clips
    from codt_deploy.batch import kmeans, knn_graph, pairwise_dtw, spectral_embedding
    from codt_deploy.reference import VELOCITY_WEIGHT, pose_frames
    from training.config import resolve_config
    from training.metrics import cluster_metrics
    from training.preparation.prepared import load_task
    from training.run import ensure_prepared

    task_dir = ensure_prepared(resolve_config(task=args.task), args.raw)
    name = load_task(task_dir).name
    clips = target_clips(task_dir)
    every_pose = np.concatenate([clips["train"][0], clips["held-out"][0]])[..., :1]  # (N, C, T, V, 1)
    every_label = np.concatenate([clips["train"][1], clips["held-out"][1]])  # (N,)
    k = (int(every_label.max()) + 1) // 2  # actor classes; their partners' classes are c + k
    actors = np.flatnonzero(every_label < k)  # (n,)
    poses, labels = every_pose[actors], every_label[actors]  # (n, C, T, V, 1), (n,)
    rng = np.random.default_rng(0)
    partner = np.array([rng.choice(np.flatnonzero(every_label == c + k)) for c in labels])  # (n,)
    actor_first = np.concatenate([poses, every_pose[partner]], axis=-1)  # (n, C, T, V, 2)
    flipped = rng.random(len(labels)) < 0.5  # (N,) clips whose file lists the partner first
    shuffled = np.where(flipped[:, None, None, None, None], actor_first[..., ::-1], actor_first)

    def scores(clips_poses: np.ndarray, persons: int) -> tuple[dict[str, float], float]:
        frames = pose_frames(clips_poses, VELOCITY_WEIGHT)  # (N, T, D)
        start = time.process_time()
        distances = pairwise_dtw(frames, persons)  # (N, N)
        seconds = time.process_time() - start
        spectral = spectral_embedding(knn_graph(distances), k)  # (N, K)
        runs = [cluster_metrics(labels, kmeans(spectral, k, seed)) for seed in range(SEEDS)]
        return {m: float(np.mean([r[m] for r in runs])) for m in ("acc", "nmi", "ari")}, seconds

    cases = [("actors alone (one body)", poses, 1),
             ("two bodies, actor always first, one order", actor_first, 1),
             ("two bodies, random order, one order (before)", shuffled, 1),
             ("two bodies, random order, either order (now)", shuffled, 2)]
    rows: list[dict] = []
    seconds_taken = []
    for label, case_poses, persons in cases:
        metrics, seconds = scores(case_poses, persons)
        seconds_taken.append(seconds)
        rows.append({"clips": label, "persons": persons, **metrics, "dtw_cpu_s": seconds})
        print(f"{label}: ACC {metrics['acc']:.1f} NMI {metrics['nmi']:.1f} ARI {metrics['ari']:.1f} "
              f"(all-pairs DTW {seconds:.1f} CPU s)", flush=True)
    ratio = seconds_taken[3] / seconds_taken[2]  # either order against one, the same clips
    print(f"cost of either order: {ratio:.2f}x one order", flush=True)

    lines = [f"# {name}: two-person clips built from its target clips, one body order or either", "",
             f"{len(labels)} clips, K = {k}; spectral clustering of the exact DTW + velocity 10-NN "
             f"graph, mean of {SEEDS} k-means seeds. A constructed check (`python -m "
             "benchmarks.body_order`): each clip of a class c < K (the first half of the task's "
             "classes) is an actor, its partner a random clip of class c + K, the bodies in a "
             "random order per clip.", "",
             "| clips | body orders compared | ACC | NMI | ARI | all-pairs DTW, CPU s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['clips']} | {'either' if r['persons'] == 2 else 'the file'} | {r['acc']:.1f} | "
              f"{r['nmi']:.1f} | {r['ari']:.1f} | {r['dtw_cpu_s']:.1f} |" for r in rows]
    lines += ["", f"Either order costs {ratio:.2f}x one order. {machine_info()['processor']}, one thread."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "body-order.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "body-order.json").write_text(json.dumps(
        {"task": name, "clips": len(labels), "k": k, "rows": rows, "cost_ratio": ratio,
         "machine": machine_info()}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
