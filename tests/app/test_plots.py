"""The app's figures: animation frames, bones drawn from the layout, persons, 2-D vs 3-D."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from app import plots
from codt_deploy.layouts import get_layout
from codt_deploy.sequence import PoseSequence


def _two_person_2d(frames: int = 7) -> PoseSequence:
    """A declared-synthetic coco18 clip: two persons, person 2 absent in frame 0, one missing joint."""
    rng = np.random.default_rng(1)
    data = rng.uniform(0.1, 0.9, (frames, 2, 18, 3)).astype(np.float32)  # (T, M, V, C)
    data[..., 2] = 0.8
    data[0, 1] = 0.0  # person 2 absent in the first frame
    data[:, 0, 5, 2] = 0.0  # person 1's left shoulder undetected (score 0)
    return PoseSequence(data=data, layout="coco18", source="synthetic.json",
                        channels=("x", "y", "score"))


@pytest.mark.parametrize("num_frames, max_frames, expected", [
    (10, 40, 10), (40, 40, 40), (41, 40, 21), (936, 40, 39), (1, 40, 1), (100, 7, 7)])
def test_frame_indices_downsamples_evenly(num_frames, max_frames, expected):
    shown = plots.frame_indices(num_frames, max_frames)
    assert len(shown) == expected <= max_frames
    assert shown[0] == 0 and shown[-1] < num_frames
    assert len(set(np.diff(shown))) <= 1  # an even stride


def test_frame_indices_rejects_empty():
    with pytest.raises(ValueError, match="at least one frame"):
        plots.frame_indices(0)


def test_skeleton_3d_has_frames_bones_and_controls(example_files, hand_read):
    seq = hand_read(example_files[0])  # a01_s02_e01, 55 frames of msr20
    figure = plots.skeleton_figure(seq, title="cluster 2 · 90%", colour="#123456", max_frames=20)
    edges = get_layout("msr20").edges
    assert [type(t) for t in figure.data] == [go.Scatter3d, go.Scatter3d]
    bones, joints = figure.data
    assert len(bones.x) == 3 * len(edges)  # two ends and a gap per bone
    assert len(joints.x) == 20
    assert bones.line.color == "#123456" and joints.marker.color == "#123456"
    assert figure.layout.title.text == "cluster 2 · 90%"
    steps = figure.layout.sliders[0].steps
    expected = plots.frame_indices(seq.num_frames, 20)
    assert len(steps) == len(expected)
    play = figure.layout.updatemenus[0].buttons[0]
    assert play.method == "animate" and len(play.args[0]) == len(expected)
    assert [f["name"] for f in play.args[0]] == [str(t) for t in expected]
    # The last slider frame draws the last shown frame, axes reordered to (x, depth, up).
    last = steps[-1].args[0][0]
    joints_last = last["data"][1]
    t = expected[-1]
    assert joints_last["x"][19] == pytest.approx(float(seq.data[t, 0, 19, 0]), abs=1e-4)
    assert joints_last["y"][19] == pytest.approx(float(seq.data[t, 0, 19, 2]), abs=1e-4)
    assert joints_last["z"][19] == pytest.approx(float(seq.data[t, 0, 19, 1]), abs=1e-4)


def test_skeleton_bone_segments_join_the_layout_edges(example_files, hand_read):
    seq = hand_read(example_files[1])
    figure = plots.skeleton_figure(seq)
    bones = figure.data[0]
    frame0 = seq.data[0, 0]  # (V, 3)
    for i, (a, b) in enumerate(get_layout("msr20").edges):
        assert bones.x[3 * i] == pytest.approx(float(frame0[a, 0]), abs=1e-4)
        assert bones.x[3 * i + 1] == pytest.approx(float(frame0[b, 0]), abs=1e-4)
        assert bones.x[3 * i + 2] is None  # the gap between bones


def test_skeleton_2d_all_persons_missing_joints_and_upright_axis():
    seq = _two_person_2d()
    figure = plots.skeleton_figure(seq)
    assert [type(t) for t in figure.data] == [go.Scatter] * 4  # bones + joints per person
    assert figure.data[1].x[5] is None  # score-0 joint left out
    assert all(v is None for v in figure.data[3].x)  # person 2 absent in frame 0
    later = figure.layout.sliders[0].steps[1].args[0][0]["data"]
    assert sum(v is not None for v in later[3]["x"]) == 18  # person 2 present in frame 1
    y_range = figure.layout.yaxis.range
    assert y_range[0] > y_range[1]  # image coordinates: y grows downwards
    dashes = {figure.data[0].line.dash, figure.data[2].line.dash}
    assert len(dashes) == 2  # the two persons are told apart


def test_skeleton_figure_json_is_light_for_a_long_clip(examples_dir, hand_read):
    longest = max(examples_dir.glob("*_skeleton3D.txt"), key=lambda p: p.stat().st_size)
    seq = hand_read(longest)
    payload = plots.skeleton_figure(seq).to_json()
    assert seq.num_frames > plots.MAX_ANIMATION_FRAMES
    assert len(payload) < 400_000
    assert "NaN" not in payload  # missing points are JSON null
    json.loads(payload)


def test_all_zero_sequence_draws_without_error():
    seq = PoseSequence(data=np.zeros((5, 1, 20, 3), np.float32), layout="kinect20", source="z")
    figure = plots.skeleton_figure(seq)
    assert all(v is None for v in figure.data[1].x)
    assert list(figure.layout.scene.xaxis.range) == [-1.0, 1.0]


def test_pca_figure_one_trace_per_cluster_with_row_indices():
    points = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
    figure = plots.pca_figure(points, [2, 0, 2, 5], ["a", "b", "c", "d"],
                              cluster_names=("x", "y", "z", "", "", "w"))
    assert [t.name for t in figure.data] == ["0 · x", "2 · z", "5 · w"]
    assert list(figure.data[1].customdata) == [0, 2]
    assert figure.data[1].marker.color == plots.cluster_colour(2)


def test_counts_and_confusion_figures():
    counts = plots.counts_figure({0: 3, 4: 1})
    assert list(counts.data[0].y) == [3, 1] and list(counts.data[0].x) == ["0", "4"]
    matrix = np.array([[2, 0], [1, 3]])
    heat = plots.confusion_figure(matrix, [0, 4], ["wave", "kick"])
    assert np.array_equal(np.asarray(heat.data[0].z), matrix)
    assert list(heat.data[0].x) == ["wave", "kick"]


def test_cluster_colours_are_stable_and_distinct():
    assert plots.cluster_colour(3) == plots.cluster_colour(3)
    assert len({plots.cluster_colour(k) for k in range(len(plots.PALETTE))}) == len(plots.PALETTE)
    assert plots.cluster_colour(None) == plots.UNASSIGNED_COLOUR
