"""ST-GCN encoder (METHOD.md §3): pinned shapes and sizes, A-first equivalence, init, pooling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codt_deploy.layouts import get_layout
from training.stgcn import STGCN, GraphConv

# (C_in, C_out, stride) of the 10 blocks, straight from the METHOD.md §3 table.
TABLE = [(3, 16, 1), (16, 16, 1), (16, 16, 1), (16, 16, 1), (16, 32, 2),
         (32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 256, 1)]


def _expected_parameter_count(c: int, v: int) -> int:
    total = 2 * c * v  # data_bn γ, β
    for i, (c_in, c_out, stride) in enumerate(TABLE):
        c_in = c if i == 0 else c_in
        total += c_out * c_in * 3 + 3 * c_out + 3 * v * v  # graph conv weight, bias, importance
        total += 2 * c_out + c_out * c_out * 9 + c_out + 2 * c_out  # BN, 9×1 conv, BN
        if i > 0 and (c_in != c_out or stride != 1):
            total += c_in * c_out + c_out + 2 * c_out  # residual 1×1 conv + BN
    return total


@pytest.mark.parametrize("layout", ["ntu25", "shared15", "body25", "coco18"])
def test_output_shapes_and_parameter_count(layout):
    torch.manual_seed(0)
    v = get_layout(layout).num_joints
    encoder = STGCN(layout)
    out = encoder(torch.randn(2, 3, 50, v, 2))
    assert out.feature.shape == (2, 256)
    assert out.temporal.shape == (2, 2, 256, 13)  # T' = 13 for T = 50 (two stride-2 blocks)
    assert sum(p.numel() for p in encoder.parameters()) == _expected_parameter_count(3, v)


@pytest.mark.parametrize(("frames", "steps"), [(50, 13), (16, 4), (30, 8)])
def test_time_axis_is_not_frozen(frames, steps):
    encoder = STGCN("shared15").eval()
    out = encoder(torch.randn(3, 3, frames, 15, 1))
    assert out.temporal.shape == (3, 1, 256, steps)


def test_pooling_is_mean_over_time_joints_then_persons():
    torch.manual_seed(0)
    encoder = STGCN("shared15").eval()
    x = torch.randn(2, 3, 16, 15, 2)
    out = encoder(x)
    # feature = mean over persons of the per-person temporal map averaged over T'.
    torch.testing.assert_close(out.feature, out.temporal.mean(dim=3).mean(dim=1))
    torch.testing.assert_close(encoder.embed(x), out.feature)
    # Persons are symmetric: swapping them leaves the feature unchanged.
    torch.testing.assert_close(encoder.embed(x.flip(4)), out.feature, rtol=1e-5, atol=1e-6)


def test_eval_mode_samples_are_independent():
    torch.manual_seed(0)
    encoder = STGCN("shared15").eval()
    x = torch.randn(4, 3, 16, 15, 2)
    torch.testing.assert_close(encoder.embed(x[1:2]), encoder.embed(x)[1:2], rtol=1e-4, atol=1e-6)


def _conv_first_reference(gcn: GraphConv, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """The reference order: 1×1 conv to K·C_out channels, then contract with A ⊙ importance."""
    k, o, c = gcn.num_subsets, gcn.out_channels, gcn.in_channels
    assert gcn.edge_importance is not None  # the tests build it with edge importance
    weight = gcn.weight[:, :, 0, :].permute(2, 0, 1).reshape(k * o, c)  # W[k·O + o, c]
    y = F.conv2d(x, weight[:, :, None, None], gcn.bias.reshape(k * o))  # (N, K·O, T, V)
    n, _, t, v = y.shape
    graph = adjacency * gcn.edge_importance
    return torch.einsum("nkotv,kvw->notw", y.view(n, k, o, t, v), graph)


@pytest.mark.parametrize(("c_in", "c_out"), [(3, 16), (16, 16), (64, 256)])
def test_a_first_graph_conv_equals_the_reference_order(c_in, c_out):
    torch.manual_seed(0)
    v = 15
    adjacency = STGCN("shared15").adjacency
    gcn = GraphConv(c_in, c_out, 3, v, edge_importance=True)
    with torch.no_grad():  # non-trivial bias and importance, so both enter the comparison
        gcn.weight.normal_()
        gcn.bias.normal_()
        gcn.edge_importance.uniform_(0.5, 1.5)
    x = torch.randn(2, c_in, 7, v)
    torch.testing.assert_close(gcn(x, adjacency), _conv_first_reference(gcn, x, adjacency),
                               rtol=1e-4, atol=1e-4)


def test_initialisation_follows_method():
    torch.manual_seed(0)
    encoder = STGCN("ntu25")
    convs = [m.weight for m in encoder.modules() if isinstance(m, (torch.nn.Conv2d, GraphConv))]
    weights = torch.cat([w.flatten() for w in convs])
    assert abs(weights.std().item() - 0.02) < 0.001 and abs(weights.mean().item()) < 0.001
    bn = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    gammas = torch.cat([m.weight for m in bn])
    assert abs(gammas.mean().item() - 1.0) < 0.005 and 0.01 < gammas.std().item() < 0.03
    assert all((m.bias == 0).all() for m in bn)
    assert all((block.gcn.bias == 0).all() for block in encoder.blocks)
    assert all((block.gcn.edge_importance == 1).all() for block in encoder.blocks)


def test_block_structure_matches_the_table():
    encoder = STGCN("shared15", dropout=0.5)
    kinds = [block.residual_kind for block in encoder.blocks]
    assert kinds == ["none", "identity", "identity", "identity", "projection", "identity",
                     "identity", "projection", "identity", "projection"]
    dropouts = [block.tcn[-1].p for block in encoder.blocks]
    assert dropouts == [0.0] + [0.5] * 9
    strides = [block.tcn[2].stride[0] for block in encoder.blocks]
    assert strides == [s for _, _, s in TABLE]


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    encoder = STGCN("shared15")
    out = encoder(torch.randn(2, 3, 16, 15, 2))
    (out.feature.square().sum() + out.temporal.square().sum()).backward()
    missing = [name for name, p in encoder.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())


def test_without_edge_importance():
    encoder = STGCN("shared15", edge_importance=False)
    assert not any("edge_importance" in name for name, _ in encoder.named_parameters())
    assert encoder.eval().embed(torch.randn(1, 3, 16, 15, 2)).shape == (1, 256)


def test_in_channels_other_than_three():
    encoder = STGCN("coco18", in_channels=2).eval()
    assert encoder.embed(torch.randn(2, 2, 16, 18, 2)).shape == (2, 256)


@pytest.mark.parametrize("shape", [(2, 3, 16, 25, 2), (2, 2, 16, 15, 2), (3, 16, 15, 2)])
def test_wrong_input_shape_is_a_clear_error(shape):
    with pytest.raises(ValueError, match=r"STGCN\(shared15\) expects \(N, 3, T, 15, M\)"):
        STGCN("shared15")(torch.randn(*shape))
