"""Fuzz the readers, the preprocessing and the archive iterator at scale; report counts per outcome.

    python benchmarks/fuzz_readers.py --count 20000 [--seed 0] [--data ../shared/data]

The harness is tests/readers/fuzz_harness.py (the suite runs 3,000 inputs of it); this runs it
longer and prints the outcome table, the escapes (exceptions other than the project's errors,
or failures only the readers' safety net caught) and the non-finite preprocessing outputs. Exit
status 1 if there is any escape or non-finite output.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.readers.fuzz_harness import run_fuzz  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="inputs to try (default 20000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="the real skeleton datasets (default ../shared/data)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = run_fuzz(args.count, args.seed, args.data)
    print(report.summary())
    print(f"wall time {time.perf_counter() - start:.1f} s")
    return 1 if report.escapes or report.non_finite else 0


if __name__ == "__main__":
    sys.exit(main())
