"""What each cluster is, without labels: size, confidence, its most central sequences, the nearest
source class. Used by ``codt-cluster --summary`` and by the app's cluster gallery.

:func:`summarize_clusters` takes what a model returns for N sequences (their names, the ``(N, K)``
probabilities, the ``(N, D)`` embeddings) and the model's manifest, and gives one
:class:`ClusterSummary` per cluster id 0..K-1, empty clusters included (size 0).
:func:`summarize_assignments` is the same from the clusters and confidences alone (what the
``codt-cluster`` output rows keep).

Definitions (numpy only, pure functions):

- **size** and **share**: members, and members / N (0 when N = 0).
- **mean confidence**: mean over the members of their max probability (None when empty).
- **centrality** of a member: its mean cosine similarity to the *other* members of its cluster,
  ``c_i = (u_i · (S - u_i)) / (n - 1)`` with ``u`` the L2-normalised embeddings and ``S`` their sum
  over the cluster (:func:`centrality`). A zero embedding has similarity 0 to everything. Ranking by
  ``c_i`` is ranking by cosine similarity to the cluster's mean direction.
- **medoid**: the most central member (highest ``c_i``; ties, to 9 decimals, go to the earlier
  sequence, so in a two-member cluster the first is the medoid); for a one-member cluster, that
  member (centrality undefined: None). ``members``: the next most central, up to ``max_members``
  (5).
- **nearest source class** (label-free, always) and **eval cluster name** (only with
  ``eval_names``): the manifest's ``nearest_source_classes`` and ``eval_cluster_names`` entries for
  the cluster, None when the manifest has none (or the entry is ""). The exporter fills
  ``nearest_source_classes`` label-free: per cluster, the source class that the domain-shared
  branch's source classifier finds most likely on average over the cluster's target training
  clips (``training.export.nearest_source_classes``); ``eval_cluster_names`` come from the evaluation
  labels at export (an oracle reading of the result, not something the model knows).

:func:`write_summary` writes the summaries as CSV (one row per cluster, ``member_1..member_5``
columns) or JSON (by the file's extension), atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codt_deploy.errors import CodtError
from codt_deploy.models import Manifest
from codt_deploy.writers import atomic_write_text, printable_text, spreadsheet_safe

MAX_MEMBERS = 5
SUMMARY_FORMATS = {".csv": "csv", ".json": "json"}
_DECIMALS = 6
TIE_DECIMALS = 9  # centralities equal to 9 decimals tie (a 2-member cluster's two are equal)


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster of a clustered batch (see the module docstring for each definition).

    ``medoid_index`` and ``member_indices`` index the sequences the summary was made from;
    ``medoid`` and ``members`` are their names.
    """

    cluster: int
    eval_name: str | None  # from the evaluation labels at export; None unless asked for
    nearest_source_class: str | None
    size: int
    share: float
    mean_confidence: float | None
    medoid: str | None
    medoid_index: int | None
    medoid_similarity: float | None  # the medoid's centrality; None below two members
    members: tuple[str, ...]
    member_indices: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """The summary as written to a file: rounded numbers, names, no indices."""
        return {"cluster": self.cluster, "nearest_source_class": self.nearest_source_class,
                "eval_cluster_name": self.eval_name, "size": self.size,
                "share": round(self.share, _DECIMALS),
                "mean_confidence": _rounded(self.mean_confidence), "medoid": self.medoid,
                "medoid_similarity": _rounded(self.medoid_similarity),
                "members": list(self.members)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, _DECIMALS)


def centrality(embeddings: np.ndarray) -> np.ndarray:
    """Each row's mean cosine similarity to the other rows: ``(n, D) -> (n,)`` float64.

    NaN for a single row (no other member). Zero rows count as similarity 0.
    """
    x = np.asarray(embeddings, np.float64)  # (n, D)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (n, D), got shape {x.shape}")
    n = x.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)  # (n, D)
    total = unit.sum(axis=0)  # (D,)
    return (unit @ total - np.einsum("nd,nd->n", unit, unit)) / (n - 1)  # (n,)


def summarize_clusters(names: Sequence[str], probabilities: np.ndarray, embeddings: np.ndarray,
                       manifest: Manifest, *, max_members: int = MAX_MEMBERS,
                       eval_names: bool = False) -> list[ClusterSummary]:
    """One :class:`ClusterSummary` per cluster 0..K-1 of N sequences.

    ``probabilities`` is the model's ``(N, K)`` output (a sequence's cluster is its argmax, its
    confidence that probability), ``embeddings`` its ``(N, D)`` embedding, ``names`` one name per
    sequence. Raises ValueError when the shapes disagree with each other or with the manifest.
    """
    probs = np.asarray(probabilities, np.float64)
    if probs.ndim != 2 or probs.shape[1] != manifest.num_clusters:
        raise ValueError(f"probabilities must be (N, {manifest.num_clusters}) for model "
                         f"{manifest.name!r}, got shape {probs.shape}")
    return summarize_assignments(names, probs.argmax(axis=1), probs.max(axis=1, initial=0.0),
                                 embeddings, manifest, max_members=max_members,
                                 eval_names=eval_names)


def summarize_assignments(names: Sequence[str], clusters: np.ndarray, confidence: np.ndarray,
                          embeddings: np.ndarray, manifest: Manifest, *,
                          max_members: int = MAX_MEMBERS, eval_names: bool = False
                          ) -> list[ClusterSummary]:
    """:func:`summarize_clusters` from each sequence's cluster ``(N,)`` and confidence ``(N,)``."""
    k = manifest.num_clusters
    labels = np.asarray(clusters)
    conf = np.asarray(confidence, np.float64)
    emb = np.asarray(embeddings, np.float64)
    n = len(names)
    if labels.shape != (n,) or conf.shape != (n,) or emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"{n} names need clusters ({n},), confidence ({n},) and embeddings "
                         f"({n}, D); got {labels.shape}, {conf.shape} and {emb.shape}")
    if n and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0
              or labels.max() >= k):
        raise ValueError(f"cluster ids must be integers in 0..{k - 1} for model "
                         f"{manifest.name!r}")
    if not (np.isfinite(conf).all() and np.isfinite(emb).all()):
        raise ValueError("confidence and embeddings must be finite")
    if max_members < 0:
        raise ValueError(f"max_members must be >= 0, got {max_members}")
    summaries = []
    for cluster in range(k):
        rows = np.flatnonzero(labels == cluster)  # (n_k,) in input order
        scores = centrality(emb[rows])  # (n_k,)
        ranking = np.round(np.nan_to_num(scores, nan=0.0), TIE_DECIMALS)  # (n_k,)
        order = rows[np.argsort(-ranking, kind="stable")]
        medoid = int(order[0]) if len(order) else None
        chosen = [int(i) for i in order[1:1 + max_members]]
        summaries.append(ClusterSummary(
            cluster=cluster,
            eval_name=_entry(manifest.eval_cluster_names, cluster) if eval_names else None,
            nearest_source_class=_entry(manifest.nearest_source_classes, cluster),
            size=int(len(rows)), share=float(len(rows) / n) if n else 0.0,
            mean_confidence=float(conf[rows].mean()) if len(rows) else None,
            medoid=None if medoid is None else str(names[medoid]), medoid_index=medoid,
            medoid_similarity=float(scores.max()) if len(rows) > 1 else None,
            members=tuple(str(names[i]) for i in chosen), member_indices=tuple(chosen)))
    return summaries


def _entry(values: Sequence[str] | None, cluster: int) -> str | None:
    if not values or cluster >= len(values) or not values[cluster]:
        return None
    return str(values[cluster])


# --------------------------------------------------------------------------- files

def summary_format(path: str | os.PathLike) -> str:
    """``"csv"`` or ``"json"`` from the summary file's extension; CodtError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUMMARY_FORMATS:
        raise CodtError(f"{path}: a summary file must end in .csv or .json, not "
                        f"{suffix or 'no extension'}")
    return SUMMARY_FORMATS[suffix]


def summary_csv(summaries: Sequence[ClusterSummary], max_members: int = MAX_MEMBERS) -> str:
    """One CSV row per cluster; members spread over ``member_1..member_<max_members>``; text cells
    UTF-8- and spreadsheet-safe (:mod:`codt_deploy.writers`)."""
    fields = ["cluster", "nearest_source_class", "eval_cluster_name", "size", "share",
              "mean_confidence", "medoid", "medoid_similarity"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields + [f"member_{i + 1}" for i in range(max_members)])
    for summary in summaries:
        record = summary.as_dict()
        members = record["members"][:max_members]
        cells = [record[f] for f in fields] + members + [None] * (max_members - len(members))
        writer.writerow([_csv_cell(cell) for cell in cells])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return spreadsheet_safe(printable_text(value)) if isinstance(value, str) else value


def summary_json(summaries: Sequence[ClusterSummary], *, model: str, sequences: int) -> str:
    """``{"model", "sequences", "num_clusters", "clusters": [...]}`` (names UTF-8-safe)."""
    clusters = []
    for summary in summaries:
        record = summary.as_dict()
        record.update({key: printable_text(value) for key, value in record.items()
                       if isinstance(value, str)})
        record["members"] = [printable_text(m) for m in record["members"]]
        clusters.append(record)
    document = {"model": model, "sequences": sequences, "num_clusters": len(summaries),
                "clusters": clusters}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_summary(path: str | os.PathLike, summaries: Sequence[ClusterSummary], *, model: str,
                  sequences: int) -> None:
    """Write ``summaries`` to ``path`` (``.csv`` or ``.json``) atomically; CodtError naming the
    file when it cannot be written."""
    fmt = summary_format(path)
    text = summary_csv(summaries) if fmt == "csv" else summary_json(
        summaries, model=model, sequences=sequences)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as exc:
        raise CodtError(f"{path}: cannot write the summary: {exc.strerror or exc}") from None
