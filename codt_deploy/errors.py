"""The project's exception types. Every error raised on user input is one of these."""

from __future__ import annotations


class CodtError(Exception):
    """Base class of every error this package raises on purpose."""


class PoseFormatError(CodtError, ValueError):
    """A pose file (or array) is malformed or unsupported.

    The message always names the file, where possible the line or frame, and what was expected.
    """

    def __init__(self, path: object, problem: str, *, line: int | None = None,
                 frame: int | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.line = line
        self.frame = frame
        where = ""
        if line is not None:
            where = f" (line {line})"
        elif frame is not None:
            where = f" (frame {frame})"
        super().__init__(f"{self.path}{where}: {problem}")


class LayoutError(CodtError, ValueError):
    """A skeleton layout is unknown, or cannot supply the joints another layout needs."""


class ModelError(CodtError, RuntimeError):
    """An exported model cannot be found, fails its hash check, or has a bad manifest."""
