"""training.preparation.catalogue and the selection steps of preparation on small synthetic
trees."""

from __future__ import annotations

import json
import shutil

import numpy as np

from training.preparation import catalogue as cat
from training.preparation.prepared import load_split, load_task
from training.prepare import main


def test_names_carry_ids():
    assert cat.name_meta("ntu", "S018C002P045R001A061") == {
        "setup": 18, "camera": 2, "view": 2, "subject": 45, "replication": 1, "action": 61}
    assert cat.name_meta("ucla", "a12_s03_e01_v02") == {
        "action": 12, "subject": 3, "episode": 1, "view": 2}
    assert cat.name_meta("msr", "a05_s10_e03")["subject"] == 10
    assert cat.name_meta("ntu", "something_else") == {}


def test_pku_split_file_is_parsed(tmp_path):
    path = tmp_path / "cross-subject.txt"
    path.write_text("Training videos: \n0002-L, 0002-M, 0002-R, 0003-L\n"
                    "Validataion videos: \n0290-L, 0290-M\n")
    assert cat.read_split_file(path) == {"train": {"0002-L", "0002-M", "0002-R", "0003-L"},
                                         "val": {"0290-L", "0290-M"}}


def test_pku_catalogue_ignores_non_skeleton_files(shared_data):
    refs = cat.catalogue("pku", shared_data / "pku_mmd_sample")
    assert [(r.name, r.meta["view"]) for r in refs] == [("A10N08-L", 1)]


def test_ntu_missing_skeleton_lists_are_documented_skips(shared_data, tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(shared_data / "ntu_rgbd_samples", raw / "ntu_rgbd_samples")
    shutil.copytree(shared_data / "pku_mmd_sample", raw / "pku_mmd_sample")
    with open(raw / "ntu_rgbd_samples" / "NTU_RGBD_samples_with_missing_skeletons.txt", "a") as f:
        f.write("\nS002C001P003R001A003\n")  # pretend this sample lost its skeleton
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "A10N08-L.txt").write_text("3,1,150,1\n17,200,410,2\n")  # synthetic, as fixtures
    code = main(["ntu2pku", "--raw", str(raw), "--out", str(tmp_path / "out"), "--quiet",
                 "--target-split", "all", "--source-select", "all", "--target-classes", "all",
                 "--target-labels", str(labels)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert ("source: NTU RGB+D: 4 clips / 4 classes (5 files, 1 listed in "
            "NTU_RGBD_samples_with_missing_skeletons.txt, 0 failed)") in out
    info = load_task(tmp_path / "out" / "ntu2pku").raw
    assert info["source"]["skipped"] == {"listed in NTU_RGBD_samples_with_missing_skeletons.txt": 1}
    assert "S002C001P003R001A003" not in set(load_split(tmp_path / "out" / "ntu2pku",
                                                        "source_train").names)


def _vibe_clip(rng, frames: int) -> dict:
    """A synthetic VIBE track: 49 joints, gappy frame ids.

    docs/FORMATS.md §1 "VIBE / Skeletics-152 JSON".
    """
    joints = rng.normal(0.0, 0.3, size=(frames, 49, 3)) + [0.0, 0.0, 3.0]
    frame_ids = np.sort(rng.choice(frames + 5, size=frames, replace=False))
    return {"1": {"joints3d": joints.tolist(), "frame_ids": frame_ids.tolist()}}


def test_class_folders_with_train_and_val_parts(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / "skel"
    for part, count in (("train", 3), ("val", 2)):
        for action in ("juggling", "skipping"):
            (root / part / action).mkdir(parents=True)
            for i in range(count):
                clip = root / part / action / f"{action}_{part}_{i}.json"
                clip.write_text(json.dumps(_vibe_clip(rng, 12 + i)))
    config = tmp_path / "skel.yaml"
    config.write_text("source: {dataset: skeletics, path: skel, part: train, format: vibe}\n"
                      "target: {dataset: skeletics, path: skel, format: vibe}\n"
                      "target_split: {mode: folders}\nspecific: body25\n")
    code = main([str(config), "--out", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    task = load_task(tmp_path / "out" / "skel")
    assert (task.shared, task.specific) == ("body25", "body25")
    assert task.counts == {"source_train": 6, "target_train": 6, "target_eval": 4}
    assert task.source_classes == task.target_classes == ("juggling", "skipping")
    evals = load_split(tmp_path / "out" / "skel", "target_eval")
    assert list(evals.names) == ["juggling_val_0", "juggling_val_1", "skipping_val_0",
                                 "skipping_val_1"]
    assert list(evals.labels) == [0, 0, 1, 1]
