"""Losses on pairs and on classified queries.

* pairs ``(x1, x2)`` with ``same = 1`` for the same character, ``0`` otherwise: the
  contrastive loss of Hadsell, Chopra and LeCun (2006) and Koch et al.'s (2015) binary
  cross-entropy on a learned similarity;
* queries: the cross-entropy of logits, upcast from half precision first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .device import upcast
from .distances import euclidean_distance


def check_same(z1: torch.Tensor, same: torch.Tensor, name: str = "same") -> torch.Tensor:
    """``same`` as ``z1``'s dtype, after checking it is ``[B]`` and holds only 0 and 1."""
    if same.dim() != 1 or same.shape[0] != z1.shape[0]:
        raise ValueError(f"{name} must be [B] = [{z1.shape[0]}] (one label a pair), got {tuple(same.shape)}")
    if not same.is_meta and bool(((same != 0) & (same != 1)).any()):
        raise ValueError(f"{name} must hold only 0 and 1 (or False/True), got {same.unique().tolist()}")
    return same.to(z1.dtype)


def check_margin(margin: float) -> None:
    """Raise ``ValueError`` unless the contrastive margin is positive."""
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}; try margin=1.0")


def contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    same: torch.Tensor,
    margin: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """``same * d^2 + (1 - same) * max(0, margin - d)^2``, ``d = ||z1 - z2||``.

    Implements {eq}`eq-siamese-contrastive`. Finite (value and gradient) also when
    ``z1 == z2``; ``d^2`` is computed without a square root.

    Args:
        z1, z2: ``[B, D]`` embeddings of the two images of each pair.
        same: ``[B]`` 1 (or True) for same-class pairs, 0 for different-class pairs.
        margin: ``m > 0``; different pairs farther apart than ``m`` cost nothing.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (``[B]`` per-pair losses).
    """
    check_margin(margin)
    z1, z2 = upcast(z1), upcast(z2)
    d = euclidean_distance(z1, z2)
    y = check_same(z1, same)
    per_pair = y * (z1 - z2).pow(2).sum(-1) + (1 - y) * F.relu(margin - d).pow(2)
    if reduction == "none":
        return per_pair
    if reduction == "mean":
        return per_pair.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def contrastive_loss_hadsell(z1: torch.Tensor, z2: torch.Tensor, different: torch.Tensor,
                             margin: float = 1.0) -> torch.Tensor:
    """The same loss in Hadsell et al.'s convention, ``different = 1`` for dissimilar pairs.

    Implements {eq}`eq-siamese-contrastive-flipped`,
    ``(1 - y) * d^2 + y * max(0, margin - d)^2`` with ``y = different`` (without their
    factor 1/2): the mean of ``contrastive_loss(z1, z2, 1 - different, margin)``.
    """
    check_same(z1, different, "different")
    return contrastive_loss(z1, z2, 1 - different.to(z1.dtype), margin)


def contrastive_grad_z1(z1: torch.Tensor, z2: torch.Tensor, same: torch.Tensor,
                        margin: float = 1.0) -> torch.Tensor:
    """The gradient of the mean contrastive loss with respect to ``z1``, derived by hand.

    Implements {eq}`eq-siamese-grad`: a same pair pulls ``z1`` towards ``z2`` with
    ``2 (z1 - z2)``; a different pair inside the margin pushes it away with
    ``-2 (m - d) (z1 - z2) / d``; beyond the margin nothing. Each row is divided by
    ``B`` (the mean). At ``d = 0`` the push has no direction: 0, as in ``safe_norm``.

    Returns:
        ``[B, D]``, equal to ``autograd.grad(contrastive_loss(z1, z2, same, margin), z1)``.
    """
    d = euclidean_distance(z1, z2).unsqueeze(-1)  # [B, 1]
    y = check_same(z1, same).unsqueeze(-1)
    diff = z1 - z2
    safe_d = torch.where(d > 0, d, torch.ones_like(d))  # no 0 / 0 where z1 == z2
    unit = torch.where(d > 0, diff / safe_d, torch.zeros_like(diff))
    push = -2 * (margin - d).clamp(min=0) * unit
    return (y * 2 * diff + (1 - y) * push) / z1.shape[0]


def koch_loss(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``sigmoid(logits)`` against ``same``: ``[B], [B] -> []``.

    Implements {eq}`eq-siamese-bce` (on logits, so it never saturates to ``log 0``).
    """
    logits = upcast(logits)
    y = check_same(logits.unsqueeze(-1), same)
    return F.binary_cross_entropy_with_logits(logits, y)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits [Q, n_way]`` against labels ``y [Q]``, in float32 at least."""
    return F.cross_entropy(upcast(logits), y)
