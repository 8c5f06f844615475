"""CrosSCLR / CoDT training arrays (docs/FORMATS.md §1 "CrosSCLR / CoDT arrays").

``{split}_data.npy`` (N, 3, T, V, 2), zero-padded, from the ST-GCN/CrosSCLR generator, or the
pre-processed ``{split}_position.npy`` (N, 3, 50, 25, 2) that CoDT loads. Labels come from the
sibling ``{split}_label.npy`` (int, (N,) or (N, 1)), else from ``{split}_label.pkl``
(``(sample_names, labels)``), which is read only with ``trust_pickle=True`` and then by an
unpickler that refuses every global. Arrays are memory-mapped with ``allow_pickle=False``; each
sample becomes one sequence with trailing zero frames trimmed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers._pickle import load_plain
from codt_deploy.readers._text import sample_name
from codt_deploy.readers.arrays import (
    load_npy,
    resolve_layout,
    split_samples,
    to_canonical,
)
from codt_deploy.sequence import PoseSequence

logger = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^(?P<split>.+)_(?P<kind>data|position)\.npy$", re.IGNORECASE)
DEFAULT_LAYOUT = "ntu25"


def _labels_npy(path: Path, count: int) -> list[int]:
    labels = load_npy(path, str(path))
    if labels.dtype.kind not in "iu" or labels.size != count:
        raise PoseFormatError(path, f"expected {count} integer labels, found {labels.size} of "
                                    f"dtype {labels.dtype}")
    return [int(x) for x in labels.reshape(-1)]  # (N,) or (N, 1) -> (N,)


def _labels_pkl(path: Path, count: int) -> tuple[list[str], list[int]]:
    content = load_plain(path)
    if not (isinstance(content, (tuple, list)) and len(content) == 2
            and all(isinstance(part, (list, tuple)) and len(part) == count for part in content)
            and all(isinstance(x, int) for x in content[1])):
        raise PoseFormatError(path, f"expected (sample_names, labels), two lists of {count}")
    names = [sample_name(str(n), (".skeleton",)) for n in content[0]]
    return names, [int(x) for x in content[1]]


def _side_labels(path: Path, count: int, trust_pickle: bool) -> tuple[list[str] | None, list]:
    """Names (or None) and labels from the split's label file, if any."""
    match = FILE_NAME.match(path.name)
    if match is None:
        return None, [None] * count
    npy = path.with_name(f"{match['split']}_label.npy")
    pkl = path.with_name(f"{match['split']}_label.pkl")
    if npy.is_file():
        return None, _labels_npy(npy, count)
    if pkl.is_file():
        if trust_pickle:
            return _labels_pkl(pkl, count)
        logger.warning("%s: labels in %s not read; it is a pickle (pass trust_pickle=True for a "
                       "file you trust, or convert it to %s)", path, pkl.name, npy.name)
    return None, [None] * count


def _sequences(array: np.ndarray, source: str, names: list[str] | None, labels: list,
               skeleton: str | None) -> list[PoseSequence]:
    if array.dtype.kind not in "fiu" or array.ndim != 5 or array.shape[1] != 3:
        raise PoseFormatError(source, f"expected a numeric (N, 3, T, V, M) array, found shape "
                                      f"{array.shape} of dtype {array.dtype}")
    batch = to_canonical(array, "NCTVM", source)  # (N, C, T, V, M) -> (N, T, M, V, C)
    layout = resolve_layout(skeleton or DEFAULT_LAYOUT, batch.shape[3], source)
    stem = sample_name(source, (".npy",))
    names = names or [f"{stem}[{i}]" for i in range(batch.shape[0])]
    return split_samples(batch, source, layout=layout, channels=("x", "y", "z"), names=names,
                         labels=labels)


def read_path(path: Path, *, trust_pickle: bool = False,
              skeleton: str | None = None) -> list[PoseSequence]:
    array = load_npy(path, str(path), mmap=True)
    names, labels = _side_labels(path, array.shape[0] if array.ndim else 0, trust_pickle)
    return _sequences(array, str(path), names, labels, skeleton)


def parse(data: bytes, source: str, *, skeleton: str | None = None) -> list[PoseSequence]:
    """The data array alone (an upload): no side label file."""
    array = load_npy(data, source)
    return _sequences(array, source, None, [None] * (array.shape[0] if array.ndim else 0),
                      skeleton)
