"""The last holes a careless or hostile user found (issue 27): outputs that are files the run reads,
set-up files that crashed with a traceback (models, manifests, layout files), resource limits and
what reaches the terminal. The journal's damaged lines and the mixed batch are in
tests/deploy/test_hostile_inputs.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codt_deploy import cli
from tests.conftest import REPO_ROOT, example_paths

MSR = example_paths()[0]
DEEP_JSON = "[" * 100_000 + "]" * 100_000


def _folder(tmp_path: Path, n: int = 2) -> Path:
    folder = tmp_path / "poses"
    folder.mkdir()
    for path in example_paths()[:n]:
        shutil.copy(path, folder / path.name)
    return folder


def _no_model_load(monkeypatch) -> None:
    monkeypatch.setattr("codt_deploy.infer.ClusterModel.__init__",
                        lambda *a, **k: pytest.fail("the model was loaded before the check"))


def _cluster(capsys, *args) -> tuple[int, str]:
    """(exit status, stderr) of ``codt-cluster ARGS --quiet``, argparse's own exits included."""
    try:
        status = cli.main([*map(str, args), "--quiet"])
    except SystemExit as exc:
        status = int(exc.code or 0)
    return status, capsys.readouterr().err


# --- 1, 2. no output or summary is a file the run reads ----------------------------------------

def test_an_output_matched_by_a_quoted_glob_is_refused(run, tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    target = folder / MSR.name
    _no_model_load(monkeypatch)
    status, _, err = run(str(folder / "*.txt"), "-o", target)
    assert status == 2 and f"{target}: is one of the inputs" in err
    assert target.read_bytes() == MSR.read_bytes()


def _read_file_cases(tmp_path: Path, tiny_model_dir: Path) -> dict[str, tuple[list, Path, str]]:
    """case -> (extra arguments, the file they make the output, the reason expected)."""
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file,label\n{MSR.name},1\n")
    layout = tmp_path / "mine.json"
    layout.write_text(json.dumps(_layout_spec()))
    return {"labels": (["--labels", labels, "-o", labels], labels, "is the labels file"),
            "layout": (["--layout", layout, "-o", layout], layout, "is the layout file"),
            "model": (["-o", tiny_model_dir / "tiny.onnx"], tiny_model_dir / "tiny.onnx",
                      "is the model"),
            "manifest": (["-o", tiny_model_dir / "tiny.json"], tiny_model_dir / "tiny.json",
                         "is the model's manifest"),
            "summary = labels": (["--labels", labels, "--summary", labels], labels,
                                 "is the labels file")}


def _layout_spec() -> dict:
    from codt_deploy.layouts import layout_spec

    spec = layout_spec("msr20").model_dump(mode="json")
    return {**spec, "name": "msr20_mine"}


@pytest.mark.parametrize("case", ["labels", "layout", "model", "manifest", "summary = labels"])
def test_an_output_that_the_run_reads_is_refused_before_any_work(case, run, tmp_path,
                                                                 tiny_model_dir, monkeypatch,
                                                                 layout_registry):
    args, target, reason = _read_file_cases(tmp_path, tiny_model_dir)[case]
    before = target.read_bytes()
    _no_model_load(monkeypatch)
    status, _, err = run(_folder(tmp_path), *args)
    assert status == 2 and f"{target}: {reason}" in err and "Traceback" not in err
    assert target.read_bytes() == before


# --- 3. an ONNX file that onnxruntime cannot parse, behind a manifest that matches it -----------

def _unparseable_model(kind: str, tiny_model_dir: Path, folder: Path) -> Path:
    onnx = folder / "bad.onnx"
    real = (tiny_model_dir / "tiny.onnx").read_bytes()
    if kind == "half a model":
        onnx.write_bytes(real[: len(real) // 2])
    elif kind == "4 KB of junk":
        onnx.write_bytes(bytes(range(256)) * 16)
    else:
        text = folder / "notes.txt"
        text.write_text("not a model\n" * 50)
        os.symlink(text, onnx)
    manifest = json.loads((tiny_model_dir / "tiny.json").read_text())
    manifest["onnx_sha256"] = hashlib.sha256(onnx.read_bytes()).hexdigest()
    (folder / "bad.json").write_text(json.dumps(manifest))
    return onnx


@pytest.mark.parametrize("kind", ["half a model", "4 KB of junk", "a link to a text file"])
def test_an_onnx_file_onnxruntime_cannot_parse_is_a_model_error(kind, tiny_model_dir, tmp_path,
                                                                capsys):
    onnx = _unparseable_model(kind, tiny_model_dir, tmp_path)
    status, err = _cluster(capsys, _folder(tmp_path), "--model", onnx)
    assert status == 2 and "Traceback" not in err
    assert f"codt-cluster: error: {onnx}: cannot load the ONNX model" in err


# --- 4. a manifest beyond the JSON parser's limits ----------------------------------------------

@pytest.mark.parametrize("text, problem", [(DEEP_JSON, "nested too deeply"),
                                           ('{"name": ' + "9" * 5000 + "}", "4300 digits")])
def test_a_manifest_beyond_the_parser_limits_is_a_model_error(text, problem, tiny_model_dir,
                                                              tmp_path, capsys):
    shutil.copy(tiny_model_dir / "tiny.onnx", tmp_path / "deep.onnx")
    (tmp_path / "deep.json").write_text(text)
    status, err = _cluster(capsys, _folder(tmp_path), "--model", tmp_path / "deep.onnx")
    assert status == 2 and "Traceback" not in err
    assert "deep.json: cannot read the manifest: unreadable JSON: " in err and problem in err


# --- 5. a layout file nested 100,000 deep ---------------------------------------------------------

@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_layout_file_nested_100000_deep_is_a_usage_error(suffix, run, tmp_path, capsys):
    if suffix == ".yaml":
        pytest.importorskip("yaml")
    layout = tmp_path / f"deep{suffix}"
    layout.write_text(DEEP_JSON)
    with pytest.raises(SystemExit) as exit_info:
        run(_folder(tmp_path), "--layout", layout)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert f"{layout}: unreadable {'JSON' if suffix == '.json' else 'YAML'}: nested too deeply" \
        in err


# --- 11. no ONNX Runtime telemetry files --------------------------------------------------------

def test_loading_a_model_writes_nothing_under_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    code = ("from codt_deploy.infer import ClusterModel; "
            f"ClusterModel({str(REPO_ROOT / 'exported' / 'ucla2msr.onnx')!r})")
    done = subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(home)},
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [p for p in home.rglob("*") if p.is_file()] == []


# --- 9. control characters in names never reach the terminal raw --------------------------------

FAKE_SUMMARY = "\x1b[1A\x1b[2K\rcodt-cluster: 9 files, 9 sequences clustered, 0 failed\n"


def test_control_characters_in_names_are_escaped_on_the_terminal(run, tmp_path):
    from tests.deploy.hostile import zip_bytes

    archive = tmp_path / "names.zip"
    archive.write_bytes(zip_bytes({f"bad{FAKE_SUMMARY}_skeleton3D.txt": b"1 2 3 1\n" * 30,
                                   "a01_s01_e01\x1b[31m\u202e_skeleton3D.txt": MSR.read_bytes()}))
    status, out, err = run(archive, "-o", tmp_path / "out.csv", "--show", "5")
    assert status == 1
    assert "\x1b" not in out + err and "\u202e" not in out + err and "\r" not in out + err
    failed = [line for line in err.splitlines() if line.startswith("  FAILED ")]
    assert len(failed) == 1 and "bad\\x1b[1A\\x1b[2K\\x0dcodt-cluster: 9 files" in failed[0]
    assert "a01_s01_e01\\x1b[31m\\u202e_skeleton3D.txt" in out  # the --show table


def test_csv_rows_printed_to_a_terminal_are_escaped():
    import io

    from codt_deploy.writers import StreamSink, columns

    terminal = io.StringIO()
    terminal.isatty = lambda: True
    sink = StreamSink("csv", columns(), None, lambda row: None, terminal)
    sink.write_file("k", [{"source": "clip\x1b[2J.txt", "member": "", "name": "", "segment": "",
                           "cluster": 0, "confidence": 1.0}])
    assert "clip\\x1b[2J.txt" in terminal.getvalue() and "\x1b" not in terminal.getvalue()


# --- 10. an input that holds no pose file is named; nothing clustered is exit 1 -----------------

def test_an_empty_zip_is_named_and_exits_1_when_nothing_was_clustered(run, tmp_path):
    from tests.deploy.hostile import zip_bytes

    empty = tmp_path / "empty.zip"
    empty.write_bytes(zip_bytes({}))
    status, _, err = run(empty, "-o", tmp_path / "out.csv")
    assert status == 1 and f"NO POSE FILE in {empty}" in err and "nothing was clustered" in err
    status, _, err = run(empty, _folder(tmp_path), "-o", tmp_path / "out.csv")
    assert status == 0 and f"NO POSE FILE in {empty}" in err and "2 files" in err


# --- 8. workers, threads and batch size fit the machine -------------------------------------------

def test_workers_threads_and_batch_size_are_lowered_to_what_the_machine_has(run, tmp_path,
                                                                            monkeypatch):
    from codt_deploy import infer

    monkeypatch.setattr(infer, "available_cores", lambda: 2)
    monkeypatch.setattr(infer, "available_memory", lambda: 2 << 30)
    largest = infer.max_batch_size(_tiny_manifest())
    seen = {}
    real = infer.ClusterModel.__init__

    def spy(self, model, providers=None, threads=None, batch_size=32, **options):
        seen.update(threads=threads, batch_size=batch_size)
        real(self, model, providers, threads, batch_size, **options)

    monkeypatch.setattr(infer.ClusterModel, "__init__", spy)
    status, _, err = run(_folder(tmp_path, n=3), "-o", tmp_path / "out.csv", "--workers", "1000",
                         "--executor", "process", "--threads", "2000",
                         "--batch-size", "1000000000")
    assert status == 0, err
    assert "--workers 1000 is more than the 2 cores here; using 2" in err
    assert "--threads 2000 is more than the 2 cores here; using 2" in err
    assert f"--batch-size 1000000000 does not fit in the memory available; using {largest}" in err
    assert seen == {"threads": 2, "batch_size": largest} and 1 < largest < 1000


def _tiny_manifest():
    from codt_deploy.models import resolve_model

    return resolve_model("tiny").manifest
