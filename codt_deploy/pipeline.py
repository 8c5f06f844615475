"""The ``codt-cluster`` engine: read and preprocess in a worker pool, infer in batches, write rows.

Inputs come from :func:`codt_deploy.sources.iter_inputs` in a stable order. Each input is parsed and
preprocessed by :func:`parse_item` (a pure function of the item and :class:`ParseOptions`) in a pool
of worker threads or processes while the main thread runs the model on the previous batch; at most
``max_in_flight`` inputs are pending, so memory stays flat however large the input set or archive.
Results are handled in input order: failures are recorded with the file and the reason and the run
goes on; every successfully read file's rows reach the sink together (resume works per file).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from codt_deploy.errors import CodtError
from codt_deploy.infer import ClusterModel, prepare_sequence
from codt_deploy.preprocess import PreprocessConfig
from codt_deploy.readers import detect_format, read_bytes, read_poses
from codt_deploy.sources import ArchiveLimits, InputItem, iter_inputs

log = logging.getLogger(__name__)

_HEAD_BYTES = 64 * 1024  # as much as the readers sniff
ExecutorKind = Literal["thread", "process"]


@dataclass(frozen=True)
class ParseOptions:
    """Everything a worker needs to turn one input into model samples (picklable)."""

    preprocess: dict[str, Any]  # PreprocessConfig.model_dump()
    pose_format: str | None = None
    trust_pickle: bool = False
    reader_options: dict[str, Any] = field(default_factory=dict)
    # ``axes``/``skeleton`` for plain .npy/.npz arrays only (codt-cluster --axes/--layout)
    array_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedFile:
    """One input after reading and preprocessing: samples ``(S, C, T, V, M)`` or a reason."""

    key: str
    source: str = ""
    member: str = ""
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
    """Read one input and preprocess every sequence in it; errors become ``ParsedFile.error``."""
    if item.error or item.skip:
        return ParsedFile(item.key, item.source, item.member, error=item.error, skip=item.skip)
    try:
        fmt = _detect(item, options)
        reader_options = dict(options.reader_options)
        if options.array_options and (fmt == "array" or (
                fmt is None and item.name.lower().endswith((".npy", ".npz")))):
            fmt = "array"
            reader_options.update(options.array_options)
        if item.data is not None:
            seqs = read_bytes(item.name, item.data, format=fmt, **reader_options)
        else:
            seqs = read_poses(item.path, format=fmt, trust_pickle=options.trust_pickle,
                              **reader_options)
        if not seqs:
            return ParsedFile(item.key, item.source, item.member,
                              error="no pose sequences in this file")
        config = PreprocessConfig.model_validate(options.preprocess)
        samples = np.stack([prepare_sequence(seq, config) for seq in seqs])  # (S, C, T, V, M)
    except _Undetected as exc:
        return ParsedFile(item.key, item.source, item.member, skip=str(exc))
    except (CodtError, OSError, ValueError) as exc:
        return ParsedFile(item.key, item.source, item.member, error=_reason(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must not end a batch run
        log.exception("unexpected error reading %s", item.key)
        return ParsedFile(item.key, item.source, item.member,
                          error=f"unexpected {type(exc).__name__}: {exc}")
    meta = [{"name": seq.name, "segment": _segment(seq.segment)} for seq in seqs]
    return ParsedFile(item.key, item.source, item.member, samples=samples, meta=meta)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, CodtError) else f"{type(exc).__name__}: {exc}"


def _segment(segment: tuple[int, int] | None) -> str:
    return "" if segment is None else f"{segment[0]}-{segment[1]}"


class RowSink(Protocol):
    done_keys: set[str]  # inputs an interrupted earlier run already wrote (``--resume``)

    def write_file(self, key: str, rows: list[dict[str, Any]]) -> None: ...


@dataclass
class Summary:
    """What a run did; ``failures`` and ``skipped`` hold (input, reason)."""

    files: int = 0
    sequences: int = 0
    resumed: int = 0
    duplicates: int = 0  # inputs listed more than once (read once)
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class PipelineOptions:
    workers: int = 1
    executor: ExecutorKind = "thread"
    batch_size: int = 32
    embeddings: bool = False
    max_in_flight: int | None = None  # default 4 x workers + 4
    limits: ArchiveLimits = ArchiveLimits()


def make_executor(workers: int, kind: ExecutorKind) -> Executor | None:
    """None (parse inline) for 0 workers; processes start by forkserver (safe with ORT threads)."""
    if workers <= 0:
        return None
    if kind == "process":
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        return ProcessPoolExecutor(max_workers=workers,
                                   mp_context=multiprocessing.get_context(method))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codt-parse")


class _Batcher:
    """Collects parsed files until ``batch_size`` samples, then infers and emits rows per file."""

    def __init__(self, model: ClusterModel, sink: RowSink, summary: Summary,
                 embeddings: bool, batch_size: int) -> None:
        self.model, self.sink, self.summary = model, sink, summary
        self.embeddings, self.batch_size = embeddings, batch_size
        self.files: list[ParsedFile] = []
        self.count = 0
        names = model.manifest.cluster_names
        self.cluster_names = list(names) if names else None

    def add(self, parsed: ParsedFile) -> None:
        self.files.append(parsed)
        self.count += parsed.samples.shape[0]
        if self.count >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.files:
            return
        poses = np.concatenate([f.samples for f in self.files])  # (N, C, T, V, M)
        prediction = self.model.predict(poses)
        start = 0
        for parsed in self.files:
            rows = [self._row(parsed, i, start + i, prediction) for i in range(len(parsed.meta))]
            start += len(parsed.meta)
            self.sink.write_file(parsed.key, rows)
            self.summary.files += 1
            self.summary.sequences += len(rows)
        self.files, self.count = [], 0

    def _row(self, parsed: ParsedFile, i: int, n: int, prediction) -> dict[str, Any]:
        cluster = int(prediction.clusters[n])
        row: dict[str, Any] = {"source": parsed.source, "member": parsed.member, **parsed.meta[i],
                               "cluster": cluster}
        if self.cluster_names:
            row["cluster_name"] = self.cluster_names[cluster]
        row["confidence"] = round(float(prediction.confidence[n]), 6)
        if self.embeddings:
            row["embedding"] = prediction.embedding[n].tolist()
        return row


def run_pipeline(inputs: Iterable[str], model: ClusterModel, sink: RowSink,
                 parse_options: ParseOptions, options: PipelineOptions = PipelineOptions(),
                 progress: Callable[[int], None] | None = None) -> Summary:
    """Cluster every input; per-file failures are recorded in the returned :class:`Summary`."""
    summary = Summary()
    batcher = _Batcher(model, sink, summary, options.embeddings, options.batch_size)
    executor = make_executor(options.workers, options.executor)
    limit = options.max_in_flight or 4 * max(options.workers, 1) + 4
    pending: deque[Future | ParsedFile] = deque()
    seen: set[str] = set()

    def handle(entry: Future | ParsedFile) -> None:
        parsed = entry.result() if isinstance(entry, Future) else entry
        if parsed.error:
            summary.failures.append((parsed.key, parsed.error))
            log.info("failed: %s", describe_failure(parsed.key, parsed.error))
        elif parsed.skip:
            summary.skipped.append((parsed.key, parsed.skip))
        else:
            batcher.add(parsed)
        if progress:
            progress(1)

    try:
        for item in iter_inputs(list(inputs), options.limits):
            if item.key in sink.done_keys:
                summary.resumed += 1
                continue
            if item.key in seen:
                summary.duplicates += 1
                continue
            seen.add(item.key)
            if executor is None:
                pending.append(parse_item(item, parse_options))
            else:
                pending.append(executor.submit(parse_item, item, parse_options))
            while len(pending) >= limit:
                handle(pending.popleft())
        while pending:
            handle(pending.popleft())
        batcher.flush()
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return summary


def describe_failure(key: str, reason: str) -> str:
    """``key: reason``, without repeating the file when the reason already starts with it."""
    return reason if reason.startswith(key.partition("::")[0]) else f"{key}: {reason}"
