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
from tests.conftest import REPO_ROOT, example_paths
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
    from codt_deploy.readers import read_poses

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
