"""Hostile input never takes a run down (issue 9): one test per defect class of the archive layer,
the input walk, the pipeline, the outputs and the journal, and one batch mixing every class with
good files. Reader-level classes are in tests/readers/test_hostile.py."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from codt_deploy import sources, writers
from codt_deploy.infer import Prediction, predict_blocks
from codt_deploy.sources import ArchiveLimits, InputItem, iter_inputs
from tests.conftest import example_paths
from tests.deploy.conftest import interrupt_journal_after
from tests.deploy.hostile import (
    deep_folder,
    hostile_zip,
    make_fifo,
    tar_bytes,
    zip_bytes,
)

MSR_TEXT = example_paths()[0].read_bytes()


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _good_folder(tmp_path: Path, n: int = 3) -> Path:
    folder = tmp_path / "good"
    folder.mkdir()
    for path in example_paths()[:n]:
        shutil.copy(path, folder / path.name)
    return folder


def _items(*args: object, limits: ArchiveLimits | None = None, timeout: float = 20.0
           ) -> list[InputItem]:
    """``list(iter_inputs(args))`` in a thread, so a hang fails the test instead of freezing it."""
    box: list[list[InputItem]] = []
    limits = ArchiveLimits() if limits is None else limits
    worker = threading.Thread(target=lambda: box.append(list(iter_inputs(list(map(str, args)),
                                                                          limits))), daemon=True)
    worker.start()
    worker.join(timeout)
    assert box, f"iter_inputs did not return within {timeout} s"
    return box[0]


# --- 1. bad archive members ------------------------------------------------------------------

def test_bad_zip_members_fail_alone_and_the_rest_is_read(tmp_path):
    archive = tmp_path / "mixed.zip"
    archive.write_bytes(hostile_zip({"good/a01_s01_e01_skeleton3D.txt": MSR_TEXT}))
    items = {it.member: it for it in _items(archive)}
    assert items["good/a01_s01_e01_skeleton3D.txt"].data == MSR_TEXT
    assert "password required" in items["encrypted/x.txt"].error
    assert "decompressing" in items["deflate/x.txt"].error
    assert "compression method is not supported" in items["method/x.txt"].error
    assert "cannot read this member" in items["lzma/x.txt"].error


# --- 3. FIFOs ----------------------------------------------------------------------------------

def test_fifos_are_never_opened(tmp_path):
    folder = _good_folder(tmp_path, n=1)
    make_fifo(folder / "pipe.skeleton")
    make_fifo(folder / "pipe.tar")
    os.symlink(folder / "pipe.skeleton", folder / "link_to_pipe.txt")
    items = _items(folder, folder / "pipe.tar")
    skipped = {Path(it.source).name: it.skip for it in items if it.skip}
    assert set(skipped) == {"pipe.skeleton", "pipe.tar", "link_to_pipe.txt"}
    assert all("not a regular file" in reason for reason in skipped.values())
    assert "not a regular file" in items[-1].error  # named on the command line: an error
    assert [it.path.name for it in items if it.path] == [example_paths()[0].name]


# --- 5. tar bombs ------------------------------------------------------------------------------

def test_skipped_tar_members_count_toward_the_limits(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(tar_bytes({f"m{i}.bin": b"\0" * (8 << 20) for i in range(4)}))
    # each member is over the member limit (skipped unread); the ratio check is off
    limits = ArchiveLimits(max_member_bytes=1 << 20, max_total_bytes=12 << 20, max_ratio=1e9)
    start = time.perf_counter()
    items = _items(bomb, limits=limits)
    assert time.perf_counter() - start < 10
    assert "refused" in items[0].error and items[0].member == "m0.bin"
    assert items[-1].member == "" and "inflates past" in items[-1].error


def test_a_tar_gz_bomb_stops_early_with_the_default_limits(tmp_path):
    bomb = tmp_path / "bomb.tgz"
    bomb.write_bytes(tar_bytes({f"m{i}.bin": b"\0" * (16 << 20) for i in range(4)}))
    start = time.perf_counter()
    items = _items(bomb)
    assert time.perf_counter() - start < 5
    assert "compression ratio" in items[-1].error


# --- 8. duplicate member names -----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_second_member_of_the_same_name_is_reported_not_read(kind, tmp_path):
    members = [("a01_s01_e01_skeleton3D.txt", MSR_TEXT), ("a01_s01_e01_skeleton3D.txt", b"\0" * 99)]
    archive = tmp_path / f"dup.{kind}"
    if kind == "zip":
        with pytest.warns(UserWarning), zipfile.ZipFile(archive, "w") as handle:
            for name, data in members:
                handle.writestr(name, data)
    else:
        import tarfile

        with tarfile.open(archive, "w") as handle:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                handle.addfile(info, io.BytesIO(data))
    first, second = _items(archive)
    assert first.data == MSR_TEXT and second.data is None
    assert "a second member of this name" in second.error


def test_the_app_treats_duplicates_and_backslash_traversal_like_the_cli(tmp_path):
    from app.uploads import parse_uploads

    archive = tmp_path / "upload.zip"
    with pytest.warns(UserWarning), zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("a01_s01_e01_skeleton3D.txt", MSR_TEXT)
        handle.writestr("a01_s01_e01_skeleton3D.txt", MSR_TEXT)
        handle.writestr("..\\..\\a02_s01_e01_skeleton3D.txt", MSR_TEXT)
    parsed = parse_uploads([archive])
    assert len(parsed.sequences) == 1
    reasons = sorted(p.reason for p in parsed.problems)
    assert len(reasons) == 2
    assert "a second member of this name" in reasons[0] and "unsafe member path" in reasons[1]


# --- 9. one input, several spellings -----------------------------------------------------------

def test_inputs_are_keyed_canonically(tmp_path, monkeypatch):
    folder = _good_folder(tmp_path, n=2)
    monkeypatch.chdir(tmp_path)
    spellings = ["good", "./good/", str(folder), "good/../good"]
    keys = [[it.key for it in _items(s)] for s in spellings]
    assert all(k == keys[0] for k in keys) and len(keys[0]) == 2


def test_resume_with_the_inputs_spelled_differently_keeps_every_row_once(run, tmp_path,
                                                                         monkeypatch):
    folder = _good_folder(tmp_path, n=6)
    monkeypatch.chdir(tmp_path)
    real = writers.JournalSink.write_file
    interrupt_journal_after(monkeypatch, 3)
    assert run("good", "-o", "out.csv", "--batch-size", "1")[0] == 130
    monkeypatch.setattr(writers.JournalSink, "write_file", real)
    status, _, err = run(f"./{folder.name}/", str(folder), "-o", "out.csv", "--resume")
    assert status == 0, err
    names = [r["name"] for r in _rows(tmp_path / "out.csv")]
    assert len(names) == 6 == len(set(names)) and "3 files kept" in err


# --- 11. odd input paths -----------------------------------------------------------------------

def test_a_path_component_over_255_characters_is_an_error_item(tmp_path):
    (item,) = _items(tmp_path / ("x" * 300 + ".skeleton"))
    assert "File name too long" in item.error


def test_a_folder_1100_levels_deep_is_walked(tmp_path):
    (tmp_path / "root").mkdir()
    bottom = deep_folder(tmp_path / "root", 1100)
    try:
        shutil.copy(example_paths()[0], bottom / example_paths()[0].name)
        (item,) = _items(tmp_path / "root")
        assert item.path == bottom / example_paths()[0].name
    finally:  # shutil.rmtree (pytest's clean-up) recurses and cannot remove 1,100 levels
        (bottom / example_paths()[0].name).unlink(missing_ok=True)
        for folder in [bottom, *bottom.parents][:1100]:
            folder.rmdir()


def test_an_unreadable_subfolder_is_a_failure_not_a_silent_skip(run, tmp_path, monkeypatch):
    folder = _good_folder(tmp_path, n=2)
    (folder / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):  # the tests run as root, who can read any folder: simulate the EACCES
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(sources.os, "scandir", scandir)
    status, _, err = run(folder, "-o", tmp_path / "out.csv")
    assert status == 1 and len(_rows(tmp_path / "out.csv")) == 2
    assert f"FAILED {folder / 'locked'}: cannot read this folder: Permission denied" in err


# --- 10. output paths --------------------------------------------------------------------------

def _output_cases(tmp_path: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "a_file").write_text("x")
    target = tmp_path / "target.csv"
    target.write_text("keep me")
    os.symlink(target, tmp_path / "link.csv")
    return {"folder": (tmp_path, "is a folder"),
            "parent is a file": (tmp_path / "a_file" / "out.csv", "is not a folder"),
            "unwritable folder": (Path("/proc/codt-out.csv"), "cannot write the output"),
            "an input": (folder / example_paths()[0].name, "is one of the inputs"),
            "an input file": (tmp_path / "single.txt", "is one of the inputs"),
            "a device": (Path("/dev/null"), "not a regular file"),
            "a symlink": (tmp_path / "link.csv", "is a symbolic link")}


@pytest.mark.parametrize("case", ["folder", "parent is a file", "unwritable folder", "an input",
                                  "an input file", "a device", "a symlink"])
def test_bad_output_paths_are_refused_before_any_work(case, run, tmp_path, monkeypatch):
    folder = _good_folder(tmp_path, n=2)
    single = tmp_path / "single.txt"
    single.write_bytes(MSR_TEXT)
    output, message = _output_cases(tmp_path, folder)[case]
    before = {p: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr("codt_deploy.infer.ClusterModel.__init__",
                        lambda *a, **k: pytest.fail("the model was loaded before the check"))
    status, _, err = run(folder, single, "-o", output)
    assert status == 2 and message in err and "Traceback" not in err
    assert single.read_bytes() == MSR_TEXT
    assert {p: p.read_bytes() for p in folder.iterdir()} == before
    assert os.path.islink(tmp_path / "link.csv")
    assert (tmp_path / "target.csv").read_text() == "keep me"


# --- 7. names that are not UTF-8; 13. formula injection ----------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_non_utf8_and_formula_names_are_written_escaped(fmt, run, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    raw_name = b"a01_s01_e01_\xff\xfe_skeleton3D.txt"
    (folder / os.fsdecode(raw_name)).write_bytes(MSR_TEXT)
    archive = tmp_path / "formula.zip"
    archive.write_bytes(zip_bytes({'=HYPERLINK("http://x")/a01_s01_e01_skeleton3D.txt': MSR_TEXT}))
    out = tmp_path / f"out.{fmt}"
    status, _, err = run(folder, archive, "-o", out)
    assert status == 0, err
    if fmt == "csv":
        rows = _rows(out)
        assert rows[0]["source"].endswith("a01_s01_e01_\\xff\\xfe_skeleton3D.txt")
        assert rows[1]["member"] == '\'=HYPERLINK("http://x")/a01_s01_e01_skeleton3D.txt'
    else:
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert rows[0]["source"].endswith("a01_s01_e01_\\xff\\xfe_skeleton3D.txt")
        assert rows[1]["member"].startswith("=HYPERLINK")  # JSON is data, not a spreadsheet


# --- 12. interrupts and the journal ------------------------------------------------------------

def test_an_interrupt_during_the_final_conversion_exits_130_and_resumes(run, tmp_path,
                                                                       monkeypatch):
    folder = _good_folder(tmp_path, n=3)
    out = tmp_path / "out.csv"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    real = writers.write_rows
    monkeypatch.setattr(writers, "write_rows", interrupted)
    status, _, err = run(folder, "-o", out)
    assert status == 130 and "--resume" in err and "Traceback" not in err
    assert (tmp_path / "out.csv.part").exists() and not out.exists()
    monkeypatch.setattr(writers, "write_rows", real)
    status, _, err = run(folder, "-o", out, "--resume")
    assert status == 0 and len(_rows(out)) == 3 and "3 files kept" in err


def test_temporaries_left_by_a_killed_conversion_are_removed(run, tmp_path):
    folder = _good_folder(tmp_path, n=1)
    stale = tmp_path / ".out.csv.k1ll3d.tmp"
    stale.write_text("half a conversion")
    assert run(folder, "-o", tmp_path / "out.csv")[0] == 0
    assert not stale.exists()


def _interrupted_journal(run, tmp_path, monkeypatch, folder, done):
    real = writers.JournalSink.write_file
    interrupt_journal_after(monkeypatch, done)
    assert run(folder, "-o", tmp_path / "out.csv", "--batch-size", "1")[0] == 130
    monkeypatch.setattr(writers.JournalSink, "write_file", real)
    return tmp_path / "out.csv.part"


@pytest.mark.parametrize("damage", ["garbled row", "line 1", "key not a string",
                                    "nested 100,000 deep"])
def test_a_corrupted_journal_line_rereads_its_file(damage, run, tmp_path, monkeypatch, caplog):
    folder = _good_folder(tmp_path, n=4)
    journal = _interrupted_journal(run, tmp_path, monkeypatch, folder, done=3)
    lines = journal.read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if '"type": "row"' in line)
    lines[row] = {"garbled row": '{"type": "row", "ke\x00y": \n', "line 1": "1\n",
                  "key not a string": '{"type": "row", "key": [1]}\n',
                  "nested 100,000 deep": "[" * 100_000 + "\n"}[damage]
    journal.write_text("".join(lines))
    status, _, err = run(folder, "-o", tmp_path / "out.csv", "--resume")
    assert status == 0, err
    assert "2 files kept" in err and "unreadable line" in caplog.text
    names = sorted(r["name"] for r in _rows(tmp_path / "out.csv"))
    assert names == sorted(p.name.replace("_skeleton3D.txt", "") for p in folder.iterdir())


# --- 13. smaller ones --------------------------------------------------------------------------

def test_nested_archives_are_listed_with_the_reason(run, tmp_path):
    archive = tmp_path / "outer.zip"
    archive.write_bytes(zip_bytes({"a01_s01_e01_skeleton3D.txt": MSR_TEXT, "inner.zip": b"PK"}))
    status, _, err = run(archive, "-o", tmp_path / "out.csv")
    assert status == 0
    assert f"NOT OPENED {archive}::inner.zip: nested archive; not opened" in err


def test_a_labels_field_over_the_csv_limit_is_a_clear_error(run, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n" + "a" * 140_000 + ",1\n")
    status, _, err = run(_good_folder(tmp_path, n=1), "--labels", labels)
    assert status == 2 and "(line 2): not a labels CSV: field larger than field limit" in err


def test_the_cli_reads_a_plain_t_20_3_npy_with_layout_and_axes(run, tmp_path):
    from codt_deploy.readers import read_bytes

    seq = read_bytes("a01_s01_e01_skeleton3D.txt", MSR_TEXT)[0]
    np.save(tmp_path / "clip.npy", seq.data[:, 0])  # (T, M, V, C) -> (T, 20, 3)
    status, _, err = run(tmp_path / "clip.npy", "--layout", "msr20", "--axes", "TVC",
                         "-o", tmp_path / "out.csv")
    assert status == 0 and len(_rows(tmp_path / "out.csv")) == 1, err


# --- 2 (batch side). a block the model refuses fails alone -------------------------------------

class _Picky:
    """A model that refuses any batch holding a sample whose first value is 7."""

    def predict(self, batch):
        if (batch.reshape(len(batch), -1)[:, 0] == 7).any():
            raise ValueError("refused")
        n = len(batch)
        return Prediction(np.arange(n), np.ones(n, np.float32), np.ones((n, 2), np.float32),
                          np.zeros((n, 4), np.float32))


def test_a_block_the_model_refuses_fails_alone():
    blocks = [np.zeros((2, 3, 1, 1, 1), np.float32), np.full((1, 3, 1, 1, 1), 7, np.float32),
              np.zeros((3, 3, 1, 1, 1), np.float32)]
    good, bad, other = predict_blocks(_Picky(), blocks)
    assert len(good) == 2 and len(other) == 3
    assert bad == "the model refused it: refused"


# --- the promise: a batch mixing every hostile class with good files ---------------------------

def _mixed_batch(tmp_path: Path, shared_data: Path) -> tuple[list, int, list[str]]:
    """(inputs, good sequences, the reason each bad input must be listed with)."""
    folder = _good_folder(tmp_path, n=4)
    bom = MSR_TEXT.replace(b"\n", b"\r\r\n")
    (folder / "a02_s01_e01_skeleton3D.txt").write_bytes(b"\xef\xbb\xbf" + bom)  # good: BOM
    huge = MSR_TEXT.replace(MSR_TEXT.split(b"\n")[3], b"3e38 -3e38 3e38 1", 1)
    (folder / "a03_s01_e01_skeleton3D.txt").write_bytes(huge)
    ucla = json.loads((shared_data / "nw_ucla" / "a01_s01_e00_v01.json").read_bytes())
    ucla["skeletons"] = [[[0, 0, 0]] * 20] * 5
    (folder / "zeros.json").write_text(json.dumps(ucla))
    (folder / "huge_header.npy").write_bytes(
        b"\x93NUMPY\x01\x00v\x00" + b"{'descr': '<f4', 'fortran_order': False, "
        b"'shape': (60000000000,), }".ljust(117) + b"\n")
    make_fifo(folder / "pipe.skeleton")
    (tmp_path / "members.zip").write_bytes(hostile_zip({"a04_s01_e01_skeleton3D.txt": MSR_TEXT}))
    (tmp_path / "bomb.tar.gz").write_bytes(tar_bytes({"z.bin": b"\0" * (16 << 20)}))
    (tmp_path / "empty.zip").write_bytes(zip_bytes({}))  # issue 27: named, not silent
    (tmp_path / "names.zip").write_bytes(zip_bytes({  # a name that would rewrite the terminal
        "fake\x1b[1A\x1b[2K\rcodt-cluster: 0 failed_skeleton3D.txt": b"1 2 3 1\n" * 30,
        "a05\x1b[31m_s01_e01_skeleton3D.txt": MSR_TEXT}))
    inputs = [folder, tmp_path / "members.zip", tmp_path / "bomb.tar.gz",
              tmp_path / ("x" * 300 + ".skeleton"), tmp_path / "empty.zip",
              tmp_path / "names.zip"]
    reasons = ["a03_s01_e01_skeleton3D.txt (frame 0): value 3e+38 is beyond",
               "zeros.json: all coordinates are zero", "huge_header.npy: .npy header declares",
               "encrypted/x.txt: cannot read this member", "deflate/x.txt: cannot read this member",
               "method/x.txt: cannot read this member", "lzma/x.txt: cannot read this member",
               "bomb.tar.gz: archive refused: compression ratio", "File name too long",
               "fake\\x1b[1A\\x1b[2K\\x0dcodt-cluster: 0 failed_skeleton3D.txt (frame 1): 30 joint"]
    return inputs, 4 + 1 + 1 + 1, reasons  # 4 plain + BOM/CR CR LF + a good member of each zip


def test_a_batch_mixing_every_hostile_class_clusters_every_good_file(run, tmp_path, shared_data):
    inputs, good, reasons = _mixed_batch(tmp_path, shared_data)
    out = tmp_path / "out.csv"
    status, _, err = run(*inputs, "-o", out, "--workers", "2")
    assert status == 1, err
    assert len(_rows(out)) == good and f"{good} sequences clustered" in err
    failed = [line for line in err.splitlines() if line.startswith("  FAILED ")]
    assert len(failed) == len(reasons), err
    for reason in reasons:
        assert any(reason in line for line in failed), (reason, err)
    assert "NOT OPENED" in err and "pipe.skeleton: not a regular file" in err
    assert f"NO POSE FILE in {tmp_path / 'empty.zip'}" in err and "\x1b" not in err
    assert "Traceback" not in err and "unexpected" not in err


def test_process_workers_exit_when_the_parent_is_killed():
    """The initializer of --executor process workers: a SIGKILLed parent leaves no worker behind."""
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    worker = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[2]);"
        "from codt_deploy.pipeline import exit_with_parent;"
        "exit_with_parent(int(sys.argv[1]), 0.1); time.sleep(60)"), str(parent.pid),
        str(REPO_ROOT)])
    try:
        time.sleep(0.5)
        assert worker.poll() is None  # alive while the parent is
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert worker.wait(timeout=15) == 1
    finally:
        for process in (parent, worker):
            if process.poll() is None:
                process.kill()
