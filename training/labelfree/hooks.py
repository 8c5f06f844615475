"""Where the label-free method meets CoDT's training loop: the hooks ``training.run.train`` calls.

- :func:`anchor_labels` (start of training, or of a resumed run): the anchor partition of the
  target train clips, with cluster ids aligned to the B1 teacher head's, which both heads then
  learn by cross-entropy beside the paper's losses (``loss.anchor``);
- :func:`recalibrate_batchnorm` (between the stages, before each evaluation and before the final
  checkpoint): the students' BatchNorm statistics re-estimated on the clean target clips;
- :func:`refit_heads` (after the last epoch): both heads replaced by the consensus refit
  partition of the trained features and the raw poses, fitted by :func:`fit_head`;
- :func:`refit_run`: the same refit applied to a finished run's final checkpoint, into a new run
  folder (``python -m training.labelfree RUN --out NEW``).

No label is read anywhere. The partitions are numpy (:mod:`training.labelfree.partition`); this
module holds the torch side.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.clustering import update_centroids
from training.config import TrainConfig
from training.data import TrainingData, chunks, derive_seed
from training.engine import BRANCHES, autocast, embed_split
from training.labelfree.partition import aligned_labels, anchor_partition, refit_partition
from training.labelfree.views import raw_pose_graph

ANCHOR_METRIC = "dtw"  # the anchors' raw-pose graph (docs/METHOD.md §15.2)
REFIT_METRIC = "dtw_velocity"  # the refit's raw-pose graph (docs/METHOD.md §15.4)
REFIT_LR = 0.01


@torch.no_grad()
def anchor_labels(model, banks, data: TrainingData, config: TrainConfig,
                  device: torch.device) -> torch.Tensor:
    """The anchors (N_train,) on ``device``: spectral clustering of the target train clips' DTW
    graph (B1 layout), its cluster ids renamed to best match the B1 teacher head's argmax over
    the B1 bank (so that a resumed run, whose heads already learnt them, keeps the same ids)."""
    k = model.num_clusters
    graph = raw_pose_graph(data.target_train_specific.data, ANCHOR_METRIC,
                           coordinates=data.coordinates)  # sparse (N, N)
    labels = anchor_partition(graph, k, derive_seed(config.seed, 14))
    reference = model.teacher_cluster_logits(banks["specific"].read(), "specific").argmax(1)
    return torch.from_numpy(aligned_labels(labels, reference.cpu().numpy(), k)).to(device)


@torch.no_grad()
def recalibrate_batchnorm(model, data: TrainingData, config: TrainConfig,
                          device: torch.device) -> dict[str, float]:
    """Precise BatchNorm: reset every student BatchNorm and re-estimate its running mean/variance
    as the average of its batch statistics over the clean (unaugmented) target train set (batches
    of ``eval.batch_size``), dropout off; the weights are unchanged.

    In training the students' running statistics follow strongly augmented views (and, for B0,
    the source domain too), so eval-mode features of clean target clips are shifted; that shift
    can put every clip into one cluster."""
    start = time.perf_counter()
    splits = {"shared": data.target_train_shared, "specific": data.target_train_specific}
    for branch, student in model.students().items():
        norms = [m for m in student.encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in norms]
        student.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
            m.train()
        for rows in chunks(len(splits[branch]), config.eval.batch_size):
            with autocast(device, config.runtime.amp):
                student.embed(splits[branch].take(rows).to(device))
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
    model.eval()
    return {"recalibrate_bn/time_s": time.perf_counter() - start}


def fit_head(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, *,
             steps: int, lr: float = REFIT_LR) -> float:
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


@torch.no_grad()
def refit_heads(model, data: TrainingData, config: TrainConfig,
                device: torch.device) -> dict[str, float]:
    """Replace both branches' cluster heads (students and teachers) by the refit partition of the
    target train clips (:func:`training.labelfree.partition.refit_partition` of the unit B1
    student features and the raw poses' exact DTW+velocity graph): each head starts from the
    partition's unit member means and is fitted to it for ``labelfree.refit_steps`` steps. The
    record holds ``refit/feature_agreement``, which chose the partition's members."""
    start = time.perf_counter()
    splits = {"shared": data.target_train_shared, "specific": data.target_train_specific}
    features = {branch: embed_split(model, branch, splits[branch], config, device)[0]
                for branch in BRANCHES}  # (N, 256) each, on the CPU
    unit_b1 = F.normalize(features["specific"].float(), dim=1).cpu().numpy()  # (N, 256)
    raw_graph = raw_pose_graph(data.target_train_specific.data, REFIT_METRIC, exact=True,
                               coordinates=data.coordinates)  # sparse (N, N), every pair's DTW distance
    partition, agreement = refit_partition(unit_b1, raw_graph, model.num_clusters,
                                           derive_seed(config.seed, 15))
    labels = torch.from_numpy(partition)
    record: dict[str, float] = {"refit/clusters": float(labels.unique().numel()),
                                "refit/feature_agreement": agreement}
    for branch in BRANCHES:
        points = F.normalize(features[branch], dim=1)  # (N, 256)
        seeds = points[torch.arange(model.num_clusters) % len(points)]  # (K, 256) for empty ones
        model.init_cluster_heads(branch, update_centroids(points, labels, seeds).to(device))
        head = model.students()[branch].cluster_head
        record[f"refit/{branch}/agreement"] = fit_head(head, features[branch].to(device),
                                                       labels.to(device),
                                                       steps=config.labelfree.refit_steps)
        model.teachers()[branch].cluster_head.load_state_dict(head.state_dict())
    record["refit/time_s"] = time.perf_counter() - start
    return record


def refit_run(run_dir: Path, out_dir: Path, overrides: list[str]) -> dict[str, float]:
    """Refit the heads of ``run_dir``'s final checkpoint under its config plus ``overrides``
    (``--set`` syntax) into ``out_dir`` (a new run folder, exportable like any other); returns
    the refit record and the new evaluation metrics."""
    import shutil

    from training.checkpoint import FINAL, STAGE1, checkpoint_dir, load_checkpoint, write_payload
    from training.config import apply_overrides, from_dict, save_yaml, task_dir, to_dict
    from training.data import load_task_data
    from training.engine import evaluate
    from training.export import load_run

    if out_dir.resolve() == run_dir.resolve():
        raise ValueError(f"{out_dir}: the refitted run needs a folder of its own")
    config, _, model, path = load_run(run_dir)
    config = from_dict(apply_overrides(to_dict(config), [*overrides, "labelfree.refit=true"]),
                       origin=f"{path} with --set overrides")
    data = load_task_data(task_dir(config), config)
    device = torch.device("cpu")
    record = refit_heads(model, data, config, device)
    record.update(evaluate(model, data, config, device, heads=True))
    payload = load_checkpoint(path)
    payload.update(model=model.state_dict(), config=to_dict(config),
                   metrics={k: float(v) for k, v in record.items()})
    write_payload(checkpoint_dir(out_dir) / FINAL, payload)
    stage1 = checkpoint_dir(run_dir) / STAGE1
    if stage1.is_file():
        shutil.copy2(stage1, checkpoint_dir(out_dir) / STAGE1)
    save_yaml(config, out_dir / "config.yaml")
    (out_dir / "refit.json").write_text(json.dumps({"refit_of": str(run_dir), "overrides": overrides,
                                                    **record}, indent=1) + "\n", encoding="utf-8")
    return record
