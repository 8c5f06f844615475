"""The models the app can use, loaded once each (one ONNX Runtime session per model)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from codt_deploy.infer import ClusterModel
from codt_deploy.models import DEFAULT_MODEL, available_models

log = logging.getLogger(__name__)


class ModelStore:
    """Model choices for the picker and a cache of loaded :class:`ClusterModel` objects.

    ``requested`` is the model given on the command line (a name or a path to a ``.onnx`` file);
    it is the first choice. Without one, the first choice is the model named ``default`` (the
    shipped one), else the first model found. The other choices are the models
    :func:`available_models` finds.
    Loading errors are :class:`codt_deploy.errors.ModelError` with the available models listed.
    """

    def __init__(self, requested: str | os.PathLike | None = None, *,
                 loader: Callable[[str], ClusterModel] = ClusterModel) -> None:
        found = sorted(available_models())
        if requested is not None:
            first = str(requested)
        else:  # the model named "default", else the first found (the picker offers the others)
            first = DEFAULT_MODEL if DEFAULT_MODEL in found or not found else found[0]
        self.default = first
        self.choices = [first] + [name for name in found if name != first]
        self._loader = loader
        self._loaded: dict[str, ClusterModel] = {}
        self._lock = threading.Lock()

    def get(self, choice: str | None = None) -> ClusterModel:
        """The loaded model for ``choice`` (default: the first choice), loading it on first use."""
        key = choice or self.default
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = self._loader(key)
                log.info("app model %s ready", key)
            return self._loaded[key]

    def label(self, choice: str | None = None) -> str:
        """A short name for display: the model name, or a path's file name."""
        key = choice or self.default
        return Path(key).stem if key.endswith(".onnx") else key
