"""training.export on a tiny random-weight model: checker, parity, manifest, hashes, metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from codt_deploy.models import METADATA_KEY, Manifest, resolve_model, sha256_file  # noqa: E402
from codt_deploy.preprocess import PreprocessConfig  # noqa: E402


def test_export_writes_checked_model_with_manifest_and_hashes(exported_tiny_model):
    exported = exported_tiny_model
    model = onnx.load(str(exported.onnx_path))
    onnx.checker.check_model(model, full_check=True)
    graph_input = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "poses" and dims[1:] == [3, 50, 20, 2] and isinstance(dims[0], str)
    assert [o.name for o in model.graph.output] == ["probabilities", "embedding"]

    manifest = Manifest.model_validate(json.loads(exported.manifest_path.read_text()))
    assert manifest.onnx_sha256 == sha256_file(exported.onnx_path)
    assert manifest.checkpoint_sha256 == "0" * 64
    assert manifest.layout == "msr20" and len(manifest.joints) == 20
    assert manifest.input.shape == ("N", 3, 50, 20, 2) and manifest.num_clusters == 5
    assert manifest.preprocess == PreprocessConfig(layout="msr20", frames=50)
    assert manifest.opset >= 17 and {"torch", "onnx", "onnxruntime"} <= set(manifest.versions)
    assert len(manifest.eval_cluster_names) == 5
    parity = manifest.metrics["parity"]
    assert parity["argmax_agreement"] == 1.0 and parity["max_abs_probabilities"] <= 1e-4
    assert parity["samples"] == 40 and 0.0 <= manifest.metrics["eval"]["acc"] <= 1.0

    props = {p.key: p.value for p in model.metadata_props}
    embedded = json.loads(props[METADATA_KEY])
    assert "onnx_sha256" not in embedded
    assert embedded == {k: v for k, v in json.loads(manifest.to_json()).items()
                        if k != "onnx_sha256"}
    assert resolve_model(exported.onnx_path).manifest == manifest


def test_exported_model_matches_torch_on_fresh_batch_sizes(exported_tiny_model,
                                                           tiny_torch_network):
    from codt_deploy.infer import ClusterModel

    net, poses = tiny_torch_network
    model = ClusterModel(exported_tiny_model.onnx_path, batch_size=3)
    poses = poses[::5]  # (8, C, T, V, M), micro-batches of 3, 3, 2
    with torch.no_grad():
        ref_p, ref_e = net(torch.from_numpy(poses))
    prediction = model.predict(poses)
    np.testing.assert_allclose(prediction.probabilities, ref_p.numpy(), atol=1e-4)
    np.testing.assert_allclose(prediction.embedding, ref_e.numpy(), atol=1e-4, rtol=1e-3)
    assert (prediction.clusters == ref_p.numpy().argmax(1)).all()
    assert len(set(prediction.clusters.tolist())) > 1  # the tiny model is not degenerate


def test_parity_failure_is_an_export_error(tmp_path, exported_tiny_model):
    from tests.conftest import example_poses, tiny_network
    from training.export import ExportError, check_parity

    poses = example_poses()[::5]  # (8, C, T, V, M)
    other = tiny_network(poses, seed=1)  # different weights than the exported file
    with pytest.raises(ExportError, match="differs from PyTorch"):
        check_parity(other, exported_tiny_model.onnx_path, poses)


def test_the_exporter_notes_are_silenced_for_one_export_only():
    import logging
    import warnings

    from training.export import _NOISY_LOGGERS, _quiet_exporter

    before = [logging.getLogger(name).level for name in _NOISY_LOGGERS]
    with _quiet_exporter():
        assert all(logging.getLogger(n).level == logging.ERROR for n in _NOISY_LOGGERS)
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("deprecated", FutureWarning, stacklevel=1)
        assert not caught or all(w.category is not FutureWarning for w in caught)
    assert [logging.getLogger(name).level for name in _NOISY_LOGGERS] == before


def _source_paths(model_bytes: bytes) -> list[bytes]:
    """Fragments of a serialised model that name this checkout's files or a Python stack trace."""
    import re
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2]).encode()
    return [m.group(0) for m in re.finditer(rb'File "[^"]+"|' + re.escape(root), model_bytes)]


def test_exported_models_carry_no_source_paths(exported_tiny_model):
    """The exporter's per-node stack traces (absolute paths of the exporting machine) are
    stripped; the manifest in the model-level metadata stays."""
    model_bytes = exported_tiny_model.onnx_path.read_bytes()
    assert _source_paths(model_bytes) == []
    model = onnx.load(str(exported_tiny_model.onnx_path))
    assert all(len(node.metadata_props) == 0 for node in model.graph.node)
    assert {p.key for p in model.metadata_props} >= {METADATA_KEY}


def test_strip_debug_metadata_removes_stack_traces_and_keeps_the_graph():
    from onnx import TensorProto, helper

    from training.export import strip_debug_metadata

    trace = 'File "/some/machine/training/model.py", line 1, in forward'

    def traced(node):  # protobuf copies on insertion: annotate before building the graph
        helper.set_metadata_props(node, {"pkg.torch.onnx.stack_trace": trace})
        node.doc_string = trace
        return node

    then = helper.make_graph([traced(helper.make_node("Relu", ["x"], ["y"]))], "then",
                             [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    node = traced(helper.make_node("If", ["c"], ["z"], then_branch=then, else_branch=then))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    helper.set_model_props(model, {METADATA_KEY: "{}"})
    assert _source_paths(model.SerializeToString()) != []

    stripped = strip_debug_metadata(model)
    assert stripped is model and _source_paths(model.SerializeToString()) == []
    assert [n.op_type for n in model.graph.node] == ["If"]
    assert model.graph.node[0].attribute[0].g.node[0].op_type == "Relu"
    assert {p.key: p.value for p in model.metadata_props} == {METADATA_KEY: "{}"}


def test_shipped_models_carry_no_source_paths():
    from pathlib import Path

    shipped = sorted((Path(__file__).resolve().parents[2] / "exported").glob("*.onnx"))
    assert shipped, "no shipped model found"
    for path in shipped:
        assert _source_paths(path.read_bytes()) == [], path
