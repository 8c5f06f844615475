"""training.labelfree: the partitions (spectral, consensus, anchors, refit), the baselines built
from them, and the hooks that training calls (anchors, precise BatchNorm, the head refit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codt_deploy.batch import EMBEDDING_WEIGHT
from training.baselines import BASELINES, raw_pose_baselines
from training.config import from_dict
from training.data import derive_seed, load_task_data
from training.distributed import SINGLE
from training.engine import embed_split
from training.labelfree.hooks import (
    REFIT_METRIC,
    anchor_labels,
    fit_head,
    recalibrate_batchnorm,
    refit_heads,
    refit_run,
)
from training.labelfree.partition import (
    CONSENSUS_SEEDS,
    CONSENSUS_WEIGHT_FACTORS,
    FEATURE_AGREEMENT_FLOOR,
    aligned_labels,
    anchor_partition,
    consensus_labels,
    graph_agreement,
    refit_members,
    refit_partition,
    spectral_labels,
)
from training.labelfree.views import flattened_poses, knn_affinity, raw_pose_graph
from training.model import build_model
from training.run import build, train

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _blobs(k: int = 4, per: int = 30, dim: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k well-separated directions in (k·per, dim), L2-normalised, with their true memberships."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    labels = np.repeat(np.arange(k), per)
    points = centres[labels] + 0.15 * rng.normal(size=(k * per, dim))
    return points / np.linalg.norm(points, axis=1, keepdims=True), labels


def _same_grouping(found: np.ndarray, truth: np.ndarray) -> bool:
    """Whether two partitions are equal up to renaming the clusters."""
    pairs = set(zip(found.tolist(), truth.tolist()))
    return len(pairs) == len(set(found.tolist())) == len(set(truth.tolist()))


# ---------------------------------------------------------------------- partitions (numpy)

def test_spectral_labels_recover_blobs_and_need_views_of_one_size():
    points, truth = _blobs(k=3, per=12, dim=8)
    labels = spectral_labels(points, 3, seed=0, n_neighbors=5)
    assert labels.dtype == np.int64 and _same_grouping(labels, truth)
    both = spectral_labels([points, points[:, ::-1]], 3, n_neighbors=5)
    assert both.shape == (36,)
    with pytest.raises(ValueError, match="same number of samples"):
        spectral_labels([points, points[:5]], 3)


def test_aligned_labels_undo_a_renaming():
    reference = np.array([0, 0, 1, 1, 2, 2, 3])
    renamed = np.array([2, 2, 0, 0, 3, 3, 1])  # the same partition under other ids
    assert np.array_equal(aligned_labels(renamed, reference, 4), reference)
    noisy = renamed.copy()
    noisy[0] = 1  # one sample moved: the ids still follow the bulk
    assert np.array_equal(aligned_labels(noisy, reference, 4)[1:], reference[1:])


def test_consensus_labels_equal_the_spectral_clustering_of_the_coassociation_matrix():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 15)  # (60,)
    members = []
    for _ in range(7):  # noisy copies: 15 % of the samples moved to a random cluster each time
        noisy = truth.copy()
        moved = rng.random(len(truth)) < 0.15
        noisy[moved] = rng.integers(0, 4, size=int(moved.sum()))
        members.append(noisy * 3 + 11)  # any integer ids
    labels = consensus_labels(members, 4, seed=0)
    assert labels.dtype == np.int64 and labels.shape == (60,)
    assert _same_grouping(labels, truth)  # the majority grouping survives the noise
    # the same as forming C = H Hᵀ / m and clustering its normalised top-k eigenvectors
    together = np.mean([m[:, None] == m[None, :] for m in members], axis=0)  # C (60, 60)
    inv_sqrt = 1.0 / np.sqrt(together.sum(axis=1))
    values, vectors = np.linalg.eigh(inv_sqrt[:, None] * together * inv_sqrt[None, :])
    top = vectors[:, np.argsort(values)[::-1][:4]]  # (60, 4)
    top /= np.linalg.norm(top, axis=1, keepdims=True)
    direct = KMeans(4, n_init=10, random_state=0).fit_predict(top)
    assert _same_grouping(labels, direct)
    assert _same_grouping(consensus_labels([truth] * 3, 4), truth)  # agreement is kept exactly


def test_consensus_labels_refuse_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        consensus_labels([], 2)
    with pytest.raises(ValueError, match="same number"):
        consensus_labels([np.zeros(5), np.zeros(6)], 2)
    with pytest.raises(ValueError, match="fewer than k"):
        consensus_labels([np.zeros(5, dtype=int)], 2)  # one cluster in all, k = 2


def test_refit_members_are_the_documented_graph_mixes_when_the_features_agree_with_the_raw_graph():
    features, truth = _blobs()
    raw_rows = features + 1e-3 * _blobs(seed=3)[0]  # a raw view with the features' neighbours
    members, agreement = refit_members(features, raw_rows, 4, seed=5, feature_weight=0.5)
    assert agreement == graph_agreement(knn_affinity(features), knn_affinity(raw_rows))
    assert agreement >= FEATURE_AGREEMENT_FLOOR
    assert len(members) == CONSENSUS_SEEDS * (2 + len(CONSENSUS_WEIGHT_FACTORS))
    for offset in range(CONSENSUS_SEEDS):
        seed = 5 + offset
        found = members[offset * 5:(offset + 1) * 5]
        np.testing.assert_array_equal(found[0], spectral_labels([features], 4, seed=seed))
        np.testing.assert_array_equal(found[1], spectral_labels([raw_rows], 4, seed=seed))
        for member, factor in zip(found[2:], CONSENSUS_WEIGHT_FACTORS):
            expected = spectral_labels([features, raw_rows], 4, seed=seed, weights=[factor * 0.5, 1.0])
            np.testing.assert_array_equal(member, expected)
    labels, recorded = refit_partition(features, raw_rows, 4, seed=5)
    np.testing.assert_array_equal(labels, consensus_labels(members, 4, 5))
    assert recorded == agreement and _same_grouping(labels, truth)
    alone, no_agreement = refit_members(features, None, 4, seed=5)  # no raw view
    assert len(alone) == CONSENSUS_SEEDS and np.isnan(no_agreement)


def test_the_raw_graph_leads_the_refit_when_the_features_disagree_with_it():
    _, truth = _blobs()
    noise = np.random.default_rng(2).normal(size=(len(truth), 256))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    raw_rows = _blobs(seed=3)[0]  # the raw view holds the memberships, the features do not
    members, agreement = refit_members(noise, raw_rows, 4, seed=0)
    assert agreement < FEATURE_AGREEMENT_FLOOR
    assert len(members) == 2 * CONSENSUS_SEEDS  # the raw graph alone, and with the features at ¼
    for offset in range(CONSENSUS_SEEDS):
        np.testing.assert_array_equal(members[2 * offset],
                                      spectral_labels([raw_rows], 4, seed=offset))
        np.testing.assert_array_equal(
            members[2 * offset + 1],
            spectral_labels([noise, raw_rows], 4, seed=offset, weights=[EMBEDDING_WEIGHT, 1.0]))
    assert _same_grouping(refit_partition(noise, raw_rows, 4, seed=0)[0], truth)


def test_graph_agreement_is_the_share_of_feature_links_the_raw_graph_holds():
    from scipy import sparse

    ring = sparse.csr_matrix(np.eye(6) + np.eye(6, k=1) + np.eye(6, k=-1))  # links 0-1 … 4-5
    half = sparse.csr_matrix(np.eye(6) + np.diag([1.0, 0, 1.0, 0, 1.0], 1) +
                             np.diag([1.0, 0, 1.0, 0, 1.0], -1))  # 0-1, 2-3, 4-5
    assert graph_agreement(ring, ring) == 1.0
    assert graph_agreement(ring, half) == pytest.approx(3 / 5)  # self-links never count
    assert graph_agreement(half, ring) == 1.0
    assert graph_agreement(sparse.csr_matrix(np.eye(6)), ring) == 0.0  # no links at all


def test_the_anchor_partition_is_the_raw_graph_alone():
    points, truth = _blobs(k=3, per=12, dim=8)
    graph = raw_pose_graph(points.reshape(36, 2, 4, 1, 1), "dtw")  # (N, C, T, V, M) → sparse
    labels = anchor_partition(graph, 3, seed=7)
    np.testing.assert_array_equal(labels, spectral_labels([graph], 3, seed=7))


def test_raw_pose_baselines_find_separated_clusters():
    points, blob = _blobs(k=3, per=10, dim=12)
    poses = points.reshape(30, 3, 2, 2, 1)  # (N, C, T, V, M)
    result = raw_pose_baselines(poses, blob, 3, seeds=2)
    assert set(result) == set(BASELINES)
    for name in ("ward", "spectral", "spectral_dtw", "spectral_dtw_velocity"):
        assert result[name]["acc"] == pytest.approx(100.0)
        assert result[name]["acc_many_to_one"] == pytest.approx(100.0)
    over = raw_pose_baselines(poses, blob, 6, seeds=1)  # K = 6 > 3 blobs: split clusters
    assert over["ward"]["acc_many_to_one"] == pytest.approx(100.0) and over["ward"]["acc"] < 100.0
    assert np.allclose(np.linalg.norm(flattened_poses(poses), axis=1), 1.0)


# ---------------------------------------------------------------------- hooks (torch)

def test_fit_head_reproduces_a_partition_of_frozen_features():
    features = torch.from_numpy(16 * _blobs()[0]).float()  # rows of norm 16, as raw features
    labels = torch.from_numpy(np.random.default_rng(1).integers(0, 4, size=len(features)))
    frozen = features.clone()
    head = nn.Linear(256, 4)
    agreement = fit_head(head, features, labels, steps=300)
    assert torch.equal(features, frozen)  # the features are not touched
    predicted = head(features).argmax(1)
    assert agreement == pytest.approx(float((predicted == labels).float().mean()))
    assert agreement > 0.95  # 120 points in 256-d: any partition is linearly separable


def test_batchnorm_recalibration_sets_the_clean_data_statistics(task_dir):
    config = from_dict({"data": {"prepared_dir": str(task_dir)}, "model": {"num_clusters": 4},
                        "eval": {"batch_size": 1000}})
    data = load_task_data(task_dir, config)
    torch.manual_seed(0)
    model = build_model(shared_layout=data.shared_layout, specific_layout=data.specific_layout,
                        in_channels=3, num_source_classes=data.num_source_classes, num_clusters=4)
    bn = model.specific_student.encoder.data_bn
    bn.running_mean.fill_(123.0)  # stale statistics, as after training on augmented views
    recalibrate_batchnorm(model, data, config, CPU)
    x = torch.from_numpy(np.array(data.target_train_specific.data, dtype=np.float32))
    n, c, t, v, m = x.shape
    expected = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t).mean(dim=(0, 2))  # (V·C,)
    assert torch.allclose(bn.running_mean, expected, atol=1e-4)
    assert bn.momentum == 0.1 and not model.specific_student.training


def _tiny(task_dir: Path, **labelfree):
    return from_dict({"data": {"task": "ucla2msr", "prepared_dir": str(task_dir)},
                      "model": {"num_clusters": 4},
                      "optim": {"epochs_stage1": 1, "epochs_stage2": 1, "batch_source": 4,
                                "batch_target": 8},
                      "eval": {"kmeans_seeds": 2, "every": 1},
                      "labelfree": {"refit_steps": 300, **labelfree},
                      "runtime": {"device": "cpu", "threads": 1, "progress": False}})


def test_anchor_labels_are_the_dtw_partition_in_the_b1_heads_ids(synthetic_task_dir):
    config = _tiny(synthetic_task_dir, anchors=True)
    data = load_task_data(synthetic_task_dir, config)
    model, _, banks = build(config, data, CPU, SINGLE)
    for bank in banks.values():  # random bank features, as the reference code starts
        bank.randomize_(torch.Generator().manual_seed(0))
        bank.filled.fill_(True)
    anchors = anchor_labels(model, banks, data, config, CPU).numpy()
    graph = raw_pose_graph(data.target_train_specific.data, "dtw")
    partition = anchor_partition(graph, 4, derive_seed(config.seed, 14))
    assert _same_grouping(anchors, partition)  # the same partition, renamed
    reference = model.teacher_cluster_logits(banks["specific"].read(), "specific").argmax(1).numpy()
    np.testing.assert_array_equal(anchors, aligned_labels(partition, reference, 4))


def test_refit_heads_sets_students_and_teachers_from_one_partition(synthetic_task_dir):
    config = _tiny(synthetic_task_dir, refit=True)
    data = load_task_data(synthetic_task_dir, config)
    model, _, _ = build(config, data, CPU, SINGLE)
    features = embed_split(model, "specific", data.target_train_specific, config, CPU)[0]
    record = refit_heads(model, data, config, CPU)
    assert record["refit/clusters"] >= 2
    predicted = {}
    for branch, split in (("shared", data.target_train_shared), ("specific", data.target_train_specific)):
        student, teacher = model.students()[branch], model.teachers()[branch]
        for name, value in student.cluster_head.state_dict().items():
            assert torch.equal(teacher.cluster_head.state_dict()[name], value), (branch, name)
        predicted[branch] = embed_split(model, branch, split, config, CPU)[1].argmax(1).numpy()
        assert 0.0 <= record[f"refit/{branch}/agreement"] <= 1.0
    # the B1 head agrees with the partition it was fitted to as often as recorded
    unit = F.normalize(features, dim=1).numpy()
    graph = raw_pose_graph(data.target_train_specific.data, REFIT_METRIC)
    labels, agreement = refit_partition(unit, graph, 4, seed=derive_seed(config.seed, 15))
    assert agreement == pytest.approx(record["refit/feature_agreement"])
    assert np.mean(predicted["specific"] == labels) == pytest.approx(record["refit/specific/agreement"])


def test_a_run_with_refit_evaluates_the_refitted_heads(any_task_dir, tmp_path):
    metrics = train(_tiny(any_task_dir, refit=True), tmp_path / "run")
    assert "specific/head/acc" in metrics and "shared/head/acc" in metrics
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert "refit/specific/agreement" in lines[-1] and "refit/specific/agreement" not in lines[0]
    from training.export import _refit_feature_agreement

    agreement = json.loads(lines[-1])["refit/feature_agreement"]
    assert 0.0 <= agreement <= 1.0  # the manifest records it with the exported model
    assert _refit_feature_agreement(tmp_path / "run") == agreement


def test_refit_run_writes_a_new_exportable_run(synthetic_task_dir, tmp_path):
    train(_tiny(synthetic_task_dir), tmp_path / "run")
    record = refit_run(tmp_path / "run", tmp_path / "again", ["labelfree.refit_steps=200"])
    assert "specific/head/acc" in record and "refit/specific/agreement" in record
    from training.export import _refit_feature_agreement, load_run

    assert _refit_feature_agreement(tmp_path / "again") == record["refit/feature_agreement"]
    assert _refit_feature_agreement(tmp_path / "run") is None  # trained without the refit

    config, _, _, path = load_run(tmp_path / "again")
    assert config.labelfree.refit and config.labelfree.refit_steps == 200
    assert path.parent == tmp_path / "again" / "checkpoints"
    assert (tmp_path / "again" / "checkpoints" / "stage1.pt").is_file()
    with pytest.raises(ValueError, match="folder of its own"):
        refit_run(tmp_path / "run", tmp_path / "run", [])
