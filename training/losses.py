"""CoDT's losses, one function each, every one a scalar mean (METHOD.md §6, §8).

The training step combines them as L_base = 1·L_sup + 20·L_dec + 1·L_cont (stage 1) and
L_all = L_base + 5·L_ocm + 10·L_ccm (stage 2), with L_dec = reconstruction_loss(source) +
reconstruction_loss(target) and L_ocm = ocm_loss(B0) + ocm_loss(B1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CCM_CLAMP = 1e-8


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_sup (§6): mean cross-entropy of C_0^s(F_0(x^s)) (n, #src) against labels (n,)."""
    return F.cross_entropy(logits, labels)


def reconstruction_target(x: torch.Tensor, steps: int) -> torch.Tensor:
    """x̄ (§6 L_dec): the *unmasked* input (N, C, T, V, M) average-pooled over time to ``steps``.

    Adaptive average pooling (the decoder's T' = 13 for T = 50), per person, all V·C coordinates,
    returned as (N, M, steps, V·C) with coordinates ordered (V, C), matching the decoder output.
    """
    n, c, t, v, m = x.shape
    per_coordinate = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)  # (N, M·V·C, T)
    pooled = F.adaptive_avg_pool1d(per_coordinate, steps)  # (N, M·V·C, steps)
    return pooled.view(n, m, v * c, steps).transpose(2, 3)  # (N, M, steps, V·C)


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One term of L_dec (§6): MSE, the mean over all elements of D_0's output vs x̄."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target "
                         f"{tuple(target.shape)} differ; build the target with "
                         f"reconstruction_target(x, steps=reconstruction.shape[2])")
    return F.mse_loss(reconstruction, target.detach())


def contrastive_loss(q: torch.Tensor, k: torch.Tensor, bank_keys: torch.Tensor,
                     own_ids: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """L_cont (§6, D14): InfoNCE of query q_i (n, D) against its key k_i (n, D).

    Negatives are every bank slot j ≠ own_ids[i]: ``bank_keys`` (S, D) are the re-projected,
    normalised teacher bank features norm(W_k m_j). q, k and bank_keys are expected L2-normalised;
    gradients flow into q only (keys are teacher outputs).
    """
    positive = torch.einsum("nd,nd->n", q, k.detach())[:, None]  # (n, 1)
    negative = q @ bank_keys.detach().T  # (n, S)
    own = F.one_hot(own_ids, bank_keys.shape[0]).bool()  # (n, S)
    negative = negative.masked_fill(own, float("-inf"))
    logits = torch.cat([positive, negative], dim=1) / tau  # (n, 1 + S)
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


def ocm_loss(logits: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
    """One branch's term of L_ocm (§6, §7): CE of the *student's* C_b^t logits (n, K) against the
    Sinkhorn pseudo-labels ŷ_b (n,)."""
    return F.cross_entropy(logits, pseudo_labels)


def _pairwise_probability(prob: torch.Tensor, rho: float | None) -> torch.Tensor:
    """P̄_ij (§8): row-normalised clamp(p_iᵀp_j); with ``rho`` softmax_j(ρ·p_iᵀp_j) (D8)."""
    similarity = prob @ prob.T  # (n, n) P_ij, gradients through p_i and p_j
    if rho is not None:
        return torch.softmax(rho * similarity, dim=1)
    similarity = similarity.clamp(CCM_CLAMP, 1.0 - CCM_CLAMP)
    return similarity / similarity.sum(dim=1, keepdim=True)


def _relation_cross_entropy(same_cluster: torch.Tensor, pairwise: torch.Tensor) -> torch.Tensor:
    """−(1/n) Σ_i Σ_j G_ij log P̄_ij / Σ_j G_ij, for a 0/1 relation G (n, n) with G_ii = 1."""
    weights = same_cluster.float()
    per_sample = (weights * pairwise.log()).sum(dim=1) / weights.sum(dim=1)  # (n,)
    return -per_sample.mean()


def ccm_loss(prob_0: torch.Tensor, prob_1: torch.Tensor, labels_0: torch.Tensor,
             labels_1: torch.Tensor, rho: float | None = None) -> torch.Tensor:
    """L_ccm (§8): each branch's pairwise probabilities learn the other's pseudo-label relation.

    ``prob_b`` (n, K): softmax of the student logits C_b^t(F_b(A(x))); ``labels_b`` (n,): the
    Sinkhorn pseudo-labels ŷ_b. G_b,ij = [ŷ_b,i = ŷ_b,j]; both directions are summed.
    ``rho`` = None is the reference formula (clamp to [1e-8, 1−1e-8], row-normalise); a number
    switches to the optional temperature form of D8.
    """
    if prob_0.shape[0] != prob_1.shape[0] or labels_0.shape != labels_1.shape:
        raise ValueError(f"ccm_loss needs one batch for both branches, got {tuple(prob_0.shape)}, "
                         f"{tuple(prob_1.shape)}, {tuple(labels_0.shape)}, {tuple(labels_1.shape)}")
    relation_0 = labels_0[:, None] == labels_0[None, :]  # (n, n) G_0
    relation_1 = labels_1[:, None] == labels_1[None, :]  # (n, n) G_1
    return (_relation_cross_entropy(relation_0, _pairwise_probability(prob_1, rho))
            + _relation_cross_entropy(relation_1, _pairwise_probability(prob_0, rho)))
