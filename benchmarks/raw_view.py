"""Two constructed checks of the raw-pose view: which body a file lists first, and a 2-D score.

    python -m benchmarks.raw_view                                    # MSR Action3D cross-subject
    python -m benchmarks.raw_view --task benchmarks/tasks/ucla2utk-xsub.yaml

The raw-pose view (``codt_deploy.reference``: the DTW distance behind training's label-free graphs,
the reference bank's vote and the batch step) compares clips under every order of their bodies,
and reads only the coordinate channels. None of the local datasets holds enough two-person clips,
or 2-D detector output with its confidence scores, to measure either on real data, so both checks
build such clips from a task's real target clips (train and held-out together) and score spectral
clustering of the exact DTW + velocity 10-NN graph (the batch step's graph; 5 k-means seeds of one
spectral embedding) against the labels, which are read only to score.

*Body order.* The classes are split in two halves: each clip of a class c < K (the first half) is
the *actor* of a two-person clip of class c, and a random clip of class c + K its *partner*. The two
bodies are stored in a random order per clip, as a dataset does whose files list the subjects
rather than the roles. Scored with the file's order, with either order (what every raw-pose graph
now uses), with the actor always first, and the actors alone; with the cost of the all-pairs DTW
under either order against one.

*Score channel.* The clips' x and y (depth dropped) with a third channel as a 2-D detector's
confidence: 1 for every joint, or a random score in [0.3, 1] per joint and frame (the seven local
Kinetics-skeleton samples' scores, preprocessed, vary more than their centred coordinates: standard
deviation 0.14–0.26 against 0.07–0.12). Scored with every channel in the view (before) and with
the coordinates only (now). Writes ``benchmarks/results/<task>-raw-view.{md,json}``.
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
    rng = np.random.default_rng(0)

    def scores(poses: np.ndarray, labels: np.ndarray, persons: int = 1,
               coordinates: int | None = None) -> tuple[dict[str, float], float]:
        frames = pose_frames(poses, VELOCITY_WEIGHT, coordinates)  # (N, T, D)
        start = time.process_time()
        distances = pairwise_dtw(frames, persons)  # (N, N)
        seconds = time.process_time() - start
        k = int(labels.max()) + 1
        spectral = spectral_embedding(knn_graph(distances), k)  # (N, K)
        runs = [cluster_metrics(labels, kmeans(spectral, k, seed)) for seed in range(SEEDS)]
        return {m: float(np.mean([r[m] for r in runs])) for m in ("acc", "nmi", "ari")}, seconds

    # body order: actors of the first half of the classes, partners from the second
    half = (int(every_label.max()) + 1) // 2
    actors = np.flatnonzero(every_label < half)  # (n,)
    actor_poses, actor_labels = every_pose[actors], every_label[actors]  # (n, C, T, V, 1), (n,)
    partner = np.array([rng.choice(np.flatnonzero(every_label == c + half))
                        for c in actor_labels])  # (n,)
    actor_first = np.concatenate([actor_poses, every_pose[partner]], axis=-1)  # (n, C, T, V, 2)
    flipped = rng.random(len(actor_labels)) < 0.5  # (n,) clips whose file lists the partner first
    shuffled = np.where(flipped[:, None, None, None, None], actor_first[..., ::-1], actor_first)
    # score channel: x, y and a detector's confidence (all joints are present in these clips)
    xy = every_pose[:, :2]  # (N, 2, T, V, 1)
    ones = np.ones_like(every_pose[:, :1])  # (N, 1, T, V, 1)
    noisy = rng.uniform(0.3, 1.0, size=ones.shape).astype(np.float32)
    cases = [
        ("body order", "actors alone (one body)", actor_poses, actor_labels, 1, None),
        ("body order", "two bodies, actor always first, the file's order", actor_first, actor_labels,
         1, None),
        ("body order", "two bodies, random order, the file's order (before)", shuffled, actor_labels,
         1, None),
        ("body order", "two bodies, random order, either order (now)", shuffled, actor_labels,
         2, None),
        ("score", "x, y", xy, every_label, 1, None),
        ("score", "x, y, score 1, every channel (before)", np.concatenate([xy, ones], 1), every_label,
         1, None),
        ("score", "x, y, random score, every channel (before)", np.concatenate([xy, noisy], 1), every_label,
         1, None),
        ("score", "x, y, random score, the coordinates (now)", np.concatenate([xy, noisy], 1), every_label,
         1, 2),
    ]
    rows: list[dict] = []
    seconds_taken = []
    for check, label, case_poses, case_labels, persons, coordinates in cases:
        metrics, seconds = scores(case_poses, case_labels, persons, coordinates)
        seconds_taken.append(seconds)
        rows.append({"check": check, "clips": label, "n": len(case_labels), **metrics,
                     "dtw_cpu_s": seconds})
        print(f"{check}: {label}: ACC {metrics['acc']:.1f} NMI {metrics['nmi']:.1f} "
              f"ARI {metrics['ari']:.1f} (all-pairs DTW {seconds:.1f} CPU s)", flush=True)
    ratio = seconds_taken[3] / seconds_taken[2]  # either body order against one, the same clips
    print(f"cost of either body order: {ratio:.2f}x one order", flush=True)

    lines = [f"# {name}: constructed checks of the raw-pose view", "",
             f"`python -m benchmarks.raw_view`: clips built from the task's {len(every_label)} target "
             f"clips; spectral clustering of the exact DTW + velocity 10-NN graph, mean of {SEEDS} "
             "k-means seeds. Body order: each clip of a class c < K (the first half of the classes) "
             "is an actor, its partner a random clip of class c + K, the bodies in a random order "
             "per clip. Score: x and y with a constant or random (0.3 to 1) third channel.", "",
             "| check | clips | N | ACC | NMI | ARI | all-pairs DTW, CPU s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['check']} | {r['clips']} | {r['n']} | {r['acc']:.1f} | {r['nmi']:.1f} | "
              f"{r['ari']:.1f} | {r['dtw_cpu_s']:.1f} |" for r in rows]
    lines += ["", f"Either body order costs {ratio:.2f}x one order. {machine_info()['processor']}, "
              "one thread."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}-raw-view.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / f"{name}-raw-view.json").write_text(json.dumps(
        {"task": name, "rows": rows, "body_order_cost_ratio": ratio, "machine": machine_info()},
        indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
