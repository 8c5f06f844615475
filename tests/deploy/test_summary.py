"""The per-cluster summary (codt_deploy.summary) on tiny hand-made arrays whose answers are known."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from codt_deploy.errors import CodtError
from codt_deploy.models import load_manifest
from codt_deploy.summary import (
    centrality,
    summarize_assignments,
    summarize_clusters,
    summary_csv,
    write_summary,
)
from tests.conftest import REPO_ROOT

SHIPPED = REPO_ROOT / "exported" / "ucla2msr.json"


@pytest.fixture(scope="module")
def shipped():
    """The shipped model's manifest, read by the runtime as it is."""
    return load_manifest(SHIPPED)


def _manifest(shipped, k, names=None, nearest=None):
    return shipped.model_copy(update={"num_clusters": k, "eval_cluster_names": names,
                                      "nearest_source_classes": nearest})


def _at(degrees, scale=1.0):
    """2-D embeddings at the given angles, padded to D = 4 with zeros: (n, 4)."""
    radians = np.deg2rad(np.asarray(degrees, np.float64))
    out = np.zeros((len(radians), 4))
    out[:, 0], out[:, 1] = np.cos(radians), np.sin(radians)
    return out * np.asarray(scale, np.float64).reshape(-1, 1)


def _brute_centrality(x):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T  # (n, n)
    return (sims.sum(1) - np.diag(sims)) / (len(x) - 1)


def test_shipped_manifest_names_every_cluster(shipped):
    assert shipped.num_clusters == 20
    assert len(shipped.nearest_source_classes) == 20 and all(shipped.nearest_source_classes)
    assert len(shipped.eval_cluster_names) == 20  # an older manifest's cluster_names, read as such


def test_centrality_is_the_mean_cosine_to_the_other_members():
    x = np.random.default_rng(0).standard_normal((7, 5))
    assert np.allclose(centrality(x), _brute_centrality(x))
    assert np.isnan(centrality(x[:1])).all() and centrality(x[:0]).shape == (0,)


def test_medoid_is_the_cosine_centre_not_the_euclidean_one(shipped):
    # Angles -30, -10, 0, +10, +30 degrees: by symmetry the 0-degree member is the most central;
    # it is far longer than the others (cosine ignores length, a Euclidean medoid would not) and
    # listed third; the two 10-degree members tie and keep their input order.
    names = ["m30", "p10", "zero", "m10", "p30"]
    emb = _at([-30, 10, 0, -10, 30], scale=[1, 1, 100, 1, 1])
    (summary,) = summarize_assignments(names, np.zeros(5, np.int64), np.full(5, 0.5), emb,
                                       _manifest(shipped, 1))
    assert summary.medoid == "zero" and summary.medoid_index == 2
    assert summary.members[:2] == ("p10", "m10") and set(summary.members[2:]) == {"m30", "p30"}
    assert summary.medoid_similarity == pytest.approx(_brute_centrality(emb)[2])
    assert summary.size == 5 and summary.share == 1.0


def test_empty_and_one_member_clusters(shipped):
    manifest = _manifest(shipped, 4, names=("a", "", "c", "d"), nearest=("w", "x", "y", "z"))
    clusters = np.array([2, 0, 2, 2])
    conf = np.array([0.9, 0.4, 0.7, 0.5])
    out = summarize_assignments(["s0", "s1", "s2", "s3"], clusters, conf, _at([0, 90, 10, 20]),
                                manifest, eval_names=True)
    assert [s.cluster for s in out] == [0, 1, 2, 3]
    assert [s.size for s in out] == [1, 0, 3, 0]
    assert [s.share for s in out] == [0.25, 0.0, 0.75, 0.0]
    one, empty, three, _ = out
    assert one.medoid == "s1" and one.members == () and one.medoid_similarity is None
    assert one.mean_confidence == pytest.approx(0.4)
    assert empty.medoid is None and empty.medoid_index is None and empty.members == ()
    assert empty.mean_confidence is None and empty.eval_name is None  # "" is no name
    assert three.medoid == "s2" and three.member_indices in ((0, 3), (3, 0))  # 10 deg is central
    assert three.mean_confidence == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert [s.nearest_source_class for s in out] == ["w", "x", "y", "z"]
    assert [s.eval_name for s in out] == ["a", None, "c", "d"]
    label_free = summarize_assignments(["s0", "s1", "s2", "s3"], clusters, conf,
                                       _at([0, 90, 10, 20]), manifest)  # eval names not asked for
    assert [s.eval_name for s in label_free] == [None] * 4


def test_at_most_five_other_members_in_order_of_centrality(shipped):
    emb = np.random.default_rng(1).standard_normal((9, 6))
    names = [f"s{i}" for i in range(9)]
    (summary,) = summarize_assignments(names, np.zeros(9, np.int64), np.ones(9), emb,
                                       _manifest(shipped, 1))
    ranked = np.argsort(-_brute_centrality(emb))
    assert summary.medoid_index == ranked[0]
    assert summary.member_indices == tuple(int(i) for i in ranked[1:6])
    assert summary.members == tuple(names[i] for i in ranked[1:6])


def test_from_probabilities_uses_argmax_and_max(shipped):
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    out = summarize_clusters(["a", "b", "c", "d"], probs, _at([0, 1, 2, 3]), _manifest(shipped, 3))
    assert [s.size for s in out] == [2, 1, 1]
    assert out[0].mean_confidence == pytest.approx(0.65)
    assert [s.nearest_source_class for s in out] == [None, None, None]
    with pytest.raises(ValueError, match=r"probabilities must be \(N, 4\)"):
        summarize_clusters(["a", "b", "c", "d"], probs, _at([0, 1, 2, 3]), _manifest(shipped, 4))


def test_no_sequences_gives_k_empty_clusters(shipped):
    out = summarize_clusters([], np.zeros((0, 20)), np.zeros((0, 256)), shipped)
    assert len(out) == 20 and all(s.size == 0 and s.share == 0.0 for s in out)
    assert out[4].nearest_source_class == shipped.nearest_source_classes[4]


@pytest.mark.parametrize("clusters, emb, message", [
    ([0, 5], _at([0, 1]), "cluster ids must be integers in 0..2"),
    ([0], _at([0, 1]), "2 names need clusters"),
    ([0, 1], np.full((2, 4), np.nan), "must be finite"),
])
def test_bad_input_is_a_clear_error(shipped, clusters, emb, message):
    with pytest.raises(ValueError, match=message):
        summarize_assignments(["a", "b"], np.asarray(clusters), np.ones(len(clusters)), emb,
                              _manifest(shipped, 3))


def test_files_csv_and_json(shipped, tmp_path):
    manifest = _manifest(shipped, 2, names=("=cmd", "b"))
    out = summarize_assignments(["=HYPERLINK(x)", "t", "u"], np.array([0, 0, 0]),
                                np.array([0.5, 0.6, 0.7]), _at([0, 5, 50]), manifest, eval_names=True)
    csv_path, json_path = tmp_path / "s.csv", tmp_path / "s.json"
    write_summary(csv_path, out, model="m", sequences=3)
    write_summary(json_path, out, model="m", sequences=3)
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["size"] for r in rows] == ["3", "0"] and rows[0]["eval_cluster_name"] == "'=cmd"
    assert rows[0]["member_5"] == "" and rows[1]["medoid"] == "" and rows[1]["mean_confidence"] == ""
    assert rows[0]["medoid"] == "t"  # 5 degrees sits between 0 and 50
    doc = json.loads(json_path.read_text())
    assert doc["model"] == "m" and doc["sequences"] == 3 and doc["num_clusters"] == 2
    assert doc["clusters"][0]["members"][0] == "=HYPERLINK(x)"  # JSON is no spreadsheet
    assert doc["clusters"][1]["mean_confidence"] is None and doc["clusters"][1]["members"] == []
    assert summary_csv(out).splitlines()[0].endswith("member_4,member_5")
    with pytest.raises(CodtError, match="must end in .csv or .json"):
        write_summary(tmp_path / "s.txt", out, model="m", sequences=3)
    assert not (tmp_path / "s.txt").exists()
