"""The ``codt-cluster`` engine: read and preprocess in a worker pool, infer in batches, write rows.

Inputs come from :func:`codt_deploy.sources.iter_inputs` in a stable order. Each input is parsed and
preprocessed by :func:`parse_item` (a pure function of the item and :class:`ParseOptions`) in a pool
of worker threads or processes while the main thread runs the model on the previous batch; at most
``max_in_flight`` inputs are pending, so memory stays flat however large the input set or archive.
Results are handled in input order: failures are recorded with the file and the reason and the run
goes on; every successfully read file's rows reach the sink together (resume works per file).

Isolation: each input item (a file or an archive member) is one failure domain. Whatever the
archive layer, a reader, the preprocessing, a worker process or the model raises for one item
becomes that item's failure row with the reason; a batch the model refuses is retried file by file
(:func:`codt_deploy.infer.predict_blocks`). Only the sink (the output) can stop a run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from codt_deploy.batch import (
    MAX_BATCH_CLIPS,
    MIN_CLIPS_PER_CLUSTER,
    BatchStep,
    batch_applies,
    decode_clips,
    encode_clips,
)
from codt_deploy.errors import CodtError
from codt_deploy.infer import ClusterModel, predict_blocks, prepare_sequence
from codt_deploy.layouts import Layout, custom_layouts, register_layout
from codt_deploy.preprocess import CHANNEL_NAMES, PreprocessConfig
from codt_deploy.readers import detect_format, read_bytes, read_poses
from codt_deploy.sources import ArchiveLimits, InputItem, iter_inputs
from codt_deploy.writers import FRAMES_FIELD, Row, cluster_name_columns

log = logging.getLogger(__name__)

_HEAD_BYTES = 64 * 1024  # as much as the readers sniff
ExecutorKind = Literal["thread", "process"]


@dataclass(frozen=True)
class ParseOptions:
    """Everything a worker needs to turn one input into model samples (picklable)."""

    preprocess: PreprocessConfig  # the model's (frozen, picklable)
    pose_format: str | None = None
    trust_pickle: bool = False
    reader_options: dict[str, Any] = field(default_factory=dict)
    # ``axes``/``skeleton`` for plain .npy/.npz arrays only (codt-cluster --axes/--layout)
    array_options: dict[str, Any] = field(default_factory=dict)
    # the layouts loaded from files or manifests when these options were made: a worker process
    # registers them before reading (its registry starts with the built-in layouts only)
    layouts: tuple[Layout, ...] = field(default_factory=custom_layouts)


@dataclass
class ParsedFile:
    """One input after reading and preprocessing: samples ``(S, C, T, V, M)`` or a reason."""

    key: str
    source: str = ""
    member: str = ""
    label: str = ""  # the input as the user spelled it (``source::member``), for messages
    samples: np.ndarray | None = None  # (S, C, T, V, M) float32
    meta: list[dict[str, Any]] = field(default_factory=list)  # per sequence: name, segment
    error: str | None = None
    skip: str | None = None


def _detect(item: InputItem, options: ParseOptions) -> str | None:
    """The format to read ``item`` with; raises _Undetected for walk/glob files of no known format."""
    if options.pose_format:
        return options.pose_format
    if item.explicit or (item.path is not None and item.path.is_dir()):
        return None  # let the reader detect it and explain any failure
    if item.data is not None:
        head = item.data[:_HEAD_BYTES]
    else:
        assert item.path is not None  # an item without data is a file on disk
        with open(item.path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    try:
        fmt = detect_format(item.name, head)
    except CodtError as exc:
        raise _Undetected(str(exc)) from None
    if not fmt:
        raise _Undetected("not a recognised pose file")
    return fmt


class _Undetected(Exception):
    """A file found by a folder walk or glob is not a pose file: skipped, not failed."""


def parse_item(item: InputItem, options: ParseOptions) -> ParsedFile:
    """Read one input and preprocess every sequence in it; every failure, of whatever type,
    becomes ``ParsedFile.error`` (this is the per-item isolation boundary)."""
    def failed(*, error: str | None = None, skip: str | None = None) -> ParsedFile:
        return ParsedFile(item.key, item.source, item.member, item.label, error=error, skip=skip)

    if item.error or item.skip:
        return failed(error=item.error, skip=item.skip)
    try:
        seqs, samples = _read_and_prepare(item, options)
    except _Undetected as exc:
        return failed(skip=str(exc))
    except (CodtError, OSError, ValueError) as exc:
        return failed(error=_reason(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must not end a batch run
        log.debug("unexpected error reading %s", item.label, exc_info=True)
        return failed(error=f"unexpected {type(exc).__name__}: {exc}")
    if not seqs:
        return failed(error="no pose sequences in this file")
    meta = [{"name": seq.name, "segment": _segment(seq.segment)} for seq in seqs]
    return ParsedFile(item.key, item.source, item.member, item.label, samples=samples, meta=meta)


def _read_and_prepare(item: InputItem, options: ParseOptions):
    """(sequences, samples ``(S, C, T, V, M)`` or None when there are no sequences)."""
    for layout in options.layouts:
        register_layout(layout)
    fmt = _detect(item, options)
    reader_options = dict(options.reader_options)
    if fmt is None and item.name.lower().endswith((".npy", ".npz")):
        # array options make any .npy a plain array; else the name decides, as the reader would
        fmt = "array" if options.array_options else detect_format(item.name, b"")
    if fmt == "array":
        reader_options.update(options.array_options)
        if "channels" not in reader_options:
            # an array that does not say what its channels are: the model's, when their number
            # fits (three for an xy_score model are x, y and a score), else x, y, z / x, y
            reader_options["expected_channels"] = CHANNEL_NAMES[options.preprocess.channels]
    if item.data is not None:
        seqs = read_bytes(item.name, item.data, format=fmt, **reader_options)
    else:
        assert item.path is not None  # an item without data is a file on disk
        seqs = read_poses(item.path, format=fmt, trust_pickle=options.trust_pickle,
                          **reader_options)
    if not seqs:
        return seqs, None
    samples = np.stack([prepare_sequence(seq, options.preprocess) for seq in seqs])  # (S, C, T, V, M)
    return seqs, samples


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, CodtError) else f"{type(exc).__name__}: {exc}"


def _segment(segment: tuple[int, int] | None) -> str:
    return "" if segment is None else f"{segment[0]}-{segment[1]}"


class RowSink(Protocol):
    done_keys: set[str]  # inputs an interrupted earlier run already wrote (``--resume``)

    def write_file(self, key: str, rows: list[dict[str, Any]]) -> None: ...


@dataclass
class Summary:
    """What a run did; ``failures``, ``skipped`` and ``not_opened`` hold (input, reason).

    ``skipped``: files found by a walk or glob that are not pose files; ``not_opened``: what was
    deliberately left unread for another reason (a nested archive, a FIFO), listed with it;
    ``empty``: the inputs (an archive, folder or glob pattern) that held no pose file at all.
    A run is ``ok`` when nothing failed and something was clustered (now or before a resume)."""

    files: int = 0
    sequences: int = 0
    resumed: int = 0
    duplicates: int = 0  # inputs listed more than once (read once)
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    not_opened: list[tuple[str, str]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and (self.files > 0 or self.resumed > 0)


@dataclass(frozen=True)
class PipelineOptions:
    workers: int = 1
    executor: ExecutorKind = "thread"
    batch_size: int = 32
    embeddings: bool = False
    eval_names: bool = False  # rows also get eval_cluster_name (from the evaluation labels)
    max_in_flight: int | None = None  # default 4 x workers + 4
    limits: ArchiveLimits = ArchiveLimits()


def make_executor(workers: int, kind: ExecutorKind) -> Executor | None:
    """None (parse inline) for 0 workers; processes start by forkserver (safe with ORT threads)
    and exit by themselves within a second when this process dies (even by SIGKILL)."""
    if workers <= 0:
        return None
    if kind == "process":
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        return ProcessPoolExecutor(max_workers=workers,
                                   mp_context=multiprocessing.get_context(method),
                                   initializer=exit_with_parent, initargs=(os.getpid(),))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codt-parse")


def exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """Worker initializer: a daemon thread ends this process once ``parent`` is gone."""
    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid was reused by another user's process
                os._exit(1)

    threading.Thread(target=watch, name="codt-exit-with-parent", daemon=True).start()


class _Batcher:
    """Collects parsed files until ``batch_size`` samples, then infers and emits rows per file."""

    def __init__(self, model: ClusterModel, sink: RowSink, summary: Summary,
                 embeddings: bool, batch_size: int, eval_names: bool = False) -> None:
        self.model, self.sink, self.summary = model, sink, summary
        self.embeddings, self.batch_size = embeddings, batch_size
        self.files: list[ParsedFile] = []
        self.blocks: list[np.ndarray] = []  # the files' samples, in order
        self.count = 0
        self.name_columns = cluster_name_columns(model.manifest, eval_names)
        self.framed = 0  # rows given their frames for the batch step

    def add(self, parsed: ParsedFile) -> None:
        assert parsed.samples is not None  # only files that were read come here
        self.files.append(parsed)
        self.blocks.append(parsed.samples)
        self.count += parsed.samples.shape[0]
        if self.count >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.files:
            return
        predictions = predict_blocks(self.model, self.blocks)
        for parsed, block, prediction in zip(self.files, self.blocks, predictions):
            if isinstance(prediction, str):  # this file alone: the others are still written
                self.summary.failures.append((parsed.label, prediction))
                continue
            rows = [self._row(parsed, i, i, prediction) for i in range(len(parsed.meta))]
            if self.model.batch_step is not None and self.framed + len(rows) <= MAX_BATCH_CLIPS:
                # kept in the journal for the run's batch step (a run past the limit keeps its votes)
                step = self.model.batch_step
                for row, text in zip(rows, encode_clips(step.frames(block),
                                                        step.embedding(prediction.embedding))):
                    row[FRAMES_FIELD] = text
                self.framed += len(rows)
            self.sink.write_file(parsed.key, rows)
            self.summary.files += 1
            self.summary.sequences += len(rows)
        self.files, self.blocks, self.count = [], [], 0

    def _row(self, parsed: ParsedFile, i: int, n: int, prediction) -> dict[str, Any]:
        cluster = int(prediction.clusters[n])
        row: dict[str, Any] = {"source": parsed.source, "member": parsed.member, **parsed.meta[i],
                               "cluster": cluster}
        for column, names in self.name_columns.items():
            row[column] = names[cluster] if cluster < len(names) else ""
        row["confidence"] = round(float(prediction.confidence[n]), 6)
        if self.embeddings:
            row["embedding"] = prediction.embedding[n].tolist()
        return row


@dataclass(frozen=True)
class BatchFinisher:
    """The end of a run whose model has the ``batch`` assignment: every clustered clip of the run
    (the resumed ones included, their frames kept in the journal) clustered together
    (:class:`codt_deploy.batch.BatchStep`); a sink calls it once with all rows' frames and vote
    clusters and writes the overrides it returns."""

    step: BatchStep
    name_columns: dict[str, tuple[str, ...]]

    def applies(self, rows: int) -> bool:
        reason = self.step.declines(rows)
        if reason is not None and rows:
            log.warning("each clip keeps its vote: %s", reason)
        return reason is None

    def overrides(self, frame_texts: list[str], clusters: list[int]) -> list[Row] | None:
        """Per row (in order) the new ``cluster``, its name columns and ``confidence``; None when
        the batch keeps its vote (too small, too large, or frames unreadable: said in the log)."""
        try:
            frames, embedding = decode_clips(frame_texts, self.step.frame_shape,
                                             self.step.embedding_dim)  # (N, T, D), (N, E)
        except ValueError as exc:
            log.warning("the run's clips keep their own votes: %s", exc)
            return None
        together = self.step.cluster(frames, embedding, np.asarray(clusters, np.int64))
        if together is None:
            return None
        log.info("%d clips clustered together%s", len(frame_texts),
                 "" if batch_applies(len(frame_texts), self.step.num_clusters)
                 else f" with the model's reference bank (fewer than {MIN_CLIPS_PER_CLUSTER} per "
                      "cluster)")
        out = []
        for cluster, confidence in zip(*together):
            row: Row = {"cluster": int(cluster)}
            for column, names in self.name_columns.items():
                row[column] = names[cluster] if cluster < len(names) else ""
            row["confidence"] = round(float(confidence), 6)
            out.append(row)
        return out


def batch_finisher(model: ClusterModel, eval_names: bool = False) -> BatchFinisher | None:
    """The :class:`BatchFinisher` of ``model``, or None when it assigns clip by clip."""
    if model.batch_step is None:
        return None
    return BatchFinisher(model.batch_step, cluster_name_columns(model.manifest, eval_names))


def run_pipeline(inputs: Iterable[str], model: ClusterModel, sink: RowSink,
                 parse_options: ParseOptions, options: PipelineOptions = PipelineOptions(),
                 progress: Callable[[int], None] | None = None) -> Summary:
    """Cluster every input; per-file failures are recorded in the returned :class:`Summary`."""
    summary = Summary()
    batcher = _Batcher(model, sink, summary, options.embeddings, options.batch_size,
                       options.eval_names)
    executor = make_executor(options.workers, options.executor)
    limit = options.max_in_flight or 4 * max(options.workers, 1) + 4
    pending: deque[tuple[InputItem, Future | ParsedFile]] = deque()
    seen: set[tuple[str, str | None, str | None]] = set()
    inputs = list(inputs)
    held_pose_file = dict.fromkeys(inputs, False)  # per argument: was anything in it read?

    def handle(item: InputItem, entry: Future | ParsedFile) -> None:
        parsed = _result(item, entry)
        if not parsed.skip:
            held_pose_file[item.origin] = True
        if parsed.error:
            summary.failures.append((parsed.label, parsed.error))
            log.info("failed: %s", describe_failure(parsed.label, parsed.error))
        elif parsed.skip and item.skip:  # left unread on purpose: listed with the reason
            summary.not_opened.append((parsed.label, parsed.skip))
        elif parsed.skip:
            summary.skipped.append((parsed.label, parsed.skip))
        else:
            batcher.add(parsed)
        if progress:
            progress(1)

    try:
        for item in iter_inputs(inputs, options.limits):
            identity = (item.key, item.error, item.skip)  # a same-name member's error is its own
            if identity in seen:
                summary.duplicates += 1
                held_pose_file[item.origin] |= not item.skip
                continue
            seen.add(identity)
            if not (item.error or item.skip) and item.key in sink.done_keys:
                summary.resumed += 1
                held_pose_file[item.origin] = True
                continue
            if executor is None or item.error or item.skip:
                pending.append((item, parse_item(item, parse_options)))
            else:
                pending.append((item, _submit(executor, item, parse_options)))
            while len(pending) >= limit:
                handle(*pending.popleft())
        while pending:
            handle(*pending.popleft())
        batcher.flush()
        summary.empty = [arg for arg, held in held_pose_file.items() if not held]
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return summary


def _submit(executor: Executor, item: InputItem, options: ParseOptions) -> Future | ParsedFile:
    """Hand ``item`` to a worker; a pool that cannot take it (broken) gives its failure."""
    try:
        return executor.submit(parse_item, item, options)
    except RuntimeError as exc:  # BrokenExecutor, or shut down
        return ParsedFile(item.key, item.source, item.member, item.label,
                          error=f"worker pool unavailable: {type(exc).__name__}: {exc}")


def _result(item: InputItem, entry: Future | ParsedFile) -> ParsedFile:
    """A worker's result; a worker that died or could not send it back fails this item only."""
    if not isinstance(entry, Future):
        return entry
    try:
        return entry.result()
    except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool after a worker was killed
        return ParsedFile(item.key, item.source, item.member, item.label,
                          error=f"the worker reading it failed: {type(exc).__name__}: {exc}")


def describe_failure(key: str, reason: str) -> str:
    """``key: reason``, without repeating the file when the reason already starts with it."""
    return reason if reason.startswith(key.partition("::")[0]) else f"{key}: {reason}"
