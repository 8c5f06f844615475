"""The running app driven through its API with ``gradio_client``: real files in, clusters out."""

from __future__ import annotations

import csv
import json
import pickle
import zipfile

import pytest

from app.plots import frame_indices
from codt_deploy.infer import ClusterModel
from codt_deploy.metrics import evaluate
from codt_deploy.readers import read_poses

gradio_client = pytest.importorskip("gradio_client")

OUTPUTS = ("summary", "table", "csv", "picker", "skeleton", "details", "counts", "pca", "metrics",
           "confusion", "problems", "gallery_picker", "gallery_skeleton", "gallery_details",
           "gallery_table")


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


def _analyse(client, tiny_model, files, labels=None) -> dict:
    handle = gradio_client.handle_file
    out = client.predict([handle(str(f)) for f in files], handle(str(labels)) if labels else None,
                         str(tiny_model), api_name="/analyse")
    return dict(zip(OUTPUTS, out, strict=True))


def test_api_clusters_real_files_like_the_library(client, tiny_model, example_files):
    out = _analyse(client, tiny_model, example_files)
    rows = out["table"]["data"]
    assert [r[1] for r in rows] == [f.name for f in example_files]
    expected = ClusterModel(tiny_model, threads=1).predict_sequences(
        [s for f in example_files for s in read_poses(f)])
    assert [r[5] for r in rows] == expected.clusters.tolist()
    assert [r[7] for r in rows] == pytest.approx(expected.confidence.tolist(), abs=1e-4)
    assert out["problems"]["data"] == []
    assert f"**{len(example_files)}** sequence(s)" in out["summary"]
    with open(out["csv"], newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [int(w["cluster"]) for w in written] == expected.clusters.tolist()
    skeleton = json.loads(out["skeleton"]["plot"])
    first = rows[0]
    assert skeleton["layout"]["title"]["text"].startswith(f"{first[2]} · cluster {first[5]}")
    frames = read_poses(example_files[0])[0].num_frames  # 55: drawn at a stride of 2
    assert len(skeleton["layout"]["sliders"][0]["steps"]) == len(frame_indices(frames)) == 28
    assert len(out["picker"]["choices"]) == len(example_files)


def test_api_bad_files_are_listed_and_the_rest_still_works(client, tiny_model, example_files,
                                                          tmp_path):
    broken = tmp_path / "a05_s01_e01_skeleton3D.txt"
    broken.write_text("0.1 0.2 0.3 1.0\nnot a number at all\n")
    evil = tmp_path / "poses.pkl"
    evil.write_bytes(pickle.dumps({"poses": [1, 2, 3]}))
    out = _analyse(client, tiny_model, [example_files[0], broken, evil, example_files[1]])
    assert [r[1] for r in out["table"]["data"]] == [example_files[0].name, example_files[1].name]
    problems = {row[0]: row[1] for row in out["problems"]["data"]}
    assert set(problems) == {broken.name, evil.name}
    assert "pickle" in problems[evil.name] and "refused" in problems[evil.name]
    assert problems[broken.name].startswith("line 2: ")  # the reader names the bad line
    assert "**2** file(s) could not be used" in out["summary"]


def test_api_zip_and_labels_csv_give_metrics(client, tiny_model, example_files, examples_dir,
                                             tmp_path):
    archive = tmp_path / "msr.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in example_files:
            zf.write(f, f"clips/{f.name}")
    out = _analyse(client, tiny_model, [archive], labels=examples_dir / "labels.csv")
    rows = out["table"]["data"]
    assert [r[1] for r in rows] == [f"msr.zip::clips/{f.name}" for f in example_files]
    truth = [str(int(f.name[1:3]) - 1) for f in example_files]
    scores = evaluate(truth, [r[5] for r in rows])
    assert "Scored against labels.csv (6 of 6 sequences labelled)" in out["metrics"]
    assert (f"| {scores['acc']:.1%} | {scores['nmi']:.3f} | {scores['ari']:.3f} | "
            f"{scores['acc_many_to_one']:.1%} |") in out["metrics"]
    assert "many-to-one ACC" in out["metrics"] and "rises with the number of clusters" in out["metrics"]
    heat = json.loads(out["confusion"]["plot"])["data"][0]
    assert heat["x"] == ["high arm wave", "horizontal arm wave", "hammer"]


def test_api_show_sequence_after_analyse(client, tiny_model, example_files):
    out = _analyse(client, tiny_model, example_files)
    choice = out["picker"]["choices"][3][0]
    skeleton, details = client.predict(choice, api_name="/show_sequence")
    name = out["table"]["data"][3][2]
    assert json.loads(skeleton["plot"])["layout"]["title"]["text"].startswith(name)
    assert f"`{example_files[3].name}`" in details


def test_api_cluster_gallery_shows_each_clusters_most_central_sequence(client, tiny_model,
                                                                     example_files):
    out = _analyse(client, tiny_model, example_files)
    clusters = [r[5] for r in out["table"]["data"]]
    gallery = out["gallery_table"]["data"]
    assert [r[0] for r in gallery] == [0, 1, 2, 3]
    assert [r[2] for r in gallery] == [clusters.count(k) for k in range(4)]
    choices = [c[0] for c in out["gallery_picker"]["choices"]]
    assert [int(c.split(":")[0]) for c in choices] == [k for k in range(4) if k in clusters]
    names = {r[2]: r[5] for r in out["table"]["data"]}  # sequence name -> cluster
    for choice in choices:
        skeleton, details = client.predict(choice, api_name="/show_cluster")
        cluster = int(choice.split(":")[0])
        medoid = gallery[cluster][5]
        assert names[medoid] == cluster and f"`{medoid}`" in details
        title = json.loads(skeleton["plot"])["layout"]["title"]["text"]
        assert title.endswith(f"most central: {medoid}")


def test_api_empty_upload_is_a_clear_error(client, tiny_model):
    with pytest.raises(gradio_client.exceptions.AppError, match="Upload one or more pose files"):
        client.predict([], None, str(tiny_model), api_name="/analyse")


def test_api_unusable_labels_csv_is_explained(client, tiny_model, example_files, tmp_path):
    bad = tmp_path / "classes.csv"
    bad.write_text("file,class\na01_s02_e01_skeleton3D.txt,0\n")
    out = _analyse(client, tiny_model, example_files[:2], labels=bad)
    reason = "The labels CSV was not used: classes.csv: a labels CSV needs a 'label' column"
    assert reason in out["summary"] and reason in out["metrics"]
    # The MSR files carry their action in their names, so the scores fall back to those labels.
    assert "Scored against the labels in the files (2 of 2 sequences labelled)" in out["metrics"]
