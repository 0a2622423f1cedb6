"""Weighting several losses on one network: fixed weights, or learned ones (Kendall et al. 2018).

With homoscedastic task uncertainty ``sigma_i`` the weighted loss is
``sum_i L_i / (2 sigma_i^2) + log sigma_i``; in ``nu_i = log sigma_i^2`` (finite gradients
for any ``nu_i``) it reads ``sum_i exp(-nu_i) L_i / 2 + nu_i / 2``, {eq}`eq-uncertainty-weighting`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def fixed_weighting(loss1: torch.Tensor, loss2: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * L1 + (1 - lam) * L2`` for a fixed ``lam`` in ``[0, 1]``."""
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1] (the weight of the first loss), got {lam}")
    return lam * loss1 + (1 - lam) * loss2


class UncertaintyWeighting(nn.Module):
    """Learned loss weights: ``sum_i exp(-nu_i) L_i / 2 + nu_i / 2``, {eq}`eq-uncertainty-weighting`.

    ``nu_i = log sigma_i^2`` is a parameter (``log_var``, ``[n_tasks]``, initially 0: all
    weights 1/2). Optimise it with the network (put it in the method's
    :meth:`~fewshot_tutorial.methods.Method.param_groups`).

    Why it does not just drive the weights to zero: for fixed ``L_i > 0`` the term
    ``f(nu) = exp(-nu) L_i / 2 + nu / 2`` has ``f'(nu) = (1 - exp(-nu) L_i) / 2``, zero only at
    ``exp(nu) = L_i``, and ``f''(nu) = exp(-nu) L_i / 2 > 0``: the unique minimum is
    ``sigma_i^2 = L_i``. A task's weight ``exp(-nu_i) / 2`` thus tends to ``1 / (2 L_i)``:
    a noisier (larger-loss) task counts less, and the ``nu_i / 2`` term (``log sigma_i``)
    stops every weight from collapsing to zero.

    Shapes:
        ``losses: [n_tasks]`` (or a sequence of scalars) ``-> []``
    """

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
            raise ValueError(f"n_tasks must be an int >= 1, got {n_tasks!r}")
        self.log_var = nn.Parameter(torch.zeros(n_tasks))

    @property
    def weights(self) -> torch.Tensor:
        """The current weight ``exp(-nu_i) / 2`` of each loss: ``[n_tasks]``."""
        return torch.exp(-self.log_var) / 2

    def forward(self, losses: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(losses, torch.Tensor):
            losses = torch.stack(list(losses))
        if losses.shape != self.log_var.shape:
            raise ValueError(f"expected {self.log_var.numel()} losses, got shape {tuple(losses.shape)}")
        nu = self.log_var  # nu_i = log sigma_i^2
        return (torch.exp(-nu) * losses / 2 + nu / 2).sum()
