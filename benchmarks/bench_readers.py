"""Reader throughput on the real samples: the project's NTU reader against two plain-Python ones,
plus the MSR Action3D and NW-UCLA readers.

    python benchmarks/bench_readers.py [--data ../shared/data] [--json out.json]

NTU baselines, both written here: a lean line-by-line reader (one ``float()`` per token, bodies
tracked by ID) and the reference pipeline's style (a dict of named fields per header and joint
line, as in st-gcn's ``ntu_read_skeleton.py``). NTU files are parsed from bytes already in memory,
so disk I/O is out of the picture; the 5 samples are repeated until one timing sample lasts at least
``--min-sample-ms``. Timing is paired: each sample times every reader in a shuffled order, and the
speed-up is the median of per-sample ratios, which tolerates load that changes between samples. All
three readers' outputs are checked equal before anything is timed. MSR Action3D and NW-UCLA are
timed through ``read_poses`` over all their files (page cache warm). Reported: files/s and MB/s
(medians), with the machine, library versions and load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from codt_deploy.readers import read_poses
from codt_deploy.readers.ntu import parse as parse_ntu

REPO_ROOT = Path(__file__).resolve().parents[1]


def naive_ntu(data: bytes) -> tuple[np.ndarray, list[str]]:
    """The usual reader (st-gcn ``read_skeleton`` style): one line at a time, a float() per
    token, bodies tracked by ID in first-appearance order. Returns (T, M, 25, 3) float32 and the
    body IDs in that order."""
    lines = data.decode("ascii").splitlines()
    num_frames = int(lines[0])
    frames: list[dict[str, list[list[float]]]] = []
    i = 1
    for _ in range(num_frames):
        bodies: dict[str, list[list[float]]] = {}
        for _ in range(int(lines[i])):
            body_id = lines[i + 1].split()[0]
            num_joints = int(lines[i + 2])
            joints = []
            for j in range(num_joints):
                values = [float(v) for v in lines[i + 3 + j].split()]
                joints.append(values[:3])
            bodies[body_id] = joints
            i += 2 + num_joints
        frames.append(bodies)
        i += 1
    order = list(dict.fromkeys(b for frame in frames for b in frame))
    out = np.zeros((num_frames, len(order), 25, 3), np.float32)  # (T, M, V, C)
    for t, frame in enumerate(frames):
        for body_id, joints in frame.items():
            out[t, order.index(body_id)] = joints
    return out, order


def dict_per_joint_ntu(data: bytes) -> np.ndarray:
    """The reference pipeline's style (st-gcn ``tools/utils/ntu_read_skeleton.py``, reused by
    CrosSCLR and CoDT): every header and joint line becomes a dict of named fields, then x, y, z
    are copied out for the first two bodies of each frame. Returns (T, 2, 25, 3) float32."""
    body_keys = ("bodyID", "clipedEdges", "handLeftConfidence", "handLeftState",
                 "handRightConfidence", "handRightState", "isResticted", "leanX", "leanY",
                 "trackingState")
    joint_keys = ("x", "y", "z", "depthX", "depthY", "colorX", "colorY", "orientationW",
                  "orientationX", "orientationY", "orientationZ", "trackingState")
    stream = iter(data.decode("ascii").splitlines())
    frames = []
    for _ in range(int(next(stream))):
        bodies = []
        for _ in range(int(next(stream))):
            body: dict[str, Any] = dict(zip(body_keys, (float(v) for v in next(stream).split())))
            body["jointInfo"] = [dict(zip(joint_keys, (float(v) for v in next(stream).split())))
                                 for _ in range(int(next(stream)))]
            bodies.append(body)
        frames.append(bodies)
    out = np.zeros((len(frames), 2, 25, 3), np.float32)  # (T, M, V, C)
    for t, bodies in enumerate(frames):
        for m, body in enumerate(bodies[:2]):
            for v, joint in enumerate(body["jointInfo"]):
                out[t, m, v] = (joint["x"], joint["y"], joint["z"])
    return out


def timed(work: Callable[[], object], reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        work()
    return time.perf_counter() - start


def reps_for(work: Callable[[], object], min_seconds: float, tries: int = 5) -> int:
    """Repetitions of ``work`` that take at least ``min_seconds``, from its fastest single run
    (so that a calibration slowed down by other processes does not shrink the samples)."""
    fastest = min(timed(work, 1) for _ in range(tries))
    return max(1, math.ceil(min_seconds / max(fastest, 1e-9)))


def rate(files_per_rep: int, bytes_per_rep: int, reps: int, times: list) -> dict:
    seconds = statistics.median(times)
    return {"files_per_s": files_per_rep * reps / seconds,
            "mb_per_s": bytes_per_rep * reps / seconds / 1e6,
            "median_sample_s": seconds, "reps_per_sample": reps, "samples_s": times}


def _read_all(reader: Callable[[bytes], object], blobs: list[bytes]) -> list[object]:
    return [reader(b) for b in blobs]


NTU_READERS = {
    "project (vectorised)": lambda blob: parse_ntu(blob, "x.skeleton"),
    "line-by-line": naive_ntu,
    "dict per joint (reference style)": dict_per_joint_ntu,
}


def bench_ntu(folder: Path, min_seconds: float, samples: int, seed: int = 0) -> dict:
    """Paired timing: every sample times all readers, in a shuffled order; speed-ups are the
    median of the per-sample ratios (robust to load that changes between samples)."""
    blobs = [p.read_bytes() for p in sorted(folder.glob("*.skeleton"))]
    for blob in blobs:  # same numbers before any timing; persons matched by body ID
        ours = parse_ntu(blob, "x.skeleton")[0]
        theirs, body_ids = naive_ntu(blob)
        order = [body_ids.index(b) for b in ours.meta["body_ids"]]
        np.testing.assert_array_equal(ours.data, theirs[:, order])
        reference = dict_per_joint_ntu(blob)
        np.testing.assert_array_equal(reference[:, :theirs.shape[1]], theirs[:, :2])
    work = {name: partial(_read_all, reader, blobs) for name, reader in NTU_READERS.items()}
    reps = {name: reps_for(w, min_seconds) for name, w in work.items()}
    times: dict[str, list[float]] = {name: [] for name in work}
    rng = random.Random(seed)
    for _ in range(samples):
        names = list(work)
        rng.shuffle(names)
        for name in names:
            times[name].append(timed(work[name], reps[name]))
    size = sum(len(b) for b in blobs)
    results = {name: rate(len(blobs), size, reps[name], times[name]) for name in work}
    for name in work:  # per-sample ratio of files/s against the project reader
        ratios = [(reps["project (vectorised)"] / p) / (reps[name] / t)
                  for p, t in zip(times["project (vectorised)"], times[name])]
        results[name]["project_speedup"] = statistics.median(ratios)
        results[name]["project_speedup_range"] = (min(ratios), max(ratios))
    return results


def bench_files(paths: list[Path], samples: int) -> dict:
    size = sum(p.stat().st_size for p in paths)

    def read_all() -> None:
        for path in paths:
            try:
                read_poses(path)
            except ValueError:  # MSR a13_s09_e02 is all zeros: refused, still timed
                pass

    read_all()  # warm the page cache
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        read_all()
        times.append(time.perf_counter() - start)
    return rate(len(paths), size, 1, times)


def environment() -> dict:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        sha = ""
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                 .splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "load_average": os.getloadavg(), "git_sha": sha}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                        help="folder of the real datasets (default: ../shared/data)")
    parser.add_argument("--min-sample-ms", type=float, default=50.0)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    env = environment()
    ntu = bench_ntu(args.data / "ntu_rgbd_samples", args.min_sample_ms / 1000, args.samples)
    others = {"MSR Action3D (read_poses)": bench_files(
                  sorted((args.data / "msr_action3d").glob("*_skeleton3D.txt")), args.samples),
              "NW-UCLA (read_poses)": bench_files(
                  sorted((args.data / "nw_ucla").glob("*.json")), args.samples)}
    env["load_average_end"] = os.getloadavg()
    print(f"{env['cpu']} | {env['cores']} cores | numpy {env['numpy']} | git {env['git_sha']} | "
          f"load {env['load_average'][0]:.2f} at start, {env['load_average_end'][0]:.2f} at end")
    print(f"{'reader':42} {'files/s':>9} {'MB/s':>8} {'sample ms':>10}  project x (range)")
    rows = {**{f"NTU {k}": v for k, v in ntu.items()}, **others}
    for name, row in rows.items():
        speedup = (f"{row['project_speedup']:.2f} ({row['project_speedup_range'][0]:.2f}-"
                   f"{row['project_speedup_range'][1]:.2f})") if "project_speedup" in row else ""
        print(f"{name:42} {row['files_per_s']:9.1f} {row['mb_per_s']:8.2f} "
              f"{row['median_sample_s'] * 1000:10.1f}  {speedup}")
    print("project x = median over paired samples of (project files/s) / (that reader's files/s)")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "ntu": ntu, "others": others},
                                        indent=2))


if __name__ == "__main__":
    main()
