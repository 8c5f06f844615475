"""GPU readiness in one run (about 8 minutes on one GPU): ONNX Runtime on CUDA, training on CUDA
with AMP, and a two-rank DDP smoke run; one summary at the end.

    python benchmarks/gpu_check.py [--budget-s 480] [--wheels DIR] [--skip-install]
                                   [--model ucla2msr] [--json benchmarks/results/gpu_check.json]

1. Install what it needs from the project's own pyproject extras: ``.[gpu]`` (onnxruntime-gpu, in
   place of the CPU onnxruntime, which provides the same module) and ``.[train]`` (torch, ...);
   ``--wheels DIR`` installs from a folder of wheels without an index (a machine with no network).
   Nothing is installed when the CUDA provider and torch.cuda already work.
2. ONNX Runtime: the shipped model with providers [CUDA, CPU]; the provider the session actually
   uses (ORT falls back to CPU silently when CUDA cannot load), parity with the CPU provider on the
   task's eval clips, throughput at b = 128 and 1,024, latency at b = 1.
3. Training: ``python -m training.run --task ucla2msr`` on CUDA with bf16 autocast
   (``runtime.amp=true``) and the paper's batch (128 source + 128 target). A 1 + 1 epoch probe
   measures the time per epoch; the main run then gets as many epochs as fit in what is left of
   the budget (two thirds stage 1, one third stage 2). Reports step time and the final metrics.
4. DDP: ``torchrun --standalone --nproc_per_node 2 -m training.run`` for 1 + 1 epochs when the
   machine has two GPUs; otherwise skipped with a message.

Every section reports ``ok``, ``skipped`` (with why) or ``failed`` (with the error), so the
summary always prints. Results go to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from codt_deploy.models import ResolvedModel

REPO_ROOT = Path(__file__).resolve().parents[1]
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
PAPER_BATCH = 128  # source and target (METHOD.md §10)
THROUGHPUT_BATCHES = (128, 1024)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="wall-clock budget of the whole check (default: 480 s)")
    parser.add_argument("--wheels", type=Path, help="install from this folder of wheels, no index")
    parser.add_argument("--skip-install", action="store_true", help="install nothing")
    parser.add_argument("--model", default="ucla2msr", help="exported model for the ORT checks")
    parser.add_argument("--task", default="ucla2msr", help="training task (default: ucla2msr)")
    parser.add_argument("--task-dir", type=Path, help="prepared task for the eval clips "
                                                      "(default: data/prepared/<task>)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per batch size")
    parser.add_argument("--json", type=Path,
                        default=REPO_ROOT / "benchmarks" / "results" / "gpu_check.json")
    args = parser.parse_args(argv)
    if args.budget_s < 60:
        parser.error("--budget-s must be at least 60")
    return args


# ------------------------------------------------------------------------------ install

def install_commands(wheels: Path | None, cpu_onnxruntime_installed: bool) -> list[list[str]]:
    """pip commands that install the project's ``gpu`` and ``train`` extras (onnxruntime-gpu
    replaces the CPU onnxruntime: both provide the ``onnxruntime`` module)."""
    pip = [sys.executable, "-m", "pip"]
    source = ["--no-index", "--find-links", str(wheels)] if wheels else []
    commands = [[*pip, "uninstall", "-y", "onnxruntime"]] if cpu_onnxruntime_installed else []
    commands.append([*pip, "install", "-q", *source, "-e", f"{REPO_ROOT}[gpu,train]"])
    return commands


def _installed(distribution: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def cuda_ready() -> tuple[bool, bool]:
    """(ONNX Runtime offers the CUDA provider, torch sees a CUDA device)."""
    try:
        import onnxruntime as ort

        ort_cuda = CUDA in ort.get_available_providers()
    except ImportError:
        ort_cuda = False
    try:
        import torch

        torch_cuda = torch.cuda.is_available()
    except ImportError:
        torch_cuda = False
    return ort_cuda, torch_cuda


def install(args: argparse.Namespace) -> dict:
    if args.skip_install:
        return {"status": "skipped", "message": "--skip-install"}
    if all(cuda_ready()):
        return {"status": "skipped", "message": "CUDA provider and torch.cuda already work"}
    commands = install_commands(args.wheels, _installed("onnxruntime")
                                and not _installed("onnxruntime-gpu"))
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
        if done.returncode != 0 and "uninstall" not in command:
            return {"status": "failed", "command": " ".join(command),
                    "message": done.stderr.strip()[-1500:]}
    return {"status": "ok", "commands": [" ".join(c) for c in commands]}


# ------------------------------------------------------------------------------ ONNX Runtime

def fallback_message(available: list[str], used: list[str] | None = None) -> str | None:
    """Why the CUDA provider is not in use, or None when it is."""
    if CUDA not in available:
        return (f"{CUDA} is not available (ONNX Runtime offers {', '.join(available) or 'none'}): "
                f"install the project's gpu extra (onnxruntime-gpu) on a machine with CUDA; the "
                f"GPU figures stay pending")
    if used is not None and (not used or used[0] != CUDA):
        return (f"{CUDA} is installed but the session runs on {', '.join(used) or 'nothing'}: "
                f"ONNX Runtime could not load CUDA/cuDNN and fell back to the CPU; check the "
                f"CUDA and cuDNN versions onnxruntime-gpu was built for")
    return None


def eval_clips(model: str, task_dir: Path | None) -> tuple[ResolvedModel, np.ndarray]:
    """(the resolved model, the task's eval clips in its layout)."""
    from codt_deploy.models import resolve_model

    resolved = resolve_model(model)
    folder = task_dir or REPO_ROOT / "data" / "prepared" / resolved.manifest.task
    layout = resolved.manifest.layout
    return resolved, np.load(folder / "target_eval" / f"data_{layout}.npy").astype(np.float32)


def _seconds(fn, reps: int) -> float:
    """Median wall seconds of ``fn`` over ``reps`` calls, after one warm-up call."""
    fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def onnxruntime_cuda(args: argparse.Namespace) -> dict:
    import onnxruntime as ort

    from codt_deploy.infer import ClusterModel

    message = fallback_message(ort.get_available_providers())
    if message:
        return {"status": "skipped", "message": message}
    resolved, poses = eval_clips(args.model, args.task_dir)
    gpu = ClusterModel(resolved, providers=[CUDA, CPU], batch_size=max(THROUGHPUT_BATCHES))
    message = fallback_message(ort.get_available_providers(), gpu.providers)
    if message:
        return {"status": "failed", "message": message, "providers_used": gpu.providers}
    cpu = ClusterModel(resolved, providers=[CPU], batch_size=64)
    ref, out = cpu.predict(poses), gpu.predict(poses)
    result = {"status": "ok", "providers_used": gpu.providers, "onnxruntime": ort.__version__,
              "parity": {"samples": len(poses),
                         "max_abs_probabilities": float(np.abs(out.probabilities
                                                               - ref.probabilities).max()),
                         "max_abs_embedding": float(np.abs(out.embedding - ref.embedding).max()),
                         "argmax_agreement": float((out.clusters == ref.clusters).mean())},
              "seq_per_s": {}}
    for batch in THROUGHPUT_BATCHES:
        x = np.resize(poses, (batch, *poses.shape[1:]))
        result["seq_per_s"][str(batch)] = batch / _seconds(lambda x=x: gpu.predict(x), args.reps)
    one = poses[:1]
    result["latency_b1_ms"] = 1e3 * _seconds(lambda: gpu.predict(one), 10 * args.reps)
    return result


# ------------------------------------------------------------------------------ training

def train_command(task: str, run_dir: Path, epochs: tuple[int, int],
                  launcher: list[str] | None = None) -> list[str]:
    """``training.run`` on CUDA with AMP and the paper's batch, for (stage 1, stage 2) epochs."""
    sets = {"runtime.device": "cuda", "runtime.amp": "true", "runtime.progress": "false",
            "optim.batch_source": PAPER_BATCH, "optim.batch_target": PAPER_BATCH,
            "optim.epochs_stage1": epochs[0], "optim.epochs_stage2": epochs[1]}
    head = launcher or [sys.executable]
    return [*head, "-m", "training.run", "--task", task, "--run-dir", str(run_dir), "--no-export",
            "--quiet", *(arg for key, value in sets.items() for arg in ("--set", f"{key}={value}"))]


def epochs_that_fit(seconds_left: float, probe_s: float, probe_epoch_s: float) -> tuple[int, int]:
    """(stage 1, stage 2) epochs for ``seconds_left``: the probe's fixed cost (start, bank fill,
    k-means, evaluation) plus ``probe_epoch_s`` per epoch; two thirds of the epochs in stage 1."""
    fixed = max(0.0, probe_s - 2 * probe_epoch_s)
    total = int(max(0.0, seconds_left - fixed) // max(probe_epoch_s, 1e-3))
    stage2 = max(1, total // 3)
    return max(1, total - stage2), stage2


def read_run(run_dir: Path) -> dict:
    """Median step time, epochs run and the final metrics of a finished run folder."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    epochs = [r for r in records if "step_s" in r]
    summary = json.loads((run_dir / "summary.json").read_text())
    final = {k: v for k, v in summary.items() if isinstance(v, (int, float))
             and any(word in k for word in ("acc", "nmi", "ari"))}
    return {"epochs": len(epochs), "steps": int(sum(r.get("steps", 0) for r in epochs)),
            "median_step_s": statistics.median(r["step_s"] for r in epochs) if epochs else None,
            "median_epoch_s": statistics.median(r["time_s"] for r in epochs) if epochs else None,
            "final_metrics": final}


def _run(command: list[str], timeout: float) -> tuple[float, str | None]:
    """(wall seconds, an error or None) of one subprocess in the repository root."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT,
                              timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, f"timed out after {timeout:.0f} s"
    error = None if done.returncode == 0 else (done.stderr.strip() or done.stdout.strip())[-1500:]
    return time.perf_counter() - start, error


def training_cuda(args: argparse.Namespace, seconds_left: float, tmp: Path) -> dict:
    if not cuda_ready()[1]:
        return {"status": "skipped", "message": "torch sees no CUDA device: training on CUDA "
                                                "skipped; the GPU figures stay pending"}
    probe_dir = tmp / "probe"
    probe_s, error = _run(train_command(args.task, probe_dir, (1, 1)), seconds_left / 2)
    if error:
        return {"status": "failed", "stage": "1 + 1 epoch probe", "message": error}
    probe = read_run(probe_dir)
    epochs = epochs_that_fit(seconds_left - probe_s - 30, probe_s, probe["median_epoch_s"])
    main_dir = tmp / "main"
    wall_s, error = _run(train_command(args.task, main_dir, epochs), seconds_left - probe_s)
    if error:
        return {"status": "failed", "stage": f"{epochs[0]} + {epochs[1]} epochs",
                "message": error, "probe": probe}
    return {"status": "ok", "batch": f"{PAPER_BATCH} + {PAPER_BATCH}", "amp": "bf16 autocast",
            "epochs_stage1_stage2": list(epochs), "wall_s": wall_s, "probe": probe,
            **read_run(main_dir)}


def ddp_smoke(args: argparse.Namespace, gpus: int, seconds_left: float, tmp: Path) -> dict:
    if gpus < 2:
        return {"status": "skipped", "message": f"{gpus} GPU(s) on this machine: the two-rank "
                                                f"torchrun DDP smoke run needs two"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    wall_s, error = _run(train_command(args.task, tmp / "ddp", (1, 1), launcher), seconds_left)
    if error:
        return {"status": "failed", "message": error}
    return {"status": "ok", "ranks": 2, "wall_s": wall_s, **read_run(tmp / "ddp")}


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


# ------------------------------------------------------------------------------ summary

def summary(results: dict) -> str:
    """One block: each section's status and its figures (or why it was skipped or failed)."""
    lines = [f"gpu_check on {results['machine']['gpus']} GPU(s) "
             f"({', '.join(results['machine']['gpu_names']) or 'none'}), "
             f"{results['wall_s']:.0f} s of a {results['budget_s']:.0f} s budget"]
    for name in ("install", "onnxruntime_cuda", "training_cuda", "ddp"):
        section = results[name]
        head = f"- {name}: {section['status']}"
        if section["status"] != "ok":
            lines.append(f"{head}: {section.get('message', '')}")
        elif name == "onnxruntime_cuda":
            parity, rates = section["parity"], section["seq_per_s"]
            lines.append(f"{head}: providers used {', '.join(section['providers_used'])}; parity "
                         f"with CPU on {parity['samples']} clips: max |dp| "
                         f"{parity['max_abs_probabilities']:.1e}, argmax "
                         f"{100 * parity['argmax_agreement']:.1f} %; "
                         + ", ".join(f"b={b} {r:.0f} seq/s" for b, r in rates.items())
                         + f"; latency b=1 {section['latency_b1_ms']:.2f} ms")
        elif name in ("training_cuda", "ddp"):
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in section["final_metrics"].items())
            lines.append(f"{head}: {section['epochs']} epochs, {section['steps']} steps, median "
                         f"step {section['median_step_s']:.3f} s, wall {section['wall_s']:.0f} s; "
                         f"final {metrics or 'no metrics'}")
        else:
            lines.append(head)
    return "\n".join(lines)


def machine() -> dict:
    names = []
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return {"gpus": len(names), "gpu_names": names, "python": platform.python_version(),
            "host_cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    results: dict = {"budget_s": args.budget_s, "install": install(args)}
    results["machine"] = machine()

    def left() -> float:
        return args.budget_s - (time.perf_counter() - start)

    try:
        results["onnxruntime_cuda"] = onnxruntime_cuda(args)
    except Exception as exc:  # a report, not a crash: the other sections still run
        results["onnxruntime_cuda"] = {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
    with tempfile.TemporaryDirectory(prefix="codt-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        gpus = results["machine"]["gpus"]
        ddp_share = 90.0 if gpus >= 2 else 0.0
        results["training_cuda"] = training_cuda(args, left() - ddp_share, tmp)
        results["ddp"] = ddp_smoke(args, gpus, left(), tmp)
    results["wall_s"] = time.perf_counter() - start
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))
    print(f"wrote {args.json}")
    return 1 if any(results[k]["status"] == "failed" for k in
                    ("install", "onnxruntime_cuda", "training_cuda", "ddp")) else 0


if __name__ == "__main__":
    sys.exit(main())
