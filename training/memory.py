"""Per-sample memory bank of teacher features (METHOD.md §5 "Memory banks", D13, D14).

One slot per target training sample, indexed by sample id (not a FIFO queue): slot ``i`` holds the
latest *pre-projection* teacher feature of sample ``i`` and is overwritten whenever ``i`` is in a
batch. The bank is an ``nn.Module`` so its buffers follow ``.to(device)`` and ``state_dict()``.

DDP: every rank must write the whole global batch. Set ``bank.gather`` to a callable
``(ids, feats) -> (all_ids, all_feats)`` (e.g. an ``all_gather`` over the process group); ``write``
calls it before writing. ``None`` (the default) writes the local batch only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

GatherFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class MemoryBank(nn.Module):
    """``num_samples`` slots of ``dim`` features: buffers ``features`` (S, D), ``filled`` (S,)."""

    features: torch.Tensor  # registered buffers (declared for the type checker)
    filled: torch.Tensor

    def __init__(self, num_samples: int, dim: int, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if num_samples < 1 or dim < 1:
            raise ValueError(f"a memory bank needs num_samples >= 1 and dim >= 1, "
                             f"got {num_samples} and {dim}")
        self.register_buffer("features", torch.zeros(num_samples, dim, dtype=dtype))
        self.register_buffer("filled", torch.zeros(num_samples, dtype=torch.bool))
        self.gather: GatherFn | None = None

    @property
    def num_samples(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @property
    def num_filled(self) -> int:
        return int(self.filled.sum())

    @property
    def is_full(self) -> bool:
        return bool(self.filled.all())

    @torch.no_grad()
    def randomize_(self, generator: torch.Generator | None = None) -> None:
        """Fill with N(0, 1) noise, slots stay unfilled: the reference code's start (D13 switch)."""
        noise = torch.randn(self.features.shape, generator=generator,
                            device=generator.device if generator is not None else "cpu")
        self.features.copy_(noise)

    @torch.no_grad()
    def write(self, ids: torch.Tensor, feats: torch.Tensor) -> None:
        """Overwrite slots ``ids`` (n,) with ``feats`` (n, D), after the DDP gather if one is set.

        When an id repeats within one write, one of its rows wins (unspecified which).
        """
        if self.gather is not None:
            ids, feats = self.gather(ids, feats)
        self._check(ids, feats)
        ids = ids.to(self.features.device)
        self.features[ids] = feats.detach().to(self.features.device, self.features.dtype)
        self.filled[ids] = True

    def read(self, *, allow_partial: bool = False) -> torch.Tensor:
        """The (S, D) features. Raises RuntimeError while slots are unfilled, unless allowed."""
        if not allow_partial and not self.is_full:
            raise RuntimeError(f"memory bank has {self.num_samples - self.num_filled} of "
                               f"{self.num_samples} slots never written; fill it with one teacher "
                               f"pass over the target set first (METHOD D13)")
        return self.features

    def _check(self, ids: torch.Tensor, feats: torch.Tensor) -> None:
        if ids.dim() != 1 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"ids must be a 1-D integer tensor, "
                             f"got {ids.dtype} {tuple(ids.shape)}")
        if feats.shape != (ids.shape[0], self.dim):
            raise ValueError(f"features must be ({ids.shape[0]}, {self.dim}), "
                             f"got {tuple(feats.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_samples):
            raise ValueError(f"ids must lie in [0, {self.num_samples}), got range "
                             f"[{int(ids.min())}, {int(ids.max())}]")
