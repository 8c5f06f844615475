"""A seeded, bounded fuzzer of the readers, the preprocessing and the archive iterator (issue 9).

Seeds are real files (``../shared/data`` and ``tests/fixtures``) and containers made from them
(``.npy``, ``.npz``, ``.zip``, ``.tar.gz``); each input is a seed mutated by truncation, bit flips,
insertions (of random bytes or of tokens that readers must handle: ``nan``, ``1e39``, a 400-digit
number, ``true``, NUL, CR), deletions and duplicated spans. Every input is read under its seed's
name, so detection sends it to the seed's reader. The contract checked:

- only the project's errors (:class:`~codt_deploy.errors.CodtError`) leave ``read_bytes`` /
  ``read_poses``, the preprocessing and :func:`~codt_deploy.sources.iter_archive`; an
  :class:`~codt_deploy.errors.UnforeseenInputError` (a reader failure caught by the safety net)
  counts as an escape too;
- every accepted input preprocesses to finite values.

The user-supplied files that are not pose files are fuzzed the same way (issue 27), a share
``settings_share`` of the inputs drawn from a generator of their own (so the pose inputs are the
same for a seed whatever the share): a labels CSV (:func:`~codt_deploy.labels.read_labels`), layout
files in JSON and YAML (read and validated as ``--layout`` reads them), a model manifest
(:func:`~codt_deploy.models.load_manifest`) and a ``--resume`` journal (resumed and converted by
:class:`~codt_deploy.writers.JournalSink`); the same contract holds: only the project's errors.

``run_fuzz(count, seed)`` returns a :class:`FuzzReport` (counts per outcome, the escapes with their
inputs' recipe). ``tests/readers/test_fuzz.py`` runs a few thousand inputs; the longer run is
``python -m benchmarks.fuzz_readers --count 20000``.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codt_deploy.datafiles import read_data_file
from codt_deploy.errors import CodtError, LayoutError, UnforeseenInputError
from codt_deploy.labels import read_labels
from codt_deploy.layouts import LayoutSpec, layout_from_spec, layout_spec
from codt_deploy.models import load_manifest
from codt_deploy.preprocess import ChannelMode, PreprocessConfig, mode_of_channels, preprocess
from codt_deploy.readers import read_bytes, read_poses, save_npz
from codt_deploy.sources import ArchiveLimits, iter_archive
from codt_deploy.writers import JournalSink, columns

REPO = Path(__file__).resolve().parents[2]
TOKENS = (b"nan", b"inf", b"-1e39", b"3e38", b"9" * 400, b"true", b"\x00", b"\r", b"\r\r\n",
          b"\xef\xbb\xbf", b"-", b"[", b"]", b"{", b"}", b",", b'"', b"0", b"99999", b"\n\n",
          b"1e308", b"-0", b"\xff\xfe")
_SHARED_SEEDS = (  # (folder under the shared data, glob, how many)
    ("ntu_rgbd_samples", "*.skeleton", 2), ("nw_ucla", "a0[12]_s01_e0[01]_v01.json", 3),
    ("msr_action3d", "a0[1-3]_s01_e01_skeleton3D.txt", 3), ("pku_mmd_sample", "A*.txt", 1),
    ("utkinect_action3d", "joints_s0[1-2]_e01.txt", 2),
    ("kinetics_skeleton_samples", "kinetics_val/*.json", 2),
)
_FIXTURE_SEEDS = ("penn/0001.mat", "vibe/gappy_tracks.json", "malformed/corrupt_penn.mat")
#: and for the other user-supplied files: past the JSON/YAML parsers' limits too
SETTINGS_TOKENS = TOKENS + (b"[" * 100_000, b"9" * 5000, b"- " * 5000, b'{"a": ' * 20_000)
_MUTATIONS = ("truncate", "flip", "insert", "token", "delete", "duplicate")
_MUTATION_WEIGHTS = (0.1, 0.3, 0.1, 0.3, 0.1, 0.1)
_PATH_READ_SHARE = 0.1  # this share of inputs is read from a temporary file by read_poses
ARCHIVE_LIMITS = ArchiveLimits(max_member_bytes=8 << 20, max_total_bytes=32 << 20)
SETTINGS_SHARE = 0.2  # of the inputs: user-supplied files that are not pose files
JOURNAL_HEADER = {"journal": 2, "model": "fuzz", "format": "csv", "embeddings": False}


@dataclass
class FuzzReport:
    """Counts per outcome; ``escapes``/``non_finite`` list (recipe, what happened)."""

    inputs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    escapes: list[tuple[str, str]] = field(default_factory=list)
    non_finite: list[tuple[str, str]] = field(default_factory=list)
    slowest_s: float = 0.0
    slowest: str = ""

    def summary(self) -> str:
        lines = [f"{self.inputs} inputs; escapes {len(self.escapes)}; non-finite outputs "
                 f"{len(self.non_finite)}; slowest input {self.slowest_s:.2f} s ({self.slowest})"]
        lines += [f"  {outcome:<28} {count}" for outcome, count in self.outcomes.most_common()]
        lines += [f"  ESCAPE {recipe}: {what}" for recipe, what in self.escapes[:20]]
        lines += [f"  NON-FINITE {recipe}: {what}" for recipe, what in self.non_finite[:20]]
        return "\n".join(lines)


def _trim_text(data: bytes, lines: int) -> bytes:
    return b"\n".join(data.split(b"\n")[:lines]) + b"\n"


def seed_files(shared_data: Path) -> list[tuple[str, bytes]]:
    """(name, content) of every seed: real files, trimmed copies, and containers made of them."""
    seeds = []
    for folder, pattern, count in _SHARED_SEEDS:
        for path in sorted((shared_data / folder).glob(pattern))[:count]:
            seeds.append((path.name, path.read_bytes()))
    seeds += [(Path(rel).name, (REPO / "tests" / "fixtures" / rel).read_bytes())
              for rel in _FIXTURE_SEEDS]
    seeds += [(name, _trim_text(data, 120)) for name, data in seeds
              if name.endswith((".skeleton", ".txt"))]  # small copies: mutations reach the end
    msr = read_bytes(*seeds[[n for n, _ in seeds].index("a01_s01_e01_skeleton3D.txt")])
    return seeds + _containers(msr[0], dict(seeds))


def _containers(seq, files: dict[str, bytes]) -> list[tuple[str, bytes]]:
    npy = io.BytesIO()
    np.save(npy, seq.data)  # (T, M, V, C) -> read as TMVC
    with tempfile.TemporaryDirectory() as folder:
        npz = save_npz(Path(folder) / "clips.npz", [seq, seq]).read_bytes()
    members = {name: data for name, data in list(files.items())[:6]}
    zipped, tarred = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(f"clips/{name}", data[:20000])
    with tarfile.open(fileobj=tarred, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"clips/{name}")
            info.size = len(data[:20000])
            archive.addfile(info, io.BytesIO(data[:20000]))
    return [("clip.npy", npy.getvalue()), ("clips.npz", npz), ("clips.zip", zipped.getvalue()),
            ("clips.tar.gz", tarred.getvalue())]


def settings_seeds() -> list[tuple[str, bytes]]:
    """(name, content) of the user-supplied files other than poses; the name picks the check."""
    layout = {**layout_spec("msr20").model_dump(mode="json"), "name": "fuzzed20"}
    return [("labels.csv", (REPO / "examples" / "msr_action3d" / "labels.csv").read_bytes()),
            ("layout.json", json.dumps(layout, indent=1).encode()),
            ("layout.yaml", (REPO / "examples" / "layouts" / "sbu15.yaml").read_bytes()),
            ("manifest.json", (REPO / "exported" / "ucla2msr.json").read_bytes()),
            ("out.csv.part", _journal())]


def _journal() -> bytes:
    """A journal of three done files, one row each, as an interrupted run leaves it."""
    lines = [{"type": "header", **JOURNAL_HEADER}]
    for i in range(3):
        key = f"/data/a0{i}_s01_e01_skeleton3D.txt"
        lines += [{"type": "row", "key": key, "source": key, "member": "", "name": f"a0{i}",
                   "segment": "", "cluster": i, "confidence": 0.5},
                  {"type": "done", "key": key, "rows": 1}]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _check_labels(path: Path) -> str:
    read_labels(path).label_of("a01_s02_e01_skeleton3D.txt")
    return "labels CSV read"


def _check_layout(path: Path) -> str:
    """As ``--layout FILE`` reads it, less the registration (the process's registry is shared)."""
    data = read_data_file(path, LayoutError, "layout file")
    layout_from_spec(LayoutSpec.from_data(data, str(path)), str(path))
    return "layout file read"


def _check_manifest(path: Path) -> str:
    load_manifest(path)
    return "manifest read"


def _check_journal(path: Path) -> str:
    """Resume the journal and convert it into the output, as ``--resume`` and the run's end do."""
    sink = JournalSink(path.with_suffix(""), "csv", columns(), None, JOURNAL_HEADER,
                       lambda row: None, resume=True)
    try:
        sink.close()
    finally:
        sink.handle.close()
    return "journal resumed"


SETTINGS_CHECKS = {"labels.csv": _check_labels, "layout.json": _check_layout,
                   "layout.yaml": _check_layout, "manifest.json": _check_manifest,
                   "out.csv.part": _check_journal}


def mutate(data: bytes, rng: np.random.Generator,
           tokens: tuple[bytes, ...] = TOKENS) -> tuple[bytes, str]:
    """One to three random mutations of ``data`` (insertions from ``tokens``); returns the result
    and a short recipe."""
    out, recipe = bytearray(data), []
    for _ in range(int(rng.choice((1, 2, 3), p=(0.7, 0.2, 0.1)))):
        kind = rng.choice(_MUTATIONS, p=_MUTATION_WEIGHTS)
        pos = int(rng.integers(0, max(len(out), 1)))
        if kind == "truncate":
            del out[pos:]
        elif kind == "flip" and out:
            for _ in range(int(rng.integers(1, 9))):
                i = int(rng.integers(0, len(out)))
                out[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == "insert":
            out[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 16)), np.uint8).tobytes()
        elif kind == "token":
            out[pos:pos] = tokens[int(rng.integers(0, len(tokens)))]
        elif kind == "delete":
            del out[pos:pos + int(rng.integers(1, 64))]
        elif kind == "duplicate":
            out[pos:pos] = out[pos:pos + int(rng.integers(1, 2048))]
        recipe.append(f"{kind}@{pos}")
    return bytes(out), "+".join(recipe)


def _preprocess_all(seqs, report: FuzzReport, recipe: str) -> str:
    """Preprocess each sequence on its own layout; the outcome name."""
    for seq in seqs:
        channels: ChannelMode = mode_of_channels(seq.channels) or "xyz"  # else refused
        try:
            out = preprocess(seq, PreprocessConfig(layout=seq.layout, channels=channels))
        except CodtError as exc:
            return f"refused by preprocessing: {type(exc).__name__}"
        if not np.isfinite(out).all():
            report.non_finite.append((recipe, f"{seq.source}: non-finite preprocessing output"))
            return "non-finite"
    return "accepted"


def _read(name: str, data: bytes, as_path: bool, folder: Path):
    if not as_path:
        return read_bytes(name, data)
    path = folder / name
    path.write_bytes(data)
    return read_poses(path)


def check_input(name: str, data: bytes, recipe: str, report: FuzzReport, *, as_path: bool,
                folder: Path) -> None:
    """Run one input through the archive iterator or a reader and the preprocessing."""
    try:
        if name in SETTINGS_CHECKS:
            outcome = _check_settings(name, data, folder)
        elif name.endswith((".zip", ".tar.gz")):
            outcome = _check_archive(name, data, recipe, report, folder)
        else:
            outcome = _preprocess_all(_read(name, data, as_path, folder), report, recipe)
    except UnforeseenInputError as exc:
        report.escapes.append((recipe, f"unforeseen: {exc}"))
        outcome = "ESCAPE (unforeseen)"
    except CodtError as exc:
        outcome = f"refused: {type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - the very thing this harness counts
        report.escapes.append((recipe, f"{type(exc).__name__}: {exc}"[:300]))
        outcome = f"ESCAPE {type(exc).__name__}"
    report.outcomes[outcome] += 1


def _check_settings(name: str, data: bytes, folder: Path) -> str:
    path = folder / name
    path.write_bytes(data)
    try:
        return SETTINGS_CHECKS[name](path)
    finally:
        for left in folder.glob("out.csv*"):  # the journal and the output it was converted into
            left.unlink()


def _check_archive(name: str, data: bytes, recipe: str, report: FuzzReport, folder: Path) -> str:
    path = folder / name
    path.write_bytes(data)
    outcomes: Counter[str] = Counter()
    for item in iter_archive(path, ARCHIVE_LIMITS):
        if item.data is None:
            outcomes["member error" if item.error else "member skipped"] += 1
            continue
        try:
            outcomes[_preprocess_all(read_bytes(f"{name}::{item.member}", item.data),
                                     report, recipe)] += 1
        except UnforeseenInputError:
            raise
        except CodtError:
            outcomes["member refused"] += 1
    return "archive: " + ("all members read" if set(outcomes) <= {"accepted"} else
                          "some members refused")


def run_fuzz(count: int, seed: int, shared_data: Path,
             settings_share: float = SETTINGS_SHARE) -> FuzzReport:
    """Fuzz ``count`` inputs deterministically from ``seed``, a share ``settings_share`` of them
    user-supplied files other than poses (drawn from their own generator)."""
    rng, settings_rng = np.random.default_rng(seed), np.random.default_rng([seed, 27])
    seeds, settings = seed_files(shared_data), settings_seeds()
    report = FuzzReport()
    with tempfile.TemporaryDirectory(prefix="codt-fuzz-") as tmp:
        folder = Path(tmp)
        for i in range(count):
            as_settings = settings_rng.random() < settings_share
            chosen, pool = (settings_rng, settings) if as_settings else (rng, seeds)
            name, original = pool[int(chosen.integers(0, len(pool)))]
            data, recipe = mutate(original, chosen, SETTINGS_TOKENS if as_settings else TOKENS)
            recipe = f"#{i} {name} {recipe}"
            start = time.perf_counter()
            as_path = not as_settings and bool(rng.random() < _PATH_READ_SHARE)
            check_input(name, data, recipe, report, as_path=as_path, folder=folder)
            elapsed = time.perf_counter() - start
            if elapsed > report.slowest_s:
                report.slowest_s, report.slowest = elapsed, recipe
            report.inputs += 1
    return report
