"""Accuracy of logits, written once (with the meta-device guard)."""

from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float | None:
    """Fraction of rows whose highest logit is their label (``None`` on the meta device).

    Args:
        logits: ``[Q, n_way]``; y: ``[Q]`` labels.
    """
    if logits.device.type == "meta":
        return None
    return (logits.detach().argmax(dim=-1) == y).float().mean().item()


def with_accuracy(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """``(loss, {"accuracy": ...})`` for a method's ``loss`` (no metrics on the meta device)."""
    acc = accuracy(logits, y)
    return loss, ({} if acc is None else {"accuracy": acc})


def angular_spread(z: torch.Tensor) -> tuple[float, float]:
    """How tightly each class's embeddings point in one direction, against how far apart the classes point.

    ``z [C, K, D]`` holds ``K`` embeddings of each of ``C`` classes. Returns
    ``(within, between)``: ``within`` is the mean of ``1 - cos(z_ck, mu_c)`` over all
    embeddings (``mu_c`` the class mean), ``between`` the mean of ``1 - cos(mu_c, mu_c')``
    over all pairs of distinct classes. Their ratio is a scale-free measure of
    intra-class variation in angle, the quantity a cosine classifier sees
    (Chen et al. 2019, section 3.2).
    """
    if z.dim() != 3 or z.shape[0] < 2:
        raise ValueError(f"z must be [C, K, D] with C >= 2 classes, got shape {tuple(z.shape)}")
    z = torch.nn.functional.normalize(z.double(), dim=-1)
    mu = torch.nn.functional.normalize(z.mean(1), dim=-1)  # [C, D]
    within = (1 - (z * mu[:, None]).sum(-1)).mean()
    cos = mu @ mu.T
    c = len(mu)
    between = (1 - cos)[~torch.eye(c, dtype=torch.bool)].mean()
    return float(within), float(between)
