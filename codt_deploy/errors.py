"""The project's exception types. Every error raised on user input is one of these."""

from __future__ import annotations

import lzma
import struct
import tarfile
import zipfile
import zlib


class CodtError(Exception):
    """Base class of every error this package raises on purpose."""


class InputFileError(CodtError, ValueError):
    """An input file is malformed. The message names the file, where possible the line or frame,
    and what was expected."""

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


class PoseFormatError(InputFileError):
    """A pose file (or array) is malformed or unsupported."""


class LabelsError(InputFileError):
    """A labels CSV is unreadable or malformed (see :mod:`codt_deploy.labels`)."""


class LayoutError(CodtError, ValueError):
    """A skeleton layout is unknown, or cannot supply the joints another layout needs."""


class ModelError(CodtError, RuntimeError):
    """An exported model cannot be found, fails its hash check, or has a bad manifest."""


class UnforeseenInputError(PoseFormatError):
    """A reader failed on an input in a way its own checks did not foresee.

    ``read_poses``/``read_bytes`` turn any other exception a reader raises into this error, so that
    the input is still reported as one file's failure; each occurrence is a reader bug to fix (the
    fuzz test in tests/readers asserts there are none).
    """


#: What the standard library's archive and compression modules raise on corrupt or hostile input
#: (an encrypted member, an unsupported method, a broken deflate/bzip2/LZMA stream, bad headers).
ARCHIVE_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, tarfile.TarError,
                       RuntimeError, NotImplementedError, EOFError, OSError, ValueError,
                       OverflowError, struct.error)
