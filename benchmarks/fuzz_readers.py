"""Fuzz the readers, the preprocessing, the archive iterator and the other user-supplied files
(labels CSV, layout files, model manifests, ``--resume`` journals) at scale; report counts per
outcome.

    python -m benchmarks.fuzz_readers --count 20000 [--seed 0] [--data ../shared/data]

Run it from the repository's root, as a module: the harness is tests/readers/fuzz_harness.py (the
suite runs 3,000 inputs of it), imported like any module of the checkout. This runs it longer and
prints the outcome table, the escapes (exceptions other than the project's errors, or failures
only the readers' safety net caught) and the non-finite preprocessing outputs. Exit status 1 if
there is any escape or non-finite output.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

from tests.readers.fuzz_harness import REPO, run_fuzz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="inputs to try (default 20000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="the real skeleton datasets (default ../shared/data)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # a damaged journal's notes: expected outcomes here
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = run_fuzz(args.count, args.seed, args.data)
    print(report.summary())
    print(f"wall time {time.perf_counter() - start:.1f} s")
    return 1 if report.escapes or report.non_finite else 0


if __name__ == "__main__":
    sys.exit(main())
