"""Train CoDT end to end: ``python -m training.run --task ucla2msr`` (from a checkout).

    python -m training.run --task ucla2msr [--config FILE] [--set KEY=VALUE ...] [--run-dir DIR]
                           [--resume | --init-from CHECKPOINT] [--raw DIR] [--export-dir DIR]
                           [--no-export]

Prepares the task when its prepared folder is missing (``training.prepare``), fills the memory
banks (D13), trains stage 1 (BM), initialises both cluster heads by k-means (§9), trains stage 2
(BM+OCM+CCM), evaluates, prints the final table and exports CoDT-B1 to ONNX (``training.export``)
into ``RUN_DIR/exported`` unless ``--export-dir`` says otherwise.

A run folder holds ``config.yaml`` (the resolved configuration), ``metrics.jsonl`` (one line per
epoch: every loss term, lr, timings, metrics), ``checkpoints/{last,stage1,final}.pt`` and
``summary.json``. ``--resume`` continues from ``checkpoints/last.pt``; the data, the dropout masks
and the augmentations of each epoch are seeded from (seed, epoch), so a resumed CPU run matches an
uninterrupted one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

import torch

from codt_deploy.errors import CodtError
from training import checkpoint as ckpt
from training import distributed as ddp
from training.config import (
    TrainConfig,
    apply_overrides,
    from_dict,
    load_yaml,
    resolve_config,
    save_yaml,
    task_dir,
    to_dict,
)
from training.data import TrainingData, load_task_data
from training.engine import (
    append_jsonl,
    evaluate,
    fill_banks,
    kmeans_init,
    make_banks,
    stalled_warning,
    train_one_epoch,
)
from training.labelfree.hooks import anchor_labels, recalibrate_batchnorm, refit_heads
from training.metrics import METRICS
from training.model import CoDTModel, build_model, use_fast_dropout
from training.recipes import RECIPES, cpu_recipe, describe
from training.stgcn import FEATURE_DIM

REPO_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger(__name__)


def ensure_prepared(config: TrainConfig, raw: Path | None) -> Path:
    """Prepare the task with ``training.prepare`` when its ``task.json`` is missing (a built-in
    task, or the user's ``data.task_file``)."""
    folder = task_dir(config)
    if (folder / "task.json").is_file():
        return folder
    from training.preparation.pipeline import prepare_task
    from training.preparation.tasks import get_task, load_task_file

    if config.data.task_file:
        spec = load_task_file(config.data.task_file, name=config.data.task)
    else:
        spec = get_task(config.data.task)
    if spec.name != folder.name:
        raise CodtError(f"{folder}: missing, and the task {spec.name!r} would be prepared into "
                        f"{folder.parent / spec.name}; name the prepared folder after the task")
    raw = Path(raw or config.data.raw_dir or REPO_ROOT.parent / "shared" / "data")
    log.info("prepared folder %s missing: preparing %s from %s", folder, spec.name, raw)
    prepare_task(spec, raw, folder.parent)
    return folder


def choose_device(config: TrainConfig, ctx: ddp.DistContext) -> torch.device:
    wanted = config.runtime.device
    if wanted == "cuda" and not torch.cuda.is_available():
        raise CodtError("runtime.device=cuda but CUDA is not available; use auto or cpu")
    if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu")


def build(config: TrainConfig, data: TrainingData, device: torch.device, ctx: ddp.DistContext
          ) -> tuple[CoDTModel, torch.optim.Optimizer, dict]:
    """Model (seeded init, D2 teachers), SGD over the students (§10), empty banks (§5)."""
    torch.manual_seed(config.seed)
    model = build_model(shared_layout=data.shared_layout, specific_layout=data.specific_layout,
                        in_channels=data.in_channels, num_source_classes=data.num_source_classes,
                        num_clusters=data.num_clusters, **config.model.network_options)
    if config.runtime.fast_dropout:
        use_fast_dropout(model)
    model = ddp.prepare_model(ctx, model.to(device), device_type=device.type,
                              sync_batchnorm=config.runtime.sync_batchnorm)
    o = config.optim
    optimizer = torch.optim.SGD(model.student_parameters(), lr=o.lr_stage1, momentum=o.momentum,
                                weight_decay=o.weight_decay, nesterov=o.nesterov)
    banks = make_banks(len(data.target_train_shared), FEATURE_DIM, device, ctx)
    return model, optimizer, banks


_SHAPING = ("data", "model")  # sections a checkpoint's weights depend on


def _check_compatible(saved: dict, config: TrainConfig, origin: str) -> None:
    for section in _SHAPING:
        ours = to_dict(config)[section]
        theirs = {k: v for k, v in saved.get(section, {}).items() if k != "prepared_dir"}
        ours = {k: v for k, v in ours.items() if k != "prepared_dir"}
        if theirs != ours:
            raise ckpt.CheckpointError(f"{origin}: section {section!r} differs from this run's "
                                       f"({theirs} vs {ours}); a checkpoint only resumes the same data/model")


def _restore_from(path: Path, config: TrainConfig, model, optimizer, banks) -> int:
    payload = ckpt.load_checkpoint(path)
    _check_compatible(payload["config"], config, str(path))
    ckpt.restore(payload, model=model, optimizer=optimizer,
                 banks={name: bank.features for name, bank in banks.items()}, origin=str(path))
    for bank in banks.values():
        bank.filled.fill_(True)
    log.info("restored %s: epoch %d (stage %d)", path, payload["epoch"], payload["stage"])
    return int(payload["epoch"])


def _eval_due(config: TrainConfig, epoch: int) -> bool:
    return (epoch % config.eval.every == 0 or epoch == config.optim.epochs_stage1
            or epoch == config.total_epochs)


def _save(path: Path, config, model, optimizer, banks, epoch: int, metrics: dict) -> None:
    ckpt.save_checkpoint(path, config=to_dict(config), model=model, optimizer=optimizer, epoch=epoch,
                         stage=config.stage_of(epoch), metrics=metrics,
                         banks={name: bank.features for name, bank in banks.items()})


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False, init_from: Path | None = None,
          raw: Path | None = None, ctx: ddp.DistContext = ddp.SINGLE) -> dict[str, float]:
    """Train (or continue) one run into ``run_dir``; returns the last evaluation's metrics.

    ``init_from`` starts from another run's checkpoint (e.g. a shared ``stage1.pt``) as if this
    run had stopped there; ``resume`` continues this run's own ``last.pt``.
    """
    run_dir = Path(run_dir)
    folder = ensure_prepared(config, raw) if ctx.is_main else task_dir(config)
    ddp.barrier(ctx)
    config = from_dict({**to_dict(config), "data": {**to_dict(config)["data"], "prepared_dir": str(folder)}})
    if config.runtime.threads:
        torch.set_num_threads(config.runtime.threads)
    device = choose_device(config, ctx)
    data = load_task_data(folder, config)
    model, optimizer, banks = build(config, data, device, ctx)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(config, run_dir / "config.yaml")
    start = _resume_point(run_dir, resume, init_from, config, model, optimizer, banks)
    if start == 0:
        log.info("filling memory banks: %s", fill_banks(model, banks, data, config, device, ctx))
    metrics: dict[str, float] = {}
    labelfree = config.labelfree
    anchors: torch.Tensor | None = None  # the label-free anchors, computed once per process
    for epoch in range(start + 1, config.total_epochs + 1):
        record = {}
        if epoch == config.optim.epochs_stage1 + 1 and config.decisions.kmeans_init:
            if labelfree.recalibrate_bn:
                record.update(recalibrate_batchnorm(model, data, config, device))
            if labelfree.anchors:  # the heads learnt the anchors in stage 1: keep them (D2 only)
                model.copy_students_to_teachers()
            else:
                record.update(kmeans_init(model, data, config, device))
        if labelfree.anchors and anchors is None:
            anchors = anchor_labels(model, banks, data, config, device)
        record.update(train_one_epoch(model, optimizer, banks, data, config, epoch=epoch,
                                      device=device, ctx=ctx, anchors=anchors))
        ddp.broadcast_buffers(ctx, model)
        if epoch == config.optim.epochs_stage1 and "loss/supervised" in record:
            warning = stalled_warning(record["loss/supervised"], data.num_source_classes, epoch)
            if warning:
                log.warning(warning)
        if labelfree.recalibrate_bn and (_eval_due(config, epoch) or epoch == config.total_epochs):
            record.update(recalibrate_batchnorm(model, data, config, device))  # every rank alike
        if epoch == config.total_epochs and labelfree.refit:  # every rank alike
            record.update(refit_heads(model, data, config, device))
        if ctx.is_main and _eval_due(config, epoch):
            metrics = evaluate(model, data, config, device, heads=config.stage_of(epoch) == 2
                               or labelfree.anchors or labelfree.refit)
            record.update(metrics)
        ddp.barrier(ctx)
        if ctx.is_main:
            _log_epoch(run_dir, record, config, model, optimizer, banks, epoch, metrics)
    if ctx.is_main:
        _save(ckpt.checkpoint_dir(run_dir) / ckpt.FINAL, config, model, optimizer, banks,
              config.total_epochs, metrics)
        (run_dir / "summary.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def _resume_point(run_dir: Path, resume: bool, init_from: Path | None, config, model, optimizer,
                  banks) -> int:
    if resume:
        last = ckpt.latest_checkpoint(run_dir)
        if last is None:
            raise ckpt.CheckpointError(f"{run_dir}: nothing to resume (no checkpoints/{ckpt.LAST})")
        return _restore_from(last, config, model, optimizer, banks)
    if init_from is not None:
        return _restore_from(Path(init_from), config, model, optimizer, banks)
    return 0


def _log_epoch(run_dir: Path, record: dict, config, model, optimizer, banks, epoch: int,
               metrics: dict) -> None:
    append_jsonl(run_dir / "metrics.jsonl", {"time": dt.datetime.now().isoformat(timespec="seconds"),
                                             **record})
    summary = ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in record.items() if k.startswith("loss/"))
    eta_min = (config.total_epochs - epoch) * record["time_s"] / 60
    log.info("epoch %d/%d: %s; %.1f s (%.1f target samples/s); ETA %.1f min", epoch,
             config.total_epochs, summary, record["time_s"], record["target_samples_per_s"], eta_min)
    if epoch % config.runtime.checkpoint_every == 0 or epoch == config.total_epochs:
        _save(ckpt.checkpoint_dir(run_dir) / ckpt.LAST, config, model, optimizer, banks, epoch, metrics)
    if epoch == config.optim.epochs_stage1:
        _save(ckpt.checkpoint_dir(run_dir) / ckpt.STAGE1, config, model, optimizer, banks, epoch, metrics)


def scored_on(config: TrainConfig) -> str:
    """Which target clips the final table scores: the held-out ones when the task has them."""
    from training.preparation.prepared import load_task

    task = load_task(task_dir(config))
    n_train, n_eval = task.counts.get("target_train", 0), task.counts.get("target_eval", 0)
    if not task.held_out:
        return (f"scored on the {n_eval} target clips the model was fitted to (target_split: all; "
                f"give the task a held-out part to score it on clips it never saw)")
    return (f"scored on {n_eval} held-out target clips it never saw (target_split: "
            f"{task.target_split['mode']}; fitted to {n_train} others)")


def format_table(metrics: dict[str, float]) -> str:
    """Markdown table of the final metrics: one row per branch and method (head, † k-means)."""
    rows = ["| branch | method | ACC | NMI | ARI | many-to-one ACC |", "|---|---|---|---|---|---|"]
    for branch, name in (("shared", "CoDT-B0"), ("specific", "CoDT-B1")):
        for method, label in (("head", "cluster head"), ("kmeans", "k-means †")):
            if f"{branch}/{method}/acc" in metrics:
                values = [metrics.get(f"{branch}/{method}/{m}", float("nan")) for m in METRICS]
                rows.append(f"| {name} | {label} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    return "\n".join(rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", help="a task preset (e.g. ucla2msr, ucla2msr-paper-cpu), a task file of "
                                       "your own (YAML/JSON), or a name with data.prepared_dir set")
    parser.add_argument("--config", type=Path, help="YAML file of config sections")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any field, e.g. --set optim.lr_stage1=0.05 (repeatable)")
    parser.add_argument("--recipe", choices=RECIPES,
                        help="a schedule sized from the prepared data: 'cpu' is the measured 2-core "
                             "CPU recipe with the label-free improvements (training/recipes.py); "
                             "--set still overrides it")
    parser.add_argument("--run-dir", type=Path, help="run folder (default: runs/<task>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--init-from", type=Path, metavar="CHECKPOINT",
                        help="start from another run's checkpoint as if this run had stopped there "
                             "(e.g. a shared checkpoints/stage1.pt for stage-2 variants)")
    parser.add_argument("--raw", type=Path, help="raw datasets for preparing (default: ../shared/data)")
    parser.add_argument("--export-dir", type=Path,
                        help="where the ONNX model and manifest go (default: RUN_DIR/exported)")
    parser.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    return parser


def _config_for(args: argparse.Namespace) -> TrainConfig:
    if args.resume:
        if args.run_dir is None:
            raise CodtError("--resume needs --run-dir (the run folder to continue)")
        values = load_yaml(args.run_dir / "config.yaml")
        return from_dict(apply_overrides(values, args.overrides), origin=str(args.run_dir / "config.yaml"))
    if args.task is None and args.config is None:
        raise CodtError("give --task (e.g. --task ucla2msr) or --config FILE")
    if args.recipe is None:
        return resolve_config(task=args.task, config_file=args.config, overrides=args.overrides)
    n_target, n_source, shape = _prepared_sizes(args)
    config = resolve_config(task=args.task, config_file=args.config, overrides=args.overrides,
                            recipe=cpu_recipe(n_target, n_source))
    print(_schedule(config, n_target, shape), flush=True)
    return config


# Seconds per step of 32 source + 32 target samples, V = 20 joints, M = 1, one thread, measured on
# development machines (benchmarks/README.md): bf16 autocast on an Intel Xeon with AMX (1.25 s),
# fp32 on an AMD EPYC with AVX2 only (3.6 s; --recipe cpu keeps fp32 where bf16 is not native).
# The estimate scales it by batch·V·M / threads.
_REFERENCE_STEP_S = {True: 1.25, False: 3.6}


def _prepared_sizes(args: argparse.Namespace) -> tuple[int, int, tuple[int, ...]]:
    """(target train clips, source clips, target array shape) of the task the arguments name,
    preparing it first when its folder is missing. Only the data section is read here (the
    whole configuration is resolved once, with the recipe these sizes give)."""
    from training.config import data_section
    from training.preparation.prepared import load_split, load_task

    data = data_section(task=args.task, config_file=args.config, overrides=args.overrides)
    folder = ensure_prepared(TrainConfig(data=data), args.raw)
    task = load_task(folder)
    target = load_split(folder, "target_train", task.specific)  # memory-mapped: shapes only
    n_source = len(load_split(folder, "source_train", task.shared).labels)
    return len(target.labels), n_source, tuple(target.data.shape)


def _schedule(config: TrainConfig, n_target: int, shape: tuple[int, ...]) -> str:
    """The schedule the recipe chose and an estimate of its wall time, printed before training."""
    steps = config.total_epochs * (n_target // config.optim.batch_target)
    size = config.optim.batch_target * shape[3] * shape[4] / (32 * 20)
    threads = config.runtime.threads or 1
    estimate_min = steps * _REFERENCE_STEP_S[config.runtime.amp] * size / threads ** 0.7 / 60
    return (f"{describe(config, n_target)}\nestimated wall time: {estimate_min:.0f} min "
            f"({steps} steps on {threads} thread(s) of a CPU like the development machine's; the "
            f"epoch log prints the real ETA)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = ddp.SINGLE
    try:
        config = _config_for(args)
        if args.quiet:
            config = from_dict(apply_overrides(to_dict(config), ["runtime.progress=false"]))
        device_type = "cuda" if config.runtime.device != "cpu" and torch.cuda.is_available() else "cpu"
        ctx = ddp.init_from_env(device_type)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = args.run_dir or REPO_ROOT / "runs" / f"{config.data.task}-{stamp}"
        metrics = train(config, run_dir, resume=args.resume, init_from=args.init_from, raw=args.raw,
                        ctx=ctx)
        if ctx.is_main:
            print(f"\nrun folder: {run_dir}\n{scored_on(config)}\n{format_table(metrics)}")
            if not args.no_export:
                _export(run_dir, args.export_dir or Path(run_dir) / "exported")
    except CodtError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        ddp.shutdown(ctx)
    return 0


def _export(run_dir: Path, out_dir: Path) -> None:
    try:
        from training.export import export_run
    except ImportError:
        print("training.export is not available: skipped the ONNX export")
        return
    for result in export_run(run_dir, out_dir):
        print(f"exported {result.onnx_path} (ONNX parity: {result.parity.as_dict()})")


if __name__ == "__main__":
    sys.exit(main())
