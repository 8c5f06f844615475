"""Nested mappings shared by run configs and task definitions: reading one from a YAML or JSON
file, and deep-merging one into another."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``update`` merged in: dicts merge key by key, anything else (copied)
    replaces."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_data_file(path: Path, error: type[Exception], what: str) -> Any:
    """What a JSON (``.json``) or YAML (any other suffix) file holds; ``error`` naming the file and
    ``what`` it is when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise error(f"{path}: cannot read the {what}: {err.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise error(f"{path}: not valid JSON: {err}") from None
    import yaml  # training extra

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
