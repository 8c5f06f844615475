"""Plain ``.npy`` / ``.npz`` pose arrays (docs/FORMATS.md §1 "Plain .npy / .npz"), and the
converter that writes them (``save_npz``: the safe route away from pickles).

``.npy`` holds one numeric array whose axes the caller declares (``axes``: NCTVM, CTVM, MTVC, TVC,
TMVC; default NCTVM for 5-D, CTVM for 4-D) together with the skeleton layout (``skeleton``; by
default the only layout with that many joints). ``.npz`` needs ``data`` and may carry ``axes``,
``skeleton``, ``channels``, ``labels`` (-1 = unknown) and ``names``; it is opened with
``allow_pickle=False`` so object arrays are refused. Each sample becomes one sequence with trailing
all-zero frames trimmed (zero padding); an all-zero sample is an error.
"""

from __future__ import annotations

import io
import math
import tokenize
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codt_deploy.errors import ARCHIVE_READ_ERRORS, LayoutError, PoseFormatError
from codt_deploy.layouts import available_layouts, get_layout
from codt_deploy.readers._text import (
    MAX_INFLATED_BYTES,
    check_finite,
    sample_name,
    trailing_zero_trim,
)
from codt_deploy.sequence import PoseSequence

AXES = ("NCTVM", "CTVM", "MTVC", "TVC", "TMVC")
_CANONICAL = "NTMVC"
_DEFAULT_AXES = {5: "NCTVM", 4: "CTVM"}
_DEFAULT_CHANNELS = {2: ("x", "y"), 3: ("x", "y", "z")}


def resolve_layout(skeleton: object, num_joints: int, source: str) -> str:
    """The declared layout (checked against V), or the only layout with V joints."""
    if skeleton is not None:
        try:
            layout = get_layout(str(skeleton))
        except LayoutError as exc:
            raise PoseFormatError(source, str(exc)) from None
        if layout.num_joints != num_joints:
            raise PoseFormatError(source, f"layout {layout.name!r} has {layout.num_joints} "
                                          f"joints but the array has V = {num_joints}")
        return layout.name
    matches = [n for n in available_layouts() if get_layout(n).num_joints == num_joints]
    if len(matches) != 1:
        options = ", ".join(matches) if matches else "none"
        raise PoseFormatError(source, f"cannot tell the skeleton layout of V = {num_joints} "
                                      f"joints (candidates: {options}); pass skeleton=...")
    return matches[0]


def to_canonical(array: np.ndarray, axes: str, source: str) -> np.ndarray:
    """Any supported axis order -> (N, T, M, V, C), adding size-1 N and M axes where absent."""
    axes = axes.upper()
    if axes not in AXES:
        raise PoseFormatError(source, f"unknown axes {axes!r}; expected one of {', '.join(AXES)}")
    if array.ndim != len(axes):
        raise PoseFormatError(source, f"axes {axes} need a {len(axes)}-D array, got shape "
                                      f"{array.shape}")
    for missing in "NM":
        if missing not in axes:
            array, axes = array[..., None], axes + missing
    return array.transpose([axes.index(a) for a in _CANONICAL])  # (N, T, M, V, C)


def split_samples(batch: np.ndarray, source: str, *, layout: str, channels: Sequence[str],
                  names: Sequence[str], labels: Sequence[int | None],
                  fps: float | None = None) -> list[PoseSequence]:
    """(N, T, M, V, C) -> one PoseSequence per sample, trailing zero frames trimmed."""
    sequences = []
    for i in range(batch.shape[0]):
        sample = np.asarray(batch[i], dtype=np.float32)  # (T, M, V, C); reads a memmap row
        check_finite(sample, source, what=f"sample {i}",
                     locate=lambda ix: {"frame": ix[0]})
        num_frames = trailing_zero_trim(sample)
        if num_frames == 0:
            raise PoseFormatError(source, f"sample {i} ({names[i]}) is all zeros: no pose")
        sequences.append(PoseSequence(
            data=np.ascontiguousarray(sample[:num_frames]), layout=layout, source=source,
            channels=tuple(channels), fps=fps, name=names[i], label=labels[i],
            meta={"index": i}))
    return sequences


def _check_numeric(array: np.ndarray, source: str, what: str) -> None:
    if array.dtype.kind not in "fiu":
        raise PoseFormatError(source, f"{what} has dtype {array.dtype}; expected a numeric array")


def _npz_fields(data: bytes, source: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` held in memory; members inflate under ``MAX_INFLATED_BYTES``."""
    fields, budget = {}, MAX_INFLATED_BYTES
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy") or info.file_size > budget:
                    raise PoseFormatError(source, f".npz member {info.filename[:80]!r}: expected "
                                                  f".npy arrays of {budget:,} bytes at most")
                with archive.open(info) as member:
                    content = member.read(budget + 1)
                budget -= len(content)
                if budget < 0:
                    raise PoseFormatError(source, f".npz arrays inflate past "
                                                  f"{MAX_INFLATED_BYTES:,} bytes")
                fields[info.filename[:-4]] = parse_npy(content, f"{source}::{info.filename}")
    except PoseFormatError:
        raise
    except ARCHIVE_READ_ERRORS as exc:
        raise PoseFormatError(source, f"unreadable .npz ({type(exc).__name__}: "
                                      f"{str(exc)[:160]})") from None
    if "data" not in fields:
        raise PoseFormatError(source, f".npz needs a 'data' array; found {sorted(fields)}")
    return fields


def parse_npy(data: bytes, source: str) -> np.ndarray:
    """A ``.npy`` held in memory. The header is checked against the bytes that follow before any
    array exists (a header claiming 240 GB is refused, not allocated); object arrays are refused.
    The array is a read-only view of ``data``."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
    except (ValueError, SyntaxError, TypeError, OverflowError, tokenize.TokenError) as exc:
        raise PoseFormatError(source, f"not a readable .npy array (bad header: "
                                      f"{str(exc)[:120]})") from None
    if dtype.hasobject:
        raise PoseFormatError(source, "object arrays are refused (a .npy of Python objects is a pickle)")
    count = math.prod(shape)
    body = memoryview(data)[stream.tell():]
    if count * dtype.itemsize != len(body):
        raise PoseFormatError(source, f".npy header declares shape {shape} of {dtype} "
                                      f"({count * dtype.itemsize:,} bytes) but the file holds "
                                      f"{len(body):,} bytes of data")
    flat = np.frombuffer(body, dtype=dtype, count=count)
    if fortran_order:
        return flat.reshape(shape[::-1]).transpose()  # column-major on disk
    return flat.reshape(shape)


def load_npy(data: bytes | Path, source: str, *, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` from bytes or a local file (memory-mapped with ``mmap``), pickles refused;
    every failure becomes a PoseFormatError."""
    if not isinstance(data, Path):
        return parse_npy(data, source)
    if not mmap:
        return parse_npy(data.read_bytes(), source)
    try:
        return np.load(data, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, OverflowError,
            tokenize.TokenError) as exc:
        raise PoseFormatError(source, f"not a readable .npy array ({str(exc)[:160]}; object "
                                      f"arrays are refused)") from None


def _labels(values: np.ndarray, source: str) -> list[int | None]:
    """An .npz ``labels`` array as 0-based class ids, -1 (any negative) meaning unknown."""
    _check_numeric(values, source, "labels")
    flat = np.ravel(values).astype(np.float64)  # (N,)
    if not np.all(np.isfinite(flat) & (flat == np.round(flat)) & (np.abs(flat) < 2**31)):
        raise PoseFormatError(source, "labels must be whole numbers (-1 = unknown)")
    return [int(x) if x >= 0 else None for x in flat]


def _optional_str(fields: dict, key: str, option: str | None) -> str | None:
    if option is not None or key not in fields:
        return option
    return str(fields[key])


def parse(data: bytes, source: str, *, axes: str | None = None, skeleton: str | None = None,
          channels: Sequence[str] | None = None,
          expected_channels: Sequence[str] | None = None) -> list[PoseSequence]:
    """A ``.npy`` or ``.npz`` pose array; options override what an ``.npz`` records.
    ``expected_channels``: what the reader's caller expects (a model's or a task's channels),
    the channels' meaning when neither ``channels`` nor the file says it and their number fits
    (three channels for an ``xy_score`` model are x, y and a score, not x, y, z); else x, y, z for
    three channels and x, y for two."""
    fields = _npz_fields(data, source) if data[:4] == b"PK\x03\x04" else \
        {"data": load_npy(data, source)}
    array = fields["data"]
    _check_numeric(array, source, "data")
    axes = _optional_str(fields, "axes", axes) or _DEFAULT_AXES.get(array.ndim)
    if axes is None:
        raise PoseFormatError(source, f"a {array.ndim}-D array needs axes=... (one of "
                                      f"{', '.join(AXES)})")
    batch = to_canonical(array, str(axes), source)  # (N, T, M, V, C)
    n, t, _, v, c = batch.shape
    if n == 0 or t == 0:
        raise PoseFormatError(source, f"no poses: shape {array.shape} has zero samples or frames")
    if c not in _DEFAULT_CHANNELS:
        raise PoseFormatError(source, f"C = {c} channels; expected 2 or 3 (axes {axes})")
    layout = resolve_layout(_optional_str(fields, "skeleton", skeleton), v, source)
    if channels is None and "channels" in fields:
        channels = [str(x) for x in np.atleast_1d(fields["channels"])]
    if channels is None and expected_channels is not None and len(expected_channels) == c:
        channels = expected_channels
    channels = tuple(channels) if channels is not None else _DEFAULT_CHANNELS[c]
    if len(channels) != c:
        raise PoseFormatError(source, f"channels {channels} do not match C = {c}")
    stem = sample_name(source, (".npy", ".npz"))
    names = [str(x) for x in np.ravel(fields["names"])] if "names" in fields else \
        ([stem] if n == 1 else [f"{stem}[{i}]" for i in range(n)])
    labels = _labels(fields["labels"], source) if "labels" in fields else [None] * n
    if len(names) != n or len(labels) != n:
        raise PoseFormatError(source, f"names/labels have {len(names)}/{len(labels)} entries "
                                      f"for {n} samples")
    return split_samples(batch, source, layout=layout, channels=channels, names=names,
                         labels=labels)


def save_npz(path: str | Path, sequences: Sequence[PoseSequence]) -> Path:
    """Write sequences of one layout and channel set as a project ``.npz`` (axes NCTVM,
    zero-padded in T and M), readable by ``parse`` with no options."""
    if not sequences:
        raise ValueError("save_npz needs at least one sequence")
    first = sequences[0]
    if any(s.layout != first.layout or s.channels != first.channels for s in sequences):
        raise ValueError("save_npz needs sequences of one layout and one channel set")
    t = max(s.num_frames for s in sequences)
    m = max(s.num_persons for s in sequences)
    batch = np.zeros((len(sequences), t, m, *first.data.shape[2:]), np.float32)  # (N, T, M, V, C)
    for i, s in enumerate(sequences):
        batch[i, :s.num_frames, :s.num_persons] = s.data
    path = Path(path)
    np.savez_compressed(
        path, data=batch.transpose(0, 4, 1, 3, 2),  # (N, T, M, V, C) -> (N, C, T, V, M)
        axes=np.array("NCTVM"), skeleton=np.array(first.layout),
        channels=np.array(first.channels),
        labels=np.array([-1 if s.label is None else s.label for s in sequences], np.int64),
        names=np.array([s.name for s in sequences]))
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
