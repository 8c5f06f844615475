"""Can a plain ST-GCN learn the raw-pose anchor partition, and at which loss weight?

    python benchmarks/anchor_fit.py [--task ucla2msr] [--steps 1000] [--weight 1] [--optimizer sgd]

The diagnostic behind docs/METHOD.md §15.9. It trains one B1 encoder (dropout 0) and a linear
head from scratch with ``weight × CE`` to the anchor partition of ``--recipe cpu`` (spectral
clustering of the raw-pose 10-NN graph of the prepared target train split), weak augmentation,
batch 32, lr 0.1 (SGD, Nesterov) or 1e-3 (AdamW) with cosine decay, one thread. Five times during
training it prints the share of anchors fitted (label-free) and, as an **oracle** diagnostic
only, the head's and k-means/spectral-on-features ACC / NMI / ARI against the eval labels (the
same clips, transductive). Nothing here chooses anything that is trained or exported.
The task must be prepared first (``python -m training.prepare ucla2msr``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from training.augment import WEAK, augment  # noqa: E402
from training.baselines import flattened_poses  # noqa: E402
from training.clustering import spectral_labels  # noqa: E402
from training.config import prepared_task_dir  # noqa: E402
from training.metrics import cluster_metrics, kmeans_metrics  # noqa: E402
from training.preparation.prepared import load_split, load_task  # noqa: E402
from training.stgcn import STGCN  # noqa: E402


def _load(task_dir: Path) -> tuple[np.ndarray, np.ndarray, str, int]:
    """Target train poses (B1 layout), the eval labels (oracle only: the same clips), layout, K."""
    task = load_task(task_dir)
    poses = np.array(load_split(task_dir, "target_train", "specific").data, dtype=np.float32)
    labels = load_split(task_dir, "target_eval", "specific").labels
    return poses, labels, task.specific, task.num_clusters


def _rounded(metrics: dict[str, float]) -> str:
    return " / ".join(f"{metrics[key]:.1f}" for key in ("acc", "nmi", "ari"))


@torch.no_grad()
def _report(step: int, loss: float, encoder, head, poses: torch.Tensor, anchors: np.ndarray,
            labels: np.ndarray, k: int, started: float) -> None:
    encoder.eval(), head.eval()
    features = torch.cat([encoder.embed(poses[i:i + 128]) for i in range(0, len(poses), 128)])
    predicted = head(features).argmax(1).numpy()
    encoder.train(), head.train()
    unit = F.normalize(features, dim=1).numpy().astype(np.float64)  # (N, 256)
    print(f"step {step}: loss {loss:.3f}, {(time.perf_counter() - started) / step:.2f} s/step, "
          f"anchors fitted {100 * (predicted == anchors).mean():.1f} % | oracle ACC/NMI/ARI: head "
          f"{_rounded(cluster_metrics(labels, predicted))}, k-means on features "
          f"{_rounded(kmeans_metrics(unit.astype(np.float32), labels, k, seeds=3))}, spectral "
          f"on features {_rounded(cluster_metrics(labels, spectral_labels(unit, k)))}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="ucla2msr", help="a prepared task under data/prepared")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--weight", type=float, default=1.0, help="λ of the anchor CE")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    poses, labels, layout, k = _load(prepared_task_dir(args.task))
    anchors = spectral_labels(flattened_poses(poses), k, seed=0)
    print(f"{args.task}: {len(poses)} clips, K = {k}; oracle ACC/NMI/ARI of the anchors themselves "
          f"{_rounded(cluster_metrics(labels, anchors))}", flush=True)
    torch.manual_seed(args.seed)
    encoder, head = STGCN(layout, poses.shape[1], dropout=0.0), torch.nn.Linear(256, k)
    parameters = [*encoder.parameters(), *head.parameters()]
    base_lr = 0.1 if args.optimizer == "sgd" else 1e-3
    optimizer = (torch.optim.SGD(parameters, lr=base_lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
                 if args.optimizer == "sgd" else torch.optim.AdamW(parameters, lr=base_lr, weight_decay=1e-4))
    x, targets = torch.from_numpy(poses), torch.from_numpy(anchors).long()
    rng = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        ids = torch.randint(0, len(x), (32,), generator=rng)
        batch = augment(x[ids], WEAK, [], rng)  # (32, C, T, V, M)
        for group in optimizer.param_groups:
            group["lr"] = base_lr * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        loss = args.weight * F.cross_entropy(head(encoder.embed(batch)), targets[ids])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, args.steps // 5) == 0:
            _report(step, loss.item(), encoder, head, x, anchors, labels, k, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
