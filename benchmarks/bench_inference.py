"""Inference speed: the fp32 peak, FLOPs and fraction of peak; ONNX Runtime vs PyTorch eager; the
int8 twin vs fp32; codt-cluster end to end; memory.

    python -m benchmarks.bench_inference [--data ../shared/data] [--reps 5] [--repeat 2]
                                         [--model ucla2msr] [--skip-end-to-end]
                                         [--json benchmarks/results/bench_inference.json]

What it measures (method in benchmarks/README.md, "Inference"):

1. The machine: CPU model and flags (/proc/cpuinfo, lscpu), cores, library versions, threads,
   load average, git SHA; a 2048² torch.mm at the start and at the end (drift check, not a peak).
2. The fp32 peak: a compiled FMA loop (AVX-512 and AVX2, 12 independent accumulators) on 1 and
   2 threads, per second of each thread's own CPU time (so other jobs on the cores do not lower
   it) and on the wall clock; and the best sgemm (torch.mm and ORT/MLAS MatMul, 1024²-4096²) for
   comparison. Without a C compiler the best sgemm stands in for the peak.
3. FLOPs per sequence three ways: torch's counter, the exported ONNX file node by node (Conv,
   MatMul, Gemm, Einsum; ``training.export.onnx_macs``) and the analytic ST-GCN count
   (:func:`analytic_macs`), for the bench network, the shipped model and ntu25 / K = 51.
4. The deployed network of the ``ucla2msr`` task with two person slots (M = 2; the shipped model
   has M = 1), random weights with BatchNorm calibrated on real MSR Action3D poses, exported with
   the project's exporter (checker and parity asserted before anything is timed). Paired
   throughput at b = 32 and 128 (PyTorch eager, ORT whole batch, ``ClusterModel``) in a shuffled
   order per repetition; ORT alone on one thread per CPU-second. Achieved GFLOP/s against the peak
   of the same run.
5. The shipped model against its int8 twin (the shipped ``<model>-int8``, else one quantised here
   and marked as not shipped): argmax agreement and embedding cosine on the task's eval clips,
   file sizes, and speed at b = 1, 32, 128, fp32 and int8 interleaved per repetition.
6. Latency of one sequence; ``codt-cluster`` end to end on the real MSR Action3D + NW-UCLA files
   and peak RSS over a zip of N and 10·N files (``--skip-end-to-end`` leaves these out).

Gates, printed at the end and in the exit status, use only ratios of this run: no fp32 rate above
its peak, int8 >= 1.3x fp32 at each batch, int8 agreement >= 99 %. Writes JSON (raw samples
included) and prints the tables. With other jobs on the cores, wall-clock figures drop (2-5x on
2 threads); the per-CPU-second figures and the interleaved ratios hold.
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
NTU_GFLOP = 1.225  # earlier estimate, ntu25 / K = 51 / M = 2; this script counts 1.189 (README)
MIN_SAMPLE_S = 0.05


# ------------------------------------------------------------------------------ machine

def _lscpu() -> dict[str, str]:
    """A few lines of ``lscpu`` (cores, threads per core, caches, hypervisor), {} without it."""
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L1d cache",
            "L2 cache", "L3 cache", "Hypervisor vendor", "CPU max MHz")
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs if k.strip() in keep}


def cpu_info() -> tuple[str, set[str]]:
    """(CPU model name, its feature flags) from /proc/cpuinfo."""
    flags, model = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


_SHOWN_FLAGS = {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_int8", "amx_bf16"}


def machine_info() -> dict:
    model, flags = cpu_info()
    import onnxruntime

    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                         capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(),
            "flags": sorted(flags & _SHOWN_FLAGS), "lscpu": _lscpu(),
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "git_sha": sha, "loadavg_start": os.getloadavg()}


def timed(fn: Callable[[], object], min_s: float = MIN_SAMPLE_S,
          clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds per call on ``clock``, looping until one sample lasts at least ``min_s`` on it.

    ``time.thread_time`` counts only the CPU time of the calling thread: with one intra-op thread
    (ORT and torch then compute in the caller), it measures the work, not the other jobs on the
    cores, so per-CPU-second rates stay comparable on a shared machine.
    """
    calls, start = 0, clock()
    while True:
        fn()
        calls += 1
        elapsed = clock() - start
        if elapsed >= min_s:
            return elapsed / calls


def calibrate(threads: int, reps: int = 7) -> float:
    """fp32 GFLOP/s of a 2048² torch.mm on ``threads`` threads, wall clock (median of ``reps``).

    Kept as the run's drift check (start vs end); it is not a peak: see :func:`fp32_peak`.
    """
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    samples = [2 * 2048**3 / timed(lambda: torch.mm(a, b), 0.2) / 1e9 for _ in range(reps)]
    return statistics.median(samples)


# ------------------------------------------------------------------------------ fp32 peak

# One FMA per instruction on 16 lanes (AVX-512) or 8 (AVX2), 12 independent accumulators: more
# than latency x ports on any current x86 core, so the loop runs at the FMA ports' throughput.
_FMA_SOURCE = r"""
#include <immintrin.h>
#define STEP(v) v = FMA(v, m, c)
float fma_loop(long iters) {
    VEC m = SET(0.999999f), c = SET(1e-7f);
    VEC a0 = SET(0), a1 = SET(1), a2 = SET(2), a3 = SET(3), a4 = SET(4), a5 = SET(5),
        a6 = SET(6), a7 = SET(7), a8 = SET(8), a9 = SET(9), a10 = SET(10), a11 = SET(11);
    for (long n = 0; n < iters; n++) {
        STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);
        STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);
    }
    VEC s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));
    float out[LANES]; STORE(out, s);
    float total = 0; for (int i = 0; i < LANES; i++) total += out[i];
    return total;
}
"""
_FMA_ISAS = {  # name: (lanes, gcc flags, macros)
    "avx512": (16, ["-mavx512f", "-mfma"],
               "-DVEC=__m512 -DFMA=_mm512_fmadd_ps -DSET=_mm512_set1_ps -DADD=_mm512_add_ps "
               "-DSTORE=_mm512_storeu_ps -DLANES=16"),
    "avx2": (8, ["-mavx2", "-mfma"],
             "-DVEC=__m256 -DFMA=_mm256_fmadd_ps -DSET=_mm256_set1_ps -DADD=_mm256_add_ps "
             "-DSTORE=_mm256_storeu_ps -DLANES=8"),
}
FMA_PER_ITER = 12  # accumulators


def build_fma_loop(isa: str, folder: Path):
    """The FMA loop compiled for ``isa`` as a ctypes function ``fma_loop(iters)``, or None when
    no C compiler is found or the CPU lacks the instructions."""
    import ctypes
    import shutil

    lanes, flags, macros = _FMA_ISAS[isa]
    compiler = shutil.which("cc") or shutil.which("gcc")
    cpu_flags = cpu_info()[1]
    if compiler is None or not {"avx512": {"avx512f"}, "avx2": {"avx2", "fma"}}[isa] <= cpu_flags:
        return None
    src, lib = folder / f"fma_{isa}.c", folder / f"fma_{isa}.so"
    src.write_text(_FMA_SOURCE)
    subprocess.run([compiler, "-O2", *flags, *macros.split(), "-shared", "-fPIC", str(src), "-o",
                    str(lib)], check=True, capture_output=True)
    fn = ctypes.CDLL(str(lib)).fma_loop
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_long]
    return fn, lanes


def fma_peak(isa: str, folder: Path, threads: int, seconds: float = 0.5) -> dict | None:
    """GFLOP/s of the FMA loop on ``threads`` Python threads at once (ctypes releases the GIL).

    ``per_thread_cpu`` is each thread's FLOPs per second of its own CPU time (the core's peak,
    whatever else runs); ``wall_total`` the sum of FLOPs over wall time (what the run got).
    """
    import threading

    built = build_fma_loop(isa, folder)
    if built is None:
        return None
    fn, lanes = built
    flops_per_iter = 2 * lanes * FMA_PER_ITER
    start = time.perf_counter()
    fn(1000)
    iters = max(1000, int(seconds * 100e9 / flops_per_iter))  # ~0.5 s at 100 GFLOP/s
    results: list[tuple[float, float]] = []

    def one() -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        fn(iters)
        results.append((time.thread_time() - cpu, time.perf_counter() - wall))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    flops = flops_per_iter * iters
    del start
    return {"isa": isa, "threads": threads,
            "per_thread_cpu_gflops": [flops / cpu / 1e9 for cpu, _ in results],
            "wall_total_gflops": threads * flops / max(w for _, w in results) / 1e9}


def sgemm_rates(n: int, threads: int) -> dict:
    """GFLOP/s of an n x n fp32 matmul: torch.mm (MKL/oneDNN) and ORT MatMul (MLAS); with one
    thread per CPU-second of the calling thread, else on the wall clock."""
    import onnx
    import onnxruntime as ort

    from codt_deploy.infer import session_options

    clock = time.thread_time if threads == 1 else time.perf_counter
    a, b = np.random.default_rng(0).standard_normal((2, n, n), dtype=np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
        [onnx.helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, [n, n]) for x in "ab"],
        [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [n, n])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    session = ort.InferenceSession(model.SerializeToString(), sess_options=session_options(threads),
                                   providers=["CPUExecutionProvider"])
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    runners = {"torch_mm": lambda: torch.mm(ta, tb),
               "ort_mlas_matmul": lambda: session.run(None, {"a": a, "b": b})}
    out = {}
    for name, run in runners.items():
        run()
        out[name] = max(2 * n**3 / timed(run, 0.3, clock) / 1e9 for _ in range(3))
    return {"n": n, "threads": threads, "clock": "thread_cpu" if threads == 1 else "wall", **out}


def measure_peak(threads: int) -> dict:
    """The fp32 FMA peak, directly (compiled loop) and as the best sgemm, on 1 and ``threads``."""
    with tempfile.TemporaryDirectory(prefix="codt-fma-") as tmp:
        found = [fma_peak(isa, Path(tmp), t) for isa in _FMA_ISAS for t in sorted({1, threads})]
    sgemm = [sgemm_rates(n, t) for n in (1024, 2048, 4096) for t in sorted({1, threads})]
    loops = [loop for loop in found if loop is not None]
    one_core = [max(loop["per_thread_cpu_gflops"]) for loop in loops if loop["threads"] == 1]
    best_sgemm_1t = max(max(s["torch_mm"], s["ort_mlas_matmul"]) for s in sgemm
                        if s["threads"] == 1)
    core_peak = max(one_core) if one_core else best_sgemm_1t
    wall = [loop["wall_total_gflops"] for loop in loops if loop["threads"] == threads]
    return {"fma_loops": loops, "sgemm": sgemm,
            "source": "compiled FMA loop" if one_core else "best sgemm (no C compiler)",
            "core_peak_gflops_per_cpu_s": core_peak,
            "machine_peak_gflops": core_peak * threads,
            "wall_peak_gflops_this_run": max(wall) if wall else None,
            "best_sgemm_1t_gflops_per_cpu_s": best_sgemm_1t}


# ------------------------------------------------------------------------------ FLOPs

def analytic_macs(v: int, m: int, k: int, t: int = 50, in_channels: int = 3) -> dict[str, int]:
    """MACs of one sequence through ST-GCN (training/stgcn.py's blocks) + the cluster head.

    Per block (C_in -> C_out, stride s, T -> T' = ceil(T / s), 3 adjacency subsets): the graph
    matmul x (C_in, T, V) @ A (V, 3V): C_in·T·V·3V; the 1x3 dilated conv: C_out·T·V·3·C_in; the
    9x1 temporal conv: C_out·T'·V·9·C_out; a projection residual (C_in != C_out or s > 1):
    C_out·T'·V·C_in. Times the M person slots; the head adds 256·K. BatchNorm, ReLU, the bias,
    pooling and softmax are not multiply-accumulates of a matrix product and are left out.
    """
    from training.stgcn import _BLOCKS, FEATURE_DIM, TEMPORAL_KERNEL

    subsets = 3
    parts = {"graph_matmul": 0, "graph_conv": 0, "temporal_conv": 0, "residual_conv": 0}
    for i, (c_in, c_out, stride) in enumerate(_BLOCKS):
        c_in = in_channels if c_in is None else c_in  # None: block 1 takes the input's channels
        t_out = -(-t // stride)
        parts["graph_matmul"] += c_in * t * v * subsets * v
        parts["graph_conv"] += c_out * t * v * subsets * c_in
        parts["temporal_conv"] += c_out * t_out * v * TEMPORAL_KERNEL * c_out
        if i > 0 and (c_in != c_out or stride > 1):
            parts["residual_conv"] += c_out * t_out * v * c_in
        t = t_out
    parts = {name: m * macs for name, macs in parts.items()}
    parts["head"] = FEATURE_DIM * k
    parts["total"] = sum(parts.values())
    return parts


def flop_counts(net, onnx_path: Path, v: int, m: int, k: int) -> dict:
    """GFLOP (2 x MACs) of one sequence three ways: torch's counter, the ONNX file node by node
    (training.export.onnx_macs) and :func:`analytic_macs`."""
    from training.export import onnx_macs

    by_op: dict[str, int] = {}
    for op, macs in onnx_macs(onnx_path).values():
        by_op[op] = by_op.get(op, 0) + macs
    analytic = analytic_macs(v, m, k)
    return {"torch_counter_gflop": count_gflop(net, v, m),
            "onnx_nodes_gflop": 2 * sum(by_op.values()) / 1e9,
            "onnx_macs_by_op": by_op, "analytic_gflop": 2 * analytic["total"] / 1e9,
            "analytic_macs": analytic}


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


def count_gflop(net, v: int, m: int = 2) -> float:
    """GFLOP (2 x multiply-accumulates) of one sequence (1, 3, 50, V, M), torch's counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.randn(1, 3, 50, v, m))
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
    assert proc.stderr is not None  # stderr=PIPE
    stderr = proc.stderr.read()
    line = next((row for row in stderr.splitlines() if row.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"codt-cluster failed: {stderr[-2000:]}")
    stats = json.loads(line[6:])
    stats.pop("child_rss_mib", None)
    stats["tree_rss_mib"] = peak_tree
    summary = next((row for row in stderr.splitlines() if "sequences clustered" in row), "")
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


# ------------------------------------------------------------------------------ fp32 vs int8

def model_rates(paths: dict[str, Path], poses: np.ndarray, batch: int, threads: int,
                reps: int) -> dict:
    """Seq/s of each ONNX model at ``batch``, interleaved in a shuffled order per repetition:
    with one thread per CPU-second of the calling thread, else on the wall clock; and the median
    of per-repetition ratios to the first model."""
    import onnxruntime as ort

    from codt_deploy.infer import session_options

    clock = time.thread_time if threads == 1 else time.perf_counter
    x = np.ascontiguousarray(np.resize(poses, (batch, *poses.shape[1:])), np.float32)
    sessions = {name: ort.InferenceSession(str(path), sess_options=session_options(threads),
                                           providers=["CPUExecutionProvider"])
                for name, path in paths.items()}
    runners = {name: (lambda s=s: s.run(None, {"poses": x})) for name, s in sessions.items()}
    for run in runners.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(reps):
        order = list(runners)
        random.shuffle(order)
        for name in order:
            samples[name].append(batch / timed(runners[name], 0.3, clock))
    first = next(iter(runners))
    return {"batch": batch, "threads": threads,
            "clock": "thread_cpu" if threads == 1 else "wall", "seq_per_s": samples,
            "median_seq_per_s": {n: statistics.median(s) for n, s in samples.items()},
            "median_ratio": {n: statistics.median(a / b for a, b in zip(s, samples[first]))
                             for n, s in samples.items() if n != first}}


def int8_comparison(model: str, task_dir: Path | None, recipe: str, threads: int, reps: int,
                    tmp: Path) -> dict:
    """The shipped fp32 model against its int8 twin on the task's real eval clips: agreement,
    cosine, file sizes, and speed at b = 1, 32, 128 (one thread per CPU-second; ``threads`` on
    the wall clock), fp32 and int8 interleaved. The twin is the shipped ``<model>-int8`` when
    there is one, else quantised here with ``recipe`` (written even below the agreement bar)."""
    from codt_deploy.models import available_models, resolve_model
    from training.config import prepared_task_dir
    from training.export import INT8_RECIPES, int8_from_task, int8_parity
    from training.preparation.prepared import load_split

    fp32 = resolve_model(model)
    folder = task_dir or prepared_task_dir(fp32.manifest.task)
    poses = np.asarray(load_split(folder, "target_eval", fp32.manifest.layout).data, np.float32)
    twin = available_models().get(f"{fp32.name}-int8")
    shipped = twin is not None
    if twin is None:
        recipes = [r for r in INT8_RECIPES if r.label == recipe]
        twin = int8_from_task(fp32.onnx_path, folder, out_dir=tmp, allow_below=True,
                              recipes=recipes)[0].onnx_path
    int8 = resolve_model(twin)
    parity = int8_parity(fp32.onnx_path, int8.onnx_path, poses)
    paths = {"fp32": fp32.onnx_path, "int8": int8.onnx_path}
    speed = [model_rates(paths, poses, b, t, reps) for t in sorted({1, threads})
             for b in (1, 32, 128)]
    quantization = int8.manifest.quantization
    assert quantization is not None  # an int8 model's manifest records its recipe
    return {"model": fp32.name, "int8_model": int8.name, "shipped_twin": shipped,
            "recipe": quantization["recipe"], "qualified": quantization["qualified"],
            "eval_clips": int(len(poses)), "parity": parity.as_dict(),
            "size_bytes": {"fp32": fp32.onnx_path.stat().st_size,
                           "int8": int8.onnx_path.stat().st_size},
            "speed": speed, "eval_int8": int8.manifest.metrics.get("eval"),
            "eval_fp32": fp32.manifest.metrics.get("eval")}


# ------------------------------------------------------------------------------ report

INT8_MIN_SPEEDUP = 1.3  # the aim at b = 1, 32, 128, measured fp32 vs int8 in one run


def gates(results: dict) -> dict[str, bool]:
    """Pass/fail on ratios measured in this run only: no achieved fp32 rate above its peak (int8
    rows do fp32-equivalent work in int8 and are not held to the fp32 peak); int8 at
    least INT8_MIN_SPEEDUP x fp32 (per CPU-second, one thread) at each batch; int8 argmax
    agreement with fp32 at least training.export.INT8_MIN_AGREEMENT."""
    from training.export import INT8_MIN_AGREEMENT

    fractions = [row["of_core_peak"] for row in results["achieved"]
                 if row.get("precision", "fp32") == "fp32"]
    out = {"achieved <= peak": all(f <= 1.0 for f in fractions)}
    if "int8" in results:
        for run in results["int8"]["speed"]:
            if run["threads"] == 1:
                out[f"int8 >= {INT8_MIN_SPEEDUP}x fp32 at b={run['batch']}"] = (
                    run["median_ratio"]["int8"] >= INT8_MIN_SPEEDUP)
        out[f"int8 agreement >= {100 * INT8_MIN_AGREEMENT:.0f} %"] = (
            results["int8"]["parity"]["argmax_agreement"] >= INT8_MIN_AGREEMENT)
    return out


def achieved(results: dict) -> list[dict]:
    """Achieved GFLOP/s of each measured model rate against the peak of the same run."""
    peak = results["peak"]
    gflop = results["flops"]["msr20_k20_gflop"]
    rows = []
    for run in results["ort_1t"]:  # bench model, one thread, per CPU-second
        rate = run["median_seq_per_s"]["ort"]
        rows.append({"what": f"ORT fp32, bench model (M=2), b={run['batch']}, 1 thread",
                     "clock": "thread_cpu", "gflops": rate * gflop,
                     "of_core_peak": rate * gflop / peak["core_peak_gflops_per_cpu_s"]})
    shipped_gflop = results["flops"].get("shipped_gflop")
    for run in results.get("int8", {}).get("speed", []):
        if run["threads"] != 1:
            continue
        for name, rate in run["median_seq_per_s"].items():
            rows.append({"what": f"ORT {name}, shipped model (M=1), b={run['batch']}, 1 thread"
                                 + (" (fp32-equivalent FLOPs, done in int8)" if name == "int8"
                                    else ""),
                     "precision": name, "clock": "thread_cpu", "gflops": rate * shipped_gflop,
                     "of_core_peak": rate * shipped_gflop / peak["core_peak_gflops_per_cpu_s"]})
    for run in results["paired"]:
        rate = run["median_seq_per_s"]["ort_whole_batch"]
        threads = run["threads"]
        rows.append({"what": f"ORT fp32, bench model (M=2), b={run['batch']}, {threads} threads",
                     "clock": "wall", "gflops": rate * gflop,
                     "of_core_peak": rate * gflop / (threads * peak["core_peak_gflops_per_cpu_s"]),
                     "of_wall_peak_this_run": rate * gflop / peak["wall_peak_gflops_this_run"]
                     if peak["wall_peak_gflops_this_run"] else None})
    return [row for row in rows if "int8" not in row["what"]] + \
        [row for row in rows if "int8" in row["what"]]


def table(results: dict) -> str:
    machine, peak, flops = results["machine"], results["peak"], results["flops"]
    gflop = flops["msr20_k20_gflop"]
    lines = [f"note: {results['args']['note']}"] if results["args"].get("note") else []
    lines += [f"machine: {machine['cpu']} ({machine['cores']} cores; flags "
             f"{' '.join(machine['flags'])}), load {machine['loadavg_start'][0]:.1f} at start, "
             f"{machine['loadavg_end'][0]:.1f} at end",
             f"fp32 peak ({peak['source']}): {peak['core_peak_gflops_per_cpu_s']:.0f} GFLOP/s per "
             f"core-second, {peak['machine_peak_gflops']:.0f} for {results['args']['threads']} "
             f"cores; this run's wall-clock peak on {results['args']['threads']} threads "
             + (f"{peak['wall_peak_gflops_this_run']:.0f}" if peak["wall_peak_gflops_this_run"]
                else "n/a"),
             "", "| fp32 kernel | threads | clock | GFLOP/s |", "|---|---|---|---|"]
    for loop in peak["fma_loops"]:
        lines.append(f"| FMA loop {loop['isa']} | {loop['threads']} | per thread CPU s | "
                     f"{', '.join(f'{g:.0f}' for g in loop['per_thread_cpu_gflops'])} (wall "
                     f"total {loop['wall_total_gflops']:.0f}) |")
    for run in peak["sgemm"]:
        lines.append(f"| sgemm {run['n']}² torch.mm / ORT MatMul | {run['threads']} | "
                     f"{run['clock']} | {run['torch_mm']:.0f} / {run['ort_mlas_matmul']:.0f} |")
    calib = results["calibration"]
    lines += [f"drift check, 2048² torch.mm (wall, not a peak): {calib['gflops_2t_start']:.0f} on 2 "
              f"threads, {calib['gflops_1t_start']:.0f} on 1 (end: {calib['gflops_2t_end']:.0f} "
              f"/ {calib['gflops_1t_end']:.0f})", "",
              "| GFLOP per sequence | torch counter | ONNX nodes | analytic |", "|---|---|---|---|"]
    for label, key in (("bench msr20 M=2 K=20", "msr20_k20"), ("shipped ucla2msr M=1", "shipped"),
                       ("ntu25 M=2 K=51", "ntu25_k51")):
        row = flops.get(key + "_counts")
        if row:
            cells = [row[k] for k in ("torch_counter_gflop", "onnx_nodes_gflop", "analytic_gflop")]
            lines.append(f"| {label} | " + " | ".join("–" if x is None else f"{x:.4f}"
                                                     for x in cells) + " |")
    lines += ["", "| achieved | clock | GFLOP/s | of core peak x threads | of this run's wall peak |",
              "|---|---|---|---|---|"]
    for row in results["achieved"]:
        wall = row.get("of_wall_peak_this_run")
        lines.append(f"| {row['what']} | {row['clock']} | {row['gflops']:.0f} | "
                     f"{100 * row['of_core_peak']:.0f} % | "
                     f"{'' if wall is None else f'{100 * wall:.0f} %'} |")
    lines += ["", "| runtime | b | seq/s (median) | x eager (paired median) | GFLOP/s |",
              "|---|---|---|---|---|"]
    for run in results["paired"]:
        for name, rate in run["median_seq_per_s"].items():
            ratio = run["median_ratio_vs_eager"].get(name, 1.0)
            lines.append(f"| {name} | {run['batch']} | {rate:.1f} | {ratio:.2f} | "
                         f"{rate * gflop:.0f} |")
    if "int8" in results:
        lines += ["", *int8_lines(results["int8"])]
    lat = results["latency"]
    lines += ["", f"latency: model b=1 {lat['model_b1_ms']:.2f} ms; one MSR file read + "
                  f"preprocess + cluster {lat['file_to_cluster_ms']:.2f} ms; session "
                  f"creation {lat['session_create_s']:.2f} s"]
    if "end_to_end" in results:
        lines += ["", *end_to_end_lines(results)]
    lines += ["", "gates (ratios of this run): " + "; ".join(
        f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in results["gates"].items())]
    return "\n".join(lines)


def end_to_end_lines(results: dict) -> list[str]:
    lines = ["| codt-cluster end to end | sequences | seq/s | vs model-only b=32 | peak RSS MiB "
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
    return lines


def int8_lines(int8: dict) -> list[str]:
    parity, size = int8["parity"], int8["size_bytes"]
    origin = "shipped" if int8["shipped_twin"] else "made by this run, not shipped"
    lines = [f"int8 twin {int8['int8_model']} ({origin}; recipe {int8['recipe']['label']}, qualified "
             f"{int8['qualified']}): argmax agreement with fp32 "
             f"{100 * parity['argmax_agreement']:.2f} % on {parity['samples']} eval clips, "
             f"embedding cosine mean {parity['cosine_mean']:.4f} (min {parity['cosine_min']:.4f}), "
             f"max |dp| {parity['max_abs_probabilities']:.3f}; file {size['int8'] / 1e6:.2f} MB "
             f"vs fp32 {size['fp32'] / 1e6:.2f} MB",
             "", "| b | threads | clock | fp32 seq/s | int8 seq/s | int8 / fp32 (paired median) |",
             "|---|---|---|---|---|---|"]
    for run in int8["speed"]:
        rate = run["median_seq_per_s"]
        lines.append(f"| {run['batch']} | {run['threads']} | {run['clock']} | {rate['fp32']:.0f} | "
                     f"{rate['int8']:.0f} | {run['median_ratio']['int8']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--reps", type=int, default=5, help="paired repetitions per batch size")
    parser.add_argument("--repeat", type=int, default=2, help="times the folders are listed")
    parser.add_argument("--archive-n", type=int, default=200)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--model", default="ucla2msr",
                        help="shipped fp32 model compared with its int8 twin (default: ucla2msr)")
    parser.add_argument("--task-dir", type=Path, default=None,
                        help="its prepared task (default: data/prepared/<task>)")
    parser.add_argument("--int8-recipe", default="per-channel-percentile",
                        help="recipe for an int8 twin made here when none is shipped")
    parser.add_argument("--skip-end-to-end", action="store_true",
                        help="leave out the codt-cluster end-to-end and archive runs")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. other load)")
    parser.add_argument("--json", type=Path,
                        default=REPO_ROOT / "benchmarks" / "results" / "bench_inference.json")
    args = parser.parse_args(argv)
    results: dict = {"machine": machine_info(), "args": {
        k: os.path.relpath(v, REPO_ROOT) if isinstance(v, Path) else v
        for k, v in vars(args).items()}}  # no absolute paths in committed results
    calib = {"gflops_1t_start": calibrate(1), "gflops_2t_start": calibrate(2)}
    results["peak"] = measure_peak(args.threads)
    poses = msr_poses(args.data, "msr20")
    net = build_network("msr20", 20, poses)
    ntu = build_network("ntu25", 51, np.zeros((2, 3, 50, 25, 2), np.float32))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        exported = export(net, poses, "msr20", tmp / "models")
        results["parity"] = exported.parity.as_dict()
        onnx_path = exported.onnx_path
        results["flops"] = flop_section(net, ntu, onnx_path, args.model)
        results["paired"] = [paired(net, onnx_path, poses, b, args.reps, args.threads)
                             for b in (32, 128)]
        results["ort_1t"] = [model_rates({"ort": onnx_path}, poses, b, 1, args.reps)
                             for b in (32, 128)]
        msr_file = sorted((args.data / "msr_action3d").glob("*_skeleton3D.txt"))[0]
        results["latency"] = latency(onnx_path, poses, msr_file, args.threads)
        results["int8"] = int8_comparison(args.model, args.task_dir, args.int8_recipe,
                                          args.threads, args.reps, tmp / "int8")
        if not args.skip_end_to_end:
            results["end_to_end"] = end_to_end(args.data, tmp / "models", args.repeat, tmp)
            results["archive_rss"] = archive_rss(args.data, tmp / "models", args.archive_n, tmp)
    calib.update({"gflops_1t_end": calibrate(1), "gflops_2t_end": calibrate(2)})
    results["calibration"] = calib
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["achieved"] = achieved(results)
    results["gates"] = gates(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {args.json}")
    return 0 if all(results["gates"].values()) else 1


def flop_section(net, ntu, onnx_path: Path, model: str) -> dict:
    """GFLOP per sequence of the bench model, the shipped model and the ntu25 configuration."""
    from codt_deploy.models import resolve_model
    from training.export import onnx_macs

    shipped = resolve_model(model)
    c, t, v, m = shipped.manifest.input_shape
    shipped_onnx = 2 * sum(macs for _, macs in onnx_macs(shipped.onnx_path).values()) / 1e9
    counts = {"msr20_k20_counts": flop_counts(net, onnx_path, 20, 2, 20),
              "ntu25_k51_counts": {"torch_counter_gflop": count_gflop(ntu, 25),
                                   "onnx_nodes_gflop": None,
                                   "analytic_gflop": 2 * analytic_macs(25, 2, 51)["total"] / 1e9},
              "shipped_counts": {"torch_counter_gflop": None, "onnx_nodes_gflop": shipped_onnx,
                                 "analytic_gflop": 2 * analytic_macs(
                                     v, m, shipped.manifest.num_clusters, t, c)["total"] / 1e9}}
    return {**counts, "msr20_k20_gflop": counts["msr20_k20_counts"]["onnx_nodes_gflop"],
            "ntu25_k51_gflop": counts["ntu25_k51_counts"]["torch_counter_gflop"],
            "shipped_gflop": shipped_onnx}


if __name__ == "__main__":
    sys.exit(main())
