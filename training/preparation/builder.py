"""Assembling a prepared task: per-split arrays in each layout, labels, names and ``task.json``."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from codt_deploy.errors import CodtError
from codt_deploy.layouts import can_map, get_layout, is_builtin, layout_spec
from codt_deploy.preprocess import (
    ChannelMode,
    PreprocessConfig,
    mode_of_channels,
    preprocess,
    preprocess_converted,
    reduce_sequence,
)
from codt_deploy.sequence import PoseSequence
from training.preparation import catalogue as cat
from training.preparation.prepared import SCHEMA, SPLITS
from training.preparation.tasks import TaskDefinition
from training.preparation.writing import ArrayAppender
from training.provenance import git_sha

logger = logging.getLogger(__name__)

_DATASET_NAMES = {"ntu": "NTU RGB+D", "pku": "PKU-MMD", "ucla": "NW-UCLA", "msr": "MSR Action3D",
                  "skeletics": "Skeletics-152", "finegym": "FineGym", "kinetics": "Kinetics-400",
                  "pyskl": "pyskl pickle", "files": "pose files", "npz": "array bundle"}


class EmptySelectionError(CodtError, ValueError):
    """A split would be empty (e.g. a class filter left nothing); the message says what to do."""


def channel_mode(seq: PoseSequence) -> ChannelMode:
    mode = mode_of_channels(seq.channels)
    if mode is None:
        raise CodtError(f"{seq.source}: unsupported channels {seq.channels}")
    return mode


def view_angle(name: str, max_degrees: float) -> float:
    """The view rotation of one source clip, in radians: uniform in ±``max_degrees``, drawn from a
    generator seeded by the clip's name (the same clip always gets the same angle); 0 when off."""
    if not max_degrees:
        return 0.0
    rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
    return float(np.deg2rad(rng.uniform(-max_degrees, max_degrees)))


def default_layouts(task: TaskDefinition, source_layout: str,
                    target_layout: str) -> tuple[str, str]:
    """(shared, specific): the task's, else the common layout / shared15, and the target's."""
    specific = task.specific or target_layout
    if task.shared:
        return task.shared, specific
    if get_layout(source_layout).name == get_layout(target_layout).name:
        return get_layout(source_layout).name, specific
    if can_map(source_layout, "shared15") and can_map(target_layout, "shared15"):
        return "shared15", specific
    raise CodtError(f"no shared layout for {source_layout!r} and {target_layout!r}: "
                    f"set 'shared' in the task")


def sort_keys(keys) -> list:
    return sorted(set(keys), key=lambda k: (isinstance(k, str), k))


class SplitWriter:
    """One split folder: a data_<layout>.npy per layout, plus names and class keys."""

    def __init__(self, folder: Path, configs: dict[str, PreprocessConfig]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.configs = configs
        self.arrays = {layout: ArrayAppender(folder / f"data_{layout}.npy", cfg.output_shape)
                       for layout, cfg in configs.items()}
        self.names: list[str] = []
        self.keys: list = []

    def append(self, name: str, key, samples: dict[str, np.ndarray]) -> None:
        for layout, sample in samples.items():
            self.arrays[layout].append(sample)
        self.names.append(name)
        self.keys.append(key)

    def finish(self, labels: np.ndarray) -> None:
        for array in self.arrays.values():
            array.finish()
        np.save(self.folder / "labels.npy", labels.astype(np.int64))
        np.save(self.folder / "names.npy", np.array(self.names, dtype=np.str_))


class TaskBuilder:
    """Streams preprocessed samples of a task into its split folders under ``folder``."""

    def __init__(self, task: TaskDefinition, folder: Path, *, shared: str, specific: str,
                 channels: ChannelMode, split_sets: dict[str, set[str]] | None = None,
                 source_channels: ChannelMode | None = None) -> None:
        self.task, self.folder = task, folder
        self.shared, self.specific, self.channels = shared, specific, channels
        self.source_channels = source_channels or channels
        self.split_sets = split_sets or {}
        self.configs = {layout: task.preprocess_config(layout, channels)
                        for layout in dict.fromkeys((shared, specific))}
        source_cfg = {shared: self.configs[shared]}
        self.writers = {"source_train": SplitWriter(folder / "source_train", source_cfg),
                        "target_train": SplitWriter(folder / "target_train", self.configs),
                        "target_eval": SplitWriter(folder / "target_eval", self.configs)}
        self.unassigned: Counter[str] = Counter()

    def target_parts(self, meta: dict, names: tuple[str, ...] = ()) -> tuple[str, ...]:
        """Which target splits a sample joins (METHOD §12; TargetSplit); ``names`` are the
        sample's and its file's names, for a split's id pattern."""
        split = self.task.target_split
        if split.mode == "all":
            return ("target_train", "target_eval")
        if split.mode in ("subjects", "views"):
            value = split.id_in(meta, names)
            if value is None:
                return ()
            return ("target_train",) if value in split.train else ("target_eval",)
        if split.mode == "folders":
            part = meta.get("part")
            by_folder: dict[str | None, tuple[str, ...]] = {split.folders[0]: ("target_train",),
                                                            split.folders[1]: ("target_eval",)}
            return by_folder.get(part, ())
        video = meta.get("video")
        if video in self.split_sets.get("train", ()):
            return ("target_train",)
        return ("target_eval",) if video in self.split_sets.get("val", ()) else ()

    def add(self, role: str, ref: cat.SampleRef, items: list) -> None:
        """Preprocess every item of one file first, so a failure leaves no partial sample."""
        layouts: tuple[str, ...]
        parts_of: Callable[[Any], tuple[str, ...]]
        if role == "source":
            layouts, parts_of = (self.shared,), (lambda item: ("source_train",))
        else:
            def target_parts(item: Any) -> tuple[str, ...]:
                names = tuple(n for n in (item.seq.name, ref.name, ref.path.name) if n)
                return self.target_parts(item.meta, names)

            layouts, parts_of = tuple(self.configs), target_parts
        staged = []
        for item in items:
            parts = parts_of(item)
            if not parts:
                self.unassigned[role] += 1
                continue
            name = item.seq.name or ref.name
            samples = {lay: self.sample(role, item.seq, name, self.configs[lay])
                       for lay in layouts}
            staged.append((parts, name, item.key, samples))
        for parts, name, key, samples in staged:
            for part in parts:
                self.writers[part].append(name, key, samples)

    def sample(self, role: str, seq: PoseSequence, name: str,
               cfg: PreprocessConfig) -> np.ndarray:
        """One sequence → ``(C, T, V, M)`` in the model's channels (METHOD §2 "2-D models"): first
        reduced as recorded to the channels its domain declares, then the target as it is and the
        source converted (a 3-D source projected after alignment, with its view rotation)."""
        domain = getattr(self.task, role)
        if domain.channels is not None:
            seq = reduce_sequence(seq, domain.channels)
        if role == "target":
            return preprocess(seq, cfg)
        projects = seq.is_3d and cfg.channels != "xyz"
        angle = view_angle(name, domain.view_rotation) if projects else 0.0
        return preprocess_converted(seq, cfg, view_angle=angle)

    def class_keys(self, role: str) -> list:
        domain = getattr(self.task, role)
        if domain.classes != "all":
            return list(domain.classes)
        splits = ("source_train",) if role == "source" else ("target_train", "target_eval")
        return sort_keys(k for s in splits for k in self.writers[s].keys if k is not None)

    def close(self) -> None:
        for writer in self.writers.values():
            for array in writer.arrays.values():
                array.close()


WITHHELD_LABELS = "withheld_labels.npy"  # target_train's labels, read only to score (benchmarks)


def _labels(keys: list, classes: list, withheld: bool) -> np.ndarray:
    index = {k: i for i, k in enumerate(classes)}
    if withheld:
        return np.full(len(keys), -1, dtype=np.int64)
    return np.array([index.get(k, -1) for k in keys], dtype=np.int64)


def _check_not_empty(builder: TaskBuilder, reports: dict) -> None:
    for split in SPLITS:
        if builder.writers[split].names:
            continue
        role = split.split("_")[0]
        report = reports[role]
        domain = getattr(builder.task, role)
        found = ", ".join(str(k) for k in sort_keys(report.keys_found)) or "none"
        raise EmptySelectionError(
            f"{split} is empty: {report.files} {role} files found in {report.root}, "
            f"filtered out: {dict(report.filtered) or 'none'}, failed: {len(report.failures)}, "
            f"not in any target split: {builder.unassigned[role]}; classes found: {found}; "
            f"task classes: {domain.classes if domain.classes == 'all' else len(domain.classes)}. "
            f"Try --{role}-classes all" + (" or --source-select all" if role == "source" else
                                           " or --target-split all"))


def estimate_target_clusters(builder: TaskBuilder):
    """``num_clusters: auto``: K estimated label-free (:func:`training.num_clusters.
    estimate_num_clusters`) on the finished target-train poses in the B1 layout, flattened and
    L2-normalised as the raw-pose baselines read them. Returns the :class:`KEstimate`."""
    from training.labelfree.views import flattened_poses
    from training.num_clusters import estimate_num_clusters

    path = builder.folder / "target_train" / f"data_{builder.specific}.npy"
    coordinates = builder.configs[builder.specific].coordinate_channels  # the positions only
    rows = flattened_poses(np.load(path, mmap_mode="r"), coordinates)  # (N, C·T·V·M)
    if len(rows) < 2:
        raise EmptySelectionError(f"num_clusters: auto needs at least 2 target_train clips to "
                                  f"estimate K from, task {builder.task.name!r} has {len(rows)}")
    estimate = estimate_num_clusters(rows)
    logger.info("num_clusters: auto: %s", estimate.summary())
    return estimate


def finish_task(builder: TaskBuilder, reports: dict, raw: Path) -> dict:
    """Finish every array, write labels/names and ``task.json``; returns that summary."""
    _check_not_empty(builder, reports)
    classes = {role: builder.class_keys(role) for role in ("source", "target")}
    requested = builder.task.num_clusters
    if requested is None and len(classes["target"]) < 2:
        raise EmptySelectionError(f"the target has {len(classes['target'])} known classes; set "
                                  f"num_clusters (K >= 2, or auto) in the task")
    counts = {}
    for split, writer in builder.writers.items():
        role = split.split("_")[0]
        labels = _labels(writer.keys, classes[role], withheld=split == "target_train")
        writer.finish(labels)
        if split == "target_train":  # for scoring the train clips in benchmarks; never trained on
            np.save(writer.folder / WITHHELD_LABELS, _labels(writer.keys, classes[role], withheld=False))
        per_class = Counter(int(x) for x in _labels(writer.keys, classes[role], withheld=False))
        counts[split] = {"samples": len(writer.names), "layouts": list(writer.configs),
                         "labelled": split != "target_train",
                         "per_class": [per_class.get(i, 0) for i in range(len(classes[role]))]}
    estimate = estimate_target_clusters(builder) if requested == "auto" else None
    if estimate is not None:
        num_clusters = estimate.k
    else:
        num_clusters = requested if isinstance(requested, int) else len(classes["target"])
    summary = _summary(builder, reports, classes, num_clusters, counts, raw)
    summary["num_clusters_from"] = ("estimated" if estimate is not None else
                                    "task" if isinstance(requested, int) else "target classes")
    summary["num_clusters_estimate"] = estimate.to_json() if estimate is not None else None
    (builder.folder / "task.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(builder, reports, classes, num_clusters, counts, raw) -> dict:
    task = builder.task
    domains = {}
    for role in ("source", "target"):
        domain, report = getattr(task, role), reports[role]
        domains[role] = {
            "dataset": domain.dataset, "dataset_name": _DATASET_NAMES[domain.dataset],
            "root": report.root, "files": report.files,
            "class_keys": classes[role],
            "class_names": [cat.class_name(domain.dataset, k) for k in classes[role]],
            "skipped": dict(report.skipped), "filtered": dict(report.filtered),
            "failed": len(report.failures)}
    used = (builder.shared, builder.specific, task.source.layout, task.target.layout)
    custom = [name for name in dict.fromkeys(used) if name is not None and not is_builtin(name)]
    return {
        "schema": SCHEMA, "task": task.name, "description": task.description,
        "layouts": {"shared": builder.shared, "specific": builder.specific},
        # custom layouts in full, so that the folder is usable without their layout files
        "layout_definitions": {name: layout_spec(name).model_dump(mode="json") for name in custom},
        "channels": builder.channels, "source_channels": builder.source_channels,
        "num_clusters": num_clusters,
        "source": domains["source"], "target": domains["target"],
        "splits": counts,
        "preprocess": {lay: cfg.model_dump() for lay, cfg in builder.configs.items()},
        "failures": [{"file": f, "reason": r} for role in ("source", "target")
                     for f, r in reports[role].failures],
        "task_spec": task.model_dump(mode="json"),
        "provenance": {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       "git_sha": git_sha(), "raw": str(raw)},
    }
