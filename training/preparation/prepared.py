"""Reading a prepared task folder (written by ``python -m training.prepare``; docs/ARCHITECTURE.md).

A task whose layouts came from layout files carries their definitions in ``task.json``
(``layout_definitions``); :func:`load_task` registers them, so the folder is usable on its own.

Numpy only: :func:`load_split` memory-maps ``data_<layout>.npy`` ``(N, C, T, V, M)`` with its
labels and names; :func:`load_task` reads ``task.json`` into a :class:`PreparedTask`. Every problem
(missing file, wrong shape, unknown split or layout) raises :class:`PreparedDataError` naming the
file and what to do. :data:`SPLITS` and :data:`SCHEMA` define the folder for its writer too
(:mod:`training.preparation.builder`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codt_deploy.errors import CodtError, LayoutError
from codt_deploy.layouts import load_layout
from codt_deploy.preprocess import PreprocessConfig

SPLITS = ("source_train", "target_train", "target_eval")
SCHEMA = 1


class PreparedDataError(CodtError, ValueError):
    """A prepared task folder is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class PreparedTask:
    """A prepared task folder as its ``task.json`` describes it (the arrays: :func:`load_split`)."""

    name: str
    folder: Path
    shared: str  # B0 layout (METHOD §4)
    specific: str  # B1 layout
    num_clusters: int  # K
    channels: str  # the model's channel mode: "xyz", "xy" or "xy_score"
    source_classes: tuple[str, ...]
    target_classes: tuple[str, ...]
    counts: dict  # split -> number of samples
    preprocess: dict  # layout -> PreprocessConfig
    raw: dict  # the whole task.json

    @property
    def layouts(self) -> dict[str, str]:
        """``{"shared": B0 layout, "specific": B1 layout}`` as in task.json."""
        return {"shared": self.shared, "specific": self.specific}

    @property
    def target_split(self) -> dict:
        """The task's ``target_split`` as its definition gave it (``{"mode": "all"}`` for folders
        prepared before it was recorded): which target clips are held out."""
        return (self.raw.get("task_spec") or {}).get("target_split") or {"mode": "all"}

    @property
    def held_out(self) -> bool:
        """Whether the target eval clips are held out from the clips the model is fitted to."""
        return self.target_split.get("mode", "all") != "all"

    @property
    def source_class_names(self) -> tuple[str, ...]:
        return self.source_classes

    @property
    def target_class_names(self) -> tuple[str, ...]:
        return self.target_classes

    def preprocess_config(self, layout: str) -> PreprocessConfig:
        try:
            return self.preprocess[layout]
        except KeyError:
            raise PreparedDataError(f"{self.folder}: no layout {layout!r}; the task has "
                                    f"{', '.join(self.preprocess)}") from None


@dataclass(frozen=True)
class PreparedSplit:
    """One split of a prepared folder in one layout, as stored: ``data`` (N, C, T, V, M) float32
    (memory-mapped), ``labels`` int64 (N,) with -1 where unknown, ``names`` (N,) str."""

    data: np.ndarray
    labels: np.ndarray
    names: np.ndarray
    class_names: tuple[str, ...]
    layout: str
    split: str

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool(np.all(self.labels >= 0))


def load_task(task_dir: str | Path) -> PreparedTask:
    """Read ``<task_dir>/task.json``."""
    folder = Path(task_dir)
    path = folder / "task.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PreparedDataError(f"{path}: not found; prepare the task first "
                                f"(python -m training.prepare TASK)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise PreparedDataError(f"{path}: cannot read it: {err}") from None
    if not isinstance(info, dict) or info.get("schema") != SCHEMA:
        raise PreparedDataError(f"{path}: expected a task.json of schema {SCHEMA}; prepare the "
                                f"task again with this version")
    try:
        for name, definition in info.get("layout_definitions", {}).items():
            load_layout(definition, origin=f"{path}: layout_definitions.{name}")
    except LayoutError as err:
        raise PreparedDataError(str(err)) from None
    try:
        return PreparedTask(
            name=info["task"], folder=folder, shared=info["layouts"]["shared"],
            specific=info["layouts"]["specific"], num_clusters=int(info["num_clusters"]),
            channels=info["channels"],
            source_classes=tuple(info["source"]["class_names"]),
            target_classes=tuple(info["target"]["class_names"]),
            counts={s: int(v["samples"]) for s, v in info["splits"].items()},
            preprocess={lay: PreprocessConfig.model_validate(cfg)
                        for lay, cfg in info["preprocess"].items()},
            raw=info)
    except (KeyError, TypeError, ValueError) as err:
        raise PreparedDataError(f"{path}: incomplete or invalid ({err!r})") from None


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise PreparedDataError(f"{path}: not found") from None
    except (OSError, ValueError) as err:
        raise PreparedDataError(f"{path}: not a readable .npy file: {err}") from None


def load_split(task_dir: str | Path, split: str, layout: str = "shared") -> PreparedSplit:
    """Memory-map one split. ``layout`` is a layout name, or ``"shared"``/``"specific"``."""
    task = load_task(task_dir)
    if split not in SPLITS:
        raise PreparedDataError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    layout = {"shared": task.shared, "specific": task.specific}.get(layout, layout)
    folder = task.folder / split
    available = sorted(p.name[5:-4] for p in folder.glob("data_*.npy"))
    if layout not in available:
        raise PreparedDataError(f"{folder}: no data in layout {layout!r}; available: "
                                f"{', '.join(available) or 'none'}")
    data = _load_array(folder / f"data_{layout}.npy", mmap=True)
    labels = _load_array(folder / "labels.npy", mmap=False)
    names = _load_array(folder / "names.npy", mmap=False)
    expected = task.preprocess_config(layout).output_shape  # (C, T, V, M)
    if data.ndim != 5 or data.shape[1:] != expected or data.dtype != np.float32:
        raise PreparedDataError(f"{folder}/data_{layout}.npy: expected float32 (N, {expected}), "
                                f"found {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or names.shape != (len(data),):
        raise PreparedDataError(f"{folder}: {len(data)} samples but labels {labels.shape} and "
                                f"names {names.shape}")
    classes = task.source_classes if split.startswith("source") else task.target_classes
    return PreparedSplit(data=data, labels=labels.astype(np.int64, copy=False), names=names,
                      class_names=classes, layout=layout, split=split)


def withheld_labels(task_dir: str | Path) -> np.ndarray:
    """The target train clips' labels (N_train,), -1 where unknown: withheld from ``load_split`` so
    that training never sees them, and read only to score a model on the clips it was fitted to
    (the benchmarks' "train clips" rows). Prepared folders older than this file give all -1."""
    task = load_task(task_dir)
    path = task.folder / "target_train" / "withheld_labels.npy"
    n = len(_load_array(task.folder / "target_train" / "names.npy", mmap=False))
    if not path.is_file():
        return np.full(n, -1, dtype=np.int64)
    labels = _load_array(path, mmap=False).astype(np.int64, copy=False)
    if labels.shape != (n,):
        raise PreparedDataError(f"{path}: {labels.shape[0]} labels for {n} target train clips")
    return labels
