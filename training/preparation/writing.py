"""Writing a prepared task folder (docs/ARCHITECTURE.md): streamed arrays, atomic replacement.

Arrays are appended sample by sample to a raw ``.part`` file and turned into a ``.npy`` at the end,
so a split never has to fit in memory twice. The whole task folder is written under a temporary
name beside its destination and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_COPY_ROWS = 1024  # samples copied per chunk when finishing an array


class ArrayAppender:
    """Append float32 samples of one fixed shape to ``<path>.part``; :meth:`finish` → ``.npy``."""

    def __init__(self, path: Path, sample_shape: tuple[int, ...]) -> None:
        self.path = path
        self.sample_shape = sample_shape
        self.count = 0
        self._part = path.with_name(path.name + ".part")
        self._file = open(self._part, "wb")  # noqa: SIM115 - closed in finish()/close()

    def append(self, sample: np.ndarray) -> None:
        if sample.shape != self.sample_shape:
            raise ValueError(f"{self.path.name}: sample shape {sample.shape}, "
                             f"expected {self.sample_shape}")
        self._file.write(np.ascontiguousarray(sample, dtype=np.float32).tobytes())
        self.count += 1

    def finish(self) -> None:
        """Write ``path`` as a ``(N, *sample_shape)`` float32 ``.npy`` and remove the part file."""
        self._file.close()
        shape = (self.count, *self.sample_shape)  # (N, C, T, V, M)
        out = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32, shape=shape)
        if self.count:
            part = np.memmap(self._part, dtype=np.float32, mode="r", shape=shape)
            for start in range(0, self.count, _COPY_ROWS):
                out[start:start + _COPY_ROWS] = part[start:start + _COPY_ROWS]
            del part
        out.flush()
        del out
        self._part.unlink()

    def close(self) -> None:
        self._file.close()


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on success it replaces ``final``.

    On an exception the temporary folder is removed and ``final`` is left untouched. An existing
    ``final`` is moved aside, the new folder renamed in, then the old one deleted.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("wrote %s", final)
