"""The Gradio Blocks: upload pose files, see each sequence's skeleton, cluster and confidence.

All decisions live in :mod:`app.logic`, :mod:`app.uploads` and :mod:`app.plots`; the handlers
here only call them and turn their errors into messages. API names (for ``gradio_client``):
``/analyse`` (files, labels CSV, model), ``/show_sequence`` (a picker choice) and ``/show_cluster``
(a cluster gallery choice).

The cluster gallery animates one cluster's most central sequence at a time, picked from a list or
from the table of every cluster: a 3-D Plotly scene is a WebGL context and browsers allow only
about 16 per page, so one scene per cluster would break past that many clusters.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from codt_deploy.errors import CodtError, ModelError

from . import logic, plots
from .model_store import ModelStore
from .uploads import (
    MiB,
    Reader,
    UploadLimitError,
    UploadLimits,
    check_labels_size,
    default_reader,
    parse_uploads,
)

log = logging.getLogger(__name__)

TITLE = "CoDT skeleton-action clustering"
INTRO = ("Upload skeleton sequences (NTU `.skeleton`, PKU-MMD, Kinetics/OpenPose JSON, MSR Action3D, "
         "UTKinect, NW-UCLA, Penn Action `.mat`, `.npy`/`.npz`, or a zip/tar of them). Each sequence "
         "is assigned to one of the model's clusters. Pickle files are refused.")


@dataclass(frozen=True)
class ExampleSet:
    """Real sample files one click away, with their labels CSV if any."""

    title: str
    files: tuple[Path, ...]
    labels: Path | None = None


def find_examples(repo_root: Path) -> list[ExampleSet]:
    """Real MSR Action3D sequences one click away.

    The attributed samples under ``examples/msr_action3d`` (with their ``labels.csv``) when the
    repository has them; otherwise subject 2's first take of each action from the research data
    folder ``../shared/data/msr_action3d`` next to the repository, when that exists (labels then
    come from the file names).
    """
    folder = repo_root / "examples" / "msr_action3d"
    files = tuple(sorted(folder.glob("*_skeleton3D.txt")))
    if files:
        labels = folder / "labels.csv"
        return [ExampleSet(f"MSR Action3D: {len(files)} real sequences", files,
                           labels if labels.is_file() else None)]
    shared = repo_root.parent / "shared" / "data" / "msr_action3d"
    files = tuple(sorted(shared.glob("a??_s02_e01_skeleton3D.txt")))
    if files:
        return [ExampleSet(f"MSR Action3D: {len(files)} real sequences", files)]
    return []


def model_markdown(store: ModelStore, choice: str | None) -> str:
    """What the chosen model is: task, skeleton layout, K, and its recorded metrics."""
    try:
        manifest = store.get(choice).manifest
    except ModelError as exc:
        return f"**Model unavailable:** {exc}"
    text = (f"`{manifest.name}`: task `{manifest.task}`, layout `{manifest.layout}` "
            f"({len(manifest.joints)} joints), {manifest.num_clusters} clusters")
    scores = manifest.metrics.get("eval") or {}
    if all(k in scores for k in ("acc", "nmi", "ari")):
        split = ((manifest.training or {}).get("target_split") or {}).get("mode", "all")
        where = ("on its evaluation set" if split == "all" else
                 f"on {scores.get('n', 'its')} held-out clips it never saw")
        text += (f" · {where}: ACC {scores['acc']:.1%}, NMI {scores['nmi']:.3f}, "
                 f"ARI {scores['ari']:.3f}")
    return text


def _sequence_title(result: logic.SequenceResult, cluster_names) -> str:
    cluster = plots.cluster_label(result.cluster, cluster_names)
    return f"{result.name} · cluster {cluster} · {result.confidence:.0%}"


def _sequence_details(index: int, batch: logic.BatchResult) -> str:
    result = batch.results[index]
    seq = result.sequence
    cluster = plots.cluster_label(result.cluster, batch.cluster_names)
    lines = [f"**Cluster {cluster}** with confidence **{result.confidence:.1%}**",
             f"`{result.file}` · {seq.num_frames} frames · {seq.num_persons} person slot(s) · "
             f"layout `{seq.layout}` · {'3-D' if seq.is_3d else '2-D'}"]
    if seq.label_name or seq.label is not None:
        lines.append(f"label in the file: {seq.label_name or seq.label}")
    return "  \n".join(lines)


def _skeleton(index: int, batch: logic.BatchResult):
    result = batch.results[index]
    return plots.skeleton_figure(result.sequence, title=_sequence_title(result, batch.cluster_names),
                                 colour=plots.cluster_colour(result.cluster))


def _cluster_details(summary, batch: logic.BatchResult) -> str:
    """The gallery card: size, share, mean confidence, nearest source class, the members."""
    head = f"**Cluster {plots.cluster_label(summary.cluster, batch.cluster_names)}**"
    if not summary.size:
        return head + ": no sequence of this batch"
    lines = [f"{head}: **{summary.size}** sequence(s) ({summary.share:.0%} of the batch), "
             f"mean confidence **{summary.mean_confidence:.1%}**"]
    if summary.nearest_source_class:
        lines.append(f"nearest source class: **{summary.nearest_source_class}** (what the "
                     f"model's source classifier makes of this cluster; no target labels used)")
    central = f"most central: `{summary.medoid}`"
    if summary.medoid_similarity is not None:
        central += f" (mean cosine similarity {summary.medoid_similarity:.3f} to the others)"
    lines.append(central)
    if summary.members:
        lines.append("next most central: " + ", ".join(f"`{m}`" for m in summary.members))
    return "  \n".join(lines)


def _cluster_skeleton(summary, batch: logic.BatchResult):
    result = logic.medoid_result(batch, summary)
    if result is None:
        return None
    label = plots.cluster_label(summary.cluster, batch.cluster_names)
    return plots.skeleton_figure(result.sequence, title=f"cluster {label} · most central: "
                                                        f"{result.name}",
                                 colour=plots.cluster_colour(summary.cluster))


def _summary(batch: logic.BatchResult, evaluation: logic.Evaluation | None, note: str = "") -> str:
    parts = [f"Model **{batch.model_name}** ({batch.num_clusters} clusters): "
             f"**{len(batch.results)}** sequence(s) clustered into **{len(batch.counts())}** "
             f"cluster(s)"]
    if batch.problems:
        parts.append(f"**{len(batch.problems)}** file(s) could not be used (see *Problems*)")
    if evaluation is not None:
        m = evaluation.metrics
        parts.append(f"against {evaluation.source}: ACC {m['acc']:.1%}, NMI {m['nmi']:.3f}, "
                     f"ARI {m['ari']:.3f}, many-to-one ACC {m['acc_many_to_one']:.1%} "
                     f"({evaluation.matched}/{evaluation.total} labelled)")
    if note:
        parts.append(note)
    return " · ".join(parts)


def _metrics_markdown(evaluation: logic.Evaluation | None, note: str) -> str:
    if evaluation is None:
        return note or ("No labels: upload a labels CSV (`file,label[,label_name]`) to score "
                        "the clusters.")
    m = evaluation.metrics
    return (f"Scored against {evaluation.source} ({evaluation.matched} of {evaluation.total} "
            f"sequences labelled).\n\n| ACC | NMI | ARI | many-to-one ACC |\n|---|---|---|---|\n"
            f"| {m['acc']:.1%} | {m['nmi']:.3f} | {m['ari']:.3f} | {m['acc_many_to_one']:.1%} |"
            "\n\nMany-to-one ACC maps each cluster to its majority label; it rises with the "
            "number of clusters." + (f"\n\n{note}" if note else ""))


def _labels_for(batch: logic.BatchResult, labels_path: str | None, limits: UploadLimits
                ) -> tuple[logic.Evaluation | None, list | None, str]:
    """Evaluation, per-row labels for the CSV, and a note (e.g. why the labels CSV was unusable)."""
    note = ""
    labels = None
    if labels_path:
        try:
            check_labels_size(labels_path, limits)
            labels = logic.labels_from_csv(batch.results, labels_path)
        except CodtError as exc:
            note = f"The labels CSV was not used: {exc}"
    if labels is None:
        labels = logic.labels_from_sequences(batch.results)
    if labels is None:
        return None, None, note
    evaluation = logic.evaluate(batch.results, labels)
    if evaluation is None:
        note = note or f"No sequence matched a row of {labels.source}."
    return evaluation, labels.per_result, note


class AppHandlers:
    """The event handlers, bound to a model store and upload limits."""

    def __init__(self, store: ModelStore, limits: UploadLimits, reader: Reader) -> None:
        self.store = store
        self.limits = limits
        self.reader = reader
        self._workdir = tempfile.TemporaryDirectory(prefix="codt-app-")  # removed at exit

    def _cluster(self, paths, model_choice) -> logic.BatchResult:
        try:
            parsed = parse_uploads(paths, limits=self.limits, reader=self.reader)
            model = self.store.get(model_choice)
        except (UploadLimitError, ModelError) as exc:
            raise gr.Error(str(exc)) from exc
        return logic.analyse(parsed, model, model_name=self.store.label(model_choice))

    def analyse(self, files, labels_file, model_choice):
        """Upload -> every output of the page (see :func:`build_app` for the order)."""
        paths = [f if isinstance(f, str) else f.name for f in (files or [])]
        if not paths:
            raise gr.Error("Upload one or more pose files (or a zip of them) first.")
        return self._outputs(self._cluster(paths, model_choice), labels_file)

    def _outputs(self, batch: logic.BatchResult, labels_path: str | None):
        evaluation, row_labels, note = _labels_for(batch, labels_path, self.limits)
        problems = logic.problem_rows(batch)
        if not batch.results:
            return (batch, _summary(batch, None, note), [], None,
                    gr.update(choices=[], value=None), None, "", None, None,
                    _metrics_markdown(None, note), None, problems,
                    gr.update(choices=[], value=None), None, "", [])
        folder = tempfile.mkdtemp(dir=self._workdir.name)  # one per call: the file is "clusters.csv"
        csv_path = logic.write_results_csv(batch, folder, row_labels)
        names = batch.cluster_names
        hover = [f"{r.name}<br>confidence {r.confidence:.0%}" for r in batch.results]
        pca = plots.pca_figure(logic.pca_2d(batch.embeddings), [r.cluster for r in batch.results],
                               hover, cluster_names=names)
        confusion = None if evaluation is None else plots.confusion_figure(
            evaluation.confusion, evaluation.cluster_ids, evaluation.label_names,
            cluster_names=names)
        choices = batch.choices()
        gallery = logic.gallery_choices(batch)
        first = logic.cluster_summary(batch, gallery[0])
        return (batch, _summary(batch, evaluation, note), logic.result_rows(batch), str(csv_path),
                gr.update(choices=choices, value=choices[0]), _skeleton(0, batch),
                _sequence_details(0, batch), plots.counts_figure(batch.counts(), cluster_names=names),
                pca, _metrics_markdown(evaluation, note), confusion, problems,
                gr.update(choices=gallery, value=gallery[0]), _cluster_skeleton(first, batch),
                _cluster_details(first, batch), logic.gallery_rows(batch))

    def show_sequence(self, choice: str | None, batch: logic.BatchResult | None):
        """The picked sequence's animated skeleton and details."""
        if batch is None or not batch.results or not choice:
            return None, ""
        index = int(str(choice).split(":", 1)[0])
        if not 0 <= index < len(batch.results):
            raise gr.Error(f"no sequence number {index} in this batch")
        return _skeleton(index, batch), _sequence_details(index, batch)

    def show_cluster(self, choice: str | None, batch: logic.BatchResult | None):
        """The gallery: the chosen cluster's most central sequence, animated, and its card."""
        if batch is None or not batch.clusters or not choice:
            return None, ""
        try:
            summary = logic.cluster_summary(batch, choice)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return _cluster_skeleton(summary, batch), _cluster_details(summary, batch)

    def select_cluster_row(self, batch: logic.BatchResult | None, evt: gr.SelectData):
        """A click in the gallery table picks that row's cluster (if it has sequences)."""
        if batch is None or not batch.clusters:
            return gr.update()
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        cluster = batch.clusters[int(row)].cluster
        matches = [c for c in logic.gallery_choices(batch) if c.startswith(f"{cluster}:")]
        return gr.update(value=matches[0]) if matches else gr.update()

    def select_row(self, batch: logic.BatchResult | None, evt: gr.SelectData):
        """A click in the results table picks that row's sequence."""
        if batch is None or not batch.results:
            return gr.update()
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return gr.update(value=batch.choices()[int(row)])

    def run_example(self, example: ExampleSet, model_choice):
        """The example files (and their labels CSV), as if uploaded."""
        batch = self._cluster(example.files, model_choice)
        return self._outputs(batch, str(example.labels) if example.labels else None)


def build_app(store: ModelStore, *, limits: UploadLimits | None = None,
              examples: list[ExampleSet] | None = None,
              reader: Reader = default_reader) -> gr.Blocks:
    """The app's Blocks. Outputs, in order: state, summary, table, CSV, picker, skeleton, details,
    counts, PCA map, metrics, confusion, problems, then the cluster gallery's picker, skeleton,
    card and table. ``reader`` reads one uploaded file's bytes."""
    limits = limits or UploadLimits()
    handlers = AppHandlers(store, limits, reader)
    with gr.Blocks(title=TITLE, delete_cache=(3600, 3600)) as demo:  # drop uploads after 1 h
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                model_choice = gr.Dropdown(store.choices, value=store.default, label="Model",
                                           interactive=len(store.choices) > 1)
                model_info = gr.Markdown(model_markdown(store, store.default))
                files = gr.File(label=f"Pose files or archives ({limits.describe()})",
                                file_count="multiple", type="filepath", height=170)
                labels_file = gr.File(label=f"Labels CSV (optional): file,label[,label_name]; up "
                                            f"to {limits.max_labels_bytes // MiB} MB",
                                      file_count="single", type="filepath", file_types=[".csv"],
                                      height=140)
                run = gr.Button("Cluster", variant="primary")
                example_buttons = [(gr.Button(f"Try the examples: {ex.title}", size="sm"), ex)
                                   for ex in (examples or [])]
                summary = gr.Markdown()
            with gr.Column(scale=3):
                picker = gr.Dropdown([], label="Sequence", interactive=True)
                skeleton = gr.Plot(label="Skeleton")
                details = gr.Markdown()
        with gr.Tabs():
            with gr.Tab("Sequences"):
                table = gr.Dataframe(headers=logic.RESULT_COLUMNS, interactive=False,
                                     label="Click a row to show it")
                csv_file = gr.File(label="Download the table (CSV)", interactive=False)
            with gr.Tab("Cluster gallery"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=280):
                        gallery_picker = gr.Dropdown([], label="Cluster", interactive=True)
                        gallery_details = gr.Markdown()
                    with gr.Column(scale=3):
                        gallery_skeleton = gr.Plot(label="Most central sequence")
                gallery_table = gr.Dataframe(headers=logic.GALLERY_COLUMNS, interactive=False,
                                             label="Every cluster (click a row to show it)")
            with gr.Tab("Clusters"):
                with gr.Row():
                    counts = gr.Plot(label="Sequences per cluster")
                    pca = gr.Plot(label="Embedding map")
            with gr.Tab("Evaluation"):
                metrics = gr.Markdown()
                confusion = gr.Plot(label="Clusters × labels")
            with gr.Tab("Problems"):
                problems = gr.Dataframe(headers=["file", "problem"], interactive=False,
                                        label="Files that could not be used")
        outputs = [state, summary, table, csv_file, picker, skeleton, details, counts, pca,
                   metrics, confusion, problems, gallery_picker, gallery_skeleton,
                   gallery_details, gallery_table]
        # api_name=False keeps an event off the API in every supported Gradio; Gradio 6 still takes
        # it but types api_name as str | None only, hence the arg-type ignores.
        model_choice.change(lambda choice: model_markdown(store, choice), [model_choice],
                            [model_info], api_name=False)  # type: ignore[arg-type]
        run.click(handlers.analyse, [files, labels_file, model_choice], outputs,
                  api_name="analyse")
        for button, example in example_buttons:
            button.click(lambda choice, ex=example: handlers.run_example(ex, choice),
                         [model_choice], outputs, api_name=False)  # type: ignore[arg-type]
        picker.change(handlers.show_sequence, [picker, state], [skeleton, details],
                      api_name="show_sequence")
        table.select(handlers.select_row, [state], [picker], api_name=False)  # type: ignore[arg-type]
        gallery_picker.change(handlers.show_cluster, [gallery_picker, state],
                              [gallery_skeleton, gallery_details], api_name="show_cluster")
        gallery_table.select(handlers.select_cluster_row, [state], [gallery_picker],
                             api_name=False)  # type: ignore[arg-type]
    return demo
