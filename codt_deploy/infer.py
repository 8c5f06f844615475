"""Batched inference with one ONNX Runtime session: poses in, cluster ids and embeddings out.

The network is the exported target-specific student F_1 -> C_1^t (METHOD.md §10, "Inference"): it
takes preprocessed poses ``(N, C, T, V, M)`` float32 and returns cluster probabilities ``(N, K)``
and the 256-d embedding. Without a reference bank the cluster is the head's argmax and its
probability the confidence. A model exported with a reference bank (``codt_deploy.reference``)
assigns each clip the cluster of the vote of its nearest training clips by default
(``assignment="reference"``); its probabilities are then the vote shares and the confidence the
winning share; the embedding is the network's either way.

Session settings: ORT_ENABLE_ALL, sequential execution, intra-op threads = cores, inter-op 1.
Batches are cut into micro-batches (``batch_size``, default 32): in the project's measurements one
b=512 call grew ONNX Runtime's memory to several GB, while micro-batches of 16-32 kept it flat at
no loss of throughput. Measured throughput and its method: benchmarks/README.md, "Inference".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from codt_deploy.batch import BatchStep
from codt_deploy.errors import CodtError, LayoutError, ModelError, PoseFormatError
from codt_deploy.models import Manifest, ResolvedModel, resolve_model
from codt_deploy.preprocess import PreprocessConfig, preprocess
from codt_deploy.reference import ReferenceBank, load_bank
from codt_deploy.sequence import PoseSequence

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ASSIGNMENTS = ("auto", "batch", "reference", "head")  # auto: batch when the model has a bank, else head


@dataclass(frozen=True)
class Prediction:
    """Per-sample outputs, row i for input sample i."""

    clusters: np.ndarray  # (N,) int64, argmax of probabilities
    confidence: np.ndarray  # (N,) float32, probability of the chosen cluster
    probabilities: np.ndarray  # (N, K) float32
    embedding: np.ndarray  # (N, D) float32, D = 256

    def __len__(self) -> int:
        return int(self.clusters.shape[0])


def available_cores() -> int:
    """Cores this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: ONNX Runtime's working memory per sample, as a multiple of the sample's input bytes: the shipped
#: model took ~1.9 MB more per (3, 50, 20, 1) sample (12 KB) at b = 256 than at b = 32; rounded up.
ORT_BYTES_PER_INPUT_BYTE = 256
_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def available_memory() -> int | None:
    """Bytes of memory still available to this process (Linux: ``MemAvailable``, or what the
    cgroup v2 limit leaves if that is less); None where it cannot be told."""
    found = []
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((_CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(min(found), 0) if found else None


def max_batch_size(manifest: Manifest) -> int | None:
    """The largest batch whose inference fits in half the available memory (see
    :data:`ORT_BYTES_PER_INPUT_BYTE`); None where the memory cannot be told."""
    memory = available_memory()
    if memory is None:
        return None
    per_sample = int(np.prod(manifest.input_shape)) * 4 * ORT_BYTES_PER_INPUT_BYTE  # float32
    return max(1, memory // 2 // per_sample)


def default_providers() -> list[str]:
    """CUDA first when onnxruntime-gpu offers it, then CPU (ORT falls back to CPU without a GPU)."""
    available = ort.get_available_providers()
    return [CUDA, CPU] if CUDA in available else [CPU]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """ORT_ENABLE_ALL, sequential execution, intra-op = ``threads`` (default: cores), inter-op 1."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads) if threads else available_cores()
    options.inter_op_num_threads = 1
    return options


def prepare_sequence(seq: PoseSequence, config: PreprocessConfig) -> np.ndarray:
    """One pose sequence -> the model's ``(C, T, V, M)`` input (METHOD.md §2).

    The one implementation is :func:`codt_deploy.preprocess.preprocess`: joint mapping onto the
    model's layout by name (a file whose layout lacks joints fails naming them), channel check,
    centring, resampling and alignment. This only makes sure every error names the file.
    """
    try:
        sample = preprocess(seq, config)  # (C, T, V, M)
    except LayoutError as exc:
        raise LayoutError(f"{seq.source}: {exc}") from exc
    return np.asarray(sample, dtype=np.float32)


class ClusterModel:
    """One exported CoDT model behind one ``InferenceSession``.

    ``model`` is a name from :func:`codt_deploy.models.available_models`, a path to a ``.onnx``
    file, or a :class:`ResolvedModel`; the file's SHA-256 is checked against its manifest.
    ``providers`` overrides :func:`default_providers`; ``threads`` the intra-op thread count;
    ``batch_size`` is the micro-batch size used inside :meth:`predict`. ``assignment``: how a clip
    gets its cluster, ``"reference"`` (the vote of its nearest training clips; needs a model with
    a reference bank), ``"batch"`` (the vote clip by clip in :meth:`predict`; :meth:`cluster` of a
    whole batch of at least 8 clips per cluster clusters it by its own DTW graph, named by the
    vote: :mod:`codt_deploy.batch`), ``"head"`` (the network's argmax), or ``"auto"`` (``batch``
    when the model has a reference bank, else ``head``).
    """

    def __init__(self, model: str | os.PathLike | ResolvedModel = "default",
                 providers: Sequence[str] | None = None, threads: int | None = None,
                 batch_size: int = 32, assignment: str = "auto") -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be one of {', '.join(ASSIGNMENTS)}, got {assignment!r}")
        self.resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
        self.manifest: Manifest = self.resolved.manifest
        self.batch_size = int(batch_size)
        self.config: PreprocessConfig = self.manifest.preprocess
        chosen = list(providers) if providers else default_providers()
        unknown = [p for p in chosen if p not in ort.get_available_providers()]
        if unknown:
            raise ModelError(f"execution provider(s) {', '.join(unknown)} not available; "
                             f"available: {', '.join(ort.get_available_providers())}")
        try:
            self.session = ort.InferenceSession(str(self.resolved.onnx_path),
                                                sess_options=session_options(threads),
                                                providers=chosen)
        except Exception as exc:  # noqa: BLE001 - ORT's own types (InvalidProtobuf, Fail, ...)
            # derive from Exception alone; whatever the file holds, it is this model's error
            raise ModelError(f"{self.resolved.onnx_path}: cannot load the ONNX model: {exc}"
                             ) from exc
        self.input_name = self.session.get_inputs()[0].name
        self._check_outputs()
        self.bank = self._load_bank(assignment)
        self.batch_step = (None if self.bank is None or assignment == "reference" else
                           BatchStep.of_bank(self.bank, self.manifest.embedding_dim))
        log.info("loaded model %s (%s) on %s, %d intra-op threads", self.manifest.name,
                 self.resolved.onnx_path, ", ".join(self.session.get_providers()),
                 session_options(threads).intra_op_num_threads)

    def _load_bank(self, assignment: str) -> ReferenceBank | None:
        """The reference bank when ``assignment`` uses it; ModelError when it is asked for and the
        model has none."""
        path, spec = self.resolved.reference_path, self.manifest.reference
        if assignment == "head" or (assignment == "auto" and path is None):
            return None
        if path is None or spec is None:
            raise ModelError(f"model {self.manifest.name!r} has no reference bank; use the head "
                             f"(assignment 'head') or re-export it")
        _, t, v, m = self.manifest.input_shape
        c = self.config.coordinate_channels  # the bank's frames hold the coordinates only
        return load_bank(path, num_clusters=self.num_clusters, frame_shape=(t, 2 * c * v * m),
                         persons=m, coordinates=c)

    @property
    def assignment(self) -> str:
        """``"batch"`` (the vote, and a whole batch by its own graph), ``"reference"`` (the vote
        alone) or ``"head"`` (the network's argmax)."""
        return "head" if self.bank is None else "batch" if self.batch_step else "reference"

    def _check_outputs(self) -> None:
        names = [o.name for o in self.session.get_outputs()]
        missing = [n for n in ("probabilities", "embedding") if n not in names]
        if missing or len(self.session.get_inputs()) != 1:
            raise ModelError(f"{self.resolved.onnx_path}: expected one input and outputs "
                             f"'probabilities', 'embedding'; the file has inputs "
                             f"{[i.name for i in self.session.get_inputs()]}, outputs {names}")
        self._output_names = ["probabilities", "embedding"]

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def num_clusters(self) -> int:
        return self.manifest.num_clusters

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        array = np.asarray(batch, dtype=np.float32)
        expected = self.manifest.input_shape  # (C, T, V, M)
        if array.ndim != 5 or tuple(array.shape[1:]) != expected:
            raise PoseFormatError("input batch", f"expected shape (N, {', '.join(map(str, expected))}"
                                                 f") for model {self.manifest.name!r}, got "
                                                 f"{tuple(array.shape)}")
        if not np.isfinite(array).all():
            raise PoseFormatError("input batch", "contains NaN or infinite values")
        return np.ascontiguousarray(array)

    def predict(self, batch: np.ndarray) -> Prediction:
        """Cluster a preprocessed batch ``(N, C, T, V, M)``, in micro-batches of ``batch_size``."""
        poses = self._check_batch(batch)  # (N, C, T, V, M)
        probabilities, embeddings = [], []
        for start in range(0, poses.shape[0], self.batch_size):
            chunk = poses[start:start + self.batch_size]  # (n, C, T, V, M)
            probs, emb = self.session.run(self._output_names, {self.input_name: chunk})
            probabilities.append(probs)
            embeddings.append(emb)
        if not probabilities:
            dim = self.manifest.embedding_dim
            return Prediction(np.zeros(0, np.int64), np.zeros(0, np.float32),
                              np.zeros((0, self.num_clusters), np.float32),
                              np.zeros((0, dim), np.float32))
        probs = np.concatenate(probabilities).astype(np.float32, copy=False)  # (N, K)
        emb = np.concatenate(embeddings).astype(np.float32, copy=False)  # (N, D)
        if self.bank is not None:  # the vote of the nearest training clips: shares (N, K)
            clusters, probs = self.bank.assign(poses)
            return Prediction(clusters=clusters, confidence=probs[np.arange(len(clusters)), clusters],
                              probabilities=probs, embedding=emb)
        return Prediction(clusters=probs.argmax(axis=1).astype(np.int64),
                          confidence=probs.max(axis=1), probabilities=probs, embedding=emb)

    def cluster(self, batch: np.ndarray) -> Prediction:
        """Cluster a preprocessed batch ``(N, C, T, V, M)`` as a whole: :meth:`predict`, then with
        the ``batch`` assignment (:class:`codt_deploy.batch.BatchStep`) the clusters of its own
        graphs (DTW, and the network's embedding beside it) named by the vote when it holds enough
        clips (:func:`codt_deploy.batch.batch_applies`), else of its and the reference bank's clips
        together, named by the bank; as confidence the share of each clip's DTW-graph neighbours in
        its cluster."""
        prediction = self.predict(batch)
        if self.batch_step is None:
            return prediction
        together = self.batch_step.cluster_poses(batch, prediction.embedding, prediction.clusters)
        if together is None:
            if len(batch):
                log.warning("each clip keeps its vote: %s", self.batch_step.declines(len(batch)))
            return prediction
        clusters, confidence = together
        return Prediction(clusters=clusters, confidence=confidence,
                          probabilities=prediction.probabilities, embedding=prediction.embedding)

    def prepare(self, seq: PoseSequence) -> np.ndarray:
        """One sequence -> this model's ``(C, T, V, M)`` input (see :func:`prepare_sequence`)."""
        return prepare_sequence(seq, self.config)

    def predict_sequences(self, seqs: Sequence[PoseSequence]) -> Prediction:
        """Preprocess raw sequences of any mappable layout and cluster them together
        (:meth:`cluster`)."""
        samples = [self.prepare(seq) for seq in seqs]  # each (C, T, V, M)
        if not samples:
            return self.predict(np.zeros((0, *self.manifest.input_shape), np.float32))
        return self.cluster(np.stack(samples))  # (N, C, T, V, M)


def _rows(prediction: Prediction, start: int, stop: int) -> Prediction:
    return Prediction(prediction.clusters[start:stop], prediction.confidence[start:stop],
                      prediction.probabilities[start:stop], prediction.embedding[start:stop])


def _finite(prediction: Prediction) -> bool:
    return bool(np.isfinite(prediction.probabilities).all()
                and np.isfinite(prediction.embedding).all())


def predict_blocks(model: ClusterModel, blocks: Sequence[np.ndarray]) -> list[Prediction | str]:
    """Cluster several inputs' samples (each block ``(S, C, T, V, M)``) in one model call.

    If the model refuses the batch or gives non-finite outputs, each block is predicted alone, so
    one input's failure is that input's reason (a ``str`` in its place) and the others still get
    their :class:`Prediction`.
    """
    bounds = np.cumsum([0] + [len(block) for block in blocks])  # block i: rows bounds[i]:bounds[i+1]
    try:
        whole = model.predict(np.concatenate(blocks))  # (N, C, T, V, M)
        if _finite(whole):
            return [_rows(whole, bounds[i], bounds[i + 1]) for i in range(len(blocks))]
    except (CodtError, ValueError, RuntimeError) as exc:  # ORT's errors are RuntimeErrors
        log.info("batch prediction failed (%s); predicting input by input", exc)
    return [_predict_alone(model, block) for block in blocks]


def _predict_alone(model: ClusterModel, block: np.ndarray) -> Prediction | str:
    try:
        prediction = model.predict(block)
    except (CodtError, ValueError, RuntimeError) as exc:
        return f"the model refused it: {exc}"
    return prediction if _finite(prediction) else "the model gave non-finite outputs for it"
