"""Restricted unpicklers for the two pickle inputs a user may *trust* (docs/FORMATS.md §1,
"Pickle policy").

Unpickling can call any importable function; these unpicklers resolve no global at all
(``load_plain``: CrosSCLR ``label.pkl`` holds only lists) or only numpy's array reconstructors
(``load_numpy``: pyskl annotations). They are defence in depth, used only after the caller opted in
with ``trust_pickle=True``; uploads are never unpickled.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from codt_deploy.errors import PoseFormatError

_NUMPY_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol 2 stores bytes as _codecs.encode(str, "latin1")
})


class _Restricted(pickle.Unpickler):
    def __init__(self, stream: io.BufferedIOBase, source: str, allowed: frozenset) -> None:
        super().__init__(stream)
        self._source = source
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._allowed:
            raise PoseFormatError(self._source, f"refusing to load {module}.{name} from a pickle: "
                                                f"only plain data and numpy arrays are accepted")
        return super().find_class(module, name)


def _load(path: Path, allowed: frozenset) -> object:
    try:
        with path.open("rb") as stream:
            return _Restricted(stream, str(path), allowed).load()
    except PoseFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise PoseFormatError(path, f"not a readable pickle ({type(exc).__name__}: "
                                    f"{str(exc)[:120]})") from None


def load_plain(path: Path) -> object:
    """Unpickle lists, tuples, dicts, strings and numbers only; every global is refused."""
    return _load(path, frozenset())


def load_numpy(path: Path) -> object:
    """Unpickle plain data plus numpy arrays and scalars; every other global is refused."""
    return _load(path, _NUMPY_GLOBALS)
