"""Named training recipes: config overrides sized from the prepared task (METHOD §15.5).

``--recipe cpu`` (``python -m training.run --task ucla2msr --recipe cpu``, or any task file) is
the schedule this project measured to work on a 2-core CPU; its values are derived from the data,
so a user's own task gets the same treatment as the benchmarks:

- batches: ``min(32, N_target / 4)`` target samples (even, at least 8) and as many source samples;
- a fixed number of optimisation *steps* per stage, turned into epochs for this target size;
- the teachers' EMA horizon in steps (α = 1 − 1/horizon), a fixed fraction of all steps;
- evaluation only at the end of each stage;
- the label-free improvements of METHOD §15 that measured better on both internal tasks: no
  dropout; the anchor partition (spectral clustering of the raw-pose kNN graph) learnt by both
  heads from the first epoch (§15.4) at weight 1; stage-2 clustering losses at weight 1
  (λ_OCM = λ_CCM = 1); BatchNorm recalibration before evaluation and export (§15.5); after the
  last epoch both heads refitted to the spectral partition of the B1 features + raw-pose graph
  (§15.10); the raw-pose graph of the anchors under dynamic time warping (§15.11; with
  velocities, §15.12, is a switch: it lowered UTKinect), and the refit's raw-pose graph under
  DTW with velocities beside the B1 graph at half weight, the heads fitted for 3,000 steps
  (§15.14), to the consensus of that partition with those of the graphs alone and of the feature
  weights ¼ and 1 (§15.15).
  The other §15 switches stay off (benchmarks/README.md has the ablation);
- bf16 autocast only where the CPU (or GPU) has native bf16 (:func:`fast_bf16`).

Precedence: preset ← ``--config`` file ← recipe ← ``--set``; so ``--set`` always wins.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from training.config import ConfigError, RawGraphMetric

RECIPES = ("cpu",)


@dataclass(frozen=True)
class CpuRecipe:
    """The constants of ``--recipe cpu`` (benchmarks/README.md has the measurements behind them)."""

    stage1_steps: int = 510
    stage2_steps: int = 340
    max_batch: int = 32
    min_batch: int = 8
    ema_horizon_fraction: float = 0.12  # horizon = 12 % of all steps (≈ 100 of 850: α 0.99)
    # λ of the anchor cross-entropy (one term per head). 5 stalled stage 1 at lr 0.1: the source
    # cross-entropy stayed at chance (2.31 at epoch 10; B1 head 15.3 ACC on ucla2msr after 30
    # epochs with the contrastive term off); 1 learns (B1 head 45.2, † 54.1 after stage 1).
    # docs/METHOD.md §15.9.
    anchor_weight: float = 1.0
    # λ_OCM and λ_CCM of stage 2 (the paper: 5 and 10, for lr 0.01 at batch 128). At 32 + 32 on
    # the CPU schedule they lowered the B1 features from the stage-1 level (ucla2msr seed 0 from
    # one stage-1 checkpoint: B1 head 45.1 with 5 / 10, 49.7 with 1 / 1).
    ocm_weight: float = 1.0
    ccm_weight: float = 1.0
    # The refit graph (docs/METHOD.md §15.14): the raw poses' DTW graph with velocities beside the
    # B1 feature graph at half weight, and a head fitted until it reproduces the partition (300
    # steps left 8-10 % of ucla2msr's clips elsewhere; 3,000 reach 99.6-100 %). Measured post hoc
    # on runs trained with the DTW anchors: ucla2msr seeds 0/3/4/5 ACC 53.9 -> 59.8, ucla2utk
    # seeds 0/1 89.7 -> 92.7, msr2ucla seed 0 43.0 -> 45.4, every metric higher on every task.
    refit_raw_metric: RawGraphMetric = "dtw_velocity"
    refit_feature_weight: float = 0.5
    refit_steps: int = 3000
    # The refit partition as the consensus of the feature graph alone, the raw graph alone and the
    # joined graph at ½, 1 and 2 × the feature weight, 3 spectral seeds each (docs/METHOD.md
    # §15.15): the two tasks want different weights and no label-free score chose one, so the
    # recipe clusters what the partitions over that range agree on. Exported head, post hoc on the
    # recipe's runs: ucla2msr seeds 0-2 ACC 60.4 -> 64.5, ucla2utk seeds 0-1 92.7 -> 92.5.
    refit_consensus: bool = True


def fast_bf16() -> bool:
    """Whether bfloat16 autocast speeds training up here: a CUDA device with bf16, or a CPU with
    bf16 instructions (AMX tiles or AVX-512 BF16). oneDNN also reports bf16 as *supported* on
    plain AVX-512, where it is emulated; measured, one ``--recipe cpu`` step of 32 + 32 clips
    (2 threads) took 3.39 s in bf16 against 1.80 s in fp32 (Intel Xeon, AVX-512 without BF16),
    and 11.0 s against 1.0–1.3 s on an AMD EPYC with AVX2 only."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or a stripped build: stay in fp32
        return False


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def cpu_recipe(n_target_train: int, n_source: int, *, threads: int | None = None,
               constants: CpuRecipe = CpuRecipe(), bf16: bool | None = None) -> dict[str, Any]:
    """The ``--recipe cpu`` overrides (a nested dict of config sections) for a task's sizes;
    ``bf16`` (autocast) defaults to :func:`fast_bf16`."""
    if n_target_train < 4 or n_source < 2:
        raise ConfigError(f"--recipe cpu needs at least 4 target and 2 source training samples, "
                          f"got {n_target_train} and {n_source}")
    batch = min(constants.max_batch, max(constants.min_batch, _even(n_target_train / 4)))
    batch = min(batch, _even(n_target_train), _even(n_source))
    steps_per_epoch = n_target_train // batch
    epochs_1 = max(1, math.ceil(constants.stage1_steps / steps_per_epoch))
    epochs_2 = max(1, math.ceil(constants.stage2_steps / steps_per_epoch))
    total_steps = (epochs_1 + epochs_2) * steps_per_epoch
    horizon = max(10.0, constants.ema_horizon_fraction * total_steps)
    return {
        "model": {"dropout": 0.0},
        "optim": {"epochs_stage1": epochs_1, "epochs_stage2": epochs_2,
                  "batch_source": batch, "batch_target": batch},
        "constants": {"ema_momentum": round(1.0 - 1.0 / horizon, 6)},
        "loss": {"anchor": constants.anchor_weight, "ocm": constants.ocm_weight,
                 "ccm": constants.ccm_weight},
        "anchors": {"mode": "spectral", "stage1": True, "raw_graph": True, "feature_weight": 0.0},
        "decisions": {"recalibrate_bn": True, "refit_heads": True, "refit_raw_graph": True,
                      "raw_graph_metric": "dtw", "refit_raw_metric": constants.refit_raw_metric,
                      "refit_feature_weight": constants.refit_feature_weight,
                      "refit_steps": constants.refit_steps,
                      "refit_consensus": constants.refit_consensus},
        "eval": {"every": epochs_1 + epochs_2 + 1},
        "runtime": {"device": "auto", "amp": fast_bf16() if bf16 is None else bf16,
                    "threads": threads or os.cpu_count() or 1},
    }


def describe(config, n_target_train: int) -> str:
    """One line for the log: the schedule a recipe (and any ``--set``) chose."""
    from training.refit import refit_metric

    o, n = config.optim, config.neighbours
    return (f"recipe cpu: {o.epochs_stage1} + {o.epochs_stage2} epochs of "
            f"{n_target_train // o.batch_target} steps (batch {o.batch_source} source + "
            f"{o.batch_target} target), EMA α {config.constants.ema_momentum:.4f}, dropout "
            f"{config.model.dropout}, anchors {config.anchors.mode} (weight {config.loss.anchor}), "
            f"OCM/CCM weights {config.loss.ocm}/{config.loss.ccm}, "
            f"BatchNorm recalibration {config.decisions.recalibrate_bn}, head refit "
            f"{config.decisions.refit_heads}{' (+ raw graph)' if config.decisions.refit_raw_graph else ''}, "
            f"raw-pose graph {config.decisions.raw_graph_metric} (refit {refit_metric(config)}, features "
            f"×{config.decisions.refit_feature_weight}, {config.decisions.refit_steps} steps"
            f"{', consensus' if config.decisions.refit_consensus else ''}), "
            f"{n.k} neighbours, "
            f"{'bf16 autocast' if config.runtime.amp else 'fp32'}")
