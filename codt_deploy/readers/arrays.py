"""Plain ``.npy`` / ``.npz`` pose arrays (FORMATS.md §1 "Plain .npy / .npz"), and the converter
that writes them (``save_npz``: the safe route away from pickles).

``.npy`` holds one numeric array whose axes the caller declares (``axes``: NCTVM, CTVM, MTVC, TVC,
TMVC; default NCTVM for 5-D, CTVM for 4-D) together with the skeleton layout (``skeleton``; by
default the only layout with that many joints). ``.npz`` needs ``data`` and may carry ``axes``,
``skeleton``, ``channels``, ``labels`` (-1 = unknown) and ``names``; it is opened with
``allow_pickle=False`` so object arrays are refused. Each sample becomes one sequence with trailing
all-zero frames trimmed (zero padding); an all-zero sample is an error.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codt_deploy.errors import LayoutError, PoseFormatError
from codt_deploy.layouts import available_layouts, get_layout
from codt_deploy.readers._text import check_finite, sample_name, trailing_zero_trim
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
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if "data" not in archive.files:
                raise PoseFormatError(source, f".npz needs a 'data' array; found "
                                              f"{sorted(archive.files)}")
            return {key: archive[key] for key in archive.files}
    except PoseFormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise PoseFormatError(source, f"unreadable .npz ({str(exc)[:160]}; object arrays are "
                                      f"refused)") from None


def load_npy(data: bytes | Path, source: str, *, mmap: bool = False) -> np.ndarray:
    """``np.load`` with ``allow_pickle=False``; every failure becomes a PoseFormatError."""
    try:
        if isinstance(data, Path):
            return np.load(data, mmap_mode="r" if mmap else None, allow_pickle=False)
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PoseFormatError(source, f"not a readable .npy array ({str(exc)[:160]}; object "
                                      f"arrays are refused)") from None


def _optional_str(fields: dict, key: str, option: object) -> object:
    if option is not None or key not in fields:
        return option
    return str(fields[key])


def parse(data: bytes, source: str, *, axes: str | None = None, skeleton: str | None = None,
          channels: Sequence[str] | None = None) -> list[PoseSequence]:
    """A ``.npy`` or ``.npz`` pose array; options override what an ``.npz`` records."""
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
    channels = tuple(channels) if channels is not None else _DEFAULT_CHANNELS[c]
    if len(channels) != c:
        raise PoseFormatError(source, f"channels {channels} do not match C = {c}")
    stem = sample_name(source, (".npy", ".npz"))
    names = [str(x) for x in fields["names"]] if "names" in fields else \
        ([stem] if n == 1 else [f"{stem}[{i}]" for i in range(n)])
    if "labels" in fields:
        _check_numeric(fields["labels"], source, "labels")
    labels = [int(x) if x >= 0 else None for x in np.ravel(fields["labels"])] \
        if "labels" in fields else [None] * n
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
