"""The ST-GCN encoder of each CoDT branch (METHOD.md §3).

Layout: input ``(N, C, T, V, M)``; persons are folded into the batch, so every block works on
``(N·M, C, T, V)``. Outputs are pooled with ``.mean`` over dimensions (never a shape-derived
``avg_pool2d``), so an ONNX export keeps the batch and time axes dynamic.

Graph convolution ("A-first"). The reference applies a 1×1 convolution to ``K·C_out`` channels and
then contracts with ``A ⊙ importance``:

    y[n,o,t,w] = sum_k sum_v (sum_c W[k,o,c] x[n,c,t,v] + b[k,o]) · A[k,v,w]

Here the adjacency is applied to the (narrower) input first, ``mixed[n,c,t,k·V+w] =
sum_v x[n,c,t,v] A[k,v,w]`` (one matmul, no copy), and a single ``1×K`` convolution with dilation
``V`` over that last axis does the channel mixing and the sum over ``k`` at once; the bias enters as
``sum_k b[k,o] · sum_v A[k,v,w]``. Both are the same function of the same parameters
(``weight[o,c,0,k] = W[k,o,c]``, pinned by a test), but this contracts ``C_in`` instead of ``C_out``
channels with the ``V×V`` graph (4× less work in block 10) and avoids the reshuffling copies; it
measured faster than the reference order in PyTorch training and in ONNX Runtime inference.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from codt_deploy.layouts import Layout, get_layout
from training.graph import spatial_adjacency

FEATURE_DIM = 256
TEMPORAL_KERNEL = 9
# (in, out, stride) of the 10 blocks (METHOD.md §3 table); block 1 reads the input channels.
_BLOCKS = ((None, 16, 1), (16, 16, 1), (16, 16, 1), (16, 16, 1), (16, 32, 2),
           (32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, FEATURE_DIM, 1))


class EncoderOutput(NamedTuple):
    """What the encoder returns.

    ``feature``: (N, 256), mean over (T', V), then over the M persons.
    ``temporal``: (N, M, 256, T'), mean over V only; the decoder reconstructs from it.
    """

    feature: torch.Tensor
    temporal: torch.Tensor


class GraphConv(nn.Module):
    """Spatial graph convolution, A-first (see the module docstring; METHOD.md §3 block step 1)."""

    def __init__(self, in_channels: int, out_channels: int, num_subsets: int, num_joints: int,
                 edge_importance: bool) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_subsets = num_subsets
        # weight[o, c, 0, k] is the reference 1×1 conv weight W[k·C_out + o, c].
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, num_subsets))
        self.bias = nn.Parameter(torch.zeros(num_subsets, out_channels))  # b[k, o]
        shape = (num_subsets, num_joints, num_joints)
        self.edge_importance = nn.Parameter(torch.ones(shape)) if edge_importance else None

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.shape  # (N·M, C_in, T, V)
        graph = adjacency if self.edge_importance is None else adjacency * self.edge_importance
        graph_cat = graph.permute(1, 0, 2).reshape(v, self.num_subsets * v)  # (V, K·V): [v, k·V+w]
        mixed = torch.matmul(x, graph_cat)  # (N·M, C_in, T, K·V)
        y = F.conv2d(mixed, self.weight, dilation=(1, v))  # (N·M, C_out, T, V)
        bias = torch.einsum("ko,kw->ow", self.bias, graph.sum(dim=1))  # (C_out, V)
        return y.add_(bias[None, :, None, :])  # in place: conv2d's backward does not need y


class STGCNBlock(nn.Module):
    """Graph conv → BN → ReLU → temporal conv (9×1, stride s) → BN → Dropout, + residual, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, num_joints: int,
                 dropout: float, residual: bool, edge_importance: bool) -> None:
        super().__init__()
        self.gcn = GraphConv(in_channels, out_channels, 3, num_joints, edge_importance)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (TEMPORAL_KERNEL, 1), (stride, 1),
                      ((TEMPORAL_KERNEL - 1) // 2, 0)),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout, inplace=True),
        )
        self.residual_kind = "none" if not residual else (
            "identity" if in_channels == out_channels and stride == 1 else "projection")
        self.residual = None
        if self.residual_kind == "projection":
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, (stride, 1)), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x, adjacency))  # (N·M, C_out, T_out, V)
        if self.residual_kind == "identity":
            y = y + x
        elif self.residual is not None:
            y = y + self.residual(x)
        return torch.relu_(y)


class STGCN(nn.Module):
    """ST-GCN encoder exactly as METHOD.md §3: data_bn, 10 blocks of width 16/32/64/256."""

    def __init__(self, layout: str | Layout, in_channels: int = 3, dropout: float = 0.5,
                 edge_importance: bool = True) -> None:
        super().__init__()
        self.layout = get_layout(layout)
        self.in_channels = in_channels
        adjacency = torch.from_numpy(spatial_adjacency(self.layout))  # (3, V, V)
        self.register_buffer("adjacency", adjacency, persistent=False)
        num_joints = self.layout.num_joints
        self.data_bn = nn.BatchNorm1d(in_channels * num_joints)
        blocks = []
        for i, (c_in, c_out, stride) in enumerate(_BLOCKS):
            first = i == 0  # block 1: no residual, no dropout
            blocks.append(STGCNBlock(in_channels if c_in is None else c_in, c_out, stride, num_joints,
                                     0.0 if first else dropout, residual=not first,
                                     edge_importance=edge_importance))
        self.blocks = nn.ModuleList(blocks)
        init_weights(self)

    def _normalise_input(self, x: torch.Tensor) -> torch.Tensor:
        """data_bn over C·V per person, then persons folded into the batch."""
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)  # (N·M, V·C, T)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2)  # (N, M, C, T, V)
        return x.reshape(n * m, c, t, v)  # (N·M, C, T, V)

    def _check_input(self, x: torch.Tensor) -> None:
        expected = (self.in_channels, self.layout.num_joints)
        if x.dim() != 5 or (x.shape[1], x.shape[3]) != expected:
            raise ValueError(f"STGCN({self.layout.name}) expects (N, {expected[0]}, T, "
                             f"{expected[1]}, M) poses, got shape {tuple(x.shape)}")

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, T, V, M) → the last block's map (N·M, 256, T', V)."""
        self._check_input(x)
        h = self._normalise_input(x)  # (N·M, C, T, V)
        for block in self.blocks:
            h = block(h, self.adjacency)  # (N·M, C_out, T_out, V)
        return h

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        """x: (N, C, T, V, M) → EncoderOutput(feature (N, 256), temporal (N, M, 256, T'))."""
        h = self._trunk(x)  # (N·M, 256, T', V)
        n, m = x.shape[0], x.shape[4]
        temporal = h.mean(dim=3).view(n, m, FEATURE_DIM, -1)  # (N, M, 256, T')
        feature = temporal.mean(dim=3).mean(dim=1)  # (N, 256): mean over (T', V), then M
        return EncoderOutput(feature=feature, temporal=temporal)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, V, M) → the pooled feature (N, 256), without the decoder map."""
        h = self._trunk(x)  # (N·M, 256, T', V)
        n, m = x.shape[0], x.shape[4]
        return h.mean(dim=(2, 3)).view(n, m, FEATURE_DIM).mean(dim=1)  # (N, 256)


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """METHOD.md §3 init: conv/linear weights ~ N(0, 0.02), biases 0; BN γ ~ N(1, 0.02), β 0.

    Edge importances keep their initial ones. Uses the global torch RNG (seed it first).
    """
    for sub in module.modules():
        if isinstance(sub, (nn.Conv1d, nn.Conv2d, nn.Linear, GraphConv)):
            sub.weight.normal_(0.0, 0.02)
            if sub.bias is not None:
                sub.bias.zero_()
        elif isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.weight.normal_(1.0, 0.02)
            sub.bias.zero_()
