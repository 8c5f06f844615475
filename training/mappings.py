"""Nested mappings shared by run configs and task definitions: deep-merging one into another
(reading one from a YAML or JSON file: :func:`codt_deploy.datafiles.read_data_file`)."""

from __future__ import annotations

import copy
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
