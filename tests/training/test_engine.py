"""The training engine on a tiny slice of real prepared data (NW-UCLA → MSR Action3D) and, where
the test does not need real clips, also on a synthetic task of the same shape.

Covers the batch/view policy (METHOD §10, D3, D5, D18), the loss terms of each stage (§13), the
bank fill (D13) and write order (D14), the k-means initialisation (§9), evaluation, a non-finite
loss stop and the B1 invariance of METHOD §12.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from training import augment as aug
from training.config import AugmentConfig, TrainConfig, from_dict
from training.data import TrainBatches, load_task_data, view_presets
from training.distributed import SINGLE
from training.engine import (
    NonFiniteLossError,
    PhaseTimer,
    evaluate,
    fill_banks,
    kmeans_init,
    step_losses,
    train_one_epoch,
    weighted_total,
)
from training.run import build, train

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def tiny(task_dir: Path, **sections) -> TrainConfig:
    values: dict[str, Any] = {"data": {"task": "ucla2msr", "prepared_dir": str(task_dir)},
              "model": {"num_clusters": 6},
              "optim": {"epochs_stage1": 1, "epochs_stage2": 1, "batch_source": 4, "batch_target": 8},
              "eval": {"kmeans_seeds": 2, "every": 1},
              "runtime": {"device": "cpu", "threads": 1, "progress": False}}
    for section, fields in sections.items():
        values[section] = {**values.get(section, {}), **fields} if isinstance(fields, dict) else fields
    return from_dict(values)


def setup(config):
    data = load_task_data(config.data.prepared_dir, config)
    model, optimizer, banks = build(config, data, CPU, SINGLE)
    return data, model, optimizer, banks


# ---------------------------------------------------------------------- batches and views

def test_view_presets_follow_the_stage_and_switches():
    paper = AugmentConfig()
    assert view_presets(1, paper).student == aug.WEAK and view_presets(2, paper).student == aug.STRONG
    assert view_presets(2, paper).teacher == aug.WEAK and view_presets(2, paper).source == aug.WEAK
    reference = AugmentConfig(student_strong_aug=False, mask_in_stage1=True, mask_source=True)
    for stage in (1, 2):
        presets = view_presets(stage, reference)
        assert presets.student.shear == aug.WEAK.shear and presets.student.mask_p == aug.STRONG.mask_p
        assert presets.source.mask_p == aug.STRONG.mask_p and presets.teacher == aug.WEAK


def test_train_batches_are_seeded_by_epoch_and_cover_the_target(any_task_dir):
    config = tiny(any_task_dir)
    data = load_task_data(any_task_dir, config)
    epoch1 = TrainBatches(data, config, epoch=1, stage=2)
    again = TrainBatches(data, config, epoch=1, stage=2)
    epoch2 = TrainBatches(data, config, epoch=2, stage=2)
    assert len(epoch1) == len(data.target_train_shared) // 8  # drop_last
    first, repeat = epoch1.make_batch(0), again.make_batch(0)
    assert torch.equal(first.ids, repeat.ids) and torch.equal(first.specific_student, repeat.specific_student)
    assert not torch.equal(first.ids, epoch2.make_batch(0).ids)
    ids = torch.cat([b.ids for b in epoch1])
    assert len(set(ids.tolist())) == len(ids)  # no sample twice in one epoch
    # four different views of the same samples, in each branch's own layout
    assert first.shared_student.shape[3] == 20 and first.specific_student.shape[3] == 20
    assert not torch.equal(first.shared_student, first.shared_teacher)
    assert not torch.equal(first.specific_student, first.specific_teacher)
    # stage 2 students are masked; the L_dec target is the same view before masking
    zero_student = (first.shared_student == 0).float().mean()
    assert zero_student > (first.shared_unmasked == 0).float().mean()
    kept = first.shared_student != 0
    assert torch.equal(first.shared_student[kept], first.shared_unmasked[kept])


def test_loader_workers_give_the_same_batches(any_task_dir):
    from training.data import train_batches

    direct = tiny(any_task_dir)
    workers = tiny(any_task_dir, runtime={"num_workers": 2})
    data = load_task_data(any_task_dir, direct)
    n0, batches0 = train_batches(data, direct, epoch=3, stage=2)
    n2, batches2 = train_batches(data, workers, epoch=3, stage=2)
    assert n0 == n2 > 1
    for a, b in zip(batches0, batches2, strict=True):
        assert torch.equal(a.ids, b.ids) and torch.equal(a.specific_student, b.specific_student)
        assert torch.equal(a.source, b.source)


def test_source_stream_restarts_within_an_epoch(any_task_dir):
    config = tiny(any_task_dir, optim={"batch_source": 16})
    data = load_task_data(any_task_dir, config)
    batches = TrainBatches(data, config, epoch=1, stage=1)
    per_pass = len(data.source) // 16
    assert len(batches) > per_pass  # the target needs more batches than one source pass gives
    seen = [tuple(batches.source_indices(b)) for b in range(len(batches))]
    assert all(len(s) == 16 for s in seen)
    assert seen[per_pass] != seen[0]  # a fresh permutation after the restart


# ---------------------------------------------------------------------- one step

def test_stage_terms_and_gradients(any_task_dir):
    config = tiny(any_task_dir)
    data, model, optimizer, banks = setup(config)
    fill_banks(model, banks, data, config, CPU)
    assert all(bank.is_full for bank in banks.values())
    batch = TrainBatches(data, config, epoch=1, stage=1).make_batch(0)
    terms = step_losses(model, banks, batch, config, 1, PhaseTimer())
    assert set(terms) == {"supervised", "reconstruction", "contrastive"}
    total = weighted_total(terms, config)
    total.backward()
    assert all(p.grad is None for p in model.shared_teacher.parameters())
    assert all(p.grad is None for p in model.specific_teacher.parameters())
    assert model.specific_student.encoder.data_bn.weight.grad.abs().sum() > 0
    # stage 1 trains no cluster head (§13: OCM/CCM only in stage 2)
    assert model.shared_student.cluster_head.weight.grad is None

    stage2 = step_losses(model, banks, TrainBatches(data, config, epoch=2, stage=2).make_batch(0),
                         config, 2, PhaseTimer())
    assert set(stage2) == {"supervised", "reconstruction", "contrastive", "ocm", "ccm"}
    assert all(torch.isfinite(v) for v in stage2.values())
    no_ccm = tiny(any_task_dir, ablation={"components": "bm+ocm", "shared_decoder": False})
    terms = step_losses(model, banks, TrainBatches(data, no_ccm, epoch=2, stage=2).make_batch(0),
                        no_ccm, 2, PhaseTimer())
    assert set(terms) == {"supervised", "contrastive", "ocm"}


def test_step_writes_the_batch_slots_after_the_contrastive_loss(any_task_dir):
    config = tiny(any_task_dir)
    data, model, _, banks = setup(config)
    fill_banks(model, banks, data, config, CPU)
    before = {name: bank.features.clone() for name, bank in banks.items()}
    batch = TrainBatches(data, config, epoch=1, stage=1).make_batch(0)
    step_losses(model, banks, batch, config, 1, PhaseTimer())
    others = torch.ones(len(data.target_train_shared), dtype=torch.bool)
    others[batch.ids] = False
    for name, bank in banks.items():
        assert torch.equal(bank.features[others], before[name][others])
        assert not torch.allclose(bank.features[batch.ids], before[name][batch.ids])


def test_kmeans_init_sets_both_heads_from_the_same_centroids(any_task_dir):
    config = tiny(any_task_dir)
    data, model, _, _ = setup(config)
    kmeans_init(model, data, config, CPU)
    for branch in ("shared", "specific"):
        student, teacher = model.students()[branch], model.teachers()[branch]
        weight = student.cluster_head.weight
        assert torch.allclose(weight.norm(dim=1), torch.ones(6), atol=1e-5)  # unit centroids
        assert torch.equal(student.cluster_head.bias, torch.zeros(6))
        assert torch.equal(teacher.cluster_head.weight, weight)
        assert torch.equal(teacher.cluster_head.bias, torch.zeros(6))
    # D2: teachers are re-synchronised to their students after the k-means
    for (name, p_teacher), p_student in zip(model.specific_teacher.encoder.named_parameters(),
                                            model.specific_student.encoder.parameters()):
        assert torch.equal(p_teacher, p_student), name


def test_evaluate_reports_both_branches(any_task_dir):
    config = tiny(any_task_dir)
    data, model, _, _ = setup(config)
    before_heads = evaluate(model, data, config, CPU, heads=False)
    assert {"shared/kmeans/acc", "specific/kmeans/nmi", "specific/kmeans/ari_std"} <= set(before_heads)
    assert not any("/head/" in key for key in before_heads)
    with_heads = evaluate(model, data, config, CPU, heads=True)
    for key in ("shared/head/acc", "specific/head/acc"):
        assert 0.0 < with_heads[key] <= 100.0


def test_non_finite_loss_stops_with_a_clear_message(any_task_dir, tmp_path):
    poisoned = tmp_path / "ucla2msr"
    import shutil

    shutil.copytree(any_task_dir, poisoned)
    path = poisoned / "source_train" / "data_kinect20.npy"
    source = np.load(path)
    source[:] = np.nan
    np.save(path, source)
    config = tiny(poisoned)
    data, model, optimizer, banks = setup(config)
    fill_banks(model, banks, data, config, CPU)
    weights = model.shared_student.source_head.weight.clone()
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 0: the loss is not finite .*supervised"):
        train_one_epoch(model, optimizer, banks, data, config, epoch=1, device=CPU)
    assert torch.equal(model.shared_student.source_head.weight, weights)  # no update happened


def test_a_batch_larger_than_the_target_is_a_clear_error(any_task_dir):
    from training.data import TrainingDataError

    config = tiny(any_task_dir, optim={"batch_target": 64})
    data, model, optimizer, banks = setup(config)
    with pytest.raises(TrainingDataError, match=r"24 samples\) is smaller than one batch of "
                                                r"optim.batch_target=64"):
        train_one_epoch(model, optimizer, banks, data, config, epoch=1, device=CPU)


# ---------------------------------------------------------------------- METHOD §12 invariance

def _other_source(task_dir: Path, tmp_path: Path) -> Path:
    """A different source domain of the same shape: other NW-UCLA clips, relabelled."""
    import shutil

    other = tmp_path / "other" / "ucla2msr"
    shutil.copytree(task_dir, other)
    folder = other / "source_train"
    data = np.load(folder / "data_kinect20.npy")
    labels = np.load(folder / "labels.npy")
    rng = np.random.default_rng(0)
    np.save(folder / "data_kinect20.npy", (data[rng.permutation(len(data))] * 1.5).astype(np.float32))
    np.save(folder / "labels.npy", rng.permutation(labels))
    return other


def _final_weights(run_dir: Path, prefix: str) -> dict[str, torch.Tensor]:
    payload = torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)
    return {k: v for k, v in payload["model"].items() if k.startswith(prefix)}


@pytest.mark.slow
def test_b1_never_sees_the_source_without_ccm(task_dir, tmp_path):
    """Without CCM, B1 results are identical for two different sources (METHOD §12, Supp. T2)."""
    other = _other_source(task_dir, tmp_path)
    results = {}
    for components in ("bm+ocm", "bm+ocm+ccm"):
        for name, folder in (("a", task_dir), ("b", other)):
            run_dir = tmp_path / f"{components}-{name}"
            metrics = train(tiny(folder, ablation={"components": components}), run_dir)
            results[components, name] = (metrics, _final_weights(run_dir, "specific_"),
                                         _final_weights(run_dir, "shared_"))
    (metrics_a, specific_a, shared_a), (metrics_b, specific_b, shared_b) = \
        results["bm+ocm", "a"], results["bm+ocm", "b"]
    assert specific_a and all(torch.equal(specific_a[k], specific_b[k]) for k in specific_a)
    specific_metrics = [k for k in metrics_a if k.startswith("specific/")]
    assert len(specific_metrics) >= 6
    assert all(metrics_a[k] == metrics_b[k] for k in specific_metrics)
    # sanity: the sources really differ, so the shared branch (which sees them) differs
    assert any(not torch.equal(shared_a[k], shared_b[k]) for k in shared_a)
    # control: with CCM the branches exchange relations, so B1 now depends on the source
    ccm_a, ccm_b = results["bm+ocm+ccm", "a"][1], results["bm+ocm+ccm", "b"][1]
    assert any(not torch.equal(ccm_a[k], ccm_b[k]) for k in ccm_a)


# ---------------------------------------------------------------------- speed levers

def test_fast_dropout_matches_dropout_statistics_and_keeps_checkpoints():
    from training.model import FastDropout, build_model, use_fast_dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    dropout = FastDropout(0.5).train()
    y = dropout(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}  # inverted dropout: kept values scaled by 1/(1-p)
    assert abs(float((y == 0).float().mean()) - 0.5) < 0.01 and abs(float(y.mean()) - 1.0) < 0.02
    assert torch.equal(dropout.eval()(x), x)

    model = build_model(shared_layout="kinect20", specific_layout="msr20", in_channels=3,
                        num_source_classes=4, num_clusters=5, dropout=0.5)
    keys = list(model.state_dict())
    expected = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert expected > 0 and use_fast_dropout(model) == expected
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert list(model.state_dict()) == keys  # checkpoints load into either version
