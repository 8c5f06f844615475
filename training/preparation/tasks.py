"""The data side of every task: source/target datasets, splits, class subsets, layouts and K.

A task is a frozen :class:`TaskDefinition`. Built-in tasks (:data:`TASKS`) follow METHOD.md §12
(Supp. Table 1 and 2) and §4 (layouts per task); a user's own task comes from a small YAML/JSON
file (:func:`load_task_file`). :mod:`training.preparation.pipeline` turns a task into a prepared
task folder.

Expected raw-data locations, relative to ``--raw`` (the first candidate that exists is used):

=================  =====================================================================
``ucla2msr``       ``nw_ucla/`` (1,484 CTR-GCN JSON files) → ``msr_action3d/`` (557 files
                   listed in ``files_used_in_cvpr12_paper.txt``)
``ntu2pku``        ``nturgb+d_skeletons/`` | ``ntu_rgbd_samples/`` (NTU-120 ``.skeleton``) →
                   ``pku_mmd/skeleton/`` | ``pku_mmd_sample/`` with labels in
                   ``pku_mmd/label/`` and ``pku_mmd/cross-subject.txt``
``ntu2skeletics``  NTU-60 ``.skeleton`` as above → ``skeletics152/{train,val}/<class>/*.json``
``skeletics2pku``  ``skeletics152/train`` → PKU-MMD as above with ``pku_mmd/cross-view.txt``
``finegym2skel.``  ``finegym_vibe/<class>/*.json`` → Skeletics as above
``kinetics2ntu``   ``kinetics400/kinetics_train/*.json`` → ``ntu60_hrnet.pkl`` (pyskl)
=================  =====================================================================

Decisions ([D], also in each task's ``notes``): the paper does not list the 41 PKU-MMD classes of
N+→P (default: PKU-MMD's 41 daily actions, :data:`training.preparation.catalogue.PKU_DAILY41`),
nor the 30 Skeletics classes (default: every class found; give ``target.classes`` to reproduce).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from codt_deploy.datafiles import read_data_file
from codt_deploy.errors import CodtError
from codt_deploy.layouts import NeckSource, layout_argument, looks_like_layout_file
from codt_deploy.preprocess import (
    ChannelMode,
    PreprocessConfig,
    conversion_problem,
    describe_mode,
    mode_of_channels,
)
from training.mappings import deep_merge
from training.preparation import catalogue as cat

# ntu/pku/ucla/msr: the datasets' own files and names; skeletics/finegym: VIBE JSON in class
# folders; kinetics: Kinetics-skeleton JSON (label inside); pyskl: an NTU RGB+D pyskl pickle;
# files: a user's folder of pose files (any format) + labels CSV; npz: a project array bundle.
DatasetKind = Literal["ntu", "pku", "ucla", "msr", "skeletics", "finegym", "kinetics", "pyskl",
                      "files", "npz"]
ClassKey = int | str

# The channel mode each reader format returns (arrays and pyskl pickles: whatever the file holds),
# and each dataset kind's own format: what a domain's files hold, known before reading one.
_FORMAT_CHANNELS: dict[str, ChannelMode] = {
    "ntu": "xyz", "pku": "xyz", "ucla": "xyz", "msr": "xyz", "utkinect": "xyz", "vibe": "xyz",
    "crossclr": "xyz", "kinetics": "xy_score", "openpose": "xy_score", "penn": "xy_score"}
_DATASET_FORMAT = {"ntu": "ntu", "pku": "pku", "ucla": "ucla", "msr": "msr", "skeletics": "vibe",
                   "finegym": "vibe", "kinetics": "kinetics"}


class TaskError(CodtError, ValueError):
    """A task definition (preset, override or user file) is invalid; the message says why."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _layout_name(value: Any) -> Any:
    """A ``layout``/``shared``/``specific`` value as a layout name: a built-in or loaded name, a
    layout file (made absolute by :func:`read_mapping`) or an inline mapping, which is loaded and
    registered (:func:`codt_deploy.layouts.layout_argument`)."""
    if value is None or not isinstance(value, (str, Path, dict)):
        return value  # pydantic reports the wrong type
    return layout_argument(value).name


class DomainSpec(_Frozen):
    """Where one domain's samples live and which of them a task keeps.

    ``classes`` lists dataset class keys (1-based ids as in the file names, or folder/label names)
    in label order; ``"all"`` keeps every class present, sorted. ``subjects``/``setups``/``views``
    filter on ids in the sample names; ``part`` picks a ``train``/``val`` sub-folder.
    """

    dataset: DatasetKind = "files"
    paths: tuple[str, ...] = Field(min_length=1)  # candidates; relative to --raw (or the task file)
    format: str | None = None  # reader format; None = the dataset's own or auto-detection
    # the files' joint layout (a name, a layout file or an inline mapping, stored as the name);
    # None = as the reader reports it
    layout: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # extra reader options
    classes: Literal["all"] | tuple[ClassKey, ...] = "all"
    subjects: tuple[int, ...] | None = None
    setups: tuple[int, ...] | None = None
    views: tuple[int, ...] | None = None
    part: str | None = None
    file_list: tuple[str, ...] = ()  # candidates: a file naming the samples to keep
    labels: tuple[str, ...] = ()  # candidates: PKU label folder, or a labels CSV (files/npz)
    skip_lists: tuple[str, ...] = ()  # files naming samples known to be unusable (skipped, logged)
    # The channels this domain provides; None: what its files hold. Less than the files hold
    # reduces them as recorded (depth or score dropped); the target's is the model's (METHOD §2).
    channels: ChannelMode | None = None
    # Source only: each 3-D clip projected for a 2-D model is first rotated about the vertical
    # axis by a random angle in ±view_rotation degrees (fixed per clip name); 0 = off.
    view_rotation: float = Field(0.0, ge=0.0, le=180.0)

    @model_validator(mode="before")
    @classmethod
    def _single_values(cls, values: Any) -> Any:
        """Accept ``path: x`` for ``paths: [x]`` and a single string for list fields."""
        if isinstance(values, dict):
            values = dict(values)
            if "path" in values:
                values.setdefault("paths", values.pop("path"))
            for key in ("paths", "file_list", "labels", "skip_lists"):
                if isinstance(values.get(key), (str, Path)):
                    values[key] = (str(values[key]),)
        return values

    @field_validator("layout", mode="before")
    @classmethod
    def _known_layout(cls, value: Any) -> Any:
        return _layout_name(value)

    @property
    def filtered(self) -> bool:
        return any(x is not None for x in (self.subjects, self.setups, self.views, self.part))

    @property
    def file_channels(self) -> ChannelMode | None:
        """The channel mode this domain's files hold, when the format says it without reading one
        (None: plain arrays or pickles without ``options.channels``, or auto-detected files)."""
        given = self.options.get("channels")
        if given is not None:
            return mode_of_channels(tuple(str(c) for c in given))
        fmt = self.format or _DATASET_FORMAT.get(self.dataset)
        return _FORMAT_CHANNELS.get(fmt) if fmt else None


class TargetSplit(_Frozen):
    """How the target samples divide into ``target_train`` (unlabelled, what the model is fitted
    to) and ``target_eval`` (held out, labelled when labels exist).

    ``all``: both are every target sample (train without labels, eval with them).
    ``subjects``/``views``: ids in ``train`` go to target_train, the others to target_eval. The id
    comes from the dataset's own file names (NTU, NW-UCLA, MSR, PKU-MMD), or, for any folder of
    pose files or arrays, from the file name by the regular expression ``subject`` / ``view``
    (its first group, digits: e.g. ``subject: 's(\\d+)'`` for ``a01_s07_e02.npy``).
    ``split_file``: PKU-MMD's official train/validation video lists (``split_files`` candidates).
    ``folders``: the ``train``/``val`` sub-folders of the target path (``folders``).
    """

    mode: Literal["all", "subjects", "views", "split_file", "folders"] = "all"
    train: tuple[int, ...] = ()
    split_files: tuple[str, ...] = ()
    folders: tuple[str, str] = ("train", "val")
    subject: str | None = None  # regex whose first group is a file name's subject id
    view: str | None = None  # regex whose first group is a file name's view id

    @field_validator("subject", "view")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            pattern = re.compile(value)
        except re.error as err:
            raise ValueError(f"{value!r} is not a regular expression: {err}") from None
        if pattern.groups < 1:
            raise ValueError(f"{value!r} needs a group around the id, e.g. 's(\\d+)'")
        return value

    @model_validator(mode="after")
    def _ids_to_train_on(self) -> TargetSplit:
        if self.mode in ("subjects", "views") and not self.train:
            raise ValueError(f"mode {self.mode} needs train: [the {self.mode[:-1]} ids to train on]")
        return self

    def id_in(self, meta: dict, names: tuple[str, ...]) -> int | None:
        """The subject or view id (by ``mode``) of a sample: by the task's pattern from the first
        of ``names`` it matches, else as the dataset's file names carry it (``meta``)."""
        key = "subject" if self.mode == "subjects" else "view"
        pattern = getattr(self, key)
        if pattern is None:
            return meta.get(key)
        for name in names:
            match = re.search(pattern, name)
            if match is not None and match.group(1) is not None and match.group(1).isdigit():
                return int(match.group(1))
        return None


class TaskDefinition(_Frozen):
    """A validated task definition: the data side of one task (METHOD §12), from a preset or a
    task file; :func:`~training.preparation.pipeline.prepare_task` prepares it into a folder.
    ``shared`` = B0 layout, ``specific`` = B1 (§4)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    description: str = ""
    source: DomainSpec
    target: DomainSpec
    target_split: TargetSplit = TargetSplit()
    shared: str | None = None  # None: the common layout, else shared15
    specific: str | None = None  # None: the target's layout
    # K: an integer >= 2; "auto": estimated label-free from the target-train poses when the task
    # is prepared (training.num_clusters); None: the number of target classes (D7)
    num_clusters: int | Literal["auto"] | None = None
    frames: int = Field(50, ge=1)
    persons: int = Field(2, ge=1)
    neck: NeckSource = "spine_shoulder"
    channels: ChannelMode | None = None  # the model's, as target.channels; None: the target's
    notes: tuple[str, ...] = ()

    @field_validator("shared", "specific", mode="before")
    @classmethod
    def _known_layout(cls, value: Any) -> Any:
        return _layout_name(value)

    @model_validator(mode="after")
    def _channels_fit(self) -> TaskDefinition:
        if self.target.view_rotation:
            raise ValueError("target.view_rotation: only the source is rotated (a 3-D source "
                             "projected for a 2-D target); remove it from the target")
        if (self.channels and self.target.channels
                and self.channels != self.target.channels):
            raise ValueError(f"channels ({self.channels!r}) and target.channels "
                             f"({self.target.channels!r}) disagree; the model reads the target's "
                             f"channels: set only target.channels")
        self.check_channels(self.source.file_channels, self.target.file_channels)
        return self

    def provided_channels(self, role: str, files: ChannelMode | None) -> ChannelMode | None:
        """The channels a domain provides: its ``channels`` (the task's ``channels`` for the
        target), else what its files hold (``files``; None when unknown)."""
        domain: DomainSpec = getattr(self, role)
        declared = domain.channels or (self.channels if role == "target" else None)
        return declared or files

    def check_channels(self, source_files: ChannelMode | None,
                       target_files: ChannelMode | None) -> tuple[ChannelMode | None,
                                                                  ChannelMode | None]:
        """(source's channels, the model's = the target's) for files holding these modes (None:
        not known yet); raises ValueError naming the key and the fix when they do not fit."""
        for role, files in (("source", source_files), ("target", target_files)):
            domain: DomainSpec = getattr(self, role)
            wanted = self.provided_channels(role, files)
            if files is None or wanted is None or conversion_problem(files, wanted) is None:
                continue
            key = f"{role}.channels" if domain.channels else "channels"
            raise ValueError(f"{key}: {wanted!r} asks for 3-D poses but the {role}'s files hold "
                             f"{describe_mode(files)}; remove {key} or set it to 'xy' or "
                             f"'xy_score'")
        source = self.provided_channels("source", source_files)
        model = self.provided_channels("target", target_files)
        if source is not None and model is not None and conversion_problem(source, model):
            raise ValueError(f"source: {describe_mode(source)} cannot train a model for the "
                             f"target's {describe_mode(model)}; depth cannot be recovered from "
                             f"2-D poses. Set target.channels to 'xy' or 'xy_score' (the "
                             f"target's depth is dropped), or use a 3-D source")
        rotation = self.source.view_rotation
        if rotation and source is not None and model is not None and not (
                source == "xyz" and model != "xyz"):
            raise ValueError(f"source.view_rotation: {rotation:g} degrees applies only when a 3-D "
                             f"source is projected for a 2-D target, not to a "
                             f"{source!r} source for a {model!r} model; remove it")
        return source, model

    @field_validator("num_clusters", mode="before")
    @classmethod
    def _clusters(cls, value: Any) -> int | str | None:
        """An integer >= 2, ``auto`` (any case) or nothing; anything else names what it got."""
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"num_clusters must be an integer >= 2 or 'auto' (estimated from "
                             f"the target poses), got {value!r}")
        return value

    def preprocess_config(self, layout: str, channels: ChannelMode) -> PreprocessConfig:
        return PreprocessConfig(layout=layout, frames=self.frames, persons=self.persons,
                                neck=self.neck, channels=channels)


# ---------------------------------------------------------------------------------- presets

_PKU_SKELETONS = ("pku_mmd/skeleton", "pku_mmd/PKU_Skeleton_Renew", "PKU_Skeleton_Renew",
                  "pku_mmd_sample")
_PKU_LABELS = ("pku_mmd/label", "pku_mmd/Train_Label_PKU_final", "Train_Label_PKU_final")
_NTU_SKELETONS = ("nturgb+d_skeletons", "ntu/nturgb+d_skeletons", "ntu_rgbd_samples")
_NTU_SKIPS = ("NTU_RGBD_samples_with_missing_skeletons.txt",
              "NTU_RGBD120_samples_with_missing_skeletons.txt")
_SKELETICS = ("skeletics152", "skeletics")


def _ntu(classes, *, subjects=None, setups=None, views=None) -> dict:
    skips = tuple(f"{root}/{name}" for root in _NTU_SKELETONS for name in _NTU_SKIPS)
    skips += tuple(f"ntu/{name}" for name in _NTU_SKIPS) + _NTU_SKIPS
    return {"dataset": "ntu", "paths": _NTU_SKELETONS, "layout": "ntu25", "format": "ntu",
            "classes": classes, "subjects": subjects, "setups": setups, "views": views,
            "skip_lists": skips}


def _pku(classes) -> dict:
    return {"dataset": "pku", "paths": _PKU_SKELETONS, "layout": "ntu25", "format": "pku",
            "classes": classes, "labels": _PKU_LABELS}


def _pku_split(kind: str) -> dict:
    names = (f"{kind}.txt", f"{kind.replace('-', '_')}.txt")
    return {"mode": "split_file", "split_files": tuple(f"pku_mmd/{n}" for n in names) + names}


def _skeletics(part: str | None = None, classes="all") -> dict:
    return {"dataset": "skeletics", "paths": _SKELETICS, "layout": "body25", "format": "vibe",
            "classes": classes, "part": part}


_SKELETICS_NOTE = ("[D] Skeletics: the paper's 30-class subset of Skeletics-152 is unpublished; "
                   "every class found is used unless target/source classes are given")

_PRESETS: dict[str, dict] = {
    "ucla2msr": {
        "description": "NW-UCLA (kinect20, 10 classes) -> MSR Action3D (msr20, 20 classes)",
        "source": {"dataset": "ucla", "paths": ("nw_ucla",), "layout": "kinect20",
                   "format": "ucla"},
        "target": {"dataset": "msr", "paths": ("msr_action3d",), "layout": "msr20",
                   "format": "msr", "file_list": ("msr_action3d/files_used_in_cvpr12_paper.txt",)},
        "shared": "kinect20", "specific": "msr20",
        # Both datasets film one person; a second, all-zero person slot would double the
        # encoder's work and average an empty-body feature into every embedding.
        "persons": 1,
        "notes": ("Local benchmark: all 1,484 NW-UCLA clips, labelled; the 557 standard MSR "
                  "Action3D clips are target_train (unlabelled) and target_eval (labelled)",
                  "[D] M = 1: NW-UCLA and MSR Action3D are single-person datasets"),
    },
    "ntu2pku": {
        "description": "NTU-60+ (NTU-120 A61-A120, xsub train) -> PKU-MMD xsub, 41 classes",
        "source": _ntu(tuple(range(61, 121)), setups=tuple(range(18, 33)),
                       subjects=tuple(s for s in cat.NTU120_XSUB_TRAIN if s > 40)),
        "target": _pku(cat.PKU_DAILY41),
        "target_split": _pku_split("cross-subject"),
        "shared": "ntu25", "specific": "ntu25",
        "notes": ("[D] NTU-60+ = A61-A120, setups S018-S032, NTU-120 xsub training subjects > 40 "
                  "(33 subjects, Supp. Table 1; inferred)",
                  "[D] the 41 PKU-MMD classes: its 41 daily actions (catalogue.PKU_DAILY41)"),
    },
    "ntu2skeletics": {
        "description": "NTU-60 xview train -> Skeletics-152 (VIBE), 30 classes",
        "source": _ntu(tuple(range(1, 61)), views=cat.NTU60_XVIEW_TRAIN_CAMERAS),
        "target": _skeletics(),
        "target_split": {"mode": "folders"},
        "shared": "shared15", "specific": "body25", "notes": (_SKELETICS_NOTE,),
    },
    "skeletics2pku": {
        "description": "Skeletics-152 train (VIBE), 30 classes -> PKU-MMD xview, 51 classes",
        "source": _skeletics(part="train"),
        "target": _pku("all"),
        "target_split": _pku_split("cross-view"),
        "shared": "shared15", "specific": "ntu25", "notes": (_SKELETICS_NOTE,),
    },
    "finegym2skeletics": {
        "description": "FineGym (VIBE) -> Skeletics-152 (VIBE), Supp. Table 2",
        "source": {"dataset": "finegym", "paths": ("finegym_vibe", "finegym"),
                   "layout": "body25", "format": "vibe"},
        "target": _skeletics(),
        "target_split": {"mode": "folders"},
        "shared": "shared15", "specific": "body25",
        "notes": (_SKELETICS_NOTE, "[D] FineGym VIBE output is expected as <class>/<clip>.json "
                                   "in the Skeletics VIBE format"),
    },
    "kinetics2ntu": {
        "description": "Kinetics-400 (OpenPose 2-D) -> NTU-60 (HRNet 2-D, pyskl), Supp. Table 2",
        "source": {"dataset": "kinetics", "paths": ("kinetics400/kinetics_train",
                                                    "kinetics_train"),
                   "layout": "coco18", "format": "kinetics"},
        "target": {"dataset": "pyskl", "paths": ("ntu60_hrnet.pkl", "ntu/ntu60_hrnet.pkl"),
                   "layout": "coco17", "format": "pyskl"},
        "target_split": {"mode": "subjects", "train": cat.NTU60_XSUB_TRAIN},
        "shared": "shared15", "specific": "coco17", "channels": "xy_score",
        "notes": ("[D] layouts: shared15 (B0) and coco17 (B1); target split NTU-60 xsub",),
    },
}
TASKS = tuple(_PRESETS)

# Named target splits a preset accepts (--target-split), besides its default.
_NAMED_SPLITS: dict[str, dict[str, dict[str, Any]]] = {
    "ucla2msr": {"all": {"mode": "all"},
                 "cross_subject": {"mode": "subjects", "train": (1, 3, 5, 7, 9)}},
    "ntu2pku": {"cross_subject": _pku_split("cross-subject"),
                "cross_view": _pku_split("cross-view"), "all": {"mode": "all"}},
    "skeletics2pku": {"cross_view": _pku_split("cross-view"),
                      "cross_subject": _pku_split("cross-subject"), "all": {"mode": "all"}},
    "ntu2skeletics": {"folders": {"mode": "folders"}, "all": {"mode": "all"}},
    "finegym2skeletics": {"folders": {"mode": "folders"}, "all": {"mode": "all"}},
    "kinetics2ntu": {"cross_subject": {"mode": "subjects", "train": cat.NTU60_XSUB_TRAIN},
                     "all": {"mode": "all"}},
}


def named_splits(task: str) -> tuple[str, ...]:
    return tuple(_NAMED_SPLITS.get(task, {"all": None}))


def validate_task(values: dict, origin: str) -> TaskDefinition:
    try:
        return TaskDefinition.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in e['loc'])}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ") for e in err.errors())
        raise TaskError(f"{origin}: invalid task definition: {problems}") from None


def get_task(name: str, *, overrides: dict | None = None,
             target_split: str | None = None) -> TaskDefinition:
    """A built-in task, optionally with ``overrides`` (a --config file) and a named target split."""
    if name not in _PRESETS:
        raise TaskError(f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)} "
                        f"(or give a task file with --config)")
    values = deep_merge({"name": name, **_PRESETS[name]}, overrides or {})
    if target_split is not None:
        choices = _NAMED_SPLITS[name]
        if target_split not in choices:
            raise TaskError(f"task {name!r} has no target split {target_split!r}; "
                            f"choose one of {', '.join(choices)}")
        values["target_split"] = choices[target_split]
    return validate_task(values, f"task {name!r}")


def read_mapping(path: Path) -> dict:
    """A YAML (.yaml/.yml) or JSON (.json) file holding a mapping of task fields; a layout file
    named in it (``source.layout``, ``target.layout``, ``shared``, ``specific``) is made relative
    to the file's folder."""
    data = read_data_file(path, TaskError, "task file")
    if not isinstance(data, dict):
        raise TaskError(f"{path}: expected a mapping of task fields at the top level")
    places = [(data, "shared"), (data, "specific")] + [
        (data[side], "layout") for side in ("source", "target") if isinstance(data.get(side), dict)]
    for holder, key in places:
        value = holder.get(key)
        if isinstance(value, str) and looks_like_layout_file(value) and not Path(value).is_absolute():
            holder[key] = str(path.parent.resolve() / value)
    return data


def _absolute(paths: Any, folder: Path) -> Any:
    """Candidates for each path: relative to the task file's folder first, then (unchanged, so
    looked up under ``--raw``) relative to the raw-data folder."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)):
        return paths
    out: list[str] = []
    for p in paths:
        if Path(p).is_absolute():
            out.append(str(p))
        else:
            out += [str(folder.resolve() / p), str(p)]
    return out


def load_task_file(path: str | Path, *, name: str | None = None) -> TaskDefinition:
    """A user's own task from YAML/JSON; relative paths are relative to the file's folder.

    Minimal form::

        source: {path: my_source/, labels: my_source/labels.csv}   # any pose files + labels
        target: {path: my_target/}                                  # labels optional (eval)
        num_clusters: 8                                             # or auto; needed without labels
    """
    path = Path(path)
    data = read_mapping(path)
    data.setdefault("name", name or path.stem)
    for side in ("source", "target"):
        domain = data.get(side)
        if isinstance(domain, dict):
            domain = dict(domain)
            for key in ("path", "paths", "labels", "file_list", "skip_lists"):
                if key in domain:
                    domain[key] = _absolute(domain[key], path.parent)
            data[side] = domain
    return validate_task(data, str(path))
