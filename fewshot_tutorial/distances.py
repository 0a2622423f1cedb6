"""Distances and similarities between embeddings, written once for every method.

Pairwise functions compare every query with every support item (or prototype):
``query_z [Q, D], support_z [S, D] -> [Q, S]``. Paired functions compare row ``i`` of
one batch with row ``i`` of another: ``[B, D], [B, D] -> [B]``. All of them compute in
at least float32 with autocast off, so half-precision embeddings from a mixed-precision
forward pass cannot overflow or cancel here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .device import no_autocast, upcast


def check_pairwise(query_z: torch.Tensor, support_z: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``query_z`` is ``[Q, D]`` and ``support_z`` is ``[S, D]``."""
    if query_z.dim() != 2 or support_z.dim() != 2:
        raise ValueError(f"expected query_z [Q, D] and support_z [S, D], got {tuple(query_z.shape)} and "
                         f"{tuple(support_z.shape)}; flatten the embeddings first")
    if query_z.shape[1] != support_z.shape[1]:
        raise ValueError(f"query and support embeddings differ in size: D={query_z.shape[1]} vs "
                         f"{support_z.shape[1]}; embed both with the same network")


def squared_euclidean(query_z: torch.Tensor, support_z: torch.Tensor) -> torch.Tensor:
    """``||q - s||^2`` for every pair: ``[Q, D], [S, D] -> [Q, S]``.

    Computed from the differences, not from ``||q||^2 - 2 q.s + ||s||^2``, which cancels
    badly in low precision. The distance of {eq}`eq-protonet-softmax` and
    {eq}`eq-matching-euclidean`.
    """
    check_pairwise(query_z, support_z)
    with no_autocast(query_z):
        # [Q, 1, D] - [1, S, D] -> [Q, S, D]
        diff = upcast(query_z).unsqueeze(1) - upcast(support_z).unsqueeze(0)
        return diff.pow(2).sum(-1)


def cosine_similarity(
    query_z: torch.Tensor, support_z: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """``cos(q, s)`` for every pair: ``[Q, D], [S, D] -> [Q, S]``, in ``[-1, 1]``.

    Each row is divided by ``max(||z||, eps)``, so a zero vector has similarity 0 with
    everything (finite values and gradients) instead of ``0 / 0``. Implements
    {eq}`eq-matching-cosine`.
    """
    check_pairwise(query_z, support_z)
    with no_autocast(query_z):
        q = F.normalize(upcast(query_z), dim=-1, eps=eps)  # unit rows: [Q, D]
        s = F.normalize(upcast(support_z), dim=-1, eps=eps)  # [S, D]
        return q @ s.T


def cosine_distance(query_z: torch.Tensor, support_z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - cos(q, s)`` for every pair: ``[Q, D], [S, D] -> [Q, S]``, in ``[0, 2]``."""
    return 1.0 - cosine_similarity(query_z, support_z, eps)


def safe_norm(diff: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last dimension, ``[..., D] -> [...]``, with a finite gradient at 0.

    ``sqrt`` has an infinite derivative at 0, so ``diff.pow(2).sum(-1).sqrt()`` back-
    propagates ``inf * 0 = nan`` when ``diff == 0``. Here the square root only ever sees
    positive numbers (the "double where" trick), the value is exact, and the gradient at
    zero is 0 (a valid subgradient of the norm there).
    """
    d2 = diff.pow(2).sum(-1)
    positive = d2 > 0
    safe = torch.where(positive, d2, torch.ones_like(d2))
    return torch.where(positive, safe.sqrt(), torch.zeros_like(d2))


def euclidean_distance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Paired distances ``d_i = ||z1_i - z2_i||``: ``[B, D], [B, D] -> [B]``.

    Implements {eq}`eq-siamese-distance`.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be [B, D], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    return safe_norm(z1 - z2)


def pairwise_euclidean(query_z: torch.Tensor, support_z: torch.Tensor) -> torch.Tensor:
    """``||q - s||`` for every pair: ``[Q, D], [S, D] -> [Q, S]`` (finite gradient at 0)."""
    check_pairwise(query_z, support_z)
    return safe_norm(query_z.unsqueeze(1) - support_z.unsqueeze(0))


def weighted_l1_logit(z1: torch.Tensor, z2: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Koch et al.'s learned similarity as a logit: ``sum_j w_j |z1_j - z2_j| + b``.

    Implements {eq}`eq-siamese-koch`; ``p(same) = sigmoid(logit)``. A negative ``w_j``
    means "a difference in feature ``j`` speaks against same".

    Args:
        z1: ``[..., D]``; z2: ``[..., D]`` (broadcastable); weight: ``[D]``; bias: scalar.

    Returns:
        ``[...]`` logits of "same class".
    """
    if weight.dim() != 1 or weight.shape[0] != z1.shape[-1]:
        raise ValueError(f"weight must be [D] = [{z1.shape[-1]}], got {tuple(weight.shape)}")
    return ((z1 - z2).abs() * weight).sum(-1) + bias
