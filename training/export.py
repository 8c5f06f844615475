"""Export a trained CoDT run to ONNX with a manifest: export, check, prove parity, then publish.

    python -m training.export RUN_DIR [--out exported] [--name NAME] [--shared] [--int8]
    python -m training.export MODEL --int8 [--task-dir data/prepared/TASK] [--allow-below]

Steps (docs/ARCHITECTURE.md, "Exported model" and conventions 9-10):

1. Load ``RUN_DIR/checkpoints/final.pt`` strictly (``weights_only=True``, ``strict=True``) and build
   the deployable network F_1 -> C_1^t, the target-specific student encoder and its cluster head
   (METHOD.md §10 "Inference"), in eval mode. ``--shared`` also exports CoDT-B0 (F_0 -> C_0^t) as
   ``<name>-shared``.
2. Export with the dynamo exporter: input ``poses`` ``(N, C, T, V, M)`` with a dynamic batch axis N;
   T is fixed (50, METHOD.md §2), as are C, V, M. Outputs ``probabilities`` ``(N, K)`` (softmax of
   the cluster head) and ``embedding`` ``(N, 256)``.
3. Run the ONNX checker, then compare ONNX Runtime with PyTorch on real preprocessed samples (the
   run's target eval split): ``|Δp| <= PROB_ATOL`` on probabilities, ``|Δe| <= EMB_ATOL +
   EMB_RTOL·|e|`` on embeddings, and 100 % argmax agreement, at two batch sizes. Otherwise fail.
4. Write the manifest into the ONNX ``metadata_props`` and beside the file as ``<name>.json`` (with
   the ONNX file's SHA-256), both atomically.
5. ``--int8``: the int8 twin ``<name>-int8`` (:func:`export_int8`): static QDQ quantisation with
   ONNX Runtime, calibrated on the task's real preprocessed target training sequences, tried
   recipe by recipe (INT8_RECIPES) until one agrees with the fp32 model on at least
   INT8_MIN_AGREEMENT of the eval argmaxes; else refused (nothing written) unless
   ``--allow-below``. Its manifest has ``precision: int8`` and a ``quantization`` record.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import io
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from codt_deploy.errors import CodtError
from codt_deploy.infer import session_options
from codt_deploy.metrics import cluster_balance, collapse_warning, evaluate, hungarian
from codt_deploy.models import (
    METADATA_KEY,
    Manifest,
    ReferenceSpec,
    ResolvedModel,
    TensorSpec,
    sha256_file,
)
from codt_deploy.preprocess import PreprocessConfig
from codt_deploy.writers import atomic_write_text

if TYPE_CHECKING:
    from training.model import CoDTModel

log = logging.getLogger(__name__)

OPSET = 18
PROB_ATOL = 1e-4  # on softmax probabilities
EMB_ATOL, EMB_RTOL = 1e-4, 1e-3  # on the 256-d embedding
PARITY_SAMPLES = 256  # real eval samples compared (all of them when fewer)


class ExportError(CodtError, RuntimeError):
    """The ONNX file fails the checker or differs from PyTorch beyond the stated tolerances."""


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime vs PyTorch on the same samples."""

    samples: int
    max_abs_probabilities: float
    max_abs_embedding: float
    argmax_agreement: float  # fraction in [0, 1]

    def as_dict(self) -> dict[str, float]:
        return {"samples": self.samples, "max_abs_probabilities": self.max_abs_probabilities,
                "max_abs_embedding": self.max_abs_embedding,
                "argmax_agreement": self.argmax_agreement, "prob_atol": PROB_ATOL,
                "emb_atol": EMB_ATOL, "emb_rtol": EMB_RTOL}


@dataclass(frozen=True)
class Exported:
    onnx_path: Path
    manifest_path: Path
    manifest: Manifest
    parity: Parity | Int8Parity  # against PyTorch (fp32 export) or against the fp32 model (int8)


@dataclass(frozen=True)
class EvalSet:
    """Real preprocessed samples ``(N, C, T, V, M)`` and, if known, their labels and class names."""

    poses: np.ndarray
    labels: np.ndarray | None = None
    class_names: Sequence[str] | None = None


# ------------------------------------------------------------------------------ running

@torch.no_grad()
def torch_outputs(net: nn.Module, poses: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch (N, K) probabilities and (N, D) embeddings, in eval mode, in chunks."""
    net.eval()
    probs, embs = [], []
    for start in range(0, len(poses), batch):
        chunk = torch.from_numpy(np.array(poses[start:start + batch], np.float32))  # (n,C,T,V,M)
        p, e = net(chunk)
        probs.append(p.numpy())
        embs.append(e.numpy())
    return np.concatenate(probs), np.concatenate(embs)


def onnx_outputs(path: Path, poses: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """ONNX Runtime (CPU, ORT_ENABLE_ALL) outputs of the file at ``path``, ``batch`` at a time."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), sess_options=session_options(),
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    probs, embs = [], []
    for start in range(0, len(poses), batch):
        p, e = session.run(["probabilities", "embedding"],
                           {name: np.ascontiguousarray(poses[start:start + batch])})
        probs.append(p)
        embs.append(e)
    return np.concatenate(probs), np.concatenate(embs)


def check_parity(net: nn.Module, path: Path, poses: np.ndarray) -> Parity:
    """Compare ONNX Runtime with PyTorch at two batch sizes; raise ExportError beyond tolerance."""
    ref_p, ref_e = torch_outputs(net, poses)
    worst_p = worst_e = 0.0
    agreement = 1.0
    for batch in sorted({1 if len(poses) < 8 else 7, min(len(poses), 64)}):
        p, e = onnx_outputs(path, poses, batch)
        worst_p = max(worst_p, float(np.abs(p - ref_p).max()))
        worst_e = max(worst_e, float(np.abs(e - ref_e).max()))
        emb_ok = np.all(np.abs(e - ref_e) <= EMB_ATOL + EMB_RTOL * np.abs(ref_e))
        agreement = min(agreement, float((p.argmax(1) == ref_p.argmax(1)).mean()))
        if worst_p > PROB_ATOL or not emb_ok or agreement < 1.0:
            raise ExportError(f"{path}: ONNX Runtime differs from PyTorch at batch {batch}: "
                              f"max |dp| {worst_p:.2e} (atol {PROB_ATOL:g}), max |de| "
                              f"{worst_e:.2e} (atol {EMB_ATOL:g} + rtol {EMB_RTOL:g}), argmax "
                              f"agreement {100 * agreement:.2f} % (need 100 %)")
    return Parity(len(poses), worst_p, worst_e, agreement)


# ------------------------------------------------------------------------------ writing

def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                "numpy": np.__version__}
    try:
        versions["codt"] = importlib.metadata.version("codt")
    except importlib.metadata.PackageNotFoundError:
        pass
    return versions


# Loggers of the exporter that print routine notes (optional torchvision ops skipped, graph
# passes applied) which are not problems of the export; errors still get through.
_NOISY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's informational log lines and its FutureWarnings for one export."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export_onnx(net: nn.Module, example: np.ndarray, path: Path) -> None:
    """Dynamo export of ``net`` (a :class:`training.model.ClusterNet`: ``poses (N, C, T, V, M) ->
    (probabilities (N, K), embedding (N, 256))``), in eval mode, with a dynamic batch axis into
    ``path`` (one file, no external data)."""
    net.eval()
    x = torch.from_numpy(np.array(example[:2], np.float32))  # (2, C, T, V, M)
    batch = torch.export.Dim("N", min=1, max=65536)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(net, (x,), dynamo=True, opset_version=OPSET,
                                    input_names=["poses"],
                                    output_names=["probabilities", "embedding"],
                                    dynamic_shapes=({0: batch},), verbose=False)
    assert program is not None  # dynamo=True always returns an ONNXProgram
    program.save(str(path), external_data=False)


def strip_debug_metadata(model: Any) -> Any:
    """Remove the exporter's debugging records from an ``onnx.ModelProto``, in place, and return it.

    The dynamo exporter annotates every node, initializer and value with ``metadata_props`` (the
    Python stack trace of the op, module names, FX node names, optimiser rule names) and may fill
    ``doc_string``; the stack traces hold absolute source paths of the machine that exported the
    model. None of it is read at inference, so a shipped model keeps only its weights, its graph
    and the model-level ``metadata_props`` (the manifest), which this leaves alone."""
    def clean(items: Any) -> None:
        for item in items:
            del item.metadata_props[:]
            item.doc_string = ""

    def clean_nodes(nodes: Any) -> None:
        """Nodes, and the graphs nested in their attributes (If / Loop / Scan bodies)."""
        clean(nodes)
        for node in nodes:
            for attribute in node.attribute:
                nested = ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
                for graph in nested:
                    clean_graph(graph)

    def clean_graph(graph: Any) -> None:
        clean_nodes(graph.node)
        for values in (graph.input, graph.output, graph.value_info, graph.initializer):
            clean(values)
        del graph.metadata_props[:]
        graph.doc_string = ""

    clean_graph(model.graph)
    for function in model.functions:
        clean_nodes(function.node)
        clean(function.value_info)
        del function.metadata_props[:]
        function.doc_string = ""
    model.doc_string = ""
    return model


def _stamp(path: Path, manifest: Manifest) -> None:
    """Check the graph, then put the manifest (less the file's own hash) in metadata_props."""
    import onnx

    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: the ONNX checker rejects the exported graph: {exc}") from exc
    strip_debug_metadata(model)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: manifest.to_json(with_onnx_hash=False),
                                        "codt_name": manifest.name})
    onnx.save(model, str(path))


def cluster_names_from_eval(predicted: np.ndarray, evalset: EvalSet, k: int
                            ) -> tuple[str, ...] | None:
    """Name each cluster by the eval class the Hungarian matching gives it ("" if unmatched)."""
    if evalset.labels is None or evalset.class_names is None:
        return None
    labels = np.asarray(evalset.labels)
    known = labels >= 0
    table = np.zeros((len(evalset.class_names), k), np.int64)  # (classes, clusters)
    np.add.at(table, (labels[known], predicted[known]), 1)
    rows, cols = hungarian(-table)
    names = [""] * k
    for cls, cluster in zip(rows, cols):
        if table[cls, cluster] > 0:
            names[cluster] = str(evalset.class_names[cls])
    return tuple(names)


def _write_reference(onnx_path: Path, reference_poses: np.ndarray, eval_poses: np.ndarray,
                     eval_embedding: np.ndarray, bank_path: Path, k: int, coordinates: int
                     ) -> tuple[ReferenceSpec, np.ndarray, np.ndarray]:
    """The reference bank of the model at ``onnx_path``: the training clips ``reference_poses``
    (R, C, T, V, M) with the clusters its head gives them (frames of their first
    ``coordinates`` channels), written to ``bank_path``; returns its
    manifest entry, the bank's vote for each of ``eval_poses`` (N,) and what ``codt-cluster``
    returns for them as one run (N,): the vote, then the batch step (``codt_deploy.batch``, with
    the network's ``eval_embedding`` (N, E))."""
    from codt_deploy.batch import BatchStep
    from codt_deploy.reference import make_bank, save_bank

    train = np.ascontiguousarray(reference_poses, dtype=np.float32)  # (R, C, T, V, M)
    head_clusters = onnx_outputs(onnx_path, train, 64)[0].argmax(1)  # (R,)
    bank = make_bank(train, head_clusters, k, coordinates)
    save_bank(bank, bank_path)
    voted, _ = bank.assign(eval_poses)  # (N,)
    step = BatchStep.of_bank(bank, eval_embedding.shape[1])
    together = step.cluster_poses(eval_poses, eval_embedding, voted)
    spec = ReferenceSpec(file=bank_path.name, sha256=sha256_file(bank_path), clips=len(bank),
                         neighbours=bank.neighbours, candidates=bank.candidates)
    return spec, voted, voted if together is None else together[0]


def export_network(net: nn.Module, evalset: EvalSet, *, out_dir: str | os.PathLike, name: str,
                   task: str, preprocess: PreprocessConfig, branch: str = "specific",
                   checkpoint_sha256: str | None = None,
                   nearest_source_classes: Sequence[str] | None = None,
                   reference_poses: np.ndarray | None = None,
                   training: dict[str, Any] | None = None) -> Exported:
    """Export ``net`` (``poses -> (probabilities, embedding)``), prove parity, write the manifest.

    ``evalset.poses`` are real preprocessed samples in ``preprocess``'s layout; parity uses up to
    PARITY_SAMPLES of them, the manifest's metrics (with labels) all of them. With
    ``reference_poses`` (the clips the model was fitted to, (R, C, T, V, M)) the model gets a
    reference bank (``codt_deploy.reference``): those clips with the cluster the exported head
    gives each, written as ``<name>.bank.npz`` and hashed in the manifest; the manifest's eval
    metrics are then what ``codt-cluster`` returns for the eval clips as one run (the vote, then
    the batch step), the vote's and the head's beside them (``eval_vote``, ``eval_head``).
    ``training`` records what the model was fitted to.
    """
    from codt_deploy.layouts import get_layout, is_builtin, layout_spec

    poses = np.ascontiguousarray(evalset.poses, dtype=np.float32)  # (N, C, T, V, M)
    if poses.ndim != 5 or tuple(poses.shape[1:]) != preprocess.output_shape:
        raise ExportError(f"eval samples have shape {poses.shape}; the preprocessing config "
                          f"gives (N, {', '.join(map(str, preprocess.output_shape))})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.onnx.tmp"
    net.eval()
    try:
        _export_onnx(net, poses, tmp)
        parity = check_parity(net, tmp, poses[:PARITY_SAMPLES])
        probs, emb = onnx_outputs(tmp, poses, 64)  # (N, K), (N, D)
        predicted = probs.argmax(1)
        k = int(probs.shape[1])
        head_predicted = voted = predicted
        reference = None
        if reference_poses is not None:
            reference, voted, predicted = _write_reference(tmp, reference_poses, poses, emb,
                                                           out / f"{name}.bank.npz", k,
                                                           preprocess.coordinate_channels)
        balance = cluster_balance(predicted, k)  # label-free: is the head collapsed?
        metrics: dict[str, Any] = {"parity": parity.as_dict(), "eval_samples": int(len(poses)),
                                   "balance": balance}
        warning = collapse_warning(balance, k, f"the exported head {name!r}")
        if warning:
            log.warning(warning)
        if evalset.labels is not None and (np.asarray(evalset.labels) >= 0).any():
            known = np.asarray(evalset.labels) >= 0
            metrics["eval"] = evaluate(np.asarray(evalset.labels)[known], predicted[known])
            if reference is not None:
                metrics["eval_vote"] = evaluate(np.asarray(evalset.labels)[known], voted[known])
                metrics["eval_head"] = evaluate(np.asarray(evalset.labels)[known],
                                                head_predicted[known])
        c, t, v, m = preprocess.output_shape
        manifest = Manifest(
            name=name, task=task, branch=branch, layout=preprocess.layout,
            layout_definition=None if is_builtin(preprocess.layout) else layout_spec(preprocess.layout),
            joints=get_layout(preprocess.layout).joints, channels=preprocess.channel_names,
            input=TensorSpec(name="poses", shape=("N", c, t, v, m)),
            outputs=(TensorSpec(name="probabilities", shape=("N", k)),
                     TensorSpec(name="embedding", shape=("N", int(emb.shape[1])))),
            preprocess=preprocess, num_clusters=k,
            eval_cluster_names=cluster_names_from_eval(predicted, evalset, k),
            nearest_source_classes=tuple(nearest_source_classes) if nearest_source_classes else None,
            opset=OPSET, metrics=metrics, checkpoint_sha256=checkpoint_sha256,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            versions=_versions(), reference=reference, training=training)
        manifest.check()
        _stamp(tmp, manifest)
        manifest = manifest.model_copy(update={"onnx_sha256": sha256_file(tmp)})
        onnx_path, json_path = out / f"{name}.onnx", out / f"{name}.json"
        os.replace(tmp, onnx_path)
        atomic_write_text(json_path, manifest.to_json())
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (K=%d, parity max |dp| %.1e, argmax %.0f %%)", onnx_path, k,
             parity.max_abs_probabilities, 100 * parity.argmax_agreement)
    return Exported(onnx_path, json_path, manifest, parity)


# ------------------------------------------------------------------------------ FLOPs

def onnx_macs(path: str | os.PathLike, batch: int = 1) -> dict[str, tuple[str, int]]:
    """Multiply-accumulates of one forward pass at ``batch`` of the ONNX file: node name ->
    (op type, MACs).

    Counts the nodes that do the arithmetic, Conv, MatMul, Gemm and Einsum (a QDQ model's
    DequantizeLinear inputs included: their shapes are inferred like any other); elementwise ops,
    pooling and softmax are left out. Shapes come from ONNX shape inference with every symbolic
    input axis (the batch axis N) fixed to ``batch``.
    """
    import onnx

    model = onnx.load(str(path))
    for graph_input in model.graph.input:
        for dim in graph_input.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = batch
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {info.name: tuple(d.dim_value for d in info.type.tensor_type.shape.dim)
              for info in (*model.graph.input, *model.graph.value_info, *model.graph.output)}
    shapes.update({init.name: tuple(init.dims) for init in model.graph.initializer})
    macs: dict[str, tuple[str, int]] = {}
    for node in model.graph.node:
        count = _node_macs(node, shapes)
        if count is not None:
            macs[node.name or f"{node.op_type}_{len(macs)}"] = (node.op_type, count)
    return macs


def _node_macs(node: Any, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """MACs of one Conv / MatMul / Gemm / Einsum node from its inferred shapes, else None."""
    import onnx

    def shape(name: str) -> tuple[int, ...]:
        found = shapes.get(name)
        if not found or 0 in found:
            raise ExportError(f"node {node.name!r} ({node.op_type}): no static shape for {name!r}")
        return found

    if node.op_type == "Conv":  # weight (C_out, C_in / groups, *kernel)
        return math.prod(shape(node.output[0])) * math.prod(shape(node.input[1])[1:])
    if node.op_type == "MatMul":  # (..., m, k) @ (..., k, n)
        return math.prod(shape(node.output[0])) * shape(node.input[0])[-1]
    if node.op_type == "Gemm":  # (M, K) x (K, N), either side possibly transposed
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        a = shape(node.input[0])
        return math.prod(shape(node.output[0])) * (a[0] if attrs.get("transA") else a[1])
    if node.op_type == "Einsum":  # every index letter once: the product of their sizes
        equation = next(onnx.helper.get_attribute_value(a) for a in node.attribute
                        if a.name == "equation").decode().replace(" ", "")
        sizes: dict[str, int] = {}
        for term, name in zip(equation.split("->")[0].split(","), node.input):
            sizes.update(zip(term, shape(name)))
        return math.prod(sizes.values())
    return None


# ------------------------------------------------------------------------------ int8

INT8_MIN_AGREEMENT = 0.99  # argmax agreement with the fp32 model needed to publish an int8 twin
CALIBRATION_BATCH = 32
HEAVY_SHARE = 0.7  # "heavy-convs" scope: the largest Convs that together hold this share of MACs
_HEAD_OPS = ("Gemm", "Softmax", "ReduceMean")  # cluster head, its softmax, the pooling before it


@dataclass(frozen=True)
class QuantRecipe:
    """One way to quantise: weights per channel or per tensor, a calibration method, a scope.

    ``scope`` is ``"all-but-head"`` (every op ONNX Runtime can quantise except the cluster head,
    its softmax and the pooling before it) or ``"heavy-convs"`` (only the largest Convs, which hold
    HEAVY_SHARE of the MACs; the rest stays fp32).
    """

    label: str
    per_channel: bool
    method: str  # "minmax" | "percentile" | "entropy"
    scope: str

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "per_channel": self.per_channel, "method": self.method,
                "scope": self.scope, "activations": "uint8 per tensor",
                "weights": "int8 " + ("per channel" if self.per_channel else "per tensor")}


# Tried in order until one reaches INT8_MIN_AGREEMENT (the ladder: per tensor, per
# channel, calibration methods, then sensitive nodes left in fp32).
INT8_RECIPES = (
    QuantRecipe("per-tensor-minmax", False, "minmax", "all-but-head"),
    QuantRecipe("per-channel-minmax", True, "minmax", "all-but-head"),
    QuantRecipe("per-channel-percentile", True, "percentile", "all-but-head"),
    QuantRecipe("per-channel-entropy", True, "entropy", "all-but-head"),
    QuantRecipe("heavy-convs-percentile", True, "percentile", "heavy-convs"),
)


@dataclass(frozen=True)
class Int8Parity:
    """An int8 model against its fp32 model on the same real samples."""

    samples: int
    argmax_agreement: float  # fraction in [0, 1]
    cosine_mean: float  # cosine of the embeddings
    cosine_min: float
    max_abs_probabilities: float

    def as_dict(self) -> dict[str, float]:
        return {"samples": self.samples, "argmax_agreement": self.argmax_agreement,
                "cosine_mean": self.cosine_mean, "cosine_min": self.cosine_min,
                "max_abs_probabilities": self.max_abs_probabilities}


def int8_parity(fp32_path: Path, int8_path: Path, poses: np.ndarray) -> Int8Parity:
    """Argmax agreement, embedding cosine and max |Δp| of ``int8_path`` against ``fp32_path``."""
    ref_p, ref_e = onnx_outputs(fp32_path, poses, 64)
    p, e = onnx_outputs(int8_path, poses, 64)
    cosine = (e * ref_e).sum(1) / np.maximum(
        np.linalg.norm(e, axis=1) * np.linalg.norm(ref_e, axis=1), 1e-12)  # (N,)
    return Int8Parity(len(poses), float((p.argmax(1) == ref_p.argmax(1)).mean()),
                      float(cosine.mean()), float(cosine.min()), float(np.abs(p - ref_p).max()))


class _Batches:
    """Calibration batches of CALIBRATION_BATCH samples, the last one filled up from the start
    (the histogram calibrators need equal batch shapes); every sample is seen at least once."""

    def __init__(self, poses: np.ndarray, input_name: str = "poses") -> None:
        n = -(-len(poses) // CALIBRATION_BATCH) * CALIBRATION_BATCH
        data = np.resize(np.asarray(poses, np.float32), (n, *poses.shape[1:]))  # (n, C, T, V, M)
        self._batches = iter([{input_name: data[i:i + CALIBRATION_BATCH]}
                              for i in range(0, n, CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _scope_nodes(path: Path, scope: str) -> dict[str, Any]:
    """quantize_static's node selection for ``scope`` on the pre-processed model at ``path``."""
    import onnx

    if scope == "all-but-head":
        nodes = onnx.load(str(path)).graph.node
        tail = list(nodes)[-6:]  # the head sits at the end of the graph
        return {"nodes_to_exclude": [n.name for n in tail if n.op_type in _HEAD_OPS]}
    if scope != "heavy-convs":
        raise ValueError(f"unknown quantisation scope {scope!r}")
    macs = onnx_macs(path)
    convs = sorted(((m, n) for n, (op, m) in macs.items() if op == "Conv"), reverse=True)
    total, chosen, running = sum(m for _, m in macs.values()), [], 0
    for count, name in convs:
        if running >= HEAVY_SHARE * total:
            break
        chosen.append(name)
        running += count
    return {"nodes_to_quantize": chosen, "op_types_to_quantize": ["Conv"]}


def quantize_onnx(fp32_path: Path, calibration: np.ndarray, out_path: Path,
                  recipe: QuantRecipe) -> None:
    """Statically quantise ``fp32_path`` to QDQ (uint8 activations, int8 weights) into
    ``out_path``, calibrated on the real preprocessed samples ``calibration`` (N, C, T, V, M)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    with tempfile.TemporaryDirectory(prefix="codt-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"  # BatchNorm folded where it can be, shapes inferred
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()), _quiet_quantizer():  # progress prints
            quantize_static(str(pre), str(out_path), _Batches(calibration),
                            quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=methods[recipe.method],
                            **_scope_nodes(pre, recipe.scope))


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantiser's routine notes (pre-processing advice, progress) at ERROR level only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def export_int8(fp32: Any, calibration: np.ndarray, evalset: EvalSet, *,
                out_dir: str | os.PathLike, name: str | None = None,
                calibration_source: str = "", recipes: Sequence[QuantRecipe] = INT8_RECIPES,
                min_agreement: float = INT8_MIN_AGREEMENT,
                allow_below: bool = False) -> tuple[Exported | None, list[dict[str, Any]]]:
    """The int8 twin of the exported fp32 model ``fp32`` (a ResolvedModel): quantise with each
    recipe in turn until one agrees with fp32 on ``evalset.poses`` for at least ``min_agreement``
    of the argmaxes, then write ``<name>.onnx`` + manifest (default name ``<fp32 name>-int8``).

    None qualifying: raise ExportError listing every attempt, or with ``allow_below`` publish the
    best one with ``quantization.qualified = false`` and a warning. Returns (the export, the
    attempts).
    """
    base = fp32.manifest
    name = name or f"{base.name}-int8"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = tuple(base.input_shape)
    for label, poses in (("calibration", calibration), ("eval", evalset.poses)):
        if poses.ndim != 5 or tuple(poses.shape[1:]) != shape:
            raise ExportError(f"{label} samples have shape {poses.shape}; model {base.name!r} "
                              f"takes (N, {', '.join(map(str, shape))})")
    poses = np.ascontiguousarray(evalset.poses, np.float32)
    attempts: list[dict[str, Any]] = []
    best: tuple[float, Path, QuantRecipe, Int8Parity] | None = None
    with tempfile.TemporaryDirectory(prefix="codt-int8-", dir=out) as tmp:
        for i, recipe in enumerate(recipes):
            candidate = Path(tmp) / f"{i}.onnx"
            quantize_onnx(fp32.onnx_path, calibration, candidate, recipe)
            parity = int8_parity(fp32.onnx_path, candidate, poses)
            attempts.append({**recipe.as_dict(), **parity.as_dict()})
            log.info("int8 %s: argmax agreement %.2f %%, embedding cosine %.4f", recipe.label,
                     100 * parity.argmax_agreement, parity.cosine_mean)
            if best is None or parity.argmax_agreement > best[0]:
                best = (parity.argmax_agreement, candidate, recipe, parity)
            if parity.argmax_agreement >= min_agreement:
                break
        if best is None:
            raise ExportError("no quantisation recipe given")
        agreement, path, recipe, parity = best
        qualified = agreement >= min_agreement
        if not qualified:
            tried = "; ".join(f"{a['label']} {100 * a['argmax_agreement']:.2f} %" for a in attempts)
            message = (f"no int8 recipe reaches {100 * min_agreement:.1f} % argmax agreement with "
                       f"{base.name!r} on {len(poses)} eval samples ({tried})")
            if not allow_below:
                raise ExportError(message + "; nothing written (--allow-below writes the best "
                                  "one, marked as not qualified)")
            log.warning("WARNING: %s; writing the best (%s) marked qualified=false", message,
                        recipe.label)
        record = {"format": "QDQ", "recipe": recipe.as_dict(), "parity": parity.as_dict(),
                  "min_agreement": min_agreement, "qualified": qualified,
                  "fp32_model": base.name, "fp32_sha256": base.onnx_sha256,
                  "calibration": {"source": calibration_source, "samples": int(len(calibration))},
                  "attempts": attempts}
        exported = _publish_int8(base, path, poses, evalset, out, name, record, parity)
    return exported, attempts


def _publish_int8(base: Manifest, candidate: Path, poses: np.ndarray, evalset: EvalSet,
                  out: Path, name: str, record: dict[str, Any], parity: Int8Parity) -> Exported:
    """Manifest (the fp32 one with the int8 model's own name, hash, metrics and quantisation
    record), stamped into the file, then both moved into place."""
    predicted = onnx_outputs(candidate, poses, 64)[0].argmax(1)
    metrics: dict[str, Any] = {"eval_samples": int(len(poses)),
                               "balance": cluster_balance(predicted, base.num_clusters)}
    if evalset.labels is not None and (np.asarray(evalset.labels) >= 0).any():
        known = np.asarray(evalset.labels) >= 0
        metrics["eval"] = evaluate(np.asarray(evalset.labels)[known], predicted[known])
    manifest = base.model_copy(update={
        "name": name, "precision": "int8", "quantization": record, "metrics": metrics,
        "onnx_sha256": None, "versions": _versions(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    manifest.check()
    _stamp(candidate, manifest)
    manifest = manifest.model_copy(update={"onnx_sha256": sha256_file(candidate)})
    onnx_path, json_path = out / f"{name}.onnx", out / f"{name}.json"
    os.chmod(candidate, 0o644)
    os.replace(candidate, onnx_path)
    atomic_write_text(json_path, manifest.to_json())
    log.info("exported %s (int8 %s, argmax agreement %.2f %%, cosine %.4f)", onnx_path,
             record["recipe"]["label"], 100 * parity.argmax_agreement, parity.cosine_mean)
    return Exported(onnx_path, json_path, manifest, parity)


def int8_from_task(model: str | os.PathLike, task_dir: str | os.PathLike | None = None, *,
                   out_dir: str | os.PathLike = "exported", name: str | None = None,
                   allow_below: bool = False, recipes: Sequence[QuantRecipe] = INT8_RECIPES,
                   min_agreement: float = INT8_MIN_AGREEMENT):
    """:func:`export_int8` of an exported model, calibrated on its task's unlabelled target
    training split and checked on its target eval split (``task_dir`` default:
    data/prepared/<task>), both in the model's layout."""
    from codt_deploy.models import resolve_model
    from training.config import prepared_task_dir
    from training.preparation.prepared import load_split

    fp32 = resolve_model(model)
    if fp32.manifest.precision != "fp32":
        raise ExportError(f"model {fp32.name!r} is already {fp32.manifest.precision}")
    folder = Path(task_dir) if task_dir else prepared_task_dir(fp32.manifest.task)
    calibration = load_split(folder, "target_train", fp32.manifest.layout)
    evaluation = load_split(folder, "target_eval", fp32.manifest.layout)
    bank_copy = _twin_bank_copy(fp32, Path(out_dir))  # (the bank, its place beside the twin)
    result = export_int8(fp32, np.asarray(calibration.data, np.float32),
                         EvalSet(np.asarray(evaluation.data, np.float32), evaluation.labels,
                                 evaluation.class_names),
                         out_dir=out_dir, name=name, allow_below=allow_below, recipes=recipes,
                         min_agreement=min_agreement,
                         calibration_source=f"{fp32.manifest.task} target_train "
                                            f"({fp32.manifest.layout}, unlabelled)")
    if bank_copy is not None:  # once a twin is written: a refused one leaves nothing
        shutil.copy2(*bank_copy)
    return result


def _twin_bank_copy(fp32: ResolvedModel, out: Path) -> tuple[Path, Path] | None:
    """(the reference bank of exported model ``fp32``, where its int8 twin in ``out`` needs it), or
    None when it has none or it is there already; ExportError when another model's bank of that
    name is in ``out``."""
    bank = fp32.reference_path
    if bank is None or (out / bank.name).resolve() == bank.resolve():
        return None
    target = out / bank.name
    if target.exists() and sha256_file(target) != sha256_file(bank):
        raise ExportError(f"{target} is another model's reference bank; write the int8 twin of "
                          f"{fp32.name!r} to another --out folder")
    return bank, target


# ------------------------------------------------------------------------------ from a run

@torch.no_grad()
def nearest_source_classes(model: CoDTModel, shared_poses: np.ndarray, clusters: np.ndarray,
                           source_classes: Sequence[str], k: int) -> list[str]:
    """Per cluster, the source class C_0^s finds most likely on average over its samples.

    ``shared_poses`` are target clips in the shared (B0) layout (the export passes the target
    training split, whose clips the model's partition covers), ``clusters`` the deployed model's
    cluster of each; an empty cluster gets "".
    """
    branch = model.shared_student.eval()
    totals = np.zeros((k, len(source_classes)), np.float64)  # (K, source classes)
    for start in range(0, len(shared_poses), 64):
        x = torch.from_numpy(np.array(shared_poses[start:start + 64], np.float32))  # (n,C,T,V,M)
        probs = torch.softmax(branch.source_head(branch.embed(x)), dim=1).numpy()  # (n, S)
        np.add.at(totals, clusters[start:start + 64], probs)
    return [str(source_classes[int(row.argmax())]) if row.sum() > 0 else "" for row in totals]


def _refit_feature_agreement(run_dir: Path) -> float | None:
    """The consensus refit's ``refit/feature_agreement`` of a run: from ``refit.json`` (a run
    refitted by ``python -m training.labelfree``) or the last record of ``metrics.jsonl`` that
    has it; None for a run without it (no refit, or one from before it was recorded)."""
    refit = run_dir / "refit.json"
    records = [json.loads(refit.read_text())] if refit.is_file() else []
    metrics = run_dir / "metrics.jsonl"
    if not records and metrics.is_file():
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    values = [r["refit/feature_agreement"] for r in records
              if isinstance(r.get("refit/feature_agreement"), (int, float))]
    return float(values[-1]) if values else None


def load_run(run_dir: Path, checkpoint: str | None = None):
    """(config, task info, CoDTModel with the weights of ``checkpoint`` in eval mode, checkpoint
    path) of a run; ``checkpoint`` is a file name in its checkpoints folder, default the final one."""
    from training.checkpoint import FINAL, checkpoint_dir, load_checkpoint, restore
    from training.config import from_dict, task_dir
    from training.model import build_model
    from training.preparation.prepared import load_task

    path = checkpoint_dir(run_dir) / (checkpoint or FINAL)
    payload = load_checkpoint(path)
    config = from_dict(payload["config"], origin=str(path))
    task = load_task(task_dir(config))
    in_channels = task.preprocess_config(task.specific).num_channels
    model = build_model(shared_layout=task.shared, specific_layout=task.specific,
                        in_channels=in_channels, num_source_classes=len(task.source_classes),
                        num_clusters=config.model.clusters_for(task.num_clusters),
                        **config.model.network_options)
    restore(payload, model=model, origin=str(path))  # strict=True
    return config, task, model.eval(), path


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike = "exported",
               name: str | None = None, *, shared: bool = False,
               reference: bool = True) -> list[Exported]:
    """Export a finished run's CoDT-B1 (and with ``shared`` CoDT-B0 as ``<name>-shared``), with
    a reference bank of its target training clips unless ``reference`` is False."""
    from training.model import ClusterNet
    from training.preparation.prepared import PreparedDataError, load_split

    run_dir = Path(run_dir)
    config, task, model, checkpoint = load_run(run_dir)
    name = name or task.name
    ckpt_sha = sha256_file(checkpoint)
    eval_specific = load_split(task.folder, "target_eval", task.specific)
    net = ClusterNet.from_codt(model, "specific")
    try:
        train_poses: np.ndarray | None = np.asarray(
            load_split(task.folder, "target_train", task.specific).data)
    except PreparedDataError as exc:  # a folder without the clips the model was fitted to
        log.warning("no reference bank: %s", exc)
        train_poses = None
    # Clusters are named from the clips the model's partition covers (every cluster has members
    # there; a held-out eval split may leave one empty), in the shared layout the source
    # classifier reads.
    named_split = "target_eval" if train_poses is None else "target_train"
    named = np.asarray(eval_specific.data) if train_poses is None else train_poses
    clusters = torch_outputs(net, named)[0].argmax(1)
    nearest = nearest_source_classes(
        model, np.asarray(load_split(task.folder, named_split, task.shared).data), clusters,
        task.source_classes, model.num_clusters)
    split = task.target_split
    training = {"target_split": {key: value for key, value in split.items()  # as the task gives it
                                 if value and (key != "folders" or split["mode"] == "folders")},
                "target_clips": None if train_poses is None else int(len(train_poses)),
                "labelfree": config.labelfree.model_dump(mode="json")}
    agreement = _refit_feature_agreement(run_dir)
    if agreement is not None:  # which members the refit took (docs/METHOD.md §15.4)
        training["refit_feature_agreement"] = round(agreement, 4)
    results = [export_network(
        net, EvalSet(np.asarray(eval_specific.data), eval_specific.labels,
                     eval_specific.class_names),
        out_dir=out_dir, name=name, task=task.name, branch="specific",
        preprocess=task.preprocess_config(task.specific), checkpoint_sha256=ckpt_sha,
        nearest_source_classes=nearest,
        reference_poses=train_poses if reference else None,
        training=training)]
    if shared:
        eval_shared = load_split(task.folder, "target_eval", task.shared)
        results.append(export_network(
            ClusterNet.from_codt(model, "shared"),
            EvalSet(np.asarray(eval_shared.data), eval_shared.labels, eval_shared.class_names),
            out_dir=out_dir, name=f"{name}-shared", task=task.name, branch="shared",
            preprocess=task.preprocess_config(task.shared), checkpoint_sha256=ckpt_sha))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export",
                                     description="Export a finished CoDT run to ONNX + manifest; "
                                                 "with --int8 also its statically quantised twin.")
    parser.add_argument("source", help="the run folder (with checkpoints/final.pt); with --int8 "
                                       "also an exported model (name or .onnx path) to quantise")
    parser.add_argument("--out", default="exported", help="output folder (default: exported)")
    parser.add_argument("--name", help="model name (default: the task name)")
    parser.add_argument("--shared", action="store_true",
                        help="also export the domain-shared branch (CoDT-B0) as <name>-shared")
    parser.add_argument("--int8", action="store_true",
                        help="write <name>-int8: QDQ int8, calibrated on the task's target "
                             "training split; refused below --min-agreement with fp32")
    parser.add_argument("--task-dir", help="prepared task folder for --int8 on an exported model "
                                           "(default: data/prepared/<task>)")
    parser.add_argument("--min-agreement", type=float, default=INT8_MIN_AGREEMENT,
                        help="argmax agreement with fp32 an int8 model needs (default: %(default)s)")
    parser.add_argument("--allow-below", action="store_true",
                        help="write the best int8 model even below --min-agreement "
                             "(marked qualified=false, with a warning)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        results = [] if _is_model(args.source, args.int8) else export_run(
            args.source, args.out, args.name, shared=args.shared)
        if args.int8:
            fp32 = results[0].onnx_path if results else args.source
            int8, _ = int8_from_task(fp32, args.task_dir, out_dir=args.out,
                                     allow_below=args.allow_below,
                                     min_agreement=args.min_agreement)
            results.append(int8)
    except CodtError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(_summary(result))
    return 0


def _is_model(source: str, int8: bool) -> bool:
    """With --int8, a source that is no run folder is an exported model to quantise."""
    return int8 and not (Path(source) / "checkpoints").is_dir()


def _summary(result: Exported) -> str:
    parity, scores = result.parity, result.manifest.metrics.get("eval", {})
    if isinstance(parity, Int8Parity):
        quantization = result.manifest.quantization
        assert quantization is not None  # an int8 model's manifest records its recipe
        head = (f"{result.onnx_path}: int8 ({quantization['recipe']['label']}), "
                f"argmax agreement with fp32 {100 * parity.argmax_agreement:.2f} % on "
                f"{parity.samples} eval samples, embedding cosine {parity.cosine_mean:.4f}")
    else:
        head = (f"{result.onnx_path}: K={result.manifest.num_clusters}, parity on "
                f"{parity.samples} eval samples: max |dp| {parity.max_abs_probabilities:.1e}, "
                f"argmax {100 * parity.argmax_agreement:.0f} %")
    return head + (f"; eval ACC {100 * scores['acc']:.1f} NMI {100 * scores['nmi']:.1f} "
                   f"ARI {100 * scores['ari']:.1f} many-to-one ACC "
                   f"{100 * scores.get('acc_many_to_one', float('nan')):.1f}" if scores else "")


if __name__ == "__main__":
    sys.exit(main())
