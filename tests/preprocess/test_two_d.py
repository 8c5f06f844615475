"""2-D models (METHOD.md §2 "2-D models"): the ``xy`` channel mode, the pure projection and
channel-reduction kernels, and the conversions training makes for a source or target that holds
more than the model reads; deployment refuses every mismatch with a hint."""

from __future__ import annotations

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError
from codt_deploy.preprocess import (
    CHANNEL_MODES,
    PreprocessConfig,
    conversion_problem,
    preprocess,
    preprocess_converted,
    project_depth,
    reduce_channels,
    reduce_sequence,
    rotate_y,
)
from codt_deploy.readers import read_poses
from codt_deploy.sequence import PoseSequence

UCLA_FILE = "nw_ucla/a01_s01_e00_v01.json"


def test_the_xy_mode_is_listed_and_sized():
    assert CHANNEL_MODES == ("xyz", "xy", "xy_score")
    cfg = PreprocessConfig(layout="msr20", persons=1, channels="xy")
    assert cfg.channel_names == ("x", "y") and cfg.output_shape == (2, 50, 20, 1)


def test_project_depth_drops_z_and_rotates_about_the_vertical_axis():
    points = np.array([[[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]]])  # (T=1, M=1, V=2, 3)
    np.testing.assert_array_equal(project_depth(points), [[[[1.0, 2.0], [0.0, 0.0]]]])
    # A quarter turn: R_y(π/2) maps (x, y, z) to (−z, y, x); the absent joint stays at the origin.
    turned = project_depth(points, np.pi / 2)
    np.testing.assert_allclose(turned, [[[[-3.0, 2.0], [0.0, 0.0]]]], atol=1e-12)
    # The same as rotating with the alignment's own rotation, then dropping z.
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(4, 2, 5, 3))
    theta = np.full((4, 2), 0.3)
    np.testing.assert_allclose(project_depth(cloud, 0.3), rotate_y(cloud, theta)[..., :2])
    # The vertical coordinate never changes, and distances in the x-z plane are kept.
    np.testing.assert_array_equal(project_depth(cloud, 1.1)[..., 1], cloud[..., 1])


def test_reduce_channels_as_recorded():
    data = np.zeros((2, 1, 3, 3), np.float32)  # (T, M, V, C)
    data[:, 0, 0] = [0.5, 1.0, 3.0]
    data[:, 0, 1] = [0.2, 0.0, 2.0]  # y = 0 but present
    xy = reduce_channels(data, "xyz", "xy")
    np.testing.assert_array_equal(xy, data[..., :2])
    xys = reduce_channels(data, "xyz", "xy_score")
    np.testing.assert_array_equal(xys[..., 2], [[[1.0, 1.0, 0.0]]] * 2)  # joint 2 is missing
    scored = np.concatenate([data[..., :2], np.array([0.9, 0.0, 0.0])[None, None, :, None]
                             * np.ones((2, 1, 3, 1))], axis=-1).astype(np.float32)
    dropped = reduce_channels(scored, "xy_score", "xy")
    np.testing.assert_array_equal(dropped[:, 0, 1], 0.0)  # score 0: undetected, zeroed
    np.testing.assert_array_equal(dropped[:, 0, 0], [[0.5, 1.0]] * 2)
    with pytest.raises(ValueError, match="depth cannot be recovered"):
        reduce_channels(xy, "xy", "xyz")


def test_only_two_d_to_three_d_is_refused():
    for have in CHANNEL_MODES:
        for want in CHANNEL_MODES:
            refused = conversion_problem(have, want) is not None
            assert refused == (want == "xyz" and have != "xyz"), (have, want)


def test_a_three_d_source_is_aligned_in_3d_then_projected(shared_data):
    seq = read_poses(shared_data / UCLA_FILE)[0]
    cfg3 = PreprocessConfig(layout="kinect20", persons=1)
    aligned = preprocess(seq, cfg3)  # (3, T, V, M)
    xy = preprocess_converted(seq, cfg3.model_copy(update={"channels": "xy"}))
    assert xy.shape == (2, 50, 20, 1) and xy.dtype == np.float32
    np.testing.assert_allclose(xy, aligned[:2], atol=1e-6)  # drop depth after alignment
    scored = preprocess_converted(seq, cfg3.model_copy(update={"channels": "xy_score"}))
    np.testing.assert_allclose(scored[:2], xy, atol=1e-6)
    np.testing.assert_array_equal(scored[2], 1.0)  # every NW-UCLA joint is present
    # A view rotation turns the aligned poses about the vertical axis before depth is dropped.
    turned = preprocess_converted(seq, cfg3.model_copy(update={"channels": "xy"}),
                                  view_angle=np.pi / 2)
    np.testing.assert_allclose(turned[0], -aligned[2], atol=1e-5)  # x' = −z
    np.testing.assert_allclose(turned[1], aligned[1], atol=1e-6)


def test_missing_source_joints_get_score_zero():
    data = np.ones((6, 1, 20, 3), np.float32)
    data[:, 0, :, 0] = np.arange(20) / 10
    data[:, 0, 7] = 0.0  # one joint never tracked
    seq = PoseSequence(data, "kinect20", "s.json")
    out = preprocess_converted(seq, PreprocessConfig(layout="kinect20", persons=1,
                                                     channels="xy_score"))
    np.testing.assert_array_equal(out[2, :, 7], 0.0)
    np.testing.assert_array_equal(out[:2, :, 7], 0.0)
    assert np.all(np.delete(out[2], 7, axis=1) == 1.0)


def test_two_d_cannot_become_three_d_and_view_rotation_needs_a_projection(shared_data):
    seq = reduce_sequence(read_poses(shared_data / UCLA_FILE)[0], "xy")
    assert seq.channels == ("x", "y") and seq.data.shape[-1] == 2
    with pytest.raises(PoseFormatError, match="a01_s01_e00_v01.json.*depth cannot be recovered"):
        preprocess_converted(seq, PreprocessConfig(layout="kinect20"))
    with pytest.raises(PoseFormatError, match="view rotation applies only to 3-D poses"):
        preprocess_converted(seq, PreprocessConfig(layout="kinect20", channels="xy"),
                             view_angle=0.2)
    with pytest.raises(PoseFormatError, match="depth cannot be recovered"):
        reduce_sequence(seq, "xyz")


def test_xy_poses_centre_on_present_joints_only():
    data = np.zeros((10, 1, 20, 2), np.float32)
    data[..., 0] = np.linspace(0.1, 2.0, 20)
    data[..., 1] = 0.5
    data[:, 0, 5] = 0.0  # undetected joint
    seq = PoseSequence(data, "msr20", "a.npy", channels=("x", "y"))
    out = preprocess(seq, PreprocessConfig(layout="msr20", persons=1, channels="xy"))
    assert out.shape == (2, 50, 20, 1)
    centre = data[0, 0, 2]  # msr20 centres on the shoulder centre
    np.testing.assert_allclose(out[:, 0, 0, 0], data[0, 0, 0] - centre, atol=1e-6)
    np.testing.assert_array_equal(out[:, :, 5], 0.0)


@pytest.mark.parametrize(("have", "model", "hint"), [
    ("xy", "xyz", "use a model trained for 2-D input"),
    ("xyz", "xy", "drop the depth"),
    ("xyz", "xy_score", "--channels xy_score"),
    ("xy_score", "xy", "drop the score channel"),
    ("xy", "xy_score", "needs a confidence score"),
])
def test_deployment_refuses_a_mismatch_naming_file_channels_and_fix(shared_data, have, model,
                                                                    hint):
    seq = reduce_sequence(read_poses(shared_data / UCLA_FILE)[0], have)
    with pytest.raises(PoseFormatError) as err:
        preprocess(seq, PreprocessConfig(layout="kinect20", channels=model))
    message = str(err.value)
    assert "a01_s01_e00_v01.json" in message and hint in message
    assert f"has channels {seq.channels}" in message and f"channels={model!r}" in message
