"""Training batches over the prepared arrays: target ids + 4 views, a restarting source stream.

METHOD §10: each step draws one source view and four target views (B0 student/teacher on the
``shared`` layout, B1 student/teacher on the ``specific`` layout). Teachers are always weak;
students are weak in stage 1 and strong in stage 2 (D3 switch ``student_strong_aug``); masking
follows D5 (``mask_in_stage1``, ``mask_source``). Augmentation runs on the whole batch tensor
(``training.augment``), which is much faster than per sample.

Randomness (D18): the target order comes from (seed, epoch); batch b's augmentation generator from
(seed, epoch, rank, b), so the data a step sees is independent of the number of loader workers and
an interrupted run resumes with the same batches. The source stream restarts with a fresh
permutation, seeded from (seed, epoch, restart), whenever it runs out within an epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from codt_deploy.errors import CodtError
from training import augment as aug
from training.config import AugmentConfig, TrainConfig

# Stream ids keep the random streams of different purposes apart.
STREAM_TARGET, STREAM_SOURCE, STREAM_AUGMENT, STREAM_FILL = 0, 1, 2, 3


class TrainingDataError(CodtError, ValueError):
    """The prepared data cannot feed this configuration (labels, sizes); the message says why."""


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from a tuple of non-negative ints (numpy SeedSequence mixing)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def generator(*keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*keys))


def linspace_indices(n_total: int, limit: int | None) -> np.ndarray:
    """Indices of at most ``limit`` samples spread evenly over a split (keeps all classes in play):
    ``linspace(0, n_total - 1, limit)`` rounded, so the first and the last sample are kept."""
    if limit is None or limit >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, limit).round().astype(np.int64))


@dataclass(frozen=True)
class TrainingSplit:
    """One split as a run uses it (a prepared split within the config's sample limit), in memory
    or memory-mapped: data (N, C, T, V, M) float32, labels (N,) int64."""

    data: np.ndarray
    labels: np.ndarray
    layout: str

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def take(self, indices: np.ndarray) -> torch.Tensor:
        """Rows ``indices`` as a float32 tensor (B, C, T, V, M)."""
        return torch.from_numpy(np.ascontiguousarray(self.data[indices], dtype=np.float32))


@dataclass(frozen=True)
class TrainingData:
    """Everything a run trains and evaluates on: the splits of a prepared task folder
    (docs/ARCHITECTURE.md) within the config's sample limits, K and the input sizes."""

    name: str
    source: TrainingSplit  # shared layout
    target_train_shared: TrainingSplit
    target_train_specific: TrainingSplit
    target_eval_shared: TrainingSplit
    target_eval_specific: TrainingSplit
    num_clusters: int
    num_source_classes: int
    in_channels: int
    coordinates: int  # the target's coordinate channels (the raw-pose view reads only these)

    @property
    def shared_layout(self) -> str:
        return self.source.layout

    @property
    def specific_layout(self) -> str:
        return self.target_train_specific.layout


def _load(task_dir: Path, split: str, layout: str, limit: int | None) -> TrainingSplit:
    from training.preparation.prepared import load_split

    arrays = load_split(task_dir, split, layout)
    keep = linspace_indices(len(arrays.labels), limit)
    if len(keep) == len(arrays.labels):
        return TrainingSplit(arrays.data, np.asarray(arrays.labels), layout)
    return TrainingSplit(np.asarray(arrays.data[keep]), np.asarray(arrays.labels)[keep], layout)


def load_task_data(task_dir: str | Path, config: TrainConfig) -> TrainingData:
    """Load the prepared task folder, applying the config's sample limits (evenly spaced)."""
    from training.preparation.prepared import load_task

    task_dir = Path(task_dir)
    task = load_task(task_dir)
    shared, specific = task.shared, task.specific
    limits = config.data
    source = _load(task_dir, "source_train", shared, limits.source_limit)
    data = TrainingData(
        name=task.name,
        source=source,
        target_train_shared=_load(task_dir, "target_train", shared, limits.target_train_limit),
        target_train_specific=_load(task_dir, "target_train", specific, limits.target_train_limit),
        target_eval_shared=_load(task_dir, "target_eval", shared, limits.target_eval_limit),
        target_eval_specific=_load(task_dir, "target_eval", specific, limits.target_eval_limit),
        num_clusters=config.model.clusters_for(task.num_clusters),
        num_source_classes=len(task.source_class_names),
        in_channels=int(source.data.shape[1]),
        coordinates=task.preprocess[specific].coordinate_channels,
    )
    labels = data.source.labels
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= data.num_source_classes:
        raise TrainingDataError(f"{task_dir / 'source_train' / 'labels.npy'}: the source needs a label "
                                f"in 0..{data.num_source_classes - 1} for every sample")
    return data


# ---------------------------------------------------------------------- augmentation policy

@dataclass(frozen=True)
class ViewPresets:
    """Augmentation preset of each view in one stage (METHOD §10, D3, D5)."""

    student: aug.AugmentPreset
    teacher: aug.AugmentPreset
    source: aug.AugmentPreset


def _masked(preset: aug.AugmentPreset) -> aug.AugmentPreset:
    return dataclasses.replace(preset, mask_p=aug.STRONG.mask_p)


def view_presets(stage: int, switches: AugmentConfig) -> ViewPresets:
    """Teachers weak; students weak (stage 1) or strong (stage 2); masking per D5."""
    if stage == 2 and switches.student_strong_aug:
        student = aug.STRONG
    else:  # weak students; the reference code also masks them (D5)
        student = _masked(aug.WEAK) if switches.mask_in_stage1 else aug.WEAK
    source = _masked(aug.WEAK) if switches.mask_source else aug.WEAK
    return ViewPresets(student=student, teacher=aug.WEAK, source=source)


# ---------------------------------------------------------------------- batches

@dataclass(frozen=True)
class TrainBatch:
    """One step's inputs. Views are (B, C, T, V, M); ``ids`` index the target train split."""

    ids: torch.Tensor  # (B,) int64
    shared_student: torch.Tensor  # (B, C, T, V0, M)
    shared_teacher: torch.Tensor
    specific_student: torch.Tensor  # (B, C, T, V1, M)
    specific_teacher: torch.Tensor
    source: torch.Tensor  # (Bs, C, T, V0, M)
    source_labels: torch.Tensor  # (Bs,) int64
    shared_unmasked: torch.Tensor  # shared_student before part masking: the L_dec target (§6)
    source_unmasked: torch.Tensor  # source before part masking

    def to(self, device: torch.device) -> TrainBatch:
        return TrainBatch(**{f.name: getattr(self, f.name).to(device, non_blocking=True)
                             for f in dataclasses.fields(self)})


def _parts(layout: str) -> tuple[tuple[int, ...], ...]:
    from codt_deploy.layouts import get_layout

    return get_layout(layout).parts


class TrainBatches(IterableDataset):
    """One epoch of :class:`TrainBatch` for one rank; split over loader workers by batch index."""

    def __init__(self, data: TrainingData, config: TrainConfig, *, epoch: int, stage: int,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.data, self.seed, self.epoch, self.rank = data, config.seed, epoch, rank
        self.presets = view_presets(stage, config.augment)
        self.batch_target = _per_rank(config.optim.batch_target, world_size, "optim.batch_target")
        self.batch_source = _per_rank(config.optim.batch_source, world_size, "optim.batch_source")
        order = torch.randperm(len(data.target_train_shared),
                               generator=generator(self.seed, epoch, STREAM_TARGET))
        shard = order[rank::world_size].numpy()  # (N_t / world,)
        n_batches = len(shard) // self.batch_target if config.optim.drop_last \
            else -(-len(shard) // self.batch_target)
        self.target_batches = [shard[b * self.batch_target:(b + 1) * self.batch_target]
                               for b in range(n_batches)]  # n_batches × (batch_target,)
        self.parts_shared = _parts(data.shared_layout)
        self.parts_specific = _parts(data.specific_layout)
        self.world_size = world_size

    def __len__(self) -> int:
        return len(self.target_batches)

    def source_indices(self, batch_index: int) -> np.ndarray:
        """Source rows of step ``batch_index``: a restarting stream of seeded permutations."""
        n_source = len(self.data.source)
        per_pass = n_source // (self.batch_source * self.world_size)
        if per_pass == 0:
            raise TrainingDataError(f"the source split has {n_source} samples, fewer than one batch "
                                    f"of optim.batch_source={self.batch_source * self.world_size}")
        restart, position = divmod(batch_index, per_pass)
        order = torch.randperm(n_source, generator=generator(self.seed, self.epoch, STREAM_SOURCE, restart))
        shard = order[self.rank::self.world_size].numpy()
        return shard[position * self.batch_source:(position + 1) * self.batch_source]

    def make_batch(self, batch_index: int) -> TrainBatch:
        ids = self.target_batches[batch_index]
        source_ids = self.source_indices(batch_index)
        rng = generator(self.seed, self.epoch, STREAM_AUGMENT, self.rank, batch_index)
        shared = self.data.target_train_shared.take(ids)  # (B, C, T, V0, M)
        specific = self.data.target_train_specific.take(ids)  # (B, C, T, V1, M)
        p = self.presets
        shared_student, shared_unmasked = _views(shared, p.student, self.parts_shared, rng)
        specific_student, _ = _views(specific, p.student, self.parts_specific, rng)
        source, source_unmasked = _views(self.data.source.take(source_ids), p.source,
                                         self.parts_shared, rng)
        return TrainBatch(
            ids=torch.from_numpy(ids.astype(np.int64)),
            shared_student=shared_student,
            shared_teacher=aug.augment(shared, p.teacher, self.parts_shared, rng),
            specific_student=specific_student,
            specific_teacher=aug.augment(specific, p.teacher, self.parts_specific, rng),
            source=source,
            source_labels=torch.from_numpy(self.data.source.labels[source_ids].astype(np.int64)),
            shared_unmasked=shared_unmasked,
            source_unmasked=source_unmasked,
        )

    def __iter__(self) -> Iterator[TrainBatch]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        for batch_index in range(worker, len(self.target_batches), n_workers):
            yield self.make_batch(batch_index)


def _views(x: torch.Tensor, preset: aug.AugmentPreset, parts, rng: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(augmented view, the same view before part masking); equal objects when p = 0."""
    unmasked = aug.augment(x, dataclasses.replace(preset, mask_p=0.0), parts, rng)
    if preset.mask_p == 0:
        return unmasked, unmasked
    return aug.part_mask(unmasked, parts, preset.mask_p, rng), unmasked


def _per_rank(batch: int, world_size: int, key: str) -> int:
    if batch % world_size:
        raise TrainingDataError(f"{key}={batch} is not divisible by the {world_size} processes")
    return batch // world_size


def train_batches(data: TrainingData, config: TrainConfig, *, epoch: int, stage: int, rank: int = 0,
                  world_size: int = 1) -> tuple[int, Iterator[TrainBatch]]:
    """(number of steps, iterator) of one epoch; workers > 0 use a DataLoader of whole batches."""
    dataset = TrainBatches(data, config, epoch=epoch, stage=stage, rank=rank, world_size=world_size)
    if config.runtime.num_workers == 0:
        return len(dataset), iter(dataset)
    loader = DataLoader(dataset, batch_size=None, num_workers=config.runtime.num_workers)
    return len(dataset), iter(loader)


def chunks(n: int, size: int, min_last: int = 2) -> list[np.ndarray]:
    """Consecutive index chunks of ``size`` covering 0..n-1; a tiny last chunk joins the previous
    one (train-mode BatchNorm needs more than one sample)."""
    starts = list(range(0, n, size))
    out = [np.arange(s, min(s + size, n)) for s in starts]
    if len(out) > 1 and len(out[-1]) < min_last:
        out[-2] = np.concatenate([out[-2], out.pop()])
    return out


def weak_views(split: TrainingSplit, indices: np.ndarray, rng: torch.Generator) -> torch.Tensor:
    """Weakly augmented rows (teacher views, METHOD §10) of a split, (B, C, T, V, M)."""
    return aug.augment(split.take(indices), aug.WEAK, _parts(split.layout), rng)
