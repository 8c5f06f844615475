"""Reading a small JSON or YAML file of settings (task files, run configs, layout files).

JSON needs nothing beyond the standard library; YAML needs PyYAML, which the runtime does not depend
on (it comes with the ``train`` extra). Without it a YAML file is refused with a message saying how
to install it or to write the file as JSON instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

YAML_SUFFIXES = (".yaml", ".yml")


def read_data_file(path: Path, error: type[Exception], what: str) -> Any:
    """What a JSON (``.json``) or YAML (any other suffix) file holds; ``error`` naming the file and
    ``what`` it is when it cannot be read or parsed (or when PyYAML is missing for a YAML file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise error(f"{path}: cannot read the {what}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: the {what} is not UTF-8 text: {err}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise error(f"{path}: not valid JSON: {err}") from None
    try:
        import yaml
    except ImportError:
        raise error(f"{path}: reading a YAML {what} needs PyYAML, which is not installed "
                    f"(pip install pyyaml, or the codt[train] extra); or write it as JSON "
                    f"(a .json file)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
