"""How well is K (the number of target actions) estimated without labels? ``num_clusters: auto``.

    python -m benchmarks.estimate_k [--raw ../shared/data] [--work DIR] [--only NAME ...]
    python -m benchmarks.estimate_k --prepared data/prepared/ucla2msr   # an already prepared task

Each target below is prepared with the project's own preparation code
(:func:`training.preparation.pipeline.prepare_task`; a small UTKinect source, only the target
matters) into ``--work`` (a temporary folder by default). On its target *train* clips (labels
withheld; the B1 layout, flattened and L2-normalised as for the raw-pose baselines) it prints:

- **auto**: :func:`training.num_clusters.estimate_num_clusters`, what ``num_clusters: auto`` uses
  (the sum of the scaled eigengap and the scaled stability);
- each of its two criteria alone (the argmax of its scores): the eigengap (mean over the 5-, 10-
  and 15-NN graphs) and the stability (minus that of a structureless reference);
- the eigengap of each graph alone (the rule of the earlier round of this script).

``design`` marks the targets looked at while the rule was chosen (the combination was picked
after seeing its two criteria fail on them separately); ``held out`` ones were added after the
rule was fixed and measured once.

The true class count comes from the prepared task (printed, never used by an estimate). Writes
``benchmarks/results/estimate_k.md`` and ``.json`` unless ``--no-write``. Targets smaller than 15
clips have one candidate (K = 2) and are left out (the NTU, PKU-MMD and Kinetics samples).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from training.labelfree.views import flattened_poses
from training.num_clusters import (
    EIGENGAP_NEIGHBOURS,
    candidate_range,
    eigengap_scores,
    estimate_num_clusters,
)
from training.preparation.prepared import load_split, load_task

REPO_ROOT = Path(__file__).resolve().parents[1]


_UTK = {"dataset": "files", "paths": ["utkinect_action3d"], "format": "utkinect",
        "layout": "kinect20"}
_MSR = {"dataset": "msr", "paths": ["msr_action3d"], "layout": "msr20", "format": "msr",
        "file_list": ["msr_action3d/files_used_in_cvpr12_paper.txt"]}
_UCLA = {"dataset": "ucla", "paths": ["nw_ucla"], "layout": "kinect20", "format": "ucla"}
# MSR Action3D's standard action subsets AS1-AS3 (Li et al., CVPR-W 2010), 8 actions each.
_MSR_SUBSETS = {"AS1": (2, 3, 5, 6, 10, 13, 18, 20), "AS2": (1, 4, 7, 8, 9, 11, 12, 14),
                "AS3": (6, 14, 15, 16, 17, 18, 19, 20)}
TARGETS: dict[str, dict] = {
    "msr": _MSR,  # the ucla2msr target
    "utkinect": _UTK,  # the ucla2utk target
    "nw_ucla": _UCLA,
    "nw_ucla_view1": {**_UCLA, "views": [1]},
    "nw_ucla_actions1-5": {**_UCLA, "classes": [1, 2, 3, 4, 5]},
    **{f"msr_{name.lower()}": {**_MSR, "classes": list(actions)}
       for name, actions in _MSR_SUBSETS.items()},
    # held out: added after the rule was fixed
    "nw_ucla_view2": {**_UCLA, "views": [2]},
    "nw_ucla_view3": {**_UCLA, "views": [3]},
    "nw_ucla_actions6-10": {**_UCLA, "classes": [6, 7, 8, 9, 10]},
    "msr_odd_subjects": {**_MSR, "subjects": [1, 3, 5, 7, 9]},
    "msr_actions1-10": {**_MSR, "classes": list(range(1, 11))},
}
HELD_OUT = ("nw_ucla_view2", "nw_ucla_view3", "nw_ucla_actions6-10", "msr_odd_subjects",
            "msr_actions1-10")


def prepare(name: str, raw: Path, work: Path) -> Path:
    """The target ``name`` of :data:`TARGETS` prepared under ``work`` (reused when present)."""
    from training.preparation.pipeline import prepare_task
    from training.preparation.tasks import TaskDefinition

    folder = work / name
    if not (folder / "task.json").exists():
        task = TaskDefinition.model_validate({"name": name, "source": _UTK, "target": TARGETS[name],
                                              "shared": "kinect20", "persons": 1})
        prepare_task(task, raw, work)
    return folder


def _best(scores: dict[int, float]) -> int:
    return max(scores, key=lambda k: (scores[k], -k))


def measure(folder: Path) -> dict:
    """Every estimate on one prepared task's target_train clips (no label is read)."""
    rows = flattened_poses(load_split(folder, "target_train", "specific").data)  # (N, C·T·V·M)
    k_min, k_max = candidate_range(len(rows))
    start = time.perf_counter()
    auto = estimate_num_clusters(rows)
    seconds = time.perf_counter() - start
    graphs = eigengap_scores(rows, list(range(k_min, k_max + 1)))
    task = load_task(folder)
    return {"name": task.name, "n": len(rows), "true_k": task.num_clusters,
            "set": "held out" if task.name in HELD_OUT else "design",
            "k_range": [k_min, k_max], "auto": auto.k, "auto_seconds": round(seconds, 1),
            "evidence": auto.to_json(), "eigengap": _best(auto.eigengap),
            "stability": _best(auto.stability),
            **{f"eigengap_{nn}": _best(graphs[nn]) for nn in EIGENGAP_NEIGHBOURS}}


def markdown(results: list[dict]) -> str:
    lines = ["| target | set | N | true K | **auto** | eigengap alone | stability alone | "
             + " | ".join(f"eigengap {nn}-NN" for nn in EIGENGAP_NEIGHBOURS) + " | candidates |",
             "|---|---|---|---|---|---|---|" + "---|" * len(EIGENGAP_NEIGHBOURS) + "---|"]
    for r in results:
        gaps = " | ".join(str(r[f"eigengap_{nn}"]) for nn in EIGENGAP_NEIGHBOURS)
        lines.append(f"| {r['name']} | {r['set']} | {r['n']} | {r['true_k']} | **{r['auto']}** | "
                     f"{r['eigengap']} | {r['stability']} | {gaps} | "
                     f"{r['k_range'][0]}..{r['k_range'][1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, help="where the targets are prepared (default: a "
                                                   "temporary folder)")
    parser.add_argument("--only", nargs="+", choices=sorted(TARGETS), help="some targets only")
    parser.add_argument("--prepared", type=Path, nargs="+", help="already prepared task folders "
                                                                 "instead of the targets")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        folders = args.prepared or [prepare(name, args.raw, work) for name in args.only or TARGETS]
        for folder in folders:
            results.append(measure(folder))
            r = results[-1]
            print(f"{r['name']}: N {r['n']}, true K {r['true_k']}, auto {r['auto']} "
                  f"({r['auto_seconds']} s), eigengap {r['eigengap']}, stability "
                  f"{r['stability']}, per graph "
                  + "/".join(str(r[f"eigengap_{nn}"]) for nn in EIGENGAP_NEIGHBOURS), flush=True)
    table = markdown(results)
    print(table)
    if not args.no_write and not args.prepared:
        out = REPO_ROOT / "benchmarks" / "results"
        (out / "estimate_k.md").write_text(
            "# Label-free estimates of K (`python -m benchmarks.estimate_k`)\n\n" + table)
        (out / "estimate_k.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
