"""``--recipe cpu``: the paper's schedule sized for a 2-core CPU from the prepared task, plus the
label-free steps of ``training.labelfree`` (docs/METHOD.md §15 says what each does and why).

Its values are derived from the data, so a user's own task gets the same treatment as the
benchmarks:

- batches: ``min(32, N_target / 4)`` target samples (even, at least 8) and as many source samples;
- a fixed number of optimisation *steps* per stage, turned into epochs for this target size;
- the teachers' EMA horizon in steps (α = 1 − 1/horizon), a fixed fraction of all steps;
- evaluation only at the end of each stage; no dropout;
- the loss weights of the anchor, OCM and CCM terms at 1 (METHOD §15.1);
- the label-free steps: anchors, precise BatchNorm, the consensus refit (``labelfree.*``);
- bf16 autocast only where the CPU (or GPU) has native bf16 (:func:`fast_bf16`).

Precedence: preset ← ``--config`` file ← recipe ← ``--set``; so ``--set`` always wins.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from training.config import ConfigError

RECIPES = ("cpu",)


@dataclass(frozen=True)
class CpuRecipe:
    """The constants of ``--recipe cpu`` (docs/METHOD.md §15 has the measurements behind them)."""

    stage1_steps: int = 510
    stage2_steps: int = 340
    max_batch: int = 32
    min_batch: int = 8
    ema_horizon_fraction: float = 0.12  # horizon = 12 % of all steps (≈ 100 of 850: α 0.99)
    anchor_weight: float = 1.0  # λ of the anchor cross-entropy (one term per head), METHOD §15.1
    ocm_weight: float = 1.0  # λ_OCM and λ_CCM of stage 2 (the paper: 5 and 10 at batch 128)
    ccm_weight: float = 1.0
    refit_steps: int = 3000  # Adam steps that fit each head to the refit partition


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
        "labelfree": {"anchors": True, "recalibrate_bn": True, "refit": True,
                      "refit_steps": constants.refit_steps},
        "eval": {"every": epochs_1 + epochs_2 + 1},
        "runtime": {"device": "auto", "amp": fast_bf16() if bf16 is None else bf16,
                    "threads": threads or os.cpu_count() or 1},
    }


def describe(config, n_target_train: int) -> str:
    """One line for the log: the schedule a recipe (and any ``--set``) chose."""
    o, lf = config.optim, config.labelfree
    steps = [name for name, on in (("anchors", lf.anchors), ("precise BatchNorm", lf.recalibrate_bn),
                                   (f"consensus refit ({lf.refit_steps} steps)", lf.refit)) if on]
    return (f"recipe cpu: {o.epochs_stage1} + {o.epochs_stage2} epochs of "
            f"{n_target_train // o.batch_target} steps (batch {o.batch_source} source + "
            f"{o.batch_target} target), EMA α {config.constants.ema_momentum:.4f}, dropout "
            f"{config.model.dropout}, loss weights anchor/OCM/CCM "
            f"{config.loss.anchor}/{config.loss.ocm}/{config.loss.ccm}, label-free steps: "
            f"{', '.join(steps) or 'none'}, {'bf16 autocast' if config.runtime.amp else 'fp32'}")
