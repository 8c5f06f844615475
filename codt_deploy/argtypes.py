"""argparse ``type=`` callables shared by the project's command-line tools.

They raise ``ArgumentTypeError`` (argparse hides a ``ValueError``'s message) naming the bad value.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_in_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """A converter accepting whole numbers in ``low..high`` (no upper bound when ``high`` is None)."""
    wanted = f"a whole number from {low} to {high}" if high is not None else \
        f"a whole number of at least {low}"

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    convert.__name__ = f"int_{low}_{high}"
    return convert


positive_int = int_in_range(1)
non_negative_int = int_in_range(0)
port_number = int_in_range(0, 65535)
