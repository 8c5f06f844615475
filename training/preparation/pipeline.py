"""Raw pose files → a prepared task folder: :func:`prepare_task` (``python -m training.prepare``).

For each domain: list the files (:mod:`training.preparation.catalogue`), drop documented skips
(e.g. NTU's missing-skeleton lists) and samples outside the task's selection, read them with
:func:`codt_deploy.readers.read_poses`, preprocess them (:func:`codt_deploy.preprocess.preprocess`)
into the task's layouts, and write ``<out>/<task>/`` atomically (docs/ARCHITECTURE.md). A file
that cannot be read is reported (name and reason) and skipped; the run carries on and the summary
lists it. ``target_train`` labels are always withheld (-1).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from codt_deploy.errors import CodtError
from codt_deploy.labels import LabelTable, read_labels
from codt_deploy.preprocess import CHANNEL_NAMES, ChannelMode
from codt_deploy.readers import read_poses, utkinect
from codt_deploy.sequence import PoseSequence
from training.preparation import catalogue as cat
from training.preparation.builder import TaskBuilder, channel_mode, default_layouts, finish_task
from training.preparation.tasks import DomainSpec, TaskDefinition
from training.preparation.writing import atomic_directory

logger = logging.getLogger(__name__)


class PrepareError(CodtError, ValueError):
    """Preparing a task cannot go on (missing dataset, empty selection); the message says why."""


@dataclass
class Item:
    """One sample after reading: the sequence, its class key (None = unlabelled) and its ids."""

    seq: PoseSequence
    key: int | str | None
    meta: dict


@dataclass
class DomainReport:
    role: str
    root: str = ""
    files: int = 0
    skipped: Counter = field(default_factory=Counter)  # documented skips: reason -> count
    filtered: Counter = field(default_factory=Counter)  # outside the task: reason -> count
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    keys_found: Counter = field(default_factory=Counter)


def _display(path: Path, raw: Path) -> str:
    """``path`` relative to ``raw`` when inside it (task.json stays free of machine paths)."""
    try:
        return str(path.resolve().relative_to(raw.resolve()))
    except ValueError:
        return str(path)


def find_first(candidates: tuple[str, ...], raw: Path) -> Path | None:
    """The first candidate (absolute, or relative to ``raw``) that exists."""
    for candidate in candidates:
        path = Path(candidate) if Path(candidate).is_absolute() else raw / candidate
        if path.exists():
            return path
    return None


def domain_root(domain: DomainSpec, raw: Path, role: str) -> Path:
    root = find_first(domain.paths, raw)
    if root is None:
        raise PrepareError(f"{role} data ({domain.dataset}) not found: looked for "
                           f"{', '.join(domain.paths)} under {raw}")
    return root


# ------------------------------------------------------------------------ before reading

_ID_FILTERS = ("subjects", "setups", "views")
_META_KEY = {"subjects": "subject", "setups": "setup", "views": "view"}


def outside_selection(domain: DomainSpec, meta: dict, key: int | str | None) -> str | None:
    """Why a sample falls outside the domain's selection, or None when it is kept."""
    if domain.part is not None and meta.get("part") not in (None, domain.part):
        return f"not in part {domain.part!r}"
    for name in _ID_FILTERS:
        wanted = getattr(domain, name)
        if wanted is None:
            continue
        value = meta.get(_META_KEY[name])
        if value is None:
            return f"no {_META_KEY[name]} id in the name"
        if value not in wanted:
            return f"{_META_KEY[name]} not selected"
    if domain.classes != "all" and key is not None and key not in domain.classes:
        return "class not in the task"
    return None


def _listed(candidates: tuple[str, ...], raw: Path) -> tuple[set[str], list[Path]]:
    names: set[str] = set()
    found = [p for p in (find_first((c,), raw) for c in candidates) if p is not None]
    for path in found:
        names |= cat.read_name_list(path)
    return names, found


def select_refs(domain: DomainSpec, root: Path, raw: Path, report: DomainReport,
                limit: int | None) -> list[cat.SampleRef]:
    refs = cat.catalogue(domain.dataset, root)
    report.files = len(refs)
    if domain.file_list:
        keep, found = _listed(domain.file_list, raw)
        if not found:
            raise PrepareError(f"{report.role}: sample list not found: "
                               f"{', '.join(domain.file_list)}")
        report.filtered["not in " + found[0].name] += sum(r.name not in keep for r in refs)
        refs = [r for r in refs if r.name in keep]
    if domain.format == "utkinect":  # its annotation files sit beside the joints files
        labels = [r for r in refs if utkinect.is_label_file(r.path.name)]
        if labels:
            report.skipped["UTKinect action-label file (read for the segments)"] += len(labels)
            refs = [r for r in refs if not utkinect.is_label_file(r.path.name)]
    skip, skip_files = _listed(domain.skip_lists, raw)
    for ref in refs:
        if ref.name in skip:
            report.skipped[f"listed in {skip_files[0].name}"] += 1
    refs = [r for r in refs if r.name not in skip]
    kept = _select(refs, domain, report, lambda ref: ref.class_key)
    return strided_subset(kept, limit)


def _select(entries, domain, report, key_of, count_keys=lambda entry: True) -> list:
    """The entries inside the domain's class/subject selection; counts keys and filter reasons."""
    kept = []
    for entry in entries:
        key = key_of(entry)
        if key is not None and count_keys(entry):
            report.keys_found[key] += 1
        reason = outside_selection(domain, entry.meta, key)
        if reason is None:
            kept.append(entry)
        else:
            report.filtered[reason] += 1
    return kept


def strided_subset(refs: list, limit: int | None) -> list:
    """``limit`` items spread evenly over ``refs`` (name order), so most classes appear: item
    ``floor(i * len(refs) / limit)`` for i < limit, from the first item on."""
    if limit is None or len(refs) <= limit:
        return refs
    step = len(refs) / limit
    return [refs[int(i * step)] for i in range(limit)]


# ---------------------------------------------------------------------------------- reading

def reader_options(ref: cat.SampleRef, domain: DomainSpec, raw: Path,
                   declared: ChannelMode | None = None) -> dict:
    """The reader's keyword options for one file of ``domain``; ``declared``: the channels the
    task says the domain provides (for plain arrays that do not say their own: three channels
    of an ``xy_score`` domain are x, y and a score)."""
    options = dict(domain.options)
    if ref.path.suffix.lower() in (".npy", ".npz"):
        if domain.layout and "skeleton" not in options:
            options["skeleton"] = domain.layout  # plain arrays: the domain's layout is their skeleton
        if declared and "channels" not in options:
            options["expected_channels"] = CHANNEL_NAMES[declared]
    if domain.dataset == "pku" and domain.labels:
        for folder in (find_first((c,), raw) for c in domain.labels):
            if folder is None or not folder.is_dir():
                continue
            for candidate in (folder / f"{ref.name}.txt", folder / f"{ref.name}_label.txt"):
                if candidate.is_file():
                    options["label_file"] = candidate
                    return options
    return options


def class_key(domain: DomainSpec, ref: cat.SampleRef, seq: PoseSequence,
              csv_labels: LabelTable | None) -> int | str | None:
    """The class key of a sample: from its name/folder, its label file, a CSV or the reader."""
    if domain.dataset in ("ntu", "ucla", "msr", "skeletics", "finegym"):
        return ref.class_key
    if domain.dataset in ("pku", "pyskl"):
        return None if seq.label is None else seq.label + 1
    if csv_labels is not None:
        label = csv_labels.label_of(str(ref.path), name=seq.name)
        return None if label is None else cat.as_key(label)
    if seq.label_name is not None:
        return seq.label_name
    return seq.label


def read_ref(ref: cat.SampleRef, domain: DomainSpec, raw: Path, *, csv_labels,
             trust_pickle: bool, labelled: bool, declared: ChannelMode | None = None) -> list[Item]:
    """Read one file into items; raises CodtError/OSError on a bad file."""
    seqs = read_poses(ref.path, format=domain.format, trust_pickle=trust_pickle,
                      **reader_options(ref, domain, raw, declared))
    items = []
    for seq in seqs:
        key = class_key(domain, ref, seq, csv_labels)
        if labelled and key is None:
            hint = "no label for it (labels CSV, file name or the file itself)"
            if domain.dataset == "pku":
                hint = (f"no label file found (looked in {', '.join(domain.labels)}; set the "
                        f"label folder with --target-labels or --source-labels)")
            raise PrepareError(f"sample {seq.name or ref.name!r}: {hint}")
        meta = {**ref.meta, **cat.name_meta(domain.dataset, seq.name)}
        items.append(Item(seq=seq, key=key, meta=meta))
    return items


def iter_items(domain: DomainSpec, refs: list[cat.SampleRef], raw: Path, report: DomainReport,
               *, labelled: bool, trust_pickle: bool, declared: ChannelMode | None = None):
    """Yield (ref, items) per readable file; failures are reported and skipped."""
    csv_labels = None
    if domain.dataset in ("files", "npz") and domain.labels:
        label_path = find_first(domain.labels, raw)
        if label_path is None:
            raise PrepareError(f"{report.role}: labels file not found: {', '.join(domain.labels)}")
        csv_labels = read_labels(label_path)
    for ref in refs:
        try:
            items = read_ref(ref, domain, raw, csv_labels=csv_labels, trust_pickle=trust_pickle,
                             labelled=labelled, declared=declared)
        except (CodtError, OSError) as err:
            report.failures.append((str(ref.path), str(err)))
            logger.warning("skipped %s: %s", ref.path, err)
            continue
        keys_are_counted = ref.class_key is None
        yield ref, _select(items, domain, report, lambda item: item.key,
                           count_keys=lambda item, counted=keys_are_counted: counted)


# ------------------------------------------------------------------------------ the driver

def _peek(domain: DomainSpec, root: Path, raw: Path, trust_pickle: bool,
          declared: ChannelMode | None = None) -> PoseSequence:
    """The first readable sequence of a domain (to learn its layout and channels)."""
    problems = []
    for ref in cat.catalogue(domain.dataset, root)[:20]:
        try:
            seqs = read_poses(ref.path, format=domain.format, trust_pickle=trust_pickle,
                              **reader_options(ref, domain, raw, declared))
        except (CodtError, OSError) as err:
            problems.append(f"{ref.path}: {err}")
            continue
        if seqs:
            return seqs[0]
    detail = f": {problems[0]}" if problems else ""
    raise PrepareError(f"no readable pose file in {root}{detail}")


def resolve_layouts(task: TaskDefinition, roots: dict[str, Path], raw: Path,
                    trust_pickle: bool) -> tuple[str, str, ChannelMode, ChannelMode]:
    """(shared, specific, the model's channels, the source's channels) from the task, else from
    the first file of each domain; channels that do not fit fail here, before any file is
    prepared, naming the task key to change (:meth:`TaskDefinition.check_channels`)."""
    layouts: dict[str, str | None] = {}
    files: dict[str, ChannelMode | None] = {}
    for role in ("source", "target"):
        domain = getattr(task, role)
        layouts[role], files[role] = domain.layout, domain.file_channels
        if domain.layout is None or task.provided_channels(role, files[role]) is None:
            seq = _peek(domain, roots[role], raw, trust_pickle,
                        task.provided_channels(role, None))
            layouts[role] = layouts[role] or seq.layout
            files[role] = files[role] or channel_mode(seq)
    try:
        source, model = task.check_channels(files["source"], files["target"])
    except ValueError as err:
        raise PrepareError(f"task {task.name!r}: {err}") from None
    source_layout, target_layout = layouts["source"], layouts["target"]
    assert source_layout and target_layout and source and model  # the first files decide
    shared, specific = default_layouts(task, source_layout, target_layout)
    return shared, specific, model, source


def split_sets(task: TaskDefinition, raw: Path) -> dict[str, set[str]]:
    split = task.target_split
    if split.mode != "split_file":
        return {}
    path = find_first(split.split_files, raw)
    if path is None:
        raise PrepareError(f"target split file not found: looked for "
                           f"{', '.join(split.split_files)} under {raw} "
                           f"(or use --target-split all)")
    return cat.read_split_file(path)


def prepare_task(task: TaskDefinition, raw: Path, out: Path, *, limit: int | None = None,
                 trust_pickle: bool = False) -> dict:
    """Prepare ``task`` into ``out/<task.name>`` (atomically); returns the task.json summary."""
    roots = {role: domain_root(getattr(task, role), raw, role) for role in ("source", "target")}
    shared, specific, channels, source_channels = resolve_layouts(task, roots, raw, trust_pickle)
    sets = split_sets(task, raw)
    with atomic_directory(out / task.name) as folder:
        builder = TaskBuilder(task, folder, shared=shared, specific=specific, channels=channels,
                              split_sets=sets, source_channels=source_channels)
        try:
            reports = {role: _build_domain(builder, role, roots[role], raw, limit, trust_pickle)
                       for role in ("source", "target")}
            return finish_task(builder, reports, raw)
        finally:
            builder.close()


def _build_domain(builder: TaskBuilder, role: str, root: Path, raw: Path, limit: int | None,
                  trust_pickle: bool) -> DomainReport:
    domain = getattr(builder.task, role)
    report = DomainReport(role=role, root=_display(root, raw))
    refs = select_refs(domain, root, raw, report, limit)
    labelled = role == "source" or domain.dataset not in ("files", "npz") or bool(domain.labels)
    for ref, items in iter_items(domain, refs, raw, report, labelled=labelled,
                                 trust_pickle=trust_pickle,
                                 declared=builder.task.provided_channels(role, None)):
        try:
            builder.add(role, ref, items)
        except CodtError as err:
            report.failures.append((str(ref.path), str(err)))
            logger.warning("skipped %s: %s", ref.path, err)
    logger.info("%s: %d files, %d failed", role, report.files, len(report.failures))
    return report
