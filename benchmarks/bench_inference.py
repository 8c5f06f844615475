"""Inference speed: ONNX Runtime vs PyTorch eager, codt-cluster end to end, memory, FLOPs.

    python benchmarks/bench_inference.py [--data ../shared/data] [--reps 5] [--repeat 2]
                                         [--json benchmarks/results/bench_inference.json]

What it measures (docs PERFORMANCE.md, "How to benchmark"):

1. The machine: CPU model and flags, cores, library versions, threads, load average, git SHA, and a
   2048² fp32 matmul calibration (1 and 2 threads) at the start and at the end.
2. The deployed network of the ``ucla2msr`` task: F_1 -> C_1^t on msr20 (V = 20), K = 20, with two
   person slots (M = 2, the general case and PERFORMANCE.md's; the shipped ``ucla2msr`` model has
   M = 1 since both its datasets are single-person, which halves the cost per sequence), random
   weights with BatchNorm calibrated on real MSR Action3D poses, exported with the project's
   exporter (checker and parity asserted before anything is timed).
3. FLOPs per sequence, counted with ``torch.utils.flop_counter`` on the model as exported, for
   msr20 and for the ntu25 / K = 51 configuration whose 1.225 GFLOP figure PERFORMANCE.md quotes.
4. Paired model-only throughput at b = 32 and b = 128: PyTorch eager, ONNX Runtime on the whole
   batch, and ``ClusterModel`` (micro-batches of 32), timed in one process in a shuffled order per
   repetition; the gate is the median of per-repetition ratios against PyTorch. Each timing
   sample lasts at least 50 ms; the load average is recorded with it.
5. Latency of one sequence: the model at b = 1, and one raw file through ``predict_sequences``.
6. ``codt-cluster`` end to end on the real MSR Action3D + NW-UCLA files (folders repeated
   ``--repeat`` times, a few thousand files), one subprocess per worker setting (inline, 1 thread,
   1 process), against the model-only rate; peak RSS of each run.
7. Peak RSS of ``codt-cluster`` over a zip of N and of 10·N files (memory must stay flat).

Writes JSON (raw samples included) and prints a table. Run it on a quiet machine: with another
process on the cores, 2-thread timings slow down 2-5x (PERFORMANCE.md, "Noise").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
NTU_GFLOP = 1.225  # PERFORMANCE.md: per sequence, ntu25, K = 51, two persons
MIN_SAMPLE_S = 0.05


# ------------------------------------------------------------------------------ machine

def machine_info() -> dict:
    flags, model = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import onnxruntime

    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                         capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(),
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "fma"}),
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "git_sha": sha, "loadavg_start": os.getloadavg()}


def timed(fn: Callable[[], object], min_s: float = MIN_SAMPLE_S) -> float:
    """Seconds per call, looping until one sample lasts at least ``min_s``."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            return elapsed / calls


def calibrate(threads: int, reps: int = 7) -> float:
    """fp32 GFLOP/s of a 2048² matmul on ``threads`` threads (median of ``reps`` samples)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    samples = [2 * 2048**3 / timed(lambda: torch.mm(a, b), 0.2) / 1e9 for _ in range(reps)]
    return statistics.median(samples)


# ------------------------------------------------------------------------------ model

def msr_poses(data: Path, layout: str, limit: int = 64) -> np.ndarray:
    """Real MSR Action3D files, preprocessed for ``layout``: (n, 3, 50, V, 2)."""
    from codt_deploy.preprocess import PreprocessConfig, preprocess_batch
    from codt_deploy.readers import read_poses

    files = sorted((data / "msr_action3d").glob("*_skeleton3D.txt"))[::8][:limit]
    seqs = [seq for path in files for seq in read_poses(path)]
    return preprocess_batch(seqs, PreprocessConfig(layout=layout))


def build_network(layout: str, k: int, poses: np.ndarray):
    """Random-weight ClusterNet with BatchNorm statistics calibrated on ``poses``."""
    from training.model import ClusterNet
    from training.stgcn import STGCN

    torch.manual_seed(0)
    encoder = STGCN(layout)
    for module in encoder.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        encoder.train()
        encoder.embed(torch.from_numpy(poses))
    return ClusterNet(encoder, torch.nn.Linear(256, k)).eval()


def count_gflop(net, v: int) -> float:
    """GFLOP (2 x multiply-accumulates) of one two-person sequence (1, 3, 50, V, 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.randn(1, 3, 50, v, 2))
    return counter.get_total_flops() / 1e9


def export(net, poses: np.ndarray, layout: str, out: Path):
    from codt_deploy.preprocess import PreprocessConfig
    from training.export import EvalSet, export_network

    return export_network(net, EvalSet(poses), out_dir=out, name="bench", task="ucla2msr",
                          preprocess=PreprocessConfig(layout=layout))


# ------------------------------------------------------------------------------ model-only

def paired(net, onnx_path: Path, poses: np.ndarray, batch: int, reps: int, threads: int) -> dict:
    """Seq/s of each runtime per repetition (shuffled order) and the median ratio vs eager."""
    import onnxruntime as ort

    from codt_deploy.infer import ClusterModel, session_options

    torch.set_num_threads(threads)
    x = np.resize(poses, (batch, *poses.shape[1:])).astype(np.float32)  # (b, C, T, V, M)
    xt = torch.from_numpy(x)
    session = ort.InferenceSession(str(onnx_path), sess_options=session_options(threads),
                                   providers=["CPUExecutionProvider"])
    micro = ClusterModel(onnx_path, threads=threads, batch_size=32)
    runners = {"torch_eager": lambda: net(xt),
               "ort_whole_batch": lambda: session.run(None, {"poses": x}),
               "ort_clustermodel_mb32": lambda: micro.predict(x)}
    with torch.no_grad():
        for run in runners.values():
            run()  # warm up
        samples: dict[str, list[float]] = {name: [] for name in runners}
        loads = []
        for _ in range(reps):
            order = list(runners)
            random.shuffle(order)
            for name in order:
                samples[name].append(batch / timed(runners[name], max(MIN_SAMPLE_S, 0.3)))
            loads.append(os.getloadavg()[0])
    ratios = {name: statistics.median(a / b for a, b in zip(samples[name], samples["torch_eager"]))
              for name in runners if name != "torch_eager"}
    return {"batch": batch, "threads": threads, "seq_per_s": samples,
            "median_seq_per_s": {n: statistics.median(s) for n, s in samples.items()},
            "median_ratio_vs_eager": ratios, "loadavg": loads}


def latency(onnx_path: Path, poses: np.ndarray, msr_file: Path, threads: int) -> dict:
    """Median ms of one sequence: the model alone (b = 1) and one raw file end to end."""
    from codt_deploy.infer import ClusterModel
    from codt_deploy.readers import read_poses

    start = time.perf_counter()
    model = ClusterModel(onnx_path, threads=threads)
    session_s = time.perf_counter() - start
    one = poses[:1]
    model.predict(one)
    model_ms = [1e3 * timed(lambda: model.predict(one)) for _ in range(30)]
    file_ms = [1e3 * timed(lambda: model.predict_sequences(read_poses(msr_file)))
               for _ in range(15)]
    return {"session_create_s": session_s, "model_b1_ms": statistics.median(model_ms),
            "file_to_cluster_ms": statistics.median(file_ms), "model_b1_samples_ms": model_ms}


# ------------------------------------------------------------------------------ end to end

_RSS_WRAPPER = """
import json, sys, time
from codt_deploy.cli import main
start = time.perf_counter()
status = main(sys.argv[1:])
wall = time.perf_counter() - start
# VmHWM is this process's own peak; ru_maxrss would keep the pre-exec peak of the forked parent.
own = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print("BENCH " + json.dumps({"status": status, "wall_s": wall, "rss_mib": own / 1024}),
      file=sys.stderr)
"""


def _tree_rss_mib(root: int) -> float:
    """Resident MiB of process ``root`` and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid and c not in tree]
        tree.update(children)
        frontier += children
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def run_cli(args: list[str], model_dir: Path) -> dict:
    """One ``codt-cluster`` subprocess: wall time (inside it), its own peak RSS, and the peak RSS
    of its whole process tree (worker processes included) sampled every 50 ms."""
    env = {**os.environ, "CODT_MODEL_DIR": str(model_dir)}
    proc = subprocess.Popen([sys.executable, "-c", _RSS_WRAPPER, *args, "--model", "bench",
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO_ROOT)
    peak_tree = 0.0
    while proc.poll() is None:
        peak_tree = max(peak_tree, _tree_rss_mib(proc.pid))
        time.sleep(0.05)
    stderr = proc.stderr.read()
    line = next((l for l in stderr.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"codt-cluster failed: {stderr[-2000:]}")
    stats = json.loads(line[6:])
    stats.pop("child_rss_mib", None)
    stats["tree_rss_mib"] = peak_tree
    summary = next((l for l in stderr.splitlines() if "sequences clustered" in l), "")
    stats["summary"] = summary.strip()
    stats["sequences"] = int(summary.split(" files, ")[1].split()[0]) if summary else 0
    stats["seq_per_s"] = stats["sequences"] / stats["wall_s"]
    return stats


def end_to_end(data: Path, model_dir: Path, repeat: int, tmp: Path) -> dict:
    """The MSR + NW-UCLA folders ``repeat`` times, through symbolic links so each copy's files
    have their own names (codt-cluster reads an input listed twice only once)."""
    inputs = []
    for i in range(repeat):
        for name in ("msr_action3d", "nw_ucla"):
            link = tmp / f"copy{i}" / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to((data / name).resolve(), target_is_directory=True)
            inputs.append(str(link))
    runs = {}
    for label, extra in (("inline", ["--workers", "0"]),
                         ("thread_x1", ["--workers", "1", "--executor", "thread"]),
                         ("process_x1", ["--workers", "1", "--executor", "process"])):
        runs[label] = run_cli([*inputs, "-o", str(tmp / f"e2e_{label}.csv"), *extra], model_dir)
    return runs


def archive_rss(data: Path, model_dir: Path, n: int, tmp: Path) -> dict:
    """Peak RSS of codt-cluster over a zip of n and of 10 n MSR files (repeated under new names)."""
    files = sorted((data / "msr_action3d").glob("*_skeleton3D.txt"))
    out = {}
    for count in (n, 10 * n):
        path = tmp / f"msr_{count}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for i in range(count):
                src = files[i % len(files)]
                archive.write(src, f"copy{i // len(files)}/{src.name}")
        out[str(count)] = run_cli([str(path), "-o", str(tmp / f"zip_{count}.csv")], model_dir)
    return out


# ------------------------------------------------------------------------------ report

def table(results: dict) -> str:
    gflop = results["flops"]["msr20_k20_gflop"]
    peak = results["calibration"]["gflops_2t_start"]
    lines = [f"machine: {results['machine']['cpu']} ({results['machine']['cores']} cores), "
             f"load {results['machine']['loadavg_start'][0]:.1f} at start",
             f"calibration 2048² sgemm: {peak:.0f} GFLOP/s on 2 threads, "
             f"{results['calibration']['gflops_1t_start']:.0f} on 1 (end: "
             f"{results['calibration']['gflops_2t_end']:.0f} / "
             f"{results['calibration']['gflops_1t_end']:.0f})",
             f"FLOPs/sequence: msr20 K=20 {gflop:.3f} GFLOP; ntu25 K=51 "
             f"{results['flops']['ntu25_k51_gflop']:.3f} GFLOP (PERFORMANCE.md: {NTU_GFLOP})",
             "", "| runtime | b | seq/s (median) | x eager (paired median) | GFLOP/s | of peak |",
             "|---|---|---|---|---|---|"]
    for run in results["paired"]:
        for name, rate in run["median_seq_per_s"].items():
            ratio = run["median_ratio_vs_eager"].get(name, 1.0)
            lines.append(f"| {name} | {run['batch']} | {rate:.1f} | {ratio:.2f} | "
                         f"{rate * gflop:.0f} | {100 * rate * gflop / peak:.0f} % |")
    lat = results["latency"]
    lines += ["", f"latency: model b=1 {lat['model_b1_ms']:.2f} ms; one MSR file read + "
                  f"preprocess + cluster {lat['file_to_cluster_ms']:.2f} ms; session "
                  f"creation {lat['session_create_s']:.2f} s", "",
              "| codt-cluster end to end | sequences | seq/s | vs model-only b=32 | peak RSS MiB "
              "(main / process tree) |", "|---|---|---|---|---|"]
    model_rate = results["paired"][0]["median_seq_per_s"]["ort_clustermodel_mb32"]
    for label, run in results["end_to_end"].items():
        lines.append(f"| {label} | {run['sequences']} | {run['seq_per_s']:.1f} | "
                     f"{run['seq_per_s'] / model_rate:.2f} | {run['rss_mib']:.0f} / "
                     f"{run['tree_rss_mib']:.0f} |")
    lines += ["", "| zip members | seq/s | peak RSS MiB (main / process tree) |", "|---|---|---|"]
    for count, run in results["archive_rss"].items():
        lines.append(f"| {count} | {run['seq_per_s']:.1f} | {run['rss_mib']:.0f} / "
                     f"{run['tree_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--reps", type=int, default=5, help="paired repetitions per batch size")
    parser.add_argument("--repeat", type=int, default=2, help="times the folders are listed")
    parser.add_argument("--archive-n", type=int, default=200)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path,
                        default=REPO_ROOT / "benchmarks" / "results" / "bench_inference.json")
    args = parser.parse_args(argv)
    results: dict = {"machine": machine_info(), "args": {
        k: os.path.relpath(v, REPO_ROOT) if isinstance(v, Path) else v
        for k, v in vars(args).items()}}  # no absolute paths in committed results
    calib = {"gflops_1t_start": calibrate(1), "gflops_2t_start": calibrate(2)}
    poses = msr_poses(args.data, "msr20")
    net = build_network("msr20", 20, poses)
    ntu = build_network("ntu25", 51, np.zeros((2, 3, 50, 25, 2), np.float32))
    results["flops"] = {"msr20_k20_gflop": count_gflop(net, 20),
                        "ntu25_k51_gflop": count_gflop(ntu, 25)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        exported = export(net, poses, "msr20", tmp / "models")
        results["parity"] = exported.parity.as_dict()
        onnx_path = exported.onnx_path
        results["paired"] = [paired(net, onnx_path, poses, b, args.reps, args.threads)
                             for b in (32, 128)]
        msr_file = sorted((args.data / "msr_action3d").glob("*_skeleton3D.txt"))[0]
        results["latency"] = latency(onnx_path, poses, msr_file, args.threads)
        results["end_to_end"] = end_to_end(args.data, tmp / "models", args.repeat, tmp)
        results["archive_rss"] = archive_rss(args.data, tmp / "models", args.archive_n, tmp)
    calib.update({"gflops_1t_end": calibrate(1), "gflops_2t_end": calibrate(2)})
    results["calibration"] = calib
    results["machine"]["loadavg_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
