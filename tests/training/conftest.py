"""Fixtures shared by the training tests.

Prepared tasks: ``task_dir`` is ucla2msr prepared from real files (needs ../shared/data, else the
test skips); ``synthetic_task_dir`` is a folder of the same shape written from synthetic motions
(tests/training/synthetic.py), available anywhere; ``any_task_dir`` runs a test on each of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.synthetic import write_synthetic_task


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


@pytest.fixture(scope="module")
def synthetic_task_dir(tmp_path_factory) -> Path:
    """A synthetic ucla2msr of the same shape as ``task_dir`` (24 clips per domain); no real data."""
    return write_synthetic_task(tmp_path_factory.mktemp("synthetic") / "ucla2msr")


@pytest.fixture(scope="module", params=["synthetic", "real"])
def any_task_dir(request) -> Path:
    """The synthetic task, then the real one (skipped where ../shared/data is absent)."""
    return request.getfixturevalue({"synthetic": "synthetic_task_dir",
                                    "real": "task_dir"}[request.param])
