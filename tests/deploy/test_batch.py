"""The batch step (codt_deploy.batch): a run's new clips clustered together by their own DTW graph,
the ids named by the reference bank's vote; ClusterModel.cluster and codt-cluster (journal, resume,
standard output) using it by default."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from codt_deploy.batch import (
    MAX_BATCH_CLIPS,
    MIN_CLIPS_PER_CLUSTER,
    BatchStep,
    bank_run_partition,
    batch_applies,
    batch_partition,
    coassociation_embedding,
    decode_clips,
    encode_clips,
    kmeans,
    knn_graph,
    pairwise_dtw,
    spectral_partition,
)
from codt_deploy.reference import dtw_band, dtw_distances, pose_frames
from tests.deploy.test_reference import _motions, banked_model  # noqa: F401  (a fixture)


def test_pairwise_dtw_is_the_paired_kernel_for_every_pair():
    clips, _ = _motions(4)
    frames = pose_frames(clips, 0.5)  # (8, 30, 24)
    matrix = pairwise_dtw(frames)
    assert matrix.shape == (8, 8) and np.allclose(matrix, matrix.T) and not np.diag(matrix).any()
    first, second = np.array([0, 2, 5]), np.array([7, 3, 1])
    expected = dtw_distances(frames[first], frames[second], dtw_band(30))
    assert np.allclose(matrix[first, second], expected)


def test_knn_graph_links_each_clip_to_its_nearest_and_itself():
    distances = np.abs(np.subtract.outer(np.arange(6.0), np.arange(6.0)))  # points on a line
    graph = knn_graph(distances, neighbours=2)
    assert np.allclose(graph, graph.T) and np.all(np.diag(graph) == 1.0)
    assert graph[0, 1] == 1.0 and graph[0, 2] == 0.0  # 0's nearest is 1, and 1's is 0 or 2
    assert graph[2, 4] == 0.0


def test_spectral_partition_finds_disconnected_groups_and_kmeans_separated_points():
    affinity = np.zeros((9, 9))
    for group in (range(0, 3), range(3, 6), range(6, 9)):
        affinity[np.ix_(group, group)] = 1.0
    labels = spectral_partition(affinity, 3)
    assert len(set(labels.tolist())) == 3
    assert all(len(set(labels[g].tolist())) == 1 for g in ([0, 1, 2], [3, 4, 5], [6, 7, 8]))
    points = np.concatenate([np.zeros((5, 2)), np.full((5, 2), 10.0)]) + 0.01 * np.arange(10)[:, None]
    assert sorted(np.bincount(kmeans(points, 2))) == [5, 5]
    with pytest.raises(ValueError, match="1 <= k <= N"):
        spectral_partition(affinity, 10)


def test_a_batch_is_clustered_by_its_own_graph_with_the_ids_of_the_vote():
    clips, kinds = _motions(10)  # 20 clips of two motions
    frames = pose_frames(clips, 0.5)
    embedding = np.random.default_rng(0).normal(size=(20, 8))  # an embedding that knows nothing
    vote = (1 - kinds).copy()  # the bank's vote names kind 0 "1" and kind 1 "0" ...
    vote[[0, 15]] = vote[[15, 0]]  # ... and gets two clips wrong
    clusters, confidence = batch_partition(frames, embedding, vote, 2)
    assert clusters.tolist() == (1 - kinds).tolist()  # the batch's own DTW graph mends them
    assert confidence.shape == (20,) and np.all((confidence > 0) & (confidence <= 1))


def test_the_coassociation_embedding_is_that_of_the_dense_matrix():
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(3), 10)  # (30,)
    partitions = [np.where(rng.random(30) < 0.8, truth, rng.integers(0, 3, 30)) for _ in range(5)]
    partitions.append(rng.integers(0, 4, 30))  # one partition of another size, other ids
    embedding = coassociation_embedding(partitions, 3)  # (30, 3)
    one_hot = np.hstack([np.eye(p.max() + 1)[p] for p in partitions])  # H (N, L)
    coassociation = one_hot @ one_hot.T / len(partitions)  # C (N, N)
    scale = 1.0 / np.sqrt(coassociation.sum(axis=1))
    values, vectors = np.linalg.eigh(coassociation * scale[:, None] * scale[None, :])
    dense = vectors[:, ::-1][:, :3]
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    assert np.allclose(np.abs(embedding @ embedding.T), np.abs(dense @ dense.T), atol=1e-8)
    found = kmeans(embedding, 3)
    assert len(set(zip(found.tolist(), truth.tolist()))) <= 5  # the consensus follows the truth
    with pytest.raises(ValueError, match="fewer than k"):
        coassociation_embedding([np.zeros(5, int)], 2)


def test_the_batch_step_needs_enough_clips_per_cluster():
    assert not batch_applies(MIN_CLIPS_PER_CLUSTER * 10 - 1, 10)
    assert batch_applies(MIN_CLIPS_PER_CLUSTER * 10, 10)
    assert not batch_applies(MAX_BATCH_CLIPS + 1, 2)


def test_clips_round_trip_through_journal_text_and_a_wrong_size_is_refused():
    frames = pose_frames(_motions(2)[0], 0.5)  # (4, T, D)
    embedding = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    texts = encode_clips(frames, embedding)
    back_frames, back_embedding = decode_clips(texts, frames.shape[1:], 6)
    assert np.allclose(back_frames, frames, atol=1e-3)
    assert np.allclose(back_embedding, embedding, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="bytes"):
        decode_clips(texts, frames.shape[1:], 7)


def test_cluster_runs_the_batch_step_on_a_large_batch_and_with_the_bank_below(  # noqa: F811
        banked_model, tiny_torch_network):  # noqa: F811
    from codt_deploy.infer import ClusterModel

    _, poses = tiny_torch_network  # 40 clips, K = 5: exactly 8 per cluster
    model = ClusterModel(banked_model.onnx_path, threads=1)
    assert model.assignment == "batch" and batch_applies(len(poses), model.num_clusters)
    voted = model.predict(poses)
    together = model.cluster(poses)
    frames = pose_frames(poses, 0.5).astype(np.float16).astype(np.float32)  # as the journal keeps them
    embedding = voted.embedding.astype(np.float16).astype(np.float32)
    expected, _ = batch_partition(frames, embedding, voted.clusters, model.num_clusters)
    assert together.clusters.tolist() == expected.tolist()
    small = model.cluster(poses[:39])  # below 8 per cluster: clustered with the bank
    assert model.bank is not None
    expected_small, _ = bank_run_partition(model.bank, frames[:39])
    assert small.clusters.tolist() == expected_small.tolist()
    vote_only = ClusterModel(banked_model.onnx_path, threads=1, assignment="reference")
    assert vote_only.assignment == "reference"
    assert vote_only.cluster(poses).clusters.tolist() == voted.clusters.tolist()


def test_codt_cluster_clusters_the_whole_run_together_also_when_resumed(banked_model, tmp_path,  # noqa: F811
                                                                        capsys, monkeypatch):
    from codt_deploy import cli
    from codt_deploy.infer import ClusterModel
    from codt_deploy.readers import read_poses
    from tests.conftest import example_paths

    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in example_paths():  # 40 clips: the batch step applies
        shutil.copy(path, inputs / path.name)
    model = ClusterModel(banked_model.onnx_path, threads=1)
    args = ["--model", str(banked_model.onnx_path), "--quiet"]

    whole = tmp_path / "whole.csv"
    assert cli.main([str(inputs), *args, "-o", str(whole)]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(whole.open()))
    assert not any(name.startswith("_") for name in rows[0])  # the journal's frames stay there
    seqs = [read_poses(inputs / r["source"].rsplit("/", 1)[-1])[0] for r in rows]
    expected = model.predict_sequences(seqs).clusters.tolist()  # ClusterModel.cluster of all 40
    assert [int(r["cluster"]) for r in rows] == expected
    assert expected != model.predict(np.stack([model.prepare(s) for s in seqs])).clusters.tolist()

    # interrupted after 20 files (Ctrl-C), then resumed: the same answer for all 40
    from codt_deploy import writers
    from tests.deploy.conftest import interrupt_journal_after

    part = tmp_path / "part.csv"
    real_write = writers.JournalSink.write_file
    interrupt_journal_after(monkeypatch, 20)
    assert cli.main([str(inputs), *args, "-o", str(part), "--batch-size", "1"]) == 130
    assert not part.exists()
    monkeypatch.setattr(writers.JournalSink, "write_file", real_write)
    assert cli.main([str(inputs), *args, "-o", str(part), "--resume"]) == 0, capsys.readouterr().err
    assert "20 files kept from the interrupted run" in capsys.readouterr().err
    resumed = {r["source"]: r["cluster"] for r in csv.DictReader(part.open())}
    assert resumed == {r["source"]: r["cluster"] for r in rows}

    # standard output holds the rows back until the whole run is clustered
    capsys.readouterr()
    assert cli.main([str(inputs), *args]) == 0
    printed = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert {r["source"]: r["cluster"] for r in printed} == {r["source"]: r["cluster"] for r in rows}


def test_a_run_past_the_limit_keeps_its_votes_and_says_so(banked_model, tmp_path, capsys,  # noqa: F811
                                                          monkeypatch, caplog):
    import codt_deploy.batch as batch
    import codt_deploy.pipeline as pipeline
    from codt_deploy import cli
    from codt_deploy.infer import ClusterModel
    from codt_deploy.readers import read_poses
    from tests.conftest import example_paths

    monkeypatch.setattr(batch, "MAX_BATCH_CLIPS", 30)
    monkeypatch.setattr(pipeline, "MAX_BATCH_CLIPS", 30)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in example_paths():  # 40 clips: 8 per cluster, but past the (lowered) limit
        shutil.copy(path, inputs / path.name)
    out = tmp_path / "out.csv"
    assert cli.main([str(inputs), "--model", str(banked_model.onnx_path), "--quiet", "-o",
                     str(out)]) == 0
    journal_free = list(csv.DictReader(out.open()))
    model = ClusterModel(banked_model.onnx_path, threads=1, assignment="reference")
    seqs = [read_poses(inputs / r["source"].rsplit("/", 1)[-1])[0] for r in journal_free]
    votes = model.predict(np.stack([model.prepare(s) for s in seqs])).clusters.tolist()
    assert [int(r["cluster"]) for r in journal_free] == votes
    assert "more than the 30 that are clustered together" in caplog.text


def test_a_small_run_clustered_with_the_bank_takes_the_bank_cluster_of_its_kind():
    from codt_deploy.reference import make_bank

    train, kinds = _motions(12, seed=3)  # (24, ...): two kinds of motion
    bank = make_bank(train, 1 - kinds, 2)  # the model calls kind 0 cluster 1 and kind 1 cluster 0
    run, run_kinds = _motions(2, seed=4)  # 4 new clips, far fewer than 8 per cluster
    clusters, confidence = bank_run_partition(bank, pose_frames(run, 0.5))
    assert clusters.tolist() == (1 - run_kinds).tolist()
    assert confidence.shape == (4,) and ((confidence > 0) & (confidence <= 1)).all()
    step = BatchStep(2, 0.5, bank.frames.shape[1:], 6, bank=bank)
    assert step.applies(1) and step.applies(15)
    assert not BatchStep(2, 0.5, bank.frames.shape[1:], 6).applies(15)  # without a bank: the vote


def test_a_bank_too_large_to_join_leaves_small_runs_their_votes(monkeypatch):
    import codt_deploy.batch as batch
    from codt_deploy.reference import make_bank

    train, kinds = _motions(12, seed=3)  # a bank of 24 clips
    step = BatchStep(2, 0.5, (30, 24), 6, bank=make_bank(train, kinds, 2))
    assert step.applies(3)
    monkeypatch.setattr(batch, "MAX_BATCH_CLIPS", 25)  # the bank and a run of 2 clips at most
    assert step.applies(1) and not step.applies(2)
    assert step.cluster(np.zeros((2, 30, 24), np.float32), np.zeros((2, 6)), np.zeros(2, int)) is None
    assert "reference bank of 24 clips is too large" in step.declines(2)
    assert step.declines(1) is None


def test_a_small_run_needs_of_the_bank_only_its_clips_nearest_neighbours():
    """The joint graph from the bank's neighbour table equals the one from every joint pair."""
    from codt_deploy.batch import bank_neighbours, knn_graph, pairwise_dtw
    from codt_deploy.reference import make_bank

    train, kinds = _motions(12, seed=5)
    bank = make_bank(train, kinds, 2)  # 24 clips
    run = pose_frames(_motions(3, seed=6)[0], 0.5)  # (6, T, D)
    rows, distances = bank_neighbours(bank)
    assert rows.shape == distances.shape == (24, 9) and (rows != np.arange(24)[:, None]).all()
    full = pairwise_dtw(np.concatenate([bank.frames, run]))  # (30, 30)
    np.testing.assert_allclose(distances, np.take_along_axis(full[:24, :24], rows, axis=1),
                               rtol=1e-5)
    step = BatchStep(2, 0.5, bank.frames.shape[1:], 6, bank=bank)
    clusters, confidence = step.cluster(run, np.zeros((6, 6)), np.zeros(6, int))
    assert step.bank_neighbour_table is step.bank_neighbour_table  # computed once
    assert clusters.tolist() == bank_run_partition(bank, run, (rows, distances))[0].tolist()
    from codt_deploy.batch import _consensus, _graph_confidence, aligned_labels

    graph = knn_graph(full)  # every joint pair's distance, as before the table
    every_pair = aligned_labels(_consensus([graph], 2), np.concatenate([bank.clusters, -np.ones(6, int)]), 2)
    assert clusters.tolist() == every_pair[24:].tolist()
    np.testing.assert_allclose(confidence, _graph_confidence(graph, every_pair)[24:])


def test_cluster_of_a_small_run_a_large_bank_cannot_join_keeps_the_votes_and_says_so(
        banked_model, tiny_torch_network, monkeypatch, caplog):  # noqa: F811
    import codt_deploy.batch as batch
    from codt_deploy.infer import ClusterModel

    _, poses = tiny_torch_network
    model = ClusterModel(banked_model.onnx_path, threads=1)
    assert model.bank is not None
    monkeypatch.setattr(batch, "MAX_BATCH_CLIPS", len(model.bank) + 2)  # a run of 3 is too many
    small = model.cluster(poses[:3])
    assert small.clusters.tolist() == model.predict(poses[:3]).clusters.tolist()
    assert f"reference bank of {len(model.bank)} clips is too large" in caplog.text
