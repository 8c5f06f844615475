"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny shapes gain nothing from two threads, and stall when another process holds a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task_dir(shared_data, tmp_path_factory) -> Path:
    """ucla2msr prepared from 24 real files per domain (evenly spread over the classes)."""
    from training.preparation.pipeline import prepare_task
    from training.preparation.tasks import get_task

    out = tmp_path_factory.mktemp("prepared")
    prepare_task(get_task("ucla2msr"), shared_data, out, limit=24)
    return out / "ucla2msr"
