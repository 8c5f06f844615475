"""METHOD §15.10: refitting the cluster heads to a label-free partition of the features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from training.config import from_dict
from training.data import load_task_data
from training.distributed import SINGLE
from training.engine import embed_split
from training.model import CosineHead
from training.refit import fit_head, refit_heads, refit_partition, refit_run, stage1_features
from training.run import build, train

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _blobs(k: int = 4, per: int = 30, dim: int = 256, seed: int = 0):
    """k well-separated directions in (k·per, dim) with their true memberships."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    labels = np.repeat(np.arange(k), per)
    points = centres[labels] + 0.15 * rng.normal(size=(k * per, dim))
    return torch.from_numpy(points).float(), labels


def test_fit_head_reproduces_a_partition_of_frozen_features():
    features, _ = _blobs()
    rng = np.random.default_rng(1)
    labels = torch.from_numpy(rng.integers(0, 4, size=len(features)))  # an arbitrary partition
    frozen = features.clone()
    head = nn.Linear(256, 4)
    agreement = fit_head(head, features, labels, steps=300)
    assert torch.equal(features, frozen)  # the features are not touched
    predicted = head(features).argmax(1)
    assert agreement == pytest.approx(float((predicted == labels).float().mean()))
    assert agreement > 0.95  # 120 points in 256-d: any partition is linearly separable


def test_fit_head_moves_cosine_prototypes_onto_the_clusters():
    features, truth = _blobs()
    head = CosineHead(256, 4, 0.1)  # random prototypes: a nearest-prototype rule, not any partition
    before = float((head(features).argmax(1) == torch.from_numpy(truth)).float().mean())
    agreement = fit_head(head, features, torch.from_numpy(truth), steps=300)
    assert before < 0.9 and agreement == 1.0


def test_refit_partition_finds_separated_clusters_and_uses_the_raw_graph():
    features, truth = _blobs()
    labels = refit_partition(features, None, 4, seed=0)
    # the same grouping up to renaming: each true cluster maps onto one found cluster
    assert all(len(set(labels[truth == c])) == 1 for c in range(4))
    assert len(set(labels)) == 4
    noise = torch.from_numpy(np.random.default_rng(2).normal(size=features.shape)).float()
    raw_rows, _ = _blobs(seed=3)  # another view with the same memberships
    with_raw = refit_partition(noise, raw_rows.numpy(), 4, seed=0)
    assert all(len(set(with_raw[truth == c])) == 1 for c in range(4))  # carried by the raw graph


def test_refit_partition_with_stage1_features_halves_the_feature_graphs():
    from training.clustering import spectral_labels

    truth_features, truth = _blobs()
    noise = torch.from_numpy(np.random.default_rng(2).normal(size=truth_features.shape)).float()
    raw_rows = _blobs(seed=3)[0].numpy()  # another view with the same memberships
    labels = refit_partition(noise, raw_rows, 4, seed=0, stage1_b1=truth_features)
    # the stage-1 graph (½) and the raw graph (1) carry the clusters against the noisy final (½)
    assert all(len(set(labels[truth == c])) == 1 for c in range(4)) and len(set(labels)) == 4
    unit = [torch.nn.functional.normalize(v, dim=1).numpy() for v in (truth_features, noise)]
    expected = spectral_labels([*unit, raw_rows], 4, seed=0, weights=[0.5, 0.5, 1.0])
    np.testing.assert_array_equal(labels, expected)  # exactly the documented graph weights


def test_refit_feature_weight_scales_the_feature_graphs_against_the_raw_graph():
    from training.clustering import spectral_labels

    truth_features, truth = _blobs()
    noise = _blobs(seed=4)[0].numpy()  # a raw view with other memberships (a shuffled grouping)
    raw_rows = noise[np.random.default_rng(5).permutation(len(noise))]
    unit = [torch.nn.functional.normalize(v, dim=1).numpy() for v in (truth_features,)]
    for weight in (0.5, 2.0):
        labels = refit_partition(truth_features, raw_rows, 4, seed=0, feature_weight=weight)
        expected = spectral_labels([*unit, raw_rows], 4, seed=0, weights=[weight, 1.0])
        np.testing.assert_array_equal(labels, expected)  # exactly the documented weights
    halves = refit_partition(truth_features, raw_rows, 4, seed=0, stage1_b1=truth_features,
                             feature_weight=0.5)
    expected = spectral_labels([*unit, *unit, raw_rows], 4, seed=0, weights=[0.25, 0.25, 1.0])
    np.testing.assert_array_equal(halves, expected)


def _same_grouping(found: np.ndarray, truth: np.ndarray) -> bool:
    """Whether two partitions are equal up to renaming the clusters."""
    pairs = set(zip(found.tolist(), truth.tolist()))
    return len(pairs) == len(set(found.tolist())) == len(set(truth.tolist()))


def test_consensus_labels_equal_the_spectral_clustering_of_the_coassociation_matrix():
    from sklearn.cluster import KMeans

    from training.clustering import consensus_labels

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
    from training.clustering import consensus_labels

    with pytest.raises(ValueError, match="at least one"):
        consensus_labels([], 2)
    with pytest.raises(ValueError, match="same number"):
        consensus_labels([np.zeros(5), np.zeros(6)], 2)
    with pytest.raises(ValueError, match="fewer than k"):
        consensus_labels([np.zeros(5, dtype=int)], 2)  # one cluster in all, k = 2


def test_refit_consensus_is_the_consensus_of_the_documented_members():
    from training.clustering import consensus_labels
    from training.engine import anchor_partition
    from training.refit import CONSENSUS_SEEDS, CONSENSUS_WEIGHT_FACTORS

    truth_features, truth = _blobs()
    raw_rows = _blobs(seed=3)[0].numpy()  # another view with the same memberships
    labels = refit_partition(truth_features, raw_rows, 4, seed=5, feature_weight=0.5,
                             consensus=True)
    assert _same_grouping(labels, truth)
    members = []
    for offset in range(CONSENSUS_SEEDS):
        members.append(anchor_partition([truth_features], None, 1.0, 4, 5 + offset))
        members.append(anchor_partition([truth_features], raw_rows, 0.0, 4, 5 + offset))
        members += [anchor_partition([truth_features], raw_rows, f * 0.5, 4, 5 + offset)
                    for f in CONSENSUS_WEIGHT_FACTORS]
    np.testing.assert_array_equal(labels, consensus_labels(members, 4, 5))
    alone = refit_partition(truth_features, None, 4, seed=5, consensus=True)  # no raw view
    assert _same_grouping(alone, truth)


def test_the_refit_graph_may_use_another_raw_metric_than_the_anchors(synthetic_task_dir):
    import scipy.sparse

    from training.refit import refit_metric, refit_raw_view

    config = from_dict({"data": {"task": "synthetic", "prepared_dir": str(synthetic_task_dir)},
                        "decisions": {"raw_graph_metric": "dtw"}})
    data = load_task_data(synthetic_task_dir, config)
    anchors_view = object()  # what the run built for its anchors
    assert refit_metric(config) == "dtw"
    assert refit_raw_view(data, config, anchors_view) is anchors_view  # same metric: reused
    velocity = config.model_copy(update={"decisions": config.decisions.model_copy(
        update={"refit_raw_metric": "dtw_velocity"})})
    assert refit_metric(velocity) == "dtw_velocity"
    view = refit_raw_view(data, velocity, anchors_view)  # another metric: built for the refit
    assert scipy.sparse.issparse(view) and view.shape == (len(data.target_train_specific),) * 2
    from training.baselines import raw_pose_view

    expected = raw_pose_view(data.target_train_specific.data, "dtw_velocity")
    assert (view != expected).nnz == 0


def test_a_run_with_the_stage1_graph_refits_from_its_stage1_checkpoint(synthetic_task_dir, tmp_path):
    config = _tiny(synthetic_task_dir, refit_heads=True, refit_stage1_graph=True)
    train(config, tmp_path / "run")
    last = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1]
    assert '"refit/stage1_graph": 1.0' in last
    # the stage-1 features are those of the stage-1 weights, not of the final ones
    from training.export import load_run

    _, _, model, _ = load_run(tmp_path / "run")
    data = load_task_data(synthetic_task_dir, config)
    final = embed_split(model, "specific", data.target_train_specific, config, CPU)[0]
    stage1 = stage1_features(model, tmp_path / "run" / "checkpoints" / "stage1.pt", data, config, CPU)
    assert stage1.shape == final.shape and not torch.allclose(stage1, final)
    _, _, model_after, _ = load_run(tmp_path / "run")  # the refitted model itself is untouched
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 model_after.state_dict().values()))


def test_refit_run_writes_a_new_exportable_run(synthetic_task_dir, tmp_path):
    train(_tiny(synthetic_task_dir, refit_heads=True), tmp_path / "run")
    record = refit_run(tmp_path / "run", tmp_path / "again", ["decisions.refit_stage1_graph=true"])
    assert record["refit/stage1_graph"] == 1.0 and "specific/head/acc" in record
    from training.export import load_run

    config, _, _, path = load_run(tmp_path / "again")
    assert config.decisions.refit_stage1_graph and path.parent == tmp_path / "again" / "checkpoints"
    assert (tmp_path / "again" / "checkpoints" / "stage1.pt").is_file()
    with pytest.raises(ValueError, match="folder of its own"):
        refit_run(tmp_path / "run", tmp_path / "run", [])


def _tiny(task_dir: Path, **decisions):
    return from_dict({"data": {"task": "ucla2msr", "prepared_dir": str(task_dir)},
                      "model": {"num_clusters": 4},
                      "optim": {"epochs_stage1": 1, "epochs_stage2": 1, "batch_source": 4,
                                "batch_target": 8},
                      "eval": {"kmeans_seeds": 2, "every": 1},
                      "decisions": decisions,
                      "runtime": {"device": "cpu", "threads": 1, "progress": False}})


def test_refit_heads_sets_students_and_teachers_from_one_partition(synthetic_task_dir):
    task_dir = synthetic_task_dir
    config = _tiny(task_dir, refit_heads=True, refit_raw_graph=False)
    data = load_task_data(task_dir, config)
    model, _, _ = build(config, data, CPU, SINGLE)
    features = embed_split(model, "specific", data.target_train_specific, config, CPU)[0]
    record = refit_heads(model, data, config, CPU, None)
    assert record["refit/clusters"] >= 2
    predicted = {}
    for branch, split in (("shared", data.target_train_shared), ("specific", data.target_train_specific)):
        student, teacher = model.students()[branch], model.teachers()[branch]
        for name, value in student.cluster_head.state_dict().items():
            assert torch.equal(teacher.cluster_head.state_dict()[name], value), (branch, name)
        predicted[branch] = embed_split(model, branch, split, config, CPU)[1].argmax(1).numpy()
        agreement = record[f"refit/{branch}/agreement"]
        assert 0.0 <= agreement <= 1.0
    # the B1 head agrees with the partition it was fitted to as often as recorded
    labels = refit_partition(features, None, 4, seed=_refit_seed(config))
    assert np.mean(predicted["specific"] == labels) == pytest.approx(record["refit/specific/agreement"])


def _refit_seed(config) -> int:
    from training.data import derive_seed

    return derive_seed(config.seed, 15)


def test_a_run_with_refit_evaluates_the_refitted_heads(any_task_dir, tmp_path):
    config = _tiny(any_task_dir, refit_heads=True)
    metrics = train(config, tmp_path / "run")
    assert "specific/head/acc" in metrics and "shared/head/acc" in metrics
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert "refit/specific/agreement" in lines[-1] and "refit/specific/agreement" not in lines[0]
