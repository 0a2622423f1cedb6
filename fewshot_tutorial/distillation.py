"""Knowledge distillation (Hinton, Vinyals and Dean 2015): a student learns from a teacher's soft targets.

The teacher's softmax at temperature ``T``, ``softmax(z_t / T)``, says how much each
wrong class resembles the right one ("dark knowledge"); the student matches it and the
true labels:

``L = soft_weight T^2 KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - soft_weight) CE(z_s, y)``, {eq}`eq-kd-loss`.

The ``T^2`` keeps the soft term's gradient of the same size at every temperature,
{eq}`eq-kd-grad`; for large ``T`` that gradient tends to ``(z_s - z_t) / (N T^2)`` per
example (zero-mean logits, ``N`` classes), so distillation becomes matching logits,
{eq}`eq-kd-high-t`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .device import upcast


def check_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, soft_weight: float) -> None:
    """Raise ``ValueError`` unless the logits are both ``[B, N]``, ``T > 0`` and ``0 <= soft_weight <= 1``."""
    if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must both be [B, N], got {tuple(student_logits.shape)} and "
                         f"{tuple(teacher_logits.shape)}; the student needs one output per teacher class")
    if not temperature > 0:
        raise ValueError(f"the temperature T must be > 0, got {temperature}; T = 1 is the plain softmax")
    if not 0 <= soft_weight <= 1:
        raise ValueError(f"soft_weight must be in [0, 1] (the weight of the soft targets), got {soft_weight}")


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(z_t / T) || softmax(z_s / T))`` averaged over the batch: ``[B, N], [B, N] -> []``.

    Without the ``T^2`` of {eq}`eq-kd-loss`: its gradient wrt ``z_s`` is
    ``(softmax(z_s / T) - softmax(z_t / T)) / (B T)``.
    """
    log_p_s = F.log_softmax(upcast(student_logits) / temperature, dim=-1)
    log_p_t = F.log_softmax(upcast(teacher_logits) / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
    temperature: float = 4.0, soft_weight: float = 0.9,
) -> torch.Tensor:
    """Hinton et al.'s distillation loss, {eq}`eq-kd-loss`: ``[B, N], [B, N], [B] -> []``.

    ``soft_weight T^2 KL(p_t^T || p_s^T) + (1 - soft_weight) CE(z_s, y)`` with ``p^T = softmax(z / T)``,
    the KL averaged over the batch and the cross-entropy at ``T = 1``. Pass the teacher's
    logits detached (or computed under ``no_grad``): the teacher is not trained.

    Args:
        student_logits: ``[B, N]``; teacher_logits: ``[B, N]``; targets: ``[B]`` labels ``0..N-1``.
        temperature: ``T > 0``; soft_weight: weight of the soft term in ``[0, 1]``.
    """
    check_kd(student_logits, teacher_logits, temperature, soft_weight)
    soft = soft_target_kl(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(upcast(student_logits), targets)
    return soft_weight * temperature**2 * soft + (1 - soft_weight) * hard
