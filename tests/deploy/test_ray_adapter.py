"""The optional Ray Data adapter: the actor alone (fast) and a local 2-CPU Ray run (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from codt_deploy.ray_adapter import ClusterActor
from tests.conftest import example_paths, example_poses


def test_actor_clusters_raw_file_bytes_and_reports_bad_files(exported_tiny_model):
    actor = ClusterActor(exported_tiny_model.onnx_path, embeddings=True)
    paths = [str(p) for p in example_paths()[:3]] + ["broken_skeleton3D.txt"]
    data = [open(p, "rb").read() for p in paths[:3]] + [b"1 2 3\nnot numbers\n"]
    out = actor({"path": np.array(paths, dtype=object), "bytes": np.array(data, dtype=object)})
    assert list(out["path"]) == paths and out["embedding"].shape == (4, 256)
    assert (out["cluster"][:3] >= 0).all() and out["cluster"][3] == -1
    assert out["error"][3] and "broken_skeleton3D.txt" in out["error"][3]
    direct = actor.model.predict(example_poses()[:3])
    assert out["cluster"][:3].tolist() == direct.clusters.tolist()


def test_actor_clusters_preprocessed_poses(exported_tiny_model):
    actor = ClusterActor(exported_tiny_model.onnx_path)
    poses = example_poses()[:5]
    out = actor({"poses": poses, "id": np.arange(5)})
    assert out["id"].tolist() == list(range(5))
    assert out["cluster"].tolist() == actor.model.predict(poses).clusters.tolist()
    with pytest.raises(KeyError, match="'poses' or a 'bytes' column"):
        actor({"text": np.array(["x"])})


@pytest.mark.slow
def test_local_ray_run_matches_codt_cluster(exported_tiny_model, tmp_path):
    ray = pytest.importorskip("ray", reason="the optional Ray adapter needs: pip install 'ray[data]'")
    from codt_deploy.ray_adapter import cluster_files

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        paths = [str(p) for p in example_paths()[:8]]
        # Two actors at half a CPU each leave one CPU for the file-reading tasks.
        rows = cluster_files(paths, exported_tiny_model.onnx_path, concurrency=2, num_cpus=0.5,
                             batch_size=4).take_all()
    finally:
        ray.shutdown()
    by_path = {row["path"]: row["cluster"] for row in rows}
    expected = ClusterActor(exported_tiny_model.onnx_path).model.predict(example_poses()[:8])
    assert [by_path[p] for p in paths] == expected.clusters.tolist()
