"""ClusterModel: sessions, micro-batches, input checks, layout mapping through preprocess."""

from __future__ import annotations

import numpy as np
import pytest

from codt_deploy.errors import ModelError, PoseFormatError
from codt_deploy.infer import ClusterModel, session_options
from codt_deploy.sequence import PoseSequence


@pytest.fixture(scope="module")
def model(exported_tiny_model):
    return ClusterModel(exported_tiny_model.onnx_path, batch_size=4, threads=1)


def test_session_settings_and_names(model):
    assert model.providers == ["CPUExecutionProvider"]
    assert model.input_name == "poses"
    options = session_options(2)
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1


def test_predict_is_the_same_for_any_micro_batch_size(model, exported_tiny_model):
    from tests.conftest import example_poses

    poses = example_poses()  # (40, C, T, V, M)
    small = model.predict(poses)
    whole = ClusterModel(exported_tiny_model.onnx_path, batch_size=64).predict(poses)
    assert small.probabilities.shape == (40, 5) and small.embedding.shape == (40, 256)
    np.testing.assert_allclose(small.probabilities, whole.probabilities, atol=1e-5)
    assert (small.clusters == small.probabilities.argmax(1)).all()
    np.testing.assert_allclose(small.confidence, small.probabilities.max(1))
    assert len(model.predict(poses[:0])) == 0


def test_bad_batches_are_rejected_with_the_expected_shape(model):
    with pytest.raises(PoseFormatError, match=r"expected shape \(N, 3, 50, 20, 2\)"):
        model.predict(np.zeros((2, 3, 50, 25, 2), np.float32))
    bad = np.zeros((1, 3, 50, 20, 2), np.float32)
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(PoseFormatError, match="NaN"):
        model.predict(bad)


def test_sequences_of_another_layout_are_mapped_by_joint_name(model):
    from codt_deploy.readers import read_poses
    from tests.conftest import example_paths

    msr = read_poses(example_paths()[0])[0]
    # The same poses presented as Kinect v1 (kinect20) joints: same names, another order.
    from codt_deploy.layouts import joint_map

    as_kinect = joint_map("msr20", "kinect20").apply(msr.data, axis=2)  # (T, M, 20, C)
    kinect = PoseSequence(as_kinect, "kinect20", source="as_kinect.txt")
    a = model.predict_sequences([msr])
    b = model.predict_sequences([kinect])
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_a_layout_missing_joints_is_an_error_naming_them(model):
    data = np.random.default_rng(0).normal(size=(10, 1, 13, 3)).astype(np.float32)
    penn = PoseSequence(data, "penn13", source="clip_0001.mat")
    with pytest.raises(PoseFormatError) as info:
        model.predict_sequences([penn])
    message = str(info.value)
    assert "clip_0001.mat" in message and "spine_mid" in message and "l_foot" in message


def test_unknown_provider_is_refused(exported_tiny_model):
    with pytest.raises(ModelError, match="not available"):
        ClusterModel(exported_tiny_model.onnx_path, providers=["NoSuchExecutionProvider"])
