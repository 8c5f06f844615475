"""Joint layouts: pinned edge lists, parts and name-based maps.

docs/FORMATS.md §2-3 (layouts, shared-joint maps) and docs/METHOD.md §4.
"""

from __future__ import annotations

import numpy as np
import pytest

from codt_deploy.errors import LayoutError
from codt_deploy.layouts import available_layouts, get_layout, joint_map, shared_joints

# METHOD.md §4, 1-based as printed there.
NTU25_EDGES_1BASED = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
                      (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
                      (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12)]
SHARED15_EDGES = [(0, 1), (2, 1), (3, 2), (4, 3), (5, 1), (6, 5), (7, 6), (8, 1), (9, 8), (10, 9),
                  (11, 10), (12, 8), (13, 12), (14, 13)]
BODY25_EXTRA = [(15, 0), (16, 0), (17, 0), (18, 0), (19, 14), (20, 19), (21, 14), (22, 11),
                (23, 22), (24, 11)]
COCO18_EDGES = [(4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5),
                (8, 2), (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14)]
MSR20_EDGES_1BASED = [(7, 4), (4, 3), (3, 20), (3, 1), (3, 2), (1, 8), (2, 9), (8, 10), (9, 11),
                      (10, 12), (11, 13), (7, 5), (7, 6), (5, 14), (6, 15), (14, 16), (15, 17),
                      (16, 18), (17, 19)]

# docs/FORMATS.md §3: source index (or pair averaged) of each shared joint, per layout.
SHARED15_MAPS = {
    "body25": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
    "coco18": [0, 1, 2, 3, 4, 5, 6, 7, (8, 11), 8, 9, 10, 11, 12, 13],
    "coco17": [0, (5, 6), 6, 8, 10, 5, 7, 9, (11, 12), 12, 14, 16, 11, 13, 15],
    "ntu25": [3, 20, 8, 9, 10, 4, 5, 6, 0, 16, 17, 18, 12, 13, 14],
    "kinect20": [3, 2, 8, 9, 10, 4, 5, 6, 0, 16, 17, 18, 12, 13, 14],
    "msr20": [19, 2, 1, 8, 10, 0, 7, 9, 6, 5, 14, 16, 4, 13, 15],
    "penn13": [0, (1, 2), 2, 4, 6, 1, 3, 5, (7, 8), 8, 10, 12, 7, 9, 11],
}


def _as_sets(sources):
    return [frozenset(s) for s in sources]


def test_ntu25_edges_pinned():
    assert list(get_layout("ntu25").edges) == [(a - 1, b - 1) for a, b in NTU25_EDGES_1BASED]


def test_shared15_body25_coco18_edges_pinned():
    assert list(get_layout("shared15").edges) == SHARED15_EDGES
    assert list(get_layout("body25").edges) == SHARED15_EDGES + BODY25_EXTRA
    assert list(get_layout("coco18").edges) == COCO18_EDGES


def test_msr20_edges_pinned():
    assert list(get_layout("msr20").edges) == [(a - 1, b - 1) for a, b in MSR20_EDGES_1BASED]


@pytest.mark.parametrize("name", available_layouts())
def test_every_layout_is_a_connected_tree_or_graph(name):
    layout = get_layout(name)
    seen, frontier = {0}, [0]
    neighbours = {j: set() for j in range(layout.num_joints)}
    for a, b in layout.edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    while frontier:
        j = frontier.pop()
        for k in neighbours[j] - seen:
            seen.add(k)
            frontier.append(k)
    assert seen == set(range(layout.num_joints)), f"{name} is not connected"
    assert len(layout.parts) == 5


def test_masking_parts_pinned():
    assert get_layout("ntu25").parts == ((2, 3, 0, 1, 20), (4, 5, 6, 7, 21, 22),
                                         (8, 9, 10, 11, 23, 24), (12, 13, 14, 15),
                                         (16, 17, 18, 19))
    assert get_layout("shared15").parts == ((2, 3, 4), (5, 6, 7), (0, 1, 8), (9, 10, 11),
                                            (12, 13, 14))
    assert get_layout("body25").parts[4] == (0, 15, 16, 17, 18)
    assert get_layout("coco18").parts[0] == (2, 3, 4, 1)


@pytest.mark.parametrize("name", sorted(SHARED15_MAPS))
def test_maps_to_shared15_match_the_reference_table(name):
    expected = [(s,) if isinstance(s, int) else s for s in SHARED15_MAPS[name]]
    assert _as_sets(joint_map(name, "shared15").sources) == _as_sets(expected)


def test_ntu_neck_is_switchable():
    assert joint_map("ntu25", "shared15").sources[1] == (20,)
    assert joint_map("ntu25", "shared15", neck="neck").sources[1] == (2,)


def test_centre_and_shoulders_follow_method():
    assert get_layout("ntu25").center == (20,) and get_layout("ntu25").shoulders == (8, 4)
    for name in ("body25", "shared15", "coco18"):
        assert get_layout(name).center == (1,) and get_layout(name).shoulders == (2, 5)


def test_kinect20_and_msr20_share_all_twenty_joints():
    assert len(shared_joints("kinect20", "msr20")) == 20
    jm = joint_map("msr20", "kinect20")
    msr, kin = get_layout("msr20"), get_layout("kinect20")
    assert [msr.joints[s[0]] for s in jm.sources] == list(kin.joints)


def test_apply_selects_and_averages_along_an_axis():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 17, 3)).astype(np.float32)  # (T, M, V, C) in coco17
    out = joint_map("coco17", "shared15").apply(x, axis=2)  # (T, M, 15, C)
    assert out.shape == (2, 4, 15, 3)
    np.testing.assert_allclose(out[:, :, 1], (x[:, :, 5] + x[:, :, 6]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(out[:, :, 2], x[:, :, 6])


def test_missing_joints_are_named():
    with pytest.raises(LayoutError, match=r"missing .*l_hand"):
        joint_map("coco17", "ntu25")


def test_unknown_layout_lists_the_options():
    with pytest.raises(LayoutError, match="available layouts: .*ntu25"):
        get_layout("kinect99")
    assert get_layout("skeletics25").name == "body25"
