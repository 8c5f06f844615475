"""Skeleton graphs for the ST-GCN encoder (METHOD.md §3 "Graph", §4 layouts).

The spatial-configuration partition of ST-GCN (Yan et al., AAAI 2018) splits each joint's 1-hop
neighbourhood into three subsets, stacked as ``A[k]`` with ``A[k, v, w]`` the weight with which
input joint ``v`` feeds output joint ``w`` (the orientation of ``einsum("nkctv,kvw->nctw")``):

- ``k = 0`` root: the joint itself;
- ``k = 1`` neighbours ``v`` at the same or a greater distance from the centre than ``w``;
- ``k = 2`` neighbours ``v`` closer to the centre than ``w``.

Each subset is cut out of one column-normalised adjacency ``A·D⁻¹`` (self-loops included), so
``sum_k sum_v A[k, v, w] == 1`` for every joint ``w``.

Distances to the centre are the *max_hop-bounded* hop distances, as in the ST-GCN reference code
that CoDT uses: with ``max_hop = 1`` every joint more than one hop from the centre counts as
"infinitely" far, so an edge between two such joints falls into subset 1 in both directions. This
keeps the encoder identical to the reference implementation.
"""

from __future__ import annotations

import numpy as np

from codt_deploy.layouts import Layout, get_layout

NUM_SUBSETS = 3


def hop_distance(num_joints: int, edges: tuple[tuple[int, int], ...],
                 max_hop: int = 1) -> np.ndarray:
    """(V, V) hop distances between joints, ``inf`` beyond ``max_hop`` (undirected edges)."""
    adjacency = np.eye(num_joints)
    for a, b in edges:
        adjacency[a, b] = adjacency[b, a] = 1.0
    distance = np.full((num_joints, num_joints), np.inf)
    reach = np.eye(num_joints)
    for hop in range(max_hop + 1):
        # reach = adjacency^hop (self-loops included) > 0 marks joints within `hop` steps.
        distance[(reach > 0) & np.isinf(distance)] = hop
        reach = reach @ adjacency
    return distance


def column_normalise(adjacency: np.ndarray) -> np.ndarray:
    """``A·D⁻¹`` with ``D`` the diagonal of column sums; an all-zero column stays zero."""
    column_sum = adjacency.sum(axis=0)
    inverse = np.divide(1.0, column_sum, out=np.zeros_like(column_sum), where=column_sum > 0)
    return adjacency * inverse[None, :]


def spatial_adjacency(layout: str | Layout, max_hop: int = 1) -> np.ndarray:
    """The (3, V, V) float32 spatial-partition adjacency of a layout (METHOD.md §3).

    ``layout.center`` names the centre joint; for a multi-joint centre (e.g. the mid-shoulder of
    COCO-17) the first joint is used. Only ``max_hop = 1`` gives exactly three subsets.
    """
    if max_hop != 1:
        raise ValueError(f"spatial_adjacency supports max_hop=1 only (3 subsets), got {max_hop}")
    layout = get_layout(layout)
    num_joints = layout.num_joints
    centre = layout.center[0]
    distance = hop_distance(num_joints, layout.edges, max_hop)
    normalised = column_normalise((distance <= max_hop).astype(np.float64))

    to_centre = distance[:, centre]  # (V,) bounded hop distance of each joint to the centre
    source_dist = to_centre[:, None]  # v (rows): the joint that sends
    target_dist = to_centre[None, :]  # w (columns): the joint that receives
    is_neighbour = distance == 1
    root = np.where(distance == 0, normalised, 0.0)
    same_or_farther = np.where(is_neighbour & (source_dist >= target_dist), normalised, 0.0)
    closer = np.where(is_neighbour & (source_dist < target_dist), normalised, 0.0)
    return np.stack([root, same_or_farther, closer]).astype(np.float32)  # (3, V, V)
