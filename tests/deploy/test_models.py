"""codt_deploy.models: lookup by name or path, 'not found' listing, manifest and SHA-256 checks."""

from __future__ import annotations

import json
import shutil

import pytest

from codt_deploy.errors import ModelError
from codt_deploy.models import available_models, load_manifest, resolve_model
from codt_deploy.preprocess import PreprocessConfig
from tests.conftest import REPO_ROOT


def _copy_model(src_dir, dst_dir, name="tiny", new_name=None):
    dst_dir.mkdir(parents=True, exist_ok=True)
    new_name = new_name or name
    shutil.copy(src_dir / f"{name}.onnx", dst_dir / f"{new_name}.onnx")
    manifest = json.loads((src_dir / f"{name}.json").read_text())
    manifest["name"] = new_name
    (dst_dir / f"{new_name}.json").write_text(json.dumps(manifest))
    return dst_dir / f"{new_name}.onnx"


def test_models_are_found_by_name_through_the_environment(tiny_model_env):
    assert available_models()["tiny"] == tiny_model_env / "tiny.onnx"
    resolved = resolve_model("tiny")
    assert resolved.onnx_path == tiny_model_env / "tiny.onnx"
    assert resolved.manifest.num_clusters == 5
    assert resolve_model("default").name == "tiny"  # the only model there


def test_unknown_model_lists_the_available_ones(tiny_model_env):
    with pytest.raises(ModelError, match=r"model 'nope' not found; available models = .*tiny"):
        resolve_model("nope")
    with pytest.raises(ModelError, match="not found"):
        resolve_model(tiny_model_env / "missing.onnx")


def test_default_is_the_only_specific_model_else_ambiguous(tiny_model_env, tmp_path,
                                                           monkeypatch):
    _copy_model(tiny_model_env, tmp_path, new_name="a")
    shared = _copy_model(tiny_model_env, tmp_path, new_name="a-shared").with_suffix(".json")
    data = json.loads(shared.read_text())
    shared.write_text(json.dumps({**data, "branch": "shared"}))
    monkeypatch.setenv("CODT_MODEL_DIR", str(tmp_path))
    assert resolve_model("default").name == "a"  # the shared-branch twin does not compete
    _copy_model(tiny_model_env, tmp_path, new_name="b")
    with pytest.raises(ModelError, match="several target-specific ones are available .*a, "
                                         "a-shared, b"):
        resolve_model("default")
    assert resolve_model("b").name == "b"


def test_hash_mismatch_is_a_model_error(tiny_model_dir, tmp_path):
    onnx_path = _copy_model(tiny_model_dir, tmp_path)
    with open(onnx_path, "ab") as handle:
        handle.write(b"\0")  # corrupt the copy
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        resolve_model(onnx_path)
    assert resolve_model(onnx_path, verify=False).name == "tiny"


def test_missing_or_bad_manifest(tiny_model_dir, tmp_path):
    onnx_path = _copy_model(tiny_model_dir, tmp_path)
    manifest_path = onnx_path.with_suffix(".json")
    data = json.loads(manifest_path.read_text())
    data["num_clusters"] = 7  # disagrees with the cluster names and the outputs
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="eval_cluster_names has 5 entries for 7 clusters"):
        load_manifest(manifest_path)
    data["surprise"] = 1
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="invalid manifest"):
        resolve_model(onnx_path)
    manifest_path.unlink()
    with pytest.raises(ModelError, match="manifest not found"):
        resolve_model(onnx_path)


def test_preprocessing_that_disagrees_with_the_input_is_a_bad_manifest(tiny_model_dir, tmp_path):
    onnx_path = _copy_model(tiny_model_dir, tmp_path)
    manifest_path = onnx_path.with_suffix(".json")
    data = json.loads(manifest_path.read_text())
    assert load_manifest(manifest_path).preprocess == PreprocessConfig(layout="msr20")
    for change, message in (({"frames": 60}, r"preprocessing gives \(C, T, V, M\) = "
                                             r"\(3, 60, 20, 2\) but the input is \(3, 50, 20, 2\)"),
                            ({"layout": "kinect20"}, "preprocessing layout 'kinect20' is not the "
                                                     "model's layout 'msr20'"),
                            ({"frame": 50}, "invalid manifest")):
        manifest_path.write_text(json.dumps({**data, "preprocess": {**data["preprocess"], **change}}))
        with pytest.raises(ModelError, match=message):
            load_manifest(manifest_path)
    # The channels the manifest names must be those its preprocessing produces.
    manifest_path.write_text(json.dumps({**data, "channels": ["x", "y", "score"]}))
    with pytest.raises(ModelError, match=r"channels \('x', 'y', 'score'\) are not those of its "
                                         r"preprocessing \('x', 'y', 'z'\)"):
        load_manifest(manifest_path)


def test_the_shipped_manifests_load_with_their_preprocessing_config():
    """exported/*.json, written when ``preprocess`` was a plain dict, load into a PreprocessConfig
    and serialise back to the very same text."""
    paths = sorted((REPO_ROOT / "exported").glob("*.json"))
    assert paths
    for path in paths:
        manifest = load_manifest(path)
        assert isinstance(manifest.preprocess, PreprocessConfig), path
        assert manifest.preprocess.output_shape == manifest.input_shape
        assert manifest.to_json() == path.read_text(encoding="utf-8"), path
