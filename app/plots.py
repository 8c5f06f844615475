"""Plotly figures for the app: the animated skeleton, the PCA map, cluster counts, the confusion map.

Pure functions of numpy arrays and :class:`~codt_deploy.sequence.PoseSequence` objects, so they are
tested without a server. The skeleton animation keeps its frames *inside its controls*: the play
button and every slider step carry the frame objects themselves (``Plotly.animate`` accepts frame
objects as well as frame names). Gradio's ``gr.Plot`` hands Plotly only ``data``, ``layout`` and
``config``, so a figure whose controls refer to ``figure.frames`` by name would not move there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from codt_deploy.layouts import get_layout
from codt_deploy.sequence import PoseSequence

PALETTE: tuple[str, ...] = tuple(qualitative.Dark24)
UNASSIGNED_COLOUR = "#7f7f7f"
PERSON_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
MAX_ANIMATION_FRAMES = 40
FRAME_DURATION_MS = 80
_DECIMALS = 4  # coordinates are rounded in the figure JSON to keep it light


def cluster_colour(cluster: int | None) -> str:
    """A stable colour per cluster id (None, for no prediction, is grey)."""
    if cluster is None or cluster < 0:
        return UNASSIGNED_COLOUR
    return PALETTE[cluster % len(PALETTE)]


def frame_indices(num_frames: int, max_frames: int = MAX_ANIMATION_FRAMES) -> np.ndarray:
    """The frames shown: all of them, or an even stride through a long clip (first frame kept)."""
    if num_frames < 1:
        raise ValueError("a sequence needs at least one frame to draw")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    stride = math.ceil(num_frames / max_frames)
    return np.arange(0, num_frames, stride)


def display_coordinates(seq: PoseSequence) -> np.ndarray:
    """Drawing coordinates ``(T, M, V, D)``, D = 3 (x, depth, up) for 3-D data, else 2 (x, y).

    Missing joints (all-zero, or a zero score in 2-D data) become NaN so Plotly leaves them out.
    3-D data is stored with y up and z as depth (Kinect convention, docs/FORMATS.md §1); Plotly's
    3-D scene has z up, so the axes are reordered to (x, z, y).
    """
    data = np.asarray(seq.data, np.float64)  # (T, M, V, C)
    if seq.is_3d:
        xyz = data[..., :3]  # (T, M, V, 3)
        missing = np.all(xyz == 0.0, axis=-1)  # (T, M, V)
        coords = xyz[..., [0, 2, 1]]  # (T, M, V, 3): x, depth, up
    else:
        coords = data[..., :2].copy()  # (T, M, V, 2)
        missing = np.all(coords == 0.0, axis=-1)
        if "score" in seq.channels:
            missing |= data[..., seq.channels.index("score")] <= 0.0
    coords[missing] = np.nan
    return coords


def _bone_path(joints: np.ndarray, edges: Sequence[tuple[int, int]]) -> np.ndarray:
    """``(3E, D)`` points: each bone's two joints then a NaN gap, for one ``lines`` trace."""
    v_dim = joints.shape[-1]
    path = np.full((3 * len(edges), v_dim), np.nan)
    for i, (a, b) in enumerate(edges):
        path[3 * i] = joints[a]
        path[3 * i + 1] = joints[b]
    return path


def _axes_values(points: np.ndarray) -> dict[str, list]:
    """``{"x": [...], "y": [...] (, "z": [...])}`` from ``(P, D)`` points, NaN as null."""
    rounded = np.round(points, _DECIMALS)
    out = {}
    for axis, name in enumerate("xyz"[:points.shape[1]]):
        out[name] = [None if math.isnan(v) else float(v) for v in rounded[:, axis]]
    return out


def _frame_traces(coords_t: np.ndarray, edges: Sequence[tuple[int, int]]) -> list[dict]:
    """Trace updates for one frame: per person a bones trace then a joints trace."""
    traces = []
    for person in coords_t:  # (V, D)
        traces.append(_axes_values(_bone_path(person, edges)))
        traces.append(_axes_values(person))
    return traces


def _base_traces(first: list[dict], num_persons: int, colour: str, is_3d: bool) -> list:
    kind = go.Scatter3d if is_3d else go.Scatter
    traces = []
    for person in range(num_persons):
        dash = PERSON_DASHES[person % len(PERSON_DASHES)]
        label = f"person {person + 1}"
        traces.append(kind(**first[2 * person], mode="lines", name=f"{label} bones",
                           line=dict(color=colour, width=5 if is_3d else 3, dash=dash),
                           hoverinfo="skip", showlegend=False))
        traces.append(kind(**first[2 * person + 1], mode="markers", name=label,
                           marker=dict(color=colour, size=4 if is_3d else 6,
                                       line=dict(color="white", width=0.5)),
                           showlegend=num_persons > 1))
    return traces


def _padded_range(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [-1.0, 1.0]
    low, high = float(finite.min()), float(finite.max())
    pad = max(0.05 * (high - low), 1e-3)
    return [low - pad, high + pad]


def _axes_layout(coords: np.ndarray, is_3d: bool) -> dict:
    """Fixed axis ranges over the whole clip, equal scale, a front view in 3-D."""
    ranges = [_padded_range(coords[..., d]) for d in range(coords.shape[-1])]
    if is_3d:
        spans = np.array([r[1] - r[0] for r in ranges])
        ratio = spans / spans.max()
        axes = {name: dict(range=r, title=title, showbackground=False, zeroline=False)
                for name, r, title in zip(("xaxis", "yaxis", "zaxis"), ranges,
                                          ("x", "depth", "height"))}
        return dict(scene=dict(**axes, aspectmode="manual",
                               aspectratio=dict(x=ratio[0], y=ratio[1], z=ratio[2]),
                               camera=dict(eye=dict(x=0.45, y=-1.5, z=0.3), up=dict(x=0, y=0, z=1))))
    x_range, y_range = ranges
    # 2-D data is in image coordinates (y grows downwards): show it upright.
    return dict(xaxis=dict(range=x_range, zeroline=False, title="x"),
                yaxis=dict(range=y_range[::-1], zeroline=False, scaleanchor="x", title="y"))


def _animation_controls(frames: list[dict], labels: list[str]) -> dict:
    """Play/pause buttons and a frame slider whose commands carry the frame objects."""
    play = dict(frame=dict(duration=FRAME_DURATION_MS, redraw=True), mode="immediate",
                transition=dict(duration=0))
    jump = dict(frame=dict(duration=0, redraw=True), mode="immediate", transition=dict(duration=0))
    # While playing, each frame also moves the slider (frames named by inline objects do not).
    playing = [dict(frame, layout=dict(sliders=[dict(active=i)])) for i, frame in enumerate(frames)]
    buttons = [dict(label="▶ Play", method="animate", args=[playing, play]),
               dict(label="❚❚ Pause", method="animate", args=[[None], jump])]
    steps = [dict(label=label, method="animate", args=[[frame], jump])
             for frame, label in zip(frames, labels)]
    return dict(
        updatemenus=[dict(type="buttons", direction="left", showactive=False, buttons=buttons,
                          x=0.0, y=0.0, xanchor="left", yanchor="top", pad=dict(t=8, r=10))],
        sliders=[dict(active=0, steps=steps, x=0.22, len=0.78, y=0.0, yanchor="top",
                      pad=dict(t=8), currentvalue=dict(prefix="frame ", visible=True))],
    )


def skeleton_figure(seq: PoseSequence, *, title: str = "", colour: str = PALETTE[0],
                    max_frames: int = MAX_ANIMATION_FRAMES, height: int = 520) -> go.Figure:
    """An animated skeleton of every person in ``seq``, bones from its layout's edges.

    3-D data gives a ``Scatter3d`` scene, 2-D data a ``Scatter`` plot. Long clips are shown at an
    even stride of at most ``max_frames`` frames. The figure has ``2 * M`` traces (bones, joints per
    person), a play/pause pair and a frame slider; ``figure.frames`` stays empty (module docstring).
    """
    edges = get_layout(seq.layout).edges
    coords = display_coordinates(seq)  # (T, M, V, D)
    shown = frame_indices(seq.num_frames, max_frames)
    frames: list[dict[str, Any]] = [dict(name=str(int(t)), data=_frame_traces(coords[t], edges),
                   traces=list(range(2 * seq.num_persons))) for t in shown]
    labels = [f"{int(t) + 1}/{seq.num_frames}" for t in shown]
    figure = go.Figure(_base_traces(frames[0]["data"], seq.num_persons, colour, seq.is_3d))
    figure.update_layout(
        title=dict(text=title, x=0.02, font=dict(color=colour, size=16)),
        height=height, margin=dict(l=10, r=10, t=60, b=100),
        legend=dict(orientation="h", x=0.0, y=1.0, yanchor="bottom"),
        **_axes_layout(coords[shown], seq.is_3d),
        **_animation_controls(frames, labels),
    )
    return figure


def pca_figure(points: np.ndarray, clusters: Sequence[int], hover: Sequence[str], *,
               cluster_names: Sequence[str] | None = None, height: int = 420) -> go.Figure:
    """The 2-D PCA map ``points (N, 2)``, one trace per cluster coloured like the skeletons.

    Each point's ``customdata`` is its row index in the batch, so a click can select it.
    """
    points = np.asarray(points, np.float64)
    labels = np.asarray(clusters, np.int64)
    figure = go.Figure()
    for cluster in np.unique(labels):
        rows = np.flatnonzero(labels == cluster)
        name = cluster_label(int(cluster), cluster_names)
        figure.add_trace(go.Scatter(
            x=points[rows, 0], y=points[rows, 1], mode="markers", name=name,
            customdata=rows, text=[hover[int(i)] for i in rows],
            hovertemplate="%{text}<extra>" + name + "</extra>",
            marker=dict(color=cluster_colour(int(cluster)), size=9, line=dict(color="white",
                                                                               width=0.5))))
    figure.update_layout(title="Embeddings, first two principal components", height=height,
                         xaxis_title="PC 1", yaxis_title="PC 2", margin=dict(l=10, r=10, t=50,
                                                                              b=10))
    return figure


def counts_figure(counts: dict[int, int], *, cluster_names: Sequence[str] | None = None,
                  height: int = 320) -> go.Figure:
    """A bar per cluster with its number of sequences."""
    ids = sorted(counts)
    figure = go.Figure(go.Bar(
        x=[cluster_label(k, cluster_names) for k in ids], y=[counts[k] for k in ids],
        marker_color=[cluster_colour(k) for k in ids], text=[counts[k] for k in ids],
        textposition="auto"))
    figure.update_layout(title="Sequences per cluster", height=height, yaxis_title="sequences",
                         margin=dict(l=10, r=10, t=50, b=10))
    return figure


def confusion_figure(matrix: np.ndarray, cluster_ids: Sequence[int], label_names: Sequence[str], *,
                     cluster_names: Sequence[str] | None = None, height: int = 480) -> go.Figure:
    """Heat map of ``matrix (clusters, labels)``: how many sequences of each label each cluster got."""
    matrix = np.asarray(matrix)
    figure = go.Figure(go.Heatmap(
        z=matrix, x=list(label_names), y=[cluster_label(k, cluster_names) for k in cluster_ids],
        colorscale="Blues", text=matrix, texttemplate="%{text}",
        hovertemplate="cluster %{y}<br>label %{x}<br>%{z} sequences<extra></extra>"))
    figure.update_layout(title="Clusters × labels", height=height, xaxis_title="label",
                         yaxis_title="cluster", yaxis_autorange="reversed",
                         margin=dict(l=10, r=10, t=50, b=10))
    return figure


def cluster_label(cluster: int, cluster_names: Sequence[str] | None = None) -> str:
    """``"3"`` or ``"3 · wave"`` when the model names its clusters."""
    if cluster_names and 0 <= cluster < len(cluster_names) and cluster_names[cluster]:
        return f"{cluster} · {cluster_names[cluster]}"
    return str(cluster)
