"""Spatial-partition adjacency (METHOD.md §3 "Graph"): hand-computed tiny graphs, pinned shapes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from codt_deploy.layouts import Layout, available_layouts, get_layout
from training.graph import hop_distance, spatial_adjacency

# Every registered layout and its joint count; a new layout must be added here on purpose.
EXPECTED_JOINTS = {"body25": 25, "coco17": 17, "coco18": 18, "kinect20": 20, "msr20": 20,
                   "ntu25": 25, "penn13": 13, "shared15": 15}


def _toy(edges: tuple[tuple[int, int], ...], num_joints: int, center: int) -> Layout:
    return Layout(name="toy", joints=tuple(f"j{i}" for i in range(num_joints)), edges=edges,
                  center=(center,), shoulders=(0, 1), parts=())


def test_three_joint_chain_by_hand():
    # 0 - 1 - 2, centre 1. Column sums (self included): 2, 3, 2.
    adjacency = spatial_adjacency(_toy(((0, 1), (1, 2)), 3, center=1))
    root = np.diag([1 / 2, 1 / 3, 1 / 2])
    farther_to_nearer = np.zeros((3, 3))  # subset 1: A[v, w] with v at least as far as w
    farther_to_nearer[0, 1] = farther_to_nearer[2, 1] = 1 / 3
    nearer_to_farther = np.zeros((3, 3))  # subset 2: v closer to the centre than w
    nearer_to_farther[1, 0] = nearer_to_farther[1, 2] = 1 / 2
    np.testing.assert_allclose(adjacency, np.stack([root, farther_to_nearer, nearer_to_farther]),
                               rtol=1e-6)


def test_four_joint_chain_treats_joints_beyond_one_hop_as_equidistant():
    # 0 - 1 - 2 - 3, centre 0. Bounded (max_hop 1) distances to the centre: 0, 1, inf, inf,
    # as in the ST-GCN reference code: the 2-3 edge lands in subset 1 in both directions.
    adjacency = spatial_adjacency(_toy(((0, 1), (1, 2), (2, 3)), 4, center=0))
    expected = np.zeros((3, 4, 4))
    expected[0] = np.diag([1 / 2, 1 / 3, 1 / 3, 1 / 2])
    expected[1, 1, 0] = 1 / 2  # 1 → 0
    expected[1, 2, 1] = 1 / 3  # 2 (inf) → 1 (1)
    expected[1, 3, 2] = 1 / 3  # 3 (inf) → 2 (inf)
    expected[1, 2, 3] = 1 / 2  # 2 (inf) → 3 (inf)
    expected[2, 0, 1] = 1 / 3  # 0 (0) → 1 (1)
    expected[2, 1, 2] = 1 / 3  # 1 (1) → 2 (inf)
    np.testing.assert_allclose(adjacency, expected, rtol=1e-6)


def test_hop_distance_is_bounded():
    distance = hop_distance(4, ((0, 1), (1, 2), (2, 3)), max_hop=1)
    assert distance[0, 0] == 0 and distance[0, 1] == 1 and np.isinf(distance[0, 2])
    np.testing.assert_array_equal(distance, distance.T)


def test_every_layout_is_pinned():
    assert set(available_layouts()) == set(EXPECTED_JOINTS)


@pytest.mark.parametrize("name", sorted(EXPECTED_JOINTS))
def test_shape_and_invariants_for_every_layout(name):
    layout = get_layout(name)
    v = EXPECTED_JOINTS[name]
    adjacency = spatial_adjacency(layout)
    assert adjacency.shape == (3, v, v) and adjacency.dtype == np.float32
    assert (adjacency >= 0).all()
    # Column normalisation: every joint receives total weight 1 over the three subsets.
    np.testing.assert_allclose(adjacency.sum(axis=(0, 1)), np.ones(v), rtol=1e-6)
    # Root = the diagonal only; the subsets are disjoint and cover self-loops plus both edge
    # directions, nothing else.
    np.testing.assert_array_equal(adjacency[0], np.diag(np.diag(adjacency[0])))
    support = (adjacency > 0).astype(int)
    assert support.sum(axis=0).max() == 1
    assert support.sum() == v + 2 * len(layout.edges)
    assert (adjacency[2] > 0).sum() > 0  # some edge points away from the centre


def test_multi_joint_centre_uses_the_first_joint():
    coco17 = get_layout("coco17")
    assert len(coco17.center) == 2
    np.testing.assert_array_equal(spatial_adjacency(coco17),
                                  spatial_adjacency(replace(coco17, center=coco17.center[:1])))


def test_ntu_centre_is_spine_shoulder():
    adjacency = spatial_adjacency("ntu25")
    centre = 20
    # Every neighbour of the centre sends into it through subset 1 and receives through subset 2.
    neighbours = [a if b == centre else b for a, b in get_layout("ntu25").edges if centre in (a, b)]
    assert sorted(neighbours) == [1, 2, 4, 8]
    for joint in neighbours:
        assert adjacency[1, joint, centre] > 0 and adjacency[2, centre, joint] > 0


def test_only_max_hop_one_is_supported():
    with pytest.raises(ValueError, match="max_hop"):
        spatial_adjacency("ntu25", max_hop=2)
