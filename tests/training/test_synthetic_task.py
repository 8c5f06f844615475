"""The synthetic prepared task the engine, run and DDP tests use where ../shared/data is absent
reads like one ``training.prepare`` wrote, and is the same for the same seed."""

from __future__ import annotations

import numpy as np

from codt_deploy.layouts import get_layout
from tests.training.synthetic import write_synthetic_task
from training.preparation.prepared import load_split, load_task


def test_the_synthetic_task_reads_like_a_prepared_one(synthetic_task_dir):
    task = load_task(synthetic_task_dir)
    assert (task.name, task.shared, task.specific, task.num_clusters) == \
        ("ucla2msr", "kinect20", "msr20", 20)
    assert task.counts == {"source_train": 24, "target_train": 24, "target_eval": 24}
    source = load_split(synthetic_task_dir, "source_train", "shared")
    assert source.data.shape == (24, 3, 50, 20, 1) and source.labelled
    assert sorted(set(source.labels.tolist())) == list(range(10))
    for layout in ("kinect20", "msr20"):
        train = load_split(synthetic_task_dir, "target_train", layout)
        evaluation = load_split(synthetic_task_dir, "target_eval", layout)
        assert not train.labelled and (train.labels == -1).all()  # withheld, as prepare does
        assert evaluation.labelled and evaluation.num_classes == 20
        np.testing.assert_array_equal(train.data, evaluation.data)
        data = np.asarray(train.data)
        assert np.isfinite(data).all() and data.std() > 0.1
        centre = get_layout(layout).center  # preprocessed: centred on this joint in every frame
        assert np.abs(data[:, :, :, list(centre)].mean(axis=3)).max() < 1e-5
        assert (np.abs(data).sum(axis=(1, 3, 4)) > 0).all()  # no empty frames
    assert len({tuple(np.asarray(source.data[i]).ravel()[:10]) for i in range(24)}) == 24


def test_the_same_seed_writes_the_same_arrays(tmp_path):
    a = write_synthetic_task(tmp_path / "a" / "t")
    b = write_synthetic_task(tmp_path / "b" / "t")
    c = write_synthetic_task(tmp_path / "c" / "t", seed=1)
    for name in ("source_train/data_kinect20.npy", "target_eval/data_msr20.npy"):
        assert np.load(a / name).tobytes() == np.load(b / name).tobytes()
        assert np.load(a / name).tobytes() != np.load(c / name).tobytes()
