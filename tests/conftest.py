"""Shared test fixtures: where the real skeleton samples live.

The real datasets are research data that stay outside the repository, in ``../shared/data`` next to
the checkout (override with ``CODT_SHARED_DATA``). Tests that need them skip with a clear reason
when they are absent.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CODT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
FIXTURES = REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real skeleton datasets; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (set CODT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Small declared-synthetic fixtures committed with the tests (see tests/fixtures/README.md)."""
    return FIXTURES


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    """Write ``header`` and ``rows`` to the CSV file ``path``; returns ``path``."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path
