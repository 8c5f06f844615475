"""A tiny synthetic prepared task, in the format ``training.prepare`` writes (docs/ARCHITECTURE.md,
"Prepared task folder"), for the engine, run and DDP tests on machines without ../shared/data.

The clips are random skeleton motions, not recordings: per clip a random rest pose of the source
layout's joints plus a class-specific oscillation (its own amplitude per joint and coordinate, and
frequency) with a random phase, length, body size and noise, in metres. They go through the real
:func:`codt_deploy.preprocess.preprocess` into every layout a split needs, exactly like read files
(joint mapping, centring, resampling to T, shoulder alignment), so the arrays are valid model
input; labels, names and ``task.json`` follow ``training.preparation.builder``. Same arguments, same
bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from codt_deploy.layouts import get_layout
from codt_deploy.preprocess import PreprocessConfig, preprocess
from codt_deploy.sequence import PoseSequence
from training.preparation.prepared import SCHEMA


def _clips(rng: np.random.Generator, labels: np.ndarray, motions: list[tuple[np.ndarray, float]],
           layout: str, scale: float, prefix: str) -> list[PoseSequence]:
    """One (T, 1, V, 3) sequence in ``layout`` per label, moving with its class's motion."""
    v = get_layout(layout).num_joints
    seqs = []
    for i, label in enumerate(labels):
        amplitude, cycles = motions[int(label)]  # (V, 3), cycles per clip
        t = int(rng.integers(30, 81))
        phase = rng.uniform(0.0, 2 * np.pi)
        time = np.linspace(0.0, 1.0, t)[:, None, None]  # (T, 1, 1)
        rest = rng.normal(0.0, 0.25, (v, 3)) * rng.uniform(0.8, 1.2)  # (V, 3)
        motion = amplitude[None] * np.sin(2 * np.pi * cycles * time + phase)  # (T, V, 3)
        noise = rng.normal(0.0, 0.01, (t, v, 3))
        data = (scale * (rest[None] + motion + noise) + [0.0, 0.0, 3.0])[:, None]  # (T, 1, V, 3)
        seqs.append(PoseSequence(data.astype(np.float32), layout, f"{prefix}{i:03d}",
                                 name=f"{prefix}{i:03d}"))
    return seqs


def _motions(rng: np.random.Generator, classes: int, layout: str) -> list[tuple[np.ndarray, float]]:
    v = get_layout(layout).num_joints
    return [(rng.normal(0.0, 0.15, (v, 3)), float(rng.uniform(0.5, 3.0))) for _ in range(classes)]


def _write_split(folder: Path, seqs: list[PoseSequence], labels: np.ndarray,
                 configs: dict[str, PreprocessConfig]) -> None:
    folder.mkdir(parents=True)
    for layout, config in configs.items():
        data = np.stack([preprocess(seq, config) for seq in seqs])  # (N, C, T, V, M)
        np.save(folder / f"data_{layout}.npy", data.astype(np.float32))
    np.save(folder / "labels.npy", labels.astype(np.int64))
    np.save(folder / "names.npy", np.array([seq.name for seq in seqs], dtype=np.str_))


def write_synthetic_task(folder: str | Path, *, task: str = "ucla2msr", shared: str = "kinect20",
                         specific: str = "msr20", source_layout: str = "kinect20",
                         target_layout: str = "msr20", source_samples: int = 24,
                         target_samples: int = 24, source_classes: int = 10,
                         target_classes: int = 20, persons: int = 1, seed: int = 0) -> Path:
    """Write ``folder`` (the task folder itself, holding ``task.json``) and return it.

    The defaults have the shape of ``ucla2msr`` prepared with ``limit=24``: NW-UCLA-like source
    clips (kinect20, 10 classes) and MSR-like target clips (msr20, 20 classes, K = 20), B0 on
    kinect20 and B1 on msr20, one person slot. As ``training.prepare`` does with a target split
    of mode "all", target_train and target_eval hold the same clips, target_train's labels withheld.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    configs = {lay: PreprocessConfig(layout=lay, persons=persons)
               for lay in dict.fromkeys((shared, specific))}
    source_labels = np.arange(source_samples) % source_classes
    target_labels = np.arange(target_samples) % target_classes
    source = _clips(rng, source_labels, _motions(rng, source_classes, source_layout),
                    source_layout, 1.0, "source")
    target = _clips(rng, target_labels, _motions(rng, target_classes, target_layout),
                    target_layout, 1.2, "target")
    folder.mkdir(parents=True, exist_ok=True)
    _write_split(folder / "source_train", source, source_labels, {shared: configs[shared]})
    _write_split(folder / "target_train", target, np.full(target_samples, -1), configs)
    _write_split(folder / "target_eval", target, target_labels, configs)

    def per_class(labels: np.ndarray, classes: int) -> list[int]:
        return np.bincount(labels, minlength=classes).tolist()

    splits = {
        "source_train": {"samples": source_samples, "layouts": [shared], "labelled": True,
                         "per_class": per_class(source_labels, source_classes)},
        "target_train": {"samples": target_samples, "layouts": list(configs), "labelled": False,
                         "per_class": per_class(target_labels, target_classes)},
        "target_eval": {"samples": target_samples, "layouts": list(configs), "labelled": True,
                        "per_class": per_class(target_labels, target_classes)}}
    info = {
        "schema": SCHEMA, "task": task,
        "description": f"synthetic {source_layout} ({source_classes} classes) -> {target_layout} "
                       f"({target_classes} classes) for the tests",
        "layouts": {"shared": shared, "specific": specific}, "channels": "xyz",
        "num_clusters": target_classes,
        "source": {"dataset": "synthetic", "files": source_samples,
                   "class_keys": list(range(1, source_classes + 1)),
                   "class_names": [f"source action {i + 1}" for i in range(source_classes)]},
        "target": {"dataset": "synthetic", "files": target_samples,
                   "class_keys": list(range(1, target_classes + 1)),
                   "class_names": [f"target action {i + 1}" for i in range(target_classes)]},
        "splits": splits,
        "preprocess": {lay: cfg.model_dump() for lay, cfg in configs.items()},
        "failures": [],
        "provenance": {"synthetic": True, "seed": seed}}
    (folder / "task.json").write_text(json.dumps(info, indent=2) + "\n")
    return folder
