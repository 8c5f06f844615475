"""The app's logic with a real (tiny, random-weight) ONNX model: clusters, PCA, labels, metrics."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from app import logic
from app.model_store import ModelStore
from app.uploads import FileProblem, ParsedUploads
from codt_deploy.errors import LabelsError, ModelError
from codt_deploy.infer import ClusterModel
from codt_deploy.metrics import evaluate as reference_metrics
from codt_deploy.sequence import PoseSequence
from tests.conftest import write_csv


@pytest.fixture(scope="module")
def model(tiny_model):
    return ClusterModel(tiny_model, threads=1)


@pytest.fixture(scope="module")
def sequences(example_files, hand_read):
    return [hand_read(f) for f in example_files]


def test_analyse_matches_the_model_row_by_row(model, sequences):
    batch = logic.analyse(ParsedUploads(list(sequences), []), model)
    direct = model.predict_sequences(sequences)
    assert [r.cluster for r in batch.results] == direct.clusters.tolist()
    assert [r.confidence for r in batch.results] == pytest.approx(direct.confidence.tolist())
    assert batch.embeddings.shape == (len(sequences), 256)
    assert batch.model_name == "tiny" and batch.num_clusters == 4
    assert sum(batch.counts().values()) == len(sequences)
    assert batch.choices()[2].startswith("2: a02_s02_e01_skeleton3D (cluster ")


def test_a_sequence_the_model_cannot_take_is_a_problem_not_a_failure(model, sequences):
    coco = PoseSequence(data=np.ones((4, 1, 18, 3), np.float32), layout="coco18",
                        source="kinetics.json", name="clip")  # coco18 lacks kinect20's joints
    parsed = ParsedUploads([sequences[0], coco, sequences[1]],
                           [FileProblem("x.pkl", "refused")])
    batch = logic.analyse(parsed, model)
    assert [r.file for r in batch.results] == [sequences[0].source, sequences[1].source]
    assert [p.file for p in batch.problems] == ["x.pkl", "kinetics.json"]
    assert batch.problems[1].reason.startswith("clip: cannot use its 'coco18' skeleton")
    assert batch.embeddings.shape == (2, 256)


def test_2d_poses_for_a_3d_model_are_a_problem_naming_the_file_and_the_fix(model, sequences):
    flat = PoseSequence(data=np.ascontiguousarray(sequences[0].data[..., :2]),
                        layout=sequences[0].layout, source="upload/flat.npy",
                        channels=("x", "y"))  # the same poses with their depth dropped
    batch = logic.analyse(ParsedUploads([flat, sequences[1]], []), model)
    assert [r.file for r in batch.results] == [sequences[1].source]
    [problem] = batch.problems
    assert problem.file == "upload/flat.npy"
    assert "has channels ('x', 'y') (2-D poses (x, y)) but the model expects ('x', 'y', 'z')" \
        in problem.reason
    assert "use a model trained for 2-D input" in problem.reason


def test_analyse_empty_batch(model):
    batch = logic.analyse(ParsedUploads([], [FileProblem("a", "b")]), model)
    assert batch.results == [] and batch.counts() == {} and len(batch.problems) == 1


def test_pca_recovers_the_dominant_directions():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((16, 16)))[0][:, :2]  # two orthonormal directions
    raw = rng.standard_normal((50, 2))
    scores = np.linalg.qr(raw - raw.mean(axis=0))[0] * np.array([70.0, 20.0])  # centred, orthogonal
    x = scores @ basis.T + 5.0 + 0.01 * rng.standard_normal((50, 16))
    projected = logic.pca_2d(x)
    assert projected.shape == (50, 2)
    assert np.allclose(projected.mean(axis=0), 0.0, atol=1e-9)
    for k in range(2):  # equal to the generating scores up to sign
        corr = np.corrcoef(projected[:, k], scores[:, k])[0, 1]
        assert abs(corr) > 0.999
    assert projected[:, 0].var() > projected[:, 1].var()


@pytest.mark.parametrize("rows", [1, 2])
def test_pca_degenerate_batches(rows):
    projected = logic.pca_2d(np.ones((rows, 8)))
    assert projected.shape == (rows, 2) and np.all(projected == 0.0)


def test_pca_rejects_wrong_rank():
    with pytest.raises(ValueError, match="must be \\(N, D\\)"):
        logic.pca_2d(np.ones(5))


def test_labels_csv_metrics_and_confusion(model, sequences, examples_dir):
    batch = logic.analyse(ParsedUploads(list(sequences), []), model)
    labels = logic.labels_from_csv(batch.results, examples_dir / "labels.csv")
    evaluation = logic.evaluate(batch.results, labels)
    truth = [str(int(r.name[1:3]) - 1) for r in batch.results]
    clusters = [r.cluster for r in batch.results]
    assert evaluation.metrics == pytest.approx(reference_metrics(truth, clusters))
    assert evaluation.matched == evaluation.total == len(sequences)
    assert evaluation.label_values == ["0", "1", "2"]
    assert evaluation.label_names == ["high arm wave", "horizontal arm wave", "hammer"]
    assert evaluation.confusion.sum() == len(sequences)
    assert evaluation.confusion.shape == (len(set(clusters)), 3)
    for c, lab in zip(clusters, truth):
        assert evaluation.confusion[evaluation.cluster_ids.index(c), int(lab)] >= 1


def test_labels_match_by_name_stem_and_partial_coverage(model, sequences, tmp_path):
    batch = logic.analyse(ParsedUploads(list(sequences), []), model)
    path = write_csv(tmp_path / "l.csv", ["name", "label"],
                      [["a01_s02_e01_skeleton3D", "wave"], ["a01_s06_e01_skeleton3D.txt", "wave"],
                       ["unrelated", "kick"]])
    labels = logic.labels_from_csv(batch.results, path)
    assert labels.per_result[:2] == ["wave", "wave"]
    assert labels.per_result[2:] == [None] * (len(sequences) - 2)
    evaluation = logic.evaluate(batch.results, labels)
    assert evaluation.matched == 2 and evaluation.total == len(sequences)
    assert evaluation.label_values == ["wave"]


def test_a_filename_label_csv_scores_the_batch(model, sequences, tmp_path):
    """Once refused by the app (it knew only file, name and sample); the header training used."""
    batch = logic.analyse(ParsedUploads(list(sequences), []), model)
    path = write_csv(tmp_path / "l.csv", ["filename", "label"],
                      [[f"uploads/{s.source.rsplit('/', 1)[-1]}", s.label] for s in sequences])
    evaluation = logic.evaluate(batch.results, logic.labels_from_csv(batch.results, path))
    assert evaluation.matched == evaluation.total == len(sequences)


def test_no_matching_labels_gives_no_evaluation(model, sequences, tmp_path):
    batch = logic.analyse(ParsedUploads(list(sequences), []), model)
    labels = logic.labels_from_csv(batch.results, write_csv(tmp_path / "l.csv", ["file", "label"],
                                                             [["nothing.txt", "0"]]))
    assert logic.evaluate(batch.results, labels) is None


def test_labels_from_the_files_themselves(model, sequences):
    batch = logic.analyse(ParsedUploads(list(sequences), []), model)
    labels = logic.labels_from_sequences(batch.results)
    assert labels.per_result == [str(s.label) for s in sequences]
    unlabelled = PoseSequence(data=sequences[0].data, layout="msr20", source="u.txt")
    partial = logic.analyse(ParsedUploads([sequences[0], unlabelled], []), model)
    assert logic.labels_from_sequences(partial.results) is None


def test_a_bad_labels_csv_is_named_by_its_file_name_alone(tmp_path):
    path = write_csv(tmp_path / "my_labels.csv", ["file", "label"], [["a", "1"], ["a", "2"]])
    with pytest.raises(LabelsError, match="'a' is listed twice") as info:
        logic.labels_from_csv([], path)
    assert str(info.value).startswith("my_labels.csv (line 3): ")


def test_results_table_and_csv(model, sequences, tmp_path):
    batch = logic.analyse(ParsedUploads(list(sequences[:3]), []), model)
    rows = logic.result_rows(batch)
    assert [r[0] for r in rows] == [0, 1, 2]
    assert rows[0][1] == sequences[0].source and rows[0][3] == sequences[0].num_frames
    assert rows[0][6] == ("≈ reach", "≈ step", "≈ bend", "≈ wave")[rows[0][5]]
    path = logic.write_results_csv(batch, tmp_path, ["0", None, "1"])
    with open(path, newline="") as handle:
        written = list(csv.reader(handle))
    assert written[0] == ["file", "sequence", "frames", "persons", "cluster", "nearest_source_class",
                          "confidence", "label"]
    assert [w[-1] for w in written[1:]] == ["0", "", "1"]
    assert [int(w[4]) for w in written[1:]] == [r.cluster for r in batch.results]


def test_model_store_loads_once_and_reports_missing_models(tiny_model):
    loads = []

    def loader(name):
        loads.append(name)
        return ClusterModel(name, threads=1)

    store = ModelStore(str(tiny_model), loader=loader)
    assert store.choices[0] == str(tiny_model) and store.label() == "tiny"
    assert store.get() is store.get(str(tiny_model))
    assert loads == [str(tiny_model)]
    with pytest.raises(ModelError, match="not found"):
        ModelStore("no-such-model").get()


def test_cluster_names_are_the_label_free_nearest_source_classes_never_the_eval_names(model):
    manifest = model.manifest.model_copy(update={"nearest_source_classes": ("a", "b", "c", "d")})
    assert manifest.eval_cluster_names == ("reach", "step", "bend", "wave")  # from eval labels
    assert logic.cluster_names(manifest) == ("≈ a", "≈ b", "≈ c", "≈ d")
    bare = manifest.model_copy(update={"nearest_source_classes": None})
    assert logic.cluster_names(bare) is None  # eval names alone are not shown


def test_model_store_offers_every_available_model(tiny_model, tmp_path, monkeypatch):
    import shutil

    for name in ("alpha", "beta"):
        shutil.copy(tiny_model, tmp_path / f"{name}.onnx")
        shutil.copy(tiny_model.with_suffix(".json"), tmp_path / f"{name}.json")
    monkeypatch.setenv("CODT_MODEL_DIR", str(tmp_path))
    from codt_deploy.models import available_models

    found = sorted(available_models())  # ours, and any the package ships
    store = ModelStore()
    assert {"alpha", "beta"} <= set(store.choices) and sorted(store.choices) == found
    assert store.default == store.choices[0] == ("default" if "default" in found else found[0])
    assert store.get("beta").manifest.num_clusters == 4
    shutil.copy(tiny_model, tmp_path / "default.onnx")
    shutil.copy(tiny_model.with_suffix(".json"), tmp_path / "default.json")
    assert ModelStore().default == "default"
    pinned = ModelStore("alpha")
    assert pinned.choices[0] == "alpha" and pinned.choices.count("alpha") == 1


# --- the cluster gallery ------------------------------------------------------------------------

class _WithNearest:
    """The tiny model with nearest source classes in its manifest (the exporter's field)."""

    def __init__(self, model, nearest):
        self.model = model
        self.manifest = model.manifest.model_copy(update={"nearest_source_classes": nearest})

    def predict_sequences(self, sequences):
        return self.model.predict_sequences(sequences)


def test_gallery_is_the_codt_deploy_summary_of_the_batch(model, sequences):
    from codt_deploy.summary import summarize_clusters

    nearest = ("walk", "sit", "throw", "carry")
    batch = logic.analyse(ParsedUploads(list(sequences), []), _WithNearest(model, nearest))
    direct = model.predict_sequences(sequences)
    expected = summarize_clusters([r.name for r in batch.results], direct.probabilities,
                                  direct.embedding, model.manifest)
    assert [(s.cluster, s.size, s.medoid, s.members) for s in batch.clusters] == \
        [(s.cluster, s.size, s.medoid, s.members) for s in expected]
    rows = logic.gallery_rows(batch)
    assert len(rows) == 4 and [r[0] for r in rows] == [0, 1, 2, 3]  # empty clusters listed too
    assert sum(r[2] for r in rows) == len(sequences) and [r[1] for r in rows] == list(nearest)
    used = [s for s in batch.clusters if s.size]
    assert [int(c.split(":")[0]) for c in logic.gallery_choices(batch)] == [s.cluster for s in used]
    for summary in used:
        medoid = logic.medoid_result(batch, summary)
        assert medoid is not None and medoid.cluster == summary.cluster
        assert medoid.name == summary.medoid
        members = [i for i, r in enumerate(batch.results) if r.cluster == summary.cluster]
        unit = batch.embeddings[members] / np.linalg.norm(batch.embeddings[members], axis=1,
                                                          keepdims=True)
        sims = unit @ unit.T  # (n, n)
        if len(members) > 2:  # two members tie: the first is the medoid by definition
            assert members[int(np.argmax(sims.sum(1)))] == summary.medoid_index
        assert logic.cluster_summary(batch, logic.gallery_choices(batch)[0]).size > 0


def test_gallery_of_an_empty_batch_and_bad_choices(model, sequences):
    assert logic.analyse(ParsedUploads([], []), model).clusters == []
    batch = logic.analyse(ParsedUploads(list(sequences[:1]), []), model)
    assert [s.size for s in batch.clusters].count(1) == 1
    (only,) = [s for s in batch.clusters if s.size]
    assert only.medoid_similarity is None and only.members == ()
    empty = next(s for s in batch.clusters if not s.size)
    assert logic.medoid_result(batch, empty) is None
    with pytest.raises(ValueError, match="no cluster '9' in this batch"):
        logic.cluster_summary(batch, "9: nothing")
