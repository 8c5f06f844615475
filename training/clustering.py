"""Pure clustering kernels: log-domain Sinkhorn (METHOD.md §7) and spherical k-means (§9).

Both read no globals, take their randomness explicitly and run a bounded number of iterations.
Orientation: samples are rows, ``(N, K)`` for scores and ``(N, D)`` for features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def sinkhorn(logits: torch.Tensor, xi: float = 10.0, n_iter: int = 100, tol: float = 1e-2,
             check_every: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-size soft assignment of N samples to K clusters (METHOD §7, log domain, D15).

    ``logits`` (N, K) are the teacher's cluster scores Z over the whole bank. With
    ``H = xi · log_softmax(Z)`` the scaling vectors ``f`` (N,) and ``g`` (K,) are iterated as in
    §7; ``δ = Σ_n |exp(f_n − f'_n) − 1|`` is evaluated every ``check_every`` iterations (1 = every
    one; the reference code uses 10, at iterations 0, 10, 20, …) and the loop stops once
    ``δ < tol`` or after ``n_iter`` iterations.

    Returns ``Q`` (N, K) = N·exp(H + f + g), whose rows sum to 1 and columns to about N/K, and the
    pseudo-labels ``argmax_k (H + g)`` (N,). Sharply peaked scores cannot underflow; ``K = 1``
    gives Q = 1 and labels 0.
    """
    if logits.dim() != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"sinkhorn needs (N, K) scores with N, K >= 1, got {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ValueError("sinkhorn got non-finite scores (NaN or inf)")
    if n_iter < 1 or check_every < 1:
        raise ValueError(f"n_iter and check_every must be >= 1, got {n_iter} and {check_every}")
    n, k = logits.shape
    log_n, log_k = math.log(n), math.log(k)
    h = xi * torch.log_softmax(logits.float(), dim=1)  # (N, K)
    f = torch.full((n,), -log_n, dtype=h.dtype, device=h.device)  # log sample scaling
    g = torch.zeros(k, dtype=h.dtype, device=h.device)
    for iteration in range(n_iter):
        g = -log_k - torch.logsumexp(h + f[:, None], dim=0)  # (K,) cluster mass 1/K
        f_new = -log_n - torch.logsumexp(h + g[None, :], dim=1)  # (N,) sample mass 1/N
        converged = False
        if iteration % check_every == 0:
            delta = (torch.exp(f - f_new) - 1.0).abs().sum()
            converged = bool(delta < tol)
        f = f_new
        if converged:
            break
    q = n * torch.exp(h + f[:, None] + g[None, :])  # (N, K)
    labels = torch.argmax(h + g[None, :], dim=1)  # (N,)
    return q.to(logits.dtype), labels


def _uniform(generator: torch.Generator | None) -> float:
    """One U[0, 1) draw from ``generator`` (on whatever device it lives)."""
    device = generator.device if generator is not None else "cpu"
    return float(torch.rand((), generator=generator, device=device))


def _kmeans_pp_init(x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k-means++ seeding on unit vectors, distance² = ‖a − b‖² = 2 − 2·cos(a, b)."""
    n = x.shape[0]
    chosen = [min(int(_uniform(generator) * n), n - 1)]
    dist2 = (2.0 - 2.0 * (x @ x[chosen[0]])).clamp_min(0.0)  # (N,)
    for _ in range(1, k):
        total = float(dist2.sum())
        if total <= 0.0:  # every point coincides with a centre: fall back to uniform
            index = min(int(_uniform(generator) * n), n - 1)
        else:
            cumulative = torch.cumsum(dist2, dim=0)
            target = torch.tensor(_uniform(generator) * total, dtype=x.dtype, device=x.device)
            index = min(int(torch.searchsorted(cumulative, target, right=True)), n - 1)
        chosen.append(index)
        dist2 = torch.minimum(dist2, (2.0 - 2.0 * (x @ x[index])).clamp_min(0.0))
    return x[chosen].clone()  # (K, D)


def update_centroids(points: torch.Tensor, labels: torch.Tensor,
                     centroids: torch.Tensor) -> torch.Tensor:
    """One spherical k-means M-step: each centroid (K, D) becomes the normalised mean of its
    members among ``points`` (N, D); a cluster with no members (or members summing to ~0) keeps its
    previous centroid."""
    sums = torch.zeros_like(centroids).index_add_(0, labels, points)  # (K, D)
    norms = sums.norm(dim=1, keepdim=True)  # (K, 1)
    keep_old = norms <= 1e-12
    return torch.where(keep_old, centroids, sums / norms.clamp_min(1e-12))


def _as_generator(seed_or_generator: int | torch.Generator | None) -> torch.Generator | None:
    if isinstance(seed_or_generator, int):
        return torch.Generator().manual_seed(seed_or_generator)
    return seed_or_generator


@torch.no_grad()
def spherical_kmeans(x: torch.Tensor, k: int, generator: int | torch.Generator | None = None,
                     n_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means (METHOD §9): cosine assignment, centroid = normalised member mean.

    ``x`` (N, D) is L2-normalised here. Seeded k-means++ initialisation from ``generator`` (a
    ``torch.Generator`` or an int seed; ``None`` uses the global RNG). An empty cluster keeps its
    previous centroid. Stops when no label changes, or after ``n_iter`` iterations.
    Returns the unit-norm centroids (K, D) and labels (N,) from the last assignment.
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"spherical_kmeans needs (N, D) features with N >= 1, "
                         f"got {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"spherical_kmeans needs 1 <= k <= N = {x.shape[0]}, got k = {k}")
    if not torch.isfinite(x).all():
        raise ValueError("spherical_kmeans got non-finite features (NaN or inf)")
    points = F.normalize(x.float(), dim=1)  # (N, D)
    centroids = _kmeans_pp_init(points, k, _as_generator(generator))  # (K, D)
    labels = torch.argmax(points @ centroids.T, dim=1)  # (N,)
    for _ in range(n_iter):
        centroids = update_centroids(points, labels, centroids)
        new_labels = torch.argmax(points @ centroids.T, dim=1)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return centroids, labels
