"""The table of pose formats: names, file extensions, options, and detection by name and content."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import (
    arrays,
    crossclr,
    kinetics,
    msr,
    ntu,
    openpose,
    penn,
    pku,
    pyskl,
    ucla,
    utkinect,
    vibe,
)
from codt_deploy.readers._text import sample_name, strip_bom
from codt_deploy.sequence import PoseSequence

ParseBytes = Callable[..., list[PoseSequence]]  # (data: bytes, source: str, **options)
ReadPath = Callable[..., list[PoseSequence]]  # (path: Path, **options)


@dataclass(frozen=True)
class Reader:
    """One pose format. ``read_path`` is used for local files when set (memory-mapping, side
    files, folders); otherwise the file's bytes go to ``parse_bytes``."""

    name: str
    description: str
    extensions: tuple[str, ...]
    parse_bytes: ParseBytes | None  # None: never read from bytes (pickles)
    read_path: ReadPath | None = None
    options: frozenset[str] = frozenset()
    pickle_only: bool = False  # the format itself is a pickle: refused unless trust_pickle
    takes_trust: bool = False  # read_path receives trust_pickle (side pickles, e.g. label.pkl)
    reads_folders: bool = False


_TABLE = (
    Reader("ntu", "NTU RGB+D .skeleton (ntu25)", (".skeleton",), ntu.parse),
    Reader("pku", "PKU-MMD skeleton .txt + label file (ntu25)", (".txt",), pku.parse,
           pku.read_path, frozenset({"label_file"})),
    Reader("kinetics", "Kinetics-skeleton JSON (coco18)", (".json",), kinetics.parse),
    Reader("openpose", "OpenPose per-frame JSON folder (body25/coco18)", (".json",),
           openpose.parse, openpose.read_path, frozenset({"image_size", "max_persons"}),
           reads_folders=True),
    Reader("vibe", "VIBE / Skeletics-152 JSON (body25)", (".json",), vibe.parse),
    Reader("msr", "MSR Action3D skeleton3D .txt (msr20)", (".txt",), msr.parse),
    Reader("utkinect", "UTKinect-Action3D joints .txt + actionLabel.txt (kinect20)", (".txt",),
           utkinect.parse, utkinect.read_path, frozenset({"label_file"})),
    Reader("ucla", "NW-UCLA JSON (kinect20)", (".json",), ucla.parse),
    Reader("crossclr", "CrosSCLR/CoDT {split}_data.npy / _position.npy (+ labels)", (".npy",),
           crossclr.parse, crossclr.read_path, frozenset({"skeleton"}), takes_trust=True),
    Reader("penn", "Penn Action .mat (penn13)", (".mat",), penn.parse),
    Reader("array", "plain .npy / .npz pose array", (".npy", ".npz"), arrays.parse,
           options=frozenset({"axes", "skeleton", "channels", "expected_channels"})),
    Reader("pyskl", "pyskl / mmaction2 pickle (trusted local files only)", (".pkl", ".pickle"),
           None, pyskl.read_path, frozenset({"skeleton"}), pickle_only=True, takes_trust=True),
)
READERS: dict[str, Reader] = {reader.name: reader for reader in _TABLE}

_MSR_NAME = re.compile(r"^a\d\d_s\d\d_e\d\d(_skeleton3d)?\.txt$")
_UTK_NAME = re.compile(r"^joints_s\d+_e\d+\.txt$")
_JSON_KEYS = (  # (format, a key only that format's files hold near the start)
    ("ucla", b'"skeletons"'), ("kinetics", b'"frame_index"'), ("openpose", b'"people"'),
    ("vibe", b'"joints3d"'), ("vibe", b'"frame_ids"'), ("kinetics", b'"data"'),
)


def available_formats() -> list[str]:
    return sorted(READERS)


def get_reader(name: str) -> Reader:
    try:
        return READERS[name.lower()]
    except KeyError:
        raise PoseFormatError(name, f"unknown pose format; available formats: "
                                    f"{', '.join(available_formats())}") from None


def _unknown(name: str, why: str) -> PoseFormatError:
    return PoseFormatError(name, f"{why}; pass format= one of {', '.join(available_formats())}")


def _sniff_text(name: str, lower: str, head: bytes) -> str:
    if _MSR_NAME.match(lower):
        return "msr"
    if _UTK_NAME.match(lower):
        return "utkinect"
    head = strip_bom(head)
    if b"\x00" in head:
        raise _unknown(name, "binary content with a text extension: cannot tell the format")
    lines = [line for line in head.split(b"\n")[:3] if line.strip()]
    if not lines:
        raise _unknown(name, "empty file: cannot tell the format")
    counts = [len(line.split()) for line in lines]
    by_count = {150: "pku", 61: "utkinect", 4: "msr"}
    if counts[0] in by_count:
        return by_count[counts[0]]
    if counts[:2] == [1, 1] and all(line.strip().isdigit() for line in lines[:2]):
        return "ntu"  # frame count, then the first frame's body count
    raise _unknown(name, f"cannot tell the text format from its first line ({counts[0]} values)")


def _sniff_json(name: str, lower: str, head: bytes) -> str:
    if lower.endswith("_keypoints.json"):
        return "openpose"
    if head.strip() in (b"{}", b"{ }"):
        return "vibe"  # an empty track dict: VIBE found no person
    found = [(head.find(key), fmt) for fmt, key in _JSON_KEYS if key in head]
    if found:
        return min(found)[1]
    raise _unknown(name, "cannot tell which JSON pose format this is")


def detect_format(name: str, head: bytes) -> str:
    """The format of a file from its name (extension, dataset naming) and its first bytes."""
    lower = sample_name(name).lower()
    suffix = Path(lower).suffix
    if suffix == ".skeleton":
        return "ntu"
    if suffix in (".pkl", ".pickle"):
        return "pyskl"
    if suffix == ".mat":
        return "penn"
    if suffix == ".npz":
        return "array"
    if suffix == ".npy":
        return "crossclr" if crossclr.FILE_NAME.match(lower) else "array"
    if suffix == ".json":
        return _sniff_json(name, lower, head)
    if suffix in (".txt", ""):
        return _sniff_text(name, lower, head)
    raise _unknown(name, f"unknown file type {suffix!r}")
