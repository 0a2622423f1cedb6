"""From items to classes: one-hot labels, class means and per-class scores.

Every method that turns per-support-item quantities into per-class ones goes through
:func:`one_hot`: the prototype of a class is a mean over its rows
({eq}`eq-protonet-prototype`), a Siamese class score is a mean over its columns
({eq}`eq-siamese-predict`), a matching-network class probability is a sum of
attention weights ({eq}`eq-matching-prediction`).
"""

from __future__ import annotations

import torch

from .device import no_autocast, upcast


def check_labels(y: torch.Tensor, n_way: int, name: str = "support_y", every_class: bool = True) -> None:
    """Raise ``ValueError`` unless ``y`` is ``[S]`` integer labels in ``0..n_way-1``.

    With ``every_class`` (the default) each class must also appear at least once: a
    class without support items has no mean, no score and no probability.
    """
    if y.dim() != 1:
        raise ValueError(f"{name} must be [S] labels, got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}; use y.long()")
    if y.is_meta or len(y) == 0:
        if len(y) == 0:
            raise ValueError(f"{name} is empty: give at least one support item per class")
        return  # no values to check on the meta device
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_way:
        raise ValueError(f"{name} must lie in 0..{n_way - 1} (n_way={n_way}); got {lo}..{hi}")
    if every_class:
        counts = torch.bincount(y, minlength=n_way)
        if bool((counts == 0).any()):
            missing = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(f"class(es) {missing} have no support item; give every class 0..{n_way - 1} "
                             "at least one support image")


def one_hot(y: torch.Tensor, n_way: int) -> torch.Tensor:
    """``[S]`` labels -> ``[S, n_way]`` float rows (works on any device, ``meta`` included)."""
    return (y[:, None] == torch.arange(n_way, device=y.device)[None, :]).float()


def class_means(z: torch.Tensor, y: torch.Tensor, n_way: int) -> torch.Tensor:
    """The mean of each class's rows: ``z [S, D], y [S] -> [n_way, D]`` (at least float32).

    Implements {eq}`eq-protonet-prototype`, ``c_k = (1/|S_k|) sum_{i: y_i = k} z_i``,
    for labels in any order and classes of any size.
    """
    check_labels(y, n_way)
    if z.dim() != 2 or len(z) != len(y):
        raise ValueError(f"z must be [S, D] with S = len(y) = {len(y)}, got {tuple(z.shape)}")
    with no_autocast(z):  # a mean of float32 embeddings stays float32
        z = upcast(z)
        onehot = one_hot(y, n_way).to(z.dtype)  # [S, n_way]
        return (onehot.T @ z) / onehot.sum(0).unsqueeze(1)


def class_mean_scores(
    scores: torch.Tensor, y: torch.Tensor, n_way: int
) -> torch.Tensor:
    """The mean of each class's columns: ``scores [Q, S], y [S] -> [Q, n_way]``.

    Implements {eq}`eq-siamese-predict`: with one shot, the score of the class's only
    support item; with ``K`` shots, the mean over its ``K`` items.
    """
    check_labels(y, n_way)
    if scores.shape[-1] != len(y):
        raise ValueError(f"scores have {scores.shape[-1]} columns but there are {len(y)} support labels")
    with no_autocast(scores):
        scores = upcast(scores)
        onehot = one_hot(y, n_way).to(scores.dtype)
        return scores @ onehot / onehot.sum(0)


def class_sums(weights: torch.Tensor, y: torch.Tensor, n_way: int) -> torch.Tensor:
    """The sum of each class's columns: ``weights [Q, S], y [S] -> [Q, n_way]``.

    Implements {eq}`eq-matching-prediction` when ``weights`` is the attention.
    """
    check_labels(y, n_way)
    if weights.shape[-1] != len(y):
        raise ValueError(f"weights have {weights.shape[-1]} columns but there are {len(y)} support labels")
    with no_autocast(weights):
        weights = upcast(weights)
        return weights @ one_hot(y, n_way).to(weights.dtype)


def class_logsumexp(scores: torch.Tensor, y: torch.Tensor, n_way: int) -> torch.Tensor:
    """``log sum_{i: y_i = c} exp(scores_i)`` for each class: ``[Q, S], [S] -> [Q, n_way]``.

    The log of :func:`class_sums` of ``exp(scores)``, without ever forming a probability
    that could round to 0 before the log.
    """
    check_labels(y, n_way)
    if scores.shape[-1] != len(y):
        raise ValueError(f"scores have {scores.shape[-1]} columns but there are {len(y)} support labels")
    mask = one_hot(y, n_way).T.to(scores.dtype)  # [n_way, S]
    log_mask = torch.where(mask > 0, torch.zeros_like(mask), torch.full_like(mask, float("-inf")))
    return torch.logsumexp(scores[:, None, :] + log_mask[None], dim=-1)
