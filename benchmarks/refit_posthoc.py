"""Refit finished runs under other refit settings and tabulate their exported heads (a diagnostic)

    python benchmarks/refit_posthoc.py RUN_DIR [RUN_DIR ...] --out DIR \\
        [--variant NAME=KEY=VALUE,KEY=VALUE ...]

Each variant is applied to each run with ``training.refit.refit_run`` (the function training
calls after its last epoch, so a refitted run is what training with those settings would have
exported) into ``DIR/<a>-<b>-<run>-<variant>``, a-b-run the last three parts of the run's path
(runs of two tasks may share a name, seed0); the table gives the B1 head's ACC / NMI / ARI (×100,
oracle-scored: the labels choose nothing) of each run as trained and under each variant, and the
mean per variant. Without ``--variant`` it measures docs/METHOD.md §15.14's three: 3,000 fit
steps alone, the velocity graph with the features at weight 1, and at weight ½ (the recipe).
Writes ``DIR/refit-posthoc.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.refit import refit_run  # noqa: E402

METRICS = ("acc", "nmi", "ari")
DEFAULT_VARIANTS = {
    "3000 steps": ["decisions.refit_steps=3000"],
    "velocity graph, features ×1": ["decisions.refit_raw_metric=dtw_velocity",
                                    "decisions.refit_steps=3000"],
    "velocity graph, features ×½": ["decisions.refit_raw_metric=dtw_velocity",
                                    "decisions.refit_feature_weight=0.5",
                                    "decisions.refit_steps=3000"],
}


def head_scores(record: dict) -> list[float]:
    return [float(record[f"specific/head/{m}"]) for m in METRICS]


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition("=")
    if not sets:
        raise SystemExit(f"--variant {text!r}: expected NAME=KEY=VALUE[,KEY=VALUE]")
    return name, sets.split(",")


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=K=V,K=V")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    variants = dict(map(parse_variant, args.variant)) or DEFAULT_VARIANTS
    table: dict[str, dict[str, list[float]]] = {}
    for run in args.run_dirs:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        row = {"as trained": head_scores(summary.get("metrics", summary))}
        for name, overrides in variants.items():
            slug = "".join(c if c.isalnum() else "-" for c in name)
            folder = "-".join([*run.resolve().parts[-3:], slug])
            row[name] = head_scores(refit_run(run, args.out / folder, overrides))
            print(f"{run}  {name:32s} " + " / ".join(f"{v:.1f}" for v in row[name]), flush=True)
        table[str(run)] = row
    print("# mean over runs, ACC / NMI / ARI (oracle-scored)")
    for name in ["as trained", *variants]:
        mean = np.mean([row[name] for row in table.values()], axis=0)
        print(f"{name:32s} " + " / ".join(f"{v:.1f}" for v in mean))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refit-posthoc.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
