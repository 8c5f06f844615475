"""codt_deploy.reference: the reference bank that assigns new clips by their nearest training
clips, its file, and ClusterModel / codt-cluster using it by default."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from codt_deploy.errors import ModelError
from codt_deploy.reference import (
    ReferenceBank,
    load_bank,
    make_bank,
    pose_frames,
    save_bank,
    vote,
)


def _motions(n_per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clips (2·n_per, C=3, T=30, V=4, M=1): kind 0 raises joint 0, kind 1 swings joint 1
    sideways; each clip at its own speed, so only a time-warped distance matches them well."""
    rng = np.random.default_rng(seed)
    clips, kinds = [], []
    for kind in (0, 1):
        for _ in range(n_per):
            t = np.linspace(0, 1, 30) ** rng.uniform(0.5, 2.0)  # (T,) a clip's own timing
            clip = 0.05 * rng.normal(size=(3, 30, 4, 1))
            clip[1 if kind == 0 else 0, :, kind, 0] += t
            clips.append(clip)
            kinds.append(kind)
    return np.stack(clips).astype(np.float32), np.array(kinds)


def test_vote_is_the_majority_with_ties_to_the_nearest():
    clusters, shares = vote(np.array([[2, 1, 1, 0], [3, 0, 0, 3], [1, 1, 1, 1]]), 4)
    assert clusters.tolist() == [1, 3, 1]  # 1 wins; a 3-0 tie goes to the nearest (3)
    assert np.allclose(shares.sum(1), 1.0) and shares[0].tolist() == [0.25, 0.5, 0.25, 0.0]


def test_a_bank_assigns_new_clips_the_cluster_of_their_nearest_training_clips():
    train, kinds = _motions(12)
    new, new_kinds = _motions(6, seed=1)
    bank = make_bank(train, kinds, 2)
    assert bank.frames.shape == (24, 30, 24)  # D = 2·C·V·M: positions and velocities
    clusters, shares = bank.assign(new, chunk=5)  # chunks give the same answer
    assert clusters.tolist() == new_kinds.tolist()
    assert shares.shape == (12, 2) and np.allclose(shares.sum(1), 1.0)
    assert np.allclose(shares[np.arange(12), clusters], shares.max(1))
    renamed = make_bank(train, 1 - kinds, 2)  # the bank carries whatever partition it is given
    assert renamed.assign(new)[0].tolist() == (1 - new_kinds).tolist()


def test_a_bank_file_round_trips_and_refuses_what_it_cannot_be(tmp_path):
    train, kinds = _motions(5)
    bank = make_bank(train, kinds, 2)
    path = save_bank(bank, tmp_path / "m.bank.npz")
    loaded = load_bank(path, num_clusters=2, frame_shape=(30, 24))
    assert np.array_equal(loaded.clusters, bank.clusters)
    assert np.allclose(loaded.frames, bank.frames, atol=1e-3)  # stored as float16
    assert loaded.assign(train)[0].tolist() == kinds.tolist()
    with pytest.raises(ModelError, match="a bank of 2 clusters for a model of 3"):
        load_bank(path, num_clusters=3, frame_shape=(30, 24))
    with pytest.raises(ModelError, match="reference frames of shape .*re-export the model"):
        load_bank(path, num_clusters=2, frame_shape=(50, 24))
    with pytest.raises(ModelError, match="missing"):
        load_bank(tmp_path / "none.npz", num_clusters=2, frame_shape=(30, 24))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not a zip at all" * 10)
    with pytest.raises(ModelError, match="junk.npz: cannot read the reference bank"):
        load_bank(junk, num_clusters=2, frame_shape=(30, 24))
    np.savez(tmp_path / "other.npz", frames=np.zeros((2, 30, 24)))
    with pytest.raises(ModelError, match="not a reference bank"):
        load_bank(tmp_path / "other.npz", num_clusters=2, frame_shape=(30, 24))


def test_a_bank_refuses_clusters_outside_the_model_and_non_finite_frames():
    frames = pose_frames(_motions(2)[0], 0.5)
    with pytest.raises(ValueError, match="outside"):
        ReferenceBank(frames=frames, clusters=np.array([0, 1, 2, 0]), num_clusters=2)
    frames[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ReferenceBank(frames=frames, clusters=np.array([0, 1, 1, 0]), num_clusters=2)


@pytest.fixture(scope="module")
def banked_model(tiny_torch_network, tmp_path_factory):
    """The tiny network exported with a reference bank of its calibration clips."""
    from codt_deploy.preprocess import PreprocessConfig
    from tests.conftest import TINY_LAYOUT
    from training.export import EvalSet, export_network

    net, poses = tiny_torch_network
    out = tmp_path_factory.mktemp("banked")
    return export_network(net, EvalSet(poses=poses[20:], labels=None, class_names=None),
                          out_dir=out, name="banked", task="tiny-test",
                          preprocess=PreprocessConfig(layout=TINY_LAYOUT), reference_poses=poses[:20],
                          training={"target_split": {"mode": "all"}, "target_clips": 20})


def test_a_model_with_a_bank_assigns_by_its_vote_by_default(banked_model, tiny_torch_network):
    from codt_deploy.infer import ClusterModel

    _, poses = tiny_torch_network
    manifest = banked_model.manifest
    assert manifest.reference is not None and manifest.reference.clips == 20
    assert manifest.training == {"target_split": {"mode": "all"}, "target_clips": 20}
    default = ClusterModel(banked_model.onnx_path, threads=1)
    head = ClusterModel(banked_model.onnx_path, threads=1, assignment="head")
    assert (default.assignment, head.assignment) == ("batch", "head")
    voted, argmax = default.predict(poses), head.predict(poses)
    bank = default.bank
    assert bank is not None
    expected, shares = bank.assign(poses)
    assert np.array_equal(voted.clusters, expected) and np.allclose(voted.probabilities, shares)
    assert np.array_equal(argmax.clusters, argmax.probabilities.argmax(1))
    assert np.array_equal(bank.clusters, head.predict(poses[:20]).clusters)  # the head's partition
    assert np.allclose(voted.embedding, argmax.embedding)  # the network's embedding either way


def test_a_missing_or_replaced_bank_is_a_model_error(banked_model, tmp_path):
    from codt_deploy.infer import ClusterModel
    from codt_deploy.models import resolve_model

    folder = tmp_path / "copy"
    shutil.copytree(banked_model.onnx_path.parent, folder)
    onnx = folder / "banked.onnx"
    bank = folder / banked_model.manifest.reference.file
    bank.write_bytes(bank.read_bytes()[:-7] + b"changed")
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        resolve_model(onnx)
    bank.unlink()
    with pytest.raises(ModelError, match="reference bank of model 'banked' is missing"):
        ClusterModel(onnx)
    plain = folder / "plain.json"  # a model without a bank cannot be asked to use one
    data = json.loads((folder / "banked.json").read_text())
    data.pop("reference")
    shutil.copy(onnx, folder / "plain.onnx")
    plain.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="has no reference bank"):
        ClusterModel(folder / "plain.onnx", assignment="reference")
    assert ClusterModel(folder / "plain.onnx").assignment == "head"


def test_codt_cluster_uses_the_bank_unless_told_and_names_clusters_label_free(banked_model, tmp_path,
                                                                          capsys):
    import csv

    from codt_deploy import cli
    from tests.conftest import example_paths

    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in example_paths()[:6]:
        shutil.copy(path, inputs / path.name)
    rows = {}
    for assign in ("auto", "head"):
        out = tmp_path / f"{assign}.csv"
        assert cli.main([str(inputs), "--model", str(banked_model.onnx_path), "--quiet", "-o",
                         str(out), "--assign", assign]) == 0, capsys.readouterr().err
        rows[assign] = list(csv.DictReader(out.open()))
    from codt_deploy.infer import ClusterModel
    from codt_deploy.readers import read_poses

    model = ClusterModel(banked_model.onnx_path, threads=1)
    seqs = [read_poses(inputs / r["source"].rsplit("/", 1)[-1])[0] for r in rows["auto"]]
    assert [int(r["cluster"]) for r in rows["auto"]] == model.predict_sequences(seqs).clusters.tolist()
    head = ClusterModel(banked_model.onnx_path, threads=1, assignment="head")
    assert [int(r["cluster"]) for r in rows["head"]] == head.predict_sequences(seqs).clusters.tolist()
    assert "eval_cluster_name" not in rows["auto"][0]


def test_the_search_finds_the_exact_dtw_neighbours_and_a_pruned_bank_is_refused():
    import dataclasses

    from codt_deploy.reference import dtw_band, dtw_distances

    train, kinds = _motions(15, seed=2)
    queries = pose_frames(_motions(4, seed=3)[0], 0.5)  # (8, T, D)
    bank = make_bank(train, kinds, 2)
    exact = np.stack([dtw_distances(np.repeat(q[None], len(bank), 0), bank.frames, dtw_band(30))
                      for q in queries])  # (8, 30) every pair
    found = bank.nearest(queries)  # (8, 10)
    assert np.allclose(np.take_along_axis(exact, found, axis=1), np.sort(exact, axis=1)[:, :10],
                       rtol=1e-4)
    with pytest.raises(ValueError, match="searches every bank clip"):
        dataclasses.replace(bank, candidates=12)


def test_the_all_pairs_dtw_equals_the_paired_kernel():
    from codt_deploy.reference import dtw_cross_distances, dtw_distances

    clips, _ = _motions(4)
    frames = pose_frames(clips, 0.5)  # (8, 30, 24)
    queries, references = frames[:3], frames[3:]
    for band in (0, 3, 29):
        cross = dtw_cross_distances(queries, references, band)  # (3, 5)
        paired = dtw_distances(np.repeat(queries, 5, axis=0), np.tile(references, (3, 1, 1)), band)
        assert cross.shape == (3, 5) and np.allclose(cross, paired.reshape(3, 5), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="band"):
        dtw_cross_distances(queries, references, -1)


def _two_person_clips(n: int, seed: int = 0) -> np.ndarray:
    """Clips (n, C=3, T=20, V=4, M=2) with both bodies moving, each body its own motion."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, 20, 4, 2)).astype(np.float32)


def test_dtw_compares_two_person_clips_in_either_body_order():
    from codt_deploy.reference import body_orders, dtw_cross_distances, dtw_distances

    clips = _two_person_clips(4)
    frames = pose_frames(clips, 0.5)  # (4, 20, 48)
    swapped = pose_frames(clips[..., ::-1], 0.5)  # the same clips, the file's bodies the other way
    cross = dtw_cross_distances(frames, swapped, 2, persons=2)  # (4, 4)
    assert np.allclose(np.diag(cross), 0.0, atol=1e-4)
    assert np.allclose(cross, dtw_cross_distances(frames, frames, 2, persons=2), atol=1e-4)
    assert (np.diag(dtw_cross_distances(frames, swapped, 2)) > 1.0).all()  # one body order
    assert np.allclose(dtw_distances(frames, swapped, 2, persons=2), 0.0, atol=1e-4)
    # single-person clips in a two-person layout (the second body empty): one pass, same values
    alone = clips.copy()
    alone[..., 1] = 0.0
    single = pose_frames(alone, 0.5)
    assert body_orders(single, single, 2) == [(0, 1)]
    assert np.array_equal(dtw_cross_distances(single, single, 2, persons=2),
                          dtw_cross_distances(single, single, 2))
    with pytest.raises(ValueError, match="cannot hold 5 bodies"):
        dtw_cross_distances(frames, frames, 2, persons=5)


def test_a_two_person_bank_votes_whatever_order_the_file_lists_the_bodies(tmp_path):
    import dataclasses

    clips = _two_person_clips(12, seed=1)
    bank = make_bank(clips, np.arange(12) % 3, 3)
    assert bank.persons == 2
    bank = dataclasses.replace(bank, neighbours=1)
    clusters, _ = bank.assign(clips[..., ::-1])  # every clip with its bodies swapped
    assert np.array_equal(clusters, np.arange(12) % 3)
    path = save_bank(bank, tmp_path / "bank.npz")
    loaded = load_bank(path, num_clusters=3, frame_shape=bank.frames.shape[1:], persons=2)
    assert loaded.persons == 2


def test_a_real_two_person_ntu_clip_is_its_own_nearest_with_its_bodies_swapped(shared_data):
    from codt_deploy.preprocess import PreprocessConfig, preprocess
    from codt_deploy.readers import read_poses
    from codt_deploy.reference import dtw_band, dtw_cross_distances

    (sequence,) = read_poses(shared_data / "ntu_rgbd_samples" / "S001C003P008R002A058.skeleton")
    poses = preprocess(sequence, PreprocessConfig(layout="ntu25", persons=2))[None]  # (1, C, T, V, 2)
    assert (np.abs(poses).sum(axis=(0, 1, 2, 3)) > 0).all()  # handshaking: both bodies tracked
    frames = pose_frames(poses, 0.5)
    swapped = pose_frames(poses[..., ::-1], 0.5)
    band = dtw_band(frames.shape[1])
    assert dtw_cross_distances(frames, swapped, band, persons=2)[0, 0] < 1e-4
    assert dtw_cross_distances(frames, swapped, band)[0, 0] > 0.1


def test_the_raw_pose_view_reads_the_coordinates_and_not_a_2d_detectors_score():
    from codt_deploy.reference import dtw_cross_distances, flattened_poses

    clips, _ = _motions(3)  # (6, C=3, T, V, M): read here as x, y, score
    rescored = clips.copy()
    rescored[:, 2] = np.random.default_rng(0).uniform(0.2, 1.0, size=rescored[:, 2].shape)
    assert np.array_equal(pose_frames(clips, 0.5, coordinates=2), pose_frames(clips[:, :2], 0.5))
    assert np.array_equal(flattened_poses(clips, 2), flattened_poses(rescored, 2))
    same = dtw_cross_distances(pose_frames(clips, 0.5, 2), pose_frames(rescored, 0.5, 2), 3)
    assert np.allclose(np.diag(same), 0.0, atol=1e-5)
    assert (np.diag(dtw_cross_distances(pose_frames(clips, 0.5), pose_frames(rescored, 0.5), 3)) > 0.1).all()


def test_a_2d_score_model_banks_and_votes_on_x_and_y_only(tiny_torch_network, tmp_path):
    from codt_deploy.infer import ClusterModel
    from codt_deploy.preprocess import PreprocessConfig
    from tests.conftest import TINY_LAYOUT
    from training.export import EvalSet, export_network

    net, poses = tiny_torch_network  # (N, 3, T, V, M), here read as x, y, score
    config = PreprocessConfig(layout=TINY_LAYOUT, channels="xy_score")
    exported = export_network(net, EvalSet(poses=poses[20:], labels=None, class_names=None),
                              out_dir=tmp_path, name="scored", task="tiny-test", preprocess=config,
                              reference_poses=poses[:20])
    model = ClusterModel(exported.onnx_path, threads=1, assignment="reference")
    _, _, t, v, m = poses.shape
    assert model.bank is not None and model.bank.frames.shape[1:] == (t, 2 * 2 * v * m)
    rescored = poses.copy()
    rescored[:, 2] = np.random.default_rng(1).uniform(0.2, 1.0, size=rescored[:, 2].shape)
    assert np.array_equal(model.bank.assign(poses)[0], model.bank.assign(rescored)[0])
    step = ClusterModel(exported.onnx_path, threads=1).batch_step
    assert step is not None and step.coordinates == 2
    assert np.array_equal(step.frames(poses), step.frames(rescored))
