"""Attention over the support set (Vinyals et al. 2016), and full context embeddings.

A query attends to every support item, ``a(x, x_i) = softmax_i(sim(x, x_i) / T)``, and
the attention weights sum the support labels, ``P(y = c | x, S) = sum_i a(x, x_i) [y_i = c]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .aggregation import class_logsumexp, class_sums
from .distances import cosine_similarity, squared_euclidean

SIMILARITIES = ("cosine", "euclidean")


def check_temperature(temperature: float) -> None:
    """Raise ``ValueError`` unless ``temperature > 0``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; use a small value such as 1e-3 for 1-NN")


def similarity(query_z: torch.Tensor, support_z: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """``[Q, D], [S, D] -> [Q, S]``: cosine {eq}`eq-matching-cosine` or ``-||q - s||^2`` {eq}`eq-matching-euclidean`."""
    if kind == "cosine":
        return cosine_similarity(query_z, support_z)
    if kind == "euclidean":
        return -squared_euclidean(query_z, support_z)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")


def attention(query_z: torch.Tensor, support_z: torch.Tensor, kind: str = "cosine",
              temperature: float = 1.0) -> torch.Tensor:
    """``a(x, x_i)``: each query's softmax over the *support items*, ``[Q, D], [S, D] -> [Q, S]``.

    Implements {eq}`eq-matching-attention`. As ``T -> 0`` each row tends to a one-hot on
    the most similar support item (1-nearest neighbour).
    """
    check_temperature(temperature)
    return torch.softmax(similarity(query_z, support_z, kind) / temperature, dim=-1)


def label_probabilities(
    attn: torch.Tensor, support_y: torch.Tensor, n_way: int
) -> torch.Tensor:
    """``P(y = c | x, S) = sum_i a(x, x_i) [y_i = c]``: ``[Q, S], [S] -> [Q, n_way]``.

    Implements {eq}`eq-matching-prediction`.
    """
    return class_sums(attn, support_y, n_way)


def class_log_probabilities(
    sim: torch.Tensor, support_y: torch.Tensor, n_way: int, temperature: float = 1.0
) -> torch.Tensor:
    """``log P(y = c | x, S)`` from the similarities ``sim [Q, S]``: ``[Q, n_way]``.

    Implements {eq}`eq-matching-log-prob`: a difference of two log-sum-exps, so no
    probability is rounded to 0 before the log.
    """
    check_temperature(temperature)
    s = sim / temperature
    per_class = class_logsumexp(s, support_y, n_way)  # [Q, n_way]
    log_norm = torch.logsumexp(s, dim=-1, keepdim=True)  # [Q, 1]
    return per_class - log_norm


def matching_loss(log_probs: torch.Tensor, query_y: torch.Tensor) -> torch.Tensor:
    """``-1/Q sum_q log P(y_q | x_q, S)`` of log-probabilities (no softmax on top).

    Implements {eq}`eq-matching-loss`.
    """
    return F.nll_loss(log_probs, query_y)


def nearest_neighbour_labels(query_z: torch.Tensor, support_z: torch.Tensor, support_y: torch.Tensor,
                             kind: str = "cosine") -> torch.Tensor:
    """Label of the most similar support item for each query (1-NN): ``[Q]``.

    The ``temperature -> 0`` limit of {eq}`eq-matching-attention`.
    """
    return support_y[similarity(query_z, support_z, kind).argmax(dim=-1)]


class SupportContext(nn.Module):
    """``g(x_i, S) = g'(x_i) + h_i^fwd + h_i^bwd``: a bidirectional LSTM reads the support.

    Implements {eq}`eq-matching-fce-g`. Shapes: ``support_z: [S, D] -> [S, D]``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)

    def forward(self, support_z: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(support_z[None])  # [1, S, 2D]
        return support_z + out[0, :, : self.dim] + out[0, :, self.dim :]


class QueryAttentionLSTM(nn.Module):
    """``f(x, S)``: an LSTM that reads the (context-embedded) support ``steps`` times.

    With ``f'(x)`` the query embedding, ``g(S)`` the support context embeddings,
    ``h_0 = f'(x)`` and ``c_0 = 0``, for ``k = 1..steps``::

        r_{k-1}      = sum_i softmax_i(h_{k-1} . g(x_i)) g(x_i)
        h_hat_k, c_k = LSTM([f'(x), r_{k-1}], (h_{k-1}, c_{k-1}))
        h_k          = h_hat_k + f'(x)

    and ``f(x, S) = h_K``: each step reads the support with the current state, as in
    Vinyals et al. (2016, appendix), so even one step depends on ``S``. Implements
    {eq}`eq-matching-fce-f`.
    Shapes: ``query_z: [Q, D], support_g: [S, D] -> [Q, D]``.
    """

    def __init__(self, dim: int, steps: int = 5) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"fce_steps must be >= 1, got {steps}")
        self.dim, self.steps = dim, steps
        self.cell = nn.LSTMCell(2 * dim, dim)

    def forward(self, query_z: torch.Tensor, support_g: torch.Tensor) -> torch.Tensor:
        h, c = query_z, torch.zeros_like(query_z)
        for _ in range(self.steps):
            a = torch.softmax(h @ support_g.T, dim=-1)  # read with h_{k-1}: [Q, S]
            r = a @ support_g  # [Q, D]
            h_hat, c = self.cell(torch.cat([query_z, r], dim=-1), (h, c))
            h = h_hat + query_z
        return h
