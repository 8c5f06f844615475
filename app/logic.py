"""The app's logic as plain functions: uploads -> clusters -> tables, PCA, labels and metrics.

Nothing here knows about Gradio. :func:`analyse` runs a model over the sequences read by
:func:`app.uploads.parse_uploads` and returns a :class:`BatchResult`; the UI only formats it.
Cluster assignment is the model's default, as ``codt-cluster`` gives it
(:meth:`codt_deploy.infer.ClusterModel.cluster` of all uploaded sequences: an upload of at least
8 sequences per cluster clustered together by its own DTW graph, a smaller one together with the
model's reference bank, METHOD.md §15.5); the PCA map is of the network's 256-d embedding.
The cluster gallery is :func:`codt_deploy.summary.summarize_assignments` of the batch (the one
implementation, shared with ``codt-cluster --summary``): per cluster its size, mean confidence,
most central sequence (the medoid, animated by the UI), the next most central ones and the model's
nearest source class.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

import numpy as np

from codt_deploy.errors import CodtError
from codt_deploy.labels import read_labels
from codt_deploy.models import Manifest
from codt_deploy.sequence import PoseSequence
from codt_deploy.summary import ClusterSummary, summarize_assignments

from .uploads import FileProblem, ParsedUploads, error_reason

log = logging.getLogger(__name__)


class Predictor(Protocol):
    """What the app needs of :class:`codt_deploy.infer.ClusterModel`."""

    @property
    def manifest(self) -> Manifest: ...

    def predict_sequences(self, sequences: Sequence[PoseSequence]): ...


@dataclass(frozen=True)
class SequenceResult:
    """One sequence of the batch and its predicted cluster."""

    sequence: PoseSequence
    cluster: int
    confidence: float  # the winning cluster's probability

    @property
    def file(self) -> str:
        return self.sequence.source

    @property
    def name(self) -> str:
        return self.sequence.name or PurePosixPath(self.file.rsplit("::", 1)[-1]).name


@dataclass
class BatchResult:
    """Everything the UI shows for one analysed batch."""

    model_name: str
    num_clusters: int
    cluster_names: tuple[str, ...] | None
    results: list[SequenceResult] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (N, D)
    clusters: list[ClusterSummary] = field(default_factory=list)  # one per cluster id 0..K-1

    def counts(self) -> dict[int, int]:
        """Sequences per cluster, for the clusters that got any."""
        return dict(sorted(Counter(r.cluster for r in self.results).items()))

    def choices(self) -> list[str]:
        """One label per result for the sequence picker: ``"3: a01_s02_e01 (cluster 4)"``."""
        return [f"{i}: {r.name} (cluster {r.cluster})" for i, r in enumerate(self.results)]


def cluster_names(manifest) -> tuple[str, ...] | None:
    """Label-free names of the clusters: ``"≈ class"`` from the model's nearest source classes
    (the names the evaluation labels give, ``eval_cluster_names``, are never shown as if the
    model knew them)."""
    nearest = getattr(manifest, "nearest_source_classes", None)
    return tuple(f"≈ {name}" for name in nearest) if nearest else None


def _prediction_arrays(prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(clusters (N,), confidence (N,), embedding (N, D))`` from a ``Prediction``."""
    clusters = np.asarray(prediction.clusters, np.int64)
    confidence = np.asarray(prediction.confidence, np.float64)
    embedding = np.asarray(prediction.embedding, np.float32)
    return clusters, confidence, embedding


def _reason(seq: PoseSequence, exc: Exception) -> str:
    """Why the model rejected ``seq``, prefixed with its name when the file holds several."""
    text = error_reason(seq.source, exc)
    stem = PurePosixPath(seq.source.rsplit("::", 1)[-1]).stem
    return text if not seq.name or stem.startswith(seq.name) else f"{seq.name}: {text}"


def _predict_each(model: Predictor, sequences: list[PoseSequence]) -> tuple[list, list]:
    """Predict one sequence at a time, so one that the model cannot take is named alone."""
    kept, problems = [], []
    for seq in sequences:
        try:
            kept.append((seq, _prediction_arrays(model.predict_sequences([seq]))))
        except (CodtError, ValueError) as exc:
            problems.append(FileProblem(seq.source, _reason(seq, exc)))
    return kept, problems


def analyse(parsed: ParsedUploads, model: Predictor, *, model_name: str = "") -> BatchResult:
    """Cluster every parsed sequence with ``model``; sequences it rejects become problems."""
    manifest = model.manifest
    batch = BatchResult(model_name=model_name or manifest.name, num_clusters=manifest.num_clusters,
                        cluster_names=cluster_names(manifest), problems=list(parsed.problems))
    if not parsed.sequences:
        return batch
    try:
        clusters, confidence, embedding = _prediction_arrays(
            model.predict_sequences(parsed.sequences))
        pairs = [(seq, (clusters[i:i + 1], confidence[i:i + 1], embedding[i:i + 1]))
                 for i, seq in enumerate(parsed.sequences)]
    except (CodtError, ValueError) as exc:
        log.info("batch prediction failed (%s); retrying one sequence at a time", exc)
        pairs, problems = _predict_each(model, parsed.sequences)
        batch.problems.extend(problems)
    batch.results = [SequenceResult(seq, int(c[0]), float(p[0])) for seq, (c, p, _) in pairs]
    if pairs:
        batch.embeddings = np.concatenate([e for _, (_, _, e) in pairs])  # (N, D)
        batch.clusters = summarize_assignments(
            [r.name for r in batch.results], np.array([r.cluster for r in batch.results], np.int64),
            np.array([r.confidence for r in batch.results]), batch.embeddings, manifest)
    return batch


def pca_2d(embeddings: np.ndarray) -> np.ndarray:
    """The first two principal components ``(N, 2)`` of ``embeddings (N, D)`` (numpy SVD).

    Signs are fixed (largest loading positive) so the map does not flip between runs; fewer than
    two non-trivial components leave zeros in the missing columns.
    """
    x = np.asarray(embeddings, np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {x.shape}")
    out = np.zeros((x.shape[0], 2))
    if x.shape[0] < 2:
        return out
    centred = x - x.mean(axis=0, keepdims=True)  # (N, D)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)  # components (r, D)
    for k in range(min(2, len(singular))):
        if singular[k] <= 1e-12 * max(singular[0], 1e-300):
            break
        direction = components[k] * np.sign(components[k][np.argmax(np.abs(components[k]))])
        out[:, k] = centred @ direction  # (N,)
    return out


# --- labels and metrics --------------------------------------------------------------------------

@dataclass(frozen=True)
class Labels:
    """The ground truth of a batch: each result's label (None where unknown), the display name of
    each label, and where the labels came from."""

    per_result: list[str | None]
    names: dict[str, str]
    source: str


def labels_from_csv(results: Sequence[SequenceResult], path: str | os.PathLike) -> Labels:
    """Each result's label from a labels CSV (:mod:`codt_deploy.labels`); raises LabelsError.

    Messages name the file by its name alone: an upload's folder is the server's, not the user's.
    """
    table = read_labels(path, shown_as=Path(path).name)
    per_result = [table.label_of(r.file, name=r.sequence.name) for r in results]
    return Labels(per_result, table.names, table.source)


def labels_from_sequences(results: Sequence[SequenceResult]) -> Labels | None:
    """The labels the files carry themselves (e.g. MSR Action3D's ``aXX``), if every one has one."""
    if not results or any(r.sequence.label is None for r in results):
        return None
    per_result: list[str | None] = [str(r.sequence.label) for r in results]
    names = {str(r.sequence.label): r.sequence.label_name or str(r.sequence.label) for r in results}
    return Labels(per_result, names, "the labels in the files")


def _label_order(values: Sequence[str]) -> list[str]:
    distinct = set(values)
    if all(v.lstrip("-").isdigit() for v in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


@dataclass(frozen=True)
class Evaluation:
    """ACC/NMI/ARI over the labelled sequences and the cluster x label count matrix."""

    metrics: dict[str, float]
    matched: int
    total: int
    cluster_ids: list[int]
    label_values: list[str]
    label_names: list[str]
    confusion: np.ndarray  # (clusters, labels) int64
    source: str


def evaluate(results: Sequence[SequenceResult], labels: Labels) -> Evaluation | None:
    """Score the clusters against ``labels`` (METHOD.md §10 metrics); None if nothing matches."""
    from codt_deploy.metrics import evaluate as score

    pairs = [(r.cluster, lab) for r, lab in zip(results, labels.per_result, strict=True)
             if lab is not None]
    if not pairs:
        return None
    clusters = [c for c, _ in pairs]
    truth = [lab for _, lab in pairs]
    metrics = score(truth, clusters)
    cluster_ids = sorted(set(clusters))
    label_values = _label_order(truth)
    confusion = np.zeros((len(cluster_ids), len(label_values)), np.int64)
    for c, lab in pairs:
        confusion[cluster_ids.index(c), label_values.index(lab)] += 1
    return Evaluation(metrics, len(pairs), len(results), cluster_ids, label_values,
                      [labels.names.get(v, v) for v in label_values], confusion, labels.source)


# --- tables -------------------------------------------------------------------------------------

RESULT_COLUMNS = ["#", "file", "sequence", "frames", "persons", "cluster", "nearest source class",
                  "confidence"]


def result_rows(batch: BatchResult) -> list[list]:
    """One row per sequence for the results table (confidence as a fraction in [0, 1])."""
    names = batch.cluster_names or ()
    return [[i, r.file, r.name, r.sequence.num_frames, r.sequence.num_persons, r.cluster,
             names[r.cluster] if r.cluster < len(names) else "", round(r.confidence, 4)]
            for i, r in enumerate(batch.results)]


# --- the cluster gallery ------------------------------------------------------------------------

GALLERY_COLUMNS = ["cluster", "nearest source class", "sequences", "share",
                   "mean confidence", "most central sequence", "next most central"]


def gallery_rows(batch: BatchResult) -> list[list]:
    """One row per cluster, empty ones included (0 sequences); fractions in [0, 1]."""
    return [[s.cluster, s.nearest_source_class or "", s.size, round(s.share, 4),
             "" if s.mean_confidence is None else round(s.mean_confidence, 4), s.medoid or "",
             ", ".join(s.members)] for s in batch.clusters]


def gallery_choices(batch: BatchResult) -> list[str]:
    """One label per non-empty cluster for the gallery's picker: ``"3: ≈ wave · 12 sequence(s)"``
    (the label-free nearest source class)."""
    return [f"{s.cluster}: " + (f"≈ {s.nearest_source_class} · " if s.nearest_source_class else "")
            + f"{s.size} sequence(s)"
            for s in batch.clusters if s.size]


def cluster_summary(batch: BatchResult, choice: str | int) -> ClusterSummary:
    """The summary of the cluster a gallery choice (or a cluster id) names; ValueError if none."""
    text = str(choice).split(":", 1)[0].strip()
    if not text.lstrip("-").isdigit() or not 0 <= int(text) < len(batch.clusters):
        raise ValueError(f"no cluster {text!r} in this batch (it has {len(batch.clusters)})")
    return batch.clusters[int(text)]


def medoid_result(batch: BatchResult, summary: ClusterSummary) -> SequenceResult | None:
    """The most central sequence of the cluster (None for an empty cluster)."""
    return None if summary.medoid_index is None else batch.results[summary.medoid_index]


def problem_rows(batch: BatchResult) -> list[list[str]]:
    return [[p.file, p.reason] for p in batch.problems]


def _csv_cell(value: object) -> object:
    """Text made UTF-8-safe and spreadsheet-safe (``codt_deploy.writers``), other values as is."""
    from codt_deploy.writers import printable_text, spreadsheet_safe

    return spreadsheet_safe(printable_text(value)) if isinstance(value, str) else value


def write_results_csv(batch: BatchResult, folder: str | os.PathLike,
                      labels: Sequence[str | None] | None = None) -> Path:
    """Write the results table (and the matched label, if any) to ``folder/clusters.csv``."""
    path = Path(folder) / "clusters.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([c.replace(" ", "_") for c in RESULT_COLUMNS[1:]]
                        + (["label"] if labels is not None else []))
        for i, row in enumerate(result_rows(batch)):
            extra = [labels[i] if labels[i] is not None else ""] if labels is not None else []
            writer.writerow([_csv_cell(value) for value in row[1:] + extra])
    return path
