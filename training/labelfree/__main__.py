"""``python -m training.labelfree RUN --out NEW [--set KEY=VALUE ...]``: refit a finished run's
cluster heads (the consensus refit of :func:`training.labelfree.hooks.refit_heads`) into a new run
folder that ``training.export`` exports like any other."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.labelfree.hooks import refit_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.labelfree",
                                     description="Refit a finished run's cluster heads into a new "
                                                 "run folder.")
    parser.add_argument("run_dir", type=Path, help="a finished run (checkpoints/final.pt)")
    parser.add_argument("--out", type=Path, required=True, help="the new run folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. labelfree.refit_steps=1000 (repeatable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    record = refit_run(args.run_dir, args.out, args.overrides)
    for key in sorted(record):
        if key.startswith(("specific/head/", "shared/head/", "refit/")):
            print(f"{key}: {record[key]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
