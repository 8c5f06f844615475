"""Which source tree made a file: the commit recorded in checkpoints and in ``task.json``."""

from __future__ import annotations

import subprocess
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()


def git_sha() -> str | None:
    """The current commit of this source tree, with ``-dirty`` when it has local edits; None
    outside a git checkout or without git."""
    try:
        sha = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("-dirty" if dirty else "")) or None
