"""Finding exported models and trusting them: the manifest, the search path and the SHA-256 check.

An exported model is two files side by side (docs/ARCHITECTURE.md, "Exported model"):
``<name>.onnx`` and ``<name>.json``, the manifest. The manifest says what the network expects (skeleton
layout and joint names, ``(N, C, T, V, M)``, the preprocessing config) and what it returns (K cluster
probabilities and a 256-d embedding, METHOD.md §10 "Inference"); the deploy code trusts it rather than
guessing from tensor shapes. The same manifest, less the ONNX file's own hash, is stored in the ONNX
``metadata_props`` under :data:`METADATA_KEY`.

Models are looked up in ``$CODT_MODEL_DIR`` (one or more folders separated by ``os.pathsep``) first,
then among the shipped models: ``codt_deploy/exported/`` in an installed wheel (package data built
from the repository's top-level ``exported/``), that ``exported/`` folder itself in a checkout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from codt_deploy.datafiles import DataError, parse_data
from codt_deploy.errors import LayoutError, ModelError
from codt_deploy.layouts import LayoutSpec, layout_from_spec, register_layout
from codt_deploy.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = 1
METADATA_KEY = "codt_manifest"  # ONNX metadata_props key holding the manifest JSON
MODEL_DIR_ENV = "CODT_MODEL_DIR"
DEFAULT_MODEL = "default"
PRECISIONS = ("fp32", "int8")


class TensorSpec(BaseModel):
    """One named network input or output; symbolic axes are strings (``"N"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    shape: tuple[int | str, ...]


class ReferenceSpec(BaseModel):
    """The model's reference bank (``codt_deploy.reference``): a file beside the model holding its
    training clips' DTW frames and the cluster the model gave each; new clips are assigned by the
    vote of their ``neighbours`` DTW-nearest training clips, searched among all of them
    (``candidates`` 0, the only value this version reads: a pruned search was retired)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str = Field(pattern=r"^[A-Za-z0-9_.+-]+\.npz$")  # a file name in the model's folder
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    clips: int = Field(ge=1)
    metric: str = "dtw_velocity"
    neighbours: int = Field(ge=1)
    candidates: int = Field(ge=0, le=0)  # 0: every bank clip is compared


class Manifest(BaseModel):
    """What an exported model expects and returns, and where it came from.

    ``input.shape`` is ``("N", C, T, V, M)``; outputs are ``probabilities`` ``(N, K)`` and
    ``embedding`` ``(N, 256)``. ``onnx_sha256`` is the hash of the ``.onnx`` file; it is absent from
    the copy inside the ONNX metadata (a file cannot contain its own hash).

    ``precision`` is ``"fp32"`` for an exported network and ``"int8"`` for its statically quantised
    twin (``python -m training.export MODEL --int8``), whose ``quantization`` records the recipe,
    the calibration data, the fp32 model it was made from (name and SHA-256) and its agreement
    with that model.

    ``layout_definition`` is the whole definition of a layout loaded from a layout file (absent for
    a built-in layout): reading the manifest registers it, so the model is usable without the
    original file.

    ``reference`` names the model's reference bank (:class:`ReferenceSpec`), with which new clips
    are assigned by their nearest training clips instead of the head's argmax; ``training`` says
    what the model was fitted to (the task's ``target_split`` and the number of target clips).

    ``eval_cluster_names`` are names from *evaluation labels*: each cluster's class under the
    Hungarian matching on the labelled eval clips at export (an oracle reading of the result, not
    something the model knows); ``nearest_source_classes`` are label-free (the source classifier's
    most likely class over each cluster's clips). Older manifests' ``cluster_names`` are read as
    ``eval_cluster_names``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = MANIFEST_SCHEMA
    name: str
    task: str
    branch: str = "specific"  # METHOD.md §10: the deployable network is F_1 -> C_1^t
    layout: str
    layout_definition: LayoutSpec | None = None  # a custom layout's definition (README "Layout files")
    joints: tuple[str, ...]
    channels: tuple[str, ...] = ("x", "y", "z")  # the input's C, = preprocess.channel_names
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    preprocess: PreprocessConfig  # how raw poses become ``input`` (a JSON object in the file)
    num_clusters: int = Field(ge=1)
    eval_cluster_names: tuple[str, ...] | None = None
    nearest_source_classes: tuple[str, ...] | None = None
    opset: int
    metrics: dict[str, Any] = Field(default_factory=dict)
    checkpoint_sha256: str | None = None
    onnx_sha256: str | None = None
    created: str
    versions: dict[str, str] = Field(default_factory=dict)
    precision: str = "fp32"
    quantization: dict[str, Any] | None = None
    reference: ReferenceSpec | None = None
    training: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_cluster_names(cls, data: Any) -> Any:
        """Manifests written before the names were marked: ``cluster_names`` came from the eval
        labels too."""
        if isinstance(data, dict) and "cluster_names" in data and "eval_cluster_names" not in data:
            data = {**data, "eval_cluster_names": data["cluster_names"]}
            data.pop("cluster_names")
        return data

    @model_validator(mode="before")
    @classmethod
    def _register_custom_layout(cls, data: Any) -> Any:
        """Register an embedded layout definition before ``preprocess`` looks its name up."""
        if isinstance(data, dict) and isinstance(data.get("layout_definition"), (dict, LayoutSpec)):
            definition = data["layout_definition"]
            spec = definition if isinstance(definition, LayoutSpec) else \
                LayoutSpec.from_data(definition, "layout_definition")
            register_layout(layout_from_spec(spec, "layout_definition"), "layout_definition")
        return data

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """``(C, T, V, M)`` of one sample."""
        c, t, v, m = self.input.shape[1:]
        return int(c), int(t), int(v), int(m)

    @property
    def embedding_dim(self) -> int:
        """D of the ``embedding`` output ``(N, D)``."""
        return next(int(o.shape[-1]) for o in self.outputs if o.name == "embedding")

    def check(self) -> None:
        """Cross-field rules; raises ModelError naming the model and the problem."""
        problems = []
        if len(self.input.shape) != 5:
            problems.append(f"input shape {self.input.shape} is not (N, C, T, V, M)")
        elif not all(isinstance(d, int) for d in self.input.shape[1:]):
            problems.append(f"input shape {self.input.shape}: C, T, V, M must be integers")
        elif self.input.shape[3] != len(self.joints):
            problems.append(f"V = {self.input.shape[3]} but {len(self.joints)} joint names")
        elif self.preprocess.output_shape != self.input_shape:
            problems.append(f"preprocessing gives (C, T, V, M) = {self.preprocess.output_shape} "
                            f"but the input is {self.input_shape}")
        if tuple(self.channels) != self.preprocess.channel_names:
            problems.append(f"channels {tuple(self.channels)} are not those of its preprocessing "
                            f"{self.preprocess.channel_names} (channels="
                            f"{self.preprocess.channels!r})")
        if self.preprocess.layout != self.layout:
            problems.append(f"preprocessing layout {self.preprocess.layout!r} is not the model's "
                            f"layout {self.layout!r}")
        if self.layout_definition is not None and (self.layout_definition.name != self.layout
                                                   or self.layout_definition.joints != self.joints):
            problems.append(f"layout_definition ({self.layout_definition.name!r}) is not the "
                            f"model's layout {self.layout!r} with its joints")
        names = [o.name for o in self.outputs]
        for needed in ("probabilities", "embedding"):
            if needed not in names:
                problems.append(f"no {needed!r} output (outputs: {names})")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        elif (self.precision == "int8") != (self.quantization is not None):
            problems.append("an int8 model needs its quantization record, an fp32 one has none")
        for field in ("eval_cluster_names", "nearest_source_classes"):
            value = getattr(self, field)
            if value is not None and len(value) != self.num_clusters:
                problems.append(f"{field} has {len(value)} entries for {self.num_clusters} clusters")
        if problems:
            raise ModelError(f"model {self.name!r}: bad manifest: " + "; ".join(problems))

    def to_json(self, *, with_onnx_hash: bool = True) -> str:
        data = self.model_dump(mode="json")
        for optional in ("layout_definition", "reference", "training"):
            if data[optional] is None:  # absent: the manifest as it always was
                data.pop(optional)
        if not with_onnx_hash:
            data.pop("onnx_sha256")
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class ResolvedModel:
    """A located, hash-verified model: the ONNX file and its manifest."""

    onnx_path: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def reference_path(self) -> Path | None:
        """The reference bank's file, beside the ONNX file; None when the model has none."""
        spec = self.manifest.reference
        return None if spec is None else self.onnx_path.parent / spec.file


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_dirs() -> list[Path]:
    """The folders searched for models: ``$CODT_MODEL_DIR`` entries first, then ``exported/``."""
    dirs = [Path(p) for p in os.environ.get(MODEL_DIR_ENV, "").split(os.pathsep) if p]
    dirs.append(_package_exported_dir())
    return dirs


def _package_exported_dir() -> Path:
    """The shipped models: ``codt_deploy/exported`` when installed from a wheel, else the
    top-level ``exported/`` of the checkout this package runs from (editable installs too).

    Nothing outside this package is searched unless it is a checkout (has ``pyproject.toml``),
    so an unrelated ``exported`` folder or module next to an installed copy is never used.
    """
    here = Path(__file__).resolve().parent
    installed = here / "exported"
    checkout = here.parent
    if installed.is_dir() or not (checkout / "pyproject.toml").is_file():
        return installed
    return checkout / "exported"


def available_models() -> dict[str, Path]:
    """Model name -> ``.onnx`` path for every model with a manifest in :func:`model_dirs`.

    When two folders hold the same name, the earlier folder (``$CODT_MODEL_DIR``) wins.
    """
    found: dict[str, Path] = {}
    for folder in model_dirs():
        if not folder.is_dir():
            continue
        for onnx_path in sorted(folder.glob("*.onnx")):
            if onnx_path.with_suffix(".json").is_file():
                found.setdefault(onnx_path.stem, onnx_path)
    return found


def load_manifest(json_path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest file; raises ModelError naming the file and the problem."""
    json_path = Path(json_path)
    try:
        data = parse_data(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{json_path}: manifest not found; every exported model needs its "
                         f"<name>.json beside <name>.onnx (written by `python -m training.export`)"
                         ) from None
    except (OSError, UnicodeDecodeError, DataError) as exc:
        raise ModelError(f"{json_path}: cannot read the manifest: {exc}") from None
    try:
        manifest = Manifest.model_validate(data)
    except (ValidationError, LayoutError) as exc:
        raise ModelError(f"{json_path}: invalid manifest: {exc}") from exc
    manifest.check()
    return manifest


def locate_model(name_or_path: str | os.PathLike) -> Path:
    """The ``.onnx`` path for a model name or a path (to the .onnx, the .json, or without suffix);
    its manifest is the ``.json`` beside it. Raises ModelError when there is none."""
    text = str(name_or_path)
    path = Path(text)
    has_dir = os.sep in text or "/" in text
    if has_dir or path.suffix in (".onnx", ".json"):
        onnx_path = path.with_suffix(".onnx") if path.suffix in (".onnx", ".json") else \
            path.with_name(path.name + ".onnx")
        if onnx_path.is_file():
            return onnx_path
        if has_dir:
            raise ModelError(f"model file {onnx_path} not found")
        text = path.stem  # "name.onnx" not in the working folder: look the name up
    models = available_models()
    if text in models:
        return models[text]
    if text == DEFAULT_MODEL:
        chosen = _default_choice(models)
        if chosen is not None:
            return chosen
    where = ", ".join(str(d) for d in model_dirs())
    if text == DEFAULT_MODEL and models:
        raise ModelError(f"no model named {DEFAULT_MODEL!r} and several target-specific ones "
                         f"are available "
                         f"({', '.join(sorted(models))}); pick one with --model NAME")
    listing = ", ".join(sorted(models)) or "none"
    raise ModelError(f"model {text!r} not found; available models = {listing} "
                     f"(searched {where}; add folders with ${MODEL_DIR_ENV} or pass a path to "
                     f"a .onnx file)")


def _default_choice(models: dict[str, Path]) -> Path | None:
    """Without a model named "default": the only model, else the only target-specific fp32 one
    (an int8 twin is chosen by name only)."""
    if len(models) == 1:
        return next(iter(models.values()))
    specific = []
    for path in models.values():
        try:
            manifest = load_manifest(path.with_suffix(".json"))
            if manifest.branch == "specific" and manifest.precision == "fp32":
                specific.append(path)
        except ModelError:
            continue  # a broken model is reported when it is asked for by name
    return specific[0] if len(specific) == 1 else None


def resolve_model(name_or_path: str | os.PathLike, *, verify: bool = True) -> ResolvedModel:
    """Find a model by name or path, read its manifest and verify the file's SHA-256.

    Raises ModelError when the model is missing ("not found; available models = ..."), the
    manifest is missing or invalid, or the ONNX file's hash differs from ``manifest.onnx_sha256``.
    """
    onnx_path = locate_model(name_or_path)
    manifest = load_manifest(onnx_path.with_suffix(".json"))
    if verify:
        if not manifest.onnx_sha256:
            raise ModelError(f"{onnx_path.with_suffix('.json')}: manifest has no onnx_sha256; "
                             f"re-export the model")
        actual = sha256_file(onnx_path)
        if actual != manifest.onnx_sha256:
            raise ModelError(f"{onnx_path}: SHA-256 mismatch: file is {actual}, manifest says "
                             f"{manifest.onnx_sha256}; the file is corrupt or was replaced")
    resolved = ResolvedModel(onnx_path=onnx_path, manifest=manifest)
    bank = resolved.reference_path
    if verify and bank is not None and manifest.reference is not None:
        if not bank.is_file():
            raise ModelError(f"{bank}: the reference bank of model {manifest.name!r} is missing "
                             f"(it is written beside the .onnx file by the export)")
        actual = sha256_file(bank)
        if actual != manifest.reference.sha256:
            raise ModelError(f"{bank}: SHA-256 mismatch: file is {actual}, manifest says "
                             f"{manifest.reference.sha256}; the file is corrupt or was replaced")
    log.debug("resolved model %s -> %s", name_or_path, onnx_path)
    return resolved
