"""Sinusoid regression tasks (Finn et al. 2017, section 5.1), the toy problem of MAML.

A task is ``y = A sin(x - b)`` with amplitude ``A ~ U[0.1, 5]``, phase ``b ~ U[0, pi]``
and inputs ``x ~ U[-5, 5]``; the learner sees ``K`` points of it (``K = 10`` in the
paper). Tasks come as :class:`~fewshot_tutorial.data.Episode` values (``n_way = 1``,
float targets), so MAML's meta-batch code runs on them unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .data import Episode
from .data.sampling import SeededSampler

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


class SineMLP(nn.Module):
    """The paper's regressor: 1 -> 40 -> 40 -> 1 with ReLU. ``x: [B, 1] -> [B, 1]``."""

    def __init__(self, hidden: int = 40) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error, the paper's regression loss."""
    return F.mse_loss(pred.float(), y.float())


def sine(x: torch.Tensor, amplitude: float | torch.Tensor, phase: float | torch.Tensor) -> torch.Tensor:
    """``A sin(x - b)``."""
    return amplitude * torch.sin(x - phase)


class SinusoidTasks(SeededSampler[Episode]):
    """Seeded stream of sinusoid tasks, each an :class:`Episode` with ``K`` support points.

    Args:
        k_shot: support points per task (``K``).
        n_query: query points per task (used for the meta-loss).
        seed: same seed, same tasks.
        n_tasks: length of one pass (``None``: endless).

    Each episode: ``support_x, support_y: [k_shot, 1]``, ``query_x, query_y: [n_query, 1]``.
    """

    def __init__(self, k_shot: int = 10, n_query: int = 10, seed: int | None = 0,
                 n_tasks: int | None = None) -> None:
        if k_shot < 1 or n_query < 1:
            raise ValueError(f"k_shot and n_query must be >= 1, got {k_shot} and {n_query}")
        super().__init__(seed, n_tasks, count_name="n_tasks")
        self.k_shot, self.n_query, self.n_tasks = k_shot, n_query, n_tasks
        self.last: tuple[float, float] = (0.0, 0.0)

    def uniform(self, lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=self.generator)

    def sample(self) -> Episode:
        """Draw a task; its ``(amplitude, phase)`` is kept in ``self.last``."""
        a, b = float(self.uniform(*AMPLITUDE, 1)), float(self.uniform(*PHASE, 1))
        self.last = (a, b)
        x = self.uniform(*X_RANGE, self.k_shot + self.n_query, 1)
        y = sine(x, a, b)
        k = self.k_shot
        return Episode(x[:k], y[:k], x[k:], y[k:], n_way=1)


def pooled_loss(model: nn.Module, tasks: list[Episode]) -> torch.Tensor:
    """The pretrained baseline's loss: one regressor fitted to all tasks' points at once."""
    x = torch.cat([torch.cat([t.support_x, t.query_x]) for t in tasks])
    y = torch.cat([torch.cat([t.support_y, t.query_y]) for t in tasks])
    return mse(model(x), y)
