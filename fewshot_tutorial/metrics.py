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
