"""Frozen, validated training configuration: sections, task presets, YAML and ``--set`` overrides.

Defaults are the values of docs/METHOD.md §6 (loss weights), §5/§7/§10 (constants, schedule) and
the decision table §11 (switches D1, D3, D5, D8, D13). Every section is a frozen pydantic model
with ``extra="forbid"``: an unknown key fails and names itself. Cross-field rules live in one place,
:meth:`TrainConfig.validate`. YAML only serialises these models.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codt_deploy.datafiles import read_data_file
from codt_deploy.errors import CodtError
from training.mappings import deep_merge

TASKS = ("ntu2pku", "ntu2skeletics", "skeletics2pku", "finegym2skeletics", "kinetics2ntu", "ucla2msr")
Components = Literal["bm", "bm+ocm", "bm+ocm+ccm"]


class ConfigError(CodtError, ValueError):
    """A training configuration (file, preset or override) is invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Section):
    """Which prepared task folder to train on (docs/ARCHITECTURE.md, "Prepared task folder")."""

    task: str = "ucla2msr"
    prepared_dir: str | None = None  # the task folder itself; None = data/prepared/<task> in the repository
    raw_dir: str | None = None  # raw datasets for training.prepare; None = ../shared/data
    task_file: str | None = None  # a user's task file (preparation.tasks.load_task_file), prepared if missing
    source_limit: int | None = Field(None, ge=1)  # keep the first n samples (tests, smoke runs)
    target_train_limit: int | None = Field(None, ge=1)
    target_eval_limit: int | None = Field(None, ge=1)


# Where training.prepare writes a task by default, and where a run looks for it.
PREPARED_ROOT = Path(__file__).resolve().parents[1] / "data" / "prepared"


def prepared_task_dir(task: str) -> Path:
    """The default prepared folder of a task: data/prepared/<task> in the repository."""
    return PREPARED_ROOT / task


def task_dir(config: TrainConfig) -> Path:
    """The prepared task folder of a run: ``data.prepared_dir``, else data/prepared/<task>."""
    if config.data.prepared_dir:
        return Path(config.data.prepared_dir).resolve()
    return prepared_task_dir(config.data.task)


class ModelConfig(_Section):
    """Network shape (METHOD §3, §5). ``num_clusters`` None = the task's class count K (D7)."""

    num_clusters: int | None = Field(None, ge=2)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)

    @property
    def network_options(self) -> dict:
        """The keyword arguments of ``training.model.build_model`` that come from this section."""
        return {"dropout": self.dropout}

    def clusters_for(self, task_clusters: int) -> int:
        """K of a run: ``num_clusters`` when set, else the task's class count (D7)."""
        return self.num_clusters or task_clusters


class OptimConfig(_Section):
    """SGD schedule of METHOD §10: stage 1 (BM) at lr 0.1, then stage 2 at lr 0.01."""

    lr_stage1: float = Field(0.1, gt=0.0)
    lr_stage2: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    nesterov: bool = False
    epochs_stage1: int = Field(150, ge=0)
    epochs_stage2: int = Field(150, ge=0)
    batch_source: int = Field(128, ge=2)  # global, split across DDP ranks
    batch_target: int = Field(128, ge=2)
    drop_last: bool = True


class LossWeights(_Section):
    """λ of METHOD §6 (code keys w_ce, w_dec, w_un, w_cls, w_cls1)."""

    supervised: float = Field(1.0, ge=0.0)
    reconstruction: float = Field(20.0, ge=0.0)
    contrastive: float = Field(1.0, ge=0.0)
    ocm: float = Field(5.0, ge=0.0)
    ccm: float = Field(10.0, ge=0.0)
    anchor: float = Field(0.0, ge=0.0)  # §15.2 CE of both heads to the anchors; 0 = the paper


class Constants(_Section):
    """α, τ, ξ and the Sinkhorn limits (METHOD §5–§7, §10)."""

    ema_momentum: float = Field(0.999, ge=0.0, le=1.0)
    temperature: float = Field(0.07, gt=0.0)
    sinkhorn_xi: float = Field(10.0, gt=0.0)
    sinkhorn_iters: int = Field(100, ge=1)
    sinkhorn_tol: float = Field(1e-2, gt=0.0)
    kmeans_iters: int = Field(100, ge=1)


class AugmentConfig(_Section):
    """Augmentation switches (METHOD §10; D3, D5). Teachers are always weak."""

    student_strong_aug: bool = True  # D3: False = the reference code (weak students in stage 2)
    mask_in_stage1: bool = False  # D5: True = mask student views in stage 1 too (reference)
    mask_source: bool = False  # D5: True = mask the source view (reference)


class DecisionConfig(_Section):
    """Switches for the decisions of METHOD §11 where the paper and the reference code differ."""

    kmeans_init: bool = True  # D1: spherical k-means into both cluster heads between the stages
    bank_init: bool = True  # D13: fill the banks with one teacher pass before epoch 1
    ccm_rho: float | None = Field(None, gt=0.0)  # D8: P̄_ij = softmax_j(ρ p_i·p_j) when set


class LabelFreeConfig(_Section):
    """The label-free steps of ``--recipe cpu`` (``training.labelfree``, METHOD §15); all off in
    the paper presets.

    ``anchors``: both heads learn the spectral partition of the target clips' raw-pose DTW graph
    from epoch 1 (at weight ``loss.anchor``), instead of a k-means initialisation between the
    stages; ``recalibrate_bn``: precise BatchNorm before the stage-2 start, each evaluation and
    the final checkpoint; ``refit``: after the last epoch both heads are refitted to the
    consensus partition of the B1 features and the raw poses, for ``refit_steps`` Adam steps.
    """

    anchors: bool = False
    recalibrate_bn: bool = False
    refit: bool = False
    refit_steps: int = Field(3000, ge=1)


class AblationConfig(_Section):
    """Paper rows (METHOD §12 Table 1/2): which stage-2 components run, and B0 without its decoder."""

    components: Components = "bm+ocm+ccm"
    shared_decoder: bool = True  # False = "BM-B0 w/o D0": no reconstruction loss


class EvalConfig(_Section):
    """Evaluation on the target eval split (METHOD §10): heads' argmax and † spherical k-means."""

    every: int = Field(5, ge=1)  # epochs; the last epoch of each stage is always evaluated
    kmeans_seeds: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)


class RuntimeConfig(_Section):
    """How the run executes; none of these change the method."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False  # bfloat16 autocast for the student/teacher forward passes
    threads: int | None = Field(None, ge=1)  # torch intra-op threads; None = leave as is
    num_workers: int = Field(0, ge=0)  # 0 = batches built and augmented in the main process
    fuse_shared_student: bool = False  # source + target through F_0 in one pass (shares BN stats)
    fast_dropout: bool = True  # same dropout distribution, faster mask sampling (model.FastDropout)
    sync_batchnorm: bool = True  # under DDP on CUDA
    progress: bool = True
    checkpoint_every: int = Field(1, ge=1)


class TrainConfig(_Section):
    """The resolved configuration of one training run; saved with every run and checkpoint."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossWeights = LossWeights()
    constants: Constants = Constants()
    augment: AugmentConfig = AugmentConfig()
    decisions: DecisionConfig = DecisionConfig()
    labelfree: LabelFreeConfig = LabelFreeConfig()
    ablation: AblationConfig = AblationConfig()
    eval: EvalConfig = EvalConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    seed: int = 0

    def validate(self) -> TrainConfig:  # type: ignore[override]
        """Check the cross-field rules; return self or raise :class:`ConfigError` naming the keys."""
        problems = []
        if self.optim.epochs_stage1 + self.optim.epochs_stage2 == 0:
            problems.append("optim.epochs_stage1 + optim.epochs_stage2 must be > 0")
        if self.optim.epochs_stage2 > 0 and self.ablation.components != "bm" \
                and not self.decisions.kmeans_init and self.optim.epochs_stage1 == 0:
            problems.append("stage 2 without stage 1 needs decisions.kmeans_init (random heads)")
        if self.ablation.components == "bm+ocm+ccm" and self.loss.ccm > 0 and self.loss.ocm == 0:
            problems.append("loss.ccm > 0 needs loss.ocm > 0 (CCM exchanges OCM pseudo-labels)")
        if self.decisions.ccm_rho is not None and self.ablation.components != "bm+ocm+ccm":
            problems.append("decisions.ccm_rho is set but ablation.components has no CCM")
        if self.data.task not in TASKS and self.data.prepared_dir is None and self.data.task_file is None:
            problems.append(f"data.task {self.data.task!r} is not a built-in task "
                            f"({', '.join(TASKS)}); set data.task_file to its task file or "
                            f"data.prepared_dir to its prepared folder")
        if self.loss.anchor > 0 and not self.labelfree.anchors:
            problems.append("loss.anchor > 0 needs labelfree.anchors (the partition to predict)")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        return self

    # ------------------------------------------------------------------ derived values
    def lr(self, stage: int) -> float:
        return self.optim.lr_stage1 if stage == 1 else self.optim.lr_stage2

    @property
    def total_epochs(self) -> int:
        return self.optim.epochs_stage1 + self.optim.epochs_stage2

    def stage_of(self, epoch: int) -> int:
        """Stage of a 1-based global epoch: 1..E1 is stage 1, E1+1..E1+E2 stage 2."""
        return 1 if epoch <= self.optim.epochs_stage1 else 2

    @property
    def uses_ocm(self) -> bool:
        return self.ablation.components in ("bm+ocm", "bm+ocm+ccm")

    @property
    def uses_ccm(self) -> bool:
        return self.ablation.components == "bm+ocm+ccm"

    @property
    def reconstruction_weight(self) -> float:
        return self.loss.reconstruction if self.ablation.shared_decoder else 0.0


# ---------------------------------------------------------------------- building and overrides

def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        msg = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{key}: {msg}")
    return f"{origin}: " + "; ".join(lines)


def from_dict(values: dict[str, Any], *, origin: str = "config") -> TrainConfig:
    """Build and validate a config from nested dicts; unknown keys raise :class:`ConfigError`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(values).__name__}")
    try:
        config = TrainConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None
    return config.validate()


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (JSON/YAML-safe) of a config."""
    return config.model_dump(mode="json")


_PRESETS: dict[str, dict[str, Any]] = {
    # K comes from the prepared task (D7); the paper's schedule is the default.
    "ntu2pku": {"data": {"task": "ntu2pku"}},
    "ntu2skeletics": {"data": {"task": "ntu2skeletics"}},
    "skeletics2pku": {"data": {"task": "skeletics2pku"}},
    "finegym2skeletics": {"data": {"task": "finegym2skeletics"}},
    "kinetics2ntu": {"data": {"task": "kinetics2ntu"}},
    "ucla2msr": {"data": {"task": "ucla2msr"}},
    # The paper's method, unchanged, at a size that fits a 2-core CPU: batches of 32 give 17 steps
    # per epoch on the 557-sample target (850 in all instead of the paper's 44k), so the teachers'
    # EMA horizon shrinks with it (α 0.99: ~100 steps, as 0.999 is ~1000 of 44k); evaluation only
    # at the end of each stage. --recipe cpu is this schedule sized from any task, plus the
    # label-free steps.
    "ucla2msr-paper-cpu": {
        "data": {"task": "ucla2msr"},
        "optim": {"epochs_stage1": 30, "epochs_stage2": 20, "batch_source": 32, "batch_target": 32},
        "constants": {"ema_momentum": 0.99},
        "eval": {"every": 1000},
        "runtime": {"device": "cpu", "threads": 2},
    },
}


def available_presets() -> list[str]:
    return sorted(_PRESETS)


def preset_dict(name: str) -> dict[str, Any]:
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(available_presets())}")
    return copy.deepcopy(_PRESETS[name])


def preset(name: str) -> TrainConfig:
    """The built-in configuration of a task (``ntu2pku`` ... ``ucla2msr``, ``ucla2msr-paper-cpu``)."""
    return from_dict(preset_dict(name), origin=f"preset {name!r}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``optim.lr_stage1=0.05`` into (["optim", "lr_stage1"], 0.05); values are YAML scalars."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. optim.lr_stage1=0.05")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: cannot parse the value: {err}") from None
    return key.strip().split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested dict; a key outside the schema raises ConfigError."""
    out = copy.deepcopy(values)
    for text in overrides:
        path, value = parse_override(text)
        model: type[BaseModel] = TrainConfig
        node = out
        for depth, part in enumerate(path):
            if part not in model.model_fields:
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"override {text!r}: unknown key {where!r}; "
                                  f"valid keys here: {', '.join(model.model_fields)}")
            annotation = model.model_fields[part].annotation
            if depth == len(path) - 1:
                node[part] = value
            else:
                if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                    raise ConfigError(f"override {text!r}: {'.'.join(path[:depth + 1])!r} is not a section")
                node = node.setdefault(part, {})
                model = annotation
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or ``.json``) config file into a dict (not yet validated); empty is ``{}``."""
    path = Path(path)
    values = read_data_file(path, ConfigError, "config file")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return values


def save_yaml(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (round-trips through :func:`from_dict`)."""
    import yaml

    path = Path(path)
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
    return path


def _task_file_name(path: Path) -> str:
    """The ``name`` a user's task file gives itself, else its file name without the suffix."""
    from training.preparation.tasks import read_mapping

    if not path.is_file():
        raise ConfigError(f"{path}: task file not found")
    name = read_mapping(path).get("name")
    return str(name) if name else path.stem


def _config_values(task: str | None, config_file: str | Path | None, overrides: list[str] | None,
                   recipe: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The merged, not yet validated sections of :func:`resolve_config` and where they came from."""
    values: dict[str, Any] = {}
    origin = "config"
    if task is not None and Path(task).suffix.lower() in (".yaml", ".yml", ".json"):
        values = {"data": {"task": _task_file_name(Path(task)), "task_file": str(Path(task).resolve())}}
        origin = f"task file {task}"
    elif task is not None:
        values = preset_dict(task) if task in _PRESETS else {"data": {"task": task}}
        origin = f"task {task!r}"
    if config_file is not None:
        values = deep_merge(values, load_yaml(config_file))
        origin = str(config_file)
    if recipe:
        values = deep_merge(values, recipe)
        origin += " with a recipe"
    if overrides:
        values = apply_overrides(values, overrides)
        origin += " with --set overrides"
    return values, origin


def resolve_config(*, task: str | None = None, config_file: str | Path | None = None,
                   overrides: list[str] | None = None,
                   recipe: dict[str, Any] | None = None) -> TrainConfig:
    """Preset (by task) ← YAML file ← ``recipe`` (training.recipes) ← ``--set`` overrides, then
    validation.

    ``task`` is a preset name, or the path of a user's own task file (YAML/JSON, the format of
    ``training.preparation.tasks.load_task_file``), which is prepared into ``data/<name>`` when
    missing. Any other name needs ``data.prepared_dir`` (an already prepared folder) or
    ``data.task_file``.
    """
    values, origin = _config_values(task, config_file, overrides, recipe)
    return from_dict(values, origin=origin)


def data_section(*, task: str | None = None, config_file: str | Path | None = None,
                 overrides: list[str] | None = None) -> DataConfig:
    """Only the ``data`` section :func:`resolve_config` would give (which task folder a run
    reads), validated; what a recipe needs to size itself before the whole configuration is
    resolved."""
    values, origin = _config_values(task, config_file, overrides, None)
    try:
        return DataConfig.model_validate(values.get("data", {}))
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, f"{origin}, section data")) from None
