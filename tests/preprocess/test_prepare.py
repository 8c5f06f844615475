"""python -m training.prepare + training.preparation.prepared on the real samples and on tiny user
folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from codt_deploy.preprocess import PreprocessConfig, preprocess
from codt_deploy.readers import read_poses, save_npz
from tests.conftest import permuted_layout_spec
from training.preparation.prepared import PreparedDataError, load_split, load_task
from training.prepare import main


def run(capsys, *argv):
    code = main([*map(str, argv), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------- ucla2msr

def test_ucla2msr_subset(shared_data, tmp_path, capsys):
    code, out, _ = run(capsys, "ucla2msr", "--raw", shared_data, "--out", tmp_path, "--limit", 30)
    assert code == 0, out
    assert "source: NW-UCLA: 30 clips / 10 classes" in out
    assert "target: MSR Action3D: 30 clips" in out
    task = load_task(tmp_path / "ucla2msr")
    assert (task.shared, task.specific, task.channels) == ("kinect20", "msr20", "xyz")
    assert task.layouts == {"shared": "kinect20", "specific": "msr20"}
    assert task.preprocess_config("msr20").output_shape == (3, 50, 20, 1)
    assert task.counts == {"source_train": 30, "target_train": 30, "target_eval": 30}
    source = load_split(tmp_path / "ucla2msr", "source_train")
    assert source.data.shape == (30, 3, 50, 20, 1) and source.layout == "kinect20"
    assert isinstance(source.data, np.memmap) and source.labelled
    assert set(source.labels) <= set(range(10)) and len(set(source.labels)) == 10
    assert np.all(np.isfinite(source.data))
    np.testing.assert_array_equal(source.data[:, :, :, 2], 0)  # centre: shoulder centre
    # The two target layouts hold the same joints (kinect20 and msr20 share all 20 names).
    shared = load_split(tmp_path / "ucla2msr", "target_eval", "shared")
    specific = load_split(tmp_path / "ucla2msr", "target_eval", "specific")
    assert specific.layout == "msr20" and specific.data.shape == (30, 3, 50, 20, 1)
    assert np.allclose(np.sort(shared.data, axis=3), np.sort(specific.data, axis=3))
    train = load_split(tmp_path / "ucla2msr", "target_train", "msr20")
    assert np.all(train.labels == -1) and not train.labelled
    np.testing.assert_array_equal(train.names, specific.names)
    assert specific.labelled and specific.class_names[0] == "high arm wave"
    assert [str(n)[:3] for n in specific.names] == [
        f"a{label + 1:02d}" for label in specific.labels]  # label = action id - 1


def test_ucla2msr_cross_subject_split(shared_data, tmp_path, capsys):
    code, out, _ = run(capsys, "ucla2msr", "--raw", shared_data, "--out", tmp_path,
                       "--limit", 40, "--target-split", "cross_subject")
    assert code == 0, out
    train = load_split(tmp_path / "ucla2msr", "target_train", "msr20")
    evals = load_split(tmp_path / "ucla2msr", "target_eval", "msr20")
    subject = lambda name: int(str(name).split("_")[1][1:])  # noqa: E731
    assert {subject(n) for n in train.names} <= {1, 3, 5, 7, 9}
    assert {subject(n) for n in evals.names} <= {2, 4, 6, 8, 10}
    assert len(train) + len(evals) == 40 and len(train) > 0 and len(evals) > 0


@pytest.mark.slow
def test_ucla2msr_full_counts(shared_data, tmp_path, capsys):
    code, out, _ = run(capsys, "ucla2msr", "--raw", shared_data, "--out", tmp_path)
    assert code == 0, out
    assert "source: NW-UCLA: 1,484 clips / 10 classes" in out
    assert "target: MSR Action3D: 557 clips / 20 classes" in out
    info = json.loads((tmp_path / "ucla2msr" / "task.json").read_text())
    assert info["num_clusters"] == 20
    assert sum(info["splits"]["source_train"]["per_class"]) == 1484
    assert info["splits"]["target_eval"]["per_class"][0] == 27  # a01: 27 of the 557


# -------------------------------------------------------------------------------- ntu2pku

def test_ntu2pku_needs_the_split_file_and_says_so(shared_data, tmp_path, capsys):
    code, _, err = run(capsys, "ntu2pku", "--raw", shared_data, "--out", tmp_path)
    assert code == 2
    assert "cross-subject.txt" in err and "--target-split all" in err
    assert not (tmp_path / "ntu2pku").exists()


def test_ntu2pku_class_filter_leaving_nothing_is_a_clear_error(shared_data, fixtures_dir,
                                                                tmp_path, capsys):
    code, _, err = run(capsys, "ntu2pku", "--raw", shared_data, "--out", tmp_path,
                       "--target-split", "all", "--target-labels", fixtures_dir / "pku_mmd",
                       "--source-select", "all", "--source-classes", "61,62")
    assert code == 2
    assert "source_train is empty" in err and "class not in the task" in err
    assert "classes found: 3, 11, 17, 34, 58" in err and "--source-classes all" in err
    assert not (tmp_path / "ntu2pku").exists() and list(tmp_path.iterdir()) == []


def test_ntu2pku_from_the_real_samples(shared_data, fixtures_dir, tmp_path, capsys):
    code, out, _ = run(capsys, "ntu2pku", "--raw", shared_data, "--out", tmp_path,
                       "--target-split", "all", "--target-labels", fixtures_dir / "pku_mmd",
                       "--source-select", "all", "--target-classes", "all")
    assert code == 0, out
    task = load_task(tmp_path / "ntu2pku")
    assert task.num_clusters == 4 and task.shared == task.specific == "ntu25"
    source = load_split(tmp_path / "ntu2pku", "source_train")
    assert source.data.shape == (5, 3, 50, 25, 2)
    assert [source.class_names[i] for i in source.labels] == [
        "reading", "handshaking", "brushing teeth", "rub two hands together", "take off a shoe"]
    target = load_split(tmp_path / "ntu2pku", "target_eval")
    assert list(target.names) == [f"A10N08-L#{i}" for i in range(4)]
    assert target.class_names == ("brushing teeth", "drink water", "jump up", "throw")
    assert list(target.labels) == [0, 2, 3, 1]  # action ids 3, 17, 41, 8 of the label file
    assert np.all(np.isfinite(target.data)) and np.abs(target.data).max() > 0.1


# -------------------------------------------------------------------- a user's own task

def _user_task(shared_data, tmp_path, *, bad_file: bool = False, key_column: str = "file",
               key_suffix: str = ".json"):
    src = tmp_path / "src"
    src.mkdir()
    names = ["a01_s01_e00_v01", "a01_s02_e00_v01", "a02_s01_e00_v01", "a02_s02_e00_v01"]
    for name in names:
        shutil.copy(shared_data / "nw_ucla" / f"{name}.json", src / f"{name}.json")
    rows = [f"{key_column},label"] + [
        f"{n}{key_suffix},{'pick' if n.startswith('a01') else 'lift'}" for n in names]
    if bad_file:
        (src / "broken.json").write_text('{"file_name": "broken", "skeletons": [[[1, 2]]]}')
        rows.append("broken.json,pick")
    (src / "labels.csv").write_text("\n".join(rows) + "\n")
    seqs = [s for f in sorted((shared_data / "msr_action3d").glob("a0[12]_s01_e0[12]_*.txt"))
            for s in read_poses(f)]
    save_npz(tmp_path / "target.npz", seqs)
    config = tmp_path / "mine.yaml"
    config.write_text("source: {path: src, labels: src/labels.csv}\n"
                      "target: {path: target.npz}\n")
    return config


def test_user_task_from_a_folder_and_an_npz(shared_data, tmp_path, capsys):
    config = _user_task(shared_data, tmp_path)
    out_dir = tmp_path / "out"
    code, out, _ = run(capsys, config, "--out", out_dir)
    assert code == 0, out
    task = load_task(out_dir / "mine")
    # kinect20 source, msr20 target: no common layout, so B0 is shared15 and B1 the target's.
    assert (task.shared, task.specific) == ("shared15", "msr20")
    assert task.source_classes == ("lift", "pick")
    assert task.num_clusters == 2  # the npz carries labels 0 and 1 (actions a01, a02)
    source = load_split(out_dir / "mine", "source_train")
    assert source.data.shape == (4, 3, 50, 15, 2) and list(source.labels) == [1, 1, 0, 0]
    target = load_split(out_dir / "mine", "target_eval", "msr20")
    assert len(target) == 4 and sorted(target.labels) == [0, 0, 1, 1]


def test_user_task_with_a_sample_label_csv(shared_data, tmp_path, capsys):
    """A ``sample,label`` CSV (the app's header, once refused here) keyed by sample name."""
    config = _user_task(shared_data, tmp_path, key_column="sample", key_suffix="")
    code, out, _ = run(capsys, config, "--out", tmp_path / "out")
    assert code == 0, out
    assert load_task(tmp_path / "out" / "mine").source_classes == ("lift", "pick")
    source = load_split(tmp_path / "out" / "mine", "source_train")
    assert list(source.labels) == [1, 1, 0, 0]


def test_failures_are_reported_and_the_rest_is_written(shared_data, tmp_path, capsys):
    config = _user_task(shared_data, tmp_path, bad_file=True)
    code, out, _ = run(capsys, "mine", "--config", config, "--out", tmp_path / "out")
    assert code == 1
    assert "1 file(s) failed:" in out and "broken.json" in out
    assert len(load_split(tmp_path / "out" / "mine", "source_train")) == 4
    info = load_task(tmp_path / "out" / "mine").raw
    assert info["failures"][0]["file"].endswith("broken.json") and info["failures"][0]["reason"]


def test_output_is_replaced_atomically(shared_data, tmp_path, capsys):
    args = ["ucla2msr", "--raw", shared_data, "--out", tmp_path, "--limit", 12]
    assert run(capsys, *args)[0] == 0
    before = (tmp_path / "ucla2msr" / "task.json").read_text()
    # A failing run (a class filter that keeps nothing) leaves the old folder as it was.
    code, _, err = run(capsys, *args, "--source-classes", "7")
    assert code == 2 and "source_train is empty" in err
    assert (tmp_path / "ucla2msr" / "task.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ucla2msr"]  # no temporary leftovers
    # A successful run replaces it.
    assert run(capsys, *args, "--source-classes", "1,2")[0] == 0
    assert load_task(tmp_path / "ucla2msr").source_classes == ("pick up with one hand",
                                                               "pick up with two hands")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ucla2msr"]


# ------------------------------------------------------------------------------- datasets

def test_load_split_errors_name_the_problem(shared_data, tmp_path, capsys):
    assert run(capsys, "ucla2msr", "--raw", shared_data, "--out", tmp_path, "--limit", 6)[0] == 0
    folder = tmp_path / "ucla2msr"
    with pytest.raises(PreparedDataError, match="unknown split 'train'"):
        load_split(folder, "train")
    with pytest.raises(PreparedDataError, match="no data in layout 'msr20'; available: kinect20"):
        load_split(folder, "source_train", "msr20")
    with pytest.raises(PreparedDataError, match="prepare the task first"):
        load_task(tmp_path / "nothing")
    np.save(folder / "target_eval" / "labels.npy", np.zeros(3, np.int64))
    with pytest.raises(PreparedDataError, match="6 samples but labels"):
        load_split(folder, "target_eval")
    (folder / "task.json").write_text("{}")
    with pytest.raises(PreparedDataError, match="schema"):
        load_task(folder)


def test_two_d_task_from_the_kinetics_samples(shared_data, tmp_path, capsys):
    root = shared_data / "kinetics_skeleton_samples"
    config = tmp_path / "kin.json"
    config.write_text(json.dumps({
        "source": {"dataset": "kinetics", "path": str(root / "kinetics_val")},
        "target": {"dataset": "kinetics", "path": str(root / "kinetics_train_labelidx_modified")}}))
    code, out, _ = run(capsys, config, "--out", tmp_path / "out")
    assert code == 0, out
    task = load_task(tmp_path / "out" / "kin")
    assert (task.shared, task.specific, task.channels) == ("coco18", "coco18", "xy_score")
    assert "jumpstyle dancing" in task.source_classes and task.num_clusters == 5
    source = load_split(tmp_path / "out" / "kin", "source_train")
    assert source.data.shape == (7, 3, 50, 18, 2)
    assert source.data[:, 2].min() >= 0  # the score channel is kept, not centred


def test_config_file_overrides_a_builtin_task(shared_data, tmp_path, capsys):
    overrides = tmp_path / "few.yaml"
    overrides.write_text("source: {classes: [4, 5]}\nframes: 20\n")
    code, out, _ = run(capsys, "ucla2msr", "--raw", shared_data, "--out", tmp_path,
                       "--config", overrides, "--limit", 8)
    assert code == 0, out
    source = load_split(tmp_path / "ucla2msr", "source_train")
    assert source.data.shape == (8, 3, 20, 20, 1)  # ucla2msr keeps one person slot
    assert source.class_names == ("walk around", "sit down")
    assert {str(n)[:3] for n in source.names} == {"a04", "a05"}
    assert sorted(set(source.labels)) == [0, 1]


def test_utkinect_label_files_are_skipped_not_failed(shared_data):
    from training.preparation.pipeline import DomainReport, select_refs
    from training.preparation.tasks import DomainSpec

    domain = DomainSpec(dataset="files", paths=("utkinect_action3d",), format="utkinect",
                        layout="kinect20")
    report = DomainReport(role="target")
    refs = select_refs(domain, shared_data / "utkinect_action3d", shared_data, report, None)
    assert refs and all(r.path.name.startswith("joints_") for r in refs)
    assert report.skipped["UTKinect action-label file (read for the segments)"] == 2


# ---------------------------------------------------------------------- 2-D models (channels)

def _two_d_config(tmp_path, target_channels="xy", **source):
    overrides = tmp_path / f"two_d_{target_channels}.yaml"
    overrides.write_text(json.dumps({"target": {"channels": target_channels},
                                     **({"source": source} if source else {})}))
    return overrides


def test_a_3d_source_for_a_2d_target_is_projected_and_the_target_drops_depth(
        shared_data, tmp_path, capsys):
    """NW-UCLA 3-D → MSR Action3D with depth dropped: the model reads x, y; the source is aligned
    in 3-D and then projected, the target keeps the camera's x and y as recorded."""
    from codt_deploy.preprocess import PreprocessConfig, preprocess, reduce_sequence

    three_d, two_d = tmp_path / "3d", tmp_path / "2d"
    assert run(capsys, "ucla2msr", "--raw", shared_data, "--out", three_d, "--limit", 8)[0] == 0
    code, out, _ = run(capsys, "ucla2msr", "--raw", shared_data, "--out", two_d, "--limit", 8,
                       "--config", _two_d_config(tmp_path))
    assert code == 0, out
    assert "channels xy: the model reads the target's; the xyz source is projected" in out
    task = load_task(two_d / "ucla2msr")
    assert task.channels == "xy" and task.raw["source_channels"] == "xyz"
    assert task.preprocess_config("msr20").output_shape == (2, 50, 20, 1)
    source = load_split(two_d / "ucla2msr", "source_train")
    source_3d = load_split(three_d / "ucla2msr", "source_train")
    assert source.data.shape == (8, 2, 50, 20, 1)
    np.testing.assert_allclose(source.data, source_3d.data[:, :2], atol=1e-6)
    target = load_split(two_d / "ucla2msr", "target_eval", "msr20")
    assert target.data.shape == (8, 2, 50, 20, 1)
    name = str(target.names[0])
    seq = read_poses(shared_data / "msr_action3d" / f"{name}_skeleton3D.txt")[0]
    expected = preprocess(reduce_sequence(seq, "xy"), PreprocessConfig(
        layout="msr20", persons=1, channels="xy"))  # depth dropped before, no alignment
    np.testing.assert_allclose(target.data[0], expected, atol=1e-6)
    assert not np.allclose(target.data[0], load_split(
        three_d / "ucla2msr", "target_eval", "msr20").data[0, :2], atol=1e-3)


def test_view_rotation_and_an_xy_score_target(shared_data, tmp_path, capsys):
    args = ("ucla2msr", "--raw", shared_data, "--limit", 6)
    plain, turned = tmp_path / "plain", tmp_path / "turned"
    assert run(capsys, *args, "--out", plain, "--config",
               _two_d_config(tmp_path, "xy_score"))[0] == 0
    code, out, _ = run(capsys, *args, "--out", turned, "--config",
                       _two_d_config(tmp_path, "xy_score", view_rotation=45))
    assert code == 0 and "view rotation ±45°" in out
    a = load_split(plain / "ucla2msr", "source_train").data
    b = load_split(turned / "ucla2msr", "source_train").data
    assert a.shape == b.shape == (6, 3, 50, 20, 1)
    np.testing.assert_array_equal(a[:, 2], 1.0)  # NW-UCLA joints are all present: score 1
    np.testing.assert_allclose(a[:, 1], b[:, 1], atol=1e-5)  # the vertical axis is kept
    assert np.abs(a[:, 0] - b[:, 0]).max() > 0.05  # x changes with the view
    again = tmp_path / "again"
    assert run(capsys, *args, "--out", again, "--config",
               _two_d_config(tmp_path, "xy_score", view_rotation=45))[0] == 0
    np.testing.assert_array_equal(load_split(again / "ucla2msr", "source_train").data, b)
    score = load_split(plain / "ucla2msr", "target_eval", "msr20").data[:, 2]
    assert 0.0 <= score.min() and score.max() == 1.0  # the target's score: joint presence


def test_a_2d_source_for_a_3d_target_is_refused_before_preparing(shared_data, tmp_path, capsys):
    arrays = tmp_path / "src"
    arrays.mkdir()
    rows = ["file,label"]
    for i, path in enumerate(sorted((shared_data / "nw_ucla").glob("a0[12]_s01_e00_v01.json"))):
        np.save(arrays / f"c{i}.npy", read_poses(path)[0].data[:, 0, :, :2])  # (T, V, 2): x, y
        rows.append(f"c{i}.npy,{path.name[:3]}")
    (arrays / "labels.csv").write_text("\n".join(rows) + "\n")
    task_file = tmp_path / "two_d_source.yaml"
    task_file.write_text(
        "source: {path: src, labels: src/labels.csv, layout: kinect20, options: {axes: TVC}}\n"
        f"target: {{dataset: msr, path: {shared_data / 'msr_action3d'}}}\npersons: 1\n")
    code, _, err = run(capsys, task_file, "--out", tmp_path / "out")
    assert code == 2
    assert "source: 2-D poses (x, y) cannot train a model for the target's 3-D poses" in err
    assert "Set target.channels to 'xy' or 'xy_score'" in err
    assert not (tmp_path / "out" / "two_d_source").exists()
    # With the target's depth dropped the same source trains a 2-D model.
    task_file.write_text(task_file.read_text().replace("msr_action3d}",
                                                       "msr_action3d, channels: xy}"))
    code, out, err = run(capsys, task_file, "--out", tmp_path / "out", "--limit", 4)
    assert code == 0, err
    assert load_task(tmp_path / "out" / "two_d_source").channels == "xy"


# --------------------------------------------------------------------- custom layouts

def test_user_task_with_an_inline_layout_and_a_layout_file(shared_data, tmp_path, capsys,
                                                           layout_registry):
    """The target's layout inline in the task file, ``shared`` a layout file beside it (the same
    definition): arrays in that joint order prepare to the msr20 arrays, permuted, and task.json
    carries the definition, so the folder reads back in a process that never saw the file."""
    config = _user_task(shared_data, tmp_path)  # 4 NW-UCLA files, labelled
    spec, order = permuted_layout_spec("msr20", "msr20_shuffled")
    (tmp_path / "layouts").mkdir()
    (tmp_path / "layouts" / "shuffled.json").write_text(json.dumps(spec))
    target = tmp_path / "target"
    target.mkdir()
    originals = {}
    for path in sorted((shared_data / "msr_action3d").glob("a0[12]_s01_e01_*.txt")):
        seq = read_poses(path)[0]
        originals[seq.name] = seq
        np.save(target / f"{seq.name}.npy", seq.data[:, 0][:, order])  # (T, V, C), file's order
    task_file = tmp_path / "shuffled.yaml"
    task_file.write_text(config.read_text().replace("target: {path: target.npz}\n", "") + yaml_dump({
        "target": {"path": "target", "options": {"axes": "TVC"}, "layout": spec},
        "shared": "layouts/shuffled.json", "num_clusters": 2}))
    code, out, _ = run(capsys, task_file, "--out", tmp_path / "out")
    assert code == 0, out

    layout_registry._CUSTOM.clear()  # as in a fresh process
    folder = tmp_path / "out" / "shuffled"
    task = load_task(folder)
    assert (task.shared, task.specific) == ("msr20_shuffled", "msr20_shuffled")
    assert task.raw["layout_definitions"]["msr20_shuffled"]["joints"] == spec["joints"]
    prepared = load_split(folder, "target_eval")
    assert len(prepared) == len(originals) == 2
    cfg = PreprocessConfig(layout="msr20")
    for name, sample in zip(prepared.names, prepared.data):
        np.testing.assert_array_equal(sample, preprocess(originals[str(name)], cfg)[:, :, order])
    assert load_split(folder, "source_train").data.shape == (4, 3, 50, 20, 2)


def yaml_dump(data: dict) -> str:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_dump(data, sort_keys=False)


def test_a_bad_layout_in_a_task_file_names_the_file_the_key_and_the_joint(tmp_path, capsys,
                                                                          layout_registry):
    spec, _ = permuted_layout_spec("msr20", "msr20_shuffled")
    spec["joints"] = ["r_elbw" if j == "r_elbow" else j for j in spec["joints"]]
    task_file = tmp_path / "bad.json"
    task_file.write_text(json.dumps({"source": {"path": "src", "layout": "missing.json"},
                                     "target": {"path": "target", "layout": spec}}))
    code, _, err = run(capsys, task_file, "--out", tmp_path / "out")
    assert code == 2
    assert f"{task_file}: invalid task definition: source.layout: " in err
    assert f"{tmp_path / 'missing.json'}: layout file not found" in err
    assert "target.layout: " in err
    assert "'r_elbw' is not a canonical joint name; did you mean 'r_elbow'" in err
    assert not (tmp_path / "out").exists()


def test_num_clusters_auto_is_estimated_recorded_and_printed(shared_data, tmp_path, capsys):
    """A tiny task with ``num_clusters: auto``: K comes from the unlabelled target-train poses."""
    config = _user_task(shared_data, tmp_path)
    config.write_text(config.read_text() + "num_clusters: auto\n")
    code, out, _ = run(capsys, config, "--out", tmp_path / "out")
    assert code == 0, out
    info = load_task(tmp_path / "out" / "mine").raw
    estimate = info["num_clusters_estimate"]
    # 4 target clips leave one candidate (2 .. max(2, 4 // 5)); the estimate says so
    assert info["num_clusters"] == estimate["k"] == 2 and estimate["k_range"] == [2, 2]
    assert estimate["n"] == 4 and info["num_clusters_from"] == "estimated"
    assert info["task_spec"]["num_clusters"] == "auto"
    assert "K = 2 (num_clusters: auto, estimated without labels)" in out
    assert "estimate: K = 2 (range, candidates 2..2)" in out


def test_num_clusters_auto_from_the_command_line(shared_data, tmp_path, capsys):
    code, out, _ = run(capsys, "ucla2msr", "--raw", shared_data, "--out", tmp_path, "--limit", 40,
                       "--num-clusters", "auto")
    assert code == 0, out
    info = load_task(tmp_path / "ucla2msr").raw
    estimate = info["num_clusters_estimate"]
    assert estimate["method"] == "eigengap+stability" and estimate["k_range"] == [2, 8]
    assert info["num_clusters"] == estimate["k"] and 2 <= estimate["k"] <= 8
    assert set(estimate["scores"]) == {str(k) for k in range(2, 9)}
    best = max(range(2, 9), key=lambda k: (estimate["scores"][str(k)], -k))
    assert best == estimate["k"]
    assert "estimate on 40 target_train clips, K in 2..8, score = eigengap + stability" in out
    assert f"{best}: {estimate['scores'][str(best)]:.2f} = " in out
    assert info["num_clusters_from"] == "estimated"
    code, _, err = run(capsys, "ucla2msr", "--raw", shared_data, "--out", tmp_path, "--limit", 4,
                       "--num-clusters", "many")
    assert code == 2 and "num_clusters must be an integer >= 2 or 'auto'" in err and "'many'" in err


def test_num_clusters_larger_than_the_classes_is_kept(shared_data, tmp_path, capsys):
    code, out, _ = run(capsys, "ucla2msr", "--raw", shared_data, "--out", tmp_path, "--limit", 40,
                       "--num-clusters", "25")
    assert code == 0, out
    info = load_task(tmp_path / "ucla2msr").raw
    assert info["num_clusters"] == 25 and info["num_clusters_from"] == "task"
    assert info["num_clusters_estimate"] is None and "K = 25 (from the task)" in out


# ------------------------------------------------------------------------------- held-out parts

def _array_folder(shared_data, folder, names_by_part):
    """(T, V, C) MSR arrays under ``folder`` (in part sub-folders when a part is not ""), with a
    labels CSV keyed by file name; returns the labels file."""
    rows = ["file,label"]
    for part, names in names_by_part.items():
        (folder / part).mkdir(parents=True, exist_ok=True)
        for name in names:
            source = shared_data / "msr_action3d" / f"{name}_skeleton3D.txt"
            np.save(folder / part / f"{name}.npy", read_poses(source)[0].data[:, 0])  # (T, V, C)
            rows.append(f"{name}.npy,{name[:3]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def _held_out_task(shared_data, tmp_path, split: str) -> object:
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: held\n"
        f"source: {{dataset: ucla, path: {shared_data / 'nw_ucla'}, layout: kinect20,\n"
        "         classes: [1, 2]}\n"
        "target: {path: arrays, labels: arrays/labels.csv, layout: msr20, options: {axes: TVC}}\n"
        f"target_split: {split}\n"
        "persons: 1\n", encoding="utf-8")
    return task


def test_a_user_task_holds_out_subjects_read_from_file_names_by_its_pattern(shared_data, tmp_path,
                                                                           capsys):
    names = [f"a0{a}_s0{s}_e01" for a in (1, 2) for s in (1, 2, 3)]
    _array_folder(shared_data, tmp_path / "arrays", {"": names})
    task = _held_out_task(shared_data, tmp_path,
                          "{mode: subjects, train: [1, 3], subject: 's(\\d+)_e'}")
    code, out, _ = run(capsys, task, "--out", tmp_path / "out")
    assert code == 0, out
    train = load_split(tmp_path / "out" / "held", "target_train", "msr20")
    held_out = load_split(tmp_path / "out" / "held", "target_eval", "msr20")
    assert sorted(train.names) == ["a01_s01_e01", "a01_s03_e01", "a02_s01_e01", "a02_s03_e01"]
    assert sorted(held_out.names) == ["a01_s02_e01", "a02_s02_e01"]
    assert (train.labels == -1).all() and sorted(held_out.labels) == [0, 1]  # train labels withheld
    from training.preparation.prepared import withheld_labels

    kept = withheld_labels(tmp_path / "out" / "held")  # for scoring only, never trained on
    assert sorted(kept) == [0, 0, 1, 1]


def test_a_user_task_holds_out_its_val_folder(shared_data, tmp_path, capsys):
    _array_folder(shared_data, tmp_path / "arrays", {"train": ["a01_s01_e01", "a02_s01_e01",
                                                               "a01_s03_e01", "a02_s03_e01"],
                                                     "val": ["a01_s02_e01", "a02_s02_e01"]})
    task = _held_out_task(shared_data, tmp_path, "{mode: folders}")
    code, out, _ = run(capsys, task, "--out", tmp_path / "out")
    assert code == 0, out
    assert len(load_split(tmp_path / "out" / "held", "target_train", "msr20")) == 4
    assert sorted(load_split(tmp_path / "out" / "held", "target_eval", "msr20").names) == \
        ["a01_s02_e01", "a02_s02_e01"]


@pytest.mark.parametrize("split, message", [
    ("{mode: subjects, train: [1], subject: 's\\d+'}", "needs a group"),
    ("{mode: subjects, train: [1], subject: 's(\\d+'}", "not a regular expression"),
    ("{mode: views, view: 'v(\\d+)'}", "needs train"),
])
def test_a_bad_held_out_split_names_the_key_and_the_problem(shared_data, tmp_path, capsys, split,
                                                            message):
    task = _held_out_task(shared_data, tmp_path, split)
    code, _, err = run(capsys, task, "--out", tmp_path / "out")
    assert code != 0 and "target_split" in err and message in err


def test_three_channel_arrays_of_an_xy_score_target_are_read_as_x_y_score(shared_data, tmp_path,
                                                                          capsys):
    """Plain (T, V, 3) arrays that do not say their channels, in a task whose target provides
    ``xy_score``: the third channel is the detector's score (as codt-cluster reads the same files
    for that model), not a depth to drop with the score set to 1."""
    names = [f"a0{a}_s0{s}_e01" for a in (1, 2) for s in (1, 2, 3)]
    _array_folder(shared_data, tmp_path / "arrays", {"": names})
    rng = np.random.default_rng(0)
    for path in (tmp_path / "arrays").glob("*.npy"):
        poses = np.load(path)  # (T, V, 3): x, y and a score in place of z
        poses[..., 2] = rng.uniform(0.3, 1.0, poses.shape[:2])
        np.save(path, poses)
    task = _held_out_task(shared_data, tmp_path, "{mode: all}")
    task.write_text(task.read_text().replace("persons: 1\n", "persons: 1\nchannels: xy_score\n"))
    code, out, _ = run(capsys, task, "--out", tmp_path / "out")
    assert code == 0, out
    score = load_split(tmp_path / "out" / "held", "target_train", "msr20").data[:, 2]  # (N, T, V, M)
    assert score.shape[0] == 6 and 0.25 < score[score > 0].min() and score.max() <= 1.0
    assert score[score > 0].std() > 0.1  # the files' scores, not a constant 1
