"""Batched pose augmentations: crop, shear, part mask (METHOD.md §10 "Augmentations", D3–D6).

Every function takes a batch ``(N, C, T, V, M)`` on any device and an explicit ``torch.Generator``
(on any device: random numbers are drawn on the generator's device, then moved to the batch's).
Each sample gets its own random draw; the result is a new tensor, the input is left untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentPreset:
    """shear β, crop ratio γ (pad T//γ frames at each end), part-mask probability p."""

    shear: float
    crop_ratio: int
    mask_p: float

    def __post_init__(self) -> None:
        if self.shear < 0 or self.crop_ratio < 1 or not 0.0 <= self.mask_p <= 1.0:
            raise ValueError(f"invalid augmentation preset {self}: need shear >= 0, "
                             f"crop_ratio >= 1 and 0 <= mask_p <= 1")


WEAK = AugmentPreset(shear=0.5, crop_ratio=6, mask_p=0.0)
STRONG = AugmentPreset(shear=1.0, crop_ratio=3, mask_p=0.3)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None,
          like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) of ``shape`` drawn on the generator's device, returned on ``like``'s device."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=device).to(like.device)


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 5:
        raise ValueError(f"augmentations expect a batch (N, C, T, V, M), "
                         f"got shape {tuple(x.shape)}")


def temporal_crop(x: torch.Tensor, crop_ratio: int,
                  generator: torch.Generator | None) -> torch.Tensor:
    """Pad T//γ mirrored frames at each end, then take a T-frame window per sample (§10 step 1).

    The padding is the first (last) T//γ frames in reverse order; the window starts uniformly in
    {0, …, 2·(T//γ)}. All persons of a sample share the window.
    """
    _check_batch(x)
    n, c, t, v, m = x.shape
    pad = t // crop_ratio
    if pad == 0:
        return x.clone()
    start = (_rand((n,), generator, x) * (2 * pad + 1)).long().clamp_max(2 * pad)  # (N,)
    padded = start[:, None] + torch.arange(t, device=x.device)[None, :]  # (N, T) in padded frames
    frame = padded - pad  # (N, T) in original frames, -pad .. T-1+pad
    frame = torch.where(frame < 0, -1 - frame, frame)  # mirrored head: -1 → 0, -2 → 1, …
    frame = torch.where(frame >= t, 2 * t - 1 - frame, frame)  # mirrored tail: T → T-1, …
    index = frame[:, None, :, None, None].expand(n, c, t, v, m)  # (N, C, T, V, M)
    return torch.gather(x, 2, index)


def shear(x: torch.Tensor, beta: float, generator: torch.Generator | None) -> torch.Tensor:
    """Per sample, apply a C×C matrix with ones on the diagonal and U(−β, β) elsewhere to each
    joint's coordinate vector (§10 step 2; C = 3 gives the paper's 6 off-diagonal entries)."""
    _check_batch(x)
    n, c = x.shape[:2]
    off_diagonal = (_rand((n, c, c), generator, x) * 2.0 - 1.0) * beta  # (N, C, C)
    eye = torch.eye(c, dtype=torch.bool, device=x.device)
    matrix = torch.where(eye, torch.ones_like(off_diagonal), off_diagonal).to(x.dtype)
    return torch.einsum("nij,njtvm->nitvm", matrix, x)  # (N, C, T, V, M)


def part_membership(parts: Sequence[Sequence[int]], num_joints: int,
                    device: torch.device | None = None) -> torch.Tensor:
    """(P, V) float 0/1 matrix: row p marks the joints of part p."""
    membership = torch.zeros(len(parts), num_joints, device=device)
    for p, joints in enumerate(parts):
        if any(not 0 <= j < num_joints for j in joints):
            raise ValueError(f"part {p} {tuple(joints)} names a joint outside 0..{num_joints - 1}")
        membership[p, list(joints)] = 1.0
    return membership


def part_mask(x: torch.Tensor, parts: Sequence[Sequence[int]], p: float,
              generator: torch.Generator | None) -> torch.Tensor:
    """Zero each part with probability ``p``, independently per sample, frame and person (§10 step
    3). A joint in two parts is zeroed if either is masked; a joint in no part is never masked."""
    _check_batch(x)
    if p <= 0.0 or not parts:
        return x.clone()
    n, c, t, v, m = x.shape
    membership = part_membership(parts, v, x.device)  # (P, V)
    masked = (_rand((n, t, len(parts), m), generator, x) < p).to(x.dtype)  # (N, T, P, M)
    hits = torch.einsum("ntpm,pv->ntvm", masked, membership.to(x.dtype))  # (N, T, V, M)
    keep = (hits == 0).to(x.dtype)[:, None]  # (N, 1, T, V, M)
    return x * keep


def augment(x: torch.Tensor, preset: AugmentPreset, parts: Sequence[Sequence[int]],
            generator: torch.Generator | None) -> torch.Tensor:
    """Crop → shear → part mask (§10), with a preset's parameters (``WEAK`` or ``STRONG``)."""
    x = temporal_crop(x, preset.crop_ratio, generator)
    x = shear(x, preset.shear, generator)
    if preset.mask_p > 0:
        x = part_mask(x, parts, preset.mask_p, generator)
    return x
