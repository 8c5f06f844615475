"""codt-cluster end to end on the committed MSR Action3D examples with the tiny exported model."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from codt_deploy import cli, metrics
from codt_deploy.readers import read_poses
from tests.conftest import REPO_ROOT, example_paths, example_poses, permuted_layout_spec, tiny_network
from tests.deploy.conftest import interrupt_journal_after

N_EXAMPLES = 40


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _examples(tmp_path, n=6):
    folder = tmp_path / "poses"
    folder.mkdir()
    for path in example_paths()[:n]:
        shutil.copy(path, folder / path.name)
    return folder


def _inputs(kind, tmp_path):
    folder = _examples(tmp_path)
    files = sorted(folder.iterdir())
    if kind == "file":
        return [files[0], files[1]], 2
    if kind == "folder":
        return [folder], 6
    if kind == "glob":
        return [str(folder / "a0[12]_*.txt")], 4
    if kind == "zip":
        path = tmp_path / "poses.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                archive.write(file, f"msr/{file.name}")
        return [path], 6
    path = tmp_path / "poses.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for file in files:
            archive.add(file, f"msr/{file.name}")
    return [path], 6


@pytest.mark.parametrize("kind", ["file", "folder", "glob", "zip", "tar.gz"])
def test_every_input_kind(kind, run, tmp_path):
    inputs, expected = _inputs(kind, tmp_path)
    out = tmp_path / "out.csv"
    status, _, err = run(*inputs, "-o", out)
    rows = _csv_rows(out)
    assert status == 0, err
    assert len(rows) == expected and f"{expected} sequences clustered" in err
    assert all(0 <= int(r["cluster"]) < 5 and 0 < float(r["confidence"]) <= 1 for r in rows)
    if kind in ("zip", "tar.gz"):
        assert rows[0]["source"] == str(inputs[0]) and rows[0]["member"].startswith("msr/a01")
    else:
        assert rows[0]["member"] == "" and rows[0]["name"].startswith("a01_")
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.tmp"))


def test_bad_files_are_reported_and_the_rest_still_clustered(run, tmp_path):
    folder = _examples(tmp_path, n=3)
    (folder / "a05_s01_e01_skeleton3D.txt").write_text("1 2 3\nnot numbers here\n")
    (folder / "notes.md").write_text("# not a pose file")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../escape_skeleton3D.txt", "0 0 0 1\n" * 20)
    out = tmp_path / "out.csv"
    status, _, err = run(folder, evil, tmp_path / "missing.skeleton", "-o", out)
    assert status == 1
    assert len(_csv_rows(out)) == 3
    assert "FAILED " + str(folder / "a05_s01_e01_skeleton3D.txt") + " (line" in err
    assert "escape_skeleton3D.txt: unsafe member path" in err
    assert "missing.skeleton: no such file or directory" in err
    assert "1 skipped" in err and "3 failed" in err


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_output_formats_with_embeddings(fmt, run, tmp_path):
    folder = _examples(tmp_path, n=4)
    out = tmp_path / f"clusters.{fmt}"
    status, _, err = run(folder, "-o", out, "--embeddings")
    assert status == 0, err
    if fmt == "csv":
        rows = _csv_rows(out)
        assert len(rows) == 4 and "embedding_255" in rows[0] and "embedding_256" not in rows[0]
        clusters = [int(r["cluster"]) for r in rows]
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == 4 and len(rows[0]["embedding"]) == 256
        clusters = [r["cluster"] for r in rows]
    else:
        pq = pytest.importorskip("pyarrow.parquet")
        table = pq.read_table(out)
        assert table.num_rows == 4 and len(table.column("embedding")[0]) == 256
        clusters = table.column("cluster").to_pylist()
        assert str(table.schema.field("confidence").type) == "float"
    assert all(0 <= c < 5 for c in clusters)


def test_inputs_listed_twice_are_read_once(run, tmp_path):
    folder = _examples(tmp_path, n=3)
    out = tmp_path / "out.csv"
    status, _, err = run(folder, folder / "a01_s02_e01_skeleton3D.txt", folder, "-o", out)
    assert status == 0 and len(_csv_rows(out)) == 3
    assert "3 files, 3 sequences clustered" in err and "4 listed twice (read once)" in err


def test_stdout_output_and_format_choice(run, tmp_path):
    folder = _examples(tmp_path, n=2)
    status, out, _ = run(folder, "--format", "jsonl")
    assert status == 0
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["a01_s02_e01", "a01_s06_e01"]


def test_labels_print_metrics_that_match_the_output(run, tmp_path):
    out = tmp_path / "out.csv"
    labels = REPO_ROOT / "examples" / "msr_action3d" / "labels.csv"
    status, stdout, err = run(REPO_ROOT / "examples" / "msr_action3d", "-o", out,
                              "--labels", labels)
    assert status == 0, err
    rows = _csv_rows(out)
    truth = {r["file"]: r["label"] for r in csv.DictReader(io.StringIO(labels.read_text()))}
    scores = metrics.evaluate([truth[r["source"].split("/")[-1]] for r in rows],
                              [r["cluster"] for r in rows])
    expected = (f"labels: {N_EXAMPLES} of {N_EXAMPLES} sequences labelled: "
                f"ACC {100 * scores['acc']:.1f}  NMI {100 * scores['nmi']:.1f}  "
                f"ARI {100 * scores['ari']:.1f}  "
                f"many-to-one ACC {100 * scores['acc_many_to_one']:.1f}")
    assert expected in stdout
    assert "1 skipped" in err  # labels.csv itself is not a pose file


def test_labels_with_fewer_classes_than_clusters(run, tmp_path):
    """Two coarse labels for 20 actions: more clusters than classes, scored one-to-one (unmatched
    clusters are errors) and many-to-one (each cluster to its majority label)."""
    examples = REPO_ROOT / "examples" / "msr_action3d"
    labels = tmp_path / "coarse.csv"
    names = sorted(p.name for p in examples.glob("*_skeleton3D.txt"))
    labels.write_text("file,label\n" + "".join(
        f"{n},{'arm' if int(n[1:3]) <= 7 else 'other'}\n" for n in names))
    out = tmp_path / "out.csv"
    status, stdout, err = run(examples, "-o", out, "--labels", labels)
    assert status == 0, err
    rows = _csv_rows(out)
    truth = ["arm" if int(r["source"].split("/")[-1][1:3]) <= 7 else "other" for r in rows]
    clusters = [r["cluster"] for r in rows]
    assert len(set(clusters)) > 2  # K > number of classes
    scores = metrics.evaluate(truth, clusters)
    assert scores["acc_many_to_one"] > scores["acc"]  # the unmatched clusters cost one-to-one ACC
    assert (f"ACC {100 * scores['acc']:.1f}  NMI {100 * scores['nmi']:.1f}  ARI "
            f"{100 * scores['ari']:.1f}  many-to-one ACC {100 * scores['acc_many_to_one']:.1f}"
            in stdout)


def test_resume_after_an_interrupted_run(run, tmp_path, monkeypatch):
    from codt_deploy import writers

    folder = _examples(tmp_path, n=8)
    out = tmp_path / "out.csv"
    real_write = writers.JournalSink.write_file
    calls = interrupt_journal_after(monkeypatch, 3)
    status, _, err = run(folder, "-o", out, "--batch-size", "1")
    assert status == 130 and "--resume" in err and not out.exists()
    journal = tmp_path / "out.csv.part"
    with open(journal, "a") as handle:
        handle.write('{"type": "row", "key": "torn')  # the process died mid-line
    monkeypatch.setattr(writers.JournalSink, "write_file", real_write)

    status, _, err = run(folder, "-o", out)
    assert status == 2 and "pass --resume" in err  # never clobbers a journal silently

    seen = []
    monkeypatch.setattr(writers.JournalSink, "write_file",
                        lambda self, key, rows: (seen.append(key), real_write(self, key, rows)))
    status, _, err = run(folder, "-o", out, "--resume")
    assert status == 0, err
    assert "3 files kept from the interrupted run" in err
    assert set(seen).isdisjoint(calls) and len(seen) == 5
    names = [r["name"] for r in _csv_rows(out)]
    assert sorted(names) == sorted(p.name.replace("_skeleton3D.txt", "") for p in
                                   folder.iterdir()) and len(names) == 8
    assert not journal.exists()


def test_resume_refuses_a_journal_of_other_settings(run, tmp_path, monkeypatch):
    folder = _examples(tmp_path, n=2)
    out = tmp_path / "out.csv"
    journal = tmp_path / "out.csv.part"
    journal.write_text(json.dumps({"type": "header", "model": "other"}) + "\n")
    status, _, err = run(folder, "-o", out, "--resume")
    assert status == 2 and "different settings" in err


def test_process_workers_give_the_same_rows(run, tmp_path):
    folder = _examples(tmp_path, n=6)
    status, _, _ = run(folder, "-o", tmp_path / "inline.csv", "--workers", "0")
    assert status == 0
    status, _, _ = run(folder, "-o", tmp_path / "proc.csv", "--workers", "2",
                       "--executor", "process")
    assert status == 0
    assert _csv_rows(tmp_path / "inline.csv") == _csv_rows(tmp_path / "proc.csv")


@pytest.mark.parametrize("args,message", [
    (["x", "--batch-size", "0"], "expected a whole number of at least 1, got 0"),
    (["x", "--workers", "many"], "expected a whole number"),
    (["x", "--providers", "TPUExecutionProvider"], "unknown execution provider"),
    (["x", "--pose-format", "mp4"], "unknown pose format 'mp4'"),
    (["x", "--labels", "/no/such/labels.csv"], "no such file"),
    (["x", "--resume"], "--resume needs -o"),
    (["x", "--summary", "clusters.txt"], "a summary file must end in .csv or .json"),
    ([], "give at least one INPUT"),
])
def test_argument_errors(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_unknown_model_is_a_clear_error(tiny_model_env, capsys):
    status = cli.main([str(example_paths()[0]), "--model", "nope", "--quiet"])
    assert status == 2
    assert "model 'nope' not found; available models = tiny" in capsys.readouterr().err


def test_python_dash_m_entry_point(tiny_model_env, tmp_path):
    out = tmp_path / "out.jsonl"
    result = subprocess.run([sys.executable, "-m", "codt_deploy", str(example_paths()[0]),
                             "--model", str(tiny_model_env / "tiny.onnx"), "-o", str(out)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(io.StringIO(out.read_text()).readline())["name"] == "a01_s02_e01"


def test_real_files_of_several_formats_and_layouts(run, tmp_path, shared_data):
    """NTU (ntu25), UTKinect (kinect20, 10 labelled segments), PKU-MMD (ntu25), NW-UCLA (kinect20,
    a 1-frame clip, read from a zip) all map onto the msr20 model; 2-D Kinetics fails by name."""
    ucla = shared_data / "nw_ucla" / "a02_s09_e04_v02.json"
    archive = tmp_path / "ucla.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(ucla, ucla.name)
    kinetics = shared_data / "kinetics_skeleton_samples" / "kinetics_val" / "__PYrzYbzKE.json"
    out = tmp_path / "out.csv"
    status, _, err = run(shared_data / "ntu_rgbd_samples" / "S001C003P008R002A058.skeleton",
                         shared_data / "utkinect_action3d" / "joints_s01_e01.txt",
                         shared_data / "pku_mmd_sample" / "A10N08-L.txt", archive, kinetics,
                         "-o", out)
    rows = _csv_rows(out)
    assert status == 1 and "4 files, 13 sequences clustered" in err
    utk = [r for r in rows if r["source"].endswith("joints_s01_e01.txt")]
    assert len(utk) == 10 and utk[0]["name"] == "s01_e01#walk" and utk[0]["segment"] == "252-390"
    assert [r["member"] for r in rows if r["member"]] == [ucla.name]
    assert f"FAILED {kinetics}: has channels ('x', 'y', 'score')" in err


def test_pickles_are_read_only_with_trust_pickle(run, tmp_path):
    """A (synthetic) pyskl pickle of 3-D NTU-25 poses: refused by default, read when trusted."""
    import pickle

    import numpy as np

    keypoint = np.random.default_rng(0).normal(size=(1, 30, 25, 3)).astype(np.float32)  # M T V C
    path = tmp_path / "poses.pkl"
    path.write_bytes(pickle.dumps({"split": {"all": ["clip"]}, "annotations": [
        {"frame_dir": "clip", "total_frames": 30, "label": 3, "keypoint": keypoint}]}))
    status, _, err = run(path, "-o", tmp_path / "refused.csv")
    assert status == 1 and "refusing to unpickle" in err
    status, _, err = run(path, "-o", tmp_path / "trusted.csv", "--trust-pickle")
    assert status == 0, err
    assert [r["name"] for r in _csv_rows(tmp_path / "trusted.csv")] == ["clip"]


def _plain_arrays(tmp_path, n=6, key_column="file"):
    """The first n MSR examples as plain (T, V, C) .npy arrays, with a labels CSV keyed name.npy."""
    folder = tmp_path / "arrays"
    folder.mkdir()
    rows = [f"{key_column},label"]
    for path in example_paths()[:n]:
        seq = read_poses(path)[0]
        name = path.name.replace("_skeleton3D.txt", ".npy")
        np.save(folder / name, seq.data[:, 0])  # (T, M, V, C) -> (T, V, C)
        rows.append(f"{name},{name[:3]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.parametrize("key_column", ["file", "filename", "sample"])
def test_plain_arrays_with_layout_and_axes(run, tmp_path, key_column):
    folder = _plain_arrays(tmp_path, key_column=key_column)
    status, out, err = run(folder, "--layout", "msr20", "--axes", "tvc", "--labels",
                           folder / "labels.csv", "-o", tmp_path / "out.csv")
    assert status == 0, err
    assert "6 sequences clustered" in err and "0 failed" in err
    assert "labels: 6 of 6 sequences labelled" in out
    assert len(_csv_rows(tmp_path / "out.csv")) == 6


def test_plain_arrays_without_axes_fail_each_with_the_reason(run, tmp_path):
    status, _, err = run(_plain_arrays(tmp_path, n=2))
    assert status == 1
    assert err.count("FAILED") == 2 and "needs axes" in err


def test_unknown_layout_is_refused_by_name(run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(_plain_arrays(tmp_path, n=1), "--layout", "nosuchlayout")
    assert "nosuchlayout" in capsys.readouterr().err


# --------------------------------------------------------------------------- --summary

def _rows_by_cluster(rows: list[dict]) -> dict[int, list[dict]]:
    by: dict[int, list[dict]] = {}
    for row in rows:
        by.setdefault(int(row["cluster"]), []).append(row)
    return by


def _brute_medoid(rows):
    """The most central member by full pairwise cosine similarity (independent of the module)."""
    x = np.array([r["embedding"] for r in rows], np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T  # (n, n)
    return rows[int(np.argmax(np.round(sims.sum(1) - np.diag(sims), 9)))]  # ties: the first


def test_summary_csv_is_written_over_what_was_clustered(run, tmp_path):
    folder = _examples(tmp_path, n=6)
    (folder / "a09_s01_e01_skeleton3D.txt").write_text("1 2 3\nnot numbers here\n")
    out, summary = tmp_path / "out.jsonl", tmp_path / "clusters.csv"
    status, _, err = run(folder, "-o", out, "--embeddings", "--summary", summary)
    assert status == 1 and "1 failed" in err  # the failure is reported, the rest summarised
    assert "summary of 5 clusters" in err and f"over 6 sequences written to {summary}" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_cluster = _rows_by_cluster(rows)
    table = _csv_rows(summary)
    assert [int(r["cluster"]) for r in table] == list(range(5))  # empty clusters too
    for entry in table:
        members = by_cluster.get(int(entry["cluster"]), [])
        assert int(entry["size"]) == len(members)
        assert float(entry["share"]) == pytest.approx(len(members) / 6, abs=1e-6)
        if not members:
            assert entry["medoid"] == entry["mean_confidence"] == entry["member_1"] == ""
            continue
        assert float(entry["mean_confidence"]) == pytest.approx(
            np.mean([r["confidence"] for r in members]), abs=1e-6)
        assert entry["medoid"] == _brute_medoid(members)["source"]
        listed = [entry[f"member_{i}"] for i in range(1, 6) if entry[f"member_{i}"]]
        assert len(listed) == min(len(members) - 1, 5)
        assert set(listed) | {entry["medoid"]} <= {r["source"] for r in members}
        assert entry["eval_cluster_name"] == ""  # names from the eval labels only when asked


def test_summary_without_embeddings_in_the_output(run, tmp_path):
    folder = _examples(tmp_path, n=3)
    out, summary = tmp_path / "out.csv", tmp_path / "clusters.json"
    status, _, err = run(folder, "-o", out, "--summary", summary)
    assert status == 0, err
    assert "embedding_0" not in _csv_rows(out)[0]  # the summary needs them, the output does not
    doc = json.loads(summary.read_text())
    assert doc["model"] == "tiny" and doc["sequences"] == 3 and doc["num_clusters"] == 5
    assert sum(c["size"] for c in doc["clusters"]) == 3


def test_summary_with_resume_covers_the_kept_files(run, tmp_path, monkeypatch):
    from codt_deploy import writers

    folder = _examples(tmp_path, n=6)
    out, summary = tmp_path / "out.csv", tmp_path / "clusters.json"
    real_write = writers.JournalSink.write_file
    interrupt_journal_after(monkeypatch, 2)
    status, _, _ = run(folder, "-o", out, "--batch-size", "1", "--summary", summary)
    assert status == 130 and not summary.exists()
    monkeypatch.setattr(writers.JournalSink, "write_file", real_write)
    status, _, err = run(folder, "-o", out, "--resume")  # without --summary: other settings
    assert status == 2 and "embeddings_for_summary" in err
    status, _, err = run(folder, "-o", out, "--resume", "--summary", summary)
    assert status == 0 and "2 files kept from the interrupted run" in err
    doc = json.loads(summary.read_text())
    assert doc["sequences"] == 6
    counts = {int(c): len(rows) for c, rows in _rows_by_cluster(_csv_rows(out)).items()}
    assert {c["cluster"]: c["size"] for c in doc["clusters"] if c["size"]} == counts


def test_summary_must_not_be_the_output(run, tmp_path):
    out = tmp_path / "out.csv"
    status, _, err = run(_examples(tmp_path, n=1), "-o", out, "--summary", out)
    assert status == 2 and "--summary and -o name the same file" in err


def test_summary_with_the_shipped_model_names_the_nearest_source_class(tmp_path, capsys):
    from codt_deploy.models import load_manifest

    shipped = REPO_ROOT / "exported" / "ucla2msr.onnx"
    manifest = load_manifest(shipped.with_suffix(".json"))
    summary = tmp_path / "clusters.csv"
    status = cli.main([str(_examples(tmp_path, n=4)), "--model", str(shipped), "--quiet",
                       "-o", str(tmp_path / "out.csv"), "--summary", str(summary)])
    assert status == 0, capsys.readouterr().err
    table = _csv_rows(summary)
    assert len(table) == manifest.num_clusters == 20
    assert [r["nearest_source_class"] for r in table] == list(manifest.nearest_source_classes)
    assert not any(r["eval_cluster_name"] for r in table)  # label-free unless --eval-names
    assert sum(int(r["size"]) for r in table) == 4


def test_2d_arrays_for_a_3d_model_fail_each_naming_channels_and_fix(run, tmp_path):
    """The tiny model reads x, y, z: 2-D arrays (depth dropped) and arrays declared x, y, score
    are refused file by file with what they have, what the model expects and what to do; the 3-D
    arrays in the same run are clustered."""
    folder = _plain_arrays(tmp_path, n=3)
    flat = sorted(folder.glob("*.npy"))[:2]
    for path in flat:
        np.save(path, np.load(path)[..., :2])  # (T, V, 2): x, y
    status, _, err = run(folder, "--layout", "msr20", "--axes", "TVC", "-o", tmp_path / "o.csv")
    assert status == 1 and "1 sequences clustered" in err and "2 failed" in err
    for path in flat:
        line = next(line for line in err.splitlines() if path.name in line)
        assert line.strip().startswith(f"FAILED {path}: has channels ('x', 'y') (2-D poses")
        assert "the model expects ('x', 'y', 'z') (3-D poses (x, y, z), channels='xyz')" in line
        assert "use a model trained for 2-D input" in line
    status, _, err = run(sorted(folder.glob("*.npy"))[2], "--layout", "msr20", "--axes", "TVC",
                         "--channels", "xy_score", "-o", tmp_path / "s.csv")
    assert status == 1 and "has channels ('x', 'y', 'score')" in err


def test_list_models_names_each_models_channels(tiny_model_env, capsys):
    assert cli.main(["--list-models"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny\t"))
    assert line.split("\t")[2:4] == ["msr20", "xyz"] and line.split("\t")[4].startswith("K=")


# ------------------------------------------------------------------- custom layout files

def _shuffled_layout(tmp_path, layout_registry):
    """A layout file of the msr20 joints in a shuffled order, and the order (not yet loaded)."""
    spec, order = permuted_layout_spec("msr20", "msr20_shuffled")
    path = tmp_path / "shuffled.json"
    path.write_text(json.dumps(spec))
    return path, order


def _rows_by_name(path):
    return {row["name"]: {k: v for k, v in row.items() if k not in ("source", "member")}
            for row in _csv_rows(path)}


def test_a_layout_file_of_shuffled_joints_clusters_like_the_builtin_layout(run, tmp_path,
                                                                            layout_registry):
    """The MSR examples with their joints shuffled into a layout file's order, as plain arrays,
    give exactly the rows (cluster, confidence, embedding) of the original files; the parsing runs
    in a worker process, which learns the layout from the options."""
    layout_file, order = _shuffled_layout(tmp_path, layout_registry)
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    for path in example_paths()[:8]:
        seq = read_poses(path)[0]
        np.save(arrays / path.name.replace("_skeleton3D.txt", ".npy"),
                seq.data[:, 0][:, order])  # (T, M, V, C) -> (T, V, C) in the file's joint order
    originals = _examples(tmp_path, n=8)
    status, _, err = run(originals, "--embeddings", "-o", tmp_path / "original.csv")
    assert status == 0, err
    status, _, err = run(arrays, "--layout", layout_file, "--axes", "TVC", "--embeddings",
                         "--workers", "1", "--executor", "process", "-o", tmp_path / "shuffled.csv")
    assert status == 0, err
    original = _rows_by_name(tmp_path / "original.csv")  # a01_s02_e01 -> its row, both runs
    assert len(original) == 8 and "embedding_255" in next(iter(original.values()))
    assert _rows_by_name(tmp_path / "shuffled.csv") == original


def test_a_bad_layout_file_is_a_usage_error_naming_the_file(run, tmp_path, capsys, layout_registry):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "joints": ["head", "nek"], "bones": [["head", "nek"]],
                               "center": "head", "shoulders": {"right": "head", "left": "nek"}}))
    with pytest.raises(SystemExit):
        run(_examples(tmp_path, n=1), "--layout", bad)
    err = capsys.readouterr().err
    assert f"{bad}: joints[1]: 'nek' is not a canonical joint name; did you mean 'neck'?" in err


def test_a_model_of_a_custom_layout_runs_without_its_layout_file(tmp_path, capsys, layout_registry):
    """The manifest embeds the layout's definition: with the file gone and the layout forgotten (a
    fresh process), codt-cluster still maps the MSR files onto the model's own joint order."""
    import torch

    from codt_deploy.layouts import load_layout
    from codt_deploy.models import load_manifest
    from codt_deploy.preprocess import PreprocessConfig
    from training.export import EvalSet, export_network

    layout_file, _ = _shuffled_layout(tmp_path, layout_registry)
    layout = load_layout(layout_file)
    poses = example_poses(layout.name)  # (40, 3, 50, 20, 2), the msr20 joints in the file's order
    net = tiny_network(poses, layout=layout.name)
    evalset = EvalSet(poses=poses, labels=None, class_names=None)
    exported = export_network(net, evalset, out_dir=tmp_path / "models", name="shuffled",
                              task="shuffled-test", preprocess=PreprocessConfig(layout=layout.name))
    assert exported.manifest.layout_definition is not None
    with torch.no_grad():
        expected = net(torch.from_numpy(poses))[0].argmax(1).numpy()  # (40,)

    layout_file.unlink()
    layout_registry._CUSTOM.clear()
    status = cli.main([*map(str, example_paths()), "--model", str(exported.onnx_path), "--quiet",
                       "-o", str(tmp_path / "out.csv")])
    assert status == 0, capsys.readouterr().err
    assert load_manifest(exported.onnx_path.with_suffix(".json")).joints == layout.joints
    rows = _csv_rows(tmp_path / "out.csv")
    assert [int(row["cluster"]) for row in rows] == list(expected)


def test_eval_cluster_names_only_when_asked_for_and_marked_as_such(tiny_model_dir, tmp_path, capsys):
    """The names the evaluation labels gave each cluster at export are an oracle reading: never
    in the output by default, only with --eval-names and under a column that says so."""
    import csv as _csv

    from codt_deploy.models import load_manifest

    model = tiny_model_dir / "tiny.onnx"
    names = load_manifest(model.with_suffix(".json")).eval_cluster_names
    assert names and any(names)
    inputs = _examples(tmp_path, n=3)
    plain, marked = tmp_path / "plain.csv", tmp_path / "marked.csv"
    assert cli.main([str(inputs), "--model", str(model), "--quiet", "-o", str(plain)]) == 0
    assert cli.main([str(inputs), "--model", str(model), "--quiet", "-o", str(marked),
                     "--eval-names"]) == 0, capsys.readouterr().err
    plain_rows = list(_csv.DictReader(plain.open()))
    marked_rows = list(_csv.DictReader(marked.open()))
    assert "eval_cluster_name" not in plain_rows[0] and "cluster_name" not in plain_rows[0]
    assert [r["eval_cluster_name"] for r in marked_rows] == [names[int(r["cluster"])]
                                                            for r in marked_rows]


def test_three_channel_arrays_take_the_models_channels_when_they_say_none(tmp_path):
    """An xy_score model reads a plain 3-channel array as x, y, score (what training reads for a
    task of such arrays); --channels and what an .npz records still decide."""
    from codt_deploy.infer import prepare_sequence
    from codt_deploy.pipeline import ParseOptions, parse_item
    from codt_deploy.preprocess import PreprocessConfig
    from codt_deploy.sources import InputItem

    poses = np.random.default_rng(0).uniform(0.2, 0.9, (30, 20, 3)).astype(np.float32)  # (T, V, C)
    path = tmp_path / "clip.npy"
    np.save(path, poses)
    config = PreprocessConfig(layout="msr20", persons=1, channels="xy_score")
    item = InputItem(str(path), path=path)
    read = parse_item(item, ParseOptions(preprocess=config, array_options={
        "axes": "TVC", "skeleton": "msr20"})).samples[0]  # (C, T, V, M)
    assert not np.allclose(read[2], read[2].max())  # the file's scores, not a constant
    forced = parse_item(item, ParseOptions(preprocess=config, array_options={
        "axes": "TVC", "skeleton": "msr20", "channels": ("x", "y", "z")}))
    assert forced.samples is None and "has channels ('x', 'y', 'z')" in str(forced.error)
    xyz = PreprocessConfig(layout="msr20", persons=1)
    as_3d = parse_item(item, ParseOptions(preprocess=xyz, array_options={
        "axes": "TVC", "skeleton": "msr20"})).samples[0]
    from codt_deploy.readers import read_poses

    expected = prepare_sequence(read_poses(path, axes="TVC", skeleton="msr20")[0], xyz)
    np.testing.assert_allclose(as_3d, expected)  # a 3-D model: x, y, z as before
