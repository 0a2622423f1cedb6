"""Least-recently-used access (LRUA) to an external memory (Santoro et al. 2016, sec. 3), as pure functions.

A memory ``M`` is ``[B, n_slots, W]``: ``n_slots`` rows of width ``W`` per sequence of a
batch. ``R`` read heads each emit a key ``k`` and read a blend of the rows most similar to
it; writes go either to the rows just read (to refine a binding) or to the least used
rows (to store a new one). One time step, in the order the paper applies them:

1. :func:`write_weights` from the previous read weights and least-used weights, {eq}`eq-mann-write-weights`;
2. :func:`zero_least_used` then :func:`write`, {eq}`eq-mann-write`;
3. :func:`read_weights` (softmax of :func:`cosine_similarity`, {eq}`eq-mann-cosine`,
   {eq}`eq-mann-read-weights`) and :func:`read`, {eq}`eq-mann-read`, from the new memory;
4. :func:`update_usage`, {eq}`eq-mann-usage`, and the next step's :func:`least_used_weights`,
   {eq}`eq-mann-least-used`.

Shapes: ``B`` sequences, ``R`` read heads, ``n_slots`` memory rows of width ``W``.
"""

from __future__ import annotations

import torch


def cosine_similarity(keys: torch.Tensor, memory: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``K(k, M(i)) = k . M(i) / (||k|| ||M(i)||)`` for every head and row, {eq}`eq-mann-cosine`.

    Each norm is ``sqrt(||v||^2 + eps)``, so a zero key or a zero row (a freshly erased
    slot) has similarity 0 and a finite gradient instead of 0/0.

    Args:
        keys: ``[B, R, W]``; memory: ``[B, n_slots, W]``.

    Returns:
        ``[B, R, n_slots]``.
    """
    dots = keys @ memory.transpose(1, 2)  # [B, R, n_slots]
    key_norm = (keys.pow(2).sum(-1) + eps).sqrt()  # [B, R]
    row_norm = (memory.pow(2).sum(-1) + eps).sqrt()  # [B, n_slots]
    return dots / (key_norm[:, :, None] * row_norm[:, None, :])


def read_weights(keys: torch.Tensor, memory: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``w_r(i) = softmax_i K(k, M(i))``, {eq}`eq-mann-read-weights`.

    Args:
        keys: ``[B, R, W]``; memory: ``[B, n_slots, W]``.

    Returns:
        ``[B, R, n_slots]``, each row summing to 1.
    """
    return cosine_similarity(keys, memory, eps).softmax(dim=-1)


def read(weights: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """``r = sum_i w_r(i) M(i)``, {eq}`eq-mann-read`.

    Args:
        weights: ``[B, R, n_slots]``; memory: ``[B, n_slots, W]``.

    Returns:
        ``[B, R, W]``, one read vector per head.
    """
    return weights @ memory


def update_usage(prev_usage: torch.Tensor, read_w: torch.Tensor, write_w: torch.Tensor,
                 gamma: float) -> torch.Tensor:
    """``w_u_t = gamma * w_u_{t-1} + w_r_t + w_w_t``, summed over heads, {eq}`eq-mann-usage`.

    Args:
        prev_usage: ``[B, n_slots]``; read_w, write_w: ``[B, R, n_slots]``; gamma: decay in ``[0, 1]``.

    Returns:
        ``[B, n_slots]``.
    """
    return gamma * prev_usage + read_w.sum(1) + write_w.sum(1)


def least_used_weights(usage: torch.Tensor, n_reads: int) -> torch.Tensor:
    """``w_lu(i) = 1`` for the ``n_reads`` least used rows, 0 elsewhere, {eq}`eq-mann-least-used`.

    Ties (e.g. an unused memory) go to the lower index, so exactly ``n_reads`` entries are 1.

    Args:
        usage: ``[B, n_slots]``; n_reads: ``m``, the number of read heads.

    Returns:
        ``[B, n_slots]`` of zeros and ones.
    """
    return least_used_per_head(usage, n_reads).sum(1)


def least_used_per_head(usage: torch.Tensor, n_reads: int) -> torch.Tensor:
    """:func:`least_used_weights` split over the heads: head ``h`` gets the ``h``-th least used row.

    Summing over heads gives :func:`least_used_weights`; with one head they are the same.

    Args:
        usage: ``[B, n_slots]``; n_reads: ``R``.

    Returns:
        ``[B, R, n_slots]``, one-hot rows.
    """
    if not 1 <= n_reads <= usage.shape[-1]:
        raise ValueError(f"n_reads={n_reads} must be between 1 and the {usage.shape[-1]} memory slots")
    order = usage.argsort(dim=-1, stable=True)[:, :n_reads]  # [B, R] least used first
    out = torch.zeros(*order.shape, usage.shape[-1], dtype=usage.dtype, device=usage.device)
    return out.scatter(-1, order[..., None], 1.0)


def write_weights(alpha: torch.Tensor, prev_read_w: torch.Tensor, prev_least_used: torch.Tensor) -> torch.Tensor:
    """``w_w_t = sigmoid(alpha) * w_r_{t-1} + (1 - sigmoid(alpha)) * w_lu_{t-1}``, {eq}`eq-mann-write-weights`.

    Args:
        alpha: ``[B, R]`` the heads' interpolation logits.
        prev_read_w: ``[B, R, n_slots]`` the read weights of the previous step.
        prev_least_used: ``[B, R, n_slots]`` (:func:`least_used_per_head`) or ``[B, n_slots]``
            (:func:`least_used_weights`, the same for every head), from ``w_u_{t-1}``.

    Returns:
        ``[B, R, n_slots]``.
    """
    if prev_least_used.dim() == 2:
        prev_least_used = prev_least_used[:, None, :]
    gate = torch.sigmoid(alpha)[..., None]  # [B, R, 1]
    return gate * prev_read_w + (1 - gate) * prev_least_used


def zero_least_used(memory: torch.Tensor, prev_usage: torch.Tensor) -> torch.Tensor:
    """The memory with its least used row (by ``w_u_{t-1}``, lowest index on ties) set to zero.

    Santoro et al. erase that row before each write, so a new binding is not blended
    with a stale one.

    Args:
        memory: ``[B, n_slots, W]``; prev_usage: ``[B, n_slots]``.

    Returns:
        ``[B, n_slots, W]``.
    """
    keep = 1 - least_used_per_head(prev_usage, 1)[:, 0]  # [B, n_slots]: 0 at the least used row
    return memory * keep[..., None].to(memory.dtype)


def write(memory: torch.Tensor, write_w: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``M_t(i) = M_{t-1}(i) + sum_h w_w^h(i) a^h``, {eq}`eq-mann-write`.

    In the paper the written vector ``a`` is the head's key ``k``; any vector works here.
    Call :func:`zero_least_used` on ``memory`` first, as the paper does.

    Args:
        memory: ``[B, n_slots, W]``; write_w: ``[B, R, n_slots]``; values: ``[B, R, W]``.

    Returns:
        ``[B, n_slots, W]``.
    """
    return memory + write_w.transpose(1, 2) @ values
