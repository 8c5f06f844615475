"""``python -m training.run`` end to end on a tiny slice of real prepared data (some tests also on
a synthetic task of the same shape): outputs, resume, reproducibility on CPU, preparing a missing
task folder, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import training.run as run_module
from training import checkpoint as ckpt
from training.config import from_dict, load_yaml
from training.run import main, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["model.num_clusters=6", "optim.epochs_stage1=1", "optim.epochs_stage2=1",
        "optim.batch_source=4", "optim.batch_target=8", "eval.kmeans_seeds=2",
        "runtime.device=cpu", "runtime.threads=1", "runtime.progress=false"]


def _args(task_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    sets = [f"data.prepared_dir={task_dir}", *TINY, *extra]
    return ["--task", "ucla2msr", "--run-dir", str(run_dir), "--no-export", "-q",
            *[a for s in sets for a in ("--set", s)]]


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(ckpt.checkpoint_dir(run_dir) / ckpt.FINAL)["model"]


@pytest.fixture(scope="module")
def finished_run(task_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "a"
    assert main(_args(task_dir, run_dir)) == 0
    return run_dir


@pytest.mark.slow
def test_two_epoch_run_writes_metrics_checkpoints_and_config(finished_run, capsys):
    records = _records(finished_run)
    assert [r["epoch"] for r in records] == [1, 2] and [r["stage"] for r in records] == [1, 2]
    assert [r["lr"] for r in records] == [0.1, 0.01]
    stage1, stage2 = records
    assert {"loss/supervised", "loss/reconstruction", "loss/contrastive", "loss/total"} <= set(stage1)
    assert "loss/ocm" not in stage1 and {"loss/ocm", "loss/ccm"} <= set(stage2)
    for record in records:
        assert record["time_s"] > 0 and record["target_samples_per_s"] > 0
        assert all(record[k] is not None for k in record if k.startswith("loss/"))
    assert "specific/kmeans/acc" in stage1 and "specific/head/acc" not in stage1
    assert {"shared/head/acc", "specific/head/nmi", "kmeans_init/time_s"} <= set(stage2)
    for name in (ckpt.LAST, ckpt.STAGE1, ckpt.FINAL):
        assert (ckpt.checkpoint_dir(finished_run) / name).is_file()
    final = ckpt.load_checkpoint(ckpt.checkpoint_dir(finished_run) / ckpt.FINAL)
    assert (final["epoch"], final["stage"]) == (2, 2)
    assert final["metrics"]["specific/head/acc"] == stage2["specific/head/acc"]
    assert ckpt.load_checkpoint(ckpt.checkpoint_dir(finished_run) / ckpt.STAGE1)["epoch"] == 1
    config = from_dict(load_yaml(finished_run / "config.yaml"))
    assert config.optim.epochs_stage1 == 1 and config.model.num_clusters == 6
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["specific/head/acc"] == stage2["specific/head/acc"]


def test_final_table_is_printed(any_task_dir, tmp_path, capsys):
    assert main(_args(any_task_dir, tmp_path / "run", "optim.epochs_stage2=0")) == 0
    out = capsys.readouterr().out
    assert "| CoDT-B1 | k-means † |" in out and "| CoDT-B0 | k-means † |" in out


@pytest.mark.slow
def test_resume_continues_where_it_stopped(finished_run, task_dir, tmp_path, monkeypatch):
    real_epoch = run_module.train_one_epoch

    def interrupted(*args, epoch, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, epoch=epoch, **kwargs)

    run_dir = tmp_path / "b"
    monkeypatch.setattr(run_module, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(_args(task_dir, run_dir))
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir))["epoch"] == 1
    assert not (ckpt.checkpoint_dir(run_dir) / ckpt.FINAL).exists()
    monkeypatch.setattr(run_module, "train_one_epoch", real_epoch)

    assert main(["--resume", "--run-dir", str(run_dir), "--no-export", "-q"]) == 0
    assert [r["epoch"] for r in _records(run_dir)] == [1, 2]
    resumed, uninterrupted = _final_model(run_dir), _final_model(finished_run)
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
    assert _records(run_dir)[1]["loss/total"] == _records(finished_run)[1]["loss/total"]


def _outcome(record: dict) -> dict:
    """A metrics line without its timings: losses, lr, evaluation."""
    return {k: v for k, v in record.items()
            if k.startswith(("loss/", "shared/", "specific/")) or k in ("epoch", "stage", "lr")}


@pytest.mark.slow
def test_reproducible_on_cpu_with_a_seed(finished_run, task_dir, tmp_path):
    assert main(_args(task_dir, tmp_path / "again")) == 0
    again, reference = _final_model(tmp_path / "again"), _final_model(finished_run)
    assert all(torch.equal(again[k], v) for k, v in reference.items())
    again_outcomes = [_outcome(r) for r in _records(tmp_path / "again")]
    assert again_outcomes == [_outcome(r) for r in _records(finished_run)]
    assert main(_args(task_dir, tmp_path / "seed1", "seed=1")) == 0
    other = _final_model(tmp_path / "seed1")
    assert any(not torch.equal(other[k], v) for k, v in reference.items())


@pytest.mark.slow
def test_missing_prepared_folder_is_prepared(shared_data, tmp_path):
    folder = tmp_path / "data" / "ucla2msr"
    config = from_dict({"data": {"task": "ucla2msr", "prepared_dir": str(folder), "source_limit": 16,
                                 "target_train_limit": 16, "target_eval_limit": 16},
                        "model": {"num_clusters": 4},
                        "optim": {"epochs_stage1": 1, "epochs_stage2": 0, "batch_source": 4,
                                  "batch_target": 8},
                        "eval": {"kmeans_seeds": 1}, "runtime": {"device": "cpu", "progress": False}})
    metrics = train(config, tmp_path / "run", raw=shared_data)
    assert (folder / "task.json").is_file()
    assert json.loads((folder / "task.json").read_text())["splits"]["target_eval"]["samples"] == 557
    assert "specific/kmeans/acc" in metrics


@pytest.mark.parametrize("argv, message", [
    (["--task", "ucla2msr", "--set", "optim.lr=0.05"], "unknown key 'optim.lr'"),
    (["--resume"], "--resume needs --run-dir"),
    ([], "give --task"),
])
def test_cli_errors_are_clear(argv, message, capsys):
    assert main([*argv, "--no-export"]) == 2
    assert message in capsys.readouterr().err


def test_resume_without_a_checkpoint_fails_clearly(any_task_dir, tmp_path, capsys):
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(
        f"data:\n  task: ucla2msr\n  prepared_dir: {any_task_dir}\n")
    assert main(["--resume", "--run-dir", str(run_dir), "--no-export", "-q"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


@pytest.mark.slow
def test_a_users_task_file_is_prepared_and_trained(shared_data, tmp_path, capsys):
    import yaml

    from training.preparation.tasks import get_task

    spec = get_task("ucla2msr").model_dump(mode="json")
    spec["name"] = "my-ucla-to-msr"
    for side in ("source", "target"):  # the file's relative paths would resolve next to it
        for key in ("paths", "file_list"):
            spec[side][key] = [str(shared_data / p) for p in spec[side][key]]
    task_file = tmp_path / "mine.yaml"
    task_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    folder = tmp_path / "prepared" / "my-ucla-to-msr"
    sets = [f"data.prepared_dir={folder}", "data.source_limit=16", "data.target_train_limit=16",
            "data.target_eval_limit=16", "model.num_clusters=4", "optim.epochs_stage1=1",
            "optim.epochs_stage2=0", "optim.batch_source=4", "optim.batch_target=8",
            "eval.kmeans_seeds=1", "runtime.device=cpu"]
    argv = ["--task", str(task_file), "--run-dir", str(tmp_path / "run"), "--no-export", "-q"]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 0
    assert json.loads((folder / "task.json").read_text())["task"] == "my-ucla-to-msr"
    config = from_dict(load_yaml(tmp_path / "run" / "config.yaml"))
    assert config.data.task == "my-ucla-to-msr" and config.data.task_file == str(task_file.resolve())
    assert "| CoDT-B1 | k-means † |" in capsys.readouterr().out


def test_task_file_that_does_not_exist_is_named(tmp_path, capsys):
    assert main(["--task", str(tmp_path / "nope.yaml"), "--no-export"]) == 2
    assert "nope.yaml: task file not found" in capsys.readouterr().err


def test_anchors_and_batchnorm_recalibration_run_end_to_end(any_task_dir, tmp_path):
    """training.labelfree: the anchor term is learnt from epoch 1, the k-means initialisation is
    skipped, heads are evaluated without collapse figures missing, and the recalibrated running
    statistics are what the final checkpoint holds."""
    run_dir = tmp_path / "anchors"
    assert main(_args(any_task_dir, run_dir, "labelfree.anchors=true", "loss.anchor=5",
                      "labelfree.recalibrate_bn=true",
                      "optim.lr_stage1=0.001", "optim.lr_stage2=0.0001")) == 0
    stage1, stage2 = _records(run_dir)
    assert stage1["loss/anchor"] > 0 and stage2["loss/anchor"] > 0
    assert "recalibrate_bn/time_s" in stage2 and "kmeans_init/time_s" not in stage2
    for branch in ("shared", "specific"):
        assert 1 <= stage2[f"{branch}/head/clusters_used"] <= 6
        assert 0 < stage2[f"{branch}/head/largest_share"] <= 1
    assert stage1["lr"] == 0.001 and stage2["lr"] == 0.0001  # the stage's base rate is logged
    weights = _final_model(run_dir)
    bn = "specific_student.encoder.data_bn.running_mean"
    assert torch.isfinite(weights[bn]).all() and weights[bn].abs().sum() > 0


def test_plain_array_target_from_a_minimal_task_file_with_the_cpu_recipe(shared_data, tmp_path, capsys):
    """The README's plain-array example: a folder of (T, V, C) .npy files with a labels CSV keyed
    name.npy, layout and axes given once in the task file, relative paths next to the file."""
    import numpy as np

    from codt_deploy.readers import read_poses

    arrays = tmp_path / "my_target"
    arrays.mkdir()
    rows = ["file,label"]
    for path in sorted((shared_data / "msr_action3d").glob("a0[1-4]_s0[12]_e01_skeleton3D.txt")):
        name = path.name.replace("_skeleton3D.txt", ".npy")
        np.save(arrays / name, read_poses(path)[0].data[:, 0])  # (T, V, C)
        rows.append(f"{name},{name[:3]}")
    (arrays / "labels.csv").write_text("\n".join(rows) + "\n")
    task_file = tmp_path / "task.yaml"
    task_file.write_text(
        "name: my-arrays\n"
        f"source: {{dataset: ucla, path: {shared_data / 'nw_ucla'}, layout: kinect20}}\n"
        "target: {path: my_target, labels: my_target/labels.csv, layout: msr20,\n"
        "         options: {axes: TVC}}\n"
        "persons: 1\n", encoding="utf-8")
    folder = tmp_path / "prepared" / "my-arrays"
    sets = [f"data.prepared_dir={folder}", "data.source_limit=16", "optim.epochs_stage1=1",
            "optim.epochs_stage2=1", "eval.kmeans_seeds=1", "runtime.device=cpu",
            "runtime.threads=1", "runtime.amp=false", "loss.anchor=2"]
    argv = ["--task", str(task_file), "--recipe", "cpu", "--run-dir", str(tmp_path / "run"),
            "--no-export", "-q"]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 0
    out = capsys.readouterr().out
    assert "recipe cpu:" in out and "estimated wall time" in out
    info = json.loads((folder / "task.json").read_text())
    assert info["num_clusters"] == 4 and info["layouts"]["specific"] == "msr20"
    config = from_dict(load_yaml(tmp_path / "run" / "config.yaml"))
    assert config.optim.batch_target == 8  # sized from 16 clips
    assert config.labelfree.anchors and config.labelfree.recalibrate_bn and config.model.dropout == 0
    assert config.loss.anchor == 2  # a --set that needs the recipe's anchors is validated with them
    assert "| CoDT-B1 | cluster head |" in out


def test_more_clusters_than_target_classes_train_export_and_score(tmp_path, capsys):
    """Over-clustering: K = 8 on a synthetic target of 3 classes, through both stages, the export
    and the scores (one-to-one ACC counts the unmatched clusters as errors, many-to-one does not)."""
    from tests.training.synthetic import write_synthetic_task

    task_dir = write_synthetic_task(tmp_path / "three", target_classes=3)
    run_dir = tmp_path / "run"
    sets = [f"data.prepared_dir={task_dir}", *TINY, "model.num_clusters=8"]
    argv = ["--task", "ucla2msr", "--run-dir", str(run_dir), "-q",
            *[a for s in sets for a in ("--set", s)]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| branch | method | ACC | NMI | ARI | many-to-one ACC |" in out
    stage2 = _records(run_dir)[-1]
    for prefix in ("specific/head", "specific/kmeans", "shared/head"):
        assert stage2[f"{prefix}/acc_many_to_one"] >= stage2[f"{prefix}/acc"] - 1e-9
    assert stage2["specific/head/acc"] <= 100.0
    manifest = json.loads(next((run_dir / "exported").glob("*.json")).read_text())
    assert manifest["num_clusters"] == 8
    scores = manifest["metrics"]["eval"]
    assert scores["acc_many_to_one"] >= scores["acc"] and 0 <= scores["acc"] <= 1
