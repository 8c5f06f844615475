"""Export a trained CoDT run to ONNX with a manifest: export, check, prove parity, then publish.

    python -m training.export RUN_DIR [--out exported] [--name NAME] [--shared]

Steps (STYLE guidelines 11-12; docs/ARCHITECTURE.md "Exported model"):

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
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import logging
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from codt_deploy.errors import CodtError
from codt_deploy.infer import session_options
from codt_deploy.metrics import cluster_balance, collapse_warning, evaluate, hungarian
from codt_deploy.models import METADATA_KEY, Manifest, TensorSpec, sha256_file
from codt_deploy.preprocess import PreprocessConfig

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
    parity: Parity


@dataclass(frozen=True)
class EvalSet:
    """Real preprocessed samples ``(N, C, T, V, M)`` and, if known, their labels and class names."""

    poses: np.ndarray
    labels: np.ndarray | None = None
    class_names: Sequence[str] | None = None


class _Exportable(nn.Module):
    """``poses -> (probabilities, embedding)`` around a network that returns (probabilities, embedding)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities, embedding = self.net(poses)  # (N, K), (N, 256)
        return probabilities, embedding


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
    """Dynamo export with a dynamic batch axis into ``path`` (one file, no external data)."""
    wrapper = _Exportable(net).eval()
    x = torch.from_numpy(np.array(example[:2], np.float32))  # (2, C, T, V, M)
    batch = torch.export.Dim("N", min=1, max=65536)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(wrapper, (x,), dynamo=True, opset_version=OPSET,
                                    input_names=["poses"],
                                    output_names=["probabilities", "embedding"],
                                    dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(path), external_data=False)


def _stamp(path: Path, manifest: Manifest) -> None:
    """Check the graph, then put the manifest (less the file's own hash) in metadata_props."""
    import onnx

    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: the ONNX checker rejects the exported graph: {exc}") from exc
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: manifest.to_json(with_onnx_hash=False),
                                        "codt_name": manifest.name})
    onnx.save(model, str(path))


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model is meant to be read by others
    os.replace(tmp, path)


def cluster_names_from_eval(predicted: np.ndarray, evalset: EvalSet, k: int) -> list[str] | None:
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
    return names


_CHANNELS = {"xyz": ("x", "y", "z"), "xy_score": ("x", "y", "score")}


def export_network(net: nn.Module, evalset: EvalSet, *, out_dir: str | os.PathLike, name: str,
                   task: str, preprocess: PreprocessConfig, branch: str = "specific",
                   checkpoint_sha256: str | None = None,
                   nearest_source_classes: Sequence[str] | None = None) -> Exported:
    """Export ``net`` (``poses -> (probabilities, embedding)``), prove parity, write the manifest.

    ``evalset.poses`` are real preprocessed samples in ``preprocess``'s layout; parity uses up to
    PARITY_SAMPLES of them, the manifest's metrics (with labels) all of them.
    """
    from codt_deploy.layouts import get_layout

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
        balance = cluster_balance(predicted, k)  # label-free: is the head collapsed?
        metrics: dict[str, Any] = {"parity": parity.as_dict(), "eval_samples": int(len(poses)),
                                   "balance": balance}
        warning = collapse_warning(balance, k, f"the exported head {name!r}")
        if warning:
            log.warning(warning)
        if evalset.labels is not None and (np.asarray(evalset.labels) >= 0).any():
            known = np.asarray(evalset.labels) >= 0
            metrics["eval"] = evaluate(np.asarray(evalset.labels)[known], predicted[known])
        c, t, v, m = preprocess.output_shape
        manifest = Manifest(
            name=name, task=task, branch=branch, layout=preprocess.layout,
            joints=get_layout(preprocess.layout).joints, channels=_CHANNELS[preprocess.channels],
            input=TensorSpec(name="poses", shape=("N", c, t, v, m)),
            outputs=(TensorSpec(name="probabilities", shape=("N", k)),
                     TensorSpec(name="embedding", shape=("N", int(emb.shape[1])))),
            preprocess=preprocess.model_dump(mode="json"), num_clusters=k,
            cluster_names=cluster_names_from_eval(predicted, evalset, k),
            nearest_source_classes=tuple(nearest_source_classes) if nearest_source_classes else None,
            opset=OPSET, metrics=metrics, checkpoint_sha256=checkpoint_sha256,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            versions=_versions())
        manifest.check()
        _stamp(tmp, manifest)
        manifest = manifest.model_copy(update={"onnx_sha256": sha256_file(tmp)})
        onnx_path, json_path = out / f"{name}.onnx", out / f"{name}.json"
        os.replace(tmp, onnx_path)
        _atomic_write_text(json_path, manifest.to_json())
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (K=%d, parity max |dp| %.1e, argmax %.0f %%)", onnx_path, k,
             parity.max_abs_probabilities, 100 * parity.argmax_agreement)
    return Exported(onnx_path, json_path, manifest, parity)


# ------------------------------------------------------------------------------ from a run

def task_dir_for(config: Any, run_dir: Path) -> Path:
    """The prepared task folder a run trained on: ``data.prepared_dir``, else data/prepared/<task>."""
    if config.data.prepared_dir:
        return Path(config.data.prepared_dir)
    return Path(__file__).resolve().parents[1] / "data" / "prepared" / config.data.task


@torch.no_grad()
def nearest_source_classes(model: nn.Module, shared_poses: np.ndarray, clusters: np.ndarray,
                           source_classes: Sequence[str], k: int) -> list[str]:
    """Per cluster, the source class C_0^s finds most likely on average over its eval samples.

    ``shared_poses`` is the target eval split in the shared (B0) layout, ``clusters`` the deployed
    model's cluster of each sample; an empty cluster gets "".
    """
    branch = model.shared_student.eval()
    totals = np.zeros((k, len(source_classes)), np.float64)  # (K, source classes)
    for start in range(0, len(shared_poses), 64):
        x = torch.from_numpy(np.array(shared_poses[start:start + 64], np.float32))  # (n,C,T,V,M)
        probs = torch.softmax(branch.source_head(branch.embed(x)), dim=1).numpy()  # (n, S)
        np.add.at(totals, clusters[start:start + 64], probs)
    return [str(source_classes[int(row.argmax())]) if row.sum() > 0 else "" for row in totals]


def _load_run(run_dir: Path):
    """(config, CoDTModel with the final weights, checkpoint path) of a finished run."""
    from training.checkpoint import FINAL, checkpoint_dir, load_checkpoint, restore
    from training.config import from_dict
    from training.datasets import load_task
    from training.model import build_model

    path = checkpoint_dir(run_dir) / FINAL
    payload = load_checkpoint(path)
    config = from_dict(payload["config"], origin=str(path))
    task = load_task(task_dir_for(config, run_dir))
    in_channels = task.preprocess_config(task.specific).num_channels
    model = build_model(shared_layout=task.shared, specific_layout=task.specific,
                        in_channels=in_channels, num_source_classes=len(task.source_classes),
                        num_clusters=config.model.num_clusters or task.num_clusters,
                        dropout=config.model.dropout,
                        head=config.model.head, head_temperature=config.model.head_temperature)
    restore(payload, model=model, origin=str(path))  # strict=True
    return config, task, model.eval(), path


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike = "exported",
               name: str | None = None, *, shared: bool = False) -> list[Exported]:
    """Export a finished run's CoDT-B1 (and with ``shared`` CoDT-B0 as ``<name>-shared``)."""
    from training.datasets import load_split
    from training.model import ClusterNet

    run_dir = Path(run_dir)
    config, task, model, checkpoint = _load_run(run_dir)
    name = name or task.name
    ckpt_sha = sha256_file(checkpoint)
    eval_specific = load_split(task.folder, "target_eval", task.specific)
    eval_shared = load_split(task.folder, "target_eval", task.shared)
    net = ClusterNet.from_codt(model, "specific")
    clusters = torch_outputs(net, np.asarray(eval_specific.data))[0].argmax(1)
    nearest = nearest_source_classes(model, np.asarray(eval_shared.data), clusters,
                                     task.source_classes, model.num_clusters)
    results = [export_network(
        net, EvalSet(np.asarray(eval_specific.data), eval_specific.labels,
                     eval_specific.class_names),
        out_dir=out_dir, name=name, task=task.name, branch="specific",
        preprocess=task.preprocess_config(task.specific), checkpoint_sha256=ckpt_sha,
        nearest_source_classes=nearest)]
    if shared:
        results.append(export_network(
            ClusterNet.from_codt(model, "shared"),
            EvalSet(np.asarray(eval_shared.data), eval_shared.labels, eval_shared.class_names),
            out_dir=out_dir, name=f"{name}-shared", task=task.name, branch="shared",
            preprocess=task.preprocess_config(task.shared), checkpoint_sha256=ckpt_sha))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export",
                                     description="Export a finished CoDT run to ONNX + manifest.")
    parser.add_argument("run_dir", help="the run folder (with checkpoints/final.pt)")
    parser.add_argument("--out", default="exported", help="output folder (default: exported)")
    parser.add_argument("--name", help="model name (default: the task name)")
    parser.add_argument("--shared", action="store_true",
                        help="also export the domain-shared branch (CoDT-B0) as <name>-shared")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        results = export_run(args.run_dir, args.out, args.name, shared=args.shared)
    except CodtError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    for result in results:
        parity, scores = result.parity, result.manifest.metrics.get("eval", {})
        print(f"{result.onnx_path}: K={result.manifest.num_clusters}, parity on {parity.samples} "
              f"eval samples: max |dp| {parity.max_abs_probabilities:.1e}, argmax "
              f"{100 * parity.argmax_agreement:.0f} %"
              + (f"; eval ACC {100 * scores['acc']:.1f} NMI {100 * scores['nmi']:.1f} "
                 f"ARI {100 * scores['ari']:.1f}" if scores else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
