"""METHOD §15.10: refit the cluster heads to a label-free partition of the learnt features.

After the last epoch (``decisions.refit_heads``), each branch's cluster head C_b^t is replaced by
the partition that spectral clustering finds in the trained students' target-train features:

1. embed the target train clips with both students (eval mode, unaugmented, after the BatchNorm
   recalibration of §15.5 when it is on);
2. one partition a (N,) = spectral clustering of the sum of the kNN graphs of the B1 features and,
   with ``decisions.refit_raw_graph``, of the flattened preprocessed raw poses
   (:func:`training.engine.anchor_partition`'s graphs, :func:`training.clustering.spectral_labels`);
   with ``decisions.refit_stage1_graph`` the B1 features of the stage-1 checkpoint (the students
   as they ended stage 1, :func:`stage1_features`) are a second feature graph, and both feature
   graphs weigh ½ so that the learnt features together weigh as much as the raw poses;
3. per branch: the head starts from the partition's unit member means (it then assigns as
   nearest prototype) and is fitted to a by full-batch cross-entropy on the frozen features
   (:func:`fit_head`), so the inductive head reproduces the partition on the clips it was found on
   and assigns new clips by the same rule. The teachers' heads get the same weights.

``python -m training.refit RUN --out NEW_RUN [--set decisions.refit_stage1_graph=true]`` applies
the refit, with the run's config and the overrides, to a finished run's final checkpoint and
writes a new run folder (its final checkpoint and a copy of its stage-1 checkpoint) that
``training.export`` exports like any other: the same function as in training, so a change of the
refit can be measured on, and shipped from, runs trained before it.

No label is read: the partition, the fit and the agreement recorded (the share of train clips
whose head argmax equals a) are label-free. The heads keep their kind (linear or cosine), so the
export is unchanged.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

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


# §15.15: the consensus members: each graph under this many spectral seeds, and the feature
# graph at these multiples of decisions.refit_feature_weight beside the raw graph
CONSENSUS_SEEDS = 3
CONSENSUS_WEIGHT_FACTORS = (0.5, 1.0, 2.0)


def refit_partition(features_b1: torch.Tensor, raw_view, k: int,
                    seed: int, stage1_b1: torch.Tensor | None = None,
                    feature_weight: float = 1.0, consensus: bool = False) -> np.ndarray:
    """The §15.10 partition (N,) of the B1 features (N, 256), when given the stage-1 B1 features
    (N, 256), and when given the raw poses' view (rows (N, C·T·V·M) or a sparse (N, N) graph,
    :func:`training.baselines.raw_pose_view`): the §15.4 graph partition with the feature graphs
    at a total weight of ``feature_weight`` (split equally when there are two) and the raw graph
    at 1.

    ``consensus`` (§15.15, ``decisions.refit_consensus``): instead, the consensus
    (:func:`training.clustering.consensus_labels`) of the partitions of the feature graph alone,
    the raw graph alone and the joined graph at ½, 1 and 2 × ``feature_weight``, each under
    :data:`CONSENSUS_SEEDS` spectral seeds (without a raw view: the feature graph's seeds only)."""
    from training.clustering import consensus_labels
    from training.engine import anchor_partition, graph_partition, partition_graphs

    views = [features_b1] if stage1_b1 is None else [stage1_b1, features_b1]
    if not consensus:
        return anchor_partition(views, raw_view, feature_weight / len(views), k, seed)
    feature_graphs, raw_graph = partition_graphs(views, raw_view)  # built once for all 15 members
    members = []
    for offset in range(CONSENSUS_SEEDS):
        member_seed = seed + offset
        members.append(graph_partition(feature_graphs, None, 1.0, k, member_seed))  # features alone
        if raw_graph is None:
            continue
        members.append(graph_partition(feature_graphs, raw_graph, 0.0, k, member_seed))  # raw alone
        members += [graph_partition(feature_graphs, raw_graph, factor * feature_weight / len(views),
                                    k, member_seed) for factor in CONSENSUS_WEIGHT_FACTORS]
    return consensus_labels(members, k, seed % 2**31)


def refit_metric(config: TrainConfig) -> str:
    """The raw-pose metric of the refit graph: ``decisions.refit_raw_metric``, else the anchors'
    ``decisions.raw_graph_metric`` (docs/METHOD.md §15.14)."""
    return config.decisions.refit_raw_metric or config.decisions.raw_graph_metric


def refit_raw_view(data: TrainingData, config: TrainConfig, computed=None):
    """The raw poses' view of the refit graph (``decisions.refit_raw_graph``) under
    :func:`refit_metric` (:func:`training.baselines.raw_pose_view` of the target train clips):
    ``computed`` (the anchors' view of the same clips, built under ``decisions.raw_graph_metric``)
    when the metrics agree, else built here; None when the refit does not use the raw poses."""
    if not config.decisions.refit_raw_graph:
        return None
    metric = refit_metric(config)
    if computed is not None and metric == config.decisions.raw_graph_metric:
        return computed
    from training.baselines import raw_pose_view

    return raw_pose_view(data.target_train_specific.data, metric)


@torch.no_grad()
def stage1_features(model, checkpoint: Path, data: TrainingData, config: TrainConfig,
                    device: torch.device) -> torch.Tensor:
    """B1 student features (N, 256) of the target train clips under the weights (BatchNorm
    statistics included) of the stage-1 ``checkpoint``: a copy of ``model`` loads them, so the
    model being refitted is untouched."""
    from training.checkpoint import load_checkpoint, restore
    from training.engine import embed_split

    stage1 = copy.deepcopy(model)
    restore(load_checkpoint(checkpoint), model=stage1, origin=str(checkpoint))
    return embed_split(stage1, "specific", data.target_train_specific, config, device)[0]


def run_stage1_features(model, data: TrainingData, config: TrainConfig, device: torch.device,
                        run_dir: Path, init_from: Path | None = None) -> torch.Tensor | None:
    """``decisions.refit_stage1_graph``: the stage-1 B1 features (N, 256) from ``run_dir``'s
    ``stage1.pt`` (or, for a run started from another run's stage-1 checkpoint, ``init_from``);
    None when the switch is off, or when the run has no stage 2 (its final features are then the
    stage-1 ones)."""
    from training.checkpoint import STAGE1, CheckpointError, checkpoint_dir

    if not config.decisions.refit_stage1_graph or config.optim.epochs_stage2 == 0:
        return None
    path = checkpoint_dir(run_dir) / STAGE1
    if not path.is_file() and init_from is not None:
        path = Path(init_from)
    if not path.is_file():
        raise CheckpointError(f"{path}: decisions.refit_stage1_graph needs the stage-1 "
                              "checkpoint of this run; it is missing")
    return stage1_features(model, path, data, config, device)


@torch.no_grad()
def refit_heads(model, data: TrainingData, config: TrainConfig, device: torch.device,
                raw_view,
                stage1_b1: torch.Tensor | None = None) -> dict[str, float]:
    """Replace both branches' cluster heads (students and teachers) by the §15.10 partition of the
    target train features; ``raw_view`` is the raw poses' view of :func:`refit_raw_view` (rows
    (N, C·T·V·M) or a sparse (N, N) graph; used when ``decisions.refit_raw_graph``); ``stage1_b1``
    (N, 256) the stage-1 B1 features of :func:`stage1_features` (used when given)."""
    from training.engine import BRANCHES, embed_split

    start = time.perf_counter()
    splits = {"shared": data.target_train_shared, "specific": data.target_train_specific}
    features = {branch: embed_split(model, branch, splits[branch], config, device)[0]
                for branch in BRANCHES}  # (N, 256) each, on the CPU
    raw = raw_view if config.decisions.refit_raw_graph else None
    labels = torch.from_numpy(refit_partition(features["specific"], raw, model.num_clusters,
                                              derive_seed(config.seed, 15), stage1_b1,
                                              config.decisions.refit_feature_weight,
                                              config.decisions.refit_consensus))
    record: dict[str, float] = {"refit/clusters": float(labels.unique().numel()),
                                "refit/stage1_graph": float(stage1_b1 is not None),
                                "refit/consensus": float(config.decisions.refit_consensus)}
    for branch in BRANCHES:
        points = F.normalize(features[branch], dim=1)  # (N, 256)
        seeds = points[torch.arange(model.num_clusters) % len(points)]  # (K, 256) for empty ones
        model.init_cluster_heads(branch, update_centroids(points, labels, seeds).to(device))
        head = model.students()[branch].cluster_head
        record[f"refit/{branch}/agreement"] = fit_head(head, features[branch].to(device),
                                                       labels.to(device),
                                                       steps=config.decisions.refit_steps)
        model.teachers()[branch].cluster_head.load_state_dict(head.state_dict())
    record["refit/time_s"] = time.perf_counter() - start
    return record


def refit_run(run_dir: Path, out_dir: Path, overrides: list[str]) -> dict[str, float]:
    """Refit the heads of ``run_dir``'s final checkpoint under its config plus ``overrides``
    (``--set`` syntax) into ``out_dir`` (a new run folder); returns the refit record and the
    new evaluation metrics."""
    import shutil

    from training.checkpoint import FINAL, STAGE1, checkpoint_dir, load_checkpoint, write_payload
    from training.config import apply_overrides, from_dict, save_yaml, task_dir, to_dict
    from training.data import load_task_data
    from training.engine import evaluate
    from training.export import load_run

    config, _, model, path = load_run(run_dir)
    config = from_dict(apply_overrides(to_dict(config), [*overrides, "decisions.refit_heads=true"]),
                       origin=f"{path} with --set overrides")
    data = load_task_data(task_dir(config), config)
    device = torch.device("cpu")
    stage1 = checkpoint_dir(run_dir) / STAGE1
    if out_dir.resolve() == run_dir.resolve():
        raise ValueError(f"{out_dir}: the refitted run needs a folder of its own")
    features = run_stage1_features(model, data, config, device, run_dir)
    record = refit_heads(model, data, config, device, refit_raw_view(data, config), features)
    record.update(evaluate(model, data, config, device, heads=True))
    payload = load_checkpoint(path)
    payload.update(model=model.state_dict(), config=to_dict(config),
                   metrics={k: float(v) for k, v in record.items()})
    write_payload(checkpoint_dir(out_dir) / FINAL, payload)
    if stage1.is_file():
        shutil.copy2(stage1, checkpoint_dir(out_dir) / STAGE1)
    save_yaml(config, out_dir / "config.yaml")
    (out_dir / "refit.json").write_text(json.dumps({"refit_of": str(run_dir), "overrides": overrides,
                                                    **record}, indent=1) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.refit",
                                     description="Refit a finished run's cluster heads (§15.10) "
                                                 "into a new run folder.")
    parser.add_argument("run_dir", type=Path, help="a finished run (checkpoints/final.pt)")
    parser.add_argument("--out", type=Path, required=True, help="the new run folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. decisions.refit_stage1_graph=true (repeatable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    record = refit_run(args.run_dir, args.out, args.overrides)
    for key in sorted(record):
        if key.startswith(("specific/head/", "shared/head/", "refit/")):
            print(f"{key}: {record[key]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
