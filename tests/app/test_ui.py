"""UI helpers that need no server: example discovery and the model description."""

from __future__ import annotations

import shutil

import pytest

from app.model_store import ModelStore
from app.ui import find_examples, model_markdown


def test_examples_come_from_the_repository(examples_dir):
    repo_root = examples_dir.parents[1]
    (example,) = find_examples(repo_root)
    assert len(example.files) == len(list(examples_dir.glob("*_skeleton3D.txt")))
    assert example.labels == examples_dir / "labels.csv"
    assert example.title.startswith(f"MSR Action3D: {len(example.files)} real")


def test_examples_fall_back_to_the_shared_data_folder(example_files, tmp_path):
    checkout = tmp_path / "checkout"
    shared = tmp_path / "shared" / "data" / "msr_action3d"
    shared.mkdir(parents=True)
    checkout.mkdir()
    for f in example_files:
        shutil.copy(f, shared / f.name)
    (example,) = find_examples(checkout)
    assert [f.name for f in example.files] == [f.name for f in example_files if "_s02_" in f.name]
    assert example.labels is None
    assert find_examples(tmp_path / "elsewhere" / "checkout") == []


def test_model_markdown_describes_the_model_or_the_problem(tiny_model, tmp_path):
    text = model_markdown(ModelStore(str(tiny_model)), None)
    assert text.startswith("`tiny`: task `test`, layout `kinect20` (20 joints), 4 clusters")
    missing = model_markdown(ModelStore(str(tmp_path / "gone.onnx")), None)
    assert missing.startswith("**Model unavailable:**") and "gone.onnx" in missing


def test_gallery_card_and_animation_of_the_most_central_sequence(tiny_model, example_files,
                                                                 hand_read):
    from app import logic
    from app.ui import AppHandlers, _cluster_details
    from app.uploads import ParsedUploads, UploadLimits, default_reader

    store = ModelStore(str(tiny_model))
    batch = logic.analyse(ParsedUploads([hand_read(f) for f in example_files], []),
                          store.get(None))
    handlers = AppHandlers(store, UploadLimits(), default_reader)
    biggest = max(batch.clusters, key=lambda s: s.size)
    choice = next(c for c in logic.gallery_choices(batch) if c.startswith(f"{biggest.cluster}:"))
    figure, card = handlers.show_cluster(choice, batch)
    assert figure.layout.title.text.endswith(f"most central: {biggest.medoid}")
    assert f"**{biggest.size}** sequence(s)" in card and f"`{biggest.medoid}`" in card
    assert all(f"`{m}`" in card for m in biggest.members)
    assert "nearest source class" in card  # label-free; the eval names are never shown
    empty = [s for s in batch.clusters if not s.size]
    if empty:
        assert _cluster_details(empty[0], batch).endswith("no sequence of this batch")
    assert handlers.show_cluster(None, batch) == (None, "")


def test_a_labels_csv_over_the_app_limit_is_not_read_and_the_note_says_the_limit(
        tiny_model, example_files, hand_read, tmp_path, monkeypatch):
    from app import logic
    from app.ui import _labels_for
    from app.uploads import ParsedUploads, UploadLimits

    batch = logic.analyse(ParsedUploads([hand_read(f) for f in example_files[:2]], []),
                          ModelStore(str(tiny_model)).get(None))
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n" + "".join(f"{f.name},1\n" for f in example_files)
                      + "".join(f"x{i:029d},2\n" for i in range(40_000)))  # 1.3 MB
    monkeypatch.setattr(logic, "read_labels", lambda *a, **k: pytest.fail("the CSV was read"))
    evaluation, _, note = _labels_for(batch, str(labels), UploadLimits(max_labels_bytes=1 << 20))
    assert evaluation is not None and evaluation.source == "the labels in the files"
    assert "The labels CSV was not used: the labels CSV is 1.3 MB; the app reads labels files " \
           "of up to 1 MB" in note
