"""The int8 twin (training.export --int8): QDQ graph, manifest, hash, parity figures, refusal
below the agreement bar, selection by name; and the MAC count the benchmark reports."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from codt_deploy.errors import ModelError  # noqa: E402
from codt_deploy.models import Manifest, resolve_model, sha256_file  # noqa: E402
from tests.conftest import REPO_ROOT, load_benchmark_script  # noqa: E402
from tests.deploy.test_reference import banked_model  # noqa: E402, F401  (a fixture)
from training.export import INT8_RECIPES, EvalSet, ExportError, export_int8, int8_parity, onnx_macs  # noqa: E402

FAST = [r for r in INT8_RECIPES if r.label == "per-channel-minmax"]  # no histograms: quick


def _bench():
    return load_benchmark_script("bench_inference")


@pytest.fixture(scope="session")
def tiny_int8(exported_tiny_model, tiny_torch_network, tmp_path_factory):
    """The tiny fp32 model and its int8 twin in a folder of their own: (folder, Exported)."""
    _, poses = tiny_torch_network
    folder = tmp_path_factory.mktemp("int8")
    for suffix in (".onnx", ".json"):
        shutil.copy(exported_tiny_model.onnx_path.with_suffix(suffix), folder / f"tiny{suffix}")
    fp32 = resolve_model(folder / "tiny.onnx")
    exported, attempts = export_int8(fp32, poses, EvalSet(poses), out_dir=folder, recipes=FAST,
                                     min_agreement=0.0, calibration_source="the examples")
    assert len(attempts) == 1
    return folder, exported


def test_int8_twin_is_a_qdq_model_with_its_own_manifest_and_hash(tiny_int8):
    folder, exported = tiny_int8
    assert exported.onnx_path == folder / "tiny-int8.onnx"
    model = onnx.load(str(exported.onnx_path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    manifest = Manifest.model_validate(json.loads(exported.manifest_path.read_text()))
    fp32 = resolve_model(folder / "tiny.onnx").manifest
    assert manifest.name == "tiny-int8" and manifest.precision == "int8"
    assert manifest.onnx_sha256 == sha256_file(exported.onnx_path) != fp32.onnx_sha256
    record = manifest.quantization
    assert record["format"] == "QDQ" and record["fp32_model"] == "tiny"
    assert record["fp32_sha256"] == fp32.onnx_sha256
    assert record["calibration"] == {"source": "the examples", "samples": 40}
    assert record["recipe"]["label"] == "per-channel-minmax" and record["qualified"] is True
    assert (manifest.layout, manifest.input, manifest.num_clusters) == (
        fp32.layout, fp32.input, fp32.num_clusters)
    embedded = json.loads({p.key: p.value for p in model.metadata_props}["codt_manifest"])
    assert embedded["precision"] == "int8" and "onnx_sha256" not in embedded
    assert resolve_model(exported.onnx_path).manifest == manifest
    assert exported.onnx_path.stat().st_size < 0.5 * (folder / "tiny.onnx").stat().st_size


def test_int8_parity_figures_are_recomputable_and_plausible(tiny_int8, tiny_torch_network):
    folder, exported = tiny_int8
    _, poses = tiny_torch_network
    parity = int8_parity(folder / "tiny.onnx", exported.onnx_path, poses)
    recorded = exported.manifest.quantization["parity"]
    assert parity.samples == recorded["samples"] == 40
    assert parity.argmax_agreement == pytest.approx(recorded["argmax_agreement"])
    assert parity.cosine_mean == pytest.approx(recorded["cosine_mean"], abs=1e-6)
    assert 0.95 < parity.cosine_mean <= 1.0 + 1e-6 and parity.cosine_min <= parity.cosine_mean
    assert 0.0 <= parity.max_abs_probabilities <= 1.0
    assert int8_parity(folder / "tiny.onnx", folder / "tiny.onnx", poses).argmax_agreement == 1.0


def test_int8_below_the_agreement_bar_is_refused_and_writes_nothing(tiny_int8,
                                                                    tiny_torch_network, tmp_path):
    folder, _ = tiny_int8
    _, poses = tiny_torch_network
    fp32 = resolve_model(folder / "tiny.onnx")
    with pytest.raises(ExportError, match=r"no int8 recipe reaches 101\.0 % .*per-channel-minmax"):
        export_int8(fp32, poses, EvalSet(poses), out_dir=tmp_path, recipes=FAST,
                    min_agreement=1.01)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.json"))


def test_int8_below_the_bar_with_allow_below_is_marked_and_warned(tiny_int8, tiny_torch_network,
                                                                  tmp_path, caplog):
    folder, _ = tiny_int8
    _, poses = tiny_torch_network
    fp32 = resolve_model(folder / "tiny.onnx")
    with caplog.at_level(logging.WARNING, logger="training.export"):
        exported, _ = export_int8(fp32, poses, EvalSet(poses), out_dir=tmp_path, name="weak",
                                  recipes=FAST, min_agreement=1.01, allow_below=True)
    assert exported.manifest.quantization["qualified"] is False
    assert "WARNING: no int8 recipe reaches" in caplog.text
    assert resolve_model(tmp_path / "weak.onnx").manifest.precision == "int8"


def test_int8_twin_is_selected_by_name_and_never_as_default(tiny_int8, monkeypatch, tmp_path):
    import codt_deploy.models
    from app.model_store import ModelStore
    from codt_deploy.cli import main
    from codt_deploy.infer import ClusterModel

    folder, _ = tiny_int8
    monkeypatch.setenv("CODT_MODEL_DIR", str(folder))
    monkeypatch.setattr(codt_deploy.models, "_package_exported_dir", lambda: tmp_path / "none")
    assert resolve_model("tiny-int8").manifest.precision == "int8"
    assert resolve_model("default").name == "tiny"  # the int8 twin does not compete
    assert "tiny-int8" in ModelStore().choices
    example = sorted((REPO_ROOT / "examples" / "msr_action3d").glob("*_skeleton3D.txt"))[0]
    fp32 = ClusterModel("tiny")
    int8 = ClusterModel("tiny-int8")
    sample = np.stack([int8.prepare(seq) for seq in __import__(
        "codt_deploy.readers", fromlist=["read_poses"]).read_poses(example)])
    assert int8.predict(sample).embedding.shape == fp32.predict(sample).embedding.shape
    out = tmp_path / "out.csv"
    assert main([str(example), "--model", "tiny-int8", "-o", str(out), "--quiet"]) == 0
    assert out.read_text().count("\n") >= 2


def test_manifest_ties_precision_to_a_quantization_record(tiny_int8):
    _, exported = tiny_int8
    with pytest.raises(ModelError, match="int8 model needs its quantization record"):
        exported.manifest.model_copy(update={"quantization": None}).check()
    with pytest.raises(ModelError, match="precision 'int4'"):
        exported.manifest.model_copy(update={"precision": "int4"}).check()


def _graph_model(nodes, inputs, outputs, inits=()):
    helper, f32 = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, f32, s)
                                           for n, s in inputs],
                              [helper.make_tensor_value_info(n, f32, None) for n in outputs],
                              initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_onnx_macs_counts_conv_matmul_gemm_einsum(tmp_path):
    helper = onnx.helper
    weight = onnx.numpy_helper.from_array(np.zeros((8, 2, 3, 1), np.float32), "w")
    model = _graph_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 0, 1, 0], name="conv"),
         helper.make_node("MatMul", ["y", "a"], ["z"], name="mm"),
         helper.make_node("Gemm", ["g", "h"], ["k"], transB=1, name="gemm"),
         helper.make_node("Einsum", ["p", "q"], ["r"], equation="nct,ck->nkt", name="ein"),
         helper.make_node("Relu", ["z"], ["zr"], name="relu")],
        [("x", ["N", 2, 10, 5]), ("a", [5, 7]), ("g", [4, 6]), ("h", [3, 6]),
         ("p", ["N", 2, 9]), ("q", [2, 11])], ["zr", "k", "r"], [weight])
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    macs = onnx_macs(path, batch=3)
    assert macs == {"conv": ("Conv", 3 * 8 * 10 * 5 * 2 * 3), "mm": ("MatMul", 3 * 8 * 10 * 7 * 5),
                    "gemm": ("Gemm", 4 * 3 * 6), "ein": ("Einsum", 3 * 2 * 9 * 11)}


def test_exported_mac_count_matches_the_analytic_stgcn_count(exported_tiny_model):
    bench = _bench()
    counted = sum(m for _, m in onnx_macs(exported_tiny_model.onnx_path).values())
    analytic = bench.analytic_macs(v=20, m=2, k=5)
    assert counted == analytic["total"]
    assert analytic["temporal_conv"] > analytic["graph_conv"] > analytic["residual_conv"] > 0
    shipped = REPO_ROOT / "exported" / "ucla2msr.onnx"
    if shipped.is_file():  # the shipped model as exported: M = 1, K = 20
        assert sum(m for _, m in onnx_macs(shipped).values()) == bench.analytic_macs(20, 1, 20)[
            "total"]


def test_bench_gates_use_ratios_of_the_same_run():
    bench = _bench()
    results = {"achieved": [{"of_core_peak": 0.7}, {"of_core_peak": 0.9}],
               "int8": {"parity": {"argmax_agreement": 0.95},
                        "speed": [{"threads": 1, "batch": 1, "median_ratio": {"int8": 1.5}},
                                  {"threads": 1, "batch": 32, "median_ratio": {"int8": 1.2}},
                                  {"threads": 2, "batch": 32, "median_ratio": {"int8": 0.9}}]}}
    assert bench.gates(results) == {"achieved <= peak": True, "int8 >= 1.3x fp32 at b=1": True,
                                    "int8 >= 1.3x fp32 at b=32": False,
                                    "int8 agreement >= 99 %": False}
    results["achieved"].append({"of_core_peak": 1.1, "precision": "int8"})  # not held to fp32
    assert bench.gates(results)["achieved <= peak"] is True
    results["achieved"].append({"of_core_peak": 1.2})  # an fp32 rate above its peak: wrong
    assert bench.gates(results)["achieved <= peak"] is False


def test_int8_from_task_never_overwrites_another_models_bank_and_a_refused_twin_leaves_none(
        banked_model, tiny_torch_network, tmp_path, monkeypatch):  # noqa: F811
    from types import SimpleNamespace

    import training.preparation.prepared as prepared
    from training.export import int8_from_task

    _, poses = tiny_torch_network
    split = SimpleNamespace(data=poses, labels=None, class_names=None)
    monkeypatch.setattr(prepared, "load_split", lambda folder, name, layout: split)
    bank = banked_model.onnx_path.parent / banked_model.manifest.reference.file
    other = tmp_path / "other"
    other.mkdir()
    (other / bank.name).write_bytes(b"another model's bank")
    with pytest.raises(ExportError, match="another model's reference bank"):
        int8_from_task(banked_model.onnx_path, tmp_path, out_dir=other, recipes=FAST)
    assert (other / bank.name).read_bytes() == b"another model's bank"
    refused = tmp_path / "refused"
    with pytest.raises(ExportError, match="no int8 recipe reaches"):
        int8_from_task(banked_model.onnx_path, tmp_path, out_dir=refused, recipes=FAST,
                       min_agreement=1.01)
    assert not list(refused.iterdir())  # neither a twin nor its bank
    written = tmp_path / "written"
    twin, _ = int8_from_task(banked_model.onnx_path, tmp_path, out_dir=written, recipes=FAST,
                             min_agreement=0.0)
    assert sha256_file(written / bank.name) == sha256_file(bank)
    assert resolve_model(twin.onnx_path).reference_path == written / bank.name
