"""``python -m app``: arguments, a clear failure without a model, serving, and no torch import."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app.__main__ import main, parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv, message", [
    (["--port", "http"], "expected a whole number from 0 to 65535, got 'http'"),
    (["--port", "70000"], "expected a whole number from 0 to 65535, got 70000"),
    (["--max-files", "0"], "expected a whole number of at least 1, got 0"),
])
def test_bad_arguments_are_explained(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_listen_on_localhost():
    args = parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860 and args.model is None


def test_missing_model_fails_before_serving(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "absent.onnx")]) == 2
    err = capsys.readouterr().err
    assert "absent.onnx" in err and "not found" in err


def _run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    return result.stdout.strip()


@pytest.mark.slow
def test_app_imports_neither_torch_nor_training():
    loaded = _run_python("import sys, app.__main__, app.ui, app.logic, app.plots; "
                         "print(sorted(m for m in sys.modules "
                         "if m.split('.')[0] in ('torch', 'training')))")
    assert loaded == "[]"


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 90.0) -> str:
    assert process.stderr is not None  # started with stderr=PIPE
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}: "
                                 f"{process.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@pytest.mark.slow
def test_python_m_app_serves_the_page(tiny_model, port):
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--model", str(tiny_model), "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page = _wait_for(f"http://127.0.0.1:{port}/config", process)
        assert "CoDT skeleton-action clustering" in page
        assert "Try the examples: MSR Action3D" in page
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "model tiny (4 clusters, layout kinect20)" in process.stderr.read()
