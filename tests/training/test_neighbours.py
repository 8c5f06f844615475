"""The label-free improvements of METHOD §15: neighbour table, neighbour losses, cosine head,
spectral head initialisation, learning-rate schedule, the CPU recipe and the raw-pose baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training import losses
from training.baselines import BASELINES, flattened_poses, raw_pose_baselines
from training.clustering import spectral_labels, spherical_kmeans
from training.config import ConfigError, from_dict, resolve_config
from training.engine import scheduled_lr, stalled_warning
from training.model import CosineHead, build_model
from training.neighbours import knn_table, pose_features
from training.recipes import cpu_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def _blobs(n_per: int = 12, k: int = 3, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """k well-separated directions with small noise: (k·n_per, dim) points and their blob ids."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:k] * 5.0
    points = torch.cat([c + 0.1 * torch.randn(n_per, dim, generator=g) for c in centres])
    return points, np.repeat(np.arange(k), n_per)


def test_knn_table_matches_brute_force_and_excludes_self():
    points = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    table = knn_table(points, 4, chunk=7)  # several chunks
    unit = F.normalize(points, dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-math.inf)
    expected = similarity.topk(4, dim=1).indices
    assert table.shape == (40, 4) and table.dtype == torch.int64
    assert torch.equal(table, expected)
    assert not (table == torch.arange(40)[:, None]).any()


def test_knn_table_finds_the_blob_mates():
    points, blob = _blobs()
    table = knn_table(points, 5).numpy()
    assert (blob[table] == blob[:, None]).all()


@pytest.mark.parametrize("bad, message", [(torch.zeros(5), "(N, D)"), (torch.zeros(3, 2), "k"),
                                          (torch.full((6, 2), float("nan")), "non-finite")])
def test_knn_table_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        knn_table(bad, 3)


def test_pose_features_flatten_every_axis():
    poses = np.arange(2 * 3 * 4 * 5 * 1, dtype=np.float32).reshape(2, 3, 4, 5, 1)
    rows = pose_features(poses)
    assert rows.shape == (2, 60) and torch.equal(rows[1], torch.from_numpy(poses[1].ravel()))


def _contrastive_inputs(n: int = 6, s: int = 20, d: int = 8):
    g = torch.Generator().manual_seed(3)
    q = F.normalize(torch.randn(n, d, generator=g), dim=1)
    k = F.normalize(torch.randn(n, d, generator=g), dim=1)
    bank = F.normalize(torch.randn(s, d, generator=g), dim=1)
    return q, k, bank, torch.arange(n)


def test_neighbour_contrastive_without_neighbours_is_the_paper_loss():
    q, k, bank, ids = _contrastive_inputs()
    none = torch.zeros((len(ids), 0), dtype=torch.long)
    assert torch.allclose(losses.neighbour_contrastive_loss(q, k, bank, ids, none),
                          losses.contrastive_loss(q, k, bank, ids))


def test_neighbour_positives_lower_the_loss_and_own_slot_is_never_a_positive():
    q, k, bank, ids = _contrastive_inputs()
    nearest = (q @ bank.T).topk(2, dim=1).indices  # the closest bank slots are the neighbours
    plain = losses.contrastive_loss(q, k, bank, ids)
    with_neighbours = losses.neighbour_contrastive_loss(q, k, bank, ids, nearest)
    assert with_neighbours < plain
    # the own slot listed as a "neighbour" changes nothing: it is masked out of the bank
    own = ids[:, None]
    assert torch.allclose(losses.neighbour_contrastive_loss(q, k, bank, ids, own), plain)


def test_neighbour_consistency_is_zero_for_confident_agreement_and_has_gradients():
    labels = torch.tensor([0, 1, 2, 1])
    logits = (F.one_hot(labels, 3).float() * 50).requires_grad_(True)
    agreeing = F.one_hot(labels, 3).float()[:, None, :].repeat(1, 2, 1)  # (n, k, K)
    assert float(losses.neighbour_consistency_loss(logits, agreeing).detach()) < 1e-6
    disagreeing = F.one_hot((labels + 1) % 3, 3).float()[:, None, :].repeat(1, 2, 1)
    loss = losses.neighbour_consistency_loss(logits, disagreeing)
    loss.backward()
    assert float(loss.detach()) > 10 and logits.grad is not None and logits.grad.abs().sum() > 0


def test_cosine_head_initialised_with_kmeans_centroids_assigns_as_kmeans():
    points, _ = _blobs(k=4)
    points = points + 0.5 * torch.randn(points.shape, generator=torch.Generator().manual_seed(5))
    centroids, labels = spherical_kmeans(points, 4, generator=0)
    head = CosineHead(8, 4, temperature=0.1)
    with torch.no_grad():
        head.weight.copy_(centroids * 3.0)  # any positive scale: prototypes are re-normalised
    logits = head(points * 7.0)  # and so are the features
    assert torch.equal(logits.argmax(dim=1), labels)
    assert float(logits.abs().max()) <= 1.0 / 0.1 + 1e-5


def test_build_model_with_cosine_heads_and_init_from_centroids():
    torch.manual_seed(0)
    model = build_model(shared_layout="kinect20", specific_layout="msr20", in_channels=3,
                        num_source_classes=4, num_clusters=5, head="cosine")
    assert isinstance(model.specific_student.cluster_head, CosineHead)
    assert isinstance(model.shared_teacher.cluster_head, CosineHead)
    centroids = F.normalize(torch.randn(5, 256), dim=1)
    model.init_cluster_heads("specific", centroids)
    assert torch.equal(model.specific_teacher.cluster_head.weight, centroids)


def test_spectral_labels_recover_blobs():
    points, blob = _blobs(k=3)
    labels = spectral_labels(points.numpy(), 3, seed=0, n_neighbors=5)
    assert labels.dtype == np.int64 and len(set(zip(labels, blob))) == 3


def test_cosine_schedule_warms_up_then_decays_to_zero():
    config = from_dict({"optim": {"schedule": "cosine", "warmup_fraction": 0.1, "lr_stage1": 0.2}})
    assert scheduled_lr(config, 1, 0.0) < 0.01
    assert scheduled_lr(config, 1, 0.1) == pytest.approx(0.2)
    assert scheduled_lr(config, 1, 0.55) == pytest.approx(0.1)
    assert scheduled_lr(config, 1, 0.999) < 1e-4
    paper = from_dict({})
    assert scheduled_lr(paper, 1, 0.7) == 0.1 and scheduled_lr(paper, 2, 0.3) == 0.01


@pytest.mark.parametrize("n_target, batch, epochs_1", [(557, 32, 30), (199, 32, 85), (60, 14, 128),
                                                       (50_000, 32, 1)])
def test_cpu_recipe_is_sized_from_the_data(n_target, batch, epochs_1):
    values = cpu_recipe(n_target, 1484, threads=2)
    optim = values["optim"]
    assert optim["batch_target"] == batch and optim["batch_source"] == batch
    assert optim["batch_target"] <= max(8, n_target // 4)
    assert optim["epochs_stage1"] == epochs_1
    steps = (optim["epochs_stage1"] + optim["epochs_stage2"]) * (n_target // batch)
    horizon = 1.0 / (1.0 - values["constants"]["ema_momentum"])
    assert horizon == pytest.approx(max(10.0, 0.12 * steps), rel=1e-3)
    assert values["eval"]["every"] > optim["epochs_stage1"] + optim["epochs_stage2"]
    config = resolve_config(task="ucla2msr", recipe=values)
    assert config.anchors.mode == "spectral" and config.model.dropout == 0.0


def test_cpu_recipe_yields_to_set_overrides_and_refuses_tiny_sets():
    config = resolve_config(task="ucla2msr", recipe=cpu_recipe(557, 1484),
                            overrides=["optim.batch_target=16", "anchors.mode=none", "loss.anchor=0"])
    assert config.optim.batch_target == 16 and config.anchors.mode == "none"
    with pytest.raises(ConfigError, match="at least 4 target"):
        cpu_recipe(3, 100)


def test_neighbour_loss_needs_neighbours():
    with pytest.raises(ConfigError, match="neighbours.k"):
        from_dict({"loss": {"neighbour": 1.0}})


def test_raw_pose_baselines_find_separated_clusters():
    points, blob = _blobs(n_per=10, k=3, dim=12)
    poses = points.numpy().reshape(30, 3, 2, 2, 1)  # (N, C, T, V, M)
    result = raw_pose_baselines(poses, blob, 3, seeds=2)
    assert set(result) == set(BASELINES)
    for name in ("ward", "spectral", "spectral_dtw", "spectral_dtw_velocity"):
        assert result[name]["acc"] == pytest.approx(100.0)
        assert result[name]["acc_many_to_one"] == pytest.approx(100.0)
    over = raw_pose_baselines(poses, blob, 6, seeds=1)  # K = 6 > 3 blobs: split clusters
    assert over["ward"]["acc_many_to_one"] == pytest.approx(100.0) and over["ward"]["acc"] < 100.0
    assert np.allclose(np.linalg.norm(flattened_poses(poses), axis=1), 1.0)


def test_aligned_labels_undo_a_renaming():
    from training.engine import aligned_labels

    reference = np.array([0, 0, 1, 1, 2, 2, 3])
    renamed = np.array([2, 2, 0, 0, 3, 3, 1])  # the same partition under other ids
    assert np.array_equal(aligned_labels(renamed, reference, 4), reference)
    noisy = renamed.copy()
    noisy[0] = 1  # one sample moved: the ids still follow the bulk
    assert np.array_equal(aligned_labels(noisy, reference, 4)[1:], reference[1:])


def test_spectral_labels_of_several_views_need_equal_sizes():
    points, _ = _blobs(k=3)
    both = spectral_labels([points.numpy(), points.numpy()[:, ::-1]], 3, n_neighbors=5)
    assert both.shape == (36,)
    with pytest.raises(ValueError, match="same number of samples"):
        spectral_labels([points.numpy(), points.numpy()[:5]], 3)


def test_batchnorm_recalibration_sets_the_clean_data_statistics(task_dir):
    from training.data import load_task_data
    from training.engine import recalibrate_batchnorm

    config = from_dict({"data": {"prepared_dir": str(task_dir)}, "model": {"num_clusters": 4},
                        "eval": {"batch_size": 1000}})
    data = load_task_data(task_dir, config)
    torch.manual_seed(0)
    model = build_model(shared_layout=data.shared_layout, specific_layout=data.specific_layout,
                        in_channels=3, num_source_classes=data.num_source_classes, num_clusters=4)
    bn = model.specific_student.encoder.data_bn
    bn.running_mean.fill_(123.0)  # stale statistics, as after training on augmented views
    recalibrate_batchnorm(model, data, config, torch.device("cpu"))
    x = torch.from_numpy(np.array(data.target_train_specific.data, dtype=np.float32))
    n, c, t, v, m = x.shape
    expected = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t).mean(dim=(0, 2))  # (V·C,)
    assert torch.allclose(bn.running_mean, expected, atol=1e-4)
    assert bn.momentum == 0.1 and not model.specific_student.training


def test_stalled_stage_1_is_reported_from_the_source_loss_alone():
    """The recipe's former anchor weight 5 left the source cross-entropy at ln 10 (2.31 at epoch 10)."""
    message = stalled_warning(2.31, 10, 30)
    assert message is not None and "ln(10) = 2.303" in message and "epoch 30" in message
    assert stalled_warning(1.28, 10, 30) is None  # what anchor weight 1 reached
    assert stalled_warning(0.95 * math.log(10) - 1e-6, 10, 30) is None
    assert stalled_warning(0.9, 1, 30) is None  # one source class: no chance level to compare


def test_cpu_recipe_keeps_the_loss_weights_that_learn():
    assert cpu_recipe(557, 1484)["loss"] == {"anchor": 1.0, "ocm": 1.0, "ccm": 1.0}


def test_cpu_recipe_uses_bf16_only_where_it_is_native(monkeypatch):
    import training.recipes as recipes

    assert cpu_recipe(557, 1484, bf16=False)["runtime"]["amp"] is False
    assert cpu_recipe(557, 1484, bf16=True)["runtime"]["amp"] is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # the default follows the CPU's bf16 instructions (AMX tiles or AVX-512 BF16); plain AVX-512,
    # where oneDNN emulates bf16 and calls it supported, stays in fp32
    for amx, avx512_bf16, native in ((False, False, False), (True, False, True),
                                     (False, True, True), (True, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v,
                            raising=False)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True,
                            raising=False)
        assert recipes.fast_bf16() is native
        assert cpu_recipe(557, 1484)["runtime"]["amp"] is native


def test_cpu_recipe_refits_the_heads_after_training():
    decisions = cpu_recipe(557, 1484)["decisions"]
    assert decisions["refit_heads"] is True and decisions["refit_raw_graph"] is True
    assert from_dict({}).decisions.refit_heads is False  # the paper presets keep the trained heads


def test_cpu_recipe_refits_on_the_velocity_graph_with_the_features_at_half_weight():
    config = from_dict(cpu_recipe(557, 1484))
    from training.refit import refit_metric

    assert refit_metric(config) == "dtw_velocity" and config.decisions.raw_graph_metric == "dtw"
    assert config.decisions.refit_feature_weight == 0.5 and config.decisions.refit_steps == 3000
    paper = from_dict({}).decisions  # the paper presets: no refit, and its defaults unchanged
    assert (paper.refit_raw_metric, paper.refit_feature_weight, paper.refit_steps) == (None, 1.0, 300)


def test_cpu_recipe_refits_on_the_consensus_partition():
    assert from_dict(cpu_recipe(557, 1484)).decisions.refit_consensus is True
    assert from_dict(cpu_recipe(199, 1484)).decisions.refit_consensus is True
    assert from_dict({}).decisions.refit_consensus is False  # the paper presets: one partition


def test_cpu_recipe_warps_time_in_the_raw_pose_graph():
    assert cpu_recipe(557, 1484)["decisions"]["raw_graph_metric"] == "dtw"
    assert from_dict({}).decisions.raw_graph_metric == "euclidean"  # the paper presets
    with pytest.raises(ConfigError):
        from_dict({"decisions": {"raw_graph_metric": "cosine"}})
