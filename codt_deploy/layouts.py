"""Skeleton joint layouts and name-based joint maps between them.

Every layout names its joints in one canonical vocabulary (``l_shoulder``, ``pelvis``, ...), so that
mapping one layout onto another is a lookup by name rather than a hand-written table per dataset pair.
Indices are 0-based. Tables: ``docs/LAYOUTS.md``.

Canonical names worth knowing:

- ``pelvis``: NTU "spine base", Kinect v1 "hip centre", OpenPose "mid hip".
- ``spine_shoulder``: NTU joint 21 (1-based) "spine shoulder", Kinect v1 "shoulder centre".
- ``neck``: OpenPose's neck and NTU joint 3 (1-based) "neck" of Kinect v2.
- ``head`` (Kinect head centre) and ``nose`` (OpenPose/COCO) stand in for each other when mapping.

Besides the built-in layouts, a skeleton of one's own comes from a layout file (JSON, or YAML where
PyYAML is installed) or a mapping with the same keys (:func:`load_layout`, :func:`layout_argument`):
``name``, ``joints`` (canonical names in the file's joint order; ``other`` or ``other:<label>`` for a
joint the vocabulary lacks, which maps to no joint of any other layout), ``bones`` (pairs of joint
names; the skeleton must be connected), ``center`` (one joint or a list averaged), ``shoulders``
(``{right: .., left: ..}``) and optionally ``parts`` and ``description``. Loading registers it, so
that its name works everywhere a built-in name does (:func:`get_layout`, :func:`joint_map`,
preprocessing, the ST-GCN graph); :func:`layout_spec` writes the definition back out, as task.json
and the model manifest embed it. README.md, "Layout files" has the format.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codt_deploy.errors import LayoutError

NeckSource = Literal["spine_shoulder", "neck"]


@dataclass(frozen=True)
class Layout:
    """A skeleton layout: joint names, bones and the joints preprocessing and masking rely on."""

    name: str
    joints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    center: tuple[int, ...]  # the centre joint is the mean of these (usually one joint)
    shoulders: tuple[int, int]  # (right, left); alignment rotates R - L onto the x axis
    parts: tuple[tuple[int, ...], ...]  # five body parts zeroed by part masking
    description: str = ""

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        try:
            return self.joints.index(joint)
        except ValueError:
            raise LayoutError(f"layout {self.name!r} has no joint {joint!r}") from None


def _edges_1based(pairs: str) -> tuple[tuple[int, int], ...]:
    """Parse '1-2, 2-21' (1-based dataset numbering) into 0-based pairs."""
    out = []
    for pair in pairs.split(","):
        a, b = pair.strip().split("-")
        out.append((int(a) - 1, int(b) - 1))
    return tuple(out)


def _edges(pairs: str) -> tuple[tuple[int, int], ...]:
    """Parse '0-1, 2-1' (0-based) into pairs."""
    return tuple((int(a), int(b)) for a, b in (p.strip().split("-") for p in pairs.split(",")))


_SHARED15_EDGES = "0-1, 2-1, 3-2, 4-3, 5-1, 6-5, 7-6, 8-1, 9-8, 10-9, 11-10, 12-8, 13-12, 14-13"

_LAYOUTS: dict[str, Layout] = {}


def _register(layout: Layout) -> Layout:
    n = layout.num_joints
    assert len(set(layout.joints)) == n, layout.name
    for a, b in layout.edges:
        assert 0 <= a < n and 0 <= b < n, (layout.name, a, b)
    for part in layout.parts:
        assert all(0 <= j < n for j in part), layout.name
    _LAYOUTS[layout.name] = layout
    return layout


NTU25 = _register(Layout(
    name="ntu25",
    description="NTU RGB+D / PKU-MMD, Kinect v2 (25 joints)",
    joints=("pelvis", "spine_mid", "neck", "head",
            "l_shoulder", "l_elbow", "l_wrist", "l_hand",
            "r_shoulder", "r_elbow", "r_wrist", "r_hand",
            "l_hip", "l_knee", "l_ankle", "l_foot",
            "r_hip", "r_knee", "r_ankle", "r_foot",
            "spine_shoulder", "l_hand_tip", "l_thumb", "r_hand_tip", "r_thumb"),
    edges=_edges_1based("1-2, 2-21, 3-21, 4-3, 5-21, 6-5, 7-6, 8-7, 9-21, 10-9, 11-10, 12-11, "
                        "13-1, 14-13, 15-14, 16-15, 17-1, 18-17, 19-18, 20-19, 22-23, 23-8, "
                        "24-25, 25-12"),
    center=(20,),
    shoulders=(8, 4),
    parts=((2, 3, 0, 1, 20), (4, 5, 6, 7, 21, 22), (8, 9, 10, 11, 23, 24),
           (12, 13, 14, 15), (16, 17, 18, 19)),
))

KINECT20 = _register(Layout(
    name="kinect20",
    description="Kinect v1 SDK (NW-UCLA, UTKinect-Action3D; 20 joints)",
    joints=("pelvis", "spine_mid", "spine_shoulder", "head",
            "l_shoulder", "l_elbow", "l_wrist", "l_hand",
            "r_shoulder", "r_elbow", "r_wrist", "r_hand",
            "l_hip", "l_knee", "l_ankle", "l_foot",
            "r_hip", "r_knee", "r_ankle", "r_foot"),
    edges=_edges("0-1, 1-2, 2-3, 2-4, 4-5, 5-6, 6-7, 2-8, 8-9, 9-10, 10-11, "
                 "0-12, 12-13, 13-14, 14-15, 0-16, 16-17, 17-18, 18-19"),
    center=(2,),
    shoulders=(8, 4),
    parts=((0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15), (16, 17, 18, 19)),
))

MSR20 = _register(Layout(
    name="msr20",
    description="MSR Action3D (R3DG body model; 20 joints)",
    joints=("l_shoulder", "r_shoulder", "spine_shoulder", "spine_mid", "l_hip", "r_hip",
            "pelvis", "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hand", "r_hand",
            "l_knee", "r_knee", "l_ankle", "r_ankle", "l_foot", "r_foot", "head"),
    edges=_edges_1based("7-4, 4-3, 3-20, 3-1, 3-2, 1-8, 2-9, 8-10, 9-11, 10-12, 11-13, "
                        "7-5, 7-6, 5-14, 6-15, 14-16, 15-17, 16-18, 17-19"),
    center=(2,),
    shoulders=(1, 0),
    parts=((2, 3, 6, 19), (0, 7, 9, 11), (1, 8, 10, 12), (4, 13, 15, 17), (5, 14, 16, 18)),
))

BODY25 = _register(Layout(
    name="body25",
    description="OpenPose BODY_25 (VIBE / Skeletics joints 0-24)",
    joints=("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow",
            "l_wrist", "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
            "r_eye", "l_eye", "r_ear", "l_ear", "l_big_toe", "l_small_toe", "l_heel",
            "r_big_toe", "r_small_toe", "r_heel"),
    edges=_edges(_SHARED15_EDGES + ", 15-0, 16-0, 17-0, 18-0, 19-14, 20-19, 21-14, 22-11, "
                 "23-22, 24-11"),
    center=(1,),
    shoulders=(2, 5),
    parts=((2, 3, 4, 1), (5, 6, 7, 1), (8, 9, 10, 11), (8, 12, 13, 14), (0, 15, 16, 17, 18)),
))

COCO18 = _register(Layout(
    name="coco18",
    description="OpenPose COCO-18 (Kinetics-skeleton)",
    joints=("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow",
            "l_wrist", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
            "r_eye", "l_eye", "r_ear", "l_ear"),
    edges=_edges("4-3, 3-2, 7-6, 6-5, 13-12, 12-11, 10-9, 9-8, 11-5, 8-2, 5-1, 2-1, 0-1, "
                 "15-0, 14-0, 17-15, 16-14"),
    center=(1,),
    shoulders=(2, 5),
    parts=((2, 3, 4, 1), (5, 6, 7, 1), (8, 9, 10, 1), (11, 12, 13, 1), (0, 14, 15, 16, 17)),
))

COCO17 = _register(Layout(
    name="coco17",
    description="COCO keypoints (17 joints; HRNet and most 2-D estimators)",
    joints=("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder",
            "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee",
            "l_ankle", "r_ankle"),
    edges=_edges("15-13, 13-11, 16-14, 14-12, 11-12, 5-11, 6-12, 5-6, 5-7, 6-8, 7-9, 8-10, "
                 "1-2, 0-1, 0-2, 1-3, 2-4, 3-5, 4-6"),
    center=(5, 6),
    shoulders=(6, 5),
    parts=((0, 1, 2, 3, 4), (5, 7, 9), (6, 8, 10), (11, 13, 15), (12, 14, 16)),
))

PENN13 = _register(Layout(
    name="penn13",
    description="Penn Action (13 joints)",
    joints=("head", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
            "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle"),
    edges=_edges("0-1, 0-2, 1-2, 1-3, 3-5, 2-4, 4-6, 1-7, 2-8, 7-8, 7-9, 9-11, 8-10, 10-12"),
    center=(1, 2),
    shoulders=(2, 1),
    parts=((0,), (1, 3, 5), (2, 4, 6), (7, 9, 11), (8, 10, 12)),
))

SHARED15 = _register(Layout(
    name="shared15",
    description="The 15 joints CoDT's cross-skeleton tasks share (BODY_25 joints 0-14)",
    joints=("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow",
            "l_wrist", "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle"),
    edges=_edges(_SHARED15_EDGES),
    center=(1,),
    shoulders=(2, 5),
    parts=((2, 3, 4), (5, 6, 7), (0, 1, 8), (9, 10, 11), (12, 13, 14)),
))

# Names used by the reference code and by users.
_ALIASES = {
    "ntu-rgb+d": "ntu25", "ntu": "ntu25", "kinect_v2": "ntu25", "pku": "ntu25",
    "kinect_v1": "kinect20", "ucla": "kinect20", "utkinect": "kinect20",
    "msr": "msr20", "skeletics25": "body25", "openpose": "coco18", "kinetics": "coco18",
    "coco": "coco17", "penn": "penn13", "skeletics": "shared15",
}

# Stand-ins when a layout lacks a joint: another name, or the midpoint of two joints.
_FALLBACKS: dict[str, tuple[tuple[str, ...], ...]] = {
    "nose": (("head",),),
    "head": (("nose",),),
    "neck": (("spine_shoulder",), ("l_shoulder", "r_shoulder")),
    "spine_shoulder": (("neck",), ("l_shoulder", "r_shoulder")),
    "pelvis": (("l_hip", "r_hip"),),
}


BUILTIN_LAYOUTS: tuple[str, ...] = tuple(sorted(_LAYOUTS))
#: Every joint name a built-in layout uses: the vocabulary a layout file names its joints in.
CANONICAL_JOINTS: tuple[str, ...] = tuple(sorted({j for lay in _LAYOUTS.values() for j in lay.joints}))
OTHER_JOINT = "other"  # a layout file's joint the vocabulary lacks: "other" or "other:<label>"
_CUSTOM: dict[str, Layout] = {}  # layouts loaded from files or mappings, by name


def available_layouts() -> list[str]:
    """The built-in layouts and those loaded so far (:func:`load_layout`), sorted by name."""
    return sorted({**_LAYOUTS, **_CUSTOM})


def get_layout(name: str | Layout) -> Layout:
    """Look a layout up by name (or a reference-code alias); raises LayoutError listing the options.

    A layout loaded from a file or mapping (:func:`load_layout`) is found by its name as well."""
    if isinstance(name, Layout):
        return name
    key = _ALIASES.get(name.lower(), name.lower())
    try:
        return _LAYOUTS.get(key) or _CUSTOM[key]
    except KeyError:
        hint = ("; a layout file is given by its path (.json, .yaml, .yml)"
                if not name.lower().endswith((".json", ".yaml", ".yml")) else
                "; as a path it names no file")
        raise LayoutError(f"unknown skeleton layout {name!r}; available layouts: "
                          f"{', '.join(available_layouts())}{hint}") from None


def is_builtin(layout: str | Layout) -> bool:
    """Whether ``layout`` is one of the layouts defined in this module (not loaded from a file)."""
    name = layout.name if isinstance(layout, Layout) else layout.lower()
    return _ALIASES.get(name, name) in _LAYOUTS


def is_other_joint(joint: str) -> bool:
    """A layout file's joint outside the canonical vocabulary (``other``/``other:<label>``)."""
    return joint == OTHER_JOINT or joint.startswith(OTHER_JOINT + ":")


# ---------------------------------------------------------------------------------------------
# Layouts of one's own: layout files and inline mappings
# ---------------------------------------------------------------------------------------------

class Shoulders(BaseModel):
    """The shoulder joints by name; alignment rotates right − left onto the x axis."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    right: str
    left: str


class LayoutSpec(BaseModel):
    """A layout as a layout file (or a task file's inline ``layout:``) writes it: every joint by
    name. :func:`layout_from_spec` checks the names and builds the :class:`Layout`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_.+-]*$", max_length=64)
    description: str = ""
    joints: tuple[str, ...] = Field(min_length=2)
    bones: tuple[tuple[str, str], ...] = Field(min_length=1)
    center: tuple[str, ...] = Field(min_length=1)
    shoulders: Shoulders
    parts: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def from_data(cls, data: Any, origin: str) -> LayoutSpec:
        """Validate a mapping (a string ``center`` is one joint); LayoutError names ``origin``,
        the key and the problem."""
        if not isinstance(data, Mapping):
            raise LayoutError(f"{origin}: expected a mapping of layout keys (name, joints, bones, "
                              f"center, shoulders, parts), got {type(data).__name__}")
        values = dict(data)
        if isinstance(values.get("center"), str):
            values["center"] = (values["center"],)
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                                 for e in err.errors())
            raise LayoutError(f"{origin}: invalid layout: {problems}") from None


def _close(name: str, choices: tuple[str, ...] = CANONICAL_JOINTS) -> str:
    """``; did you mean ...?`` with the closest of ``choices``, or nothing."""
    matches = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


def _joint_names(spec: LayoutSpec, origin: str) -> tuple[str, ...]:
    """The layout's joint names: canonical ones as written, ``other`` as ``other:<position>``."""
    names: list[str] = []
    problems: list[str] = []
    for i, joint in enumerate(spec.joints):
        if joint == OTHER_JOINT:
            joint = f"{OTHER_JOINT}:{i}"
        elif not is_other_joint(joint) and joint not in CANONICAL_JOINTS:
            problems.append(f"joints[{i}]: {joint!r} is not a canonical joint name{_close(joint)} "
                            f"(write 'other' or 'other:<label>' for a joint outside the "
                            f"vocabulary; the names: docs/LAYOUTS.md)")
        if joint in names:
            problems.append(f"joints[{i}]: {joint!r} is listed twice (also joints"
                            f"[{names.index(joint)}])")
        names.append(joint)
    if problems:
        raise LayoutError(f"{origin}: " + "; ".join(problems))
    return tuple(names)


def _unreached(num_joints: int, edges: list[tuple[int, int]], start: int) -> list[int]:
    """The joints no path of bones joins to ``start``."""
    neighbours: dict[int, set[int]] = {j: set() for j in range(num_joints)}
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    seen, frontier = {start}, [start]
    while frontier:
        for k in neighbours[frontier.pop()] - seen:
            seen.add(k)
            frontier.append(k)
    return [j for j in range(num_joints) if j not in seen]


def layout_from_spec(spec: LayoutSpec, origin: str = "layout") -> Layout:
    """Check a spec's names and build its :class:`Layout` (not registered: :func:`register_layout`).

    Raises LayoutError naming ``origin``, the key and the problem: an unknown joint name (with the
    closest canonical names), a joint listed twice, a bone, centre, shoulder or part naming a joint
    the layout lacks, a bone listed twice or joining a joint to itself, a skeleton whose bones do
    not connect every joint, or a name taken by a built-in layout or alias."""
    if spec.name in _LAYOUTS or spec.name in _ALIASES:
        raise LayoutError(f"{origin}: name: {spec.name!r} is a built-in layout name; give the "
                          f"layout a name of its own")
    joints = _joint_names(spec, origin)
    position = {j: i for i, j in enumerate(joints)}
    problems: list[str] = []

    def index(joint: str, key: str) -> int:
        if joint in position:
            return position[joint]
        problems.append(f"{key}: {joint!r} is not a joint of this layout{_close(joint, joints)}")
        return -1

    edges: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(spec.bones):
        edge = (index(a, f"bones[{i}]"), index(b, f"bones[{i}]"))
        if -1 in edge:
            continue
        if edge[0] == edge[1]:
            problems.append(f"bones[{i}]: joins {a!r} to itself")
        elif edge in edges or edge[::-1] in edges:
            problems.append(f"bones[{i}]: {a!r}-{b!r} is listed twice")
        else:
            edges.append(edge)
    center = tuple(index(j, f"center[{i}]") for i, j in enumerate(spec.center))
    shoulders = (index(spec.shoulders.right, "shoulders.right"),
                 index(spec.shoulders.left, "shoulders.left"))
    if len(set(center)) != len(center):
        problems.append("center: a joint is listed twice")
    if spec.shoulders.right == spec.shoulders.left:
        problems.append("shoulders: right and left are the same joint")
    parts = tuple(tuple(index(j, f"parts[{p}][{i}]") for i, j in enumerate(part))
                  for p, part in enumerate(spec.parts))
    for p, part in enumerate(spec.parts):
        if not part:
            problems.append(f"parts[{p}]: an empty part")
    lone = [] if problems else [joints[j] for j in _unreached(len(joints), edges, center[0])]
    if lone:
        problems.append(f"bones: the skeleton is not connected: no bones join "
                        f"{', '.join(lone)} to the centre {joints[center[0]]!r} (the ST-GCN graph "
                        f"needs one connected skeleton)")
    if problems:
        raise LayoutError(f"{origin}: " + "; ".join(problems))
    return Layout(name=spec.name, joints=joints, edges=tuple(edges), center=center,
                  shoulders=shoulders, parts=parts,
                  description=spec.description or f"custom layout ({len(joints)} joints)")


def layout_spec(layout: str | Layout) -> LayoutSpec:
    """The definition of a layout by joint names, as a layout file holds it (loads back equal)."""
    layout = get_layout(layout)
    names = layout.joints
    return LayoutSpec(name=layout.name, description=layout.description, joints=names,
                      bones=tuple((names[a], names[b]) for a, b in layout.edges),
                      center=tuple(names[j] for j in layout.center),
                      shoulders=Shoulders(right=names[layout.shoulders[0]],
                                          left=names[layout.shoulders[1]]),
                      parts=tuple(tuple(names[j] for j in part) for part in layout.parts))


def register_layout(layout: Layout, origin: str = "layout") -> Layout:
    """Make ``layout`` known by name. Registering the same definition again is a no-op; another
    definition under a name already taken raises LayoutError (a prepared task or model that uses
    the name would otherwise change meaning)."""
    if is_builtin(layout.name):
        if get_layout(layout.name) == layout:
            return get_layout(layout.name)
        raise LayoutError(f"{origin}: {layout.name!r} is a built-in layout name")
    known = _CUSTOM.get(layout.name)
    if known is not None:
        if known == layout:
            return known
        raise LayoutError(f"{origin}: a different layout named {layout.name!r} is already loaded "
                          f"in this process; give this one another name")
    _CUSTOM[layout.name] = layout
    return layout


def custom_layouts() -> tuple[Layout, ...]:
    """The layouts loaded from files or mappings so far (e.g. to register in worker processes)."""
    return tuple(_CUSTOM.values())


def load_layout(source: str | Path | Mapping[str, Any], *, origin: str | None = None) -> Layout:
    """Load, check and register a layout from a layout file (``.json``; ``.yaml``/``.yml`` where
    PyYAML is installed) or a mapping of the same keys; returns the :class:`Layout`."""
    from codt_deploy.datafiles import read_data_file

    if isinstance(source, Mapping):
        where = origin or "inline layout"
        data: Any = source
    else:
        path = Path(source)
        where = origin or str(path)
        if not path.is_file():
            raise LayoutError(f"{where}: layout file not found")
        data = read_data_file(path, LayoutError, "layout file")
    layout = layout_from_spec(LayoutSpec.from_data(data, where), where)
    return register_layout(layout, where)


def looks_like_layout_file(text: str) -> bool:
    """Whether a ``layout`` value names a file rather than a layout (its suffix or a folder)."""
    return text.lower().endswith((".json", ".yaml", ".yml")) or "/" in text or "\\" in text


def layout_argument(value: str | Path | Mapping[str, Any] | Layout, *,
                    base: Path | None = None, origin: str | None = None) -> Layout:
    """A layout given the ways a user may give one: a built-in or loaded name, a path to a layout
    file (relative to ``base`` when given), or an inline mapping. Raises LayoutError."""
    if isinstance(value, Layout):
        return value
    if isinstance(value, Mapping):
        return load_layout(value, origin=origin)
    text = str(value)
    if isinstance(value, Path) or looks_like_layout_file(text):
        path = Path(text)
        if base is not None and not path.is_absolute():
            path = base / path
        return load_layout(path, origin=f"{origin}: {path}" if origin else None)
    try:
        return get_layout(text)
    except LayoutError as err:
        raise LayoutError(f"{origin}: {err}" if origin else str(err)) from None


@dataclass(frozen=True)
class JointMap:
    """How to build each joint of ``dst`` from joints of ``src``: an index, or a mean of indices."""

    src: str
    dst: str
    sources: tuple[tuple[int, ...], ...]  # one tuple of source indices per destination joint

    @property
    def is_selection(self) -> bool:
        return all(len(s) == 1 for s in self.sources)

    def weights(self) -> np.ndarray:
        """The (V_dst, V_src) averaging matrix."""
        w = np.zeros((len(self.sources), get_layout(self.src).num_joints), np.float32)
        for d, srcs in enumerate(self.sources):
            w[d, list(srcs)] = 1.0 / len(srcs)
        return w

    def apply(self, array: np.ndarray, axis: int) -> np.ndarray:
        """Map the joint axis ``axis`` of ``array`` from ``src`` to ``dst``."""
        if self.is_selection:
            return np.take(array, [s[0] for s in self.sources], axis=axis)
        moved = np.moveaxis(array, axis, -1)  # (..., V_src)
        mapped = moved @ self.weights().T.astype(array.dtype)  # (..., V_dst)
        return np.moveaxis(mapped, -1, axis)


def _lookup(src: Layout, dst: Layout, name: str, neck: NeckSource) -> tuple[int, ...] | None:
    """Source indices for the destination joint ``name``, or None when ``src`` cannot supply it."""
    if is_other_joint(name):  # outside the vocabulary: only the same layout has it
        return (src.joints.index(name),) if src.name == dst.name else None
    both_necks = {"neck", "spine_shoulder"}
    if name in both_necks and both_necks <= set(src.joints) and not both_necks <= set(dst.joints):
        # NTU-25 has both; which one plays a single "neck" is a project option (METHOD §4).
        return (src.joints.index(neck),)
    for names in ((name,), *_FALLBACKS.get(name, ())):
        if all(n in src.joints for n in names):
            return tuple(src.joints.index(n) for n in names)
    return None


def joint_map(src: str | Layout, dst: str | Layout, *, neck: NeckSource = "spine_shoulder") -> JointMap:
    """Map ``src`` onto ``dst`` by joint name; raises LayoutError naming the missing joints.

    ``neck`` picks which NTU joint plays the "neck" when mapping a layout that has both (NTU-25)
    onto one that has a single neck-like joint (shared15, body25, coco18, kinect20, msr20).
    """
    src_l, dst_l = get_layout(src), get_layout(dst)
    sources, missing = [], []
    for name in dst_l.joints:
        found = _lookup(src_l, dst_l, name, neck)
        if found is None:
            missing.append(name)
        else:
            sources.append(found)
    if missing:
        raise LayoutError(f"layout {src_l.name!r} cannot supply the joints of {dst_l.name!r}: "
                          f"missing {', '.join(missing)}")
    return JointMap(src_l.name, dst_l.name, tuple(sources))


def shared_joints(a: str | Layout, b: str | Layout) -> list[str]:
    """The joint names both layouts have, in the order of ``a``."""
    la, lb = get_layout(a), get_layout(b)
    return [j for j in la.joints if j in lb.joints]


def can_map(src: str | Layout, dst: str | Layout) -> bool:
    try:
        joint_map(src, dst)
    except LayoutError:
        return False
    return True
