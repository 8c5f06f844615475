"""What each dataset calls its classes, and how its files name their samples.

Class tables (1-based dataset ids, as in the file names) and the file-name patterns that carry
subject, setup, camera/view and action ids. Used by :mod:`training.preparation.tasks` (class
subsets) and :mod:`training.preparation.pipeline` (enumerating and filtering files before reading
them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from codt_deploy.errors import CodtError


class CatalogueError(CodtError, ValueError):
    """A list or labels file of a dataset is malformed; the message names it."""


# NTU RGB+D 120 actions A1-A120 (A1-A60 are NTU RGB+D 60), from the dataset's own list.
NTU120_CLASSES = tuple("""drink water|eat meal/snack|brushing teeth|brushing hair|drop|pickup|throw|
sitting down|standing up (from sitting position)|clapping|reading|writing|tear up paper|
wear jacket|take off jacket|wear a shoe|take off a shoe|wear on glasses|take off glasses|
put on a hat/cap|take off a hat/cap|cheer up|hand waving|kicking something|reach into pocket|
hopping (one foot jumping)|jump up|make a phone call/answer phone|playing with phone/tablet|
typing on a keyboard|pointing to something with finger|taking a selfie|check time (from watch)|
rub two hands together|nod head/bow|shake head|wipe face|salute|put the palms together|
cross hands in front (say stop)|sneeze/cough|staggering|falling|touch head (headache)|
touch chest (stomachache/heart pain)|touch back (backache)|touch neck (neckache)|
nausea or vomiting condition|use a fan (with hand or paper)/feeling warm|
punching/slapping other person|kicking other person|pushing other person|
pat on back of other person|point finger at the other person|hugging other person|
giving something to other person|touch other person's pocket|handshaking|
walking towards each other|walking apart from each other|put on headphone|take off headphone|
shoot at the basket|bounce ball|tennis bat swing|juggling table tennis balls|hush (quite)|
flick hair|thumb up|thumb down|make ok sign|make victory sign|staple book|counting money|
cutting nails|cutting paper (using scissors)|snapping fingers|open bottle|sniff (smell)|
squat down|toss a coin|fold paper|ball up paper|play magic cube|apply cream on face|
apply cream on hand back|put on bag|take off bag|put something into a bag|
take something out of a bag|open a box|move heavy objects|shake fist|throw up cap/hat|
hands up (both hands)|cross arms|arm circles|arm swings|running on the spot|
butt kicks (kick backward)|cross toe touch|side kick|yawn|stretch oneself|blow nose|
hit other person with something|wield knife towards other person|
knock over other person (hit with body)|grab other person's stuff|
shoot at other person with a gun|step on foot|high-five|cheers and drink|
carry something with other person|take a photo of other person|follow other person|
whisper in other person's ear|exchange things with other person|support somebody with hand|
finger-guessing game (playing rock-paper-scissors)""".replace("\n", "").split("|"))

# PKU-MMD phase 1 actions 1-51 (Actions.xlsx; alphabetical).
PKU_CLASSES = tuple("""bow|brushing hair|brushing teeth|check time (from watch)|cheer up|clapping|
cross hands in front (say stop)|drink water|drop|eat meal/snack|falling|
giving something to other person|hand waving|handshaking|hopping (one foot jumping)|
hugging other person|jump up|kicking other person|kicking something|
make a phone call/answer phone|pat on back of other person|pickup|playing with phone/tablet|
point finger at the other person|pointing to something with finger|
punching/slapping other person|pushing other person|put on a hat/cap|
put something inside pocket|reading|rub two hands together|salute|sitting down|standing up|
take off a hat/cap|take off glasses|take off jacket|take out something from pocket|
taking a selfie|tear up paper|throw|touch back (backache)|
touch chest (stomachache/heart pain)|touch head (headache)|touch neck (neckache)|
typing on a keyboard|use a fan (with hand or paper)/feeling warm|wear jacket|wear on glasses|
wipe face|writing""".replace("\n", "").split("|"))

# PKU-MMD describes its 51 classes as 41 daily actions and 10 interactions without listing them.
# Project decision: the 10 interactions are the 8 "other person" actions plus the two pocket actions
# (performed on the partner, like NTU's "touch other person's pocket").
PKU_INTERACTIONS = (12, 14, 16, 18, 21, 24, 26, 27, 29, 38)
PKU_DAILY41 = tuple(i for i in range(1, 52) if i not in PKU_INTERACTIONS)

# NW-UCLA: file-name action ids (a07 and a10 are unused) in label order 1..10.
UCLA_ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
UCLA_CLASSES = {1: "pick up with one hand", 2: "pick up with two hands", 3: "drop trash",
                4: "walk around", 5: "sit down", 6: "stand up", 8: "donning", 9: "doffing",
                11: "throw", 12: "carry"}

# MSR Action3D actions a01-a20.
MSR_CLASSES = tuple("""high arm wave|horizontal arm wave|hammer|hand catch|forward punch|
high throw|draw x|draw tick|draw circle|hand clap|two hand wave|side-boxing|bend|forward kick|
side kick|jogging|tennis swing|tennis serve|golf swing|pick up & throw""".replace("\n", "")
                    .split("|"))

# Official cross-subject training subjects.
NTU60_XSUB_TRAIN = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
    89, 91, 92, 93, 94, 95, 97, 98, 100, 103)
NTU60_XVIEW_TRAIN_CAMERAS = (2, 3)

_NTU_NAME = re.compile(r"S(?P<setup>\d{3})C(?P<camera>\d{3})P(?P<subject>\d{3})"
                       r"R(?P<replication>\d{3})A(?P<action>\d{3})")
_UCLA_NAME = re.compile(r"a(?P<action>\d+)_s(?P<subject>\d+)_e(?P<episode>\d+)_v(?P<view>\d+)")
_MSR_NAME = re.compile(r"a(?P<action>\d+)_s(?P<subject>\d+)_e(?P<episode>\d+)")
_PKU_NAME = re.compile(r"^(?:\d{4}|A\d{2}N\d{2})-(?P<view>[LMR])$")
NAME_PATTERNS = {"ntu": _NTU_NAME, "pyskl": _NTU_NAME, "ucla": _UCLA_NAME, "msr": _MSR_NAME}


def class_name(dataset: str, key: int | str) -> str:
    """A readable name for a class key (1-based id, or the name itself for folder datasets)."""
    if isinstance(key, str):
        return key
    tables = {"ntu": NTU120_CLASSES, "pyskl": NTU120_CLASSES, "pku": PKU_CLASSES,
              "msr": MSR_CLASSES}
    if dataset == "ucla" and key in UCLA_CLASSES:
        return UCLA_CLASSES[key]
    table = tables.get(dataset)
    if table is not None and 1 <= key <= len(table):
        return table[key - 1]
    return str(key)


def name_meta(dataset: str, name: str) -> dict[str, int]:
    """Ids encoded in a sample name (subject, setup, camera/view, action, ...); {} if none."""
    pattern = NAME_PATTERNS.get(dataset)
    match = pattern.search(name) if pattern is not None else None
    if match is None:
        return {}
    meta = {k: int(v) for k, v in match.groupdict().items()}
    if "camera" in meta:
        meta["view"] = meta["camera"]
    return meta


@dataclass(frozen=True)
class SampleRef:
    """One file to read, with what its name (or folder) says before reading it."""

    path: Path
    name: str
    meta: dict = field(default_factory=dict)  # subject, setup, view, action, part, ...
    class_key: int | str | None = None  # known before reading, else None
    options: dict = field(default_factory=dict)  # reader options (e.g. a PKU label file)


_SUFFIXES = {"ntu": (".skeleton",), "ucla": (".json",), "msr": ("_skeleton3D.txt",),
             "pku": (".txt",), "kinetics": (".json",), "skeletics": (".json",),
             "finegym": (".json",), "npz": (".npz",)}
# Files a folder of a user's own pose files may hold besides poses (labels, notes).
_NOT_POSES = (".csv", ".md", ".rst", ".yaml", ".yml", ".ini", ".cfg", ".py", ".log")


def sample_stem(dataset: str, path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES.get(dataset, ()):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def list_files(dataset: str, root: Path) -> list[Path]:
    """The pose files of ``dataset`` under ``root`` (a folder, or one file), sorted by path."""
    if root.is_file():
        return [root]
    suffixes = _SUFFIXES.get(dataset)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if suffixes is not None:
        files = [p for p in files if p.name.endswith(suffixes)]
    elif dataset == "files":
        files = [p for p in files if p.suffix.lower() not in _NOT_POSES]
    if dataset == "pku":
        files = [p for p in files if _PKU_NAME.match(p.stem)]
    return files


def folder_class(root: Path, path: Path) -> tuple[str | None, str | None]:
    """(part, class) of ``root/[part/]class/clip.json``; part is ``train``/``val`` when present."""
    parts = path.relative_to(root).parts[:-1]
    if not parts:
        return None, None
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, parts[-1]


def catalogue(dataset: str, root: Path) -> list[SampleRef]:
    """Every sample file of ``dataset`` under ``root`` with the ids its name or folder carries."""
    refs = []
    for path in list_files(dataset, root):
        name = sample_stem(dataset, path)
        meta: dict = dict(name_meta(dataset, name))
        key: int | str | None = meta.get("action") if dataset in ("ntu", "ucla", "msr") else None
        if dataset == "pku":
            view = _PKU_NAME.match(name)
            meta["view"] = "LMR".index(view.group("view")) + 1 if view else None
            meta["video"] = name
        elif dataset in ("skeletics", "finegym"):
            part, key = folder_class(root, path)
            meta["part"] = part
        elif dataset in ("files", "npz") and root.is_dir() and len(path.relative_to(root).parts) > 1:
            meta["part"] = path.relative_to(root).parts[0]  # a train/ or val/ sub-folder
        refs.append(SampleRef(path=path, name=name, meta=meta, class_key=key))
    return refs


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogueError(f"{path}: cannot read it as text: {err}") from None


def read_split_file(path: Path) -> dict[str, set[str]]:
    """PKU-MMD ``cross-subject.txt`` / ``cross-view.txt``: a 'Training videos:' header, a line of
    comma-separated video ids, a 'Validation videos:' header and its line → {"train", "val"}."""
    parts: dict[str, set[str]] = {"train": set(), "val": set()}
    current = None
    for line in _read_text(path).splitlines():
        text = line.strip()
        lowered = text.lower()
        if lowered.startswith("train"):
            current = "train"
        elif lowered.startswith(("valid", "test")):
            current = "val"
        elif text and current is not None:
            parts[current].update(t.strip() for t in re.split(r"[,\s]+", text) if t.strip())
    return parts


def read_name_list(path: Path) -> set[str]:
    """A file of sample names, one per line (extensions and blank lines ignored)."""
    names = set()
    for line in _read_text(path).splitlines():
        text = line.strip()
        if text:
            names.add(text.split(".")[0])
    return names


def as_key(label: str) -> int | str:
    try:
        return int(label)
    except ValueError:
        return label
