"""codt_deploy.labels: the one labels CSV reader and matcher (CLI, app and training use it)."""

from __future__ import annotations

import pytest

from codt_deploy.errors import CodtError, LabelsError
from codt_deploy.labels import KEY_COLUMNS, LabelTable, read_labels, sequence_keys
from tests.conftest import EXAMPLES, write_csv

# --- reading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key_column", KEY_COLUMNS)
def test_every_documented_key_column_is_accepted(tmp_path, key_column):
    path = write_csv(tmp_path / "labels.csv", [key_column, "label"], [["a.txt", "wave"]])
    assert read_labels(path).label_of("a.txt") == "wave"


def test_header_case_spaces_bom_and_extra_columns_are_tolerated(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"\xef\xbb\xbf Notes , File ,LABEL , Label_Name\n"
                     b"x, a.txt , 0 , high arm wave\n\n , , ,\ny,b.txt,0,\nz,c.txt,1,\n")
    table = read_labels(path)
    assert {k: table.by_key[k] for k in ("a.txt", "b.txt", "c.txt")} == {
        "a.txt": "0", "b.txt": "0", "c.txt": "1"}
    assert table.names == {"0": "high arm wave", "1": "1"}
    assert table.source == str(path)


def test_the_first_key_column_in_documented_order_wins(tmp_path):
    path = write_csv(tmp_path / "labels.csv", ["member", "name", "label"],
                      [["clips/a.json", "a#1", "wave"]])
    assert "a#1" in read_labels(path).by_key and "clips/a.json" not in read_labels(path).by_key


def test_the_same_key_with_the_same_label_twice_is_fine(tmp_path):
    path = write_csv(tmp_path / "labels.csv", ["file", "label"], [["a", "1"], ["a", "1"]])
    assert read_labels(path).by_key["a"] == "1"


def test_the_committed_example_labels():
    table = read_labels(EXAMPLES / "labels.csv")
    assert table.label_of("a01_s02_e01_skeleton3D.txt") == "0"
    assert table.names["2"] == "hammer"


@pytest.mark.parametrize("header, rows, message, line", [
    (["file", "class"], [["a", "1"]], "needs a 'label' column and a key column", None),
    (["clip", "label"], [["a", "1"]],
     "one of file, filename, name, sample, path, source, member\\); found columns", None),
    (["file", "label"], [["a", "1"], ["a", "2"]], "'a' is listed twice, with labels '1' and '2'",
     3),
    (["file", "label"], [["a", ""]], "empty 'file' or 'label'", 2),
    (["sample", "label"], [["b", "1"], ["a"]], "empty 'sample' or 'label'", 3),
    (["file", "label"], [], "no labels in this file, only a header", None),
])
def test_bad_labels_csv_names_the_file_line_and_problem(tmp_path, header, rows, message, line):
    path = write_csv(tmp_path / "my_labels.csv", header, rows)
    with pytest.raises(LabelsError, match=message) as info:
        read_labels(path)
    assert info.value.line == line and info.value.path == str(path)
    assert str(info.value).startswith(str(path) + ("" if line is None else f" (line {line})"))


def test_an_empty_file_needs_a_header(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n\n")
    with pytest.raises(LabelsError, match="needs a 'label' column"):
        read_labels(path)


def test_a_field_over_the_csv_limit_names_its_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("file,label\nb,2\n" + "a" * 140_000 + ",1\n")
    with pytest.raises(LabelsError, match=r"\(line 3\): not a labels CSV: field larger than"):
        read_labels(path)


@pytest.mark.parametrize("content", [b"file,label\n\xff\xfe,1\n", None])
def test_unreadable_files_are_labels_errors(tmp_path, content):
    path = tmp_path / "labels.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LabelsError, match="cannot read the labels CSV") as info:
        read_labels(path, shown_as="labels.csv")
    assert str(info.value).startswith("labels.csv: ") and isinstance(info.value, CodtError)


# --- matching -----------------------------------------------------------------------------------

def test_sequence_keys_most_specific_first():
    assert sequence_keys("up/clips.zip", "clips/a.b.json", "A10N08-L#3") == [
        "A10N08-L#3", "up/clips.zip::clips/a.b.json", "clips/a.b.json", "a.b.json", "a.b", "a",
        "up/clips.zip"]
    assert sequence_keys("clips.zip::clips/a.json") == sequence_keys("clips.zip", "clips/a.json")
    assert sequence_keys("data/a01.npy", name="a01") == ["a01", "data/a01.npy", "a01.npy"]


@pytest.mark.parametrize("key, source, member, name", [
    ("A10N08-L#3", "pku/A10N08-L.txt", "", "A10N08-L#3"),  # a segment, by its sequence name
    ("s01_e01#walk", "joints_s01_e01.txt", "", "s01_e01#walk"),  # a UTKinect segment
    ("up/clips.zip::clips/a.json", "up/clips.zip", "clips/a.json", ""),  # one archive member
    ("clips/a.json", "clips.zip::clips/a.json", "", ""),  # the member path, app spelling
    ("data/a.json", "data/a.json", "", ""),  # the file path as given
    ("a.json", "/elsewhere/a.json", "", ""),  # the file name
    ("a", "data/a.json", "", ""),  # the stem
    ("a.npy", "data/a.npy", "", "a"),  # a plain array named after its file
    ("clips.zip", "clips.zip", "b/c.txt", "c"),  # the archive labels all its members
])
def test_a_key_labels_the_sequence_it_names(key, source, member, name):
    table = LabelTable({key: "wave"}, {"wave": "wave"}, "labels.csv")
    assert table.label_of(source, member, name) == "wave"


def test_a_sequence_name_beats_its_file_name_and_unmatched_is_none(tmp_path):
    path = write_csv(tmp_path / "labels.csv", ["name", "label"],
                      [["A10N08-L.txt", "all"], ["A10N08-L#2", "two"]])
    table = read_labels(path)
    assert table.label_of("A10N08-L.txt", name="A10N08-L#2") == "two"
    assert table.label_of("A10N08-L.txt", name="A10N08-L#1") == "all"
    assert table.label_of("other.txt", name="other") is None


def test_a_path_key_also_labels_its_file_name_and_stems(tmp_path):
    path = write_csv(tmp_path / "labels.csv", ["name", "label"],
                      [["clips/a.json", "wave"], ["b.npz", "3"], ["x/c.json", "1"],
                       ["y/c.json", "2"]])
    table = read_labels(path)
    assert table.lookup("a.json") == table.lookup("a") == table.lookup("clips/a.json") == "wave"
    assert table.label_of("elsewhere/a.json") == "wave" and table.label_of("b.npz") == "3"
    assert table.lookup("c.json") is None and table.lookup("c") is None  # two rows disagree
    assert table.label_of("y/c.json") == "2"


def test_a_labels_csv_is_streamed_into_a_compact_table(tmp_path):
    """Issue 27: a 10^6-row CSV cost ~68x its size (every row kept as a list, a set per alias);
    streamed, the table is about a dict entry and a string per key and alias."""
    import tracemalloc

    path = tmp_path / "labels.csv"
    path.write_text("file,label\n" + "".join(f"clips/a{i % 20:02d}_s{i:06d}.txt,{i % 20}\n"
                                             for i in range(50_000)))
    tracemalloc.start()
    try:
        table = read_labels(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table.label_of("elsewhere/a03_s000003.txt") == "3" and len(table.by_key) == 50_000
    assert peak < 20 * path.stat().st_size, peak / path.stat().st_size
