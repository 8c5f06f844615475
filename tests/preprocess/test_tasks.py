"""training.preparation.tasks: built-in task definitions (METHOD §4, §12), overrides and user task
files."""

from __future__ import annotations

import json

import pytest

from training.preparation import catalogue as cat
from training.preparation.tasks import (
    TASKS,
    TaskDefinition,
    TaskError,
    get_task,
    load_task_file,
    named_splits,
)


@pytest.mark.parametrize("name", TASKS)
def test_every_builtin_task_validates_and_round_trips(name):
    task = get_task(name)
    assert task.name == name
    assert task.shared and task.specific
    assert type(task).model_validate(task.model_dump()) == task


@pytest.mark.parametrize("name, shared, specific", [
    ("ucla2msr", "kinect20", "msr20"), ("ntu2pku", "ntu25", "ntu25"),
    ("ntu2skeletics", "shared15", "body25"), ("skeletics2pku", "shared15", "ntu25")])
def test_layouts_per_task_follow_method_section_4(name, shared, specific):
    task = get_task(name)
    assert (task.shared, task.specific) == (shared, specific)


def test_ntu2pku_selects_ntu60_plus_and_41_pku_classes():
    task = get_task("ntu2pku")
    assert task.source.classes == tuple(range(61, 121))
    assert task.source.setups == tuple(range(18, 33))
    assert len(task.source.subjects) == 33  # Supp. Table 1: 33 training subjects
    assert all(s > 40 for s in task.source.subjects)
    assert len(task.target.classes) == 41 and len(set(task.target.classes)) == 41
    assert task.target_split.mode == "split_file"
    # The 10 excluded PKU-MMD classes are the interactions, by name.
    excluded = [cat.PKU_CLASSES[i - 1] for i in range(1, 52) if i not in task.target.classes]
    assert sorted(excluded) == sorted([
        "giving something to other person", "handshaking", "hugging other person",
        "kicking other person", "pat on back of other person", "point finger at the other person",
        "punching/slapping other person", "pushing other person", "put something inside pocket",
        "take out something from pocket"])


def test_class_tables_have_the_dataset_sizes():
    assert len(cat.NTU120_CLASSES) == 120 and len(cat.PKU_CLASSES) == 51
    assert len(cat.MSR_CLASSES) == 20 and len(cat.UCLA_CLASSES) == 10
    assert cat.class_name("ntu", 61) == "put on headphone"
    assert cat.class_name("ucla", 12) == "carry"
    assert cat.class_name("skeletics", "juggling balls") == "juggling balls"


def test_named_target_splits():
    assert set(named_splits("ucla2msr")) == {"all", "cross_subject"}
    task = get_task("ucla2msr", target_split="cross_subject")
    assert task.target_split.mode == "subjects" and task.target_split.train == (1, 3, 5, 7, 9)
    with pytest.raises(TaskError, match="no target split 'xview'.*all, cross_subject"):
        get_task("ucla2msr", target_split="xview")


def test_unknown_task_and_bad_overrides_name_the_problem():
    with pytest.raises(TaskError, match="unknown task 'ucla2ntu'.*ucla2msr"):
        get_task("ucla2ntu")
    with pytest.raises(TaskError, match="source.subject"):
        get_task("ucla2msr", overrides={"source": {"subject": [1]}})
    with pytest.raises(TaskError, match="shared"):
        get_task("ucla2msr", overrides={"shared": "kinect99"})
    task = get_task("ucla2msr", overrides={"source": {"classes": [1, 2]}, "frames": 32})
    assert task.source.classes == (1, 2) and task.frames == 32
    assert task.source.paths == ("nw_ucla",)  # untouched keys survive the merge


def test_user_task_file_resolves_paths_relative_to_itself(tmp_path):
    (tmp_path / "cfg").mkdir()
    spec = {"source": {"path": "../src", "labels": "../src/labels.csv"},
            "target": {"path": "/elsewhere/tgt.npz"}, "num_clusters": 3}
    path = tmp_path / "cfg" / "mine.json"
    path.write_text(json.dumps(spec))
    task = load_task_file(path)
    assert task.name == "mine"
    assert task.source.dataset == "files"
    # first relative to the task file's folder, then (unchanged) relative to the raw-data folder
    assert task.source.paths == (str(tmp_path / "cfg" / "../src"), "../src")
    assert task.source.labels == (str(tmp_path / "cfg" / "../src/labels.csv"), "../src/labels.csv")
    assert task.target.paths == ("/elsewhere/tgt.npz",)
    assert task.shared is None and task.num_clusters == 3


def test_user_task_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("source: {path: a}\ntarget: {path: b}\nnum_cluster: 3\n")
    with pytest.raises(TaskError, match=r"bad\.yaml.*num_cluster"):
        load_task_file(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(TaskError, match="mapping"):
        load_task_file(path)


# ------------------------------------------------------------------- channels (2-D models)

def _ucla_to(target: dict, **top) -> dict:
    return {"source": {"dataset": "ucla", "path": "nw_ucla"}, "target": target, **top}


def test_per_domain_channels_the_model_reads_the_targets():
    task = get_task("ucla2msr", overrides={"target": {"channels": "xy"}})
    assert task.check_channels("xyz", "xyz") == ("xyz", "xy")  # MSR with depth dropped
    assert task.provided_channels("target", "xyz") == "xy"
    plain = get_task("ucla2msr")
    assert plain.check_channels("xyz", "xyz") == ("xyz", "xyz")
    assert get_task("kinetics2ntu").check_channels("xy_score", None) == ("xy_score", "xy_score")
    # The top-level key still names the model's channels (= the target's).
    legacy = get_task("ucla2msr", overrides={"channels": "xy_score"})
    assert legacy.check_channels("xyz", "xyz") == ("xyz", "xy_score")
    rotated = get_task("ucla2msr", overrides={"target": {"channels": "xy"},
                                              "source": {"view_rotation": 30}})
    assert rotated.source.view_rotation == 30


@pytest.mark.parametrize(("spec", "message"), [
    # A 2-D source cannot train a 3-D model: the fix is the target's channels.
    (_ucla_to({"dataset": "ucla", "path": "x"}) | {"source": {"dataset": "kinetics", "path": "k"}},
     r"source: 2-D poses \(x, y, score\) cannot train a model for the target's 3-D poses.*"
     r"Set target.channels to 'xy' or 'xy_score'"),
    # A domain cannot be asked for more than its files hold.
    (_ucla_to({"dataset": "kinetics", "path": "k", "channels": "xyz"}),
     r"target.channels: 'xyz' asks for 3-D poses but the target's files hold 2-D poses"),
    (_ucla_to({"dataset": "msr", "path": "m"}, channels="xy") | {"target": {
        "dataset": "msr", "path": "m", "channels": "xy_score"}},
     r"channels \('xy'\) and target.channels \('xy_score'\) disagree"),
    (_ucla_to({"dataset": "msr", "path": "m"}) | {"source": {
        "dataset": "ucla", "path": "u", "view_rotation": 20}},
     r"source.view_rotation: 20 degrees applies only when a 3-D source is projected for a 2-D"),
    (_ucla_to({"dataset": "msr", "path": "m", "channels": "xy", "view_rotation": 5}),
     r"target.view_rotation: only the source is rotated"),
    (_ucla_to({"dataset": "msr", "path": "m", "channels": "xz"}),
     r"target.channels: Input should be 'xyz', 'xy' or 'xy_score'"),
])
def test_channel_combinations_are_refused_before_any_file_is_read(tmp_path, spec, message):
    path = tmp_path / "task.json"
    path.write_text(json.dumps(spec))  # the paths do not exist: nothing is read
    with pytest.raises(TaskError, match=rf"task\.json: invalid task definition: {message}"):
        load_task_file(path)


def test_channels_known_only_from_the_files_are_checked_when_they_are_known():
    spec = {"name": "arrays", "source": {"path": "src", "labels": "src/labels.csv"},
            "target": {"path": "tgt"}}
    task = TaskDefinition.model_validate(spec)  # plain arrays: nothing known before reading
    assert task.source.file_channels is None and task.target.file_channels is None
    with pytest.raises(ValueError, match="source: 2-D poses \\(x, y\\) cannot train"):
        task.check_channels("xy", "xyz")
    arrays = TaskDefinition.model_validate(spec | {"target": {
        "path": "tgt", "options": {"channels": ["x", "y", "score"]}}})
    assert arrays.target.file_channels == "xy_score"


@pytest.mark.parametrize(("given", "parsed"), [("auto", "auto"), ("AUTO", "auto"), (" auto ", "auto"),
                                               (7, 7), ("12", 12), (None, None)])
def test_num_clusters_is_an_integer_or_auto(tmp_path, given, parsed):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"source": {"path": "s"}, "target": {"path": "t"},
                                "num_clusters": given}))
    assert load_task_file(path).num_clusters == parsed


@pytest.mark.parametrize("given", ["automatic", 1, 0, -3, True, 2.5, "", [4]])
def test_bad_num_clusters_names_the_file_the_key_and_the_value(tmp_path, given):
    path = tmp_path / "bad_k.yaml"
    path.write_text(f"source: {{path: s}}\ntarget: {{path: t}}\nnum_clusters: {json.dumps(given)}\n")
    with pytest.raises(TaskError, match=r"bad_k\.yaml.*num_clusters.*integer >= 2 or 'auto'.*got"):
        load_task_file(path)
