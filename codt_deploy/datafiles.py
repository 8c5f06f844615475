"""Parsing the JSON and YAML that users supply, and reading a small settings file of either kind.

:func:`parse_data` is the one parser of user-supplied JSON and YAML: JSON pose files (through the
readers' ``load_json``), layout files, task files and run configs (through :func:`read_data_file`),
model manifests and ``--resume`` journal lines. Whatever the text holds, it raises only
:class:`DataError`: a syntax error names its line, and what goes past the parsers' limits (nesting
deeper than the interpreter's recursion limit, an integer of more than 4,300 digits) is an
"unreadable" document rather than a ``RecursionError`` or ``ValueError`` traceback.

JSON needs nothing beyond the standard library; YAML needs PyYAML, which the runtime does not depend
on (it comes with the ``train`` extra). Without it a YAML file is refused with a message saying how
to install it or to write the file as JSON instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from codt_deploy.errors import CodtError

YAML_SUFFIXES = (".yaml", ".yml")
DataKind = Literal["json", "yaml"]
_NEEDS_PYYAML = ("needs PyYAML, which is not installed (pip install pyyaml, or the codt[train] "
                 "extra); or write it as JSON (a .json file)")
_SHOWN_CHARS = 120  # of a parser's message about a limit (it may quote the input)


class DataError(CodtError, ValueError):
    """A JSON or YAML text that cannot be parsed: ``problem`` says why, ``line`` (1-based) where,
    when the parser knows. Callers turn it into their own error naming the file."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        self.problem, self.line = problem, line
        super().__init__(problem if line is None else f"{problem} (line {line})")

    def naming(self, source: object) -> str:
        """The message naming the file: ``source (line N): problem``."""
        where = "" if self.line is None else f" (line {self.line})"
        return f"{source}{where}: {self.problem}"


def parse_data(text: str, kind: DataKind = "json") -> Any:
    """What a JSON or YAML (``kind``) text holds; :class:`DataError` if it cannot be parsed.

    YAML is read with ``yaml.safe_load`` (no Python objects); without PyYAML it is a DataError
    saying how to install it."""
    if kind == "json":
        return _parse_json(text)
    return _parse_yaml(text)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except (ValueError, RecursionError) as exc:  # a 5,000-digit integer, absurd nesting
        raise DataError(f"unreadable JSON: {_limit_message(exc)}") from None


def _parse_yaml(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise DataError(f"reading YAML {_NEEDS_PYYAML}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise DataError(f"invalid YAML: {exc.problem or exc}",
                        mark.line + 1 if mark is not None else None) from None
    except yaml.YAMLError as exc:
        raise DataError(f"invalid YAML: {exc}") from None
    except (ValueError, RecursionError, OverflowError) as exc:
        raise DataError(f"unreadable YAML: {_limit_message(exc)}") from None


def _limit_message(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:_SHOWN_CHARS]


def yaml_available() -> bool:
    try:
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


def data_kind(path: Path) -> DataKind:
    """JSON for a ``.json`` file, YAML for any other suffix."""
    return "json" if path.suffix.lower() == ".json" else "yaml"


def read_data_file(path: Path, error: type[Exception], what: str) -> Any:
    """What a JSON (``.json``) or YAML (any other suffix) file holds; ``error`` naming the file and
    ``what`` it is when it cannot be read or parsed (or when PyYAML is missing for a YAML file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise error(f"{path}: cannot read the {what}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: the {what} is not UTF-8 text: {err}") from None
    kind = data_kind(path)
    if kind == "yaml" and not yaml_available():
        raise error(f"{path}: reading a YAML {what} {_NEEDS_PYYAML}")
    try:
        return parse_data(text, kind)
    except DataError as err:
        raise error(err.naming(path)) from None
