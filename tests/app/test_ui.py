"""UI helpers that need no server: example discovery and the model description."""

from __future__ import annotations

import shutil

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
