"""CoDT losses (METHOD.md §6, §8): hand-computed cases, finiteness, gradient paths."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import (
    ccm_loss,
    contrastive_loss,
    ocm_loss,
    reconstruction_loss,
    reconstruction_target,
    supervised_loss,
)


def _close(value: torch.Tensor, expected: float) -> None:
    assert value.dim() == 0 and torch.isfinite(value)
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_supervised_and_ocm_are_mean_cross_entropy():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([0, 0])
    expected = (math.log(2.0) + math.log(4.0 / 3.0)) / 2  # -log(1/2), -log(3/4)
    _close(supervised_loss(logits, labels), expected)
    _close(ocm_loss(logits, labels), expected)


def test_reconstruction_target_by_hand():
    # N=1, C=2, T=4, V=2, M=1 with x[c, t, v] = 100c + 10v + t; pooling 4 → 2 steps.
    c, t, v = torch.meshgrid(torch.arange(2), torch.arange(4), torch.arange(2), indexing="ij")
    x = (100 * c + 10 * v + t).float()[None, ..., None]  # (1, 2, 4, 2, 1)
    target = reconstruction_target(x, steps=2)
    assert target.shape == (1, 1, 2, 4)  # (N, M, steps, V·C)
    expected = torch.tensor([[0.5, 100.5, 10.5, 110.5],  # ordered (V, C): v0c0 v0c1 v1c0 v1c1
                             [2.5, 102.5, 12.5, 112.5]])
    torch.testing.assert_close(target[0, 0], expected)


def test_reconstruction_target_matches_the_reference_pooling():
    x = torch.randn(2, 3, 50, 5, 2)
    target = reconstruction_target(x, steps=13)
    pooled = F.adaptive_avg_pool3d(x, (13, 5, 2))  # (N, C, 13, V, M), the reference's call
    reference = pooled.permute(0, 4, 2, 3, 1).reshape(2, 2, 13, 5 * 3)  # (N, M, 13, V·C)
    torch.testing.assert_close(target, reference)


def test_reconstruction_loss_is_elementwise_mse():
    prediction = torch.zeros(2, 2, 3, 4, requires_grad=True)
    target = torch.ones(2, 2, 3, 4)
    target[0] = 3.0
    _close(reconstruction_loss(prediction, target), (9 + 1) / 2)
    with pytest.raises(ValueError, match="reconstruction_target"):
        reconstruction_loss(prediction, torch.ones(2, 2, 4, 4))


def test_contrastive_loss_by_hand_and_own_slot_excluded():
    tau = 0.07
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    q = e1[None].clone().requires_grad_(True)
    k = e1[None]
    bank = torch.stack([e1, e2, -e1])  # slot 0 is the sample itself
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 1.0 + math.exp(-1 / tau)))
    loss = contrastive_loss(q, k, bank, torch.tensor([0]), tau=tau)
    _close(loss, expected)
    # Whatever the own slot holds does not matter.
    other = torch.stack([-e2, e2, -e1])
    _close(contrastive_loss(q, k, other, torch.tensor([0]), tau=tau), expected)
    # Without the exclusion slot 0 would be a (hard) negative.
    assert contrastive_loss(q, k, bank, torch.tensor([1]), tau=tau).item() > expected


def test_contrastive_gradient_reaches_the_query_only():
    generator = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(4, 8, generator=generator), dim=1).requires_grad_(True)
    k = F.normalize(torch.randn(4, 8, generator=generator), dim=1).requires_grad_(True)
    bank = F.normalize(torch.randn(10, 8, generator=generator), dim=1).requires_grad_(True)
    loss = contrastive_loss(q, k, bank, torch.tensor([0, 3, 4, 9]))
    assert torch.isfinite(loss)
    loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and bank.grad is None


def _ccm_by_loops(p0, p1, y0, y1):
    """L_ccm written as the double sum of METHOD §8."""
    n = p0.shape[0]

    def direction(relation_labels, prob):
        total = 0.0
        for i in range(n):
            pair = [min(max(float(prob[i] @ prob[j]), 1e-8), 1 - 1e-8) for j in range(n)]
            row = sum(pair)
            same = [j for j in range(n) if relation_labels[i] == relation_labels[j]]
            total += sum(math.log(pair[j] / row) for j in same) / len(same)
        return -total / n

    return direction(y0, p1) + direction(y1, p0)


def test_ccm_by_hand():
    prob_0 = torch.full((2, 2), 0.5)
    prob_1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # G_0 = I with P̄_1 = 1/2 everywhere; G_1 = all ones with P̄_0 = 1/2 everywhere.
    _close(ccm_loss(prob_0, prob_1, torch.tensor([0, 1]), torch.tensor([0, 0])), 2 * math.log(2))


def test_ccm_matches_the_double_sum_and_is_symmetric():
    generator = torch.Generator().manual_seed(1)
    p0 = torch.softmax(torch.randn(6, 4, generator=generator) * 2, dim=1)
    p1 = torch.softmax(torch.randn(6, 4, generator=generator) * 2, dim=1)
    y0 = torch.tensor([0, 0, 1, 2, 2, 3])
    y1 = torch.tensor([1, 1, 1, 0, 3, 3])
    loss = ccm_loss(p0, p1, y0, y1)
    _close(loss, _ccm_by_loops(p0, p1, y0, y1))
    _close(ccm_loss(p1, p0, y1, y0), loss.item())


def test_ccm_gradients_flow_through_both_branches_and_both_sides_of_each_pair():
    generator = torch.Generator().manual_seed(2)
    logits_0 = torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    logits_1 = torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    y0, y1 = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([2, 1, 1, 0, 0])
    ccm_loss(logits_0.softmax(1), logits_1.softmax(1), y0, y1).backward()
    assert logits_0.grad.abs().sum(dim=1).min() > 0 and logits_1.grad.abs().sum(dim=1).min() > 0
    # The analytic gradient equals the numerical one, which it would not if either p_i or p_j
    # were detached.
    assert torch.autograd.gradcheck(
        lambda a, b: ccm_loss(a.softmax(1), b.softmax(1), y0, y1), (logits_0, logits_1))


def test_ccm_with_rho_is_a_finite_different_loss():
    generator = torch.Generator().manual_seed(3)
    p0 = torch.softmax(torch.randn(4, 3, generator=generator), dim=1)
    p1 = torch.softmax(torch.randn(4, 3, generator=generator), dim=1)
    y = torch.tensor([0, 1, 1, 2])
    plain, tempered = ccm_loss(p0, p1, y, y), ccm_loss(p0, p1, y, y, rho=7.0)
    assert torch.isfinite(tempered) and abs(plain.item() - tempered.item()) > 1e-3
    with pytest.raises(ValueError, match="one batch"):
        ccm_loss(p0, p1[:3], y, y)


def test_all_losses_finite_on_extreme_inputs():
    confident = torch.tensor([[50.0, -50.0], [-50.0, 50.0]])
    prob = confident.softmax(1)  # exact 0 and 1 entries: the clamp keeps the log finite
    labels = torch.tensor([0, 0])
    assert torch.isfinite(ccm_loss(prob, prob, labels, torch.tensor([0, 1])))
    assert torch.isfinite(ocm_loss(confident, torch.tensor([1, 0])))
