"""METHOD §15.10: refit the cluster heads to a label-free partition of the learnt features.

After the last epoch (``decisions.refit_heads``), each branch's cluster head C_b^t is replaced by
the partition that spectral clustering finds in the trained students' target-train features:

1. embed the target train clips with both students (eval mode, unaugmented, after the BatchNorm
   recalibration of §15.5 when it is on);
2. one partition a (N,) = spectral clustering of the sum of the kNN graphs of the B1 features and,
   with ``decisions.refit_raw_graph``, of the flattened preprocessed raw poses
   (:func:`training.engine.anchor_partition`'s graphs, :func:`training.clustering.spectral_labels`);
3. per branch: the head starts from the partition's unit member means (it then assigns as
   nearest prototype) and is fitted to a by full-batch cross-entropy on the frozen features
   (:func:`fit_head`), so the inductive head reproduces the partition on the clips it was found on
   and assigns new clips by the same rule. The teachers' heads get the same weights.

No label is read: the partition, the fit and the agreement recorded (the share of train clips
whose head argmax equals a) are label-free. The heads keep their kind (linear or cosine), so the
export is unchanged.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.clustering import update_centroids
from training.config import TrainConfig
from training.data import TrainingData, derive_seed

REFIT_STEPS = 300
REFIT_LR = 0.01


def fit_head(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, *,
             steps: int = REFIT_STEPS, lr: float = REFIT_LR) -> float:
    """Fit ``head`` ((N, D) → (N, K) logits) to the partition ``labels`` (N,) by full-batch Adam
    on the cross-entropy over the frozen ``features`` (N, D); returns the share of rows whose
    argmax equals their label afterwards. The weights start from where they are."""
    features = features.detach().float()
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimiser.zero_grad(set_to_none=True)
            F.cross_entropy(head(features), labels).backward()
            optimiser.step()
    with torch.no_grad():
        return float((head(features).argmax(dim=1) == labels).float().mean())


def refit_partition(features_b1: torch.Tensor, raw_rows: np.ndarray | None, k: int,
                    seed: int) -> np.ndarray:
    """The §15.10 partition (N,) of the B1 features (N, 256) and, when given, the raw pose rows
    (N, C·T·V·M): the §15.4 graph partition with both graphs at weight 1."""
    from training.engine import anchor_partition

    return anchor_partition([features_b1], raw_rows, 1.0, k, seed)


@torch.no_grad()
def refit_heads(model, data: TrainingData, config: TrainConfig, device: torch.device,
                raw_rows: np.ndarray | None) -> dict[str, float]:
    """Replace both branches' cluster heads (students and teachers) by the §15.10 partition of the
    target train features; ``raw_rows`` (N, C·T·V·M) are the raw poses of
    ``training.run.raw_pose_rows`` (used when ``decisions.refit_raw_graph``)."""
    from training.engine import BRANCHES, embed_split

    start = time.perf_counter()
    splits = {"shared": data.target_train_shared, "specific": data.target_train_specific}
    features = {branch: embed_split(model, branch, splits[branch], config, device)[0]
                for branch in BRANCHES}  # (N, 256) each, on the CPU
    raw = raw_rows if config.decisions.refit_raw_graph else None
    labels = torch.from_numpy(refit_partition(features["specific"], raw, model.num_clusters,
                                              derive_seed(config.seed, 15)))
    record: dict[str, float] = {"refit/clusters": float(labels.unique().numel())}
    for branch in BRANCHES:
        points = F.normalize(features[branch], dim=1)  # (N, 256)
        seeds = points[torch.arange(model.num_clusters) % len(points)]  # (K, 256) for empty ones
        model.init_cluster_heads(branch, update_centroids(points, labels, seeds).to(device))
        head = model.students()[branch].cluster_head
        record[f"refit/{branch}/agreement"] = fit_head(head, features[branch].to(device),
                                                       labels.to(device))
        model.teachers()[branch].cluster_head.load_state_dict(head.state_dict())
    record["refit/time_s"] = time.perf_counter() - start
    return record
