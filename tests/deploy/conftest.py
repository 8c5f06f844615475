"""Fixtures for the deployment tests: ``codt-cluster`` against the tiny random-weight model.

The tiny model itself (``exported_tiny_model``, ``tiny_model_dir``; exported once per session with
the real exporter) is a fixture of tests/conftest.py, shared with the training tests of the
exporter. ``tiny_model_env`` points ``$CODT_MODEL_DIR`` at it and hides the shipped models; ``run``
calls ``codt-cluster --model tiny``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def interrupt_journal_after(monkeypatch, files: int) -> list:
    """Make codt-cluster's journal raise KeyboardInterrupt (as Ctrl-C would) when it is about to
    record file number ``files + 1``; returns the keys of the files it recorded before."""
    from codt_deploy import writers

    real_write = writers.JournalSink.write_file
    recorded: list = []

    def dying_write(self, key, rows):
        if len(recorded) == files:
            raise KeyboardInterrupt
        recorded.append(key)
        real_write(self, key, rows)

    monkeypatch.setattr(writers.JournalSink, "write_file", dying_write)
    return recorded


@pytest.fixture()
def tiny_model_env(tiny_model_dir, tmp_path, monkeypatch) -> Path:
    """``$CODT_MODEL_DIR`` = the tiny model's folder, and the package's own models hidden."""
    import codt_deploy.models

    monkeypatch.setenv("CODT_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setattr(codt_deploy.models, "_package_exported_dir", lambda: tmp_path / "none")
    return tiny_model_dir


@pytest.fixture()
def run(tiny_model_env, capsys):
    """``run(*args) -> (exit status, stdout, stderr)``: ``codt-cluster`` with ``--model tiny`` and
    no progress bar."""
    from codt_deploy import cli

    def _run(*args):
        status = cli.main([*map(str, args), "--model", "tiny", "--quiet"])
        out, err = capsys.readouterr()
        return status, out, err

    return _run
