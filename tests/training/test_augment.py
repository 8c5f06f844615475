"""Crop, shear and part mask (METHOD.md §10 "Augmentations", §4 "Masking parts")."""

from __future__ import annotations

import pytest
import torch

from codt_deploy.layouts import get_layout
from training.augment import STRONG, WEAK, AugmentPreset, augment, part_mask, shear, temporal_crop


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _frame_coded(n: int, t: int, v: int = 3, m: int = 2) -> torch.Tensor:
    """x[n, c, t, v, m] = t: every value names its frame."""
    frames = torch.arange(t, dtype=torch.float32)[None, None, :, None, None]  # (1, 1, T, 1, 1)
    return frames.expand(n, 3, t, v, m).clone()


def test_presets_are_the_papers():
    assert (WEAK.shear, WEAK.crop_ratio, WEAK.mask_p) == (0.5, 6, 0.0)
    assert (STRONG.shear, STRONG.crop_ratio, STRONG.mask_p) == (1.0, 3, 0.3)
    with pytest.raises(ValueError, match="invalid augmentation preset"):
        AugmentPreset(shear=0.5, crop_ratio=0, mask_p=0.0)


@pytest.mark.parametrize("crop_ratio", [6, 3])
def test_crop_takes_a_window_of_the_mirror_padded_sequence(crop_ratio):
    t = 50
    pad = t // crop_ratio
    frames = list(range(t))
    padded = frames[:pad][::-1] + frames + frames[-pad:][::-1]  # the reference's padding
    windows = {tuple(padded[s:s + t]): s for s in range(2 * pad + 1)}
    out = temporal_crop(_frame_coded(400, t), crop_ratio, _gen())
    starts = set()
    for sample in out:
        sequence = tuple(int(f) for f in sample[0, :, 0, 0])
        assert sequence in windows, sequence
        assert (sample == sample[:1, :, :1, :1]).all()  # same window for all C, V, M
        starts.add(windows[sequence])
    assert starts == set(range(2 * pad + 1))  # every start in {0..2·pad} occurs


def test_crop_without_padding_is_identity():
    x = torch.randn(2, 3, 4, 3, 2)
    torch.testing.assert_close(temporal_crop(x, 6, _gen()), x)  # 4 // 6 == 0


def test_shear_matrix_has_unit_diagonal_and_bounded_off_diagonal():
    beta = 0.5
    n = 64
    # Input = the basis vector e_j at joint j (channels 0..2), so output column j is matrix[:, j].
    x = torch.zeros(n, 3, 1, 3, 1)
    for j in range(3):
        x[:, j, 0, j, 0] = 1.0
    out = shear(x, beta, _gen())
    matrices = out[:, :, 0, :, 0]  # (N, 3 rows, 3 columns)
    diagonal = torch.diagonal(matrices, dim1=1, dim2=2)
    torch.testing.assert_close(diagonal, torch.ones(n, 3))
    off = matrices[:, ~torch.eye(3, dtype=torch.bool)]
    assert off.abs().max() < beta and off.abs().max() > 0.4 * beta
    assert len({tuple(m.flatten().tolist()) for m in matrices}) == n  # one matrix per sample


def test_shear_is_linear_and_shared_by_all_frames_joints_persons():
    a, b = torch.randn(4, 3, 5, 6, 2), torch.randn(4, 3, 5, 6, 2)
    torch.testing.assert_close(shear(a + b, 1.0, _gen(3)),
                               shear(a, 1.0, _gen(3)) + shear(b, 1.0, _gen(3)),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shear(a, 0.0, _gen()), a)


def test_part_mask_overlapping_joint_is_zeroed_if_either_part_is():
    parts = ((0, 1), (1, 2))  # joint 1 is in both parts; joint 3 in none
    x = torch.ones(200, 3, 10, 4, 2)
    out = part_mask(x, parts, 0.5, _gen())
    zero = out[:, 0] == 0  # (N, T, V, M)
    assert (out == out[:, :1]).all()  # one decision per (n, t, v, m) for all channels
    assert torch.equal(zero[:, :, 1], zero[:, :, 0] | zero[:, :, 2])
    assert not zero[:, :, 3].any()
    # Independent per sample, frame and person: the part-0 decisions vary along each axis.
    part0 = zero[:, :, 0]  # (N, T, M)
    assert (part0[1:] != part0[:-1]).any() and (part0[:, 1:] != part0[:, :-1]).any()
    assert (part0[..., 0] != part0[..., 1]).any()
    # Part 0 masked with probability 0.5 (4000 draws: 4 sigma is 0.032).
    assert abs(part0.float().mean().item() - 0.5) < 0.032


def test_part_mask_rate_and_never_masked_joints_on_body25():
    parts = get_layout("body25").parts
    x = torch.randn(100, 3, 20, 25, 2)
    out = part_mask(x, parts, 0.3, _gen())
    torch.testing.assert_close(out[:, :, :, 19:], x[:, :, :, 19:])  # feet are in no part
    hand_only = [3, 4]  # in part 0 only: masked with probability p
    rate = (out[:, 0, :, hand_only] == 0).float().mean().item()
    assert abs(rate - 0.3) < 0.03  # 4000 draws: 4 sigma is 0.029
    neck_rate = (out[:, 0, :, 1] == 0).float().mean().item()  # in parts 0 and 1
    assert abs(neck_rate - (1 - 0.7 ** 2)) < 0.03
    all_masked = part_mask(x, parts, 1.0, _gen())
    assert torch.equal(all_masked[:, :, :, :19], torch.zeros_like(x[:, :, :, :19]))
    torch.testing.assert_close(part_mask(x, parts, 0.0, _gen()), x)


def test_part_mask_rejects_a_joint_outside_the_layout():
    with pytest.raises(ValueError, match="outside"):
        part_mask(torch.ones(1, 3, 2, 4, 1), ((0, 4),), 0.5, _gen())


def test_augment_is_deterministic_per_generator_and_leaves_input_alone():
    parts = get_layout("ntu25").parts
    x = torch.randn(4, 3, 50, 25, 2)
    before = x.clone()
    first = augment(x, STRONG, parts, _gen(7))
    torch.testing.assert_close(augment(x, STRONG, parts, _gen(7)), first, rtol=0, atol=0)
    assert not torch.equal(augment(x, STRONG, parts, _gen(8)), first)
    assert first.shape == x.shape
    torch.testing.assert_close(x, before, rtol=0, atol=0)


def test_weak_never_masks_and_strong_does():
    parts = get_layout("ntu25").parts
    x = torch.randn(8, 3, 50, 25, 2).abs() + 1.0  # no coordinate is zero to begin with
    weak = augment(x, WEAK, parts, _gen())
    strong = augment(x, STRONG, parts, _gen())
    zero_joints = lambda y: (y == 0).all(dim=1)  # noqa: E731  (N, T, V, M)
    assert not zero_joints(weak).any()
    assert 0.2 < zero_joints(strong).float().mean().item() < 0.5
