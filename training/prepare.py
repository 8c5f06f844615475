"""``python -m training.prepare TASK --raw DIR --out DIR``: raw pose files → a prepared task.

The command line of :mod:`training.preparation`: the task named (a built-in one, or a task file)
with the selection flags applied, :func:`~training.preparation.pipeline.prepare_task`, then a
summary. A file that cannot be read is reported and skipped; the run carries on, prints the summary
and exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from codt_deploy.argtypes import positive_int
from codt_deploy.errors import CodtError
from training.config import PREPARED_ROOT
from training.preparation.pipeline import PrepareError, prepare_task
from training.preparation.tasks import (
    TASKS,
    TaskDefinition,
    get_task,
    load_task_file,
    read_mapping,
    validate_task,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RAW = REPO_ROOT.parent / "shared" / "data"


def _class_list(text: str) -> str | tuple:
    if text == "all":
        return "all"
    return tuple(int(t) if t.strip().isdigit() else t.strip() for t in text.split(",") if t.strip())


def resolve_task(args: argparse.Namespace) -> TaskDefinition:
    """The task named on the command line, with --config and the selection flags applied."""
    task_arg = Path(args.task)
    own_file = task_arg if task_arg.suffix.lower() in (".yaml", ".yml", ".json") else args.config
    if args.task not in TASKS and own_file is not None:
        if args.target_split is not None:
            raise PrepareError("--target-split names the splits of built-in tasks; set "
                               "target_split in your task file instead")
        task = load_task_file(own_file, name=None if own_file == task_arg else args.task)
    else:
        overrides = read_mapping(args.config) if args.config is not None else None
        task = get_task(args.task, overrides=overrides, target_split=args.target_split)
    changes: dict = {}
    for role in ("source", "target"):
        domain: dict = {}
        if role == "source" and args.source_select == "all":
            domain.update(classes="all", subjects=None, setups=None, views=None, part=None)
        classes = getattr(args, f"{role}_classes")
        if classes is not None:
            domain["classes"] = _class_list(classes)
        labels = getattr(args, f"{role}_labels")
        if labels is not None:
            domain["labels"] = (str(Path(labels).resolve()),)
        if domain:
            changes[role] = {**getattr(task, role).model_dump(), **domain}
    if args.num_clusters is not None:
        changes["num_clusters"] = args.num_clusters
    if not changes:
        return task
    return validate_task({**task.model_dump(), **changes}, f"task {task.name!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.prepare", description=__doc__.split("\n\n")[0],
        epilog=f"built-in tasks: {', '.join(TASKS)}; any other name needs --config TASK_FILE")
    parser.add_argument("task", help="a built-in task, or a name/path for a task file (YAML/JSON)")
    parser.add_argument("--raw", type=Path, default=DEFAULT_RAW,
                        help="folder holding the raw datasets (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=PREPARED_ROOT,
                        help="where <task>/ is written (default: data/prepared/ in the "
                             "repository, where training looks)")
    parser.add_argument("--config", type=Path, help="YAML/JSON: overrides of a built-in task, "
                                                    "or a whole task of your own")
    parser.add_argument("--target-split", help="a named target split (e.g. all, cross_subject)")
    parser.add_argument("--source-classes", help="'all' (every class found) or comma-separated ids")
    parser.add_argument("--target-classes", help="'all' (every class found) or comma-separated ids")
    parser.add_argument("--source-select", choices=["all"],
                        help="'all': no class/subject/setup/view filter on the source "
                             "(--source-classes still applies)")
    parser.add_argument("--source-labels", help="labels CSV or PKU label folder of the source")
    parser.add_argument("--target-labels", help="labels CSV or PKU label folder of the target")
    parser.add_argument("--num-clusters", metavar="K|auto",
                        help="K of the task: an integer >= 2, or 'auto' to estimate it from the "
                             "unlabelled target poses (overrides the task's num_clusters)")
    parser.add_argument("--limit", type=positive_int, help="at most N files per domain, evenly "
                                                        "spread (tests and smoke runs)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow pickle inputs (pyskl); pickles can run code: trusted data only")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")
    return parser


def _k_origin(summary: dict) -> str:
    origin = summary.get("num_clusters_from", "task")
    return {"estimated": "num_clusters: auto, estimated without labels",
            "task": "from the task", "target classes": "the number of target classes"}[origin]


def estimate_evidence(estimate: dict, top: int = 6) -> str:
    """The recorded ``num_clusters_estimate`` of a task.json as one line of evidence."""
    low, high = estimate["k_range"]
    scores = {int(k): v for k, v in estimate["scores"].items()}
    if not scores:
        return f"estimate: K = {estimate['k']} ({estimate['method']}, candidates {low}..{high})"
    best = sorted(scores, key=lambda k: (-scores[k], k))[:top]
    shown = ", ".join(f"{k}: {scores[k]:.2f} = {estimate['eigengap'][str(k)]:.2f} + "
                      f"{estimate['stability'][str(k)]:.2f}" for k in best)
    return (f"estimate on {estimate['n']} target_train clips, K in {low}..{high}, score = "
            f"eigengap + stability (each scaled to 0..1; best first): {shown}")


def print_summary(summary: dict, folder: Path) -> None:
    """The closing report: per-domain clips and classes, per-split counts, failures."""
    for role in ("source", "target"):
        d = summary[role]
        clips = summary["splits"]["source_train" if role == "source" else "target_eval"]["samples"]
        if role == "target" and summary["task_spec"]["target_split"]["mode"] != "all":
            clips += summary["splits"]["target_train"]["samples"]
        extra = "".join(f", {n:,} {why}" for why, n in {**d["skipped"], **d["filtered"]}.items())
        print(f"{role}: {d['dataset_name']}: {clips:,} clips / {len(d['class_keys'])} classes "
              f"({d['files']:,} files{extra}, {d['failed']} failed)")
    for split, info in summary["splits"].items():
        labels = "labelled" if info["labelled"] else "labels withheld"
        layouts = ", ".join(info["layouts"])
        print(f"  {split:<13} {info['samples']:>7,} samples  {layouts:<18} {labels}")
    print(f"K = {summary['num_clusters']} ({_k_origin(summary)}); layouts "
          f"shared={summary['layouts']['shared']} specific={summary['layouts']['specific']}; "
          f"written to {folder}")
    estimate = summary.get("num_clusters_estimate")
    if estimate:
        print(f"  {estimate_evidence(estimate)}")
    model, source = summary["channels"], summary.get("source_channels", summary["channels"])
    if source != model:
        how = "projected after alignment" if source == "xyz" else "converted"
        rotation = summary["task_spec"]["source"].get("view_rotation") or 0
        how += f", view rotation ±{rotation:g}°" if rotation else ""
        print(f"channels {model}: the model reads the target's; the {source} source is {how}")
    else:
        print(f"channels {model}")
    if summary["failures"]:
        print(f"{len(summary['failures'])} file(s) failed:")
        for failure in summary["failures"]:
            print(f"  {failure['file']}: {failure['reason']}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(message)s")
    try:
        task = resolve_task(args)
        summary = prepare_task(task, args.raw, args.out, limit=args.limit,
                               trust_pickle=args.trust_pickle)
    except CodtError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_summary(summary, args.out / task.name)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
