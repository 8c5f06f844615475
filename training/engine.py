"""The CoDT training loop as plain functions (METHOD §5–§13; docs/ARCHITECTURE.md,
convention 7).

- :func:`fill_banks`: one no-grad teacher pass over the target train set (D13).
- :func:`train_one_epoch`: stage 1 runs §13 steps 1–6 and 10; stage 2 all of §13, in that order.
- :func:`kmeans_init`: once between the stages, spherical k-means into both heads (§9, D1, D2).
- :func:`evaluate`: each branch's head argmax and † spherical k-means on its features (§10).

Every function returns a dict; the per-step loss terms come from :func:`step_losses`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from codt_deploy.errors import CodtError
from codt_deploy.metrics import cluster_balance, collapse_warning
from training import losses
from training.clustering import sinkhorn, spherical_kmeans
from training.config import TrainConfig
from training.data import (
    STREAM_FILL,
    TrainBatch,
    TrainingData,
    TrainingDataError,
    TrainingSplit,
    chunks,
    derive_seed,
    generator,
    train_batches,
    weak_views,
)
from training.distributed import SINGLE, DistContext, all_gather_rows, average_gradients
from training.memory import MemoryBank
from training.metrics import cluster_metrics, kmeans_metrics
from training.model import Branch, CoDTModel, SharedTargetOutput, SourceOutput

log = logging.getLogger(__name__)
BRANCHES: tuple[Branch, ...] = ("shared", "specific")


class NonFiniteLossError(CodtError, FloatingPointError):
    """A loss became NaN or infinite; training stops before the weights are touched."""


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for the network passes (no loss scaling needed) when ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class PhaseTimer:
    """Wall time per named phase of a step, summed over an epoch (where the time goes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] += now - self._last
        self._last = now


def make_banks(num_samples: int, dim: int, device: torch.device, ctx: DistContext = SINGLE
               ) -> dict[str, MemoryBank]:
    """M_0 and M_1 (METHOD §5): one slot per target train sample; DDP writes gather first."""
    banks: dict[str, MemoryBank] = {branch: MemoryBank(num_samples, dim).to(device) for branch in BRANCHES}
    if ctx.enabled:
        def gather(ids: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return all_gather_rows(ctx, ids), all_gather_rows(ctx, feats)
        for bank in banks.values():
            bank.gather = gather
    return banks


@torch.no_grad()
def fill_banks(model: CoDTModel, banks: dict[str, MemoryBank], data: TrainingData, config: TrainConfig,
               device: torch.device, ctx: DistContext = SINGLE) -> dict[str, float]:
    """D13: write every slot with the teachers' features of a weak view (train mode, no grad).

    Without ``decisions.bank_init`` the banks start as N(0, 1) noise, as the reference code does.
    """
    start = time.perf_counter()
    if not config.decisions.bank_init:
        for i, bank in enumerate(banks.values()):
            bank.randomize_(generator(config.seed, STREAM_FILL, i))
            bank.filled.fill_(True)
        return {"time_s": time.perf_counter() - start}
    model.train()
    n = len(data.target_train_shared)
    per_rank = -(-n // ctx.world_size)
    shard = np.arange(n)[ctx.rank::ctx.world_size]  # (≈ N / world,)
    n_chunks = max(1, len(chunks(per_rank, config.optim.batch_target // ctx.world_size)))
    rng = generator(config.seed, STREAM_FILL, ctx.rank)
    for part in np.array_split(shard, n_chunks):  # the same number of writes on every rank
        shared = weak_views(data.target_train_shared, part, rng).to(device)  # (B, C, T, V0, M)
        specific = weak_views(data.target_train_specific, part, rng).to(device)  # (B, C, T, V1, M)
        with autocast(device, config.runtime.amp):
            teacher = model.forward_teachers(shared, specific)
        ids = torch.from_numpy(part.astype(np.int64)).to(device)
        banks["shared"].write(ids, teacher.shared_feature.float())
        banks["specific"].write(ids, teacher.specific_feature.float())
    for branch, bank in banks.items():
        if not bank.is_full:
            raise RuntimeError(f"bank {branch!r}: {bank.num_samples - bank.num_filled} slots unfilled")
    return {"time_s": time.perf_counter() - start}


# ---------------------------------------------------------------------- one step

def _shared_student(model: CoDTModel, batch: TrainBatch, fuse: bool
                    ) -> tuple[SourceOutput, SharedTargetOutput]:
    """§13 steps 2–3: F_0 on the source view and on the B0 student view (one pass if ``fuse``)."""
    student = model.shared_student
    if not fuse:
        return student.forward_source(batch.source), student.forward_target(batch.shared_student)
    n_source = batch.source.shape[0]
    both = torch.cat([batch.source, batch.shared_student])  # (Bs + B, C, T, V0, M)
    feature, temporal = student.encoder(both)  # (Bs + B, 256), (Bs + B, M, 256, T')
    reconstruction = student.decoder(temporal)  # (Bs + B, M, T', C·V0)
    source = SourceOutput(feature[:n_source], student.source_head(feature[:n_source]),
                          reconstruction[:n_source])
    target = SharedTargetOutput(feature[n_source:], student.cluster_head(feature[n_source:]),
                                reconstruction[n_source:])
    return source, target


def _reconstruction(output_reconstruction: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    steps = output_reconstruction.shape[2]
    target = losses.reconstruction_target(clean, steps)  # (N, M, T', V·C)
    return losses.reconstruction_loss(output_reconstruction.float(), target)


def _pseudo_labels(model: CoDTModel, bank: MemoryBank, branch: Branch, ids: torch.Tensor,
                   config: TrainConfig) -> torch.Tensor:
    """§13 step 7: Sinkhorn over Ĉ_b^t of the whole bank, rows of the batch ids → ŷ_b."""
    logits = model.teacher_cluster_logits(bank.read(), branch).float()  # (S, K)
    c = config.constants
    _, labels = sinkhorn(logits, c.sinkhorn_xi, c.sinkhorn_iters, c.sinkhorn_tol)
    return labels[ids]


def step_losses(model: CoDTModel, banks: dict[str, MemoryBank], batch: TrainBatch,
                config: TrainConfig, stage: int, timer: PhaseTimer,
                anchors: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The loss terms of one iteration, in METHOD §13 order (stage 1: steps 2–6).

    ``anchors`` (N_train,): the label-free anchor partition (``training.labelfree``) that both
    heads learn by cross-entropy at weight ``loss.anchor``; None (the paper) leaves it out."""
    device = batch.ids.device
    with autocast(device, config.runtime.amp):
        source, shared = _shared_student(model, batch, config.runtime.fuse_shared_student)
        specific = model.specific_student.forward_target(batch.specific_student)  # step 4
    terms = {"supervised": losses.supervised_loss(source.source_logits.float(), batch.source_labels)}
    if config.reconstruction_weight > 0:
        terms["reconstruction"] = (_reconstruction(source.reconstruction, batch.source_unmasked)
                                   + _reconstruction(shared.reconstruction, batch.shared_unmasked))
    timer.lap("student_forward")
    model.update_teachers(config.constants.ema_momentum)  # step 5
    with autocast(device, config.runtime.amp):
        teacher = model.forward_teachers(batch.shared_teacher, batch.specific_teacher)
    timer.lap("teacher_forward")
    bank_keys = model.teacher_bank_keys(banks["specific"].read())  # step 6, (S, 128)
    terms["contrastive"] = losses.contrastive_loss(
        specific.query.float(), teacher.key.float(), bank_keys.float(), batch.ids,
        config.constants.temperature)
    banks["specific"].write(batch.ids, teacher.specific_feature.float())
    banks["shared"].write(batch.ids, teacher.shared_feature.float())
    timer.lap("contrastive_bank")
    if stage == 2 and config.uses_ocm:
        labels_0 = _pseudo_labels(model, banks["shared"], "shared", batch.ids, config)
        labels_1 = _pseudo_labels(model, banks["specific"], "specific", batch.ids, config)
        logits_0, logits_1 = shared.cluster_logits.float(), specific.cluster_logits.float()
        terms["ocm"] = losses.ocm_loss(logits_0, labels_0) + losses.ocm_loss(logits_1, labels_1)
        if config.uses_ccm:
            terms["ccm"] = losses.ccm_loss(logits_0.softmax(dim=1), logits_1.softmax(dim=1),
                                           labels_0, labels_1, config.decisions.ccm_rho)
        timer.lap("clustering")
    if anchors is not None and config.loss.anchor > 0:  # training.labelfree, both stages
        target = anchors[batch.ids]  # (n,)
        terms["anchor"] = (F.cross_entropy(shared.cluster_logits.float(), target)
                           + F.cross_entropy(specific.cluster_logits.float(), target))
    return terms


def weighted_total(terms: dict[str, torch.Tensor], config: TrainConfig) -> torch.Tensor:
    """L_base or L_all (METHOD §6) from the terms present."""
    weights = {"supervised": config.loss.supervised, "reconstruction": config.reconstruction_weight,
               "contrastive": config.loss.contrastive, "ocm": config.loss.ocm, "ccm": config.loss.ccm,
               "anchor": config.loss.anchor}
    total = sum(weights[name] * value for name, value in terms.items())
    assert isinstance(total, torch.Tensor), "no loss terms"  # step_losses always has "supervised"
    return total


def _check_finite(terms: dict[str, torch.Tensor], total: torch.Tensor, epoch: int, step: int) -> None:
    if bool(torch.isfinite(total)):
        return
    bad = [name for name, value in terms.items() if not bool(torch.isfinite(value))]
    values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
    raise NonFiniteLossError(
        f"epoch {epoch}, step {step}: the loss is not finite (non-finite terms: "
        f"{', '.join(bad) or 'total'}; {values}). Training stopped before the update; the last "
        f"checkpoint is intact. Lower the learning rate or check the data for NaN/inf.")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_one_epoch(model: CoDTModel, optimizer: torch.optim.Optimizer, banks: dict[str, MemoryBank],
                    data: TrainingData, config: TrainConfig, *, epoch: int, device: torch.device,
                    ctx: DistContext = SINGLE, anchors: torch.Tensor | None = None
                    ) -> dict[str, float]:
    """One pass over the target train set (METHOD §10 "epoch"); returns mean terms and timings.

    ``anchors`` (N_train,) on ``device``: see :func:`step_losses`."""
    stage = config.stage_of(epoch)
    set_learning_rate(optimizer, config.lr(stage))
    torch.manual_seed(derive_seed(config.seed, epoch, ctx.rank, 7))  # dropout: resumable
    model.train()
    parameters = model.student_parameters()
    n_steps, batches = train_batches(data, config, epoch=epoch, stage=stage, rank=ctx.rank,
                                     world_size=ctx.world_size)
    if n_steps == 0:
        raise TrainingDataError(f"target train split ({len(data.target_train_shared)} samples) is smaller "
                         f"than one batch of optim.batch_target={config.optim.batch_target}")
    sums: dict[str, float] = defaultdict(float)
    timer, start = PhaseTimer(), time.perf_counter()
    bar = tqdm(total=n_steps, desc=f"epoch {epoch} (stage {stage})", leave=False,
               disable=not (config.runtime.progress and ctx.is_main and sys.stderr.isatty()))
    for step, batch in enumerate(_on_device(batches, device, timer)):
        terms = step_losses(model, banks, batch, config, stage, timer, anchors)
        total = weighted_total(terms, config)
        _check_finite(terms, total, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        timer.lap("backward")
        average_gradients(ctx, parameters)
        optimizer.step()
        timer.lap("optimizer")
        for name, value in terms.items():
            sums[f"loss/{name}"] += float(value.detach())
        sums["loss/total"] += float(total.detach())
        bar.update()
        bar.set_postfix(loss=f"{float(total.detach()):.3f}")
    bar.close()
    elapsed = time.perf_counter() - start
    record = {key: value / n_steps for key, value in sums.items()}
    record.update({"epoch": epoch, "stage": stage, "lr": config.lr(stage), "steps": n_steps,
                   "time_s": elapsed, "step_s": elapsed / n_steps,
                   "target_samples_per_s": n_steps * config.optim.batch_target / elapsed})
    record.update({f"time/{phase}": sec for phase, sec in timer.seconds.items()})
    return record


def _on_device(batches: Iterator[TrainBatch], device: torch.device, timer: PhaseTimer
               ) -> Iterator[TrainBatch]:
    for batch in batches:
        batch = batch.to(device)
        timer.lap("data")
        yield batch


# ---------------------------------------------------------------------- k-means and evaluation

@torch.no_grad()
def embed_split(model: CoDTModel, branch: str, split: TrainingSplit, config: TrainConfig,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Student features (N, 256) and cluster logits (N, K), eval mode, unaugmented (D20)."""
    model.eval()
    student = model.students()[branch]
    features, logits = [], []
    for rows in chunks(len(split), config.eval.batch_size, min_last=1):
        with autocast(device, config.runtime.amp):
            feature = student.embed(split.take(rows).to(device))  # (B, 256)
        features.append(feature.float())
        logits.append(student.cluster_head(feature.float()))
    return torch.cat(features).cpu(), torch.cat(logits).cpu()


@torch.no_grad()
def kmeans_init(model: CoDTModel, data: TrainingData, config: TrainConfig, device: torch.device
                ) -> dict[str, float]:
    """§9: per branch, spherical k-means of the students' target-train features into C_b^t and
    Ĉ_b^t (bias 0); then teachers := students (D2). Deterministic given the weights and seed."""
    start = time.perf_counter()
    splits = {"shared": data.target_train_shared, "specific": data.target_train_specific}
    record = {}
    for i, branch in enumerate(BRANCHES):
        points = F.normalize(embed_split(model, branch, splits[branch], config, device)[0], dim=1)
        centroids, labels = spherical_kmeans(points, model.num_clusters,  # (K, 256), (N,)
                                             generator=derive_seed(config.seed, 11, i),
                                             n_iter=config.constants.kmeans_iters)
        model.init_cluster_heads(branch, centroids.to(device))
        record[f"kmeans_init/{branch}/clusters_used"] = float(labels.unique().numel())
    model.copy_students_to_teachers()
    record["kmeans_init/time_s"] = time.perf_counter() - start
    return record


@torch.no_grad()
def evaluate(model: CoDTModel, data: TrainingData, config: TrainConfig, device: torch.device, *,
             heads: bool) -> dict[str, float]:
    """Target eval metrics ×100 per branch: ``<branch>/kmeans/*`` (†, mean of seeds) and, when
    ``heads`` (after the k-means init), ``<branch>/head/*`` from argmax C_b^t (METHOD §10).

    The heads' label-free balance (``<branch>/head/clusters_used``, ``largest_share``) is recorded
    even when the eval split is unlabelled, and a collapsed head is logged as a warning."""
    start = time.perf_counter()
    splits = {"shared": data.target_eval_shared, "specific": data.target_eval_specific}
    record: dict[str, float] = {}
    labelled = bool((splits["specific"].labels >= 0).all())
    if not labelled:
        log.warning("the target eval split has unlabelled samples: no metrics")
        if not heads:
            return {"eval/time_s": time.perf_counter() - start}
    for branch in BRANCHES:
        labels = splits[branch].labels
        features, logits = embed_split(model, branch, splits[branch], config, device)
        if heads:
            pred = logits.argmax(dim=1).numpy()
            _record_balance(record, f"{branch}/head", pred, model.num_clusters)
        if not labelled:
            continue
        k = min(model.num_clusters, len(labels))
        for key, value in kmeans_metrics(features, labels, k, seeds=config.eval.kmeans_seeds,
                                         n_iter=config.constants.kmeans_iters).items():
            record[f"{branch}/kmeans/{key}"] = value
        if heads:
            for key, value in cluster_metrics(labels, pred).items():
                record[f"{branch}/head/{key}"] = value
    record["eval/time_s"] = time.perf_counter() - start
    return record


def _record_balance(record: dict[str, float], prefix: str, pred: np.ndarray, k: int) -> None:
    """Label-free collapse figures of one head (``clusters_used``, ``largest_share``), with a
    logged warning when the head looks collapsed (codt_deploy.metrics.cluster_balance)."""
    balance = cluster_balance(pred, k)
    record[f"{prefix}/clusters_used"] = balance["clusters_used"]
    record[f"{prefix}/largest_share"] = balance["largest_share"]
    warning = collapse_warning(balance, k, f"the {prefix.split('/')[0]} cluster head")
    if warning:
        log.warning(warning)


def stalled_warning(supervised_loss: float, num_source_classes: int, epoch: int) -> str | None:
    """A label-free sign that stage 1 learnt nothing: the source cross-entropy (labelled data) is
    still at chance, ln(classes), after stage 1 (e.g. a loss weight too large for the learning
    rate). None when it has dropped below 95 % of chance."""
    chance = math.log(num_source_classes)
    if num_source_classes < 2 or supervised_loss < 0.95 * chance:
        return None
    return (f"stage 1 did not learn: after epoch {epoch} the source cross-entropy is "
            f"{supervised_loss:.3f}, chance is ln({num_source_classes}) = {chance:.3f}; lower the "
            f"loss weights or the learning rate (optim.lr_stage1)")


def append_jsonl(path: str | Path, record: dict) -> None:
    """One JSON object per line (the run's ``metrics.jsonl``); non-finite floats become null."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(clean) + "\n")
