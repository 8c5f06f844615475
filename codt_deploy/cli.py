"""``codt-cluster``: cluster skeleton sequences with an exported CoDT model.

    codt-cluster INPUT... [-o out.csv] [--format csv|jsonl|parquet] [--model NAME|PATH]
                 [--labels labels.csv] [--embeddings] [--resume] [--workers N] [--batch-size N]
                 [--providers P[,P...]] [--pose-format FMT] [--axes AXES] [--layout NAME|FILE]
                 [--channels xyz|xy|xy_score] [--trust-pickle] [--show N] [--quiet]
                 [--summary clusters.csv|clusters.json]

INPUT is a pose file, a folder (searched recursively), a glob pattern or a .zip / .tar(.gz) archive
(read member by member, never extracted). One output row per sequence. Without ``-o`` the rows go
to standard output. A per-file failure is reported and the run carries on; the exit status is 1 if
any input failed or nothing was clustered, 2 on a usage or setup error, 130 when interrupted (rerun
with ``--resume``). ``--workers``/``--threads`` above the cores and a ``--batch-size`` beyond the
memory available are lowered, with a notice.

``--summary FILE`` also writes one row per cluster (:mod:`codt_deploy.summary`: size, share, mean
confidence, the most central sequence and the next ones, the nearest source class) over every
sequence in the output, those kept by ``--resume`` included; it needs each sequence's embedding, so
the journal holds the embeddings (and this process about 1 KiB per sequence) even without
``--embeddings``. Standard error gets one line naming the file, not the table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codt_deploy.argtypes import non_negative_int, positive_int
from codt_deploy.errors import CodtError
from codt_deploy.labels import LabelTable, read_labels
from codt_deploy.preprocess import CHANNEL_MODES, CHANNEL_NAMES
from codt_deploy.readers.arrays import AXES
from codt_deploy.sources import canonical_path
from codt_deploy.writers import check_output

log = logging.getLogger("codt_deploy.cli")
JOURNAL_VERSION = 2  # done lines carry row counts; inputs keyed by canonical path


def providers_list(text: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in available]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown execution provider(s) {', '.join(unknown) or text!r}"
                                         f"; available here: {', '.join(available)}")
    return names


@dataclass(frozen=True)
class LayoutChoice:
    """``--layout``: the layout's name, and the layout file it was loaded from (None for a name)."""

    name: str
    file: Path | None = None


def layout_choice(text: str) -> LayoutChoice:
    """argparse type: a known joint layout name (or alias), or a layout file (.json; .yaml/.yml
    with PyYAML), whose layout is loaded and registered."""
    from codt_deploy.layouts import layout_argument, looks_like_layout_file

    try:
        name = layout_argument(text).name
    except (KeyError, ValueError, CodtError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return LayoutChoice(name, Path(text) if looks_like_layout_file(text) else None)


def pose_format(text: str) -> str:
    from codt_deploy.readers import available_formats

    formats = available_formats()
    if text not in formats:
        raise argparse.ArgumentTypeError(f"unknown pose format {text!r}; choose from "
                                         f"{', '.join(formats)}")
    return text


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def summary_file(text: str) -> Path:
    """argparse type: a summary file name ending in .csv or .json."""
    from codt_deploy.summary import summary_format

    try:
        summary_format(text)
    except CodtError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codt-cluster", description="Cluster skeleton action sequences with an exported "
        "CoDT model (one output row per sequence).",
        epilog="exit status: 0 every input clustered; 1 some input failed (each is listed) or "
               "nothing was clustered; 2 usage or setup error; 130 interrupted (rerun with "
               "--resume)")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="pose files, folders, glob patterns, .zip or .tar(.gz) archives")
    parser.add_argument("-o", "--output", help="output file (default: standard output)")
    parser.add_argument("--format", choices=("csv", "jsonl", "parquet"),
                        help="output format (default: from the output suffix, else csv)")
    parser.add_argument("--model", default="default", help="model name or path to a .onnx file")
    parser.add_argument("--list-models", action="store_true", help="list models and exit")
    parser.add_argument("--labels", type=existing_file,
                        help="labels CSV (a key column such as file or name, and a label "
                             "column; see codt_deploy/labels.py); prints ACC/NMI/ARI")
    parser.add_argument("--embeddings", action="store_true", help="also write the embedding")
    parser.add_argument("--assign", choices=("auto", "batch", "reference", "head"), default="auto",
                        help="how a sequence gets its cluster: 'batch', the run's clips clustered "
                             "together by their own DTW graph once they are at least 8 per "
                             "cluster (at most 5,000), the ids named by the reference bank's "
                             "vote, else that vote; 'reference', the vote of its 10 nearest "
                             "training clips alone (the model's reference bank); 'head', the "
                             "network's argmax; 'auto' (default): 'batch' when the model has a "
                             "reference bank, else 'head'")
    parser.add_argument("--eval-names", action="store_true",
                        help="also write eval_cluster_name: the class the model's evaluation labels "
                             "matched each cluster to at export (an oracle reading of the result, "
                             "not something the model knows)")
    parser.add_argument("--summary", type=summary_file, metavar="FILE",
                        help="also write a per-cluster summary (.csv or .json): size, share, mean "
                             "confidence, most central sequence and 5 more, nearest source class")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run, skipping files it already wrote")
    parser.add_argument("--workers", type=non_negative_int, default=1,
                        help="parsing workers (0 = parse in the main thread; default 1)")
    parser.add_argument("--executor", choices=("thread", "process"), default="thread",
                        help="worker kind (default thread)")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="sequences per inference call (default 32)")
    parser.add_argument("--threads", type=positive_int, help="inference threads (default: cores)")
    parser.add_argument("--providers", type=providers_list,
                        help="comma-separated ONNX Runtime providers (default: CUDA if present, "
                             "else CPU)")
    parser.add_argument("--pose-format", type=pose_format,
                        help="read every input as this format instead of detecting it")
    parser.add_argument("--axes", type=str.upper, choices=AXES,
                        help="axis order of plain .npy/.npz arrays (e.g. TVC for one person's "
                             "frames x joints x xyz); other formats ignore it")
    parser.add_argument("--layout", type=layout_choice, metavar="NAME|FILE",
                        help="joint layout of plain .npy/.npz arrays: a built-in name (e.g. msr20, "
                             "ntu25, coco17) or a layout file (.json, or .yaml with PyYAML; see "
                             "README 'Layout files'); other formats ignore it")
    parser.add_argument("--channels", choices=CHANNEL_MODES,
                        help="what the channels of plain .npy/.npz arrays are: xyz (3-D), xy "
                             "(2-D) or xy_score (2-D + confidence); default: what an .npz "
                             "records, else the model's channels when their number fits (3 for "
                             "an xy_score model: x, y, score), else xyz for 3 channels, xy for 2; "
                             "other formats ignore it")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow .pkl/.pickle/.joblib inputs (unpickling runs code: only for "
                             "files you trust)")
    parser.add_argument("--show", type=non_negative_int, default=0, metavar="N",
                        help="print the first N rows as a table when done")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


class Observer:
    """Sees every final output row: cluster counts, labelled pairs, the first rows for --show, and
    with ``summary`` each row's name, cluster, confidence and embedding for ``--summary``."""

    def __init__(self, labels: LabelTable | None, show: int, summary: bool = False) -> None:
        self.labels, self.show, self.summary = labels, show, summary
        self.counts: Counter[int] = Counter()
        self.true: list[str] = []
        self.pred: list[int] = []
        self.first: list[dict[str, Any]] = []
        self.rows = 0
        self.names: list[str] = []
        self.clusters: list[int] = []
        self.confidence: list[float] = []
        self.embeddings: list[np.ndarray] = []  # each (D,) float32

    def __call__(self, row: dict[str, Any]) -> None:
        self.rows += 1
        self.counts[row["cluster"]] += 1
        if self.summary:
            self.names.append(sequence_name(row))
            self.clusters.append(int(row["cluster"]))
            self.confidence.append(float(row["confidence"]))
            self.embeddings.append(np.asarray(row["embedding"], np.float32))
        if len(self.first) < self.show:
            self.first.append(row)
        if self.labels is not None:
            label = self.labels.label_of(row["source"], row["member"], row.get("name") or "")
            if label is not None:
                self.true.append(label)
                self.pred.append(row["cluster"])


def sequence_name(row: dict[str, Any]) -> str:
    """How the summary names an output row: ``source[::member][ (name)][ @segment]``; the name is
    left out when the file's own name starts with it (``a01_s01_e01_skeleton3D.txt``)."""
    source, member = str(row["source"]), row.get("member") or ""
    text = f"{source}::{member}" if member else source
    file_name = (member or source).replace("\\", "/").rsplit("/", 1)[-1]
    name = row.get("name") or ""
    if name and not file_name.startswith(name):
        text += f" ({name})"
    return text + (f" @{row['segment']}" if row.get("segment") else "")


def write_cluster_summary(path: Path, observer: Observer, model, eval_names: bool = False) -> None:
    """``--summary``: the per-cluster summary of every output row, atomically; one line on stderr."""
    from codt_deploy.summary import summarize_assignments, write_summary

    dim = model.manifest.embedding_dim
    embeddings = np.stack(observer.embeddings) if observer.embeddings else np.zeros((0, dim))
    summaries = summarize_assignments(observer.names, np.asarray(observer.clusters, np.int64),
                                      np.asarray(observer.confidence), embeddings, model.manifest,
                                      eval_names=eval_names)
    write_summary(path, summaries, model=model.manifest.name, sequences=len(observer.names))
    empty = sum(1 for s in summaries if s.size == 0)
    print(f"codt-cluster: summary of {len(summaries)} clusters ({empty} empty) over "
          f"{len(observer.names)} sequences written to {path}", file=sys.stderr)


def files_read(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The files other than the inputs that a run reads, as (what it is, path)."""
    from codt_deploy.models import locate_model

    onnx = locate_model(args.model)
    files = [("the model (--model)", onnx), ("the model's manifest", onnx.with_suffix(".json"))]
    if args.labels is not None:
        files.append(("the labels file (--labels)", args.labels))
    if args.layout is not None and args.layout.file is not None:
        files.append(("the layout file (--layout)", args.layout.file))
    return files


def check_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output or summary that must not be written: one that
    :func:`check_output` refuses, or a file the run reads (inputs, labels, layout, model), or the
    other one. (The journal, ``<output>.part``, can be neither: a summary ends in .csv or .json.)"""
    reads = files_read(args)
    if args.output:
        check_output(args.output, args.inputs, reads, flag="-o")
    if args.summary:
        if args.output and canonical_path(str(args.summary)) == canonical_path(args.output):
            raise CodtError(f"{args.summary}: --summary and -o name the same file")
        check_output(args.summary, args.inputs, reads, flag="--summary")


def fit_to_machine(args: argparse.Namespace, manifest) -> None:
    """Lower ``--workers`` and ``--threads`` to the cores here and ``--batch-size`` to what fits in
    the memory available (:func:`codt_deploy.infer.max_batch_size`), each with a notice."""
    from codt_deploy.infer import available_cores, max_batch_size

    cores = available_cores()
    for option, name in (("workers", "--workers"), ("threads", "--threads")):
        value = getattr(args, option)
        if value is not None and value > cores:
            print(f"codt-cluster: {name} {value} is more than the {cores} cores here; using "
                  f"{cores}", file=sys.stderr)
            setattr(args, option, cores)
    largest = max_batch_size(manifest)
    if largest is not None and args.batch_size > largest:
        print(f"codt-cluster: --batch-size {args.batch_size} does not fit in the memory available; "
              f"using {largest}", file=sys.stderr)
        args.batch_size = largest


def list_models() -> int:
    from codt_deploy.models import available_models, load_manifest, model_dirs

    models = available_models()
    if not models:
        print("no models found in " + ", ".join(str(d) for d in model_dirs()))
    for name, path in models.items():
        manifest = load_manifest(path.with_suffix(".json"))
        print(f"{name}\t{manifest.task}\t{manifest.layout}\t{manifest.preprocess.channels}\t"
              f"K={manifest.num_clusters}\t{path}")
    return 0


def _make_sink(args: argparse.Namespace, model, observer: Observer):
    from codt_deploy.pipeline import batch_finisher
    from codt_deploy.writers import JournalSink, StreamSink, cluster_name_columns, columns, format_for

    fmt = format_for(args.output, args.format)
    fieldnames = columns(tuple(cluster_name_columns(model.manifest, args.eval_names)))
    emb_dim = model.manifest.embedding_dim if args.embeddings else None
    finisher = batch_finisher(model, args.eval_names)
    if not args.output:
        return StreamSink(fmt, fieldnames, emb_dim, observer, finisher=finisher)
    header = {"journal": JOURNAL_VERSION, "model": model.manifest.name,
              "onnx_sha256": model.manifest.onnx_sha256,
              "format": fmt, "embeddings": bool(args.embeddings),
              "pose_format": args.pose_format, "axes": args.axes,
              "layout": args.layout.name if args.layout else None}
    if args.summary and not args.embeddings:  # rows keep their embeddings for the summary
        header["embeddings_for_summary"] = True
    if args.channels:  # only when given, so journals of earlier versions still resume
        header["channels"] = args.channels
    if args.eval_names:
        header["eval_names"] = True
    if model.assignment != "head":
        header["assignment"] = model.assignment
    return JournalSink(args.output, fmt, fieldnames, emb_dim, header, observer,
                       resume=args.resume, finisher=finisher)


def _progress(args: argparse.Namespace):
    from tqdm import tqdm

    disable = args.quiet or not sys.stderr.isatty()
    return tqdm(unit="file", desc="codt-cluster", disable=disable, file=sys.stderr)


def report(summary, observer: Observer, args: argparse.Namespace, model) -> None:
    """The end-of-run summary on stderr; metrics and the --show table on stdout."""
    from codt_deploy.metrics import balance_of_counts, collapse_warning, evaluate
    from codt_deploy.pipeline import describe_failure
    from codt_deploy.writers import cluster_name_columns, columns, format_table, terminal_safe

    err = sys.stderr
    print(f"codt-cluster: {summary.files} files, {summary.sequences} sequences clustered"
          + (f", {summary.resumed} files kept from the interrupted run" if summary.resumed else "")
          + (f", {summary.duplicates} listed twice (read once)" if summary.duplicates else "")
          + (f", {len(summary.skipped)} skipped (not pose files)" if summary.skipped else "")
          + (f", {len(summary.not_opened)} not opened" if summary.not_opened else "")
          + f", {len(summary.failures)} failed", file=err)
    for key, reason in summary.not_opened:
        print(terminal_safe(f"  NOT OPENED {key}: {reason}"), file=err)
    for arg in summary.empty:
        print(terminal_safe(f"  NO POSE FILE in {arg}"), file=err)
    if not summary.files and not summary.resumed:
        print("  nothing was clustered", file=err)
    if observer.counts and not args.quiet:
        counts = ", ".join(f"{c}: {n}" for c, n in sorted(observer.counts.items()))
        print(f"  sequences per cluster: {counts}", file=err)
    if observer.counts:
        k = model.num_clusters
        warning = collapse_warning(balance_of_counts(list(observer.counts.values()), k), k,
                                   "the clustering")
        if warning:
            print(f"  WARNING: {warning}", file=err)
    for key, reason in summary.failures:
        print(terminal_safe(f"  FAILED {describe_failure(key, reason)}"), file=err)
    if observer.first:
        out = sys.stdout if args.output else err
        shown = [c for c in columns(tuple(cluster_name_columns(model.manifest, args.eval_names)))
                 if any(row.get(c) not in (None, "") for row in observer.first)]
        print(format_table(observer.first, shown), file=out, end="")
    if args.labels is not None:
        if not observer.true:
            print(terminal_safe(f"labels: no output row matched a key in {args.labels}"),
                  file=err)
        else:
            scores = evaluate(observer.true, observer.pred)
            out = sys.stdout if args.output else err
            print(f"labels: {scores['n']} of {observer.rows} sequences labelled: "
                  f"ACC {100 * scores['acc']:.1f}  NMI {100 * scores['nmi']:.1f}  "
                  f"ARI {100 * scores['ari']:.1f}  "
                  f"many-to-one ACC {100 * scores['acc_many_to_one']:.1f}", file=out)


def run(args: argparse.Namespace) -> int:
    """Load the model, run the pipeline, finish the output and report. Returns the exit status."""
    from codt_deploy.infer import ClusterModel
    from codt_deploy.models import resolve_model
    from codt_deploy.pipeline import ParseOptions, PipelineOptions, run_pipeline

    if args.list_models:
        return list_models()
    check_paths(args)
    labels = read_labels(args.labels) if args.labels is not None else None
    resolved = resolve_model(args.model)
    fit_to_machine(args, resolved.manifest)
    model = ClusterModel(resolved, providers=args.providers, threads=args.threads,
                         batch_size=args.batch_size, assignment=args.assign)
    observer = Observer(labels, args.show, summary=bool(args.summary))
    sink = _make_sink(args, model, observer)
    array_options: dict[str, Any] = {
        key: value for key, value in (("axes", args.axes),
                                               ("skeleton", args.layout and args.layout.name))
        if value is not None}
    if args.channels:
        array_options["channels"] = CHANNEL_NAMES[args.channels]
    parse_options = ParseOptions(preprocess=model.config,
                                 pose_format=args.pose_format, trust_pickle=args.trust_pickle,
                                 array_options=array_options)
    options = PipelineOptions(workers=args.workers, executor=args.executor,
                              batch_size=args.batch_size,
                              embeddings=bool(args.embeddings or args.summary),
                              eval_names=args.eval_names)
    bar = _progress(args)
    try:
        summary = run_pipeline(args.inputs, model, sink, parse_options, options, bar.update)
        bar.close()
        sink.close()  # the final conversion: an interrupt here still leaves the journal
    except KeyboardInterrupt:
        bar.close()
        if hasattr(sink, "abort"):
            sink.abort()
            print(f"codt-cluster: interrupted; rerun with --resume to continue {args.output}",
                  file=sys.stderr)
        return 130
    report(summary, observer, args, model)
    if args.summary:
        write_cluster_summary(args.summary, observer, model, args.eval_names)
    return 0 if summary.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if not args.inputs and not args.list_models:
        parser.error("give at least one INPUT (file, folder, glob or archive)")
    if args.resume and not args.output:
        parser.error("--resume needs -o/--output (a run to standard output cannot resume)")
    try:
        return run(args)
    except CodtError as exc:
        print(f"codt-cluster: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
